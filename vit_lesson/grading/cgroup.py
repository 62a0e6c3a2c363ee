"""A fresh cgroup per graded kernel (v1 memory + pids, or v2), when the grader may create one.

It caps the memory and the processes of everything the notebook starts, reports an out-of-memory
kill as such, and lets the grader kill all of it at the end (:meth:`Cgroup.kill_and_remove`).
Without the rights (not root, no delegated controllers) it is empty and the sandbox falls back
to per-process rlimits (:mod:`.sandbox`).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

__all__ = ["Cgroup"]


def _own_cgroup_paths() -> dict[str, str]:
    """``{controller or "": path}`` of this process, from /proc/self/cgroup ("" is cgroup v2)."""
    paths = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _hierarchy, controllers, path = line.split(":", 2)
            for controller in (controllers.split(",") if controllers else [""]):
                paths[controller] = path
    except OSError:
        pass
    return paths


class Cgroup:
    """A fresh cgroup (v1 memory + pids, or v2) for one kernel, or nothing when not allowed."""

    def __init__(self, limits):
        self.dirs: list[Path] = []
        self.version = None
        name = f"vit-lesson-{uuid.uuid4().hex[:12]}"
        own = _own_cgroup_paths()
        root = Path("/sys/fs/cgroup")
        if (root / "memory").is_dir() and (root / "pids").is_dir() and "memory" in own:
            try:
                for controller in ("memory", "pids"):
                    folder = root / controller / own.get(controller, "/").lstrip("/") / name
                    folder.mkdir()
                    self.dirs.append(folder)
                (self.dirs[0] / "memory.limit_in_bytes").write_text(str(limits.memory))
                try:
                    (self.dirs[0] / "memory.swappiness").write_text("0")
                except OSError:
                    pass
                (self.dirs[1] / "pids.max").write_text(str(limits.processes))
                self.version = 1
            except OSError:
                self.remove()
        elif (root / "cgroup.controllers").is_file() and "" in own:
            parent = root / own[""].lstrip("/")
            try:
                wanted = {"memory", "pids"}
                if not wanted <= set((parent / "cgroup.subtree_control").read_text().split()):
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
                folder = parent / name
                folder.mkdir()
                self.dirs.append(folder)
                (folder / "memory.max").write_text(str(limits.memory))
                (folder / "memory.swap.max").write_text("0") if (folder / "memory.swap.max").exists() else None
                (folder / "pids.max").write_text(str(limits.processes))
                self.version = 2
            except OSError:
                self.remove()

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def out_of_memory(self) -> bool:
        try:
            if self.version == 1:
                text = (self.dirs[0] / "memory.oom_control").read_text()
                kills = [int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")]
                return bool(kills and kills[0]) or int((self.dirs[0] / "memory.failcnt").read_text()) > 0
            if self.version == 2:
                events = dict(line.split() for line in (self.dirs[0] / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
        except (OSError, ValueError, IndexError):
            pass
        return False

    def kill_and_remove(self) -> None:
        for _unused in range(100):
            pids = []
            for procs in self.procs_files:
                try:
                    pids += [int(p) for p in Path(procs).read_text().split()]
                except (OSError, ValueError):
                    pass
            if not pids:
                break
            if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
                try:
                    (self.dirs[0] / "cgroup.kill").write_text("1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)
        self.remove()

    def remove(self) -> None:
        for folder in reversed(self.dirs):
            try:
                folder.rmdir()
            except OSError:
                pass
        self.dirs = []
