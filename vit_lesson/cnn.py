"""The CNN that notebook 08's teacher and notebook 09's hybrid share: a ResNet for small images;
and the convolutional stem of the digits recipe's ViT (:func:`conv_stem`).

torchvision's ResNet-18 (or -34, -50) with the stem that CIFAR papers use: the ImageNet stem (a
7x7 conv with stride 2, then a 3x3 max-pool: 4x smaller) would shrink a 16x16 digit to 4x4 before
the first residual stage. Built from torchvision's public classes (``ResNet``, ``BasicBlock``,
``Bottleneck``, ``conv1x1``), under torchvision's module names.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, conv1x1

__all__ = ["small_resnet", "resnet_stage", "conv_stem"]

LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


def resnet_stage(block, in_channels: int, channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One ResNet stage (``layerK``): ``blocks`` residual blocks, the first one changing the width
    (and halving the size when ``stride=2``) with a 1x1 shortcut, as torchvision builds them.
    ``[B, in_channels, S, S] -> [B, channels * block.expansion, S / stride, S / stride]``."""
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    layers = [block(in_channels, channels, stride, downsample)]
    layers += [block(out_channels, channels) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def small_resnet(num_classes: int = 10, in_chans: int = 3, width: int = 64, depth: int = 18) -> nn.Module:
    """torchvision's ResNet-18 (or -34, -50) adapted to small images, as in CIFAR papers.

    The stem is a 3x3 conv with stride 1 and no max-pool, so ``layer1`` sees the full image and
    ``layer2..4`` halve it (16 -> 8 -> 4 -> 2). ``width`` is the channel count of ``layer1`` (64
    in the original; the stages use ``width, 2w, 4w, 8w``): ``width=16`` has 1/16 of the compute,
    enough for digits on a CPU. ``[B, in_chans, S, S] -> [B, num_classes]``; module names are
    torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``), so
    :func:`vit_lesson.hybrid.resnet_stem` can slice it.
    """
    if depth not in LAYERS:
        raise ValueError(f"small_resnet builds ResNet-18, -34 or -50, got depth={depth}.")
    if width < 1:
        raise ValueError(f"width is layer1's channel count (64 in ResNet-18), got {width}.")
    block = Bottleneck if depth == 50 else BasicBlock
    model = ResNet(block, LAYERS[depth], num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.maxpool = nn.Identity()
    in_channels = width
    for i, blocks in enumerate(LAYERS[depth]):  # the stages again, at the chosen width
        stage = resnet_stage(block, in_channels, width * 2 ** i, blocks, stride=1 if i == 0 else 2)
        setattr(model, f"layer{i + 1}", stage)
        in_channels = width * 2 ** i * block.expansion
    model.fc = nn.Linear(8 * width * block.expansion, num_classes)
    for module in model.modules():  # torchvision's init, applied again to the rebuilt layers
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight), nn.init.zeros_(module.bias)
    return model


def conv_stem(in_chans: int = 1, widths=(32, 64)) -> nn.Sequential:
    """A convolutional stem (Xiao et al. 2021, "Early Convolutions Help Transformers See Better").

    3x3 convolutions with stride 2, each followed by BatchNorm and ReLU, as in the paper; each
    halves the image. ``[B, in_chans, S, S] -> [B, widths[-1], S / 2**len(widths), ...]``: the
    default turns a 16x16 digit into a 4x4 map of 64 channels, which
    :class:`~vit_lesson.hybrid.HybridViT`'s 1x1 projection (the paper's final 1x1 convolution)
    makes the same 16 tokens as a ViT's 4x4 patches. Convolutions keep PyTorch's default init.
    """
    if not widths or any(int(width) < 1 for width in widths):
        raise ValueError(f"widths are the channel counts of the stem's convolutions, e.g. (32, 64); "
                         f"got {widths!r}.")
    layers, channels = [], in_chans
    for width in map(int, widths):
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)
