"""Exercise checks for the training notebook (see vit_lesson.checks.core for the framework).

6.1 the warmup + cosine learning-rate schedule, 6.2 the AdamW parameter groups (which parameters
get weight decay).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import torch

from ..i18n import _
from .core import CheckFailed, call, exercise

__all__ = ["check_lr_schedule", "check_parameter_groups"]


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

PARAMETER_GROUPS_HINTS = (
    "look at each named parameter once and put it in one of two lists: weight matrices get weight decay; "
    "biases, LayerNorm gains and the position and class embeddings do not.",
    "A tensor's number of dimensions tells a vector (biases and LayerNorm gains have 1) from a weight matrix "
    "(2 or more). The position embeddings and the class token are 3-D ([1, N, D]), so catch them by name. "
    "Return a list of two dicts, each with 'params' (a list) and 'weight_decay' (0.0 for the second).",
    "The whole function:\n"
    "    decay, no_decay = [], []\n"
    "    for name, p in model.named_parameters():\n"
    "        if p.ndim <= 1 or name in (\"pos_embed\", \"cls_token\", \"dist_token\"):\n"
    "            no_decay.append(p)\n"
    "        else:\n"
    "            decay.append(p)\n"
    "    return [{\"params\": decay, \"weight_decay\": weight_decay}, {\"params\": no_decay, \"weight_decay\": 0.0}]",
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


def _tiny_vit(layers: int = 2, hidden: int = 16, heads: int = 2):
    from ..model import ViT
    from ..registry import get_config

    return ViT(get_config("micro", image_size=8, patch_size=4, num_channels=1, hidden_size=hidden,
                          num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden))


_NO_DECAY_BY_NAME = ("pos_embed", "cls_token")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_groups(parameter_groups, model, weight_decay):
    """Run ``parameter_groups(model, weight_decay)``; raise :class:`CheckFailed` naming the first mistake."""
    # The answer key, from the model as built, before the learner's code can touch it.
    named = list(model.named_parameters())
    names = {id(p): n for n, p in named}
    matrices = sorted(n for n, p in named if p.ndim >= 2 and n not in _NO_DECAY_BY_NAME)
    groups = call(parameter_groups, model, weight_decay)
    if groups is None:
        raise CheckFailed(_("parameter_groups returned None: did you forget the `return`? It should return a list "
                            "of two dicts."))
    if isinstance(groups, (dict, str, bytes, torch.Tensor)) or not isinstance(groups, Iterable):
        raise CheckFailed(_("return a list of dicts, each with 'params' (a list of parameters) and 'weight_decay'."))
    groups = list(groups)
    if not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise CheckFailed(_("return a list of dicts, each with 'params' (a list of parameters) and 'weight_decay'."))
    decay_of, seen = {}, []
    for group in groups:
        params = group["params"]
        if isinstance(params, torch.Tensor):
            raise CheckFailed(_("a group's 'params' is one tensor; it should be a list of parameters (put the "
                                "parameter in a list, or collect them with a list)."))
        for p in params:
            if id(p) not in names:
                raise CheckFailed(_("a group holds something that is not one of model's parameters "
                                    "(use model.named_parameters())."))
            seen.append(names[id(p)])
            decay_of[names[id(p)]] = group.get("weight_decay", None)
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise CheckFailed(_("{name} is in two groups; every parameter must be in exactly one.").format(
            name=duplicates[0]))
    missing = [n for n in names.values() if n not in decay_of]
    if missing:
        raise CheckFailed(_("{name} is in no group, so the optimiser would never train it.").format(name=missing[0]))
    if any(v is None for v in decay_of.values()):
        raise CheckFailed(_("give every group a 'weight_decay' (0.0 for the no-decay group)."))
    decay_of = {n: (v.item() if _one_element(v) else v) for n, v in decay_of.items()}
    odd = sorted(n for n, v in decay_of.items() if not _is_number(v))
    if odd:
        raise CheckFailed(_("the 'weight_decay' of the group holding {name} is a {type}, not a number.").format(
            name=odd[0], type=type(decay_of[odd[0]]).__name__))
    not_finite = sorted(n for n, v in decay_of.items() if not math.isfinite(v))
    if not_finite:
        raise CheckFailed(_("the 'weight_decay' of the group holding {name} is NaN or inf: use the weight_decay "
                            "argument for the decay group and 0.0 for the other.").format(name=not_finite[0]))
    negative = sorted(n for n, v in decay_of.items() if v < 0)
    if negative:
        raise CheckFailed(_("the 'weight_decay' of the group holding {name} is negative: use the weight_decay "
                            "argument for the decay group and 0.0 for the other.").format(name=negative[0]))
    decayed = {n for n, v in decay_of.items() if v > 0}
    norms = sorted(n for n in decayed if "norm" in n and n.endswith("weight"))
    if norms:
        raise CheckFailed(_("LayerNorm gains are decayed (e.g. {name}): decay pulls them towards 0, which "
                            "silences features. Leave out the 1-D parameters.").format(name=norms[0]))
    biases = sorted(n for n in decayed if n.endswith("bias"))
    if biases:
        raise CheckFailed(_("biases are decayed (e.g. {name}): they do not make the model more complex, "
                            "so decay only hurts. Leave out the 1-D parameters.").format(name=biases[0]))
    tokens = sorted(n for n in decayed if n in _NO_DECAY_BY_NAME)
    if tokens:
        raise CheckFailed(_("{name} is decayed. It has ndim 3 ([1, N, D]), so p.ndim <= 1 misses it: "
                            "the position embeddings and the class token need to be caught by name.").format(
            name=tokens[0]))
    undecayed = [n for n in matrices if n not in decayed]
    if undecayed:
        raise CheckFailed(_("{name} gets no weight decay; weight matrices should (that is where decay "
                            "regularises).").format(name=undecayed[0]))
    values = {decay_of[n] for n in matrices}
    if not all(math.isclose(v, weight_decay, rel_tol=1e-6) for v in values):  # a float32 tensor of it is fine
        got = ", ".join(f"{v:g}" for v in sorted(values))
        if len(values) == 1 and any(math.isclose(next(iter(values)), other)
                                    for other in _WEIGHT_DECAYS + _COMMON_DECAYS):
            raise CheckFailed(_("the decay group uses weight_decay={got}, but the weight_decay argument is {want} "
                                "here: is the value hard-coded? Use the argument.").format(
                                    got=got, want=f"{weight_decay:g}"))
        raise CheckFailed(_("the decay group should use the weight_decay argument ({want} here), got {got}.").format(
            want=f"{weight_decay:g}", got=got))
    return len(matrices), len(names) - len(matrices)


#: (model, weight_decay) pairs 6.2 tries; the first one's counts are in the pass message. The
#: models differ in depth and width and the values differ, so no list of names or value copied
#: into the code passes them all.
_WEIGHT_DECAYS = (0.05, 0.3, 0.01)
_COMMON_DECAYS = (0.1, 1e-4, 5e-4, 1e-2, 0.02, 0.03)


@exercise("6.2", "weight-decay parameter groups", hints=PARAMETER_GROUPS_HINTS)
def check_parameter_groups(parameter_groups):
    """``parameter_groups(model, weight_decay) -> [{"params": [...], "weight_decay": ...}, ...]``."""
    models = (lambda: _tiny_vit(), lambda: _tiny_vit(layers=3, hidden=24, heads=3), lambda: _tiny_vit(layers=1))
    counts = [_check_groups(parameter_groups, build(), weight_decay)
              for build, weight_decay in zip(models, _WEIGHT_DECAYS)]
    decayed, kept = counts[0]
    return _("{decayed} weight matrices decayed; {kept} norms, biases and embeddings left alone.").format(
        decayed=decayed, kept=kept)
