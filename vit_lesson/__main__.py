"""``python -m vit_lesson <command>``: the course's command line.

Each command lives beside the code it runs: a module listed in ``COMMAND_MODULES`` provides
``add_cli(subparsers)``, which adds its sub-commands with ``set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vit_lesson._optional import EXTRAS, missing_extra_message
from vit_lesson.i18n import _

COMMAND_MODULES = ("vit_lesson.cli", "vit_lesson.classroom", "vit_lesson.grading", "vit_lesson.translation")


def _argparse_gettext(message: str) -> str:
    """argparse's own words (``usage:``, ``options``, ``error:``, ...) in the language in use.

    argparse looks up its ``_`` each time it speaks, so :func:`build_parser` points it here. The
    messages below are argparse's msgids (Python 3.10-3.12); any other one stays as argparse says it.
    """
    translated = {
        "usage: ": _("usage: "),
        "positional arguments": _("positional arguments"),
        "options": _("options"),
        "show this help message and exit": _("show this help message and exit"),
        "%(prog)s: error: %(message)s\n": _("%(prog)s: error: %(message)s\n"),
        "argument %(argument_name)s: %(message)s": _("argument %(argument_name)s: %(message)s"),
        "invalid choice: %(value)r (choose from %(choices)s)": _("invalid choice: %(value)r (choose from %(choices)s)"),
        "invalid %(type)s value: %(value)r": _("invalid %(type)s value: %(value)r"),
        "the following arguments are required: %s": _("the following arguments are required: %s"),
        "unrecognized arguments: %s": _("unrecognized arguments: %s"),
        "expected one argument": _("expected one argument"),
        "ambiguous option: %(option)s could match %(matches)s":
            _("ambiguous option: %(option)s could match %(matches)s"),
        "ignored explicit argument %r": _("ignored explicit argument %r"),
        "not allowed with argument %s": _("not allowed with argument %s"),
    }
    return translated.get(message, message)


def build_parser() -> argparse.ArgumentParser:
    argparse._ = _argparse_gettext  # argparse's usage line, headings and errors speak the language in use
    parser = argparse.ArgumentParser(
        prog="python -m vit_lesson",
        description=_("A Vision Transformer course: train, evaluate, and run a classroom."),
    )
    subparsers = parser.add_subparsers(title=_("commands"), metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.add_cli(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except ModuleNotFoundError as error:  # an optional extra (nbformat for the teacher's tools, ...)
        if (error.name or "").partition(".")[0] not in EXTRAS:
            raise
        print(_("error: {message}").format(message=missing_extra_message(error.name)), file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
