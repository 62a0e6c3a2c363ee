"""Exercises 6.1 and 6.2 (vit_lesson/checks/training.py): graded hints, and messages that do not dictate.

The checks' behaviour (each known mistake named, placeholders waiting) is tested in test_train.py;
this file tests what the learner reads: hint 1 is the exercise cell's ``# Hint:`` line and names no
code, ``checks.hint`` gives one more level per call, the last level's code passes the check, and
the ❌ messages name the mistake without handing over the formula.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest

from vit_lesson import checks
from vit_lesson.checks import core
from vit_lesson.checks.training import LR_SCHEDULE_HINTS, PARAMETER_GROUPS_HINTS, _schedule_mistakes

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_training.ipynb"
HINTS = {"6.1": LR_SCHEDULE_HINTS, "6.2": PARAMETER_GROUPS_HINTS}
CHECKS = {"6.1": checks.check_lr_schedule, "6.2": checks.check_parameter_groups}


def hint_lines():
    """``{exercise id: the # Hint: text}`` from the exercise cells of notebook 06."""
    found = {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        heading = re.search(r"^# Exercise (\d+\.\d+)", cell.source, re.MULTILINE)
        if cell.cell_type == "code" and heading and "### BEGIN SOLUTION" in cell.source:
            lines = cell.source.splitlines()
            above = lines[[line.strip() for line in lines].index("### BEGIN SOLUTION") - 1].strip()
            found[heading.group(1)] = above.removeprefix("# Hint:").strip()
    return found


@pytest.mark.parametrize("exercise_id", ["6.1", "6.2"])
def test_hints_are_registered_graded_and_the_first_is_the_cells_hint(exercise_id):
    hints = HINTS[exercise_id]
    assert core.HINTS[exercise_id][1] == hints
    assert 2 <= len(hints) <= 4
    assert hint_lines()[exercise_id] == hints[0]
    assert "(" not in hints[0] and "=" not in hints[0] and "*" not in hints[0], (
        "hint 1 points at the idea: no calls, no formulas")
    assert all("\n    " not in hint for hint in hints[:-1]), "only the last hint may show code"


@pytest.mark.parametrize("exercise_id", ["6.1", "6.2"])
def test_hint_gives_one_more_level_per_call(exercise_id, capsys, monkeypatch):
    monkeypatch.setattr(core, "_HINTS_SHOWN", {})
    hints = HINTS[exercise_id]
    for level in range(2, len(hints) + 2):
        checks.hint(exercise_id)
        shown = min(level, len(hints))
        printed = capsys.readouterr().out
        assert f"hint {shown} of {len(hints)}" in printed and hints[shown - 1] in printed


def last_hint_code(exercise_id):
    return "\n".join(line[4:] for line in HINTS[exercise_id][-1].splitlines()[1:])


def test_the_last_hints_code_passes_the_checks():
    body = "\n".join("    " + line for line in last_hint_code("6.1").splitlines())
    scope = {"math": math}
    exec(f"def lr_at(step, base_lr, warmup_steps, total_steps, min_lr=0.0):\n{body}", scope)
    assert checks.check_lr_schedule(scope["lr_at"])
    body = "\n".join("    " + line for line in last_hint_code("6.2").splitlines())
    exec(f"def parameter_groups(model, weight_decay):\n{body}", scope)
    assert checks.check_parameter_groups(scope["parameter_groups"])


def test_schedule_mistakes_are_named_without_the_formula():
    for explanation in _schedule_mistakes(1e-3, 5, 25, 1e-5):
        assert "(step + 1)" not in explanation and "cos(pi" not in explanation, explanation


def test_placeholder_waits_and_shows_the_hint():
    def lr_at(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
        raise NotImplementedError(LR_SCHEDULE_HINTS[0])

    result = checks.check_lr_schedule(lr_at)
    assert result.status == "todo" and LR_SCHEDULE_HINTS[0] in result.message
