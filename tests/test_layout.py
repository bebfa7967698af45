"""The package's shape: no import cycle, no import from a higher layer, no long function,
and a layout page (book/layout.md) that names every module and nothing else.

The checks read the sources with ``ast`` (nothing is imported), so an import
inside a function counts as much as one at the top of a file. Each checker is
also fed a small synthetic package, so that each can be seen to fail.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from iqalib.layers import LAYERS, layer_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iqalib"
LAYOUT_PAGE = ROOT / "book" / "layout.md"
MAX_FUNCTION_LINES = 80


# ------------------------------------------------------------ the checkers
def modules_of(package: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module under ``package`` (``pkg/__init__.py`` is ``pkg``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported module of the package: first line}}``, imports inside functions included.

    ``from a.b import c`` names the module ``a.b.c`` when there is one, else ``a.b``.
    """
    modules = modules_of(package)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # import a.b.c of a module a.b: the module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every group of modules that import each other (directly or through others), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def cycle_through(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return paths[node] + [start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return group


def upward_imports(graph: dict[str, dict[str, int]], layer=layer_of) -> list[str]:
    """``"a (layer) imports b (higher layer), line n"`` for every import against the layer table;
    also every module outside the table, and every import of the bare package ``iqalib``."""
    root = min(graph, key=len)
    problems = []
    for module, edges in sorted(graph.items()):
        if module == root:
            continue  # the lazy public exports
        mine = layer(module)
        if mine is None:
            problems.append(f"{module} is in no layer of iqalib.layers.LAYERS")
            continue
        for target, line in sorted(edges.items()):
            if target == root:
                problems.append(f"{module} imports the bare package {root} (line {line}); import the module "
                                "that defines the name")
            elif (layer(target) or 0) > mine:
                problems.append(f"{module} (layer {mine}) imports {target} (layer {layer(target)}), line {line}")
    return problems


def long_functions(package: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str]]:
    """``(lines, "module:function")`` of every function over ``limit`` lines, longest first."""
    found = []
    for name, path in modules_of(package).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append((lines, f"{name}:{node.name} (line {node.lineno})"))
    return sorted(found, reverse=True)


def layout_entries(page: Path) -> set[str]:
    """The module names the layout page lists: every `` `iqalib...` `` in backquotes."""
    return set(re.findall(r"`(iqalib(?:\.\w+)*)`", page.read_text()))


# ------------------------------------------------------------ the real tree
def test_no_import_cycle():
    graph = import_graph(PACKAGE)
    groups = import_cycles(graph)
    assert not groups, "import cycles: " + "; ".join(
        f"{' -> '.join(cycle_through(graph, g))} (modules in this loop: {', '.join(g)})" for g in groups)


def test_no_import_from_a_higher_layer():
    problems = upward_imports(import_graph(PACKAGE))
    assert not problems, "\n".join(problems)


def test_no_function_longer_than_the_limit():
    found = long_functions(PACKAGE)
    assert not found, (f"{len(found)} function(s) over {MAX_FUNCTION_LINES} lines, the longest "
                       f"{found[0][1]} with {found[0][0]}: " + ", ".join(f"{w} ({n})" for n, w in found[1:]))


def test_layout_page_names_every_module_and_only_modules():
    modules = set(modules_of(PACKAGE))
    listed = layout_entries(LAYOUT_PAGE)
    assert sorted(modules - listed) == [], "modules missing from book/layout.md"
    assert sorted(listed - modules) == [], "book/layout.md names modules that do not exist"


def test_layout_page_shows_the_layer_table():
    text = LAYOUT_PAGE.read_text()
    for index, (title, prefixes) in enumerate(LAYERS):
        row = next((line for line in text.splitlines() if line.startswith(f"| {index} |")), "")
        assert title in row and all(f"`{p}`" in row for p in prefixes), f"layer {index} ({title}) row: {row!r}"


# ------------------------------------------------------------ each check can fail
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "iqalib"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_checker_reports_a_cycle_through_a_function_level_import(tmp_path):
    package = _package(tmp_path, {
        "engine/__init__.py": "",
        "engine/fit.py": "from iqalib.engine.card import card\n",
        "engine/card.py": "def card():\n    from iqalib.engine import fit\n",
        "engine/score.py": "from iqalib.engine.card import card\n",
    })
    graph = import_graph(package)
    assert import_cycles(graph) == [["iqalib.engine.card", "iqalib.engine.fit"]]
    assert cycle_through(graph, ["iqalib.engine.card", "iqalib.engine.fit"]) == [
        "iqalib.engine.card", "iqalib.engine.fit", "iqalib.engine.card"]


def test_checker_reports_an_upward_import_and_the_bare_package(tmp_path):
    package = _package(tmp_path, {
        "data/__init__.py": "",
        "data/table.py": "import os\n\ndef f():\n    from iqalib.engine.fit import x\n",
        "engine/__init__.py": "",
        "engine/fit.py": "from iqalib.data.table import f\nimport iqalib\n",
        "stray.py": "",
    })
    problems = upward_imports(import_graph(package))
    assert problems == [
        "iqalib.data.table (layer 1) imports iqalib.engine.fit (layer 3), line 4",
        "iqalib.engine.fit imports the bare package iqalib (line 2); import the module that defines the name",
        "iqalib.stray is in no layer of iqalib.layers.LAYERS",
    ]


def test_checker_reports_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))  # def line + 80 = 81 lines
    package = _package(tmp_path, {"metrics.py": "def short():\n    pass\n\n\ndef long():\n" + body})
    assert long_functions(package) == [(MAX_FUNCTION_LINES + 1, "iqalib.metrics:long (line 5)")]


def test_layout_page_check_sees_a_missing_and_a_stale_entry(tmp_path):
    page = tmp_path / "layout.md"
    page.write_text("- `iqalib.metrics`: scores\n- `iqalib.gone`: removed\n")
    package = _package(tmp_path, {"metrics.py": "", "paths.py": ""})
    modules, listed = set(modules_of(package)), layout_entries(page)
    assert modules - listed == {"iqalib", "iqalib.paths"} and listed - modules == {"iqalib.gone"}
