"""Exercise 6.2 of the training notebook: the AdamW parameter groups (which parameters get weight
decay). 6.1 is in :mod:`vit_lesson.checks.training`; the framework in :mod:`vit_lesson.checks.core`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

from ..i18n import _
from .core import CheckFailed, call, exercise
from .training import _one_element

__all__ = ["check_parameter_groups"]

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
