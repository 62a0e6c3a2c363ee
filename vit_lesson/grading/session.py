"""Running one notebook in its sandbox: its cells through nbclient, its checks in the grader's process.

A :class:`Session` starts the kernel in the notebook's :class:`~.sandbox.Sandbox`, starts the
agent there (:func:`vit_lesson.checks.agent.start`) and runs the code cells one by one. While a
cell runs, the agent sends what each of its checks was given (:meth:`Session.on_answers`; never
part of the notebook); when the cell has finished, the grader runs those checks itself
(:func:`.verdicts.run_check`), their calls of the learner's code going to the kernel over
:meth:`Session.rpc`. No cell is added and nothing is asked between cells. The checks run right
after their cell, on what the check saw, and a kernel that dies later keeps the verdicts it earned."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..i18n import _
from .kernel import MAX_MESSAGE, MAX_OUTPUT, client_class, code_cell_label, kernel_manager
from .verdicts import run_check

__all__ = ["Run", "Session", "execute_notebook", "execute", "OK", "ERRORS", "CRASHED", "TIMEOUT"]

OK, ERRORS, CRASHED, TIMEOUT = "ok", "errors", "crashed", "timeout"
MAX_CHECKS_PER_CELL = 50


@dataclass
class Run:
    """How a notebook's run ended: ``status`` is ok / errors / crashed / timeout, ``detail`` says where;
    ``seconds`` is the time of its cells (kernel start-up not counted)."""

    status: str
    detail: str = ""
    seconds: float = 0.0
    notes: list = field(default_factory=list)


class _Timeout(Exception):
    pass


class _Dead(Exception):
    pass


class Session:
    """One notebook running in its sandbox: cells through nbclient, checks through the bridge."""

    def __init__(self, nb, sandbox, timeout, python, env, max_output, grade_checks):
        self.nb, self.sandbox, self.timeout = nb, sandbox, timeout
        self.python, self.env, self.grade_checks = python or sys.executable, env or {}, grade_checks
        self.max_output = max_output
        self.deadline = None
        self.cell = None
        self.answers: list = []    # what the checks of the running cell were given (the agent's entries)
        self.answer_bytes = 0
        self.dropped = 0
        self.verdicts: list = []   # the grader's Verdicts, in order
        self.loop = None

    def remaining(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
        return self.deadline - time.monotonic()

    def on_answers(self, payload, size: int) -> None:
        """A message of the agent during a cell: keep its entry (at most 50 a cell, one message's size in all)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("entry"), dict):
            return
        if len(self.answers) >= MAX_CHECKS_PER_CELL or self.answer_bytes + size > MAX_MESSAGE:
            self.dropped += 1
            return
        self.answer_bytes += size
        self.answers.append(payload["entry"])

    async def rpc(self, request: dict) -> dict:
        """Send one request to the agent in the kernel, as a silent execute request; wait for its reply."""
        from queue import Empty

        from ..checks.agent import MIME
        from ..checks.proxies import BridgeError

        nonce = secrets.token_hex(8)
        code = ("__import__('importlib').import_module('vit_lesson.checks.agent').AGENT.respond("
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
            raise BridgeError(_("the kernel did not answer the grader (was vit_lesson.checks.agent changed?)"))
        return reply

    def _request_from_thread(self, request: dict) -> dict:
        return asyncio.run_coroutine_threadsafe(self.rpc(request), self.loop).result()

    async def grade_answers(self) -> None:
        """Run the grader's own check on each answer the cell's checks were given."""
        from ..checks.remote import Bridge

        answers, self.answers, self.answer_bytes = self.answers, [], 0
        for entry in answers:
            verdict = await self.loop.run_in_executor(None, run_check, entry, Bridge(self._request_from_thread))
            if self.remaining() <= 0:  # the time ran out inside the check: a timeout, not the learner's fail
                raise _Timeout()
            if not await self.client.km.is_alive():
                raise _Dead()
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
            self.client = client = client_class()(
                self.nb, km=km, allow_errors=True, shutdown_kernel="immediate", startup_timeout=120,
                timeout_func=lambda cell: max(0.05, self.remaining()),
                skip_cells_with_tag=f"never-{secrets.token_hex(8)}",  # no tag makes a cell skip
                resources={"metadata": {"path": str(scratch)}})
            client.max_output = self.max_output
            client.on_answers = self.on_answers if self.grade_checks else None
            kernel_env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", **self.sandbox.env(), **self.env}
            kernel_env = {k: v for k, v in kernel_env.items() if v is not None}
            run = None
            try:
                async with client.async_setup_kernel(env=kernel_env, cwd=str(scratch)):
                    if self.grade_checks:
                        msg_id = client.kc.execute("import vit_lesson.checks.agent as _vl_agent; _vl_agent.start(); "
                                                   "del _vl_agent", silent=True, store_history=False)
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
                        await self.grade_answers()
                    run = Run(OK)
                    await self._stop_kernel()
            except (CellTimeoutError, _Timeout):
                where = code_cell_label(self.nb, self.cell) if self.cell is not None else _("startup")
                run = Run(TIMEOUT, _("still running after {seconds:g} s, in {where}").format(
                    seconds=self.timeout, where=where))
            except (DeadKernelError, _Dead):
                where = (_(" in {cell}").format(cell=code_cell_label(self.nb, self.cell)) if self.cell is not None
                         else _(" while starting"))
                if self.sandbox.out_of_memory():
                    run = Run(CRASHED, _("the kernel was killed{where}: out of memory (the limit is {gib:g} "
                                         "GiB)").format(where=where, gib=self.sandbox.limits.memory / (1 << 30)))
                else:
                    run = Run(CRASHED, _("the kernel died{where} (os._exit, a signal, a segfault or out of "
                                         "memory?)").format(where=where))
            except Exception as error:  # noqa: BLE001 - e.g. the kernel would not start
                run = Run(CRASHED, _("could not run: {error}").format(error=f"{type(error).__name__}: {error}")[:300])
            finally:
                self.sandbox.close()
        # the cells' time (what the limit counts), or the start-up's if no cell ran
        run.seconds = time.monotonic() - (self.deadline - self.timeout if self.deadline is not None else start)
        self._add_notes(run, client)
        return run

    def _add_notes(self, run: Run, client) -> None:
        """Cut outputs, dropped check calls and the first cell that raised, in ``run``'s notes and status."""
        if client.cut_in is not None:
            cell = self.nb.cells[client.cut_in]
            run.notes.append(_("output over {mib} MiB, cut from {cell} on").format(
                mib=self.max_output // (1 << 20),
                cell=code_cell_label(self.nb, cell) if cell.cell_type == "code" else _("a cell")))
        if self.dropped:
            run.notes.append(_("{count} check calls over {most} in one cell were not graded").format(
                count=self.dropped, most=MAX_CHECKS_PER_CELL))
        if run.status == OK:
            errors = [(cell, out) for cell in self.nb.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []) if out.output_type == "error"]
            if errors:
                cell, out = errors[0]
                more = _(" (and {count} more)").format(count=len(errors) - 1) if len(errors) > 1 else ""
                run.status = ERRORS
                run.detail = _("{cell} raised {error}").format(
                    cell=code_cell_label(self.nb, cell), error=f"{out.ename}: {out.evalue}")[:300] + more

    async def _stop_kernel(self):
        """Ask the launcher to end the kernel and everything it started (before nbclient's own kill)."""
        pid = getattr(getattr(self.client.km, "provisioner", None), "pid", None)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                return
            for _unused in range(100):
                if not await self.client.km.is_alive():
                    break
                await asyncio.sleep(0.02)


def execute_notebook(nb, workdir: str | Path, timeout: float = 300, python: str | None = None,
                     env: dict | None = None, sandbox: str = "auto", limits=None,
                     max_output: int = MAX_OUTPUT, hide=()) -> Run:
    """Run every code cell of ``nb`` (in place) in a sandboxed kernel whose scratch folder is ``workdir``.

    ``timeout`` limits all the cells together, in seconds (kernel start-up is not counted). Cells
    that raise do not stop the run (``status`` becomes ``errors``); a kernel that dies
    (``crashed``) or a run out of time (``timeout``) stops it, keeping the outputs of the cells
    that ran. Never raises for what the notebook does. No checks are graded here (see
    :func:`vit_lesson.grading.grade_notebook`).
    """
    return execute(nb, workdir, timeout, python, env, sandbox, limits, max_output, hide, grade_checks=False)[0]


def execute(nb, workdir, timeout, python, env, sandbox, limits, max_output, hide, grade_checks):
    """``(Run, [Verdict])``: :func:`execute_notebook`, and with ``grade_checks`` the grader's verdicts."""
    from .sandbox import Limits, Sandbox

    limits = limits or Limits()
    if limits.cpu is None:
        limits = Limits(**{**limits.__dict__, "cpu": int(timeout * (os.cpu_count() or 1) + 120)})
    try:
        box = Sandbox(Path(workdir), hide=[Path(h) for h in hide], limits=limits, kind=sandbox,
                      python=python or sys.executable)
    except (RuntimeError, ValueError) as error:
        return Run(CRASHED, _("no sandbox: {error}").format(error=error)), []
    session = Session(nb, box, timeout, python, env, max_output, grade_checks)
    run = asyncio.run(session.run())
    run.notes = box.notes + run.notes if box.kind == "process" else run.notes
    return run, session.verdicts
