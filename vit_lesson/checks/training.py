"""Exercise checks for the training notebook (see vit_lesson.checks.core for the framework).

6.1 the warmup + cosine learning-rate schedule; 6.2, the AdamW parameter groups, is in
:mod:`vit_lesson.checks.training_groups`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..i18n import _
from .core import CheckFailed, call, exercise

__all__ = ["check_lr_schedule"]


#: Graded hints (``checks.hint("6.1")``): the idea first (it is the ``# Hint:`` line of the
#: exercise cell), then more concrete, and code only in the last.
LR_SCHEDULE_HINTS = (
    "two phases: rise in a straight line to base_lr during the warmup steps, then follow half a cosine "
    "wave from base_lr down to min_lr, reaching it exactly at total_steps.",
    "Warmup: step 0 should already have a small non-zero rate and step warmup_steps - 1 exactly base_lr, "
    "so count the steps from 1. Cosine: let progress run from 0 at step warmup_steps to 1 at step "
    "total_steps; 0.5 * (1 + cos(pi * progress)) then goes from 1 to 0: stretch it to run from base_lr "
    "to min_lr.",
    "The whole function:\n"
    "    if step < warmup_steps:\n"
    "        return base_lr * (step + 1) / warmup_steps\n"
    "    progress = (step - warmup_steps) / (total_steps - warmup_steps)\n"
    "    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))",
)

def _reference_lr(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def _schedule_mistakes(base, warmup, total, low):
    """What each common mistake gives for steps 0..total, with the words that explain it."""
    def cosine(progress, floor=low):
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def with_warmup(warm, decay):
        return [warm(s) if s < warmup else decay(s) for s in range(total + 1)]

    right_warmup = lambda s: base * (s + 1) / warmup  # noqa: E731
    right_decay = lambda s: cosine((s - warmup) / (total - warmup))  # noqa: E731
    return {
        _("warmup is off by one: step 0 gets lr 0 (a wasted step). Count the steps from 1, so the first "
          "step already learns and step warmup_steps - 1 reaches base_lr."):
            with_warmup(lambda s: base * s / warmup, right_decay),
        _("warmup is off by one the other way: it never reaches base_lr (it divides by warmup_steps + 1); "
          "the last warmup step, warmup_steps - 1, should have exactly base_lr."):
            with_warmup(lambda s: base * (s + 1) / (warmup + 1), right_decay),
        _("the cosine does not reach min_lr at step total_steps: its progress should run from 0 when the "
          "warmup ends to exactly 1 at total_steps, over the steps after the warmup only."):
            with_warmup(right_warmup, lambda s: cosine((s - warmup) / total)),
        _("the cosine ignores min_lr (it decays to 0): it should go from base_lr down to min_lr, not to 0."):
            with_warmup(right_warmup, lambda s: cosine((s - warmup) / (total - warmup), floor=0.0)),
        _("the cosine starts at step 0 instead of after the warmup: its progress should be 0 at step "
          "warmup_steps, where the warmup ends."):
            with_warmup(right_warmup, lambda s: cosine(s / total)),
        _("there is no warmup: the first warmup_steps steps must rise linearly to base_lr."):
            [cosine(s / total) for s in range(total + 1)],
        _("the decay is linear, not a cosine: follow half a cosine wave, flat at both ends."):
            with_warmup(right_warmup, lambda s: low + (base - low) * (1 - (s - warmup) / (total - warmup))),
    }


def _one_element(value) -> bool:
    """A tensor or NumPy array holding one number (``.item()`` turns it into a Python number)."""
    return ((isinstance(value, torch.Tensor) and value.numel() == 1)
            or (isinstance(value, np.ndarray) and value.size == 1))


def _as_number(value, step):
    """The learner's lr as a float: a Python or NumPy number, or a one-element tensor or array."""
    if _one_element(value):
        value = value.item()
    if value is None:
        raise CheckFailed(_("lr_at returned None at step {step}: did you forget the `return`?").format(step=step))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CheckFailed(_("lr_at should return a number, got {type} at step {step}.").format(
            type=type(value).__name__, step=step))
    value = float(value)
    if not math.isfinite(value):
        raise CheckFailed(_("lr_at returned NaN or inf at step {step}: look for a division by zero (for example "
                            "by total_steps - warmup_steps) or a log or square root of a negative number.").format(
            step=step))
    return value


#: The settings 6.1 tries, the first one shown in the messages. Each differs from the others in
#: every argument, so a number copied from one of them into the code fails on another.
LR_SETTINGS = ((1e-3, 5, 25, 1e-5), (3e-4, 2, 10, 0.0), (5e-2, 7, 40, 1e-3))


@exercise("6.1", "warmup + cosine learning rate", hints=LR_SCHEDULE_HINTS)
def check_lr_schedule(lr_at):
    """``lr_at(step, base_lr, warmup_steps, total_steps, min_lr) -> float`` for steps 0..total_steps."""
    close = lambda a, b: all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12) for x, y in zip(a, b))  # noqa: E731
    for number, (base, warmup, total, low) in enumerate(LR_SETTINGS):
        want = [_reference_lr(s, base, warmup, total, low) for s in range(total + 1)]  # before the learner's code
        mistakes = _schedule_mistakes(base, warmup, total, low)
        got = [_as_number(call(lr_at, step, base, warmup, total, low), step) for step in range(total + 1)]
        if close(got, want):
            continue
        if number > 0 and close(got, [_reference_lr(s, *LR_SETTINGS[0]) for s in range(total + 1)]):
            raise CheckFailed(_("with base_lr={base:g}, warmup_steps={warmup}, total_steps={total}, min_lr={low:g} "
                                "your lr_at gives the schedule of the first setting: are base_lr, warmup_steps, "
                                "total_steps or min_lr hard-coded?").format(base=base, warmup=warmup, total=total,
                                                                            low=low))
        for explanation, variant in mistakes.items():
            if close(got, variant):
                raise CheckFailed(explanation)
        if number == 1:  # the message this setting has always given
            raise CheckFailed(_("right for one setting but not for base_lr=3e-4, warmup_steps=2, total_steps=10, "
                                "min_lr=0: are some numbers hard-coded?"))
        step = next(s for s in range(total + 1) if not math.isclose(got[s], want[s], rel_tol=1e-6, abs_tol=1e-12))
        phase = _("warmup") if step < warmup else _("cosine")
        raise CheckFailed(_("with base_lr={base:g}, warmup_steps={warmup}, total_steps={total}, min_lr={low:g}: "
                            "step {step} ({phase}) should have lr {want:.4g}, got {got:.4g}.").format(
            base=base, warmup=warmup, total=total, low=low, step=step, phase=phase, want=want[step], got=got[step]))
    base, warmup, total, low = LR_SETTINGS[0]
    return _("linear warmup to {base:g} in {warmup} steps, then a cosine down to min_lr={low:g} "
             "at step {total}.").format(base=base, warmup=warmup, low=low, total=total)
