"""The ViT in one picture, with the tensor shape at every step (notebook 00's figure).

``draw_vit(photo)`` draws: the image cut into patches → patch tokens → [CLS] + position
embeddings → L encoder blocks → the final [CLS] token → the head's class scores, each arrow
labelled with its shape for ViT-B/16 (``[B, 3, 224, 224]`` → ``[B, 196, 768]`` →
``[B, 197, 768]`` → ``[B, 768]`` → ``[B, 1000]``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from .images import denormalize, imagenet_transform, to_display

__all__ = ["draw_vit"]

TOKEN, ENCODER, HEAD = "#f6c85f", "#9dd9d2", "#f4a6a6"


def draw_vit(photo, image_size: int = 224, patch_size: int = 16, hidden_size: int = 768,
             num_layers: int = 12, num_classes: int = 1000, label: str = '"cat"', grid: int = 4):
    """Draw the ViT pipeline over ``photo`` (a PIL image) and return the figure.

    The shapes are those of ``image_size``/``patch_size``/``hidden_size`` (ViT-B/16 by default);
    the picture cuts the photo into a ``grid`` x ``grid`` of patches so that they stay visible.
    """
    n = (image_size // patch_size) ** 2
    picture = to_display(denormalize(imagenet_transform(image_size=112)(photo)))
    step = picture.shape[0] // grid
    fig, ax = plt.subplots(figsize=(10, 3.6))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    ax.set_xlim(0, 100), ax.set_ylim(0, 36), ax.axis("off")

    def box(x, y, w, h, text, color, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3", facecolor=color, edgecolor="0.3"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(x0, x1, y=19):
        ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops=dict(arrowstyle="-|>", color="0.25"))

    def caption(x, text, y=31):  # what the step is, above it
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def shape(x, text):  # the tensor's shape, under the step that makes it
        ax.text(x, 2.5, text, ha="center", va="center", fontsize=9, family="monospace", color="#1f4e79")

    # 1. the image and its patch grid
    ax.imshow(picture, extent=(1, 15, 12, 26))
    for k in range(grid + 1):
        ax.plot([1 + k * 14 / grid] * 2, [12, 26], color="white", linewidth=1.2)
        ax.plot([1, 15], [12 + k * 14 / grid] * 2, color="white", linewidth=1.2)
    caption(8, f"image in {patch_size}×{patch_size}\npatches")
    shape(8, f"[B, 3, {image_size}, {image_size}]")
    arrow(16, 20.5)

    # 2. the patch tokens (a few shown)
    for i in range(4):
        row, col = divmod(i, grid)
        x = 21.5 + i * 3.4
        ax.imshow(picture[row * step:(row + 1) * step, col * step:(col + 1) * step], extent=(x, x + 2.8, 17.6, 20.4))
    ax.text(35.3, 18.4, "…", fontsize=11)
    caption(29, f"{n} patch tokens:\nflatten, × E")
    shape(29, f"[B, {n}, {hidden_size}]")
    arrow(37.5, 42)

    # 3. [CLS] in front, + position embeddings
    box(43.5, 14, 9, 10, "[CLS] +\npatches\n+ E_pos", TOKEN)
    caption(48, "z_0 (Eq. 1)")
    shape(48, f"[B, {n + 1}, {hidden_size}]")
    arrow(54, 58.5)

    # 4. the encoder
    box(60, 7, 13, 22, f"× {num_layers} blocks\n\nLN → attention\n+ residual\n\nLN → MLP\n+ residual", ENCODER)
    caption(66.5, "encoder (Eq. 2–3)", y=33)
    shape(66.5, f"[B, {n + 1}, {hidden_size}]")
    arrow(74.5, 79)

    # 5. the head reads the final [CLS] token
    box(80.5, 14, 7, 10, "[CLS]\n→ LN\n→ head", HEAD)
    caption(84, "Eq. 4")
    shape(84, f"[B, {hidden_size}]→[B, {num_classes}]")
    arrow(89, 92)
    ax.text(96.5, 19, label, ha="center", va="center", fontsize=10)
    return fig
