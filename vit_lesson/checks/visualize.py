"""Exercise checks for the visualize notebook (see vit_lesson.checks.core for the framework).

7.1 ``cls_attention_map(attentions, layer, grid)``: the class token's attention to the patches
in one layer, heads averaged, on the patch grid. 7.2 ``rollout(attentions)``: attention rollout.
Both are fed random attention maps whose rows sum to 1 and whose heads and layers differ, so
every common mistake gives different numbers and can be named.
"""

from __future__ import annotations

import re

import torch

from ..i18n import _
from .core import CheckFailed, LearnerError, call, exercise, expect_close, expect_tensor  # noqa: F401

__all__ = ["check_cls_attention_map", "check_rollout"]


def _random_attentions(layers: int = 3, batch: int = 2, heads: int = 3, grid: int = 3) -> tuple:
    """``layers`` x ``[batch, heads, T, T]`` row-stochastic maps (T = grid^2 + 1), all different."""
    T = grid * grid + 1
    return tuple((torch.randn(batch, heads, T, T) * 2).softmax(dim=-1) for _unused in range(layers))


def _reference_map(attentions, layer: int, grid: int) -> torch.Tensor:
    return attentions[layer].mean(dim=1)[:, 0, 1:].reshape(-1, grid, grid)


HINTS_7_1 = (
    "which row holds the class token as the query, and which of its entries are patches? One map for all heads, "
    "laid out row by row.",
    "Average over the head axis first. Then take the class token's row (the query is token 0) and leave out its "
    "first entry, the class token's attention to itself: N numbers, one per patch, which a reshape lays out on "
    "the grid x grid grid (patches are numbered row by row).",
    "return attentions[layer].mean(dim=1)[:, 0, 1:].reshape(-1, grid, grid)",
)


#: The shapes 7.1 and 7.2 try: (layers, batch, heads, grid). The first is the one the messages
#: have always shown; the others change every size a learner could copy into the code.
_SHAPES = ((3, 2, 3, 3), (4, 3, 2, 4), (2, 1, 4, 2))


def _copies(attentions) -> tuple:
    """What the learner's code receives: its own copies, so writing into them cannot change the answer key."""
    return tuple(a.clone() for a in attentions)


@exercise("7.1", "cls_attention_map", hints=HINTS_7_1)
def check_cls_attention_map(cls_attention_map):
    """``cls_attention_map(attentions, layer, grid) -> [B, grid, grid]``."""
    for (layers, batch, heads, grid), asked in zip(_SHAPES, ((1, -1), (2, 0), (-2,))):
        attentions = _random_attentions(layers=layers, batch=batch, heads=heads, grid=grid)
        B, H, T, _unused = attentions[0].shape
        for layer in asked:
            _check_one_map(cls_attention_map, attentions, layer, grid)
    return _("row 0 of the layer, without the class token's own column, heads averaged, on the {grid}x{grid} "
             "grid.").format(grid=_SHAPES[0][3])


def _check_one_map(cls_attention_map, attentions, layer: int, grid: int) -> None:
    B, H, T, _unused = attentions[0].shape
    # The answer key and the known mistakes, before the learner's code runs.
    fused = attentions[layer].mean(dim=1)  # [B, T, T]
    want = _reference_map(attentions, layer, grid)
    wrong = {
        _("this is column 0 (how much each patch attends TO the class token); the map needs row 0 "
          "(how much the class token attends to each patch)."):
            fused[:, 1:, 0].reshape(B, grid, grid),
        _("the map is transposed: patches are numbered row by row (left to right, then top to "
          "bottom), so reshape(B, grid, grid) directly, without a transpose or a column-major order."):
            want.transpose(-1, -2),
        _("these are head 0's weights only: average over all heads instead."):
            attentions[layer][:, 0, 0, 1:].reshape(B, grid, grid),
        _("the heads were summed: average them, so the map stays a share of attention."):
            want * H,
        _("the map was renormalised to sum to 1 over the patches; keep the raw weights "
          "(row 0 without its first entry)."):
            want / want.sum(dim=(-2, -1), keepdim=True),
        _("the heads were combined with their maximum; average them instead (mean over the head axis)."):
            attentions[layer].amax(dim=1)[:, 0, 1:].reshape(B, grid, grid),
    }
    for count in range(1, 9):
        if count != H:
            wrong[_("the heads were summed and divided by {count}, but these maps have {heads} heads: is the "
                    "number of heads hard-coded? Average over the head axis.").format(count=count, heads=H)] = \
                want * H / count
    for other in range(len(attentions)):
        if other != layer % len(attentions):
            wrong[_("this is layer {other}'s map but layer={layer} was asked for.").format(
                other=other, layer=layer)] = \
                _reference_map(attentions, other, grid)
    try:
        got = call(cls_attention_map, _copies(attentions), layer, grid)
    except LearnerError as error:
        if re.search(rf"of size {B * T}\b", str(error)):
            raise CheckFailed(
                _("row 0 has {T} entries (N + 1): the first is the class token's attention to itself, "
                  "which has no place on the {grid}x{grid} grid. Leave that first entry out.").format(
                    T=T, grid=grid)
            ) from None
        if re.search(rf"of size {B * (T - 1)}\b", str(error)):
            raise CheckFailed(
                _("with grid={grid} (a {grid}x{grid} grid of {patches} patches) your reshape fails: is the "
                  "grid size hard-coded? Use the grid argument.").format(grid=grid, patches=T - 1)) from None
        raise
    expect_tensor(got, _("the map"))
    if tuple(got.shape) in ((B, H, grid, grid), (B * H, grid, grid)):
        raise CheckFailed(_("the map has shape {shape}: one per head. Average over the "
                            "head axis first, to get one [B, grid, grid] map.").format(shape=list(got.shape)))
    expect_close(got, want, _("the map of layer {layer}").format(layer=layer), wrong_variants=wrong)


def _reference_rollout(attentions, residual: bool = True, renormalise: bool = True,
                       reverse: bool = False, fuse: str = "mean", norm_dim: int = -1,
                       elementwise: bool = False) -> torch.Tensor:
    """The rollout, or (with the options) what a known mistake computes instead."""
    B, _heads, T, _unused = attentions[0].shape
    result = torch.eye(T).expand(B, T, T)
    for attention in attentions:
        fused = {"mean": attention.mean(dim=1), "sum": attention.sum(dim=1), "max": attention.amax(dim=1)}[fuse]
        fused = fused + (torch.eye(T) if residual else 0)
        if renormalise:
            fused = fused / fused.sum(dim=norm_dim, keepdim=True)
        result = result * fused if elementwise else result @ fused if reverse else fused @ result
    return result


HINTS_7_2 = (
    "per layer fuse the heads, account for the residual path, keep each row summing to 1; the later layer "
    "multiplies from the left.",
    "Start from the identity matrix (one [T, T] per image). For each layer, in order: average the heads, add the "
    "identity (the residual keeps a token's own state), divide each row by its sum, and multiply that matrix "
    "onto the running product from the left.",
    "B, _, T, _ = attentions[0].shape\n"
    "eye = torch.eye(T)\n"
    "result = eye.expand(B, T, T)\n"
    "for attention in attentions:\n"
    "    a = attention.mean(dim=1) + eye\n"
    "    a = a / a.sum(dim=-1, keepdim=True)\n"
    "    result = a @ result\n"
    "return result",
)


@exercise("7.2", "rollout", hints=HINTS_7_2)
def check_rollout(rollout):
    """``rollout(attentions) -> [B, T, T]``: heads averaged, ``(A + I)`` renormalised, layers multiplied."""
    for layers, batch, heads, grid in _SHAPES:
        _check_one_rollout(rollout, _random_attentions(layers=layers, batch=batch, heads=heads, grid=grid))
    return _("heads averaged, residual identity added, rows renormalised, layers multiplied last-on-the-left.")


def _check_one_rollout(rollout, attentions) -> None:
    B, _heads, T, _unused = attentions[0].shape
    # The answer key and the known mistakes, before the learner's code runs.
    want = _reference_rollout(attentions)
    wrong = {
        _("the identity (the residual path) is missing: use A + I for each layer, renormalised, "
          "before multiplying."): _reference_rollout(attentions, residual=False),
        _("the rows were not renormalised after adding the identity: divide A + I by its row sums "
          "(each row must sum to 1)."): _reference_rollout(attentions, renormalise=False),
        _("the layers were multiplied in the wrong order: the later layer goes on the left, "
          "R = Â_L ··· Â_2 Â_1."): _reference_rollout(attentions, reverse=True),
        _("the rollout was started from a layer instead of the identity, so the first layer counts twice."):
            _reference_rollout(attentions) @ _reference_rollout(attentions[:1]),
        _("A + I was divided by its column sums (dim=-2); divide each row by its own sum (dim=-1), so every "
          "row of the rollout sums to 1."): _reference_rollout(attentions, norm_dim=-2),
        _("the heads were summed, not averaged, before the identity was added: the identity then weighs only "
          "1 / (heads + 1) instead of a half. Average over the head axis."): _reference_rollout(attentions, fuse="sum"),
        _("the heads were combined with their maximum; average them instead (mean over the head axis)."):
            _reference_rollout(attentions, fuse="max"),
        _("the layers were multiplied element by element (*); the rollout chains them with matrix "
          "products (@)."): _reference_rollout(attentions, elementwise=True),
    }
    if len(attentions) > 1:
        wrong[_("this is only the last layer's A + I, renormalised: multiply the layers together, from the first "
                "to the last.")] = _reference_rollout(attentions[-1:])
        wrong[_("this is only the first layer's A + I, renormalised: multiply every layer onto the running "
                "product, not only the first.")] = _reference_rollout(attentions[:1])
    got = expect_tensor(call(rollout, _copies(attentions)), _("the rollout"))
    if tuple(got.shape) == (B, T - 1):
        raise CheckFailed(_("return the whole rollout matrix [B, T, T] = [{B}, {T}, {T}]; the class "
                            "token's row rollout[:, 0, 1:] is taken afterwards.").format(B=B, T=T))
    expect_close(got, want, _("the rollout"), wrong_variants=wrong)
