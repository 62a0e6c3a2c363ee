"""Trained weights, from wherever they come: timm, Hugging Face, the package, or a checkpoint.

:func:`vit_lesson.factory.create_model` calls :func:`load_pretrained` when asked for
``pretrained=...``; :func:`load_shapes_model` is the shipped shapes ViT with its training record.
timm and Hugging Face weights are downloaded once (network, e.g. on Colab) and cached by them.
"""

from __future__ import annotations

import os
from importlib.resources import as_file, files

from torch import nn

from .checkpoint import load_checkpoint, load_model
from .i18n import _
from .registry import MODELS, entry

__all__ = ["SHAPES_ASSET", "SHAPES_ASSETS", "SHAPES_DATA", "load_pretrained", "load_shapes_model",
           "train_shapes_model"]

# The shapes ViTs shipped in the package (the registry's ``pretrained["shipped"]`` file of each), trained by
# ``python -m vit_lesson.pretrained [path] [model]`` (:func:`train_shapes_model`): ``RECIPES["shapes"]`` (its
# train_size images) and ``SHAPES_DATA``. "shapes_registers" is the same recipe with 4 registers (notebook 07).
SHAPES_ASSETS = {name: e.pretrained["shipped"] for name, e in MODELS.items() if "shipped" in e.pretrained}
SHAPES_ASSET = SHAPES_ASSETS["shapes"]
SHAPES_DATA = dict(test_size=1000, seed=0)


def load_shapes_model(asset: str = SHAPES_ASSET):
    """A shipped ViT trained on :class:`~vit_lesson.data.ShapesDataset` (32x32, patch 4, 8x8 grid).

    ``asset``: a file name of :data:`SHAPES_ASSETS` (default: the plain ViT's; ``"shapes_registers_vit.pt"``
    has 4 registers). Returns ``(model in eval mode, checkpoint)``; ``checkpoint["history"]`` and
    ``checkpoint["train_config"]`` say how it was trained, ``checkpoint["recipe"]`` the data used.
    Loaded with ``torch.load(weights_only=True)``; ``model(x, output_attentions=True)`` gives its maps.
    """
    with as_file(files("vit_lesson") / "assets" / asset) as path:
        if not path.is_file():
            raise FileNotFoundError(_("The shapes model {asset!r} is not in this installation ({path}); "
                                      "create it with `python -m vit_lesson.pretrained`.").format(
                                        asset=asset, path=path))
        return load_model(path)


def _split(source: str) -> tuple[str, str | None]:
    kind, _sep, tag = source.partition(":")
    return kind, (tag or None)


def load_pretrained(entry, config, source, overrides: dict) -> nn.Module:
    """``entry.cls(config)`` with the weights of ``source`` (see ``create_model``). Only the head may
    change (``num_classes``: a new head, as timm's ``reset_classifier``); other overrides are refused."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source.endswith((".pt", ".pth"))):
        model = entry.cls(config)
        load_checkpoint(source, model)
        return model.eval()
    kind, tag = _split(str(source))
    if kind not in ("timm", "hf", "shipped"):
        raise ValueError(_("pretrained={source!r} is not a source of weights: use 'timm', 'timm:<tag>', 'hf', "
                           "'hf:<repo>', 'shipped', or the path of a .pt checkpoint.").format(source=source))
    tag = tag or entry.pretrained.get(kind)
    if tag is None:
        offered = ", ".join(entry.pretrained) or _("none: train it, then pass the checkpoint's path")
        raise ValueError(_("This model has no {kind!r} weights (sources it has: {offered}).").format(
            kind=kind, offered=offered))
    num_classes = overrides.get("num_classes")
    other = sorted(set(overrides) - {"num_classes"})
    if other:
        raise ValueError(_("Pretrained weights fix the model's shape; only num_classes can change (a new head), "
                           "not {names}. Build the model without pretrained= to change them.").format(
                             names=", ".join(other)))
    if kind == "timm":
        from .convert import load_pretrained_timm

        model = load_pretrained_timm(tag)
    elif kind == "hf":
        from .hf import load_pretrained_hf

        model = load_pretrained_hf(tag)
    else:
        model, _checkpoint = load_shapes_model(tag)
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_classifier(num_classes)
    return model.eval()


def train_shapes_model(path=None, out_dir=None, model_name=None):
    """Train a shipped shapes ViT (``RECIPES["shapes"]`` on ``SHAPES_DATA``, seeded) and write it to
    ``path`` (default: the package's ``assets/`` file of :data:`SHAPES_ASSETS`), weights and history only.
    ``model_name``: the recipe's model (``"shapes"``) or ``"shapes_registers"``. -> ``path``."""
    from pathlib import Path

    import torch

    from .checkpoint import save_checkpoint
    from .data import ShapesDataset
    from .recipes import RECIPES
    from .train import TrainConfig, train

    recipe = RECIPES["shapes"]
    data = dict(SHAPES_DATA, train_size=recipe.train_size)  # saved with the weights as checkpoint["recipe"]
    model_name = model_name or recipe.model
    path = Path(path) if path else Path(__file__).resolve().parent / "assets" / SHAPES_ASSETS[model_name]
    train_set = ShapesDataset(data["train_size"], image_size=recipe.image_size, seed=data["seed"], augment=True)
    test_set = ShapesDataset(data["test_size"], image_size=recipe.image_size, seed=data["seed"] + 1)
    torch.manual_seed(data["seed"])
    model_entry = entry(model_name)
    model = model_entry.cls(model_entry.config)
    config = TrainConfig(seed=data["seed"], out_dir=out_dir, **recipe.train)
    history = train(model, train_set, test_set, config)
    save_checkpoint(path, model, epoch=len(history), history=history, config=config,
                    classes=list(train_set.classes), recipe=dict(data))
    return path


if __name__ == "__main__":  # python -m vit_lesson.pretrained [path] [model]: train and write a shapes model
    import sys

    path_arg, model_arg = (sys.argv[1:] + [None, None])[:2]
    written = train_shapes_model(path_arg, None, model_arg)
    print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB)")
