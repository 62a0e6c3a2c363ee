"""Notebook 06: the data sets, all but CIFAR-10 with no download, each with the transforms that fit it.

- :func:`digits_datasets`: scikit-learn's bundled handwritten digits (:mod:`vit_lesson.digits`,
  with :class:`TensorImageDataset` and :class:`RandomShiftRotate`).
- :class:`ShapesDataset`: procedural shapes with each object's pixel mask and box
  (:mod:`vit_lesson.shapes`).
- :func:`image_folder_dataset`: your own photos in ``root/class_x/xxx.png`` (torchvision's
  ``ImageFolder``), and :func:`cifar10_datasets`: CIFAR-10 through torchvision (downloads in
  Colab; reads a local copy with ``download=False``); both in :mod:`vit_lesson.images`.
- :func:`load_datasets`: any of them by name (what ``python -m vit_lesson train --data`` uses).

This module is where they are imported from (``from vit_lesson.data import ShapesDataset``).

Normalisation uses each data set's *own* statistics (digits: mean/std of the training pixels;
CIFAR-10: its published channel means). The blog post always normalises with ImageNet's
``(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)``: right for photos fed to an ImageNet-pretrained
model (that is what its weights saw), wrong for grey digits trained from scratch, whose pixels
would then sit far from zero mean and unit variance. Augmentation is light and data-aware:
small shifts and rotations for digits, never flips (a mirrored 2 is not a 2).
"""

from __future__ import annotations

from .digits import DIGITS_CLASSES, RandomShiftRotate, TensorImageDataset, digits_arrays, digits_datasets
from .i18n import _
from .images import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGE_EXTENSIONS,
    cifar10_datasets,
    image_folder_dataset,
    image_folder_datasets,
    photo_transform,
)
from .shapes import SHAPES_CLASSES, SHAPES_MEAN, SHAPES_STD, ShapesDataset, shapes_datasets

__all__ = [
    "DIGITS_CLASSES", "SHAPES_CLASSES", "SHAPES_MEAN", "SHAPES_STD",
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGE_EXTENSIONS", "TensorImageDataset", "RandomShiftRotate", "digits_arrays",
    "digits_datasets", "ShapesDataset", "shapes_datasets", "photo_transform", "image_folder_dataset",
    "image_folder_datasets", "cifar10_datasets", "load_datasets", "DATASETS",
]

DATASETS = ("digits", "shapes", "folder", "cifar10")


def load_datasets(name: str, image_size: int | None = None, data_dir=None, augment: bool = False,
                  channels: int | None = None, train_size: int | None = None):
    """``(train, test)`` of a data set by name: ``digits``, ``shapes``, ``folder``, ``cifar10``.

    ``image_size`` defaults to 16 for digits and 32 otherwise; ``data_dir`` is needed for
    ``folder`` (``root/class_x/xxx.png``) and ``cifar10``; ``train_size`` is how many shapes to
    generate for training (default 2,000; the other sets have their own split).
    """
    if name == "digits":
        return digits_datasets(image_size or 16, channels or 1, augment)
    if name == "shapes":
        return shapes_datasets(image_size or 32, n_train=2000 if train_size is None else train_size,
                               augment=augment)
    if name in ("folder", "cifar10") and data_dir is None:
        raise ValueError(_("--data {name} needs --data-dir (the folder with the images).").format(name=name))
    if name == "folder":
        return image_folder_datasets(data_dir, image_size or 32, augment)
    if name == "cifar10":
        return cifar10_datasets(data_dir, download=True, image_size=image_size or 32, augment=augment)
    raise ValueError(_("Unknown data set {name!r}: choose one of {choices}.").format(
        name=name, choices=", ".join(DATASETS)))
