"""Notebook 06: a training loop you can trust.

The blog post's recipe, checked: AdamW (no decay on norms, biases and what ``no_weight_decay()``
names), linear warmup then cosine decay, updated every step; label smoothing; gradient clipping;
mixed precision with ``torch.amp`` (bfloat16 on CPU, float16 + ``GradScaler`` on CUDA). A run can be
resumed exactly (:mod:`vit_lesson.checkpoint`); what can go wrong is found early and said in one
sentence (:mod:`vit_lesson._train_faults`).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ._train_faults import _forward, _non_finite_message, _prepare_run, _validate_config, _write_error_message
from .checkpoint import CheckpointWriteError, _copy_atomic, save_checkpoint
from .distributed import all_ranks, init_from_env, make_loader, reduce_metrics, wrap_model
from .history import History
from .i18n import _

__all__ = ["TrainConfig", "NonFiniteLossError", "warmup_cosine_lr", "make_scheduler",
           "parameter_groups", "make_optimizer", "cross_entropy_loss", "predict", "evaluate", "train"]


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
        _validate_config(self)  # one sentence per bad field, naming its option


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped (the last good checkpoint is kept)."""


def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    Linear warmup ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (the
    first step already learns, the last reaches ``base_lr``), then a half cosine from ``base_lr`` at
    ``step == warmup_steps`` to ``min_lr`` at ``step == total_steps`` (the value after the last update).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step warmup + cosine as a ``LambdaLR`` (a multiplier of each group's base lr)."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    min_ratio = config.min_lr / config.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_lr(step, 1.0, warmup, total, min_ratio))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay on weight matrices only.

    No decay on anything with ``ndim <= 1`` (LayerNorm weights, all biases) and on what the model's
    ``no_weight_decay()`` names (timm's hook; ours: ``pos_embed``, ``cls_token``, ``dist_token``):
    shrinking them towards zero only hurts (a LayerNorm gain of 0 silences its features; a position
    embedding of 0 forgets positions). Frozen parameters (``requires_grad=False``) are left out.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    trained = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    decay = [param for name, param in trained if param.ndim > 1 and name not in skip]
    no_decay = [param for name, param in trained if param.ndim <= 1 or name in skip]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, fused where torch has the kernel for the device (CPU from
    torch 2.4: a step of the digits model takes 0.9 ms instead of 3.4 ms)."""
    device = next(model.parameters()).device.type
    fused = device == "cuda" or (device == "cpu" and torch.__version__ >= (2, 4))  # torch's TorchVersion compares
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, fused=fused or None)


def cross_entropy_loss(label_smoothing: float = 0.0):
    """The default ``loss_fn(model, images, labels) -> (loss, logits)``."""

    def loss_fn(model, images, labels):
        logits = _logits(model(images))
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing), logits

    return loss_fn


def _logits(output):
    """A model's logits, whether it returns a tensor or a tuple/NamedTuple whose first item is."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _amp_dtype(device: torch.device):
    return torch.float16 if device.type == "cuda" else torch.bfloat16


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
                logits = _forward(lambda m, x, _y: _logits(m(x)), model, images, labels)  # dtype errors explained
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


def train(model: nn.Module, train_set, val_set, config: TrainConfig | None = None, loss_fn=None,
          resume: bool | None = None, **extra) -> History:
    """Train ``model`` on ``train_set``, evaluating on ``val_set`` after every epoch; returns the :class:`History`.

    ``loss_fn(model, images, labels) -> (loss, logits)`` replaces the default label-smoothed
    cross-entropy (distillation uses this). With ``config.out_dir`` it writes ``last.pt`` every
    epoch and ``best.pt`` at the best ``val_acc``; ``resume=True`` (or ``config.resume``) continues
    from ``last.pt`` exactly, or refuses. ``extra`` plain values (``classes=...``) go into the
    checkpoints. Raises :class:`NonFiniteLossError` if the loss stops being finite, and
    :class:`~vit_lesson.checkpoint.CheckpointWriteError` if a write fails (the files before stay intact).
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
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    last_path = out_dir / "last.pt" if out_dir else None
    # Found now, not after an epoch: a bad folder, no permission, a full disk, a resume that changes the run.
    checkpoint = _prepare_run(out_dir, resume, config, steps_per_epoch, info, model, optimizer, scheduler, scaler)
    history = History(checkpoint["history"] if checkpoint else [])
    start_epoch = checkpoint["epoch"] if checkpoint else 0
    best_acc = history.best()["val_acc"] if history else -1.0
    ema = None
    if config.ema_decay:  # an exponential moving average of the weights, saved with the checkpoints
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if checkpoint and checkpoint.get("ema") is not None:  # else _resume said it restarts
            ema.load_state_dict(checkpoint["ema"])
    last_good = str(last_path) if checkpoint else None

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
            state = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                         history=history, config=config, ema=ema.state_dict() if ema is not None else None, **extra)
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
                saved = epoch + 1 if target != last_path else (epoch if last_good else 0)
                raise CheckpointWriteError(_write_error_message(error, target, epoch + 1, saved)) from error
        best_acc = max(best_acc, val["accuracy"])
        if config.progress and info.is_main:
            print(_("epoch {epoch}/{epochs}: train loss {train_loss:.4f} acc {train_acc:.2%}, "
                    "val loss {val_loss:.4f} acc {val_acc:.2%} ({seconds:.1f} s)").format(
                      epochs=config.epochs, **history[-1]), file=sys.stderr)
    if ema is not None:  # the model ends with the averaged weights, the ones its val_acc measured
        model.load_state_dict(ema.module.state_dict())
    return history
