"""Notebook 06: a training loop you can trust, and ``python -m vit_lesson train|evaluate``.

The recipe, as in the blog post but checked: AdamW (lr 3e-4, weight decay 0.01, none on norms,
biases, position embeddings and the class token), a linear warmup then cosine decay, updated every
step; label smoothing; gradient clipping; mixed precision with ``torch.amp`` (bfloat16 on CPU,
float16 + ``GradScaler`` on CUDA; the post's ``torch.cuda.amp`` is deprecated).

What makes it trustworthy:

- checkpoints (``last.pt`` each epoch, ``best.pt``) are written atomically and hold everything a
  run needs to continue: model, optimiser, scheduler, scaler, epoch, history, RNG states, the
  model's config. ``resume=True`` after an interruption ends on the same weights as a run that
  was never interrupted (data order is seeded per epoch);
- checkpoints load with ``torch.load(weights_only=True)``: no pickled code runs;
- a checkpoint carries a SHA-256 of its contents; loading checks it, and checks that the weights
  are finite, so a damaged file is an error (:class:`CheckpointError`) instead of "accuracy 10%";
- a NaN or infinite loss stops the run at once with :class:`NonFiniteLossError`, naming the
  step and the likely causes, and the last good checkpoint stays on disk;
- faults found early and named in one line: a bad setting, an ``out_dir`` that cannot be written
  (checked before the first step), a resume that would change the run (refused: a resumed run
  continues exactly), images of the wrong dtype, a full disk (:class:`CheckpointWriteError`, the
  finished checkpoints intact). After a kill at any moment, ``best.pt`` and ``last.pt`` agree with
  the history once the run is resumed; temporary files a kill left behind are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import numbers
import os
import pickle
import random
import re
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .distributed import all_ranks, init_from_env, make_loader, reduce_metrics, unwrap, wrap_model
from .i18n import _

__all__ = [
    "TrainConfig", "History", "NonFiniteLossError", "CheckpointError", "CheckpointWriteError", "train",
    "evaluate", "predict",
    "warmup_cosine_lr", "parameter_groups", "NO_DECAY_NAMES", "make_optimizer", "make_scheduler",
    "cross_entropy_loss", "save_checkpoint", "load_checkpoint", "load_model", "plot_history",
    "MODEL_PRESETS", "build_model", "add_cli",
]

NO_DECAY_NAMES = {"pos_embed", "cls_token", "dist_token"}


@dataclass
class TrainConfig:
    """Every knob of :func:`train`. Defaults are the blog post's (lr 3e-4, weight decay 0.01)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 1
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0      # max global gradient norm; None or 0 = no clipping
    amp: bool = False                  # bfloat16 autocast on CPU, float16 + GradScaler on CUDA
    seed: int = 0
    out_dir: str | None = None         # where last.pt / best.pt go; None = no checkpoints
    num_workers: int = 0
    progress: bool = True              # tqdm progress bars
    compile: bool = False              # torch.compile the model (PyTorch 2)
    resume: bool = False               # continue from out_dir/last.pt if it exists
    device: str | None = None          # default: cuda if available, else cpu
    ema_decay: float | None = None     # e.g. 0.999: evaluate (and finish with) an EMA of the weights

    def __post_init__(self):
        # Each message names the field and its command-line option, what is allowed, and a typical value.
        for name, least, example in (("epochs", 1, "10"), ("batch_size", 1, "64"), ("seed", 0, "0"),
                                     ("num_workers", 0, "0")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(_("{option} must be a whole number >= {least}, got {value!r}; "
                                   "use e.g. {example}.").format(option=_option(name), least=least, value=value,
                                                                 example=example))
        for name, example in (("lr", lambda: "3e-4"), ("min_lr", lambda: "0"),
                              ("weight_decay", lambda: _("0.01 (0 for none)")),
                              ("warmup_epochs", lambda: _("1 (0 for no warmup)")),
                              ("label_smoothing", lambda: _("0.1 (0 for none)"))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(_("{option} must be a finite number >= 0, got {value!r}; use e.g. {example}.").format(
                    option=_option(name), value=value, example=example()))
        if not self.lr > 0 or self.min_lr > self.lr:
            raise ValueError(_("Need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}; "
                               "use e.g. lr 3e-4 and min_lr 0.").format(lr=self.lr, min_lr=self.min_lr))
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(_("ema_decay must be in (0, 1) or None, got {ema_decay}; use e.g. 0.999.").format(
                ema_decay=self.ema_decay))
        if not self.label_smoothing < 1:
            raise ValueError(_("{option} must be in [0, 1), got {value}; use e.g. 0.1 (0 for none).").format(
                option=_option("label_smoothing"), value=self.label_smoothing))
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                                 or not math.isfinite(clip) or clip < 0):
            raise ValueError(_("grad_clip must be a finite number >= 0 or None (no clipping), got {grad_clip!r}; "
                               "use e.g. 1.0.").format(grad_clip=self.grad_clip))


def _option(name: str) -> str:
    """``warmup_epochs`` -> ``warmup_epochs (--warmup-epochs)``: the field and its command-line option."""
    return f"{name} (--{name.replace('_', '-')})"


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes (a Chinese character takes two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int, align: str = ">") -> str:
    """``text`` padded with spaces to ``width`` terminal columns, right (``>``) or left (``<``) aligned."""
    fill = " " * max(0, width - _columns(text))
    return fill + text if align == ">" else text + fill


# The settings that decide a run's trajectory: a resume must use the saved values of all of them.
RUN_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "min_lr", "label_smoothing",
              "grad_clip", "amp", "seed", "ema_decay")


class History(list):
    """One dict per finished epoch: ``epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds``."""

    def column(self, key: str) -> list:
        return [row[key] for row in self]

    def best(self, key: str = "val_acc") -> dict:
        """The epoch with the highest ``key`` (the first one, on ties)."""
        return max(self, key=lambda row: row[key]) if self else {}

    def table(self) -> str:
        """The history as a fixed-width text table."""
        header = [(_("epoch"), 5), (_("train loss"), 10), (_("train acc"), 9), (_("val loss"), 8),
                  (_("val acc"), 8), (_("lr"), 9), (_("seconds"), 7)]
        widths = [max(width, _columns(name)) for name, width in header]  # a translated name may be wider
        lines = [" ".join(_pad(name, width) for (name, _width), width in zip(header, widths))]
        for r in self:
            cells = (f"{r['epoch']}", f"{r['train_loss']:.4f}", f"{r['train_acc']:.2%}", f"{r['val_loss']:.4f}",
                     f"{r['val_acc']:.2%}", f"{r['lr']:.2e}", f"{r['seconds']:.1f}")
            lines.append(" ".join(_pad(cell, width) for cell, width in zip(cells, widths)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs)" if not self else self.table()


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped (the last good checkpoint is kept)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, truncated, damaged, refused (pickled code) or not a checkpoint."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (a full disk, a vanished folder); the checkpoints already written are intact."""


# --- optimiser and schedule ------------------------------------------------------------------------

def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    Linear warmup ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps
    (the first step already learns; the last warmup step reaches ``base_lr``), then a half
    cosine from ``base_lr`` at ``step == warmup_steps`` down to ``min_lr`` at ``step == total_steps``
    (the value after the last update).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay on weight matrices only.

    No decay on anything with ``ndim <= 1`` (LayerNorm weights, all biases) and on ``pos_embed``,
    ``cls_token``, ``dist_token``: shrinking them towards zero only hurts (a LayerNorm gain of 0
    silences its features; a position embedding of 0 forgets positions). Frozen parameters
    (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step warmup + cosine as a ``LambdaLR`` (a multiplier of each group's base lr)."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    min_ratio = config.min_lr / config.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_lr(step, 1.0, warmup, total, min_ratio))


def cross_entropy_loss(label_smoothing: float = 0.0):
    """The default ``loss_fn(model, images, labels) -> (loss, logits)``."""

    def loss_fn(model, images, labels):
        logits = _logits(model(images))
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing), logits

    return loss_fn


def _logits(output):
    """A model's logits, whether it returns a tensor or a tuple/NamedTuple whose first item is."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _device(config: TrainConfig) -> torch.device:
    return torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _amp_dtype(device: torch.device):
    return torch.float16 if device.type == "cuda" else torch.bfloat16


# --- evaluation ------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, dataset, batch_size: int = 256, device=None, amp: bool = False):
    """``(logits [N, num_classes], labels [N])`` of the whole ``dataset``, in order, on the CPU."""
    device = torch.device(device) if device else next(model.parameters()).device
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    try:
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images = images.to(device)
            with torch.autocast(device.type, _amp_dtype(device), enabled=amp):
                try:
                    logits = _logits(model(images))
                except RuntimeError as error:
                    message = _dtype_message(images, model, error)
                    if message:
                        raise ValueError(message) from error
                    raise
            all_logits.append(logits.float().cpu())
            all_labels.append(torch.as_tensor(labels))
    finally:
        model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels)


def evaluate(model: nn.Module, dataset, batch_size: int = 256, device=None, amp: bool = False) -> dict:
    """``{"loss": mean cross-entropy (no smoothing), "accuracy": fraction correct}`` on ``dataset``."""
    logits, labels = predict(model, dataset, batch_size, device, amp)
    return {"loss": F.cross_entropy(logits, labels).item(),
            "accuracy": (logits.argmax(1) == labels).float().mean().item()}


# --- checkpoints -----------------------------------------------------------------------------------

def _model_config(model: nn.Module):
    config = getattr(model, "config", None)
    if is_dataclass(config):
        return asdict(config)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _digest(obj, h=None) -> str:
    """SHA-256 of a checkpoint's contents: every tensor's dtype, shape and bytes, every plain value."""
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key, value in obj.items():
            h.update(repr(key).encode())
            _digest(value, h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for value in obj:
            _digest(value, h)
        h.update(b"]")
    else:  # int, float, str, bool, None, torch.Size
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut right after ``os.replace`` keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, fsync it, then ``os.replace`` it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_atomic(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` with the same all-or-nothing guarantee (``best.pt`` from ``last.pt``)."""
    with open(source, "rb") as src:
        _write_atomic(path, lambda file: shutil.copyfileobj(src, file, 1 << 20))


_TMP_NAME = re.compile(r"^\..+\.tmp(\d+)$")


def _remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.NAME.tmpPID`` files whose process is gone (what a kill during a write leaves behind)."""
    removed = []
    for path in folder.iterdir():
        match = _TMP_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        pid = int(match.group(1))
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # that process is alive: perhaps writing right now
            except ProcessLookupError:
                pass
            except OSError:  # alive but not ours (PermissionError): leave it
                continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, scaler=None, epoch: int = 0,
                    history=None, config: TrainConfig | None = None, **extra) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then ``os.replace``.

    An interruption (or a full disk) leaves either the old file or the new one, never half of one.
    Stored: ``model`` (state dict), ``model_config`` (dict, if the model has a ``config``),
    ``model_class``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (finished epochs),
    ``history`` (list of dicts), ``rng`` (RNG states as tensors / ints), ``train_config`` and any
    ``extra`` plain values (e.g. ``classes``, ``data``). All plain types, so ``weights_only`` loads it.
    A ``checksum`` (SHA-256 of all of it) lets :func:`load_checkpoint` detect a damaged file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(),
        "model_config": _model_config(model),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_args": dict(getattr(model, "build_args", None) or {}),  # e.g. hybrid_vit's backbone choice
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "history": [dict(row) for row in (history or [])],
        "rng": _rng_state(),
        "train_config": asdict(config) if config is not None else None,
        **extra,
    }
    checkpoint["checksum"] = _digest(checkpoint)
    _write_atomic(path, lambda file: torch.save(checkpoint, file))
    return path


def _use_another() -> str:
    return _("use another checkpoint (best.pt or last.pt of the run) or train again")


def load_checkpoint(path, model: nn.Module | None = None, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; load its weights into ``model`` if given.

    Raises :class:`CheckpointError` (a ``ValueError``) in one sentence naming the file if it is
    missing, unreadable (empty, truncated, not a checkpoint), holds pickled code (refused, never
    run), does not match the checksum stored in it (damaged after it was written), or holds
    non-finite weights. A model of another shape raises ``ValueError`` naming the first mismatching
    parameter. The verified ``checksum`` is not part of the returned dict.
    """
    path = Path(path)
    if not path.is_file():
        what = _("a folder, not a file") if path.is_dir() else _("no such file")
        raise CheckpointError(_("No checkpoint at {path!r} ({what}); pass the path of a .pt file written by "
                                "train, e.g. runs/digits/best.pt.").format(path=str(path), what=what))
    try:
        with warnings.catch_warnings():  # torch's note on a foreign file's pickle protocol is noise here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"(?:GLOBAL|Unsupported class) (\S+)", str(error))  # torch >= 2.4 | 2.3
        if found or "Weights only load failed" in str(error):
            what = (_("pickled code ({name})").format(name=found.group(1)) if found
                    else _("pickled objects other than tensors"))
            raise CheckpointError(_("Checkpoint {path!r} holds {what}; it was refused and nothing in it ran. "
                                    "It was not written by save_checkpoint: load only files you trust, or "
                                    "{use_another}.").format(path=str(path), what=what,
                                                             use_another=_use_another())) from None
        raise CheckpointError(_unreadable(path, error)) from None
    except Exception as error:  # EOFError, KeyError, RuntimeError (PytorchStreamReader ...), ...
        raise CheckpointError(_unreadable(path, error)) from None
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(_("{path!r} holds no model weights (a {type} without a "
                                "'model' state dict): it is not a checkpoint written by save_checkpoint; "
                                "{use_another}.").format(path=str(path), type=type(checkpoint).__name__,
                                                         use_another=_use_another()))
    checkpoint = dict(checkpoint)
    stored = checkpoint.pop("checksum", None)  # files written before checksums: checked for finiteness only
    if stored is not None and stored != _digest(checkpoint):
        raise CheckpointError(_("Checkpoint {path!r} is damaged: its contents do not match the checksum saved "
                                "with them (changed after it was written: a bad disk or an incomplete copy); "
                                "{use_another}.").format(path=str(path), use_another=_use_another()))
    for name, tensor in checkpoint["model"].items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(_("Checkpoint {path!r} holds NaN or infinite weights in {name!r} (a damaged "
                                    "file or a diverged run); {use_another}.").format(
                                      path=str(path), name=name, use_another=_use_another()))
    if model is not None:
        _load_weights(model, checkpoint, path)
    return checkpoint


def _unreadable(path: Path, error: Exception) -> str:
    reason = (str(error).strip().splitlines() or [""])[0][:160] or _("no details")
    size = path.stat().st_size
    what = (_("it is empty") if size == 0
            else _("{size:,} bytes that are not a whole PyTorch checkpoint").format(size=size))
    return _("Checkpoint {path!r} cannot be read: {what} ({error_type}: {reason}); it was cut "
             "short (an interrupted copy, a full disk) or is not a .pt file; {use_another}.").format(
               path=str(path), what=what, error_type=type(error).__name__, reason=reason,
               use_another=_use_another())


def _load_weights(model: nn.Module, checkpoint: dict, path) -> None:
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, ValueError) as error:
        raise ValueError(_("Checkpoint {path!r} does not fit this model "
                           "(saved config: {config}): {error}").format(
                             path=str(path), config=checkpoint.get("model_config"), error=error)) from None


def load_model(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint's class, config and weights: ``(model in eval mode, checkpoint)``.

    Rebuilds :class:`~vit_lesson.model.ViT`, :class:`~vit_lesson.distill.DistilledViT` and a
    :class:`~vit_lesson.hybrid.HybridViT` made by :func:`~vit_lesson.hybrid.hybrid_vit` (its
    backbone choice is stored as ``model_args``). For any other model, build it yourself and call
    ``load_checkpoint(path, model)``.
    """
    from .distill import DistilledViT
    from .hybrid import hybrid_vit
    from .model import ViT, ViTConfig

    builders = {
        "vit_lesson.model.ViT": lambda config, args: ViT(config),
        "vit_lesson.distill.DistilledViT": lambda config, args: DistilledViT(config),
        "vit_lesson.hybrid.HybridViT": lambda config, args: hybrid_vit(config, **args),
    }
    checkpoint = load_checkpoint(path, map_location=map_location)
    model_class, args = checkpoint.get("model_class") or "vit_lesson.model.ViT", checkpoint.get("model_args") or {}
    if checkpoint.get("model_config") is None or model_class not in builders:
        raise ValueError(_("Checkpoint {path!r} holds a {model_class} that load_model cannot rebuild from "
                           "the file alone; build the model yourself and call load_checkpoint(path, model).").format(
                             path=str(path), model_class=model_class))
    if model_class == "vit_lesson.hybrid.HybridViT" and not args:
        raise ValueError(_("Checkpoint {path!r} holds a HybridViT with a hand-made backbone (not from "
                           "hybrid_vit); build it the same way and call load_checkpoint(path, model).").format(
                             path=str(path)))
    known = {f.name for f in fields(ViTConfig)}
    config = ViTConfig(**{k: v for k, v in checkpoint["model_config"].items() if k in known})
    model = builders[model_class](config, args)
    _load_weights(model, checkpoint, path)
    return model.eval(), checkpoint


# --- the loop --------------------------------------------------------------------------------------

def _non_finite_message(loss, images, epoch, step, global_step, lr, config, last_good) -> str:
    inputs_ok = bool(torch.isfinite(images).all())
    causes = []
    if not inputs_ok:
        causes.append(_("the input batch itself contains NaN/inf (check the data and its normalisation)"))
    causes += [_("the learning rate is too high (lr now {lr:.2e}, base {base_lr:.2e}: try 10x lower or a longer "
                 "warmup)").format(lr=lr, base_lr=config.lr),
               _("badly normalised inputs (check a batch: mean near 0, std near 1, no NaN)"),
               _("float16 overflow without a GradScaler (on CUDA use torch.amp.GradScaler; bfloat16 needs none)")]
    kept = (_("The last good checkpoint is kept: {path}.").format(path=last_good) if last_good
            else _("No checkpoint was written yet."))
    return _("The loss became {loss} at epoch {epoch}, step {step} (global step {global_step}); "
             "training stopped. Likely causes: {causes}. {kept}").format(
               loss=loss.item(), epoch=epoch, step=step, global_step=global_step, causes=_("; ").join(causes),
               kept=kept)


def _dtype_message(images: torch.Tensor, model: nn.Module, error: Exception) -> str | None:
    """If ``images`` do not have the model's float dtype, what to do about it (else None)."""
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is None or images.dtype == weight.dtype:
        return None
    pytorch = (str(error).strip().splitlines() or [""])[0][:120]
    if not images.is_floating_point():
        return _("The images are {images_dtype} tensors but the model computes in {weight_dtype} (PyTorch: "
                 "{pytorch}). Convert them to float in [0, 1] with transforms.v2.ToImage() + "
                 "transforms.v2.ToDtype(torch.float32, scale=True) (then Normalize), or images.float() / 255.").format(
                   images_dtype=images.dtype, weight_dtype=weight.dtype, pytorch=pytorch)
    return _("The images are {images_dtype} but the model's weights are {weight_dtype} (PyTorch: {pytorch}). Convert "
             "them with transforms.v2.ToDtype(torch.float32, scale=True) (or images.float()), or train with mixed "
             "precision: --amp (TrainConfig(amp=True)).").format(
               images_dtype=images.dtype, weight_dtype=weight.dtype, pytorch=pytorch)


def _forward(loss_fn, model, images, labels):
    """``loss_fn`` with a dtype mismatch of the inputs turned into a message that says what to do."""
    try:
        return loss_fn(model, images, labels)
    except RuntimeError as error:
        message = _dtype_message(images, unwrap(model), error)
        if message:
            raise ValueError(message) from error
        raise


def _checkpoint_bytes(model: nn.Module, optimizer) -> int:
    """About how large one checkpoint of ``model`` is: weights, buffers and AdamW's two moments."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    trained = sum(p.numel() * p.element_size() for group in optimizer.param_groups for p in group["params"])
    return weights + 2 * trained + (1 << 20)


def _prepare_out_dir(out_dir: Path, needed: int) -> None:
    """Before the first step: ``out_dir`` is a folder we can write ``needed`` bytes to; stale temporaries go."""
    where = _("The output folder {path!r} (out_dir, --out)").format(path=str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(_("{where} is a file, not a folder; choose a folder path (it is created if missing).").format(
            where=where))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocked = next((p for p in out_dir.parents if p.exists()), None)
        why = (_("{path!r} is a file").format(path=str(blocked)) if blocked is not None and not blocked.is_dir()
               else error.strerror or str(error))
        raise ValueError(_("{where} cannot be created ({why}); choose a folder you can write to.").format(
            where=where, why=why)) from None
    probe = out_dir / f".write-test.tmp{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as error:
        raise ValueError(_("{where} is not writable ({why}); choose a folder you can write "
                           "to, or fix its permissions.").format(where=where, why=error.strerror or error)) from None
    _remove_stale_temporaries(out_dir)
    try:
        free = shutil.disk_usage(out_dir).free
    except OSError:
        return
    if free < needed:
        raise ValueError(_("{where} has {free:.1f} MB free but the checkpoints need about "
                           "{needed:.1f} MB; free some space or choose another folder.").format(
                             where=where, free=free / 2**20, needed=needed / 2**20))


def _check_resume(checkpoint: dict, config: TrainConfig, steps_per_epoch: int, path: Path) -> None:
    """Refuse a resume that would not continue the saved run exactly, naming every change."""
    saved = checkpoint.get("train_config") or {}
    norm = lambda name, value: (value or None) if name == "grad_clip" else value  # noqa: E731 (0 = None)
    changes = [f"{name} {saved[name]!r} -> {getattr(config, name)!r}" for name in RUN_FIELDS
               if name in saved and norm(name, saved[name]) != norm(name, getattr(config, name))]
    done, step = checkpoint.get("epoch", 0), (checkpoint.get("scheduler") or {}).get("last_epoch")
    if done and step is not None and step != done * steps_per_epoch:
        changes.append(_("steps per epoch {saved} -> {now} (another training set size, "
                         "batch size or number of processes)").format(saved=step // done, now=steps_per_epoch))
    if changes:
        raise ValueError(_("Cannot resume from {path!r}: this would change the run ({changes}). "
                           "A resumed run continues the saved one exactly: use the saved settings (on the command "
                           "line, leave those options out), or start a new run in another folder (--out).").format(
                             path=str(path), changes=_("; ").join(changes)))


def _reconcile_best(out_dir: Path, last_path: Path, history) -> str | None:
    """After a kill between writing ``last.pt`` and ``best.pt``: make ``best.pt`` the history's best epoch.

    ``last.pt`` is written first, then copied to ``best.pt`` when the epoch is the best so far; a
    kill in between leaves ``best.pt`` one best epoch behind, and ``last.pt`` holds the missing
    weights. Returns a note of what was done (or could not be done), or None.
    """
    if not history:
        return None
    best_epoch, last_epoch, best_path = history.best()["epoch"], history[-1]["epoch"], out_dir / "best.pt"
    try:
        found = load_checkpoint(best_path)["epoch"] if best_path.is_file() else None
    except CheckpointError:
        found = "unreadable"
    if found == best_epoch:
        return None
    if best_epoch == last_epoch:
        _copy_atomic(last_path, best_path)
        return _("best.pt restored from last.pt (epoch {epoch}, the best; best.pt held {found})").format(
            epoch=best_epoch, found=_("unreadable") if found == "unreadable" else found or _("nothing"))
    return _("best.pt holds epoch {found} but the best epoch was {epoch}, whose weights were not kept; "
             "best.pt will be replaced by the next epoch that beats it").format(
               found=_("unreadable") if found == "unreadable" else found, epoch=best_epoch)


def train(model: nn.Module, train_set, val_set, config: TrainConfig | None = None, loss_fn=None,
          resume: bool | None = None, **extra) -> History:
    """Train ``model`` on ``train_set``, evaluating on ``val_set`` after every epoch.

    ``loss_fn(model, images, labels) -> (loss, logits)`` replaces the default label-smoothed
    cross-entropy (distillation uses this). With ``config.out_dir`` it writes ``last.pt`` every
    epoch and ``best.pt`` at the best ``val_acc``; ``resume=True`` (or ``config.resume``) continues
    from ``last.pt``. ``extra`` plain values (e.g. ``classes=...``) go into the checkpoints.
    Returns the :class:`History`; raises :class:`NonFiniteLossError` if the loss stops being finite.

    ``out_dir`` is checked before the first step (a folder, writable, room for the checkpoints).
    A resume whose settings differ from the saved run's raises ``ValueError`` naming them; a resume
    with no ``last.pt`` yet says so on stderr and starts at epoch 1. A failed checkpoint write
    raises :class:`CheckpointWriteError`; the checkpoints written before stay intact.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    resume = config.resume if resume is None else resume
    out_dir = Path(config.out_dir) if config.out_dir else None
    if resume and out_dir is None:
        raise ValueError(_("resume=True needs config.out_dir (the folder holding last.pt)."))
    info = init_from_env(config.device)  # one process unless started by torchrun
    device = info.device
    # Rank 0 seeds as a single process does; other ranks draw different dropout/augmentation.
    torch.manual_seed(config.seed + info.rank)
    random.seed(config.seed + info.rank)
    model.to(device)
    ddp_model = wrap_model(model, info)  # DDP copies rank 0's weights to every rank
    forward_model = torch.compile(ddp_model) if config.compile else ddp_model
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    steps_per_epoch = len(make_loader(train_set, config.batch_size, True, info))  # ceil(ceil(n / N) / B)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    use_scaler = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    history, start_epoch, checkpoint = History(), 0, None
    last_path = out_dir / "last.pt" if out_dir else None
    resuming = bool(resume and last_path.is_file())
    if out_dir:  # found now, not after an epoch of training: a bad folder, no permission, a full disk
        problem = None
        if info.is_main:
            try:
                _prepare_out_dir(out_dir, _checkpoint_bytes(model, optimizer) * (1 if resuming else 2))
            except ValueError as error:
                problem = error
        if not all_ranks(problem is None, info):
            raise problem or ValueError(_("Rank 0 cannot write the checkpoints to --out; see its message."))
    if resume and not resuming and info.is_main:
        print(_("note: resume: no checkpoint at {path!r} yet; starting a new run at epoch 1.").format(
            path=str(last_path)), file=sys.stderr)
    if resuming:
        try:
            checkpoint = load_checkpoint(last_path, model, map_location=device)
        except CheckpointError as error:
            raise CheckpointError(_("Cannot resume: {error}").format(error=error)) from None
        _check_resume(checkpoint, config, steps_per_epoch, last_path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        history, start_epoch = History(checkpoint["history"]), checkpoint["epoch"]
        _set_rng_state(checkpoint["rng"])
        note = _reconcile_best(out_dir, last_path, history) if info.is_main else None
        if note:
            print(_("note: resume: {note}.").format(note=note), file=sys.stderr)
    best_acc = history.best()["val_acc"] if history else -1.0
    ema = None
    if config.ema_decay:  # an exponential moving average of the weights, saved with the checkpoints
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if checkpoint is not None and checkpoint.get("ema") is not None:
            ema.load_state_dict(checkpoint["ema"])
        elif checkpoint is not None and info.is_main:
            print(_("note: resume: last.pt holds no average of the weights (written by an older version); the "
                    "EMA restarts from the current weights."), file=sys.stderr)
    last_good = str(last_path) if resuming else None
    if start_epoch >= config.epochs and config.progress and info.is_main:
        print(_("note: resume: {path!r} already holds all {epochs} epochs; nothing to train.").format(
            path=str(last_path), epochs=config.epochs), file=sys.stderr)

    for epoch in range(start_epoch, config.epochs):
        start = time.perf_counter()
        # Seeded per epoch: the data order of epoch e is the same with or without a resume.
        loader = make_loader(train_set, config.batch_size, True, info, seed=config.seed, epoch=epoch,
                             num_workers=config.num_workers)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=_("epoch {epoch}/{epochs}").format(epoch=epoch + 1, epochs=config.epochs), leave=False,
                   disable=not (config.progress and info.is_main))
        for step, (images, labels) in enumerate(bar):
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, _amp_dtype(device), enabled=config.amp):
                loss, logits = _forward(loss_fn, forward_model, images, labels)
            if not all_ranks(torch.isfinite(loss), info):
                raise NonFiniteLossError(_non_finite_message(
                    loss, images, epoch + 1, step, epoch * steps_per_epoch + step,
                    scheduler.get_last_lr()[0], config, last_good))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            total_loss += loss.item() * len(labels)
            correct += (_logits(logits).argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        totals = reduce_metrics({"loss": total_loss, "correct": correct, "seen": seen}, info)
        train_loss, train_acc = totals["loss"] / totals["seen"], totals["correct"] / totals["seen"]
        val = evaluate(ema.module if ema is not None else model, val_set, batch_size=max(256, config.batch_size),
                       device=device, amp=config.amp)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val["loss"], "val_acc": val["accuracy"],
                        "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start})
        if out_dir and info.is_main:
            state = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                         epoch=epoch + 1, history=history, config=config, **extra)
            if ema is not None:
                state["ema"] = ema.state_dict()
            # last.pt first, then best.pt as a copy of it: a kill in between leaves last.pt holding the
            # best weights, and the next resume copies them over (_reconcile_best).
            target = last_path
            try:
                save_checkpoint(last_path, **state)
                last_good = str(last_path)
                if val["accuracy"] > best_acc:
                    target = out_dir / "best.pt"
                    _copy_atomic(last_path, target)
            except OSError as error:
                if target != last_path or last_good:
                    kept = _("The checkpoints already written are intact (last.pt holds epoch "
                             "{epoch}); free some space (or fix the folder), "
                             "then continue with --resume (resume=True).").format(
                               epoch=epoch + 1 if target != last_path else epoch)
                else:
                    kept = _("No epoch had been saved yet; free some space (or fix the folder) and run again.")
                raise CheckpointWriteError(_("Could not write {path!r} after epoch {epoch} "
                                             "({why}). {kept}").format(
                                               path=str(target), epoch=epoch + 1, why=error.strerror or error,
                                               kept=kept)) from error
        best_acc = max(best_acc, val["accuracy"])
        if config.progress and info.is_main:
            r = history[-1]
            print(_("epoch {epoch}/{epochs}: train loss {train_loss:.4f} acc {train_acc:.2%}, "
                    "val loss {val_loss:.4f} acc {val_acc:.2%} ({seconds:.1f} s)").format(
                      epoch=r["epoch"], epochs=config.epochs, train_loss=r["train_loss"], train_acc=r["train_acc"],
                      val_loss=r["val_loss"], val_acc=r["val_acc"], seconds=r["seconds"]), file=sys.stderr)
    if ema is not None:  # the model ends with the averaged weights, the ones its val_acc measured
        model.load_state_dict(ema.module.state_dict())
    return history


# --- plots -----------------------------------------------------------------------------------------

def plot_history(history, figsize=(8, 3)):
    """Learning curves: loss and accuracy per epoch, train vs validation. Returns the figure."""
    import matplotlib.pyplot as plt

    history = History(history)
    epochs = history.column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=figsize)
    ax_loss.plot(epochs, history.column("train_loss"), "o-", label="train (smoothed labels)")
    ax_loss.plot(epochs, history.column("val_loss"), "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * a for a in history.column("train_acc")], "o-", label="train")
    ax_acc.plot(epochs, [100 * a for a in history.column("val_acc")], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- models for the data sets, and the command line -----------------------------------------------

# Overrides of the "micro" preset sized for each data set (CPU-friendly).
MODEL_PRESETS = {
    "digits": dict(image_size=16, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
                   num_attention_heads=4, intermediate_size=128, num_classes=10),
    "shapes": dict(image_size=32, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=4,
                   num_attention_heads=4, intermediate_size=128, num_classes=5),
}


def build_model(name: str, image_size: int | None = None, num_channels: int | None = None,
                num_classes: int | None = None, **overrides):
    """A :class:`~vit_lesson.model.ViT` from a data preset (``digits``, ``shapes``) or a paper preset
    (``micro``, ``tiny``, ...), with its input size, channels and classes set to fit the data."""
    from .model import ViT, get_config

    base = dict(MODEL_PRESETS[name]) if name in MODEL_PRESETS else {}
    fit = dict(image_size=image_size, num_channels=num_channels, num_classes=num_classes)
    base.update({k: v for k, v in fit.items() if v is not None}, **overrides)
    return ViT(get_config("micro" if name in MODEL_PRESETS else name, **base))


def _data_shape(dataset):
    image, _label = dataset[0]
    return image.shape[0], image.shape[-1]


def _classes(dataset) -> list[str]:
    return list(getattr(dataset, "classes", None) or getattr(getattr(dataset, "dataset", None), "classes", []))


# The options of `train` that shape a run, with their defaults. Left out on --resume, they take the
# saved run's values; given with another value, the resume is refused (it would not continue exactly).
CLI_TRAIN_DEFAULTS = dict(epochs=10, batch_size=64, lr=3e-4, weight_decay=0.01, warmup_epochs=1.0,
                          label_smoothing=0.1, amp=False, seed=0)
CLI_RUN_DEFAULTS = dict(data="digits", model="digits", image_size=None, augment=True)


def _resolve_train_options(args) -> None:
    """Fill the options not given: from OUT/last.pt on --resume, else the defaults; refuse changes."""
    out = Path(args.out)
    last = out / "last.pt"
    saved = {}
    if args.resume and last.is_file():
        try:
            checkpoint = load_checkpoint(last)
        except CheckpointError as error:
            raise CheckpointError(_("Cannot resume: {error}").format(error=error)) from None
        config = checkpoint.get("train_config") or {}
        cli = checkpoint.get("cli") or {}
        saved = {k: config[k] for k in CLI_TRAIN_DEFAULTS if k in config}
        saved.update({k: cli[k] for k in CLI_RUN_DEFAULTS if k in cli})
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
    for name, default in {**CLI_TRAIN_DEFAULTS, **CLI_RUN_DEFAULTS}.items():
        if getattr(args, name) is None:
            setattr(args, name, saved.get(name, default))


def _cli_train(args) -> int:
    from .data import load_datasets
    from .distributed import cleanup, init_from_env
    from .model import count_parameters

    _resolve_train_options(args)
    # Settings first: a bad value is one line before any data is loaded.
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                         amp=args.amp, seed=args.seed, out_dir=args.out, progress=not args.no_progress,
                         resume=args.resume)
    _prepare_out_dir(Path(args.out), 0)  # --out is a writable folder, before any data is loaded
    info = init_from_env()  # train() finds the group already joined and reuses it
    image_size = args.image_size or MODEL_PRESETS.get(args.model, {}).get("image_size")
    train_set, test_set = load_datasets(args.data, image_size, args.data_dir, augment=args.augment)
    channels, size = _data_shape(train_set)
    classes = _classes(train_set)
    if len(classes) < 2:
        raise ValueError(_("--data {data} has {count} class(es); a classifier needs at least two.").format(
            data=args.data, count=len(classes)))
    torch.manual_seed(args.seed)  # the same command gives the same model on every run (and rank)
    model = build_model(args.model, size, channels, len(classes))
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
        model = build_model(args.model, saved.get("image_size"), saved.get("channels"), len(checkpoint.get("classes", [])) or None)
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
    from .model import PRESETS

    models = [*MODEL_PRESETS, *PRESETS]
    p = subparsers.add_parser(
        "train", help=_("train a ViT on digits, shapes, your own image folder or CIFAR-10"),
        description=_("Train a ViT and write checkpoints (last.pt every epoch, best.pt) to --out. "
                      "Example: python -m vit_lesson train --data digits --model digits --epochs 30 --out runs/digits"))
    p.add_argument("--data", choices=DATASETS,
                   help=_("digits (scikit-learn, bundled), shapes (generated), folder (--data-dir "
                          "root/class_x/xxx.png), cifar10 (downloads to --data-dir); default digits"))
    p.add_argument("--data-dir", help=_("image folder (for --data folder) or CIFAR-10 folder"))
    p.add_argument("--model", choices=models,
                   help=_("model preset: digits/shapes (small, for CPU) or a paper preset; its image size, channels "
                          "and classes are set from the data (default: digits)"))
    p.add_argument("--image-size", type=int, help=_("resize images to this (default: the preset's, or 32)"))
    d = CLI_TRAIN_DEFAULTS  # the defaults are applied later, so that --resume can tell what was given
    default = _("default {value}")
    p.add_argument("--epochs", type=int, help=default.format(value=d["epochs"]))
    p.add_argument("--batch-size", type=int, help=default.format(value=d["batch_size"]))
    p.add_argument("--lr", type=float, help=_("peak learning rate after warmup (default {value})").format(value=d["lr"]))
    p.add_argument("--weight-decay", type=float, help=default.format(value=d["weight_decay"]))
    p.add_argument("--warmup-epochs", type=float, help=default.format(value=f"{d['warmup_epochs']:g}"))
    p.add_argument("--label-smoothing", type=float, help=default.format(value=d["label_smoothing"]))
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help=_("light data augmentation on the training set (default: on; --no-augment to turn off)"))
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help=_("mixed precision (bfloat16 on CPU, float16 on CUDA; default off)"))
    p.add_argument("--seed", type=int, help=default.format(value=d["seed"]))
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
    e.add_argument("--model", choices=models,
                   help=_("build this preset and load the weights into it (default: rebuild from the checkpoint's "
                          "config)"))
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(func=_guarded(_cli_evaluate))
