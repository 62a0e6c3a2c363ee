"""Speed: our ViT against timm's VisionTransformer, same config, same weights, same machine, one run.

    python benchmarks/speed.py                 # micro (32 px), Tiny and Small (224 px)
    python benchmarks/speed.py --quick         # smoke run: micro only, few repeats
    python benchmarks/speed.py --device cuda --presets tiny small base --batch 64

Images per second for inference (eval mode, no_grad) and for a training step (forward + backward
of a cross-entropy loss; no optimiser step, which costs the same for both). Ours runs twice: with
the fast attention path (F.scaled_dot_product_attention, as timm) and with the readable one
(explicit softmax, which can return the attention maps). The three models are timed in rotating
order within each repeat so that machine noise hits them alike; each number is the median over
the repeats, after warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from vit_lesson.convert import create_timm_model, vit_from_timm
from vit_lesson.model import ViT
from vit_lesson.registry import get_config

BATCH = {"micro": 64, "tiny": 8, "small": 8, "base": 4}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, images, labels, train: bool) -> None:
    if train:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
    else:
        with torch.no_grad():
            model(images)


def benchmark(models: dict, images, labels, train: bool, repeats: int, iters: int, warmup: int) -> dict:
    """Median images/s of each model over ``repeats`` (each times ``iters`` steps)."""
    device = images.device
    for model in models.values():
        model.train(train)
        for _ in range(warmup):
            _step(model, images, labels, train)
    _sync(device)
    times = {name: [] for name in models}
    names = list(models)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            start = time.perf_counter()
            for _ in range(iters):
                _step(models[name], images, labels, train)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: images.shape[0] * iters / statistics.median(t) for name, t in times.items()}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["micro", "tiny", "small"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: per preset)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3, help="steps per timed repeat")
    parser.add_argument("--quick", action="store_true", help="smoke run: micro only, batch 8, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.repeats, args.iters, args.batch = ["micro"], 2, 1, args.batch or 8
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup = 1 if args.quick else 3

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, device {device} ({name}), "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats} repeats x {args.iters} steps")
    print("| model | image | batch | mode | timm img/s | ours (fast) img/s | fast/timm | "
          "ours (readable) img/s | readable/timm |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for name in args.presets:
        config = get_config(name)
        torch.manual_seed(0)
        timm_model = create_timm_model(config).to(device)
        fast = vit_from_timm(timm_model).to(device)  # the same weights
        readable = ViT(replace(config, fast_attention=False)).to(device)
        readable.load_state_dict(fast.state_dict())
        models = {"timm": timm_model, "fast": fast, "readable": readable}
        batch = args.batch or BATCH.get(name, 8)
        images = torch.randn(batch, config.num_channels, config.image_size, config.image_size, device=device)
        labels = torch.randint(0, config.num_classes, (batch,), device=device)
        for mode, train in (("inference", False), ("train step", True)):
            speed = benchmark(models, images, labels, train, args.repeats, args.iters, warmup)
            row = dict(model=name, image=config.image_size, batch=batch, mode=mode, **speed)
            results.append(row)
            print(f"| {name} | {config.image_size} | {batch} | {mode} | {speed['timm']:.3g} | {speed['fast']:.3g} | "
                  f"{speed['fast'] / speed['timm']:.2f}x | {speed['readable']:.3g} | "
                  f"{speed['readable'] / speed['timm']:.2f}x |", flush=True)
    return results


if __name__ == "__main__":
    main()
