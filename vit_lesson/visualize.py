"""Notebook 07: what the ViT looks at — attention maps, attention rollout, the paper's Figure 7.

``model(x, output_attentions=True).attentions`` is one ``[B, H, N + 1, N + 1]`` tensor per layer:
row ``i`` of head ``h`` says how much token ``i`` takes from every token (it sums to 1). Token 0
is the class token, whose final state the head classifies, so **row 0** (attention *from* the
class token), columns ``1:`` (the ``N`` patches), laid out on the ``g x g`` patch grid, is the
picture people draw (:func:`cls_attention_map`).

One layer is not the whole story: every block adds its input back (the residual), and layers
mix what earlier layers mixed. *Attention rollout* (Abnar & Zuidema, 2020, "Quantifying
Attention Flow in Transformers") follows attention through all layers: fuse the heads, add the
identity for the residual path, renormalise the rows, multiply the layers (:func:`rollout`).

Also here: overlaying a map on an image at the image's size (:func:`show_attention`), a score
for how well attention finds the object when the object's mask is known (:func:`attention_in_mask`,
:func:`pointing_game`), the three panels of the ViT paper's Figure 7 (patch-embedding filters,
position-embedding similarity, mean attention distance) and an interactive explorer
(:func:`explore`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

DPI = 100  # every figure of this module: readable text, >= 400 px wide

__all__ = [
    "stack_attentions", "grid_side", "fuse_heads", "cls_attention", "cls_attention_map", "rollout",
    "rollout_map", "attention_maps", "upsample_map", "to_image", "show_attention", "mask_to_grid",
    "attention_in_mask", "pointing_game", "uniform_baseline", "score_attention",
    "patch_distances", "attention_distance", "position_similarity", "patch_filters",
    "plot_patch_filters", "plot_position_similarity", "plot_attention_distance", "figure7",
    "AttentionExplorer", "explore", "SHAPES_ASSET", "load_shapes_model",
]

HEAD_FUSIONS = ("mean", "max", "min")

# A shapes ViT trained by ``python benchmarks/attention_score.py --train-asset`` (shipped in the package).
SHAPES_ASSET = "shapes_vit.pt"


def load_shapes_model():
    """The shipped ViT trained on :class:`~vit_lesson.data.ShapesDataset` (32x32, patch 4, 8x8 grid).

    Returns ``(model in eval mode, checkpoint)``; ``checkpoint["history"]`` and
    ``checkpoint["train_config"]`` say how it was trained, ``checkpoint["recipe"]`` the data used.
    Loaded with ``torch.load(weights_only=True)``; ``model(x, output_attentions=True)`` gives its maps.
    """
    from importlib.resources import as_file, files

    from .train import load_model

    with as_file(files("vit_lesson") / "assets" / SHAPES_ASSET) as path:
        if not path.is_file():
            raise FileNotFoundError(f"The shapes model {SHAPES_ASSET!r} is not in this installation ({path}); "
                                    "create it with `python benchmarks/attention_score.py --train-asset`.")
        return load_model(path)


# --- getting the attention maps out -----------------------------------------------------------

def stack_attentions(attentions) -> torch.Tensor:
    """Per-layer attention -> one ``[L, B, H, T, T]`` tensor, with a clear error for bad input.

    Accepts what ``model(x, output_attentions=True).attentions`` returns (a tuple of ``L``
    tensors ``[B, H, T, T]``, ``T = N + 1``) or an already stacked ``[L, B, H, T, T]`` tensor.
    """
    if isinstance(attentions, torch.Tensor):
        stacked = attentions if attentions.ndim == 5 else None
    elif isinstance(attentions, Sequence) and len(attentions) > 0 and \
            all(isinstance(a, torch.Tensor) and a.ndim == 4 for a in attentions):
        shapes = {tuple(a.shape) for a in attentions}
        if len(shapes) != 1:
            raise ValueError(f"All layers' attention maps must have the same shape, got {sorted(shapes)}.")
        stacked = torch.stack(tuple(attentions))
    else:
        stacked = None
    if stacked is None or stacked.shape[-1] != stacked.shape[-2]:
        got = (tuple(attentions.shape) if isinstance(attentions, torch.Tensor)
               else f"a {type(attentions).__name__}")
        raise ValueError(
            f"Expected attention maps as a tuple of [B, H, T, T] tensors (one per layer), got {got}. "
            "Run the model with output_attentions=True and pass `.attentions`: "
            "model(x, output_attentions=True).attentions."
        )
    return stacked


def grid_side(num_tokens: int, num_prefix_tokens: int = 1) -> int:
    """The side ``g`` of the patch grid for ``T = prefix + g * g`` tokens (raises if not square)."""
    patches = num_tokens - num_prefix_tokens
    side = math.isqrt(max(patches, 0))
    if side * side != patches or side == 0:
        raise ValueError(
            f"{num_tokens} tokens minus {num_prefix_tokens} class token leaves {patches} patches, "
            "which is not a square grid. Pass grid=(rows, cols) for a non-square image."
        )
    return side


def fuse_heads(attention: torch.Tensor, head="mean") -> torch.Tensor:
    """``[B, H, T, T]`` -> ``[B, T, T]``: one head (an ``int``), or the heads' ``"mean"``/``"max"``/``"min"``."""
    if isinstance(head, int):
        if not -attention.shape[1] <= head < attention.shape[1]:
            raise ValueError(f"head={head} but this layer has {attention.shape[1]} heads (0 to "
                             f"{attention.shape[1] - 1}); or pass head='mean'.")
        return attention[:, head]
    if head == "mean":
        return attention.mean(dim=1)
    if head == "max":
        return attention.amax(dim=1)
    if head == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head must be a head index or one of {HEAD_FUSIONS}, got {head!r}.")


def _layer_index(layer: int, num_layers: int) -> int:
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer={layer} but the model has {num_layers} layers (0 to {num_layers - 1}, "
                         "or -1 for the last).")
    return layer % num_layers


def _as_grid(row: torch.Tensor, grid) -> torch.Tensor:
    """``[B, N]`` -> ``[B, rows, cols]`` in row-major order (the order patches were cut in)."""
    rows, cols = (grid_side(row.shape[-1] + 1),) * 2 if grid is None else \
        ((grid, grid) if isinstance(grid, int) else tuple(grid))
    if rows * cols != row.shape[-1]:
        raise ValueError(f"grid {rows}x{cols} = {rows * cols} patches, but the maps have {row.shape[-1]}.")
    return row.reshape(row.shape[0], rows, cols)


def cls_attention(attentions, layer: int = -1, head="mean") -> torch.Tensor:
    """Attention *from* the class token to each patch in one layer: ``[B, N]``.

    Row 0 of the layer's ``[B, H, T, T]`` map (the class token is the query), without column 0
    (its attention to itself), heads fused by ``head``. The raw weights: they sum to one minus
    the class token's attention to itself.
    """
    stacked = stack_attentions(attentions)
    return fuse_heads(stacked[_layer_index(layer, len(stacked))], head)[:, 0, 1:]


def cls_attention_map(attentions, layer: int = -1, grid=None, head="mean") -> torch.Tensor:
    """:func:`cls_attention` laid out on the patch grid: ``[B, g, g]`` (row-major, like the patches)."""
    return _as_grid(cls_attention(attentions, layer, head), grid)


def rollout(attentions, head="mean", residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): ``L x [B, H, T, T]`` -> ``[B, T, T]``.

    For each layer ``l``: fuse the heads (``A_l``), add the identity for the residual connection
    and renormalise the rows, ``Â_l = (A_l + I) / rowsum``; then ``R = Â_L ··· Â_2 Â_1`` (the last
    layer on the left: token ``i`` at the top takes ``R[i, j]`` of input token ``j``). With the
    heads' mean, ``Â_l = 0.5 A_l + 0.5 I``, the paper's formula. Rows of ``R`` sum to 1.
    """
    stacked = stack_attentions(attentions)
    T = stacked.shape[-1]
    eye = torch.eye(T, dtype=stacked.dtype, device=stacked.device)
    result = eye.expand(stacked.shape[1], T, T)
    for attention in stacked:
        fused = fuse_heads(attention, head)
        if residual:
            fused = fused + eye
        fused = fused / fused.sum(dim=-1, keepdim=True)
        result = fused @ result
    return result


def rollout_map(attentions, layer: int = -1, grid=None, head="mean", residual: bool = True) -> torch.Tensor:
    """The class token's row of the rollout through layers ``0..layer``, on the grid: ``[B, g, g]``."""
    stacked = stack_attentions(attentions)
    upto = _layer_index(layer, len(stacked)) + 1
    return _as_grid(rollout(stacked[:upto], head, residual)[:, 0, 1:], grid)


def attention_maps(model, images: torch.Tensor, method: str = "raw", layer: int = -1,
                   head="mean") -> torch.Tensor:
    """Run ``model`` on ``images [B, C, S, S]`` and return class-token maps ``[B, g, g]``.

    ``method="raw"``: :func:`cls_attention_map` of ``layer``; ``"rollout"``: :func:`rollout_map`
    through ``layer``. The model runs in eval mode, without gradients.
    """
    if method not in ("raw", "rollout"):
        raise ValueError(f"method must be 'raw' or 'rollout', got {method!r}.")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        attentions = model(images, output_attentions=True).attentions
    model.train(was_training)
    if method == "raw":
        return cls_attention_map(attentions, layer, head=head)
    return rollout_map(attentions, layer, head=head)


# --- drawing a map on an image ----------------------------------------------------------------

def upsample_map(maps: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """Resize patch-grid maps to the image's size: ``[B, g, g]`` (or ``[g, g]``) -> ``[B, S, S]`` (``[S, S]``).

    ``mode="nearest"`` repeats each patch's value over its ``P x P`` pixels (what the model
    saw); ``"bilinear"`` is smoother, for overlays. Without resizing, a ``g x g`` map drawn over
    an ``S x S`` image covers only its top-left ``g x g`` pixels.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    single = maps.ndim == 2
    batch = maps[None, None] if single else maps[:, None]
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(batch.float(), size=size, mode=mode, **kwargs)[:, 0]
    return out[0] if single else out


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


# --- a score: does attention land on the object? ---------------------------------------------

def mask_to_grid(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Object masks ``[B, S, S]`` (bool) -> ``[B, g, g]``: the fraction of each patch inside the object."""
    if masks.ndim != 3 or masks.shape[-1] % patch_size or masks.shape[-2] % patch_size:
        raise ValueError(f"Expected masks [B, S, S] with S a multiple of patch_size={patch_size}, "
                         f"got {list(masks.shape)}.")
    return F.avg_pool2d(masks.float()[:, None], patch_size)[:, 0]


def attention_in_mask(maps: torch.Tensor, patch_fraction: torch.Tensor) -> torch.Tensor:
    """Share of attention mass on the object: ``[B, g, g]`` maps and patch fractions -> ``[B]`` in [0, 1].

    ``sum_p a_p f_p / sum_p a_p``, where ``f_p`` is the fraction of patch ``p`` inside the object
    (:func:`mask_to_grid`). This equals the mass inside the pixel mask when each patch's
    attention is spread evenly over its pixels (nearest upsampling), so a uniform map scores the
    object's area fraction exactly.
    """
    if maps.shape != patch_fraction.shape:
        raise ValueError(f"maps {list(maps.shape)} and patch fractions {list(patch_fraction.shape)} differ; "
                         "downsample the masks to the patch grid with mask_to_grid(masks, patch_size).")
    maps = maps.float()
    return (maps * patch_fraction).flatten(1).sum(1) / maps.flatten(1).sum(1).clamp_min(1e-12)


def pointing_game(maps: torch.Tensor, patch_fraction: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Does the most-attended patch lie on the object? ``[B, g, g]`` -> bool ``[B]``.

    A hit when at least ``threshold`` of the arg-max patch is object (ties: the first patch).
    """
    if maps.shape != patch_fraction.shape:
        raise ValueError(f"maps {list(maps.shape)} and patch fractions {list(patch_fraction.shape)} differ.")
    best = maps.flatten(1).argmax(dim=1, keepdim=True)
    return patch_fraction.flatten(1).gather(1, best)[:, 0] >= threshold


def uniform_baseline(patch_fraction: torch.Tensor, threshold: float = 0.5):
    """What a map that knows nothing scores: ``(mass [B], hit rate [B])``, exactly.

    A uniform map puts the object's area fraction on it; a uniformly random patch is a hit
    with probability (patches at least ``threshold`` object) / N.
    """
    flat = patch_fraction.flatten(1)
    return flat.mean(1), (flat >= threshold).float().mean(1)


def score_attention(model, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 256,
                    threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Mask mass and pointing-game hit rate of raw last-layer attention, rollout and a uniform map.

    ``images [B, C, S, S]`` (as the model takes them), ``masks [B, S, S]`` (bool, the object).
    Returns ``{"raw last layer": {"mass": m, "pointing": p}, "rollout": ..., "uniform": ...}``,
    each averaged over the images.
    """
    patch = model.config.patch_size
    sums = {name: torch.zeros(2) for name in ("raw last layer", "rollout", "uniform")}
    for start in range(0, len(images), batch_size):
        x, fraction = images[start:start + batch_size], mask_to_grid(masks[start:start + batch_size], patch)
        model.eval()
        with torch.no_grad():
            attentions = model(x, output_attentions=True).attentions
        for name, maps in (("raw last layer", cls_attention_map(attentions)), ("rollout", rollout_map(attentions))):
            sums[name] += torch.stack([attention_in_mask(maps, fraction).sum(),
                                       pointing_game(maps, fraction, threshold).float().sum()])
        mass, hit = uniform_baseline(fraction, threshold)
        sums["uniform"] += torch.stack([mass.sum(), hit.sum()])
    return {name: {"mass": float(s[0]) / len(images), "pointing": float(s[1]) / len(images)}
            for name, s in sums.items()}


# --- the ViT paper's Figure 7 -----------------------------------------------------------------

def patch_distances(grid, patch_size: int = 1) -> torch.Tensor:
    """Euclidean distances between patch centres in pixels: ``[N, N]`` for a ``g x g`` grid."""
    rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([y.flatten(), x.flatten()], dim=1).float() * patch_size  # [N, 2]
    return torch.cdist(centres, centres)


def attention_distance(attentions, patch_size: int, grid=None) -> torch.Tensor:
    """Mean attention distance (ViT paper, Figure 7 right, and Figure 11): ``[L, H]`` in pixels.

    For every patch query, the distance to every patch key weighted by the attention, summed;
    then averaged over queries and images. The class token has no position: its row and column
    are dropped and each remaining row renormalised to sum to 1. Small = a local head (like a
    convolution), large = a head that integrates information from across the image.
    """
    stacked = stack_attentions(attentions)              # [L, B, H, T, T]
    patches = stacked[..., 1:, 1:]                       # [L, B, H, N, N]
    patches = patches / patches.sum(-1, keepdim=True).clamp_min(1e-12)
    rows_cols = grid if grid is not None else grid_side(stacked.shape[-1])
    distances = patch_distances(rows_cols, patch_size).to(patches)
    return (patches * distances).sum(-1).mean(dim=(1, 3))  # [L, H]


def position_similarity(pos_embed: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Cosine similarity between the patches' learned position embeddings: ``[1, T, D]`` -> ``[N, N]``."""
    patches = pos_embed.detach().reshape(-1, pos_embed.shape[-1])[num_prefix_tokens:].float()
    patches = F.normalize(patches, dim=-1)
    return patches @ patches.T


def patch_filters(weight: torch.Tensor, n: int = 28, pca: bool = True) -> torch.Tensor:
    """Patch-embedding filters as images: ``patch_embed.proj.weight [D, C, P, P]`` -> ``[n, C, P, P]``.

    ``pca=True`` gives the top ``n`` principal components of the ``D`` filters (ViT paper,
    Figure 7 left): the directions of pixel space the embedding is most sensitive to. Each is
    scaled to [0, 1] for display (its sign is arbitrary).
    """
    D, C, P, _ = weight.shape
    flat = weight.detach().float().reshape(D, C * P * P)
    if pca:
        flat = flat - flat.mean(dim=0)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # rows of vh: components, largest first
        flat = vh
    flat = flat[:n]
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).reshape(-1, C, P, P)


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


def plot_position_similarity(model, num_prefix_tokens: int = 1) -> Figure:
    """Figure 7 (centre): for each patch, the cosine similarity of its position embedding to all others.

    One ``g x g`` tile per patch, placed at that patch's position in the grid, with a colorbar.
    Learned position embeddings that encode 2D position show a bright spot at the patch's own
    place, with row and column structure around it.
    """
    similarity = position_similarity(model.pos_embed, num_prefix_tokens)  # [N, N]
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
    config = model.config
    fig = Figure(figsize=(10, 3.6), dpi=DPI, layout="constrained")
    left, centre, right = fig.subfigures(1, 3, width_ratios=[0.8, 1.2, 1.1])
    filters = patch_filters(model.patch_embed.proj.weight, 16)
    for ax, image in zip(left.subplots(4, 4).flat, filters):
        ax.imshow(to_image(image), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
        ax.set_axis_off()
    left.suptitle("patch embedding PCs")
    _draw_position_similarity(centre.subplots(), position_similarity(model.pos_embed))
    centre.suptitle("position embedding similarity")
    plot_attention_distance(attention_distance(attentions, config.patch_size), config.image_size,
                            ax=right.subplots())
    right.suptitle("mean attention distance")
    return fig


# --- the interactive explorer -----------------------------------------------------------------

def _display_images(dataset, count: int) -> torch.Tensor:
    raw = getattr(dataset, "images_raw", None)
    if raw is not None:
        return raw[:count]
    images = torch.stack([dataset[i][0] for i in range(count)])
    low = images.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = images.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (images - low) / (high - low).clamp_min(1e-12)  # per-image min-max, for display only


def _explorer_class():
    """The explorer's class, built on first use: ipywidgets (the [notebooks] extra) is imported only then."""
    import ipywidgets as widgets

    class AttentionExplorer(widgets.VBox):
        """An ipywidgets panel: pick an image, a layer, a head (or the mean) and raw or rollout.

        Built by :func:`explore`. ``draw()`` redraws :attr:`figure` (a matplotlib ``Figure``) from
        the controls' values and shows it in the panel's output area; it runs on every change.
        """

        def __init__(self, model, dataset, count: int = 16, classes=None):
            count = min(count, len(dataset))
            if count == 0:
                raise ValueError("The dataset is empty: the explorer needs at least one image.")
            self.model = model.eval()
            images = torch.stack([dataset[i][0] for i in range(count)])
            self.labels = [int(dataset[i][1]) for i in range(count)]
            self.pictures = _display_images(dataset, count)
            self.classes = classes or getattr(dataset, "classes", None)
            with torch.no_grad():
                output = model(images, output_attentions=True)
            self.attentions = stack_attentions(output.attentions)  # [L, B, H, T, T]
            self.predictions = output.logits.argmax(-1).tolist()
            L, _, H = self.attentions.shape[:3]
            style = {"description_width": "initial"}
            self.image = widgets.IntSlider(0, 0, count - 1, description="image", continuous_update=False)
            self.layer = widgets.Dropdown(options=list(range(L)), value=L - 1, description="layer", style=style)
            self.head = widgets.Dropdown(options=["mean", "max", *range(H)], value="mean",
                                         description="head", style=style)
            self.method = widgets.ToggleButtons(options=["raw", "rollout"], value="raw", description="method")
            self.output = widgets.Output()
            self.figure = Figure(figsize=(8, 3), dpi=DPI, layout="constrained")
            super().__init__([widgets.HBox([self.image, self.layer, self.head]), self.method, self.output])
            for control in (self.image, self.layer, self.head, self.method):
                control.observe(lambda change: self.draw(), names="value")
            self.draw()

        def _name(self, index: int) -> str:
            return self.classes[index] if self.classes and index < len(self.classes) else str(index)

        def draw(self) -> Figure:
            """Redraw the figure for the controls' current values (and show it if a front-end is there)."""
            i, layer, head, method = self.image.value, self.layer.value, self.head.value, self.method.value
            maps = (cls_attention_map(self.attentions[:, i:i + 1], layer, head=head) if method == "raw"
                    else rollout_map(self.attentions[:, i:i + 1], layer, head=head))[0]
            fig = self.figure
            fig.clear()
            axes = fig.subplots(1, 3)
            picture = to_image(self.pictures[i])
            axes[0].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axes[0].set_title(f"label {self._name(self.labels[i])}\npredicted {self._name(self.predictions[i])}")
            axes[0].set_axis_off()
            image = axes[1].imshow(maps.numpy(), cmap="inferno", vmin=0)
            axes[1].set_title(f"{method}, layer {layer}, head {head}\n{maps.shape[0]}x{maps.shape[1]} patch grid")
            axes[1].set_axis_off()
            fig.colorbar(image, ax=axes[1], label="attention weight", shrink=0.8)
            show_attention(self.pictures[i], maps, ax=axes[2], title="upsampled,\nover the image")
            from IPython import get_ipython

            if get_ipython() is not None:  # in a notebook: show it in the panel's output area
                from IPython.display import Image, clear_output, display

                with self.output:  # a PNG, not the Figure: display(fig) prints text until pyplot has drawn once
                    buffer = io.BytesIO()
                    fig.savefig(buffer, format="png")
                    clear_output(wait=True)
                    display(Image(buffer.getvalue()))
            return fig

        def __repr__(self) -> str:  # the text a notebook shows where widgets do not run (GitHub, nbval)
            return ("AttentionExplorer: run this notebook in JupyterLab or Colab to use the sliders; "
                    "the static figures above show the same maps.")

    return AttentionExplorer


def __getattr__(name):  # PEP 562: `from vit_lesson.visualize import AttentionExplorer` builds it then
    if name == "AttentionExplorer":
        globals()[name] = explorer = _explorer_class()
        return explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def explore(model, dataset, count: int = 16, classes=None) -> AttentionExplorer:
    """An interactive attention explorer over the first ``count`` items of ``dataset``.

    ``dataset[i]`` is ``(image [C, S, S], label)`` as the model takes it; a ``images_raw``
    attribute (``[n, C, S, S]`` in [0, 1]) is used for display when there is one. Display the
    returned widget in a notebook (make it the cell's last expression).
    """
    explorer = globals().get("AttentionExplorer") or __getattr__("AttentionExplorer")
    return explorer(model, dataset, count, classes)
