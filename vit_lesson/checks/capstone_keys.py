"""The capstone's answer keys (notebook 10): reference patchify, attention and block parts.

:mod:`.capstone_pieces` (10.1-10.3) and :mod:`.capstone_vit` (10.4) compare the learner's code with
these, and build their known-wrong variants from them. Nothing here grades: no ``@exercise``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__: list[str] = []


def _patchify(images, p, order="c p1 p2", grid="h w"):
    """The reference, in several orders: ``[B, C, H, W] -> [B, N, C*P*P]``."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p)                    # b c h p1 w p2
    axes = {"b": 0, "c": 1, "h": 2, "p1": 3, "w": 4, "p2": 5}
    order_axes = [axes[a] for a in grid.split()] + [axes[a] for a in order.split()]
    return x.permute(0, *order_axes).reshape(B, (H // p) * (W // p), C * p * p)


def _unpatchify(patches, p, C, H, W):
    B = patches.shape[0]
    x = patches.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, H, W)


def _mha(x, qkv, proj, heads, split="3hd", scale="d", softmax_dim=-1, merge="transpose", use_proj=True,
         softmax=True):
    """Multi-head self-attention with the weights of ``qkv`` and ``proj``, in right and wrong variants."""
    B, N, D = x.shape
    d = D // heads
    t = qkv(x)
    if split == "3hd":
        q, k, v = t.reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)
    elif split == "h3d":
        q, k, v = t.reshape(B, N, heads, 3, d).permute(3, 0, 2, 1, 4)
    elif split == "no_transpose":
        q, k, v = (part.reshape(B, heads, N, d) for part in t.chunk(3, dim=-1))
    else:  # one head
        q, k, v = (part[:, None] for part in t.chunk(3, dim=-1))
        d = D
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"d": math.sqrt(d), "D": math.sqrt(D), "none": 1.0}[scale]
    weights = scores.softmax(dim=softmax_dim) if softmax else scores
    out = weights @ v                                                   # [B, H, N, d]
    out = out.transpose(1, 2).reshape(B, N, D) if merge == "transpose" else out.reshape(B, N, D)
    return proj(out) if use_proj else out


def _randomize(module: nn.Module, std: float = 0.5, norm_mean: float = 0.0) -> nn.Module:
    with torch.no_grad():
        for sub in module.modules():
            for p in sub.parameters(recurse=False):
                mean = norm_mean if isinstance(sub, nn.LayerNorm) and p.ndim == 1 and p is sub.weight else 0.0
                p.normal_(mean, std)
    return module


class _ReferenceAttention(nn.Module):
    """The check's own attention, swapped into the learner's block so 10.3 does not depend on 10.2."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        return _mha(x, self.qkv, self.proj, self.heads)
