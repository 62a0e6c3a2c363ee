"""Smoke test of benchmarks/attention_score.py on the shipped shapes model (100 test images, seconds)."""

import re

from conftest import load_benchmark


def test_attention_benchmark_scores_the_shipped_model(capsys):
    assert load_benchmark("attention_score").main(["--shipped", "--test-size", "100"]) == 0
    rows = [re.findall(r"\| ([^|]+) (?=\|)", line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| model") and not line.startswith("| layer")]
    table = {(cells[0], cells[2]): [float(cell.rstrip("%")) for cell in cells[3:]] for cells in rows if len(cells) == 6}
    uniform_mass, uniform_hit, uniform_pixel = table[("-", "uniform / random patch (pixel)")]
    assert 0 < uniform_mass < 1 and 0 < uniform_hit < uniform_pixel < 100
    mass, pointing, pixel = table[("trained", "rollout")]
    # Beats the baselines; the lenient version (the top pixel within 2 px of the object) scores at least the strict one.
    assert uniform_mass < mass < 1 and uniform_hit < pointing <= pixel <= 100
