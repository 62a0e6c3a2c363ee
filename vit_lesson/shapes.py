"""Notebook 06 and 07: procedural shapes, with each object's pixel mask and box.

:class:`ShapesDataset` draws one shape (circle, square, triangle, cross or ring) per image on a
noisy, graded or cluttered background, deterministically from a seed. Because it knows where the
object is, the attention lesson can score attention maps against the mask
(:mod:`vit_lesson.attention_score`). Normalised with its own channel statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms import v2

from .digits import TensorImageDataset
from .i18n import _

__all__ = ["SHAPES_CLASSES", "SHAPES_MEAN", "SHAPES_STD", "ShapesDataset", "shapes_datasets"]

SHAPES_CLASSES = ["circle", "square", "triangle", "cross", "ring"]
# Channel statistics of ShapesDataset(4000, seed=0); other seeds agree to about 0.01.
SHAPES_MEAN, SHAPES_STD = (0.5085, 0.4960, 0.4961), (0.2820, 0.2821, 0.2788)


def _shape_mask(kind: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean ``[S, S]`` mask of one shape of radius ``r`` centred at (cx, cy) (pixel centres)."""
    dx, dy = xx - cx, yy - cy
    if kind == "circle":
        return dx ** 2 + dy ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if kind == "triangle":  # apex up, base at the bottom
        return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if kind == "cross":
        arm = r / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if kind == "ring":
        d2 = dx ** 2 + dy ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(_("Unknown shape {kind!r}: choose one of {choices}.").format(
        kind=kind, choices=", ".join(SHAPES_CLASSES)))


def _background(rng: np.random.Generator, size: int, xx, yy) -> np.ndarray:
    """A ``[S, S, 3]`` background in [0, 1]: noise, a colour gradient, or clutter."""
    style = rng.integers(3)
    if style == 0:  # flat colour + pixel noise
        image = rng.uniform(0, 1, 3) + rng.normal(0, 0.1, (size, size, 3))
    elif style == 1:  # linear gradient between two colours, random direction
        angle = rng.uniform(0, 2 * math.pi)
        t = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size + 0.5
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        image = a + (b - a) * t[..., None]
    else:  # clutter: a base colour with small rectangles and dots of other colours
        image = np.broadcast_to(rng.uniform(0, 1, 3), (size, size, 3)).copy()
        for _unused in range(rng.integers(3, 8)):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(1, max(2, size // 6), 2)
            image[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
    return np.clip(image, 0, 1)


class ShapesDataset(TensorImageDataset):
    """``n`` procedural images of one shape each, deterministic given ``seed``.

    Classes :data:`SHAPES_CLASSES` (circle, square, triangle, cross, ring), balanced and shuffled.
    Each image has a random background (noise, gradient or clutter) and one shape of random
    position, size (radius 15-30% of the image) and colour (kept far from the background's).

    Items: ``(image [3, S, S] float32 normalised, label int)``. Extra attributes:
    ``masks`` ``BoolTensor [n, S, S]`` (the object's pixels), ``boxes`` ``LongTensor [n, 4]``
    ``(x0, y0, x1, y1)`` with ``x1, y1`` exclusive, so ``masks[i, y0:y1, x0:x1]`` holds every
    object pixel, and ``images_raw`` ``[n, 3, S, S]`` in [0, 1] for display.
    """

    def __init__(self, n: int, image_size: int = 32, seed: int = 0, augment: bool = False):
        if n < 1 or image_size < 8:
            raise ValueError(_("Need n >= 1 and image_size >= 8, got n={n}, image_size={image_size}.").format(
                n=n, image_size=image_size))
        rng = np.random.default_rng(seed)
        S = image_size
        yy, xx = np.mgrid[0:S, 0:S] + 0.5  # pixel centres
        labels = rng.permutation(np.arange(n) % len(SHAPES_CLASSES))
        images = np.empty((n, S, S, 3), dtype=np.float32)
        masks = np.empty((n, S, S), dtype=bool)
        for i, label in enumerate(labels):
            background = _background(rng, S, xx, yy)
            r = rng.uniform(0.15, 0.3) * S
            cx, cy = rng.uniform(r + 0.5, S - r - 0.5, 2)
            mask = _shape_mask(SHAPES_CLASSES[label], xx, yy, cx, cy, r)
            colour = rng.uniform(0, 1, 3)
            while np.abs(colour - background[mask].mean(0)).sum() < 0.9:  # keep it visible
                colour = rng.uniform(0, 1, 3)
            background[mask] = colour
            images[i], masks[i] = background, mask
        rows, cols = masks.any(2), masks.any(1)
        boxes = np.stack([cols.argmax(1), rows.argmax(1),
                          S - cols[:, ::-1].argmax(1), S - rows[:, ::-1].argmax(1)], axis=1)
        images_raw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        flip = v2.RandomHorizontalFlip() if augment else None  # every class is left-right symmetric
        super().__init__(images_raw, torch.from_numpy(labels), SHAPES_CLASSES, SHAPES_MEAN, SHAPES_STD, flip)
        self.masks = torch.from_numpy(masks)
        self.boxes = torch.from_numpy(boxes).long()


def shapes_datasets(image_size: int = 32, n_train: int = 2000, n_test: int = 500, augment: bool = False):
    """``(train, test)`` shapes sets from different seeds (0 and 1), so no image is in both."""
    return ShapesDataset(n_train, image_size, seed=0, augment=augment), ShapesDataset(n_test, image_size, seed=1)
