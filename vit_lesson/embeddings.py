"""Notebook 02: the class token and position embeddings (ViT paper, Eq. 1).

``z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos``: a learned ``[CLS]`` token is put in front of
the ``N`` patch tokens and a learned position vector is added to each of the ``N + 1`` tokens.
Attention itself is blind to order (permuting the tokens permutes its output); ``E_pos`` is the
only thing that tells the model where a patch was.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .i18n import _
from .patches import PatchEmbedding


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Fill ``tensor`` in place from a truncated normal with std 0.02, cut at +-2 (timm's
    ``trunc_normal_``: its init for ``pos_embed`` and for every Linear weight).

    Not zeros: all-zero position embeddings start identical, so every position looks the same
    to the first layer; small random ones break the symmetry from step one.
    """
    return nn.init.trunc_normal_(tensor, std=std)


def prepend_class_token(tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """``[B, N, D]`` patch tokens and a ``[1, P, D]`` class token (``P = 1``; DeiT adds a second,
    distillation token: ``P = 2``) -> ``[B, P + N, D]``, the prefix in front of every image's patches."""
    return torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)


def input_sequence(patch_tokens: torch.Tensor, prefix_tokens: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
    """Eq. 1, ``z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos``: the one place the package builds it.

    ``patch_tokens [B, N, D]`` (the ``x_p E``), ``prefix_tokens [1, P, D]`` (the class token, and a
    distillation token for DeiT), ``pos_embed [1, P + N, D]`` -> ``[B, P + N, D]``. Used by
    :class:`ViTEmbeddings` and by :meth:`vit_lesson.model.ViT.embed`.
    """
    return prepend_class_token(patch_tokens, prefix_tokens) + pos_embed


def sincos_2d_position_embedding(grid_size, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding, ``[H*W, dim]`` (MAE / "Simple ViT" style).

    A quarter of the channels encode ``sin(y w)``, ``cos(y w)``, ``sin(x w)``, ``cos(x w)`` with
    geometric frequencies ``w``; nothing is learned and any grid size works.
    """
    height, width = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    if dim % 4 != 0:
        raise ValueError(_("The 2D sine-cosine embedding needs dim divisible by 4 (sin and cos for each of "
                           "height and width), got {dim}. Use a multiple of 4, e.g. {suggestion}.").format(
                             dim=dim, suggestion=dim + (-dim) % 4))
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4) / (dim // 4 - 1 if dim > 4 else 1))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).float()


def resize_position_embedding(pos_embed: torch.Tensor, new_grid, num_prefix_tokens: int = 1,
                              mode: str = "bicubic", antialias: bool = True, old_grid=None) -> torch.Tensor:
    """Resize learned position embeddings to a new patch grid by 2D interpolation.

    ``[1, prefix + H*W, D] -> [1, prefix + H'*W', D]``. The first ``num_prefix_tokens`` embeddings
    (the class token's; a distillation token's or registers' too: ``model.num_prefix_tokens``) are kept
    as they are; the patch embeddings are laid out on their ``H x W`` grid (``old_grid``, default:
    square), resized, and flattened again in the same row-major order.
    This is how a ViT trained at 224 px is fine-tuned at 384 px (ViT paper, section 3.2). The
    defaults (bicubic, ``antialias=True``, ``align_corners=False``) give the same numbers as timm's
    ``resample_abs_pos_embed``; the same grid size returns the input unchanged.
    """
    new_h, new_w = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(_("Expected position embeddings [1, prefix + H*W, D], got shape {shape}.").format(
            shape=tuple(pos_embed.shape)))
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if old_grid is None:
        side = math.isqrt(grid.shape[1])
        if side * side != grid.shape[1]:
            raise ValueError(
                _("{count} patch position embeddings (after {num_prefix_tokens} prefix tokens) do not "
                  "form a square grid: pass old_grid=(H, W), or num_prefix_tokens=model.num_prefix_tokens (1 for "
                  "the class token, 2 with a distillation token, 1 + R with R registers).").format(
                    count=grid.shape[1], num_prefix_tokens=num_prefix_tokens))
        old_h, old_w = side, side
    else:
        old_h, old_w = (old_grid, old_grid) if isinstance(old_grid, int) else tuple(old_grid)
        if old_h * old_w != grid.shape[1]:
            raise ValueError(_("old_grid {old_h} x {old_w} = {product} does not match the "
                               "{count} patch position embeddings.").format(
                                 old_h=old_h, old_w=old_w, product=old_h * old_w, count=grid.shape[1]))
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    grid = grid.reshape(1, old_h, old_w, -1).permute(0, 3, 1, 2)  # [1, D, H, W]: channels first
    grid = F.interpolate(grid.float(), size=(new_h, new_w), mode=mode, antialias=antialias, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, -1).to(pos_embed.dtype)  # [1, H'*W', D]
    return torch.cat([prefix, grid], dim=1)


class ViTEmbeddings(nn.Module):
    """Notebook 02's teaching module: patch embedding + class token + position embeddings + dropout.

    ``[B, C, H, W] -> [B, N + 1, D]``. It is the lesson's picture of Eq. 1 as one module; the
    package's :class:`vit_lesson.model.ViT` holds the same parameters at its top level (timm's
    names ``patch_embed.proj``, ``cls_token``, ``pos_embed``, so its state dict is timm's) and
    builds ``z_0`` with the same function, :func:`input_sequence`.
    """

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 dropout: float = 0.0):
        super().__init__()
        self.patch_embed = PatchEmbedding(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        nn.init.normal_(self.cls_token, std=1e-6)  # timm: the class token starts almost zero
        trunc_normal_(self.pos_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)                                           # [B, N, D]
        return self.pos_drop(input_sequence(tokens, self.cls_token, self.pos_embed))  # [B, N + 1, D]
