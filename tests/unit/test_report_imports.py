"""The report package's modules import each other without a cycle.

A cycle (render <-> html, lag <-> rules_load) forces imports inside functions
and makes the order of the package's imports matter; the modules are
layered instead: rundata, stats, places and wording at the bottom, the
observations and their words, the rules, diagnose, then the pages.
Imports inside functions count too: they are a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tcpstress.report

PACKAGE = "tcpstress.report"
FOLDER = Path(tcpstress.report.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The package's modules that a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.update(a.name for a in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in FOLDER.glob("*.py") if p.stem != "__init__"}
    return {name: imports_of(path) & modules.keys() - {name} for name, path in modules.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])) is not None:
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [])) is not None:
            return found
    return None


def test_the_cycle_finder_finds_one():
    # The witness for the test below: a planted cycle is found.
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_report_package():
    edges = graph()
    assert {"render", "html", "markdown", "context"} <= edges.keys()
    assert "render" not in edges["html"] and "render" not in edges["markdown"]
    assert cycle(edges) is None, " -> ".join(cycle(edges) or [])
