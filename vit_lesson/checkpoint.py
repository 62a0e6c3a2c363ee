"""Checkpoints a run can trust: written atomically, read with ``weights_only``, verified by a digest.

A kill or a full disk during :func:`save_checkpoint` leaves the old file or the new one, never half
of one; :func:`load_checkpoint` runs no pickled code, and a damaged file (its SHA-256 no longer
matches, or its weights are not finite) is a :class:`CheckpointError` naming the file instead of
"accuracy 10%". :func:`load_model` rebuilds our models through :func:`vit_lesson.registry.model_from_config`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import random
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from torch import nn

from .i18n import _
from .registry import model_from_config

__all__ = ["CheckpointError", "CheckpointWriteError", "save_checkpoint", "load_checkpoint", "load_model"]


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, truncated, damaged, refused (pickled code) or not a checkpoint."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (a full disk, a vanished folder); the checkpoints already written are intact."""


def _model_config(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)  # ViTConfig or HybridConfig: everything needed to rebuild it
    return asdict(config) if is_dataclass(config) else None


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
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
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
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, scaler=None, epoch: int = 0,
                    history=None, config=None, **extra) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then ``os.replace``.

    Stored: ``model`` (state dict), ``model_config`` (dict, if the model has a ``config``),
    ``model_class``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (finished epochs),
    ``history``, ``rng`` (RNG states), ``train_config`` (``config``, a
    :class:`~vit_lesson.train.TrainConfig`, as a dict) and ``extra`` plain values (``classes``,
    ``data``): plain types only, for ``weights_only``; and a ``checksum``, SHA-256 of all of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(),
        "model_config": _model_config(model),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
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
    """``(model in eval mode, checkpoint)``: one of our models (ViT, DistilledViT, HybridViT) rebuilt from
    the checkpoint's class and config (:func:`vit_lesson.registry.model_from_config`) and its weights.
    Any other model: build it yourself and call ``load_checkpoint(path, model)``."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    model_class = checkpoint.get("model_class") or "vit_lesson.model.ViT"
    if checkpoint.get("model_args"):  # written before HybridConfig held the backbone's settings
        raise ValueError(_("Checkpoint {path!r} was written by an older version (its model's settings are in "
                           "'model_args'); build the model yourself and call load_checkpoint(path, model), or "
                           "train again.").format(path=str(path)))
    try:
        model = model_from_config(model_class, checkpoint.get("model_config"))
    except ValueError as error:
        raise ValueError(_("Checkpoint {path!r}: {error}").format(path=str(path), error=error)) from None
    _load_weights(model, checkpoint, path)
    return model.eval(), checkpoint
