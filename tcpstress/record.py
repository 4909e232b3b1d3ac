"""The run record: one typed shape for a second of load, a run's summary and result.json.

Three producers used to build the per-second interval as a dict of their
own (the worker's message, the runner's merger, the shard merge) and they
drifted apart. Each of them now builds an `Interval`, sums two of them with
`Interval.merge`, and writes it with `Interval.to_json`; the report reads
the same class back with `from_json`.

An interval travels in two forms of one JSON object:

- on the wire (worker -> runner), with its latency histograms encoded
  ("h", HdrHistogram base64) and its [[request]] entries ("by_name"),
  because the runner must add histograms, not percentiles;
- in result.json, without histograms (those go to the .hlog files) but with
  the percentiles of its total and corrected latency.

`RunRecord` is what result.json holds (format "tcpstress-result/1", layout in
results.py). Fields a runner of another version added or left out are kept as
read: `to_json(from_json(x)) == x` for every result.json this tool wrote.

Pure: no trio, click or matplotlib.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence, TypeVar, cast

from hdrh.histogram import HdrHistogram

from tcpstress import results
from tcpstress.scenario import (
    Connection,
    Fault,
    Load,
    RequestSpec,
    Sampling,
    Scenario,
    Server,
    Stage,
    Target,
    Tls,
    Variant,
)

Metric = Literal["total", "connect", "ttfb", "corrected", "tls", "error"]
METRICS: tuple[Metric, ...] = ("total", "connect", "ttfb", "corrected", "tls", "error")
Json = dict[str, Any]


class RecordError(ValueError):
    """A JSON object that is not an interval, a summary or a run record; str() names the field."""


def _counts(value: Any, where: str) -> Counter[str]:
    if value is None:
        return Counter()
    if not isinstance(value, Mapping):
        raise RecordError(f"{where} must be an object of name: count, not {value!r}")
    try:
        return Counter({str(k): int(v) for k, v in value.items()})
    except (TypeError, ValueError):
        raise RecordError(f"{where} must be an object of name: count, not {value!r}") from None


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"{where} must be a whole number, not {value!r}")
    return int(value)


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"{where} must be a number, not {value!r}")
    return float(value)


def _copy(hist: HdrHistogram) -> HdrHistogram:
    out = results.new_histogram()
    results.add_histogram(out, hist)
    return out


def _interval_pct(hist: HdrHistogram) -> dict[str, float]:
    pct: Mapping[str, float] = results.interval_percentiles(hist)
    return dict(pct)


def _hist_equal(a: Mapping[str, HdrHistogram], b: Mapping[str, HdrHistogram]) -> bool:
    """Histograms compare by their counts (HdrHistogram has no __eq__); empty equals absent."""
    keys = {k for k, h in a.items() if h.get_total_count()} | {k for k, h in b.items() if h.get_total_count()}
    return all(k in a and k in b and list(a[k].counts) == list(b[k].counts) for k in keys)


# --- one [[request]] entry's share of an interval -----------------------------------


@dataclass(eq=False)
class NamedCounts:
    """One [[request]] entry's share of an interval (or of a run): counts and its latency."""

    requests: int = 0
    errors: int = 0
    latency: HdrHistogram | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NamedCounts):
            return NotImplemented
        mine = {"h": self.latency} if self.latency else {}
        theirs = {"h": other.latency} if other.latency else {}
        return (self.requests, self.errors) == (other.requests, other.errors) and _hist_equal(mine, theirs)

    def absorb(self, other: NamedCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        if other.latency is not None and other.latency.get_total_count():
            if self.latency is None:
                self.latency = results.new_histogram()
            results.add_histogram(self.latency, other.latency)

    def to_json(self) -> Json:
        out: Json = {"requests": self.requests, "errors": self.errors}
        if self.latency is not None and self.latency.get_total_count():
            out["h"] = results.encode(self.latency)
        return out

    @classmethod
    def from_json(cls, d: Any, where: str) -> NamedCounts:
        if not isinstance(d, Mapping):
            raise RecordError(f"{where} must be an object")
        h = d.get("h")
        return cls(requests=_int(d.get("requests", 0), f"{where}.requests"),
                   errors=_int(d.get("errors", 0), f"{where}.errors"),
                   latency=results.decode(h) if isinstance(h, str) and h else None)


# --- one second ----------------------------------------------------------------------


@dataclass(eq=False)
class Interval:
    """One second of the measured phase (the last one may be shorter).

    `t` is seconds since the start of the measured phase (the interval's
    index); `duration` its real length. `started` is None only in folders
    written before runners counted open-model starts. `hists` holds the
    latency histograms while the interval is being merged; once written to
    result.json only the percentiles (`latency_us`, `corrected_latency_us`)
    remain. `partial` is how far a worker that was cut short got into the
    second; `complete` that at least one worker ran it to its end.
    """

    t: float = 0.0
    duration: float = 1.0
    requests: int = 0
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started: int | None = 0
    late_starts: int = 0
    max_lag_us: int = 0
    status: Counter[str] = field(default_factory=Counter)  # every HTTP response, success or not
    anomalies: Counter[str] = field(default_factory=Counter)  # not failed requests
    tls_handshakes: int = 0
    tls_resumed: int = 0
    hists: dict[str, HdrHistogram] = field(default_factory=dict)
    latency_us: dict[str, float] | None = None
    corrected_latency_us: dict[str, float] | None = None
    by_name: dict[str, NamedCounts] = field(default_factory=dict)
    partial: float | None = None
    complete: bool = False

    @property
    def index(self) -> int:
        return int(round(self.t))

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def hist(self, metric: str) -> HdrHistogram:
        """The interval's histogram of one metric; an empty one when nothing was recorded."""
        h = self.hists.get(metric)
        return h if h is not None else results.new_histogram()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interval):
            return NotImplemented
        plain = [f.name for f in dataclasses.fields(self) if f.name != "hists"]
        return (all(getattr(self, n) == getattr(other, n) for n in plain)
                and _hist_equal(self.hists, other.hists))

    # -- summing

    def absorb(self, other: Interval) -> None:
        """self += other, in place; takes other's histograms where self has none (other is spent).

        The runner's merger adds every worker's message into one interval a
        second: copying six histograms per message would double its cost.
        """
        self.duration = max(self.duration, other.duration)
        self.requests += other.requests
        self.connections += other.connections
        self.errors.update(other.errors)
        if self.started is None or other.started is None:
            self.started = self.started if other.started is None else other.started
        else:
            self.started += other.started
        self.late_starts += other.late_starts
        self.max_lag_us = max(self.max_lag_us, other.max_lag_us)
        self.status.update(other.status)
        self.anomalies.update(other.anomalies)
        self.tls_handshakes += other.tls_handshakes
        self.tls_resumed += other.tls_resumed
        for metric, h in other.hists.items():
            mine = self.hists.get(metric)
            if mine is None:
                self.hists[metric] = h
            else:
                results.add_histogram(mine, h)
        for name, named in other.by_name.items():
            self.by_name.setdefault(name, NamedCounts()).absorb(named)
        if other.partial is not None:
            self.partial = max(self.partial or 0.0, other.partial)
        self.complete = self.complete or other.complete
        if other.hists or self.hists:
            # Percentiles of a sum come from the summed histogram, never from the parts'.
            self.latency_us = self.corrected_latency_us = None

    def copy(self) -> Interval:
        return dataclasses.replace(
            self, errors=Counter(self.errors), status=Counter(self.status), anomalies=Counter(self.anomalies),
            hists={m: _copy(h) for m, h in self.hists.items()},
            latency_us=dict(self.latency_us) if self.latency_us is not None else None,
            corrected_latency_us=dict(self.corrected_latency_us) if self.corrected_latency_us is not None else None,
            by_name={n: NamedCounts(c.requests, c.errors, _copy(c.latency) if c.latency else None)
                     for n, c in self.by_name.items()})

    def merge(self, other: Interval) -> Interval:
        """The sum of two intervals of the same second: counts added, the longest length and lag,
        histograms added bucket by bucket (exact). Neither input changes."""
        out = self.copy()
        out.absorb(other.copy())
        return out

    def settle(self) -> Interval:
        """The result.json form: percentiles computed from the histograms, which are dropped.

        The runner keeps one such record a second, not the histograms (~180 KB each
        at this range and precision; they go to the .hlog files as each second closes).
        """
        if self.latency_us is None:
            self.latency_us = _interval_pct(self.hist("total"))
        corrected = self.hists.get("corrected")
        if self.corrected_latency_us is None and corrected is not None and corrected.get_total_count():
            self.corrected_latency_us = _interval_pct(corrected)
        return dataclasses.replace(self, hists={}, by_name={}, partial=None, complete=True)

    # -- JSON

    def to_json(self, wire: bool = False) -> Json:
        """result.json's interval object; `wire`: the worker's message form, with encoded
        histograms, [[request]] entries and the partial mark, and no percentiles."""
        out: Json = {"t": self.t, "duration": self.duration, "requests": self.requests,
                     "connections": self.connections, "errors": dict(self.errors)}
        if self.started is not None:
            out["started"] = self.started
        out["late_starts"] = self.late_starts
        out["max_lag_us"] = self.max_lag_us
        latency = self.latency_us
        if latency is None and not wire:
            latency = _interval_pct(self.hist("total"))
        if latency is not None:
            out["latency_us"] = latency
        if self.status:
            out["status"] = dict(sorted(self.status.items()))
        if self.anomalies:
            out["anomalies"] = dict(sorted(self.anomalies.items()))
        if self.tls_handshakes or self.tls_resumed:
            out["tls"] = {"handshakes": self.tls_handshakes, "resumed": self.tls_resumed}
        corrected = self.corrected_latency_us
        if corrected is None and not wire and self.hist("corrected").get_total_count():
            corrected = _interval_pct(self.hists["corrected"])
        if corrected is not None:
            out["corrected_latency_us"] = corrected
        if wire:
            out["h"] = {m: results.encode(h) for m, h in self.hists.items() if h.get_total_count()}
            if self.by_name:
                out["by_name"] = {name: c.to_json() for name, c in self.by_name.items()}
            if self.partial is not None:
                out["partial"] = self.partial
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = "interval") -> Interval:
        """Either form; a wire message without "partial" is a second its worker ran to the end."""
        if not isinstance(d, Mapping):
            raise RecordError(f"{where} must be an object, not {d!r}")
        if "t" not in d:
            raise RecordError(f"{where} has no t")
        tls = d.get("tls") or {}
        if not isinstance(tls, Mapping):
            raise RecordError(f"{where}.tls must be an object")
        hists: dict[str, HdrHistogram] = {}
        h = d.get("h") or {}
        if not isinstance(h, Mapping):
            raise RecordError(f"{where}.h must be an object of metric: histogram")
        for metric, payload in h.items():
            if metric not in METRICS or not isinstance(payload, str):
                raise RecordError(f"{where}.h.{metric}: not a latency metric ({', '.join(METRICS)}) "
                                  f"with an encoded histogram")
            hists[metric] = results.decode(payload)
        by_name_raw = d.get("by_name") or {}
        if not isinstance(by_name_raw, Mapping):
            raise RecordError(f"{where}.by_name must be an object")
        partial = d.get("partial")
        return cls(
            t=_float(d["t"], f"{where}.t"),
            duration=_float(d.get("duration", 1.0), f"{where}.duration"),
            requests=_int(d.get("requests", 0), f"{where}.requests"),
            connections=_int(d.get("connections", 0), f"{where}.connections"),
            errors=_counts(d.get("errors"), f"{where}.errors"),
            started=_int(d["started"], f"{where}.started") if "started" in d else None,
            late_starts=_int(d.get("late_starts", 0), f"{where}.late_starts"),
            max_lag_us=_int(d.get("max_lag_us", 0), f"{where}.max_lag_us"),
            status=_counts(d.get("status"), f"{where}.status"),
            anomalies=_counts(d.get("anomalies"), f"{where}.anomalies"),
            tls_handshakes=_int(tls.get("handshakes", 0), f"{where}.tls.handshakes"),
            tls_resumed=_int(tls.get("resumed", 0), f"{where}.tls.resumed"),
            hists=hists,
            latency_us=_percentiles(d.get("latency_us"), f"{where}.latency_us"),
            corrected_latency_us=_percentiles(d.get("corrected_latency_us"), f"{where}.corrected_latency_us"),
            by_name={str(n): NamedCounts.from_json(c, f"{where}.by_name.{n}") for n, c in by_name_raw.items()},
            partial=_float(partial, f"{where}.partial") if partial is not None else None,
            complete=partial is None,
        )


def _percentiles(value: Any, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RecordError(f"{where} must be an object of name: number")
    return {str(k): v for k, v in value.items()}


def merge_all(intervals: Sequence[Interval]) -> Interval:
    """The sum of several intervals of one second (at least one)."""
    out = intervals[0].copy()
    for iv in intervals[1:]:
        out.absorb(iv.copy())
    return out


# --- the run's summary ------------------------------------------------------------


@dataclass
class Summary:
    """result.json's "summary": whole-run totals, the kernel's side, the workers.

    Fields are None where the runner that wrote it had no such field (older
    folders) and are left out of to_json() then; `extra` keeps what later
    steps added (stages, ...) in their order.
    """

    duration_s: float = 0.0
    requests: int = 0
    connections: int = 0
    requests_per_s: float = 0.0
    connections_per_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    error_total: int = 0
    late_starts: int = 0
    max_lag_us: int = 0
    latency_us: dict[str, dict[str, float]] = field(default_factory=dict)
    error_rate: float | None = None
    anomalies: dict[str, int] | None = None
    responses: int | None = None
    status: dict[str, int] | None = None
    status_classes: dict[str, int] | None = None
    tls: dict[str, int] | None = None
    intended_rate: float | None = None
    started: int | None = None
    in_flight_at_end: int | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    requests_by_name: dict[str, dict[str, Any]] | None = None
    kept_up: bool | None = None
    server: dict[str, int] | None = None
    states: dict[str, Any] | None = None
    counters: dict[str, Any] | None = None
    processes: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # Always written, null or not (intended_rate is null in a closed-model run).
    ALWAYS = frozenset({"duration_s", "requests", "connections", "requests_per_s", "connections_per_s", "errors",
                        "error_total", "late_starts", "max_lag_us", "latency_us", "intended_rate", "workers"})

    @classmethod
    def from_intervals(cls, intervals: Sequence[Interval], hists: Mapping[str, HdrHistogram]) -> Summary:
        """The fields that follow from the intervals and the whole-run histograms:
        the same for a run (runner.py) and for merged shards (merge.py)."""
        data = results.interval_totals([iv.to_json() for iv in intervals], dict(hists))
        summary = cls.from_json(data)
        # Unknown (absent) only when no interval counted starts: shards written by an old runner.
        known = [iv.started for iv in intervals if iv.started is not None]
        summary.started = sum(known) if known or not intervals else None
        return summary

    @property
    def duration(self) -> float:
        return self.duration_s

    def to_json(self) -> Json:
        out: Json = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not None or f.name in self.ALWAYS:
                out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = "summary") -> Summary:
        if not isinstance(d, Mapping):
            raise RecordError(f"{where} must be an object")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        summary = cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})
        for name in ("requests", "connections", "error_total", "late_starts", "max_lag_us"):
            setattr(summary, name, _int(getattr(summary, name), f"{where}.{name}"))
        summary.duration_s = _float(summary.duration_s, f"{where}.duration_s")
        return summary


# --- result.json ----------------------------------------------------------------


T = TypeVar("T")


def _known(cls: type[T], d: Mapping[str, Any], **fixed: Any) -> T:
    """A scenario dataclass from a dict written by this or an older version: unknown keys are
    dropped (a field since removed), missing ones take their default (a field since added)."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return cls(**{**{k: v for k, v in d.items() if k in names}, **fixed})


def scenario_from_json(d: Mapping[str, Any]) -> Scenario:
    """The Scenario a run folder's result.json recorded (Scenario.to_dict() of its time)."""
    def part(key: str) -> Mapping[str, Any]:
        v = d.get(key)
        return v if isinstance(v, Mapping) else {}

    target = part("target")
    load = part("load")
    conn = part("connection")
    return _known(
        Scenario, d,
        target=_known(Target, target, headers=tuple(target.get("headers", ())),
                      **({"expect_status": tuple(target["expect_status"])} if "expect_status" in target else {})),
        server=_known(Server, part("server")),
        load=_known(Load, load, stage=tuple(_known(Stage, st) for st in load.get("stage") or ())),
        connection=_known(Connection, conn, source_addresses=tuple(conn.get("source_addresses", ()))),
        sampling=_known(Sampling, part("sampling")),
        fault=_known(Fault, part("fault")),
        tls=_known(Tls, part("tls")),
        requests=tuple(_known(RequestSpec, r, headers=tuple(r.get("headers", ())))
                       for r in d.get("requests") or () if isinstance(r, Mapping)),
        variants=tuple(_known(Variant, v) for v in d.get("variants") or () if isinstance(v, Mapping)),
        thresholds=tuple(d.get("thresholds") or ()),
        raw={},
    )


@dataclass
class RunRecord:
    """What result.json holds: the run's identity and scenario, one Interval a second, the Summary.

    `summary` is None while a run is in progress (the streamed result.json has
    an empty summary). `meta` keeps every other top-level field (hostname,
    sysctls, target, shard, thresholds ...) as written, in order.
    """

    name: str = "run"
    variant: str | None = None
    partial: bool = False
    partial_reason: str | None = None
    scenario_data: dict[str, Any] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)
    summary: Summary | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    format: str = results.FORMAT
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def scenario(self) -> Scenario:
        """The run's Scenario, rebuilt from what result.json recorded."""
        return scenario_from_json(self.scenario_data)

    @property
    def label(self) -> str:
        return self.variant or self.name or "run"

    def to_json(self) -> Json:
        typed: Json = {"format": self.format, "name": self.name, "variant": self.variant, "partial": self.partial,
                       "partial_reason": self.partial_reason, "scenario": self.scenario_data}
        values = {**typed, **self.meta, "intervals": [iv.to_json() for iv in self.intervals],
                  "summary": self.summary.to_json() if self.summary is not None else {}}
        # The order the file was read in (a new record: typed fields, meta, intervals, summary).
        return {key: values[key] for key in dict.fromkeys((*self.key_order, *values)) if key in values}

    @classmethod
    def from_json(cls, d: Any) -> RunRecord:
        """Read result.json; format "tcpstress-result/1" is the only one so far (the older
        folders lack fields newer runners add, which stay absent)."""
        if not isinstance(d, Mapping):
            raise RecordError("result.json must be a JSON object")
        if d.get("format") != results.FORMAT:
            raise RecordError(f"format {d.get('format')!r} is not {results.FORMAT!r}")
        raw_intervals = d.get("intervals")
        if not isinstance(raw_intervals, list):
            raise RecordError("intervals must be a list")
        summary = d.get("summary")
        scenario = d.get("scenario")
        typed = ("format", "name", "variant", "partial", "partial_reason", "scenario", "intervals", "summary")
        meta = {k: v for k, v in d.items() if k not in typed}
        return cls(
            name=str(d.get("name") or "run"),
            variant=d.get("variant"),
            partial=bool(d.get("partial", False)),
            partial_reason=d.get("partial_reason"),
            scenario_data=dict(scenario) if isinstance(scenario, Mapping) else {},
            intervals=[Interval.from_json(iv, f"intervals[{i}]") for i, iv in enumerate(raw_intervals)],
            summary=Summary.from_json(summary) if summary else None,
            meta=meta,
            format=str(d["format"]),
            key_order=tuple(d),
        )
