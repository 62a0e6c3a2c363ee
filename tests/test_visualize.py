"""Tests for notebook 07's modules (attention_maps, attention_score, figures, explorer) and its exercise checks."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from vit_lesson import checks  # noqa: E402
from vit_lesson.attention_maps import (  # noqa: E402
    attention_distance,
    attention_maps,
    cls_attention,
    cls_attention_map,
    patch_distances,
    patch_filters,
    position_similarity,
    rollout,
    rollout_map,
    stack_attentions,
    upsample_map,
)
from vit_lesson.attention_score import (  # noqa: E402
    attention_in_mask,
    mask_to_grid,
    pixel_pointing_game,
    pointing_game,
    score_attention,
    uniform_baseline,
)
from vit_lesson.explorer import explore  # noqa: E402
from vit_lesson.figures import (  # noqa: E402
    figure7,
    plot_attention_distance,
    plot_patch_filters,
    plot_position_similarity,
    show_attention,
    to_image,
)
from vit_lesson.model import ViT  # noqa: E402
from vit_lesson.registry import get_config  # noqa: E402


def uniform_attention(batch=1, heads=2, tokens=5):
    return torch.full((batch, heads, tokens, tokens), 1.0 / tokens)


def random_attention(layers=3, batch=2, heads=3, tokens=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, tokens, tokens, generator=generator).softmax(-1)
                 for _ in range(layers))


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    model = ViT(get_config("micro", num_hidden_layers=2)).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        attentions = model(images, output_attentions=True).attentions
    return model, images, attentions


# --- class-token maps ------------------------------------------------------------------------

def test_cls_map_puts_a_hot_patch_at_its_row_and_column():
    grid, T = 3, 10
    attention = torch.zeros(1, 2, T, T)
    attention[..., 0] = 1.0            # every query attends to the class token ...
    patch = 1 * grid + 2               # ... except the class token, which attends to patch (row 1, col 2)
    attention[:, :, 0] = 0.0
    attention[:, :, 0, 1 + patch] = 1.0
    got = cls_attention_map((attention,))
    assert got.shape == (1, grid, grid)
    assert got[0, 1, 2] == 1 and got.sum() == 1


def test_cls_map_is_row_zero_without_the_class_token_heads_averaged(micro):
    model, _, attentions = micro
    got = cls_attention_map(attentions, layer=0)
    want = attentions[0].mean(1)[:, 0, 1:].reshape(3, 8, 8)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(cls_attention_map(attentions, layer=1, head=2),
                               attentions[1][:, 2, 0, 1:].reshape(3, 8, 8))
    torch.testing.assert_close(cls_attention(attentions, head="max"), attentions[-1].amax(1)[:, 0, 1:])
    # the class token's weights on itself plus on the patches sum to one
    torch.testing.assert_close(got.sum((1, 2)) + attentions[0].mean(1)[:, 0, 0], torch.ones(3))


def test_attention_maps_runs_the_model(micro):
    model, images, attentions = micro
    torch.testing.assert_close(attention_maps(model, images), cls_attention_map(attentions))
    torch.testing.assert_close(attention_maps(model, images, "rollout", layer=0),
                               rollout_map(attentions[:1]))


@pytest.mark.parametrize("bad, words", [
    (torch.zeros(2, 3, 5, 5), "output_attentions=True"),
    ("not attention", "output_attentions=True"),
    ((torch.zeros(1, 2, 5, 5), torch.zeros(1, 2, 6, 6)), "same shape"),
])
def test_bad_attention_input_raises_a_clear_error(bad, words):
    with pytest.raises(ValueError, match=words):
        cls_attention_map(bad)


def test_bad_layer_head_and_grid_raise_clear_errors():
    attention = (uniform_attention(tokens=10),)
    with pytest.raises(ValueError, match="has 1 layers"):
        cls_attention_map(attention, layer=3)
    with pytest.raises(ValueError, match="has 2 heads"):
        cls_attention_map(attention, head=5)
    with pytest.raises(ValueError, match="one of"):
        cls_attention_map(attention, head="median")
    with pytest.raises(ValueError, match="not a square grid"):
        cls_attention_map((uniform_attention(tokens=9),))
    assert cls_attention_map((uniform_attention(tokens=9),), grid=(2, 4)).shape == (1, 2, 4)


# --- rollout ---------------------------------------------------------------------------------

def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    torch.testing.assert_close(rollout((eye, eye, eye)), torch.eye(5).expand(2, 5, 5))


def test_rollout_matches_a_hand_computation_on_two_layers():
    # two tokens, one head; rows sum to one
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # Â = (A + I) / 2 (rows of A + I sum to 2): Â1 = [[.75, .25], [0, 1]], Â2 = [[1, 0], [.25, .75]]
    # R = Â2 @ Â1 = [[.75, .25], [.1875, .8125]]
    want = torch.tensor([[0.75, 0.25], [0.1875, 0.8125]])
    got = rollout((a1[None, None], a2[None, None]))[0]
    torch.testing.assert_close(got, want)
    # without the residual it is the plain product A2 @ A1
    torch.testing.assert_close(rollout((a1[None, None], a2[None, None]), residual=False)[0], a2 @ a1)


def test_rollout_rows_sum_to_one_for_every_fusion():
    attentions = random_attention()
    for head in ("mean", "max", "min", 1):
        torch.testing.assert_close(rollout(attentions, head=head).sum(-1), torch.ones(2, 10))


def test_rollout_map_is_the_class_row_through_the_chosen_layer():
    attentions = random_attention(tokens=10)
    torch.testing.assert_close(rollout_map(attentions, layer=1),
                               rollout(attentions[:2])[:, 0, 1:].reshape(2, 3, 3))
    torch.testing.assert_close(rollout_map(attentions), rollout(attentions)[:, 0, 1:].reshape(2, 3, 3))


# --- upsampling and drawing ------------------------------------------------------------------

def test_upsample_to_image_size_keeps_each_patch_in_its_pixels():
    grid = torch.zeros(1, 4, 4)
    grid[0, 1, 2] = 1.0
    big = upsample_map(grid, 32, mode="nearest")
    assert big.shape == (1, 32, 32)
    assert big[0, 8:16, 16:24].eq(1).all() and big.sum() == 64
    smooth = upsample_map(grid[0], (32, 32))
    assert smooth.shape == (32, 32)
    assert divmod(int(smooth.argmax()), 32)[0] // 8 == 1 and divmod(int(smooth.argmax()), 32)[1] // 8 == 2


def test_to_image_refuses_a_normalised_tensor_and_puts_channels_last():
    assert to_image(torch.rand(3, 8, 6)).shape == (8, 6, 3)
    assert to_image(torch.rand(1, 8, 8)).shape == (8, 8)
    with pytest.raises(ValueError, match="denormalize"):
        to_image(torch.randn(3, 8, 8) * 2)


def test_show_attention_draws_the_map_at_the_image_size():
    ax = show_attention(torch.rand(3, 32, 32), torch.rand(8, 8))
    image, heat = ax.get_images()
    assert image.get_array().shape[:2] == heat.get_array().shape == (32, 32)


# --- the score -------------------------------------------------------------------------------

def test_mask_to_grid_is_the_fraction_of_each_patch_inside_the_object():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :2] = True      # half of the top-left 4x4 patch
    mask[0, 4:, 4:] = True      # all of the bottom-right patch
    torch.testing.assert_close(mask_to_grid(mask, 4), torch.tensor([[[0.5, 0.0], [0.0, 1.0]]]))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        mask_to_grid(mask, 3)


def test_scores_on_synthetic_attention():
    fraction = torch.tensor([[[0.5, 0.0], [0.0, 1.0]]])
    inside = torch.tensor([[[0.0, 0.0], [0.0, 3.0]]])      # all mass on the object
    outside = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    uniform = torch.ones(1, 2, 2)
    assert attention_in_mask(inside, fraction).item() == 1.0
    assert attention_in_mask(outside, fraction).item() == 0.0
    torch.testing.assert_close(attention_in_mask(uniform, fraction), fraction.mean((1, 2)))
    assert pointing_game(inside, fraction).tolist() == [True]
    assert pointing_game(outside, fraction).tolist() == [False]
    assert pointing_game(torch.tensor([[[1.0, 0.0], [0.0, 0.5]]]), fraction).tolist() == [True]
    assert pointing_game(torch.tensor([[[1.0, 0.0], [0.0, 0.5]]]), fraction, threshold=0.6).tolist() == [False]
    mass, hit = uniform_baseline(fraction)
    assert mass.item() == pytest.approx(0.375) and hit.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mask_to_grid"):
        attention_in_mask(torch.ones(1, 3, 3), fraction)


def test_pixel_pointing_game_counts_a_peak_within_the_tolerance_of_the_object():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :, 5:] = True                                  # the object: the 3 right-hand columns
    left, right = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    # Upsampled bilinearly, the left map peaks on pixels 0-1 of rows 0-1; the first, (0, 0), is 5 pixels
    # from the object.
    assert pixel_pointing_game(right, masks, tolerance=0)[0].tolist() == [True]
    assert pixel_pointing_game(left, masks, tolerance=0)[0].tolist() == [False]
    assert pixel_pointing_game(left, masks, tolerance=3)[0].tolist() == [False]
    assert pixel_pointing_game(left, masks, tolerance=5)[0].tolist() == [True]
    # A random pixel: the object's 24 pixels, then one more column (8 pixels) per pixel of tolerance.
    assert pixel_pointing_game(left, masks, tolerance=0)[1].item() == pytest.approx(24 / 64)
    assert pixel_pointing_game(left, masks, tolerance=1)[1].item() == pytest.approx(32 / 64)
    with pytest.raises(ValueError, match="masks"):
        pixel_pointing_game(left, masks[0])


def test_score_attention_table_and_uniform_row(micro):
    model, images, _ = micro
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:16] = True
    table = score_attention(model, images, masks, batch_size=2)
    assert set(table) == {"raw last layer", "rollout", "uniform"}
    assert table["uniform"]["mass"] == pytest.approx(0.125)
    assert table["uniform"]["pointing"] == pytest.approx(0.125)
    for row in table.values():
        assert 0 <= row["mass"] <= 1 and 0 <= row["pointing"] <= 1


# --- Figure 7 --------------------------------------------------------------------------------

def test_mean_attention_distance_on_a_hand_example():
    # 2x2 grid, patch 4 px; each patch query: half on itself, half on its right/left neighbour,
    # so every query's mean distance is 0.5 * 4 px = 2 px. The class token takes some attention
    # too; it has no position, so it is dropped and the rows renormalised.
    T = 5
    attention = torch.zeros(1, 1, T, T)
    attention[0, 0, 0, 0] = 1.0
    for query, neighbour in ((1, 2), (2, 1), (3, 4), (4, 3)):
        attention[0, 0, query, [0, query, neighbour]] = torch.tensor([0.2, 0.4, 0.4])
    distance = attention_distance((attention, torch.eye(T)[None, None]), patch_size=4)
    torch.testing.assert_close(distance, torch.tensor([[2.0], [0.0]]))
    torch.testing.assert_close(patch_distances(2, 4)[0], torch.tensor([0.0, 4.0, 4.0, 32 ** 0.5]))


def test_position_similarity_and_patch_filters(micro):
    model, _, _ = micro
    similarity = position_similarity(model.pos_embed)
    assert similarity.shape == (64, 64)
    torch.testing.assert_close(similarity.diagonal(), torch.ones(64))
    filters = patch_filters(model.patch_embed.proj.weight, n=5)
    assert filters.shape == (5, 3, 4, 4) and filters.min() >= 0 and filters.max() <= 1
    # the first principal component is the direction of largest variance of the filters
    flat = model.patch_embed.proj.weight.detach().reshape(64, -1)
    flat = flat - flat.mean(0)
    first = torch.linalg.svd(flat, full_matrices=False).Vh[0]
    variance = (flat @ first).var()
    assert all((flat @ v).var() <= variance + 1e-6 for v in torch.linalg.svd(flat).Vh[1:5])
    assert patch_filters(model.patch_embed.proj.weight, n=3, pca=False).shape == (3, 3, 4, 4)


def test_figure7_functions_return_figures(micro):
    model, images, attentions = micro
    assert isinstance(plot_patch_filters(model, n=8), Figure)
    assert isinstance(plot_position_similarity(model), Figure)
    assert isinstance(plot_attention_distance(attention_distance(attentions, 4), 32), Figure)
    assert isinstance(figure7(model, images), Figure)


# --- the explorer ----------------------------------------------------------------------------


def test_the_maths_imports_without_matplotlib_and_no_module_imports_ipywidgets_at_the_top():
    """A headless benchmark needs neither matplotlib nor widgets; the explorer imports ipywidgets when used."""
    code = ("import sys, vit_lesson.attention_maps, vit_lesson.attention_score\n"
            "assert 'matplotlib' not in sys.modules, 'attention maths imported matplotlib'\n"
            "import vit_lesson.figures, vit_lesson.explorer\n"
            "assert 'ipywidgets' not in sys.modules, 'a module imported ipywidgets at the top'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


class TinyDataset:
    classes = ["a", "b"]

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], index % 2


def test_figure7_and_the_explorer_skip_the_registers():
    """A model with registers (69 tokens): every picture of its maps drops model.num_prefix_tokens."""
    import ipywidgets

    from vit_lesson.factory import create_model

    torch.manual_seed(0)
    model, images = create_model("shapes_registers").eval(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        attentions = model(images, output_attentions=True).attentions
    patches = stack_attentions(attentions)[..., 5:, 5:]  # the 64 patches' rows and columns, renormalised
    expected = (patches / patches.sum(-1, keepdim=True) * patch_distances(8, 4)).sum(-1).mean(dim=(1, 3))
    torch.testing.assert_close(attention_distance(attentions, 4, num_prefix_tokens=5), expected)
    assert isinstance(figure7(model, images), Figure) and isinstance(plot_position_similarity(model), Figure)
    explorer = explore(model, TinyDataset(images))
    assert isinstance(explorer, ipywidgets.VBox)
    torch.testing.assert_close(torch.as_tensor(explorer.figure.axes[1].get_images()[0].get_array().copy()),
                               cls_attention_map(tuple(a[:1] for a in attentions), num_prefix_tokens=5)[0])


def test_explorer_builds_without_a_front_end_and_redraws(micro):
    import ipywidgets

    model, images, _ = micro
    explorer = explore(model, TinyDataset(images))
    assert isinstance(explorer, ipywidgets.VBox)
    assert "JupyterLab or Colab" in repr(explorer)

    def shown():
        return explorer.figure.axes[1].get_images()[0].get_array().copy()

    before = shown()
    explorer.method.value = "rollout"             # the observer redraws the figure
    assert "rollout" in explorer.figure.axes[1].get_title()
    assert not (shown() == before).all()
    explorer.image.value = 2
    explorer.head.value = 1
    explorer.layer.value = 0
    assert "layer 0, head 1" in explorer.figure.axes[1].get_title()
    torch.testing.assert_close(torch.as_tensor(shown()), rollout_map(
        tuple(a[2:3] for a in micro[2][:1]), head=1)[0])


# --- exercise checks -------------------------------------------------------------------------

def correct_map(attentions, layer, grid):
    return attentions[layer].mean(dim=1)[:, 0, 1:].reshape(-1, grid, grid)


@pytest.mark.parametrize("wrong, words", [
    (lambda a, layer, g: a[layer].mean(1)[:, 0].reshape(-1, g, g), "class token's attention to itself"),
    (lambda a, layer, g: a[layer].mean(1)[:, 1:, 0].reshape(-1, g, g), "column 0"),
    (lambda a, layer, g: a[layer][:, :, 0, 1:].reshape(-1, g, g), "one per head"),
    (lambda a, layer, g: a[layer][:, 0, 0, 1:].reshape(-1, g, g), "head 0"),
    (lambda a, layer, g: a[layer].sum(1)[:, 0, 1:].reshape(-1, g, g), "summed"),
    (lambda a, layer, g: a[layer].mean(1)[:, 0, 1:].reshape(-1, g, g).transpose(1, 2), "transposed"),
    (lambda a, layer, g: a[-1].mean(1)[:, 0, 1:].reshape(-1, g, g), "layer 2's map"),
    (lambda a, layer, g: correct_map(a, layer, g) / correct_map(a, layer, g).sum((1, 2), keepdim=True), "renormalised"),
])
def test_check_cls_attention_map_names_each_mistake(wrong, words):
    result = checks.check_cls_attention_map(wrong)
    assert result.status == "fail" and words in result.message


def test_check_cls_attention_map_passes_correct_variants_and_waits_for_placeholder():
    assert checks.check_cls_attention_map(correct_map)
    assert checks.check_cls_attention_map(lambda a, layer, g: cls_attention_map(a, layer, g))

    def einsum_version(attentions, layer, grid):  # another spelling of the same thing
        row = torch.einsum("bhn->bn", attentions[layer][:, :, 0, 1:]) / attentions[layer].shape[1]
        return row.unflatten(-1, (grid, grid))

    assert checks.check_cls_attention_map(einsum_version)

    def placeholder(attentions, layer, grid):
        raise NotImplementedError("Exercise not done yet")

    assert checks.check_cls_attention_map(placeholder).status == "todo"


def rollout_variant(attentions, residual=True, renormalise=True, reverse=False, start_with_first=False):
    B, _, T, _ = attentions[0].shape
    result = torch.eye(T).expand(B, T, T)
    fused_layers = [a.mean(1) + (torch.eye(T) if residual else 0) for a in attentions]
    if renormalise:
        fused_layers = [f / f.sum(-1, keepdim=True) for f in fused_layers]
    if start_with_first:
        result = fused_layers[0]
    for fused in fused_layers:
        result = result @ fused if reverse else fused @ result
    return result


@pytest.mark.parametrize("kwargs, words", [
    (dict(residual=False), "identity"),
    (dict(renormalise=False), "renormalised"),
    (dict(reverse=True), "wrong order"),
    (dict(start_with_first=True), "first layer counts twice"),
])
def test_check_rollout_names_each_mistake(kwargs, words):
    result = checks.check_rollout(lambda attentions: rollout_variant(attentions, **kwargs))
    assert result.status == "fail" and words in result.message


def test_check_rollout_passes_correct_answers_and_waits_for_placeholder():
    assert checks.check_rollout(rollout_variant)
    assert checks.check_rollout(rollout)

    def half_identity(attentions):  # the paper's 0.5 A + 0.5 I, no explicit renormalisation
        result = None
        for attention in attentions:
            layer = 0.5 * attention.mean(1) + 0.5 * torch.eye(attention.shape[-1])
            result = layer if result is None else layer @ result
        return result

    assert checks.check_rollout(half_identity)
    only_cls_row = checks.check_rollout(lambda attentions: rollout(attentions)[:, 0, 1:])
    assert only_cls_row.status == "fail" and "whole rollout matrix" in only_cls_row.message

    def placeholder(attentions):
        raise NotImplementedError("Exercise not done yet")

    assert checks.check_rollout(placeholder).status == "todo"


def test_shipped_shapes_model_loads_and_classifies_unseen_images():
    """The package's trained shapes ViT (notebook 07) loads with weights_only and has really learned."""
    from vit_lesson.data import ShapesDataset
    from vit_lesson.pretrained import load_shapes_model
    from vit_lesson.train import evaluate

    model, checkpoint = load_shapes_model()  # committed, and shipped as package data: never skipped
    assert (model.config.image_size, model.config.patch_size, model.config.num_classes) == (32, 4, 5)
    assert checkpoint["recipe"]["seed"] == 0          # trained on seed-0 images, so seed 7 is unseen
    images = ShapesDataset(200, seed=7)
    assert evaluate(model, images)["accuracy"] >= 0.90  # chance is 0.20
    attentions = model(images[0][0][None], output_attentions=True).attentions
    assert len(attentions) == 4 and attentions[0].shape == (1, 4, 65, 65)


def test_shipped_registers_model_points_at_the_object_better_than_the_plain_one():
    """The same recipe with 4 registers (Darcet et al. 2024): rollout's most-attended patch is on the
    object more often (benchmarks/attention_score.py --shipped --model shapes_registers)."""
    from vit_lesson.attention_score import mask_to_grid, pointing_game
    from vit_lesson.data import ShapesDataset
    from vit_lesson.factory import create_model
    from vit_lesson.pretrained import SHAPES_ASSETS, load_shapes_model
    from vit_lesson.train import evaluate

    registers, checkpoint = load_shapes_model(SHAPES_ASSETS["shapes_registers"])
    assert registers.config == create_model("shapes_registers").config and registers.num_prefix_tokens == 5
    assert checkpoint["recipe"]["seed"] == 0
    plain = create_model("shapes", pretrained="shipped")
    data = ShapesDataset(200, seed=7)
    x, fraction = torch.stack([data[i][0] for i in range(len(data))]), mask_to_grid(data.masks, 4)
    assert evaluate(registers, data)["accuracy"] >= 0.90
    hits = {}
    for name, model in (("plain", plain), ("registers", registers)):
        maps = attention_maps(model, x, method="rollout")  # skips model.num_prefix_tokens columns
        hits[name] = pointing_game(maps, fraction).float().mean().item()
    assert hits["registers"] >= 0.75 and hits["registers"] > hits["plain"], hits  # 84% and 76% here



# --- exercise checks: varied shapes, copied inputs, more named mistakes ----------------------------

@pytest.mark.parametrize("wrong, words", [
    (lambda a, layer, g: a[layer].mean(1)[:, 0, 1:].reshape(-1, 3, 3), "grid size hard-coded"),
    (lambda a, layer, g: (a[layer].sum(1) / 3)[:, 0, 1:].reshape(-1, g, g), "number of heads hard-coded"),
    (lambda a, layer, g: a[layer].amax(1)[:, 0, 1:].reshape(-1, g, g), "maximum"),
    (lambda a, layer, g: a[layer].mean(1)[:, 0, 1:].reshape(-1, g, g) * float("nan"), "NaN"),
    # writes zeros into the maps it was given, then answers from them: the answer key is not fooled
    (lambda a, layer, g: (a[layer].zero_(), correct_map(a, layer, g))[1], "wrong values"),
])
def test_check_cls_attention_map_names_hard_coded_sizes_nan_and_is_not_fooled_by_writes(wrong, words):
    result = checks.check_cls_attention_map(wrong)
    assert result.status == "fail" and words in result.message, result.message


def test_check_cls_attention_map_passes_a_correct_answer_that_writes_into_its_input():
    def clobbers(attentions, layer, grid):
        out = correct_map(attentions, layer, grid).clone()
        for a in attentions:
            a.zero_()
        return out

    assert checks.check_cls_attention_map(clobbers)


def rollout_mistake(attentions, fuse="mean", norm_dim=-1, elementwise=False, layers=None):
    B, _, T, _ = attentions[0].shape
    result = torch.eye(T).expand(B, T, T)
    for a in attentions[layers] if layers is not None else attentions:
        fused = {"mean": a.mean(1), "sum": a.sum(1), "max": a.amax(1)}[fuse] + torch.eye(T)
        fused = fused / fused.sum(norm_dim, keepdim=True)
        result = result * fused if elementwise else fused @ result
    return result


@pytest.mark.parametrize("kwargs, words", [
    (dict(norm_dim=-2), "column sums"),
    (dict(fuse="sum"), "heads were summed"),
    (dict(fuse="max"), "maximum"),
    (dict(elementwise=True), "element by element"),
    (dict(layers=slice(-1, None)), "only the last layer"),
    (dict(layers=slice(0, 1)), "only the first layer"),
])
def test_check_rollout_names_more_mistakes(kwargs, words):
    result = checks.check_rollout(lambda attentions: rollout_mistake(attentions, **kwargs))
    assert result.status == "fail" and words in result.message, result.message


def test_check_rollout_varies_the_shapes_names_nan_and_is_not_fooled_by_writes():
    def three_layers_only(attentions):  # a loop over range(3), the first shape's layer count
        return rollout_variant(attentions[:3]) if len(attentions) >= 3 else rollout_variant(attentions[:1])

    assert not checks.check_rollout(three_layers_only)
    assert "NaN" in checks.check_rollout(lambda attentions: rollout_variant(attentions) * float("nan")).message

    def adds_identity_in_place(attentions):  # attention += I, written into the maps it was given: still right
        B, _, T, _ = attentions[0].shape
        result = torch.eye(T).expand(B, T, T)
        for attention in attentions:
            attention += torch.eye(T)
            fused = attention.mean(1)
            result = (fused / fused.sum(-1, keepdim=True)) @ result
        return result

    assert checks.check_rollout(adds_identity_in_place)

    def zeroes_then_answers(attentions):  # makes its inputs uniform-free zeros, then answers from them
        for attention in attentions:
            attention.zero_()
        return rollout_variant(attentions)

    result = checks.check_rollout(zeroes_then_answers)
    assert result.status == "fail" and "could not check" not in result.message
