"""Teacher grading: run every learner's notebooks and tabulate which exercise checks passed.

Hand-in layout, one folder per learner, notebooks under their course names::

    submissions/
        ada/01_patches.ipynb
        ada/03_attention.ipynb
        grace/01_patches.ipynb

``python -m vit_lesson grade submissions --out report`` runs each notebook headless (nbclient,
a kernel on this Python, so with this environment's packages) in a temporary folder, with a time
limit per notebook, then writes

- ``report/grades.csv`` and ``report/grades.md``: one row per learner x notebook, a ``status``
  column, a ``passed`` count and one column per exercise (``pass`` / ``fail`` / ``todo`` /
  ``missing``);
- ``report/executed/<learner>/<notebook>.ipynb``: the executed copies, to read what went wrong.

Which exercises a notebook has comes from the solution notebook of the same name (``--solutions``,
default ``notebooks/``): the check lines in its stored outputs. An exercise whose check never
printed (check cell deleted, or the run stopped before it) is ``missing``. A notebook that kills
its kernel, runs out of time, is not a notebook at all, or raises in a cell is reported in
``status`` and never stops the grading of the others. Submissions are only read, never modified;
their stored outputs are cleared before running, so only what the checks print now counts.

Printed check lines are not trusted: after every code cell the grader runs a cell of its own that
reports what the checks really returned (``vit_lesson.checks.core.RESULTS``), tagged with a secret
made for this run, and grades from that. A ``✅`` line that a learner prints by hand counts for
nothing and is named in ``detail``. (Code that rewrites ``RESULTS`` on purpose could still fool it;
the executed copy, which leaves the grader's cells out, shows who did.)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ._optional import optional
from .checks.core import FAIL, PASS, TODO

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

__all__ = ["Run", "Grade", "execute_notebook", "kernel_manager", "check_results", "expected_exercises",
           "add_recorders", "recorded_results", "remove_recorders", "RECORDER",
           "grade", "grade_notebook", "markdown_table", "csv_table", "write_report", "MISSING",
           "NOT_SUBMITTED"]

MISSING = "missing"
OK, ERRORS, CRASHED, TIMEOUT, INVALID, NOT_SUBMITTED = "ok", "errors", "crashed", "timeout", "invalid", "not submitted"

#: A check's line, as :class:`vit_lesson.checks.core.CheckResult` prints it.
CHECK_LINE = re.compile(
    r"^(?P<icon>✅|⏳|❌) Exercise (?P<id>\S+) \((?P<title>.*?)\)(?: passed:| is not done yet:|:).*$", re.MULTILINE)
_STATUS = {"✅": PASS, "⏳": TODO, "❌": FAIL}
_ICON = {PASS: "✅ pass", FAIL: "❌ fail", TODO: "⏳ todo", MISSING: "· missing"}
KERNEL_NAME = "vit-lesson-grading"


# --- running one notebook ------------------------------------------------------------------------

@dataclass
class Run:
    """How a notebook's run ended: ``status`` is ok / errors / crashed / timeout, ``detail`` says where."""

    status: str
    detail: str = ""
    seconds: float = 0.0


def kernel_manager(python: str | None = None, spec_root: str | Path | None = None):
    """An nbclient-ready kernel manager whose kernel is ``python -m ipykernel_launcher``.

    The kernel spec is written to ``spec_root`` (a private folder), so nothing is registered
    with Jupyter globally and the notebook's own ``kernelspec`` metadata is ignored.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_root = Path(spec_root or tempfile.mkdtemp(prefix="vit-lesson-kernel-"))
    spec = spec_root / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (vit_lesson grading)", "language": "python"}))
    return AsyncKernelManager(kernel_name=KERNEL_NAME, transport="ipc", connection_file=str(spec_root / "kernel.json"),
                              kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_root)]))


#: Metadata key of the cells the grader adds to a submission (never counted, never written back).
RECORDER = "vit_lesson_grader"


def _code_cell_label(nb, cell) -> str:
    code = [c for c in nb.cells if c.cell_type == "code" and not c.metadata.get(RECORDER)]
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "").strip()
    return f"code cell {code.index(cell) + 1} (`{first_line[:60]}`)"


def execute_notebook(nb, workdir: str | Path, timeout: float = 300, python: str | None = None,
                     env: dict | None = None) -> Run:
    """Run every code cell of ``nb`` (in place) in a fresh kernel whose working directory is ``workdir``.

    ``timeout`` limits all the cells together, in seconds (kernel start-up is not counted). Cells
    that raise do not stop the run (``status`` becomes ``errors``); a kernel that dies
    (``crashed``) or a run out of time (``timeout``) stops it, keeping the outputs of the cells
    that ran. Never raises for what the notebook does.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    start = time.monotonic()
    running = {}

    def remaining(cell):  # nbclient asks as each cell starts; the clock starts at the first one
        running.setdefault("deadline", time.monotonic() + timeout)
        running["cell"] = cell
        return max(1, math.ceil(running["deadline"] - time.monotonic()))

    with tempfile.TemporaryDirectory(prefix="vit-lesson-kernel-") as spec_root:
        client = NotebookClient(
            nb, km=kernel_manager(python, spec_root), timeout_func=remaining, allow_errors=True,
            shutdown_kernel="immediate", startup_timeout=120, resources={"metadata": {"path": str(workdir)}})
        kernel_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})}
        kernel_env = {k: v for k, v in kernel_env.items() if v is not None}
        try:
            client.execute(cleanup_kc=True, env=kernel_env)
        except CellTimeoutError:
            where = _code_cell_label(nb, running["cell"]) if "cell" in running else "startup"
            return Run(TIMEOUT, f"still running after {timeout:g} s, in {where}", time.monotonic() - start)
        except DeadKernelError:
            where = f" in {_code_cell_label(nb, running['cell'])}" if "cell" in running else " while starting"
            return Run(CRASHED, f"the kernel died{where} (os._exit, a segfault or out of memory?)",
                       time.monotonic() - start)
        except Exception as error:  # noqa: BLE001 - e.g. the kernel would not start
            return Run(CRASHED, f"could not run: {type(error).__name__}: {error}", time.monotonic() - start)
    errors = [(cell, out) for cell in nb.cells if cell.cell_type == "code" and not cell.metadata.get(RECORDER)
              for out in cell.get("outputs", []) if out.output_type == "error"]
    if errors:
        cell, out = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Run(ERRORS, f"{_code_cell_label(nb, cell)} raised {out.ename}: {out.evalue}"[:300] + more,
                   time.monotonic() - start)
    return Run(OK, "", time.monotonic() - start)


# --- reading check results --------------------------------------------------------------------------

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
    """``{exercise id: (title, status, line)}`` from the check lines in a notebook's outputs.

    ``status`` is ``pass`` / ``fail`` / ``todo``; an exercise checked twice keeps its last line.
    """
    results = {}
    for match in CHECK_LINE.finditer(output_text(nb)):
        results[match["id"]] = (match["title"], _STATUS[match["icon"]], match[0])
    return results


def add_recorders(nb, secret: str) -> None:
    """After every code cell of ``nb``, add a cell that prints ``secret`` and the checks' real results.

    The added cells carry ``metadata[RECORDER]``; :func:`recorded_results` reads them back and
    :func:`remove_recorders` takes them out again. ``secret`` exists only in these cells, so
    nothing the learner's cells print can pass for them.
    """
    source = ("import json as _vl_json, vit_lesson.checks.core as _vl_core\n"
              f"print({secret!r}, _vl_json.dumps([[r.exercise, r.title, r.status, r.line] "
              "for r in _vl_core.RESULTS]))")
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code":
            recorder = nbformat.v4.new_code_cell(source)
            recorder.metadata[RECORDER] = True
            cells.append(recorder)
    nb.cells = cells


def recorded_results(nb, secret: str) -> dict[str, tuple[str, str, str]] | None:
    """``{exercise id: (title, status, line)}`` from the last recorder cell that ran (None if none did)."""
    last = None
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get(RECORDER):
            for out in cell.get("outputs", []):
                if out.output_type == "stream" and out.text.startswith(secret + " "):
                    last = out.text[len(secret) + 1:]
    if last is None:
        return None
    return {exercise: (title, status, line) for exercise, title, status, line in json.loads(last)}


def remove_recorders(nb) -> None:
    nb.cells = [cell for cell in nb.cells if not cell.metadata.get(RECORDER)]


def expected_exercises(solution: str | Path) -> dict[str, str]:
    """``{exercise id: title}`` of a solution notebook, from the check lines of its stored outputs.

    Falls back to the ``checks.check_xxx(`` calls in its code (titles then are the check names)
    when the notebook is stored without outputs.
    """
    nb = nbformat.read(Path(solution), as_version=4)
    found = {ex: title for ex, (title, _, _) in check_results(nb).items()}
    if found:
        return found
    from . import checks

    for cell in nb.cells:
        if cell.cell_type == "code":
            for name in re.findall(r"checks\.(check_\w+)\(", cell.source):
                exercise_id = getattr(getattr(checks, name, None), "exercise_id", None)
                if exercise_id:
                    found[exercise_id] = name.removeprefix("check_")
    return found


# --- grading ---------------------------------------------------------------------------------------

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

    @property
    def passed(self) -> str:
        return f"{sum(s == PASS for s in self.exercises.values())}/{len(self.exercises)}"


def grade_notebook(path: str | Path, expected: dict[str, str] | None = None, timeout: float = 300,
                   python: str | None = None, learner: str = "", executed_copy: str | Path | None = None) -> Grade:
    """Run one submitted notebook in a temporary folder and grade its exercises (never raises)."""
    path, expected = Path(path), dict(expected or {})
    grade = Grade(learner, path.stem, OK, titles=dict(expected), exercises={ex: MISSING for ex in expected})
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no list of cells")
    except Exception as error:  # noqa: BLE001 - anything that is not a readable notebook
        grade.status, grade.detail = INVALID, f"not a readable notebook: {type(error).__name__}: {error}"[:300]
        return grade
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
    secret = secrets.token_hex(16)
    add_recorders(nb, secret)
    with tempfile.TemporaryDirectory(prefix="vit-lesson-grade-") as workdir:
        run = execute_notebook(nb, workdir, timeout=timeout, python=python)
    grade.status, grade.detail, grade.seconds = run.status, run.detail, run.seconds
    recorded = recorded_results(nb, secret) or {}
    remove_recorders(nb)
    for exercise_id, (title, status, _) in recorded.items():
        grade.titles.setdefault(exercise_id, title)
        grade.exercises[exercise_id] = status
    notes = []
    faked = [ex for ex, (_, status, _) in check_results(nb).items()
             if status == PASS and recorded.get(ex, (None, None))[1] != PASS]
    if faked:
        notes.append(f"printed a pass line for exercise{'s' if len(faked) > 1 else ''} {', '.join(faked)} "
                     "that no check produced (not counted)")
    missing = [ex for ex, status in grade.exercises.items() if status == MISSING]
    if missing and grade.status == OK:
        notes.append(f"no check output for exercise{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    grade.detail = "; ".join([grade.detail, *notes] if grade.detail else notes)
    if executed_copy:
        Path(executed_copy).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_copy)
    return grade


def _submissions(submissions: Path) -> dict[str, dict[str, Path]]:
    """``{learner: {notebook name: path}}`` from ``submissions/<learner>/<notebook>.ipynb``."""
    found = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found[folder.name] = {p.stem: p for p in sorted(folder.glob("*.ipynb")) if not p.name.startswith(".")}
    return found


def grade(submissions: str | Path, out: str | Path | None = "report", timeout: float = 300,
          solutions: str | Path | None = "notebooks", python: str | None = None, jobs: int = 1,
          log=sys.stderr) -> list[Grade]:
    """Grade every ``submissions/<learner>/<notebook>.ipynb``; write the report to ``out`` (if given).

    Every learner is expected to hand in every notebook name that anyone handed in; a missing
    one gets a ``not submitted`` row. ``jobs`` notebooks run at a time. Returns the rows, learners
    then notebooks in order.
    """
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise FileNotFoundError(f"No submissions folder {submissions}: expected {submissions}/<learner>/<notebook>.ipynb.")
    handed_in = _submissions(submissions)
    names = sorted({name for notebooks in handed_in.values() for name in notebooks})
    expected = {}
    for name in names:
        solution = Path(solutions) / f"{name}.ipynb" if solutions else None
        expected[name] = expected_exercises(solution) if solution and solution.is_file() else {}

    def grade_one(learner, name):
        if name not in handed_in[learner]:
            return Grade(learner, name, NOT_SUBMITTED, titles=dict(expected[name]),
                         exercises={ex: MISSING for ex in expected[name]})
        copy = Path(out) / "executed" / learner / f"{name}.ipynb" if out else None
        row = grade_notebook(handed_in[learner][name], expected[name], timeout, python, learner, copy)
        if log:
            print(f"graded {learner}/{name}: {row.status}, {row.passed} passed ({row.seconds:.0f} s)", file=log)
        return row

    pairs = [(learner, name) for learner in handed_in for name in names]
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # each run is a kernel process: threads only wait
        grades = list(pool.map(lambda pair: grade_one(*pair), pairs))
    if out:
        write_report(grades, out)
    return grades


# --- the report --------------------------------------------------------------------------------------

def _natural(exercise_id: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-]", exercise_id)]


def _columns(grades) -> list[tuple[str, str]]:
    titles = {}
    for row in grades:
        for exercise_id in row.exercises:
            titles.setdefault(exercise_id, row.titles.get(exercise_id, ""))
    return [(ex, f"{ex} {titles[ex]}".strip()) for ex in sorted(titles, key=_natural)]


def _rows(grades, icons: bool):
    columns = _columns(grades)
    header = ["learner", "notebook", "status", "passed", *(label for _, label in columns), "detail"]
    rows = []
    for row in grades:
        cells = [row.exercises.get(ex, "") for ex, _ in columns]
        if icons:
            cells = [_ICON.get(cell, cell) for cell in cells]
        rows.append([row.learner, row.notebook, row.status, row.passed, *cells, row.detail])
    return header, rows


def csv_table(grades) -> str:
    """The report as CSV (exercise cells: pass / fail / todo / missing, blank if not in that notebook)."""
    header, rows = _rows(grades, icons=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_table(grades) -> str:
    """The report as a Markdown table, with a per-exercise class summary below it."""
    header, rows = _rows(grades, icons=True)

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    text = [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]
    summary = []
    for ex, label in _columns(grades):
        graded = [r for r in grades if ex in r.exercises]
        summary.append(f"{label}: {sum(r.exercises[ex] == PASS for r in graded)}/{len(graded)}")
    if summary:
        text += ["", "Passed, per exercise: " + "; ".join(summary) + "."]
    return "\n".join(text) + "\n"


def write_report(grades, out: str | Path) -> tuple[Path, Path]:
    """Write ``out/grades.csv`` and ``out/grades.md``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grades.csv").write_text(csv_table(grades), encoding="utf-8")
    (out / "grades.md").write_text(markdown_table(grades), encoding="utf-8")
    return out / "grades.csv", out / "grades.md"


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "grade", help="run learners' notebooks and tabulate which exercise checks passed",
        description="Grade SUBMISSIONS/<learner>/<NN_name>.ipynb: run each notebook headless in a "
                    "temporary folder and write OUT/grades.csv, OUT/grades.md and OUT/executed/.")
    parser.add_argument("submissions", help="folder with one sub-folder of notebooks per learner")
    parser.add_argument("--out", default="report", help="folder for the report (default: report)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per notebook (default: 300)")
    parser.add_argument("--solutions", default=None,
                        help="folder of solution notebooks, which say which exercises each notebook has "
                             "(default: notebooks, if it exists)")
    parser.add_argument("--python", default=None, help="Python that runs the notebooks (default: this one)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks to run at the same time (default: 1)")

    def run(args) -> int:
        # nbclient leaves a pending task behind when a kernel dies; its GC-time log line is noise here
        logging.getLogger("asyncio").addFilter(
            lambda record: "Task was destroyed but it is pending" not in record.getMessage())
        if not Path(args.submissions).is_dir():
            parser.error(f"no submissions folder {args.submissions!r}: expected "
                         f"{args.submissions}/<learner>/<NN_name>.ipynb")
        if args.solutions is not None and not Path(args.solutions).is_dir():
            parser.error(f"no solutions folder {args.solutions!r}")
        solutions = args.solutions or ("notebooks" if Path("notebooks").is_dir() else None)
        if solutions is None:
            print("warning: no solutions folder, so deleted check cells cannot be reported as missing",
                  file=sys.stderr)
        grades = grade(args.submissions, args.out, args.timeout, solutions, args.python, args.jobs)
        print(markdown_table(grades), end="")
        print(f"\nwrote {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'grades.md'} and "
              f"{Path(args.out) / 'executed'}/", file=sys.stderr)
        return 0

    parser.set_defaults(func=run)
