"""One factory (vit_lesson.registry.create_model), its pretrained sources and timm's model hooks."""

from dataclasses import asdict

import pytest
import torch

import vit_lesson
from vit_lesson import create_model, list_models
from vit_lesson.convert import create_timm_model, timm_from_vit
from vit_lesson.distill import DistilledViT
from vit_lesson.hybrid import HybridConfig, HybridViT
from vit_lesson.model import ViT, count_parameters
from vit_lesson.registry import MODELS, ModelEntry, get_config, model_from_config

SMALL = [name for name in list_models() if name not in ("tiny", "small", "base", "large", "huge")]


def _batch(model, batch=2):
    c = model.config
    return torch.randn(batch, c.num_channels, c.image_size, c.image_size)


def _class_path(model):
    return f"{type(model).__module__}.{type(model).__qualname__}"


@pytest.mark.parametrize("name", SMALL)
def test_every_small_model_builds_runs_and_is_rebuilt_from_its_config(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = _batch(model)
    logits = model(x)
    assert logits.shape == (2, model.config.num_classes)
    out = model(x, output_attentions=True)
    tokens = model.num_prefix_tokens + model.patch_embed.num_patches
    assert out.attentions[0].shape == (2, model.config.num_attention_heads, tokens, tokens)
    again = model_from_config(_class_path(model), asdict(model.config))
    assert type(again) is type(model) and again.config == model.config
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.eval()(x), logits)


def test_the_families_and_their_classes():
    assert {name: type(create_model(name)).__name__ for name in ("digits", "digits_distilled", "digits_hybrid")} == {
        "digits": "ViT", "digits_distilled": "DistilledViT", "digits_hybrid": "HybridViT"}
    assert count_parameters(create_model("digits_distilled")) == 137_684  # notebook 08's mirror
    with torch.device("meta"):
        assert count_parameters(create_model("base")) == 86_567_656  # ViT-B/16, as timm
        assert count_parameters(create_model("vit_base_patch16_224")) == 86_567_656  # timm's name


def test_overrides_are_config_fields_and_the_top_level_exports():
    model = create_model("tiny", num_classes=10, image_size=32, patch_size=4)
    assert model.head.out_features == 10 and model.patch_embed.num_patches == 64
    assert get_config("digits", num_hidden_layers=2).num_hidden_layers == 2
    assert vit_lesson.create_model is create_model and vit_lesson.ViT is ViT
    with pytest.raises(ValueError, match=r"Unknown model 'vit_gigantic'.*tiny, small"):
        create_model("vit_gigantic")
    with pytest.raises(TypeError):
        create_model("digits", not_a_field=1)


def test_a_hand_made_backbone_is_refused_by_name_when_rebuilding():
    from vit_lesson.cnn import small_resnet
    from vit_lesson.hybrid import resnet_stem

    config = get_config("digits_hybrid")
    model = HybridViT(config, backbone=resnet_stem(small_resnet(10, 1, width=8), 2))
    assert isinstance(model.config, HybridConfig) and model.config.resnet is None
    with pytest.raises(ValueError, match="hand-made backbone"):
        model_from_config(_class_path(model), asdict(model.config))
    with pytest.raises(ValueError, match="cannot be rebuilt from the file alone"):
        model_from_config("torchvision.models.resnet.ResNet", {})


def test_timm_hooks_equal_timms():
    torch.manual_seed(0)
    model = create_model("micro").eval()
    reference = timm_from_vit(model).eval()
    x = _batch(model)
    tokens = model.forward_features(x)
    torch.testing.assert_close(tokens, reference.forward_features(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.forward_head(tokens), reference.forward_head(tokens), atol=1e-5, rtol=1e-5)
    pooled = model.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(pooled, reference.forward_head(tokens, pre_logits=True))
    assert model.no_weight_decay() == {"pos_embed", "cls_token"} <= reference.no_weight_decay()
    assert create_model("digits_distilled").no_weight_decay() == {"pos_embed", "cls_token", "dist_token"}
    model.reset_classifier(3)
    reference.reset_classifier(3)
    assert model(x).shape == reference(x).shape == (2, 3) and model.config.num_classes == 3


def test_the_distilled_student_only_adds_its_token():
    torch.manual_seed(0)
    student = create_model("digits_distilled").eval()
    x = _batch(student)
    assert student.prefix_tokens().shape == (1, 2, 64) and student.pos_embed.shape == (1, 18, 64)
    z0 = student.embed(x)
    torch.testing.assert_close(z0[:, 1], (student.dist_token[0, 0] + student.pos_embed[0, 1]).expand(2, -1))
    cls_logits, dist_logits = student.forward_heads(x)
    torch.testing.assert_close(student(x), (cls_logits + dist_logits) / 2)


def test_pretrained_timm_uses_timms_weights_through_a_local_stand_in(monkeypatch):
    import timm

    torch.manual_seed(0)
    stand_in = create_timm_model(get_config("micro")).eval()  # as if downloaded
    asked = []

    def create(name, pretrained=False):
        asked.append((name, pretrained))
        return stand_in

    monkeypatch.setattr(timm, "create_model", create)
    monkeypatch.setitem(MODELS, "micro", ModelEntry(ViT, get_config("micro"), "test", {"timm": "stand-in"}))
    model = create_model("micro", pretrained="timm")
    assert asked == [("stand-in", True)] and not model.training
    x = _batch(model)
    torch.testing.assert_close(model(x), stand_in(x), atol=1e-5, rtol=1e-5)
    create_model("micro", pretrained="timm:other.tag")
    assert asked[-1] == ("other.tag", True)
    assert create_model("micro", pretrained="timm", num_classes=3)(x).shape == (2, 3)  # a new head


def test_pretrained_sources_that_do_not_fit_get_one_line():
    with pytest.raises(ValueError, match=r"no 'shipped' weights \(sources it has: timm\)"):
        create_model("tiny", pretrained="shipped")
    with pytest.raises(ValueError, match="not a source of weights"):
        create_model("digits", pretrained="imagenet")
    with pytest.raises(ValueError, match="only num_classes can change.*image_size"):
        create_model("base", pretrained="timm", image_size=384)


def test_pretrained_shipped_and_a_checkpoint_path(tmp_path):
    from vit_lesson.checkpoint import save_checkpoint
    from vit_lesson.pretrained import load_shapes_model

    shipped, checkpoint = load_shapes_model()
    model = create_model("shapes", pretrained="shipped")
    x = _batch(model)
    torch.testing.assert_close(model(x), shipped(x))
    torch.manual_seed(0)
    digits = create_model("digits_distilled")
    path = save_checkpoint(tmp_path / "student.pt", digits)
    again = create_model("digits_distilled", pretrained=str(path))
    for name, value in digits.state_dict().items():
        assert torch.equal(again.state_dict()[name], value)
    with pytest.raises(ValueError, match="does not fit this model"):
        create_model("digits", pretrained=str(path))
    assert isinstance(again, DistilledViT)


def test_the_shipped_shapes_model_is_trained_by_the_package(tmp_path, monkeypatch):
    """python -m vit_lesson.pretrained: RECIPES["shapes"] on SHAPES_DATA (here shrunk to one quick epoch)."""
    from vit_lesson import pretrained
    from vit_lesson.checkpoint import load_model
    from vit_lesson.recipes import RECIPES, Recipe

    shipped = RECIPES["shapes"]
    monkeypatch.setitem(RECIPES, "shapes", Recipe(shipped.model, shipped.image_size, shipped.augment,
                                                  dict(shipped.train, epochs=1, progress=False), train_size=64))
    monkeypatch.setitem(pretrained.SHAPES_DATA, "test_size", 32)
    path = pretrained.train_shapes_model(tmp_path / "shapes.pt")
    model, checkpoint = load_model(path)
    assert checkpoint["recipe"]["train_size"] == 64 and checkpoint["train_config"]["epochs"] == 1
    assert model.config == create_model("shapes").config and checkpoint["classes"][0] == "circle"
