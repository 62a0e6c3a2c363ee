"""Exercise checks for notebook 02 (class token and position embeddings).

Framework: :mod:`vit_lesson.checks.core`. Test sizes are chosen so that no two axes have the same
length (``B=2, N=6, D=5``; position grids 4 x 4 -> 7 x 7 with ``D=10``), and each check computes
what the common mistakes would produce, to name the mistake when the learner's answer matches one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..embeddings import resize_position_embedding as reference_resize
from ..i18n import _
from .core import CheckFailed, LearnerError, call, exercise, expect_close, expect_tensor, fmt_shape

__all__ = ["check_add_class_token_and_positions", "check_resize_position_embedding"]


# --- Exercise 2.1: class token in front, position embeddings added ------------------------------------

def _token_inputs(b, n, d):
    return torch.randn(b, n, d), torch.randn(1, 1, d), torch.randn(1, n + 1, d)


def _token_mistakes(tokens, cls_token, pos_embed):
    cls = cls_token.expand(tokens.shape[0], -1, -1)
    return {
        _("the class token is at the END of the sequence: put it in FRONT, torch.cat([cls, patches], dim=1). "
          "Position 0 is the class token's everywhere (the model reads its output at index 0)."):
            torch.cat([tokens, cls], dim=1) + pos_embed,
        _("the position embeddings were not added: after torch.cat, add pos_embed ([1, N + 1, D] broadcasts "
          "over the batch)."): torch.cat([cls, tokens], dim=1),
        _("the position embeddings were added only to the patches: the class token needs its own position "
          "embedding too. Concatenate first, then add all N + 1 of them."):
            torch.cat([cls, tokens + pos_embed[:, 1:]], dim=1),
        _("the position embeddings were added to the patches before the class token was put in front, using "
          "pos_embed[:, :N]: every patch got its neighbour's position. Concatenate first, then add all N + 1."):
            torch.cat([cls, tokens + pos_embed[:, :-1]], dim=1),
        _("the class token was concatenated along the wrong axis or added to every patch: it is one extra "
          "token, torch.cat([cls, patches], dim=1)."): tokens + cls_token + pos_embed[:, 1:],
    }


@exercise("2.1", "class token and positions", hints=(
    "The class token is one vector shared by all images: give each image in the batch its own view of it, put it in "
    "front of that image's patch tokens, then add the position embeddings to every token.",
    'cls_token is [1, 1, D]: expand it over the batch to [B, 1, D] (no copy needed), concatenate it before the '
    'patches along the token axis, and let pos_embed [1, N + 1, D] broadcast over the batch.',
    'cls = cls_token.expand(patch_tokens.shape[0], -1, -1)  # [B, 1, D]\n'
    'return torch.cat([cls, patch_tokens], dim=1) + pos_embed',
))
def check_add_class_token_and_positions(add_class_token_and_positions):
    """``f(patch_tokens [B, N, D], cls_token [1, 1, D], pos_embed [1, N + 1, D]) -> [B, N + 1, D]``."""
    for b, n, d in ((2, 6, 5), (3, 4, 5), (1, 9, 8)):
        tokens, cls_token, pos_embed = _token_inputs(b, n, d)
        what = _("add_class_token_and_positions(patch_tokens {tokens}, cls_token {cls_token}, "
                 "pos_embed {pos_embed})").format(tokens=fmt_shape(tokens.shape), cls_token=fmt_shape(cls_token.shape),
                                                  pos_embed=fmt_shape(pos_embed.shape))
        try:
            got = expect_tensor(call(add_class_token_and_positions, tokens.clone(), cls_token.clone(),
                                     pos_embed.clone()), what)
        except LearnerError as error:
            if "Sizes of tensors must match" in str(error) or "Expected size" in str(error):
                message = _("{error}. The class token is [1, 1, D] but the batch has B = {b} images: "
                            "expand it to [B, 1, D] first, cls_token.expand(B, -1, -1), then "
                            "torch.cat([cls, patches], dim=1).")
                raise CheckFailed(message.format(error=str(error).rstrip("."), b=b)) from None
            raise
        if tuple(got.shape) == (b, n, d):
            raise CheckFailed(_("{what} returned {shape}: N = {n} tokens, so the class token is "
                                "missing. Put it in front of the patches: {n} patches + 1 = {total} tokens.").format(
                what=what, shape=fmt_shape(got.shape), n=n, total=n + 1))
        want = torch.cat([cls_token.expand(b, -1, -1), tokens], dim=1) + pos_embed
        expect_close(got, want, _("your output"), wrong_variants=_token_mistakes(tokens, cls_token, pos_embed))
    return _("[2, 6, 5] -> [2, 7, 5]: the class token in front of every image's patches, then + E_pos.")


# --- Exercise 2.2: resize learned position embeddings -------------------------------------------------

# Accepted interpolations: (mode, antialias, align_corners). timm: bicubic, antialias, not aligned.
_SETTINGS = [("bicubic", True, False), ("bicubic", False, False), ("bilinear", True, False),
             ("bilinear", False, False), ("bicubic", False, True), ("bilinear", False, True)]

#: The mistakes of 2.2 (the keys name the variants of :func:`_resize_variant`).
_RESIZE_MISTAKE_NAMES = ("cls last", "no permute", "no permute back", "nearest", "nearest-exact", "area")


def _resize_mistake(mistake: str) -> str:
    """The explanation of one of :data:`_RESIZE_MISTAKE_NAMES`, in the language in use."""
    return {
        "cls last": _("the class token is at the end: keep its embedding first, torch.cat([pos_embed[:, :1], grid], "
                      "dim=1)."),
        "no permute": _("you reshaped [1, H*W, D] straight to [1, D, H, W]: reshape keeps memory order, so each "
                        "'channel' mixes pieces of different positions' embeddings. Reshape to [1, H, W, D], then "
                        "permute(0, 3, 1, 2)."),
        "no permute back": _("the resized grid [1, D, H', W'] was reshaped straight to [1, H'*W', D]: permute it "
                             "back to [1, H', W', D] first (permute(0, 2, 3, 1)), then flatten."),
        "nearest": _("you used mode='nearest': it copies each old embedding into a block of new positions, so "
                     "neighbours get identical embeddings and the model cannot tell them apart. Use 'bicubic' "
                     "(timm's choice) or 'bilinear'."),
        "nearest-exact": _("wrong interpolation mode: you used mode='nearest-exact', which copies each old "
                           "embedding into a block of new positions, so neighbours get identical embeddings. Use "
                           "'bicubic' (timm's choice) or 'bilinear'."),
        "area": _("wrong interpolation mode: you used mode='area' (averaging over blocks, adaptive average "
                  "pooling). Position embeddings are resized by smooth 2D interpolation: 'bicubic' (timm's choice) "
                  "or 'bilinear'."),
    }[mistake]
_MODE_MISTAKES = ("nearest", "nearest-exact", "area")
#: The second resize, a downsampling where every mode (and antialias) gives different numbers,
#: with another D: (old grid, new grid, D).
_DOWN = (6, 4, 3)


def _resize_variant(pos_embed, new_grid, setting, mistake=None):
    """The resize with one interpolation ``setting``, done right or with one of ``_RESIZE_MISTAKE_NAMES``."""
    mode, antialias, align = setting
    prefix, grid = pos_embed[:, :1], pos_embed[:, 1:]
    side, d = int(grid.shape[1] ** 0.5), grid.shape[-1]
    grid = grid.reshape(1, d, side, side) if mistake == "no permute" else \
        grid.reshape(1, side, side, d).permute(0, 3, 1, 2)                                # [1, D, H, W]
    if mistake in _MODE_MISTAKES:
        grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mistake)
    else:
        grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode, antialias=antialias, align_corners=align)
    if mistake == "no permute":
        grid = grid.reshape(1, d, -1).transpose(1, 2)
    elif mistake == "no permute back":
        grid = grid.reshape(1, -1, d)
    else:
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, d)                                # [1, H'*W', D]
    return torch.cat([grid, prefix], dim=1) if mistake == "cls last" else torch.cat([prefix, grid], dim=1)


@exercise("2.2", "resize position embeddings", hints=(
    'The patch positions live on a square grid: treat their embeddings as a small D-channel image, resize that '
    'image, and read it back as a sequence. The class token has no place on the grid.',
    'Split off the class token. Reshape the rest to [1, H, W, D], move D to the channel axis, interpolate to the new '
    'grid size with a smooth 2D mode (bicubic, as timm does), move D back, flatten the grid, and put the class token '
    'in front again.',
    "cls, grid = pos_embed[:, :1], pos_embed[:, 1:]\nside, dim = int(grid.shape[1] ** 0.5), grid.shape[-1]\n"
    "grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)\n"
    "grid = F.interpolate(grid, size=(new_grid, new_grid), mode='bicubic', antialias=True)\n"
    "return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)",
))
def check_resize_position_embedding(resize):
    """``resize(pos_embed [1, 1 + H*W, D], new_grid: int) -> [1, 1 + new_grid**2, D]``.

    Bicubic or bilinear, with or without antialias, pass; the class token's embedding is kept.
    """
    old, new, d = 4, 7, 10
    pos_embed = torch.randn(1, 1 + old * old, d)
    what = _("resize(pos_embed {shape}, new_grid={new})").format(shape=fmt_shape(pos_embed.shape), new=new)
    got = expect_tensor(call(resize, pos_embed.clone(), new), what)
    if tuple(got.shape) == (1, new * new, d):
        raise CheckFailed(_("{what} returned {shape}: the class token's embedding is missing. "
                            "Split it off first (pos_embed[:, :1]), resize only the patch grid, and put it back "
                            "in front.").format(what=what, shape=fmt_shape(got.shape)))
    if tuple(got.shape) != (1, 1 + new * new, d):
        raise CheckFailed(_("{what} should return [1, 1 + {new}*{new}, D] = {expected}, got {shape}.").format(
            what=what, new=new, expected=fmt_shape((1, 1 + new * new, d)), shape=fmt_shape(got.shape)))
    got = got.detach().float()
    close = lambda want: torch.allclose(got, want, atol=1e-4)  # noqa: E731
    match = next((setting for setting in _SETTINGS if close(_resize_variant(pos_embed, new, setting))), None)
    if match is None:  # not an accepted interpolation: name the mistake, or show where it differs
        for mistake in _RESIZE_MISTAKE_NAMES:
            if any(close(_resize_variant(pos_embed, new, setting, mistake)) for setting in _SETTINGS):
                raise CheckFailed(_resize_mistake(mistake))
        expect_close(got, reference_resize(pos_embed, new), _("your output"), atol=1e-4)
        raise CheckFailed(_("your output is not a 2D interpolation of the position grid."))
    if not torch.equal(got[:, :1], pos_embed[:, :1]):
        raise CheckFailed(_("the class token's embedding changed: keep pos_embed[:, :1] exactly as it is."))
    same = expect_tensor(call(resize, pos_embed.clone(), old), _("resize(pos_embed, new_grid={new})").format(new=old))
    if same.shape != pos_embed.shape or not torch.allclose(same.float(), pos_embed, atol=1e-5):
        raise CheckFailed(_("resizing to the same grid ({old} x {old}) should give back the same embeddings; "
                            "is a size hard-coded?").format(old=old))
    down_old, down_new, down_d = _DOWN  # 4 -> 7 cannot tell area from aligned bilinear, nor antialias
    small = torch.randn(1, 1 + down_old * down_old, down_d)
    what = _("resize(pos_embed {shape}, new_grid={new})").format(shape=fmt_shape(small.shape), new=down_new)
    try:
        got = expect_tensor(call(resize, small.clone(), down_new), what).detach().float()
    except LearnerError as error:
        raise CheckFailed(_("correct from {old} x {old} to {new} x {new} with D = {d}, but on {what} "
                            "{error}: is a size hard-coded (the grid side, D)? Take the sizes from "
                            "pos_embed.shape and new_grid.").format(old=old, new=new, d=d, what=what,
                                                                    error=str(error).rstrip("."))) from None
    right = (1, 1 + down_new * down_new, down_d)
    close = lambda want: got.shape == want.shape and torch.allclose(got, want, atol=1e-4)  # noqa: E731
    if not any(close(_resize_variant(small, down_new, setting)) for setting in _SETTINGS):
        for mistake in _MODE_MISTAKES:
            if close(_resize_variant(small, down_new, _SETTINGS[0], mistake)):
                raise CheckFailed(_resize_mistake(mistake))
        raise CheckFailed(_("correct from {old} x {old} to {new} x {new} with D = {d}, but {what} should be a "
                            "{expected} bicubic or bilinear resize, got {shape} with other "
                            "numbers: is a size hard-coded (the grid side, D), or is a mode used that only "
                            "upsamples right? Take the sizes from pos_embed.shape and new_grid.").format(
            old=old, new=new, d=d, what=what, expected=fmt_shape(right), shape=fmt_shape(got.shape)))
    mode, antialias, _align_corners = match
    if match == ("bicubic", True, False):
        note = ""
    elif antialias:
        note = _(" (You used {mode}: also fine; timm's default is bicubic with antialias=True, which "
                 "vit_lesson.embeddings.resize_position_embedding reproduces.)").format(mode=mode)
    else:
        note = _(" (You used {mode}, no antialias: also fine; timm's default is bicubic with antialias=True, which "
                 "vit_lesson.embeddings.resize_position_embedding reproduces.)").format(mode=mode)
    return _("a {old} x {old} grid -> {new} x {new}, class token kept, same size unchanged.{note}").format(
        old=old, new=new, note=note)
