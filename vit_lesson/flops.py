"""Counting a ViT's parameters and FLOPs: measured on a real instance, and by formula.

FLOPs here are those of the matrix multiplications (``2 x`` multiply-adds; a ``[m, k] @ [k, n]``
product costs ``2 m k n``), which is what ``torch.utils.flop_counter.FlopCounterMode`` counts and
what papers quote. LayerNorm, softmax, GELU and bias additions are left out (under 1% of the
total at 224 px). Everything runs on PyTorch's ``meta`` device: tensors there have shapes but
no storage, so ViT-Huge's 632M parameters cost no memory and no time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .model import ViT, ViTConfig, count_parameters
from .registry import get_config

__all__ = ["measure_flops", "vit_flops", "vit_parameter_parts", "SizeRow", "size_table", "PAPER_PARAMS"]

#: Table 1 of the ViT paper (Dosovitskiy et al., 2021), as the blog post copies it.
PAPER_PARAMS = {"base": 86_000_000, "large": 307_000_000, "huge": 632_000_000}


def measure_flops(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """FLOPs of one forward pass on one image, counted by ``FlopCounterMode``.

    Build ``model`` under ``with torch.device("meta"):`` to count a large model for free; the input
    is made on the model's device.
    """
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, channels, image_size, image_size, device=device))
    return counter.get_total_flops()


def vit_flops(config: ViTConfig) -> int:
    """Matmul FLOPs of one forward pass of ``ViT(config)`` on one image, by formula.

    With ``T = N + 1 + R`` tokens (``R`` registers), width ``D``, MLP size ``M``, patch ``P``, ``C`` channels:
    patch embedding ``2 N (C P^2) D``; per block ``2 T D (3D)`` (qkv) ``+ 2 T^2 D`` (scores)
    ``+ 2 T^2 D`` (weights @ values) ``+ 2 T D D`` (proj) ``+ 2 x 2 T D M`` (fc1, fc2);
    head ``2 D K``.
    """
    N, D, M = config.num_patches, config.hidden_size, config.intermediate_size
    T, P, C, K = N + 1 + config.num_register_tokens, config.patch_size, config.num_channels, config.num_classes
    block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * M
    return 2 * N * C * P * P * D + config.num_hidden_layers * block + 2 * D * K


def vit_parameter_parts(config: ViTConfig) -> dict[str, int]:
    """The parameter count of ``ViT(config)`` split into its pieces (they sum to the total)."""
    D, M, L, K = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_classes
    P, C, N = config.patch_size, config.num_channels, config.num_patches
    qkv_bias = 3 * D if config.qkv_bias else 0
    per_block = (2 * D                      # norm1 (weight, bias)
                 + 3 * D * D + qkv_bias     # attn.qkv
                 + D * D + D                # attn.proj
                 + 2 * D                    # norm2
                 + D * M + M + M * D + D)   # mlp.fc1, mlp.fc2
    R = config.num_register_tokens
    parts = {
        "patch_embed": C * P * P * D + D,
        "cls_token": D,
        "pos_embed": (N + 1 + R) * D,
        "blocks": L * per_block,
        "norm": 2 * D,
        "head": D * K + K if K > 0 else 0,
    }
    return dict(parts, reg_token=R * D) if R else parts


@dataclass
class SizeRow:
    """One row of the size table: a preset's shape, its parameters (ours, timm's, the paper's), FLOPs."""

    name: str
    layers: int
    width: int
    mlp: int
    heads: int
    patch: int
    params: int
    timm_params: int | None
    paper_params: int | None
    flops: int
    timm_flops: int | None


def size_table(names=("tiny", "small", "base", "large", "huge"), with_timm: bool = True,
               measure: bool = True) -> list[SizeRow]:
    """Build each preset (and timm's ``VisionTransformer`` of the same shape) on the meta device and
    count its parameters and FLOPs per 224 px image. ``measure=False`` uses :func:`vit_flops`."""
    rows = []
    for name in names:
        config = get_config(name)
        with torch.device("meta"):
            ours = ViT(config)
            theirs = None
            if with_timm:
                from .convert import create_timm_model

                theirs = create_timm_model(config)
        flops = measure_flops(ours, config.image_size, config.num_channels) if measure else vit_flops(config)
        timm_flops = None
        if theirs is not None:
            timm_flops = measure_flops(theirs, config.image_size, config.num_channels) if measure else None
        rows.append(SizeRow(name, config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                            config.num_attention_heads, config.patch_size, count_parameters(ours),
                            count_parameters(theirs) if theirs is not None else None,
                            PAPER_PARAMS.get(name), flops, timm_flops))
    return rows
