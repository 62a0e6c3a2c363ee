"""Answer keys for notebook 03's checks (:mod:`.attention`): the right attention and the wrong ones.

The test sizes are chosen so that no two axes have the same length (``B=2, H=3, N=5, d=4``,
``D = H * d = 12``): a swapped axis or a softmax over the wrong one cannot pass by accident. Each
``*_mistakes`` / ``*_variants`` function computes what a common mistake would produce, with the words
that name it; the checks compare the learner's answer with them. Nothing here grades.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..i18n import _

__all__: list[str] = []

B, H, N, HEAD_DIM = 2, 3, 5, 4
DIM = H * HEAD_DIM  # 12


def _qkv(*shape):
    shape = shape or (B, H, N, HEAD_DIM)
    return torch.randn(*shape), torch.randn(*shape), torch.randn(*shape)


# --- Exercise 3.1: scaled dot-product attention -------------------------------------------------------

def _sdpa_mistakes(q, k, v):
    """``{explanation: (out, weights)}`` for each plausible wrong attention."""
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    mistakes = {
        _("the softmax ran over the queries (dim=-2), so each column sums to 1. It must run over the keys, "
          "the last axis (dim=-1): row i says how much query i takes from each key, and sums to 1."):
            (scores / math.sqrt(d)).softmax(dim=-2),
        _("the scores were not scaled: divide q @ k^T by sqrt(d) = sqrt({d}). Without it, the dot products "
          "of d-dimensional vectors grow like sqrt(d) and the softmax saturates (one key takes everything)."
          ).format(d=d): scores.softmax(dim=-1),
        _("the scores were divided by d = {d} instead of sqrt(d) = {sqrt_d:g}: use "
          "q.shape[-1] ** 0.5 (or math.sqrt).").format(d=d, sqrt_d=math.sqrt(d)): (scores / d).softmax(dim=-1),
        _("the scores were multiplied by sqrt(d) instead of divided: use / sqrt(d) = / {sqrt_d:g}.").format(
            sqrt_d=math.sqrt(d)): (scores * math.sqrt(d)).softmax(dim=-1),
    }
    return {text: (weights @ v, weights) for text, weights in mistakes.items()}


# --- Exercise 3.2: multi-head attention from a fused qkv Linear -------------------------------------

def _layers(dim=DIM, bias=True):
    qkv, proj = nn.Linear(dim, 3 * dim, bias=bias), nn.Linear(dim, dim)
    for layer in (qkv, proj):  # larger weights than the default, so mistakes change the numbers a lot
        nn.init.normal_(layer.weight, std=0.5)
    return qkv, proj


def _heads_attention(q, k, v):
    return ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ v


def _mha_variants(x, qkv, proj, h):
    """The right answer and ``{explanation: output}`` for each plausible mistake. ``x: [B, N, D]``."""
    b, n, dim = x.shape
    d = dim // h
    with torch.no_grad():
        fused = qkv(x)                                                    # [B, N, 3D]
        q, k, v = fused.reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)      # each [B, H, N, d]
        heads = _heads_attention(q, k, v)                                  # [B, H, N, d]
        merged = heads.transpose(1, 2).reshape(b, n, dim)
        want = proj(merged)
        qn, kn, vn = fused.reshape(b, n, 3, h, d).unbind(2)                # each [B, N, H, d]: no transpose
        across = _heads_attention(qn, kn, vn)                              # attention over heads [B, N, H, H]
        qi, ki, vi = fused.reshape(b, n, h, 3, d).permute(3, 0, 2, 1, 4)   # (h three d) instead of (three h d)
        merge = lambda t: proj(t.transpose(1, 2).reshape(b, n, dim))  # noqa: E731 - [B, H, N, d] -> [B, N, D]
        scores = q @ k.transpose(-2, -1)
        qd, kd, vd = fused.reshape(b, n, 3, d, h).permute(2, 0, 4, 1, 3)  # D split as (d h) instead of (h d)
        qr, kr, vr = fused.reshape(3, b, h, n, d)                         # reshape straight to [3, B, H, N, d]
        qs, ks, vs = (t.reshape(b, h, n, d) for t in fused.chunk(3, dim=-1))  # each reshaped to [B, H, N, d]
        orders = {"k, q, v": (k, q, v), "q, v, k": (q, v, k), "v, k, q": (v, k, q), "k, v, q": (k, v, q),
                  "v, q, k": (v, q, k)}
        mistakes = {
            _("your output equals the heads' attention before the output projection: apply proj to the merged "
              "heads. Without it the heads are only concatenated, never mixed."): merged,
            _("the heads were split with view/reshape to [B, N, H, d] but never moved in front of the tokens, "
              "so the attention weights are [B, N, H, H]: attention ran across the heads of each token instead "
              "of across tokens. Add .transpose(1, 2) after the view to get [B, H, N, d]."):
                proj(across.reshape(b, n, dim)),
            _("the heads were split without the transpose and merged with one (attention ran across heads, "
              "weights [B, N, H, H]). Transpose to [B, H, N, d] right after the split, back before the merge."):
                proj(across.transpose(1, 2).reshape(b, n, dim)),
            _("the heads were merged in the wrong order: [B, H, N, d] was reshaped straight to [B, N, D], which "
              "mixes tokens. Transpose back to [B, N, H, d] first: .transpose(1, 2).reshape(B, N, D)."):
                proj(heads.reshape(b, n, dim)),
            _("the heads were merged as (d h) instead of (h d): each token's output must be head 0's d numbers, "
              "then head 1's, ... (einops: 'b h n d -> b n (h d)')."):
                proj(heads.permute(0, 2, 3, 1).reshape(b, n, dim)),
            _("the fused qkv output was split as [B, N, H, 3, d]; its layout is [q | k | v], each D wide: "
              "reshape(B, N, 3, H, d) (einops: 'b n (three h d) -> three b h n d')."):
                proj(_heads_attention(qi, ki, vi).transpose(1, 2).reshape(b, n, dim)),
            _("the scores were not divided by sqrt(d), the head size (not the hidden size D)."):
                proj((((q @ k.transpose(-2, -1)).softmax(-1)) @ v).transpose(1, 2).reshape(b, n, dim)),
            _("the scores were divided by sqrt(D) = sqrt({dim}) (the hidden size); divide by sqrt(d) with d = "
              "D / H = {d}, the size of one head.").format(dim=dim, d=d):
                proj((((q @ k.transpose(-2, -1)) / math.sqrt(dim)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, dim)),
            _("the scores were divided by D = {dim} (the hidden size), not by sqrt(d) with d = D / H = {d}, the "
              "size of one head.").format(dim=dim, d=d): merge((scores / dim).softmax(-1) @ v),
            _("the scores were divided by d = {d} instead of sqrt(d): use the square root of the head size, "
              "math.sqrt(d).").format(d=d): merge((scores / d).softmax(-1) @ v),
            _("the softmax ran over the queries (dim=-2): each query's weights must sum to 1 over the keys, "
              "softmax(dim=-1)."): merge((scores / math.sqrt(d)).softmax(-2) @ v),
            _("the heads were split on the wrong axis: D was cut as [d, H] (reshape(B, N, 3, d, H)), so each "
              "head got every H-th number. Each head is d consecutive numbers: reshape(B, N, 3, H, d)."):
                merge(_heads_attention(qd, kd, vd)),
            _("the fused output [B, N, 3D] was reshaped straight to [3, B, H, N, d]: reshape keeps memory order "
              "and mixes tokens, heads and q/k/v. Reshape to [B, N, 3, H, d], then permute(2, 0, 3, 1, 4)."):
                merge(_heads_attention(qr, kr, vr)),
            _("q, k and v were each reshaped straight from [B, N, D] to [B, H, N, d]: that mixes tokens and "
              "heads. Reshape to [B, N, H, d], then transpose(1, 2) (or permute)."):
                merge(_heads_attention(qs, ks, vs)),
            **{_("q, k and v were taken in the wrong order ({order}): the fused output is laid out [q | k | v], "
                 "so the first D numbers are the queries, then the keys, then the values.").format(order=order):
                   merge(_heads_attention(*qkv_swapped)) for order, qkv_swapped in orders.items()},
        }
    return want, mistakes


# --- Exercise 3.3: spot the bugs in the blog post's MultiHeadAttention ---------------------------------

def _find_projection(module: nn.Module, dim: int) -> nn.Linear | None:
    """The learner's output projection: a ``Linear(D, D)`` that is not query/key/value."""
    extra = [m for name, m in module.named_modules()  # also nested: Sequential(Linear, Dropout), output.dense
             if name not in ("query", "key", "value") and isinstance(m, nn.Linear)
             and m.in_features == dim and m.out_features == dim]
    if len(extra) != 1:
        return None
    holder = next((m for name, m in module.named_children() if name not in ("query", "key", "value")
                   and any(sub is extra[0] for sub in m.modules())), extra[0])
    return holder if isinstance(holder, nn.Sequential) else extra[0]  # Sequential(Linear, Dropout) as a whole


def _post_reference(x, module, h, projection):
    """The corrected post: separate q/k/v Linears, heads transposed, output projection."""
    b, n, dim = x.shape
    d = dim // h
    split = lambda t: t.view(b, n, h, d).transpose(1, 2)  # noqa: E731 - [B, H, N, d]
    q, k, v = split(module.query(x)), split(module.key(x)), split(module.value(x))
    merged = _heads_attention(q, k, v).transpose(1, 2).reshape(b, n, dim)
    as_in_post = lambda t: t.view(b, n, h, d)  # noqa: E731 - the post's bug: no transpose
    across = _heads_attention(as_in_post(module.query(x)), as_in_post(module.key(x)), as_in_post(module.value(x)))
    return merged, (projection(merged) if projection is not None else None), across
