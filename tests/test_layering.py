"""The package's layering: no import cycle inside ``ispbench`` and no import from a higher layer.

Every ``import`` statement counts, function-local ones included (a cycle hidden inside a
function is still a cycle for a reader). A package ``__init__`` importing its own children (to
re-export them) is not an edge. The layers, bottom to top, are in :data:`LAYERS` and in
DEVELOPING.md ("Layers").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ispbench"

#: top-level part of a module name -> layer; a module may import its own layer or lower ones.
LAYERS: dict[str, int] = {
    # foundation: files, paths, seeds, provenance, statistics, paper numbers, result files
    "": 0, "atomic": 0, "paths": 0, "seeding": 0, "offline": 0, "provenance": 0, "stats": 0,
    "papers": 0, "results": 0, "parameters": 0,
    "ops": 1,
    "data": 2,
    "tasks": 3,
    "training": 4,
    "detection_baselines": 5, "finishing_baselines": 5,
    "methods": 6,
    "chapters": 7, "notebook": 7, "quickstart": 7,  # quickstart: one-call helpers over methods and tasks
    "labs": 7,  # the book's teaching labs: toy problems and check functions, beside the chapters
    # tools around the book: the command line, the notebook runner, the status report, benchmarks
    "runner": 8, "report": 8, "cli": 8, "__main__": 8, "book_check": 8, "book_mathjax": 8,
}
#: modules inside a lower package that are tools of the top layer (they drive, not implement)
TOOL_MODULES = {"ispbench.ops.bench": 8, "ispbench.data.generate": 8, "ispbench.data.prepare": 8}


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(package: Path) -> dict[str, Path]:
    return {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the ``ispbench`` modules it imports (``from pkg import name`` resolves to ``pkg.name``
    when that is a module, else to ``pkg``)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "ispbench")
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                if base.split(".")[0] != "ispbench":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        # a package re-exporting its own children is not a dependency
        if is_package:
            targets = {t for t in targets if not t.startswith(name + ".")}
        targets.discard(name)
        graph[name] = {t for t in targets if t in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_of(module: str) -> int:
    if module in TOOL_MODULES:
        return TOOL_MODULES[module]
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise KeyError(f"{module}: its package {top!r} has no layer in tests/test_layering.py::LAYERS; add it")
    return LAYERS[top]


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_import_goes_to_the_same_or_a_lower_layer():
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in import_graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("ispbench.methods.adaptiveisp.train") > layer_of("ispbench.ops.modules")
    with pytest.raises(KeyError, match="no layer"):
        layer_of("ispbench.unknown_package.x")


def test_function_local_and_relative_imports_are_counted(tmp_path):
    pkg = tmp_path / "ispbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")  # re-export: not an edge
    (pkg / "sub" / "a.py").write_text("def f():\n    from ispbench.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["ispbench.sub"] == set()
    assert graph["ispbench.sub.a"] == {"ispbench.sub.b"} and graph["ispbench.sub.b"] == {"ispbench.sub.a"}
    assert find_cycle(graph) == ["ispbench.sub.a", "ispbench.sub.b", "ispbench.sub.a"]


def _local_imports(tree: ast.AST) -> list[ast.stmt]:
    """Import statements inside a function body (module-level and class-level ones excluded)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or "." * node.level]


def test_package_imports_sit_at_module_top():
    """``ispbench`` imports inside functions hide the dependency structure (and cycles); third-party
    imports may stay local where they are heavy and optional (ultralytics after configure_ultralytics)."""
    local = []
    for path in _modules(PACKAGE).values():
        for node in _local_imports(ast.parse(path.read_text(), filename=str(path))):
            targets = _names(node)
            if any(t.startswith("ispbench") or t.startswith(".") for t in targets):
                local.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {', '.join(targets)}")
    assert not local, "function-local ispbench imports (move them to the module top):\n" + "\n".join(local)
