"""Notebook 05's package code (vit_lesson.model, vit_lesson.flops) and its checks (5.1, 5.2)."""

import pytest
import torch
from torch import nn

from vit_lesson import checks
from vit_lesson.convert import create_timm_model
from vit_lesson.flops import measure_flops, vit_flops, vit_parameter_parts
from vit_lesson.model import ViT, ViTConfig, ViTOutput, count_parameters
from vit_lesson.registry import MODELS, get_config

EXPECTED = {"tiny": 5_717_416, "small": 22_050_664, "base": 86_567_656, "large": 304_326_632,
            "huge": 632_045_800, "micro": 142_026}


@pytest.mark.parametrize("name", [name for name, entry in MODELS.items() if entry.cls is ViT])
def test_preset_parameters_equal_timm_and_the_formula(name):
    """Built on the meta device, so Large and Huge cost no memory."""
    config = get_config(name)
    with torch.device("meta"):
        ours, theirs = ViT(config), create_timm_model(config)
    assert count_parameters(ours) == count_parameters(theirs) == sum(vit_parameter_parts(config).values())
    if name in EXPECTED:
        assert count_parameters(ours) == EXPECTED[name]


@pytest.mark.parametrize("name, registers", [("micro", 0), ("base", 0), ("micro", 4)])
def test_flop_formula_equals_flop_counter_for_ours_and_timm(name, registers):
    config = get_config(name, num_register_tokens=registers)
    with torch.device("meta"):
        ours, theirs = ViT(config), create_timm_model(config)
    assert measure_flops(ours, config.image_size) == measure_flops(theirs, config.image_size) == vit_flops(config)


def micro_model(**overrides):
    torch.manual_seed(0)
    return ViT(get_config("micro", **overrides)).eval()


def test_output_shapes_and_attentions():
    model, x = micro_model(), torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert model.forward_features(x).shape == (2, 65, 64)  # 8 x 8 patches + the class token
    out = model(x, output_attentions=True)
    assert isinstance(out, ViTOutput) and len(out.attentions) == 4
    for weights in out.attentions:
        assert weights.shape == (2, 4, 65, 65)  # [B, H, N + 1, N + 1]
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 65))
        assert (weights >= 0).all()
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)


def test_fast_and_readable_paths_agree():
    fast, readable = micro_model(), micro_model(fast_attention=False)
    readable.load_state_dict(fast.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), readable(x), atol=1e-5, rtol=1e-5)


def test_headless_model_returns_features():
    model = micro_model(num_classes=0)
    assert isinstance(model.head, nn.Identity) and model(torch.randn(1, 3, 32, 32)).shape == (1, 64)


def test_drop_path_grows_linearly_with_depth():
    with torch.device("meta"):
        model = ViT(get_config("base", drop_path_rate=0.22))
    rates = [block.drop_path1.drop_prob for block in model.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.22)
    assert rates == pytest.approx([0.02 * i for i in range(12)])
    assert all(b.drop_path1.drop_prob == b.drop_path2.drop_prob for b in model.blocks)


def test_heads_not_dividing_hidden_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Hidden size 100 is not divisible by the number of heads 8"):
        ViTConfig(hidden_size=100, num_attention_heads=8)


def test_image_size_not_multiple_of_patch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Image height 225 is not divisible by the patch size 16"):
        get_config("base", image_size=225)


def test_wrong_input_size_names_both_sizes():
    with pytest.raises(ValueError, match=r"built for 32x32 images .* got 64x64"):
        micro_model()(torch.randn(1, 3, 64, 64))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match=r"Unknown model 'gigantic'.*tiny"):
        get_config("gigantic")


def test_mismatched_checkpoint_names_the_first_key():
    small = micro_model().state_dict()
    wide = micro_model(hidden_size=32, num_attention_heads=4)
    with pytest.raises(ValueError, match=r"'cls_token' has shape \(1, 1, 64\) in the checkpoint but \(1, 1, 32\)"):
        wide.load_state_dict(small)
    deep = micro_model(num_hidden_layers=5)
    with pytest.raises(ValueError, match=r"missing \d+ key\(s\), first 'blocks\.4\.norm1\.weight'"):
        deep.load_state_dict(small)


# --- checks 5.1 and 5.2 --------------------------------------------------------------------------

def correct_count(config):
    D, M, L, K = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_classes
    N = (config.image_size // config.patch_size) ** 2
    patch = config.num_channels * config.patch_size ** 2 * D + D
    block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)
    return patch + D + (N + 1) * D + L * block + 2 * D + (D * K + K)


def count_without(**skip):
    def count(config):
        D, M, L, K = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_classes
        N = (config.image_size // config.patch_size) ** 2
        b = 0 if skip.get("biases") else 1
        n = 0 if skip.get("norms") else 1
        patch = config.num_channels * config.patch_size ** 2 * D + b * D
        block = n * 4 * D + (3 * D * D + b * 3 * D) + (D * D + b * D) + (D * M + b * M) + (M * D + b * D)
        cls = 0 if skip.get("cls") else D
        pos = 0 if skip.get("pos") else (N + 1) * D
        head = 0 if skip.get("head") else D * K + b * K
        return patch + cls + pos + L * block + n * 2 * D + head
    return count


def test_check_count_parameters():
    assert checks.check_count_parameters(correct_count)
    assert checks.check_count_parameters(lambda c: count_parameters(ViT(c)))
    for skip, words in [("biases", "biases are missing"), ("norms", "LayerNorms are missing"),
                        ("cls", "class token"), ("pos", "position embeddings are missing"),
                        ("head", "head is missing")]:
        result = checks.check_count_parameters(count_without(**{skip: True}))
        assert result.status == "fail" and words in result.message, (skip, result.message)
    result = checks.check_count_parameters(lambda c: correct_count(c) + 1)
    assert result.status == "fail" and "off by -1" in result.message and "patch_embed" in result.message


def test_check_count_parameters_placeholder():
    def placeholder(config):
        raise NotImplementedError("patch embedding + class token + ...")

    assert checks.check_count_parameters(placeholder).status == "todo"


def test_check_classify():
    assert checks.check_classify(lambda tokens, norm, head: head(norm(tokens)[:, 0]))
    assert checks.check_classify(lambda tokens, norm, head: head(norm(tokens[:, 0])))
    mistakes = {
        "last token": lambda t, n, h: h(n(t)[:, -1]),
        "mean over all tokens": lambda t, n, h: h(n(t).mean(1)),
        "mean over the patch tokens": lambda t, n, h: h(n(t[:, 1:]).mean(1)),
        "LayerNorm was skipped": lambda t, n, h: h(t[:, 0]),
        "head ran on every token": lambda t, n, h: h(n(t)),
    }
    for words, wrong in mistakes.items():
        result = checks.check_classify(wrong)
        assert result.status == "fail" and words in result.message, (words, result.message)

    def placeholder(tokens, norm, head):
        raise NotImplementedError("take the class token")

    assert checks.check_classify(placeholder).status == "todo"


def test_classify_check_gives_the_learner_copies():
    """A learner who rewrites the norm passed in cannot change the answer key (issue 15)."""
    def skip_norm_and_scribble(tokens, norm, head):
        with torch.no_grad():
            norm.weight.fill_(1.0), norm.bias.zero_()
        return head(tokens[:, 0])

    result = checks.check_classify(skip_norm_and_scribble)
    assert result.status == "fail", result.line


def test_count_parameters_accepts_a_numpy_integer():
    import numpy as np

    assert checks.check_count_parameters(lambda config: np.int64(count_parameters(ViT(config))))


def test_parameter_count_check_catches_hard_coded_channels():
    def three_channels(config):
        D, M, L, K, P = (config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                         config.num_classes, config.patch_size)
        N = (config.image_size // P) ** 2
        block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)
        return (3 * P * P * D + D) + D + (N + 1) * D + L * block + 2 * D + (D * K + K)

    assert checks.check_count_parameters(three_channels).status == "fail"


def test_classify_check_runs_two_sizes():
    calls = []

    def spy(tokens, norm, head):
        calls.append(tuple(tokens.shape))
        return head(norm(tokens)[:, 0])

    assert checks.check_classify(spy).status == "pass" and len(set(calls)) == 2
