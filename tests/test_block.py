"""Notebook 04's package code (vit_lesson.block) and its exercise checks (4.1, 4.2)."""

import torch
import torch.nn.functional as F
from torch import nn

from vit_lesson import checks
from vit_lesson.block import Block, DropPath, Mlp, PostNormBlock, drop_path


def _layer_norm(x, norm):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _randomise(module):
    torch.manual_seed(1)
    for p in module.parameters():
        nn.init.normal_(p, std=0.3)
    return module.eval()


def test_pre_norm_block_matches_hand_computation():
    """Block = x + attn(LN1(x)), then + MLP(LN2(.)); written out with explicit matmuls here."""
    block = _randomise(Block(8, num_heads=2, mlp_hidden_dim=16))
    x = torch.randn(3, 5, 8)
    a = block.attn

    def attention(h):
        q, k, v = (h @ a.qkv.weight.T + a.qkv.bias).chunk(3, dim=-1)
        split = lambda t: t.reshape(3, 5, 2, 4).transpose(1, 2)  # noqa: E731 [B, H, N, d]
        w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 2.0, dim=-1)
        out = (w @ split(v)).transpose(1, 2).reshape(3, 5, 8)
        return out @ a.proj.weight.T + a.proj.bias

    def mlp(h):
        m = block.mlp
        return F.gelu(h @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias

    h = x + attention(_layer_norm(x, block.norm1))
    want = h + mlp(_layer_norm(h, block.norm2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)
        out, weights = block(x, output_attentions=True)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    assert weights.shape == (3, 2, 5, 5)


def test_post_norm_block_is_the_post_order():
    block = _randomise(PostNormBlock(8, num_heads=2, mlp_hidden_dim=16))
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        h = block.norm1(x + block.attn(x))
        torch.testing.assert_close(block(x), block.norm2(h + block.mlp(h)))


def test_mlp_shape_and_hidden_size():
    mlp = Mlp(8, 32)
    assert mlp.fc1.weight.shape == (32, 8) and mlp.fc2.weight.shape == (8, 32)
    assert mlp(torch.randn(2, 3, 8)).shape == (2, 3, 8)
    assert Block(8, 2).mlp.fc1.out_features == 32  # 4 x width by default


def test_drop_path_identity_in_eval_and_at_zero():
    x = torch.randn(16, 4, 8)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.equal(drop_path(x, 0.0, training=True), x)
    module = DropPath(0.5).eval()
    assert torch.equal(module(x), x)


def test_drop_path_drops_whole_samples_and_preserves_expectation():
    torch.manual_seed(0)
    x = torch.rand(20000, 3, 4) + 0.5
    out = drop_path(x, 0.3, training=True)
    flat = out.flatten(1)
    dropped = (flat == 0).all(1)
    kept = torch.isclose(out, x / 0.7).flatten(1).all(1)
    assert (dropped | kept).all()  # every sample entirely dropped or entirely kept (and rescaled)
    assert abs(dropped.float().mean().item() - 0.3) < 0.015
    assert abs(out.mean().item() / x.mean().item() - 1) < 0.02  # E[drop_path(x)] = x


# --- checks: the correct answer passes, each known mistake is named, the placeholder is "not done"

def correct_block(x, norm1, attn, norm2, mlp):
    x = x + attn(norm1(x))
    return x + mlp(norm2(x))


BLOCK_MISTAKES = {
    "post-norm order": lambda x, n1, a, n2, m: n2(n1(x + a(x)) + m(n1(x + a(x)))),
    "residuals are missing": lambda x, n1, a, n2, m: m(n2(a(n1(x)))),
    "attention residual is missing": lambda x, n1, a, n2, m: a(n1(x)) + m(n2(a(n1(x)))),
    "MLP residual is missing": lambda x, n1, a, n2, m: m(n2(x + a(n1(x)))),
    "residual stream itself was normalised": lambda x, n1, a, n2, m: (
        lambda h: h + m(n2(h)))(n1(x) + a(n1(x))),
    "MLP ran on x instead of norm2(x)": lambda x, n1, a, n2, m: (lambda h: h + m(h))(x + a(n1(x))),
    "parallel": lambda x, n1, a, n2, m: x + a(n1(x)) + m(n2(x)),
    "post-norm on the attention half": lambda x, n1, a, n2, m: (
        lambda h: h + m(n2(h)))(n1(x + a(n1(x)))),
}


def test_check_block_forward_passes_correct_variants():
    assert checks.check_block_forward(correct_block)
    assert checks.check_block_forward(lambda x, n1, a, n2, m: Block.forward(
        type("B", (), dict(norm1=n1, attn=a, norm2=n2, mlp=m, drop_path1=nn.Identity(),
                           drop_path2=nn.Identity()))(), x))


def test_check_block_forward_names_each_mistake():
    for words, wrong in BLOCK_MISTAKES.items():
        result = checks.check_block_forward(wrong)
        assert result.status == "fail" and words in result.message, (words, result.message)


def test_check_block_forward_placeholder_and_crash():
    def placeholder(x, norm1, attn, norm2, mlp):
        raise NotImplementedError("x + attn(norm1(x)) ...")

    assert checks.check_block_forward(placeholder).status == "todo"
    result = checks.check_block_forward(lambda x, *parts: x @ torch.ones(3, 3))
    assert result.status == "fail" and "raised RuntimeError" in result.message


def correct_drop_path(x, drop_prob, training):
    if not training or drop_prob == 0:
        return x
    keep = 1 - drop_prob
    mask = torch.rand(x.shape[0], *([1] * (x.ndim - 1))) < keep
    return x * mask / keep


def test_check_drop_path_passes_correct_variants():
    assert checks.check_drop_path(correct_drop_path)
    assert checks.check_drop_path(drop_path)
    assert checks.check_drop_path(lambda x, p, training: DropPath(p).train(training)(x))


DROP_PATH_MISTAKES = {
    "not rescaled": lambda x, p, t: x * (torch.rand(x.shape[0], 1, 1) >= p) if t and p else x,
    "single elements were zeroed": lambda x, p, t: F.dropout(x, p, t),
    "must return x unchanged": lambda x, p, t: x * (torch.rand(x.shape[0], 1, 1) >= p) / (1 - p) if p else x,
    "output was rescaled": lambda x, p, t: correct_drop_path(x, p, True) if t else x / (1 - p),
    "probability drop_prob": lambda x, p, t: x * (torch.rand(x.shape[0], 1, 1) < p) / (1 - p) if t and p else x,
    "divided by drop_prob": lambda x, p, t: x * (torch.rand(x.shape[0], 1, 1) >= p) / p if t and p else x,
    "in place": lambda x, p, t: x.mul_((torch.rand(x.shape[0], 1, 1) >= p) / (1 - p)) if t and p else x,
}


def test_check_drop_path_names_each_mistake():
    for words, wrong in DROP_PATH_MISTAKES.items():
        result = checks.check_drop_path(wrong)
        assert result.status == "fail" and words in result.message, (words, result.message)


def test_check_drop_path_same_mask_every_call():
    generator_mask = torch.rand(4000, 1, 1, generator=torch.Generator().manual_seed(3)) >= 0.25
    result = checks.check_drop_path(lambda x, p, t: x * generator_mask / (1 - p) if t and p else x)
    assert result.status == "fail" and "same samples" in result.message


def test_check_drop_path_placeholder():
    def placeholder(x, drop_prob, training):
        raise NotImplementedError("mask of shape [B, 1, 1] ...")

    assert checks.check_drop_path(placeholder).status == "todo"


def test_block_forward_check_gives_the_learner_copies():
    """Zeroing the MLP passed in must not turn a wrong block into the answer key (issue 15)."""
    def wrong_and_scribbles(x, norm1, attn, norm2, mlp):
        with torch.no_grad():
            for p in mlp.parameters():
                p.zero_()
        return x + attn(norm1(x))

    result = checks.check_block_forward(wrong_and_scribbles)
    assert result.status == "fail", result.line


def test_drop_path_check_names_a_hard_coded_probability():
    def hard_coded(x, drop_prob, training):
        if not training or drop_prob == 0.0:
            return x
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1)) < 0.75
        return x * mask / 0.75

    result = checks.check_drop_path(hard_coded)
    assert result.status == "fail" and "hard-coded" in result.message, result.message
