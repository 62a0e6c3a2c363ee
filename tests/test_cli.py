"""``python -m vit_lesson train|evaluate``: a tiny run end to end, --help, and one-line user errors."""

import subprocess
import sys

import pytest
import torch

from vit_lesson.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the digits preset, trained through the command line."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(["train", "--data", "digits", "--model", "digits", "--epochs", "1", "--batch-size", "128",
                 "--lr", "2e-3", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_train_writes_checkpoints_and_prints_a_table(trained, capsys):
    assert (trained / "last.pt").is_file() and (trained / "best.pt").is_file()
    checkpoint = torch.load(trained / "best.pt", weights_only=True)
    assert checkpoint["data"] == {"name": "digits", "image_size": 16, "channels": 1}
    assert checkpoint["classes"] == [str(i) for i in range(10)]


def test_evaluate_prints_the_results(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "/360" in out and "test split, 360 images" in out


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data", "--data-dir", "--model", "--epochs", "--out", "--resume", "--overwrite", "--lr",
                   "--augment"):
        assert option in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "evaluate" in capsys.readouterr().out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "vit_lesson", "evaluate", "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--checkpoint" in result.stdout


def _one_line_error(capsys, argv, words):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    for word in words:
        assert word in lines[0]


def test_empty_or_malformed_image_folder_exits_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "photos"
    empty.mkdir()
    _one_line_error(capsys, ["train", "--data", "folder", "--data-dir", str(empty), "--out", str(tmp_path / "r")],
                    [str(empty), "no class subfolders", "root/class_x/xxx.png"])
    (empty / "cats").mkdir()
    _one_line_error(capsys, ["train", "--data", "folder", "--data-dir", str(empty), "--out", str(tmp_path / "r")],
                    ["cats contain no images"])
    _one_line_error(capsys, ["train", "--data", "folder", "--out", str(tmp_path / "r")], ["--data-dir"])


def test_checkpoint_from_another_config_exits_2_with_one_line(trained, tmp_path, capsys):
    _one_line_error(capsys, ["evaluate", "--checkpoint", str(trained / "best.pt"), "--model", "tiny"],
                    ["does not fit this model"])
    _one_line_error(capsys, ["evaluate", "--checkpoint", str(trained / "best.pt"), "--data", "shapes"],
                    ["expects 1x16x16 images"])
    _one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "nothing.pt")], ["No checkpoint"])


def test_digits_defaults_are_the_benchmarked_recipe(tmp_path, monkeypatch, capsys):
    """``train --data digits`` with no other option runs RECIPES["digits"], the recipe benchmarks/accuracy.py
    measures (tests/test_benchmark_accuracy.py checks the benchmark's side)."""
    from vit_lesson import cli
    from vit_lesson.factory import create_model
    from vit_lesson.history import History
    from vit_lesson.recipes import RECIPES
    from vit_lesson.train import TrainConfig

    seen = {}

    def fake_train(model, train_set, test_set, config, **extra):
        seen.update(model=model, train_set=train_set, config=config)
        return History([dict(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, lr=0.0, seconds=0.0)])

    monkeypatch.setattr(cli, "train", fake_train)
    out = str(tmp_path / "run")
    assert main(["train", "--data", "digits", "--out", out, "--no-progress"]) == 0
    recipe = RECIPES["digits"]
    assert seen["config"] == TrainConfig(**recipe.train, out_dir=out, progress=False)
    assert seen["train_set"].augment is recipe.augment and seen["train_set"][0][0].shape == (1, 16, 16)
    assert seen["model"].config == create_model(recipe.model, image_size=16, num_channels=1, num_classes=10).config


def test_shapes_defaults_are_the_shipped_models_recipe_with_its_number_of_images(tmp_path, monkeypatch):
    """``train --data shapes`` trains on as many generated images as the recipe says (the shipped model's 50,000;
    here 96, to stay quick) with its settings."""
    from dataclasses import replace

    from vit_lesson import cli
    from vit_lesson.history import History
    from vit_lesson.pretrained import load_shapes_model
    from vit_lesson.recipes import RECIPES
    from vit_lesson.train import TrainConfig

    shipped_data = load_shapes_model()[1]["recipe"]
    assert RECIPES["shapes"].train_size == shipped_data["train_size"]  # the command's data is the shipped model's
    recipe = replace(RECIPES["shapes"], train_size=96)
    monkeypatch.setitem(RECIPES, "shapes", recipe)
    seen = {}

    def fake_train(model, train_set, test_set, config, **extra):
        seen.update(train_set=train_set, config=config)
        return History([dict(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, lr=0.0, seconds=0.0)])

    monkeypatch.setattr(cli, "train", fake_train)
    out = str(tmp_path / "run")
    assert main(["train", "--data", "shapes", "--out", out, "--no-progress"]) == 0
    assert len(seen["train_set"]) == 96 and seen["train_set"][0][0].shape == (3, 32, 32)
    assert seen["config"] == TrainConfig(**recipe.train, out_dir=out, progress=False)
