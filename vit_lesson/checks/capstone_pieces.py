"""Exercise checks 10.1-10.3 of the capstone (notebook 10): the learner's patchify, attention and block.

The overview of the capstone is in :mod:`.capstone`; the answer keys these checks compare with are
in :mod:`.capstone_keys`. The piece checks 10.2 and 10.3 isolate their piece: 10.3 swaps the
learner's attention for the check's own, so a block can pass before the attention does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..i18n import _
from .capstone_keys import _mha, _patchify, _randomize, _ReferenceAttention
from .core import CheckFailed, call, exercise, expect_close, expect_tensor, fmt_shape

__all__ = ["check_capstone_patchify", "check_capstone_attention", "check_capstone_block"]


# --- 10.1 patchify ---------------------------------------------------------------------------------

@exercise("10.1", "patchify", hints=(
    "A patch is a small square of the image, but in memory its pixels are not next to each other. Split each side "
    "into a grid position and a pixel position, bring each patch's numbers together, and only then flatten.",
    "Split H into (H / P, P) and W into (W / P, P), giving [B, C, h, P, w, P]. Move the axes to [B, h, w, C, P, P] "
    "(grid row, grid column first), then merge (h, w) into N and (C, P, P) into one vector per patch.",
    "B, C, H, W = images.shape; P = patch_size\n"
    "x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)\n"
    "return x.reshape(B, (H // P) * (W // P), C * P * P)",
))
def check_capstone_patchify(patchify):
    """``patchify(images [B, C, H, W], patch_size) -> [B, N, C*P*P]``, patches row by row.

    Channel-first ``(c, p1, p2)`` (Conv2d's order) and pixel-first ``(p1, p2, c)`` (lucidrains')
    flattening both pass: the Linear after it learns either order.
    """
    orders = {"c p1 p2": _("channel first (c, p1, p2), the order of a Conv2d's weights"),
              "p1 p2 c": _("pixel first (p1, p2, c), as in lucidrains' vit-pytorch; the Linear learns either order")}
    chosen = None
    for shape, p in (((2, 3, 8, 12), 4), ((2, 3, 8, 12), 2), ((1, 1, 16, 16), 4)):
        images = torch.randn(shape)
        original = images.clone()
        B, C, H, W = shape
        N, L = (H // p) * (W // p), C * p * p
        got = call(patchify, images, p)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, L, N) and N != L:
            raise CheckFailed(_("patchify({shape}, {p}) returned {got}: one row per "
                                "*feature*. The result needs one row per patch, [B, N, C*P*P] = {expected}.").format(
                shape=fmt_shape(shape), p=p, got=fmt_shape(got.shape), expected=fmt_shape((B, N, L))))
        what = _("patchify(images {shape}, {p})").format(shape=fmt_shape(shape), p=p)
        expect_tensor(got, what, shape=(B, N, L))
        if not torch.equal(images, original):
            raise CheckFailed(_("patchify changed the images in place; return a new tensor and leave its input "
                                "alone."))
        matches = [o for o in orders if torch.allclose(got, _patchify(images, p, o))]
        if matches:
            if chosen is not None and chosen not in matches:
                raise CheckFailed(_("the order of the numbers inside a patch changes with the image size; "
                                    "flatten every patch the same way."))
            chosen = chosen or matches[0]
            continue
        wrong = {
            _("the patches are scrambled: reading the numbers in memory order, each 'patch' is a run of "
              "consecutive pixels along a row, not a P x P square. The axes have to be moved before flattening."):
                images.reshape(B, N, L),
            _("the patches come column by column; number them row by row (left to right, then top to bottom), "
              "the order the position embeddings are learned for."):
                _patchify(images, p, "c p1 p2", grid="w h"),
            _("the patches come column by column; number them row by row (left to right, then top to bottom)."):
                _patchify(images, p, "p1 p2 c", grid="w h"),
            _("each patch is transposed (pixel columns before pixel rows): keep the pixel row before the pixel "
              "column."):
                _patchify(images, p, "c p2 p1"),
            _("each 'patch' gathers pixels spread over the whole image: when splitting a side, the grid position "
              "comes first and the pixel inside the patch second."):
                images.reshape(B, C, p, H // p, p, W // p).permute(0, 3, 5, 1, 2, 4).reshape(B, N, L),
        }
        expect_close(got, _patchify(images, p), what, wrong_variants=wrong)
    return _("[2, 3, 8, 12] -> [2, 6, 48] and [1, 1, 16, 16] -> [1, 16, 16], patches row by row, each one "
             "{order}.").format(order=orders[chosen])


# --- 10.2 multi-head attention ---------------------------------------------------------------------

def _expect_layers(module, names, who, given):
    missing = [n for n in names if not isinstance(getattr(module, n, None), nn.Module)]
    if missing:
        raise CheckFailed(_("{who} has no {missing}: keep the layers {given} creates "
                            "(the check reads their weights).").format(
            who=who, missing=", ".join("self." + n for n in missing), given=given))


@exercise("10.2", "multi-head attention", hints=(
    "Every token asks every token how relevant it is, in each head separately: compare queries with keys, scale, turn "
    "each query's scores into weights that sum to one over the keys, and average the values with them; then put the "
    "heads side by side again and mix them.",
    "qkv of x is [B, N, 3D], laid out [q | k | v], each [head 0 | head 1 | ...]: reshape to [B, N, 3, heads, d] and "
    "permute so the 3 comes first and the heads come before the tokens. Scale the scores by one over the square root "
    "of d, the head size; softmax over the last axis (the keys); bring [B, heads, N, d] back to [B, N, D] with the "
    "tokens before the heads; finish with proj.",
    "B, N, D = x.shape\n"
    "q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)\n"
    "weights = (q @ k.transpose(-2, -1) / math.sqrt(D // self.heads)).softmax(dim=-1)\n"
    "out = (weights @ v).transpose(1, 2).reshape(B, N, D)   # or F.scaled_dot_product_attention(q, k, v)\n"
    "return self.proj(out)",
))
def check_capstone_attention(attention_class):
    """``attention_class(dim, heads)`` with ``qkv = Linear(dim, 3 dim)`` and ``proj = Linear(dim, dim)``;
    ``forward(x [B, N, D]) -> [B, N, D]`` equals ``F.scaled_dot_product_attention`` on the heads of ``qkv(x)``.
    Explicit softmax or SDPA both pass; the usual mistakes are named."""
    for dim, heads, shape in ((16, 4, (2, 5, 16)), (12, 3, (1, 7, 12))):
        attn = call(attention_class, dim, heads)
        if not isinstance(attn, nn.Module):
            raise CheckFailed(_("MultiHeadAttention({dim}, {heads}) should build an nn.Module, got {type}.").format(
                dim=dim, heads=heads, type=type(attn).__name__))
        _expect_layers(attn, ("qkv", "proj"), f"MultiHeadAttention({dim}, {heads})", _("the given __init__"))
        _randomize(attn.eval())
        x = torch.randn(shape)
        with torch.no_grad():
            what = _("attention(x {shape})").format(shape=fmt_shape(shape))
            got = expect_tensor(call(attn, x), what, shape=shape)
            B, N, D = shape
            q, k, v = attn.qkv(x).reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
            want = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D))
            wrong = {
                _("the scores are not scaled: divide them by the square root of the head size d before the softmax, "
                  "or the softmax saturates as d grows."): _mha(x, attn.qkv, attn.proj, heads, scale="none"),
                _("the scores are divided by the square root of the model width D; each head's dot products have only "
                  "d = D / heads terms, so scale by the square root of d."):
                    _mha(x, attn.qkv, attn.proj, heads, scale="D"),
                _("the softmax runs over the queries (the second-last axis of the scores); each query's weights must "
                  "sum to 1 over the keys, the last axis."): _mha(x, attn.qkv, attn.proj, heads, softmax_dim=-2),
                _("the scores are used without a softmax: turn each query's scores into weights that sum to 1 over "
                  "the keys."): _mha(x, attn.qkv, attn.proj, heads, softmax=False),
                _("the heads were merged without moving the head axis back: [B, heads, N, d] must become "
                  "[B, N, heads, d] before it is flattened to [B, N, D], or tokens get mixed up."):
                    _mha(x, attn.qkv, attn.proj, heads, merge="reshape"),
                _("q, k and v were cut into heads without moving the head axis: [B, N, D] read straight as "
                  "[B, heads, N, d] mixes numbers of different tokens. Split D into (heads, d), then move the "
                  "heads before the tokens."): _mha(x, attn.qkv, attn.proj, heads, split="no_transpose"),
                _("qkv's output was split as [B, N, heads, 3, d]; its layout is [all queries | all keys | all values], "
                  "so the 3 comes before the heads: [B, N, 3, heads, d]."):
                    _mha(x, attn.qkv, attn.proj, heads, split="h3d"),
                _("this is single-head attention: split D into heads of size d = D / heads and attend within each."):
                    _mha(x, attn.qkv, attn.proj, heads, split="one"),
                _("the output projection is missing: the heads, side by side again, go through self.proj."):
                    _mha(x, attn.qkv, attn.proj, heads, use_proj=False),
            }
            expect_close(got, want, what, wrong_variants=wrong)
    return _("equals softmax(q k^T / sqrt(d)) v per head, heads merged and projected (dims 16 with 4 heads, 12 "
             "with 3).")


# --- 10.3 the pre-norm block -----------------------------------------------------------------------

@exercise("10.3", "pre-norm block", hints=(
    "Two residual steps, attention then MLP. Each branch reads a normalised copy of the stream, and what it returns "
    "is added to the stream; the sum itself is never normalised.",
    "First add the attention of the norm1 of x to x; then add the MLP of the norm2 of that new x. norm1 belongs to "
    "attention, norm2 to the MLP, and the second step starts from the output of the first.",
    "x = x + self.attn(self.norm1(x))\nx = x + self.mlp(self.norm2(x))\nreturn x",
))
def check_capstone_block(block_class):
    """``block_class(dim, heads)`` with ``norm1, attn, norm2, mlp``; ``forward(x) = h + mlp(norm2(h))``
    with ``h = x + attn(norm1(x))``. The check puts its own attention into the block."""
    dim, heads = 16, 2
    block = call(block_class, dim, heads)
    if not isinstance(block, nn.Module):
        raise CheckFailed(_("Block({dim}, {heads}) should build an nn.Module, got {type}.").format(
            dim=dim, heads=heads, type=type(block).__name__))
    _expect_layers(block, ("norm1", "attn", "norm2", "mlp"), f"Block({dim}, {heads})", _("the given __init__"))
    block.attn = _ReferenceAttention(dim, heads)
    _randomize(block.eval(), norm_mean=1.0)
    n1, attn, n2, mlp = block.norm1, block.attn, block.norm2, block.mlp
    x = torch.randn(2, 5, dim) * 3 + 1  # not normalised already, so norm(x) != x
    with torch.no_grad():
        got = expect_tensor(call(block, x.clone()), _("block(x [2, 5, 16])"), shape=x.shape)
        h = x + attn(n1(x))
        want = h + mlp(n2(h))
        post = n1(x + attn(x))
        streamed = n1(x) + attn(n1(x))
        wrong = {
            _("this is the post-norm order (the sum of each branch and x is normalised, as in the original "
              "Transformer). ViT normalises what enters each branch and leaves the sum alone."):
                n2(post + mlp(post)),
            _("the attention half is post-norm: its residual sum went through norm1. Normalise only what enters "
              "the branch."): n1(x + attn(n1(x))) + mlp(n2(n1(x + attn(n1(x))))),
            _("both residual connections are missing: after each branch, add its input stream back."):
                mlp(n2(attn(n1(x)))),
            _("the attention residual is missing: the first step adds the branch to x instead of replacing x."):
                attn(n1(x)) + mlp(n2(attn(n1(x)))),
            _("the MLP residual is missing: the second step adds the MLP's output to the stream."): mlp(n2(h)),
            _("the stream itself was normalised before the attention residual: the identity path must carry x "
              "unchanged; only the branch input is normalised."): streamed + mlp(n2(streamed)),
            _("the MLP reads the stream without its LayerNorm: the second branch has its own normalisation."):
                h + mlp(h),
            _("norm1 and norm2 are swapped: attention uses norm1, the MLP norm2."):
                (x + attn(n2(x))) + mlp(n1(x + attn(n2(x)))),
            _("both branches read the block's input (a 'parallel' block): the MLP must see the stream after the "
              "attention step."): h + mlp(n2(x)),
        }
        expect_close(got, want, _("block(x [2, 5, 16])"), wrong_variants=wrong)
    return _("x + attn(norm1(x)), then x + mlp(norm2(x)): the residual stream is never normalised inside the "
             "block.")
