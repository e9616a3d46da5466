"""Layout rules of the intradp_ros package, checked statically (ast; no package module is imported).

- no module over MAX_MODULE_LINES physical lines, no class over MAX_CLASS_LINES lines;
- no import cycle among intradp_ros modules (module-level and function-level imports alike);
- no private name (``_name``) imported from another intradp_ros module.

Each failure lists every offender (path:line), so one run shows all that is left to fix.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "intradp_ros"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


# ------------------------------------------------------------------------------------------- the package, read

def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, pathlib.Path]:
    """Module name -> file, for every .py file under intradp_ros/."""
    files = sorted(p for p in (REPO / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts)
    return {_module_name(p): p for p in files}


SOURCES = _sources()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in SOURCES.items()}


def _where(module: str, line: int | None = None) -> str:
    path = SOURCES[module].relative_to(REPO)
    return f"{path}:{line}" if line else str(path)


def _package_of(module: str) -> str:
    """The package a module's relative imports start from (a package's own __init__ is in itself)."""
    return module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]


def _known(name: str) -> str | None:
    """The longest prefix of dotted ``name`` that is an intradp_ros module (None: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in SOURCES:
            return candidate
    return None


def _from_base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <base> import ...`` in ``module`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, int, str | None]]:
    """Every intradp_ros import of ``module``, at any depth: (target module, line, imported name or None).

    ``import a.b.c`` targets the longest known prefix; ``from pkg import name`` targets ``pkg.name`` when that
    is a module (the ``from pkg import module`` form), else ``pkg``.
    """
    found = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    found.append((target, node.lineno, None))
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, node)
            if base == "__future__":
                continue
            for alias in node.names:
                target = _known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in SOURCES else _known(base)
                if target:
                    found.append((target, node.lineno, alias.name))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the intradp_ros modules it imports (itself left out)."""
    return {m: {t for t, _, _ in imports(m) if t != m} for m in SOURCES}


# ------------------------------------------------------------------------------------------- cycles (pure)

def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path ``[a, b, ..., a]`` per strongly connected component with more than one node (or a self
    loop), in a deterministic order. Pure: ``graph`` maps a node to the nodes it points to."""
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def strongconnect(root: str) -> None:      # Tarjan, iterative (no recursion limit on big graphs)
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)

    for node in nodes:
        if node not in index:
            strongconnect(node)

    cycles = []
    for component in components:
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        # shortest path start -> ... -> start inside the component (BFS)
        parents, frontier, found = {}, [start], None
        while frontier and found is None:
            nxt = []
            for node in frontier:
                for child in sorted(graph.get(node, ())):
                    if child not in component:
                        continue
                    if child == start:
                        found = node
                        break
                    if child not in parents:
                        parents[child] = node
                        nxt.append(child)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        node = found
        while node != start:
            path.append(node)
            node = parents[node]
        path.append(start)
        cycles.append([start] + path[1:-1][::-1] + [start])
    return sorted(cycles)


def test_find_cycles_finds_a_synthetic_cycle():
    """The detector itself: a 3-cycle with a tail, a self loop, two cycles, and graphs without any."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"x": {"x"}, "y": set()}) == [["x", "x"]]
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}}) == [
        ["a", "b", "a"], ["c", "d", "e", "c"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({}) == []


def test_the_checks_see_the_package():
    """Not vacuous: the sources are found, and their imports are resolved (relative and `from pkg import mod`)."""
    assert f"{PACKAGE}.launcher" in SOURCES and len(SOURCES) > 20
    graph = import_graph()
    assert sum(len(targets) for targets in graph.values()) > 20
    assert f"{PACKAGE}.topology" in graph[f"{PACKAGE}.launching.arguments"]             # from a.b import name
    assert f"{PACKAGE}.models._init" in graph[f"{PACKAGE}.models.vgg"]                    # from ._init import name
    assert f"{PACKAGE}.tools.netem" in graph[f"{PACKAGE}.tools.bench"]                    # from pkg import module


# ------------------------------------------------------------------------------------------- the rules

def test_no_module_over_the_line_limit():
    too_long = []
    for module, path in SOURCES.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{_where(module)}: {n} lines")
    assert not too_long, (f"{len(too_long)} module(s) over {MAX_MODULE_LINES} lines (split them by concern):\n  "
                          + "\n  ".join(too_long))


def test_no_class_over_the_line_limit():
    too_long = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    too_long.append(f"{_where(module, node.lineno)}: class {node.name}, {n} lines")
    assert not too_long, (f"{len(too_long)} class(es) over {MAX_CLASS_LINES} lines:\n  " + "\n  ".join(too_long))


def test_no_import_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    lines = {}
    for module in SOURCES:
        for target, line, _ in imports(module):
            lines.setdefault((module, target), line)
    described = []
    for cycle in cycles:
        steps = [f"{a} ({_where(a, lines[(a, b)])}) -> {b}" for a, b in zip(cycle, cycle[1:])]
        described.append(" -> ".join(cycle) + "\n      " + "\n      ".join(steps))
    assert not cycles, (f"{len(cycles)} import cycle(s) among {PACKAGE} modules (function-level imports count):\n  "
                        + "\n  ".join(described))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_imported_across_modules():
    """``from <intradp_ros module> import _name`` is an offence; a package may still import its own private
    submodule (``from ._init import init_cnn``, ``from . import _init`` inside intradp_ros.models)."""
    offenders = []
    for module in SOURCES:
        for target, line, name in imports(module):
            if name is None or not _is_private(name):
                continue
            if target.rpartition(".") == (_package_of(module), ".", name):
                continue                       # a private submodule of the importer's own package
            offenders.append(f"{_where(module, line)}: {name} from {target}")
    assert not offenders, (f"{len(offenders)} private name(s) imported across modules (make them public, or move "
                           f"the code that needs them):\n  " + "\n  ".join(offenders))


@pytest.mark.parametrize("module", [f"{PACKAGE}.launcher", f"{PACKAGE}.tools.bench"])
def test_entry_points_still_have_main(module):
    """`python -m intradp_ros.launcher` and `python -m intradp_ros.tools.bench` keep their main()."""
    names = {n.name for n in TREES[module].body if isinstance(n, ast.FunctionDef)}
    assert "main" in names
    assert any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in TREES[module].body)
