"""What a learner reads is held to the standard of the code: for every notebook in notebooks/.

- **Same on every machine.** A cell marked ``# NBVAL_CHECK_OUTPUT`` must print only text that is
  exactly the same on any CPU, thread count and BLAS. Such a cell may not print a decimal number
  that came out of a float computation: its printed decimals must all appear in its own source
  (a literal such as ``1e-5`` in "<= 1e-5: True", a config value) or in the checks' code (a check's
  own constants), or be exercise numbers
  ("Exercise 3.1"). A cell whose decimals are exact arithmetic on integers (parameter and FLOP
  counts, "225 / 16 = 14.06") says so in a ``# exact: <why>`` comment. The CI run of the notebooks
  under another instruction set and thread count (``make test-portable``) proves the rest.
- **Figures a learner can read.** Every stored PNG was drawn at >= 100 dpi (matplotlib writes the
  dpi into the PNG) and is at least 400 px wide.
- **Hints that guide.** Every exercise has graded hints registered with its check; the first is
  the ``# Hint:`` comment of the exercise cell, points at the idea (no code), and the learner
  version's placeholder says where the next hints are.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS
from PIL import Image

from vit_lesson import checks
from vit_lesson.checks.core import HINTS
from vit_lesson.classroom import BEGIN, strip_solutions

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
DECIMAL = re.compile(r"(?<![\w.])(?:\d*\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)")
EXERCISE_NUMBER = re.compile(r"(Exercise|exercise|hint\(\"|Mirror|version|v)\s*\d+\.\d+")
CODE_IN_HINT = re.compile(r"\w\(|\)\.|\[[^\]]*:|\w\.\w+\(|=|`")
MIN_DPI, MIN_WIDTH = 100, 400
#: Decimals written as literals in the checks' own code (``for (alpha, T) = (0.3, 4)``): constants, not results.
CHECK_LITERALS = {float(d) for path in Path(checks.__file__).parent.glob("*.py")
                  for d in DECIMAL.findall(path.read_text())}


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def text_of(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output.data["text/plain"])
    return "".join(parts)


@notebooks
def test_checked_outputs_print_no_computed_decimals(path):
    for number, cell in enumerate(code_cells(path)):
        if not cell.source.startswith("# NBVAL_CHECK_OUTPUT") or "# exact:" in cell.source:
            continue
        printed = EXERCISE_NUMBER.sub("", text_of(cell))
        constants = {float(d) for d in DECIMAL.findall(cell.source)} | CHECK_LITERALS
        computed = [d for d in DECIMAL.findall(printed) if float(d) not in constants]
        assert not computed, (
            f"{path.name}, code cell {number}: a `# NBVAL_CHECK_OUTPUT` cell prints {computed[:5]}, "
            "decimals that come from a float computation and round differently on another CPU. Print them "
            "in an unchecked cell and assert the relation they show instead.")


def pngs(path):
    for number, cell in enumerate(code_cells(path)):
        for output in cell.outputs:
            data = output.get("data", {})
            if "image/png" in data:
                yield number, Image.open(io.BytesIO(base64.b64decode(data["image/png"])))


@notebooks
def test_figures_are_drawn_large_enough_to_read(path):
    for number, image in pngs(path):
        dpi = image.info.get("dpi", (72, 72))[0]
        assert round(dpi) >= MIN_DPI, (f"{path.name}, code cell {number}: a figure drawn at {dpi:.0f} dpi; "
                                       f"set plt.rcParams['figure.dpi'] = {MIN_DPI}")
        assert image.width >= MIN_WIDTH, (f"{path.name}, code cell {number}: a figure only {image.width} px wide; "
                                          f"make it at least {MIN_WIDTH} px (a larger figsize)")


def exercises(path):
    """``(exercise id, [hint comments of its solution blocks])`` for each exercise cell."""
    for cell in code_cells(path):
        found = re.search(r"^# Exercise (\d+\.\d+)", cell.source, re.MULTILINE)
        if not found or BEGIN not in cell.source:
            continue
        lines = cell.source.splitlines()
        comments = [lines[i - 1].strip().removeprefix("# Hint:").strip()
                    for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
        yield found.group(1), comments, cell.source


@notebooks
def test_every_exercise_has_graded_hints_starting_with_the_idea(path):
    for exercise_id, comments, source in exercises(path):
        assert exercise_id in HINTS, (f"{path.name}: exercise {exercise_id} has no graded hints; declare them "
                                      f"with @exercise('{exercise_id}', ..., hints=(...)) in vit_lesson/checks")
        title, hints = HINTS[exercise_id]
        assert len(hints) >= 2, f"exercise {exercise_id}: give at least two levels of hints"
        assert comments[0] == hints[0], (f"{path.name}: exercise {exercise_id}'s `# Hint:` comment must be its first "
                                         f"graded hint:\n  comment: {comments[0]}\n  hint 1:  {hints[0]}")
        for comment in comments:
            assert not CODE_IN_HINT.search(comment), (
                f"{path.name}: exercise {exercise_id}'s hint comment shows code ({comment!r}); the first hint "
                "points at the idea, and only the last graded hint may show code")
        assert f'checks.hint("{exercise_id}")' in strip_solutions(source)


NOTEBOOK_OF = {"7": "07_visualization.ipynb", "8": "08_distillation.ipynb", "9": "09_hybrid.ipynb"}


@pytest.mark.parametrize("exercise_id", ["7.1", "7.2", "8.1", "8.2", "9.1"])
def test_graded_hints_start_at_the_notebook_hint_and_end_in_code(exercise_id, capsys, monkeypatch):
    """Exercises 7.1-9.1 (once three copies in their topics' test files): each level printed in turn."""
    import vit_lesson.checks.core as core
    monkeypatch.setattr(core, "_HINTS_SHOWN", {})  # leave no progress behind for the other tests
    _, hints = checks.HINTS[exercise_id]
    assert 2 <= len(hints) <= 4
    path = next(p for p in NOTEBOOKS if p.name == NOTEBOOK_OF[exercise_id.split(".")[0]])
    assert hints[0] == dict((e, c[0]) for e, c, _ in exercises(path))[exercise_id]
    assert "(" not in hints[0] and "return" not in hints[0]          # level 1: the idea, no code
    assert "return" in hints[-1]                                      # the last level may show code
    for level in range(1, len(hints) + 1):
        checks.hint(exercise_id, level=level)
        assert hints[level - 1] in capsys.readouterr().out


def test_hint_gives_one_more_level_per_call_and_never_raises(capsys):
    exercise_id = next(iter(HINTS))
    title, hints = HINTS[exercise_id]
    checks.hint(exercise_id, level=1)
    for level in range(2, len(hints) + 2):
        checks.hint(exercise_id)
    out = capsys.readouterr().out
    assert out.count(f"hint {len(hints)} of {len(hints)} (the last one)") == 2
    for level, text in enumerate(hints, start=1):
        assert f"hint {level} of {len(hints)}" in out and text in out
    checks.hint("99.9")
    assert "No hints for exercise '99.9'" in capsys.readouterr().out
