"""Optional dependencies, imported when first used, with one line naming the extra that installs them.

A plain ``pip install vit_lesson`` has what the model, training and the ``train``/``evaluate``
commands need. The teacher's tools (learner versions, stamping, grading) need nbformat and
nbclient, which come with ``pip install "vit_lesson[teacher]"``; the notebooks' extras (timm,
ipywidgets) come with ``pip install "vit_lesson[notebooks]"``. Modules that use them write

    nbformat = optional("nbformat")

instead of ``import nbformat``: the module itself then imports without it, and the first use says
which extra to install.
"""

from __future__ import annotations

import importlib
import types

# The import name of each optional module -> the extra of pyproject.toml that installs it
# (tests/test_packaging.py keeps this table in step with pyproject.toml).
EXTRAS = {
    "nbformat": "teacher",
    "nbclient": "teacher",
    "jupyter_client": "teacher",
    "ipykernel": "teacher",
    "timm": "notebooks",
    "ipywidgets": "notebooks",
    "polib": "translate",
}


class MissingExtra(ModuleNotFoundError):
    """An optional module is not installed; the message is one line naming the extra."""


def missing_extra_message(module: str) -> str:
    top = module.partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"{top} is not installed: pip install {top}"
    return f'{top} is not installed; it comes with the [{extra}] extra: pip install "vit_lesson[{extra}]"'


def require(module: str) -> types.ModuleType:
    """``import module``, or raise :class:`MissingExtra` with the install line for its extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] != module.partition(".")[0]:
            raise  # the module is there but something it imports is not: show the real error
        raise MissingExtra(missing_extra_message(module), name=error.name) from None


class optional(types.ModuleType):
    """A stand-in for an optional module: imports it on first attribute access (see :func:`require`)."""

    def __init__(self, module: str):
        super().__init__(module)
        self.__dict__["_optional_target"] = module

    def __getattr__(self, attribute):
        module = require(self.__dict__["_optional_target"])
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<optional module {self.__dict__['_optional_target']!r}>"
