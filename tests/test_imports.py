"""The package's import graph: no circle, and the bottom layer imports nothing above it.

Every import counts, the ones inside functions and under `TYPE_CHECKING` too: an import put off
into a function still ties the two modules together, and a circle through one is what makes a
module impossible to read (or test) on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestration"

# Modules every other module may use, which use no module of the package above them.
BOTTOM = {
    "orchestration.errors": set(),
    "orchestration.loopback": set(),
    "orchestration.owner": set(),
    "orchestration.paths": set(),
    "orchestration.processes": {"orchestration.errors"},
    "orchestration.versions": {"orchestration.errors"},
    "orchestration.options": {"orchestration.errors"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported_by(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:  # `from orchestration import report` names a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imported_by(name, path) for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for used in sorted(graph[module]):
            if used not in index:
                visit(used)
                low[module] = min(low[module], low[used])
            elif used in stack:
                low[module] = min(low[module], index[used])
        if low[module] == index[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def _is_package_and_its_own_module(circle: list[str]) -> bool:
    """A package's __init__ naming its own modules (scenarios' registry) is not a circle of
    layers: its modules import the package for the protocol they implement."""
    top = min(circle, key=len)
    return all(module == top or module.startswith(top + ".") for module in circle)


def test_the_package_has_no_import_circle() -> None:
    circles = [c for c in _circles(GRAPH) if not _is_package_and_its_own_module(c)]
    assert circles == []


def test_the_circle_finder_finds_a_circle_through_an_import_inside_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _imported_by("orchestration.config", MODULES["orchestration.config"]) >= {
        "orchestration.errors"
    }


@pytest.mark.parametrize("module", sorted(BOTTOM))
def test_the_bottom_layer_imports_nothing_above_it(module: str) -> None:
    assert GRAPH[module] <= BOTTOM[module]


def test_the_configuration_imports_only_the_bottom_layer() -> None:
    """config.py is read by nearly every module: an import of it that runs back up (the option
    checks once resolved --plugin through plugins.py) makes the circle above. The plugin kinds'
    `PluginSource` is a type to it only (under TYPE_CHECKING)."""
    allowed = set(BOTTOM) | {"orchestration", "orchestration.kinds.base"}
    assert GRAPH["orchestration.config"] <= allowed
