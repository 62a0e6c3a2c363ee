"""Same weights -> same outputs as timm, both directions; checkpoint errors; the pretrained path."""

import pytest
import timm
import torch

from vit_lesson.convert import (
    check_timm_compatible,
    create_timm_model,
    from_timm_state_dict,
    imagenet_labels,
    load_pretrained_timm,
    timm_from_vit,
    vit_from_timm,
)
from vit_lesson.images import imagenet_transform, load_photo
from vit_lesson.model import ViT, validate_state_dict
from vit_lesson.registry import get_config


def random_weights(model, seed):
    """Fill a (meta-device) model with random weights quickly: N(0, 0.02) for matrices and biases,
    1 + N(0, 0.1) for LayerNorm scales. Cheaper than timm's init, and nothing is left at zero."""
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale_like = "norm" in name and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=generator) * (0.1 if scale_like else 0.02) + scale_like)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    photo = imagenet_transform()(load_photo("chelsea"))
    return torch.stack([photo, torch.randn(3, 224, 224)])  # a real photo and noise, [2, 3, 224, 224]


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_timm_to_ours_same_logits(name, images):
    with torch.device("meta"):
        theirs = create_timm_model(get_config(name))
    theirs = random_weights(theirs, seed=0)
    ours = vit_from_timm(theirs)
    assert not ours.training and ours.config == get_config(name)
    with torch.no_grad():
        want, got = theirs(images), ours(images)
    assert (got - want).abs().max() < 1e-5, (got - want).abs().max()
    assert want.std() > 0.1  # the comparison is not between two near-constant outputs


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_ours_to_timm_same_logits(name, images):
    with torch.device("meta"):
        ours = ViT(get_config(name))
    ours = random_weights(ours, seed=1)
    theirs = timm_from_vit(ours)
    assert not theirs.training
    with torch.no_grad():
        want, got = ours(images), theirs(images)
    assert (got - want).abs().max() < 1e-5, (got - want).abs().max()


def test_round_trip_preserves_every_tensor():
    torch.manual_seed(0)
    ours = ViT(get_config("micro"))
    back = vit_from_timm(timm_from_vit(ours))
    for key, value in ours.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


def test_mismatched_checkpoint_error_names_the_first_key():
    tiny_weights = from_timm_state_dict(create_timm_model(get_config("micro")).state_dict())
    other = ViT(get_config("micro", intermediate_size=96))
    with pytest.raises(ValueError, match=r"'blocks\.0\.mlp\.fc1\.weight' has shape \(128, 64\) in the checkpoint "
                                         r"but \(96, 64\) in the model"):
        other.load_state_dict(tiny_weights)
    del tiny_weights["head.bias"]
    with pytest.raises(ValueError, match=r"missing 1 key\(s\), first 'head\.bias'"):
        ViT(get_config("micro")).load_state_dict(tiny_weights)
    with pytest.raises(ValueError, match=r"'blocks\.0\.mlp\.fc1\.weight' has shape \(96, 64\)"):
        validate_state_dict(create_timm_model(get_config("micro")), other.state_dict())  # ours -> timm


def test_incompatible_timm_variants_are_refused():
    clip_like = timm.create_model("vit_base_patch16_clip_224", pretrained=False)
    with pytest.raises(ValueError, match="norm_pre"):
        check_timm_compatible(clip_like)
    pooled = create_timm_model(get_config("micro"), global_pool="avg")
    with pytest.raises(ValueError, match="global_pool must be 'token'"):
        vit_from_timm(pooled)


def test_load_pretrained_path_offline(monkeypatch, images):
    """The Colab path, minus the download: timm.create_model(pretrained=True) is replaced by the
    same architecture with random weights; everything after it (conversion, labels) is real."""
    calls = []
    real_create = timm.create_model

    def fake_create(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_create)
    model = load_pretrained_timm("vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert calls == [("vit_tiny_patch16_224.augreg_in21k_ft_in1k", True)]
    assert isinstance(model, ViT) and not model.training and model.config == get_config("tiny")
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[281] == "tabby, tabby cat"
    with torch.no_grad():
        top = model(images[:1]).softmax(-1).topk(3)
    assert top.indices.shape == (1, 3) and all(isinstance(labels[i], str) for i in top.indices[0].tolist())


def test_load_pretrained_false_needs_no_network():
    model = load_pretrained_timm("vit_tiny_patch16_224", pretrained=False)
    assert model.config.hidden_size == 192


def test_registers_match_timm_both_ways():
    """Registers (Darcet et al. 2024) are timm's reg_token: same parameters, same logits, same maps' layout."""
    from vit_lesson.attention_maps import rollout_map
    from vit_lesson.factory import create_model

    torch.manual_seed(0)
    ours = create_model("shapes_registers").eval()
    theirs = create_timm_model(ours.config).eval()
    assert theirs.num_reg_tokens == 4 and ours.num_prefix_tokens == theirs.num_prefix_tokens == 5
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(theirs(x), ours(x), rtol=0, atol=1e-5)
    back = vit_from_timm(theirs)
    assert back.config == ours.config
    torch.testing.assert_close(back(x), ours(x), rtol=0, atol=0)
    attentions = ours(x, output_attentions=True).attentions
    assert attentions[0].shape == (3, 4, 69, 69)
    assert rollout_map(attentions, num_prefix_tokens=ours.num_prefix_tokens).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="num_prefix_tokens=model.num_prefix_tokens"):
        rollout_map(attentions)  # the 4 registers' columns left in: 68 is no square grid
