"""Data-parallel training with ``torch.distributed``: the few pieces a training loop needs.

``torchrun --nproc_per_node=N -m vit_lesson train ...`` starts ``N`` copies of the same program;
each learns from a different slice of every batch, and ``DistributedDataParallel`` averages the
gradients across copies during ``backward()``, so all copies take the same step and hold the same
weights. With a per-process batch ``B``, that is the single-process step with batch ``N * B``.
Run without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here falls back to one
process, so the same training code runs both ways. All communication is ``torch.distributed``'s.

The training loop changes in six places (docs/scaling.md has the code)::

    info = init_from_env()                                   # 1. join the group (or not)
    model = wrap_model(model.to(info.device), info)          # 2. DDP: same start, averaged grads
    loader = make_loader(train_set, B, True, info, seed, epoch)  # 3. this rank's slice, per epoch
    totals = reduce_metrics(sums, info)                      # 4. sums over all ranks
    if info.is_main: save(unwrap(model))                     # 5. print/save on rank 0 only
    cleanup(info)                                            # 6. leave the group

Decisions every rank must take together go through :func:`all_ranks`, e.g. stopping on a
non-finite loss: ``if not all_ranks(torch.isfinite(loss), info): raise ...``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .i18n import _

__all__ = ["DistInfo", "init_from_env", "wrap_model", "make_loader", "reduce_metrics", "all_ranks", "unwrap",
           "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: ``rank`` of ``world_size``, its GPU ``local_rank`` on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True  # rank 0: the one that prints, draws progress bars and writes files

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(_("Environment variable {name}={value!r} must be an integer; torchrun sets it. "
                           "Start the program with torchrun, or unset {name} to run one process.").format(
                             name=name, value=value)) from None


def init_from_env(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    ``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    With ``WORLD_SIZE > 1`` this calls ``torch.distributed.init_process_group`` with the NCCL
    backend on GPUs (one per process: ``cuda:LOCAL_RANK``) or gloo on CPUs. Otherwise it returns a
    single-process ``DistInfo`` on ``device`` (default: CUDA if available, else CPU).
    ``device="cpu"`` forces CPU and gloo even where a GPU is present.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if world_size <= 1:
        return DistInfo(device=torch.device(device) if device is not None
                        else torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(_("LOCAL_RANK={local_rank} but this machine has {count} "
                               "GPU(s): start at most one process per GPU (torchrun --nproc_per_node).").format(
                                 local_rank=local_rank, count=torch.cuda.device_count()))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` unchanged.

    Move the model to ``info.device`` first. DDP copies rank 0's parameters to every rank when it
    is built, so all ranks start from the same weights whatever their random seed.
    """
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``DistributedDataParallel`` and/or ``torch.compile`` wrappers.

    Save ``unwrap(model).state_dict()`` (no ``module.`` or ``_orig_mod.`` prefixes), and evaluate
    with ``unwrap(model)``: its forward pass does not communicate, so ranks may see different
    numbers of evaluation batches.
    """
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, info: DistInfo, seed: int = 0,
                epoch: int = 0, pad: bool | None = None, **loader_kwargs) -> DataLoader:
    """A ``DataLoader`` over this rank's share of ``dataset``; ``batch_size`` is per process.

    One process: ``DataLoader(dataset, batch_size, shuffle, generator=seeded(seed + epoch))``,
    the loader a single-process loop builds anyway, so adopting this changes nothing there.

    Distributed, ``pad=True`` (the default when ``shuffle``, for training): a
    ``DistributedSampler`` permutes the indices with ``seed + epoch`` (the same permutation on
    every rank, a new one each epoch: ``set_epoch``) and deals them out in turn, repeating a few
    samples so every rank has the same number of batches (DDP synchronises every ``backward()``;
    a rank with one batch more would wait forever). The ranks' ``t``-th batches together are the
    ``t``-th batch of size ``world_size * batch_size`` of that permutation.

    Distributed, ``pad=False`` (the default without ``shuffle``, for evaluation): rank ``r`` gets
    samples ``r, r + world_size, ...``, each sample exactly once over all ranks, so the sums that
    :func:`reduce_metrics` adds up are exactly those of one process.
    """
    if batch_size <= 0:
        raise ValueError(_("batch_size must be a positive integer (per process), got {batch_size}.").format(
            batch_size=batch_size))
    pad = shuffle if pad is None else pad
    if shuffle and not pad:
        raise ValueError(_("shuffle=True needs pad=True: shuffled training batches must be dealt out "
                           "evenly. Use pad=False (exact, unpadded shards) for evaluation only."))
    if not info.distributed:
        generator = torch.Generator().manual_seed(seed + epoch) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, **loader_kwargs)
    if pad:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                     shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
    else:
        sampler = range(info.rank, len(dataset), info.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **loader_kwargs)


def reduce_metrics(sums: Mapping[str, float | torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Add up per-rank sums over all ranks (``all_reduce`` with ``SUM``); every rank gets the totals.

    Pass sums, not means: ``{"loss": loss * count, "correct": correct, "count": count}``, then
    divide after reducing (``loss / count``), so ranks with different batch counts weigh right.
    Every rank must pass the same keys.
    """
    names = sorted(sums)
    if not info.distributed:
        return {name: float(sums[name]) for name in names}
    values = torch.tensor([float(sums[name]) for name in names], dtype=torch.float64, device=info.device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(names, values.tolist()))


def all_ranks(flag: bool | torch.Tensor, info: DistInfo) -> bool:
    """``True`` on every rank if ``flag`` is true on every rank, else ``False`` on every rank.

    For decisions all ranks must take together, such as stopping on a non-finite loss: a rank
    that stops alone leaves the others waiting in ``backward()`` for it forever.
    """
    failures = reduce_metrics({"failures": 0.0 if bool(flag) else 1.0}, info)
    return failures["failures"] == 0


def cleanup(info: DistInfo) -> None:
    """Leave the process group (call once at the end, on every rank)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
