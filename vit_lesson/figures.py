"""Notebook 07 (and 06): figures, drawn with matplotlib from the tensors of :mod:`vit_lesson.attention_maps`.

An attention map over the image at the image's size (:func:`show_attention`), the three panels of
the ViT paper's Figure 7 (patch-embedding filters, position-embedding similarity, mean attention
distance; :func:`figure7`) and the learning curves of a training run (:func:`plot_history`).

The figures are ``matplotlib.figure.Figure`` objects made without pyplot (no global state; a
notebook shows one when it is a cell's last value, or with ``display(fig)``), at :data:`DPI` so
text stays readable; :func:`plot_history` uses pyplot, as notebook 06 does around it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from .attention_maps import attention_distance, grid_side, patch_filters, position_similarity, upsample_map

DPI = 100  # every figure of this module: readable text, >= 400 px wide

__all__ = [
    "DPI", "to_image", "show_attention", "plot_patch_filters", "plot_position_similarity",
    "plot_attention_distance", "figure7", "plot_history",
]


# --- an image, and a map drawn on it ----------------------------------------------------------

def to_image(image: torch.Tensor) -> np.ndarray:
    """A ``[C, S, S]`` (C = 1 or 3) or ``[S, S]`` tensor in [0, 1] -> an array ``plt.imshow`` draws.

    Raises if the values are outside [0, 1]: a normalised tensor must be denormalised first
    (``vit_lesson.images.denormalize``), or matplotlib clips it and the colours are wrong.
    """
    image = image.detach().cpu().float()
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image.permute(1, 2, 0)  # [C, S, S] -> [S, S, C]: matplotlib wants channels last
    elif image.ndim != 2:
        raise ValueError(f"Expected one image [C, S, S] (C = 1 or 3) or [S, S], got {list(image.shape)}.")
    if image.min() < -1e-3 or image.max() > 1 + 1e-3:
        raise ValueError(
            f"Image values run from {image.min():.2f} to {image.max():.2f}; plt.imshow needs [0, 1]. "
            "This looks like a normalised tensor: undo Normalize first "
            "(vit_lesson.images.denormalize(x) for ImageNet statistics), or pass the raw image."
        )
    image = image.clamp(0, 1).numpy()
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def show_attention(image: torch.Tensor, attention_map: torch.Tensor, ax=None, alpha: float = 0.6,
                   cmap: str = "inferno", mode: str = "bilinear", title: str | None = None):
    """Draw ``image [C, S, S]`` in [0, 1] with ``attention_map [g, g]`` upsampled to ``S x S`` on top.

    The map is min-max scaled for display (the colours show where, not how much). Returns the axes.
    """
    picture = to_image(image)
    heat = upsample_map(attention_map.detach().cpu(), picture.shape[:2], mode)
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    if ax is None:
        ax = Figure(figsize=(3, 3), dpi=DPI).subplots()
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
    ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


# --- the ViT paper's Figure 7 -----------------------------------------------------------------

def _grid_figure(count: int, columns: int, cell: float = 0.45, title: str | None = None):
    rows = math.ceil(count / columns)
    width = max(min(columns * cell, 8), 4.5)  # at least 450 px at 100 dpi
    fig = Figure(figsize=(width, min(rows * width / columns + (0.4 if title else 0), 8)), dpi=DPI)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig, axes.flat


def _similarity_mosaic(similarity: torch.Tensor) -> np.ndarray:
    """``[N, N]`` similarities -> one ``g(g+1)-1`` square image: tile ``(r, c)`` is patch ``(r, c)``'s
    similarity to every patch, laid out on the grid; one blank (NaN) pixel between tiles."""
    g = grid_side(similarity.shape[0], 0)
    size = g * (g + 1) - 1
    mosaic = np.full((size, size), np.nan, dtype=np.float32)
    tiles = similarity.detach().float().reshape(g, g, g, g).cpu().numpy()
    for r in range(g):
        for c in range(g):
            mosaic[r * (g + 1):r * (g + 1) + g, c * (g + 1):c * (g + 1) + g] = tiles[r, c]
    return mosaic


def _draw_position_similarity(ax, similarity: torch.Tensor, colorbar: bool = True):
    """Figure 7 (centre) on one axes: tile (row r, column c) shows patch (r, c)'s cosine similarity
    to all patches; a colorbar from -1 to 1, ticks at the tiles' rows and columns (1-based, as the paper)."""
    g = grid_side(similarity.shape[0], 0)
    image = ax.imshow(_similarity_mosaic(similarity), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    centres = [k * (g + 1) + (g - 1) / 2 for k in range(g)]
    ax.set_xticks(centres, [str(k + 1) for k in range(g)])
    ax.set_yticks(centres, [str(k + 1) for k in range(g)])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="cosine similarity", shrink=0.9, ticks=[-1, 0, 1])
    return image


def plot_patch_filters(model, n: int = 28, pca: bool = True, columns: int = 7) -> Figure:
    """Figure 7 (left): the first ``n`` principal components of ``patch_embed.proj.weight`` as images."""
    filters = patch_filters(model.patch_embed.proj.weight, n, pca)
    what = "principal components" if pca else "filters"
    fig, axes = _grid_figure(len(filters), columns, cell=0.6,
                             title=f"Patch embedding: first {len(filters)} {what}")
    for ax, image in zip(axes, filters):
        ax.imshow(to_image(image), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
    return fig


def plot_position_similarity(model, num_prefix_tokens: int | None = None) -> Figure:
    """Figure 7 (centre): for each patch, the cosine similarity of its position embedding to all others.

    One ``g x g`` tile per patch, placed at that patch's position in the grid, with a colorbar.
    Learned position embeddings that encode 2D position show a bright spot at the patch's own
    place, with row and column structure around it.
    """
    prefix = model.num_prefix_tokens if num_prefix_tokens is None else num_prefix_tokens  # class token, registers
    similarity = position_similarity(model.pos_embed, prefix)  # [N, N]
    fig = Figure(figsize=(5, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    _draw_position_similarity(ax, similarity)
    ax.set_title("Position embedding similarity")
    return fig


def plot_attention_distance(distances: torch.Tensor, image_size: int | None = None,
                            label: str | None = None, ax=None):
    """Figure 7 (right): mean attention distance ``[L, H]`` (pixels) of every head against depth."""
    if ax is None:
        ax = Figure(figsize=(4.5, 3.2), dpi=DPI, layout="constrained").subplots()
    L, H = distances.shape
    depth = torch.arange(L).repeat_interleave(H).float()
    jitter = (torch.arange(H).float() / max(H - 1, 1) - 0.5) * 0.3
    ax.scatter((depth + jitter.repeat(L)).numpy(), distances.detach().flatten().cpu().numpy(), s=14, label=label)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(range(L))
    if image_size is not None:
        ax.set_ylim(0, image_size * 0.75)
    if label:
        ax.legend()
    return ax.figure


def figure7(model, images: torch.Tensor) -> Figure:
    """All three panels of the ViT paper's Figure 7 for ``model``, attention measured on ``images``."""
    model.eval()
    with torch.no_grad():
        attentions = model(images, output_attentions=True).attentions
    config, prefix = model.config, model.num_prefix_tokens  # the class token (and a distillation token, registers)
    fig = Figure(figsize=(10, 3.6), dpi=DPI, layout="constrained")
    left, centre, right = fig.subfigures(1, 3, width_ratios=[0.8, 1.2, 1.1])
    filters = patch_filters(model.patch_embed.proj.weight, 16)
    for ax, image in zip(left.subplots(4, 4).flat, filters):
        ax.imshow(to_image(image), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
        ax.set_axis_off()
    left.suptitle("patch embedding PCs")
    _draw_position_similarity(centre.subplots(), position_similarity(model.pos_embed, prefix))
    centre.suptitle("position embedding similarity")
    plot_attention_distance(attention_distance(attentions, config.patch_size, num_prefix_tokens=prefix),
                            config.image_size, ax=right.subplots())
    right.suptitle("mean attention distance")
    return fig


# --- learning curves (notebook 06) -----------------------------------------------------------

def plot_history(history, figsize=(8, 3)):
    """Learning curves: loss and accuracy per epoch, train vs validation. Returns the figure.

    ``history`` is what ``train`` returns: one dict per epoch with ``epoch``, ``train_loss``,
    ``val_loss``, ``train_acc`` and ``val_acc`` (a list of such dicts works too).
    """
    import matplotlib.pyplot as plt

    def column(key: str) -> list:
        return [row[key] for row in history]

    epochs = column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=figsize)
    ax_loss.plot(epochs, column("train_loss"), "o-", label="train (smoothed labels)")
    ax_loss.plot(epochs, column("val_loss"), "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * a for a in column("train_acc")], "o-", label="train")
    ax_acc.plot(epochs, [100 * a for a in column("val_acc")], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
