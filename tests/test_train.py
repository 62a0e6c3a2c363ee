"""vit_lesson.train: the loop learns, the schedule and parameter groups are right, checkpoints are
atomic and load with weights_only, a resumed run equals an uninterrupted one, NaN stops the run."""

import copy
import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from vit_lesson import checkpoint as checkpoint_module
from vit_lesson.checkpoint import load_checkpoint, load_model, save_checkpoint
from vit_lesson.data import digits_datasets
from vit_lesson.factory import create_model
from vit_lesson.figures import plot_history
from vit_lesson.train import (
    History,
    NonFiniteLossError,
    TrainConfig,
    cross_entropy_loss,
    evaluate,
    make_optimizer,
    make_scheduler,
    parameter_groups,
    predict,
    train,
    warmup_cosine_lr,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def digits8_augmented():
    """256 training and 128 test digits at 8x8, with augmentation (so RNG state matters)."""
    train_set, test_set = digits_datasets(8, augment=True)
    return Subset(train_set, range(256)), Subset(test_set, range(128))


@pytest.fixture(scope="module")
def digits8(digits8_augmented):
    """The same digits without augmentation."""
    train_set, test_set = digits8_augmented
    plain = copy.copy(train_set.dataset)
    plain.augment = None
    return Subset(plain, train_set.indices), test_set


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("digits", image_size=8, num_channels=1, num_classes=10, patch_size=4, hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def config(**kw):
    return TrainConfig(**{**dict(epochs=3, batch_size=32, lr=1e-2, warmup_epochs=1, progress=False), **kw})


def test_loss_decreases_and_history_is_complete(digits8):
    model = tiny_model()
    history = train(model, *digits8, config(epochs=5))
    assert isinstance(history, History) and len(history) == 5
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.3
    assert history[-1]["val_acc"] > 0.25  # chance is 0.1
    assert history.best()["val_acc"] == max(history.column("val_acc"))
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at min_lr
    assert "val acc" in history.table()
    fig = plot_history(history)
    assert len(fig.axes) == 2


def test_parameter_groups_no_decay_on_norms_biases_embeddings():
    model = tiny_model()
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay_names | no_decay_names == set(names.values()) and not decay_names & no_decay_names
    assert {"pos_embed", "cls_token", "norm.weight", "norm.bias", "head.bias", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.bias", "patch_embed.proj.bias"} <= no_decay_names
    assert decay_names == {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                           "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight"}
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}  # the names come from timm's hook
    # Behaviour: with zero gradients AdamW only decays, so only the decay group moves.
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.5), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        if n in no_decay_names:
            assert torch.equal(p, before[n]), n
        else:
            assert torch.allclose(p, before[n] * (1 - 0.1 * 0.5)), n


def test_the_optimizer_is_fused_where_torch_has_it_and_steps_as_the_plain_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3))
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.05))
    assert optimizer.defaults["fused"] is (True if torch.__version__ >= (2, 4) else None)  # CPU kernel since 2.4
    plain_model = copy.deepcopy(model)
    plain = torch.optim.AdamW(parameter_groups(plain_model, 0.05), lr=1e-2)
    x = torch.randn(8, 6)
    for _ in range(3):
        for m, opt in ((model, optimizer), (plain_model, plain)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for (name, p), q in zip(model.named_parameters(), plain_model.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name  # the same update, rounded in another order


def test_parameter_groups_follow_the_models_no_weight_decay_hook():
    from vit_lesson.distill import DistilledViT

    student = DistilledViT(tiny_model().config)
    names = {id(p): n for n, p in student.named_parameters()}
    _decay, no_decay = parameter_groups(student, 0.05)
    assert {"pos_embed", "cls_token", "dist_token"} <= {names[id(p)] for p in no_decay["params"]}

    class Scaled(nn.Module):  # any model can say which of its matrices to leave alone
        def __init__(self):
            super().__init__()
            self.weight, self.scale = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2, 2))

        def no_weight_decay(self):
            return {"scale"}

    model = Scaled()
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["params"] == [model.weight] and no_decay["params"] == [model.scale]
    decay, no_decay = parameter_groups(nn.Sequential(nn.Linear(2, 2)), 0.05)  # no hook: 1-D parameters only
    assert [p.ndim for p in decay["params"]] == [2] and [p.ndim for p in no_decay["params"]] == [1]


def test_warmup_cosine_schedule_values():
    base, low, warmup, total = 1e-3, 1e-5, 4, 20
    lrs = [warmup_cosine_lr(s, base, warmup, total, low) for s in range(total + 1)]
    assert lrs[:warmup] == pytest.approx([base * k / warmup for k in (1, 2, 3, 4)])  # first step learns
    assert lrs[warmup] == pytest.approx(base) and lrs[total] == pytest.approx(low)
    assert lrs[(warmup + total) // 2] == pytest.approx((base + low) / 2)  # half way down the cosine
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    # The LambdaLR the trainer uses gives the same values step by step.
    cfg = TrainConfig(epochs=5, lr=base, min_lr=low, warmup_epochs=1)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=4)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(lrs)


def test_resume_after_interruption_equals_uninterrupted_run(digits8_augmented, tmp_path):
    digits8 = digits8_augmented
    straight = tiny_model()
    history_straight = train(straight, *digits8, config(out_dir=str(tmp_path / "a")))

    calls = {"n": 0}
    steps_per_epoch = math.ceil(256 / 32)
    plain = cross_entropy_loss(0.1)

    def interrupted(model, images, labels):  # Ctrl-C in the first step of epoch 3
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 1:
            raise KeyboardInterrupt
        return plain(model, images, labels)

    first = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        train(first, *digits8, config(out_dir=str(tmp_path / "b")), loss_fn=interrupted)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    resumed = tiny_model(seed=123)  # a fresh process: other initial weights, other RNG state
    torch.manual_seed(999)
    history_resumed = train(resumed, *digits8, config(out_dir=str(tmp_path / "b"), resume=True))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name
    assert len(history_resumed) == 3
    assert history_resumed[-1]["val_loss"] == pytest.approx(history_straight[-1]["val_loss"], abs=1e-6)


def test_non_finite_loss_stops_with_message_and_keeps_last_good_checkpoint(digits8, tmp_path):
    calls = {"n": 0}
    plain = cross_entropy_loss(0.1)

    def poisoned(model, images, labels):  # epoch 2, third step: the loss turns NaN
        calls["n"] += 1
        loss, logits = plain(model, images, labels)
        return (loss * float("nan") if calls["n"] == 8 + 3 else loss), logits

    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_model(), *digits8, config(out_dir=str(tmp_path)), loss_fn=poisoned)
    message = str(info.value)
    assert "nan" in message and "epoch 2, step 2" in message
    assert "learning rate is too high" in message and "GradScaler" in message and "last.pt" in message
    checkpoint = load_checkpoint(tmp_path / "last.pt", tiny_model())
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_huge_learning_rate_is_caught(digits8):
    model = tiny_model()
    with torch.no_grad():  # an exploded model (what lr=1e6 leads to within a few steps)
        model.head.weight.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 0"):
        train(model, *digits8, config(epochs=1))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "last.pt", model, epoch=1)
    good = path.read_bytes()

    def broken_save(obj, file, *args, **kwargs):  # a crash (or full disk) half way through the write
        file.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, tiny_model(seed=1), epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 1


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(digits8, tmp_path):
    model = tiny_model()
    train(model, *digits8, config(epochs=1, out_dir=str(tmp_path)), classes=[str(i) for i in range(10)])
    raw = torch.load(tmp_path / "best.pt", weights_only=True)  # only tensors and plain types inside
    assert raw["model_config"]["hidden_size"] == 16 and raw["classes"][3] == "3" and raw["epoch"] == 1
    assert set(raw) >= {"model", "optimizer", "scheduler", "scaler", "history", "rng", "train_config"}
    rebuilt, _ = load_model(tmp_path / "best.pt")
    images = torch.stack([digits8[1][i][0] for i in range(8)])
    model.eval()
    assert torch.allclose(rebuilt(images), model(images), atol=1e-6)


def test_load_model_rebuilds_distilled_and_hybrid_models(tmp_path):
    from vit_lesson.cnn import small_resnet
    from vit_lesson.distill import DistilledViT
    from vit_lesson.hybrid import HybridConfig, HybridViT, resnet_stem
    from vit_lesson.model import ViTConfig

    small = ViTConfig(image_size=16, patch_size=1, num_channels=1, hidden_size=16, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=32, num_classes=10)
    images = torch.randn(2, 1, 16, 16)
    hybrid = HybridViT(HybridConfig(**vars(small), resnet_stages=2, resnet_width=8))  # its ResNet is in its config
    for model in (DistilledViT(replace(small, patch_size=4)), hybrid):
        save_checkpoint(tmp_path / "m.pt", model)
        rebuilt, checkpoint = load_model(tmp_path / "m.pt")
        assert type(rebuilt) is type(model) and rebuilt.config == model.config, checkpoint["model_class"]
        assert torch.allclose(rebuilt(images), model.eval()(images), atol=1e-6)

    hand_made = HybridViT(small, backbone=resnet_stem(small_resnet(10, in_chans=1, width=8), stages=2))
    save_checkpoint(tmp_path / "hand.pt", hand_made)
    with pytest.raises(ValueError, match="hand.pt.*hand-made backbone.*load_checkpoint"):
        load_model(tmp_path / "hand.pt")
    save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="torch.nn.modules.linear.Linear cannot be rebuilt"):
        load_model(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "old.pt", hybrid, model_args=dict(resnet="resnet18", stages=2))  # as hybrid_vit's were
    with pytest.raises(ValueError, match="older version .*'model_args'") as info:
        load_model(tmp_path / "old.pt")
    assert len(str(info.value).splitlines()) == 1


def test_checkpoint_from_another_config_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_model())
    other = create_model("digits", image_size=8, num_channels=1, num_classes=10, patch_size=4, hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    with pytest.raises(ValueError, match="does not fit this model.*cls_token|does not fit this model"):
        load_checkpoint(tmp_path / "m.pt", other)
    with pytest.raises(ValueError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_predict_and_evaluate_match_a_manual_pass(digits8):
    model = tiny_model().train()
    test_set = digits8[1]
    logits, labels = predict(model, test_set, batch_size=50)
    assert logits.shape == (128, 10) and labels.shape == (128,) and model.training  # mode restored
    images = torch.stack([test_set[i][0] for i in range(128)])
    model.eval()
    with torch.no_grad():
        manual = model(images)
    assert torch.allclose(logits, manual, atol=1e-5)
    result = evaluate(model, test_set)
    assert result["accuracy"] == pytest.approx((manual.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(manual, labels).item(), rel=1e-5)


def test_any_module_and_a_custom_loss_train(digits8, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    seen = []

    def loss_fn(model, images, labels):
        seen.append(len(labels))
        logits = model(images)
        return nn.functional.cross_entropy(logits, labels), logits

    history = train(model, *digits8, config(epochs=2, out_dir=str(tmp_path)), loss_fn=loss_fn)
    assert sum(seen) == 2 * 256 and history[-1]["val_acc"] > 0.5
    assert load_checkpoint(tmp_path / "last.pt")["model_config"] is None


def test_bf16_autocast_on_cpu_trains(digits8):
    history = train(tiny_model(), *digits8, config(epochs=1, amp=True))
    assert math.isfinite(history[0]["train_loss"])


def test_bad_config_values():
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(ValueError, match="out_dir"):
        train(tiny_model(), [], [], TrainConfig(resume=True, progress=False))


# --- exercise checks 6.1 and 6.2 -------------------------------------------------------------------

def _lr_variant(warm, decay):
    def lr_at(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
        if step < warmup_steps:
            return warm(step, base_lr, warmup_steps)
        return decay(step, base_lr, warmup_steps, total_steps, min_lr)
    return lr_at


def _cos(progress, base_lr, min_lr):
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


RIGHT_WARM = lambda s, b, w: b * (s + 1) / w  # noqa: E731
RIGHT_DECAY = lambda s, b, w, t, m: _cos((s - w) / (t - w), b, m)  # noqa: E731


@pytest.mark.parametrize("lr_at, words", [
    (_lr_variant(lambda s, b, w: b * s / w, RIGHT_DECAY), "step 0 gets lr 0"),
    (_lr_variant(lambda s, b, w: b * (s + 1) / (w + 1), RIGHT_DECAY), "never reaches base_lr"),
    (_lr_variant(RIGHT_WARM, lambda s, b, w, t, m: _cos((s - w) / t, b, m)), "does not reach min_lr"),
    (_lr_variant(RIGHT_WARM, lambda s, b, w, t, m: _cos((s - w) / (t - w), b, 0.0)), "ignores min_lr"),
    (_lr_variant(RIGHT_WARM, lambda s, b, w, t, m: _cos(s / t, b, m)), "starts at step 0"),
    (lambda s, b, w, t, m=0.0: _cos(s / t, b, m), "no warmup"),
    (_lr_variant(RIGHT_WARM, lambda s, b, w, t, m: m + (b - m) * (1 - (s - w) / (t - w))), "linear, not a cosine"),
    (lambda s, b, w, t, m=0.0: 1e-3, "should have lr"),
])
def test_check_lr_schedule_names_mistakes(lr_at, words):
    from vit_lesson import checks

    result = checks.check_lr_schedule(lr_at)
    assert result.status == "fail" and words in result.message


def test_check_lr_schedule_passes_package_and_waits_for_placeholder():
    from vit_lesson import checks

    assert checks.check_lr_schedule(warmup_cosine_lr)

    def placeholder(*args):
        raise NotImplementedError("Hint: warmup then cosine")

    assert checks.check_lr_schedule(placeholder).status == "todo"


def _groups(rule):
    def parameter_groups(model, weight_decay):
        decay = [p for n, p in model.named_parameters() if rule(n, p)]
        no_decay = [p for n, p in model.named_parameters() if not rule(n, p)]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return parameter_groups


@pytest.mark.parametrize("fn, words", [
    (_groups(lambda n, p: True), "LayerNorm gains are decayed"),
    (_groups(lambda n, p: "norm" not in n and n not in ("pos_embed", "cls_token")), "biases are decayed"),
    (_groups(lambda n, p: p.ndim > 1), "p.ndim <= 1 misses it"),
    (_groups(lambda n, p: False), "gets no weight decay"),
    (_groups(lambda n, p: p.ndim > 1 and n not in ("pos_embed", "cls_token") and "fc" not in n), "mlp.fc1.weight"),
    (lambda model, wd: [{"params": list(model.parameters())[1:], "weight_decay": 0.0}], "is in no group"),
    (lambda model, wd: [{"params": list(model.parameters()), "weight_decay": 0.0}] * 2, "two groups"),
    (lambda model, wd: {"params": list(model.parameters())}, "list of dicts"),
])
def test_check_parameter_groups_names_mistakes(fn, words):
    from vit_lesson import checks

    result = checks.check_parameter_groups(fn)
    assert result.status == "fail" and words in result.message, result.message


def test_check_parameter_groups_passes_package_and_waits_for_placeholder():
    from vit_lesson import checks

    assert checks.check_parameter_groups(parameter_groups)

    def placeholder(model, weight_decay):
        raise NotImplementedError("Hint: ndim")

    assert checks.check_parameter_groups(placeholder).status == "todo"


def test_ema_of_weights_matches_a_hand_computed_average(digits8):
    """ema_decay: the model ends with e_1 = w_1, e_t = d e_(t-1) + (1 - d) w_t over the steps' weights w_t,
    and the history's last val_acc is that model's accuracy. Reference: the same run without EMA,
    its weights recorded at every step (a loss_fn sees w_(t-1) before step t)."""
    decay, seen = 0.8, []
    default = cross_entropy_loss(0.1)

    def recording_loss(model, images, labels):
        seen.append([p.detach().clone() for p in model.parameters()])
        return default(model, images, labels)

    plain = tiny_model()
    train(plain, *digits8, config(epochs=2), loss_fn=recording_loss)
    weights = seen[1:] + [[p.detach() for p in plain.parameters()]]  # w_1 ... w_T
    expected = weights[0]
    for w in weights[1:]:
        expected = [decay * e + (1 - decay) * p for e, p in zip(expected, w)]

    averaged = tiny_model()
    history = train(averaged, *digits8, config(epochs=2, ema_decay=decay))
    for got, want in zip(averaged.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert history[-1]["val_acc"] == evaluate(averaged, digits8[1])["accuracy"]
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
