"""The report: ``grades.csv``, ``grades.md``, ``summary.md`` and ``summary.png`` from the :class:`~.grades.Grade` rows.

``grades.csv`` keeps English column names and status values in every language (scripts read
them); ``grades.md`` and ``summary.md`` speak the language in use (:func:`speaking`), and
``summary.md`` counts the class's most frequent ❌ messages per exercise.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from pathlib import Path

from ..checks.records import FAIL, PASS, TODO
from ..i18n import _, get_language, set_language
from .grades import INVALID, MISSING, NOT_SUBMITTED, natural_order
from .session import CRASHED, ERRORS, OK, TIMEOUT

__all__ = ["csv_table", "markdown_table", "class_summary", "summary_table", "summary_figure", "write_report",
           "speaking"]


def _icon(value: str) -> str:
    """An exercise cell of grades.md: the icon and the status word, in the language in use."""
    return {PASS: "✅ " + _("pass"), FAIL: "❌ " + _("fail"), TODO: "⏳ " + _("todo"),
            MISSING: "· " + _("missing")}.get(value, value)


def _status_word(status: str) -> str:
    """A notebook's status (ok / errors / crashed / ...) in grades.md, in the language in use."""
    return {OK: _("ok"), ERRORS: _("errors"), CRASHED: _("crashed"), TIMEOUT: _("timeout"),
            INVALID: _("invalid"), NOT_SUBMITTED: _("not submitted")}.get(status, status)


@contextlib.contextmanager
def speaking(language: str | None):
    """Speak ``language`` (a tag of :data:`vit_lesson.i18n.LANGUAGES`) inside the block; None: the one in use."""
    if language is None:
        yield get_language()
        return
    before = get_language()
    try:
        yield set_language(language)
    finally:
        set_language(before)


def _columns(grades, translate: bool = True) -> list[tuple[str, str]]:
    """``(exercise id, label)`` per exercise; ``translate``: the title in the language in use."""
    titles = {}
    for row in grades:
        for exercise_id in row.exercises:
            titles.setdefault(exercise_id, row.titles.get(exercise_id, ""))
    label = (lambda title: _(title) if title else title) if translate else (lambda title: title)  # noqa: E731
    return [(ex, f"{ex} {label(titles[ex])}".strip()) for ex in sorted(titles, key=natural_order)]


def _rows(grades, icons: bool):
    """Header and rows: ``icons`` for grades.md (words in the language in use), else the CSV's stable English."""
    columns = _columns(grades, translate=icons)
    names = ([_("learner"), _("notebook"), _("status"), _("passed")] if icons
             else ["learner", "notebook", "status", "passed"])
    header = [*names, *(label for _ex, label in columns), _("detail") if icons else "detail"]
    rows = []
    for row in grades:
        cells = [row.exercises.get(ex, "") for ex, _label in columns]
        status = row.status
        if icons:
            cells, status = [_icon(cell) for cell in cells], _status_word(status)
        rows.append([row.learner, row.notebook, status, row.passed, *cells, row.detail])
    return header, rows


def _spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ (or tab, CR) is a formula, so prefix '."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_table(grades) -> str:
    """The report as CSV (exercise cells: pass / fail / todo / missing, blank if not in that notebook).

    Column names, status and exercise values are English in every language (scripts read them);
    the exercise titles are as the solution notebooks print them, the details in the language in use.
    """
    header, rows = _rows(grades, icons=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_spreadsheet_safe(c) for c in header])
    writer.writerows([[_spreadsheet_safe(c) for c in row] for row in rows])
    return buffer.getvalue()


def _md(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def markdown_table(grades, skipped=()) -> str:
    """The report as a Markdown table, with a per-exercise class summary below it."""
    header, rows = _rows(grades, icons=True)
    text = [_md(header), _md(["---"] * len(header)), *(_md(r) for r in rows)]
    summary = []
    for ex, label in _columns(grades):
        graded = [r for r in grades if ex in r.exercises]
        summary.append(f"{label}: {sum(r.exercises[ex] == PASS for r in graded)}/{len(graded)}")
    if summary:
        text += ["", _("Passed, per exercise: {counts}.").format(counts=_("; ").join(summary))]
    if skipped:
        text += ["", _("Not graded:"), "", *(f"- `{s.path}`: {s.reason}" for s in skipped)]
    return "\n".join(text) + "\n"


def class_summary(grades, top: int = 3) -> list[dict]:
    """Per exercise: passed, fail, todo, missing counts and the ``top`` most frequent ❌ messages."""
    out = []
    for ex, label in _columns(grades):
        rows = [r for r in grades if ex in r.exercises]
        counts = Counter(r.exercises[ex] for r in rows)
        mistakes = Counter(r.messages[ex] for r in rows if ex in r.messages)
        out.append({"exercise": ex, "label": label, "learners": len(rows), "pass": counts[PASS],
                    "fail": counts[FAIL], "todo": counts[TODO], "missing": counts[MISSING],
                    "mistakes": mistakes.most_common(top)})
    return out


def summary_table(grades, top: int = 3) -> str:
    """Markdown: the pass rate per exercise, then the most frequent ❌ messages per exercise."""
    summary = class_summary(grades, top)
    text = ["# " + _("Class summary"), "",
            _md([_("exercise"), _("passed"), _("pass rate"), _("fail"), _("todo"), _("missing")]), _md(["---"] * 6)]
    for s in summary:
        rate = f"{round(100 * s['pass'] / s['learners'])}%" if s["learners"] else "-"
        text.append(_md([s["label"], f"{s['pass']}/{s['learners']}", rate, s["fail"], s["todo"], s["missing"]]))
    text += ["", "## " + _("The most frequent mistakes"), ""]
    for s in summary:
        if s["mistakes"]:
            text.append(f"**{s['label']}**")
            text += [f"- {n} × {message[:200]}" for message, n in s["mistakes"]]
            text.append("")
    if not any(s["mistakes"] for s in summary):
        text.append(_("No ❌ in this class."))
    return "\n".join(text).rstrip() + "\n"


def summary_figure(grades, path: str | Path) -> Path | None:
    """A bar chart of the pass rate per exercise (stacked pass / fail / todo / missing), as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    summary = class_summary(grades)
    if not summary:
        return None
    figure = Figure(figsize=(7, 0.45 * len(summary) + 1.4), dpi=100, layout="constrained")
    ax = figure.subplots()
    labels = [s["exercise"] for s in summary][::-1] if get_language() != "en" else \
        [s["label"][:40] for s in summary][::-1]  # the figure's font may have no CJK glyphs
    left = [0.0] * len(summary)
    for key, colour in (("pass", "#2e7d32"), ("fail", "#c62828"), ("todo", "#f9a825"), ("missing", "#9e9e9e")):
        values = [s[key] / s["learners"] if s["learners"] else 0 for s in summary][::-1]
        ax.barh(labels, values, left=left, color=colour, label=key)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of learners")
    ax.set_title("Exercises: pass / fail / todo / missing")
    ax.legend(loc="lower right", fontsize=8)
    figure.savefig(path)
    return Path(path)


def write_report(grades, out: str | Path, skipped=(), language: str | None = None) -> tuple[Path, Path]:
    """Write ``out/grades.csv``, ``out/grades.md``, ``out/summary.md`` and ``out/summary.png``; return the first two.

    ``language`` (default: the one in use) is that of grades.md's and summary.md's headings and
    words; the details were written in the language of the grading (see :func:`grade`).
    """
    with speaking(language):
        return _write_report(grades, Path(out), skipped)


def _write_report(grades, out: Path, skipped) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grades.csv").write_text(csv_table(grades), encoding="utf-8")
    (out / "grades.md").write_text(markdown_table(grades, skipped), encoding="utf-8")
    (out / "summary.md").write_text(summary_table(grades), encoding="utf-8")
    summary_figure(grades, out / "summary.png")
    return out / "grades.csv", out / "grades.md"
