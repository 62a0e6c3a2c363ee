"""Teacher grading: run every learner's notebooks in a sandbox and tabulate which exercises pass.

Hand-in layout, one folder per learner, notebooks under their course names::

    submissions/
        ada/01_patches.ipynb
        ada/03_attention.ipynb
        grace/01_patches.ipynb

``python -m vit_lesson grade submissions --out report`` runs each notebook headless, each in its
own sandbox (:mod:`vit_lesson.sandbox`: bubblewrap namespaces where available, else a weaker
process sandbox; both with caps on CPU time, memory, file size, output and processes, and nothing
left alive afterwards), from a private copy of the notebook in a scratch folder that is the only
place it may write; the other submissions, the solutions and the report are hidden from it.
It writes

- ``report/grades.csv`` and ``report/grades.md``: one row per learner x notebook, a ``status``
  column, a ``passed`` count and one column per exercise (``pass`` / ``fail`` / ``todo`` /
  ``missing``), and a ``detail`` that names what went wrong or looked wrong;
- ``report/summary.md`` and ``report/summary.png``: the pass rate per exercise and the most
  frequent ❌ messages per exercise (the mistakes the class made);
- ``report/executed/<learner>/<notebook>.ipynb``: the executed copies, to read what went wrong.

**Verdicts are the grader's own.** The check cells still run in the learner's kernel and print
their ✅ / ⏳ / ❌ lines there (the executed copy shows them), but nothing printed or recorded in
that kernel counts. After every cell the grader asks the kernel which answers the checks were
given (:mod:`vit_lesson.checks.remote`) and runs the same check **in its own process**: inputs
and expected answers are made here, each call of the learner's function goes to the kernel and
only plain data comes back (numbers, strings, tensors as bytes; never a pickle). So a patched
``RESULTS``, ``CheckResult`` or ``print``, a hand-printed ✅ line or a check cell hidden by
metadata earns nothing; an answer that is the course package's own function, class or module is
named and not counted, and a pass the notebook shows but the grader's check does not confirm is
named in ``detail``.

Which exercises a notebook has comes from the solution notebook of the same name
(``--solutions``, default ``notebooks/``): the check lines in its stored outputs; without one,
the exercises numbered like the notebook. Checks of other notebooks' exercises do not count. An
exercise whose check never ran is ``missing``. A notebook that kills its kernel, runs out of time
or memory, is not a notebook, or raises in a cell is reported in ``status`` and never stops the
grading of the others. Submissions are only read, never modified.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ._optional import optional
from .checks.core import FAIL, PASS, TODO
from .i18n import LANGUAGES, _, get_language, set_language

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

__all__ = ["Run", "Grade", "Skipped", "execute_notebook", "kernel_manager", "check_results", "expected_exercises",
           "output_text", "grade", "grade_notebook", "find_submissions", "markdown_table", "csv_table",
           "summary_table", "write_report", "MISSING", "NOT_SUBMITTED", "MAX_OUTPUT"]

MISSING = "missing"
OK, ERRORS, CRASHED, TIMEOUT, INVALID, NOT_SUBMITTED = "ok", "errors", "crashed", "timeout", "invalid", "not submitted"
MAX_OUTPUT = 8 << 20           # bytes of outputs kept per notebook (the rest is cut, with a note)
MAX_MESSAGE = MAX_OUTPUT + (4 << 20)  # one message from the kernel larger than this drops the connection
MAX_NOTEBOOK = 50 << 20        # a submitted file larger than this is not run

#: A check's line, as :class:`vit_lesson.checks.core.CheckResult` prints it, in English or (the
#: zh-CN catalog's ``练习 {exercise}（{title}）通过：...``) in Chinese.
CHECK_LINE = re.compile(
    r"^(?P<icon>✅|⏳|❌) (?:Exercise (?P<id>\S+) \((?P<title>.*?)\)(?: passed:| is not done yet:|:)"
    r"|练习 (?P<zh_id>[^\s（]+)（(?P<zh_title>.*?)）(?:通过：|还没有完成：|：)).*$", re.MULTILINE)
_STATUS = {"✅": PASS, "⏳": TODO, "❌": FAIL}


def _icon(value: str) -> str:
    """An exercise cell of grades.md: the icon and the status word, in the language in use."""
    return {PASS: "✅ " + _("pass"), FAIL: "❌ " + _("fail"), TODO: "⏳ " + _("todo"),
            MISSING: "· " + _("missing")}.get(value, value)


def _status_word(status: str) -> str:
    """A notebook's status (ok / errors / crashed / ...) in grades.md, in the language in use."""
    return {OK: _("ok"), ERRORS: _("errors"), CRASHED: _("crashed"), TIMEOUT: _("timeout"),
            INVALID: _("invalid"), NOT_SUBMITTED: _("not submitted")}.get(status, status)


@contextlib.contextmanager
def speaking(language: str | None):
    """Speak ``language`` (a tag of :data:`vit_lesson.i18n.LANGUAGES`) inside the block; None: the one in use."""
    if language is None:
        yield get_language()
        return
    before = get_language()
    try:
        yield set_language(language)
    finally:
        set_language(before)
KERNEL_NAME = "vit-lesson-grading"
_CHECK_LOCK = threading.Lock()  # grader-side checks seed torch's global RNG: one at a time


# --- running one notebook ------------------------------------------------------------------------

@dataclass
class Run:
    """How a notebook's run ended: ``status`` is ok / errors / crashed / timeout, ``detail`` says where;
    ``seconds`` is the time of its cells (kernel start-up not counted)."""

    status: str
    detail: str = ""
    seconds: float = 0.0
    notes: list = field(default_factory=list)


def kernel_manager(python: str | None = None, spec_root: str | Path | None = None, argv: list | None = None,
                   connection_dir: str | Path | None = None, owner: int | None = None):
    """An nbclient-ready kernel manager whose kernel is ``argv`` (default ``python -m ipykernel_launcher``).

    The kernel spec is written to ``spec_root`` (a private folder), so nothing is registered with
    Jupyter globally and the notebook's own ``kernelspec`` metadata is ignored. The connection
    file and the IPC sockets go to ``connection_dir`` (default ``spec_root``), chowned to
    ``owner`` when the kernel runs under another user id.
    """
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):
        def write_connection_file(self, **kwargs):
            super().write_connection_file(**kwargs)
            if owner is not None:
                os.chown(self.connection_file, owner, owner)

    spec_root = Path(spec_root or tempfile.mkdtemp(prefix="vit-lesson-kernel-"))
    connection_dir = Path(connection_dir or spec_root)
    spec = spec_root / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = argv or [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": "Python (vit_lesson grading)", "language": "python"}))
    km = Manager(kernel_name=KERNEL_NAME, transport="ipc", connection_file=str(connection_dir / "kernel.json"),
                 ip=str(connection_dir / "ipc"), kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_root)]))
    km.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)  # one huge message cannot fill the grader's memory
    return km


def _code_cell_label(nb, cell) -> str:
    code = [c for c in nb.cells if c.cell_type == "code"]
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "").strip()
    number = next((i for i, c in enumerate(code) if c is cell), -1) + 1
    return _("code cell {number} (`{line}`)").format(number=number, line=first_line[:60])


def _output_size(content: dict) -> int:
    size = len(content.get("text", "") or "") + len(str(content.get("traceback", "")))
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    return size


def _client_class():
    from nbclient import NotebookClient

    class Client(NotebookClient):
        """nbclient, keeping at most ``max_output`` bytes of outputs (a note replaces the rest)."""

        max_output = MAX_OUTPUT
        kept = 0
        cut_in = None

        def output(self, outs, msg, display_id, cell_index):
            size = _output_size(msg.get("content") or {})
            if self.cut_in is None and self.kept + size <= self.max_output:
                self.kept += size
                return super().output(outs, msg, display_id, cell_index)
            if self.cut_in is None:
                self.cut_in = cell_index
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=_(
                    "[grader: the outputs passed {mib} MiB; everything after this point was cut]").format(
                        mib=self.max_output // (1 << 20)) + "\n"))
            return None

    return Client


class _Session:
    """One notebook running in its sandbox: cells through nbclient, checks through the bridge."""

    def __init__(self, nb, sandbox, timeout, python, env, max_output, grade_checks):
        self.nb, self.sandbox, self.timeout = nb, sandbox, timeout
        self.python, self.env, self.grade_checks = python or sys.executable, env or {}, grade_checks
        self.max_output = max_output
        self.deadline = None
        self.cell = None
        self.verdicts: list = []   # (entry, CheckResult | None, note)
        self.loop = None

    def remaining(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
        return self.deadline - time.monotonic()

    async def rpc(self, request: dict) -> dict:
        """Send one request to the agent in the kernel, as a silent execute request; wait for its reply."""
        from queue import Empty

        from .checks.remote import MIME, BridgeError

        nonce = secrets.token_hex(8)
        code = ("__import__('importlib').import_module('vit_lesson.checks.remote').AGENT.respond("
                f"{nonce!r}, {json.dumps(request)!r})")
        kc = self.client.kc
        msg_id = kc.execute(code, silent=False, store_history=False, allow_stdin=False, stop_on_error=False)
        reply = None
        while True:
            left = self.remaining()
            if left <= 0:
                raise _Timeout()
            try:
                msg = await kc.get_iopub_msg(timeout=min(left, 1.0))
            except Empty:
                if not await self.client.km.is_alive():
                    raise _Dead() from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = msg.get("content", {})
            if msg["msg_type"] == "display_data":
                data = (content.get("data") or {}).get(MIME)
                if isinstance(data, dict) and data.get("nonce") == nonce:
                    reply = data.get("reply")
            elif msg["msg_type"] == "status" and content.get("execution_state") == "idle":
                break
        if reply is None:
            raise BridgeError(_("the kernel did not answer the grader (was vit_lesson.checks.remote changed?)"))
        return reply

    def _request_from_thread(self, request: dict) -> dict:
        future = asyncio.run_coroutine_threadsafe(self.rpc(request), self.loop)
        return future.result()

    async def grade_pending(self):
        from .checks.remote import Bridge

        if not self.grade_checks:
            return
        pending = await self.rpc({"op": "pending"})
        if not isinstance(pending, dict) or not isinstance(pending.get("pending"), list):
            raise _Broken(_("the kernel's answer to the grader was malformed"))
        for entry in pending["pending"][:50]:
            bridge = Bridge(self._request_from_thread)
            verdict = await self.loop.run_in_executor(None, _run_check, entry, bridge)
            self.verdicts.append(verdict)

    async def run(self) -> Run:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        self.loop = asyncio.get_running_loop()
        start = time.monotonic()
        scratch = self.sandbox.scratch
        with tempfile.TemporaryDirectory(prefix="vit-lesson-kernel-") as spec_root:
            argv = self.sandbox.wrap([self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                      "--IPKernelApp.parent_handle=1"])  # the sandbox ends it, not a poller
            km = kernel_manager(spec_root=spec_root, argv=argv, connection_dir=scratch, owner=self.sandbox.uid)
            self.client = client = _client_class()(
                self.nb, km=km, allow_errors=True, shutdown_kernel="immediate", startup_timeout=120,
                timeout_func=lambda cell: max(0.05, self.remaining()),
                skip_cells_with_tag=f"never-{secrets.token_hex(8)}",  # no tag makes a cell skip
                resources={"metadata": {"path": str(scratch)}})
            client.max_output = self.max_output
            kernel_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **self.sandbox.env(), **self.env}
            kernel_env = {k: v for k, v in kernel_env.items() if v is not None}
            run = None
            try:
                async with client.async_setup_kernel(env=kernel_env, cwd=str(scratch)):
                    if self.grade_checks:
                        msg_id = client.kc.execute("import vit_lesson.checks.remote as _vl_remote; _vl_remote.start(); "
                                                   "del _vl_remote", silent=True, store_history=False)
                        await client.async_wait_for_reply(msg_id)
                    for index, cell in enumerate(self.nb.cells):
                        if cell.get("cell_type") != "code" or not cell.source.strip():
                            continue
                        self.cell = cell
                        if self.remaining() <= 0:
                            raise _Timeout()
                        try:
                            await asyncio.wait_for(client.async_execute_cell(cell, index),
                                                   timeout=self.remaining() + 5)
                        except asyncio.TimeoutError:
                            raise _Timeout() from None
                        await self.grade_pending()
                    run = Run(OK)
                    await self._stop_kernel()
            except (CellTimeoutError, _Timeout):
                where = _code_cell_label(self.nb, self.cell) if self.cell is not None else _("startup")
                run = Run(TIMEOUT, _("still running after {seconds:g} s, in {where}").format(
                    seconds=self.timeout, where=where))
            except (DeadKernelError, _Dead):
                where = (_(" in {cell}").format(cell=_code_cell_label(self.nb, self.cell)) if self.cell is not None
                         else _(" while starting"))
                if self.sandbox.out_of_memory():
                    run = Run(CRASHED, _("the kernel was killed{where}: out of memory (the limit is {gib:g} GiB)").format(
                        where=where, gib=self.sandbox.limits.memory / (1 << 30)))
                else:
                    run = Run(CRASHED, _("the kernel died{where} (os._exit, a signal, a segfault or out of "
                                         "memory?)").format(where=where))
            except _Broken as error:
                run = Run(CRASHED, str(error))
            except Exception as error:  # noqa: BLE001 - e.g. the kernel would not start
                run = Run(CRASHED, _("could not run: {error}").format(error=f"{type(error).__name__}: {error}")[:300])
            finally:
                self.sandbox.close()
        # the cells' time (what the limit counts), or the start-up's if no cell ran
        run.seconds = time.monotonic() - (self.deadline - self.timeout if self.deadline is not None else start)
        if client.cut_in is not None:
            cell = self.nb.cells[client.cut_in]
            run.notes.append(_("output over {mib} MiB, cut from {cell} on").format(
                mib=self.max_output // (1 << 20),
                cell=_code_cell_label(self.nb, cell) if cell.cell_type == "code" else _("a cell")))
        if run.status == OK:
            errors = [(cell, out) for cell in self.nb.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []) if out.output_type == "error"]
            if errors:
                cell, out = errors[0]
                more = _(" (and {count} more)").format(count=len(errors) - 1) if len(errors) > 1 else ""
                run.status = ERRORS
                run.detail = _("{cell} raised {error}").format(
                    cell=_code_cell_label(self.nb, cell), error=f"{out.ename}: {out.evalue}")[:300] + more
        return run

    async def _stop_kernel(self):
        """Ask the launcher to end the kernel and everything it started (before nbclient's own kill)."""
        provisioner = getattr(self.client.km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                return
            for _unused in range(100):
                if not await self.client.km.is_alive():
                    break
                await asyncio.sleep(0.02)


class _Timeout(Exception):
    pass


class _Dead(Exception):
    pass


class _Broken(Exception):
    pass


def _check_registry() -> dict:
    from . import checks

    registry = {}
    for name in dir(checks):
        fn = getattr(checks, name)
        if name.startswith("check_") and getattr(fn, "exercise_id", None):
            registry[fn.exercise_id] = fn
    return registry


def _run_check(entry: dict, bridge):
    """Run the grader's own check on the answers the kernel reported (in a worker thread)."""
    from .checks.core import QUIET, CheckResult
    from .checks.remote import package_answer

    exercise_id, name = str(entry.get("exercise", "")), str(entry.get("check", ""))
    check = _check_registry().get(exercise_id)
    if check is None or check.__name__ != name:
        return entry, None, _("a check the course does not have ({check} for {exercise}) was called").format(
            check=name[:40], exercise=exercise_id[:20])
    title = getattr(check, "title", exercise_id)
    if entry.get("error"):
        return entry, CheckResult(exercise_id, title, FAIL, _("the grader could not read the answer: {error}").format(
            error=entry["error"])[:300]), None
    token = QUIET.set(True)
    try:
        args = [bridge.decode(a) for a in entry.get("args", [])]
        kwargs = {k: bridge.decode(v) for k, v in (entry.get("kwargs") or {}).items()}
        package = [p for p in map(package_answer, [*args, *kwargs.values()]) if p]
        if package:
            return entry, CheckResult(exercise_id, title, FAIL, _("answered with {answer}, the course's own code").format(
                answer=package[0])), "package"
        with _CHECK_LOCK:
            result = check(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a malformed answer is the learner's fail, never the grader's crash
        result = CheckResult(exercise_id, title, FAIL, _("the grader could not check the answer ({error})").format(
            error=f"{type(error).__name__}: {error}")[:300])
    finally:
        QUIET.reset(token)
    return entry, result, None


def execute_notebook(nb, workdir: str | Path, timeout: float = 300, python: str | None = None,
                     env: dict | None = None, sandbox: str = "auto", limits=None,
                     max_output: int = MAX_OUTPUT, hide=()) -> Run:
    """Run every code cell of ``nb`` (in place) in a sandboxed kernel whose scratch folder is ``workdir``.

    ``timeout`` limits all the cells together, in seconds (kernel start-up is not counted). Cells
    that raise do not stop the run (``status`` becomes ``errors``); a kernel that dies
    (``crashed``) or a run out of time (``timeout``) stops it, keeping the outputs of the cells
    that ran. Never raises for what the notebook does. No checks are graded here (see
    :func:`grade_notebook`).
    """
    run, _unused = _execute(nb, workdir, timeout, python, env, sandbox, limits, max_output, hide, grade_checks=False)
    return run


def _execute(nb, workdir, timeout, python, env, sandbox, limits, max_output, hide, grade_checks):
    from .sandbox import Limits, Sandbox

    limits = limits or Limits()
    if limits.cpu is None:
        limits = Limits(**{**limits.__dict__, "cpu": int(timeout * (os.cpu_count() or 1) + 120)})
    try:
        box = Sandbox(Path(workdir), hide=[Path(h) for h in hide], limits=limits, kind=sandbox,
                      python=python or sys.executable)
    except (RuntimeError, ValueError) as error:
        return Run(CRASHED, _("no sandbox: {error}").format(error=error)), []
    session = _Session(nb, box, timeout, python, env, max_output, grade_checks)
    run = asyncio.run(session.run())
    run.notes = box.notes + run.notes if box.kind == "process" else run.notes
    return run, session.verdicts


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
    (For reading stored notebooks; the grader does not trust printed lines.)
    """
    results = {}
    for match in CHECK_LINE.finditer(output_text(nb)):
        exercise_id, title = (match["id"], match["title"]) if match["id"] else (match["zh_id"], match["zh_title"])
        results[exercise_id] = (title, _STATUS[match["icon"]], match[0])
    return results


def expected_exercises(solution: str | Path) -> dict[str, str]:
    """``{exercise id: title}`` of a solution notebook, from the check lines of its stored outputs.

    Falls back to the ``checks.check_xxx(`` calls in its code (titles then are the check names)
    when the notebook is stored without outputs.
    """
    nb = nbformat.read(Path(solution), as_version=4)
    found = {ex: title for ex, (title, *_unused) in check_results(nb).items()}
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
    messages: dict[str, str] = field(default_factory=dict)    # id -> the grader's check message

    @property
    def passed(self) -> str:
        return f"{sum(s == PASS for s in self.exercises.values())}/{len(self.exercises)}"


@dataclass
class Skipped:
    """A file or folder of the submissions that was not graded, and why."""

    path: str
    reason: str


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
        run, verdicts = _execute(nb, scratch, timeout, python, None, sandbox, limits, max_output, hide,
                                 grade_checks=True)
        shutil.rmtree(scratch, ignore_errors=True)
    grade.status, grade.detail, grade.seconds = run.status, run.detail, run.seconds
    notes = list(run.notes)
    own, package, foreign, unknown = {}, {}, set(), []
    for entry, result, note in verdicts:
        if result is None:
            unknown.append(note)
            continue
        ex = result.exercise
        if ex not in expected and not (not expected and number and ex.split(".")[0] == str(int(number[1]))):
            foreign.add(ex)
            continue
        grade.titles.setdefault(ex, result.title)
        if note == "package":
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
        notes.append((_("ran the checks of exercises {exercises} from another notebook (not counted)") if len(foreign) > 1
                      else _("ran the check of exercise {exercises} from another notebook (not counted)")).format(
            exercises=", ".join(sorted(foreign, key=_natural))))
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


_COPY = re.compile(r"^(?P<name>.+?)(?:\s*\(\d+\)|[ _-]+[Cc]opy(?:[ _-]*\d+)?|-Copy\d*)$")


def find_submissions(submissions: str | Path, names=None):
    """``({learner: {notebook name: (path, note)}}, [Skipped])`` from ``submissions/<learner>/...``.

    A learner's notebook may be nested in sub-folders, end in ``.IPYNB``, or be a copy's name
    (``01_patches (1).ipynb``, ``01_patches-Copy1.ipynb``): each is graded as its notebook, with a
    note. ``names`` (the solution notebooks' names) says which notebooks exist; without it, any
    ``NN_name``. What is not graded is returned with the reason: hidden folders, files outside a
    learner's folder, other extensions, names of no notebook, and extra copies.
    """
    root = Path(submissions)
    found, skipped = {}, []
    wanted = set(names or ())

    def known(stem):
        return stem in wanted if wanted else re.fullmatch(r"\d\d_\w+", stem) is not None

    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            skipped.append(Skipped(entry.name, _("a hidden name (starts with a dot): rename the folder to grade it")))
            continue
        if not entry.is_dir():
            skipped.append(Skipped(entry.name, _("not inside a learner's folder")))
            continue
        candidates = {}
        for path in sorted(entry.rglob("*")):
            relative = path.relative_to(root)
            if path.is_dir() or any(part.startswith(".") for part in path.relative_to(entry).parts):
                if not path.is_dir() and ".ipynb_checkpoints" not in relative.parts:
                    skipped.append(Skipped(str(relative), _("a hidden name (starts with a dot)")))
                continue
            if path.suffix.lower() != ".ipynb":
                skipped.append(Skipped(str(relative), _("not a notebook ({extension})").format(
                    extension=path.suffix or _("no extension"))))
                continue
            stem, copy = path.stem, False
            if not known(stem):
                match = _COPY.match(stem)
                if match and known(match["name"].strip()):
                    stem, copy = match["name"].strip(), True
                else:
                    skipped.append(Skipped(str(relative), _("no course notebook has this name")))
                    continue
            depth = len(path.relative_to(entry).parts) - 1
            candidates.setdefault(stem, []).append((copy, depth, path.suffix != ".ipynb", str(relative), path))
        found[entry.name] = {}
        for stem, options in sorted(candidates.items()):
            options.sort()
            copy, depth, odd_case, relative, path = options[0]
            notes = []
            if copy:
                notes.append(_("graded {file} (a copy's name)").format(file=path.name))
            if depth:
                notes.append(_("found in {folder}").format(folder=Path(relative).parent))
            if odd_case and not copy:
                notes.append(_("graded {file}").format(file=path.name))
            for *_unused, other, _path in options[1:]:
                skipped.append(Skipped(other, _("another file for {notebook}; graded {file}").format(
                    notebook=stem, file=relative)))
            found[entry.name][stem] = (path, "; ".join(notes))
    return found, skipped


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
        raise FileNotFoundError(_("No submissions folder {folder}: expected {folder}/<learner>/<notebook>.ipynb.").format(
            folder=submissions))
    solution_names = sorted(p.stem for p in Path(solutions).glob("*.ipynb")) if solutions and Path(solutions).is_dir() else None
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


# --- the report --------------------------------------------------------------------------------------

def _natural(exercise_id: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-]", exercise_id)]


def _columns(grades, translate: bool = True) -> list[tuple[str, str]]:
    """``(exercise id, label)`` per exercise; ``translate``: the title in the language in use."""
    titles = {}
    for row in grades:
        for exercise_id in row.exercises:
            titles.setdefault(exercise_id, row.titles.get(exercise_id, ""))
    label = (lambda title: _(title) if title else title) if translate else (lambda title: title)  # noqa: E731
    return [(ex, f"{ex} {label(titles[ex])}".strip()) for ex in sorted(titles, key=_natural)]


def _rows(grades, icons: bool):
    """Header and rows: ``icons`` for grades.md (words in the language in use), else the CSV's stable English."""
    columns = _columns(grades, translate=icons)
    names = ([_("learner"), _("notebook"), _("status"), _("passed")] if icons
             else ["learner", "notebook", "status", "passed"])
    header = [*names, *(label for _ex, label in columns), _("detail") if icons else "detail"]
    rows = []
    for row in grades:
        cells = [row.exercises.get(ex, "") for ex, _label in columns]
        status = row.status
        if icons:
            cells, status = [_icon(cell) for cell in cells], _status_word(status)
        rows.append([row.learner, row.notebook, status, row.passed, *cells, row.detail])
    return header, rows


def _spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ (or tab, CR) is a formula, so prefix '."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_table(grades) -> str:
    """The report as CSV (exercise cells: pass / fail / todo / missing, blank if not in that notebook).

    Column names, status and exercise values are English in every language (scripts read them);
    the exercise titles are as the solution notebooks print them, the details in the language in use.
    """
    header, rows = _rows(grades, icons=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_spreadsheet_safe(c) for c in header])
    writer.writerows([[_spreadsheet_safe(c) for c in row] for row in rows])
    return buffer.getvalue()


def _md(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def markdown_table(grades, skipped=()) -> str:
    """The report as a Markdown table, with a per-exercise class summary below it."""
    header, rows = _rows(grades, icons=True)
    text = [_md(header), _md(["---"] * len(header)), *(_md(r) for r in rows)]
    summary = []
    for ex, label in _columns(grades):
        graded = [r for r in grades if ex in r.exercises]
        summary.append(f"{label}: {sum(r.exercises[ex] == PASS for r in graded)}/{len(graded)}")
    if summary:
        text += ["", _("Passed, per exercise: {counts}.").format(counts=_("; ").join(summary))]
    if skipped:
        text += ["", _("Not graded:"), "", *(f"- `{s.path}`: {s.reason}" for s in skipped)]
    return "\n".join(text) + "\n"


def class_summary(grades, top: int = 3) -> list[dict]:
    """Per exercise: passed, fail, todo, missing counts and the ``top`` most frequent ❌ messages."""
    out = []
    for ex, label in _columns(grades):
        rows = [r for r in grades if ex in r.exercises]
        counts = Counter(r.exercises[ex] for r in rows)
        mistakes = Counter(r.messages[ex] for r in rows if ex in r.messages)
        out.append({"exercise": ex, "label": label, "learners": len(rows), "pass": counts[PASS],
                    "fail": counts[FAIL], "todo": counts[TODO], "missing": counts[MISSING],
                    "mistakes": mistakes.most_common(top)})
    return out


def summary_table(grades, top: int = 3) -> str:
    """Markdown: the pass rate per exercise, then the most frequent ❌ messages per exercise."""
    summary = class_summary(grades, top)
    text = ["# " + _("Class summary"), "",
            _md([_("exercise"), _("passed"), _("pass rate"), _("fail"), _("todo"), _("missing")]), _md(["---"] * 6)]
    for s in summary:
        rate = f"{round(100 * s['pass'] / s['learners'])}%" if s["learners"] else "-"
        text.append(_md([s["label"], f"{s['pass']}/{s['learners']}", rate, s["fail"], s["todo"], s["missing"]]))
    text += ["", "## " + _("The most frequent mistakes"), ""]
    for s in summary:
        if s["mistakes"]:
            text.append(f"**{s['label']}**")
            text += [f"- {n} × {message[:200]}" for message, n in s["mistakes"]]
            text.append("")
    if not any(s["mistakes"] for s in summary):
        text.append(_("No ❌ in this class."))
    return "\n".join(text).rstrip() + "\n"


def summary_figure(grades, path: str | Path) -> Path | None:
    """A bar chart of the pass rate per exercise (stacked pass / fail / todo / missing), as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    summary = class_summary(grades)
    if not summary:
        return None
    figure = Figure(figsize=(7, 0.45 * len(summary) + 1.4), dpi=100, layout="constrained")
    ax = figure.subplots()
    labels = [s["exercise"] for s in summary][::-1] if get_language() != "en" else \
        [s["label"][:40] for s in summary][::-1]  # the figure's font may have no CJK glyphs
    left = [0.0] * len(summary)
    for key, colour in (("pass", "#2e7d32"), ("fail", "#c62828"), ("todo", "#f9a825"), ("missing", "#9e9e9e")):
        values = [s[key] / s["learners"] if s["learners"] else 0 for s in summary][::-1]
        ax.barh(labels, values, left=left, color=colour, label=key)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of learners")
    ax.set_title("Exercises: pass / fail / todo / missing")
    ax.legend(loc="lower right", fontsize=8)
    figure.savefig(path)
    return Path(path)


def write_report(grades, out: str | Path, skipped=(), language: str | None = None) -> tuple[Path, Path]:
    """Write ``out/grades.csv``, ``out/grades.md``, ``out/summary.md`` and ``out/summary.png``; return the first two.

    ``language`` (default: the one in use) is that of grades.md's and summary.md's headings and
    words; the details were written in the language of the grading (see :func:`grade`).
    """
    with speaking(language):
        return _write_report(grades, Path(out), skipped)


def _write_report(grades, out: Path, skipped) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grades.csv").write_text(csv_table(grades), encoding="utf-8")
    (out / "grades.md").write_text(markdown_table(grades, skipped), encoding="utf-8")
    (out / "summary.md").write_text(summary_table(grades), encoding="utf-8")
    summary_figure(grades, out / "summary.png")
    return out / "grades.csv", out / "grades.md"


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "grade", help=_("run learners' notebooks in sandboxes and tabulate which exercise checks passed"),
        description=_("Grade SUBMISSIONS/<learner>/<NN_name>.ipynb: run each notebook headless in its own sandbox "
                      "and write OUT/grades.csv, OUT/grades.md, OUT/summary.md, OUT/summary.png and OUT/executed/."))
    parser.add_argument("submissions", nargs="?", help=_("folder with one sub-folder of notebooks per learner"))
    parser.add_argument("--out", default="report", help=_("folder for the report (default: report)"))
    parser.add_argument("--timeout", type=float, default=300, help=_("seconds allowed per notebook, all cells "
                                                                      "together (default: 300)"))
    parser.add_argument("--solutions", default=None,
                        help=_("folder of solution notebooks, which say which exercises each notebook has "
                               "(default: notebooks, if it exists)"))
    parser.add_argument("--python", default=None, help=_("Python that runs the notebooks (default: this one)"))
    parser.add_argument("--jobs", type=int, default=1, help=_("notebooks to run at the same time (default: 1)"))
    parser.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "process"],
                        help=_("bwrap (bubblewrap namespaces), process (weaker: limits only), or auto: the "
                               "strongest available (default)"))
    parser.add_argument("--memory", type=float, default=4, help=_("GiB of memory per notebook (default: 4)"))
    parser.add_argument("--max-output", type=float, default=MAX_OUTPUT / (1 << 20),
                        help=_("MiB of outputs kept per notebook (default: {default})").format(default=MAX_OUTPUT >> 20))
    parser.add_argument("--language", default=None, metavar="LANG",
                        help=_("language of the report, one of {languages} (default: the language in use, "
                               "which VIT_LESSON_LANG sets: {current}). It translates the details, the grader's "
                               "check messages, the headings and status words of grades.md and summary.md, "
                               "and the lines printed here; grades.csv keeps English column names and status "
                               "values (ok, pass, fail, ...) for scripts").format(
                            languages=", ".join(LANGUAGES), current=get_language()))
    parser.add_argument("--sandbox-info", action="store_true", help=_("say which sandbox this machine gives, and exit"))

    def run(args) -> int:
        before = get_language()
        try:
            set_language(args.language or before)  # the report, the details and the lines printed here
        except ValueError as error:
            parser.error(str(error))
        try:
            return _run(args)
        finally:
            set_language(before)

    def _run(args) -> int:
        from .sandbox import Limits, describe

        if args.sandbox_info:
            print(describe())
            return 0
        if args.submissions is None:
            parser.error(_("the folder of submissions is required"))
        # nbclient leaves a pending task behind when a kernel dies; its GC-time log line is noise here
        logging.getLogger("asyncio").addFilter(
            lambda record: "Task was destroyed but it is pending" not in record.getMessage())
        if not Path(args.submissions).is_dir():
            parser.error(_("no submissions folder {folder!r}: expected {folder}/<learner>/<NN_name>.ipynb").format(
                folder=args.submissions))
        if args.solutions is not None and not Path(args.solutions).is_dir():
            parser.error(_("no solutions folder {folder!r}").format(folder=args.solutions))
        solutions = args.solutions or ("notebooks" if Path("notebooks").is_dir() else None)
        if solutions is None:
            print(_("warning: no solutions folder, so deleted check cells cannot be reported as missing"),
                  file=sys.stderr)
        from .sandbox import best_kind

        kind, why = best_kind()
        if args.sandbox == "auto" and kind != "bwrap":
            print(_("warning: {why}; see `python -m vit_lesson grade --sandbox-info`").format(why=why), file=sys.stderr)
        limits = Limits(memory=int(args.memory * (1 << 30)))
        grades = grade(args.submissions, args.out, args.timeout, solutions, args.python, args.jobs,
                       sandbox=args.sandbox, limits=limits, max_output=int(args.max_output * (1 << 20)))
        print(markdown_table(grades, grade.skipped), end="")
        print("\n" + _("wrote {csv}, grades.md, summary.md, summary.png and {executed}/").format(
            csv=Path(args.out) / "grades.csv", executed=Path(args.out) / "executed"), file=sys.stderr)
        return 0

    parser.set_defaults(func=run)
    from .nbgrader_stamp import add_cli as add_nbgrader_cli

    add_nbgrader_cli(subparsers)  # `python -m vit_lesson nbgrader-stamp`
