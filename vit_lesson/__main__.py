"""``python -m vit_lesson <command>``: the course's command line.

Each command lives beside the code it runs: a module listed in ``COMMAND_MODULES`` provides
``add_cli(subparsers)``, which adds its sub-commands with ``set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vit_lesson._optional import EXTRAS, missing_extra_message

COMMAND_MODULES = ("vit_lesson.train", "vit_lesson.classroom", "vit_lesson.grading", "vit_lesson.translation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vit_lesson",
        description="A Vision Transformer course: train, evaluate, and run a classroom.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
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
        print(f"error: {missing_extra_message(error.name)}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
