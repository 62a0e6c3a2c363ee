"""Exercise checks for notebook 08, distillation (see vit_lesson.checks.core for the framework)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from ..i18n import _
from .core import CheckFailed, call, exercise, expect_close, expect_tensor

__all__ = ["check_distillation_loss", "check_hard_distillation_loss", "check_loss_mirror"]


def _kl(log_input, target):
    """``F.kl_div(log_input, target, reduction="batchmean")`` written out: ``sum target * (log target - input) / B``."""
    return F.kl_div(log_input, target, reduction="batchmean")


def _logits(seed: int = 0, batch: int = 8, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=g) * 2
    teacher = torch.randn(batch, classes, generator=g) * 3
    labels = torch.randint(0, classes, (batch,), generator=g)
    return student, teacher, labels


def _distillation_variants(s, t, y, alpha, T):
    """The right loss and what each common mistake computes instead."""
    ce = F.cross_entropy(s, y)
    log_ps, ps = F.log_softmax(s / T, -1), F.softmax(s / T, -1)
    log_pt, pt = F.log_softmax(t / T, -1), F.softmax(t / T, -1)
    kl = _kl(log_ps, pt)
    right = alpha * ce + (1 - alpha) * T ** 2 * kl
    K, B = s.shape[1], s.shape[0]
    soft = {
        _("the soft term is missing the factor T² (T={T:g}): its gradient is then {T_squared:g}x too small, "
          "and it shrinks like 1/T² as T grows. Hinton et al. multiply the KL by T² to keep the "
          "teacher's signal the same size at any temperature.").format(T=T, T_squared=T ** 2): kl,
        _("the soft term is multiplied by T, not T² (T={T:g}).").format(T=T): T * kl,
        _("KL's input must be the student's LOG-probabilities, not its probabilities: F.kl_div(input, "
          "target) computes target * (log target - input)."):
            T ** 2 * F.kl_div(ps, pt, reduction="batchmean"),
        _("the target of F.kl_div must be the teacher's probabilities, not its log-probabilities "
          "(unless you pass log_target=True)."): T ** 2 * F.kl_div(log_ps, log_pt, reduction="batchmean"),
        _("the KL arguments are swapped: you computed KL(student ‖ teacher). The student's "
          "log-probabilities are the input and the teacher's probabilities the target."): T ** 2 * _kl(log_pt, ps),
        _("the temperature divides only the student's logits; the teacher's must be softened too."):
            T ** 2 * _kl(log_ps, F.softmax(t, -1)),
        _("the temperature divides only the teacher's logits; the student's must be softened too."):
            T ** 2 * _kl(F.log_softmax(s, -1), pt),
        _("reduction='mean' averages over all B x K = {numbers} numbers, which divides the KL by the "
          "number of classes K = {K}; the KL divergence is a sum over classes, so use "
          "reduction='batchmean' (sum over classes, mean over the batch).").format(numbers=B * K, K=K): T ** 2 * kl / K,
        _("reduction='sum' adds up the batch; use reduction='batchmean' so the loss does not grow "
          "with the batch size (B = {B}).").format(B=B): T ** 2 * kl * B,
    }
    wrong = {message: alpha * ce + (1 - alpha) * term for message, term in soft.items()}
    wrong[_("alpha and 1 - alpha are swapped: alpha (here {alpha:g}) weighs the cross-entropy with the "
            "true labels, 1 - alpha the teacher's soft term.").format(alpha=alpha)] = \
        (1 - alpha) * ce + alpha * T ** 2 * kl
    for other in (1.0, 2.0, 3.0, 4.0, 5.0, 10.0):
        if other != T:
            soft_other = _kl(F.log_softmax(s / other, -1), F.softmax(t / other, -1))
            wrong[_("your loss ignores the `temperature` argument (asked for T={T:g}, it computed T={other:g}): "
                    "is T a global variable, as in the blog post?").format(T=T, other=other)] = \
                alpha * ce + (1 - alpha) * other ** 2 * soft_other
    wrong[_("the cross-entropy is computed on softened logits (student / T); the label term uses the "
            "student's plain logits.")] = alpha * F.cross_entropy(s / T, y) + (1 - alpha) * T ** 2 * kl
    wrong[_("the soft term is divided by T² (T={T:g}); multiply the KL by T² instead.").format(T=T)] = \
        alpha * ce + (1 - alpha) * kl / T ** 2
    entropy = -(pt * log_pt).sum(-1).mean()
    wrong[_("the soft term is the cross-entropy with the teacher's probabilities, which is the KL plus the "
            "teacher's entropy: the same gradient, but the loss is not 0 when the student matches the teacher. "
            "Use the KL divergence (F.kl_div).")] = alpha * ce + (1 - alpha) * T ** 2 * (kl + entropy)
    wrong[_("the soft term is not weighted by 1 - alpha: alpha weighs the cross-entropy with the labels, "
            "1 - alpha the teacher's soft term.")] = alpha * ce + T ** 2 * kl
    wrong[_("the cross-entropy with the labels is not weighted by alpha: alpha weighs it, 1 - alpha the "
            "teacher's soft term.")] = ce + (1 - alpha) * T ** 2 * kl
    for other in _ALPHAS:
        if other != alpha:
            wrong[_("your loss ignores the `alpha` argument (asked for alpha={alpha:g}, it computed "
                    "alpha={other:g}): is alpha hard-coded?").format(alpha=alpha, other=other)] = \
                other * ce + (1 - other) * T ** 2 * kl
    return right, wrong


#: alpha values a learner might have typed into the code instead of using the argument.
_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)


def _scalar_answer(got, what):
    """Fail with a named mistake unless the learner's loss is a one-number tensor; return it as a 0-d tensor."""
    if got is None:
        raise CheckFailed(_("your function returned None: did you forget the `return`?"))
    if isinstance(got, numbers.Real) and not isinstance(got, bool):
        raise CheckFailed(_("your function returned a Python number ({type}), not a tensor: .item() or float() "
                            "cuts the loss off from the graph, so no gradient reaches the student. Return the "
                            "tensor itself.").format(type=type(got).__name__))
    return expect_tensor(got, what)


HINTS_8_1 = (
    "soften the student's and the teacher's logits with the same temperature, measure how far the student's "
    "softened distribution is from the teacher's, and scale that term so that its pull does not fade as the "
    "temperature grows.",
    "The soft term is a KL divergence, one per example, averaged over the batch. PyTorch's KL takes the "
    "student's LOG-probabilities as its input and the teacher's probabilities as its target (reduction "
    "'batchmean'). Use the temperature argument, multiply the KL by T squared, and mix it with the plain "
    "cross-entropy on the labels: alpha for the labels, 1 - alpha for the teacher.",
    "T = temperature\n"
    "soft = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1),\n"
    "                reduction=\"batchmean\")\n"
    "return alpha * F.cross_entropy(student_logits, labels) + (1 - alpha) * T ** 2 * soft",
)

HINTS_8_2 = (
    "turn the teacher's logits into a label, its most likely class, and use it as a second target beside the "
    "true label, weighted 1 - alpha.",
    "The teacher's label for each image is the index of its largest logit. The loss is two ordinary "
    "cross-entropies of the student's logits, one with the true labels (weight alpha) and one with the "
    "teacher's labels (weight 1 - alpha); no temperature, no softmax of the teacher.",
    "teacher_labels = teacher_logits.argmax(dim=-1)\n"
    "return alpha * F.cross_entropy(student_logits, labels) "
    "+ (1 - alpha) * F.cross_entropy(student_logits, teacher_labels)",
)


#: (alpha, temperature, batch, classes) for 8.1 and (alpha, batch, classes) for 8.2: every number a
#: learner could copy into the code changes between the two runs.
_SOFT_RUNS = ((0.3, 4.0, 8, 10), (0.8, 2.0, 5, 7))
_HARD_RUNS = ((0.5, 8, 10), (0.2, 6, 5))


@exercise("8.1", "distillation loss", hints=HINTS_8_1)
def check_distillation_loss(distillation_loss):
    """``distillation_loss(student_logits, teacher_logits, labels, alpha, temperature) -> scalar``."""
    for seed, (alpha, T, batch, classes) in enumerate(_SOFT_RUNS):
        s, t, y = _logits(seed, batch, classes)
        right, wrong = _distillation_variants(s, t, y, alpha, T)  # the answer key, before the learner's code
        student = s.clone().requires_grad_(True)
        got = call(distillation_loss, student, t.clone(), y.clone(), alpha=alpha, temperature=T)
        got = _scalar_answer(got, _("Your loss"))
        if got.numel() != 1:
            raise CheckFailed(_("The loss should be one number (a scalar), got shape {shape}: "
                                "average over the batch (reduction='batchmean' for the KL, the default "
                                "'mean' for the cross-entropy).").format(shape=list(got.shape)))
        if not torch.isfinite(got.detach()).all():
            raise CheckFailed(_("The loss at alpha={alpha:g}, temperature={T:g} is NaN or inf. In a distillation "
                                "loss that is most often F.kl_div given the teacher's log-probabilities as its "
                                "target (their log is NaN): the target must be the teacher's probabilities, or pass "
                                "log_target=True. A log of a softmax (instead of log_softmax) can also reach "
                                "log 0.").format(alpha=alpha, T=T))
        expect_close(got.reshape(()), right,
                     _("The loss at alpha={alpha:g}, temperature={T:g}").format(alpha=alpha, T=T), wrong, atol=1e-5)
        if not got.requires_grad:
            raise CheckFailed(_("The loss has no gradient: did you .detach() the student's logits or use "
                                ".item()? The student learns through this loss."))
        call(got.reshape(()).backward)
        if student.grad is None or not torch.isfinite(student.grad).all():
            raise CheckFailed(_("No finite gradient reached the student's logits."))
    return _("alpha * CE + (1 - alpha) * T² * KL(teacher ‖ student), batch-averaged, for (alpha, T) = "
             "(0.3, 4) and (0.8, 2).")


def _hard_variants(s, t, y, alpha):
    """The right hard-distillation loss and what each common mistake computes instead."""
    teacher_labels = t.argmax(-1)
    ce, ce_teacher = F.cross_entropy(s, y), F.cross_entropy(s, teacher_labels)
    pt = F.softmax(t, -1)
    wrong = {
        _("the teacher's term uses its probabilities (a soft target); hard distillation uses its "
          "decision, its top class, as an ordinary class label."):
            alpha * ce + (1 - alpha) * -(pt * F.log_softmax(s, -1)).sum(-1).mean(),
        _("alpha and 1 - alpha are swapped: alpha (here {alpha:g}) weighs the true labels.").format(alpha=alpha):
            (1 - alpha) * ce + alpha * ce_teacher,
        _("only the true labels are used; add the cross-entropy with the teacher's labels."): ce * alpha,
        _("only the teacher's labels are used; add alpha * the cross-entropy with the true labels."):
            (1 - alpha) * ce_teacher,
        _("the second label is the student's own top class; hard distillation uses the teacher's "
          "(teacher_logits.argmax(dim=-1))."): alpha * ce + (1 - alpha) * F.cross_entropy(s, s.argmax(-1)),
        _("the two cross-entropies are not weighted: alpha weighs the true labels, 1 - alpha the "
          "teacher's labels."): ce + ce_teacher,
    }
    for other in _ALPHAS:
        if other != alpha:
            wrong[_("your loss ignores the `alpha` argument (asked for alpha={alpha:g}, it computed "
                    "alpha={other:g}): is alpha hard-coded?").format(alpha=alpha, other=other)] = \
                other * ce + (1 - other) * ce_teacher
    return alpha * ce + (1 - alpha) * ce_teacher, wrong


@exercise("8.2", "hard distillation loss", hints=HINTS_8_2)
def check_hard_distillation_loss(hard_distillation_loss):
    """``hard_distillation_loss(student_logits, teacher_logits, labels, alpha) -> scalar``."""
    for seed, (alpha, batch, classes) in enumerate(_HARD_RUNS):
        s, t, y = _logits(seed + 5, batch, classes)
        right, wrong = _hard_variants(s, t, y, alpha)  # the answer key, before the learner's code
        got = _scalar_answer(call(hard_distillation_loss, s.clone(), t.clone(), y.clone(), alpha=alpha),
                             _("Your loss"))
        if got.numel() != 1:
            raise CheckFailed(_("The loss should be a scalar, got shape {shape}.").format(shape=list(got.shape)))
        expect_close(got.reshape(()), right, _("The loss at alpha={alpha:g}").format(alpha=alpha), wrong, atol=1e-5)
    return _("alpha * CE(student, labels) + (1 - alpha) * CE(student, teacher's argmax), for alpha = 0.5 and 0.2.")


def check_loss_mirror(notebook_fn, package_fn, *inputs, atol: float = 1e-6, **kwargs) -> None:
    """Raise ``AssertionError`` unless a loss written in a notebook and its ``vit_lesson`` copy agree.

    Both are called with the same ``inputs``/``kwargs``; prints a ✅ line when they do.
    """
    got, want = notebook_fn(*inputs, **kwargs), package_fn(*inputs, **kwargs)
    diff = (got - want).abs().max().item()
    name = getattr(package_fn, "__qualname__", None) or type(package_fn).__name__
    module = getattr(package_fn, "__module__", None) or type(package_fn).__module__
    if diff > atol:
        raise AssertionError(f"The notebook's loss and {module}.{name} disagree: {got.item():.6f} vs "
                             f"{want.item():.6f}. Has one of them changed?")
    print("✅ " + _("Mirror: the notebook's loss = {package}.").format(package=f"{module}.{name}"))
