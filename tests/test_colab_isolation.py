"""Every notebook runs alone, from an installed course package, as it does in Colab.

Colab opens one notebook, with nothing next to it, and its setup cell pip-installs the course from
the repository. This test does the same for the *learner version* of every notebook (the version a
learner starts from: solutions replaced by ``raise NotImplementedError(hint)``):

- one virtual environment for the module. In CI it is the clean one ``make test-wheel`` made:
  no system packages, nothing but ``pip install "dist/<wheel>[notebooks]" ipykernel`` (the
  README's install line, plus the kernel that Colab and Jupyter bring), passed as
  ``VIT_LESSON_CLEAN_PYTHON`` (``make test CLEAN_PYTHON=build/wheel-venv/bin/python``), so a
  dependency missing from the wheel's metadata fails here. Without it (a quick local run, no
  network needed), a venv with ``--system-site-packages`` plus a ``.pth`` naming this
  environment's site-packages, into which the course is installed with ``pip install --no-deps``
  from a copy of the repository (not editable). Either way ``import vit_lesson`` there must
  resolve to the venv's site-packages, not the repo;
- each learner notebook is copied alone into an empty folder and executed there by a kernel on
  that venv's Python (a private kernel spec, nothing registered globally, ``PYTHONPATH`` unset);
- it must run to the end without a crash or an error in any cell, and every exercise's check must
  print ``⏳ Exercise N.M (...) is not done yet: ... Hint: ...`` -- so a learner who runs the notebook
  top to bottom before writing anything sees one "not done yet" per exercise, each with its hint,
  and nothing else breaks.

This is also the run of the learner versions that ``tests/test_learner_all.py`` relies on (each
notebook is executed twice in CI: nbval on the solution, here on the learner version).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vit_lesson.classroom import make_learner_notebook
from vit_lesson.grading import check_results, execute_notebook, expected_exercises

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIMEOUT = 240  # seconds per notebook, a guard against hangs: each takes 5-40 s here (CONTRIBUTING.md: <= 60 s)
NOT_COPIED = (".git", ".venv", "venv", "learner", "artifacts", "runs", "build", "dist", "report",
              "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "*.egg-info", "*.pt")


def copy_repository(target: Path) -> Path:
    """The files a ``git clone`` would have (tracked and new, not ignored), or a filtered copy."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(*NOT_COPIED))
        return target
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def run(*command, cwd) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory) -> Path:
    """A venv's Python with the course pip-installed (not editable): the clean wheel venv, or one made here."""
    root = tmp_path_factory.mktemp("colab")
    clean = os.environ.get("VIT_LESSON_CLEAN_PYTHON")
    if clean:
        python = Path(clean)
        config = (python.parent.parent / "pyvenv.cfg").read_text()
        assert re.search(r"include-system-site-packages\s*=\s*false", config), f"{python} sees system packages"
        site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root))
        assert not list(site_packages.glob("__editable__*")), f"{python} has an editable install"
        where = Path(run(python, "-c", "import vit_lesson; print(vit_lesson.__file__)", cwd=root))
        assert where.is_relative_to(site_packages) and not where.is_relative_to(REPO / "vit_lesson"), where
        return python
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=root)
    python = venv_python(venv)
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root))
    # Path lines only: the editable install's .pth hook in this environment is not run there.
    here = run(sys.executable, "-c", "import site; print('\\n'.join(site.getsitepackages()))", cwd=root)
    (site_packages / "_course_environment.pth").write_text(here + "\n")
    source = copy_repository(root / "repository")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
        "--ignore-installed", source, cwd=root)
    where = Path(run(python, "-c", "import vit_lesson; print(vit_lesson.__file__)", cwd=root))
    assert where.is_relative_to(site_packages), f"vit_lesson imported from {where}, not from the venv"
    assert not where.is_relative_to(REPO)
    return python


def test_the_package_is_installed_not_linked(colab_python, tmp_path):
    files = run(colab_python, "-c", "import importlib.metadata as m; "
                "print('\\n'.join(str(f) for f in m.files('vit_lesson')))", cwd=tmp_path)
    assert "vit_lesson/model.py" in files and "vit_lesson/checks/core.py" in files
    assert "__editable__" not in files


WHERE = """\
import resource, vit_lesson
usage = resource.getrusage(resource.RUSAGE_SELF)
print('vit_lesson from', vit_lesson.__file__)
print(f'kernel CPU time {usage.ru_utime + usage.ru_stime:.1f} s')"""


@pytest.mark.parametrize("solution", NOTEBOOKS, ids=lambda path: path.stem)
def test_learner_version_runs_alone(solution, colab_python, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    learner = alone / solution.name
    make_learner_notebook(solution, learner)
    nb = nbformat.read(learner, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHERE))

    result = execute_notebook(nb, alone, timeout=TIMEOUT, python=str(colab_python), env={"PYTHONPATH": None})
    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    cpu = printed.rsplit("kernel CPU time", 1)[-1].strip() if "kernel CPU time" in printed else "?"
    print(f"{solution.name}: learner version ran in {result.seconds:.1f} s, kernel CPU time {cpu} ({result.status})")

    assert result.status == "ok", f"the learner version of {solution.name} {result.status}: {result.detail}"
    assert str(colab_python.parent.parent) in printed, f"the kernel did not use the installed package: {printed}"
    results = check_results(nb)
    for exercise_id, title in expected_exercises(solution).items():
        assert exercise_id in results, f"{solution.name}: exercise {exercise_id} ({title}) printed no check line"
        _, status, line = results[exercise_id]
        assert status == "todo", (f"{solution.name}: before the learner writes anything, exercise {exercise_id} "
                                  f"should be 'not done yet', but its check printed: {line}")
        assert "Hint:" in line, f"{solution.name}: exercise {exercise_id}'s 'not done yet' line has no hint: {line}"
    passed = [line for _, status, line in results.values() if status == "pass"]
    assert not passed, f"{solution.name}: checks pass with the solutions removed: {passed}"
