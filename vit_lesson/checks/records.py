"""What a check says: one record per verdict, the recorder that collects them, and the line a learner reads.

Every exercise check (:func:`vit_lesson.checks.core.exercise`) returns a :class:`CheckResult`,
the record of one verdict: exercise id, title, status (``pass`` / ``fail`` / ``todo``), message
and the check's name. Where the record goes depends on who runs the check:

- in a learner's notebook, it is printed as one line (``✅ Exercise 1.1 (patchify) passed: ...``)
  and appended to :data:`vit_lesson.checks.core.RESULTS`: the learner's own record, which nothing
  grades;
- inside ``with Recorder() as recorder:``, it is appended to ``recorder.records`` and printed
  nowhere. The grader runs every check this way **in its own process**
  (:mod:`vit_lesson.grading.verdicts`), so the records it counts are made there, by its copy of the
  checks; none is ever read from a learner's kernel, its outputs or its files.

:func:`parse_line` reads a printed line back (in every language the course speaks), from the
same templates :attr:`CheckResult.line` writes: for reading stored notebooks (which exercises a
solution checks, the tests of the lessons) and for the grader's note "the notebook shows a pass
the grader's check does not give". A parsed line is never a verdict.
"""

from __future__ import annotations

import contextvars
import gettext
import re
from dataclasses import dataclass

from ..i18n import DOMAIN, LANGUAGES, LOCALE_DIR, _

__all__ = ["CheckResult", "Recorder", "active_recorder", "parse_line", "parse_lines", "PASS", "FAIL", "TODO"]

PASS, FAIL, TODO = "pass", "fail", "todo"
ICONS = {PASS: "✅", FAIL: "❌", TODO: "⏳"}


def _templates(_=_) -> dict[str, str]:
    """The line's template per status; ``_`` translates (default: the language in use)."""
    return {PASS: _("Exercise {exercise} ({title}) passed: {message}"),
            TODO: _("Exercise {exercise} ({title}) is not done yet: {message}"),
            FAIL: _("Exercise {exercise} ({title}): {message}")}


@dataclass
class CheckResult:
    """The record of one exercise check. Truthy when it passed."""

    exercise: str
    title: str
    status: str
    message: str
    check: str = ""   # the check's name, e.g. "check_patchify"

    def __bool__(self) -> bool:
        return self.status == PASS

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def line(self) -> str:
        """The one line a learner reads, in the language in use (:mod:`vit_lesson.i18n`)."""
        return f"{ICONS[self.status]} " + _templates()[self.status].format(
            exercise=self.exercise, title=_(self.title), message=self.message)

    def __str__(self) -> str:
        return self.line

    def _ipython_display_(self):  # the line is printed already; show nothing twice
        pass


# --- the recorder ----------------------------------------------------------------------------------

_ACTIVE = contextvars.ContextVar("vit_lesson_checks_recorder", default=None)


class Recorder:
    """Collects the record of every check run inside ``with recorder:`` (in this thread); prints nothing.

    While a recorder is active a check neither prints, nor appends to ``RESULTS``, nor calls
    ``CHECK_HOOKS``, nor raises under ``VIT_LESSON_CHECKS_RAISE``: its record is only here.
    """

    def __init__(self):
        self.records: list[CheckResult] = []
        self._tokens: list = []

    def add(self, record: CheckResult) -> None:
        self.records.append(record)

    def last(self, exercise: str) -> CheckResult | None:
        """The latest record of ``exercise``, or None."""
        return next((r for r in reversed(self.records) if r.exercise == exercise), None)

    def __enter__(self) -> Recorder:
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._tokens.pop())


def active_recorder() -> Recorder | None:
    """The recorder the checks report to now, or None (then they print)."""
    return _ACTIVE.get()


# --- reading a printed line back ---------------------------------------------------------------------

def _pattern(template: str) -> re.Pattern:
    fields = {"{exercise}": r"(?P<exercise>\S+?)", "{title}": r"(?P<title>.*?)", "{message}": r"(?P<message>.*)"}
    parts = re.split(r"(\{exercise\}|\{title\}|\{message\})", template)
    return re.compile("".join(fields.get(part, re.escape(part)) for part in parts) + "$")


def _patterns() -> dict[str, list[re.Pattern]]:
    """``{status: [pattern per language]}``, built once from the catalogs."""
    if not _PATTERNS:
        for tag in LANGUAGES:
            translation = gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[tag.replace("-", "_")],
                                              fallback=True)
            for status, template in _templates(translation.gettext).items():
                _PATTERNS.setdefault(status, []).append(_pattern(template))
    return _PATTERNS


_PATTERNS: dict = {}


def parse_line(line: str) -> CheckResult | None:
    """The record a printed check line *shows* (``check`` left empty), or None if it is no check line.

    The status is the icon's: a line whose icon was changed (``✅`` on a ``❌`` line) shows a pass.
    """
    icon, space, rest = line.rstrip("\r\n").partition(" ")
    status = next((s for s, i in ICONS.items() if i == icon), None)
    if status is None or not space:
        return None
    patterns = _patterns()
    for pattern in [*patterns[status], *(p for s in (PASS, TODO, FAIL) if s != status for p in patterns[s])]:
        match = pattern.match(rest)
        if match:
            return CheckResult(match["exercise"], match["title"], status, match["message"])
    return None


def parse_lines(text: str) -> list[tuple[CheckResult, str]]:
    """``(record, line)`` for every check line in ``text``, in order."""
    found = []
    for line in text.splitlines():
        record = parse_line(line)
        if record is not None:
            found.append((record, line))
    return found
