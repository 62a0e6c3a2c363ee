"""The catalogue of exercise checks: every check a notebook calls exists, is tested, and behaves.

The per-mistake batteries live beside each lesson (tests/test_<topic>.py, written with the
notebook). This meta-test makes sure none is forgotten:

- every ``checks.check_xxx(`` call in a notebook names an exercise check of ``vit_lesson.checks``
  (or one of its mirrors, ``check_mirror`` / ``check_<what>_mirror``);
- every exercise check is called in its own notebook (exercise N.M in notebooks/NN_*.ipynb with
  NN == N), and exercise ids are unique (the grading table has one column per id);
- every exercise check is fed a wrong answer by some test: its name appears in a test file that
  looks at a failure (``FAIL`` / ``"fail"`` / ``❌`` / ``assert not result`` / ``check(wrong).message``);
- every exercise check, given the learner version's placeholder (a function raising
  ``NotImplementedError(hint)``), returns status ``todo`` with the hint in its line and does not
  raise; given a function that returns ``None``, it fails (never passes, never raises).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import nbformat
import pytest

from vit_lesson import checks
from vit_lesson.checks.core import FAIL, TODO

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\(")
FAIL_MARKERS = re.compile(  # a test that looks at a failure: FAIL, "fail", ❌, `assert not result`, `.message`
    r"\bFAIL\b|[\"']fail[\"']|❌|\bassert not (?:\w+\.)*\w*result\b|\bassert not checks\.check_|\)\.message\b")
MIRROR = re.compile(r"^check_(\w+_)?mirror$")  # check_mirror, check_loss_mirror: guard the course, raise on purpose
HINT = "Hint: the catalogue's placeholder hint."

EXERCISE_CHECKS = {name: getattr(checks, name) for name in sorted(dir(checks))
                   if name.startswith("check_") and hasattr(getattr(checks, name), "exercise_id")}


def notebook_calls() -> dict[str, set[str]]:
    """``{check name: {notebook names that call it}}``."""
    calls = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                for name in CHECK_CALL.findall(cell.source):
                    calls.setdefault(name, set()).add(path.name)
    return calls


def notebook_number(name: str) -> int:
    return int(name[:2])


def test_there_are_exercise_checks():
    assert EXERCISE_CHECKS, "vit_lesson.checks exports no exercise checks"


def test_every_check_a_notebook_calls_exists():
    calls = notebook_calls()
    unknown = {name: sorted(where) for name, where in calls.items() if not callable(getattr(checks, name, None))}
    assert not unknown, f"notebooks call checks that vit_lesson.checks does not define: {unknown}"
    neither = {name: sorted(where) for name, where in calls.items()
               if name not in EXERCISE_CHECKS and not MIRROR.match(name)}
    assert not neither, (f"{neither}: a check a notebook calls is either an exercise check (@exercise) or a "
                         "mirror (check_..._mirror)")


def test_exercise_ids_are_unique():
    by_id = {}
    for name, check in EXERCISE_CHECKS.items():
        by_id.setdefault(check.exercise_id, []).append(name)
    assert not {ex: names for ex, names in by_id.items() if len(names) > 1}, f"one id, several checks: {by_id}"


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_check_is_called_in_its_own_notebook(name):
    exercise_id = EXERCISE_CHECKS[name].exercise_id
    assert re.fullmatch(r"\d+\.\d+", exercise_id), f"{name}: exercise id {exercise_id!r} should look like 3.1"
    where = notebook_calls().get(name, set())
    assert where, f"{name} (exercise {exercise_id}) is not called in any notebook"
    number = int(exercise_id.split(".")[0])
    assert any(notebook_number(nb) == number for nb in where), (
        f"{name} is exercise {exercise_id}, so it belongs in notebook {number:02d}_*.ipynb, but it is called in "
        f"{sorted(where)}")


def test_files() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted((REPO / "tests").glob("test_*.py"))
            if path.name != Path(__file__).name}


test_files.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_check_is_fed_a_wrong_answer_by_some_test(name):
    mention = re.compile(rf"\b{re.escape(name)}\b")
    files = {path.name for path, text in test_files().items() if mention.search(text)}
    assert files, f"no test in tests/ mentions {name}: add a test feeding it each known wrong answer"
    testing_failures = {path.name for path, text in test_files().items()
                        if path.name in files and FAIL_MARKERS.search(text)}
    assert testing_failures, (f"{name} is mentioned in {sorted(files)}, but none of them asserts a failure "
                              "(status FAIL / 'fail' / ❌ / `assert not result`): feed it the mistakes it should name")


def placeholder_arguments(check) -> list:
    def placeholder(*args, **kwargs):
        raise NotImplementedError(f"Exercise not done yet: replace this line with your code. {HINT}")

    required = [p for p in inspect.signature(check).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return [placeholder] * max(1, len(required))


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_placeholder_is_todo_with_the_hint_and_never_raises(name, capsys):
    check = EXERCISE_CHECKS[name]
    try:
        result = check(*placeholder_arguments(check))
    except Exception as error:  # noqa: BLE001 - that is the failure this test reports
        pytest.fail(f"{name} raised {type(error).__name__}: {error} (a check must print a line, not raise)")
    printed = capsys.readouterr().out
    assert result.status == TODO, f"{name} with the NotImplementedError placeholder: {result.line}"
    assert HINT in result.line, f"{name} does not show the placeholder's hint: {result.line}"
    assert printed.strip() == result.line, f"{name} should print exactly its one line, printed {printed!r}"


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_an_answer_of_none_fails_without_raising(name):
    check = EXERCISE_CHECKS[name]
    arguments = [lambda *args, **kwargs: None] * len(placeholder_arguments(check))
    try:
        result = check(*arguments)
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"{name} raised {type(error).__name__}: {error} (a check must print a line, not raise)")
    assert result.status == FAIL, f"{name} given a function that returns None: {result.line}"
