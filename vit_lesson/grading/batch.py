"""Grading a class: every ``submissions/<learner>/<notebook>.ipynb``, ``jobs`` at a time, then the report."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..i18n import _
from .grades import MISSING, NOT_SUBMITTED, Grade, grade_notebook
from .kernel import MAX_OUTPUT
from .report import _status_word, speaking, write_report
from .submissions import find_submissions
from .verdicts import expected_exercises

__all__ = ["grade"]


def grade(submissions: str | Path, out: str | Path | None = "report", timeout: float = 300,
          solutions: str | Path | None = "notebooks", python: str | None = None, jobs: int = 1,
          log=sys.stderr, sandbox: str = "auto", limits=None, max_output: int = MAX_OUTPUT,
          language: str | None = None) -> list[Grade]:
    """Grade every ``submissions/<learner>/<notebook>.ipynb``; write the report to ``out`` (if given).

    Every learner is expected to hand in every notebook name that anyone handed in; a missing
    one gets a ``not submitted`` row. ``jobs`` notebooks run at a time. Returns the rows, learners
    then notebooks in order (``grade.skipped`` holds what was not graded, and why).

    ``language`` (``"en"``, ``"zh-CN"``; default: the one in use, :func:`vit_lesson.i18n.get_language`)
    is the language of the details, the grader's check messages and the report's headings; the
    CSV's column names and status values stay English (they are what scripts read).
    """
    with speaking(language):
        return _grade(submissions, out, timeout, solutions, python, jobs, log, sandbox, limits, max_output)


def _grade(submissions, out, timeout, solutions, python, jobs, log, sandbox, limits, max_output) -> list[Grade]:
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise FileNotFoundError(_("No submissions folder {folder}: expected "
                                  "{folder}/<learner>/<notebook>.ipynb.").format(folder=submissions))
    solution_names = (sorted(p.stem for p in Path(solutions).glob("*.ipynb"))
                      if solutions and Path(solutions).is_dir() else None)
    handed_in, skipped = find_submissions(submissions, solution_names)
    names = sorted({name for notebooks in handed_in.values() for name in notebooks})
    expected = {}
    for name in names:
        solution = Path(solutions) / f"{name}.ipynb" if solutions else None
        expected[name] = expected_exercises(solution) if solution and solution.is_file() else {}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)  # exists, so the sandboxes can hide it
    hide = [submissions.resolve(), *([Path(solutions).resolve()] if solutions else []),
            *([Path(out).resolve()] if out else [])]

    def grade_one(learner, name):
        if name not in handed_in[learner]:
            return Grade(learner, name, NOT_SUBMITTED, titles=dict(expected[name]),
                         exercises={ex: MISSING for ex in expected[name]})
        path, note = handed_in[learner][name]
        copy = Path(out) / "executed" / learner / f"{name}.ipynb" if out else None
        row = grade_notebook(path, expected[name], timeout, python, learner, copy, sandbox, limits, max_output,
                             hide, name=name)
        if note:
            row.detail = "; ".join(filter(None, [note, row.detail]))
        if log:
            print(_("graded {learner}/{notebook}: {status}, {passed} passed ({seconds:.0f} s)").format(
                learner=learner, notebook=name, status=_status_word(row.status), passed=row.passed,
                seconds=row.seconds), file=log)
        return row

    pairs = [(learner, name) for learner in handed_in for name in names]
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # each run is a kernel process: threads only wait
        grades = list(pool.map(lambda pair: grade_one(*pair), pairs))
    if log:
        for item in skipped:
            print(_("not graded: {path}: {reason}").format(path=item.path, reason=item.reason), file=log)
    if out:
        write_report(grades, out, skipped)
    grade.skipped = skipped
    return grades


grade.skipped = []
