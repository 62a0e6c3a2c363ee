"""Notebook 09: the hybrid — a CNN's feature map, cut into tokens, fed to a ViT.

ViT paper, Sec. 3.1 "Hybrid Architecture": "the input sequence can be formed from feature maps of
a CNN ... the patch embedding projection E is applied to patches extracted from a CNN feature map.
As a special case, the patches can have spatial size 1x1". So a ResNet's early stages turn the
image ``[B, C, H, W]`` into a feature map ``[B, C', h, w]``, a 1x1 convolution projects each of its
``h * w`` positions to a ``D``-dimensional token, and everything after that (class token,
position embeddings, blocks, norm, head) is the ViT of notebook 05.

The blog post feeds the ResNet's *output* to the ViT: ``resnet50(x)`` is ``[B, 1000]`` class
logits, after the global average pool has thrown the spatial map away. There is nothing left to
cut into patches. :func:`resnet_stem` keeps the stages up to ``layerK`` instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dataclass_fields

import torch
from torch import nn

from .cnn import conv_stem, small_resnet
from .model import ViT, ViTConfig
from .patches import PatchEmbedding

__all__ = ["resnet_stem", "feature_shape", "HybridEmbed", "HybridConfig", "resnet_backbone", "HybridViT"]


def resnet_stem(resnet: nn.Module, stages: int = 3) -> nn.Sequential:
    """The early part of a torchvision ResNet: ``conv1, bn1, relu, maxpool, layer1 .. layer{stages}``.

    ``[B, C, H, W] -> [B, C', h, w]``, a feature map (no ``avgpool``, no ``fc``). The modules are
    the ResNet's own (shared, not copied), under their torchvision names, so pretrained weights
    come along. ``stages=0`` keeps only the stem convolution.
    """
    if not isinstance(stages, int) or not 0 <= stages <= 4:
        raise ValueError(f"A ResNet has 4 stages (layer1..layer4); stages must be 0..4, got {stages!r}.")
    names = ["conv1", "bn1", "relu", "maxpool"] + [f"layer{i}" for i in range(1, stages + 1)]
    missing = [name for name in names if not hasattr(resnet, name)]
    if missing:
        raise ValueError(f"{type(resnet).__name__} has no {', '.join(missing)}: resnet_stem slices a "
                         "torchvision ResNet (torchvision.models.resnet18/34/50 or small_resnet).")
    return nn.Sequential(OrderedDict((name, getattr(resnet, name)) for name in names))


def feature_shape(backbone: nn.Module, image_size: int, in_chans: int = 3) -> tuple[int, int, int]:
    """``(C', h, w)`` of ``backbone``'s output for one ``in_chans x image_size x image_size`` image.

    Raises a ``ValueError`` if the output is not a feature map (the post's bug: a whole ResNet
    returns ``[B, 1000]`` logits) or is too small to give the transformer anything to attend over.
    """
    was_training = backbone.training
    backbone.eval()  # BatchNorm would update its running statistics on this dummy batch
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(1, in_chans, image_size, image_size))
    except RuntimeError as error:
        raise ValueError(f"The backbone cannot take a {in_chans}x{image_size}x{image_size} image ({error}). "
                         "Is the image too small for its downsampling, or in_chans wrong?") from None
    finally:
        backbone.train(was_training)
    if out.ndim != 4:
        raise ValueError(
            f"The backbone returns shape {list(out.shape)}, not a feature map [B, C, h, w]. A whole "
            "ResNet ends in avgpool + fc: its output is class logits, with no spatial map left to cut "
            "into tokens. Keep only its convolutional stages: resnet_stem(resnet, stages)."
        )
    _, channels, height, width = out.shape
    if height * width < 4:
        raise ValueError(
            f"The backbone turns a {image_size}x{image_size} image into a {height}x{width} feature map: "
            f"{height * width} token(s) is too few for attention. Use fewer stages, larger images, or "
            "a small-image stem (HybridViT(..., small_input=True))."
        )
    return channels, height, width


class HybridEmbed(PatchEmbedding):
    """CNN backbone + patch embedding on its feature map (timm's ``HybridEmbed`` names).

    ``[B, C, H, W] --backbone--> [B, C', h, w] --proj (P x P conv)--> [B, (h/P)(w/P), D]``; with the
    paper's special case ``patch_size=1`` every feature-map position becomes one token. ``img_size``,
    ``grid_size``, ``num_patches`` and ``in_chans`` describe the feature map the projection sees.
    """

    def __init__(self, backbone: nn.Module, image_size: int = 224, in_chans: int = 3,
                 embed_dim: int = 768, patch_size: int = 1):
        channels, height, width = feature_shape(backbone, image_size, in_chans)
        if height % patch_size or width % patch_size:
            raise ValueError(f"The backbone's feature map is {height}x{width}, not divisible by "
                             f"patch_size={patch_size}. Use patch_size=1 (the paper's 1x1 patches).")
        super().__init__((height, width), patch_size, channels, embed_dim)
        self.backbone = backbone
        self.image_size, self.image_chans = image_size, in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.backbone(x))  # [B, C, H, W] -> [B, C', h, w] -> [B, N, D]


@dataclass
class HybridConfig(ViTConfig):
    """A :class:`~vit_lesson.model.ViTConfig` plus the ResNet that makes the tokens.

    ``image_size`` / ``num_channels`` describe the input image; ``patch_size`` is the patch size
    *on the feature map* (1 in the paper). ``resnet``: ``resnet18``, ``resnet34`` or ``resnet50``
    (``None``: ``conv_stem``, or a hand-made backbone passed to :class:`HybridViT` itself); its first
    ``resnet_stages`` stages are kept. ``small_input=True``: :func:`vit_lesson.cnn.small_resnet`
    (3x3 stride-1 stem, no max-pool, ``resnet_width`` channels in ``layer1``) for 8-32 px images,
    random init. ``small_input=False``: torchvision's ResNet as it is (7x7 stride-2 stem +
    max-pool: 4x smaller before ``layer1``) for 224 px images; ``resnet_weights="DEFAULT"`` loads
    torchvision's ImageNet weights when the model is built (downloads them once; 3-channel input).
    ``conv_stem``: channel widths of a plain convolutional stem (:func:`vit_lesson.cnn.conv_stem`,
    Xiao et al. 2021) in place of the ResNet (with ``resnet=None``), e.g. ``(32, 64)``.
    """

    resnet: str | None = "resnet18"
    resnet_stages: int = 3
    resnet_width: int = 64
    small_input: bool = True
    resnet_weights: str | None = None
    conv_stem: tuple[int, ...] | None = None

    def vit_config(self, image_size: int, num_channels: int) -> ViTConfig:
        """The transformer's own config: its "image" is the feature map (``image_size x image_size``,
        ``num_channels`` channels)."""
        fields = {f.name: getattr(self, f.name) for f in dataclass_fields(ViTConfig)}
        return ViTConfig(**{**fields, "image_size": image_size, "num_channels": num_channels})


def resnet_backbone(config: HybridConfig) -> nn.Sequential:
    """The convolutional part ``config`` asks for: ``[B, C, H, W] -> [B, C', h, w]``."""
    import torchvision

    resnet = config.resnet or ""
    depth = int(resnet.removeprefix("resnet")) if resnet.removeprefix("resnet").isdigit() else None
    if depth not in (18, 34, 50):
        raise ValueError(f"Unknown ResNet {config.resnet!r}: choose resnet18, resnet34 or resnet50.")
    if config.small_input:
        if config.resnet_weights is not None:
            raise ValueError("Pretrained weights belong to the ImageNet stem (7x7 stride-2 conv + max-pool): "
                             "pass small_input=False to use them, or resnet_weights=None for the small-image stem.")
        model = small_resnet(num_classes=10, in_chans=config.num_channels, width=config.resnet_width, depth=depth)
    else:
        if config.resnet_weights is not None and config.num_channels != 3:
            raise ValueError(f"ImageNet weights expect 3-channel images; this config has "
                             f"num_channels={config.num_channels}. Repeat grayscale to 3 channels.")
        model = torchvision.models.get_model(config.resnet, weights=config.resnet_weights)
        if config.num_channels != 3:
            model.conv1 = nn.Conv2d(config.num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return resnet_stem(model, config.resnet_stages)


class HybridViT(ViT):
    """ViT on a CNN's feature map: ``[B, C, H, W] -> [B, num_classes]``.

    ``HybridViT(config, **overrides)`` builds its ResNet (or its ``conv_stem``) from the
    :class:`HybridConfig` (a plain ``ViTConfig`` is taken as one with the default ResNet fields);
    ``backbone=`` takes any module returning ``[B, C', h, w]`` instead (then ``config.resnet`` and
    ``config.conv_stem`` are ``None``). The token grid is
    ``patch_embed.grid_size`` and ``pos_embed`` is ``[1, h*w + 1, D]``. Names are timm's:
    ``patch_embed.backbone``, ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks``,
    ``norm``, ``head``. Everything after the patch embedding — ``forward``, ``forward_features``,
    attention maps — is :class:`ViT`'s.
    """

    config_class = HybridConfig

    def __init__(self, config: ViTConfig | None = None, backbone: nn.Module | None = None, **overrides):
        config = HybridConfig(**{**(asdict(config) if config is not None else {}), **overrides})
        if backbone is None and config.conv_stem:
            if config.resnet is not None:
                raise ValueError(f"conv_stem={config.conv_stem} and resnet={config.resnet!r} are two backbones: "
                                 "pass resnet=None for the convolutional stem, or conv_stem=None for the ResNet.")
            backbone = conv_stem(config.num_channels, config.conv_stem)
        elif backbone is None:
            backbone = resnet_backbone(config)
        else:
            config = replace(config, resnet=None, resnet_weights=None, conv_stem=None)
        embed = HybridEmbed(backbone, config.image_size, config.num_channels, config.hidden_size,
                            config.patch_size)
        super().__init__(config.vit_config(embed.img_size[0], embed.in_chans))
        self.patch_embed = embed
        self.config = config  # the input image's size and channels, checked by ViT._validate_input
