"""vit_lesson.distributed: two CPU processes (torchrun, gloo) train exactly as one process does.

The test launches this file under ``torchrun --standalone --nproc_per_node=2``; each rank runs
:func:`run` (a few DDP steps of a tiny ViT on digits-like data, then an evaluation) and saves
what it ended with. The reference is :func:`run` in one process reading the same permutation of
the data in batches of the global size (2 x the per-rank batch): DDP averages the two ranks'
gradients, which is the gradient of the combined batch, so both must end at the same weights
and the same evaluation sums.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from vit_lesson.distributed import (
    DistInfo,
    all_ranks,
    cleanup,
    init_from_env,
    make_loader,
    reduce_metrics,
    unwrap,
    wrap_model,
)
from vit_lesson.model import ViT, ViTConfig

BATCH, EPOCHS = 8, 2  # per rank; 64 training images -> 4 steps of 2 x 8 per epoch
CONFIG = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=32, num_classes=10)


def digits_like(n: int, seed: int) -> TensorDataset:
    """``n`` random 8x8 one-channel images, the label readable from the mean of a quarter."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 8, 8, generator=g)
    labels = (images[:, 0, :4, :4].mean((1, 2)) * 20 + 5).long().clamp(0, 9)
    return TensorDataset(images, labels)


def combined_batches(dataset, batch_size, shuffle, info, seed, epoch):
    """One process reading the permutation that two ranks' ``DistributedSampler`` deals out."""
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def run(info: DistInfo, batch_size: int, train_loader=make_loader) -> tuple[dict, dict]:
    """Train a few steps, evaluate; return (the final state dict, the reduced evaluation sums)."""
    torch.manual_seed(info.rank)  # differs per rank on purpose: DDP must copy rank 0's weights
    model = wrap_model(ViT(CONFIG).to(info.device), info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train_set, test_set = digits_like(64, seed=1), digits_like(37, seed=2)  # 37: uneven shards
    for epoch in range(EPOCHS):
        for images, labels in train_loader(train_set, batch_size, True, info, seed=3, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net = unwrap(model).eval()
    sums = {"loss": 0.0, "correct": 0, "count": 0}
    with torch.no_grad():
        for images, labels in make_loader(test_set, 5, False, info):
            logits = net(images)
            sums["loss"] += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            sums["correct"] += (logits.argmax(1) == labels).sum().item()
            sums["count"] += len(labels)
    return net.state_dict(), reduce_metrics(sums, info)


def worker(out_dir: str) -> None:
    info = init_from_env(device="cpu")
    assert info.distributed and info.world_size == 2 and info.is_main == (info.rank == 0)
    state, totals = run(info, BATCH)
    votes = [all_ranks(True, info), all_ranks(info.rank == 0, info), all_ranks(torch.tensor(True), info)]
    torch.save({"state": state, "totals": totals, "votes": votes}, Path(out_dir) / f"rank{info.rank}.pt")
    cleanup(info)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               __file__, str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def single():
    return run(DistInfo(), 2 * BATCH, combined_batches)


def test_ranks_hold_identical_parameters(ranks):
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_train_like_one_process_with_the_combined_batch(ranks, single):
    state, _ = single
    assert set(ranks[0]["state"]) == set(state)  # unwrap: no "module." prefix
    for key, value in state.items():
        torch.testing.assert_close(ranks[0]["state"][key], value, atol=1e-5, rtol=1e-4, msg=key)
    assert not torch.equal(state["head.weight"], ViT(CONFIG).state_dict()["head.weight"])  # it did train


def test_reduced_metrics_equal_the_single_process_ones(ranks, single):
    _, totals = single
    assert totals["count"] == 37
    for rank in ranks:  # all_reduce: every rank has the totals
        assert rank["totals"]["count"] == 37 and rank["totals"]["correct"] == totals["correct"]
        assert rank["totals"]["loss"] == pytest.approx(totals["loss"], rel=1e-5)


def test_all_ranks_agree_on_a_vote(ranks):
    assert ranks[0]["votes"] == ranks[1]["votes"] == [True, False, True]  # rank 1 said no to the second


def test_single_process_fallback(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_from_env(device="cpu")
    assert info == DistInfo() and not info.distributed
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, info) is model and unwrap(model) is model
    assert reduce_metrics({"count": 3, "loss": torch.tensor(1.5)}, info) == {"count": 3.0, "loss": 1.5}
    assert all_ranks(True, info) and not all_ranks(torch.tensor(False), info)
    cleanup(info)


def test_loaders_shard_exactly_and_pad_evenly():
    data = TensorDataset(torch.arange(11))
    ranks = [DistInfo(rank=r, world_size=2, is_main=r == 0) for r in range(2)]
    shards = [[int(i) for (batch,) in make_loader(data, 4, False, info) for i in batch] for info in ranks]
    assert sorted(shards[0] + shards[1]) == list(range(11))  # evaluation: each sample exactly once
    train = [[int(i) for (batch,) in make_loader(data, 4, True, info, seed=0, epoch=1) for i in batch]
             for info in ranks]
    assert len(train[0]) == len(train[1]) == 6 and set(train[0] + train[1]) == set(range(11))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=0)
    sampler.set_epoch(1)
    assert list(sampler)[:10] == [x for pair in zip(*train) for x in pair][:10]  # one permutation, dealt out


def test_single_process_loader_is_the_plain_seeded_dataloader():
    data = TensorDataset(torch.arange(20))
    plain = DataLoader(data, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(3 + 2))
    ours = make_loader(data, 6, True, DistInfo(), seed=3, epoch=2)
    assert [b.tolist() for (b,) in ours] == [b.tolist() for (b,) in plain]
    other_epoch = make_loader(data, 6, True, DistInfo(), seed=3, epoch=3)
    assert [b.tolist() for (b,) in other_epoch] != [b.tolist() for (b,) in plain]
    assert [b.tolist() for (b,) in make_loader(data, 6, False, DistInfo())][0] == [0, 1, 2, 3, 4, 5]


def test_errors_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="pad=False"):
        make_loader(TensorDataset(torch.arange(4)), 2, True, DistInfo(), pad=False)
    with pytest.raises(ValueError, match="per process"):
        make_loader(TensorDataset(torch.arange(4)), 0, False, DistInfo())
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        init_from_env()


if __name__ == "__main__":  # a rank, started by the `ranks` fixture through torchrun
    worker(sys.argv[1])
