"""The package's layout (issue 16): no import cycles, components never reach up, short modules."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vit_lesson"

# The five model components, in the order the lessons build them: each may import only those before it.
COMPONENTS = ["patches", "embeddings", "attention", "block", "model"]
# What every module may use: the message catalogue and the optional-dependency helper.
BASE = {"i18n", "_optional"}
# Modules that run the course rather than build models: no model or data module may import them.
ABOVE = {"checks", "grading", "cli", "train", "checkpoint", "translation", "classroom", "nbgrader_stamp",
         "__main__", "factory", "pretrained", "registry"}
MAX_LINES = 260  # "about 250 lines at most"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (top level or inside functions)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y, from .. import y
                parts = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "vit_lesson":
                parts = node.module.split(".")[1:]
            else:
                continue
            module = ".".join(parts)
            for alias in node.names:  # `from . import checks` imports a module, `from .model import ViT` a name
                target = f"{module}.{alias.name}" if module else alias.name
                found.add(target if target in modules else module)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("vit_lesson.") for a in node.names if a.name.startswith("vit_lesson.")}
    return {target for target in found if target in modules and target != name}


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph):
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_even_through_imports_inside_functions(graph):
    assert _cycle(graph) is None, "import cycle: " + " -> ".join(_cycle(graph))


def test_components_import_only_the_components_before_them(graph):
    for i, name in enumerate(COMPONENTS):
        allowed = set(COMPONENTS[:i]) | BASE
        assert graph[name] <= allowed, f"{name} imports {sorted(graph[name] - allowed)}"


def test_models_and_data_never_reach_up_into_the_course_machinery(graph):
    for name, imported in graph.items():
        if name.split(".")[0] in ABOVE or name in ("", "diagram", "flops", "explorer"):
            continue
        reached = {target for target in imported if target.split(".")[0] in ABOVE}
        if name in ("distill", "hybrid", "convert", "hf", "cnn") or name in COMPONENTS:
            assert not reached, f"{name} reaches up into {sorted(reached)}"


def test_the_factory_sits_on_the_registry_and_the_weights(graph):
    assert graph["factory"] == {"registry", "pretrained"}
    assert "factory" not in graph["registry"] | graph["pretrained"] | graph["checkpoint"]
    assert "pretrained" not in graph["registry"] | graph["checkpoint"]


def test_every_module_reads_on_a_few_screens():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
