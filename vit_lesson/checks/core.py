"""Exercise checks: each one runs the learner's code on known inputs and explains what is wrong.

A check never raises. It returns a :class:`CheckResult`, the record of its verdict
(:mod:`vit_lesson.checks.records`), and prints it as one line:

- ``✅ Exercise 1.1 (patchify) passed: ...``
- ``⏳ Exercise 1.1 (patchify) is not done yet: ...`` (the learner's code raised ``NotImplementedError``)
- ``❌ Exercise 1.1 (patchify): expected shape [2, 4, 48], got [2, 48, 4] ...``

Inside ``with Recorder() as recorder:`` it prints nothing and the record goes to the recorder:
that is how the grader runs the checks in its own process and collects the verdicts it counts.
:data:`CHECKS` is the registry of every exercise check, by exercise id.

Checks test behaviour, not spelling: any correct implementation passes, and the common mistakes
are recognised by comparing against known-wrong variants ("looks like the patches were
flattened without the transpose").

The mirror checks (:func:`check_mirror`) are different: they *do* raise, because they guard the
course itself (notebook code and package code must not drift apart), not a learner's answer.
"""

from __future__ import annotations

import copy
import functools
import os
import traceback

import torch
from torch import nn

from ..i18n import _
from .records import FAIL, PASS, TODO, CheckResult, Recorder, active_recorder

__all__ = ["CheckResult", "CheckFailed", "Recorder", "call", "exercise", "hint", "expect_tensor", "expect_close",
           "same_weights", "check_mirror", "PASS", "FAIL", "TODO", "RESULTS", "HINTS", "CHECKS",
           "CHECK_HOOKS"]

#: Every result the checks printed in this Python process, in order: the learner's own record.
#: Nothing grades it (any code in the notebook can append to it); the grader collects its own
#: records with a :class:`Recorder`.
RESULTS: list = []

#: ``{exercise id: check}``: every exercise check, registered by :func:`exercise`.
CHECKS: dict = {}

#: ``{exercise id: (hint 1, hint 2, ...)}``, registered by :func:`exercise`. Hint 1 points at the
#: idea (it is the ``# Hint:`` comment of the exercise cell); each later one is more concrete, and
#: only the last may show code. :func:`hint` gives them one at a time.
HINTS: dict = {}
_HINTS_SHOWN: dict = {}

#: Called after every printed exercise check as ``hook(exercise_id, check_name, args, kwargs, result)``.
#: In a notebook the teacher grades, :mod:`vit_lesson.checks.agent` registers the hook that
#: hands the answers to the grader, which runs the check again in its own process.
CHECK_HOOKS: list = []


class CheckFailed(Exception):
    """Raised inside a check to report a specific mistake to the learner."""


class LearnerError(Exception):
    """The learner's code raised; carries a short, readable description."""


class NotDone(Exception):
    """The learner's code raised ``NotImplementedError`` (the placeholder is still there)."""


def call(fn, *args, **kwargs):
    """Call learner code, turning its exceptions into readable :class:`LearnerError` messages."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        raise NotDone(str(error) or _("replace the `raise NotImplementedError` with your code.")) from None
    except Exception as error:  # noqa: BLE001 - anything the learner's code does wrong
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if "vit_lesson" not in f.filename and "site-packages" not in f.filename]
        where = (_(" (in `{line}`, line {number} of your cell)").format(line=frames[-1].line, number=frames[-1].lineno)
                 if frames and frames[-1].line else "")
        where = getattr(error, "_vl_where", where)  # raised in the learner's sandboxed kernel (grading)
        raise LearnerError(_("your code raised {kind}: {error}{where}").format(
            kind=type(error).__name__, error=error, where=where)) from None


def exercise(exercise_id: str, title: str, hints=()):
    """Decorator for a check body. The body raises :class:`CheckFailed` or returns a pass message.

    ``hints`` are the exercise's graded hints, from the idea to (at most, in the last one) code.
    """
    if hints:
        HINTS[exercise_id] = (title, tuple(hints))

    def decorate(body):
        @functools.wraps(body)
        def check(*args, **kwargs) -> CheckResult:
            try:
                with torch.random.fork_rng():
                    torch.manual_seed(0)
                    status, message = PASS, body(*args, **kwargs) or _("correct.")
            except NotDone as error:
                status, message = TODO, f"{error}"
            except (CheckFailed, LearnerError) as error:
                status, message = FAIL, str(error)
            except Exception as error:  # noqa: BLE001 - a check must never crash the notebook
                status, message = FAIL, _("could not check your answer ({kind}: {error}).").format(
                    kind=type(error).__name__, error=error)
            result = CheckResult(exercise_id, title, status, message, check=body.__name__)
            recorder = active_recorder()
            if recorder is not None:  # the grader's own run: a record for it, nothing printed, no hooks
                recorder.add(result)
                return result
            RESULTS.append(result)
            print(result.line)
            for hook in list(CHECK_HOOKS):
                try:
                    hook(exercise_id, body.__name__, args, kwargs, result)
                except Exception:  # noqa: BLE001 - a hook never breaks the learner's notebook
                    pass
            if status != PASS and os.environ.get("VIT_LESSON_CHECKS_RAISE"):  # nbgrader's autograde scores by errors
                raise AssertionError(result.line)
            return result

        check.exercise_id = exercise_id
        check.title = title
        CHECKS[exercise_id] = check
        return check

    return decorate


def hint(exercise_id: str, level: int | None = None) -> None:
    """Print the next hint of an exercise (``checks.hint("1.1")``), one level more per call.

    Hint 1 is the idea, repeated from the exercise cell; later hints get more concrete, and only
    the last one may show code. ``level=`` shows a given level again. Never raises.
    """
    exercise_id = str(exercise_id).strip()
    if exercise_id not in HINTS:
        known = ", ".join(sorted(HINTS, key=lambda e: tuple(int(p) for p in e.split(".") if p.isdigit())))
        print(_("No hints for exercise {exercise!r}. Exercises with hints: {known}.").format(
            exercise=exercise_id, known=known))
        return
    title, hints = HINTS[exercise_id]
    if level is None:
        level = min(_HINTS_SHOWN.get(exercise_id, 1) + 1, len(hints))
    level = max(1, min(int(level), len(hints)))
    _HINTS_SHOWN[exercise_id] = max(level, _HINTS_SHOWN.get(exercise_id, 1))
    if level == len(hints):
        heading = _("Exercise {exercise} ({title}), hint {level} of {count} (the last one):")
    else:
        heading = _('Exercise {exercise} ({title}), hint {level} of {count}; call checks.hint("{exercise}") '
                    "again for the next:")
    heading = heading.format(exercise=exercise_id, title=_(title), level=level, count=len(hints))
    print(f"💡 {heading}\n{_(hints[level - 1])}")


# --- building blocks for checks ---------------------------------------------------------------

def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def expect_tensor(value, what: str, shape=None) -> torch.Tensor:
    """Fail unless ``value`` is a tensor (of ``shape``, if given)."""
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(_("{what} should be a torch.Tensor, got {kind}.").format(
            what=what, kind=type(value).__name__))
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailed(_("{what} should have shape {want}, got {got}.").format(
            what=what, want=fmt_shape(shape), got=fmt_shape(value.shape)))
    return value


def expect_close(got: torch.Tensor, want: torch.Tensor, what: str, wrong_variants=None,
                 atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail unless ``got`` matches ``want``; name the mistake if it matches a known-wrong variant.

    ``wrong_variants`` maps an explanation to the tensor that mistake would produce.
    """
    got = got.detach().float()
    for explanation, variant in (wrong_variants or {}).items():
        if variant is None or variant.shape != got.shape:
            continue
        if torch.allclose(got, variant.float(), atol=atol, rtol=rtol) \
                and not torch.allclose(variant.float(), want.float(), atol=atol, rtol=rtol):
            raise CheckFailed(explanation)
    if got.shape != want.shape:
        raise CheckFailed(_("{what} should have shape {want}, got {got}.").format(
            what=what, want=fmt_shape(want.shape), got=fmt_shape(got.shape)))
    bad = ~torch.isfinite(got) & torch.isfinite(want.float())
    if bad.any():
        index = [int(i) for i in torch.nonzero(bad)[0]]
        raise CheckFailed(_("{what} contains NaN or inf ({bad} of {total} numbers, the first at index {index}): look "
                            "for a division by zero, a log of zero or an uninitialised tensor.").format(
            what=what, bad=int(bad.sum()), total=got.numel(), index=index))
    if not torch.allclose(got, want.float(), atol=atol, rtol=rtol):
        diff = (got - want.float()).abs()
        index = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise CheckFailed(_("{what} has the right shape {shape} but wrong values: at index {index} expected "
                            "{want:.4f}, got {got:.4f} (largest difference {diff:.3g}).").format(
            what=what, shape=fmt_shape(got.shape), index=list(index), want=want.float()[index].item(),
            got=got[index].item(), diff=diff.max().item()))


def same_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Return a copy of ``target`` carrying ``source``'s weights (names must match)."""
    target = copy.deepcopy(target)
    target.load_state_dict(source.state_dict())
    return target


# --- the mirror: notebook code == package code ---------------------------------------------------

def check_mirror(notebook_module: nn.Module, package_module: nn.Module, *inputs, atol: float = 1e-6):
    """Prove a component built in a notebook and its copy in ``vit_lesson`` are the same.

    Copies the notebook module's weights into the package module (the parameter names must
    match), runs both on ``inputs`` in eval mode and raises ``AssertionError`` if they differ.
    """
    nb_keys, pkg_keys = set(notebook_module.state_dict()), set(package_module.state_dict())
    if nb_keys != pkg_keys:
        raise AssertionError(
            "The notebook's and the package's modules have different parameters: only in the "
            f"notebook {sorted(nb_keys - pkg_keys)}, only in vit_lesson {sorted(pkg_keys - nb_keys)}."
        )
    package_module.load_state_dict(notebook_module.state_dict())
    notebook_module.eval(), package_module.eval()
    with torch.no_grad():
        got, want = notebook_module(*inputs), package_module(*inputs)
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    diff = max((a - b).abs().max().item() for a, b in zip(got, want))
    name = f"{type(package_module).__module__}.{type(package_module).__name__}"
    if diff > atol or any(a.shape != b.shape for a, b in zip(got, want)):
        raise AssertionError(f"The notebook's {type(notebook_module).__name__} and {name} disagree: "
                             f"max abs difference {diff:.3g} > {atol}. Has one of them changed?")
    params = sum(p.numel() for p in package_module.parameters())
    print("✅ " + _("Mirror: {notebook} = {package} ({params} parameters).").format(
        notebook=type(notebook_module).__name__, package=name, params=f"{params:,}"))
