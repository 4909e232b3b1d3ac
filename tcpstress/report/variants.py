"""How one variant of a comparison differs from another: read-back knobs first, then scenario fields."""

from __future__ import annotations

from typing import Any

from tcpstress.report.rundata import RunData


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = tree
    return out


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} items" if value else "none"
    text = str(value).replace("\t", "–")
    return text if len(text) <= 30 else text[:27] + "..."


def variant_differences(run: RunData, other: RunData, limit: int = 3) -> list[str]:
    """How `other` differs from `run`: read-back knobs first, then scenario fields."""
    diffs = []
    mine = run.result.data.get("sysctls") or {}
    theirs = other.result.data.get("sysctls") or {}
    for side in sorted(set(mine) | set(theirs)):
        a, b = mine.get(side) or {}, theirs.get(side) or {}
        for knob in sorted(set(a) | set(b)):
            if a.get(knob) != b.get(knob) and b.get(knob) is not None:
                diffs.append(f"{knob}={_short(b[knob])}")
    flat_a, flat_b = _flatten(run.scenario), _flatten(other.scenario)
    for key in sorted(set(flat_a) | set(flat_b)):
        if "variant" in key or key.endswith("name") or key.endswith("description"):
            continue
        if flat_a.get(key) != flat_b.get(key) and key in flat_b:
            diffs.append(f"{key.rsplit('.', 1)[-1]}={_short(flat_b[key])}")
    seen: list[str] = []
    for d in diffs:
        if d not in seen:
            seen.append(d)
    return seen[:limit]


def describe_variant(run: RunData, other: RunData) -> str:
    diffs = variant_differences(run, other)
    return f"{other.label} ({', '.join(diffs)})" if diffs else other.label
