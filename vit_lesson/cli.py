"""``python -m vit_lesson train|evaluate``: the trainer and the checkpoints on the command line.

``train`` takes every option it is not given from the recipe of ``--data`` (:data:`vit_lesson.recipes.RECIPES`,
what the benchmarks measure), or on ``--resume`` from the run's ``last.pt``, builds the model with
:func:`vit_lesson.factory.create_model` and runs :func:`vit_lesson.train.train`. ``evaluate`` rebuilds a
checkpoint's model and scores it on the test split. A user error is one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import torch

from ._train_faults import RUN_FIELDS, _prepare_out_dir
from .checkpoint import CheckpointError, CheckpointWriteError, load_checkpoint, load_model
from .factory import create_model
from .history import _pad
from .i18n import _
from .recipes import RECIPES
from .registry import list_models
from .train import NonFiniteLossError, TrainConfig, evaluate, predict, train

__all__ = ["add_cli"]


def _data_shape(dataset):
    image, _label = dataset[0]
    return image.shape[0], image.shape[-1]


def _classes(dataset) -> list[str]:
    return list(getattr(dataset, "classes", None) or getattr(getattr(dataset, "dataset", None), "classes", []))


# The options of `train` that shape a run: TrainConfig fields, then the data and model. Left out, they
# take the --data recipe's values (or TrainConfig's); left out on --resume, the saved run's; given
# with another value on --resume, the resume is refused (it would not continue exactly).
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "amp", "seed")
RUN_OPTIONS = ("data", "model", "image_size", "augment")


def _defaults(data: str) -> dict:
    """The value of every option of TRAIN_OPTIONS and RUN_OPTIONS that is not given, for ``--data data``."""
    recipe, base = RECIPES[data], {f.name: f.default for f in fields(TrainConfig)}
    return {**{k: recipe.train.get(k, base[k]) for k in TRAIN_OPTIONS},
            "data": data, "model": recipe.model, "image_size": None, "augment": True}


def _resolve_train_options(args) -> dict:
    """Fill the options not given: from OUT/last.pt on --resume, else the --data recipe; refuse changes.

    Returns the run's TrainConfig fields beyond the options (the recipe's, or the saved run's).
    """
    out = Path(args.out)
    last = out / "last.pt"
    saved, settings = {}, {}
    if args.resume and last.is_file():
        try:
            checkpoint = load_checkpoint(last)
        except CheckpointError as error:
            raise CheckpointError(_("Cannot resume: {error}").format(error=error)) from None
        config = checkpoint.get("train_config") or {}
        cli = checkpoint.get("cli") or {}
        settings = {k: config[k] for k in RUN_FIELDS if k in config}
        saved = {k: config[k] for k in TRAIN_OPTIONS if k in config}
        saved.update({k: cli[k] for k in RUN_OPTIONS if k in cli})
        if "data" not in saved and (checkpoint.get("data") or {}).get("name"):
            saved["data"] = checkpoint["data"]["name"]
        if args.data_dir is None:
            args.data_dir = cli.get("data_dir")
        changed = [_("--{option} {given!r} (the run has {saved!r})").format(
                       option=k.replace("_", "-"), given=getattr(args, k), saved=saved[k])
                   for k in saved if getattr(args, k) is not None and getattr(args, k) != saved[k]]
        if changed:
            raise ValueError(_("--resume continues the run in {path!r} exactly, but {changed}; leave "
                               "those options out (they are read from last.pt), or start a new run with another "
                               "--out.").format(path=str(out), changed=_(", ").join(changed)))
    elif last.is_file() and not args.resume and not args.overwrite:
        raise ValueError(_("{path!r} already holds a run (last.pt); add --resume to continue it, --overwrite to "
                           "replace it, or choose another --out.").format(path=str(out)))
    if args.data is None:
        args.data = saved.get("data", "digits")
    for name, default in _defaults(args.data).items():
        if getattr(args, name) is None:
            setattr(args, name, saved.get(name, default))
    return {**RECIPES[args.data].train, **settings}


def _cli_train(args) -> int:
    from .data import load_datasets
    from .distributed import cleanup, init_from_env
    from .model import count_parameters

    settings = _resolve_train_options(args)
    recipe = RECIPES[args.data]
    # Settings first: a bad value is one line before any data is loaded.
    config = TrainConfig(**{**settings, **{k: getattr(args, k) for k in TRAIN_OPTIONS}},
                         out_dir=args.out, progress=not args.no_progress, resume=args.resume)
    _prepare_out_dir(Path(args.out), 0)  # --out is a writable folder, before any data is loaded
    info = init_from_env()  # train() finds the group already joined and reuses it
    train_set, test_set = load_datasets(args.data, args.image_size or recipe.image_size, args.data_dir,
                                        augment=recipe.augment if args.augment else False,
                                        train_size=recipe.train_size)
    channels, size = _data_shape(train_set)
    classes = _classes(train_set)
    if len(classes) < 2:
        raise ValueError(_("--data {data} has {count} class(es); a classifier needs at least two.").format(
            data=args.data, count=len(classes)))
    torch.manual_seed(args.seed)  # the same command gives the same model on every run (and rank)
    model = create_model(args.model, image_size=size, num_channels=channels, num_classes=len(classes))
    if info.is_main:
        print(_("data {data}: {train} train / {test} test images of {channels}x{size}x{size}, "
                "{classes} classes; model {model}: {parameters:,} parameters").format(
                  data=args.data, train=len(train_set), test=len(test_set), channels=channels, size=size,
                  classes=len(classes), model=args.model, parameters=count_parameters(model)))
    cli = dict(data=args.data, data_dir=None if args.data_dir is None else str(args.data_dir), model=args.model,
               image_size=args.image_size, augment=args.augment)
    try:
        history = train(model, train_set, test_set, config, classes=classes,
                        data={"name": args.data, "image_size": size, "channels": channels}, cli=cli)
    except KeyboardInterrupt:  # Ctrl-C: what is saved, and how to go on (as Lightning's graceful shutdown does)
        if info.is_main:
            saved = (_("the finished epochs are safe in {out}/last.pt; to continue, run the same command with "
                       "--resume").format(out=args.out) if (Path(args.out) / "last.pt").is_file()
                     else _("no epoch had finished, nothing saved"))
            print(_("interrupted: {saved}.").format(saved=saved), file=sys.stderr)
        return 130
    finally:
        cleanup(info)
    if not info.is_main:
        return 0
    print(history.table())
    best = history.best()
    print(_("best test accuracy {accuracy:.2%} at epoch {epoch}; "
            "checkpoints in {out}/ (last.pt, best.pt)").format(accuracy=best["val_acc"], epoch=best["epoch"],
                                                               out=args.out))
    return 0


def _cli_evaluate(args) -> int:
    from .data import load_datasets

    checkpoint = load_checkpoint(args.checkpoint)
    saved = checkpoint.get("data") or {}
    data = args.data or saved.get("name")
    if data is None:
        raise ValueError(_("The checkpoint does not say which data it was trained on; pass --data."))
    if args.model:
        fit = dict(image_size=saved.get("image_size"), num_channels=saved.get("channels"),
                   num_classes=len(checkpoint.get("classes", [])) or None)
        model = create_model(args.model, **{k: v for k, v in fit.items() if v is not None})
        load_checkpoint(args.checkpoint, model)
    else:
        model, _checkpoint = load_model(args.checkpoint)
    size, channels = model.config.image_size, model.config.num_channels
    _train_set, test_set = load_datasets(data, size, args.data_dir, channels=channels if data == "digits" else None)
    got_channels, got_size = _data_shape(test_set)
    if (got_channels, got_size) != (channels, size):
        raise ValueError(_("Checkpoint {checkpoint!r} expects {channels}x{size}x{size} images but --data {data} "
                           "gives {got_channels}x{got_size}x{got_size}; evaluate it on the data it was trained "
                           "on.").format(checkpoint=args.checkpoint, channels=channels, size=size, data=data,
                                         got_channels=got_channels, got_size=got_size))
    if len(_classes(test_set)) != model.config.num_classes:
        raise ValueError(_("Checkpoint {checkpoint!r} predicts {num_classes} classes but --data "
                           "{data} has {count}.").format(checkpoint=args.checkpoint,
                                                         num_classes=model.config.num_classes, data=data,
                                                         count=len(_classes(test_set))))
    result = evaluate(model, test_set, batch_size=args.batch_size)
    logits, labels = predict(model, test_set, batch_size=args.batch_size)
    errors = int((logits.argmax(1) != labels).sum())
    rows = [(_("checkpoint"), f"{args.checkpoint}"),
            (_("data"), _("{data} (test split, {count} images)").format(data=data, count=len(test_set))),
            (_("epoch"), f"{checkpoint['epoch']}"),
            (_("loss"), f"{result['loss']:.4f}"),
            (_("accuracy"), _("{accuracy:.2%} ({right}/{total}, {errors} errors)").format(
                accuracy=result["accuracy"], right=len(test_set) - errors, total=len(test_set), errors=errors))]
    print("\n".join(f"{_pad(label, 12, '<')} {value}" for label, value in rows))
    return 0


def _guarded(command):
    """Run a CLI command; a user error becomes a one-line message and exit code 2, no traceback.

    User errors: bad settings and data (``ValueError``, including :class:`CheckpointError`), a
    diverged run, a failed checkpoint write, and any ``OSError`` (a permission, a full disk).
    """

    def run(args) -> int:
        try:
            return command(args)
        except (ValueError, NonFiniteLossError, CheckpointWriteError) as error:
            message = str(error)
        except OSError as error:  # FileNotFoundError, PermissionError, ENOSPC, ...
            where = f": {error.filename}" if error.filename else ""
            message = f"{error.strerror or error}{where}"
        print(_("error: {message}").format(message=" ".join(message.split())), file=sys.stderr)
        return 2

    return run


def add_cli(subparsers) -> None:
    """Add ``train`` and ``evaluate`` to ``python -m vit_lesson``."""
    from .data import DATASETS

    models, digits = list_models(), RECIPES["digits"]
    p = subparsers.add_parser(
        "train", help=_("train a ViT on digits, shapes, your own image folder or CIFAR-10"),
        description=_("Train a ViT and write checkpoints (last.pt every epoch, best.pt) to --out. Options left "
                      "out take the recipe of --data (vit_lesson/recipes.py), the one the benchmarks measure. "
                      "Example: python -m vit_lesson train --data digits --out runs/digits"))
    p.add_argument("--data", choices=DATASETS,
                   help=_("digits (scikit-learn, bundled), shapes (generated), folder (--data-dir "
                          "root/class_x/xxx.png), cifar10 (downloads to --data-dir); default digits"))
    p.add_argument("--data-dir", help=_("image folder (for --data folder) or CIFAR-10 folder"))
    p.add_argument("--model", choices=models, metavar="MODEL",
                   help=_("a model of vit_lesson.create_model ({models}); its image size, channels and classes "
                          "are set from the data (default: the recipe's, {model} for digits)").format(
                            models=", ".join(models), model=digits.model))
    p.add_argument("--image-size", type=int,
                   help=_("resize images to this (default: the recipe's, {size} for digits)").format(
                     size=digits.image_size))
    # The defaults are applied later (_resolve_train_options), so that --resume can tell what was given.
    d, default = _defaults("digits"), _("default: the recipe's, {value} for digits")
    p.add_argument("--epochs", type=int, help=default.format(value=d["epochs"]))
    p.add_argument("--batch-size", type=int, help=default.format(value=d["batch_size"]))
    p.add_argument("--lr", type=float, help=_("peak learning rate after warmup (default: the recipe's, {value} for "
                                              "digits)").format(value=d["lr"]))
    p.add_argument("--weight-decay", type=float, help=default.format(value=d["weight_decay"]))
    p.add_argument("--warmup-epochs", type=float, help=default.format(value=f"{d['warmup_epochs']:g}"))
    p.add_argument("--label-smoothing", type=float, help=default.format(value=d["label_smoothing"]))
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help=_("the recipe's data augmentation of the training set (default: on; --no-augment to turn "
                          "off)"))
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help=_("mixed precision (bfloat16 on CPU, float16 on CUDA; default off)"))
    p.add_argument("--seed", type=int, help=_("default {value}").format(value=d["seed"]))
    p.add_argument("--out", default="runs/latest", help=_("folder for last.pt and best.pt (default runs/latest)"))
    p.add_argument("--resume", action="store_true",
                   help=_("continue the run in OUT from last.pt, exactly: options left out are read from it"))
    p.add_argument("--overwrite", action="store_true", help=_("start a new run in an OUT that already holds one"))
    p.add_argument("--no-progress", action="store_true", help=_("no progress bars"))
    p.set_defaults(func=_guarded(_cli_train))

    e = subparsers.add_parser(
        "evaluate", help=_("evaluate a checkpoint on a test split"),
        description=_("Evaluate a checkpoint written by `train` on the test split of its data. "
                      "Example: python -m vit_lesson evaluate --checkpoint runs/digits/best.pt --data digits"))
    e.add_argument("--checkpoint", required=True, help=_("path to a .pt file written by train"))
    e.add_argument("--data", choices=DATASETS, help=_("data set (default: the one the checkpoint was trained on)"))
    e.add_argument("--data-dir", help=_("image folder (for --data folder) or CIFAR-10 folder"))
    e.add_argument("--model", choices=models, metavar="MODEL",
                   help=_("build this preset and load the weights into it (default: rebuild from the checkpoint's "
                          "config)"))
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(func=_guarded(_cli_evaluate))
