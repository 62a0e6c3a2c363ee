"""Training and the CLI under faults (issue 17): nothing lost, nothing silently wrong, one clear line.

Every case of the issue, reproduced: kills between and during checkpoint writes (one a real
SIGKILL), stale temporary files, a resume with other settings, damaged / truncated / empty / text /
malicious checkpoints, a one-class folder, bad model and training settings, a resume with nothing
to resume, a corrupt image, a full disk, an ``--out`` that cannot be written, and images of the
wrong dtype. Tiny models and few steps: the file runs in well under a minute on one thread.
"""

import copy
import errno
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from vit_lesson import _train_faults as faults_module
from vit_lesson import checkpoint as checkpoint_module
from vit_lesson import cli as cli_module
from vit_lesson import train as train_module
from vit_lesson.__main__ import main
from vit_lesson.checkpoint import CheckpointError, CheckpointWriteError, load_checkpoint, load_model, save_checkpoint
from vit_lesson.data import digits_datasets, image_folder_dataset, image_folder_datasets
from vit_lesson.factory import create_model
from vit_lesson.model import ViT, ViTConfig
from vit_lesson.registry import get_config
from vit_lesson.train import TrainConfig, evaluate, predict, train

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def digits8():
    """256 training and 128 test digits at 8x8."""
    train_set, test_set = digits_datasets(8)
    return Subset(train_set, range(256)), Subset(test_set, range(128))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("digits", image_size=8, num_channels=1, num_classes=10, patch_size=4, hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def config(**kw):
    return TrainConfig(**{**dict(epochs=3, batch_size=64, lr=1e-2, warmup_epochs=1, progress=False), **kw})


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_line_error(capsys, argv, *words, code=2):
    """The CLI exits with ``code`` and prints exactly one line on stderr, no traceback; returns stdout."""
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return captured.out


def copy_run(source, folder):
    """A copy of a run's folder (its last.pt and best.pt) to break or resume."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("last.pt", "best.pt"):
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


CLI_RUN = ["train", "--data", "digits", "--image-size", "8", "--batch-size", "256", "--no-progress"]


@pytest.fixture(scope="module")
def reference(digits8, tmp_path_factory):
    """An uninterrupted 3-epoch run: its folder and history."""
    out = tmp_path_factory.mktemp("reference")
    history = train(tiny_model(), *digits8, config(out_dir=str(out)))
    return out, history


class Killed(BaseException):
    """What a kill does to the loop: it stops wherever it is (not an Exception: nothing catches it)."""


# --- data lost ------------------------------------------------------------------------------------

def _best_epochs(history):
    """The epochs (1-based) at which best.pt was rewritten: each new maximum of val_acc."""
    best, epochs = -1.0, []
    for row in history:
        if row["val_acc"] > best:
            best = row["val_acc"]
            epochs.append(row["epoch"])
    return epochs


@pytest.mark.parametrize("when", ["during last.pt", "after last.pt, before best.pt", "during best.pt"])
def test_a_kill_at_a_checkpoint_write_loses_no_best_weights(digits8, reference, tmp_path, monkeypatch, when):
    ref_out, ref_history = reference
    epoch = _best_epochs(ref_history)[-1]  # an epoch whose best.pt write matters
    assert epoch >= 2
    saves = {"n": 0}
    real_save, real_copy = train_module.save_checkpoint, train_module._copy_atomic

    def save(path, **state):
        saves["n"] += 1
        if when == "during last.pt" and saves["n"] == epoch:
            raise Killed
        return real_save(path, **state)

    def copy_best(source, path):
        if saves["n"] == epoch:
            if when == "during best.pt":
                (path.parent / f".{path.name}.tmp999999").write_bytes(source.read_bytes()[:100])
            raise Killed
        return real_copy(source, path)

    monkeypatch.setattr(train_module, "save_checkpoint", save)
    monkeypatch.setattr(train_module, "_copy_atomic", copy_best)
    with pytest.raises(Killed):
        train(tiny_model(), *digits8, config(out_dir=str(tmp_path)))
    monkeypatch.undo()

    history = train(tiny_model(seed=5), *digits8, config(out_dir=str(tmp_path), resume=True))
    assert history == [{**row, "seconds": history[i]["seconds"]} for i, row in enumerate(ref_history)]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == history.best()["epoch"] == ref_history.best()["epoch"]
    assert same_weights(best["model"], weights(ref_out / "best.pt"))
    assert same_weights(weights(tmp_path / "last.pt"), weights(ref_out / "last.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def test_a_real_sigkill_during_the_best_pt_write_then_resume(digits8, reference, tmp_path):
    """A real SIGKILL half way through writing best.pt (epoch 2): no finally block runs."""
    ref_out, ref_history = reference
    epoch = _best_epochs(ref_history)[-1]
    train_set, test_set = digits8  # handed over as tensors: the child needs no scikit-learn
    torch.save({name: (ds.dataset.images_raw[ds.indices], ds.dataset.targets[ds.indices], ds.dataset.mean,
                       ds.dataset.std) for name, ds in (("train", train_set), ("test", test_set))},
               tmp_path / "data.pt")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(f"""
        import os, shutil, signal, torch
        from vit_lesson.checkpoint import load_checkpoint
        from vit_lesson.data import DIGITS_CLASSES, TensorImageDataset
        from vit_lesson.factory import create_model
        from vit_lesson.train import TrainConfig, train
        torch.set_num_threads(1)
        data = torch.load({str(tmp_path / "data.pt")!r}, weights_only=True)
        train_set, test_set = (TensorImageDataset(x, y, DIGITS_CLASSES, m, s) for x, y, m, s in data.values())
        def copyfileobj(src, dst, length=0):  # best.pt at epoch {epoch}: write half of it, then die
            data = src.read()
            dst.write(data[: len(data) // 2]); dst.flush()
            if load_checkpoint(src.name)["epoch"] == {epoch}:
                os.kill(os.getpid(), signal.SIGKILL)
            dst.write(data[len(data) // 2:])
        shutil.copyfileobj = copyfileobj
        torch.manual_seed(0)
        model = create_model("digits", image_size=8, num_channels=1, num_classes=10, patch_size=4, hidden_size=16,
                             num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
        train(model, train_set, test_set,
              TrainConfig(epochs=3, batch_size=64, lr=1e-2, warmup_epochs=1, progress=False,
                          out_dir={str(tmp_path / "run")!r}))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    run = tmp_path / "run"
    assert any(p.name.startswith(".best.pt.tmp") for p in run.iterdir())  # what the kill left behind
    assert load_checkpoint(run / "last.pt")["epoch"] == epoch

    history = train(tiny_model(seed=5), *digits8, config(out_dir=str(run), resume=True))
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]
    assert load_checkpoint(run / "best.pt")["epoch"] == history.best()["epoch"] == ref_history.best()["epoch"]
    assert same_weights(weights(run / "best.pt"), weights(ref_out / "best.pt"))
    assert same_weights(weights(run / "last.pt"), weights(ref_out / "last.pt"))


def test_stale_temporary_files_are_removed_live_ones_kept(digits8, tmp_path):
    dead = 999_999
    while True:  # a PID that no process has
        try:
            os.kill(dead, 0)
            dead -= 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead -= 1
    tmp_path.joinpath(f".last.pt.tmp{dead}").write_bytes(b"half")
    tmp_path.joinpath(f".best.pt.tmp{dead}").write_bytes(b"half")
    live = tmp_path / f".last.pt.tmp{os.getppid()}"  # a live process may be writing it now
    live.write_bytes(b"half")
    train(tiny_model(), *digits8, config(epochs=1, out_dir=str(tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "best.pt", "last.pt"])


# --- silently wrong -------------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (dict(lr=3e-2), "lr 0.01 -> 0.03"),
    (dict(batch_size=32), "batch_size 64 -> 32"),
    (dict(seed=1), "seed 0 -> 1"),
    (dict(epochs=5), "epochs 3 -> 5"),
    (dict(weight_decay=0.1, warmup_epochs=0), "weight_decay 0.01 -> 0.1; warmup_epochs 1 -> 0"),
])
def test_a_resume_with_other_settings_is_refused(digits8, reference, tmp_path, change, words):
    copy_run(reference[0], tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="Cannot resume") as info:
        train(tiny_model(), *digits8, config(out_dir=str(tmp_path), resume=True, **change))
    assert words in str(info.value) and "continues the saved one exactly" in str(info.value)
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing was trained or written


def test_a_resume_on_another_training_set_size_is_refused(digits8, reference, tmp_path):
    copy_run(reference[0], tmp_path)
    with pytest.raises(ValueError, match="steps per epoch 4 -> 2"):
        train(tiny_model(), Subset(digits8[0].dataset, range(128)), digits8[1],
              config(out_dir=str(tmp_path), resume=True))


def test_cli_resume_takes_the_saved_settings_and_refuses_other_ones(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    real_train, calls = train_module.train, {"n": 0}

    def interrupted_train(*args, **kwargs):  # Ctrl-C during epoch 2
        real_loss = train_module.cross_entropy_loss(0.1)

        def loss_fn(model, images, labels):
            calls["n"] += 1
            if calls["n"] == 7 and not kwargs.get("resume"):
                raise KeyboardInterrupt
            return real_loss(model, images, labels)
        return real_train(*args, loss_fn=loss_fn, **kwargs)

    monkeypatch.setattr(cli_module, "train", interrupted_train)
    one_line_error(capsys, [*CLI_RUN, "--epochs", "2", "--lr", "2e-3", "--seed", "3", "--out", out],
                   "interrupted", "--resume", code=130)
    monkeypatch.undo()
    assert load_checkpoint(Path(out) / "last.pt")["epoch"] == 1
    one_line_error(capsys, [*CLI_RUN, "--epochs", "2", "--out", out], "already holds a run", "--resume")
    one_line_error(capsys, ["train", "--out", out, "--resume", "--lr", "3e-2"],
                   "--lr 0.03 (the run has 0.002)", "leave those options out")
    one_line_error(capsys, ["train", "--out", out, "--resume", "--epochs", "5", "--batch-size", "64",
                            "--seed", "0"], "--epochs 5 (the run has 2)", "--batch-size 64 (the run has 256)",
                   "--seed 0 (the run has 3)")
    one_line_error(capsys, ["train", "--out", out, "--resume", "--data", "shapes"], "--data 'shapes'")
    assert main(["train", "--out", out, "--resume", "--no-progress"]) == 0  # every option from last.pt
    capsys.readouterr()
    last = load_checkpoint(Path(out) / "last.pt")
    assert last["epoch"] == 2 and last["train_config"]["lr"] == 2e-3 and last["train_config"]["seed"] == 3
    assert last["scheduler"]["last_epoch"] == 2 * math.ceil(1437 / 256)


def _poke(path, tensor, changes):
    """Overwrite bytes of ``tensor``'s data (``{offset: value}``) inside the checkpoint file at ``path``."""
    data = bytearray(path.read_bytes())
    raw = tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    start = data.find(raw)
    assert start > 0 and data.find(raw, start + 1) == -1
    for offset, value in changes.items():
        data[start + offset] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("poke", [{2: 0xC0, 3: 0x7F}, {0: 0x01}])  # a NaN (the case); a near miss
def test_flipped_bytes_in_a_weight_are_detected(digits8, reference, tmp_path, capsys, poke):
    copy_run(reference[0], tmp_path)
    path = tmp_path / "last.pt"
    _poke(path, weights(path)["head.weight"][:4], poke)
    with pytest.raises(CheckpointError, match="is damaged: its contents do not match the checksum"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="Cannot resume.*is damaged"):
        train(tiny_model(), *digits8, config(epochs=2, out_dir=str(tmp_path), resume=True))
    one_line_error(capsys, ["evaluate", "--checkpoint", str(path)], "is damaged", "use another checkpoint")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] >= 1  # the other file is fine


def test_a_checkpoint_without_checksum_is_still_checked_for_non_finite_weights(tmp_path):
    model = tiny_model()
    state = model.state_dict()
    state["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    torch.save({"model": state, "model_config": None, "epoch": 1}, tmp_path / "old.pt")  # no checksum: older files
    with pytest.raises(CheckpointError, match="NaN or infinite weights in 'blocks.0.mlp.fc1.weight'"):
        load_checkpoint(tmp_path / "old.pt")
    save_checkpoint(tmp_path / "good.pt", tiny_model(), epoch=1)
    checkpoint = load_checkpoint(tmp_path / "good.pt")
    assert "checksum" not in checkpoint and checkpoint["epoch"] == 1  # checked, then left out
    assert "checksum" in torch.load(tmp_path / "good.pt", weights_only=True)
    shipped = ROOT / "vit_lesson" / "assets" / "shapes_vit.pt"  # written before checksums: still loads
    assert load_model(shipped)[1]["epoch"] >= 1


def _write_folder(root, classes=("cat", "dog"), per_class=4, size=12):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_a_folder_with_one_class_is_refused(tmp_path, capsys):
    _write_folder(tmp_path / "photos", classes=("cat",))
    with pytest.raises(ValueError, match="only one class folder \\(cat\\); a classifier needs at least two"):
        image_folder_dataset(tmp_path / "photos")
    one_line_error(capsys, ["train", "--data", "folder", "--data-dir", str(tmp_path / "photos"), "--out",
                            str(tmp_path / "run")], "only one class folder")
    _write_folder(tmp_path / "split" / "train", classes=("cat", "dog"))
    _write_folder(tmp_path / "split" / "val", classes=("cat", "cow"))
    with pytest.raises(ValueError, match="train/ has classes cat, dog but val/ has cat, cow"):
        image_folder_datasets(tmp_path / "split")


@pytest.mark.parametrize("field, value", [
    ("num_hidden_layers", -1), ("num_hidden_layers", 0), ("num_classes", -1), ("image_size", -32),
    ("image_size", 0), ("num_channels", 0), ("drop_path_rate", -0.1), ("drop_path_rate", 1.0),
    ("hidden_size", 0), ("patch_size", 0), ("num_attention_heads", 0), ("intermediate_size", 0),
    ("hidden_dropout_prob", 1.5), ("layer_norm_eps", 0.0), ("image_size", 32.0), ("patch_size", 64),
])
def test_bad_model_config_values_name_the_field_and_the_fix(field, value):
    with pytest.raises(ValueError) as info:
        get_config("micro", **{field: value})
    message = str(info.value)
    assert f"ViTConfig.{field}" in message and ("use" in message.lower() or "set it" in message), message
    assert len(message.splitlines()) == 1


def test_valid_model_configs_are_unchanged():
    assert isinstance(ViT(get_config("micro", num_classes=0)).head, torch.nn.Identity)  # features only
    assert ViTConfig().num_patches == 196 and get_config("micro").grid_size == 8


@pytest.mark.parametrize("argv, words", [
    (["--warmup-epochs", "nan"], "warmup_epochs (--warmup-epochs) must be a finite number >= 0, got nan"),
    (["--warmup-epochs", "-1"], "warmup_epochs (--warmup-epochs) must be a finite number >= 0"),
    (["--weight-decay", "-0.1"], "weight_decay (--weight-decay) must be a finite number >= 0"),
    (["--lr", "inf"], "lr (--lr) must be a finite number"),
    (["--epochs", "0"], "epochs (--epochs) must be a whole number >= 1"),
    (["--batch-size", "-4"], "batch_size (--batch-size) must be a whole number >= 1"),
    (["--label-smoothing", "1"], "label_smoothing (--label-smoothing) must be in [0, 1)"),
])
def test_bad_training_settings_are_one_line_before_anything_runs(tmp_path, capsys, argv, words):
    out = one_line_error(capsys, ["train", *argv, "--out", str(tmp_path / "run")], words, "use e.g.")
    assert not (tmp_path / "run").exists() and "data digits" not in out
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=-1.0)


def test_resume_with_nothing_to_resume_says_so(digits8, tmp_path, capsys):
    history = train(tiny_model(), *digits8, config(epochs=1, out_dir=str(tmp_path / "run"), resume=True))
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "starting a new run at epoch 1" in err and len(history) == 1


# --- a traceback where one line would do ----------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda p, good: p.write_bytes(b""), "it is empty"),
    (lambda p, good: p.write_bytes(good[: len(good) // 2]), "not a whole PyTorch checkpoint"),
    (lambda p, good: p.write_bytes(good[:-100]), "not a whole PyTorch checkpoint"),
    (lambda p, good: p.write_text("epoch,loss\n1,0.5\n"), "not a whole PyTorch checkpoint"),
    (lambda p, good: torch.save({"weights": [1, 2]}, p), "holds no model weights"),
])
def test_unreadable_checkpoints_are_one_line(reference, tmp_path, capsys, make, words):
    good = (reference[0] / "best.pt").read_bytes()
    path = tmp_path / "bad.pt"
    make(path, good)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)
    one_line_error(capsys, ["evaluate", "--checkpoint", str(path)], str(path), words, "use another checkpoint")
    run = tmp_path / "run"  # the same file as the last.pt of a run to resume
    run.mkdir()
    (run / "last.pt").write_bytes(path.read_bytes())
    one_line_error(capsys, ["train", "--out", str(run), "--resume"], "Cannot resume", words)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling it would call os.makedirs(marker)
        return (os.makedirs, (self.marker,))


def test_a_malicious_pickle_is_refused_in_one_line_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="holds pickled code .*refused and nothing in it ran"):
        load_checkpoint(path)
    one_line_error(capsys, ["evaluate", "--checkpoint", str(path)], "refused", "load only files you trust")
    assert not marker.exists()


def test_a_corrupt_image_names_the_file(tmp_path, capsys):
    root = tmp_path / "photos"
    _write_folder(root / "train")
    _write_folder(root / "val")
    bad = root / "train" / "dog" / "2.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated PNG
    train_set, _ = image_folder_datasets(root, image_size=8)
    index = train_set.imgs.index((str(bad), 1))
    with pytest.raises(ValueError, match=f"Image file '{bad}' cannot be read .*delete it or replace it"):
        train_set[index]
    one_line_error(capsys, ["train", "--data", "folder", "--data-dir", str(root), "--model", "micro",
                            "--image-size", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r")],
                   str(bad), "cannot be read")


def test_a_disk_too_full_for_the_checkpoints_is_found_before_training(tmp_path, capsys, monkeypatch):
    usage = faults_module.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(faults_module.shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    one_line_error(capsys, [*CLI_RUN, "--epochs", "1", "--out", str(tmp_path / "run")],
                   "0.1 MB free but the checkpoints need about", "free some space")


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_finished_checkpoints(digits8, tmp_path, capsys,
                                                                             monkeypatch):
    real_save, calls = checkpoint_module.torch.save, {"n": 0}

    def save(obj, file, *args, **kwargs):  # the disk fills up while last.pt of epoch 2 is written
        calls["n"] += 1
        if calls["n"] == 2:
            file.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    with pytest.raises(CheckpointWriteError, match="after epoch 2 .No space left on device.*last.pt holds epoch 1"):
        train(tiny_model(), *digits8, config(out_dir=str(tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    calls["n"] = 1  # the CLI's run: the disk is full from its first checkpoint on
    one_line_error(capsys, [*CLI_RUN, "--epochs", "1", "--out", str(tmp_path / "cli")],
                   "after epoch 1 (No space left on device)", "No epoch had been saved yet", "run again")
    assert list((tmp_path / "cli").iterdir()) == []
    monkeypatch.undo()
    assert len(train(tiny_model(), *digits8, config(out_dir=str(tmp_path), resume=True))) == 3


def _refuse_writes_in(folder, monkeypatch):
    """A read-only folder (root ignores chmod, so the refusal comes from os.open, as the kernel's would)."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if Path(path).parent == folder and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(faults_module.os, "open", fake_open)


@pytest.mark.parametrize("case, words", [
    ("a file", "is a file, not a folder"),
    ("under a file", "cannot be created ('{tmp}/afile' is a file)"),
    ("read-only", "is not writable (Permission denied)"),
    ("/proc", "is not writable"),
    ("under /proc", "cannot be created"),
])
def test_an_out_that_cannot_be_written_is_found_before_the_first_step(digits8, tmp_path, capsys, monkeypatch,
                                                                       case, words):
    (tmp_path / "afile").write_text("not a folder")
    out = {"a file": tmp_path / "afile", "under a file": tmp_path / "afile" / "run", "read-only": tmp_path / "ro",
           "/proc": Path("/proc"), "under /proc": Path("/proc/vit_lesson_run")}[case]
    if case == "read-only":
        out.mkdir()
        _refuse_writes_in(out, monkeypatch)
    words = words.format(tmp=tmp_path)
    steps = []

    def loss_fn(model, images, labels):
        steps.append(1)
        return train_module.cross_entropy_loss()(model, images, labels)

    with pytest.raises(ValueError, match="output folder") as info:
        train(tiny_model(), *digits8, config(epochs=1, out_dir=str(out)), loss_fn=loss_fn)
    assert words in str(info.value) and steps == []
    out = one_line_error(capsys, [*CLI_RUN, "--epochs", "1", "--out", str(out)], words, "(out_dir, --out)")
    assert "data digits" not in out  # found before any data was loaded


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16])
def test_images_of_the_wrong_dtype_say_how_to_convert(digits8, dtype):
    train_set = copy.copy(digits8[0].dataset)
    raw = train_set.images_raw
    train_set.images_raw = (raw * 255).to(torch.uint8) if dtype == torch.uint8 else raw.to(dtype)
    train_set._normalize = (lambda x: x) if dtype == torch.uint8 else train_set._normalize
    images = Subset(train_set, range(128))
    with pytest.raises(ValueError) as info:
        train(tiny_model(), images, digits8[1], config(epochs=1))
    message = str(info.value)
    assert f"The images are {dtype}" in message and "ToDtype(torch.float32, scale=True)" in message
    assert ("ToImage()" in message) if dtype == torch.uint8 else ("--amp" in message)
    with pytest.raises(ValueError, match="ToDtype"):
        predict(tiny_model(), images)
    if dtype != torch.uint8:  # with mixed precision, half-precision images are what the model computes in
        history = train(tiny_model(), images, digits8[1], config(epochs=1, amp=True))
        assert math.isfinite(history[0]["train_loss"])
        assert 0 <= evaluate(tiny_model(), images, amp=True)["accuracy"] <= 1


def test_a_resume_with_an_ema_of_the_weights_continues_exactly(digits8, tmp_path):
    """The EMA is saved with the checkpoints: before, a resume restarted it from the current weights."""
    straight = tiny_model()
    train(straight, *digits8, config(epochs=2, ema_decay=0.8, out_dir=str(tmp_path / "a")))
    calls, plain = {"n": 0}, train_module.cross_entropy_loss(0.1)

    def interrupted(model, images, labels):  # Ctrl-C in the first step of epoch 2
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return plain(model, images, labels)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), *digits8, config(epochs=2, ema_decay=0.8, out_dir=str(tmp_path / "b")), loss_fn=interrupted)
    assert "ema" in load_checkpoint(tmp_path / "b" / "last.pt")
    resumed = tiny_model(seed=7)
    train(resumed, *digits8, config(epochs=2, ema_decay=0.8, out_dir=str(tmp_path / "b"), resume=True))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name
