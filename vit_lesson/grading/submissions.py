"""Finding the hand-ins: ``submissions/<learner>/<notebook>.ipynb``, with the odd names learners give them.

A learner's notebook may be nested in sub-folders, end in ``.IPYNB``, or carry a copy's name
(``01_patches (1).ipynb``, ``01_patches-Copy1.ipynb``): each is graded as its notebook, with a
note. Everything else is a :class:`Skipped`, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..i18n import _

__all__ = ["Skipped", "find_submissions"]


@dataclass
class Skipped:
    """A file or folder of the submissions that was not graded, and why."""

    path: str
    reason: str


_COPY = re.compile(r"^(?P<name>.+?)(?:\s*\(\d+\)|[ _-]+[Cc]opy(?:[ _-]*\d+)?|-Copy\d*)$")


def find_submissions(submissions: str | Path, names=None):
    """``({learner: {notebook name: (path, note)}}, [Skipped])`` from ``submissions/<learner>/...``.

    A learner's notebook may be nested in sub-folders, end in ``.IPYNB``, or be a copy's name
    (``01_patches (1).ipynb``, ``01_patches-Copy1.ipynb``): each is graded as its notebook, with a
    note. ``names`` (the solution notebooks' names) says which notebooks exist; without it, any
    ``NN_name``. What is not graded is returned with the reason: hidden folders, files outside a
    learner's folder, other extensions, names of no notebook, and extra copies.
    """
    root = Path(submissions)
    found, skipped = {}, []
    wanted = set(names or ())

    def known(stem):
        return stem in wanted if wanted else re.fullmatch(r"\d\d_\w+", stem) is not None

    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            skipped.append(Skipped(entry.name, _("a hidden name (starts with a dot): rename the folder to grade it")))
            continue
        if not entry.is_dir():
            skipped.append(Skipped(entry.name, _("not inside a learner's folder")))
            continue
        candidates = {}
        for path in sorted(entry.rglob("*")):
            relative = path.relative_to(root)
            if path.is_dir() or any(part.startswith(".") for part in path.relative_to(entry).parts):
                if not path.is_dir() and ".ipynb_checkpoints" not in relative.parts:
                    skipped.append(Skipped(str(relative), _("a hidden name (starts with a dot)")))
                continue
            if path.suffix.lower() != ".ipynb":
                skipped.append(Skipped(str(relative), _("not a notebook ({extension})").format(
                    extension=path.suffix or _("no extension"))))
                continue
            stem, copy = path.stem, False
            if not known(stem):
                match = _COPY.match(stem)
                if match and known(match["name"].strip()):
                    stem, copy = match["name"].strip(), True
                else:
                    skipped.append(Skipped(str(relative), _("no course notebook has this name")))
                    continue
            depth = len(path.relative_to(entry).parts) - 1
            candidates.setdefault(stem, []).append((copy, depth, path.suffix != ".ipynb", str(relative), path))
        found[entry.name] = {}
        for stem, options in sorted(candidates.items()):
            options.sort()
            copy, depth, odd_case, relative, path = options[0]
            notes = []
            if copy:
                notes.append(_("graded {file} (a copy's name)").format(file=path.name))
            if depth:
                notes.append(_("found in {folder}").format(folder=Path(relative).parent))
            if odd_case and not copy:
                notes.append(_("graded {file}").format(file=path.name))
            for *_unused, other, _path in options[1:]:
                skipped.append(Skipped(other, _("another file for {notebook}; graded {file}").format(
                    notebook=stem, file=relative)))
            found[entry.name][stem] = (path, "; ".join(notes))
    return found, skipped
