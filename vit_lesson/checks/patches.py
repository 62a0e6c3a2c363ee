"""Exercise checks for notebooks 00 (start here) and 01 (patches).

Framework: :mod:`vit_lesson.checks.core`. Every check runs the learner's code on a small
non-square batch (``[2, 3, 8, 12]``, patch 4: a 2 x 3 grid of 6 patches, so height and width,
``N`` and ``C*P*P``, ``N`` and ``D`` all differ and a swapped axis cannot pass by accident),
compares with :mod:`vit_lesson.patches`, and names the mistake when the answer matches a
known-wrong variant.
"""

from __future__ import annotations

import copy
import numbers

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..i18n import _
from ..patches import patchify as reference_patchify
from .core import CheckFailed, LearnerError, call, exercise, expect_close, expect_tensor, fmt_shape

__all__ = ["check_num_patches", "check_patchify", "check_embed_patches", "check_conv_to_linear"]

# The small test batch: B=2, C=3, H=8, W=12, P=4 -> a (h, w) = (2, 3) grid, N=6, C*P*P=48.
B, C, H, W, P = 2, 3, 8, 12, 4
GRID_H, GRID_W = H // P, W // P
N, PATCH_DIM = GRID_H * GRID_W, C * P * P
EMBED_DIM = 8


def _channels_note(channels: int) -> str:
    """`` (1 channel here, not 3)``: what differs in the other configuration, or nothing."""
    if channels == 3:
        return ""
    if channels == 1:
        return _(" ({channels} channel here, not 3)").format(channels=channels)
    return _(" ({channels} channels here, not 3)").format(channels=channels)


def _values_wrong(error: CheckFailed, got: torch.Tensor, want: torch.Tensor, mistakes: dict) -> bool:
    """Whether :func:`expect_close` failed on the values alone (right shape, finite, no known mistake),
    decided without reading its words (they are translated)."""
    return (str(error) not in mistakes and tuple(got.shape) == tuple(want.shape)
            and bool(torch.isfinite(got.detach()).all()))


def _call_other(fn, first: str, now: str, channels: int, *args):
    """``call(fn, *args)`` on another configuration; a crash there points at a hard-coded size."""
    try:
        return call(fn, *args)
    except LearnerError as error:
        raise CheckFailed(_("correct on {first}, but on {now} {error}: is a number hard-coded{note}? Take the sizes "
                            "from the tensors you are given (images.shape, conv.weight.shape).").format(
            first=first, now=now, error=str(error).rstrip("."), note=_channels_note(channels))) from None
#: More configurations, so that a hard-coded channel count, patch size or D fails:
#: ((B, C, H, W), P) for 1.1; (C, D, P) with images [3, C, 6, 10] for 1.2 and 1.3.
OTHER_SIZES = (((3, 1, 6, 10), 2),)
OTHER_CONVS = ((1, 5, 2), (2, 7, 3))


def _images(*shape) -> torch.Tensor:
    return torch.randn(*(shape or (B, C, H, W)))


# --- Exercise 0.1 (notebook 00): a warm-up that shows how checks report ---------------------------

@exercise("0.1", "number of patches", hints=(
    'How many patches fit along one side of the image? The grid is square.',
    'Along one side, image_size pixels hold image_size / patch_size patches (a whole number: use floor division); the grid has that many rows and that many columns.',
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

def _patchify_mistakes(images: torch.Tensor, patch: int) -> dict[str, torch.Tensor]:
    """What each plausible wrong patchify returns, with the words that explain it."""
    b, c, h, w = images.shape
    n, d = (h // patch) * (w // patch), c * patch * patch
    split = "b c (h p1) (w p2) -> "
    unfolded = F.unfold(images, kernel_size=patch, stride=patch)  # [B, C*P*P, N]
    return {
        _("your patches are scrambled: you turned F.unfold's [B, C*P*P, N] into [B, N, C*P*P] with "
          "reshape/view. Reshape keeps the numbers in memory order, so each row mixes pieces of different "
          "patches. Swap the two axes with .transpose(1, 2) instead."): unfolded.reshape(b, n, d),
        _("your patches are scrambled: reshape/view straight to [B, N, C*P*P] cuts the image into chunks of "
          "{d} consecutive numbers (pieces of pixel rows), not into P x P squares: the axes have to move "
          "before the numbers are regrouped. Stuck? checks.hint(\"1.1\")").format(d=d): images.reshape(b, n, d),
        _("the channel axis got mixed into the patch axis: you reshaped [B, C, h, w, P, P] straight to "
          "[B, N, C*P*P]. Move C next to the pixels first: permute to [B, h, w, C, P, P], then "
          "reshape."): rearrange(images, split + "b c h w p1 p2", p1=patch, p2=patch).reshape(b, n, d),
        _("your patches are in column-major order (down each column first). ViT and Conv2d number them "
          "row by row, left to right then top to bottom: the patch in grid row i, column j is number "
          "i * w + j, so the grid flattens as (h w), not (w h)."): rearrange(images, split + "b (w h) (c p1 p2)", p1=patch, p2=patch),
        _("each patch is transposed: you flattened its pixels column by column (p2 before p1). Flatten "
          "row by row, (c p1 p2), like Conv2d.weight.flatten(1)."): rearrange(images, split + "b (h w) (c p2 p1)", p1=patch, p2=patch),
    }


def _pixel_first(images: torch.Tensor, patch: int) -> torch.Tensor:
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch, p2=patch)


@exercise("1.1", "patchify", hints=(
    "In memory a patch is not one block of numbers, so a reshape alone cannot cut it out. Split each side into a grid index and a pixel index, move the axes so that each patch's numbers sit together, and only then flatten.",
    'Split H into (H / P, P) and W into (W / P, P): a 6-D tensor [B, C, h, P, w, P]. Move its axes to [B, h, w, C, P, P] (grid row, grid column, then channel, pixel row, pixel column), then merge (h, w) into N and (C, P, P) into one patch vector.',
    "B, C, H, W = images.shape; P = patch_size\nx = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, C, P, P]\nreturn x.reshape(B, (H // P) * (W // P), C * P * P)\n# or: einops.rearrange(images, 'b c (h p1) (w p2) -> b (h w) (c p1 p2)', p1=P, p2=P)",
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
                            "Flatten the grid into one axis of N = {n} patches (and each patch into one vector).").format(
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
        raise CheckFailed(_("each patch should be flattened to C*P*P = {c}*{p}*{p} = {patch_dim} numbers, got {got}.").format(
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
                                                      note=_(" ({channels} channel here, not 3)").format(channels=c)
                                                      if c != 3 else ""))
    return _("{shape} -> {patches} and [1, 3, 224, 224] -> [1, 196, 768], patches row by row.{note}").format(
        shape=fmt_shape(images.shape), patches=fmt_shape((B, N, PATCH_DIM)), note=note)


# --- Exercise 1.2: Conv2d feature map -> tokens -----------------------------------------------------

@exercise("1.2", "embed patches", hints=(
    'The conv gives one D-vector per patch, laid out like a D-channel image; a Transformer wants one row per patch.',
    'conv(images) is [B, D, h, w]. Merge the two grid axes into one token axis N ([B, D, N]), then swap the token and channel axes.',
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
          "feature_map.flatten(2) does that, without transposing h and w first."): grid.transpose(2, 3).flatten(2).transpose(1, 2),
    }
    try:
        expect_close(got, want, _("your output"), wrong_variants=mistakes)
    except CheckFailed as error:
        if _values_wrong(error, got, want, mistakes):
            raise CheckFailed(_("{error} Use the `conv` passed in (not a new Conv2d), applied once to the "
                                "images.").format(error=error)) from None
        raise
    first = _("a Conv2d({c}, {d}, {p})").format(c=C, d=EMBED_DIM, p=P)
    for c, d, p in OTHER_CONVS:
        other, more = nn.Conv2d(c, d, kernel_size=p, stride=p), _images(3, c, 3 * p, 5 * p)
        with torch.no_grad():
            right = other(more).flatten(2).transpose(1, 2)
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
    "For each output channel, a patch conv takes a weighted sum of one patch's C·P·P numbers plus a bias: that is one matrix row per output channel, the same for every patch.",
    "Build a Linear layer with C·P·P inputs and D outputs, and copy into it the conv's weight, flattened to one row per output channel (channel first, like patchify), and the conv's bias. Copy without tracking gradients.",
    'D = conv.weight.shape[0]\nlinear = nn.Linear(conv.weight[0].numel(), D)\nwith torch.no_grad():\n    linear.weight.copy_(conv.weight.reshape(D, -1))\n    linear.bias.copy_(conv.bias)\nreturn linear',
))
def check_conv_to_linear(conv_to_linear):
    """``conv_to_linear(conv) -> nn.Linear`` with ``linear(patchify(x, P)) == conv tokens``."""
    conv = nn.Conv2d(C, EMBED_DIM, kernel_size=P, stride=P)
    images = _images()
    with torch.no_grad():  # the answer key first, from the check's own copy of the conv
        want = conv(images).flatten(2).transpose(1, 2)
    linear = call(conv_to_linear, copy.deepcopy(conv))
    if not isinstance(linear, nn.Linear):
        raise CheckFailed(_("conv_to_linear should return an nn.Linear, got {type}.").format(type=type(linear).__name__))
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
    for c, d, p in OTHER_CONVS:
        other, more = nn.Conv2d(c, d, kernel_size=p, stride=p), _images(3, c, 3 * p, 5 * p)
        with torch.no_grad():
            right = other(more).flatten(2).transpose(1, 2)
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
