"""Per-stage figures of a run with [[load.stage]]: each stage owns whole per-second
intervals, and its percentiles come from its own merged histograms (read back from
the run's .hlog files), never from the whole run's."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from tcpstress import results
from tcpstress.load.schedule import Piecewise


@dataclass(frozen=True)
class StageSpan:
    """Where stage `index` sits in the measured phase: intervals [first, end)."""

    index: int
    rate: float
    lasts: float
    ramp: float
    first: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intervals"] = [d.pop("first"), d.pop("end")]
        return d


def spans(stages) -> list[StageSpan]:
    out, t = [], 0
    for k, st in enumerate(stages):
        n = int(round(st.lasts))
        out.append(StageSpan(index=k, rate=st.rate, lasts=st.lasts, ramp=st.ramp, first=t, end=t + n))
        t += n
    return out


def stage_hists(folder: Path, span: StageSpan) -> dict[str, HdrHistogram]:
    """The stage's histograms per metric, merged from the per-second .hlog lines."""
    hists = {}
    for metric in results.METRICS:
        path = Path(folder) / f"latency-{metric}.hlog"
        if not path.exists():
            continue
        merged = results.new_histogram()
        for start, _, h in results.read_hlog(path):
            if span.first <= int(round(start)) < span.end:
                results.add_histogram(merged, h)
        hists[metric] = merged
    return hists


def stage_summary(data: dict[str, Any], folder: Path, span: StageSpan, schedule: Piecewise,
                  warmup: float, share: float = 1.0) -> dict[str, Any]:
    intervals = [iv for iv in data.get("intervals", []) if span.first <= int(round(iv["t"])) < span.end]
    figures = results.interval_totals(intervals, stage_hists(folder, span))
    due = share * (schedule.cumulative(warmup + span.end) - schedule.cumulative(warmup + span.first))
    if intervals:
        # A stage cut short (an interrupted run) is judged on the seconds it had.
        measured = sum(iv["duration"] for iv in intervals)
        due *= min(1.0, measured / span.lasts) if span.lasts else 1.0
        figures["started"] = sum(iv.get("started", 0) for iv in intervals)
        figures["kept_up"] = results.kept_up(figures, due)
    return {**span.to_dict(), "intended_rate": span.rate * share, **figures}


def add_to_result(data: dict[str, Any], folder: Path, load, share: float = 1.0) -> None:
    """Record each stage's interval range and figures in a run's result data, and judge
    kept_up on the stages' schedule (the summary's own uses load.rate, the peak).
    `share`: the part of the schedule this folder ran (a shard's 1/N; 1 for a run or a merge)."""
    if not load.stage:
        return
    schedule = Piecewise.of_stages(load.stage, warmup=load.warmup)
    the_spans = spans(load.stage)
    data["stages"] = [s.to_dict() for s in the_spans]
    summary = data.setdefault("summary", {})
    summary["stages"] = [stage_summary(data, folder, s, schedule, load.warmup, share) for s in the_spans]
    duration = sum(iv["duration"] for iv in data.get("intervals", []))
    if duration and "requests" in summary:
        due = share * (schedule.cumulative(load.warmup + duration) - schedule.cumulative(load.warmup))
        summary["kept_up"] = results.kept_up(summary, due)
        # The mean scheduled rate: findings that compare it with what started stay right.
        summary["intended_rate"] = round(due / duration, 1)
