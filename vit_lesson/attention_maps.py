"""Notebook 07: what the ViT looks at, as tensors: attention maps, attention rollout, scores.

``model(x, output_attentions=True).attentions`` is one ``[B, H, N + 1, N + 1]`` tensor per layer:
row ``i`` of head ``h`` says how much token ``i`` takes from every token (it sums to 1). Token 0
is the class token, whose final state the head classifies, so **row 0** (attention *from* the
class token), columns ``1:`` (the ``N`` patches), laid out on the ``g x g`` patch grid, is the
picture people draw (:func:`cls_attention_map`).

One layer is not the whole story: every block adds its input back (the residual), and layers
mix what earlier layers mixed. *Attention rollout* (Abnar & Zuidema, 2020, "Quantifying
Attention Flow in Transformers") follows attention through all layers: fuse the heads, add the
identity for the residual path, renormalise the rows, multiply the layers (:func:`rollout`).

Also here: resizing a map to the image (:func:`upsample_map`) and the numbers behind the ViT
paper's Figure 7 (patch-embedding filters, position-embedding similarity, mean attention
distance). Pure torch, no plotting: scores against object masks are in
:mod:`vit_lesson.attention_score`, the pictures in :mod:`vit_lesson.figures`, the interactive
panel in :mod:`vit_lesson.explorer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .i18n import _

__all__ = [
    "HEAD_FUSIONS", "stack_attentions", "grid_side", "fuse_heads", "cls_attention", "cls_attention_map",
    "rollout", "rollout_map", "attention_maps", "upsample_map", "patch_distances", "attention_distance",
    "position_similarity", "patch_filters",
]

HEAD_FUSIONS = ("mean", "max", "min")


# --- getting the attention maps out -----------------------------------------------------------

def stack_attentions(attentions) -> torch.Tensor:
    """Per-layer attention -> one ``[L, B, H, T, T]`` tensor, with a clear error for bad input.

    Accepts what ``model(x, output_attentions=True).attentions`` returns (a tuple of ``L``
    tensors ``[B, H, T, T]``, ``T = N + 1``) or an already stacked ``[L, B, H, T, T]`` tensor.
    """
    if isinstance(attentions, torch.Tensor):
        stacked = attentions if attentions.ndim == 5 else None
    elif isinstance(attentions, Sequence) and len(attentions) > 0 and \
            all(isinstance(a, torch.Tensor) and a.ndim == 4 for a in attentions):
        shapes = {tuple(a.shape) for a in attentions}
        if len(shapes) != 1:
            raise ValueError(_("All layers' attention maps must have the same shape, got {shapes}.").format(
                shapes=sorted(shapes)))
        stacked = torch.stack(tuple(attentions))
    else:
        stacked = None
    if stacked is None or stacked.shape[-1] != stacked.shape[-2]:
        got = (tuple(attentions.shape) if isinstance(attentions, torch.Tensor)
               else f"a {type(attentions).__name__}")
        raise ValueError(_(
            "Expected attention maps as a tuple of [B, H, T, T] tensors (one per layer), got {got}. "
            "Run the model with output_attentions=True and pass `.attentions`: "
            "model(x, output_attentions=True).attentions.").format(got=got))
    return stacked


def grid_side(num_tokens: int, num_prefix_tokens: int = 1) -> int:
    """The side ``g`` of the patch grid for ``T = prefix + g * g`` tokens (raises if not square)."""
    patches = num_tokens - num_prefix_tokens
    side = math.isqrt(max(patches, 0))
    if side * side != patches or side == 0:
        raise ValueError(_(
            "{tokens} tokens minus {prefix} prefix tokens (the class token, and any distillation token or "
            "registers) leaves {patches} patches, which is not a square grid. Pass grid=(rows, cols) for a "
            "non-square image.").format(tokens=num_tokens, prefix=num_prefix_tokens, patches=patches))
    return side


def fuse_heads(attention: torch.Tensor, head="mean") -> torch.Tensor:
    """``[B, H, T, T]`` -> ``[B, T, T]``: one head (an ``int``), or the heads' ``"mean"``/``"max"``/``"min"``."""
    if isinstance(head, int):
        if not -attention.shape[1] <= head < attention.shape[1]:
            raise ValueError(_("head={head} but this layer has {heads} heads (0 to {last}); or pass "
                               "head='mean'.").format(head=head, heads=attention.shape[1], last=attention.shape[1] - 1))
        return attention[:, head]
    if head == "mean":
        return attention.mean(dim=1)
    if head == "max":
        return attention.amax(dim=1)
    if head == "min":
        return attention.amin(dim=1)
    raise ValueError(_("head must be a head index or one of {fusions}, got {head!r}.").format(
        fusions=HEAD_FUSIONS, head=head))


def _layer_index(layer: int, num_layers: int) -> int:
    if not -num_layers <= layer < num_layers:
        raise ValueError(_("layer={layer} but the model has {layers} layers (0 to {last}, or -1 for the "
                           "last).").format(layer=layer, layers=num_layers, last=num_layers - 1))
    return layer % num_layers


def _as_grid(row: torch.Tensor, grid) -> torch.Tensor:
    """``[B, N]`` -> ``[B, rows, cols]`` in row-major order (the order patches were cut in)."""
    side = math.isqrt(row.shape[-1])
    if grid is None and side * side != row.shape[-1]:
        raise ValueError(_("{columns} patch columns are not a square grid. Pass grid=(rows, cols) for a "
                           "non-square image, or num_prefix_tokens=model.num_prefix_tokens for a model with a "
                           "distillation token or registers.").format(columns=row.shape[-1]))
    rows, cols = (side, side) if grid is None else \
        ((grid, grid) if isinstance(grid, int) else tuple(grid))
    if rows * cols != row.shape[-1]:
        raise ValueError(_("grid {rows}x{cols} = {grid} patches, but the maps have {columns}.").format(
            rows=rows, cols=cols, grid=rows * cols, columns=row.shape[-1]))
    return row.reshape(row.shape[0], rows, cols)


def cls_attention(attentions, layer: int = -1, head="mean", num_prefix_tokens: int = 1) -> torch.Tensor:
    """Attention *from* the class token to each patch in one layer: ``[B, N]``.

    Row 0 of the layer's ``[B, H, T, T]`` map (the class token is the query), without the first
    ``num_prefix_tokens`` columns (its attention to itself, and to a distillation token or
    registers: ``model.num_prefix_tokens``), heads fused by ``head``. The raw weights: they sum to
    one minus the class token's attention to the prefix tokens.
    """
    stacked = stack_attentions(attentions)
    return fuse_heads(stacked[_layer_index(layer, len(stacked))], head)[:, 0, num_prefix_tokens:]


def cls_attention_map(attentions, layer: int = -1, grid=None, head="mean", num_prefix_tokens: int = 1) -> torch.Tensor:
    """:func:`cls_attention` laid out on the patch grid: ``[B, g, g]`` (row-major, like the patches)."""
    return _as_grid(cls_attention(attentions, layer, head, num_prefix_tokens), grid)


def rollout(attentions, head="mean", residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): ``L x [B, H, T, T]`` -> ``[B, T, T]``.

    For each layer ``l``: fuse the heads (``A_l``), add the identity for the residual connection
    and renormalise the rows, ``Â_l = (A_l + I) / rowsum``; then ``R = Â_L ··· Â_2 Â_1`` (the last
    layer on the left: token ``i`` at the top takes ``R[i, j]`` of input token ``j``). With the
    heads' mean, ``Â_l = 0.5 A_l + 0.5 I``, the paper's formula. Rows of ``R`` sum to 1.
    """
    stacked = stack_attentions(attentions)
    T = stacked.shape[-1]
    eye = torch.eye(T, dtype=stacked.dtype, device=stacked.device)
    result = eye.expand(stacked.shape[1], T, T)
    for attention in stacked:
        fused = fuse_heads(attention, head)
        if residual:
            fused = fused + eye
        fused = fused / fused.sum(dim=-1, keepdim=True)
        result = fused @ result
    return result


def rollout_map(attentions, layer: int = -1, grid=None, head="mean", residual: bool = True,
                num_prefix_tokens: int = 1) -> torch.Tensor:
    """The class token's row of the rollout through layers ``0..layer``, its patch columns (after
    ``num_prefix_tokens``, as in :func:`cls_attention`) on the grid: ``[B, g, g]``."""
    stacked = stack_attentions(attentions)
    upto = _layer_index(layer, len(stacked)) + 1
    return _as_grid(rollout(stacked[:upto], head, residual)[:, 0, num_prefix_tokens:], grid)


def attention_maps(model, images: torch.Tensor, method: str = "raw", layer: int = -1,
                   head="mean") -> torch.Tensor:
    """Run ``model`` on ``images [B, C, S, S]`` and return class-token maps ``[B, g, g]``.

    ``method="raw"``: :func:`cls_attention_map` of ``layer``; ``"rollout"``: :func:`rollout_map`
    through ``layer``. The model runs in eval mode, without gradients.
    """
    if method not in ("raw", "rollout"):
        raise ValueError(_("method must be 'raw' or 'rollout', got {method!r}.").format(method=method))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        attentions = model(images, output_attentions=True).attentions
    model.train(was_training)
    prefix = getattr(model, "num_prefix_tokens", 1)
    if method == "raw":
        return cls_attention_map(attentions, layer, head=head, num_prefix_tokens=prefix)
    return rollout_map(attentions, layer, head=head, num_prefix_tokens=prefix)


# --- a map at the image's size ------------------------------------------------------------------

def upsample_map(maps: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """Resize patch-grid maps to the image's size: ``[B, g, g]`` (or ``[g, g]``) -> ``[B, S, S]`` (``[S, S]``).

    ``mode="nearest"`` repeats each patch's value over its ``P x P`` pixels (what the model
    saw); ``"bilinear"`` is smoother, for overlays. Without resizing, a ``g x g`` map drawn over
    an ``S x S`` image covers only its top-left ``g x g`` pixels.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    single = maps.ndim == 2
    batch = maps[None, None] if single else maps[:, None]
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(batch.float(), size=size, mode=mode, **kwargs)[:, 0]
    return out[0] if single else out


# --- the ViT paper's Figure 7 -----------------------------------------------------------------

def patch_distances(grid, patch_size: int = 1) -> torch.Tensor:
    """Euclidean distances between patch centres in pixels: ``[N, N]`` for a ``g x g`` grid."""
    rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([y.flatten(), x.flatten()], dim=1).float() * patch_size  # [N, 2]
    return torch.cdist(centres, centres)


def attention_distance(attentions, patch_size: int, grid=None, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean attention distance (ViT paper, Figure 7 right, and Figure 11): ``[L, H]`` in pixels.

    For every patch query, the distance to every patch key weighted by the attention, summed;
    then averaged over queries and images. The class token (and a distillation token or registers:
    ``num_prefix_tokens = model.num_prefix_tokens``) has no position: its rows and columns are
    dropped and each remaining row renormalised to sum to 1. Small = a local head (like a
    convolution), large = a head that integrates information from across the image.
    """
    stacked = stack_attentions(attentions)              # [L, B, H, T, T]
    P = num_prefix_tokens
    patches = stacked[..., P:, P:]                       # [L, B, H, N, N]
    patches = patches / patches.sum(-1, keepdim=True).clamp_min(1e-12)
    rows_cols = grid if grid is not None else grid_side(stacked.shape[-1], P)
    distances = patch_distances(rows_cols, patch_size).to(patches)
    return (patches * distances).sum(-1).mean(dim=(1, 3))  # [L, H]


def position_similarity(pos_embed: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Cosine similarity between the patches' learned position embeddings: ``[1, T, D]`` -> ``[N, N]``."""
    patches = pos_embed.detach().reshape(-1, pos_embed.shape[-1])[num_prefix_tokens:].float()
    patches = F.normalize(patches, dim=-1)
    return patches @ patches.T


def patch_filters(weight: torch.Tensor, n: int = 28, pca: bool = True) -> torch.Tensor:
    """Patch-embedding filters as images: ``patch_embed.proj.weight [D, C, P, P]`` -> ``[n, C, P, P]``.

    ``pca=True`` gives the top ``n`` principal components of the ``D`` filters (ViT paper,
    Figure 7 left): the directions of pixel space the embedding is most sensitive to. Each is
    scaled to [0, 1] for display (its sign is arbitrary).
    """
    D, C, P, _ = weight.shape
    flat = weight.detach().float().reshape(D, C * P * P)
    if pca:
        flat = flat - flat.mean(dim=0)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # rows of vh: components, largest first
        flat = vh
    flat = flat[:n]
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).reshape(-1, C, P, P)
