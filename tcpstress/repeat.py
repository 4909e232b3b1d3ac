"""`--repeat N`: the same run N times, so a verdict rests on repetitions, not one noisy run.

A repeat folder is a comparison folder (comparison.json, COMPARISON_FORMAT)
whose "groups" maps each run folder to the thing it repeats: `run --repeat 3`
writes repeat-1 .. repeat-3, all of group <name>; `compare --repeat 2` runs
the variants interleaved (a-1 b-1 a-2 b-2, so a drift of the machine hits
every variant alike) and groups a-1, a-2 as a. `tcpstress report` shows every
repetition; `tcpstress diff` pools each group's intervals.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tcpstress import results

MAX_REPEAT = 100


@dataclass(frozen=True)
class Spread:
    """min / median / max of one figure between repetitions."""

    figure: str
    unit: str
    low: float
    median: float
    high: float


def folder_name(group: str | None, index: int) -> str:
    return f"{group or 'repeat'}-{index + 1}"


def write_index(out: Path, scenario_name: str, groups: dict[str, str], lab: bool = False) -> None:
    """comparison.json of a repeat folder: its run folders in run order, each with its group."""
    index = {"format": results.COMPARISON_FORMAT, "scenario": scenario_name, "lab": lab,
             "variants": list(groups), "runs": {name: name for name in groups}, "groups": groups,
             "repeat": True}
    results.write_atomic(Path(out) / results.COMPARISON_FILE, json.dumps(index, indent=2) + "\n")


def groups_of(folder: Path) -> dict[str, str]:
    """A repeat folder's run folder -> the group it repeats ({} for any other folder)."""
    try:
        groups = json.loads((Path(folder) / results.COMPARISON_FILE).read_text()).get("groups")
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in groups.items()} if isinstance(groups, dict) else {}


def spread(runs: list[results.RunResult]) -> list[Spread]:
    """The spread of requests/s and p99 (total, and corrected when measured) over repetitions."""
    out = []

    def p99_ms(summary: dict, metric: str) -> float | None:
        entry = (summary.get("latency_us") or {}).get(metric) or {}
        return entry["p99"] / 1000.0 if entry.get("count") and entry.get("p99") is not None else None

    figures: list[tuple[str, str, Callable[[dict], Any]]] = [("requests/s", "", lambda s: s.get("requests_per_s"))]
    for metric in ("total", "corrected"):
        figures.append((f"{metric} p99", "ms", functools.partial(p99_ms, metric=metric)))
    for name, unit, get in figures:
        values = [v for v in (get(r.summary) for r in runs) if isinstance(v, (int, float))]
        if values:
            out.append(Spread(name, unit, min(values), statistics.median(values), max(values)))
    return out


def format_spread(label: str, runs: list[results.RunResult]) -> str:
    lines = [f"spread over {len(runs)} repetitions{f' of {label}' if label else ''}:",
             f"  {'':<36}{'min':>10} {'median':>10} {'max':>10}"]
    for s in spread(runs):
        fmt = (lambda v: f"{v:>10,.3f}") if s.unit == "ms" else (lambda v: f"{v:>10,.1f}")
        lines.append(f"  {s.figure + (f' ({s.unit})' if s.unit else ''):<36}{fmt(s.low)} {fmt(s.median)} {fmt(s.high)}")
    return "\n".join(lines)
