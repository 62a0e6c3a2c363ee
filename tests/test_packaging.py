"""How the course is installed and released, kept true: one version, honest extras, tested floors.

- the version lives in ``vit_lesson/__init__.py`` only (pyproject reads it; the setup cell,
  the badges, CITATION.cff and the publish workflow's tag follow it);
- ``constraints-floor.txt`` pins each dependency at exactly its floor in ``pyproject.toml``
  (``make test-floor`` installs those and runs the unit tests and the CLI);
- the modules of the optional extras named in ``vit_lesson._optional`` and the setup cell are
  the extras' packages; project URLs point at ``COURSE_REPO``;
- without the [teacher] extra the package imports, ``--help`` lists every command, and a teacher
  command says in one line which extra to install.

The built wheel itself, in a clean venv: ``make test-wheel`` (tools/smoke_install.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import vit_lesson
from vit_lesson._optional import EXTRAS
from vit_lesson.classroom import COURSE_REPO, COURSE_TAG, NOTEBOOK_MODULES, colab_setup_source

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = re.compile(r"\s*([A-Za-z0-9_.\-]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def floors(requirements) -> dict[str, str]:
    found = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def test_the_version_is_in_one_place():
    project = PROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vit_lesson.__version__"}
    assert COURSE_TAG == f"v{vit_lesson.__version__}"
    assert f'version="{vit_lesson.__version__}"' in colab_setup_source()
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(vit_lesson.__version__)}$", citation, re.MULTILINE), (
        "CITATION.cff's version is not vit_lesson.__version__")


def test_every_floor_is_pinned_in_constraints_floor():
    project = PROJECT["project"]
    extras = project["optional-dependencies"]
    wanted = floors(project["dependencies"] + extras["notebooks"] + extras["teacher"])
    pinned = {}
    for line in (ROOT / "constraints-floor.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pinned[canonical(name)] = version.strip()

    def same(a: str, b: str) -> bool:  # 2.3 == 2.3.0
        return [int(p) for p in a.split(".")] + [0] * (3 - a.count(".") - 1) == \
            [int(p) for p in b.split(".")] + [0] * (3 - b.count(".") - 1)

    differ = {name: (floor, pinned.get(name)) for name, floor in wanted.items()
              if name not in pinned or not same(floor, pinned[name])}
    assert not differ, f"pyproject floor vs constraints-floor.txt pin: {differ}"
    assert len(wanted) == len(project["dependencies"] + extras["notebooks"] + extras["teacher"]), (
        "every dependency and notebooks/teacher extra needs a floor (>=)")
    assert project["requires-python"] == ">=3.11"


def test_optional_modules_belong_to_their_extras():
    extras = PROJECT["project"]["optional-dependencies"]
    names = {extra: {canonical(NAME.match(r).group(1)) for r in extras[extra]} for extra in extras}
    for module, extra in EXTRAS.items():
        if module != "jupyter_client":  # nbclient's own dependency
            assert canonical(module) in names[extra], f"{module} is not in the [{extra}] extra"
    assert {canonical(m) for m in NOTEBOOK_MODULES} == names["notebooks"]
    assert "vit-lesson[notebooks]" in {canonical(r.split("[")[0]) + "[" + r.split("[")[1]
                                       for r in extras["lab"] if "[" in r}
    core = {canonical(NAME.match(r).group(1)) for r in PROJECT["project"]["dependencies"]}
    assert not core & {"nbformat", "nbclient", "ipykernel", "timm", "ipywidgets", "jupyterlab"}, core


def test_project_urls_and_licence():
    urls = PROJECT["project"]["urls"]
    assert all(f"github.com/{COURSE_REPO}" in url for url in urls.values()), urls
    assert PROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    workflow = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    for needed in ("tags:", "id-token: write", "pypa/gh-action-pypi-publish", "python -m build",
                   "twine check --strict", "tools/check_dist.py"):
        assert needed in workflow, f"publish.yml lacks {needed!r}"


BLOCK_TEACHER = textwrap.dedent("""\
    import sys
    class Block:  # as if the [teacher] extra were not installed
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {"nbformat", "nbclient", "jupyter_client", "ipykernel"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
    sys.argv[0] = "vit-lesson"
    import vit_lesson.classroom, vit_lesson.grading
    from vit_lesson.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """)


def test_without_the_teacher_extra_the_cli_works_and_names_the_extra(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-c", BLOCK_TEACHER, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    shown = cli("--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("train", "evaluate", "learner", "stamp", "grade"):
        assert command in shown.stdout
    notebook = tmp_path / "01_patches.ipynb"
    notebook.write_bytes((ROOT / "notebooks" / "01_patches.ipynb").read_bytes())
    for args in (["learner", "--source", str(ROOT / "notebooks"), "--out", str(tmp_path / "learner")],
                 ["stamp", str(notebook)]):
        said = cli(*args)
        assert said.returncode == 1 and said.stdout == "", (args, said.stdout, said.stderr)
        assert said.stderr.splitlines() == [
            'error: nbformat is not installed; it comes with the [teacher] extra: pip install "vit_lesson[teacher]"'
        ], (args, said.stderr)
    assert notebook.read_bytes() == (ROOT / "notebooks" / "01_patches.ipynb").read_bytes()
    assert not (tmp_path / "learner").exists()


@pytest.mark.parametrize("name", ["README.md", "pyproject.toml", "environment.yml", ".github/workflows/publish.yml",
                                  "vit_lesson/classroom.py", "CITATION.cff"])
def test_no_moving_branch_in_install_instructions(name):
    text = (ROOT / name).read_text()
    assert not re.search(rf"{re.escape(COURSE_REPO)}(@|/blob/|/tree/)(main|master)\b", text), (
        f"{name} points at a moving branch of {COURSE_REPO}; use the release tag {COURSE_TAG}")
