"""The grader's sandbox (vit_lesson.grading.sandbox): a hostile notebook harms neither the others nor the
teacher, and the limits hold.

- With bubblewrap (CI installs it, .ci/install_sandbox.sh; set VIT_LESSON_REQUIRE_BWRAP=1 to fail
  rather than skip without it): a notebook that tries to overwrite another learner's submission,
  patch the installed course, write the report, read the solutions, leave a detached process
  behind, look for the grader in /proc, or kill its parent / everything it can, changes nothing
  outside its scratch folder, sees no solution, and the next learner is graded as usual.
- With either sandbox (the weaker "process" one too): the time limit is a total, outputs are cut
  with a note and cost the grader little memory, processes and memory are capped, and nothing the
  notebook started outlives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_grading import CHECK_NUM, RIGHT_NUM, SETUP, notebook

import vit_lesson
from vit_lesson import grading
from vit_lesson.grading.sandbox import Limits, best_kind

HAVE_BWRAP = best_kind()[0] == "bwrap"
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP and not os.environ.get("VIT_LESSON_REQUIRE_BWRAP"),
                                 reason=f"no bubblewrap sandbox here: {best_kind()[1]}")
CORE = Path(vit_lesson.__file__).parent / "checks" / "core.py"
MARK = "sleep-vit-lesson-grading-test"


def alive(mark: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if mark in cmdline and "pytest" not in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hostile_cells(submissions: Path, solutions: Path, report: Path, mark: str) -> list[str]:
    paths = {"victim": str(submissions / "zed" / "00_demo.ipynb"), "core": str(CORE), "report": str(report),
             "solution": str(solutions / "00_demo.ipynb")}
    return [
        f"import os, signal, subprocess, pathlib\nPATHS = {paths!r}",
        "for name in ('victim', 'core'):\n"
        "    try:\n        open(PATHS[name], 'a').write('# hacked')\n        print('WROTE', name)\n"
        "    except OSError as error:\n        print('could not write', name, type(error).__name__)",
        "try:\n    os.makedirs(PATHS['report'], exist_ok=True)\n"
        "    pathlib.Path(PATHS['report'], 'grades.csv').write_text('forged')\n    print('WROTE report')\n"
        "except OSError as error:\n    print('could not write the report', type(error).__name__)",
        "try:\n    print('SOLUTION' + open(PATHS['solution']).read()[:80])\n"
        "except OSError as error:\n    print('could not read the solution', type(error).__name__)",
        f"subprocess.Popen(['sh', '-c', 'sleep 300; echo forged > {report}/grades.md', '{mark}'], "
        "start_new_session=True)",
        "seen = []\nfor pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n        seen.append(open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' '))\n"
        "    except OSError:\n        pass\nprint('PROCESSES', seen)",
        "try:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError as error:\n    print('no kill', error)",
    ]


@needs_bwrap
def test_a_hostile_notebook_harms_no_one(tmp_path):
    submissions, solutions, report = tmp_path / "submissions", tmp_path / "solutions", tmp_path / "report"
    for folder in (submissions / "mal", submissions / "nix", submissions / "zed", solutions):
        folder.mkdir(parents=True)
    good = notebook(SETUP, RIGHT_NUM, CHECK_NUM)
    nbformat.write(good, submissions / "zed" / "00_demo.ipynb")
    solution = notebook(SETUP, RIGHT_NUM, CHECK_NUM)
    solution.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "✅ Exercise 0.1 (number of patches) passed: ok.\n"))]
    nbformat.write(solution, solutions / "00_demo.ipynb")
    nbformat.write(notebook(*hostile_cells(submissions, solutions, report, MARK), SETUP, RIGHT_NUM, CHECK_NUM),
                   submissions / "mal" / "00_demo.ipynb")
    nbformat.write(notebook("import os, signal\nos.kill(-1, signal.SIGKILL)\nos.kill(0, signal.SIGKILL)",
                            SETUP, RIGHT_NUM, CHECK_NUM),
                   submissions / "nix" / "00_demo.ipynb")
    before = {"victim": sha(submissions / "zed" / "00_demo.ipynb"), "core": sha(CORE)}

    grades = grading.grade(submissions, report, timeout=60, solutions=solutions, jobs=1, sandbox="bwrap")

    rows = {g.learner: g for g in grades}
    assert rows["zed"].status == "ok" and rows["zed"].exercises == {"0.1": "pass"}
    assert rows["mal"].exercises == {"0.1": "pass"}, rows["mal"]  # its own answer is right; nothing else counts
    assert rows["nix"].status in ("errors", "crashed"), rows["nix"]  # it can kill nothing but its own sandbox
    assert {"victim": sha(submissions / "zed" / "00_demo.ipynb"), "core": sha(CORE)} == before
    printed = grading.output_text(nbformat.read(report / "executed" / "mal" / "00_demo.ipynb", as_version=4))
    assert "WROTE victim" not in printed and "WROTE core" not in printed and "SOLUTION" not in printed
    assert "could not write victim" in printed and "could not write core OSError" in printed
    processes = json.loads(printed.split("PROCESSES ", 1)[1].splitlines()[0].replace("'", '"'))
    assert not any("-m pytest" in p or "grading/_launch.py" in p for p in processes), processes  # only its own
    assert not alive(MARK), "a detached process outlived its notebook"
    assert "forged" not in (report / "grades.csv").read_text() + (report / "grades.md").read_text()


LIMITED = {  # learner: cells
    "sleepy": [f"import time\ntime.sleep(0.5)  # cell {i}" for i in range(20)],
    "chatty": ["for _ in range(100):\n    print('x' * 1_000_000)", "print('after')"],
    "forky": ["import subprocess\nstarted = 0\ntry:\n    for _ in range(400):\n"
              f"        subprocess.Popen(['sh', '-c', 'sleep 300', '{MARK}-forky'], start_new_session=True)\n"
              "        started += 1\nexcept OSError as error:\n    print('stopped:', type(error).__name__)\n"
              "print('started', started)"],
    "greedy": ["hog = bytearray(3 << 30)", "print('survived')"],
}


@pytest.fixture(scope="module", params=["process", "bwrap"])
def limited(request, tmp_path_factory):
    if request.param == "bwrap" and not HAVE_BWRAP:
        if os.environ.get("VIT_LESSON_REQUIRE_BWRAP"):
            pytest.fail(f"VIT_LESSON_REQUIRE_BWRAP is set but {best_kind()[1]}")
        pytest.skip(best_kind()[1])
    root = tmp_path_factory.mktemp(f"limits-{request.param}")
    for learner, cells in LIMITED.items():
        (root / "subs" / learner).mkdir(parents=True)
        nbformat.write(notebook(*cells), root / "subs" / learner / "00_demo.ipynb")
    limits = Limits(memory=2 << 30, processes=128)
    grades = grading.grade(root / "subs", root / "report", timeout=4, solutions=None, jobs=2,
                           sandbox=request.param, limits=limits)
    return {g.learner: g for g in grades}, root


def test_the_time_limit_is_a_total(limited):
    row = limited[0]["sleepy"]
    assert row.status == "timeout" and "still running after 4 s" in row.detail
    assert row.seconds < 4 + 3, row.seconds


def test_output_is_cut_with_a_note(limited):
    rows, root = limited
    assert "output over 8 MiB, cut from code cell 1" in rows["chatty"].detail
    copy = root / "report" / "executed" / "chatty" / "00_demo.ipynb"
    assert copy.stat().st_size < 10 << 20


def test_processes_are_capped_and_none_outlives_its_notebook(limited):
    rows, root = limited
    printed = grading.output_text(nbformat.read(root / "report" / "executed" / "forky" / "00_demo.ipynb", as_version=4))
    assert "stopped: BlockingIOError" in printed or "stopped: OSError" in printed, printed[-300:]
    assert int(printed.rsplit("started ", 1)[1].split()[0]) < 128
    assert not alive(f"{MARK}-forky")


def test_memory_is_capped(limited):
    row = limited[0]["greedy"]
    assert row.status in ("errors", "crashed"), row
    assert "MemoryError" in row.detail or "out of memory" in row.detail, row.detail


def test_100_mb_of_output_costs_the_grader_little_memory(tmp_path):
    """Graded in a fresh Python: its peak memory with 100 MB of prints vs with one print."""
    peaks = {}
    for name, cell in (("quiet", "print('x')"), ("loud", LIMITED["chatty"][0])):
        nbformat.write(notebook(cell), tmp_path / f"{name}.ipynb")
        script = ("import resource, sys\nfrom vit_lesson import grading\n"
                  f"g = grading.grade_notebook({str(tmp_path / f'{name}.ipynb')!r}, timeout=60)\n"
                  "print(g.status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        status, peak = out.stdout.split()[-2:]
        assert status == "ok", out.stdout + out.stderr
        peaks[name] = int(peak) / 1024
    print(f"grader peak memory: {peaks['quiet']:.0f} MiB (one print), {peaks['loud']:.0f} MiB (100 MB printed)")
    assert peaks["loud"] - peaks["quiet"] < 200, peaks


def test_a_python_or_checkout_inside_tmp_stays_visible_in_the_sandbox():
    """The sandbox's /tmp is private; a venv or clone that lives in /tmp (CI clones there) is bound back, read-only."""
    from pathlib import Path

    from vit_lesson.grading.sandbox import _under_tmp
    under = _under_tmp([Path("/tmp/ci/.venv"), Path("/tmp/ci"), Path("/usr"), Path("/tmp/ci/vit_lesson")])
    assert under == [Path("/tmp/ci")]
    assert _under_tmp([Path("/usr"), Path("/opt/python")]) == []


def test_the_kernels_own_venv_in_tmp_is_bound_too():
    """A kernel run by another venv's Python (tests/test_colab_isolation.py's, in pytest's /tmp) sees that venv."""
    from pathlib import Path

    from vit_lesson.grading.sandbox import _python_paths
    assert Path("/tmp/other/venv") in _python_paths("/tmp/other/venv/bin/python")
    assert len(_python_paths("python")) == len(_python_paths())  # a bare name: found on PATH, nothing to add
