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
    wanted = project["dependencies"] + project["optional-dependencies"]["lab"] + project["optional-dependencies"]["test"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict) and "pip" in item)
    listed = [item for item in pip if not item.startswith("-e")]
    assert sorted(map(normalise, listed)) == sorted(map(normalise, wanted)), (
        "environment.yml's pip list and pyproject.toml (dependencies + lab + test extras) differ: only in "
        f"environment.yml {sorted(set(map(normalise, listed)) - set(map(normalise, wanted)))}, only in "
        f"pyproject.toml {sorted(set(map(normalise, wanted)) - set(map(normalise, listed)))}")
    assert "-e ." in pip, "environment.yml should install the course itself with `-e .`"


# --- the Colab setup cell ---------------------------------------------------------------------------

def test_colab_cell_does_nothing_outside_colab(monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"the Colab setup cell ran {args} outside Colab")

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", refuse)
    exec(colab_setup_source(), {})


def test_colab_cell_installs_the_course_in_colab(monkeypatch):
    import subprocess

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)))
    exec(colab_setup_source(), {})
    (command, kwargs), = calls
    assert command[:4] == [sys.executable, "-m", "pip", "install"] and kwargs == {"check": True}
    assert command[-1].startswith("git+https://github.com/") and "vit_lesson" in command[-1]


def test_api_contract_names_exist():
    """docs/api_contract.md: every module heading imports, and every name opening a bullet (and every
    ``vit_lesson.x.y`` it mentions) exists, so the page cannot silently go stale."""
    import importlib

    def resolve(dotted):
        parts = dotted.split(".")
        obj = importlib.import_module(".".join(parts[:2]))
        for part in parts[2:]:
            obj = getattr(obj, part)
        return obj

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
