"""One way to get a model: ``create_model(name, pretrained=None, **overrides)``, as in timm.

::

    create_model("digits")                        # lesson 06's ViT for 16x16 digits
    create_model("tiny", num_classes=10)          # ViT-Ti/16 (DeiT), a 10-class head
    create_model("base", pretrained="timm")       # ViT-B/16 with timm's ImageNet weights (network)
    create_model("shapes", pretrained="shipped")  # the shapes ViT shipped with the package
    create_model("digits", pretrained="runs/digits/best.pt")  # a checkpoint of our trainer

The names are :data:`vit_lesson.registry.MODELS`; the sources of weights :mod:`vit_lesson.pretrained`.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from .pretrained import load_pretrained
from .registry import entry

__all__ = ["create_model"]


def create_model(name: str, pretrained=None, **overrides) -> nn.Module:
    """A registered model, built from its config with ``overrides`` (config fields).

    ``pretrained``: ``None`` (random init, timm's), ``"timm"`` or ``"timm:<tag>"``, ``"hf"`` or
    ``"hf:<repo>"`` (downloads; needs network), ``"shipped"`` (the weights shipped in the package),
    or the path of a checkpoint written by our trainer. With weights, only ``num_classes`` may be
    overridden (a new head).
    """
    model_entry = entry(name)
    config = replace(model_entry.config, **overrides)
    if pretrained is None:
        return model_entry.cls(config)
    return load_pretrained(model_entry, config, pretrained, overrides)
