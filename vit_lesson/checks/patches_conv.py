"""Exercise checks 1.2 and 1.3 of notebook 01 (patches): the patch Conv2d, its tokens and its Linear.

Framework: :mod:`vit_lesson.checks.core`; the test cases are in :mod:`.patches_keys`, exercise 1.1
(patchify) in :mod:`.patches`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..i18n import _
from ..patches import patchify as reference_patchify
from .core import CheckFailed, call, exercise, expect_close, expect_tensor, fmt_shape
from .patches_keys import EMBED_DIM, PATCH_DIM, B, C, N, P, _call_other, _images, _other_convs, _values_wrong

__all__ = ["check_embed_patches", "check_conv_to_linear"]


# --- Exercise 1.2: Conv2d feature map -> tokens -----------------------------------------------------

@exercise("1.2", "embed patches", hints=(
    'The conv gives one D-vector per patch, laid out like a D-channel image; a Transformer wants one row per patch.',
    'conv(images) is [B, D, h, w]. Merge the two grid axes into one token axis N ([B, D, N]), then swap the token and '
    'channel axes.',
    'return conv(images).flatten(2).transpose(1, 2)',
))
def check_embed_patches(embed_patches):
    """``embed_patches(images [B, C, H, W], conv) -> tokens [B, N, D]`` with ``conv`` a patch Conv2d."""
    conv = nn.Conv2d(C, EMBED_DIM, kernel_size=P, stride=P)
    images = _images()
    with torch.no_grad():
        grid = conv(images)  # [B, D, h, w]
        got = expect_tensor(call(embed_patches, images.clone(), copy.deepcopy(conv)), _("embed_patches(images, conv)"))
    want = grid.flatten(2).transpose(1, 2)
    shape, bdn = tuple(got.shape), (B, EMBED_DIM, N)
    if shape == bdn:
        raise CheckFailed(_("your tensor is [B, D, N] = {shape}: you flattened but did not transpose. "
                            "Add .transpose(1, 2): a Transformer wants one row per token, [B, N, D].").format(
            shape=fmt_shape(shape)))
    if shape == tuple(grid.shape):
        raise CheckFailed(_("your tensor is the conv's feature map [B, D, h, w] = {shape}. Flatten the "
                            "grid with .flatten(2) -> [B, D, N], then .transpose(1, 2) -> [B, N, D].").format(
            shape=fmt_shape(shape)))
    if shape == (B, EMBED_DIM * N):
        raise CheckFailed(_("your tensor is {shape}: flatten(1) merged D with the grid. Use flatten(2), "
                            "which keeps the batch and channel axes, then .transpose(1, 2).").format(
            shape=fmt_shape(shape)))
    mistakes = {
        _("right shape, scrambled tokens: you turned [B, D, N] into [B, N, D] with reshape/view. That keeps the "
          "memory order, so each token mixes numbers of different patches. Use .transpose(1, 2) (or "
          "permute(0, 2, 1))."): grid.flatten(2).reshape(B, N, EMBED_DIM),
        _("your tokens are in column-major order (down each column first). Flatten the grid row by row: "
          "feature_map.flatten(2) does that, without transposing h and w first."):
            grid.transpose(2, 3).flatten(2).transpose(1, 2),
    }
    try:
        expect_close(got, want, _("your output"), wrong_variants=mistakes)
    except CheckFailed as error:
        if _values_wrong(error, got, want, mistakes):
            raise CheckFailed(_("{error} Use the `conv` passed in (not a new Conv2d), applied once to the "
                                "images.").format(error=error)) from None
        raise
    first = _("a Conv2d({c}, {d}, {p})").format(c=C, d=EMBED_DIM, p=P)
    for c, d, p, other, more, right in _other_convs():
        with torch.no_grad():
            now = _("a Conv2d({c}, {d}, {p}) on images {shape}").format(c=c, d=d, p=p, shape=fmt_shape(more.shape))
            got = expect_tensor(_call_other(embed_patches, first, now, c, more.clone(),
                                            copy.deepcopy(other)), _("embed_patches(images, conv)"))
        if got.shape != right.shape or not torch.allclose(got.float(), right, atol=1e-5):
            raise CheckFailed(_("correct for {first}, but with {now} your tokens are {got}, not {expected} with the "
                                "conv's numbers: is a size hard-coded? Take B, D and N from the tensors.").format(
                first=first, now=now, got=fmt_shape(got.shape), expected=fmt_shape(right.shape)))
    return _("{images} -> conv -> {grid} -> flatten(2) -> {flat} -> transpose(1, 2) -> {tokens}.").format(
        images=fmt_shape(images.shape), grid=fmt_shape(grid.shape), flat=fmt_shape(bdn), tokens=fmt_shape(want.shape))


# --- Exercise 1.3: the Conv2d is a Linear layer on patches -------------------------------------------

@exercise("1.3", "conv to linear", hints=(
    "For each output channel, a patch conv takes a weighted sum of one patch's C·P·P numbers plus a bias: that is one "
    "matrix row per output channel, the same for every patch.",
    "Build a Linear layer with C·P·P inputs and D outputs, and copy into it the conv's weight, flattened to one row "
    "per output channel (channel first, like patchify), and the conv's bias. Copy without tracking gradients.",
    'D = conv.weight.shape[0]\n'
    'linear = nn.Linear(conv.weight[0].numel(), D)\n'
    'with torch.no_grad():\n'
    '    linear.weight.copy_(conv.weight.reshape(D, -1))\n'
    '    linear.bias.copy_(conv.bias)\n'
    'return linear',
))
def check_conv_to_linear(conv_to_linear):
    """``conv_to_linear(conv) -> nn.Linear`` with ``linear(patchify(x, P)) == conv tokens``."""
    conv = nn.Conv2d(C, EMBED_DIM, kernel_size=P, stride=P)
    images = _images()
    with torch.no_grad():  # the answer key first, from the check's own copy of the conv
        want = conv(images).flatten(2).transpose(1, 2)
    linear = call(conv_to_linear, copy.deepcopy(conv))
    if not isinstance(linear, nn.Linear):
        raise CheckFailed(_("conv_to_linear should return an nn.Linear, got {type}.").format(
            type=type(linear).__name__))
    weight = tuple(linear.weight.shape)
    if weight == (PATCH_DIM, EMBED_DIM):
        raise CheckFailed(_("your weight is [in, out] = {shape}. nn.Linear stores it as "
                            "[out_features, in_features] = [{d}, {patch_dim}] (it computes x @ W.T + b): "
                            "reshape conv.weight to [D, C*P*P] and do not transpose it.").format(
            shape=fmt_shape(weight), d=EMBED_DIM, patch_dim=PATCH_DIM))
    if weight != (EMBED_DIM, PATCH_DIM):
        raise CheckFailed(_("the Linear should map C*P*P = {patch_dim} numbers to D = {d}: weight "
                            "[{d}, {patch_dim}], got {shape}.").format(patch_dim=PATCH_DIM, d=EMBED_DIM,
                                                                       shape=fmt_shape(weight)))
    patches = reference_patchify(images, P)
    with torch.no_grad():
        got = expect_tensor(call(linear, patches.clone()), _("linear(patchify(images, {p}))").format(p=P))
        kernel = conv.weight
        mistakes = {
            _("the bias is missing: copy conv.bias into linear.bias too."): want - conv.bias,
            _("the kernel is flattened pixel-first, (p1 p2 c), but patchify flattens each patch channel-first, "
              "(c p1 p2), the order of conv.weight.reshape(D, -1). Keep the kernel's own order."):
                F.linear(patches, kernel.permute(0, 2, 3, 1).flatten(1), conv.bias),
            _("the kernel is transposed (p2 before p1): flatten it as it is, conv.weight.reshape(D, -1)."):
                F.linear(patches, kernel.transpose(2, 3).flatten(1), conv.bias),
        }
    try:
        expect_close(got, want, _("your Linear's output"), wrong_variants=mistakes)
    except CheckFailed as error:
        if _values_wrong(error, got, want, mistakes):
            raise CheckFailed(_("{error} Copy the conv's numbers: linear.weight = conv.weight reshaped to "
                                "[{d}, {patch_dim}], linear.bias = conv.bias.").format(
                error=error, d=EMBED_DIM, patch_dim=PATCH_DIM)) from None
        raise
    first = _("a Conv2d({c}, {d}, {p})").format(c=C, d=EMBED_DIM, p=P)
    for c, d, p, other, more, right in _other_convs():
        now = _("a Conv2d({c}, {d}, {p})").format(c=c, d=d, p=p)
        linear = _call_other(conv_to_linear, first, now, c, copy.deepcopy(other))
        ok = isinstance(linear, nn.Linear) and tuple(linear.weight.shape) == (d, c * p * p)
        if ok:
            with torch.no_grad():
                got = expect_tensor(_call_other(linear, first, now, c, reference_patchify(more, p)),
                                    _("linear(patchify(images, {p}))").format(p=p))
            ok = got.shape == right.shape and torch.allclose(got.float(), right, atol=1e-5)
        if not ok:
            found = fmt_shape(linear.weight.shape) if isinstance(linear, nn.Linear) else type(linear).__name__
            raise CheckFailed(_("correct for {first}, but for {now} the Linear should have weight [D, C*P*P] = "
                                "{expected} with the conv's numbers (got {found}): is a size hard-coded? Take D and "
                                "C*P*P from conv.weight.shape.").format(
                first=first, now=now, expected=fmt_shape((d, c * p * p)), found=found))
    return _("Linear({patch_dim}, {d}) on the patches gives the Conv2d's tokens: a patch Conv2d is one "
             "shared Linear layer applied to every flattened patch (the paper's matrix E).").format(
        patch_dim=PATCH_DIM, d=EMBED_DIM)
