"""Exercise checks for notebook 03 (attention).

Framework: :mod:`vit_lesson.checks.core`. The test sizes are chosen so that no two axes have the
same length (``B=2, H=3, N=5, d=4``, ``D = H * d = 12``): a swapped axis or a softmax over the
wrong one cannot pass by accident. Each check computes what the common mistakes would produce and
names the mistake when the learner's answer matches one of them.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import torch
from torch import nn

from ..i18n import _
from .core import CheckFailed, LearnerError, call, exercise, expect_close, expect_tensor, fmt_shape

__all__ = ["check_scaled_dot_product_attention", "check_multi_head_attention", "check_post_attention"]

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
          "of d-dimensional vectors grow like sqrt(d) and the softmax saturates (one key takes everything).").format(d=d):
            scores.softmax(dim=-1),
        _("the scores were divided by d = {d} instead of sqrt(d) = {sqrt_d:g}: use "
          "q.shape[-1] ** 0.5 (or math.sqrt).").format(d=d, sqrt_d=math.sqrt(d)): (scores / d).softmax(dim=-1),
        _("the scores were multiplied by sqrt(d) instead of divided: use / sqrt(d) = / {sqrt_d:g}.").format(
            sqrt_d=math.sqrt(d)): (scores * math.sqrt(d)).softmax(dim=-1),
    }
    return {text: (weights @ v, weights) for text, weights in mistakes.items()}


@exercise("3.1", "scaled dot-product attention", hints=(
    "Score every query against every key, scale the scores so their spread does not grow with the head size, turn each query's scores into weights that sum to 1 over the keys, and average the values with those weights.",
    'The scores are q times the transpose of k over the last two axes, divided by the square root of the head size d; the softmax runs over the keys, which are the last axis of the scores.',
    'scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # [B, H, N, N]\nweights = scores.softmax(dim=-1)\nreturn weights @ v, weights',
))
def check_scaled_dot_product_attention(attention):
    """``attention(q, k, v) -> (out [B, H, N, d], weights [B, H, N, N])``, softmax(q k^T / sqrt(d)) v.

    Any correct way passes: an explicit softmax, ``F.scaled_dot_product_attention`` for the output
    with the weights computed beside it, einsum or ``@``.
    """
    for q, k, v in (_qkv(), _qkv(1, 2, 7, 16)):
        what = _("attention(q, k, v) with q, k, v of shape {shape}").format(shape=fmt_shape(q.shape))
        result = call(attention, q.clone(), k.clone(), v.clone())
        if isinstance(result, torch.Tensor):
            raise CheckFailed(_("{what} returned one tensor; return two: (out, weights). The notebook draws "
                                "the weights, and Attention(output_attentions=True) hands them out.").format(what=what))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise CheckFailed(_("{what} should return a pair (out, weights), got {type}.").format(
                what=what, type=type(result).__name__))
        out, weights = result
        n, d = q.shape[-2], q.shape[-1]
        expect_tensor(weights, _("weights"))
        expect_tensor(out, _("out"))
        scores = q @ k.transpose(-2, -1)
        want_weights = (scores / math.sqrt(d)).softmax(dim=-1)
        mistakes = _sdpa_mistakes(q, k, v)
        if tuple(weights.shape) != (*q.shape[:-2], n, n):
            raise CheckFailed(_("weights should be [B, H, N, N] = {expected} (one row per "
                                "query, one column per key), got {shape}.").format(
                expected=fmt_shape((*q.shape[:-2], n, n)), shape=fmt_shape(weights.shape)))
        raw = {_("weights are the raw scores q @ k^T / sqrt(d): apply the softmax over the keys (dim=-1) "
                 "so that each row sums to 1."): scores / math.sqrt(d),
               _("weights are exp(scores) without dividing by their sum: use .softmax(dim=-1), which also "
                 "normalises each row to sum to 1."): (scores / math.sqrt(d)).exp()}
        expect_close(weights, want_weights, _("weights"),
                     wrong_variants={**{t: w for t, (_unused, w) in mistakes.items()}, **raw})
        expect_close(out, want_weights @ v, _("out"),
                     wrong_variants={_("out is weights^T @ v: multiply weights @ v (each query row mixes the "
                                       "value rows)."): want_weights.transpose(-2, -1) @ v,
                                     _("out is q @ k^T @ v without the softmax: the weighted sum must use "
                                       "the normalised weights."): scores / math.sqrt(d) @ v})
    return _("softmax(q k^T / sqrt(d)) v with weights summing to 1 over the keys, for d = 4 and d = 16 "
             "(weights {shape}).").format(shape=fmt_shape((B, H, N, N)))


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


@exercise("3.2", "multi-head attention", hints=(
    'One projection makes the queries, keys and values of all heads at once. Split its output into the three, and each of them into heads, so that the heads come before the tokens; attend inside each head; then merge the heads back and mix them with the output projection.',
    'qkv(x) is [B, N, 3D], laid out [q | k | v], each of them [head 0 | head 1 | ...]. Reshape it to [B, N, 3, H, d] and permute so that the 3 comes first and the heads come before the tokens. After attention, bring [B, H, N, d] back to [B, N, D] (tokens before heads), then apply proj.',
    'B, N, D = x.shape\nq, k, v = qkv(x).reshape(B, N, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)\nout, _ = scaled_dot_product_attention(q, k, v)  # [B, H, N, d]\nreturn proj(out.transpose(1, 2).reshape(B, N, D))',
))
def check_multi_head_attention(multi_head_attention):
    """``multi_head_attention(x [B, N, D], qkv, proj, num_heads) -> [B, N, D]``.

    ``qkv`` is ``nn.Linear(D, 3D)`` (output laid out ``[q | k | v]``, timm's layout), ``proj`` is
    ``nn.Linear(D, D)``. Passes fused or separate q/k/v, einops or reshape, SDPA or explicit softmax.
    """
    for x, h in ((torch.randn(B, N, DIM), H), (torch.randn(1, 7, 16), 2)):
        qkv, proj = _layers(x.shape[-1])
        what = _("multi_head_attention(x {shape}, qkv, proj, num_heads={h})").format(shape=fmt_shape(x.shape), h=h)
        with torch.no_grad():
            want, mistakes = _mha_variants(x, qkv, proj, h)  # the key first; the learner gets copies
            got = expect_tensor(call(multi_head_attention, x.clone(), copy.deepcopy(qkv), copy.deepcopy(proj), h), what)
        if got.shape != want.shape:
            raise CheckFailed(_("{what} should return [B, N, D] = {expected}, got {shape}. "
                                "Merge the heads back: [B, H, N, d] -> transpose(1, 2) -> reshape(B, N, D).").format(
                what=what, expected=fmt_shape(want.shape), shape=fmt_shape(got.shape)))
        expect_close(got, want, _("your output"), wrong_variants=mistakes, atol=1e-4)
    return _("{shape} with {heads} heads of size {head_dim}, and [1, 7, 16] with 2 heads: split, attend, "
             "merge, project — the same numbers as vit_lesson.attention.Attention.").format(
        shape=fmt_shape((B, N, DIM)), heads=H, head_dim=HEAD_DIM)


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


def _post_attention_other_size(attention_class, dim=16, heads=2):
    """The fixed layer at another width and head count: nothing about the sizes may be hard-coded."""
    module = call(attention_class, SimpleNamespace(hidden_size=dim, num_heads=heads))
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.5)
    module.eval()
    x = torch.randn(B, N, dim)
    with torch.no_grad():
        _merged, want, _across = _post_reference(x, module, heads, _find_projection(module, dim))
        try:
            got = call(module, x.clone())
        except LearnerError as error:
            raise CheckFailed(_("with hidden_size={dim} and {heads} heads your layer fails ({error}): are the "
                                "head count or the head size hard-coded? Read both from config.").format(
                dim=dim, heads=heads, error=str(error).rstrip("."))) from None
    if want is None or not isinstance(got, torch.Tensor) or got.shape != want.shape or \
            not torch.allclose(got, want, atol=1e-4):
        raise CheckFailed(_("your layer is right with hidden_size={dim0} and {heads0} heads but not with "
                            "hidden_size={dim} and {heads} heads: are the head count or the head size hard-coded? "
                            "Read both from config.").format(dim0=DIM, heads0=H, dim=dim, heads=heads))


@exercise("3.3", "spot the bugs", hints=(
    "Compare the post's layer with the Attention module above, part by part, and write down the shape of every tensor after each line of its forward.",
    "There are three bugs. One stops the cell from running at all. One is in how the heads are split: check which two axes the product of q and the transposed k multiplies. One is a layer that multi-head attention has and the post's layer lacks.",
    '1. import math (the post uses math.sqrt but never imports it).\n2. After each .view(B, N, H, d) add .transpose(1, 2), so q, k, v are [B, H, N, d] and attention runs across tokens.\n3. Add self.proj = nn.Linear(hidden_size, hidden_size) in __init__ and return self.proj(context).',
))
def check_post_attention(attention_class):
    """``attention_class(config)`` with ``config.hidden_size``, ``config.num_heads``; ``forward(x) -> [B, N, D]``.

    The blog post's ``MultiHeadAttention`` has three bugs: ``math`` is not imported, the heads are
    never transposed in front of the tokens (so attention runs across heads), and there is no
    output projection. Separate query/key/value Linear layers are fine and are kept.
    """
    config = SimpleNamespace(hidden_size=DIM, num_heads=H)
    module = call(attention_class, config)
    if not isinstance(module, nn.Module):
        raise CheckFailed(_("attention_class(config) should build an nn.Module, got {type}.").format(
            type=type(module).__name__))
    for name in ("query", "key", "value"):
        if not isinstance(getattr(module, name, None), nn.Linear):
            raise CheckFailed(_("keep the post's separate self.{name} = nn.Linear(hidden_size, hidden_size); "
                                "the check copies weights into it (separate q/k/v is not a bug).").format(name=name))
    torch.manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.5)
    module.eval()
    projection = _find_projection(module, DIM)

    # With as many tokens as heads the post's code runs (its final view happens to fit) — and is wrong.
    x_square = torch.randn(B, H, DIM)
    with torch.no_grad():
        reference = _post_reference(x_square, module, H, projection)  # the key before the learner's code runs
        try:
            got = expect_tensor(call(module, x_square.clone()), _("forward(x)"))
        except LearnerError as error:
            if "math" in str(error):
                raise CheckFailed(_("`math` is not defined: the post never imports it. Add `import math` at the "
                                    "top of the cell.")) from None
            raise
        merged, want, across = reference
        post_out = across.permute(0, 2, 1, 3).reshape(B, H, DIM)  # the post's merge, N == H
        across_msg = _("attention ran across the heads, not across the tokens: after .view(B, N, H, d) the "
                       "tensors are [B, N, H, d], so q @ k^T gives weights [B, N, H, H] (head-to-head, inside each "
                       "token). Add .transpose(1, 2) after each view to get [B, H, N, d].")
        variants = [post_out, across.reshape(B, H, DIM)]  # the post's merge, or a plain reshape
        variants += [projection(v) for v in variants] if projection is not None else []
        if any(v.shape == got.shape and torch.allclose(got, v, atol=1e-4) for v in variants):
            raise CheckFailed(across_msg)

    x = torch.randn(B, N, DIM)
    what = _("forward(x) with x {shape}").format(shape=fmt_shape(x.shape))
    with torch.no_grad():
        reference = _post_reference(x, module, H, projection)
        try:
            got = expect_tensor(call(module, x.clone()), what)
        except LearnerError as error:
            if "invalid for input of size" in str(error):
                raise CheckFailed(_("{error}. With {n} tokens and {h} heads the post's final view fails: the "
                                    "context is [B, N, H, d], not [B, H, N, d], because the heads were never "
                                    "transposed in front of the tokens. Add .transpose(1, 2) after each view.").format(
                    error=str(error).rstrip("."), n=N, h=H)) from None
            raise
        merged, want, across = reference
    if got.shape != (B, N, DIM):
        raise CheckFailed(_("{what} should return [B, N, D] = {expected}, got {shape}.").format(
            what=what, expected=fmt_shape((B, N, DIM)), shape=fmt_shape(got.shape)))
    if torch.allclose(got, merged, atol=1e-4):
        raise CheckFailed(_("the heads now attend across tokens (good), but the output is the concatenated heads "
                            "as they are: the output projection is missing. Add self.proj = nn.Linear(hidden_size, "
                            "hidden_size) in __init__ and return self.proj(context)."))
    if projection is None:
        extra = [n for n, m in module.named_children() if n not in ("query", "key", "value")]
        raise CheckFailed(_("the output projection is missing: add one nn.Linear(hidden_size, hidden_size) (e.g. "
                            "self.proj) besides query/key/value and apply it last (found extra modules: "
                            "{extra}).").format(extra=extra or _("none")))
    expect_close(got, want, _("your output"), atol=1e-4)
    _post_attention_other_size(attention_class)
    return _("all three bugs fixed, and the layer matches the reference for 3 and 5 tokens: (1) `math` is "
             "imported, (2) the heads are transposed to [B, H, N, d], so attention runs across tokens, not "
             "across heads, (3) the output projection mixes the heads.")
