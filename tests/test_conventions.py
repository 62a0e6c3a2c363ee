"""The conventions of CONTRIBUTING.md, enforced for every notebook in notebooks/ (new ones included)."""

from __future__ import annotations

import re
import sys
import types

import nbformat
import pytest
from conftest import NOTEBOOKS, ROOT

from vit_lesson.classroom import BEGIN, END, colab_badge, colab_setup_source, strip_solutions

MAX_BYTES = 1_000_000
ABSOLUTE_PATH = re.compile(r"(/work/|/home/\w|/Users/\w|/root/|/tmp/\w|[A-Z]:\\Users\\)")
CHECK_CALL = re.compile(r"\bcheck_\w+\(")

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:2] == ["00_start_here.ipynb", "01_patches.ipynb"]


@notebooks
def test_colab_badge_and_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first_markdown.source.splitlines()[0] == colab_badge(path.name), (
        f"{path.name}: the first markdown line must be the Colab badge for this notebook; "
        f"run `python -m vit_lesson stamp {path.relative_to(ROOT)}`")
    assert code_cells(path)[0].source == colab_setup_source(), (
        f"{path.name}: the first code cell must be the Colab setup cell; run `python -m vit_lesson stamp`")


@notebooks
def test_stored_executed_in_order_without_errors(path):
    counts = []
    for number, cell in enumerate(code_cells(path), start=1):
        if not cell.source.strip():
            continue
        assert cell.execution_count is not None, f"{path.name}: code cell {number} was never run; store it executed"
        counts.append(cell.execution_count)
        errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: code cell {number} stored an error: {errors[0]}"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        f"{path.name}: cells were run out of order (execution counts {counts}); re-run top to bottom with "
        "`jupyter nbconvert --to notebook --execute --inplace`")


@notebooks
def test_small_and_without_widget_state(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes; keep it under 1 MB"
    assert "widgets" not in nbformat.read(path, as_version=4).metadata, f"{path.name}: clear the widget state"


@notebooks
def test_no_absolute_paths(path):
    nb = nbformat.read(path, as_version=4)
    for number, cell in enumerate(nb.cells, start=1):
        texts = [cell.source] + [nbformat.writes(nbformat.v4.new_notebook(cells=[cell]))] * (cell.cell_type == "code")
        for text in texts:
            found = ABSOLUTE_PATH.search(text)
            assert not found, (f"{path.name}: cell {number} contains the machine-specific path "
                               f"{text[max(0, found.start() - 30):found.end() + 30]!r}")


@notebooks
def test_every_solution_is_closed_and_checked(path):
    cells = code_cells(path)
    for index, cell in enumerate(cells):
        source = cell.source
        begins, ends = source.count(BEGIN), source.count(END)
        assert begins == ends, f"{path.name}: a cell has {begins} `{BEGIN}` but {ends} `{END}`"
        if not begins:
            continue
        assert source.index(BEGIN) < source.index(END), f"{path.name}: `{END}` before `{BEGIN}`"
        after = source[source.rindex(END):] + "\n".join(c.source for c in cells[index + 1:index + 2])
        assert CHECK_CALL.search(after), (
            f"{path.name}: the exercise ending with `{END}` in code cell {index + 1} needs a check call "
            "(checks.check_...(...)) in the same cell or the next code cell")


@notebooks
def test_learner_version_is_valid_python(path):
    for number, cell in enumerate(code_cells(path), start=1):
        source = "\n".join(line for line in strip_solutions(cell.source).splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        compile(source, f"{path.name} code cell {number} (learner version)", "exec")


# --- the environment files agree --------------------------------------------------------------------

def normalise(requirement: str) -> str:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(.*)", requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower() + spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    yaml = pytest.importorskip("yaml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def expand(requirements):  # "vit_lesson[notebooks,teacher]" inside an extra means those extras' lists
        for requirement in requirements:
            own = re.fullmatch(r"vit[-_]lesson\[([^\]]+)\]", requirement.strip())
            if own is None:
                yield requirement
            else:
                for name in own.group(1).split(","):
                    yield from expand(extras[name.strip()])

    wanted = sorted(set(map(normalise, expand(project["dependencies"] + extras["lab"] + extras["test"]))))
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict) and "pip" in item)
    listed = [item for item in pip if not item.startswith("-e")]
    assert sorted(map(normalise, listed)) == wanted, (
        "environment.yml's pip list and pyproject.toml (dependencies + lab + test extras) differ: only in "
        f"environment.yml {sorted(set(map(normalise, listed)) - set(map(normalise, wanted)))}, only in "
        f"pyproject.toml {sorted(set(map(normalise, wanted)) - set(map(normalise, listed)))}")
    assert "-e ." in pip, "environment.yml should install the course itself with `-e .`"
    python = next(item for item in environment["dependencies"] if isinstance(item, str) and item.startswith("python="))
    floor = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.removeprefix("python=").split("."))) >= tuple(map(int, floor.split("."))), (
        f"environment.yml's {python} is below pyproject.toml's requires-python {project['requires-python']}")


# --- the setup cell (tests/test_setup_cell.py runs it for real, in a subprocess) ------------------

def test_setup_cell_is_silent_where_the_course_is_installed(monkeypatch, capsys):
    """In the course's own environment (this one) the cell prints nothing and runs no pip, so the
    stored outputs of the first cell stay empty."""
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"the setup cell ran {args} where the course is installed")

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", refuse)
    namespace = {}
    exec(colab_setup_source(), namespace)
    assert capsys.readouterr() == ("", "")
    assert not {name for name in namespace if not name.startswith("__")}, "the cell leaves names behind"


def test_setup_cell_installs_the_pinned_release_where_another_version_is_installed(monkeypatch, capsys):
    import subprocess

    import vit_lesson
    from vit_lesson.classroom import COURSE_REPO, COURSE_TAG

    calls = []
    monkeypatch.setattr(vit_lesson, "__version__", "0.0.0")  # what ready() sees: another release
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: calls.append(command) or
                        types.SimpleNamespace(returncode=1))
    exec(colab_setup_source(), {})
    assert [command[:4] for command in calls] == [[sys.executable, "-m", "pip", "install"]] * 2
    version = COURSE_TAG.removeprefix("v")
    assert [command[-1] for command in calls] == [
        f"vit_lesson[notebooks]=={version}",
        f"vit_lesson[notebooks] @ git+https://github.com/{COURSE_REPO}@{COURSE_TAG}"]
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "Could not install" in printed and f"=={version}" in printed


def test_badges_open_the_release_not_a_branch():
    from vit_lesson.classroom import COURSE_REPO, COURSE_TAG

    badge = colab_badge("01_patches.ipynb")
    for where in ("colab.research.google.com/github", "kaggle.com/kernels/welcome", "studiolab.sagemaker.aws/import"):
        assert f"{where}" in badge
    urls = re.findall(r"\]\((https://[^)]+)\)", badge)
    targets = [url for url in urls if url.endswith("notebooks/01_patches.ipynb")]
    assert len(targets) == 3 and all(f"{COURSE_REPO}/blob/{COURSE_TAG}/" in url for url in targets), targets


def test_api_contract_names_exist():
    """docs/api_contract.md: every module heading imports, and every name opening a bullet (and every
    ``vit_lesson.x.y`` it mentions) exists, so the page cannot silently go stale."""
    import importlib

    def resolve(dotted):  # the longest importable module (vit_lesson.checks.agent), then attributes
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for part in parts[i:]:
                obj = getattr(obj, part)
            return obj
        raise ImportError(dotted)

    modules, missing = [], []
    for line in (ROOT / "docs" / "api_contract.md").read_text().splitlines():
        if line.startswith("## "):
            modules = [resolve(name) for name in re.findall(r"vit_lesson\.\w+", line)]
            continue
        for dotted in re.findall(r"`(vit_lesson(?:\.\w+)+)", line):
            try:
                resolve(dotted)
            except (ImportError, AttributeError):
                missing.append(dotted)
        opening = re.match(r"- ((?:`[^`]+`(?:, | and )?)+)", line)
        if opening and len(modules) == 1:
            for name in re.findall(r"`([A-Za-z_][\w.]*)", opening.group(1)):
                if "." not in name and not hasattr(modules[0], name):
                    missing.append(f"{modules[0].__name__}.{name}")
    assert not missing, f"docs/api_contract.md names what the package no longer has: {missing}"
