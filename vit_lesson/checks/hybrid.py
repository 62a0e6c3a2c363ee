"""Exercise checks for notebook 09, the hybrid (see vit_lesson.checks.core for the framework)."""

from __future__ import annotations

import torch
from torch import nn

from ..i18n import _
from .core import CheckFailed, call, exercise, expect_close, fmt_shape

__all__ = ["check_resnet_stem"]


def _reference_stem(resnet: nn.Module, x: torch.Tensor, stages: int, relu=True, maxpool=True, bn=True):
    x = resnet.conv1(x)
    x = resnet.bn1(x) if bn else x
    x = resnet.relu(x) if relu else x
    x = resnet.maxpool(x) if maxpool else x
    for i in range(1, stages + 1):
        x = getattr(resnet, f"layer{i}")(x)
    return x


HINTS_9_1 = (
    "keep the ResNet's own modules, in their order, up to the last stage you want, and leave out the pooling "
    "and the classifier at the end.",
    "The modules are attributes of the ResNet named conv1, bn1, relu, maxpool, layer1, layer2, ... (getattr "
    "fetches one by its name). Chain the ones you keep into one module with nn.Sequential; the stage count "
    "says where to stop.",
    "names = [\"conv1\", \"bn1\", \"relu\", \"maxpool\"] + [f\"layer{i}\" for i in range(1, stages + 1)]\n"
    "return nn.Sequential(*[getattr(resnet, name) for name in names])",
)


@exercise("9.1", "resnet_stem", hints=HINTS_9_1)
def check_resnet_stem(resnet_stem):
    """``resnet_stem(resnet, stages) -> nn.Module`` mapping ``[B, 3, H, W]`` to the feature map after ``layer{stages}``."""
    import torchvision

    resnet = torchvision.models.resnet18().eval()  # the post's kind of backbone, 1000 ImageNet classes
    x = torch.randn(2, 3, 32, 32)
    for stages in (1, 3):
        stem = call(resnet_stem, resnet, stages)
        if not isinstance(stem, nn.Module):
            raise CheckFailed(_("resnet_stem should return an nn.Module (e.g. nn.Sequential), got "
                                "{type}.").format(type=type(stem).__name__))
        with torch.no_grad():
            got = call(stem.eval(), x)
            want = _reference_stem(resnet, x, stages)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(_("Your stem should return a tensor, got {type}.").format(type=type(got).__name__))
        if got.ndim == 2:
            raise CheckFailed(
                _("With stages={stages} your stem returns {shape}: the ResNet's classification "
                  "logits. As tokens that is [B, 1, {classes}]: one token with no position, nothing to "
                  "attend over. Keep conv1, bn1, relu, maxpool and the stages up to "
                  "layer{stages}; leave out avgpool and fc.").format(stages=stages, shape=fmt_shape(got.shape),
                                                                      classes=got.shape[1]))
        if got.ndim == 4 and got.shape[-2:] == (1, 1) and want.shape[-1] > 1:
            raise CheckFailed(
                _("With stages={stages} your stem returns {shape}: the global average pool "
                  "squeezed the map to 1x1 (one token). Leave out avgpool: the tokens are the positions of "
                  "the feature map {expected}.").format(stages=stages, shape=fmt_shape(got.shape),
                                                        expected=fmt_shape(want.shape)))
        if got.shape != want.shape:
            for other in range(0, 5):
                if other != stages and got.shape == _reference_stem(resnet, x, other).shape:
                    where = _("the stem convolution") if other == 0 else f"layer{other}"
                    raise CheckFailed(
                        _("With stages={stages} your stem returns {shape}, the map after {where}; expected "
                          "{expected} (after layer{stages}). stages counts layer1..layer4.").format(
                            stages=stages, shape=fmt_shape(got.shape), where=where, expected=fmt_shape(want.shape)))
            raise CheckFailed(_("With stages={stages} expected a feature map {expected}, got {shape}.").format(
                stages=stages, expected=fmt_shape(want.shape), shape=fmt_shape(got.shape)))
        with torch.no_grad():
            wrong = {
                _("the ReLU after bn1 is missing."): _reference_stem(resnet, x, stages, relu=False),
                _("bn1 is missing (conv1 -> relu without the batch norm)."):
                    _reference_stem(resnet, x, stages, bn=False),
            }
        expect_close(got, want, _("The feature map after layer{stages}").format(stages=stages), wrong, atol=1e-4)
    return _("conv1 -> bn1 -> relu -> maxpool -> layer1..layerK: [2, 3, 32, 32] images give [2, 64, 8, 8] "
             "after layer1 (64 tokens each) and [2, 256, 2, 2] after layer3 (4 tokens each).")
