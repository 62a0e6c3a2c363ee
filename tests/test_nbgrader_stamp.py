"""nbgrader metadata (vit_lesson.nbgrader_stamp), stamped on copies of the course's notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from vit_lesson import checks
from vit_lesson.__main__ import main
from vit_lesson.classroom import BEGIN
from vit_lesson.nbgrader_stamp import stamp_nbgrader

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS[:6], ids=lambda p: p.stem)
def test_every_cell_gets_its_role(path):
    nb = nbformat.read(path, as_version=4)
    counts = stamp_nbgrader(nb, prefix=path.stem)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells]
    assert len(set(ids)) == len(ids)
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        if cell.cell_type == "code" and BEGIN in cell.source:
            assert meta["solution"] and not meta["grade"] and not meta["locked"]
        elif meta["grade"]:
            assert meta["locked"] and meta["points"] == 1 and "checks.check_" in cell.source
        else:
            assert meta["locked"] and not meta["solution"]
    if any(BEGIN in c.source for c in nb.cells):
        assert counts["solution"] and counts["test"]


def test_the_command_stamps_copies_in_place_and_is_idempotent(tmp_path, capsys):
    copy = tmp_path / NOTEBOOKS[1].name
    nb = nbformat.read(NOTEBOOKS[1], as_version=4)  # the stored notebooks are stamped: start from an unstamped copy
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, copy)
    assert main(["nbgrader-stamp", str(copy)]) == 0
    assert main(["nbgrader-stamp", str(copy)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"stamped: {copy}", f"unchanged: {copy}"]
    assert all("nbgrader" in c.metadata for c in nbformat.read(copy, as_version=4).cells)


def test_checks_raise_for_nbgrader_only_when_asked(monkeypatch, capsys):
    def todo(size, patch):
        raise NotImplementedError("Hint: rows.")

    assert checks.check_num_patches(todo).status == "todo"  # a learner's notebook: never raises
    monkeypatch.setenv("VIT_LESSON_CHECKS_RAISE", "1")
    with pytest.raises(AssertionError, match="not done yet"):
        checks.check_num_patches(todo)
    assert checks.check_num_patches(lambda s, p: (s // p) ** 2)


def test_a_demonstration_is_not_graded_and_shown_markers_are_reported():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from vit_lesson.nbgrader_stamp import nbgrader_problems

    nb = new_notebook(cells=[
        new_markdown_cell("Exercises look like\n```python\n    ### BEGIN SOLUTION\n    ...\n    ### END SOLUTION\n```"),
        new_code_cell("def wrong(s, p):\n    return s // p\n\nchecks.check_num_patches(wrong)"),  # defined here: a demo
        new_code_cell("from vit_lesson import create_model\n\nchecks.check_capstone(create_model('digits'))"),
        new_code_cell("def num_patches(s, p):\n    ### BEGIN SOLUTION\n    return (s // p) ** 2\n    ### END SOLUTION"),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nchecks.check_num_patches(num_patches)"),
    ])
    stamp_nbgrader(nb)
    assert [c.metadata["nbgrader"]["grade"] for c in nb.cells] == [False, False, False, False, True]
    assert [c.metadata["nbgrader"]["solution"] for c in nb.cells] == [False, False, False, True, False]
    problems = nbgrader_problems(nb)
    assert len(problems) == 1 and problems[0].startswith("cell 0 (markdown)")
