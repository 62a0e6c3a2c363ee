"""The models of the course, in one table: what :func:`vit_lesson.factory.create_model` builds.

Every model of the course is a registry entry: a class (:class:`~vit_lesson.model.ViT`,
:class:`~vit_lesson.distill.DistilledViT`, :class:`~vit_lesson.hybrid.HybridViT`), the config it
is built from, and where trained weights for it can come from. ``overrides`` are config fields
(``image_size``, ``num_channels``, ``num_classes``, ``drop_path_rate``, ...)::

    create_model("digits")                      # lesson 06's ViT for 16x16 digits
    create_model("tiny", num_classes=10)        # ViT-Ti/16 (DeiT), a 10-class head
    create_model("base", pretrained="timm")     # ViT-B/16 with timm's ImageNet weights (network)
    create_model("shapes", pretrained="shipped")  # the shapes ViT shipped with the package
    create_model("digits", pretrained="runs/digits/best.pt")  # a checkpoint of our trainer

A checkpoint stores its model's class and config, and :func:`model_from_config` rebuilds it from
them (``vit_lesson.checkpoint.load_model`` uses it). As in timm, the table (here), the weights
(:mod:`vit_lesson.pretrained`) and the factory (:mod:`vit_lesson.factory`) are three modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from torch import nn

from .distill import DistilledViT
from .hybrid import HybridConfig, HybridViT
from .i18n import _
from .model import ViT, ViTConfig

__all__ = ["ModelEntry", "MODELS", "ALIASES", "entry", "get_config", "list_models", "model_from_config"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: ``cls(config)`` builds it; ``pretrained`` maps a source to its default tag."""

    cls: type
    config: ViTConfig
    description: str
    pretrained: dict[str, str] = field(default_factory=dict)


# The shapes of the digits and shapes models (CPU-sized: they train in a minute or two on two cores).
_DIGITS = dict(image_size=16, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
               num_attention_heads=4, intermediate_size=128, num_classes=10)
_SHAPES = dict(_DIGITS, image_size=32, num_channels=3, num_classes=5)

MODELS: dict[str, ModelEntry] = {
    # The ViT paper's Table 1 (Base/Large/Huge) and DeiT's Tiny/Small: ViTConfig's defaults are 224 x 224,
    # 16 x 16 patches, 1000 classes.
    "tiny": ModelEntry(ViT, ViTConfig(hidden_size=192, num_attention_heads=3, intermediate_size=768),
                       "ViT-Ti/16 (DeiT), 5.7M parameters",
                       {"timm": "vit_tiny_patch16_224.augreg_in21k_ft_in1k"}),
    "small": ModelEntry(ViT, ViTConfig(hidden_size=384, num_attention_heads=6, intermediate_size=1536),
                        "ViT-S/16 (DeiT), 22M parameters", {"timm": "vit_small_patch16_224.augreg_in21k_ft_in1k"}),
    "base": ModelEntry(ViT, ViTConfig(), "ViT-B/16 (ViT paper, Table 1), 86M parameters",
                       {"timm": "vit_base_patch16_224.augreg2_in21k_ft_in1k", "hf": "google/vit-base-patch16-224"}),
    "large": ModelEntry(ViT, ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                       intermediate_size=4096), "ViT-L/16 (ViT paper, Table 1), 304M parameters",
                        {"timm": "vit_large_patch16_224.augreg_in21k_ft_in1k"}),
    "huge": ModelEntry(ViT, ViTConfig(patch_size=14, hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                      intermediate_size=5120), "ViT-H/14 (ViT paper, Table 1), 632M parameters"),
    "micro": ModelEntry(ViT, ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4,
                                       num_attention_heads=4, intermediate_size=128, num_classes=10),
                        "a CPU-sized ViT for 32x32 images (trains in seconds to minutes)"),
    "digits": ModelEntry(ViT, ViTConfig(**_DIGITS), "lesson 06's ViT for scikit-learn's 16x16 digits"),
    "shapes": ModelEntry(ViT, ViTConfig(**_SHAPES), "lesson 07's ViT for the 32x32 synthetic shapes",
                         {"shipped": "shapes_vit.pt"}),
    "shapes_registers": ModelEntry(ViT, ViTConfig(**_SHAPES, num_register_tokens=4),
                                   "lesson 07's shapes ViT with 4 registers (Darcet et al. 2024)",
                                   {"shipped": "shapes_registers_vit.pt"}),
    "digits_distilled": ModelEntry(DistilledViT, ViTConfig(**_DIGITS),
                                   "lesson 08's DeiT student: the digits ViT with a distillation token"),
    "digits_hybrid": ModelEntry(HybridViT, HybridConfig(**dict(_DIGITS, patch_size=1), resnet_stages=3,
                                                        resnet_width=16),
                                "lesson 09's hybrid: a small ResNet's layer1-3 map (4x4 tokens) into the ViT"),
    "digits_conv_stem": ModelEntry(HybridViT, HybridConfig(**dict(_DIGITS, patch_size=1), resnet=None,
                                                           conv_stem=(32, 64)),
                                   "the digits recipe's ViT: a 2-conv stem (Xiao et al. 2021) makes the 4x4 tokens"),
}

# timm's names of the paper's models, for those who know them.
ALIASES = {"vit_tiny_patch16_224": "tiny", "vit_small_patch16_224": "small", "vit_base_patch16_224": "base",
           "vit_large_patch16_224": "large", "vit_huge_patch14_224": "huge"}


def list_models() -> list[str]:
    """The registered names, in the order above."""
    return list(MODELS)


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (or of timm's name for it), or a one-line error listing the names."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in MODELS:
        raise ValueError(_("Unknown model {name!r}: choose one of {choices}.").format(
            name=name, choices=", ".join(MODELS)))
    return MODELS[key]


def get_config(name: str, **overrides) -> ViTConfig:
    """The config of a registered model (``tiny``, ``base``, ``micro``, ``digits``, ...), with overrides."""
    return replace(entry(name).config, **overrides)


_CLASSES = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in (ViT, DistilledViT, HybridViT)}


def model_from_config(class_path: str, config: dict) -> nn.Module:
    """Rebuild one of our models from a checkpoint's ``model_class`` and ``model_config``."""
    cls = _CLASSES.get(class_path)
    if cls is None or not isinstance(config, dict):
        raise ValueError(_("A checkpoint of a {model_class} cannot be rebuilt from the file alone (the course "
                           "rebuilds {choices}); build the model yourself and call "
                           "load_checkpoint(path, model).").format(model_class=class_path, choices=", ".join(_CLASSES)))
    known = {f.name for f in fields(cls.config_class)}
    config = cls.config_class(**{k: v for k, v in config.items() if k in known})
    if cls is HybridViT:
        if config.resnet is None and not config.conv_stem:
            raise ValueError(_("This checkpoint holds a HybridViT with a hand-made backbone (config.resnet is "
                               "None); build it the same way and call load_checkpoint(path, model)."))
        config = replace(config, resnet_weights=None)  # the weights come from the checkpoint
    return cls(config)
