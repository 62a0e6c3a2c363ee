"""The kernel's half of the grader's bridge: the answers a check is given, sent to the grader as plain data.

When the teacher grades (``python -m vit_lesson grade``), the learner's notebook runs in a
sandboxed kernel where :func:`start` registers :meth:`Agent.on_check` on
:data:`vit_lesson.checks.core.CHECK_HOOKS`. Each time a check cell runs, the agent encodes what
the check was given and :func:`send` s it to the grader at once, as a display message with
:data:`MIME` (the grader takes it out of the notebook's outputs). The grader then runs the same
check in its own process (:mod:`vit_lesson.checks.remote`, the other half) and asks the agent,
through :meth:`Agent.respond`, to call the learner's code on the grader's inputs.

The encoding is plain JSON data: numbers, strings, tensors as raw bytes with a dtype and a shape,
containers of those, for a module a description (class name, plain attributes, parameters,
children), and for any other object a reference number. Whatever the kernel sends is an
*answer*, never a verdict: a forged message can only claim that a check was called on some
object, which calling the check does anyway.
"""

from __future__ import annotations

import base64
import io
import json
import traceback

import torch
from torch import nn

from ..i18n import _

__all__ = ["AGENT", "Agent", "start", "send", "MIME", "is_package_answer"]

MIME = "application/vnd.vit-lesson.grader+json"
MAX_DEPTH = 12
MAX_ITEMS = 10_000
TENSOR_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128, torch.uint8,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}


def is_package_answer(module_name) -> bool:
    return isinstance(module_name, str) and (module_name == "vit_lesson" or module_name.startswith("vit_lesson."))


def _restore(ref: int):
    """Unpickled in the kernel: the kernel object a grader-side proxy stands for."""
    return AGENT.objects[ref]


def _plain(value, depth=0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)) and depth < 3 and len(value) < 64:
        return all(_plain(v, depth + 1) for v in value)
    return False


def _where(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if "vit_lesson" not in f.filename and "site-packages" not in f.filename]
    return f" (in `{frames[-1].line}`, line {frames[-1].lineno} of your cell)" if frames and frames[-1].line else ""


class Agent:
    """The kernel's half: the answers given to checks, and calls on them for the grader."""

    def __init__(self):
        self.objects: dict[int, object] = {}
        self._ids: dict[int, int] = {}
        self.param_owner: dict[int, tuple] = {}

    # encoding a kernel value as plain JSON data
    def remember(self, obj) -> int:
        key = id(obj)
        if key not in self._ids:
            ref = len(self.objects) + 1
            self.objects[ref], self._ids[key] = obj, ref
        return self._ids[key]

    def encode(self, obj, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ValueError(_("the answer is nested too deeply"))
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj if abs(obj) < 2 ** 53 else {"$": "bigint", "v": str(obj)}
        if isinstance(obj, float):
            return {"$": "float", "v": repr(obj)}
        if type(obj).__module__ == "numpy":
            import numpy as np

            if isinstance(obj, np.generic):
                return {"$": "numpy", "type": type(obj).__name__, "v": self.encode(obj.item(), depth + 1)}
            if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
                return {**self.encode(torch.from_numpy(np.ascontiguousarray(obj)), depth + 1), "numpy": True}
        if isinstance(obj, torch.Tensor):
            owner = self.param_owner.get(id(obj))
            if owner is not None:
                return {"$": "param", "owner": list(owner[:-1]), "name": owner[-1]}
            tensor = obj.detach().to("cpu").contiguous()
            if tensor.is_sparse or str(tensor.dtype).removeprefix("torch.") not in TENSOR_DTYPES:
                raise ValueError(_("a tensor of dtype {dtype} cannot be checked").format(dtype=tensor.dtype))
            raw = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
            return {"$": "tensor", "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape),
                    "data": base64.b64encode(raw).decode("ascii"), "grad": bool(obj.requires_grad)}
        if isinstance(obj, (tuple, list)):
            if len(obj) > MAX_ITEMS:
                raise ValueError(_("the answer has too many items"))
            return {"$": type(obj).__name__ if type(obj) in (tuple, list) else "tuple",
                    "items": [self.encode(v, depth + 1) for v in obj]}
        if isinstance(obj, dict):
            if len(obj) > MAX_ITEMS:
                raise ValueError(_("the answer has too many items"))
            return {"$": "dict",
                    "items": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in obj.items()]}
        if isinstance(obj, nn.Module):
            return self._encode_module(obj, depth)
        kind = obj if isinstance(obj, type) else type(obj)
        module = getattr(obj, "__module__", None) if callable(obj) else kind.__module__
        return {"$": "ref", "ref": self.remember(obj), "type": kind.__name__,
                "module": module if isinstance(module, str) else None,
                "name": str(getattr(obj, "__qualname__", getattr(obj, "__name__", type(obj).__name__)))[:200],
                "callable": callable(obj), "is_class": isinstance(obj, type)}

    def _encode_module(self, module: nn.Module, depth: int):
        ref = self.remember(module)
        for name, p in module.named_parameters(recurse=False):
            self.param_owner[id(p)] = ("ref", ref, name)
        kind = type(module)
        attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and _plain(v)}
        methods = sorted({name for klass in kind.__mro__ if klass not in nn.Module.__mro__
                          for name, value in vars(klass).items()
                          if not name.startswith("_") and callable(value) and name != "forward"})
        return {"$": "module", "ref": ref, "cls": kind.__qualname__, "module": kind.__module__,
                "training": bool(module.training), "attrs": self.encode(attrs, depth + 1),
                "params": {n: (None if p is None else self._tensor(p)) for n, p in module._parameters.items()},
                "buffers": {n: (None if b is None else self._tensor(b)) for n, b in module._buffers.items()},
                "children": {n: (None if c is None else self._encode_module(c, depth + 1))
                             for n, c in module._modules.items()},
                "methods": methods}

    def _tensor(self, tensor):
        saved, self.param_owner = self.param_owner, {}
        try:
            return self.encode(tensor)
        finally:
            self.param_owner = saved

    # what a check was given: sent to the grader at once (a CHECK_HOOKS hook)
    def on_check(self, exercise_id, check_name, args, kwargs, result) -> None:
        entry = {"exercise": str(exercise_id), "check": str(check_name)}
        try:
            entry["args"] = [self.encode(a) for a in args]
            entry["kwargs"] = {str(k): self.encode(v) for k, v in kwargs.items()}
        except Exception as error:  # noqa: BLE001 - reported to the grader, who fails the answer
            entry["error"] = f"{type(error).__name__}: {error}"
        send({"entry": entry})

    # one request from the grader
    def respond(self, nonce: str, request: str) -> None:
        try:
            reply = self._handle(json.loads(request))
        except BaseException as error:  # noqa: BLE001 - the grader must always get a reply
            reply = {"ok": False, "internal": f"{type(error).__name__}: {error}"}
        send({"nonce": nonce, "reply": reply})

    def _handle(self, request: dict) -> dict:
        if request["op"] != "call":
            raise ValueError(f"unknown op {request['op']!r}")
        payload = torch.load(io.BytesIO(base64.b64decode(request["payload"])), weights_only=False)
        for ref, (state, flags) in payload["states"].items():
            target = self.objects[ref]
            with torch.no_grad():
                target.load_state_dict(state, strict=False)
            for name, sub in target.named_modules():
                if name in flags:
                    sub.training = flags[name]
        target = self.objects[request["target"]]
        if request.get("method"):
            target = getattr(target, request["method"])
        args, kwargs = payload["args"], payload["kwargs"]
        before = {}
        self.param_owner = {}
        for key, value in [*enumerate(args), *kwargs.items()]:
            if isinstance(value, torch.Tensor):
                before[key] = value.detach().clone()
            elif isinstance(value, nn.Module):
                before[key] = {k: v.detach().clone() for k, v in value.state_dict().items()}
                for name, p in value.named_parameters():
                    self.param_owner[id(p)] = ("arg", key if isinstance(key, int) else str(key), name)
        try:
            with torch.random.fork_rng(), torch.set_grad_enabled(bool(payload["grad"])):
                torch.manual_seed(payload["seed"])
                result = target(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - the learner's code raised; the check reports it
            self.param_owner = {}
            return {"ok": False, "exc": {"type": type(error).__name__, "message": str(error)[:2000],
                                         "where": _where(error),
                                         "not_done": isinstance(error, NotImplementedError)}}
        try:
            value = self.encode(result)
        finally:
            self.param_owner = {}
        changed = {}
        for key, old in before.items():
            new = args[key] if isinstance(key, int) else kwargs[key]
            if isinstance(old, torch.Tensor):
                if old.shape != new.shape or not torch.equal(old, new.detach()):
                    changed[str(key)] = self._tensor(new)
            else:
                state = new.state_dict()
                diff = {k: self._tensor(v) for k, v in state.items()
                        if k not in old or old[k].shape != v.shape or not torch.equal(old[k], v.detach())}
                if diff:
                    changed[str(key)] = diff
        states = {str(ref): {k: self._tensor(v) for k, v in self.objects[int(ref)].state_dict().items()}
                  for ref in payload["states"]}
        return {"ok": True, "value": value, "changed": changed, "states": states}


AGENT = Agent()


def send(payload: dict) -> None:
    """Publish ``payload`` to the grader: a display message with :data:`MIME`, on the current request.

    Sent on the kernel's IOPub socket directly, so output capture in the notebook (``%%capture``,
    a display hook) does not swallow it. The grader takes it out of the notebook's outputs.
    """
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    content = {"data": {MIME: payload}, "metadata": {}, "transient": {}}
    if kernel is None or not hasattr(kernel, "iopub_socket"):  # not in a Jupyter kernel
        from IPython.display import publish_display_data

        publish_display_data(content["data"])
        return
    kernel.session.send(kernel.iopub_socket, "display_data", content, parent=kernel.get_parent(),
                        ident=b"display_data")


def start() -> None:
    """In the learner's kernel: send the grader what every check is given."""
    from . import core

    if AGENT.on_check not in core.CHECK_HOOKS:
        core.CHECK_HOOKS.append(AGENT.on_check)
