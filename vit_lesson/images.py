"""Real photos that ship with installed packages, and the ImageNet preprocessing ViT expects.

Nothing here downloads anything: the photos come from scikit-image and scikit-learn.

The blog post's pipeline (notebook 01) is ``Resize(256) -> CenterCrop(224) -> ToTensor ->
Normalize(ImageNet mean, std)``. Resize-then-crop keeps the aspect ratio and drops the borders
(where the object rarely is); Normalize puts every channel at roughly zero mean and unit
variance, which is what pretrained ViT weights saw during training.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from .i18n import _

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")


def load_photo(name: str = "chelsea") -> Image.Image:
    """Return one of the bundled RGB photos as a PIL image.

    ``astronaut``, ``chelsea`` (a cat), ``coffee`` and ``rocket`` come with scikit-image;
    ``china`` and ``flower`` with scikit-learn. None of them is downloaded.
    """
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        array = load_sample_image(f"{name}.jpg")
    elif name in ("astronaut", "chelsea", "coffee", "rocket"):
        from skimage import data

        array = getattr(data, name)()
    else:
        raise ValueError(_("Unknown photo {name!r}: choose one of {choices}.").format(
            name=name, choices=", ".join(SAMPLE_PHOTOS)))
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def imagenet_transform(image_size: int = 224, resize_size: int | None = None) -> transforms.Compose:
    """The post's preprocessing: Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize.

    ``resize_size`` defaults to ``image_size * 256 // 224`` (the usual 0.875 crop ratio).
    Returns a transform mapping a PIL image to a float tensor ``[3, image_size, image_size]``.
    """
    resize_size = resize_size or image_size * 256 // 224
    return transforms.Compose(
        [
            transforms.Resize(resize_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def denormalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo ``Normalize`` so an image can be shown: ``[..., 3, H, W]`` -> same shape in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def to_display(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` tensor in [0, 1] -> ``[H, W, 3]`` numpy array for ``plt.imshow``."""
    return image.detach().cpu().permute(1, 2, 0).numpy()
