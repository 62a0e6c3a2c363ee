"""The Chinese edition: generated from the English notebooks and gettext catalogs, never stale.

- every markdown cell of every English notebook has a translation that is neither missing nor
  stale (a changed English cell turns its entry *fuzzy*, which fails here until a translator
  looks at it);
- every ``notebooks/zh-CN/`` notebook is exactly what ``python -m vit_lesson translate build``
  makes from its English notebook (code cells identical but for the language line and the
  translated ``# Hint:`` comments), and is stored executed (nbval runs it like the English ones);
- the package's catalog translates every message, title and hint, and its ``.mo`` is compiled
  from its ``.po``;
- the language is chosen in one way, and the checks speak it.
"""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from conftest import NOTEBOOKS, ROOT

from vit_lesson import checks, i18n
from vit_lesson.translation import (
    build_notebook,
    catalog_problems,
    compile_package_catalog,
    notebook_messages,
    package_catalog,
    package_messages,
    update_catalog,
)

LANG = "zh-CN"
CATALOGS = ROOT / "translations" / LANG
EDITION = ROOT / "notebooks" / LANG
notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


@pytest.fixture
def chinese():
    i18n.set_language(LANG)
    yield
    i18n.set_language("en")


@notebooks
def test_every_cell_is_translated_and_none_is_stale(path):
    problems = catalog_problems(notebook_messages(path), CATALOGS / f"{path.stem}.po")
    assert not problems, "\n".join(problems)


@notebooks
def test_the_chinese_notebook_is_built_from_its_sources(path, tmp_path):
    built = nbformat.read(build_notebook(path, CATALOGS / f"{path.stem}.po", tmp_path / path.name, LANG), as_version=4)
    stored_path = EDITION / path.name
    assert stored_path.exists(), (f"{stored_path.relative_to(ROOT)} is missing: "
                                  "run `python -m vit_lesson translate build`")
    stored = nbformat.read(stored_path, as_version=4)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in built.cells], (
        f"{stored_path.relative_to(ROOT)} differs from what its English notebook and catalog give: run "
        "`python -m vit_lesson translate build`, then `make notebooks`")
    english = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    chinese = [c.source for c in stored.cells if c.cell_type == "code"]
    for en, zh in zip(english[1:], chinese[1:]):
        assert [line for line in en.splitlines() if "# Hint:" not in line] == \
               [line for line in zh.splitlines() if "# Hint:" not in line], "code cells must be the English ones"
    assert all(c.execution_count for c in stored.cells if c.cell_type == "code" and c.source.strip()), (
        f"{stored_path.name}: store it executed (`make notebooks`)")
    assert stored_path.stat().st_size < 1_000_000


def test_the_package_catalog_translates_every_message_and_is_compiled(tmp_path):
    problems = catalog_problems([m for m, _ in package_messages()], package_catalog(LANG))
    assert not problems, "\n".join(problems[:20])
    mo = package_catalog(LANG).with_suffix(".mo")
    stored = mo.read_bytes()
    assert compile_package_catalog(LANG).read_bytes() == stored, (
        "vit_lesson.mo is not compiled from vit_lesson.po: run `python -m vit_lesson translate compile`")


def test_a_changed_english_cell_turns_stale_and_a_new_one_is_missing(tmp_path):
    source = NOTEBOOKS[0]
    nb = nbformat.read(source, as_version=4)
    catalog = tmp_path / "00.po"
    update_catalog(source, catalog, LANG)
    import polib
    po = polib.pofile(str(catalog))
    for entry in po:
        entry.msgstr = "译文"
    po.save(str(catalog))
    assert catalog_problems(notebook_messages(source), catalog) == []
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    markdown[1].source += "\n\nOne more sentence."
    nb.cells.append(nbformat.v4.new_markdown_cell("A brand-new cell."))
    changed = tmp_path / source.name
    nbformat.write(nb, changed)
    update_catalog(changed, catalog, LANG)
    problems = catalog_problems(notebook_messages(changed), catalog)
    assert len(problems) == 2 and "stale" in problems[0] and "not translated" in problems[1], problems
    stale = next(e for e in polib.pofile(str(catalog)) if "fuzzy" in e.flags)
    assert stale.previous_msgid and stale.msgstr == "译文", (
        "a stale entry keeps its old translation and the old English")
    with pytest.raises(ValueError, match="cannot be built"):
        build_notebook(changed, catalog, tmp_path / "out.ipynb", LANG)


def test_checks_and_hints_speak_chinese(chinese, capsys):
    result = checks.check_num_patches(lambda size, patch: (size // patch) ** 2)
    assert result.status == "pass" and result.line.startswith("✅ 练习 0.1"), result.line
    checks.hint("0.1", level=1)
    out = capsys.readouterr().out
    assert "提示" in out


def test_the_language_is_chosen_by_one_variable():
    code = "from vit_lesson import checks; print(checks.check_num_patches(lambda s, p: (s // p) ** 2).line)"
    zh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"VIT_LESSON_LANG": LANG,
                        "PATH": "", "HOME": str(ROOT)}, cwd=ROOT)
    assert "练习 0.1" in zh.stdout, zh.stderr
    en = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env={"PATH": "", "HOME": str(ROOT)}, cwd=ROOT)
    assert "Exercise 0.1" in en.stdout, en.stderr
    with pytest.raises(ValueError, match="Unknown language 'fr'"):
        i18n.set_language("fr")


def test_chinese_learner_versions_speak_chinese(tmp_path):
    from vit_lesson.classroom import make_learner_notebook
    solution = EDITION / "01_patches.ipynb"
    learner = tmp_path / "01_patches.ipynb"
    assert make_learner_notebook(solution, learner) == 3
    placeholders = [line for cell in nbformat.read(learner, as_version=4).cells if cell.cell_type == "code"
                    for line in cell.source.splitlines() if "raise NotImplementedError" in line]
    assert len(placeholders) == 3
    for line in placeholders:
        assert "练习还没有完成" in line and "提示：" in line and "checks.hint(" in line, line
