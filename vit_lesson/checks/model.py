"""Exercise checks for notebook 05, the whole ViT (see vit_lesson.checks.core for the framework).

- 5.1 ``classify(tokens, norm, head) -> logits``: the class-token readout.
- 5.2 ``count_vit_parameters(config) -> int``: the parameter count by formula.
"""

from __future__ import annotations

import copy
import numbers

import torch
from torch import nn

from ..flops import vit_parameter_parts
from ..i18n import _
from ..model import ViT, count_parameters
from ..registry import get_config
from .core import CheckFailed, call, exercise, expect_close, expect_tensor

__all__ = ["check_count_parameters", "check_classify"]

# Shapes chosen so that no two mistakes cost the same number of parameters.
_CONFIGS = (
    get_config("micro"),
    get_config("micro", image_size=48, patch_size=8, num_channels=1, hidden_size=96, num_hidden_layers=3,
               num_attention_heads=4, intermediate_size=200, num_classes=7),
    get_config("tiny"),
)


def _mistakes(config) -> dict[str, int]:
    """What each common counting mistake would return for ``config``."""
    parts = vit_parameter_parts(config)
    total = sum(parts.values())
    D, M, L, K = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_classes
    N = config.num_patches
    biases = D + L * (3 * D + D + M + D) + K          # patch_embed, qkv, proj, fc1, fc2, head
    norms = 2 * D * (2 * L + 1)                       # norm1, norm2 per block, final norm
    return {
        _("the biases are missing (every nn.Linear and the patch Conv2d has one: out_features numbers)"):
            total - biases,
        _("the LayerNorms are missing: each has a weight and a bias of D numbers (norm1 and norm2 in "
          "every block, plus the final norm)"): total - norms,
        _("the LayerNorms' biases are missing: a LayerNorm has 2 x D parameters (weight and bias)"):
            total - norms // 2,
        _("D numbers are missing: the class token (D numbers), or one position embedding: there are "
          "N + 1 positions (the class token has one too), so pos_embed is (N + 1) x D"): total - D,
        _("the position embeddings are missing ((N + 1) x D numbers)"): total - (N + 1) * D,
        _("the class token and the position embeddings are both missing"): total - D - (N + 1) * D,
        _("the classification head is missing (D x num_classes + num_classes)"): total - parts["head"],
        _("the head's bias is missing (num_classes numbers)"): total - K,
        _("the final LayerNorm (after the last block) is missing (2 x D)"): total - 2 * D,
        _("the MLP was counted with 4 x hidden_size; use config.intermediate_size"):
            total - L * (2 * D * M + M) + L * (2 * D * 4 * D + 4 * D),
        _("q, k and v were counted as one D x D matrix; the qkv projection is D x 3D (+ 3D bias)"):
            total - L * (2 * D * D + 2 * D),
        _("the output projection attn.proj (D x D + D) is missing in each block"): total - L * (D * D + D),
        _("the patch embedding ignores the channels: it maps C x P x P pixels to D numbers"):
            total - (config.num_channels - 1) * config.patch_size ** 2 * D,
        _("only one block was counted: multiply by num_hidden_layers"): total - (L - 1) * parts["blocks"] // L,
    }


@exercise("5.2", "count the parameters", hints=(
    'Add up the parameters of every part of the model, in the order the data flows through it: the patch embedding, '
    'the two learned embeddings, the L blocks, the final norm and the head. Every Linear has a bias, every LayerNorm '
    'has a weight and a bias.',
    'Patch embedding: a C·P·P by D matrix plus D biases. Class token: D. Position embeddings: (N + 1)·D. '
    'Each block: two LayerNorms (2D each), qkv (D by 3D plus 3D), proj (D by D plus D), fc1 (D by M plus M), '
    'fc2 (M by D plus D). Final norm: 2D. Head: D by K plus K.',
    '# D, M, L, K, C, P, N as defined at the top of the exercise cell\n'
    'block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)\n'
    'return (C * P * P * D + D) + D + (N + 1) * D + L * block + 2 * D + (D * K + K)',
))
def check_count_parameters(count_vit_parameters):
    """Compare with ``count_parameters(ViT(config))`` on three shapes; name the missing piece."""
    for config in _CONFIGS:
        with torch.device("meta"):
            want = count_parameters(ViT(config))
        got = call(count_vit_parameters, config)
        if isinstance(got, numbers.Integral) and not isinstance(got, bool):
            got = int(got)
        else:
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = int(got.item())
            elif isinstance(got, float) and got.is_integer():
                got = int(got)
            else:
                raise CheckFailed(_("count_vit_parameters should return an int, got {type}.").format(
                    type=type(got).__name__))
        if got == want:
            continue
        shape = _("(image {image}, patch {patch}, D {d}, L {layers}, MLP {mlp}, {classes} classes)").format(
            image=config.image_size, patch=config.patch_size, d=config.hidden_size, layers=config.num_hidden_layers,
            mlp=config.intermediate_size, classes=config.num_classes)
        for explanation, variant in _mistakes(config).items():
            if got == variant:
                raise CheckFailed(_("{got:,} instead of {want:,} for {shape}: {explanation}.").format(
                    got=got, want=want, shape=shape, explanation=explanation))
        parts = ", ".join(f"{k} {v:,}" for k, v in vit_parameter_parts(config).items())
        raise CheckFailed(_("{got:,} instead of {want:,} for {shape} (off by {off:+,}). The pieces: "
                            "{parts}.").format(got=got, want=want, shape=shape, off=want - got, parts=parts))
    return _("your formula matches real instances of three different shapes (micro, a custom one, Tiny).")


def _classify_once(classify, B, T, D, K):
    norm, head = nn.LayerNorm(D, eps=1e-6), nn.Linear(D, K)
    with torch.no_grad():
        nn.init.normal_(norm.weight, 1.0, 0.5), nn.init.normal_(norm.bias, 0.0, 0.5)
        tokens = torch.randn(B, T, D) * 2 + 0.5
        want = head(norm(tokens)[:, 0])  # the key first; the learner gets copies
        got = call(classify, tokens.clone(), copy.deepcopy(norm), copy.deepcopy(head))
        got = expect_tensor(got, _("classify(tokens, norm, head)"))
        if got.shape == (B, T, K):
            raise CheckFailed(_("the head ran on every token ([B, N+1, classes]); ViT classifies from the "
                                "class token alone: take tokens[:, 0] (position 0) before the head."))
        wrong = {
            _("this is the last token, tokens[:, -1] (a patch in the bottom-right corner). The class "
              "token is the one we prepended: position 0, tokens[:, 0]."): head(norm(tokens)[:, -1]),
            _("this is the mean over all tokens (global average pooling, an alternative some ViTs use); "
              "the paper's ViT reads the class token alone: tokens[:, 0]."): head(norm(tokens).mean(1)),
            _("this is the mean over the patch tokens (global average pooling); the paper's ViT reads "
              "the class token: tokens[:, 0]."): head(norm(tokens)[:, 1:].mean(1)),
            _("the final LayerNorm was skipped: y = LN(z_L^0) (Eq. 4), then the head. Use "
              "head(norm(tokens)[:, 0])."): head(tokens[:, 0]),
        }
        expect_close(got, want, _("classify(tokens, norm, head)"), wrong_variants=wrong)


@exercise("5.1", "classify from the class token", hints=(
    "Only one token's final state decides the class: which one, and what does Eq. 4 do to it before the head reads it?",
    'The class token sits at position 0. Eq. 4 applies the final LayerNorm to it; the head then turns its D numbers '
    'into one score per class.',
    'return head(norm(tokens)[:, 0])',
))
def check_classify(classify):
    """``classify(tokens [B, N+1, D], norm, head) -> [B, num_classes]``: ``head(norm(tokens)[:, 0])``."""
    for B, T, D, K in ((3, 10, 16, 5), (2, 7, 12, 3)):  # two sizes: nothing can be hard-coded
        _classify_once(classify, B, T, D, K)
    return _("logits = head(norm(tokens)[:, 0]): the class token's final state, normalised (Eq. 4).")
