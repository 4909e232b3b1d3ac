"""CPU over the measured phase: a role's median, and whether a process was CPU-bound.

Shared by the saturation rules and the lag causes (a late schedule blamed on
the generator needs the same test as the "generator saturated" finding).
"""

from __future__ import annotations

from tcpstress.report.observations import CpuUse
from tcpstress.report.rundata import RunData
from tcpstress.report.stats import measured_values, median_of, run_duration


def role_median(run: RunData, role: str) -> float | None:
    ts, vs = run.cpu(role)
    values = measured_values(ts, vs, run_duration(run))
    return median_of(values) if len(values) >= 3 else None


def saturation(run: RunData, role: str) -> CpuUse | None:
    """A role's CPU over the measured phase, or None without samples."""
    ts, vs = run.cpu(role)
    values = measured_values(ts, vs, run_duration(run))
    if len(values) < 3:
        return None
    return CpuUse(median_of(values), max(values), run.cores(role))


def is_busy(sat: CpuUse | None) -> bool:
    return sat is not None and sat.median >= 0.9 * 100 * sat.cores


def shard_saturations(run: RunData, role: str) -> list[tuple[str, CpuUse]]:
    """A merged run's (shard label, saturation) for each shard whose process of this role was sampled."""
    return [(label, sat) for label in run.shard_labels if (sat := saturation(run, f"{label}:{role}")) is not None]


def generator_busy(run: RunData) -> bool:
    """The generator, or in a merged run any shard's generator, was CPU-bound."""
    if run.shard_labels:
        return any(is_busy(sat) for _, sat in shard_saturations(run, "generator"))
    return is_busy(saturation(run, "generator"))
