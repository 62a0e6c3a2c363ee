"""The language the package speaks to a learner: English by default, Simplified Chinese on request.

One documented way to choose it: the environment variable ``VIT_LESSON_LANG`` (``zh-CN`` or
``en``), read when the package is imported, or a call to :func:`set_language`, which the first
code cell of every Chinese notebook makes. Messages go through the standard library's
:mod:`gettext`; the catalog is ``vit_lesson/locale/<lang>/LC_MESSAGES/vit_lesson.po`` (the
translators' file) compiled to ``vit_lesson.mo`` beside it by ``python -m vit_lesson translate
compile`` (a test keeps the two in step).

In the code, a message a learner reads is written ``_("... {name} ...").format(name=...)``:
the English text with named placeholders is the message id, so a translator sees the whole
sentence and may reorder it.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

__all__ = ["LANGUAGES", "DEFAULT", "LOCALE_DIR", "DOMAIN", "set_language", "get_language", "_", "ngettext"]

#: The languages the course speaks, by BCP 47 tag (what ``set_language`` and ``VIT_LESSON_LANG`` take).
LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "vit_lesson"
ENV = "VIT_LESSON_LANG"

_state = {"language": DEFAULT, "translation": gettext.NullTranslations()}


def _gettext_name(language: str) -> str:
    """``zh-CN`` -> ``zh_CN``: gettext's folder name for a BCP 47 tag."""
    return language.replace("-", "_")


def _normalise(language: str) -> str:
    wanted = str(language).strip().replace("_", "-").lower()
    for tag in LANGUAGES:
        if tag.lower() == wanted or tag.split("-")[0].lower() == wanted:
            return tag
    raise ValueError(f"Unknown language {language!r}; vit_lesson speaks {', '.join(LANGUAGES)} "
                     f"(set {ENV} or call vit_lesson.i18n.set_language with one of them).")


def set_language(language: str) -> str:
    """Speak ``language`` (``"zh-CN"`` or ``"en"``) from now on; returns the tag in use."""
    tag = _normalise(language)
    if tag == DEFAULT:
        translation = gettext.NullTranslations()
    else:
        translation = gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[_gettext_name(tag)],
                                          fallback=True)
    _state.update(language=tag, translation=translation)
    return tag


def get_language() -> str:
    """The tag of the language in use (``"en"`` unless chosen otherwise)."""
    return _state["language"]


def _(message: str) -> str:
    """``message`` in the language in use (itself in English, or when no translation exists)."""
    return _state["translation"].gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for ``n``, in the language in use."""
    return _state["translation"].ngettext(singular, plural, n)


if os.environ.get(ENV):
    try:
        set_language(os.environ[ENV])
    except ValueError as error:  # a typo in the variable must not stop the import
        print(f"vit_lesson: {error}")
