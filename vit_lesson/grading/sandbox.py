"""Where the grader runs a learner's notebook: a sandbox per submission (see :mod:`vit_lesson.grading`).

Two kinds, the strongest available is chosen (``grade --sandbox auto``):

``bwrap`` (bubblewrap, the Debian/Ubuntu package ``bubblewrap``; CI installs it)
    New user, PID, network, IPC, UTS and mount namespaces: the kernel runs as uid 65534 with no
    capabilities, sees only its own processes (``/proc`` is its own; the grader is not there to
    signal or to read), has no network (only its own loopback), sees the whole file system
    **read-only** (so it cannot patch the installed course) with a private ``/tmp``, the folders
    of the submissions, the solutions and the report hidden under empty tmpfs, and one writable
    folder: its scratch folder, which holds its private copy of the notebook. When the kernel
    ends, the PID namespace ends, and every process it started, detached ones included, with it.

``process`` (the documented, weaker fallback: no bubblewrap, or it cannot create namespaces)
    The same limits and the same clean-up, but no namespaces: the kernel sees the file system
    with the rights of its user. Run by root, the kernel gets uid/gid 65534 (``nobody``) when
    that user can run the Python, so it can write only its scratch folder (and world-writable
    places) and cannot signal the grader; run by a non-root teacher it has the teacher's rights,
    so a hostile notebook *can* read or damage the teacher's files and kill the grader. Use it only
    for trusted work, or install bubblewrap.

Both: every kernel is started by ``_launch.py``, which puts it in a fresh cgroup when
the grader may create one (root, cgroup v1 or v2 with the memory and pids controllers: memory
and process caps, and an out-of-memory kill reported as such), sets rlimits (CPU seconds, data
memory, file size, open files; processes when there is no cgroup), becomes a child subreaper
and kills every remaining descendant when the kernel ends. The grader itself enforces the
notebook's total time and caps the outputs it keeps.

``python -m vit_lesson grade --sandbox-info`` prints which kind this machine gets, and why.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..i18n import _
from .cgroup import Cgroup

__all__ = ["Limits", "Sandbox", "best_kind", "describe", "KINDS"]

KINDS = ("bwrap", "process")
LAUNCHER = Path(__file__).with_name("_launch.py")
NOBODY = 65534
GiB, MiB = 1 << 30, 1 << 20


@dataclass
class Limits:
    """Per-notebook caps. ``memory`` in bytes (cgroup, and RLIMIT_DATA per process); ``cpu`` in CPU seconds."""

    memory: int = 4 * GiB
    cpu: int | None = None           # default: set by the grader from the time limit
    file_size: int = 256 * MiB       # largest file a notebook may write
    tmp_size: int = 512 * MiB        # its private /tmp (bwrap), in memory
    processes: int = 256
    open_files: int = 1024


def _bwrap_problem() -> tuple[str, str] | None:
    """None if bubblewrap can build the sandbox here, else ``(what, detail)``: missing, error or namespaces."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "missing", ""
    try:
        probe = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
                                "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                                "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return "error", str(error)
    if probe.returncode != 0:
        return "namespaces", probe.stderr.strip()[:200]
    return None


def _bwrap_message(problem: tuple[str, str]) -> str:
    """A :func:`_bwrap_problem` in words, in the language in use (:mod:`vit_lesson.i18n`)."""
    what, detail = problem
    if what == "missing":
        return _("bubblewrap is not installed (apt-get install bubblewrap)")
    if what == "error":
        return _("bubblewrap could not run: {error}").format(error=detail)
    return _("bubblewrap cannot create namespaces here: {error}").format(error=detail)


def _probe_bwrap() -> str | None:
    """None if bubblewrap can build the sandbox here, else the reason it cannot."""
    problem = _bwrap_problem()
    return None if problem is None else _bwrap_message(problem)


_best_problem = functools.lru_cache(maxsize=None)(_bwrap_problem)  # probed once per process


def best_kind() -> tuple[str, str]:
    """``(kind, why)``: the strongest sandbox this machine allows (``why`` in the language in use)."""
    problem = _best_problem()
    if problem is None:
        return "bwrap", _("bubblewrap namespaces")
    return "process", _("weaker 'process' sandbox: {reason}").format(reason=_bwrap_message(problem))


# --- the sandbox -------------------------------------------------------------------------------------

def _python_usable_by(python: str, uid: int) -> bool:
    """Can ``uid`` run ``python`` (every folder on the way searchable, the file executable)?"""
    try:
        probe = subprocess.run([sys.executable, str(LAUNCHER), json.dumps({"uid": uid, "gid": uid}), "--",
                                python, "-c", "import vit_lesson, ipykernel"], capture_output=True, timeout=60)
        return probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=None)
def _drop_to_nobody(python: str) -> bool:
    return os.geteuid() == 0 and _python_usable_by(python, NOBODY)


@dataclass
class Sandbox:
    """One submission's sandbox: ``wrap(argv)`` is the command that runs ``argv`` inside it.

    ``scratch`` is the only folder the notebook may write (its working directory); ``hide``
    lists folders it must not see (the submissions, the solutions, the report). Call
    :meth:`close` when the kernel has ended: it kills whatever is left and removes the cgroup.
    """

    scratch: Path
    hide: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    kind: str = "auto"
    python: str = sys.executable

    def __post_init__(self):
        if self.kind == "auto":
            self.kind = best_kind()[0]
        if self.kind not in KINDS:
            raise ValueError(_("unknown sandbox {kind!r}: choose one of {kinds} or auto").format(
                kind=self.kind, kinds=", ".join(KINDS)))
        if self.kind == "bwrap" and _probe_bwrap() is not None:
            raise RuntimeError(_("sandbox 'bwrap' is not available: {reason}").format(reason=_probe_bwrap()))
        self.scratch = Path(self.scratch).resolve()
        self.cgroup = Cgroup(self.limits)
        self.uid = NOBODY if self.kind == "process" and _drop_to_nobody(self.python) else None
        if self.uid is not None:
            os.chown(self.scratch, self.uid, self.uid)

    @property
    def notes(self) -> list[str]:
        """What this sandbox could not do, in words (empty for the full set)."""
        notes = []
        if self.kind == "process":
            notes.append(_("no namespaces (install bubblewrap)") if self.uid is not None else
                         _("no namespaces (install bubblewrap), and the kernel runs as the teacher's user"))
        if self.cgroup.version is None:
            notes.append(_("no cgroup: memory capped per process (RLIMIT_DATA), processes by RLIMIT_NPROC"))
        return notes

    def env(self) -> dict[str, str]:
        """Environment for the kernel: home, caches and temporary files in the scratch folder."""
        tmp = self.scratch / "tmp"
        tmp.mkdir(exist_ok=True)
        if self.uid is not None:
            os.chown(tmp, self.uid, self.uid)
        home = str(self.scratch)
        return {"HOME": home, "TMPDIR": str(tmp), "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.mpl",
                "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter-runtime", "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
                "JUPYTER_DATA_DIR": f"{home}/.jupyter-data", "XDG_CACHE_HOME": f"{home}/.cache",
                "TORCHINDUCTOR_CACHE_DIR": f"{home}/.cache/inductor", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}

    def _rlimits(self) -> dict[str, int | None]:
        nproc = None
        if self.cgroup.version is None and os.geteuid() != 0:
            mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == os.geteuid())
            nproc = mine + self.limits.processes
        elif self.uid is not None and self.cgroup.version is None:
            nproc = self.limits.processes
        return {"cpu": self.limits.cpu, "data": self.limits.memory, "fsize": self.limits.file_size,
                "nofile": self.limits.open_files, "nproc": nproc, "core": 0}

    def wrap(self, argv: list[str]) -> list[str]:
        config = {"cgroup_procs": self.cgroup.procs_files, "limits": self._rlimits(),
                  "uid": self.uid, "gid": self.uid}
        inner = list(argv)
        if self.kind == "bwrap":
            bwrap = [shutil.which("bwrap"), "--unshare-all", "--unshare-user", "--uid", str(NOBODY),
                     "--gid", str(NOBODY), "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                     "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                     "--size", str(self.limits.tmp_size), "--tmpfs", "/tmp"]
            for needed in _under_tmp(_python_paths(argv[0])):  # a venv or checkout in /tmp stays visible, read-only
                bwrap += ["--ro-bind", str(needed), str(needed)]
            for folder in self._hidden():
                bwrap += ["--tmpfs", str(folder)] if folder.is_dir() else ["--ro-bind", "/dev/null", str(folder)]
            bwrap += ["--bind", str(self.scratch), str(self.scratch), "--chdir", str(self.scratch), "--"]
            inner = bwrap + inner
        return [sys.executable, str(LAUNCHER), json.dumps(config), "--", *inner]

    def _hidden(self) -> list[Path]:
        home = Path(os.path.expanduser("~"))
        extra = [home / ".local" / "share" / "jupyter", home / ".jupyter", home / ".ssh", home / ".ipython",
                 Path(f"/run/user/{os.getuid()}")]
        folders = []
        for folder in [*self.hide, *extra]:
            folder = Path(folder).resolve()
            if folder.exists() and folder != self.scratch and self.scratch not in folder.parents \
                    and not any(folder == kept or folder in kept.parents for kept in (Path(self.python).resolve(),)):
                folders.append(folder)
        return folders

    def out_of_memory(self) -> bool:
        return self.cgroup.out_of_memory()

    def close(self) -> None:
        self.cgroup.kill_and_remove()


def _python_paths(executable: str | None = None) -> list[Path]:
    """What the kernel needs to run: this Python's prefixes, the folder vit_lesson is imported from,
    and the environment of the ``executable`` it runs (``<venv>/bin/python``: ``<venv>``), if another."""
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(__file__).resolve().parents[2]]
    if executable and Path(executable).is_absolute():
        paths.append(Path(executable).parent.parent)
    return paths


def _under_tmp(paths) -> list[Path]:
    """The ones inside /tmp (hidden by the sandbox's private /tmp), without duplicates or nesting."""
    inside = sorted({p.resolve() for p in paths if p.resolve().is_relative_to("/tmp")}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in inside:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def describe() -> str:
    kind, why = best_kind()
    probe = Cgroup(Limits())
    cgroup = (_("cgroup v{version}").format(version=probe.version) if probe.version
              else _("no cgroup (not root, or no delegated controllers)"))
    probe.remove()
    user = _("uid 65534 in a user namespace") if kind == "bwrap" else (
        _("uid 65534 (nobody)") if _drop_to_nobody(sys.executable) else _("the teacher's own user"))
    return _("sandbox: {kind} ({why}); {cgroup}; the kernel runs as {user}.").format(
        kind=kind, why=why, cgroup=cgroup, user=user)
