"""vit_lesson.data (digits, shapes, images): splits, determinism, shapes masks/boxes, folder errors,
a CIFAR-format folder."""

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from vit_lesson.data import (
    CIFAR10_MEAN,
    DIGITS_CLASSES,
    SHAPES_CLASSES,
    RandomShiftRotate,
    ShapesDataset,
    cifar10_datasets,
    digits_arrays,
    digits_datasets,
    image_folder_dataset,
    image_folder_datasets,
    load_datasets,
)


@pytest.fixture(scope="module")
def digits():
    return digits_datasets(16)


def test_digits_split_sizes_shapes_and_normalisation(digits):
    train, test = digits
    assert (len(train), len(test)) == (1437, 360)
    image, label = train[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and isinstance(label, int)
    assert train.classes == test.classes == DIGITS_CLASSES
    # Normalised with the training pixels' own statistics: mean 0, std 1 over the training set.
    stack = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(stack.mean().item()) < 1e-4 and abs(stack.std().item() - 1) < 1e-3


def test_digits_split_is_stratified_and_deterministic(digits):
    train, test = digits
    train_counts, test_counts = Counter(train.targets.tolist()), Counter(test.targets.tolist())
    for c in range(10):  # every class keeps its 80/20 proportion to within one image
        total = train_counts[c] + test_counts[c]
        assert abs(test_counts[c] - 0.2 * total) <= 1
    again_train, again_test = digits_datasets(16)
    assert torch.equal(again_train.images_raw, train.images_raw) and torch.equal(again_test.targets, test.targets)
    x_train, x_test, _, _ = digits_arrays()
    assert len(x_train) + len(x_test) == 1797
    # at 8x8 the images are the scans themselves (0..16 scaled to [0, 1]), in split order
    native, _ = digits_datasets(8)
    assert torch.allclose(native.images_raw.view(-1, 64) * 16, torch.tensor(x_train, dtype=torch.float32))


def test_digits_channels_sizes_and_bad_arguments():
    train, _ = digits_datasets(24, channels=3)
    assert train[0][0].shape == (3, 24, 24)
    with pytest.raises(ValueError, match="channels"):
        digits_datasets(16, channels=2)
    with pytest.raises(ValueError, match="8x8"):
        digits_datasets(4)


def test_augmentation_only_on_train_and_reproducible():
    train, test = digits_datasets(16, augment=True)
    assert test.augment is None and isinstance(train.augment, RandomShiftRotate)
    torch.manual_seed(0)
    a = train[3][0]
    torch.manual_seed(0)
    assert torch.equal(a, train[3][0])
    assert not torch.equal(a, train[3][0])  # a new draw moves it
    x = torch.zeros(1, 16, 16)
    x[0, 6:10, 6:10] = 1
    assert torch.allclose(RandomShiftRotate(0, 0, 0)(x), x, atol=1e-6)  # zero jitter = identity
    # shift=1/16 of a 16 px image moves the square by at most one pixel each way, keeping all of it.
    moved, grid = RandomShiftRotate(shift=1 / 16, degrees=0, scale=0), torch.arange(16.0)
    for _ in range(20):
        y = moved(x)[0]
        centre = torch.stack([(y.sum(1) * grid).sum(), (y.sum(0) * grid).sum()]) / y.sum()
        assert y.sum().item() == pytest.approx(16, abs=1e-4)
        assert (centre - 7.5).abs().max().item() <= 1 + 1e-4


def test_a_batch_is_jittered_at_once_each_image_its_own_draw():
    train, _test = digits_datasets(16, augment=True)
    indices = [5, 0, 5, 9]
    torch.manual_seed(1)
    batch = train.__getitems__(indices)  # what DataLoader calls
    assert [label for _image, label in batch] == train.targets[indices].tolist()
    images = torch.stack([image for image, _label in batch])
    assert images.shape == (4, 1, 16, 16) and not torch.equal(images[0], images[2])  # one image, two draws
    # One resampling of the batch = the images one at a time, drawing the same random numbers in turn.
    torch.manual_seed(1)
    one_by_one = torch.stack([train.augment(train.images_raw[index]) for index in indices])
    assert torch.allclose(train._normalize(one_by_one), images, atol=1e-6)
    # Without augmentation a batch is its items; any other transform still sees one image at a time.
    plain = digits_datasets(16)[0]
    assert all(torch.equal(image, item[0]) and label == item[1]
               for (image, label), item in zip(plain.__getitems__(indices), (plain[i] for i in indices)))
    seen = []
    custom = digits_datasets(16, augment=lambda image: seen.append(tuple(image.shape)) or image)[0]
    custom.__getitems__(indices)
    assert seen == [(1, 16, 16)] * 4


def test_digits_take_a_custom_augmentation_or_a_clear_error():
    jitter = RandomShiftRotate(shift=1 / 16)
    train, test = digits_datasets(16, augment=jitter)
    assert train.augment is jitter and test.augment is None
    assert digits_datasets(16, augment=False)[0].augment is None
    with pytest.raises(TypeError, match="augment must be True, False or a transform"):
        digits_datasets(16, augment="yes")


def test_shapes_masks_inside_boxes_balanced_and_deterministic():
    ds = ShapesDataset(50, image_size=32, seed=3)
    assert ds.images_raw.shape == (50, 3, 32, 32) and ds.masks.shape == (50, 32, 32) and ds.boxes.shape == (50, 4)
    assert ds.masks.dtype == torch.bool and ds.boxes.dtype == torch.long
    assert ds[0][0].shape == (3, 32, 32) and ds.classes == SHAPES_CLASSES
    assert sorted(Counter(ds.targets.tolist()).values()) == [10] * 5
    for mask, (x0, y0, x1, y1) in zip(ds.masks, ds.boxes.tolist()):
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        inside = torch.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert mask.any() and not (mask & ~inside).any()  # every object pixel is inside its box
        assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()  # and the box is tight
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
    # the object's pixels have one colour, different from the background's mean
    i = 0
    obj = ds.images_raw[i][:, ds.masks[i]]
    assert torch.allclose(obj, obj[:, :1].expand_as(obj))
    again = ShapesDataset(50, image_size=32, seed=3)
    assert torch.equal(again.images_raw, ds.images_raw) and torch.equal(again.masks, ds.masks)
    assert not torch.equal(ShapesDataset(50, image_size=32, seed=4).images_raw, ds.images_raw)


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=20):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_loads(tmp_path):
    _write_folder(tmp_path)
    ds = image_folder_dataset(tmp_path, image_size=16)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    image, label = ds[5]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    train, test = image_folder_datasets(tmp_path, image_size=16)
    assert len(train) + len(test) == 6 and train.classes == ["cat", "dog"]


@pytest.mark.parametrize("make, words", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no class subfolders"),
    (lambda root: (root / "cat").mkdir(parents=True), "cat contain no images"),
])
def test_image_folder_errors_name_folder_and_layout(tmp_path, make, words):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(ValueError, match=words) as info:
        image_folder_dataset(root)
    assert str(root) in str(info.value) and "root/class_x/xxx.png" in str(info.value)


def _write_tiny_cifar(root, n=4):
    """The cifar-10-batches-py pickle format, as torchvision's CIFAR10 reads it (no md5 check on load)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 255, (n, 3 * 32 * 32), dtype=np.uint8),
                 "labels": [int(x) for x in rng.integers(0, 10, n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": classes}, f)
    return classes


def test_tiny_cifar_folder_loads_without_network(tmp_path, monkeypatch):
    classes = _write_tiny_cifar(tmp_path)
    import torchvision.datasets.cifar

    # torchvision checks the real files' md5 sums; our tiny files have other ones.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    train, test = cifar10_datasets(tmp_path, download=False, augment=False)
    assert (len(train), len(test)) == (20, 4) and train.classes == classes
    image, label = test[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    raw = torch.tensor(test.data[0]).permute(2, 0, 1).float() / 255  # HWC uint8 as stored
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    assert torch.allclose(image * torch.tensor((0.2470, 0.2435, 0.2616)).view(3, 1, 1) + mean, raw, atol=1e-5)


def test_missing_cifar_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="CIFAR-10 not found"):
        cifar10_datasets(tmp_path, download=False)


def test_load_datasets_by_name():
    train, test = load_datasets("digits", 8)
    assert train[0][0].shape == (1, 8, 8)
    train, test = load_datasets("shapes", train_size=40)
    assert (len(train), len(test), train[0][0].shape) == (40, 500, (3, 32, 32))
    with pytest.raises(ValueError, match="n >= 1"):  # a 0 is refused, not read as "the default 2,000"
        load_datasets("shapes", train_size=0)
    with pytest.raises(ValueError, match="--data-dir"):
        load_datasets("folder")
    with pytest.raises(ValueError, match="Unknown data set"):
        load_datasets("mnist")
