"""The grader's verdicts: every check a notebook called, run again in the grader's own process.

The channel: the agent in the learner's kernel sends what a check was given (an *entry*:
exercise id, check name, the answers as plain data; :mod:`vit_lesson.checks.agent`). For each
entry :func:`run_check` looks the check up in the course's registry
(:data:`vit_lesson.checks.core.CHECKS`), decodes the answers through a
:class:`~vit_lesson.checks.remote.Bridge` and runs the check inside a
:class:`~vit_lesson.checks.records.Recorder` that it owns: the record the check adds there is the
:class:`Verdict`. So a verdict is always made here, by the grader's copy of the checks, on inputs
made here; nothing the kernel prints, records or writes (a ``✅`` line, a ``CheckResult``, a
forged message, a file) is read as one.

The printed lines are read only to *name* what a notebook shows (:func:`check_results`, with the
checks' own line format, :func:`vit_lesson.checks.records.parse_line`): a pass it shows that the
grader does not give is reported, never counted. Which exercises a notebook has comes from the
check calls in its solution's code (:func:`expected_exercises`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .._optional import optional
from ..checks.records import FAIL, CheckResult, Recorder, parse_lines
from ..i18n import _

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

__all__ = ["Verdict", "run_check", "output_text", "check_results", "expected_exercises"]

_CHECK_LOCK = threading.Lock()  # grader-side checks seed torch's global RNG: one at a time
_CHECK_CALL = re.compile(r"\b(check_\w+)\s*\(")


@dataclass
class Verdict:
    """The grader's verdict on one check call: its ``record`` (None: no course check), and a ``note``.

    ``note`` is ``"package"`` when the answer was the course's own code (the record fails, and the
    report names it), or the reason there is no record.
    """

    record: CheckResult | None
    note: str = ""


def run_check(entry: dict, bridge) -> Verdict:
    """Run the grader's own check on the answers an entry describes (in a worker thread; never raises)."""
    from ..checks import find_check
    from ..checks.core import CHECKS
    from ..checks.proxies import package_answer

    exercise_id, name = str(entry.get("exercise", "")), str(entry.get("check", ""))
    find_check(name)  # imports every check module, so the registry is complete
    check = CHECKS.get(exercise_id)
    if check is None or check.__name__ != name:
        return Verdict(None, _("a check the course does not have ({check} for {exercise}) was called").format(
            check=name[:40], exercise=exercise_id[:20]))
    title = getattr(check, "title", exercise_id)
    if entry.get("error"):
        return Verdict(CheckResult(exercise_id, title, FAIL, _("the grader could not read the answer: {error}").format(
            error=entry["error"])[:300], check=name))
    recorder = Recorder()
    try:
        with recorder:
            args = [bridge.decode(a) for a in entry.get("args", [])]
            kwargs = {k: bridge.decode(v) for k, v in (entry.get("kwargs") or {}).items()}
            package = [p for p in map(package_answer, [*args, *kwargs.values()]) if p]
            if package:
                return Verdict(CheckResult(exercise_id, title, FAIL, _(
                    "answered with {answer}, the course's own code").format(answer=package[0]), check=name), "package")
            with _CHECK_LOCK:
                check(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a malformed answer is the learner's fail, never the grader's crash
        message = _("the grader could not check the answer ({error})").format(error=f"{type(error).__name__}: {error}")
        return Verdict(CheckResult(exercise_id, title, FAIL, message[:300], check=name))
    record = recorder.last(exercise_id)
    if record is None:  # a check always records; this would be a bug in the course
        record = CheckResult(exercise_id, title, FAIL, _("the grader could not check the answer ({error})").format(
            error="no record"), check=name)
    return Verdict(record)


# --- what a notebook shows, and which exercises it has ----------------------------------------------

def output_text(nb) -> str:
    """Everything the code cells of ``nb`` printed or displayed as text, in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def check_results(nb) -> dict[str, tuple[str, str, str]]:
    """``{exercise id: (title, status, line)}`` from the check lines a notebook's outputs show.

    ``status`` is ``pass`` / ``fail`` / ``todo``; an exercise checked twice keeps its last line.
    For reading stored notebooks: the grader never counts a printed line.
    """
    return {record.exercise: (record.title, record.status, line) for record, line in parse_lines(output_text(nb))}


def expected_exercises(solution: str | Path) -> dict[str, str]:
    """``{exercise id: title}`` of a solution notebook: the exercise checks its code cells call.

    The titles are the checks' own (English, the message ids; the report translates them).
    """
    from ..checks import find_check

    nb = nbformat.read(Path(solution), as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            for name in _CHECK_CALL.findall(cell.source):
                check = find_check(name)
                if check is not None:
                    found[check.exercise_id] = check.title
    return found
