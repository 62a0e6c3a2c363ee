"""Notebook 01: cut an image into patches and embed each patch as a token.

ViT paper, Eq. 1: an image ``x`` of shape ``H x W x C`` becomes ``N = HW / P^2`` flattened
patches ``x_p`` of length ``P^2 C``, each mapped to ``D`` numbers by one shared matrix ``E``.
A ``Conv2d`` with ``kernel_size = stride = P`` is exactly that matrix applied to every patch.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .i18n import _


def _as_pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def validate_image_size(height: int, width: int, patch_size: int) -> None:
    """Raise a ``ValueError`` that names the numbers when a side is not a multiple of the patch."""
    for side, value in (("height", height), ("width", width)):
        if value % patch_size != 0:
            lower = value - value % patch_size
            side_name = _("height") if side == "height" else _("width")
            raise ValueError(
                _("Image {side} {value} is not divisible by the patch size {patch_size}: "
                  "{value} / {patch_size} = {ratio:.2f} patches. Resize or crop the "
                  "image to a multiple of {patch_size} (for example {lower} or {upper}), "
                  "or choose a patch size that divides {value}.").format(
                    side=side_name, value=value, patch_size=patch_size, ratio=value / patch_size,
                    lower=lower, upper=lower + patch_size)
            )


def validate_batch(images: torch.Tensor, who: str) -> None:
    """Raise a ``ValueError`` unless ``images`` is a 4-D batch ``[B, C, H, W]``."""
    if images.ndim != 4:
        fix = _(" For a single image use x.unsqueeze(0).") if images.ndim == 3 else ""
        raise ValueError(_("{who} expects a batch of images [B, C, H, W], got shape {shape}.{fix}").format(
            who=who, shape=tuple(images.shape), fix=fix))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping patches and flatten each one.

    ``[B, C, H, W] -> [B, N, C*P*P]`` with ``N = (H/P) * (W/P)``, patches in row-major order
    (left to right, then top to bottom) and each patch flattened channel-first ``(c, p1, p2)``,
    the same order as ``Conv2d.weight.flatten(1)`` and ``F.unfold``.
    """
    validate_batch(images, "patchify")
    validate_image_size(images.shape[-2], images.shape[-1], patch_size)
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, C*P*P] -> [B, C, H, W]``."""
    validate_image_size(height, width, patch_size)
    grid = (height // patch_size) * (width // patch_size)
    if patches.ndim != 3 or patches.shape[1] != grid or patches.shape[2] % (patch_size * patch_size):
        raise ValueError(
            _("unpatchify expects [B, N, C*P*P] with N = ({height}/{patch_size}) * ({width}/{patch_size}) = {grid} "
              "and C*P*P a multiple of {patch_size}*{patch_size}, got shape {shape}. "
              "Pass the height and width of the images that were patchified.").format(
                height=height, width=width, patch_size=patch_size, grid=grid, shape=tuple(patches.shape))
        )
    return rearrange(
        patches, "b (h w) (c p1 p2) -> b c (h p1) (w p2)",
        h=height // patch_size, p1=patch_size, p2=patch_size,
    )


class PatchEmbedding(nn.Module):
    """Split an image into ``P x P`` patches and project each to a ``D``-dimensional token.

    ``[B, C, H, W] -> [B, N, D]``; at the defaults ``[B, 3, 224, 224] -> [B, 196, 768]``.
    The weight lives in ``proj`` (a ``Conv2d``), as in timm, so checkpoints load unchanged.
    """

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        height, width = _as_pair(img_size)
        if patch_size <= 0:
            raise ValueError(_("patch_size must be a positive integer, got {patch_size}.").format(
                patch_size=patch_size))
        validate_image_size(height, width, patch_size)
        self.img_size = (height, width)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid_size = (height // patch_size, width // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                _("PatchEmbedding expects a batch of images [B, C, H, W], got shape {shape}. "
                  "For a single image use x.unsqueeze(0).").format(shape=tuple(x.shape))
            )
        if x.shape[1] != self.in_chans:
            hint = (_(" A grayscale image? Repeat it: x.expand(-1, 3, -1, -1).") if x.shape[1] == 1
                    else _(" Channels last? Use x.permute(0, 3, 1, 2).") if x.shape[-1] == self.in_chans
                    else "")
            raise ValueError(
                _("Expected {expected} input channels, got {got} (input shape "
                  "{shape}).{hint} Or build the model with in_chans={got}.").format(
                    expected=self.in_chans, got=x.shape[1], shape=tuple(x.shape), hint=hint)
            )
        validate_image_size(x.shape[-2], x.shape[-1], self.patch_size)
        x = self.proj(x)  # [B, D, H/P, W/P]: one D-vector per patch
        return x.flatten(2).transpose(1, 2)  # [B, D, N] -> [B, N, D]
