"""vit_lesson.attention against PyTorch's own attention, and the notebook-03 checks."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vit_lesson import checks
from vit_lesson.attention import Attention, scaled_dot_product_attention, validate_heads


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- the package ------------------------------------------------------------------------------------

def test_readable_path_equals_torch_sdpa():
    q, k, v = (torch.randn(2, 3, 7, 16) for _ in range(3))
    out, weights = scaled_dot_product_attention(q, k, v)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() <= 1e-5
    assert weights.shape == (2, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))


@pytest.mark.parametrize("fast", [True, False])
def test_attention_equals_nn_multihead_attention(fast):
    """Our layer and torch.nn.MultiheadAttention, given the same weights, compute the same thing."""
    dim, heads = 32, 4
    ours = Attention(dim, heads, fast=fast).eval()
    theirs = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)   # [3D, D], rows laid out [q | k | v]
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(3, 10, dim)
        want, want_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
        got, weights = ours(x, output_attentions=True)
        assert (ours(x) - want).abs().max() <= 1e-5
    assert (got - want).abs().max() <= 1e-5
    assert (weights - want_weights).abs().max() <= 1e-5


def test_fast_and_readable_paths_agree():
    x = torch.randn(2, 9, 24)
    fast = Attention(24, 3, fast=True).eval()
    readable = Attention(24, 3, fast=False).eval()
    readable.load_state_dict(fast.state_dict())
    with torch.no_grad():
        out_fast, out_readable = fast(x), readable(x)
        out_weights, weights = fast(x, output_attentions=True)
    assert (out_fast - out_readable).abs().max() <= 1e-5
    assert (out_weights - out_fast).abs().max() <= 1e-5
    assert weights.shape == (2, 3, 9, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 9))
    assert (weights >= 0).all()


def test_einops_head_split_equals_reshape_permute():
    B, N, H, d = 2, 5, 3, 4
    fused = torch.randn(B, N, 3 * H * d)
    q, k, v = fused.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(torch.stack([q, k, v]),
                               rearrange(fused, "b n (three h d) -> three b h n d", three=3, h=H))


@pytest.mark.parametrize("fast", [True, False])
def test_dropout_only_in_training(fast):
    layer = Attention(16, 2, attn_drop=0.5, proj_drop=0.5, fast=fast)
    x = torch.randn(2, 6, 16)
    layer.train()
    assert not torch.allclose(layer(x), layer(x)), "train mode should drop at random"
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    no_drop = Attention(16, 2, fast=fast).eval()
    no_drop.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x), no_drop(x))


def test_gradients_flow_to_every_parameter():
    layer = Attention(16, 4)
    layer(torch.randn(2, 5, 16)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_validate_heads_error_names_numbers_and_fix():
    assert validate_heads(768, 12) == 64
    with pytest.raises(ValueError, match=r"Hidden size 100 is not divisible by the number of heads 3") as error:
        validate_heads(100, 3)
    assert "Use a number of heads that divides 100" in str(error.value)
    assert "4" in str(error.value) and "5" in str(error.value)  # suggests heads that work
    with pytest.raises(ValueError, match="not divisible"):
        Attention(100, 3)


def test_bad_inputs_raise_clear_errors():
    layer = Attention(16, 4)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        layer(torch.randn(5, 16))
    with pytest.raises(ValueError, match="dim=16"):
        layer(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match="do not fit together"):
        scaled_dot_product_attention(torch.randn(1, 4, 8), torch.randn(1, 4, 6), torch.randn(1, 4, 6))


# --- Exercise 3.1 -------------------------------------------------------------------------------------

def sdpa_explicit(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return weights @ v, weights


def sdpa_torch(q, k, v):  # the fast kernel for out, weights computed beside it (einsum)
    weights = torch.einsum("bhid,bhjd->bhij", q, k).mul(q.shape[-1] ** -0.5).softmax(-1)
    return F.scaled_dot_product_attention(q, k, v), weights


def _sdpa_wrong(scale, dim=-1, softmax=True):
    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1) * scale(q.shape[-1])
        weights = scores.softmax(dim=dim) if softmax else scores
        return weights @ v, weights
    return attention


def _todo(*args):
    raise NotImplementedError("Exercise not done yet")


@pytest.mark.parametrize("answer", [sdpa_explicit, sdpa_torch])
def test_check_sdpa_passes_correct_answers(answer):
    assert checks.check_scaled_dot_product_attention(answer).status == checks.PASS


@pytest.mark.parametrize("answer, words", [
    (_sdpa_wrong(lambda d: d ** -0.5, dim=-2), "dim=-2"),
    (_sdpa_wrong(lambda d: 1.0), "not scaled"),
    (_sdpa_wrong(lambda d: 1 / d), "instead of sqrt(d)"),
    (_sdpa_wrong(lambda d: d ** 0.5), "multiplied by sqrt(d)"),
    (_sdpa_wrong(lambda d: d ** -0.5, softmax=False), "raw scores"),
    (lambda q, k, v: sdpa_explicit(q, k, v)[0], "return two"),
    (lambda q, k, v: (sdpa_explicit(q, k, v)[1].transpose(-2, -1) @ v, sdpa_explicit(q, k, v)[1]), "weights @ v"),
    (lambda q, k, v: (sdpa_explicit(q, k, v)[0], (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).exp()), "exp"),
    (lambda q, k, v: (sdpa_explicit(q[..., :4], k[..., :4], v[..., :4])), "wrong values"),
])
def test_check_sdpa_names_mistakes(answer, words):
    result = checks.check_scaled_dot_product_attention(answer)
    assert result.status == checks.FAIL and words in result.message, result.message


def test_check_sdpa_placeholder_is_todo():
    assert checks.check_scaled_dot_product_attention(_todo).status == checks.TODO


# --- Exercise 3.2 -------------------------------------------------------------------------------------

def mha_reshape(x, qkv, proj, num_heads):
    B, N, D = x.shape
    q, k, v = qkv(x).reshape(B, N, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)
    return proj(out.transpose(1, 2).reshape(B, N, D))


def mha_einops_separate(x, qkv, proj, num_heads):
    q, k, v = qkv(x).chunk(3, dim=-1)  # separate q, k, v
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=num_heads) for t in (q, k, v))
    out, _ = sdpa_explicit(q, k, v)
    return proj(rearrange(out, "b h n d -> b n (h d)"))


def _mha_wrong(split="three h d", transpose=True, merge="h d", project=True, scale=None):
    def attention(x, qkv, proj, num_heads):
        B, N, D = x.shape
        h, d = num_heads, D // num_heads
        fused = qkv(x)
        if split == "three h d":
            q, k, v = fused.reshape(B, N, 3, h, d).unbind(2)
        else:
            q, k, v = fused.reshape(B, N, h, 3, d).unbind(3)
        if transpose:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        s = (scale or (lambda dd, DD: dd ** -0.5))(d, D)
        out = (q @ k.transpose(-2, -1) * s).softmax(-1) @ v
        if merge == "h d":
            out = out.transpose(1, 2).reshape(B, N, D) if transpose else out.reshape(B, N, D)
        elif merge == "no transpose":
            out = out.reshape(B, N, D)
        elif merge == "d h":
            out = out.permute(0, 2, 3, 1).reshape(B, N, D)
        return proj(out) if project else out
    return attention


@pytest.mark.parametrize("answer", [mha_reshape, mha_einops_separate])
def test_check_mha_passes_correct_answers(answer):
    assert checks.check_multi_head_attention(answer).status == checks.PASS


@pytest.mark.parametrize("answer, words", [
    (_mha_wrong(transpose=False), "never moved in front of the tokens"),
    (_mha_wrong(project=False), "before the output projection"),
    (_mha_wrong(merge="no transpose"), "merged in the wrong order"),
    (_mha_wrong(merge="d h"), "(d h) instead of (h d)"),
    (_mha_wrong(split="h three d"), "reshape(B, N, 3, H, d)"),
    (_mha_wrong(scale=lambda d, D: 1.0), "not divided by sqrt(d)"),
    (_mha_wrong(scale=lambda d, D: D ** -0.5), "sqrt(D)"),
    (lambda x, qkv, proj, h: mha_reshape(x, qkv, proj, h)[:, 0], "[B, N, D]"),
])
def test_check_mha_names_mistakes(answer, words):
    result = checks.check_multi_head_attention(answer)
    assert result.status == checks.FAIL and words in result.message, result.message


def _mha_classic(mistake):
    def attention(x, qkv, proj, num_heads):
        B, N, D = x.shape
        h, d = num_heads, D // num_heads
        fused = qkv(x)
        if mistake == "d h split":
            q, k, v = fused.reshape(B, N, 3, d, h).permute(2, 0, 4, 1, 3)
        elif mistake == "reshape instead of permute":
            q, k, v = fused.reshape(3, B, h, N, d)
        elif mistake == "each reshaped":
            q, k, v = (t.reshape(B, h, N, d) for t in fused.chunk(3, dim=-1))
        else:
            q, k, v = fused.reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        if mistake == "k q v":
            q, k = k, q
        elif mistake == "v k q":
            q, v = v, q
        scores = q @ k.transpose(-2, -1)
        scores = scores / D if mistake == "by D" else scores / d if mistake == "by d" else scores / d ** 0.5
        weights = scores.softmax(-2 if mistake == "softmax over queries" else -1)
        return proj((weights @ v).transpose(1, 2).reshape(B, N, D))
    return attention


@pytest.mark.parametrize("mistake, words", [
    ("softmax over queries", ["softmax ran over the queries (dim=-2)"]),
    ("d h split", ["split on the wrong axis", "[d, H]"]),
    ("reshape instead of permute", ["reshaped straight to [3, B, H, N, d]", "permute(2, 0, 3, 1, 4)"]),
    ("each reshaped", ["reshaped straight from [B, N, D] to [B, H, N, d]", "transpose(1, 2)"]),
    ("k q v", ["wrong order (k, q, v)", "[q | k | v]"]),
    ("v k q", ["wrong order (v, k, q)"]),
    ("by D", ["divided by D = 12", "not by sqrt(d)"]),
    ("by d", ["divided by d = 4 instead of sqrt(d)"]),
])
def test_check_mha_names_every_classic_mistake(mistake, words):
    result = checks.check_multi_head_attention(_mha_classic(mistake))
    assert result.status == checks.FAIL
    for word in words:
        assert word in result.message, result.message
    assert not re.search(r"\d\.\d", result.message), result.message  # no float decimals in a message


def test_check_mha_classic_mistakes_are_all_different_and_the_right_answer_passes():
    from vit_lesson.checks.attention import _layers, _mha_variants
    x = torch.randn(2, 5, 12)
    qkv, proj = _layers(12)
    want, mistakes = _mha_variants(x, qkv, proj, 3)
    outs = [want, *mistakes.values()]
    assert not any(torch.allclose(a, b, atol=1e-4) for i, a in enumerate(outs) for b in outs[i + 1:])
    assert checks.check_multi_head_attention(_mha_classic(None))


def test_check_mha_placeholder_is_todo():
    assert checks.check_multi_head_attention(_todo).status == checks.TODO


# --- Exercise 3.3: the blog post's MultiHeadAttention -------------------------------------------------

class PostAttention(nn.Module):
    """The blog post's layer as printed (with `math` imported): no transpose, no projection."""

    transpose, project = False, False

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_heads
        self.attention_head_size = config.hidden_size // config.num_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        if self.project:
            self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def split(self, t):
        t = t.view(t.size(0), -1, self.num_heads, self.attention_head_size)
        return t.transpose(1, 2) if self.transpose else t

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        attention_scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        context = torch.matmul(nn.Softmax(dim=-1)(attention_scores), v)
        context = context.permute(0, 2, 1, 3).contiguous()
        context = context.view(*context.size()[:-2], self.num_heads * self.attention_head_size)
        return self.proj(context) if self.project else context


class TransposedOnly(PostAttention):
    transpose = True


class ProjectedOnly(PostAttention):
    project = True


class Fixed(PostAttention):
    transpose, project = True, True


class FixedEinopsOut(Fixed):
    """A fix written differently: einops split, a projection named `out`, SDPA."""

    def __init__(self, config):
        nn.Module.__init__(self)
        self.h = config.num_heads
        self.query, self.key, self.value = (nn.Linear(config.hidden_size, config.hidden_size) for _ in range(3))
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.h) for f in (self.query, self.key, self.value))
        return self.out(rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)"))


class NoMath(Fixed):
    def forward(self, x):
        raise NameError("name 'math' is not defined")


@pytest.mark.parametrize("answer", [Fixed, FixedEinopsOut])
def test_check_post_passes_fixes(answer):
    assert checks.check_post_attention(answer).status == checks.PASS


@pytest.mark.parametrize("answer, words", [
    (PostAttention, "across the heads, not across the tokens"),
    (ProjectedOnly, "across the heads, not across the tokens"),
    (TransposedOnly, "output projection is missing"),
    (NoMath, "`math` is not defined"),
])
def test_check_post_names_bugs(answer, words):
    result = checks.check_post_attention(answer)
    assert result.status == checks.FAIL and words in result.message, result.message


def test_post_code_crashes_when_tokens_and_heads_differ():
    """Why the post's bug is easy to miss: with N == H it runs; otherwise its final view fails."""
    layer = PostAttention(SimpleNamespace(hidden_size=12, num_heads=3))
    assert layer(torch.randn(2, 3, 12)).shape == (2, 3, 12)
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        layer(torch.randn(2, 5, 12))


def test_check_post_placeholder_is_todo():
    class Todo(nn.Module):
        def __init__(self, config):
            super().__init__()
            raise NotImplementedError("Exercise not done yet")
    assert checks.check_post_attention(Todo).status == checks.TODO


# --- issue 15: every correct answer accepted, inputs the learner mutates do not change the key ---------

def _fixed_post(projection_style):
    class Fixed(nn.Module):
        def __init__(self, config):
            super().__init__()
            d = config.hidden_size
            self.h = config.num_heads
            self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            if projection_style == "sequential":
                self.proj = nn.Sequential(nn.Linear(d, d), nn.Dropout(0.1))
            else:  # Hugging Face's layout: self.output.dense
                self.output = nn.Module()
                self.output.dense = nn.Linear(d, d)

        def forward(self, x):
            b, n, d = x.shape
            split = lambda t: t.view(b, n, self.h, d // self.h).transpose(1, 2)  # noqa: E731
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            return self.proj(out) if projection_style == "sequential" else self.output.dense(out)

    return Fixed


@pytest.mark.parametrize("style", ["sequential", "hugging face"])
def test_post_attention_accepts_a_wrapped_or_nested_projection(style):
    result = checks.check_post_attention(_fixed_post(style))
    assert result, result.line


def test_attention_checks_give_the_learner_copies():
    def sdpa_then_scribble(q, k, v):
        out = scaled_dot_product_attention(q, k, v)
        q += 1
        return out

    def mha_then_scribble(x, qkv, proj, num_heads):
        b, n, d = x.shape
        q, k, v = qkv(x).reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
        out = proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        with torch.no_grad():
            proj.weight.zero_()
        x += 1
        return out

    assert checks.check_scaled_dot_product_attention(sdpa_then_scribble)
    assert checks.check_multi_head_attention(mha_then_scribble)


def test_post_attention_check_names_hard_coded_heads():
    import math as _math
    from types import SimpleNamespace  # noqa: F401

    class HardCoded(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.num_heads, self.attention_head_size = 3, 4  # hard-coded for hidden_size 12
            self.query = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.key = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.value = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.proj = torch.nn.Linear(config.hidden_size, config.hidden_size)

        def forward(self, x):
            B, N, _ = x.shape
            q, k, v = (layer(x).view(B, N, self.num_heads, self.attention_head_size).transpose(1, 2)
                       for layer in (self.query, self.key, self.value))
            weights = (q @ k.transpose(-1, -2) / _math.sqrt(self.attention_head_size)).softmax(-1)
            return self.proj((weights @ v).transpose(1, 2).reshape(B, N, -1))

    result = checks.check_post_attention(HardCoded)
    assert result.status == "fail" and "hard-coded" in result.message, result.message
