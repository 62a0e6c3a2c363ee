"""Course conventions in one place: the Colab setup cell, the Colab badge, learner versions.

Every notebook's first code cell is :func:`colab_setup_source` and its first markdown cell starts
with :func:`colab_badge`; ``python -m vit_lesson stamp`` rewrites both from the constants below,
and a test fails if any notebook differs. To publish the course from a fork, change
``COURSE_REPO`` / ``COURSE_REF`` here and run ``python -m vit_lesson stamp``.

Learner versions: in a solution notebook the learner's part of an exercise sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers). :func:`make_learner_notebook`
replaces it with a ``raise NotImplementedError`` carrying the hint from the ``# Hint:`` comment
just above ``### BEGIN SOLUTION``, and strips all outputs.

Learner versions are generated on demand (``python -m vit_lesson learner --out learner``, or
``make learner``) and never committed (``learner/`` is git-ignored): the solution notebooks stay
the one source. ``tests/test_learner_all.py`` checks every generated version;
``tests/test_colab_isolation.py`` runs each one alone from an installed package. Grading learners'
work is :mod:`vit_lesson.grading` (``python -m vit_lesson grade``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

COURSE_REPO = "vit-lesson/vit_lesson"   # GitHub owner/name the Colab cell installs from
COURSE_REF = "main"                     # branch, tag or commit

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
COLAB_MARK = "# Colab setup"
BADGE_MARK = "colab-badge.svg"


def colab_setup_source(repo: str = COURSE_REPO, ref: str = COURSE_REF) -> str:
    """The first code cell of every notebook: installs the course only when running in Colab."""
    return (
        f"{COLAB_MARK}: in Google Colab, install the course package; anywhere else, do nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        f'    COURSE = "git+https://github.com/{repo}@{ref}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", COURSE], check=True)'
    )


def colab_badge(notebook_name: str, repo: str = COURSE_REPO, ref: str = COURSE_REF) -> str:
    """Markdown for the "Open in Colab" badge of ``notebooks/<notebook_name>``."""
    url = f"https://colab.research.google.com/github/{repo}/blob/{ref}/notebooks/{notebook_name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/{BADGE_MARK})]({url})"


def stamp_notebook(path: Path) -> bool:
    """Put the current badge and Colab cell into a notebook. Returns True if it changed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    badge = colab_badge(path.name)
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(badge))
    else:
        lines = [line for line in first_md.source.splitlines() if BADGE_MARK not in line]
        first_md.source = "\n".join([badge, *lines]).rstrip()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if code_cells and code_cells[0].source.startswith(COLAB_MARK):
        code_cells[0].source = colab_setup_source()
    else:
        cell = nbformat.v4.new_code_cell(colab_setup_source())
        nb.cells.insert(nb.cells.index(first_md) + 1 if first_md else 0, cell)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("\n" if not after.endswith("\n") else ""))
    return after != before


_SOLUTION = re.compile(
    rf"^(?P<indent>[ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*(\n|$)",
    re.MULTILINE | re.DOTALL,
)
_HINT = re.compile(r"#\s*Hint:\s*(?P<hint>.+)$")
_EXERCISE = re.compile(r"^#\s*Exercise\s+(?P<id>\d+\.\d+)\b", re.MULTILINE)


def strip_solutions(source: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block with a placeholder."""

    def placeholder(match: re.Match) -> str:
        indent = match.group("indent")
        before = source[: match.start()].rstrip("\n").splitlines()
        hint_match = _HINT.search(before[-1]) if before else None
        hint = hint_match.group("hint").strip() if hint_match else "see the text above this cell."
        message = f"Exercise not done yet: replace this line with your code. Hint: {hint}"
        exercise_ids = _EXERCISE.findall(source[: match.start()])
        if exercise_ids:
            message += f' More help: checks.hint("{exercise_ids[-1]}").'
        return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError({message!r})\n"

    return _SOLUTION.sub(placeholder, source)


def make_learner_notebook(solution: Path, learner: Path) -> int:
    """Write the learner version of one solution notebook. Returns the number of exercises."""
    nb = nbformat.read(Path(solution), as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            count += cell.source.count(BEGIN)
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
    Path(learner).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, Path(learner))
    return count


def make_learner_versions(solutions_dir="notebooks", learner_dir="learner") -> list[tuple[Path, int]]:
    """Learner versions of every ``*.ipynb`` in ``solutions_dir``, written to ``learner_dir``."""
    made = []
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        made.append((Path(learner_dir) / path.name, make_learner_notebook(path, Path(learner_dir) / path.name)))
    return made


def add_cli(subparsers) -> None:
    learner = subparsers.add_parser(
        "learner", help="write learner versions of the notebooks (solutions replaced by placeholders)")
    learner.add_argument("--source", default="notebooks", help="folder of solution notebooks")
    learner.add_argument("--out", default="learner", help="folder to write the learner versions to")
    learner.set_defaults(func=lambda args: [
        print(f"{path}  ({n} exercise{'s' if n != 1 else ''})")
        for path, n in make_learner_versions(args.source, args.out)])

    stamp = subparsers.add_parser("stamp", help="rewrite every notebook's Colab badge and setup cell")
    stamp.add_argument("notebooks", nargs="*", help="notebooks to stamp (default: notebooks/*.ipynb)")
    stamp.set_defaults(func=lambda args: [
        print(f"stamped {p}") for p in (args.notebooks or sorted(Path("notebooks").glob("*.ipynb")))
        if stamp_notebook(Path(p))])
