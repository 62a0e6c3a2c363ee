"""Exercise checks for notebook 04, the encoder block (see vit_lesson.checks.core for the framework).

- 4.1 ``block_forward(x, norm1, attn, norm2, mlp)``: the pre-norm residual block.
- 4.2 ``drop_path(x, drop_prob, training)``: stochastic depth.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..attention import Attention
from ..block import Mlp
from ..i18n import _
from .core import CheckFailed, call, exercise, expect_close, expect_tensor

__all__ = ["check_block_forward", "check_drop_path"]


def _block_parts(dim: int = 16, heads: int = 2):
    """norm1, attn, norm2, mlp with random (not default) LayerNorm affine weights, so every
    ordering mistake changes the numbers."""
    norm1, norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    attn, mlp = Attention(dim, heads), Mlp(dim, 4 * dim)
    for module in (norm1, norm2, attn, mlp):
        for p in module.parameters():
            nn.init.normal_(p, mean=1.0 if p.ndim == 1 and module in (norm1, norm2) else 0.0, std=0.5)
    return [m.eval() for m in (norm1, attn, norm2, mlp)]


@exercise("4.1", "pre-norm block forward", hints=(
    'Two residual steps. Each branch reads a normalised copy of the stream, and its output is added to the stream '
    'itself, which is never normalised.',
    'First the attention branch: normalise x with norm1, attend, add the result to x. Then the MLP branch on the '
    'updated x: normalise with norm2, apply the MLP, add to x.',
    'x = x + attn(norm1(x))\nx = x + mlp(norm2(x))\nreturn x',
))
def check_block_forward(block_forward):
    """``block_forward(x, norm1, attn, norm2, mlp) -> [B, N, D]``: ``x + attn(norm1(x))``, then
    ``x + mlp(norm2(x))``. Known mistakes (post-norm, a missing residual, normalising the residual
    stream, the MLP on ``x`` instead of ``norm2(x)``) are recognised and named."""
    norm1, attn, norm2, mlp = _block_parts()
    x = torch.randn(2, 5, 16) * 3 + 1  # not already normalised, so LN(x) != x
    with torch.no_grad():
        h = x + attn(norm1(x))  # the key first; the learner gets copies of x and of the layers
        want = h + mlp(norm2(h))
        got = call(block_forward, x.clone(), *(copy.deepcopy(m) for m in (norm1, attn, norm2, mlp)))
        expect_tensor(got, _("block_forward(x, ...)"), shape=x.shape)
        post1 = norm1(x + attn(x))
        n1 = norm1(x)
        stream_normed = n1 + attn(n1)
        wrong = {
            _("this is the post-norm order (x = norm1(x + attn(x)), x = norm2(x + mlp(x)), the "
              "original Transformer and the blog post). ViT normalises the *input of each branch* "
              "and leaves the residual sum alone: x = x + attn(norm1(x)); x = x + mlp(norm2(x))."):
                norm2(post1 + mlp(post1)),
            _("post-norm on the attention half: x = norm1(x + attn(...)) normalises the residual "
              "sum. Apply norm1 to the branch input only: x = x + attn(norm1(x))."):
                norm1(x + attn(norm1(x))) + mlp(norm2(norm1(x + attn(norm1(x))))),
            _("both residuals are missing: the output is mlp(norm2(attn(norm1(x)))). Add the "
              "input back after each branch: x = x + attn(norm1(x)), then x = x + mlp(norm2(x))."):
                mlp(norm2(attn(norm1(x)))),
            _("the attention residual is missing: after the first half x should be "
              "x + attn(norm1(x)), not attn(norm1(x))."):
                attn(norm1(x)) + mlp(norm2(attn(norm1(x)))),
            _("the MLP residual is missing: return x + mlp(norm2(x)), not mlp(norm2(x))."):
                mlp(norm2(h)),
            _("the residual stream itself was normalised (x = norm1(x); x = x + attn(x)): the "
              "identity path must carry x unchanged. Normalise only what enters the branch: "
              "x = x + attn(norm1(x))."):
                stream_normed + mlp(norm2(stream_normed)),
            _("the MLP ran on x instead of norm2(x): the second branch needs its own LayerNorm, "
              "x = x + mlp(norm2(x))."):
                h + mlp(h),
            _("norm1 and norm2 are swapped: attention uses norm1, the MLP uses norm2."):
                (x + attn(norm2(x))) + mlp(norm1(x + attn(norm2(x)))),
            _("both branches read the block's input (a 'parallel' block): the MLP must see the "
              "output of the attention half, h = x + attn(norm1(x)); then h + mlp(norm2(h))."):
                h + mlp(norm2(x)),
        }
        expect_close(got, want, _("block_forward(x, ...)"), wrong_variants=wrong)
    return _("x + attn(norm1(x)), then x + mlp(norm2(x)): the residual path carries x through untouched.")


def _per_sample_kept(x: torch.Tensor, out: torch.Tensor, keep: float):
    """For each sample: 'kept' (out == x / keep), 'dropped' (all zeros) or something else."""
    flat_x, flat_out = x.flatten(1), out.flatten(1)
    dropped = (flat_out == 0).all(dim=1)
    kept = torch.isclose(flat_out, flat_x / keep, atol=1e-6, rtol=1e-5).all(dim=1)
    return kept, dropped


@exercise("4.2", "drop_path (stochastic depth)", hints=(
    'Outside training, or with nothing to drop, change nothing. In training, drop whole samples, not single numbers, '
    'and scale the samples you keep so that the expected output stays the same.',
    'Draw one random keep-or-drop per sample: a mask shaped like the batch axis followed by ones (it broadcasts over '
    'the rest of x), true with probability 1 - drop_prob. Multiply x by it and divide by 1 - drop_prob.',
    'if not training or drop_prob == 0.0:\n    return x\nkeep = 1.0 - drop_prob\n'
    'mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) < keep\nreturn x * mask / keep',
))
def check_drop_path(drop_path):
    """``drop_path(x, drop_prob, training) -> x``-shaped tensor: identity unless training; when
    training, each *sample* is zeroed with probability ``drop_prob`` and the survivors are divided
    by ``1 - drop_prob``, so the expected value is unchanged."""
    x = torch.randn(4000, 3, 5).abs() + 0.5  # no zeros in x, so a zero in the output was dropped
    p, keep = 0.25, 0.75

    # 1. eval mode and drop_prob = 0 are the identity
    for training, prob, when in ((False, p, _("training=False (eval mode)")), (True, 0.0, "drop_prob=0")):
        out = expect_tensor(call(drop_path, x.clone(), prob, training),
                            _("drop_path(x, {p}, {training})").format(p=prob, training=training), shape=x.shape)
        if not torch.equal(out, x):
            if torch.allclose(out, x / keep) or torch.allclose(out, x * keep):
                raise CheckFailed(_("with {when} the output was rescaled; it must be x itself. The "
                                    "rescaling happens only while training, on the kept samples.").format(when=when))
            raise CheckFailed(_("with {when} drop_path must return x unchanged (nothing is dropped at "
                                "test time), but {changed:.0%} of the samples changed. Start with: if not "
                                "training or drop_prob == 0: return x.").format(
                when=when, changed=(out != x).any(dim=(1, 2)).float().mean()))

    # 2. training: whole samples, rescaled, at the right rate
    original = x.clone()
    out = expect_tensor(call(drop_path, x, p, True), _("drop_path(x, {p}, {training})").format(p=p, training=True),
                        shape=x.shape)
    if not torch.equal(x, original):
        raise CheckFailed(_("drop_path changed its input in place; return a new tensor (x * mask / keep) "
                            "instead, because the caller still needs x for the residual sum."))
    zeros = out == 0
    partly = zeros.flatten(1).any(dim=1) & ~zeros.flatten(1).all(dim=1)
    if partly.float().mean() > 0.05:
        raise CheckFailed(_("single elements were zeroed (like nn.Dropout): drop_path drops a sample's "
                            "*whole* branch. Draw one number per sample, a mask of shape "
                            "[B, 1, 1] = (x.shape[0],) + (1,) * (x.ndim - 1), and broadcast it."))
    dropped_rate = zeros.flatten(1).all(dim=1).float().mean().item()
    if abs(dropped_rate - (1 - p)) < 0.03:
        raise CheckFailed(_("{rate:.0%} of the samples were dropped, about 1 - drop_prob: the "
                            "mask keeps a sample with probability drop_prob. Keep it with "
                            "probability 1 - drop_prob (bernoulli(1 - drop_prob)).").format(rate=dropped_rate))
    if abs(dropped_rate - p) > 0.03:
        raise CheckFailed(_("{rate:.0%} of the samples were dropped; with drop_prob={p} it "
                            "should be about {p:.0%}.").format(rate=dropped_rate, p=p))
    kept, dropped = _per_sample_kept(x, out, keep)
    survivors = ~dropped
    if not kept[survivors].all():
        ratio = (out[survivors] / x[survivors]).median().item()
        if abs(ratio - 1.0) < 1e-4:
            raise CheckFailed(_("the kept samples were not rescaled: divide them by keep = 1 - drop_prob "
                                "(here {keep}), otherwise the expected output shrinks to {keep:.0%} of x "
                                "in training but not at test time.").format(keep=keep))
        if abs(ratio - 1 / p) < 1e-3:
            raise CheckFailed(_("the kept samples were divided by drop_prob ({p}); divide by the keep "
                                "probability 1 - drop_prob ({keep}).").format(p=p, keep=keep))
        raise CheckFailed(_("the kept samples should equal x / (1 - drop_prob) = x / {keep}, but they are "
                            "x times {ratio:.3f}.").format(keep=keep, ratio=ratio))
    mean_ratio = (out.mean() / x.mean()).item()
    if abs(mean_ratio - 1) > 0.15:
        raise CheckFailed(_("in training the mean of the output is {ratio:.2f} times the mean of x; dropping "
                            "and rescaling should keep it about the same.").format(ratio=mean_ratio))
    out2 = call(drop_path, x, p, True)
    if torch.equal(out, out2):
        raise CheckFailed(_("two calls dropped exactly the same samples; draw a fresh random mask on "
                            "every call (torch.rand / bernoulli_ inside the function)."))
    # 3. another rate: drop_prob must be read, not hard-coded
    other = 0.6
    out3 = expect_tensor(call(drop_path, x, other, True),
                         _("drop_path(x, {p}, {training})").format(p=other, training=True), shape=x.shape)
    dropped3 = (out3 == 0).flatten(1).all(dim=1)
    if abs(dropped3.float().mean().item() - other) > 0.04 or not torch.allclose(
            out3[~dropped3], x[~dropped3] / (1 - other), rtol=1e-4, atol=1e-5):
        raise CheckFailed(_("with drop_prob={p} it dropped {rate:.0%} of the samples or scaled the kept ones "
                            "wrongly: is the drop probability (or 1 - drop_prob) hard-coded? Use the drop_prob "
                            "argument for both.").format(p=other, rate=dropped3.float().mean().item()))
    return _("identity in eval; in training whole samples are dropped at the rate drop_prob and the survivors "
             "scaled by 1 / (1 - drop_prob), so the mean is preserved (4000 samples), with a fresh mask on each call.")
