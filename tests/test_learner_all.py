"""Learner versions of every notebook: generated correctly, and every check passes with the solutions.

Learner versions are not committed (``learner/`` is in .gitignore): they are generated on demand,
``python -m vit_lesson learner --out learner``, from the solution notebooks, which stay the one
source. For every ``notebooks/NN_*.ipynb`` this module proves, without running a kernel:

- the learner version has no solution left, no outputs, the same cells otherwise, valid Python,
  and a ``raise NotImplementedError`` carrying the exercise's ``# Hint:`` for every solution block;
- with the solutions in (the solution notebook), every exercise's check shows ✅ in the stored
  outputs, and every check cell is marked ``# NBVAL_CHECK_OUTPUT``, so nbval, which re-executes
  the solution notebooks in CI, fails if a ✅ line changes.

Running the learner versions (no crash, no error, every check "⏳ not done yet" with its hint) is
``tests/test_colab_isolation.py``, which executes each learner version once, alone, from an
installed package: CI executes each notebook twice in all (nbval: solution; there: learner).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from vit_lesson.__main__ import main
from vit_lesson.classroom import BEGIN, END, make_learner_notebook, strip_solutions
from vit_lesson.grading import check_results

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\(")
HEADING = re.compile(r"^#\s*Exercise\s+(\d+\.\d+)", re.MULTILINE)


def python_source(cell_source: str) -> str:
    """Cell source without IPython magics and shell escapes, for ast.parse."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell_source.splitlines())


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("solution", NOTEBOOKS, ids=lambda path: path.stem)
def test_learner_version_has_placeholders_with_hints_and_nothing_else_changed(solution, tmp_path):
    learner_path = tmp_path / solution.name
    exercises = make_learner_notebook(solution, learner_path)
    original = nbformat.read(solution, as_version=4)
    learner = nbformat.read(learner_path, as_version=4)
    assert exercises == sum(cell.source.count(BEGIN) for cell in code_cells(original))
    assert [c.cell_type for c in learner.cells] == [c.cell_type for c in original.cells]
    for index, (before, after) in enumerate(zip(original.cells, learner.cells)):
        where = f"{solution.name}, cell {index}"
        if before.cell_type != "code":
            assert after.source == before.source
            continue
        assert after.outputs == [] and after.execution_count is None, f"{where}: outputs left in the learner version"
        assert BEGIN not in after.source and END not in after.source, f"{where}: solution markers left"
        blocks = before.source.count(BEGIN)
        assert before.source.count(END) == blocks, f"{where}: {blocks} {BEGIN} but {before.source.count(END)} {END}"
        if not blocks:
            assert after.source == before.source, f"{where}: a cell without an exercise changed"
            continue
        lines = before.source.splitlines()
        for number, line in enumerate(lines):
            if line.strip().startswith(BEGIN):
                above = lines[number - 1].strip() if number else ""
                assert above.startswith("# Hint:"), f"{where}: the line above {BEGIN} must be a '# Hint: ...' comment"
                hint = above.removeprefix("# Hint:").strip()
                assert hint in after.source, f"{where}: the placeholder does not carry the hint {hint!r}"
        placeholder = "raise NotImplementedError("
        placeholders = after.source.count(placeholder) - before.source.count(placeholder)
        assert placeholders == blocks, f"{where}: {blocks} solution blocks but {placeholders} placeholders"
        try:
            ast.parse(python_source(after.source))
        except SyntaxError as error:
            pytest.fail(f"{where}: the learner version is not valid Python: {error}\n{after.source}")


@pytest.mark.parametrize("solution", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_check_passes_with_the_solutions(solution):
    nb = nbformat.read(solution, as_version=4)
    results = check_results(nb)
    has_exercises = any(BEGIN in cell.source for cell in code_cells(nb))
    if has_exercises:
        assert results, f"{solution.name} has exercises but its stored outputs show no check line: is it executed?"
    failing = [line for _, status, line in results.values() if status != "pass"]
    assert not failing, f"{solution.name}: with the solutions, every exercise's last check line must be ✅: {failing}"
    for cell in code_cells(nb):
        calls = [name for name in CHECK_CALL.findall(cell.source) if not name.endswith("mirror")]
        if not calls:
            continue
        first_line = cell.source.lstrip().splitlines()[0]
        assert first_line.strip() == "# NBVAL_CHECK_OUTPUT", (
            f"{solution.name}: the check cell `{cell.source.strip()[:60]}` needs '# NBVAL_CHECK_OUTPUT' as its "
            "first line, so nbval compares its ✅ line when it re-runs the notebook")
        printed = "".join(out.get("text", "") for out in cell.get("outputs", []))
        assert re.search(r"^(✅|⏳|❌) Exercise ", printed, re.MULTILINE), (
            f"{solution.name}: the check cell `{cell.source.strip()[:60]}` has no stored check line")
    for cell in code_cells(nb):
        for exercise_id in HEADING.findall(cell.source) if BEGIN in cell.source else []:
            assert exercise_id in results, (
                f"{solution.name}: exercise {exercise_id} is never checked (no '✅ Exercise {exercise_id} ...' line)")


def test_learner_command_writes_every_notebook(tmp_path, capsys):
    source = tmp_path / "notebooks"
    source.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "def f(x):\n    # Hint: add one.\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION")]
    nbformat.write(nb, source / "01_demo.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), source / "02_empty.ipynb")
    assert main(["learner", "--source", str(source), "--out", str(tmp_path / "learner")]) == 0
    assert "01_demo.ipynb  (1 exercise)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "learner").iterdir()) == ["01_demo.ipynb", "02_empty.ipynb"]


def test_strip_solutions_keeps_indentation_and_the_hint():
    source = ("class Attention:\n"
              "    def forward(self, x):\n"
              "        # Hint: softmax over the keys (last axis).\n"
              "        ### BEGIN SOLUTION\n"
              "        return x.softmax(-1)\n"
              "        ### END SOLUTION\n"
              "\n"
              "    def extra(self):\n"
              "        ### BEGIN SOLUTION\n"
              "        return 1\n"
              "        ### END SOLUTION\n")
    learner = strip_solutions(source)
    assert "softmax(-1)" not in learner and "return 1" not in learner
    assert ("        raise NotImplementedError('Exercise not done yet: replace this line with your code. "
            "Hint: softmax over the keys (last axis).')") in learner
    assert "Hint: see the text above this cell." in learner
    ast.parse(learner)
    namespace = {}
    exec(learner, namespace)
    with pytest.raises(NotImplementedError, match="softmax over the keys"):
        namespace["Attention"]().forward(None)


def test_learner_versions_are_not_committed():
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", "learner/01_patches.ipynb"], cwd=REPO).returncode == 0
    except OSError:
        pytest.skip("git is not installed")
    assert ignored, "learner/ must be in .gitignore: learner versions are generated, never committed"
