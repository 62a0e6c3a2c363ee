"""One learner's notebook graded: a :class:`Grade` row from its run and the grader's verdicts.

:func:`grade_notebook` reads the submission (a file that is not a notebook is ``invalid``),
runs a private copy in its sandbox (:func:`.session.execute`) and folds the grader's
:class:`~.verdicts.Verdict` s into one status per exercise: ``pass`` / ``fail`` / ``todo`` as the
grader's check said, ``missing`` when no check of it ran. The row's ``detail`` names what
happened and what does not count: an answer that is the course's own code, checks of another
notebook's exercises, a pass the notebook *shows* that the grader's check does not give.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .._optional import optional
from ..checks.records import FAIL, PASS
from ..i18n import _
from .kernel import MAX_OUTPUT
from .session import OK, execute
from .verdicts import check_results

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

__all__ = ["Grade", "grade_notebook", "natural_order", "MISSING", "INVALID", "NOT_SUBMITTED", "MAX_NOTEBOOK"]

MISSING = "missing"
INVALID, NOT_SUBMITTED = "invalid", "not submitted"
MAX_NOTEBOOK = 50 << 20        # a submitted file larger than this is not run


def natural_order(exercise_id: str):
    """Sort key: 2.10 after 2.9."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-]", exercise_id)]


@dataclass
class Grade:
    """One learner's notebook: how its run ended and each exercise's result."""

    learner: str
    notebook: str
    status: str
    detail: str = ""
    exercises: dict[str, str] = field(default_factory=dict)   # id -> pass / fail / todo / missing
    titles: dict[str, str] = field(default_factory=dict)      # id -> title
    seconds: float = 0.0
    messages: dict[str, str] = field(default_factory=dict)    # id -> the grader's check message

    @property
    def passed(self) -> str:
        return f"{sum(s == PASS for s in self.exercises.values())}/{len(self.exercises)}"


def grade_notebook(path: str | Path, expected: dict[str, str] | None = None, timeout: float = 300,
                   python: str | None = None, learner: str = "", executed_copy: str | Path | None = None,
                   sandbox: str = "auto", limits=None, max_output: int = MAX_OUTPUT, hide=(),
                   name: str | None = None) -> Grade:
    """Run one submitted notebook in its sandbox and grade its exercises with the grader's checks (never raises)."""
    path = Path(path)
    name = name or path.stem
    number = re.match(r"(\d+)_", name)
    expected = dict(expected or {})
    grade = Grade(learner, name, OK, titles=dict(expected), exercises={ex: MISSING for ex in expected})
    try:
        if path.stat().st_size > MAX_NOTEBOOK:
            raise ValueError(_("it is larger than {mib} MiB").format(mib=MAX_NOTEBOOK >> 20))
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError(_("it has no list of cells"))
        for cell in nb.cells:
            if not isinstance(cell.get("source", ""), str):
                raise ValueError(_("a cell's source is not text"))
    except Exception as error:  # noqa: BLE001 - anything that is not a readable notebook
        grade.status, grade.detail = INVALID, _("not a readable notebook: {error}").format(
            error=f"{type(error).__name__}: {error}")[:300]
        return grade
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix="vit-lesson-grade-") as workdir:
        scratch = Path(workdir) / "work"
        scratch.mkdir()
        nbformat.write(nb, scratch / f"{name}.ipynb")  # the notebook's private copy
        run, verdicts = execute(nb, scratch, timeout, python, None, sandbox, limits, max_output, hide,
                                grade_checks=True)
        shutil.rmtree(scratch, ignore_errors=True)
    grade.status, grade.detail, grade.seconds = run.status, run.detail, run.seconds
    notes = list(run.notes)
    own, package, foreign, unknown = {}, {}, set(), []
    for verdict in verdicts:
        result = verdict.record
        if result is None:
            unknown.append(verdict.note)
            continue
        ex = result.exercise
        if ex not in expected and not (not expected and number and ex.split(".")[0] == str(int(number[1]))):
            foreign.add(ex)
            continue
        grade.titles.setdefault(ex, result.title)
        if verdict.note == "package":
            package[ex] = result
        else:
            own[ex] = result
    for ex in package:
        notes.append(_("exercise {exercise}: {message} (not counted)").format(exercise=ex, message=package[ex].message))
    for ex, result in {**package, **own}.items():
        grade.exercises[ex] = result.status
        if result.status == FAIL:
            grade.messages[ex] = result.message
    if foreign:
        notes.append((_("ran the checks of exercises {exercises} from another notebook (not counted)")
                      if len(foreign) > 1
                      else _("ran the check of exercise {exercises} from another notebook (not counted)")).format(
            exercises=", ".join(sorted(foreign, key=natural_order))))
    if unknown:
        notes.append(unknown[0] + (_(" (and {count} more)").format(count=len(unknown) - 1) if len(unknown) > 1 else ""))
    shown = check_results(nb)
    faked = [ex for ex, (_title, status, _line) in shown.items() if status == PASS and grade.exercises.get(ex) != PASS
             and ex not in package]
    if faked:
        notes.append((_("the notebook shows a pass for exercises {exercises} that the grader's check does not give "
                        "(not counted)") if len(faked) > 1
                      else _("the notebook shows a pass for exercise {exercises} that the grader's check does not give "
                             "(not counted)")).format(exercises=", ".join(faked)))
    missing = [ex for ex, status in grade.exercises.items() if status == MISSING]
    if missing and grade.status == OK:
        notes.append((_("no check ran for exercises {exercises}") if len(missing) > 1
                      else _("no check ran for exercise {exercises}")).format(exercises=", ".join(missing)))
    grade.detail = "; ".join([grade.detail, *notes] if grade.detail else notes)
    if executed_copy:
        Path(executed_copy).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_copy)
    return grade
