"""Notebook 07: an interactive attention explorer (ipywidgets), the only module that needs them.

:func:`explore` returns a panel with an image slider and layer, head and method (raw or
rollout) controls over the maps of :mod:`vit_lesson.attention_maps`, drawn with
:mod:`vit_lesson.figures`. ipywidgets (the ``[notebooks]`` extra) is imported when the first
explorer is built, so this module imports without it, and a missing install says which extra
to add (:mod:`vit_lesson._optional`).
"""

from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure

from ._optional import require
from .attention_maps import cls_attention_map, rollout_map, stack_attentions
from .figures import DPI, show_attention, to_image

__all__ = ["AttentionExplorer", "explore"]  # noqa: F822 -- AttentionExplorer comes from __getattr__ below


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
    widgets = require("ipywidgets")

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
            one = self.attentions[:, i:i + 1]
            p = getattr(self.model, "num_prefix_tokens", 1)  # the class token (and a distillation token, registers)
            maps = (cls_attention_map(one, layer, head=head, num_prefix_tokens=p) if method == "raw"
                    else rollout_map(one, layer, head=head, num_prefix_tokens=p))[0]
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


def __getattr__(name):  # PEP 562: `from vit_lesson.explorer import AttentionExplorer` builds it then
    if name == "AttentionExplorer":
        globals()[name] = explorer = _explorer_class()
        return explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def explore(model, dataset, count: int = 16, classes=None) -> AttentionExplorer:  # noqa: F821 -- see __getattr__
    """An interactive attention explorer over the first ``count`` items of ``dataset``.

    ``dataset[i]`` is ``(image [C, S, S], label)`` as the model takes it; a ``images_raw``
    attribute (``[n, C, S, S]`` in [0, 1]) is used for display when there is one. Display the
    returned widget in a notebook (make it the cell's last expression).
    """
    explorer = globals().get("AttentionExplorer") or __getattr__("AttentionExplorer")
    return explorer(model, dataset, count, classes)
