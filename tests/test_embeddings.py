"""vit_lesson.embeddings (class token, position embeddings, resizing, sine-cosine) and the notebook-02 checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vit_lesson import checks
from vit_lesson.block import Block
from vit_lesson.embeddings import (
    ViTEmbeddings,
    prepend_class_token,
    resize_position_embedding,
    sincos_2d_position_embedding,
    trunc_normal_,
)
from vit_lesson.model import ViT
from vit_lesson.registry import get_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- class token and learned position embeddings ------------------------------------------------------

def test_prepend_class_token_puts_the_same_token_first_in_every_sample():
    tokens, cls = torch.randn(3, 4, 8), torch.randn(1, 1, 8)
    out = prepend_class_token(tokens, cls)
    assert out.shape == (3, 5, 8)
    assert torch.equal(out[:, 0], cls[0].expand(3, -1)) and torch.equal(out[:, 1:], tokens)


def test_vit_embeddings_is_eq_1_with_timm_names():
    embed = ViTEmbeddings(img_size=16, patch_size=4, in_chans=3, embed_dim=8).eval()
    assert set(embed.state_dict()) == {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"}
    x = torch.randn(2, 3, 16, 16)
    patches = embed.patch_embed.proj(x).flatten(2).transpose(1, 2)  # [2, 16, 8]
    want = torch.cat([embed.cls_token.expand(2, -1, -1), patches], dim=1) + embed.pos_embed
    torch.testing.assert_close(embed(x), want)
    assert embed(x).shape == (2, 17, 8)


def test_position_embeddings_start_small_and_random_like_timm():
    embed = ViTEmbeddings(img_size=224, patch_size=16, embed_dim=768)
    pos = embed.pos_embed.detach()
    assert abs(pos.std().item() - 0.02) < 0.001 and pos.abs().max() < 2.0
    assert embed.cls_token.abs().max() < 1e-4  # timm: normal(std=1e-6)
    assert trunc_normal_(torch.zeros(1000)).std() > 0.015  # not zeros


def test_dropout_only_in_training():
    embed = ViTEmbeddings(img_size=8, patch_size=4, in_chans=1, embed_dim=16, dropout=0.5)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.equal(embed.train()(x), embed(x))
    assert torch.equal(embed.eval()(x), embed(x))


def _encoder(dim=16, depth=2):
    return nn.Sequential(*(Block(dim, num_heads=4, mlp_hidden_dim=32) for _ in range(depth))).eval()


def test_without_positions_the_encoder_is_permutation_invariant():
    """Shuffle the patches: the class token's output is unchanged without E_pos, changed with it."""
    encoder, cls = _encoder(), torch.randn(1, 1, 16)
    patches, pos = torch.randn(2, 9, 16), torch.randn(1, 10, 16)
    order = torch.randperm(9)
    with torch.no_grad():
        plain = encoder(prepend_class_token(patches, cls))[:, 0]
        shuffled = encoder(prepend_class_token(patches[:, order], cls))[:, 0]
        assert (plain - shuffled).abs().max() < 1e-5
        with_pos = encoder(prepend_class_token(patches, cls) + pos)[:, 0]
        with_pos_shuffled = encoder(prepend_class_token(patches[:, order], cls) + pos)[:, 0]
    assert (with_pos - with_pos_shuffled).abs().max() > 1e-2


# --- resizing -------------------------------------------------------------------------------------------

def test_resize_same_size_is_identity_and_keeps_class_token():
    pos = torch.randn(1, 1 + 36, 12)
    assert torch.equal(resize_position_embedding(pos, 6), pos)
    bigger = resize_position_embedding(pos, 9)
    assert bigger.shape == (1, 1 + 81, 12) and torch.equal(bigger[:, :1], pos[:, :1])


@pytest.mark.parametrize("new", [(10, 10), (4, 4), (6, 9)])
def test_resize_equals_timm(new):
    from timm.layers import resample_abs_pos_embed

    pos = torch.randn(1, 1 + 49, 16)
    torch.testing.assert_close(resize_position_embedding(pos, new), resample_abs_pos_embed(pos, list(new)))


def test_resize_keeps_smooth_embeddings_smooth():
    """A linear ramp over the grid stays a ramp (bilinear is exact on it) at the new size."""
    old, new = 4, 7
    ys, xs = torch.meshgrid(torch.linspace(0, 1, old), torch.linspace(0, 1, old), indexing="ij")
    pos = torch.cat([torch.zeros(1, 1, 2), torch.stack([ys, xs], -1).reshape(1, -1, 2)], dim=1)
    out = resize_position_embedding(pos, new, mode="bilinear", antialias=False)[0, 1:].reshape(new, new, 2)
    assert (out[:, :, 0].diff(dim=0) > 0).all() and (out[:, :, 1].diff(dim=1) > 0).all()
    assert torch.allclose(out[:, :, 0], out[:, :1, 0].expand(-1, new))  # rows stay rows


def test_resize_errors_say_what_to_do():
    with pytest.raises(ValueError, match="old_grid"):
        resize_position_embedding(torch.randn(1, 1 + 12, 4), 5)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        resize_position_embedding(torch.randn(1, 2 + 16, 4), 5)  # a distillation token too
    assert resize_position_embedding(torch.randn(1, 2 + 16, 4), 5, num_prefix_tokens=2).shape == (1, 27, 4)
    assert resize_position_embedding(torch.randn(1, 1 + 12, 4), 6, old_grid=(3, 4)).shape == (1, 37, 4)
    with pytest.raises(ValueError, match=r"\[1, prefix \+ H\*W, D\]"):
        resize_position_embedding(torch.randn(16, 4), 5)


def test_resize_names_registers_and_keeps_them():
    model = ViT(get_config("micro", num_hidden_layers=1, num_register_tokens=4))  # 1 + 4 prefix tokens, 8 x 8 grid
    with pytest.raises(ValueError, match="1 \\+ R with R registers"):
        resize_position_embedding(model.pos_embed, 4)  # 68 columns after the class token
    resized = resize_position_embedding(model.pos_embed, 4, num_prefix_tokens=model.num_prefix_tokens)
    assert resized.shape == (1, 5 + 16, 64) and torch.equal(resized[:, :5], model.pos_embed[:, :5])


def test_a_model_moves_to_a_new_image_size():
    small = ViT(get_config("micro", image_size=16, patch_size=4, num_hidden_layers=1)).eval()
    state = small.state_dict()
    state["pos_embed"] = resize_position_embedding(state["pos_embed"], 24 // 4)
    big = ViT(get_config("micro", image_size=24, patch_size=4, num_hidden_layers=1)).eval()
    big.load_state_dict(state)
    assert big(torch.randn(2, 3, 24, 24)).shape == (2, 10)


# --- sine-cosine ----------------------------------------------------------------------------------------

def test_sincos_values():
    pe = sincos_2d_position_embedding((3, 5), 16)
    assert pe.shape == (15, 16)
    omega = 1.0 / 10000 ** (torch.arange(4) / 3)  # dim // 4 = 4 frequencies, from 1 down to 1/10000
    for index in (0, 7, 14):
        y, x = divmod(index, 5)
        want = torch.cat([(y * omega).sin(), (y * omega).cos(), (x * omega).sin(), (x * omega).cos()])
        torch.testing.assert_close(pe[index], want)


def test_sincos_matches_simple_vit_with_halves_swapped():
    """lucidrains' posemb_sincos_2d (Simple ViT) puts x before y; ours puts y first."""
    h, w, dim = 4, 6, 32
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = 1.0 / (10000 ** (torch.arange(dim // 4) / (dim // 4 - 1)))
    y, x = y.flatten()[:, None] * omega[None, :], x.flatten()[:, None] * omega[None, :]
    simple_vit = torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)
    ours = sincos_2d_position_embedding((h, w), dim)
    torch.testing.assert_close(ours, torch.cat([simple_vit[:, dim // 2:], simple_vit[:, :dim // 2]], dim=1))


def test_sincos_similarity_falls_with_distance():
    pe = sincos_2d_position_embedding(8, 64)
    sim = F.cosine_similarity(pe[27][None], pe, dim=-1).reshape(8, 8)  # position (3, 3)
    assert sim[3, 3] == sim.max() and sim[3, 4] > sim[3, 6] and sim[4, 3] > sim[6, 3]


def test_sincos_dim_error():
    with pytest.raises(ValueError, match="divisible by 4.*e.g. 12"):
        sincos_2d_position_embedding(4, 10)


# --- Exercise 2.1 ---------------------------------------------------------------------------------------

def add_right(tokens, cls_token, pos_embed):
    return torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos_embed


def add_right_repeat(tokens, cls_token, pos_embed):
    out = torch.cat((cls_token.repeat(len(tokens), 1, 1), tokens), 1)
    return out + pos_embed


def _todo(*args):
    raise NotImplementedError("Exercise not done yet")


@pytest.mark.parametrize("answer", [add_right, add_right_repeat, lambda t, c, p: prepend_class_token(t, c) + p])
def test_check_tokens_passes_correct_answers(answer):
    assert checks.check_add_class_token_and_positions(answer).status == checks.PASS


@pytest.mark.parametrize("answer, words", [
    (lambda t, c, p: torch.cat([t, c.expand(len(t), -1, -1)], 1) + p, "at the END"),
    (lambda t, c, p: t + p[:, 1:], "class token is missing"),
    (lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t], 1), "not added"),
    (lambda t, c, p: torch.cat([c, t], 1) + p, "expand it to [B, 1, D]"),
    (lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, 1:]], 1), "only to the patches"),
    (lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, :-1]], 1), "neighbour's position"),
    (lambda t, c, p: add_right(t, c, p) * 2, "wrong values"),
])
def test_check_tokens_names_mistakes(answer, words):
    result = checks.check_add_class_token_and_positions(answer)
    assert result.status == checks.FAIL and words in result.message, result.message


def test_check_tokens_placeholder_is_todo():
    assert checks.check_add_class_token_and_positions(_todo).status == checks.TODO


# --- Exercise 2.2 ---------------------------------------------------------------------------------------

def resize_by_hand(pos_embed, new_grid, mode="bicubic"):
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    side, dim = int(grid.shape[1] ** 0.5), grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode, align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


@pytest.mark.parametrize("answer", [resize_position_embedding, resize_by_hand,
                                    lambda p, n: resize_by_hand(p, n, mode="bilinear")])
def test_check_resize_passes_correct_answers(answer):
    assert checks.check_resize_position_embedding(answer).status == checks.PASS


def _resize_wrong(kind):
    def resize(pos_embed, new_grid):
        cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
        side, dim = int(grid.shape[1] ** 0.5), grid.shape[-1]
        grid = grid.reshape(1, dim, side, side) if kind == "no permute" else \
            grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        mode = "nearest" if kind == "nearest" else "bicubic"
        grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode)
        grid = grid.reshape(1, dim, -1).transpose(1, 2) if kind == "no permute" else \
            grid.reshape(1, -1, dim) if kind == "no permute back" else grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        if kind == "drop cls":
            return grid
        return torch.cat([grid, cls], 1) if kind == "cls last" else torch.cat([cls, grid], 1)
    return resize


@pytest.mark.parametrize("kind, words", [
    ("no permute", "permute(0, 3, 1, 2)"),
    ("no permute back", "permute(0, 2, 3, 1)"),
    ("nearest", "nearest"),
    ("drop cls", "class token's embedding is missing"),
    ("cls last", "class token is at the end"),
])
def test_check_resize_names_mistakes(kind, words):
    result = checks.check_resize_position_embedding(_resize_wrong(kind))
    assert result.status == checks.FAIL and words in result.message, result.message


def _resize_with(mode, antialias=False, align_corners=None, dim=None, side=None):
    def resize(pos_embed, new_grid):
        cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
        s, d = side or int(grid.shape[1] ** 0.5), dim or grid.shape[-1]
        grid = grid.reshape(1, s, s, d).permute(0, 3, 1, 2)
        extra = ({} if mode in ("area", "nearest", "nearest-exact")
                 else {"antialias": antialias, "align_corners": align_corners})
        grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode, **extra)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)
    return resize


@pytest.mark.parametrize("mode, antialias, align", [("bicubic", True, False), ("bicubic", False, False),
                                                    ("bilinear", True, False), ("bilinear", False, False),
                                                    ("bicubic", False, True), ("bilinear", False, True)])
def test_check_resize_passes_every_smooth_interpolation(mode, antialias, align):
    assert checks.check_resize_position_embedding(_resize_with(mode, antialias, align)).status == checks.PASS


def test_check_resize_sizes_tell_every_mode_apart():
    from vit_lesson.checks.embeddings import _DOWN, _SETTINGS, _resize_variant
    old, new, d = _DOWN
    pos = torch.randn(1, 1 + old * old, d)
    outs = [_resize_variant(pos, new, s) for s in _SETTINGS]
    outs += [_resize_variant(pos, new, _SETTINGS[0], m) for m in ("area", "nearest", "nearest-exact")]
    assert not any(torch.allclose(a, b, atol=1e-3) for i, a in enumerate(outs) for b in outs[i + 1:])


@pytest.mark.parametrize("answer, words", [
    (_resize_with("area"), ["wrong interpolation mode", "mode='area'"]),  # = aligned bilinear from 4 x 4 to 7 x 7
    (_resize_with("nearest-exact"), ["wrong interpolation mode", "nearest-exact"]),
    (_resize_with("nearest"), ["mode='nearest'"]),
    (_resize_with("bicubic", True, False, dim=10), ["correct from 4 x 4 to 7 x 7 with D = 10", "hard-coded"]),
    (_resize_with("bicubic", True, False, side=4), ["correct from 4 x 4 to 7 x 7 with D = 10", "hard-coded"]),
])
def test_check_resize_names_the_mode_and_a_hard_coded_size(answer, words):
    result = checks.check_resize_position_embedding(answer)
    assert result.status == checks.FAIL, result.message
    for word in words:
        assert word in result.message, result.message


def test_check_resize_placeholder_is_todo():
    assert checks.check_resize_position_embedding(_todo).status == checks.TODO


def test_class_token_check_gives_the_learner_copies():
    """A learner who adds into the tokens passed in (+=) cannot change the answer key (issue 15)."""
    def wrong_and_scribbles(patch_tokens, cls_token, pos_embed):
        cls = cls_token.expand(patch_tokens.shape[0], -1, -1)
        out = torch.cat([cls, patch_tokens], dim=1)  # the position embeddings are missing
        pos_embed.zero_()
        return out

    result = checks.check_add_class_token_and_positions(wrong_and_scribbles)
    assert result.status == "fail", result.line
