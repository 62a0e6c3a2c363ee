"""One training recipe per data set: the model, the image size, the augmentation and the
:class:`~vit_lesson.train.TrainConfig` settings.

``python -m vit_lesson train --data NAME`` runs ``RECIPES[NAME]`` for every option left out, and the
benchmarks measure the same entries (``benchmarks/accuracy.py`` reads ``RECIPES["digits"]``), so the
numbers they report are what the command gives. ``digits`` is the benchmark's recipe (the
``digits_conv_stem`` ViT, 80 epochs, batch 32, lr 2e-3, weight decay 0.05, 3 warmup epochs, a
1-pixel jitter: see the benchmark's docstring for the runs behind it); ``shapes`` is the
shipped shapes model's (the runs behind it: ``benchmarks/attention_score.py``'s docstring);
``folder`` and ``cifar10`` use the blog post's settings on a CPU-sized ViT at 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import RandomShiftRotate

__all__ = ["Recipe", "RECIPES"]


@dataclass(frozen=True)
class Recipe:
    """How to train on one data set.

    ``model`` is a :func:`vit_lesson.create_model` name (its image size, channels and classes are
    set from the data); ``augment`` is what :func:`vit_lesson.data.load_datasets` takes (``True``:
    the data set's own jitter, or a transform of one ``[C, S, S]`` image); ``train`` holds
    :class:`~vit_lesson.train.TrainConfig` fields (the others keep TrainConfig's defaults);
    ``train_size`` is how many training images to generate (shapes; ``None``: the data set's own split).
    """

    model: str
    image_size: int
    augment: object = True
    train: dict = field(default_factory=dict)
    train_size: int | None = None


RECIPES: dict[str, Recipe] = {
    # 1,437 training digits (8x8 scans upscaled to 16x16): a 1-pixel shift (1/16 of the image), no flips. The model
    # is lesson 06's ViT with a 2-conv stem (Xiao et al. 2021) in place of its 4x4 patch projection: the same 16 tokens.
    "digits": Recipe("digits_conv_stem", 16, RandomShiftRotate(shift=1 / 16),
                     dict(epochs=80, batch_size=32, lr=2e-3, weight_decay=0.05, warmup_epochs=3, label_smoothing=0.1)),
    # The shipped shapes model's (vit_lesson/assets/shapes_vit.pt; horizontal flips): 8 epochs of 50,000 generated
    # images. 20 epochs of 10,000 (the same steps / 2) overfitted: 96% train, 88.5% test accuracy.
    "shapes": Recipe("shapes", 32, True, dict(epochs=8, batch_size=64, lr=2e-3, weight_decay=0.05, warmup_epochs=0.8,
                                              label_smoothing=0.1), train_size=50_000),
    # Your own photos and CIFAR-10: the blog post's settings (random crop and flip).
    "folder": Recipe("micro", 32, True, dict(epochs=10, batch_size=64, lr=3e-4, weight_decay=0.01, warmup_epochs=1,
                                             label_smoothing=0.1)),
    "cifar10": Recipe("micro", 32, True, dict(epochs=10, batch_size=64, lr=3e-4, weight_decay=0.01, warmup_epochs=1,
                                              label_smoothing=0.1)),
}
