"""Notebook 04: the Transformer encoder block (ViT paper, Eq. 2-3).

``z' = z + MSA(LN(z))`` then ``z = z' + MLP(LN(z'))``: pre-norm residual blocks. The residual
path carries the input through unchanged, so gradients reach early layers at any depth; the
blog post normalises *after* the addition (post-norm, the original Transformer), shown here as
:class:`PostNormBlock` for comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention


class Mlp(nn.Module):
    """``fc1 -> GELU -> dropout -> fc2 -> dropout``, hidden size usually ``4 x`` the width (timm's names).

    ``[B, N, D] -> [B, N, D]``, applied to every token on its own.
    """

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch for some samples, rescale the rest.

    ``x: [B, ...]``; each sample's branch is kept with probability ``1 - drop_prob`` and divided by
    it, so the expected output is unchanged and nothing needs rescaling at test time.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (a no-op in ``eval()`` mode)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    ``[B, N, D] -> [B, N, D]``; with ``output_attentions=True`` also ``[B, H, N, N]`` weights.
    Module names follow timm (``norm1``, ``attn``, ``norm2``, ``mlp``); so do the dropout arguments
    (``proj_drop``, ``attn_drop``, ``drop_path``); ``mlp_hidden_dim`` is ``ViTConfig.intermediate_size``
    (default ``4 * dim``), ``layer_norm_eps`` and ``fast_attention`` are the config's fields.
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int | None = None, qkv_bias: bool = True,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_norm_eps: float = 1e-6, fast_attention: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop, fast=fast_attention)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(dim, mlp_hidden_dim or 4 * dim, proj_drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        if output_attentions:
            attended, weights = self.attn(self.norm1(x), output_attentions=True)
        else:
            attended, weights = self.attn(self.norm1(x)), None
        x = x + self.drop_path1(attended)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return (x, weights) if output_attentions else x


class PostNormBlock(Block):
    """The blog post's ordering (post-norm, as in the original Transformer), for comparison only.

    ``x = norm1(x + attn(x))`` then ``x = norm2(x + mlp(x))``: every residual sum passes through a
    LayerNorm, so the identity path is interrupted at each layer.
    """

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        attended, weights = self.attn(x, output_attentions=True) if output_attentions else (self.attn(x), None)
        x = self.norm1(x + self.drop_path1(attended))
        x = self.norm2(x + self.drop_path2(self.mlp(x)))
        return (x, weights) if output_attentions else x
