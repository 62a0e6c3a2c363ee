"""Notebook 07: does attention land on the object? Scores for attention maps against object masks.

:class:`~vit_lesson.data.ShapesDataset` knows each object's pixels (``masks [B, S, S]``), so a map
can be measured, not just looked at: the share of its mass on the object
(:func:`attention_in_mask`) and whether its most-attended patch is on the object (the
*pointing game*, :func:`pointing_game`), each against what a map that knows nothing scores
(:func:`uniform_baseline`); :func:`pixel_pointing_game` is the pointing game as Zhang et al.
(2018) defined it, on pixels with a tolerance, for comparison with the literature.
:func:`score_attention` runs the patch scores for raw last-layer attention and for rollout
(``benchmarks/attention_score.py`` prints the table).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention_maps import cls_attention_map, rollout_map, upsample_map

__all__ = ["mask_to_grid", "attention_in_mask", "pointing_game", "pixel_pointing_game", "uniform_baseline",
           "score_attention"]


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


def pixel_pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 2.0):
    """The pointing game of Zhang et al. (2018), on pixels: ``(hit [B], random-pixel hit rate [B])``.

    Each ``[B, g, g]`` map is upsampled bilinearly to the masks' ``[B, S, S]``
    (:func:`~vit_lesson.attention_maps.upsample_map`); a hit when its most-attended pixel lies
    within ``tolerance`` pixels (Euclidean) of an object pixel. Zhang et al. allow 15 pixels on
    ImageNet-sized images (about 224 px): 2 pixels at 32 px. More lenient than
    :func:`pointing_game`: a peak on an edge patch that is mostly background can still be a hit.
    The baseline is the share of pixels within the tolerance, what a random pixel scores.
    """
    if masks.ndim != 3 or maps.ndim != 3 or len(maps) != len(masks):
        raise ValueError(f"Expected maps [B, g, g] and masks [B, S, S], got {list(maps.shape)} and "
                         f"{list(masks.shape)}.")
    reach = int(tolerance)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    disk = (offsets[:, None] ** 2 + offsets[None] ** 2 <= tolerance ** 2).float()  # [2r+1, 2r+1]
    # Pixels within the tolerance of the object: the mask dilated by the disk, [B, S*S].
    near = F.conv2d(masks.float()[:, None], disk[None, None], padding=reach)[:, 0].flatten(1) > 0
    best = upsample_map(maps, masks.shape[-2:]).flatten(1).argmax(1, keepdim=True)
    return near.gather(1, best)[:, 0], near.float().mean(1)


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
        prefix = model.num_prefix_tokens
        for name, maps in (("raw last layer", cls_attention_map(attentions, num_prefix_tokens=prefix)),
                           ("rollout", rollout_map(attentions, num_prefix_tokens=prefix))):
            sums[name] += torch.stack([attention_in_mask(maps, fraction).sum(),
                                       pointing_game(maps, fraction, threshold).float().sum()])
        mass, hit = uniform_baseline(fraction, threshold)
        sums["uniform"] += torch.stack([mass.sum(), hit.sum()])
    return {name: {"mass": float(s[0]) / len(images), "pointing": float(s[1]) / len(images)}
            for name, s in sums.items()}
