"""Does distillation help a small ViT? Student alone vs soft, hard and distillation-token students.

All students are the same ViT (8x8 digits, 2x2 patches: 16 tokens, width 64, depth 4), trained with
the same budget on the same small, augmented training subset (scikit-learn's digits, 500 of the
1,437 training images), evaluated on the fixed 360-image test split. The teacher is a ResNet-18
(small-image stem, width 16) trained once, on the same subset, with the same trainer. Each
student is trained with several seeds; the table gives mean, standard deviation and each run.

    python benchmarks/distillation.py                 # the first table of notebook 08
    python benchmarks/distillation.py --no-augment    # its second table
    python benchmarks/distillation.py --seeds 0 --epochs 10   # a quick look

Measured: 50-165 s per student run (one thread, on a heavily shared two-core machine); 12 runs per table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import Subset

from vit_lesson.data import digits_datasets
from vit_lesson.distill import DistilledViT, make_loss_fn, small_resnet
from vit_lesson.model import ViT, count_parameters
from vit_lesson.registry import get_config
from vit_lesson.train import TrainConfig, evaluate, train

METHODS = {  # name: (loss kind, student class)
    "student alone (labels only)": ("none", ViT),
    "soft distillation (T=4, alpha=0.5)": ("soft", ViT),
    "hard distillation (alpha=0.5)": ("hard", ViT),
    "distillation token (DeiT)": ("token", DistilledViT),
}


def data(train_size: int, augment: bool = True):
    """The first ``train_size`` images of a fixed shuffle of the digits training split, and the test split."""
    train_set, test_set = digits_datasets(image_size=8, augment=augment)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
    return Subset(train_set, order[:train_size].tolist()), test_set


def student_config():
    return get_config("micro", image_size=8, patch_size=2, num_channels=1)


def train_teacher(train_set, test_set, epochs: int, width: int = 16, batch_size: int = 32):
    torch.manual_seed(0)
    teacher = small_resnet(num_classes=10, in_chans=1, width=width)
    train(teacher, train_set, test_set, TrainConfig(epochs=epochs, lr=2e-3, batch_size=batch_size, progress=False))
    return teacher


def train_student(kind: str, cls, teacher, train_set, test_set, epochs: int, seed: int, batch_size: int = 32,
                  lr: float = 2e-3, alpha: float = 0.5, temperature: float = 4.0):
    torch.manual_seed(seed)
    student = cls(student_config())
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False)
    loss_fn = make_loss_fn(teacher, kind, alpha=alpha, temperature=temperature, label_smoothing=config.label_smoothing)
    start = time.perf_counter()
    train(student, train_set, test_set, config, loss_fn=loss_fn)
    return evaluate(student, test_set)["accuracy"], time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_set, test_set = data(args.train_size, augment=not args.no_augment)
    start = time.perf_counter()
    teacher = train_teacher(train_set, test_set, args.teacher_epochs)
    teacher_acc = evaluate(teacher, test_set)["accuracy"]
    print(f"Digits 8x8, {len(train_set)} training images ({'no ' if args.no_augment else ''}augmentation), "
          f"{len(test_set)} test images; students: {args.epochs} epochs, batch 32, lr 2e-3; seeds {args.seeds}.")
    print(f"Teacher: ResNet-18 (3x3 stem, width 16), {count_parameters(teacher):,} parameters, "
          f"{args.teacher_epochs} epochs: test accuracy {teacher_acc:.1%} ({time.perf_counter() - start:.0f} s)\n")
    print(f"| student ({count_parameters(ViT(student_config())):,} parameters) "
          "| test accuracy, mean ± std | runs | s / run |")
    print("|---|---|---|---|")
    for name, (kind, cls) in METHODS.items():
        runs = [train_student(kind, cls, teacher, train_set, test_set, args.epochs, seed) for seed in args.seeds]
        accs = [acc for acc, _ in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {name} | {statistics.mean(accs):.1%} ± {std:.1%} | {', '.join(f'{a:.1%}' for a in accs)} "
              f"| {statistics.mean(t for _, t in runs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
