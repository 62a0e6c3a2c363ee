"""Smoke test of benchmarks/speed.py (--quick: micro only). Times are printed, never asserted."""

from conftest import load_benchmark


def test_speed_benchmark_quick_runs(capsys):
    speed = load_benchmark("speed")
    rows = speed.main(["--quick", "--device", "cpu", "--threads", "1"])
    assert [(r["model"], r["mode"]) for r in rows] == [("micro", "inference"), ("micro", "train step")]
    assert all(r[k] > 0 for r in rows for k in ("timm", "fast", "readable"))
    assert "| micro | 32 | 8 | inference |" in capsys.readouterr().out
