"""vit_lesson.hf: our ViT and Hugging Face's ViT are the same network, in both directions.

The reference is ``transformers`` itself: its own modules compute the outputs we compare with,
and its own ``save_pretrained``/``from_pretrained`` write and read the Hub file format.
"""

import sys
from dataclasses import replace

import pytest
import torch

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from vit_lesson.hf import config_from_hf, hf_from_vit, hf_to_ours, ours_to_hf, to_hf_config, vit_from_hf  # noqa: E402
from vit_lesson.model import ViT, ViTConfig  # noqa: E402

SMALL = ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=96, num_classes=7)


def hf_model(**overrides):
    """A randomly initialised Hugging Face ViT with its own defaults (layer_norm_eps=1e-12, exact GELU)."""
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2,
                                    num_attention_heads=3, intermediate_size=96, num_labels=7,
                                    attn_implementation="eager", **overrides)
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config).eval()


def images(batch=3, size=32):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def assert_same_outputs(ours, theirs, x):
    with torch.no_grad():
        a = ours(x, output_attentions=True)
        b = theirs(x, output_attentions=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    assert len(a.attentions) == len(b.attentions) == ours.config.num_hidden_layers
    for mine, hers in zip(a.attentions, b.attentions):
        assert mine.shape == hers.shape == (x.shape[0], ours.config.num_attention_heads, 17, 17)
        torch.testing.assert_close(mine, hers, atol=1e-5, rtol=0)


def test_hf_to_ours_same_logits_and_attention_maps():
    theirs = hf_model()
    ours = vit_from_hf(theirs)
    assert ours.config.layer_norm_eps == 1e-12 and not ours.training
    assert_same_outputs(ours, theirs, images())


def test_ours_to_hf_same_logits_and_attention_maps():
    torch.manual_seed(0)
    ours = ViT(SMALL).eval()
    for p in ours.parameters():  # not just the init: every parameter matters, biases and norms too
        p.data.add_(0.1 * torch.randn_like(p))
    theirs = hf_from_vit(ours)
    assert isinstance(theirs, transformers.ViTForImageClassification)
    assert_same_outputs(ours, theirs, images())


def test_qkv_is_query_key_value_stacked_in_that_order():
    theirs = hf_model()
    layer = theirs.vit.layers[1] if hasattr(theirs.vit, "layers") else theirs.vit.encoder.layer[1]
    attention = layer.attention  # transformers 5: q_proj, k_proj, v_proj; 4.x: attention.query, ...
    q, k, v = ((attention.q_proj, attention.k_proj, attention.v_proj) if hasattr(attention, "q_proj")
               else (attention.attention.query, attention.attention.key, attention.attention.value))
    qkv = hf_to_ours(theirs.state_dict())["blocks.1.attn.qkv.weight"]
    assert qkv.shape == (3 * 48, 48)
    assert torch.equal(qkv, torch.cat([q.weight, k.weight, v.weight]))


@pytest.mark.parametrize("layout", ["hub", "transformers5"])
@pytest.mark.parametrize("qkv_bias", [True, False])
def test_state_dict_round_trip_is_exact(layout, qkv_bias):
    torch.manual_seed(0)
    state = ViT(replace(SMALL, qkv_bias=qkv_bias)).state_dict()
    back = hf_to_ours(ours_to_hf(state, layout=layout))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_hub_files_written_by_us_load_with_from_pretrained(tmp_path):
    """Our 'hub' names are the Hub's: transformers' own loader reads our file and agrees."""
    torch.manual_seed(0)
    ours = ViT(SMALL).eval()
    to_hf_config(ours.config).save_pretrained(tmp_path)
    tensors = {k: v.contiguous() for k, v in ours_to_hf(ours.state_dict(), layout="hub").items()}
    safetensors_torch.save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    theirs = transformers.ViTForImageClassification.from_pretrained(tmp_path, attn_implementation="eager")
    assert_same_outputs(ours, theirs.eval(), images())


def test_hub_files_written_by_transformers_convert_to_ours(tmp_path):
    theirs = hf_model()
    theirs.save_pretrained(tmp_path)
    on_disk = safetensors_torch.load_file(tmp_path / "model.safetensors")
    ours = ViT(config_from_hf(theirs.config)).eval()
    ours.load_state_dict(hf_to_ours(on_disk))
    assert_same_outputs(ours, theirs, images())


def test_vitmodel_without_classifier_gives_the_class_token_features():
    torch.manual_seed(0)
    config = hf_model().config
    theirs = transformers.ViTModel(config).eval()  # with its pooler, which we drop
    ours = vit_from_hf(theirs)
    assert ours.config.num_classes == 0
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x).last_hidden_state[:, 0], atol=1e-5, rtol=0)


def test_config_round_trip():
    assert config_from_hf(to_hf_config(SMALL)) == SMALL
    hf_config = to_hf_config(SMALL)
    assert (hf_config.hidden_act, hf_config.num_labels, hf_config.layer_norm_eps) == ("gelu", 7, 1e-6)


def test_drop_path_is_reported_as_not_converted():
    with pytest.warns(UserWarning, match="stochastic depth"):
        to_hf_config(replace(SMALL, drop_path_rate=0.1))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="exact GELU"):
        config_from_hf(transformers.ViTConfig(hidden_act="gelu_new"))
    with pytest.raises(ValueError, match="square image_size"):
        config_from_hf(transformers.ViTConfig(image_size=[224, 160]))
    state = hf_model().state_dict()
    with pytest.raises(ValueError, match="no place in our ViT, first 'vit.extra'"):
        hf_to_ours({**state, "vit.extra": torch.zeros(1)})
    last = next(k for k in reversed(state) if k.startswith("vit.") and k.endswith(".bias"))
    del state[last]
    with pytest.raises(ValueError, match=f"'{last}' is missing"):
        hf_to_ours(state)
    with pytest.raises(ValueError, match="Unknown layout"):
        ours_to_hf(ViT(SMALL).state_dict(), layout="v4")
    with pytest.raises(ValueError, match="num_classes > 0"):
        hf_from_vit(ViT(SMALL, num_classes=0))


def test_missing_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install transformers"):
        to_hf_config(SMALL)
