"""Notebook 06: data sets that need no network, with transforms that fit each of them.

- :func:`digits_datasets`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans of
  0-9), a fixed stratified 80/20 split (1,437 train / 360 test), upscaled for a patch grid.
- :class:`ShapesDataset`: procedural shapes on noisy, graded or cluttered backgrounds, with each
  object's pixel mask and box (the attention lesson scores attention maps against the mask).
- :func:`image_folder_dataset`: your own photos in ``root/class_x/xxx.png`` (torchvision's
  ``ImageFolder``).
- :func:`cifar10_datasets`: CIFAR-10 through torchvision (downloads in Colab; reads a local copy
  with ``download=False``).

Normalisation uses each data set's *own* statistics (digits: mean/std of the training pixels;
CIFAR-10: its published channel means). The blog post always normalises with ImageNet's
``(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)``: right for photos fed to an ImageNet-pretrained
model (that is what its weights saw), wrong for grey digits trained from scratch, whose pixels
would then sit far from zero mean and unit variance. Augmentation is light and data-aware:
small shifts and rotations for digits, never flips (a mirrored 2 is not a 2).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2

from .i18n import _
from .images import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DIGITS_CLASSES", "SHAPES_CLASSES", "SHAPES_MEAN", "SHAPES_STD",
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGE_EXTENSIONS", "TensorImageDataset", "RandomShiftRotate", "digits_arrays",
    "digits_datasets", "ShapesDataset", "shapes_datasets", "image_folder_dataset",
    "image_folder_datasets", "cifar10_datasets", "load_datasets", "DATASETS",
]

DIGITS_CLASSES = [str(i) for i in range(10)]
SHAPES_CLASSES = ["circle", "square", "triangle", "cross", "ring"]
# Channel statistics of ShapesDataset(4000, seed=0); other seeds agree to about 0.01.
SHAPES_MEAN, SHAPES_STD = (0.5085, 0.4960, 0.4961), (0.2820, 0.2821, 0.2788)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


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
        self._normalize = v2.Normalize(self.mean, self.std)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images_raw[index]
        if self.augment is not None:
            image = self.augment(image)
        return self._normalize(image), int(self.targets[index])


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
    """Random small affine jitter of one image ``[C, H, W]``: shift, rotation, scale; no flips.

    One ``affine_grid`` + ``grid_sample`` per image (cheaper than ``v2.RandomAffine`` on tiny
    tensors); uses torch's global RNG, so a seeded run is reproducible. Borders fill with 0.
    """

    def __init__(self, shift: float = 0.125, degrees: float = 10.0, scale: float = 0.1):
        super().__init__()
        self.shift, self.degrees, self.scale = shift, degrees, scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        u = torch.rand(4) * 2 - 1  # four numbers in [-1, 1)
        angle = math.radians(self.degrees) * u[0]
        zoom = 1 + self.scale * u[1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: a shift of s image widths is 2 * s.
        theta = torch.stack([torch.stack([cos, -sin, 2 * self.shift * u[2]]),
                             torch.stack([sin, cos, 2 * self.shift * u[3]])])[None]
        grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
        return F.grid_sample(image[None], grid, align_corners=False, padding_mode="zeros")[0]

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
    the training pixels' mean and std (``train.mean``, ``train.std``). The 8x8 scans (0..16) are scaled to [0, 1] and upscaled
    bilinearly; ``channels=3`` repeats the grey channel (for models built for colour).
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


# --- shapes ---------------------------------------------------------------------------------------

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


# --- your own photos, CIFAR-10 --------------------------------------------------------------------

def photo_transform(image_size: int = 32, augment: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """PIL photo -> ``[3, S, S]`` float32 normalised; with ``augment`` a random crop and flip."""
    if augment:
        geometry = [v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def _check_image_folder(root: Path) -> None:
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
    from PIL import Image, UnidentifiedImageError

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
    _check_image_folder(root)
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


DATASETS = ("digits", "shapes", "folder", "cifar10")


def load_datasets(name: str, image_size: int | None = None, data_dir=None, augment: bool = False,
                  channels: int | None = None):
    """``(train, test)`` of a data set by name: ``digits``, ``shapes``, ``folder``, ``cifar10``.

    ``image_size`` defaults to 16 for digits and 32 otherwise; ``data_dir`` is needed for
    ``folder`` (``root/class_x/xxx.png``) and ``cifar10``.
    """
    if name == "digits":
        return digits_datasets(image_size or 16, channels or 1, augment)
    if name == "shapes":
        return shapes_datasets(image_size or 32, augment=augment)
    if name in ("folder", "cifar10") and data_dir is None:
        raise ValueError(_("--data {name} needs --data-dir (the folder with the images).").format(name=name))
    if name == "folder":
        return image_folder_datasets(data_dir, image_size or 32, augment)
    if name == "cifar10":
        return cifar10_datasets(data_dir, download=True, image_size=image_size or 32, augment=augment)
    raise ValueError(_("Unknown data set {name!r}: choose one of {choices}.").format(
        name=name, choices=", ".join(DATASETS)))
