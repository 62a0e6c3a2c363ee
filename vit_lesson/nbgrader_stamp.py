"""nbgrader metadata for the course's notebooks, stamped from one place (like the Colab cell).

nbgrader (``generate_assignment`` / ``autograde``) needs every cell's role in
``cell.metadata["nbgrader"]``; the course's notebooks carry nbgrader's ``### BEGIN SOLUTION``
markers but none of its metadata, so ``generate_assignment`` refuses them ("Solution region
detected in a non-solution cell"). :func:`stamp_nbgrader` writes it:

- a code cell with a solution region: ``solution`` (the learner edits it);
- a code cell that calls an exercise check (``checks.check_xxx(``): an autograded test,
  ``grade`` with :data:`POINTS` points, ``locked``;
- every other cell: ``locked`` (read-only in nbgrader's assignment).

nbgrader scores a test cell by whether it raises. The checks never raise in a learner's notebook;
with ``VIT_LESSON_CHECKS_RAISE=1`` in the environment of ``nbgrader autograde`` a check that does
not pass raises ``AssertionError`` after printing its line (⏳ and ❌ both score 0). Note that
nbgrader runs the checks in the learner's own kernel: its verdicts are only as trustworthy as that
kernel; ``python -m vit_lesson grade`` is the sandboxed, forgery-proof grader.

``python -m vit_lesson nbgrader-stamp notebooks/*.ipynb`` stamps files in place (idempotent).
"""

from __future__ import annotations

import re
from pathlib import Path

from ._optional import optional

nbformat = optional("nbformat")

__all__ = ["stamp_nbgrader", "stamp_nbgrader_file", "POINTS", "RAISE_ENV"]

POINTS = 1
RAISE_ENV = "VIT_LESSON_CHECKS_RAISE"
SCHEMA_VERSION = 3
_CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\(")


def _is_exercise_check(name: str) -> bool:
    from . import checks

    return getattr(getattr(checks, name, None), "exercise_id", None) is not None


def stamp_nbgrader(nb, prefix: str = "cell") -> dict[str, int]:
    """Write ``metadata["nbgrader"]`` on every cell of ``nb`` (in place); return the count of each role."""
    from .classroom import BEGIN

    counts = {"solution": 0, "test": 0, "locked": 0}
    for index, cell in enumerate(nb.cells):
        source = cell.get("source", "")
        role = "locked"
        if cell.cell_type == "code" and BEGIN in source:
            role = "solution"
        elif cell.cell_type == "code" and any(_is_exercise_check(n) for n in _CHECK_CALL.findall(source)):
            role = "test"
        meta = {"grade": role == "test", "solution": role == "solution", "locked": role != "solution",
                "grade_id": f"{prefix}-{index:03d}-{role}", "schema_version": SCHEMA_VERSION}
        if role == "test":
            meta["points"] = POINTS
        cell.metadata["nbgrader"] = meta
        counts[role] += 1
    return counts


def stamp_nbgrader_file(path: str | Path) -> bool:
    """Stamp one notebook file in place; True if it changed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    stamp_nbgrader(nb, prefix=path.stem)
    if nbformat.writes(nb) == before:
        return False
    nbformat.write(nb, path)
    return True


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser("nbgrader-stamp", help="write nbgrader's cell metadata into notebooks (in place)")
    parser.add_argument("notebooks", nargs="+", help="notebook files")

    def run(args) -> int:
        for path in args.notebooks:
            print(f"{'stamped' if stamp_nbgrader_file(path) else 'unchanged'}: {path}")
        return 0

    parser.set_defaults(func=run)
