"""The grader's process launcher: ``python _launch.py CONFIG_JSON -- COMMAND ...``.

Run by :mod:`vit_lesson.grading.sandbox` as the "kernel" command of every graded notebook, outside any
namespace, as the teacher's user. It imports nothing of ``vit_lesson`` (the standard library
only), and in this order

1. joins the cgroups named in the config (memory and process caps, and a way to kill everything
   the notebook started, detached processes included);
2. sets the resource limits (CPU seconds, data memory, file size, open files, processes);
3. becomes a *child subreaper*, so every process the command starts, even one that calls
   ``setsid`` or double-forks, stays its descendant;
4. runs COMMAND (bubblewrap, or the kernel itself in the weaker "process" sandbox, then under a
   dropped user id when the teacher is root), and waits for it;
5. when COMMAND ends, or on SIGTERM / SIGINT / SIGHUP, kills every descendant that is still
   alive and exits with COMMAND's status.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
LIMITS = {"cpu": resource.RLIMIT_CPU, "data": resource.RLIMIT_DATA, "fsize": resource.RLIMIT_FSIZE,
          "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "core": resource.RLIMIT_CORE}


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[int]:
    pids = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as file:
                pids += [int(p) for p in file.read().split()]
    except OSError:
        pass
    return pids


def _cgroup_pids(procs_files) -> list[int]:
    pids = []
    for path in procs_files:
        try:
            with open(path) as file:
                pids += [int(p) for p in file.read().split() if int(p) != os.getpid()]
        except (OSError, ValueError):
            pass
    return pids


def kill_all(procs_files=()) -> None:
    """SIGKILL every descendant (and every other member of our cgroups) until none is left."""
    for _ in range(200):
        pids = set(_children()) | set(_cgroup_pids(procs_files))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:  # reap whatever has died (orphans re-parented to us included)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        if not pids:
            return
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    config, command = json.loads(argv[0]), argv[argv.index("--") + 1:]
    procs_files = config.get("cgroup_procs", [])
    for path in procs_files:
        try:
            with open(path, "w") as file:
                file.write(str(os.getpid()))
        except OSError as error:
            print(f"vit_lesson sandbox: could not join {path}: {error}", file=sys.stderr)
    for name, value in (config.get("limits") or {}).items():
        if value is not None:
            try:
                resource.setrlimit(LIMITS[name], (int(value), int(value)))
            except (ValueError, OSError) as error:
                print(f"vit_lesson sandbox: could not set the {name} limit: {error}", file=sys.stderr)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    uid, gid = config.get("uid"), config.get("gid")

    def become_child():
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)

    def stop(signum, frame):
        kill_all(procs_files)
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        child = subprocess.Popen(command, preexec_fn=become_child, close_fds=False)
    except OSError as error:
        print(f"vit_lesson sandbox: could not start {command[0]}: {error}", file=sys.stderr)
        return 127
    code = child.wait()
    kill_all(procs_files)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
