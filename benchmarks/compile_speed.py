"""Speed: eager vs ``torch.compile``, our ViT vs timm's, same config and the same weights.

    python benchmarks/compile_speed.py                  # micro (32x32) and ViT-Tiny (224x224) on CPU
    python benchmarks/compile_speed.py --quick          # micro only, fewer repeats, to see that it runs
    python benchmarks/compile_speed.py --configs tiny   # one of them
    python benchmarks/compile_speed.py --device cuda --batch-micro 512 --batch-tiny 64 --iters 20

Images per second for a forward pass (``eval()``, no gradients: inference) and for a forward +
backward pass (``train()``, cross-entropy on random labels: the cost of a training step without
the optimiser). ``torch.compile``'s first call traces and compiles (on CPU it generates C++ and
needs a compiler such as gcc); that one-off cost is reported separately ("compile s": the first
call minus the second; the second model compiled reuses the kernels inductor cached for the
first, so its compile is shorter), and the speed is measured after it, the variants timed in turns.
"max diff" is the largest difference of the logits from our eager model's: the four variants
compute the same function.

Timings are the median over repeats of a few iterations each; on a shared or small machine they
are noisy. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from vit_lesson.convert import create_timm_model, to_timm_state_dict
from vit_lesson.model import ViT
from vit_lesson.registry import get_config


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def steps(model, x, labels):
    """The two things we time: an inference forward pass and a training forward + backward pass."""

    def forward():
        with torch.no_grad():
            return model.eval()(x)

    def forward_backward():
        model.train()
        F.cross_entropy(model(x), labels).backward()
        model.zero_grad(set_to_none=True)

    return forward, forward_backward


def rows_for(name, config, batch, device, repeats, iters):
    """Build the four variants, call each once (compiling), then time them in turns."""
    torch.manual_seed(0)
    ours = ViT(config).to(device)
    timm_model = create_timm_model(config).to(device)
    timm_model.load_state_dict(to_timm_state_dict(ours.state_dict()))
    x = torch.randn(batch, config.num_channels, config.image_size, config.image_size, device=device)
    labels = torch.randint(0, config.num_classes, (batch,), device=device)
    variants = {}
    for model_name, model in (("ours", ours), ("timm", timm_model)):
        for mode in ("eager", "compiled"):
            runnable = torch.compile(model) if mode == "compiled" else model
            forward, forward_backward = steps(runnable, x, labels)
            first = [timed(forward, device), timed(forward_backward, device)]  # compiles, if compiled
            second = [timed(forward, device), timed(forward_backward, device)]  # warm
            variants[model_name, mode] = dict(steps=(forward, forward_backward), first=first, second=second,
                                              logits=forward(), times=([], []))
            print(f"  {name}: {model_name} {mode} ready (first calls {first[0]:.1f} s, {first[1]:.1f} s)", flush=True)
    # In turns, so that the load of a shared machine falls on every variant alike.
    for _ in range(repeats):
        for variant in variants.values():
            for step, times in zip(variant["steps"], variant["times"]):
                times.append(timed(lambda: [step() for _ in range(iters)], device) / iters)
    reference = variants["ours", "eager"]["logits"]
    rows = []
    for (model_name, mode), v in variants.items():
        fwd, fwd_bwd = (batch / statistics.median(t) for t in v["times"])
        compile_s = ("-" if mode == "eager" else
                     " / ".join(f"{first - second:.1f}" for first, second in zip(v["first"], v["second"])))
        diff = (v["logits"].float() - reference.float()).abs().max().item()
        rows.append((name, batch, model_name, mode, fwd, fwd_bwd, compile_s, diff))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="micro only, fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--configs", nargs="+", choices=["micro", "tiny"], default=["micro", "tiny"])
    parser.add_argument("--batch-micro", type=int, default=32)
    parser.add_argument("--batch-tiny", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None, help="iterations per timed repeat (default 3, tiny 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, the median is taken (default 5)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    setups = {"micro": ("micro 32x32", get_config("micro"), args.batch_micro, args.iters or (2 if args.quick else 3)),
              "tiny": ("tiny 224x224", get_config("tiny"), args.batch_tiny, args.iters or 1)}
    setups = [setups[name] for name in (["micro"] if args.quick else args.configs)]

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    rows = []
    for name, config, batch, iters in setups:
        rows += rows_for(name, config, batch, device, repeats, iters)

    header = (f"{'config':<13} {'batch':>5} {'model':<5} {'mode':<9} {'fwd img/s':>10} {'fwd+bwd img/s':>13} "
              f"{'compile s (fwd / fwd+bwd)':>26} {'max diff':>9}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, batch, model_name, mode, fwd, fwd_bwd, compile_s, diff in rows:
        print(f"{name:<13} {batch:>5} {model_name:<5} {mode:<9} {fwd:>10.1f} {fwd_bwd:>13.1f} "
              f"{compile_s:>26} {diff:>9.1e}")
    print("\nimg/s: median over repeats, after warm-up; compile s: first call minus second call. timm's model is\n"
          "compiled after ours: where the operations are the same, inductor's on-disk caches serve it.")


if __name__ == "__main__":
    main()
