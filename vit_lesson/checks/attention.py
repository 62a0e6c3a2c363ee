"""Exercise checks for notebook 03 (attention).

Framework: :mod:`vit_lesson.checks.core`. The test sizes, the answer keys and the catalogue of
wrong answers each check names are in :mod:`.attention_keys`.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import torch
from torch import nn

from ..i18n import _
from .attention_keys import (
    DIM,
    HEAD_DIM,
    B,
    H,
    N,
    _find_projection,
    _layers,
    _mha_variants,
    _post_reference,
    _qkv,
    _sdpa_mistakes,
)
from .core import CheckFailed, LearnerError, call, exercise, expect_close, expect_tensor, fmt_shape

__all__ = ["check_scaled_dot_product_attention", "check_multi_head_attention", "check_post_attention"]


# --- Exercise 3.1: scaled dot-product attention -------------------------------------------------------

@exercise("3.1", "scaled dot-product attention", hints=(
    "Score every query against every key, scale the scores so their spread does not grow with the head size, turn "
    "each query's scores into weights that sum to 1 over the keys, and average the values with those weights.",
    'The scores are q times the transpose of k over the last two axes, divided by the square root of the head size d; '
    'the softmax runs over the keys, which are the last axis of the scores.',
    'scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # [B, H, N, N]\n'
    'weights = scores.softmax(dim=-1)\n'
    'return weights @ v, weights',
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

@exercise("3.2", "multi-head attention", hints=(
    'One projection makes the queries, keys and values of all heads at once. Split its output into the three, and '
    'each of them into heads, so that the heads come before the tokens; attend inside each head; then merge the heads '
    'back and mix them with the output projection.',
    'qkv(x) is [B, N, 3D], laid out [q | k | v], each of them [head 0 | head 1 | ...]. Reshape it to [B, N, 3, H, d] '
    'and permute so that the 3 comes first and the heads come before the tokens. After attention, bring [B, H, N, d] '
    'back to [B, N, D] (tokens before heads), then apply proj.',
    'B, N, D = x.shape\n'
    'q, k, v = qkv(x).reshape(B, N, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)\n'
    'out, _ = scaled_dot_product_attention(q, k, v)  # [B, H, N, d]\n'
    'return proj(out.transpose(1, 2).reshape(B, N, D))',
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
    "Compare the post's layer with the Attention module above, part by part, and write down the shape of every tensor "
    "after each line of its forward.",
    "There are three bugs. One stops the cell from running at all. One is in how the heads are split: check which two "
    "axes the product of q and the transposed k multiplies. One is a layer that multi-head attention has and the "
    "post's layer lacks.",
    '1. import math (the post uses math.sqrt but never imports it).\n'
    '2. After each .view(B, N, H, d) add .transpose(1, 2), so q, k, v are [B, H, N, d] and attention runs across '
    'tokens.\n'
    '3. Add self.proj = nn.Linear(hidden_size, hidden_size) in __init__ and return self.proj(context).',
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
