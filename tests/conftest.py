"""Shared test helpers: where things are, and the text a notebook printed."""

from __future__ import annotations

from pathlib import Path

from vit_lesson.grading import output_text  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
