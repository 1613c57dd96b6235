"""The layers of docs/architecture.md, checked on the import graph of the production code.

Each top-level package sits on one layer; a module imports only from its own package or from
packages on lower layers (a lazy import inside a function counts too), and no two modules import
each other through any chain. Sizes: no package over 15% of the production lines, no module over
400 lines.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _layers() -> list[list[str]]:
    """The layer table of docs/architecture.md, bottom first: ``| n | `pkg/`, `pkg/` | … |``."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]+)\|", DOC.read_text(), flags=re.M)
    assert rows, "docs/architecture.md has no layer table"
    return [re.findall(r"`(\w+)/`", cell) for _, cell in sorted(rows, key=lambda row: int(row[0]))]


LAYERS = _layers()
LAYER_OF = {package: number for number, packages in enumerate(LAYERS) for package in packages}


def _production_modules() -> dict[str, Path]:
    modules = {}
    for package in LAYER_OF:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[dotted.removesuffix(".__init__")] = path
    return modules


MODULES = _production_modules()


def _imports(path: Path) -> set[str]:
    """The production modules ``path`` imports (a name imported from a package counts as its module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def test_every_package_of_the_service_is_on_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "docs"}
    assert packages == set(LAYER_OF), (
        "a package is missing from docs/architecture.md's layer table, or the table names one that is gone"
    )


def test_no_import_runs_up_a_layer():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if LAYER_OF[target.split(".")[0]] > LAYER_OF[module.split(".")[0]]
    )
    assert upward == []


def test_packages_of_one_layer_do_not_import_each_other():
    sideways = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.split(".")[0] != module.split(".")[0]
        and LAYER_OF[target.split(".")[0]] == LAYER_OF[module.split(".")[0]]
    )
    assert sideways == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_over_400_lines():
    assert sorted(f"{m} ({_lines(p)})" for m, p in MODULES.items() if _lines(p) > 400) == []


def test_no_package_over_15_percent_of_the_lines():
    per_package: dict[str, int] = defaultdict(int)
    for module, path in MODULES.items():
        per_package[module.split(".")[0]] += _lines(path)
    total = sum(per_package.values())
    assert sorted(f"{p} {n / total:.0%}" for p, n in per_package.items() if n > 0.15 * total) == []


@pytest.mark.parametrize("package", ["core"])
def test_the_bottom_layer_imports_no_app(package):
    """``core`` is the base every app builds on; Django and the libraries are all it may use."""
    assert (
        sorted({t for m, ts in GRAPH.items() if m.split(".")[0] == package for t in ts if not t.startswith(package)})
        == []
    )
