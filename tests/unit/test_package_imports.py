"""No two modules of tcpstress import each other at module level, directly or round a loop.

(Inside the report package even function-level imports are held to that:
test_report_imports.py.) A cycle at module level makes the import order
matter and breaks `python -m tcpstress.<module>` for some entry points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tcpstress

ROOT = Path(tcpstress.__file__).parent


def module_names() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """tcpstress modules imported by the module's own top-level statements (not under `if TYPE_CHECKING`)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tcpstress":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                out.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "tcpstress")
    return out & known


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_module_level_import_cycle_in_the_package():
    modules = module_names()
    edges = {name: top_level_imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert len(edges) > 60
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_check_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
