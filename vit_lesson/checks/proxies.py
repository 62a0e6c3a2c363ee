"""The grader's stand-ins for a learner's objects, which live in the sandboxed kernel.

A learner's function (or class, or other callable) becomes a :class:`RemoteFunction`: calling it
runs it in the kernel. A learner's module becomes a :class:`RemoteModule` subclass named like
the learner's class: its parameters, buffers and children are local (torch's own layers as real
local copies), its ``forward`` and other methods run in the kernel with the current weights.
Both are built, and their calls sent, by :class:`vit_lesson.checks.remote.Bridge`; pickled to
the kernel, each stands for the object it proxies (:func:`vit_lesson.checks.agent._restore`).
:func:`package_answer` names an answer that is the course's own code.
"""

from __future__ import annotations

from torch import nn

from .agent import _restore, is_package_answer

__all__ = ["BridgeError", "RemoteError", "RemoteFunction", "RemoteModule", "package_answer", "TORCH_NN"]


class BridgeError(Exception):
    """The grader could not run the learner's code (the kernel died, timed out, or replied nonsense)."""


class RemoteError(Exception):
    """Base of the exceptions the learner's code raised in its kernel (named like the original)."""


def _torch_nn_classes() -> dict[str, type]:
    classes = {}
    for name in dir(nn):
        value = getattr(nn, name)
        if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__.startswith("torch.nn."):
            classes[f"{value.__module__}.{value.__qualname__}"] = value
    return classes


TORCH_NN = _torch_nn_classes()


class RemoteFunction:
    """A learner's function (or class, or other callable) in the kernel; calling it runs it there."""

    def __init__(self, bridge, info: dict):
        self._bridge, self._ref = bridge, info["ref"]
        self.__name__ = self.__qualname__ = info.get("name") or info.get("type") or "answer"
        self.__module__ = info.get("module") or "__main__"
        self.remote_type = info.get("type")
        self.is_class = bool(info.get("is_class"))

    def __call__(self, *args, **kwargs):
        return self._bridge.call(self._ref, None, args, kwargs)

    def __reduce__(self):
        return _restore, (self._ref,)

    def __repr__(self):
        return f"<the learner's {self.__qualname__} (in the sandbox)>"


class RemoteModule(nn.Module):
    """A local stand-in for a learner's module: its parameters, buffers and children are here (torch's
    own layers as real local copies); its ``forward`` (and its other methods) run in the kernel, which
    first receives the current parameters and train/eval flags."""

    _vl_bridge = None
    _vl_ref = None
    _vl_methods = ()

    def forward(self, *args, **kwargs):
        return self._vl_bridge.call(self._vl_ref, None, args, kwargs, module=self)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            methods = self.__dict__.get("_vl_methods", ())
            if name in methods:
                bridge, ref = self.__dict__["_vl_bridge"], self.__dict__["_vl_ref"]
                return lambda *args, **kwargs: bridge.call(ref, name, args, kwargs, module=self)
            raise

    def __reduce__(self):
        return _restore, (self._vl_ref,)


def package_answer(value) -> str | None:
    """``"vit_lesson.patches.patchify"`` if ``value`` (a decoded answer) is an object of the course package."""
    if isinstance(value, RemoteFunction) and is_package_answer(value.__module__):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, nn.Module) and value.__dict__.get("_vl_package"):
        return f"{type(value).__module__}.{type(value).__qualname__}"
    return None
