"""Smoke test of benchmarks/speed.py (--quick: micro only). Times are printed, never asserted."""

import importlib.util
from pathlib import Path


def test_speed_benchmark_quick_runs(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("speed_benchmark", path)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    rows = speed.main(["--quick", "--device", "cpu", "--threads", "1"])
    assert [(r["model"], r["mode"]) for r in rows] == [("micro", "inference"), ("micro", "train step")]
    assert all(r[k] > 0 for r in rows for k in ("timm", "fast", "readable"))
    assert "| micro | 32 | 8 | inference |" in capsys.readouterr().out
