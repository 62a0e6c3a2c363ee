"""``python -m vit_lesson grade``: the command line of the grader (and of ``nbgrader-stamp``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..i18n import LANGUAGES, _, get_language, set_language
from .kernel import MAX_OUTPUT

__all__ = ["add_cli"]


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "grade", help=_("run learners' notebooks in sandboxes and tabulate which exercise checks passed"),
        description=_("Grade SUBMISSIONS/<learner>/<NN_name>.ipynb: run each notebook headless in its own sandbox "
                      "and write OUT/grades.csv, OUT/grades.md, OUT/summary.md, OUT/summary.png and OUT/executed/."))
    parser.add_argument("submissions", nargs="?", help=_("folder with one sub-folder of notebooks per learner"))
    parser.add_argument("--out", default="report", help=_("folder for the report (default: report)"))
    parser.add_argument("--timeout", type=float, default=300, help=_("seconds allowed per notebook, all cells "
                                                                      "together (default: 300)"))
    parser.add_argument("--solutions", default=None,
                        help=_("folder of solution notebooks, which say which exercises each notebook has "
                               "(default: notebooks, if it exists)"))
    parser.add_argument("--python", default=None, help=_("Python that runs the notebooks (default: this one)"))
    parser.add_argument("--jobs", type=int, default=1, help=_("notebooks to run at the same time (default: 1)"))
    parser.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "process"],
                        help=_("bwrap (bubblewrap namespaces), process (weaker: limits only), or auto: the "
                               "strongest available (default)"))
    parser.add_argument("--memory", type=float, default=4, help=_("GiB of memory per notebook (default: 4)"))
    parser.add_argument("--max-output", type=float, default=MAX_OUTPUT / (1 << 20),
                        help=_("MiB of outputs kept per notebook (default: {default})").format(
                            default=MAX_OUTPUT >> 20))
    parser.add_argument("--language", default=None, metavar="LANG",
                        help=_("language of the report, one of {languages} (default: the language in use, "
                               "which VIT_LESSON_LANG sets: {current}). It translates the details, the grader's "
                               "check messages, the headings and status words of grades.md and summary.md, "
                               "and the lines printed here; grades.csv keeps English column names and status "
                               "values (ok, pass, fail, ...) for scripts").format(
                            languages=", ".join(LANGUAGES), current=get_language()))
    parser.add_argument("--sandbox-info", action="store_true", help=_("say which sandbox this machine gives, and exit"))

    def run(args) -> int:
        before = get_language()
        try:
            set_language(args.language or before)  # the report, the details and the lines printed here
        except ValueError as error:
            parser.error(str(error))
        try:
            return _run(args)
        finally:
            set_language(before)

    def _run(args) -> int:
        from .batch import grade
        from .report import markdown_table
        from .sandbox import Limits, best_kind, describe

        if args.sandbox_info:
            print(describe())
            return 0
        if args.submissions is None:
            parser.error(_("the folder of submissions is required"))
        # nbclient leaves a pending task behind when a kernel dies; its GC-time log line is noise here
        logging.getLogger("asyncio").addFilter(
            lambda record: "Task was destroyed but it is pending" not in record.getMessage())
        if not Path(args.submissions).is_dir():
            parser.error(_("no submissions folder {folder!r}: expected {folder}/<learner>/<NN_name>.ipynb").format(
                folder=args.submissions))
        if args.solutions is not None and not Path(args.solutions).is_dir():
            parser.error(_("no solutions folder {folder!r}").format(folder=args.solutions))
        solutions = args.solutions or ("notebooks" if Path("notebooks").is_dir() else None)
        if solutions is None:
            print(_("warning: no solutions folder, so deleted check cells cannot be reported as missing"),
                  file=sys.stderr)
        kind, why = best_kind()
        if args.sandbox == "auto" and kind != "bwrap":
            print(_("warning: {why}; see `python -m vit_lesson grade --sandbox-info`").format(why=why), file=sys.stderr)
        limits = Limits(memory=int(args.memory * (1 << 30)))
        grades = grade(args.submissions, args.out, args.timeout, solutions, args.python, args.jobs,
                       sandbox=args.sandbox, limits=limits, max_output=int(args.max_output * (1 << 20)))
        print(markdown_table(grades, grade.skipped), end="")
        print("\n" + _("wrote {csv}, grades.md, summary.md, summary.png and {executed}/").format(
            csv=Path(args.out) / "grades.csv", executed=Path(args.out) / "executed"), file=sys.stderr)
        return 0

    parser.set_defaults(func=run)
    from ..nbgrader_stamp import add_cli as add_nbgrader_cli

    add_nbgrader_cli(subparsers)  # `python -m vit_lesson nbgrader-stamp`
