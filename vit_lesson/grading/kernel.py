"""The kernel a graded notebook runs in, and the nbclient client that runs its cells.

:func:`kernel_manager` writes a private kernel spec (nothing registered with Jupyter, the
notebook's own ``kernelspec`` ignored) whose command is the sandbox's (:mod:`.sandbox`).
:func:`client_class` is nbclient's client with two changes:

- it keeps at most ``max_output`` bytes of outputs (a note replaces the rest);
- a display message with the agent's :data:`~vit_lesson.checks.agent.MIME` (what a check was
  given, :mod:`vit_lesson.checks.agent`) is handed to ``on_answers`` and kept out of the outputs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from .._optional import optional
from ..i18n import _

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

__all__ = ["kernel_manager", "client_class", "code_cell_label", "MAX_OUTPUT", "MAX_MESSAGE", "KERNEL_NAME"]

MAX_OUTPUT = 8 << 20           # bytes of outputs kept per notebook (the rest is cut, with a note)
MAX_MESSAGE = MAX_OUTPUT + (4 << 20)  # one message from the kernel larger than this drops the connection
KERNEL_NAME = "vit-lesson-grading"


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


def code_cell_label(nb, cell) -> str:
    """``code cell 3 (`first line`)``: where something happened, as the report says it."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "").strip()
    number = next((i for i, c in enumerate(code) if c is cell), -1) + 1
    return _("code cell {number} (`{line}`)").format(number=number, line=first_line[:60])


def output_size(content: dict) -> int:
    """Bytes of one output message's content (text, traceback and data)."""
    size = len(content.get("text", "") or "") + len(str(content.get("traceback", "")))
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    return size


def client_class():
    """nbclient's ``NotebookClient`` with the output cap and the agent's messages taken out."""
    from nbclient import NotebookClient

    from ..checks.agent import MIME

    class Client(NotebookClient):
        """nbclient, keeping at most ``max_output`` bytes of outputs (a note replaces the rest)."""

        max_output = MAX_OUTPUT
        kept = 0
        cut_in = None
        on_answers = None   # called with the agent's payload and its size

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content") or {}
            size = output_size(content)
            data = content.get("data")
            if isinstance(data, dict) and MIME in data:  # the agent's, never part of the notebook
                if self.on_answers is not None and msg.get("msg_type") == "display_data":
                    self.on_answers(data[MIME], size)
                return None
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
