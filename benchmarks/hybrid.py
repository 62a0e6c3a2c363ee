"""Hybrid (ResNet stem + ViT) vs pure ViT vs CNN on small data: accuracy, parameters, speed.

Same data and budget for every model: scikit-learn's digits at 8x8, 500 of the 1,437 training
images with shift/rotation augmentation, 30 epochs (batch 32, AdamW lr 2e-3, warmup + cosine),
the fixed 360-image test split; several seeds. The pure ViT cuts 2x2 patches (16 tokens); the
hybrid runs a ResNet-18's stem and first two stages (small-image stem, width 16) and turns the
4x4 feature map into 16 tokens with a 1x1 convolution (ViT paper, Sec. 3.1); both then use the
same transformer (width 64, depth 4, 4 heads). The CNN is the whole ResNet-18 (width 16).

    python benchmarks/hybrid.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vit_lesson.cnn import small_resnet
from vit_lesson.hybrid import HybridViT
from vit_lesson.model import ViT, count_parameters
from vit_lesson.registry import get_config
from vit_lesson.train import TrainConfig, evaluate, train

try:  # the same data as benchmarks/distillation.py
    from distillation import data
except ImportError:  # run from another folder
    import importlib.util
    import pathlib

    _spec = importlib.util.spec_from_file_location("distillation", pathlib.Path(__file__).with_name("distillation.py"))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    data = _module.data

MODELS = {
    "ViT (2x2 patches, 16 tokens)": lambda: ViT(get_config("micro", image_size=8, patch_size=2, num_channels=1)),
    "hybrid (ResNet stem + layer1-2, 16 tokens)": lambda: HybridViT(
        get_config("micro", image_size=8, patch_size=1, num_channels=1), resnet_stages=2, resnet_width=16),
    "CNN (ResNet-18, width 16)": lambda: small_resnet(num_classes=10, in_chans=1, width=16),
}


@torch.no_grad()
def images_per_second(model, batch: int = 256, repeats: int = 5) -> float:
    model.eval()
    x = torch.randn(batch, 1, 8, 8)
    model(x)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    return batch * repeats / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_set, test_set = data(args.train_size)
    print(f"Digits 8x8, {len(train_set)} training images (augmented), {len(test_set)} test images, "
          f"{args.epochs} epochs, seeds {args.seeds}, {torch.get_num_threads()} thread(s).\n")
    print("| model | parameters | test accuracy, mean ± std | runs | train s / epoch | inference images / s |")
    print("|---|---|---|---|---|---|")
    for name, build in MODELS.items():
        accs, seconds = [], []
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build()
            history = train(model, train_set, test_set,
                            TrainConfig(epochs=args.epochs, lr=2e-3, batch_size=32, seed=seed, progress=False))
            accs.append(evaluate(model, test_set)["accuracy"])
            seconds.append(statistics.mean(row["seconds"] for row in history))
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {name} | {count_parameters(model):,} | {statistics.mean(accs):.1%} ± {std:.1%} | "
              f"{', '.join(f'{a:.1%}' for a in accs)} | {statistics.mean(seconds):.2f} | "
              f"{images_per_second(model):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
