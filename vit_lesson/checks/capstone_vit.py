"""Exercise check 10.4 of the capstone (notebook 10): the learner's whole ViT, before training.

The overview of the capstone is in :mod:`.capstone`; the answer keys are in :mod:`.capstone_keys`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..i18n import _
from .capstone_keys import _patchify, _randomize, _unpatchify
from .core import CheckFailed, call, exercise, expect_tensor, fmt_shape

__all__ = ["check_capstone_vit"]


# --- 10.4 the ViT ----------------------------------------------------------------------------------

_VIT_CONFIG = dict(img_size=12, patch_size=4, in_chans=3, num_classes=7, dim=24, depth=2, heads=2, mlp_ratio=2)


def _parameter(model, name, what):
    value = getattr(model, name, None)
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(_("the model has no self.{name} (timm's name for {what}); create it in __init__ as an "
                            "nn.Parameter so the check can find it.").format(name=name, what=what))
    if not isinstance(value, nn.Parameter):
        raise CheckFailed(_("self.{name} is a plain tensor, so it would never be trained: wrap it in "
                            "nn.Parameter.").format(name=name))
    return value


@exercise("10.4", "the ViT", hints=(
    "The model owns a patch embedding, one learned class token, one learned position vector per token (the class "
    "token included), a stack of blocks, a final LayerNorm and a linear head.",
    "In forward: patchify and embed the patches to [B, N, D]; put a copy of the class token in front of each image's "
    "tokens, [B, N + 1, D]; add the position embeddings; run the blocks; normalise; the head reads the class token's "
    "final state, the first token.",
    "# __init__\n"
    "self.patch_embed = nn.Linear(in_chans * patch_size ** 2, dim)\n"
    "self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))\n"
    "self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)\n"
    "self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])\n"
    "self.norm = nn.LayerNorm(dim)\n"
    "self.head = nn.Linear(dim, num_classes)\n"
    "# forward\n"
    "x = self.patch_embed(patchify(images, self.patch_size))\n"
    "x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed\n"
    "for block in self.blocks:\n"
    "    x = block(x)\n"
    "return self.head(self.norm(x)[:, 0])",
))
def check_capstone_vit(vit_class):
    """``vit_class(img_size=12, patch_size=4, in_chans=3, num_classes=7, dim=24, depth=2, heads=2,
    mlp_ratio=2)`` maps ``[B, 3, 12, 12]`` to logits ``[B, 7]`` with a class token (``cls_token``) and
    ``N + 1`` position embeddings (``pos_embed``) that it uses; its predictions depend on where each
    patch is, not on the other images in the batch, and every parameter gets a gradient."""
    cfg = _VIT_CONFIG
    D, N, K = cfg["dim"], (cfg["img_size"] // cfg["patch_size"]) ** 2, cfg["num_classes"]
    model = call(vit_class, **cfg)
    built = "ViT(img_size=12, patch_size=4, in_chans=3, num_classes=7, dim=24, depth=2, heads=2, mlp_ratio=2)"
    if not isinstance(model, nn.Module):
        raise CheckFailed(_("{built} should build an nn.Module, got {type}.").format(
            built=built, type=type(model).__name__))
    cls_token = _parameter(model, "cls_token", _("the class token"))
    if cls_token.numel() != D:
        raise CheckFailed(_("cls_token has shape {shape}; it is one learned vector of D = {D} "
                            "numbers, shape [1, 1, {D}], shared by all images.").format(
            shape=fmt_shape(cls_token.shape), D=D))
    pos_embed = _parameter(model, "pos_embed", _("the position embeddings"))
    if pos_embed.numel() == N * D:
        raise CheckFailed(_("pos_embed has {N} positions, one per patch; the class token needs one too: "
                            "N + 1 = {tokens} rows of D = {D} (ViT paper, Eq. 1).").format(N=N, tokens=N + 1, D=D))
    if pos_embed.numel() != (N + 1) * D:
        raise CheckFailed(_("pos_embed has shape {shape}; with {N} patches and the class token "
                            "it should hold one D = {D} vector per token: [1, {tokens}, {D}].").format(
            shape=fmt_shape(pos_embed.shape), N=N, D=D, tokens=N + 1))
    model.eval()
    x = torch.randn(3, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    with torch.no_grad():
        out = call(model, x)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (3, N + 1, K):
            raise CheckFailed(_("the model returns one prediction per token, {shape}: the head reads "
                                "only the class token's final state (the first token).").format(
                shape=fmt_shape(out.shape)))
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (3, N + 1, D):
            raise CheckFailed(_("the model returns all token states {shape}: finish with the final "
                                "norm and the head, applied to the class token only.").format(
                shape=fmt_shape(out.shape)))
        expect_tensor(out, _("{built} applied to images [3, 3, 12, 12]").format(built=built), shape=(3, K))
        if not torch.isfinite(out).all():
            raise CheckFailed(_("the model's output contains NaN or inf at initialisation; look for a division by "
                                "zero or an uninitialised tensor (torch.empty) in __init__."))
        alone = expect_tensor(call(model, x[1:2]), _("the model applied to one image"), shape=(1, K))
        if not torch.allclose(alone, out[1:2], atol=1e-4, rtol=1e-3):
            raise CheckFailed(_("an image's prediction changes with the other images in the batch: some operation "
                                "mixes the batch axis (a softmax, mean or concatenation over the first axis?)."))

        # Random weights everywhere (a zero-initialised pos_embed would hide its use), then ask
        # whether the class token and the position embeddings change anything.
        probe = _randomize(copy.deepcopy(model), std=0.3, norm_mean=1.0)
        base = call(probe, x)
        order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
        C, S, P = cfg["in_chans"], cfg["img_size"], cfg["patch_size"]
        shuffled = _unpatchify(_patchify(x, P)[:, order], P, C, S, S)
        if torch.allclose(call(probe, shuffled), base, atol=1e-4, rtol=1e-3):
            raise CheckFailed(_("shuffling the patches of an image does not change its prediction: the model sees a "
                                "bag of patches. The position embeddings must be added to the tokens (all N + 1 of "
                                "them)."))
        saved = probe.cls_token.clone()
        probe.cls_token.add_(torch.randn_like(saved))  # not a constant: LayerNorm would remove that
        if torch.allclose(call(probe, x), base, atol=1e-4, rtol=1e-3):
            raise CheckFailed(_("changing cls_token does not change the output: the class token never enters the "
                                "sequence. Put it in front of every image's patch tokens before the blocks."))
        probe.cls_token.copy_(saved)

    probe.train()
    probe.zero_grad()
    (call(probe, x) * torch.randn(3, K)).sum().backward()
    unused = [name for name, p in probe.named_parameters()
              if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    if unused:
        names = ", ".join(unused[:4]) + (" ..." if len(unused) > 4 else "")
        raise CheckFailed(_("{count} parameter(s) get no gradient, so training would never change them: "
                            "{names}. Each layer created in __init__ has to be used in forward.").format(
            count=len(unused), names=names))
    params = sum(p.numel() for p in model.parameters())
    return _("[3, 3, 12, 12] -> [3, 7]; a class token and {positions} position embeddings in use, predictions depend "
             "on where each patch is, every one of the {params:,} parameters gets a gradient.").format(
        positions=N + 1, params=params)
