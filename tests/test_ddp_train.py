"""``torchrun --nproc_per_node=2 -m vit_lesson train``: the course's trainer, data-parallel on two CPU processes.

That the two ranks step exactly like one process is proven in tests/test_distributed.py; this
test checks how ``vit_lesson/train.py`` and ``vit_lesson/cli.py`` use ``vit_lesson.distributed``:
the command runs, rank 0 alone prints and writes checkpoints, the checkpoint is the plain model's,
and an epoch has the per-rank number of steps.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vit_lesson.checkpoint import load_model
from vit_lesson.train import evaluate

ROOT = Path(__file__).parents[1]


def test_two_processes_train_and_rank_0_alone_reports_and_saves(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "vit_lesson", "train", "--data", "digits", "--image-size", "8", "--epochs", "2",
               "--batch-size", "32", "--out", str(tmp_path), "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("data digits:") == 1  # printed by rank 0 only
    assert result.stdout.count("best test accuracy") == 1

    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in checkpoint["model"])
    train_size = 1437  # digits' fixed 80 % split
    steps_per_epoch = math.ceil(math.ceil(train_size / 2) / 32)  # each rank sees half of every epoch
    assert checkpoint["scheduler"]["last_epoch"] == 2 * steps_per_epoch

    from vit_lesson.data import digits_datasets

    model, _ = load_model(tmp_path / "last.pt")
    _, test_set = digits_datasets(8)
    accuracy = evaluate(model, test_set)["accuracy"]
    assert accuracy == pytest.approx(checkpoint["history"][-1]["val_acc"], abs=1e-6)  # the trained weights
