"""nbgrader metadata for the course's notebooks, stamped from one place (like the Colab cell).

nbgrader (``generate_assignment`` / ``autograde``) needs every cell's role in
``cell.metadata["nbgrader"]``; the course's notebooks carry nbgrader's ``### BEGIN SOLUTION``
markers but none of its metadata, so ``generate_assignment`` refuses them ("Solution region
detected in a non-solution cell"). :func:`stamp_nbgrader` writes it:

- a code cell with a solution region: ``solution`` (the learner edits it);
- a code cell that calls an exercise check (``checks.check_xxx(name)``) on a name the cell does
  not define itself (the learner's answer, from a solution cell): an autograded test, ``grade``
  with :data:`POINTS` points, ``locked``;
- every other cell: ``locked`` (read-only in nbgrader's assignment). That includes a
  *demonstration*, a cell that feeds a check a wrong answer it defines (or builds) itself, which
  would otherwise cost the teacher's own solution its points.

:func:`nbgrader_problems` lists the cells nbgrader will refuse: a cell other than a solution cell
whose text contains nbgrader's ``BEGIN SOLUTION`` delimiter (nbgrader matches it anywhere, a
markdown cell that *shows* the markers included).

nbgrader scores a test cell by whether it raises. The checks never raise in a learner's notebook;
with ``VIT_LESSON_CHECKS_RAISE=1`` in the environment of ``nbgrader autograde`` a check that does
not pass raises ``AssertionError`` after printing its line (⏳ and ❌ both score 0). Note that
nbgrader runs the checks in the learner's own kernel: its verdicts are only as trustworthy as that
kernel; ``python -m vit_lesson grade`` is the sandboxed, forgery-proof grader.

``python -m vit_lesson nbgrader-stamp notebooks/*.ipynb`` stamps files in place (idempotent).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ._optional import optional
from .i18n import _

nbformat = optional("nbformat")

__all__ = ["stamp_nbgrader", "stamp_nbgrader_file", "nbgrader_problems", "POINTS", "RAISE_ENV"]

POINTS = 1
RAISE_ENV = "VIT_LESSON_CHECKS_RAISE"
SCHEMA_VERSION = 3
_CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\(")


def _is_exercise_check(name: str) -> bool:
    from .checks import find_check

    return find_check(name) is not None


def _grades_an_answer(source: str) -> bool:
    """True if the cell calls exercise checks, each on a plain name the cell does not bind itself."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return any(_is_exercise_check(n) for n in _CHECK_CALL.findall(source))
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    answers = [node.args[0] if node.args else None for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"
               and _is_exercise_check(node.func.attr)]
    return bool(answers) and all(isinstance(a, ast.Name) and a.id not in bound for a in answers)


def nbgrader_problems(nb) -> list[str]:
    """What ``nbgrader generate_assignment`` would refuse in a stamped ``nb``, one line per cell."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if "BEGIN SOLUTION" in cell.get("source", "") and not cell.metadata.get("nbgrader", {}).get("solution"):
            problems.append(f"cell {index} ({cell.cell_type}) contains 'BEGIN SOLUTION' but is not a solution "
                            "cell: nbgrader refuses it (\"Solution region detected in a non-solution cell\"); "
                            "do not spell the marker out in it")
    return problems


def stamp_nbgrader(nb, prefix: str = "cell") -> dict[str, int]:
    """Write ``metadata["nbgrader"]`` on every cell of ``nb`` (in place); return the count of each role."""
    from .classroom import BEGIN

    counts = {"solution": 0, "test": 0, "locked": 0}
    for index, cell in enumerate(nb.cells):
        source = cell.get("source", "")
        role = "locked"
        if cell.cell_type == "code" and BEGIN in source:
            role = "solution"
        elif cell.cell_type == "code" and _grades_an_answer(source):
            role = "test"
        meta = {"grade": role == "test", "solution": role == "solution", "locked": role != "solution",
                "grade_id": f"{prefix}-{index:03d}-{role}", "schema_version": SCHEMA_VERSION}
        if role == "test":
            meta["points"] = POINTS
        cell.metadata["nbgrader"] = meta
        counts[role] += 1
    return counts


def stamp_nbgrader_file(path: str | Path, problems: list | None = None) -> bool:
    """Stamp one notebook file in place; True if it changed. ``problems`` gets :func:`nbgrader_problems`."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    stamp_nbgrader(nb, prefix=path.stem)
    if problems is not None:
        problems.extend(nbgrader_problems(nb))
    if nbformat.writes(nb) == before:
        return False
    nbformat.write(nb, path)
    return True


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser("nbgrader-stamp", help=_("write nbgrader's cell metadata into notebooks (in place)"))
    parser.add_argument("notebooks", nargs="+", help=_("notebook files"))

    def run(args) -> int:
        for path in args.notebooks:
            problems = []
            print(f"{'stamped' if stamp_nbgrader_file(path, problems) else 'unchanged'}: {path}")
            for problem in problems:
                print(f"  warning: {problem}")
        return 0

    parser.set_defaults(func=run)
