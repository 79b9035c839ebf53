"""The layout the architecture promises (ARCHITECTURE.md, README "Layout"), read from the
source with ``ast``: no import cycles between modules, the hub and the edge never import
each other (both import ``wire``, the desk and the site share ``readers``), and no module
is longer than ~400 lines.

Every import counts, wherever it stands: at the top, inside a function, or under
``TYPE_CHECKING`` (a type a module needs is a module it depends on).
"""

from __future__ import annotations

import ast
from collections.abc import Container, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "edge", "hub", "readers", "testkit")
MAX_LINES = 400


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, is a package's ``__init__``), for every package present."""
    out: dict[str, tuple[Path, bool]] = {}
    for pkg in PACKAGES:
        base = ROOT / pkg
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            init = parts[-1] == "__init__"
            out[".".join(parts[:-1] if init else parts)] = (f, init)
    return out


def _imported_names(tree: ast.Module, module: str, is_init: bool, modules: Container[str]) -> Iterator[str]:
    """Every dotted name an import statement of the module refers to; for ``from X import
    y`` that is ``X.y`` when it is a module, else ``X`` (a name defined in ``X``)."""
    package = module if is_init else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def import_graph() -> dict[str, set[str]]:
    """Module → the project's modules it imports (the nearest enclosing module of each name)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (path, is_init) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps = {owner(name) for name in _imported_names(tree, module, is_init, modules)}
        graph[module] = {d for d in deps if d is not None and d != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _side(module: str) -> str:
    return module.partition(".")[0]


def test_the_graph_sees_relative_lazy_and_type_only_imports() -> None:
    graph = import_graph()
    assert "hub.config" in graph["hub.core.base"]  # from ..config import ... (relative, two levels up)
    assert "hub.service" in graph["hub.cli.main"]  # imported inside cmd_run
    assert "hub.core" in graph["hub.dashboard.app"]  # under TYPE_CHECKING


def test_a_cycle_is_found_and_named_whole() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_hub_and_the_edge_never_import_each_other() -> None:
    graph = import_graph()
    crossing = sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                      if {_side(m), _side(d)} == {"hub", "edge"})
    assert not crossing, "\n".join(crossing)


def test_no_module_is_longer_than_400_lines() -> None:
    long = sorted(f"{m}: {n} lines" for m, (path, _) in _modules().items()
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert not long, "modules over 400 lines:\n" + "\n".join(long)
