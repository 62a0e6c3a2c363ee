"""Pre-norm (ViT) vs post-norm (the blog post) in a short training run, no warm-up.

    python benchmarks/norm_order.py [--steps 300] [--depths 6 24] [--lrs 5e-4 2e-3] [--seeds 0 1]

Notebook 04 measures gradient norms at initialisation; this trains both orders from the same
initial weights on scikit-learn's 8x8 digits (2x2 patches, width 64, 4 heads), AdamW at a constant
learning rate with no warm-up (the setting in which Xiong et al., 2020, report post-norm
trouble), and prints the final training loss and the test accuracy. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from vit_lesson.block import PostNormBlock
from vit_lesson.model import ViT
from vit_lesson.registry import get_config


def make_model(depth: int, post_norm: bool, seed: int) -> ViT:
    torch.manual_seed(seed)
    config = get_config("micro", image_size=8, patch_size=2, num_channels=1, hidden_size=64,
                        num_hidden_layers=depth, num_attention_heads=4, intermediate_size=256)
    model = ViT(config)
    if post_norm:  # the same parameters, the post's order
        weights = model.state_dict()
        model.blocks = nn.ModuleList(PostNormBlock(64, 4, 256) for _ in range(depth))
        model.load_state_dict(weights)
    return model


def train(model, images, labels, steps: int, lr: float, seed: int, batch: int = 64):
    train_x, train_y, test_x, test_y = images[:1437], labels[:1437], images[1437:], labels[1437:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(train_x), (batch,), generator=generator)
        loss = F.cross_entropy(model(train_x[index]), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(-1) == test_y).float().mean().item()
    final = statistics.mean(losses[-20:])
    return final if final == final else float("nan"), accuracy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--depths", type=int, nargs="+", default=[6, 24])
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-4, 2e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    digits = load_digits()
    order = torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))
    images = torch.tensor(digits.images, dtype=torch.float32)[order, None]
    images = (images - images.mean()) / images.std()
    labels = torch.tensor(digits.target)[order]

    print(f"digits 8x8, 1437 train / 360 test, width 64, {args.steps} AdamW steps, batch 64, no warm-up, "
          f"seeds {args.seeds}; loss = mean of the last 20 steps; mean over seeds")
    print("| depth | lr | order | final train loss | test accuracy | seconds |")
    print("|---|---|---|---|---|---|")
    for depth in args.depths:
        for lr in args.lrs:
            for post_norm in (False, True):
                start = time.perf_counter()
                runs = [train(make_model(depth, post_norm, seed), images, labels, args.steps, lr, seed)
                        for seed in args.seeds]
                loss = statistics.mean(r[0] for r in runs)
                accuracy = statistics.mean(r[1] for r in runs)
                name = "post-norm (post)" if post_norm else "pre-norm (ViT)"
                print(f"| {depth} | {lr:g} | {name} | {loss:.3f} | {accuracy:.1%} | "
                      f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
