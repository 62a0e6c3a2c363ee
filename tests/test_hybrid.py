"""Notebook 09: the CNN + ViT hybrid (ViT paper, Sec. 3.1) and the 9.1 check."""

import copy
from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from vit_lesson import checks
from vit_lesson.cnn import small_resnet
from vit_lesson.hybrid import HybridViT, feature_shape, resnet_stem
from vit_lesson.registry import get_config


def config(image_size=16, channels=1, **overrides):
    return get_config("micro", image_size=image_size, patch_size=1, num_channels=channels, hidden_size=32,
                      num_hidden_layers=2, intermediate_size=64, **overrides)


@pytest.mark.parametrize("stages, channels, size", [(0, 8, 16), (1, 8, 16), (2, 16, 8), (3, 32, 4)])
def test_resnet_stem_is_the_resnets_own_early_stages(stages, channels, size):
    resnet = small_resnet(10, 1, width=8).eval()
    stem = resnet_stem(resnet, stages)
    layers = [f"layer{i}" for i in range(1, stages + 1)]
    assert list(dict(stem.named_children())) == ["conv1", "bn1", "relu", "maxpool"] + layers
    assert stem.conv1 is resnet.conv1  # shared, not copied: pretrained weights come along
    x = torch.randn(2, 1, 16, 16)
    out = stem(x)
    assert out.shape == (2, channels, size, size)
    want = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    for i in range(1, stages + 1):
        want = getattr(resnet, f"layer{i}")(want)
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("stages, grid, dim", [(1, 16, 8), (2, 8, 16), (3, 4, 32)])
def test_hybrid_tokens_are_the_feature_map_positions(stages, grid, dim):
    torch.manual_seed(0)
    model = HybridViT(config(), resnet_stages=stages, resnet_width=8)
    x = torch.randn(2, 1, 16, 16)
    assert model.patch_embed.grid_size == (grid, grid) and model.patch_embed.in_chans == dim
    assert model.patch_embed.proj.kernel_size == (1, 1)
    assert model.pos_embed.shape == (1, grid * grid + 1, 32)
    assert model.patch_embed(x).shape == (2, grid * grid, 32)
    assert model.forward_features(x).shape == (2, grid * grid + 1, 32)
    assert model(x).shape == (2, 10)
    out = model(x, output_attentions=True)
    assert out.attentions[-1].shape == (2, 4, grid * grid + 1, grid * grid + 1)


def test_imagenet_stem_resnet50_gives_the_papers_token_grid():
    # ViT paper: with the ImageNet stem a 224 px image is 14x14 after stage 3 (stride 16), as ViT-B/16.
    backbone = resnet_stem(torchvision.models.resnet50(), 3)
    assert feature_shape(backbone, 224, 3) == (1024, 14, 14)
    model = HybridViT(config(64, 3), resnet="resnet50", resnet_stages=3, small_input=False)
    assert model.patch_embed.grid_size == (4, 4) and model.patch_embed.in_chans == 1024
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_parameter_names_are_timms_and_equal_timms_hybrid():
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = HybridViT(config(), resnet_stages=2, resnet_width=8).eval()
    names = set(model.state_dict())
    assert {"patch_embed.proj.weight", "patch_embed.backbone.conv1.weight",
            "patch_embed.backbone.layer2.1.conv2.weight", "cls_token", "pos_embed", "blocks.1.attn.qkv.weight",
            "norm.weight", "head.weight"} <= names
    embed = partial(HybridEmbed, backbone=copy.deepcopy(model.patch_embed.backbone))
    reference = VisionTransformer(img_size=16, patch_size=1, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                                  num_heads=4, mlp_ratio=2.0, embed_layer=embed).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match="stages must be 0..4"):
        resnet_stem(torchvision.models.resnet18(), 5)
    with pytest.raises(ValueError, match="has no conv1"):
        resnet_stem(nn.Linear(2, 2), 1)
    # The blog post's hybrid: the whole ResNet returns logits, not a feature map.
    with pytest.raises(ValueError, match=r"returns shape \[1, 1000\].*logits.*resnet_stem"):
        HybridViT(config(32, 3), backbone=torchvision.models.resnet18())
    # The ImageNet stem downsamples 32x after layer4: a 32 px image leaves a 1x1 map.
    with pytest.raises(ValueError, match="1x1 feature map"):
        HybridViT(config(32, 3), resnet_stages=4, small_input=False)
    model = HybridViT(config(), resnet_stages=2, resnet_width=8)
    with pytest.raises(ValueError, match="built for 16x16 images"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="small_input=False"):
        HybridViT(config(), resnet_weights="DEFAULT")
    with pytest.raises(ValueError, match="3-channel"):
        HybridViT(config(), resnet_weights="DEFAULT", small_input=False)
    with pytest.raises(ValueError, match="resnet18, resnet34 or resnet50"):
        HybridViT(config(), resnet="resnet101")
    with pytest.raises(ValueError, match="feature map is 12x12, not divisible by patch_size=8"):
        HybridViT(config(24), backbone=resnet_stem(small_resnet(10, 1, width=8), 2), patch_size=8)


def test_feature_probe_leaves_batchnorm_statistics_and_mode_alone():
    resnet = small_resnet(10, 1, width=8).train()
    before = resnet.bn1.running_mean.clone()
    feature_shape(resnet_stem(resnet, 1), 16, 1)
    assert resnet.training and torch.equal(resnet.bn1.running_mean, before)


# --- check 9.1 --------------------------------------------------------------------------------------

def test_check_9_1_passes_correct_answers():
    assert checks.check_resnet_stem(resnet_stem)
    by_children = lambda r, k: nn.Sequential(*list(r.children())[:4 + k])  # noqa: E731
    assert checks.check_resnet_stem(by_children)


@pytest.mark.parametrize("wrong, words", [
    (lambda r, k: r, "classification logits"),
    (lambda r, k: nn.Sequential(*list(r.children())[:-1]), "average pool"),
    (lambda r, k: resnet_stem(r, k + 1), "the map after layer"),
    (lambda r, k: nn.Sequential(r.conv1, r.bn1, r.maxpool, *[getattr(r, f"layer{i}") for i in range(1, k + 1)]),
     "ReLU"),
])
def test_check_9_1_names_each_mistake(wrong, words):
    result = checks.check_resnet_stem(wrong)
    assert not result and words in result.message


def test_check_9_1_placeholder():
    def placeholder(resnet, stages):
        raise NotImplementedError("Exercise not done yet")

    assert checks.check_resnet_stem(placeholder).status == "todo"



# --- check 9.1: BatchNorms that are not the identity, copies, more named mistakes ----------------------

def stem_of(names):
    return lambda r, k: nn.Sequential(*[getattr(r, n) for n in names]
                                      + [getattr(r, f"layer{i}") for i in range(1, k + 1)])


@pytest.mark.parametrize("wrong, words", [
    (stem_of(["conv1", "relu", "maxpool"]), "bn1 is missing"),   # passed while the check's BatchNorms were fresh
    (stem_of(["conv1", "maxpool"]), "bn1 and the ReLU are missing"),
    (stem_of(["conv1", "relu", "bn1", "maxpool"]), "ReLU comes before bn1"),
    (stem_of(["conv1", "bn1", "relu"]), "maxpool after relu is missing"),
    (lambda r, k: nn.Sequential(*list(r.children())[:-1], nn.Flatten()), "one flat vector per image"),
    (lambda r, k: resnet_stem(r, 1 if k == 1 else 3), "the map after layer3"),   # stages hard-coded for 1 and 3 only
])
def test_check_9_1_names_more_mistakes(wrong, words):
    result = checks.check_resnet_stem(wrong)
    assert not result and words in result.message, result.message


def test_check_9_1_bn1_missing_fires_on_the_checks_own_batchnorms():
    from vit_lesson.checks.hybrid import _reference_stem, _trained_looking

    resnet = _trained_looking(torchvision.models.resnet18())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(_reference_stem(resnet, x, 1), _reference_stem(resnet, x, 1, bn=False), atol=1e-2)


def test_check_9_1_nan_and_in_place_edits_of_the_resnet():
    nan = checks.check_resnet_stem(lambda r, k: nn.Sequential(resnet_stem(r, k), nn.Threshold(1e9, float("nan"))))
    assert not nan and "NaN" in nan.message

    def truncates_in_place(resnet, stages):  # a correct stem, but the learner deletes the rest of the ResNet
        stem = resnet_stem(resnet, stages)
        for i in range(stages + 1, 5):
            setattr(resnet, f"layer{i}", nn.Identity())
        resnet.avgpool, resnet.fc = nn.Identity(), nn.Identity()
        return stem

    assert checks.check_resnet_stem(truncates_in_place)

    def drops_bn1_in_place(resnet, stages):  # rewrites the ResNet so the answer key would lose bn1 too
        resnet.bn1 = nn.Identity()
        return resnet_stem(resnet, stages)

    result = checks.check_resnet_stem(drops_bn1_in_place)
    assert not result and "bn1 is missing" in result.message

    def edits_the_images(resnet, stages):  # writes into the images it is given: the answer key keeps its own
        stem = resnet_stem(resnet, stages)

        class Clobber(nn.Module):
            def forward(self, x):
                out = stem(x)
                x.zero_()
                return out

        return Clobber()

    assert checks.check_resnet_stem(edits_the_images)


def test_the_conv_stem_makes_the_same_16_tokens_as_4x4_patches():
    """The digits recipe's ViT (Xiao et al. 2021): 3x3 convs at stride 2, then the 1x1 projection."""
    from vit_lesson import create_model
    from vit_lesson.cnn import conv_stem
    from vit_lesson.model import count_parameters

    stem = conv_stem(1, (32, 64))
    assert [type(m).__name__ for m in stem] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
    assert [m.stride for m in stem if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    assert stem(torch.zeros(2, 1, 16, 16)).shape == (2, 64, 4, 4)
    model = create_model("digits_conv_stem")
    assert isinstance(model, HybridViT)
    assert model.patch_embed.num_patches == 16 == create_model("digits").patch_embed.num_patches
    # 9*32 + 2*32 (conv, BN) + 9*32*64 + 2*64 = 18,912 for the stem, 64*64 + 64 for the projection;
    # the rest is the digits ViT's transformer, class token, 17 positions and head.
    assert count_parameters(model.patch_embed.backbone) == 18_912
    patchify = 4 * 4 * 64 + 64  # the digits ViT's 4x4 patch projection, which the stem and projection replace
    assert count_parameters(model) == count_parameters(create_model("digits")) - patchify + 18_912 + 64 * 64 + 64
    assert count_parameters(model) == 158_890
    with pytest.raises(ValueError, match="resnet=None for the convolutional stem"):
        create_model("digits_conv_stem", resnet="resnet18")
    with pytest.raises(ValueError, match="channel counts"):
        conv_stem(1, ())
