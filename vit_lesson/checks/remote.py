"""The grader's half of its bridge to a learner's sandboxed kernel: answers decoded, calls sent back.

The grader runs each check in its own process (:mod:`vit_lesson.grading.verdicts`). What the
check was given lives in the kernel; :class:`Bridge` turns the agent's plain-data description of
it (:mod:`vit_lesson.checks.agent`) into local values: tensors and containers as they are, a
learner's function as a :class:`~.proxies.RemoteFunction` and a learner's module as a
:class:`~.proxies.RemoteModule` (its parameters, buffers and children here, torch's own layers as
real local copies), whose calls go back to the kernel. Nothing from the sandbox is unpickled
(pickles go only *to* it); an answer that is a function, class or module of ``vit_lesson`` itself
is named by :func:`package_answer`.

The transport, ``request(dict) -> dict``, is the grader's (:mod:`vit_lesson.grading.session`):
``AGENT.respond(nonce, request)`` as a silent execute request, the reply read from the display
message with the agent's :data:`~.agent.MIME` and the nonce.
"""

from __future__ import annotations

import base64
import io
import math

import torch
from torch import nn

from ..i18n import _
from .agent import MAX_DEPTH, TENSOR_DTYPES, is_package_answer
from .proxies import TORCH_NN, BridgeError, RemoteError, RemoteFunction, RemoteModule

__all__ = ["Bridge"]


class Bridge:
    """Decode the agent's replies and send calls back: ``request(dict) -> dict`` is the transport."""

    def __init__(self, request, max_bytes: int = 256 * 1024 * 1024):
        self._request = request
        self._classes: dict[tuple, type] = {}
        self._mirrors: dict[int, nn.Module] = {}
        self._seed = 0
        self.max_bytes = max_bytes
        self._received = 0

    # decoding
    def decode(self, value, args=None, depth: int = 0):
        if depth > MAX_DEPTH + 2:
            raise BridgeError(_("the answer is nested too deeply"))
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, list):
            raise BridgeError("malformed reply")
        if not isinstance(value, dict):
            raise BridgeError(f"malformed reply ({type(value).__name__})")
        tag = value.get("$")
        if tag == "bigint":
            return int(str(value["v"])[:5000])
        if tag == "float":
            return float(value["v"])
        if tag == "numpy":
            inner = self.decode(value["v"], args, depth + 1)
            if not isinstance(inner, (int, float, bool, complex)):
                raise BridgeError("malformed numpy scalar")
            return inner
        if tag == "tensor":
            return self._tensor(value)
        if tag in ("tuple", "list"):
            items = [self.decode(v, args, depth + 1) for v in value["items"]]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            out = {}
            for k, v in value["items"]:
                k = self.decode(k, args, depth + 1)
                if not isinstance(k, (str, int, float, bool, type(None), tuple)):
                    raise BridgeError("malformed dict key")
                out[k] = self.decode(v, args, depth + 1)
            return out
        if tag == "param":
            return self._param(value, args)
        if tag == "module":
            return self._module(value, depth)
        if tag == "ref":
            return RemoteFunction(self, value)
        raise BridgeError(f"malformed reply (tag {tag!r})")

    def _tensor(self, value) -> torch.Tensor:
        dtype = TENSOR_DTYPES.get(value.get("dtype"))
        shape = value.get("shape")
        if dtype is None or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise BridgeError("malformed tensor")
        raw = base64.b64decode(value.get("data", ""), validate=True)
        self._received += len(raw)
        if self._received > self.max_bytes:
            raise BridgeError(f"the answers were larger than {self.max_bytes // (1 << 20)} MiB")
        numel = math.prod(shape)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise BridgeError("malformed tensor (size does not match its shape)")
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()

    def _param(self, value, args):
        owner, name = value.get("owner"), value.get("name")
        if not isinstance(owner, list) or len(owner) != 2 or not isinstance(name, str):
            raise BridgeError("malformed parameter reference")
        kind, key = owner
        if kind == "arg" and args is not None:
            positional, keyword = args
            module = positional[key] if isinstance(key, int) and 0 <= key < len(positional) else keyword.get(key)
        elif kind == "ref":
            module = self._mirrors.get(key)
        else:
            module = None
        params = dict(module.named_parameters()) if isinstance(module, nn.Module) else {}
        if name not in params:
            raise BridgeError("a parameter the grader does not know")
        return params[name]

    def _module(self, value, depth: int) -> nn.Module:
        qualname, module_name = str(value.get("cls")), str(value.get("module"))
        builtin = TORCH_NN.get(f"{module_name}.{qualname}")
        if builtin is not None:
            cls = builtin
        else:
            key = (module_name, qualname)
            if key not in self._classes:
                name = qualname.rsplit(".", 1)[-1] or "Module"
                if not name.isidentifier():
                    name = "LearnerModule"
                self._classes[key] = type(name, (RemoteModule,), {"__module__": module_name, "__qualname__": qualname})
            cls = self._classes[key]
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        attrs = self.decode(value.get("attrs", {"$": "dict", "items": []}), depth=depth + 1)
        for k, v in (attrs.items() if isinstance(attrs, dict) else ()):
            if isinstance(k, str) and k.isidentifier() and not k.startswith("_"):
                module.__dict__[k] = v
        module.training = bool(value.get("training", True))
        for store, cast in (("params", nn.Parameter), ("buffers", None)):
            for name, tensor in (value.get(store) or {}).items():
                if not isinstance(name, str) or not name or "." in name:
                    raise BridgeError("malformed module")
                t = None if tensor is None else self._tensor(tensor)
                if store == "params":
                    module._parameters[name] = None if t is None else nn.Parameter(
                        t, requires_grad=t.is_floating_point() or t.is_complex())
                else:
                    module._buffers[name] = t
        for name, child in (value.get("children") or {}).items():
            if not isinstance(name, str) or not name or "." in name:
                raise BridgeError("malformed module")
            module._modules[name] = None if child is None else self._module(child, depth + 1)
        if isinstance(module, RemoteModule):
            module.__dict__["_vl_bridge"] = self
            module.__dict__["_vl_ref"] = int(value["ref"])
            module.__dict__["_vl_methods"] = tuple(m for m in value.get("methods", []) if isinstance(m, str))
        module.__dict__["_vl_remote_ref"] = int(value["ref"])
        module.__dict__["_vl_package"] = is_package_answer(module_name)
        self._mirrors[int(value["ref"])] = module
        return module

    # calling
    def call(self, ref: int, method, args, kwargs, module: nn.Module | None = None):
        args, kwargs = tuple(args), dict(kwargs)
        states = {}
        roots = [module] if module is not None else []
        for value in [*args, *kwargs.values()]:
            if isinstance(value, nn.Module):
                roots.append(value)
        for root in roots:
            for sub in root.modules():
                if isinstance(sub, RemoteModule) and sub._vl_ref not in states:
                    flags = {name: m.training for name, m in sub.named_modules()}
                    states[sub._vl_ref] = ({k: v.detach() for k, v in sub.state_dict().items()}, flags)
        self._seed = (self._seed * 6364136223846793005 + 1442695040888963407
                      + int(torch.randint(0, 2 ** 31, ()))) % 2 ** 62
        buffer = io.BytesIO()
        torch.save({"args": args, "kwargs": kwargs, "states": states, "grad": torch.is_grad_enabled(),
                    "seed": self._seed}, buffer)
        reply = self._request({"op": "call", "target": ref, "method": method,
                               "payload": base64.b64encode(buffer.getvalue()).decode("ascii")})
        if not isinstance(reply, dict):
            raise BridgeError("malformed reply")
        if reply.get("internal"):
            raise BridgeError(f"the sandbox could not run the call: {reply['internal']}"[:500])
        if not reply.get("ok"):
            exc = reply.get("exc") or {}
            message = str(exc.get("message", ""))
            if exc.get("not_done"):
                raise NotImplementedError(message)
            name = str(exc.get("type", "Exception"))
            error = type(name if name.isidentifier() else "Exception", (RemoteError,), {})(message)
            error._vl_where = str(exc.get("where", ""))[:500]
            raise error
        value = self.decode(reply.get("value"), (args, kwargs))
        positional = dict(enumerate(args))
        for key, new in (reply.get("changed") or {}).items():
            target = positional.get(int(key)) if str(key).isdigit() else kwargs.get(key)
            self._apply(target, new)
        for ref_key, state in (reply.get("states") or {}).items():
            mirror = self._mirrors.get(int(ref_key))
            if mirror is not None:
                self._apply(mirror, state)
        return value

    def _apply(self, target, new) -> None:
        """Copy a change the learner's code made to an input back onto the grader's object."""
        with torch.no_grad():
            if isinstance(target, torch.Tensor) and isinstance(new, dict) and new.get("$") == "tensor":
                tensor = self._tensor(new)
                if tensor.shape == target.shape and tensor.dtype == target.dtype:
                    target.copy_(tensor)
                else:
                    target.set_(tensor.to(target.dtype) if tensor.dtype != target.dtype else tensor)
            elif isinstance(target, nn.Module) and isinstance(new, dict):
                state = target.state_dict(keep_vars=True)
                for name, value in new.items():
                    if name in state and isinstance(value, dict):
                        tensor = self._tensor(value)
                        if state[name].shape == tensor.shape:
                            state[name].copy_(tensor.to(state[name].dtype))
