"""Smoke test of benchmarks/accuracy.py (--quick: 2 epochs). Accuracies are printed, never asserted."""

from conftest import load_benchmark


def test_accuracy_benchmark_quick_runs(capsys):
    accuracy = load_benchmark("accuracy")
    rows = accuracy.main(["--quick", "--threads", "1", "2", "--seeds", "0", "1"])
    names = [row[0] for row in rows]
    assert names[:2] == ["SVC(gamma=0.001)", "LogisticRegression"]
    assert any(name.startswith("ViT (ours, digits recipe) s1 t2") for name in names)
    assert {"ViT mean, 1 thread", "ViT mean, 2 threads", "ViT mean of all 4 runs"} <= set(names)
    assert "ViT (shipped shapes model)" in names
    shipped = rows[names.index("ViT (shipped shapes model)")]
    assert shipped[4] > 0.8 and shipped[5] == 1000  # the shipped checkpoint, on its own 1,000 test images
    out = capsys.readouterr().out
    assert "digits ViT, seeds [0, 1], all threads: min" in out and "98.89%    4/360" in out  # the SVC's row


def test_the_digits_rows_train_the_recipe_of_the_command_line(monkeypatch):
    """benchmarks/accuracy.py trains RECIPES["digits"], what ``python -m vit_lesson train --data digits`` runs
    (tests/test_cli.py checks the command's side)."""
    from vit_lesson.recipes import RECIPES
    from vit_lesson.train import TrainConfig

    accuracy, seen = load_benchmark("accuracy"), {}
    monkeypatch.setattr(accuracy, "train", lambda model, train_set, test_set, config: seen.update(
        model=model, train_set=train_set, config=config))
    accuracy.digits_rows(seed=3)
    recipe = RECIPES["digits"]
    assert seen["config"] == TrainConfig(**recipe.train, seed=3, progress=False)
    assert seen["train_set"].augment is recipe.augment and seen["train_set"][0][0].shape == (1, 16, 16)
    assert seen["model"].config.hidden_size == 64 and seen["model"].config.num_classes == 10
