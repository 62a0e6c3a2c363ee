"""Exercise checks for notebooks 00 (start here) and 01 (patches).

Framework: :mod:`vit_lesson.checks.core`. Every check runs the learner's code on a small
non-square batch and on other configurations (:mod:`.patches_keys`), compares with
:mod:`vit_lesson.patches`, and names the mistake when the answer matches a known-wrong variant.
Exercises 1.2 and 1.3 (the patch Conv2d) are in :mod:`.patches_conv`.
"""

from __future__ import annotations

import numbers

import torch

from ..i18n import _
from ..patches import patchify as reference_patchify
from .core import CheckFailed, call, exercise, expect_close, expect_tensor, fmt_shape
from .patches_keys import (
    GRID_H,
    GRID_W,
    OTHER_SIZES,
    PATCH_DIM,
    B,
    C,
    H,
    N,
    P,
    W,
    _call_other,
    _channels_note,
    _images,
    _patchify_mistakes,
    _pixel_first,
)

__all__ = ["check_num_patches", "check_patchify"]


# --- Exercise 0.1 (notebook 00): a warm-up that shows how checks report ---------------------------

@exercise("0.1", "number of patches", hints=(
    'How many patches fit along one side of the image? The grid is square.',
    'Along one side, image_size pixels hold image_size / patch_size patches (a whole number: use floor division); the '
    'grid has that many rows and that many columns.',
    'return (image_size // patch_size) ** 2',
))
def check_num_patches(num_patches):
    """``num_patches(image_size, patch_size) -> int``: how many P x P patches tile a square image."""
    for size, patch in ((224, 16), (32, 4), (384, 16), (28, 7)):
        got = call(num_patches, size, patch)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, numbers.Real) or isinstance(got, bool):  # numpy.int64 too
            raise CheckFailed(_("num_patches({size}, {patch}) should return a number, got {type}.").format(
                size=size, patch=patch, type=type(got).__name__))
        want, side = (size // patch) ** 2, size // patch
        if got == want:
            continue
        if got == side:
            raise CheckFailed(_("num_patches({size}, {patch}) returned {got}: that is the number of patches "
                                "along one side. How many rows of them does the square grid have?").format(
                size=size, patch=patch, got=got))
        if got == size * size // patch:
            raise CheckFailed(_("num_patches({size}, {patch}) returned {got}: you divided the {size}² pixels "
                                "by P = {patch}, but each patch covers P² = {area} pixels.").format(
                size=size, patch=patch, got=got, area=patch * patch))
        raise CheckFailed(_("num_patches({size}, {patch}) should be ({size} / {patch})² = {want}, got {got}.").format(
            size=size, patch=patch, want=want, got=got))
    return _("224 / 16 = 14 patches per side, 14² = 196 patches (and 3 more sizes).")


# --- Exercise 1.1: patchify -------------------------------------------------------------------------

@exercise("1.1", "patchify", hints=(
    "In memory a patch is not one block of numbers, so a reshape alone cannot cut it out. Split each side into a grid "
    "index and a pixel index, move the axes so that each patch's numbers sit together, and only then flatten.",
    'Split H into (H / P, P) and W into (W / P, P): a 6-D tensor [B, C, h, P, w, P]. Move its axes to [B, h, w, C, P, '
    'P] (grid row, grid column, then channel, pixel row, pixel column), then merge (h, w) into N and (C, P, P) into '
    'one patch vector.',
    "B, C, H, W = images.shape; P = patch_size\n"
    "x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, C, P, P]\n"
    "return x.reshape(B, (H // P) * (W // P), C * P * P)\n"
    "# or: einops.rearrange(images, 'b c (h p1) (w p2) -> b (h w) (c p1 p2)', p1=P, p2=P)",
))
def check_patchify(patchify):
    """``patchify(images [B, C, H, W], patch_size) -> [B, N, C*P*P]``, channel-first in each patch.

    The pixel-first order ``(p1 p2 c)`` (lucidrains' vit-pytorch, MAE) passes with a note.
    """
    images = _images()
    what = _("patchify(images {shape}, patch_size={p})").format(shape=fmt_shape(images.shape), p=P)
    got = expect_tensor(call(patchify, images.clone(), P), what)  # a copy: its answer cannot change the key
    shape = tuple(got.shape)
    if shape == (B, PATCH_DIM, N):
        raise CheckFailed(_("your tensor is [B, C*P*P, N] = {shape}: the patches run along the last "
                            "axis (that is what F.unfold returns). Add .transpose(1, 2) to get [B, N, C*P*P].").format(
            shape=fmt_shape(shape)))
    if shape in ((B, GRID_H, GRID_W, PATCH_DIM), (B, GRID_H, GRID_W, C, P, P)):
        raise CheckFailed(_("your tensor is {shape}: the patches are still a {grid_h} x {grid_w} grid. "
                            "Flatten the grid into one axis of N = {n} patches (and each patch into one vector)."
                            ).format(
            shape=fmt_shape(shape), grid_h=GRID_H, grid_w=GRID_W, n=N))
    if got.ndim != 3 or shape[0] != B:
        raise CheckFailed(_("{what} should be [B, N, C*P*P] = {expected}, got {shape}.").format(
            what=what, expected=fmt_shape((B, N, PATCH_DIM)), shape=fmt_shape(shape)))
    if shape[1] != N:
        extra = ""
        if shape[1] in ((H // P) ** 2, (W // P) ** 2):
            extra = _(" Your count is what a square image would give: use H // P and W // P separately.")
        raise CheckFailed(_("wrong number of patches: an {h} x {w} image cut into {p} x {p} patches gives "
                            "({h}/{p}) x ({w}/{p}) = {grid_h} x {grid_w} = {n}, got {got}.{extra}").format(
            h=H, w=W, p=P, grid_h=GRID_H, grid_w=GRID_W, n=N, got=shape[1], extra=extra))
    if shape[2] != PATCH_DIM:
        raise CheckFailed(_("each patch should be flattened to C*P*P = {c}*{p}*{p} = {patch_dim} numbers, "
                            "got {got}.").format(
            c=C, p=P, patch_dim=PATCH_DIM, got=shape[2]))
    note = ""
    if torch.allclose(got.float(), _pixel_first(images, P)):
        note = _(" Note: you flattened each patch pixel-first, (p1 p2 c), as lucidrains' vit-pytorch and MAE do: "
                 "a valid patchify. This course uses channel-first, (c p1 p2), the order of Conv2d.weight.flatten(1), "
                 "so that a Conv2d's weights and a Linear's agree (Exercise 1.3).")
    else:
        expect_close(got, reference_patchify(images, P), _("your output"), wrong_variants=_patchify_mistakes(images, P))
    first = _("{shape} with patch {patch}").format(shape=fmt_shape(images.shape), patch=P)
    for shape, patch in (((1, 3, 224, 224), 16), *OTHER_SIZES):  # other sizes, one channel: nothing hard-coded
        more = _images(*shape)
        b, c, h, w = shape
        right = (b, (h // patch) * (w // patch), c * patch * patch)
        now = _("{shape} with patch {patch}").format(shape=fmt_shape(shape), patch=patch)
        got = expect_tensor(_call_other(patchify, first, now, c, more.clone(), patch),
                            _("patchify(images {shape}, {patch})").format(shape=fmt_shape(shape), patch=patch))
        if tuple(got.shape) != right or not (torch.allclose(got, reference_patchify(more, patch))
                                             or torch.allclose(got, _pixel_first(more, patch))):
            raise CheckFailed(_("correct on {first}, but {now} gave {got}, not {expected} with the same patch "
                                "order: is a number hard-coded{note}? Take the sizes from images.shape and "
                                "patch_size.").format(first=first, now=now, got=fmt_shape(got.shape),
                                                      expected=fmt_shape(right),
                                                      note=_channels_note(c)))
    return _("{shape} -> {patches} and [1, 3, 224, 224] -> [1, 196, 768], patches row by row.{note}").format(
        shape=fmt_shape(images.shape), patches=fmt_shape((B, N, PATCH_DIM)), note=note)
