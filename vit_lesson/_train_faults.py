"""What :func:`vit_lesson.train.train` says when something goes wrong, and the checks it runs first.

Each fault is found as early as it can be and named in one sentence with what to do: a loss that
is no longer finite, images of the wrong dtype, an ``out_dir`` that cannot hold the checkpoints
(checked before the first step), a resume that would change the run (refused: a resumed run
continues exactly), and a ``best.pt`` left one epoch behind by a kill (repaired on resume).
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, _copy_atomic, _remove_stale_temporaries, _set_rng_state, load_checkpoint
from .distributed import all_ranks, unwrap
from .i18n import _

# The settings that decide a run's trajectory: a resume must use the saved values of all of them.
RUN_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "min_lr", "label_smoothing",
              "grad_clip", "amp", "seed", "ema_decay")


def _validate_config(config) -> None:
    """Refuse a :class:`~vit_lesson.train.TrainConfig` value that would fail later (or silently), in one sentence."""
    # Each message names the field and its command-line option, what is allowed, and a typical value.
    for name, least, example in (("epochs", 1, "10"), ("batch_size", 1, "64"), ("seed", 0, "0"),
                                 ("num_workers", 0, "0")):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(_("{option} must be a whole number >= {least}, got {value!r}; "
                               "use e.g. {example}.").format(option=_option(name), least=least, value=value,
                                                             example=example))
    for name, example in (("lr", lambda: "3e-4"), ("min_lr", lambda: "0"),
                          ("weight_decay", lambda: _("0.01 (0 for none)")),
                          ("warmup_epochs", lambda: _("1 (0 for no warmup)")),
                          ("label_smoothing", lambda: _("0.1 (0 for none)"))):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(_("{option} must be a finite number >= 0, got {value!r}; use e.g. {example}.").format(
                option=_option(name), value=value, example=example()))
    if not config.lr > 0 or config.min_lr > config.lr:
        raise ValueError(_("Need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}; "
                           "use e.g. lr 3e-4 and min_lr 0.").format(lr=config.lr, min_lr=config.min_lr))
    if config.ema_decay is not None and not 0 < config.ema_decay < 1:
        raise ValueError(_("ema_decay must be in (0, 1) or None, got {ema_decay}; use e.g. 0.999.").format(
            ema_decay=config.ema_decay))
    if not config.label_smoothing < 1:
        raise ValueError(_("{option} must be in [0, 1), got {value}; use e.g. 0.1 (0 for none).").format(
            option=_option("label_smoothing"), value=config.label_smoothing))
    clip = config.grad_clip
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                             or not math.isfinite(clip) or clip < 0):
        raise ValueError(_("grad_clip must be a finite number >= 0 or None (no clipping), got {grad_clip!r}; "
                           "use e.g. 1.0.").format(grad_clip=config.grad_clip))


def _option(name: str) -> str:
    """``warmup_epochs`` -> ``warmup_epochs (--warmup-epochs)``: the field and its command-line option."""
    return f"{name} (--{name.replace('_', '-')})"


def _non_finite_message(loss, images, epoch, step, global_step, lr, config, last_good) -> str:
    causes = [] if torch.isfinite(images).all() else [
        _("the input batch itself contains NaN/inf (check the data and its normalisation)")]
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


def _prepare_run(out_dir: Path | None, resume: bool, config, steps_per_epoch: int, info, model: nn.Module, optimizer,
                 scheduler, scaler) -> dict | None:
    """Before the first step: ``out_dir`` can hold the checkpoints (:func:`_prepare_out_dir` on rank 0;
    every rank raises if it failed), and on ``resume`` the run continues from ``last.pt`` (:func:`_resume`).
    Returns the checkpoint resumed from, or None."""
    if out_dir is None:
        return None
    last_path, problem = out_dir / "last.pt", None
    if info.is_main:
        copies = 1 if resume and last_path.is_file() else 2  # best.pt and last.pt (on resume, replaced)
        try:
            _prepare_out_dir(out_dir, _checkpoint_bytes(model, optimizer) * copies)
        except ValueError as error:
            problem = error
    if not all_ranks(problem is None, info):
        raise problem or ValueError(_("Rank 0 cannot write the checkpoints to --out; see its message."))
    return _resume(last_path, config, steps_per_epoch, info, model, optimizer, scheduler, scaler) if resume else None


def _validate_resume(checkpoint: dict, config, steps_per_epoch: int, path: Path) -> None:
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


def _resume(last_path: Path, config, steps_per_epoch: int, info, model, optimizer, scheduler, scaler) -> dict | None:
    """Load ``last_path`` into the run's model, optimiser, scheduler, scaler and RNGs; ``None`` if there
    is no ``last.pt`` yet. Refuses a damaged file, or one whose settings differ from ``config``
    (:func:`_validate_resume`); repairs ``best.pt`` (:func:`_reconcile_best`). Notes go to stderr."""
    def note(text: str) -> None:
        if info.is_main:
            print(text, file=sys.stderr)

    if not last_path.is_file():
        note(_("note: resume: no checkpoint at {path!r} yet; starting a new run at epoch 1.").format(
            path=str(last_path)))
        return None
    try:
        checkpoint = load_checkpoint(last_path, model, map_location=info.device)
    except CheckpointError as error:
        raise CheckpointError(_("Cannot resume: {error}").format(error=error)) from None
    _validate_resume(checkpoint, config, steps_per_epoch, last_path)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_state(checkpoint["rng"])
    repaired = _reconcile_best(last_path.parent, last_path, checkpoint["history"]) if info.is_main else None
    if repaired:
        note(_("note: resume: {note}.").format(note=repaired))
    if config.ema_decay and checkpoint.get("ema") is None:
        note(_("note: resume: last.pt holds no average of the weights (written by an older version); the "
               "EMA restarts from the current weights."))
    if checkpoint["epoch"] >= config.epochs and config.progress:
        note(_("note: resume: {path!r} already holds all {epochs} epochs; nothing to train.").format(
            path=str(last_path), epochs=config.epochs))
    return checkpoint


def _reconcile_best(out_dir: Path, last_path: Path, history) -> str | None:
    """After a kill between writing ``last.pt`` and copying it to ``best.pt`` (a new best epoch), ``best.pt``
    is one best epoch behind and ``last.pt`` holds the missing weights: copy them over. Returns a note of
    what was done (or could not be done), or None."""
    if not history:
        return None
    best_epoch = max(history, key=lambda row: row["val_acc"])["epoch"]  # the first one, on ties
    last_epoch, best_path = history[-1]["epoch"], out_dir / "best.pt"
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


def _write_error_message(error: OSError, path: Path, epoch: int, saved_epoch: int) -> str:
    """Writing ``path`` after ``epoch`` failed; ``saved_epoch`` is the one ``last.pt`` holds (0: none)."""
    if saved_epoch:
        kept = _("The checkpoints already written are intact (last.pt holds epoch "
                 "{epoch}); free some space (or fix the folder), "
                 "then continue with --resume (resume=True).").format(epoch=saved_epoch)
    else:
        kept = _("No epoch had been saved yet; free some space (or fix the folder) and run again.")
    return _("Could not write {path!r} after epoch {epoch} ({why}). {kept}").format(
        path=str(path), epoch=epoch, why=error.strerror or error, kept=kept)
