"""Hugging Face checkpoints: convert between our ``ViT`` and ``transformers``' ``ViTForImageClassification``.

The blog post's API follows Hugging Face's ViT (``hidden_size``, ``num_attention_heads``,
``output_attentions``); our parameter names follow timm. The two architectures are the same
network (pre-norm blocks, exact GELU, class token read out after the final LayerNorm), so
converting is renaming, plus one real change: Hugging Face keeps separate ``query``, ``key`` and
``value`` Linear layers ``[D, D]`` where we have one fused ``qkv`` layer ``[3D, D]``, their rows
stacked in the order q, k, v (``Attention.forward`` splits them in that order).

Two naming schemes of the Hugging Face side are understood:

- ``"hub"``: the names in checkpoint files on the Hugging Face Hub, and of the modules in
  ``transformers`` 4.x: ``vit.encoder.layer.N.attention.attention.query``, ...;
- ``"transformers5"``: the module names of ``transformers`` 5 (``vit.layers.N.attention.q_proj``,
  ...), which renames Hub files to these when it loads them.

``transformers`` is an optional dependency: it is imported only by the functions that build a
Hugging Face object (``pip install transformers``). The state-dict functions need only torch.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from .i18n import _
from .model import ViT, ViTConfig

__all__ = ["to_hf_config", "config_from_hf", "hf_to_ours", "ours_to_hf", "vit_from_hf", "hf_from_vit",
           "load_pretrained_hf", "LAYOUTS"]

LAYOUTS = ("hub", "transformers5")

# Names outside the blocks: ours -> Hugging Face (the same in both layouts).
_TOP = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
# Inside block N: where a block lives, its renamed modules, and the three halves of our fused qkv.
_LAYER_PREFIX = {"hub": "encoder.layer.{}.", "transformers5": "layers.{}."}
_LAYER = {
    "hub": {"norm1": "layernorm_before", "attn.proj": "attention.output.dense",
            "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"},
    "transformers5": {"norm1": "layernorm_before", "attn.proj": "attention.o_proj",
                      "norm2": "layernorm_after", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"},
}
_QKV = {
    "hub": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    "transformers5": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
}
# Hugging Face parameters with no counterpart in our ViT (ViTModel's pooler feeds nothing that
# ViTForImageClassification uses; the mask token belongs to masked-image-modelling pre-training).
_IGNORED = re.compile(r"^(vit\.)?(pooler\.|embeddings\.mask_token$)")


def _import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            _("This needs Hugging Face transformers, which vit_lesson does not install by default: "
              "pip install transformers")
        ) from error
    return transformers


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(_("Unknown layout {layout!r}: choose 'hub' (Hub checkpoint files, transformers "
                           "4.x) or 'transformers5' (module names of transformers 5).").format(layout=layout))


def _name_pairs(num_layers: int, layout: str, prefix: str, with_head: bool):
    """``(ours, theirs)`` for every one-to-one name, and ``(ours_qkv, (q, k, v))`` for the fused ones."""
    pairs = [(ours, prefix + theirs) for ours, theirs in _TOP.items()]
    if with_head:
        pairs += [("head.weight", "classifier.weight"), ("head.bias", "classifier.bias")]
    fused = []
    for i in range(num_layers):
        ours_block, theirs_block = f"blocks.{i}.", prefix + _LAYER_PREFIX[layout].format(i)
        for ours, theirs in _LAYER[layout].items():
            pairs += [(f"{ours_block}{ours}.{p}", f"{theirs_block}{theirs}.{p}") for p in ("weight", "bias")]
        for p in ("weight", "bias"):
            fused.append((f"{ours_block}attn.qkv.{p}", tuple(f"{theirs_block}{n}.{p}" for n in _QKV[layout])))
    return pairs, fused


def _count_layers(keys, pattern: str) -> int:
    found = {int(m.group(1)) for key in keys if (m := re.search(pattern, key))}
    return max(found) + 1 if found else 0


def hf_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ViT state dict (either layout, with or without the ``vit.`` prefix) -> ours.

    ``query``, ``key``, ``value`` (each ``[D, D]`` weight, ``[D]`` bias) are concatenated along
    dim 0 into ``attn.qkv`` (``[3D, D]``, ``[3D]``). A ``ViTModel`` state dict (no ``classifier``)
    gives a state dict for ``ViT(config, num_classes=0)``; the pooler is dropped.
    """
    state_dict = {k: v for k, v in state_dict.items() if not _IGNORED.match(k)}
    keys = list(state_dict)
    prefix = "vit." if any(k.startswith("vit.") for k in keys) else ""
    layout = "transformers5" if any(re.match(rf"{re.escape(prefix)}layers\.\d+\.", k) for k in keys) else "hub"
    num_layers = _count_layers(keys, r"(?:encoder\.layer|^(?:vit\.)?layers)\.(\d+)\.")
    pairs, fused = _name_pairs(num_layers, layout, prefix, with_head="classifier.weight" in state_dict)
    ours, remaining = {}, dict(state_dict)
    try:
        for our_name, their_name in pairs:
            ours[our_name] = remaining.pop(their_name)
        for our_name, their_names in fused:
            if our_name.endswith("bias") and not any(n in remaining for n in their_names):
                continue  # a model built with qkv_bias=False
            ours[our_name] = torch.cat([remaining.pop(n) for n in their_names], dim=0)
    except KeyError as error:
        raise ValueError(
            _("Not a Hugging Face ViT state dict: key {key!r} is missing (read as the "
              "{layout!r} layout with {num_layers} layer(s)). Pass model.state_dict() of a "
              "transformers ViTForImageClassification or ViTModel.").format(
                key=error.args[0], layout=layout, num_layers=num_layers)
        ) from None
    if remaining:
        raise ValueError(
            _("{count} key(s) of this state dict have no place in our ViT, first "
              "{first!r}. Is it a ViT variant with extra parts (DeiT's distillation "
              "token, a BEiT)? Only plain ViT checkpoints convert.").format(
                count=len(remaining), first=next(iter(remaining)))
        )
    return ours


def ours_to_hf(state_dict: Mapping[str, torch.Tensor], layout: str = "hub") -> dict[str, torch.Tensor]:
    """Our state dict -> a Hugging Face ``ViTForImageClassification`` state dict.

    ``attn.qkv`` (``[3D, D]``, ``[3D]``) is cut into three equal parts along dim 0: query, key,
    value. ``layout="hub"`` gives the Hub's (and transformers 4.x's) names, ``"transformers5"``
    those of transformers 5. A model built with ``num_classes=0`` has no ``classifier``.
    """
    _check_layout(layout)
    num_layers = _count_layers(state_dict, r"^blocks\.(\d+)\.")
    pairs, fused = _name_pairs(num_layers, layout, "vit.", with_head="head.weight" in state_dict)
    theirs = {their_name: state_dict[our_name] for our_name, their_name in pairs}
    for our_name, their_names in fused:
        if our_name in state_dict:  # no bias when qkv_bias=False
            theirs.update(zip(their_names, state_dict[our_name].chunk(3, dim=0)))
    converted = len(pairs) + sum(name in state_dict for name, _unused in fused)
    if converted != len(state_dict):
        extra = sorted(set(state_dict) - {n for n, _unused in pairs} - {n for n, _unused in fused})
        raise ValueError(_("Key {key!r} has no Hugging Face counterpart: is this our ViT's state dict?").format(
            key=extra[0]))
    return theirs


def to_hf_config(config: ViTConfig, **overrides):
    """Our ``ViTConfig`` -> ``transformers.ViTConfig`` describing the same network.

    Hugging Face's ViT has no stochastic depth (``drop_path_rate``): the converted model is the
    same in ``eval()`` mode but trains without it.
    """
    transformers = _import_transformers()
    if config.drop_path_rate > 0:
        warnings.warn(_("Hugging Face's ViT has no stochastic depth: drop_path_rate={rate} "
                        "is left out (it changes training only, not eval-mode outputs).").format(
                          rate=config.drop_path_rate), stacklevel=2)
    return transformers.ViTConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.num_channels,
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act="gelu", hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob, qkv_bias=config.qkv_bias,
        layer_norm_eps=config.layer_norm_eps, num_labels=config.num_classes, **overrides,
    )


def _square(value, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(_("Our ViT needs a square {name}, this config has {name}={value}.").format(
                name=name, value=value))
        value = value[0]
    return int(value)


def config_from_hf(hf_config) -> ViTConfig:
    """``transformers.ViTConfig`` -> our ``ViTConfig`` (note Hugging Face's ``layer_norm_eps=1e-12``)."""
    if hf_config.hidden_act != "gelu":
        raise ValueError(_("Our ViT uses exact GELU (hidden_act='gelu'); this config has "
                           "hidden_act={hidden_act!r}, which would give different outputs.").format(
                             hidden_act=hf_config.hidden_act))
    return ViTConfig(
        image_size=_square(hf_config.image_size, "image_size"),
        patch_size=_square(hf_config.patch_size, "patch_size"),
        num_channels=hf_config.num_channels, hidden_size=hf_config.hidden_size,
        num_hidden_layers=hf_config.num_hidden_layers, num_attention_heads=hf_config.num_attention_heads,
        intermediate_size=hf_config.intermediate_size, num_classes=hf_config.num_labels,
        hidden_dropout_prob=hf_config.hidden_dropout_prob,
        attention_probs_dropout_prob=hf_config.attention_probs_dropout_prob,
        qkv_bias=hf_config.qkv_bias, layer_norm_eps=hf_config.layer_norm_eps,
    )


def vit_from_hf(hf_model: nn.Module) -> ViT:
    """Our ``ViT`` carrying exactly the weights of a Hugging Face ``ViTForImageClassification``.

    A ``ViTModel`` (no classifier) gives ``ViT(..., num_classes=0)``, whose output is the
    class token's final state ``[B, D]``. The returned model is in the same train/eval mode.
    """
    config = config_from_hf(hf_model.config)
    state_dict = hf_to_ours(hf_model.state_dict())
    if "head.weight" not in state_dict:
        config = replace(config, num_classes=0)
    model = ViT(config)
    model.load_state_dict(state_dict)
    return model.train(hf_model.training)


def hf_from_vit(model: ViT, attn_implementation: str = "eager"):
    """A Hugging Face ``ViTForImageClassification`` carrying exactly our ``ViT``'s weights.

    ``attn_implementation="eager"`` computes the attention weights explicitly, so
    ``output_attentions=True`` returns them; ``"sdpa"`` is faster. Needs ``num_classes > 0``.
    """
    transformers = _import_transformers()
    if model.config.num_classes <= 0:
        raise ValueError(_("ViTForImageClassification needs a classifier: build the ViT with num_classes > 0."))
    config = to_hf_config(model.config, attn_implementation=attn_implementation)
    hf_model = transformers.ViTForImageClassification(config)
    layout = "transformers5" if any(".layers." in k for k in hf_model.state_dict()) else "hub"
    hf_model.load_state_dict(ours_to_hf(model.state_dict(), layout=layout))
    return hf_model.train(model.training)


def load_pretrained_hf(name: str = "google/vit-base-patch16-224") -> ViT:
    """Download a Hugging Face ViT (needs network, e.g. on Colab) and return it as our ``ViT``.

    ``google/vit-base-patch16-224`` expects 224 x 224 RGB images scaled to [0, 1] then normalised
    with mean = std = 0.5 per channel (``transformers.ViTImageProcessor`` does this).
    """
    transformers = _import_transformers()
    return vit_from_hf(transformers.ViTForImageClassification.from_pretrained(name).eval())
