"""Converting between our ``ViT`` and timm's ``VisionTransformer``.

Our parameter names are timm's, so the conversion is the identity on names; what it adds is a
check that every key and shape fits (:func:`vit_lesson.model.validate_state_dict`), with an error
that names the first one that does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .i18n import _
from .model import ViT, ViTConfig, validate_state_dict


def timm_kwargs(config: ViTConfig) -> dict:
    """Keyword arguments for ``timm.models.vision_transformer.VisionTransformer`` with our shape."""
    return dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.num_channels,
        num_classes=config.num_classes, embed_dim=config.hidden_size,
        depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size, qkv_bias=config.qkv_bias,
        drop_rate=config.hidden_dropout_prob, attn_drop_rate=config.attention_probs_dropout_prob,
        drop_path_rate=config.drop_path_rate, global_pool="token", class_token=True,
        reg_tokens=config.num_register_tokens,
    )


def create_timm_model(config: ViTConfig, **kwargs) -> nn.Module:
    """A randomly initialised timm ``VisionTransformer`` with the same shape as ``ViT(config)``."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**{**timm_kwargs(config), **kwargs})


def from_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``VisionTransformer`` state dict -> ours (names are shared; drops timm-only buffers)."""
    return {k: v for k, v in state_dict.items() if not k.startswith(("fc_norm", "head_drop"))}


def to_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> timm ``VisionTransformer``'s (the same names)."""
    return dict(state_dict)


def check_timm_compatible(timm_model: nn.Module) -> None:
    """Raise a ``ValueError`` if a timm ``VisionTransformer`` uses a feature our ``ViT`` lacks.

    Our ViT is the paper's: a class token read out for classification, learned position embeddings
    for every token, plain pre-norm blocks with exact GELU. Variants such as CLIP (``norm_pre``),
    DINOv2 (layer scale) or average-pooled models compute something else, so
    loading their weights would silently give different outputs.
    """
    block = timm_model.blocks[0]
    problems = {
        _("global_pool must be 'token' (classify from the class token)"):
            getattr(timm_model, "global_pool", "token") != "token",
        _("it has no class token"): getattr(timm_model, "cls_token", None) is None,
        _("its class token has no position embedding (no_embed_class)"): getattr(timm_model, "no_embed_class", False),
        _("it normalises before the blocks (norm_pre)"):
            not isinstance(getattr(timm_model, "norm_pre", nn.Identity()), nn.Identity),
        _("it normalises after pooling (fc_norm)"):
            not isinstance(getattr(timm_model, "fc_norm", nn.Identity()), nn.Identity),
        _("its blocks use layer scale (ls1/ls2)"): not isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity),
        _("its attention normalises q and k (qk_norm)"):
            not isinstance(getattr(block.attn, "q_norm", nn.Identity()), nn.Identity),
        _("its MLP is not Linear-GELU-Linear"): not (isinstance(getattr(block.mlp, "act", None), nn.GELU)
                                                    and block.mlp.act.approximate == "none"),
        _("its norm layers are not LayerNorm"): not isinstance(block.norm1, nn.LayerNorm),
    }
    found = [what for what, bad in problems.items() if bad]
    if found:
        raise ValueError(
            _("This timm model is not the paper's ViT, so vit_lesson.model.ViT cannot reproduce it: "
              "{problems}. Use a plain ViT checkpoint such as "
              "'vit_base_patch16_224.augreg2_in21k_ft_in1k' or 'vit_tiny_patch16_224.augreg_in21k_ft_in1k'.").format(
                problems=_("; ").join(found))
        )


def config_from_timm(timm_model: nn.Module) -> ViTConfig:
    """Read a ``ViTConfig`` off a timm ``VisionTransformer`` instance (checked with
    :func:`check_timm_compatible`)."""
    check_timm_compatible(timm_model)
    block = timm_model.blocks[0]
    return ViTConfig(
        image_size=timm_model.patch_embed.img_size[0], patch_size=timm_model.patch_embed.patch_size[0],
        num_channels=timm_model.patch_embed.proj.in_channels, hidden_size=timm_model.embed_dim,
        num_hidden_layers=len(timm_model.blocks), num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        num_classes=timm_model.num_classes, qkv_bias=block.attn.qkv.bias is not None,
        layer_norm_eps=block.norm1.eps, num_register_tokens=getattr(timm_model, "num_reg_tokens", 0),
    )


def vit_from_timm(timm_model: nn.Module) -> ViT:
    """Our ``ViT`` carrying exactly the weights of a timm ``VisionTransformer`` (timm -> ours).

    The model is built on the meta device (no memory, no random init) and then takes copies of
    timm's tensors, so converting ViT-Base costs one copy of its weights and nothing else.
    """
    with torch.device("meta"):
        model = ViT(config_from_timm(timm_model))
    state_dict = {k: v.detach().clone() for k, v in from_timm_state_dict(timm_model.state_dict()).items()}
    model.load_state_dict(state_dict, assign=True)
    return model.train(timm_model.training)


def timm_from_vit(model: ViT) -> nn.Module:
    """A timm ``VisionTransformer`` carrying exactly the weights of our ``ViT`` (ours -> timm)."""
    with torch.device("meta"):
        timm_model = create_timm_model(model.config)
    state_dict = {k: v.detach().clone() for k, v in to_timm_state_dict(model.state_dict()).items()}
    validate_state_dict(timm_model, state_dict)
    timm_model.load_state_dict(state_dict, assign=True)
    return timm_model.train(model.training)


def load_pretrained_timm(name: str = "vit_base_patch16_224.augreg2_in21k_ft_in1k",
                         pretrained: bool = True) -> ViT:
    """A timm ViT as our ``ViT``, in eval mode: with ``pretrained=True`` its trained weights are
    downloaded (needs network, e.g. on Colab; cached afterwards); with ``pretrained=False`` the same
    architecture with random weights (offline, for testing the path)."""
    import timm

    return vit_from_timm(timm.create_model(name, pretrained=pretrained)).eval()


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in model output order ("tench", ..., "tabby, tabby cat", ...).

    timm ships them (``timm.data.ImageNetInfo``), so no download is needed.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]
