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
from dataclasses import replace

import torch
from torch import nn

from .distill import small_resnet
from .model import ViT, ViTConfig
from .patches import PatchEmbedding

__all__ = ["resnet_stem", "feature_shape", "HybridEmbed", "HybridViT", "hybrid_vit"]


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
            "a small-image stem (hybrid_vit(..., small_input=True))."
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


class HybridViT(ViT):
    """ViT on a CNN's feature map: ``[B, C, H, W] -> [B, num_classes]``.

    ``backbone`` is any module returning ``[B, C', h, w]`` (usually :func:`resnet_stem`). ``config``
    describes the input image (``image_size``, ``num_channels``) and the transformer
    (``hidden_size``, ``num_hidden_layers``, ...); ``config.patch_size`` is the patch size *on the
    feature map* (1 in the paper). The token grid is ``patch_embed.grid_size`` and ``pos_embed`` is
    ``[1, h*w + 1, D]``. Names are timm's: ``patch_embed.backbone``, ``patch_embed.proj``,
    ``cls_token``, ``pos_embed``, ``blocks``, ``norm``, ``head``. Everything after the patch
    embedding — ``forward``, ``forward_features``, attention maps — is :class:`ViT`'s.
    """

    def __init__(self, backbone: nn.Module, config: ViTConfig | None = None, **overrides):
        config = replace(config or ViTConfig(), **overrides)
        embed = HybridEmbed(backbone, config.image_size, config.num_channels, config.hidden_size,
                            config.patch_size)
        # The transformer part is a ViT whose "image" is the feature map.
        super().__init__(replace(config, image_size=embed.img_size[0], num_channels=embed.in_chans))
        self.patch_embed = embed
        self.config = config  # the input image's size and channels, checked by ViT._check_input


def hybrid_vit(config: ViTConfig, resnet: str = "resnet18", stages: int = 3, weights=None,
               small_input: bool = True, width: int = 64) -> HybridViT:
    """Build a :class:`HybridViT` on a torchvision ResNet's first ``stages`` stages.

    - ``small_input=True``: :func:`vit_lesson.distill.small_resnet` (3x3 stride-1 stem, no max-pool;
      ``width`` channels in ``layer1``): for 16-32 px images. Random init.
    - ``small_input=False``: torchvision's ResNet as it is (7x7 stride-2 stem + max-pool: 4x smaller
      before ``layer1``, 32x after ``layer4``), for 224 px images. ``weights="DEFAULT"`` loads
      torchvision's ImageNet weights (downloads them once; needs network and 3-channel input),
      ``weights=None`` is random init (offline).

    With the ImageNet stem and 224 px input, ``stages=3`` gives a 14x14 map of 1024 (ResNet-50) or
    256 (ResNet-18) channels: 196 tokens, as many as ViT-B/16. (The paper's R50+ViT-B/16 uses a
    modified ResNet-50 whose stage 3 has more blocks; timm's ``vit_base_r50_s16_224``.)
    """
    import torchvision

    depth = int(resnet.removeprefix("resnet")) if resnet.removeprefix("resnet").isdigit() else None
    if depth not in (18, 34, 50):
        raise ValueError(f"Unknown ResNet {resnet!r}: choose resnet18, resnet34 or resnet50.")
    if small_input:
        if weights is not None:
            raise ValueError("Pretrained weights belong to the ImageNet stem (7x7 stride-2 conv + max-pool): "
                             "pass small_input=False to use them, or weights=None for the small-image stem.")
        model = small_resnet(num_classes=10, in_chans=config.num_channels, width=width, depth=depth)
    else:
        if weights is not None and config.num_channels != 3:
            raise ValueError(f"ImageNet weights expect 3-channel images; this config has "
                             f"num_channels={config.num_channels}. Repeat grayscale to 3 channels.")
        model = torchvision.models.get_model(resnet, weights=weights)
        if config.num_channels != 3:
            model.conv1 = nn.Conv2d(config.num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    hybrid = HybridViT(resnet_stem(model, stages), config)
    # What save_checkpoint stores so that load_model can rebuild this model (weights come from the file).
    hybrid.build_args = dict(resnet=resnet, stages=stages, small_input=small_input, width=width)
    return hybrid
