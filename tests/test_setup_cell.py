"""The notebooks' setup cell, run for real: in a subprocess, as Colab runs it, against a local wheel.

Each test makes a fresh virtual environment where the course is *not* installed and everything
else is (its ``.pth`` names a folder of links to this environment's site-packages, minus
vit_lesson), puts a stand-in ``google.colab`` module into ``sys.modules`` as Colab has, and runs
:func:`vit_lesson.classroom.colab_setup_source` with ``exec`` -- the cell's own text. pip's
settings come only from the environment: no index (``PIP_NO_INDEX``), and ``PIP_FIND_LINKS``
naming a folder that holds a wheel of this checkout, or nothing. So "the package index" is that
folder, and git's ``url.<local>.insteadOf`` turns the cell's ``https://github.com/<COURSE_REPO>``
into a local repository with the release tag; nothing is downloaded.

- installed from the "index": one line saying what was installed, then ``import vit_lesson`` is
  this release, from the venv; run again, the cell prints nothing and runs no pip;
- no wheel on the index: the git fallback at tag ``v<version>`` installs it;
- neither (offline): exactly one line saying what to do, and no traceback.

``tests/test_conventions.py`` checks the cell in this process: silent where the course is
installed (the stored outputs), and the two pinned sources it asks pip for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_colab_isolation import copy_repository

import vit_lesson
from vit_lesson.classroom import COURSE_REPO, COURSE_TAG, colab_setup_source

REPO = Path(__file__).resolve().parents[1]
VERSION = vit_lesson.__version__

RUN_THE_CELL = """\
import sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")  # as in Colab
exec(open(sys.argv[1]).read(), {"__name__": "__main__"})
try:
    import vit_lesson
except ImportError as error:
    print("RESULT", "not importable:", error)
else:
    print("RESULT", vit_lesson.__version__, vit_lesson.__file__)
"""


def run(*command, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def must(*command, cwd, env=None) -> str:
    result = run(*command, cwd=cwd, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A wheel of this checkout, and a folder of links to this environment's packages but vit_lesson."""
    root = tmp_path_factory.mktemp("setup_cell")
    source = copy_repository(root / "source")
    must(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--wheel-dir", root / "wheels", source, cwd=root)
    assert [w.name for w in (root / "wheels").iterdir()] == [f"vit_lesson-{VERSION}-py3-none-any.whl"]
    packages = root / "packages"
    packages.mkdir()
    for site in dict.fromkeys(map(Path, (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]))):
        for entry in site.iterdir():
            name = entry.name.lower()
            if name.startswith(("vit_lesson", "__editable__", "_vit_lesson")) or name.endswith(".pth"):
                continue
            if not (packages / entry.name).exists():
                (packages / entry.name).symlink_to(entry)
    (root / "empty").mkdir()
    (root / "cell.py").write_text(colab_setup_source())
    (root / "run_the_cell.py").write_text(RUN_THE_CELL)
    return root


@pytest.fixture
def fresh(shared, tmp_path):
    """A venv without the course; returns a function that runs the setup cell there."""
    venv = tmp_path / "venv"
    must(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    # ensurepip's old setuptools would hide this environment's (torch asks for setuptools >= 77)
    must(python, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools", cwd=tmp_path)
    site = Path(must(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    (site / "_course_packages.pth").write_text(f"{shared / 'packages'}\n")
    alone = tmp_path / "alone"
    alone.mkdir()

    def run_cell(find_links: Path, **extra_env) -> tuple[list[str], str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PIP_", "GIT_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(find_links),
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", **extra_env)
        result = run(python, shared / "run_the_cell.py", shared / "cell.py", cwd=alone, env=env)
        assert result.returncode == 0, f"the setup cell raised:\n{result.stdout}\n{result.stderr}"
        lines = result.stdout.splitlines()
        assert lines and lines[-1].startswith("RESULT "), result.stdout
        return lines[:-1], lines[-1].removeprefix("RESULT "), result.stderr

    run_cell.venv = venv
    return run_cell


def test_in_colab_it_installs_the_release_from_the_index_then_is_silent(fresh, shared):
    printed, result, stderr = fresh(shared / "wheels")
    assert printed == [f"installed vit_lesson[notebooks]=={VERSION}"], (printed, stderr)
    version, where = result.split(" ", 1)
    assert version == VERSION and Path(where).is_relative_to(fresh.venv), result
    assert not Path(where).is_relative_to(REPO)

    printed, result, stderr = fresh(shared / "empty")  # installed now: no pip, nothing printed
    assert printed == [] and stderr == "" and result.startswith(f"{VERSION} "), (printed, result, stderr)


def test_without_the_package_on_the_index_it_installs_the_release_tag_from_git(fresh, shared, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repository = copy_repository(tmp_path / "repository")
    for command in (["init", "-q"], ["add", "-A"],
                    ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "release"],
                    ["tag", COURSE_TAG]):
        must("git", *command, cwd=repository)
    printed, result, stderr = fresh(
        shared / "empty",
        GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.{repository.as_uri()}.insteadOf",
        GIT_CONFIG_VALUE_0=f"https://github.com/{COURSE_REPO}",
        PIP_NO_BUILD_ISOLATION="0")  # pip's spelling of --no-build-isolation: setuptools comes from the links
    assert printed == [f"installed vit_lesson[notebooks] @ git+https://github.com/{COURSE_REPO}@{COURSE_TAG}"], (
        printed, stderr)
    version, where = result.split(" ", 1)
    assert version == VERSION and Path(where).is_relative_to(fresh.venv), result


def test_offline_it_prints_one_line_saying_what_to_do(fresh, shared):
    printed, result, stderr = fresh(shared / "empty", GIT_ALLOW_PROTOCOL="file")  # git may not use https
    assert len(printed) == 1 and stderr == "", (printed, stderr)
    line, = printed
    assert line.startswith(f"Could not install vit_lesson {VERSION} (offline?)"), line
    assert "internet" in line and f'pip install "vit_lesson[notebooks]=={VERSION}"' in line, line
    assert result.startswith("not importable"), result
