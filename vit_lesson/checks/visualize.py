"""Exercise checks for the visualize notebook (see vit_lesson.checks.core for the framework).

7.1 ``cls_attention_map(attentions, layer, grid)``: the class token's attention to the patches
in one layer, heads averaged, on the patch grid. 7.2 ``rollout(attentions)``: attention rollout.
Both are fed random attention maps whose rows sum to 1 and whose heads and layers differ, so
every common mistake gives different numbers and can be named.
"""

from __future__ import annotations

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


@exercise("7.1", "cls_attention_map", hints=HINTS_7_1)
def check_cls_attention_map(cls_attention_map):
    """``cls_attention_map(attentions, layer, grid) -> [B, grid, grid]``."""
    grid = 3
    attentions = _random_attentions(grid=grid)
    B, H, T, _unused = attentions[0].shape
    for layer in (1, -1):
        try:
            got = call(cls_attention_map, attentions, layer, grid)
        except LearnerError as error:
            if f"of size {B * T}" in str(error):
                raise CheckFailed(
                    _("row 0 has {T} entries (N + 1): the first is the class token's attention to itself, "
                      "which has no place on the {grid}x{grid} grid. Leave that first entry out.").format(
                        T=T, grid=grid)
                ) from None
            raise
        expect_tensor(got, _("the map"))
        if tuple(got.shape) in ((B, H, grid, grid), (B * H, grid, grid)):
            raise CheckFailed(_("the map has shape {shape}: one per head. Average over the "
                                "head axis first, to get one [B, grid, grid] map.").format(shape=list(got.shape)))
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
        }
        for other in range(len(attentions)):
            if other != layer % len(attentions):
                wrong[_("this is layer {other}'s map but layer={layer} was asked for.").format(
                    other=other, layer=layer)] = \
                    _reference_map(attentions, other, grid)
        expect_close(got, want, _("the map of layer {layer}").format(layer=layer), wrong_variants=wrong)
    return _("row 0 of the layer, without the class token's own column, heads averaged, on the {grid}x{grid} "
             "grid.").format(grid=grid)


def _reference_rollout(attentions, residual: bool = True, renormalise: bool = True,
                       reverse: bool = False) -> torch.Tensor:
    B, _heads, T, _unused = attentions[0].shape
    result = torch.eye(T).expand(B, T, T)
    for attention in attentions:
        fused = attention.mean(dim=1) + (torch.eye(T) if residual else 0)
        if renormalise:
            fused = fused / fused.sum(dim=-1, keepdim=True)
        result = result @ fused if reverse else fused @ result
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
    attentions = _random_attentions(layers=3)
    B, _heads, T, _unused = attentions[0].shape
    got = expect_tensor(call(rollout, attentions), _("the rollout"))
    if tuple(got.shape) == (B, T - 1):
        raise CheckFailed(_("return the whole rollout matrix [B, T, T] = [{B}, {T}, {T}]; the class "
                            "token's row rollout[:, 0, 1:] is taken afterwards.").format(B=B, T=T))
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
    }
    expect_close(got, want, _("the rollout"), wrong_variants=wrong)
    return _("heads averaged, residual identity added, rows renormalised, layers multiplied last-on-the-left.")
