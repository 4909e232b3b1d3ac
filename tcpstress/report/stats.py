"""Small statistics over a run's samples: the measured phase, its length, a median."""

from __future__ import annotations

from tcpstress.report.rundata import RunData


def run_duration(run: RunData) -> float:
    d = run.summary.get("duration_s")
    if isinstance(d, (int, float)) and d > 0:
        return float(d)
    return float(sum(iv.get("duration", 1.0) for iv in run.result.intervals)) or 1.0


def median_of(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def measured_values(ts: list[float], vs: list[float], duration: float) -> list[float]:
    """Values from the measured phase: warm-up and wind-down samples do not count."""
    picked = [v for t, v in zip(ts, vs) if 0 <= t <= duration]
    return picked or vs
