"""What a learner of notebook 01 meets: checks that explain mistakes.

That the learner version runs to the end and shows ⏳ with each hint is proved for every notebook,
01 included, by ``tests/test_colab_isolation.py`` (one kernel run per learner version).
"""

from __future__ import annotations

import re

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, output_text
from einops import rearrange
from torch import nn

from vit_lesson import checks
from vit_lesson.checks.core import FAIL, PASS, TODO
from vit_lesson.classroom import BEGIN, strip_solutions
from vit_lesson.patches import patchify

SOLUTION = ROOT / "notebooks" / "01_patches.ipynb"


def exercises(path):
    """``{exercise id: hint}`` from the ``# Exercise N.M`` and ``# Hint:`` lines of a solution notebook."""
    found = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            number = re.search(r"# Exercise (\d+\.\d+)", cell.source).group(1)
            found[number] = re.search(rf"# Hint: (.+)\n\s*{re.escape(BEGIN)}", cell.source).group(1).strip()
    return found


def test_solution_notebook_stores_every_check_passing():
    found = exercises(SOLUTION)
    assert sorted(found) == ["1.1", "1.2", "1.3"]
    text = output_text(nbformat.read(SOLUTION, as_version=4))
    for number in found:
        last = re.findall(rf"^(\S+) Exercise {re.escape(number)} \(", text, re.MULTILINE)[-1]
        assert last == "✅", f"the last stored check of Exercise {number} is {last}, not ✅"
    assert "✅ Mirror: PatchEmbedding = vit_lesson.patches.PatchEmbedding" in text


# --- the checks, fed wrong answers ----------------------------------------------------------------

def placeholder(*args, **kwargs):
    raise NotImplementedError("Exercise not done yet: replace this line with your code. Hint: try permute.")


def einops_patchify(images, p, pattern="b c (h p1) (w p2) -> b (h w) (c p1 p2)"):
    return rearrange(images, pattern, p1=p, p2=p)


def reshape_patchify(images, p):
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)


@pytest.mark.parametrize("patchify_fn", [patchify, reshape_patchify, einops_patchify,
                                         lambda x, p: F.unfold(x, p, stride=p).transpose(1, 2)],
                         ids=["package", "reshape-permute", "einops", "unfold-transpose"])
def test_patchify_check_passes_correct_answers(patchify_fn, capsys):
    result = checks.check_patchify(patchify_fn)
    assert result.status == PASS and "[1, 3, 224, 224] -> [1, 196, 768]" in result.message
    assert capsys.readouterr().out.strip() == result.line
    assert result.line.startswith("✅ Exercise 1.1 (patchify) passed")


def test_patchify_check_accepts_pixel_first_with_a_note():
    result = checks.check_patchify(lambda x, p: einops_patchify(x, p, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"))
    assert result.status == PASS and "pixel-first" in result.message and "(c p1 p2)" in result.message


def _b(x):
    return x.shape[0]


PATCHIFY_MISTAKES = {
    "unfold without transpose": (lambda x, p: F.unfold(x, p, stride=p), ["[B, C*P*P, N]", "transpose(1, 2)"]),
    "unfold reshaped instead of transposed": (
        lambda x, p: F.unfold(x, p, stride=p).reshape(_b(x), -1, x.shape[1] * p * p),
        ["reshape/view", ".transpose(1, 2)"]),
    "view without permute": (
        lambda x, p: x.view(_b(x), -1, x.shape[1] * p * p), ["scrambled", "P x P squares", "the axes have to move"]),
    "channel mixed into patches": (
        lambda x, p: x.unfold(2, p, p).unfold(3, p, p).reshape(_b(x), -1, x.shape[1] * p * p),
        ["channel axis", "[B, h, w, C, P, P]"]),
    "column-major patch order": (
        lambda x, p: einops_patchify(x, p, "b c (h p1) (w p2) -> b (w h) (c p1 p2)"),
        ["column-major", "(h w), not (w h)"]),
    "transposed patches": (
        lambda x, p: einops_patchify(x, p, "b c (h p1) (w p2) -> b (h w) (c p2 p1)"), ["transposed", "p2 before p1"]),
    "grid not flattened": (
        lambda x, p: einops_patchify(x, p, "b c (h p1) (w p2) -> b h w (c p1 p2)"), ["still a 2 x 3 grid"]),
    "square-image count": (
        lambda x, p: einops_patchify(x[..., :x.shape[2]], p),
        ["wrong number of patches", "= 6, got 4", "H // P and W // P separately"]),
    "hard-coded patch size": (lambda x, p: einops_patchify(x, 4), ["hard-coded", "[1, 3136, 48]"]),
    "crashes": (lambda x, p: x.reshape(-1, 5), ["your code raised RuntimeError"]),
}


@pytest.mark.parametrize("mistake", PATCHIFY_MISTAKES)
def test_patchify_check_explains_mistakes(mistake):
    wrong, words = PATCHIFY_MISTAKES[mistake]
    result = checks.check_patchify(wrong)
    assert result.status == FAIL and result.line.startswith("❌ Exercise 1.1 (patchify): ")
    for word in words:
        assert word in result.message, f"{mistake}: {word!r} not in {result.message!r}"


@pytest.mark.parametrize("check", [checks.check_num_patches, checks.check_patchify,
                                   checks.check_embed_patches, checks.check_conv_to_linear])
def test_placeholder_is_todo_with_its_hint(check):
    result = check(placeholder)
    assert result.status == TODO and not result
    assert result.line.startswith(f"⏳ Exercise {check.exercise_id} (") and "Hint: try permute." in result.line


EMBED_MISTAKES = {
    "no transpose": (lambda x, conv: conv(x).flatten(2), ["[B, D, N] = [2, 8, 6]", "did not transpose"]),
    "no flatten": (lambda x, conv: conv(x), ["feature map [B, D, h, w]", ".flatten(2)"]),
    "flatten(1)": (lambda x, conv: conv(x).flatten(1), ["flatten(1) merged D", "flatten(2)"]),
    "reshape instead of transpose": (
        lambda x, conv: conv(x).flatten(2).reshape(2, 6, 8), ["scrambled", ".transpose(1, 2)"]),
    "column-major": (lambda x, conv: conv(x).transpose(2, 3).flatten(2).transpose(1, 2), ["column-major"]),
    "a new conv": (
        lambda x, conv: nn.Conv2d(3, 8, 4, 4)(x).flatten(2).transpose(1, 2), ["wrong values", "`conv` passed in"]),
}


@pytest.mark.parametrize("mistake", EMBED_MISTAKES)
def test_embed_patches_check_explains_mistakes(mistake):
    wrong, words = EMBED_MISTAKES[mistake]
    result = checks.check_embed_patches(wrong)
    assert result.status == FAIL
    for word in words:
        assert word in result.message, f"{mistake}: {word!r} not in {result.message!r}"


def test_embed_patches_check_passes_conv_and_linear_answers():
    assert checks.check_embed_patches(lambda x, conv: conv(x).flatten(2).transpose(1, 2))
    assert checks.check_embed_patches(lambda x, conv: conv(x).permute(0, 2, 3, 1).flatten(1, 2))
    assert checks.check_embed_patches(lambda x, conv: F.linear(patchify(x, conv.kernel_size[0]), conv.weight.flatten(1),
                                                               conv.bias))


def linear_from(weight, bias=None):
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().clone())
    return linear


LINEAR_MISTAKES = {
    "weight transposed": (lambda conv: linear_from(conv.weight.flatten(1).T), ["[in, out]", "[8, 48]"]),
    "no bias": (lambda conv: linear_from(conv.weight.flatten(1)), ["bias is missing"]),
    "pixel-first kernel": (
        lambda conv: linear_from(conv.weight.permute(0, 2, 3, 1).flatten(1), conv.bias), ["pixel-first"]),
    "transposed kernel": (
        lambda conv: linear_from(conv.weight.transpose(2, 3).flatten(1), conv.bias), ["kernel is transposed"]),
    "weights not copied": (lambda conv: nn.Linear(48, 8), ["wrong values", "Copy the conv's numbers"]),
    "returns the conv": (lambda conv: conv, ["should return an nn.Linear, got Conv2d"]),
    "in-place copy with grad": (
        lambda conv: nn.Linear(48, 8).weight.copy_(conv.weight.flatten(1)), ["your code raised RuntimeError"]),
}


@pytest.mark.parametrize("mistake", LINEAR_MISTAKES)
def test_conv_to_linear_check_explains_mistakes(mistake):
    wrong, words = LINEAR_MISTAKES[mistake]
    result = checks.check_conv_to_linear(wrong)
    assert result.status == FAIL
    for word in words:
        assert word in result.message, f"{mistake}: {word!r} not in {result.message!r}"


def test_conv_to_linear_check_passes():
    assert checks.check_conv_to_linear(lambda conv: linear_from(conv.weight.reshape(conv.out_channels, -1), conv.bias))


@pytest.mark.parametrize("answer, words", [
    (lambda s, p: (s // p) ** 2, None),
    (lambda s, p: torch.tensor((s // p) ** 2), None),
    (lambda s, p: s // p, ["along one side", "along one side", "rows"]),
    (lambda s, p: s * s // p, ["P² = 256 pixels"]),
    (lambda s, p: "196", ["should return a number, got str"]),
])
def test_num_patches_check(answer, words):
    result = checks.check_num_patches(answer)
    assert result.status == (PASS if words is None else FAIL)
    for word in words or ():
        assert word in result.message


def three_channels(x, p):
    b, c, h, w = x.shape
    return x.reshape(b, 3, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, 3 * p * p)


@pytest.mark.parametrize("check, wrong, words", [
    (checks.check_patchify, three_channels, ["[3, 1, 6, 10] with patch 2", "hard-coded", "1 channel here, not 3"]),
    (checks.check_patchify, lambda x, p: patchify(x, p) if x.shape[1] == 3 else patchify(x, p)[:, :, :1],
     ["[3, 1, 6, 10] with patch 2 gave [3, 15, 1], not [3, 15, 4]", "hard-coded"]),
    (checks.check_embed_patches, lambda x, conv: conv(x).flatten(2).transpose(1, 2).reshape(x.shape[0], -1, 8),
     ["Conv2d(1, 5, 2)", "hard-coded"]),
    (checks.check_embed_patches, lambda x, conv: conv(x).reshape(x.shape[0], 8, -1).transpose(1, 2),
     ["Conv2d(1, 5, 2)", "hard-coded", "1 channel here, not 3"]),
    (checks.check_conv_to_linear, lambda conv: linear_from(conv.weight.reshape(8, 48), conv.bias),
     ["Conv2d(1, 5, 2)", "hard-coded", "1 channel here, not 3"]),
    (checks.check_conv_to_linear, lambda conv: linear_from(conv.weight.reshape(conv.out_channels, 3, -1).flatten(1)
                                                           if conv.in_channels == 3 else conv.weight[:, :1].flatten(1),
                                                           conv.bias),
     ["Conv2d(2, 7, 3)", "weight [D, C*P*P] = [7, 18]", "got [7, 9]", "hard-coded"]),
])
def test_patch_checks_vary_channels_patch_and_d(check, wrong, words):
    result = check(wrong)
    assert result.status == FAIL
    for word in words:
        assert word in result.message, f"{word!r} not in {result.message!r}"


def test_patch_checks_pass_every_correct_variant_on_every_size():
    assert checks.check_patchify(lambda x, p: F.unfold(x, p, stride=p).transpose(1, 2))
    assert checks.check_patchify(lambda x, p: einops_patchify(x, p, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"))
    assert checks.check_embed_patches(lambda x, conv: conv(x).flatten(2).transpose(1, 2))
    assert checks.check_conv_to_linear(lambda conv: linear_from(conv.weight.flatten(1), conv.bias))


# --- the learner version of a cell ------------------------------------------------------------------

def test_strip_solutions_keeps_indentation_and_the_hint():
    source = "\n".join([
        "import torch",
        "",
        "class Tokens(torch.nn.Module):",
        "    def forward(self, x):",
        "        # Hint: flatten(2), then transpose(1, 2).",
        "        ### BEGIN SOLUTION",
        "        x = self.proj(x)",
        "        return x.flatten(2).transpose(1, 2)",
        "        ### END SOLUTION",
        "",
        "def f(x):",
        "    ### BEGIN SOLUTION",
        "    return x",
        "    ### END SOLUTION",
        "",
        "print('after')",
    ])
    learner = strip_solutions(source)
    assert "flatten(2).transpose" not in learner.split("Hint")[-1] and "return x\n" not in learner
    assert ("        # YOUR CODE HERE\n        raise NotImplementedError('Exercise not done yet: replace this line "
            "with your code. Hint: flatten(2), then transpose(1, 2).')\n") in learner
    assert ("    raise NotImplementedError('Exercise not done yet: replace this line with your code. "
            "Hint: see the text above this cell.')\n") in learner
    assert learner.startswith("import torch\n\nclass Tokens") and learner.endswith("print('after')")
    namespace = {}
    exec(compile(learner, "learner", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="Hint: flatten"):
        namespace["Tokens"]().forward(None)
