"""Course conventions in one place: the setup cell, the "open in" badges, learner versions.

Every notebook's first code cell is :func:`colab_setup_source` and its first markdown cell starts
with :func:`colab_badge`; ``python -m vit_lesson stamp`` rewrites both from the constants below,
and a test fails if any notebook differs. Both point at one release: ``COURSE_VERSION`` (the
package's ``__version__``) and its git tag ``COURSE_TAG`` on ``COURSE_REPO``, never a moving
branch, because the stored outputs belong to that release. To publish the course from a fork,
change ``COURSE_REPO`` here (and the URLs in ``pyproject.toml``; a test keeps them in step) and
run ``python -m vit_lesson stamp``.

The setup cell works wherever a notebook runs (Colab, Kaggle, SageMaker Studio Lab, a plain
Jupyter): if ``import vit_lesson`` gives this release and the notebooks' extra modules are there,
it prints nothing and installs nothing (so in the course's own environment it is silent);
otherwise it installs ``vit_lesson[notebooks]==<version>`` from the package index, then the same
from ``git+https://github.com/<COURSE_REPO>@<COURSE_TAG>``; if both fail (offline) it prints one
line saying what to do. pip's own settings (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ...) decide
where "the package index" is; ``tests/test_setup_cell.py`` runs the cell against a local wheel.

Learner versions: in a solution notebook the learner's part of an exercise sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers). :func:`make_learner_notebook`
replaces it with a ``raise NotImplementedError`` carrying the hint from the ``# Hint:`` comment
just above ``### BEGIN SOLUTION``, and strips all outputs.

Learner versions are generated on demand (``python -m vit_lesson learner --out learner``, or
``make learner``) and never committed (``learner/`` is git-ignored): the solution notebooks stay
the one source. ``tests/test_learner_all.py`` checks every generated version;
``tests/test_colab_isolation.py`` runs each one alone from an installed package. Grading learners'
work is :mod:`vit_lesson.grading` (``python -m vit_lesson grade``). Reading and writing notebooks
needs nbformat, from the ``[teacher]`` extra.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import __version__
from ._optional import optional
from .i18n import _

nbformat = optional("nbformat")  # the [teacher] extra, imported when first used

COURSE_REPO = "vit-lesson/vit_lesson"   # GitHub owner/name: the badges and the setup cell's git fallback
COURSE_VERSION = __version__            # the release the notebooks (and their stored outputs) belong to
COURSE_TAG = f"v{COURSE_VERSION}"       # its git tag (pushing it runs .github/workflows/publish.yml)
NOTEBOOK_MODULES = ("timm", "ipywidgets")  # import names of the [notebooks] extra (a test keeps them in step)

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SETUP_MARK = "# Setup:"
OLD_SETUP_MARKS = ("# Colab setup",)    # earlier setup cells, replaced by `stamp`
BADGE_MARK = "colab-badge.svg"


def colab_setup_source(repo: str = COURSE_REPO, version: str = COURSE_VERSION,
                       modules: tuple[str, ...] = NOTEBOOK_MODULES) -> str:
    """The first code cell of every notebook: use the installed course, or install this release of it."""
    return f"""\
{SETUP_MARK} use vit_lesson {version} if this Python has it; else (Colab, Kaggle, a new Jupyter) install it.
def _setup(version="{version}", modules={modules!r}):
    import importlib
    import importlib.util
    import subprocess
    import sys

    def ready():
        try:
            import vit_lesson
        except ImportError:
            return False
        return vit_lesson.__version__ == version and all(importlib.util.find_spec(m) for m in modules)

    if ready():
        return
    for source in (f"vit_lesson[notebooks]=={{version}}",  # the package index, else the release's git tag
                   f"vit_lesson[notebooks] @ git+https://github.com/{repo}@v{{version}}"):
        pip = [sys.executable, "-m", "pip", "install", "-q", source]
        if subprocess.run(pip, capture_output=True).returncode == 0:
            for name in [name for name in sys.modules if name.partition(".")[0] == "vit_lesson"]:
                del sys.modules[name]  # a vit_lesson of another version, imported by ready()
            importlib.invalidate_caches()
            if ready():
                print(f"installed {{source}}")
                return
    print(f"Could not install vit_lesson {{version}} (offline?): turn this notebook's internet on and run "
          f'this cell again, or run  pip install "vit_lesson[notebooks]=={{version}}"  and restart the kernel.')


_setup()
del _setup"""


def _open_in_urls(notebook_name: str, repo: str, tag: str) -> dict[str, str]:
    path = f"{repo}/blob/{tag}/notebooks/{notebook_name}"
    return {
        "Colab": f"https://colab.research.google.com/github/{path}",
        "Kaggle": f"https://kaggle.com/kernels/welcome?src=https://github.com/{path}",
        "SageMaker Studio Lab": f"https://studiolab.sagemaker.aws/import/github/{path}",
    }


_BADGES = {
    "Colab": f"https://colab.research.google.com/assets/{BADGE_MARK}",
    "Kaggle": "https://kaggle.com/static/images/open-in-kaggle.svg",
    "SageMaker Studio Lab": "https://studiolab.sagemaker.aws/studiolab.svg",
}


def colab_badge(notebook_name: str, repo: str = COURSE_REPO, tag: str = COURSE_TAG) -> str:
    """The badge line of ``notebooks/<notebook_name>``: open this release of it in Colab, Kaggle or Studio Lab."""
    return " ".join(f"[![Open In {where}]({_BADGES[where]})]({url})"
                    for where, url in _open_in_urls(notebook_name, repo, tag).items())


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
    if code_cells and code_cells[0].source.startswith((SETUP_MARK, *OLD_SETUP_MARKS)):
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


def _in_language(language: str):
    """gettext for ``language`` (the placeholder's words in a translated edition); English by default."""
    if language in (None, "", "en"):
        return lambda message: message
    import gettext

    from .i18n import DOMAIN, LOCALE_DIR
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[language.replace("-", "_")],
                               fallback=True).gettext


def strip_solutions(source: str, language: str = "en") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block with a placeholder.

    The placeholder's message is in ``language`` (the notebook's edition: ``"en"`` or ``"zh-CN"``).
    """
    _ = _in_language(language)

    def placeholder(match: re.Match) -> str:
        indent = match.group("indent")
        before = source[: match.start()].rstrip("\n").splitlines()
        hint_match = _HINT.search(before[-1]) if before else None
        hint = hint_match.group("hint").strip() if hint_match else _("see the text above this cell.")
        message = _("Exercise not done yet: replace this line with your code. Hint: {hint}").format(hint=hint)
        exercise_ids = _EXERCISE.findall(source[: match.start()])
        if exercise_ids:
            message += " " + _('More help: checks.hint("{exercise}").').format(exercise=exercise_ids[-1])
        return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError({message!r})\n"

    return _SOLUTION.sub(placeholder, source)


def make_learner_notebook(solution: Path, learner: Path) -> int:
    """Write the learner version of one solution notebook. Returns the number of exercises."""
    nb = nbformat.read(Path(solution), as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            count += cell.source.count(BEGIN)
            cell.source = strip_solutions(cell.source, nb.metadata.get("vit_lesson", {}).get("language", "en"))
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
        "learner", help=_("write learner versions of the notebooks (solutions replaced by placeholders)"))
    learner.add_argument("--source", default="notebooks", help=_("folder of solution notebooks"))
    learner.add_argument("--out", default="learner", help=_("folder to write the learner versions to"))
    learner.set_defaults(func=lambda args: [
        print(f"{path}  " + (_("({n} exercise)") if n == 1 else _("({n} exercises)")).format(n=n))
        for path, n in make_learner_versions(args.source, args.out)])

    stamp = subparsers.add_parser("stamp", help=_("rewrite every notebook's Colab badge and setup cell"))
    stamp.add_argument("notebooks", nargs="*", help=_("notebooks to stamp (default: notebooks/*.ipynb)"))
    stamp.set_defaults(func=lambda args: [
        print(_("stamped {path}").format(path=p)) for p in (args.notebooks or sorted(Path("notebooks").glob("*.ipynb")))
        if stamp_notebook(Path(p))])
