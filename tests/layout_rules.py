"""The shell's layout rules, checked over any tree (the repository, or a throwaway copy).

The import graph is read with :mod:`ast` (module-level and function-level imports alike);
imports under ``if __name__ == "__main__":`` are left out: that block runs only when the file
is the program, never when the module is imported, so it cannot close a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("milkprice", "milkprice_cli", "orchestration", "stack")
CLI = "milkprice_cli"
MAX_LINES = 400


def module_name(root: Path, path: Path) -> str:
    """``orchestration/flows/main_flow.py`` -> ``orchestration.flows.main_flow``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of :data:`PACKAGES` under ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _is_main_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    left = node.test.left
    return isinstance(left, ast.Name) and left.id == "__name__"


def _imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_main_block(node):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of :data:`PACKAGES` it imports (names that are not modules dropped)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = _imported(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    """``stack`` importing ``orchestration``, and anything but the CLI importing the CLI."""
    bad = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if _top(name) == "stack" and _top(target) == "orchestration":
                bad.append(f"{name} imports {target}: the stack starts processes instead")
            if _top(target) == CLI and _top(name) != CLI:
                bad.append(f"{name} imports {target}: nothing imports the CLI")
    return bad


def long_modules(root: Path, exempt: frozenset[str] = frozenset()) -> list[str]:
    """Modules over :data:`MAX_LINES` lines (paths relative to ``root``), but ``exempt``."""
    found = []
    for path in modules(root).values():
        relative = path.relative_to(root).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and relative not in exempt:
            found.append(f"{relative}: {lines} lines")
    return sorted(found)
