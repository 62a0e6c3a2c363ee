"""Notebook 08: distillation losses, DeiT's distillation token, the CNN teacher, and the 8.x checks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vit_lesson import checks
from vit_lesson.distill import (
    DistillationLoss,
    DistilledViT,
    distillation_loss,
    freeze,
    hard_distillation_loss,
    make_loss_fn,
    small_resnet,
    soft_distillation_loss,
)
from vit_lesson.model import ViT
from vit_lesson.registry import get_config


def logits(seed=0, batch=6, classes=10):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, classes, generator=g) * 2, torch.randn(batch, classes, generator=g) * 3,
            torch.randint(0, classes, (batch,), generator=g))


def hand_kl(student, teacher, T):
    """KL(p_teacher || p_student) at temperature T, summed over classes, averaged over the batch, by hand."""
    p_t = torch.exp(teacher / T) / torch.exp(teacher / T).sum(-1, keepdim=True)
    p_s = torch.exp(student / T) / torch.exp(student / T).sum(-1, keepdim=True)
    return (p_t * (p_t.log() - p_s.log())).sum(-1).mean()


def small_config(**overrides):
    return get_config("micro", image_size=8, patch_size=2, num_channels=1, hidden_size=32,
                      num_hidden_layers=2, intermediate_size=64, **overrides)


# --- losses -------------------------------------------------------------------------------------

def test_alpha_one_temperature_one_is_cross_entropy():
    s, t, y = logits()
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=1.0, temperature=1.0), F.cross_entropy(s, y))


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
def test_alpha_zero_is_t_squared_kl_by_hand(T):
    s, t, y = logits(1)
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.0, temperature=T), T ** 2 * hand_kl(s, t, T))


def test_mixture_module_and_function_agree_and_kl_is_zero_when_student_copies_teacher():
    s, t, y = logits(2)
    want = 0.3 * F.cross_entropy(s, y) + 0.7 * 16 * hand_kl(s, t, 4.0)
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.3, temperature=4.0), want)
    torch.testing.assert_close(DistillationLoss(alpha=0.3, temperature=4.0)(s, t, y), want)
    assert soft_distillation_loss(t, t, 4.0).abs() < 1e-6 < soft_distillation_loss(s, t, 4.0)


def test_t_squared_keeps_the_soft_gradient_the_same_size_at_any_temperature():
    s, t, _ = logits(3, batch=32)
    s, t = s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)

    def grad_norm(T, scaled):
        student = s.clone().requires_grad_(True)
        loss = soft_distillation_loss(student, t, T) / (1 if scaled else T ** 2)
        loss.backward()
        return student.grad.norm().item()

    # dKL/dz = (p_s - p_t) / T and p_s - p_t ~ (z_s - z_t) / (K T): the unscaled gradient falls as 1/T^2.
    assert grad_norm(8, True) / grad_norm(16, True) == pytest.approx(1.0, rel=0.05)
    assert grad_norm(8, False) / grad_norm(16, False) == pytest.approx(4.0, rel=0.05)
    # In the high-temperature limit, T^2 * grad tends to (z_s - z_t) / (K B) (Hinton et al., Sec. 2.1).
    student = s.double().requires_grad_(True)
    soft_distillation_loss(student, t.double(), 1000.0).backward()
    torch.testing.assert_close(student.grad, (s - t).double() / (10 * 32), rtol=0.02, atol=1e-4)


def test_hard_distillation_uses_the_teachers_argmax_as_a_label():
    s, t, y = logits(4)
    want = 0.5 * F.cross_entropy(s, y) + 0.5 * F.cross_entropy(s, t.argmax(-1))
    torch.testing.assert_close(hard_distillation_loss(s, t, y), want)
    torch.testing.assert_close(hard_distillation_loss(s, t, t.argmax(-1), alpha=0.2), F.cross_entropy(s, t.argmax(-1)))


def test_loss_errors_name_the_problem():
    s, t, y = logits()
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, t[:, :5], y)
    with pytest.raises(ValueError, match="temperature must be positive"):
        distillation_loss(s, t, y, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="Unknown distillation kind"):
        make_loss_fn(nn.Linear(2, 2), kind="medium")
    with pytest.raises(ValueError, match="needs a trained teacher"):
        make_loss_fn(None, kind="soft")


# --- DeiT's distillation token ----------------------------------------------------------------------

def test_distilled_vit_shapes_names_and_averaging():
    torch.manual_seed(0)
    model = DistilledViT(small_config()).eval()
    x = torch.randn(3, 1, 8, 8)
    names = set(dict(model.named_parameters()))
    assert {"dist_token", "head_dist.weight", "head_dist.bias", "cls_token", "head.weight"} <= names
    assert model.pos_embed.shape == (1, 16 + 2, 32)
    assert model.forward_features(x).shape == (3, 18, 32)
    cls_logits, dist_logits = model.forward_heads(x)
    assert cls_logits.shape == dist_logits.shape == (3, 10)
    assert not torch.allclose(cls_logits, dist_logits)
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    tokens = model.forward_features(x)
    torch.testing.assert_close(dist_logits, model.head_dist(tokens[:, 1]))
    out = model(x, output_attentions=True)
    assert out.attentions[0].shape == (3, 4, 18, 18)
    torch.testing.assert_close(out.logits, model(x))


def test_distilled_vit_equals_timm_deit_distilled():
    from timm.models.deit import VisionTransformerDistilled

    from vit_lesson.convert import timm_kwargs

    torch.manual_seed(0)
    config = small_config()
    ours = DistilledViT(config).eval()
    timm_model = VisionTransformerDistilled(**timm_kwargs(config)).eval()
    timm_model.load_state_dict(ours.state_dict())  # same names, same shapes
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(ours(x), timm_model(x), atol=1e-5, rtol=1e-5)


# --- the teacher ------------------------------------------------------------------------------------

def test_small_resnet_is_torchvisions_resnet_with_a_small_image_stem():
    model = small_resnet(num_classes=10, in_chans=1, width=8)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert [getattr(model, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [8, 16, 32, 64]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    import torchvision

    full = small_resnet(num_classes=1000, in_chans=3, width=64)
    reference = torchvision.models.resnet18()
    # Same stages as ResNet-18; only conv1 (3x3 instead of 7x7) differs.
    difference = sum(p.numel() for p in reference.parameters()) - sum(p.numel() for p in full.parameters())
    assert difference == 64 * 3 * (49 - 9)
    with pytest.raises(ValueError, match="ResNet-18, -34 or -50"):
        small_resnet(depth=101)


def test_teacher_is_frozen_during_distillation():
    torch.manual_seed(0)
    teacher = small_resnet(10, 1, width=8)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = ViT(small_config())
    images, labels = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    for kind in ("soft", "hard"):
        loss, out = make_loss_fn(teacher, kind)(student, images, labels)
        loss.backward()
        assert out.shape == (4, 10)
    assert not teacher.training  # BatchNorm uses running statistics, never updates them
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is not None for p in student.parameters())
    assert freeze(nn.Linear(2, 2)).weight.requires_grad is False


def test_token_loss_trains_each_head_on_its_own_target():
    torch.manual_seed(0)
    teacher = freeze(small_resnet(10, 1, width=8))
    student = DistilledViT(small_config())
    images, labels = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    loss, out = make_loss_fn(teacher, "token", alpha=0.5)(student, images, labels)
    cls_logits, dist_logits = student.forward_heads(images)
    teacher_labels = teacher(images).argmax(-1)
    torch.testing.assert_close(
        loss, 0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(dist_logits, teacher_labels))
    torch.testing.assert_close(out, (cls_logits + dist_logits) / 2)
    with pytest.raises(ValueError, match="DistilledViT"):
        make_loss_fn(teacher, "token")(ViT(small_config()), images, labels)


def test_distillation_runs_through_the_course_trainer():
    from torch.utils.data import Subset

    from vit_lesson.data import digits_datasets
    from vit_lesson.train import TrainConfig, train

    train_set, test_set = digits_datasets(image_size=8)
    train_set, test_set = Subset(train_set, range(64)), Subset(test_set, range(32))
    torch.manual_seed(0)
    teacher = small_resnet(10, 1, width=8)
    history = train(DistilledViT(small_config()), train_set, test_set, TrainConfig(epochs=1, progress=False),
                    loss_fn=make_loss_fn(teacher, "token"))
    assert len(history) == 1 and 0.0 <= history[-1]["val_acc"] <= 1.0


# --- checks -----------------------------------------------------------------------------------------

def _kl(a, b):
    return F.kl_div(a, b, reduction="batchmean")


def test_check_8_1_passes_equivalent_formulations():
    def by_hand(s, t, y, alpha=0.5, temperature=4.0):
        T = temperature
        p_t = F.softmax(t / T, -1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
        return alpha * F.cross_entropy(s, y) + (1 - alpha) * T * T * kl

    def log_target(s, t, y, alpha=0.5, temperature=4.0):
        T = temperature
        kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True)
        return alpha * F.cross_entropy(s, y) + (1 - alpha) * T ** 2 * kl

    for fn in (distillation_loss, by_hand, log_target,
               lambda s, t, y, alpha, temperature: DistillationLoss(alpha, temperature)(s, t, y)):
        assert checks.check_distillation_loss(fn)


@pytest.mark.parametrize("soft_term, words", [
    (lambda s, t, T: _kl(F.log_softmax(s / T, -1), F.softmax(t / T, -1)), "missing the factor T²"),
    (lambda s, t, T: T ** 2 * _kl(F.softmax(s / T, -1), F.softmax(t / T, -1)), "LOG-probabilities"),
    (lambda s, t, T: T ** 2 * _kl(F.log_softmax(t / T, -1), F.softmax(s / T, -1)), "swapped"),
    (lambda s, t, T: T ** 2 * _kl(F.log_softmax(s / T, -1), F.softmax(t, -1)), "only the student"),
    (lambda s, t, T: T ** 2 * _kl(F.log_softmax(s, -1), F.softmax(t / T, -1)), "only the teacher"),
    (lambda s, t, T: T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="mean"), "batchmean"),
    (lambda s, t, T: 16 * _kl(F.log_softmax(s / 4, -1), F.softmax(t / 4, -1)), "ignores the `temperature`"),
])
def test_check_8_1_names_each_mistake(soft_term, words):
    def wrong(s, t, y, alpha=0.5, temperature=4.0):
        return alpha * F.cross_entropy(s, y) + (1 - alpha) * soft_term(s, t, temperature)

    with pytest.warns(UserWarning) if "batchmean" in words else _nothing():
        result = checks.check_distillation_loss(wrong)
    assert not result and words in result.message


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def test_check_8_1_alpha_swapped_blog_post_and_placeholder():
    swapped = lambda s, t, y, alpha, temperature: distillation_loss(s, t, y, 1 - alpha, temperature)  # noqa: E731
    assert "swapped" in checks.check_distillation_loss(swapped).message

    def blog_post(s, t, y, alpha=0.5, temperature=4.0):  # the post's body: T is never defined
        return (alpha * F.cross_entropy(s, y)
                + (1 - alpha) * _kl(F.log_softmax(s / T, -1), F.softmax(t / T, -1)) * T ** 2)  # noqa: F821

    assert "NameError" in checks.check_distillation_loss(blog_post).message

    def placeholder(s, t, y, alpha=0.5, temperature=4.0):
        raise NotImplementedError("Exercise not done yet")

    assert checks.check_distillation_loss(placeholder).status == "todo"


def test_check_8_2():
    assert checks.check_hard_distillation_loss(hard_distillation_loss)
    soft = lambda s, t, y, alpha: alpha * F.cross_entropy(s, y) + (1 - alpha) * F.cross_entropy(s, F.softmax(t, -1))  # noqa: E731
    assert "top class" in checks.check_hard_distillation_loss(soft).message
    swapped = lambda s, t, y, alpha: hard_distillation_loss(s, t, y, 1 - alpha)  # noqa: E731
    assert "swapped" in checks.check_hard_distillation_loss(swapped).message


def test_loss_mirror_raises_on_drift(capsys):
    s, t, y = logits()
    checks.check_loss_mirror(DistillationLoss(0.3, 4.0), lambda *a: distillation_loss(*a, alpha=0.3, temperature=4.0),
                             s, t, y)
    assert "✅ Mirror" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="disagree"):
        checks.check_loss_mirror(DistillationLoss(0.3, 4.0), DistillationLoss(0.3, 2.0), s, t, y)



# --- checks: more named mistakes, hard-coded numbers, None / NaN / .item() answers --------------------

@pytest.mark.parametrize("soft_term, words", [
    (lambda s, t, T: _kl(F.log_softmax(s / T, -1), F.softmax(t / T, -1)) / T ** 2, "divided by T²"),
    (lambda s, t, T: T ** 2 * F.cross_entropy(s / T, F.softmax(t / T, -1)), "teacher's entropy"),
    (lambda s, t, T: T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="sum"),
     "reduction='sum'"),
    (lambda s, t, T: T * _kl(F.log_softmax(s / T, -1), F.softmax(t / T, -1)), "multiplied by T, not T²"),
    (lambda s, t, T: T ** 2 * _kl(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)), "log_target=True"),
    (lambda s, t, T: T ** 2 * _kl(F.softmax(s / T, -1).log(), F.softmax(t / T, -1)) * float("inf"), "NaN or inf"),
])
def test_check_8_1_names_more_mistakes(soft_term, words):
    def wrong(s, t, y, alpha=0.5, temperature=4.0):
        return alpha * F.cross_entropy(s, y) + (1 - alpha) * soft_term(s, t, temperature)

    result = checks.check_distillation_loss(wrong)
    assert not result and words in result.message, result.message


@pytest.mark.parametrize("wrong, words", [
    (lambda s, t, y, alpha, temperature: distillation_loss(s, t, y, 0.3, temperature), "ignores the `alpha`"),
    (lambda s, t, y, alpha, temperature: distillation_loss(s, t, y, alpha, 4.0), "ignores the `temperature`"),
    (lambda s, t, y, alpha, temperature: alpha * F.cross_entropy(s, y)
     + temperature ** 2 * _kl(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1)),
     "not weighted by 1 - alpha"),
    (lambda s, t, y, alpha, temperature: F.cross_entropy(s, y) + (1 - alpha) * temperature ** 2
     * _kl(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1)), "not weighted by alpha"),
    (lambda s, t, y, alpha, temperature: None, "forget the `return`"),
    (lambda s, t, y, alpha, temperature: distillation_loss(s, t, y, alpha, temperature).item(), ".item()"),
    (lambda s, t, y, alpha, temperature: distillation_loss(s, t, y, alpha, temperature) * float("nan"), "NaN"),
    # K = 10 classes hard-coded (the first run's): the second run has 7
    (lambda s, t, y, alpha, temperature: alpha * F.cross_entropy(s, y) + (1 - alpha) * temperature ** 2
     * F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="sum") / s.numel() * 10,
     "alpha=0.8"),
])
def test_check_8_1_names_hard_coded_numbers_none_item_and_nan(wrong, words):
    result = checks.check_distillation_loss(wrong)
    assert not result and words in result.message, result.message
    assert "could not check" not in result.message


def test_check_8_1_answer_key_is_not_changed_by_a_learner_writing_into_its_inputs():
    def clobbers(s, t, y, alpha, temperature):
        loss = distillation_loss(s, t, y, alpha, temperature)
        t.zero_()  # (the labels are saved for the backward pass, so only the teacher's logits)
        return loss

    assert checks.check_distillation_loss(clobbers)

    def zeroes_the_teacher_first(s, t, y, alpha, temperature):
        t.zero_()
        return distillation_loss(s, t, y, alpha, temperature)

    assert not checks.check_distillation_loss(zeroes_the_teacher_first)


@pytest.mark.parametrize("wrong, words", [
    (lambda s, t, y, alpha: hard_distillation_loss(s, t, y, 0.5), "ignores the `alpha`"),
    (lambda s, t, y, alpha: alpha * F.cross_entropy(s, y) + (1 - alpha) * F.cross_entropy(s, s.argmax(-1)),
     "student's own top class"),
    (lambda s, t, y, alpha: F.cross_entropy(s, y) + F.cross_entropy(s, t.argmax(-1)), "not weighted"),
    (lambda s, t, y, alpha: None, "forget the `return`"),
    (lambda s, t, y, alpha: hard_distillation_loss(s, t, y, alpha).item(), ".item()"),
    (lambda s, t, y, alpha: hard_distillation_loss(s, t, y, alpha) * float("nan"), "NaN"),
    (lambda s, t, y, alpha: (t.zero_(), hard_distillation_loss(s, t, y, alpha))[1], "wrong values"),
])
def test_check_8_2_names_more_mistakes(wrong, words):
    result = checks.check_hard_distillation_loss(wrong)
    assert not result and words in result.message, result.message
    assert "could not check" not in result.message


def test_check_8_2_passes_a_correct_answer_that_writes_into_its_inputs():
    def clobbers(s, t, y, alpha):
        loss = hard_distillation_loss(s, t, y, alpha)
        t.zero_(), y.zero_()
        return loss

    assert checks.check_hard_distillation_loss(clobbers)
