"""Real photos: the ones that ship with installed packages, your own folders of them, CIFAR-10,
and the ImageNet preprocessing ViT expects.

The bundled photos come from scikit-image and scikit-learn (nothing downloaded). The blog post's
pipeline (notebook 01) is ``Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet mean,
std)``. Resize-then-crop keeps the aspect ratio and drops the borders (where the object rarely
is); Normalize puts every channel at roughly zero mean and unit variance, which is what
pretrained ViT weights saw during training.

Data sets of photos (notebook 06, imported from :mod:`vit_lesson.data`): your own in
``root/class_x/xxx.png`` (:func:`image_folder_dataset`, torchvision's ``ImageFolder`` with clear
errors for a wrong layout or an unreadable file), and CIFAR-10 (:func:`cifar10_datasets`, the one
data set of the course that downloads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Subset
from torchvision import transforms
from torchvision.transforms import v2

from .i18n import _

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

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


# --- your own photos, CIFAR-10 --------------------------------------------------------------------

def photo_transform(image_size: int = 32, augment: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """PIL photo -> ``[3, S, S]`` float32 normalised; with ``augment`` a random crop and flip."""
    if augment:
        geometry = [v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def _validate_image_folder(root: Path) -> None:
    layout = _("root/class_x/xxx.png, root/class_y/yyy.jpg (one subfolder per class)")
    if not root.is_dir():
        raise ValueError(_("Image folder {root!r} does not exist or is not a folder; expected {layout}.").format(
            root=str(root), layout=layout))
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(_("Image folder {root!r} has no class subfolders; expected {layout}.").format(
            root=str(root), layout=layout))
    empty = [p.name for p in classes
             if not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.rglob("*") if f.is_file())]
    if empty:
        raise ValueError(_("Image folder {root!r}: class folder(s) {empty} contain no images "
                           "({extensions}); expected {layout}.").format(
                             root=str(root), empty=", ".join(empty), extensions=", ".join(IMAGE_EXTENSIONS),
                             layout=layout))
    if len(classes) < 2:  # one class: every prediction is right, "100%" that means nothing
        raise ValueError(_("Image folder {root!r} has only one class folder ({name}); a classifier "
                           "needs at least two: add another class folder, as in {layout}.").format(
                             root=str(root), name=classes[0].name, layout=layout))


def _load_image(path):
    """Open one image file as RGB; an unreadable file raises ``ValueError`` naming it.

    torchvision's default loader lets PIL's error through (``image file is truncated``,
    ``cannot identify image file``) without saying which of thousands of files it was.
    """
    try:
        with open(path, "rb") as file:
            image = Image.open(file)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        why = _("not an image format PIL knows") if isinstance(error, UnidentifiedImageError) else error
        raise ValueError(_("Image file {path!r} cannot be read ({why}); delete it or replace it "
                           "with a valid image.").format(path=str(path), why=why)) from None


def image_folder_dataset(root, image_size: int = 32, augment: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Your own photos, ``root/class_x/xxx.png``, as a torchvision ``ImageFolder``.

    Items: ``(image [3, image_size, image_size] float32 normalised, label int)``; ``.classes`` are
    the subfolder names. Normalised with ImageNet statistics by default: photos look like
    ImageNet, and it is what a pretrained ViT expects. Raises ``ValueError`` naming the folder if
    it is missing, has no class subfolders, only one, or a class has no images; an image file that
    cannot be read raises ``ValueError`` naming that file when it is loaded.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    _validate_image_folder(root)
    return ImageFolder(str(root), transform=photo_transform(image_size, augment, mean, std), loader=_load_image)


def image_folder_datasets(root, image_size: int = 32, augment: bool = False, test_fraction: float = 0.2, seed: int = 0):
    """``(train, test)`` from a folder: ``root/train`` + ``root/val`` (or ``root/test``) if present,
    else a fixed random ``test_fraction`` split of ``root`` (augmentation on the training part only)."""
    root = Path(root)
    for name in ("val", "test"):
        if (root / "train").is_dir() and (root / name).is_dir():
            train = image_folder_dataset(root / "train", image_size, augment)
            test = image_folder_dataset(root / name, image_size)
            if train.classes != test.classes:  # label i would mean another class in each split
                raise ValueError(_("Image folder {root!r}: train/ has classes {train_classes} but "
                                   "{name}/ has {test_classes}; give both the same class folders.").format(
                                     root=str(root), train_classes=", ".join(train.classes), name=name,
                                     test_classes=", ".join(test.classes)))
            return train, test
    train_view, test_view = image_folder_dataset(root, image_size, augment), image_folder_dataset(root, image_size)
    if len(train_view) < 2:
        raise ValueError(_("Image folder {root!r} has {count} image; need at least 2 to split.").format(
            root=str(root), count=len(train_view)))
    order = torch.randperm(len(train_view), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(test_fraction * len(order)))
    train, test = Subset(train_view, order[n_test:]), Subset(test_view, order[:n_test])
    train.classes = test.classes = train_view.classes
    return train, test


def cifar10_datasets(root, download: bool = True, image_size: int = 32, augment: bool = True):
    """CIFAR-10 ``(train, test)`` (50,000 / 10,000 colour 32x32 images, 10 classes).

    Normalised with CIFAR-10's own channel statistics; ``augment`` adds the standard random crop
    (4-pixel padding) and horizontal flip to the training set. ``download=False`` reads an existing
    ``root/cifar-10-batches-py`` and raises ``ValueError`` if it is not there.
    """
    from torchvision.datasets import CIFAR10

    resize = [v2.Resize(image_size, antialias=True)] if image_size != 32 else []
    head = [v2.ToImage(), *resize]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    train_aug = [v2.RandomCrop(image_size, padding=image_size // 8), v2.RandomHorizontalFlip()] if augment else []
    try:
        train = CIFAR10(str(root), train=True, download=download, transform=v2.Compose(head + train_aug + tail))
        test = CIFAR10(str(root), train=False, download=download, transform=v2.Compose(head + tail))
    except RuntimeError as error:
        raise ValueError(_("CIFAR-10 not found in {root!r} ({error}). Pass download=True (needs network), "
                           "or put the extracted cifar-10-batches-py folder there.").format(
                             root=str(root), error=error)) from None
    return train, test
