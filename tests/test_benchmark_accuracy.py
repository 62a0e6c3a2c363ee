"""Smoke test of benchmarks/accuracy.py (--quick: 2 epochs). Accuracies are printed, never asserted."""

from conftest import load_benchmark


def test_accuracy_benchmark_quick_runs(capsys):
    accuracy = load_benchmark("accuracy")
    rows = accuracy.main(["--quick", "--threads", "1", "--seeds", "0", "1"])
    names = [row[0] for row in rows]
    assert names[:2] == ["SVC(gamma=0.001)", "LogisticRegression"]
    assert any(name.startswith("ViT (ours, digits recipe) s1") for name in names)
    assert "ViT mean of 2 seeds" in names and "ViT (shipped shapes model)" in names
    shipped = rows[names.index("ViT (shipped shapes model)")]
    assert shipped[4] > 0.8 and shipped[5] == 1000  # the shipped checkpoint, on its own 1,000 test images
    out = capsys.readouterr().out
    assert "digits ViT over seeds [0, 1]" in out and "98.89%    4/360" in out  # the SVC's row
