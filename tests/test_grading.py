"""Teacher grading (`python -m vit_lesson grade`): one bad submission never stops the others.

The fixture builds a class of tiny submissions of one notebook with two exercises, checked by
real `vit_lesson.checks` checks (defined with the course's `@exercise` decorator): a learner who
passes, one with a wrong answer and a cell that raises, one who has not started, one whose
notebook kills its kernel, one stuck in an infinite loop, one whose file is not JSON, one who
deleted a check cell, one who handed nothing in, and one who printed a check's ✅ line by hand.
The solution notebook (with stored check lines) says which exercises exist.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import nbformat
import pytest

from vit_lesson import grading
from vit_lesson.__main__ import main

NOTEBOOK = "00_demo"
TIMEOUT = 15  # seconds per notebook (cells only; kernel start-up is not counted)

CHECKS = '''\
from vit_lesson.checks import CheckFailed, call, exercise


@exercise("0.1", "double")
def check_double(double):
    got = call(double, 21)
    if got == 441:
        raise CheckFailed("double(21) returned 441: that squares the number; double it (x * 2).")
    if got != 42:
        raise CheckFailed(f"double(21) should be 42, got {got!r}.")
    return "double(21) == 42."


@exercise("0.2", "square")
def check_square(square):
    got = call(square, 3)
    if got != 9:
        raise CheckFailed(f"square(3) should be 9, got {got!r}.")
    return "square(3) == 9."
'''

RIGHT_DOUBLE, RIGHT_SQUARE = "def double(x):\n    return 2 * x", "def square(x):\n    return x * x"
TODO_DOUBLE = "def double(x):\n    raise NotImplementedError('Hint: multiply by two.')"
TODO_SQUARE = "def square(x):\n    raise NotImplementedError('Hint: x times x.')"


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo"), *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    return nb


def learner_notebook(double=RIGHT_DOUBLE, square=RIGHT_SQUARE, between="", check_square=True):
    cells = [CHECKS, double, "check_double(double)", *([between] if between else []), square]
    return notebook(*cells, *(["check_square(square)"] if check_square else []))


SUBMISSIONS = {
    "ada": learner_notebook(),
    "bob": learner_notebook(double="def double(x):\n    return x * x", between="print(undefined_name)"),
    "cyd": learner_notebook(TODO_DOUBLE, TODO_SQUARE),
    "dee": learner_notebook(between="import os\nos._exit(1)"),
    "eve": learner_notebook(between="while True:\n    pass"),
    "fay": "{ this is not a notebook",
    "gus": learner_notebook(check_square=False),
    "hal": None,  # a folder with nothing handed in
    "ivy": notebook(CHECKS, TODO_DOUBLE, 'print("✅ Exercise 0.1 (double) passed: double(21) == 42.")',
                    RIGHT_SQUARE, "check_square(square)"),  # fakes the first check's line
}

EXPECTED = {  # learner: (status, 0.1, 0.2)
    "ada": ("ok", "pass", "pass"),
    "bob": ("errors", "fail", "pass"),
    "cyd": ("ok", "todo", "todo"),
    "dee": ("crashed", "pass", "missing"),
    "eve": ("timeout", "pass", "missing"),
    "fay": ("invalid", "missing", "missing"),
    "gus": ("ok", "pass", "missing"),
    "hal": ("not submitted", "missing", "missing"),
    "ivy": ("ok", "missing", "pass"),
}


def write_class(root: Path, learners) -> tuple[Path, Path]:
    """Write ``root/submissions/<learner>/00_demo.ipynb`` and ``root/solutions/00_demo.ipynb``."""
    submissions, solutions = root / "submissions", root / "solutions"
    for learner in learners:
        folder = submissions / learner
        folder.mkdir(parents=True)
        content = SUBMISSIONS[learner]
        if isinstance(content, str):
            (folder / f"{NOTEBOOK}.ipynb").write_text(content)
        elif content is not None:
            nbformat.write(content, folder / f"{NOTEBOOK}.ipynb")
    solution = learner_notebook()
    lines = {"check_double(double)": "✅ Exercise 0.1 (double) passed: double(21) == 42.\n",
             "check_square(square)": "✅ Exercise 0.2 (square) passed: square(3) == 9.\n"}
    for cell in solution.cells:
        if cell.source in lines:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=lines[cell.source])]
    solutions.mkdir()
    nbformat.write(solution, solutions / f"{NOTEBOOK}.ipynb")
    return submissions, solutions


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    submissions, solutions = write_class(root, SUBMISSIONS)
    before = digest(submissions)
    grades = grading.grade(submissions, root / "report", timeout=TIMEOUT, solutions=solutions, jobs=2)
    return grades, root, digest(submissions) == before


def test_every_submission_is_graded_as_what_it_is(graded):
    grades, _, _ = graded
    got = {g.learner: (g.status, g.exercises["0.1"], g.exercises["0.2"]) for g in grades}
    assert got == EXPECTED


def test_details_say_what_went_wrong(graded):
    details = {g.learner: g.detail for g in graded[0]}
    assert "kernel died" in details["dee"] and "os._exit" in details["dee"]
    assert f"still running after {TIMEOUT} s" in details["eve"] and "while True" in details["eve"]
    assert "not a readable notebook" in details["fay"]
    assert "no check output for exercise 0.2" in details["gus"]
    assert "NameError" in details["bob"] and "print(undefined_name)" in details["bob"]
    assert details["ada"] == ""
    assert details["ivy"] == ("printed a pass line for exercise 0.1 that no check produced (not counted); "
                              "no check output for exercise 0.1")


def test_submissions_are_never_modified(graded):
    assert graded[2], "grading changed files in the submissions folder"


def test_csv_report(graded):
    _, root, _ = graded
    rows = list(csv.DictReader(io.StringIO((root / "report" / "grades.csv").read_text())))
    assert [r["learner"] for r in rows] == sorted(SUBMISSIONS)
    assert list(rows[0]) == ["learner", "notebook", "status", "passed", "0.1 double", "0.2 square", "detail"]
    for row in rows:
        assert (row["status"], row["0.1 double"], row["0.2 square"]) == EXPECTED[row["learner"]]
        assert row["notebook"] == NOTEBOOK
    assert {r["learner"]: r["passed"] for r in rows}["ada"] == "2/2"
    assert {r["learner"]: r["passed"] for r in rows}["bob"] == "1/2"


def test_markdown_report_and_executed_copies(graded):
    _, root, _ = graded
    table = (root / "report" / "grades.md").read_text()
    assert table.startswith("| learner | notebook | status | passed | 0.1 double | 0.2 square | detail |")
    assert "| ada | 00_demo | ok | 2/2 | ✅ pass | ✅ pass |  |" in table
    assert "| bob | 00_demo | errors | 1/2 | ❌ fail | ✅ pass |" in table
    assert "| cyd | 00_demo | ok | 0/2 | ⏳ todo | ⏳ todo |" in table
    assert "| hal | 00_demo | not submitted | 0/2 | · missing | · missing |" in table
    assert "0.1 double: 4/9; 0.2 square: 3/9." in table
    executed = nbformat.read(root / "report" / "executed" / "bob" / f"{NOTEBOOK}.ipynb", as_version=4)
    assert "that squares the number" in grading.output_text(executed)
    # The copy is the submission as it ran: the grader's recorder cells are taken out again.
    assert [c.source for c in executed.cells] == [c.source for c in SUBMISSIONS["bob"].cells]


def test_cli_prints_the_table_and_exits_0_even_when_learners_fail(tmp_path, capsys):
    submissions, solutions = write_class(tmp_path, ["ada", "fay"])
    out = tmp_path / "report"
    code = main(["grade", str(submissions), "--out", str(out), "--timeout", "60", "--solutions", str(solutions)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| ada | 00_demo | ok | 2/2 | ✅ pass | ✅ pass |" in printed
    assert "| fay | 00_demo | invalid | 0/2 | · missing | · missing |" in printed
    assert (out / "grades.csv").is_file() and (out / "grades.md").read_text() in printed


@pytest.mark.parametrize("args", [["grade", "no-such-folder"], ["grade", ".", "--solutions", "no-such-folder"]])
def test_cli_usage_errors_exit_non_zero(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "no-such-folder" in capsys.readouterr().err


def test_check_lines_are_parsed_with_titles_containing_parentheses():
    nb = notebook("print(1)")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "✅ Exercise 3.1 (attention (readable path)) passed: ok.\n"
        "⏳ Exercise 3.2 (heads) is not done yet: Hint: split D into H x d.\n"
        "❌ Exercise 3.3 (mask): the softmax ran over the queries (dim=-2).\n"
        "✅ Mirror: the notebook's Attention and vit_lesson.attention.Attention agree.\n"))]
    results = grading.check_results(nb)
    assert {k: v[:2] for k, v in results.items()} == {
        "3.1": ("attention (readable path)", "pass"), "3.2": ("heads", "todo"), "3.3": ("mask", "fail")}
    assert results["3.2"][2].endswith("Hint: split D into H x d.")
