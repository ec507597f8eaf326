"""The package's structure: one direction of imports, public names only.

reftrace is built in layers, lowest first (docs/how-it-works.md draws them).
A module may import from its own layer or a lower one, never from a higher
one, also inside a function or under ``TYPE_CHECKING``; no chain of imports
comes back to where it started; and no module uses another module's private
names. Every public function, class and method has a docstring.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reftrace"

#: Each module's layer, lowest first. A new module must be placed here.
LAYERS: dict[str, list[str]] = {
    "facts": [
        "interpreter",
        "objects",
        "frames",
        "redact",
        "files",
        "units",
        "layout",
        "memory",
        "stats",
        "calls",
        "views",
    ],
    "model": ["model"],
    "engine": [
        "capture",
        "heap",
        "paths",
        "labels",
        "census",
        "bounds",
        "retention",
        "stores",
        "ledger",
    ],
    "results": ["report", "soak_report", "cluster"],
    "features": [
        "proof",
        "analysis",
        "watch",
        "locate",
        "verdict",
        "soak",
        "snapshot",
        "tools",
        "attach_agent",
        "attach",
        "dask",
    ],
    "presentation": [
        "renderers",
        "renderers.common",
        "renderers.text",
        "renderers.graph",
        "renderers.html",
        "renderers.soak",
        "renderers.snapshot",
        "renderers.cluster",
    ],
    "entry": ["", "__main__", "cli", "demo", "demo.__main__", "demo.agent"],
}
LEVEL = {
    ("reftrace." + name).rstrip("."): level
    for level, names in enumerate(LAYERS.values())
    for name in names
}
LAYER_NAMES = list(LAYERS)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


MODULES = package_modules()


def imports(name: str, tree: ast.Module) -> Iterator[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of
    reftrace's own modules, at any depth: in functions, under TYPE_CHECKING."""
    package = name if (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else ""
    package = package or name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "reftrace":
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "reftrace":
                continue
            for alias in node.names:
                # `from reftrace import views` imports the module reftrace.views
                if f"{target}.{alias.name}" in MODULES:
                    yield f"{target}.{alias.name}", None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(set(MODULES) - set(LEVEL))
    assert not unplaced, f"place these modules in a layer (LAYERS in {__file__}): {unplaced}"
    gone = sorted(set(LEVEL) - set(MODULES))
    assert not gone, f"LAYERS names modules that do not exist: {gone}"


def test_no_module_imports_from_a_higher_layer() -> None:
    wrong = []
    for name, tree in MODULES.items():
        for target, _, line in imports(name, tree):
            if LEVEL[target] > LEVEL[name]:
                wrong.append(
                    f"{name}:{line} ({LAYER_NAMES[LEVEL[name]]}) imports {target} "
                    f"({LAYER_NAMES[LEVEL[target]]})"
                )
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = {
        name: sorted({target for target, _, _ in imports(name, tree) if target != name})
        for name, tree in MODULES.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def private_definitions(tree: ast.Module) -> set[str]:
    """The single-underscore names a module defines: its globals, and the
    attributes and methods of its classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def uses_of_private_names(
    name: str, tree: ast.Module, defined: dict[str, set[str]]
) -> Iterator[str]:
    own = defined.get(name, set())
    elsewhere = set().union(*(names for other, names in defined.items() if other != name))
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for target, taken, line in imports(name, ast.Module(body=[node], type_ignores=[])):
                if taken is not None and taken.startswith("_") and target != name:
                    yield f"{name}:{line} imports {target}.{taken}"
                if taken is None:
                    for alias in node.names:
                        module_aliases[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reftrace") and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in module_aliases:
            yield f"{name}:{node.lineno} uses {module_aliases[value.id]}.{attr}"
        elif attr in elsewhere and attr not in own:
            yield f"{name}:{node.lineno} uses .{attr}, private to another module"


def test_no_module_uses_another_modules_private_names() -> None:
    trees = dict(MODULES)
    trees["_reftrace_pytestplugin"] = ast.parse(
        (ROOT / "_reftrace_pytestplugin.py").read_text(encoding="utf-8")
    )
    defined = {name: private_definitions(tree) for name, tree in trees.items()}
    wrong = [
        use for name, tree in trees.items() for use in uses_of_private_names(name, tree, defined)
    ]
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


def public_definitions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Module-level public functions and classes, and public methods of public classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_"):
                yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield node.name, node
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    overload = any(
                        isinstance(d, ast.Name) and d.id == "overload" for d in item.decorator_list
                    )
                    setter = any(
                        isinstance(d, ast.Attribute) and d.attr == "setter"
                        for d in item.decorator_list
                    )
                    if not item.name.startswith("_") and not overload and not setter:
                        yield f"{node.name}.{item.name}", item


def test_every_public_function_and_class_has_a_docstring() -> None:
    missing = [
        f"{name}.{what}"
        for name, tree in MODULES.items()
        for what, node in public_definitions(tree)
        if ast.get_docstring(node) is None  # type: ignore[arg-type]
    ]
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_the_layer_checks_catch_what_they_forbid() -> None:
    """The checks above find an upward import, a cycle and a private use."""
    tree = ast.parse(
        "def f():\n    from reftrace.renderers.text import render_report\n"
        "from reftrace.objects import _private\n"
        "import reftrace.objects as o\nx = o._hidden\n"
    )
    found = list(imports("reftrace.objects", tree))
    assert ("reftrace.renderers.text", "render_report", 2) in found
    assert LEVEL["reftrace.renderers.text"] > LEVEL["reftrace.objects"]
    uses = list(uses_of_private_names("reftrace.files", tree, {"reftrace.objects": {"_hidden"}}))
    assert any("reftrace.objects._private" in use for use in uses)
    assert any("reftrace.objects._hidden" in use for use in uses)
    assert sys.modules  # the module under test is only read, never imported here
