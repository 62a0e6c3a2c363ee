"""Notebook 06: images held in memory, their augmentation, and scikit-learn's handwritten digits.

- :class:`TensorImageDataset`: a ``[N, C, S, S]`` tensor in [0, 1] with its labels, normalised
  per item (the digits and :class:`~vit_lesson.shapes.ShapesDataset` are both one).
- :class:`RandomShiftRotate`: small shifts, rotations and zooms, never flips (a mirrored 2 is
  not a 2).
- :func:`digits_datasets`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans of
  0-9), a fixed stratified 80/20 split (1,437 train / 360 test), upscaled for a patch grid and
  normalised with the *training* pixels' own mean and std (see :mod:`vit_lesson.data` for why not
  ImageNet's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .i18n import _

__all__ = ["DIGITS_CLASSES", "TensorImageDataset", "RandomShiftRotate", "digits_arrays", "digits_datasets"]

DIGITS_CLASSES = [str(i) for i in range(10)]


class TensorImageDataset(Dataset):
    """Images held in memory in [0, 1]; ``dataset[i] -> (image [C, S, S] normalised, label)``.

    ``augment`` (a transform on a ``[C, S, S]`` tensor in [0, 1], or None) runs before the
    normalisation, so shifted-in borders get the background value 0, not the mean.

    Attributes: ``images_raw`` ``[N, C, S, S]`` in [0, 1] (for display), ``targets`` ``[N]``,
    ``classes``, ``mean``, ``std``.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes, mean, std, augment=None):
        if images.ndim != 4 or len(images) != len(targets):
            raise ValueError(_("Expected images [N, C, H, W] and N targets, got {images} "
                               "and {targets}.").format(images=tuple(images.shape), targets=tuple(targets.shape)))
        self.images_raw, self.targets = images.float(), targets.long()
        self.classes, self.augment = list(classes), augment
        self.mean, self.std = tuple(mean), tuple(std)
        # [C, 1, 1] tensors made once: v2.Normalize builds them on every call (28 of an item's 158 us at 32x32).
        self._mean_std = torch.tensor(self.mean).view(-1, 1, 1), torch.tensor(self.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images_raw[index]
        if self.augment is not None:
            image = self.augment(image)
        return self._normalize(image), int(self.targets[index])

    def __getitems__(self, indices: list[int]) -> list:
        """A batch at once (``DataLoader`` calls this instead of ``__getitem__`` per index).

        :class:`RandomShiftRotate` jitters the whole ``[B, C, S, S]`` batch in one resampling (each
        image its own random shift, angle and zoom); any other transform still sees one image at a time.
        """
        if self.augment is not None and not isinstance(self.augment, RandomShiftRotate):
            return [self[index] for index in indices]
        images = self.images_raw[indices]
        if self.augment is not None:
            images = self.augment(images)
        return list(zip(self._normalize(images), self.targets[indices].tolist()))

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(image - mean) / std`` per channel, as ``v2.Normalize`` (half-precision images stay half)."""
        mean, std = self._mean_std
        if image.dtype != mean.dtype:
            mean, std = mean.to(image.dtype), std.to(image.dtype)
        return (image - mean) / std


# --- digits ---------------------------------------------------------------------------------------

def digits_arrays(seed: int = 0):
    """The fixed stratified 80/20 split as numpy arrays (for scikit-learn baselines).

    Returns ``(x_train [1437, 64], x_test [360, 64], y_train [1437], y_test [360])``, pixels 0..16.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(digits.data, digits.target, test_size=0.2, stratify=digits.target,
                            random_state=seed)


class RandomShiftRotate(torch.nn.Module):
    """Random small affine jitter of an image ``[C, H, W]`` or a batch: shift, rotation, scale; no flips.

    One ``affine_grid`` + ``grid_sample`` per call; :class:`TensorImageDataset` calls it once per
    batch: 32 digits take about 0.2 ms at once against 2.2 ms one by one (one thread), although a
    single image now takes 0.13 ms instead of 0.07 (its matrix is tensor arithmetic, not Python
    floats). Uses torch's global RNG, so a seeded run is reproducible. Borders fill with 0.
    """

    def __init__(self, shift: float = 0.125, degrees: float = 10.0, scale: float = 0.1):
        super().__init__()
        self.shift, self.degrees, self.scale = shift, degrees, scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[C, H, W] -> [C, H, W]``, or a batch ``[B, C, H, W]``, each image with its own draw."""
        batch = image if image.ndim == 4 else image[None]
        u = torch.rand(len(batch), 4) * 2 - 1  # per image: angle, zoom, x and y shift, in [-1, 1)
        angle = math.radians(self.degrees) * u[:, 0]
        zoom = 1 + self.scale * u[:, 1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: a shift of s image widths is 2 * s.
        shift_x, shift_y = 2 * self.shift * u[:, 2], 2 * self.shift * u[:, 3]
        theta = torch.stack([cos, -sin, shift_x, sin, cos, shift_y], 1).view(-1, 2, 3)  # [B, 2, 3]
        grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
        out = F.grid_sample(batch, grid, align_corners=False, padding_mode="zeros")
        return out if image.ndim == 4 else out[0]

    def extra_repr(self) -> str:
        return f"shift={self.shift}, degrees={self.degrees}, scale={self.scale}"


def _augmentation(augment):
    if augment is True:
        return RandomShiftRotate()
    if augment is False or augment is None:
        return None
    if not callable(augment):
        raise TypeError(_("augment must be True, False or a transform of one image tensor, got {augment!r}.").format(
            augment=augment))
    return augment


def digits_datasets(image_size: int = 16, channels: int = 1, augment=False, seed: int = 0):
    """scikit-learn's handwritten digits as ``(train, test)`` :class:`TensorImageDataset` s.

    Items are ``(image [channels, image_size, image_size] float32, label int)``, normalised with
    the training pixels' mean and std (``train.mean``, ``train.std``). The 8x8 scans (0..16) are
    scaled to [0, 1] and upscaled bilinearly; ``channels=3`` repeats the grey channel (for models built for colour).
    ``augment`` jitters the training set only: ``True`` is :class:`RandomShiftRotate`'s default
    (shift up to 1/8 of the image, 10 degrees, 10% zoom); or pass your own transform of one
    ``[C, S, S]`` image in [0, 1], e.g. ``RandomShiftRotate(shift=1 / 16)``.
    """
    if image_size < 8:
        raise ValueError(_("image_size={image_size} would shrink the 8x8 digits; use 8 or more.").format(
            image_size=image_size))
    if channels not in (1, 3):
        raise ValueError(_("channels must be 1 (grey) or 3 (grey repeated as RGB), got {channels}.").format(
            channels=channels))
    x_train, x_test, y_train, y_test = digits_arrays(seed)

    def to_images(x):
        images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        if image_size != 8:
            images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
        return images.clamp(0, 1).repeat(1, channels, 1, 1)

    train_images = to_images(x_train)
    # The training pixels' own statistics (never the test set's), the same for every channel.
    mean, std = (train_images.mean().item(),) * channels, (train_images.std().item(),) * channels
    train = TensorImageDataset(train_images, torch.tensor(y_train), DIGITS_CLASSES, mean, std,
                               _augmentation(augment))
    test = TensorImageDataset(to_images(x_test), torch.tensor(y_test), DIGITS_CLASSES, mean, std)
    return train, test

