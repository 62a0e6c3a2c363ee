"""The test cases and answer keys of notebook 01's checks (:mod:`.patches`, :mod:`.patches_conv`).

The small batch ``[2, 3, 8, 12]`` with patch 4 is a 2 x 3 grid of 6 patches, so height and width,
``N`` and ``C*P*P``, ``N`` and ``D`` all differ and a swapped axis cannot pass by accident; the other
configurations catch a hard-coded size. :func:`_patchify_mistakes` is the catalogue of wrong
patchifies, each with the words that name it. Nothing here grades.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from ..i18n import _
from .core import CheckFailed, LearnerError, call

__all__: list[str] = []

# The small test batch: B=2, C=3, H=8, W=12, P=4 -> a (h, w) = (2, 3) grid, N=6, C*P*P=48.
B, C, H, W, P = 2, 3, 8, 12, 4
GRID_H, GRID_W = H // P, W // P
N, PATCH_DIM = GRID_H * GRID_W, C * P * P
EMBED_DIM = 8

#: More configurations, so that a hard-coded channel count, patch size or D fails:
#: ((B, C, H, W), P) for 1.1; (C, D, P) with images [3, C, 6, 10] for 1.2 and 1.3.
OTHER_SIZES = (((3, 1, 6, 10), 2),)
OTHER_CONVS = ((1, 5, 2), (2, 7, 3))


def _images(*shape) -> torch.Tensor:
    return torch.randn(*(shape or (B, C, H, W)))


def _other_convs():
    """For each of ``OTHER_CONVS``: ``(c, d, p, conv, images, tokens)``, a fresh patch Conv2d, images for it
    and the tokens it should give, ``[3, N, d]`` (the answer key of 1.2 and 1.3)."""
    for c, d, p in OTHER_CONVS:
        conv, images = torch.nn.Conv2d(c, d, kernel_size=p, stride=p), _images(3, c, 3 * p, 5 * p)
        with torch.no_grad():
            tokens = conv(images).flatten(2).transpose(1, 2)
        yield c, d, p, conv, images, tokens


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
          "i * w + j, so the grid flattens as (h w), not (w h)."):
            rearrange(images, split + "b (w h) (c p1 p2)", p1=patch, p2=patch),
        _("each patch is transposed: you flattened its pixels column by column (p2 before p1). Flatten "
          "row by row, (c p1 p2), like Conv2d.weight.flatten(1)."):
            rearrange(images, split + "b (h w) (c p2 p1)", p1=patch, p2=patch),
    }


def _pixel_first(images: torch.Tensor, patch: int) -> torch.Tensor:
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch, p2=patch)
