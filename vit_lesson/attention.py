"""Notebook 03: scaled dot-product attention and multi-head self-attention.

``Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V`` (Vaswani et al., 2017, Eq. 1). Multi-head
attention runs ``H`` of these side by side on ``d = D / H``-dimensional slices and mixes the heads
with one output projection. Two paths give the same numbers: a fast one
(``F.scaled_dot_product_attention``, fused kernels) and a readable one that also returns the
attention weights, which visualisation needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .i18n import _


def validate_heads(dim: int, num_heads: int) -> int:
    """Return the head size ``dim // num_heads``, or raise a ``ValueError`` that says how to fix it."""
    if num_heads <= 0 or dim % num_heads != 0:
        divisors = [h for h in range(1, min(dim, 64) + 1) if dim % h == 0]
        raise ValueError(
            _("Hidden size {dim} is not divisible by the number of heads {num_heads}: each head "
              "needs an equal slice of the hidden size. Use a number of heads that divides {dim} "
              "(for example {examples}) or change the hidden size.").format(
                dim=dim, num_heads=num_heads, examples=", ".join(map(str, divisors[-6:])))
        )
    return dim // num_heads


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 dropout: nn.Module | None = None):
    """The readable path: ``softmax(q k^T / sqrt(d)) v``.

    ``q, k, v: [..., N, d]`` -> ``(out [..., N, d], weights [..., N, N])``. Row ``i`` of
    ``weights`` is how much query token ``i`` takes from each key token; it sums to 1
    (softmax over the last axis, the keys).
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            _("q, k, v do not fit together: q {q_shape}, k {k_shape}, v {v_shape}. q and k "
              "need the same last size d (their dot product), and k and v the same number of tokens.").format(
                q_shape=tuple(q.shape), k_shape=tuple(k.shape), v_shape=tuple(v.shape)))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., N, N]
    weights = scores.softmax(dim=-1)
    out = (dropout(weights) if dropout is not None else weights) @ v
    return out, weights


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm's layout).

    ``[B, N, D] -> [B, N, D]``; with ``output_attentions=True`` also the weights ``[B, H, N, N]``.
    ``fast=True`` uses ``F.scaled_dot_product_attention``; ``fast=False`` (or asking for the
    weights) uses :func:`scaled_dot_product_attention`. Both give the same output.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fast: bool = True):
        super().__init__()
        self.head_dim = validate_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.scale = self.head_dim ** -0.5
        self.fast = fast
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                _("Attention expects tokens [B, N, D] with D = {dim}, got shape {shape}. ").format(
                    dim=self.dim, shape=tuple(x.shape))
                + (_("For one sequence use x.unsqueeze(0).") if x.ndim == 2 else
                   _("Check the hidden size: the layer was built with dim={dim}.").format(dim=self.dim)))
        B, N, D = x.shape
        # [B, N, 3D] -> [B, N, 3, H, d] -> [3, B, H, N, d]: q, k, v, each split into heads
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, N, d]
        if self.fast and not output_attentions:
            x = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
            weights = None
        else:
            x, weights = scaled_dot_product_attention(q, k, v, self.attn_drop)
        x = x.transpose(1, 2).reshape(B, N, D)  # merge heads: [B, H, N, d] -> [B, N, D]
        x = self.proj_drop(self.proj(x))
        return (x, weights) if output_attentions else x
