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
from vit_lesson.checks.training import LR_SCHEDULE_HINTS, _schedule_mistakes
from vit_lesson.checks.training_groups import PARAMETER_GROUPS_HINTS

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


# --- answers that must be named, and correct answers in other spellings ------------------------

def reference_lr(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def test_6_1_correct_answers_in_other_types_pass():
    import numpy as np
    import torch

    assert checks.check_lr_schedule(lambda *a: np.float64(reference_lr(*a)))
    assert checks.check_lr_schedule(lambda *a: torch.tensor(reference_lr(*a), dtype=torch.float64))
    assert checks.check_lr_schedule(lambda *a: np.array([reference_lr(*a)]))


@pytest.mark.parametrize("lr_at, words", [
    (lambda step, b, w, t, m: reference_lr(step, 1e-3, 5, 25, 1e-5), "hard-coded"),    # the first setting's numbers
    (lambda step, b, w, t, m: reference_lr(step, b, 5, t, m), "hard-coded"),            # warmup_steps only
    (lambda step, b, w, t, m: reference_lr(step, b, w, 25, m), "hard-coded"),           # total_steps only
    (lambda step, b, w, t, m: reference_lr(step, b, w, t, 1e-5), "hard-coded"),
    (lambda step, b, w, t, m: None, "forget the `return`"),
    (lambda step, b, w, t, m: float("nan"), "NaN"),
    (lambda step, b, w, t, m: reference_lr(step, b, w, t, m) if step < t else float("inf"), "NaN or inf at step"),
    (lambda step, b, w, t, m: "0.001", "should return a number, got str"),
])
def test_6_1_names_hard_coded_none_and_nan_answers(lr_at, words):
    result = checks.check_lr_schedule(lr_at)
    assert result.status == "fail" and words in result.message, result.message
    assert "could not check" not in result.message


def package_groups(model, weight_decay):
    scope = {}
    exec("def groups(model, weight_decay):\n" + "\n".join("    " + line for line in last_hint_code("6.2").splitlines()),
         scope)
    return scope["groups"](model, weight_decay)


def test_6_2_correct_answers_in_other_spellings_pass():
    import torch

    def as_generator(model, weight_decay):
        groups = package_groups(model, weight_decay)
        return ({"params": iter(g["params"]), "weight_decay": g["weight_decay"]} for g in groups)

    def tensor_decay(model, weight_decay):
        return [{**g, "weight_decay": torch.tensor(g["weight_decay"])} for g in package_groups(model, weight_decay)]

    def by_shape_three_groups(model, weight_decay):
        named = list(model.named_parameters())
        return [{"params": [p for n, p in named if p.ndim >= 2 and n not in ("pos_embed", "cls_token")],
                 "weight_decay": weight_decay},
                {"params": [p for n, p in named if p.ndim <= 1], "weight_decay": 0},
                {"params": [p for n, p in named if n in ("pos_embed", "cls_token")], "weight_decay": 0.0}]

    for answer in (package_groups, as_generator, tensor_decay, by_shape_three_groups):
        result = checks.check_parameter_groups(answer)
        assert result, result.line
    assert result.message == "10 weight matrices decayed; 22 norms, biases and embeddings left alone."


def with_decay(value):
    return lambda model, weight_decay: [{**g, "weight_decay": value if g["weight_decay"] else 0.0}
                                        for g in package_groups(model, weight_decay)]


@pytest.mark.parametrize("answer, words", [
    (with_decay(0.05), "hard-coded"),                 # 0.05 passed the old check, which tried only 0.05
    (with_decay(0.1), "hard-coded"),
    (with_decay(float("nan")), "NaN"),
    (with_decay(-0.05), "negative"),
    (with_decay("0.05"), "is a str, not a number"),
    (lambda model, weight_decay: None, "returned None"),
    (lambda model, weight_decay: 42, "list of dicts"),
    (lambda model, weight_decay: [{"params": next(model.parameters()), "weight_decay": 0.0}], "one tensor"),
])
def test_6_2_names_hard_coded_none_and_nan_answers(answer, words):
    result = checks.check_parameter_groups(answer)
    assert result.status == "fail" and words in result.message, result.message
    assert "could not check" not in result.message


def test_6_2_a_list_of_names_copied_from_one_model_fails_on_the_others():
    from vit_lesson.checks.training_groups import _tiny_vit

    decayed_names = {n for n, p in _tiny_vit().named_parameters()
                     if p.ndim >= 2 and n not in ("pos_embed", "cls_token")}

    def by_names(model, weight_decay):
        named = list(model.named_parameters())
        return [{"params": [p for n, p in named if n in decayed_names], "weight_decay": weight_decay},
                {"params": [p for n, p in named if n not in decayed_names], "weight_decay": 0.0}]

    result = checks.check_parameter_groups(by_names)
    assert result.status == "fail" and "blocks.2" in result.message and "gets no weight decay" in result.message


def test_6_2_the_answer_key_is_taken_before_the_learners_code_runs():
    import torch

    def renames(model, weight_decay):  # swaps a weight matrix for a fresh one after building the groups
        groups = package_groups(model, weight_decay)
        model.head.weight = torch.nn.Parameter(torch.zeros_like(model.head.weight))
        return groups

    assert checks.check_parameter_groups(renames)  # the groups hold the model's parameters as they were given
