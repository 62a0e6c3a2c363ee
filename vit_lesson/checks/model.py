"""Exercise checks for the model notebook (see vit_lesson.checks.core for the framework)."""

from __future__ import annotations

from .core import CheckFailed, call, exercise, expect_close, expect_tensor  # noqa: F401

__all__: list[str] = []
