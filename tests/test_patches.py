"""vit_lesson.patches and vit_lesson.images: patch embedding three ways, errors, preprocessing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch import nn

from vit_lesson.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    denormalize,
    imagenet_transform,
    load_photo,
    to_display,
)
from vit_lesson.patches import PatchEmbedding, patchify, unpatchify


@pytest.fixture(scope="module")
def photo_batch():
    """Two real photos, preprocessed as in the post: [2, 3, 224, 224]."""
    transform = imagenet_transform()
    return torch.stack([transform(load_photo(name)) for name in ("chelsea", "astronaut")])


def loop_patchify(images, p):
    """The definition, one patch at a time: patch i*w + j is the square at grid row i, column j."""
    _, _, h, w = images.shape
    return torch.stack([images[:, :, i:i + p, j:j + p].flatten(1)
                        for i in range(0, h, p) for j in range(0, w, p)], dim=1)


def test_patchify_matches_the_definition_and_unfold():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    torch.testing.assert_close(patches, loop_patchify(images, 4), rtol=0, atol=0)
    torch.testing.assert_close(patches, F.unfold(images, 4, stride=4).transpose(1, 2), rtol=0, atol=0)


@pytest.mark.parametrize("shape, p", [((2, 3, 8, 12), 4), ((1, 1, 28, 28), 7), ((1, 3, 224, 224), 16)])
def test_unpatchify_inverts_patchify(shape, p):
    images = torch.randn(*shape)
    torch.testing.assert_close(unpatchify(patchify(images, p), p, shape[2], shape[3]), images, rtol=0, atol=0)


def test_three_ways_agree_with_shared_weights(photo_batch):
    """Conv2d (kernel = stride = P), F.unfold + Linear, einops + Linear: the same numbers."""
    torch.manual_seed(0)
    embed = PatchEmbedding()  # Conv2d(3, 768, 16, stride 16)
    linear = nn.Linear(3 * 16 * 16, 768)
    with torch.no_grad():
        linear.weight.copy_(embed.proj.weight.flatten(1))  # [768, 3, 16, 16] -> [768, 768]
        linear.bias.copy_(embed.proj.bias)
        by_conv = embed(photo_batch)
        by_unfold = linear(F.unfold(photo_batch, kernel_size=16, stride=16).transpose(1, 2))
        by_einops = linear(rearrange(photo_batch, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=16, p2=16))
    assert by_conv.shape == by_unfold.shape == by_einops.shape == (2, 196, 768)
    torch.testing.assert_close(by_unfold, by_conv, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(by_einops, by_conv, atol=1e-4, rtol=1e-4)


def test_patch_embedding_matches_timm(photo_batch):
    """An independent reference: timm's PatchEmbed with our weights gives the same tokens."""
    timm_layers = pytest.importorskip("timm.layers")
    ours = PatchEmbedding()
    theirs = timm_layers.PatchEmbed(img_size=224, patch_size=16, in_chans=3, embed_dim=768)
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(photo_batch), theirs(photo_batch), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, shape, tokens", [
    ({}, (2, 3, 224, 224), (2, 196, 768)),
    ({"img_size": 32, "patch_size": 4, "in_chans": 1, "embed_dim": 64}, (5, 1, 32, 32), (5, 64, 64)),
    ({"img_size": (64, 96), "patch_size": 16, "embed_dim": 8}, (1, 3, 64, 96), (1, 24, 8)),
])
def test_patch_embedding_shapes(kwargs, shape, tokens):
    embed = PatchEmbedding(**kwargs)
    assert embed(torch.randn(*shape)).shape == tokens
    assert embed.num_patches == tokens[1]
    assert embed.grid_size == (shape[2] // embed.patch_size, shape[3] // embed.patch_size)


# --- errors name the numbers and the fix ----------------------------------------------------------

def test_image_size_not_divisible():
    with pytest.raises(ValueError, match=r"height 225 is not divisible by the patch size 16.*224 or 240"):
        PatchEmbedding()(torch.randn(1, 3, 225, 225))
    with pytest.raises(ValueError, match=r"width 230 is not divisible by the patch size 16.*224 or 240"):
        patchify(torch.randn(1, 3, 224, 230), 16)
    with pytest.raises(ValueError, match=r"225 is not divisible by the patch size 16"):
        PatchEmbedding(img_size=225)


def test_wrong_channels():
    embed = PatchEmbedding()
    with pytest.raises(ValueError, match=r"Expected 3 input channels, got 1.*grayscale.*expand\(-1, 3, -1, -1\)"):
        embed(torch.randn(2, 1, 224, 224))
    with pytest.raises(ValueError, match=r"Channels last\? Use x.permute\(0, 3, 1, 2\)"):
        embed(torch.randn(2, 224, 224, 3))


def test_not_a_batch():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\], got shape \(3, 224, 224\).*unsqueeze\(0\)"):
        PatchEmbedding()(torch.randn(3, 224, 224))
    with pytest.raises(ValueError, match=r"patchify expects a batch.*\(3, 32, 32\).*unsqueeze\(0\)"):
        patchify(torch.randn(3, 32, 32), 4)


def test_unpatchify_wrong_grid():
    with pytest.raises(ValueError, match=r"N = \(8/4\) \* \(8/4\) = 4.*got shape \(1, 6, 48\)"):
        unpatchify(torch.randn(1, 6, 48), 4, 8, 8)


# --- preprocessing on real photos ----------------------------------------------------------------

def test_imagenet_transform_matches_a_by_hand_version():
    """Resize(256) (shorter side) -> CenterCrop(224) -> [0, 1] -> (x - mean) / std, done with PIL and numpy."""
    photo = load_photo("chelsea")  # 451 x 300, landscape
    width, height = photo.size
    resized = photo.resize((int(width * 256 / height), 256), Image.BILINEAR)  # long side truncated, as torchvision does
    left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
    crop = np.asarray(resized, dtype=np.float32)[top:top + 224, left:left + 224] / 255
    by_hand = torch.from_numpy((crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).permute(2, 0, 1).float()

    x = imagenet_transform()(photo)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, by_hand, atol=1e-5, rtol=0)


def test_imagenet_transform_statistics():
    x = imagenet_transform()(load_photo("astronaut"))
    low = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    high = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert (x.amin(dim=(1, 2)) >= low - 1e-5).all() and (x.amax(dim=(1, 2)) <= high + 1e-5).all()
    # a natural photo ends up roughly centred with roughly unit spread per channel
    assert x.mean(dim=(1, 2)).abs().max() < 1.0
    assert ((x.std(dim=(1, 2)) > 0.5) & (x.std(dim=(1, 2)) < 1.6)).all()
    shown = to_display(denormalize(x))
    assert shown.shape == (224, 224, 3) and shown.min() >= 0 and shown.max() <= 1


def test_custom_sizes():
    assert imagenet_transform(image_size=32)(load_photo("coffee")).shape == (3, 32, 32)


def test_photos_are_bundled():
    for name in SAMPLE_PHOTOS:
        photo = load_photo(name)
        assert photo.mode == "RGB" and min(photo.size) >= 256
    with pytest.raises(ValueError, match=r"Unknown photo 'dog'.*chelsea"):
        load_photo("dog")


# --- issue 15: answers the checks must accept, and answers that must not change the key ----------------

def test_num_patches_accepts_a_numpy_integer():
    from vit_lesson import checks

    assert checks.check_num_patches(lambda size, patch: np.int64((size // patch) ** 2))


def test_patch_checks_give_the_learner_copies():
    """A learner who writes into the inputs (images, the conv) cannot change the answer key."""
    from vit_lesson import checks

    def patchify_and_scribble(images, patch_size):
        out = patchify(images, patch_size).clone()
        images.zero_()
        return out

    def embed_and_scribble(images, conv):
        out = conv(images).flatten(2).transpose(1, 2)
        with torch.no_grad():
            conv.weight.zero_()
        return out

    def wrong_linear_that_zeroes_the_conv(conv):
        with torch.no_grad():
            conv.weight.zero_(), conv.bias.zero_()
        return nn.Linear(conv.weight[0].numel(), conv.weight.shape[0])

    assert checks.check_patchify(patchify_and_scribble)
    assert checks.check_embed_patches(embed_and_scribble)
    assert checks.check_conv_to_linear(wrong_linear_that_zeroes_the_conv).status == "fail"


def test_a_nan_answer_is_named_not_a_crash():
    from vit_lesson import checks

    result = checks.check_patchify(lambda images, p: patchify(images, p) * float("nan"))
    assert result.status == "fail" and "NaN" in result.message and "could not check" not in result.message
