"""Notebook 05: the whole Vision Transformer and its config.

``z_0 = [x_class; x_p E] + E_pos``, ``L`` pre-norm blocks, ``y = LN(z_L^0)``, logits = ``head(y)``
(ViT paper, Eq. 1-4). Config fields follow the blog post / Hugging Face (``hidden_size``,
``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``); module and parameter names
follow timm (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv``, ``norm``,
``head``), so a timm state dict loads as it is, and so do its hooks (``no_weight_decay``,
``forward_features``, ``forward_head``, ``reset_classifier``). The paper's presets and every other
model of the course: :mod:`vit_lesson.registry` (``create_model``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from .attention import validate_heads
from .block import Block
from .embeddings import input_sequence, trunc_normal_
from .i18n import _
from .patches import PatchEmbedding, validate_image_size

# (field, smallest allowed value, how to fix it) for ViTConfig's integer fields; the fix is a
# function so that it is translated when the error is raised, in the language in use then.
_INTEGER_FIELDS = (
    ("image_size", 1, lambda: _("set it to the side of the square input images in pixels, e.g. 32 or 224")),
    ("patch_size", 1, lambda: _("set it to a divisor of image_size, e.g. 4 or 16")),
    ("num_channels", 1, lambda: _("use 3 for colour images, 1 for grey ones")),
    ("hidden_size", 1, lambda: _("set it to a multiple of num_attention_heads, e.g. 64 or 768")),
    ("num_hidden_layers", 1, lambda: _("set it to the number of transformer blocks, e.g. 4 or 12")),
    ("num_attention_heads", 1, lambda: _("set it to a divisor of hidden_size, e.g. 4 or 12")),
    ("intermediate_size", 1, lambda: _("set it to the MLP's hidden width, usually 4 * hidden_size")),
    ("num_classes", 0, lambda: _(
        "set it to the number of classes in your data, or 0 for a model that returns features (no head)")),
    ("num_register_tokens", 0, lambda: _("use 0 (no registers) or a few, e.g. 4 (Darcet et al. 2024)")),
)


@dataclass
class ViTConfig:
    """Everything that decides a ViT's shape. Presets: :func:`vit_lesson.registry.get_config`."""

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_classes: int = 1000
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    fast_attention: bool = True
    num_register_tokens: int = 0  # timm's reg_tokens: learned tokens after the class token that no head reads

    def __post_init__(self):
        # Shape fields first: a 0 or a negative number would otherwise fail deep inside PyTorch
        # (or divide by zero), and num_classes=-1 would silently drop the head.
        for name, least, fix in _INTEGER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(_("ViTConfig.{name} must be an integer >= {least}, got {value!r}; {fix}.").format(
                    name=name, least=least, value=value, fix=fix()))
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
                raise ValueError(_("ViTConfig.{name} must be a probability in [0, 1), got {value!r}; "
                                   "use 0 to turn it off (typical values are 0.0-0.1).").format(name=name, value=value))
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < 1:
            raise ValueError(_("ViTConfig.layer_norm_eps must be a small positive number, got {eps!r}; "
                               "use 1e-6 (timm) or 1e-12 (Hugging Face).").format(eps=eps))
        if self.patch_size > self.image_size:
            raise ValueError(_("ViTConfig.patch_size {patch_size} is larger than image_size {image_size}: "
                               "the image would hold no patch. Use a patch size that divides the image size.").format(
                                 patch_size=self.patch_size, image_size=self.image_size))
        validate_heads(self.hidden_size, self.num_attention_heads)
        validate_image_size(self.image_size, self.image_size, self.patch_size)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def _init_linear(linear: nn.Linear) -> nn.Linear:
    """timm's init of a Linear layer: truncated normal weight (std 0.02), zero bias."""
    trunc_normal_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class ViTOutput(NamedTuple):
    """What ``ViT(x, output_attentions=True)`` returns, as the post's (Hugging Face's) API does."""

    logits: torch.Tensor                    # [B, num_classes]
    attentions: tuple[torch.Tensor, ...]    # one [B, H, P + N, P + N] per layer (P prefix tokens)


class ViT(nn.Module):
    """Vision Transformer: ``[B, C, H, W] -> [B, num_classes]`` logits.

    ``num_prefix_tokens`` tokens (the class token; DeiT's :class:`~vit_lesson.distill.DistilledViT`
    adds a distillation token) go in front of the ``N`` patch tokens; :meth:`prefix_tokens` returns
    them and :meth:`embed` builds ``z_0`` (Eq. 1) from them. ``pos_embed`` covers all ``P + N``.
    ``config.num_register_tokens = R`` adds ``R`` *registers* (Darcet et al. 2024; timm's ``reg_token``).
    """

    config_class = ViTConfig
    num_prefix_tokens = 1

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        config = replace(config or self.config_class(), **overrides)
        self.config = config
        D = config.hidden_size
        self.patch_embed = PatchEmbedding(config.image_size, config.patch_size, config.num_channels, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.reg_token = nn.Parameter(torch.zeros(1, R, D)) if (R := config.num_register_tokens) else None
        self.num_prefix_tokens = self.num_prefix_tokens + R  # registers come after the class (and distillation) token
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + self.num_prefix_tokens, D))
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        L = config.num_hidden_layers  # stochastic depth grows linearly from 0 to drop_path_rate
        rates = [config.drop_path_rate * i / max(L - 1, 1) for i in range(L)]
        self.blocks = nn.ModuleList(
            Block(D, config.num_attention_heads, config.intermediate_size, config.qkv_bias,
                  proj_drop=config.hidden_dropout_prob, attn_drop=config.attention_probs_dropout_prob,
                  drop_path=rate, layer_norm_eps=config.layer_norm_eps, fast_attention=config.fast_attention)
            for rate in rates
        )
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.head = nn.Linear(D, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self):
        """timm's default init: truncated normal (std 0.02) for Linear weights and ``pos_embed``."""
        trunc_normal_(self.pos_embed)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _init_linear(module)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)  # as timm

    def no_weight_decay(self) -> set[str]:
        """timm's hook: the parameters an optimizer should not decay (the tokens and ``E_pos``)."""
        return {"pos_embed", "cls_token"} | ({"reg_token"} if self.reg_token is not None else set())

    def _validate_input(self, x: torch.Tensor) -> None:
        size = self.config.image_size
        if x.ndim == 4 and x.shape[1] == self.config.num_channels and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                _("This model was built for {size}x{size} images (config.image_size={size}) but got "
                  "{height}x{width}. Resize the images to {size}x{size} (for example "
                  "transforms.Resize({size})), or build a model with image_size={width} and "
                  "carry the weights over with vit_lesson.embeddings.resize_position_embedding.").format(
                    size=size, height=x.shape[-2], width=x.shape[-1])
            )

    def prefix_tokens(self) -> torch.Tensor:
        """The ``[1, P, D]`` tokens put in front of the patches: here the class token alone."""
        return self.cls_token

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, P + N, D]``: ``z_0``, the prefix tokens (and registers) and the patches ``+ E_pos``."""
        front = self.prefix_tokens() if self.reg_token is None else torch.cat([self.prefix_tokens(), self.reg_token], 1)
        return self.pos_drop(input_sequence(self.patch_embed(x), front, self.pos_embed))

    def forward_features(self, x: torch.Tensor, output_attentions: bool = False):
        """``[B, C, H, W] -> [B, P + N, D]`` normalised tokens (and the per-layer attention maps)."""
        self._validate_input(x)
        x = self.embed(x)
        attentions = []
        for block in self.blocks:
            if output_attentions:
                x, weights = block(x, output_attentions=True)
                attentions.append(weights)
            else:
                x = block(x)
        x = self.norm(x)
        return (x, tuple(attentions)) if output_attentions else x

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, P + N, D]`` -> logits ``[B, num_classes]`` from the class token's final state
        (``pre_logits=True``: that state itself, ``[B, D]``, as timm's hook)."""
        pooled = tokens[:, 0]
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor, output_attentions: bool = False):
        """Logits ``[B, num_classes]``; with ``output_attentions=True`` a :class:`ViTOutput`."""
        if output_attentions:
            tokens, attentions = self.forward_features(x, output_attentions=True)
            return ViTOutput(self.forward_head(tokens), attentions)
        return self.forward_head(self.forward_features(x))

    def new_head(self, num_classes: int) -> nn.Module:
        """A freshly initialised ``Linear(D, num_classes)`` as timm's (``Identity`` for 0 classes)."""
        if num_classes == 0:
            return nn.Identity()
        return _init_linear(nn.Linear(self.config.hidden_size, num_classes))

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised head for ``num_classes`` classes (0: features only), as timm's."""
        self.config = replace(self.config, num_classes=num_classes)
        self.head = self.new_head(num_classes)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` with a clear error naming the first mismatching key."""
        if strict:
            validate_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def validate_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise a ``ValueError`` naming the first missing, unexpected or wrongly shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    config = getattr(model, "config", None)
    built = _(" (this model: {config})").format(config=config) if config is not None else ""
    for key, value in state_dict.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                _("Checkpoint does not fit this model: '{key}' has shape {saved} in the "
                  "checkpoint but {expected} in the model{built}. The checkpoint "
                  "was saved from a different config: build the model with the checkpoint's config.").format(
                    key=key, saved=tuple(value.shape), expected=tuple(expected[key].shape), built=built)
            )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(_("missing {count} key(s), first '{first}'").format(count=len(missing), first=missing[0]))
        if unexpected:
            parts.append(_("{count} unexpected key(s), first '{first}'").format(count=len(unexpected),
                                                                               first=unexpected[0]))
        raise ValueError(
            _("Checkpoint does not fit this model: {problems}. Is it from another "
              "architecture (a timm or Hugging Face model needs converting first) or another depth?").format(
                problems=_("; ").join(parts))
        )


def count_parameters(model: nn.Module) -> int:
    """The number of learnable numbers in ``model``."""
    return sum(p.numel() for p in model.parameters())
