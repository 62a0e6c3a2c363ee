"""Translated editions of the course, from one source: the English notebooks plus gettext catalogs.

Translators work in gettext ``.po`` files, the format Python's own documentation and Sphinx use,
which every translation tool (Poedit, Weblate, Lokalize, OmegaT) edits:

- ``translations/<lang>/<notebook>.po``: one entry per markdown cell of ``notebooks/<notebook>.ipynb``;
  the English cell is the ``msgid``, the translation its ``msgstr``;
- ``vit_lesson/locale/<lang>/LC_MESSAGES/vit_lesson.po``: what the package itself says to a
  learner (check verdicts, hints, errors, the command line), used through :mod:`vit_lesson.i18n`.

The commands (``python -m vit_lesson translate ...``):

- ``update``: re-read the English notebooks and the package; new text gets an empty entry, a
  changed cell keeps its old translation marked *fuzzy* with the previous English beside it (so
  the translator sees what changed), text that is gone is dropped;
- ``compile``: the package catalog's ``.po`` -> ``.mo`` (what :mod:`gettext` reads);
- ``build``: ``notebooks/<lang>/<notebook>.ipynb`` from the English notebook: markdown from the
  catalog, code cells unchanged except the ``# Hint:`` comments (translated from the package
  catalog, where each exercise's first hint lives) and the first cell, which also sets the
  language; then ``make notebooks`` executes them;
- ``check``: what is missing or stale (what the tests run).

Editing a translation: change the ``msgstr`` (and remove a ``#, fuzzy`` flag once the entry is
right again), then ``build`` and ``make notebooks``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

__all__ = ["ROOT", "notebook_messages", "update_catalog", "catalog_problems", "build_notebook", "package_messages",
           "update_package_catalog", "compile_package_catalog", "add_cli"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent
HINT = re.compile(r"^(?P<indent>[ \t]*)# Hint: (?P<hint>.+)$", re.MULTILINE)
LANGUAGE_CELL = ('\n\nfrom vit_lesson.i18n import set_language\n\n'
                 'set_language("{lang}")  # {name}: the checks, hints and errors speak it too')


def _polib():
    from ._optional import require
    return require("polib")  # the [translate] extra


def _split_badge(source: str) -> tuple[str, str]:
    """``(badge line, rest)`` of a markdown cell; the badge is stamped, not translated."""
    first, _, rest = source.partition("\n")
    return (first, rest) if "colab-badge.svg" in first else ("", source)


def notebook_messages(notebook: Path) -> list[str]:
    """The text to translate in one English notebook: each markdown cell, without the badge line."""
    import nbformat

    nb = nbformat.read(Path(notebook), as_version=4)
    return [_split_badge(cell.source)[1].strip() for cell in nb.cells
            if cell.cell_type == "markdown" and _split_badge(cell.source)[1].strip()]


def _new_catalog(lang: str, project: str):
    polib = _polib()
    po = polib.POFile(wrapwidth=0)
    po.metadata = {"Project-Id-Version": project, "Language": lang.replace("-", "_"),
                   "MIME-Version": "1.0", "Content-Type": "text/plain; charset=UTF-8",
                   "Content-Transfer-Encoding": "8bit"}
    return po


def _merge(po, messages: list[tuple[str, str]]):
    """Rebuild ``po``'s entries for ``messages`` (``(msgid, where)``), keeping translations."""
    polib = _polib()
    old = [e for e in po if not e.obsolete]
    by_id = {e.msgid: e for e in old}
    by_place = {f"{file}:{line}": e for e in old for file, line in e.occurrences}
    wanted = {msgid for msgid, _ in messages}
    entries = []
    for msgid, where in messages:
        file, _, line = where.rpartition(":")
        if msgid in by_id:
            entry = by_id.pop(msgid)
            entry.occurrences = [(file, line)]
        else:
            previous = by_place.get(where)
            entry = polib.POEntry(msgid=msgid, msgstr="", occurrences=[(file, line)])
            if previous is not None and previous.msgid not in wanted and previous.msgstr:
                entry.msgstr, entry.previous_msgid = previous.msgstr, previous.msgid
                entry.flags.append("fuzzy")
        entries.append(entry)
    po[:] = entries
    return po


def update_catalog(notebook: Path, catalog: Path, lang: str):
    """Create or update one notebook's ``.po`` from the English notebook; returns the catalog."""
    polib = _polib()
    notebook, catalog = Path(notebook), Path(catalog)
    po = polib.pofile(str(catalog), wrapwidth=0) if catalog.exists() else _new_catalog(lang, notebook.stem)
    _merge(po, [(text, f"{notebook.name}:{number}") for number, text in enumerate(notebook_messages(notebook), 1)])
    catalog.parent.mkdir(parents=True, exist_ok=True)
    po.save(str(catalog))
    return po


def catalog_problems(messages: list[str], catalog: Path) -> list[str]:
    """Why a catalog does not (yet) translate ``messages``: missing, untranslated or fuzzy entries."""
    polib = _polib()
    if not Path(catalog).exists():
        return [f"{catalog}: no catalog; run `python -m vit_lesson translate update`"]
    entries = {e.msgid: e for e in polib.pofile(str(catalog)) if not e.obsolete}
    problems = []
    for msgid in messages:
        entry, short = entries.get(msgid), msgid.splitlines()[0][:70]
        if entry is None:
            problems.append(f"{Path(catalog).name}: no entry for {short!r} (the English changed: run update)")
        elif "fuzzy" in entry.flags:
            problems.append(f"{Path(catalog).name}: stale translation of {short!r} (the English changed; "
                            "update the msgstr, then remove the fuzzy flag)")
        elif not entry.msgstr.strip():
            problems.append(f"{Path(catalog).name}: {short!r} is not translated")
    return problems


def _translator(lang: str):
    import gettext

    from .i18n import DOMAIN, LOCALE_DIR
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang.replace("-", "_")])


def build_notebook(notebook: Path, catalog: Path, out: Path, lang: str) -> Path:
    """Write the ``lang`` edition of one English notebook (not executed); raises if anything is untranslated."""
    import nbformat

    from .classroom import colab_setup_source
    from .i18n import LANGUAGES
    polib = _polib()
    notebook, out = Path(notebook), Path(out)
    problems = catalog_problems(notebook_messages(notebook), catalog)
    if problems:
        raise ValueError(f"{notebook.name} cannot be built in {lang} yet:\n  " + "\n  ".join(problems))
    text = {e.msgid: e.msgstr for e in polib.pofile(str(catalog)) if not e.obsolete}
    package = _translator(lang)
    nb = nbformat.read(notebook, as_version=4)
    first_code = True
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            badge, body = _split_badge(cell.source)
            if body.strip():
                body = text[body.strip()]
            badge = badge.replace(f"/notebooks/{notebook.name}", f"/notebooks/{lang}/{notebook.name}")
            cell.source = "\n".join(part for part in (badge, body) if part)
        elif cell.cell_type == "code":
            if first_code and cell.source == colab_setup_source():
                cell.source += LANGUAGE_CELL.format(lang=lang, name=LANGUAGES[lang])
            first_code = False

            def hint(match):
                translated = package.gettext(match.group("hint"))
                if translated == match.group("hint"):
                    raise ValueError(f"{notebook.name}: the hint {match.group('hint')[:60]!r} has no {lang} "
                                     f"translation in the package catalog; run update, translate it, compile")
                return f"{match.group('indent')}# Hint: {translated}"

            cell.source = HINT.sub(hint, cell.source)
            cell.outputs, cell.execution_count = [], None
    nb.metadata["vit_lesson"] = {"language": lang}  # learner versions and the grader read it
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out


# --- the package's own messages ------------------------------------------------------------------

def package_messages() -> list[tuple[str, str]]:
    """``(msgid, where)`` for every ``_("...")`` in the package, every exercise title and hint, and every
    ``# Hint:`` comment of the English notebooks (a cell with two solution blocks may have two)."""
    found, seen = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                msgid = node.args[0].value
                if msgid not in seen:
                    seen.add(msgid)
                    found.append((msgid, f"{path.relative_to(PACKAGE.parent).as_posix()}:{node.lineno}"))
    import json
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):  # hint comments in code cells
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                for match in HINT.finditer("".join(cell["source"])):
                    if match.group("hint") not in seen:
                        seen.add(match.group("hint"))
                        found.append((match.group("hint"), f"notebooks/{notebook.name}:hint"))
    from .checks.core import HINTS
    for exercise_id, (title, hints) in HINTS.items():
        for msgid in (title, *hints):
            if msgid not in seen:
                seen.add(msgid)
                found.append((msgid, f"exercise/{exercise_id}:0"))
    return found


def package_catalog(lang: str) -> Path:
    return PACKAGE / "locale" / lang.replace("-", "_") / "LC_MESSAGES" / "vit_lesson.po"


def update_package_catalog(lang: str):
    polib = _polib()
    path = package_catalog(lang)
    po = polib.pofile(str(path), wrapwidth=0) if path.exists() else _new_catalog(lang, "vit_lesson")
    _merge(po, package_messages())
    path.parent.mkdir(parents=True, exist_ok=True)
    po.save(str(path))
    return po


def compile_package_catalog(lang: str) -> Path:
    polib = _polib()
    path = package_catalog(lang)
    po = polib.pofile(str(path))
    mo = path.with_suffix(".mo")
    po.save_as_mofile(str(mo))
    return mo


def add_cli(subparsers) -> None:
    from .i18n import LANGUAGES, _
    translate = subparsers.add_parser("translate", help=_("update, compile, build and check the course's translations"))
    translate.add_argument("action", choices=("update", "compile", "build", "check"))
    translate.add_argument("--lang", default="zh-CN", choices=[tag for tag in LANGUAGES if tag != "en"])
    translate.set_defaults(func=_run)


def _run(args) -> int:
    english = sorted((ROOT / "notebooks").glob("*.ipynb"))
    catalogs = ROOT / "translations" / args.lang
    if args.action == "update":
        for notebook in english:
            po = update_catalog(notebook, catalogs / f"{notebook.stem}.po", args.lang)
            print(f"{catalogs.name}/{notebook.stem}.po: {po.percent_translated()}% translated, "
                  f"{len(po.fuzzy_entries())} fuzzy")
        po = update_package_catalog(args.lang)
        print(f"vit_lesson.po: {po.percent_translated()}% translated, {len(po.fuzzy_entries())} fuzzy")
    elif args.action == "compile":
        print(compile_package_catalog(args.lang).relative_to(ROOT))
    elif args.action == "build":
        for notebook in english:
            print(build_notebook(notebook, catalogs / f"{notebook.stem}.po",
                                 ROOT / "notebooks" / args.lang / notebook.name, args.lang).relative_to(ROOT))
    else:
        problems = [p for notebook in english
                    for p in catalog_problems(notebook_messages(notebook), catalogs / f"{notebook.stem}.po")]
        problems += catalog_problems([m for m, _ in package_messages()], package_catalog(args.lang))
        print("\n".join(problems) or "every cell and message is translated")
        return 1 if problems else 0
    return 0
