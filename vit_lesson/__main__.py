"""``python -m vit_lesson <command>``: the course's command line.

Each command lives beside the code it runs: a module listed in ``COMMAND_MODULES`` provides
``add_cli(subparsers)``, which adds its sub-commands with ``set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("vit_lesson.train", "vit_lesson.classroom", "vit_lesson.grading")


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
    result = args.func(args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
