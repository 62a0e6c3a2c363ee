"""Exercise checks for notebook 09, the hybrid (see vit_lesson.checks.core for the framework)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..i18n import _
from .core import CheckFailed, call, exercise, expect_close, fmt_shape

__all__ = ["check_resnet_stem"]


def _reference_stem(resnet: nn.Module, x: torch.Tensor, stages: int, relu=True, maxpool=True, bn=True,
                    relu_first=False):
    x = resnet.conv1(x)
    if relu_first:
        x = resnet.bn1(resnet.relu(x))
    else:
        x = resnet.bn1(x) if bn else x
        x = resnet.relu(x) if relu else x
    x = resnet.maxpool(x) if maxpool else x
    for i in range(1, stages + 1):
        x = getattr(resnet, f"layer{i}")(x)
    return x


def _trained_looking(resnet: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the running statistics and affine parameters a trained network has.

    A fresh BatchNorm in eval mode (mean 0, variance 1, gain 1, shift 0) is the identity, so a stem
    without bn1 would give the same numbers and pass; with these it cannot.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in resnet.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.25)
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return resnet.eval()


HINTS_9_1 = (
    "keep the ResNet's own modules, in their order, up to the last stage you want, and leave out the pooling "
    "and the classifier at the end.",
    "The modules are attributes of the ResNet named conv1, bn1, relu, maxpool, layer1, layer2, ... (getattr "
    "fetches one by its name). Chain the ones you keep into one module with nn.Sequential; the stage count "
    "says where to stop.",
    "names = [\"conv1\", \"bn1\", \"relu\", \"maxpool\"] + [f\"layer{i}\" for i in range(1, stages + 1)]\n"
    "return nn.Sequential(*[getattr(resnet, name) for name in names])",
)


#: (stages, input shape) 9.1 tries; the first two are the ones in the pass message. The last
#: changes the batch, the image size and its aspect, and asks for the other stage counts.
_RUNS = ((1, (2, 3, 32, 32)), (3, (2, 3, 32, 32)), (2, (3, 3, 64, 48)), (4, (3, 3, 64, 48)))


@exercise("9.1", "resnet_stem", hints=HINTS_9_1)
def check_resnet_stem(resnet_stem):
    """``resnet_stem(resnet, stages) -> nn.Module`` mapping ``[B, 3, H, W]`` to the feature map after
    ``layer{stages}``."""
    import torchvision

    # The post's kind of backbone, 1000 ImageNet classes, with BatchNorms that are not the identity.
    resnet = _trained_looking(torchvision.models.resnet18())
    inputs = {}
    for stages, shape in _RUNS:
        x = inputs.setdefault(shape, torch.randn(*shape))
        _check_one_stem(resnet_stem, resnet, x, stages)
    return _("conv1 -> bn1 -> relu -> maxpool -> layer1..layerK: [2, 3, 32, 32] images give [2, 64, 8, 8] "
             "after layer1 (64 tokens each) and [2, 256, 2, 2] after layer3 (4 tokens each).")


def _check_one_stem(resnet_stem, resnet, x, stages):
    # The answer key, from the check's own ResNet, before the learner's code runs; the learner gets a
    # copy of the ResNet and of the images, so truncating or editing them in place changes nothing here.
    with torch.no_grad():
        want = _reference_stem(resnet, x, stages)
        other_shapes = {other: _reference_stem(resnet, x, other).shape for other in range(0, 5) if other != stages}
        no_maxpool_shape = _reference_stem(resnet, x, stages, maxpool=False).shape
        wrong = {
            _("the ReLU after bn1 is missing."): _reference_stem(resnet, x, stages, relu=False),
            _("bn1 is missing (conv1 -> relu without the batch norm)."):
                _reference_stem(resnet, x, stages, bn=False),
            _("bn1 and the ReLU are missing (conv1 -> maxpool): keep the ResNet's modules in their order, "
              "conv1, bn1, relu, maxpool."): _reference_stem(resnet, x, stages, bn=False, relu=False),
            _("the ReLU comes before bn1; the ResNet's order is conv1 -> bn1 -> relu -> maxpool."):
                _reference_stem(resnet, x, stages, relu_first=True),
        }
    classes = resnet.fc.out_features
    stem = call(resnet_stem, copy.deepcopy(resnet), stages)
    if not isinstance(stem, nn.Module):
        raise CheckFailed(_("resnet_stem should return an nn.Module (e.g. nn.Sequential), got "
                            "{type}.").format(type=type(stem).__name__))
    with torch.no_grad():
        got = call(stem.eval(), x.clone())
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(_("Your stem should return a tensor, got {type}.").format(type=type(got).__name__))
    if got.ndim == 2 and got.shape[1] == classes:
        raise CheckFailed(
            _("With stages={stages} your stem returns {shape}: the ResNet's classification "
              "logits. As tokens that is [B, 1, {classes}]: one token with no position, nothing to "
              "attend over. Keep conv1, bn1, relu, maxpool and the stages up to "
              "layer{stages}; leave out avgpool and fc.").format(stages=stages, shape=fmt_shape(got.shape),
                                                                  classes=got.shape[1]))
    if got.ndim == 2:
        raise CheckFailed(
            _("With stages={stages} your stem returns {shape}, one flat vector per image (pooled or flattened): "
              "the tokens are the positions of the feature map {expected}, so return the 4-D map and leave out "
              "avgpool, flatten and fc.").format(stages=stages, shape=fmt_shape(got.shape),
                                                 expected=fmt_shape(want.shape)))
    if got.ndim == 4 and got.shape[-2:] == (1, 1) and want.shape[-1] > 1:
        raise CheckFailed(
            _("With stages={stages} your stem returns {shape}: the global average pool "
              "squeezed the map to 1x1 (one token). Leave out avgpool: the tokens are the positions of "
              "the feature map {expected}.").format(stages=stages, shape=fmt_shape(got.shape),
                                                    expected=fmt_shape(want.shape)))
    if got.shape != want.shape:
        if got.shape == no_maxpool_shape:
            raise CheckFailed(
                _("With stages={stages} your stem returns {shape}, a larger map than the expected {expected}: "
                  "the maxpool after relu is missing.").format(stages=stages, shape=fmt_shape(got.shape),
                                                               expected=fmt_shape(want.shape)))
        for other, shape in other_shapes.items():
            if got.shape == shape:
                where = _("the stem convolution") if other == 0 else f"layer{other}"
                raise CheckFailed(
                    _("With stages={stages} your stem returns {shape}, the map after {where}; expected "
                      "{expected} (after layer{stages}). stages counts layer1..layer4.").format(
                        stages=stages, shape=fmt_shape(got.shape), where=where, expected=fmt_shape(want.shape)))
        raise CheckFailed(_("With stages={stages} expected a feature map {expected}, got {shape}.").format(
            stages=stages, expected=fmt_shape(want.shape), shape=fmt_shape(got.shape)))
    expect_close(got, want, _("The feature map after layer{stages}").format(stages=stages), wrong, atol=1e-4)
