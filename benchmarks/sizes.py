"""Parameters and FLOPs of the ViT presets: ours, timm's and the paper's, counted on real instances.

    python benchmarks/sizes.py [--presets tiny small base large huge]

Every model is built on PyTorch's meta device (shapes, no memory), so ViT-Huge costs nothing.
FLOPs: matmul FLOPs (2 x multiply-adds) of one forward pass on one image, counted by
torch.utils.flop_counter.FlopCounterMode on the model itself, ours and timm's separately.
"""

from __future__ import annotations

import argparse

from vit_lesson.flops import size_table, vit_flops, vit_parameter_parts
from vit_lesson.registry import get_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base", "large", "huge"])
    args = parser.parse_args(argv)

    rows = size_table(args.presets)
    print("| model | patch | layers | width | MLP | heads | params (ours) | params (timm) | paper | "
          "GFLOPs (ours) | GFLOPs (timm) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        paper = f"{r.paper_params / 1e6:.0f}M" if r.paper_params else "-"
        print(f"| {r.name} | {r.patch} | {r.layers} | {r.width} | {r.mlp} | {r.heads} | {r.params:,} | "
              f"{r.timm_params:,} | {paper} | {r.flops / 1e9:.2f} | {r.timm_flops / 1e9:.2f} |")
        assert r.params == r.timm_params and r.flops == r.timm_flops == vit_flops(get_config(r.name))
    print("\nParameters by piece (1000-class head, 224 px):")
    for r in rows:
        parts = vit_parameter_parts(get_config(r.name))
        print(f"  {r.name:6s} " + "  ".join(f"{k} {v:,}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
