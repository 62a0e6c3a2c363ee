"""Notebook 10's checks (vit_lesson.checks.capstone): each piece check with a correct answer, the
mistakes it names and the learner version's placeholder; the capstone check's detection of library
code, wrong shapes, NaN and a model below the bar, and its pass path.

The bar, ``CAPSTONE_THRESHOLD = 0.90``, was chosen against the notebook's own recipe (8 epochs,
no augmentation), measured on a 2-core Intel Xeon (AVX-512) with this module's ``SolutionViT``:
test accuracy 96.1-98.3% over seeds 0-5 with ``ATEN_CPU_CAPABILITY=default`` and one thread
(seed 0: 98.1% with the native AVX-512 kernels too), about 9 s of training (20 s with the default
kernels) per run. Training the real thing is too slow for a unit test; the notebook does it under
nbval, and the pass path here uses a nearest-neighbour model instead.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vit_lesson import checks
from vit_lesson.checks.core import FAIL, PASS, TODO


def placeholder(*args, **kwargs):
    raise NotImplementedError("Exercise not done yet: replace this line with your code. Hint: the idea.")


# --- the notebook's solutions ---------------------------------------------------------------------

def patchify(images, patch_size):
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // P) * (W // P), C * P * P)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x):
        B, N, D = x.shape
        return self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)

    def forward(self, x):
        B, N, D = x.shape
        q, k, v = self.split(x)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(D // self.heads)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SolutionViT(nn.Module):
    def __init__(self, img_size=16, patch_size=4, in_chans=1, num_classes=10, dim=64, depth=4, heads=4, mlp_ratio=2):
        super().__init__()
        self.patch_size = patch_size
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_chans * patch_size ** 2, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, images):
        x = self.patch_embed(patchify(images, self.patch_size))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images):
        return self.head(self.tokens(images)[:, 0])


def tiny(**overrides):
    torch.manual_seed(0)
    return SolutionViT(**{**dict(dim=16, depth=1, heads=2), **overrides})


# --- 10.1 patchify ---------------------------------------------------------------------------------

def test_patchify_passes_in_either_flattening_order():
    assert checks.check_capstone_patchify(patchify).status == PASS

    def pixel_first(images, p):
        B, C, H, W = images.shape
        x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(B, -1, C * p * p)

    result = checks.check_capstone_patchify(pixel_first)
    assert result.status == PASS and "pixel first" in result.message


@pytest.mark.parametrize("wrong, words", [
    (lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p), "scrambled"),
    (lambda x, p: x.reshape(x.shape[0], x.shape[1], x.shape[2] // p, p, x.shape[3] // p, p).permute(0, 4, 2, 1, 3, 5)
     .reshape(x.shape[0], -1, x.shape[1] * p * p), "column by column"),
    (lambda x, p: x.reshape(x.shape[0], x.shape[1], x.shape[2] // p, p, x.shape[3] // p, p).permute(0, 2, 4, 1, 5, 3)
     .reshape(x.shape[0], -1, x.shape[1] * p * p), "transposed"),
    (lambda x, p: patchify(x, p).transpose(1, 2), "one row per patch"),
    (lambda x, p: patchify(x, p)[:, :-1], "should have shape"),
])
def test_patchify_names_the_mistake(wrong, words):
    result = checks.check_capstone_patchify(wrong)
    assert result.status == FAIL and words in result.message, result.line


def test_patchify_placeholder_is_todo():
    result = checks.check_capstone_patchify(placeholder)
    assert result.status == TODO and "Hint: the idea." in result.line


# --- 10.2 attention --------------------------------------------------------------------------------

class SDPAAttention(MultiHeadAttention):
    def forward(self, x):
        B, N, D = x.shape
        out = F.scaled_dot_product_attention(*self.split(x))
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


def attention_variant(**changes):
    def forward(self, x):
        B, N, D = x.shape
        H, d = self.heads, D // self.heads
        t = self.qkv(x)
        if changes.get("split") == "h3d":
            q, k, v = t.reshape(B, N, H, 3, d).permute(3, 0, 2, 1, 4)
        else:
            q, k, v = t.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)
        scale = {"none": 1.0, "D": math.sqrt(D)}.get(changes.get("scale"), math.sqrt(d))
        weights = (q @ k.transpose(-2, -1) / scale).softmax(dim=changes.get("softmax_dim", -1))
        out = weights @ v
        out = out.reshape(B, N, D) if changes.get("merge") == "reshape" else out.transpose(1, 2).reshape(B, N, D)
        return out if changes.get("no_proj") else self.proj(out)

    return type("WrongAttention", (MultiHeadAttention,), {"forward": forward})


def test_attention_passes_explicit_and_fused():
    assert checks.check_capstone_attention(MultiHeadAttention).status == PASS
    assert checks.check_capstone_attention(SDPAAttention).status == PASS


@pytest.mark.parametrize("changes, words", [
    (dict(scale="none"), "not scaled"),
    (dict(scale="D"), "model width D"),
    (dict(softmax_dim=-2), "over the queries"),
    (dict(merge="reshape"), "merged without moving the head axis"),
    (dict(split="h3d"), "[B, N, heads, 3, d]"),
    (dict(no_proj=True), "projection is missing"),
])
def test_attention_names_the_mistake(changes, words):
    result = checks.check_capstone_attention(attention_variant(**changes))
    assert result.status == FAIL and words in result.message, result.line


def test_attention_without_the_given_layers_and_placeholder():
    class NoQKV(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            return x

    result = checks.check_capstone_attention(NoQKV)
    assert result.status == FAIL and "self.qkv" in result.message
    assert checks.check_capstone_attention(placeholder).status == TODO


# --- 10.3 block ------------------------------------------------------------------------------------

def block_with(forward):
    return type("WrongBlock", (Block,), {"forward": forward})


def test_block_passes_even_with_an_unfinished_attention():
    assert checks.check_capstone_block(Block).status == PASS

    class BlockWithTodoAttention(Block):
        def __init__(self, dim, heads, mlp_ratio=4):
            super().__init__(dim, heads, mlp_ratio)
            self.attn.forward = placeholder  # replaced by the check's attention anyway

    assert checks.check_capstone_block(BlockWithTodoAttention).status == PASS


@pytest.mark.parametrize("forward, words", [
    (lambda self, x: self.norm2((h := self.norm1(x + self.attn(x))) + self.mlp(h)), "post-norm order"),
    (lambda self, x: self.mlp(self.norm2(self.attn(self.norm1(x)))), "both residual connections are missing"),
    (lambda self, x: (h := x + self.attn(self.norm1(x))) + self.mlp(h), "without its LayerNorm"),
    (lambda self, x: (x + self.attn(self.norm1(x))) + self.mlp(self.norm2(x)), "parallel"),
    (lambda self, x: (h := x + self.attn(self.norm2(x))) + self.mlp(self.norm1(h)), "swapped"),
])
def test_block_names_the_mistake(forward, words):
    result = checks.check_capstone_block(block_with(forward))
    assert result.status == FAIL and words in result.message, result.line


def test_block_placeholder_is_todo():
    assert checks.check_capstone_block(placeholder).status == TODO
    assert checks.check_capstone_block(block_with(placeholder)).status == TODO


# --- 10.4 the ViT ----------------------------------------------------------------------------------

def vit_with(**methods):
    return type("WrongViT", (SolutionViT,), methods)


def no_position(self, images):
    x = self.patch_embed(patchify(images, self.patch_size))
    x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + 0 * self.pos_embed
    for block in self.blocks:
        x = block(x)
    return self.head(self.norm(x)[:, 0])


def no_class_token(self, images):
    x = self.patch_embed(patchify(images, self.patch_size))
    x = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1) + self.pos_embed + 0 * self.cls_token.sum()
    for block in self.blocks:
        x = block(x)
    return self.head(self.norm(x)[:, 0])


class ShortPositions(SolutionViT):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pos_embed = nn.Parameter(self.pos_embed[:, 1:].detach().clone())


class UnusedNorm(SolutionViT):
    def forward(self, images):
        x = self.patch_embed(patchify(images, self.patch_size))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])


@pytest.mark.parametrize("vit, words", [
    (vit_with(forward=no_position), "bag of patches"),
    (vit_with(forward=no_class_token), "class token never enters"),
    (vit_with(forward=lambda self, images: self.head(self.tokens(images))), "one prediction per token"),
    (vit_with(forward=lambda self, images: self.head(self.tokens(images)[:, 0]).softmax(dim=0)), "batch"),
    (ShortPositions, "the class token needs one too"),
    (UnusedNorm, "norm.weight"),
])
def test_vit_names_the_mistake(vit, words):
    result = checks.check_capstone_vit(vit)
    assert result.status == FAIL and words in result.message, result.line


def test_vit_passes_and_placeholders_are_todo():
    assert checks.check_capstone_vit(SolutionViT).status == PASS

    class TodoAttention(MultiHeadAttention):
        forward = placeholder

    class ViTWithTodoAttention(SolutionViT):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for block in self.blocks:
                block.attn.forward = placeholder

    assert checks.check_capstone_vit(ViTWithTodoAttention).status == TODO
    assert checks.check_capstone_vit(placeholder).status == TODO
    assert checks.check_capstone_vit(vit_with(forward=placeholder)).status == TODO


# --- 10.5 the capstone check -----------------------------------------------------------------------

def test_capstone_nothing_trained_yet_is_todo_with_a_hint():
    result = checks.check_capstone(None)
    assert result.status == TODO and "Hint:" in result.line and 'checks.hint("10.5")' in result.line
    assert checks.check_capstone(placeholder).status == TODO
    assert checks.check_capstone(tiny()).status != TODO


def test_capstone_refuses_the_package_model():
    from vit_lesson.model import ViT
    from vit_lesson.registry import get_config

    result = checks.check_capstone(ViT(get_config("micro", image_size=16, num_channels=1)))
    assert result.status == FAIL and "the vit_lesson.model.ViT given here" in result.message, result.line


def test_capstone_refuses_package_modules_inside_and_subclasses():
    from vit_lesson.block import Block as PackageBlock

    model = tiny()
    model.blocks[0] = PackageBlock(16, 2)
    result = checks.check_capstone(model)
    assert result.status == FAIL and "model.blocks.0 is vit_lesson.block.Block" in result.message, result.line

    class Mine(PackageBlock):
        pass

    model.blocks[0] = Mine(16, 2)
    result = checks.check_capstone(model)
    assert result.status == FAIL and "model.blocks.0 subclasses vit_lesson.block.Block" in result.message


def test_capstone_refuses_torch_ready_made_transformer_layers():
    model = tiny()
    model.blocks[0] = nn.TransformerEncoderLayer(16, 2, batch_first=True, norm_first=True)
    result = checks.check_capstone(model)
    assert result.status == FAIL and "torch.nn.TransformerEncoderLayer" in result.message, result.line


def test_capstone_finds_package_functions_called_in_forward():
    import vit_lesson.patches

    class PackagePatchify(SolutionViT):
        def forward(self, images):
            x = self.patch_embed(vit_lesson.patches.patchify(images, self.patch_size))
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
            return self.head(self.norm(x)[:, 0])

    torch.manual_seed(0)
    result = checks.check_capstone(PackagePatchify(dim=16, depth=1, heads=2))
    assert result.status == FAIL and "vit_lesson.patches.patchify" in result.message, result.line
    assert sys.getprofile() is None, "the check left its profiler installed"


def test_capstone_refuses_a_model_of_torch_layers_only():
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    result = checks.check_capstone(model)
    assert result.status == FAIL and "only from torch's layers" in result.message, result.line


def test_capstone_names_a_wrong_output_shape():
    per_token = vit_with(forward=lambda self, images: self.head(self.tokens(images)))
    torch.manual_seed(0)
    result = checks.check_capstone(per_token(dim=16, depth=1, heads=2))
    assert result.status == FAIL and "one prediction per token" in result.message, result.line
    result = checks.check_capstone(tiny(num_classes=7))
    assert result.status == FAIL and "should have shape [360, 10], got [360, 7]" in result.message, result.line


def test_capstone_names_nan():
    model = tiny()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    result = checks.check_capstone(model)
    assert result.status == FAIL and "NaN" in result.message and "head.weight" in result.message, result.line

    nan_out = vit_with(forward=lambda self, images: self.head(self.tokens(images)[:, 0]) / 0 * 0)
    torch.manual_seed(0)
    result = checks.check_capstone(nan_out(dim=16, depth=1, heads=2))
    assert result.status == FAIL and "NaN or inf for 360 of the 360" in result.message, result.line


def test_capstone_untrained_model_is_below_the_bar_by_how_much():
    model = tiny().train()
    result = checks.check_capstone(model)
    assert result.status == FAIL, result.line
    assert "points below the 90%" in result.message and "chance" in result.message, result.line
    assert model.training, "the check must restore the model's training mode"


def test_capstone_wrong_input_size_says_how_to_fix_it():
    result = checks.check_capstone(tiny(img_size=8, patch_size=4))
    assert result.status == FAIL and "image_size=" in result.message, result.line
    assert checks.check_capstone(tiny(), image_size="16").status == FAIL


class NearestNeighbour(nn.Module):
    """A learner's own (non-ViT) class that classifies the digits well: exercises the pass path fast."""

    def __init__(self):
        super().__init__()
        from vit_lesson.data import digits_datasets

        train = digits_datasets(image_size=16)[0]
        self.register_buffer("images", torch.stack([train[i][0] for i in range(len(train))]).flatten(1))
        self.register_buffer("labels", train.targets.clone())
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images):
        nearest = torch.cdist(images.flatten(1), self.images).argmin(dim=1)
        return F.one_hot(self.labels[nearest], 10).float() * self.scale


def test_capstone_passes_a_good_model_of_the_learners_own_classes():
    result = checks.check_capstone(NearestNeighbour())
    assert result.status == PASS and "NearestNeighbour" in result.message, result.line
    assert "at least 90%" in result.message
