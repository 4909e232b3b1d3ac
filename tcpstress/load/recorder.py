"""Per-interval counts and latencies inside one worker.

Latencies are kept as Counters of whole microseconds and turned into
HdrHistograms once per interval: a dict increment costs a tenth of the
pure-Python HdrHistogram.record_value, and latencies cluster, so the flush
records far fewer distinct values than there were requests.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from tcpstress import record, results
from tcpstress.record import Interval

METRICS = results.METRICS  # total, connect, ttfb, corrected, tls, error


def _histogram(counts: Counter[int]) -> HdrHistogram:
    h = results.new_histogram()
    results.record_counts(h, counts)
    return h


@dataclass
class NamedCounts:
    """One [[request]] entry's share of an interval."""

    requests: int = 0
    errors: int = 0
    latency: Counter[int] = field(default_factory=Counter)


def _latency_counters() -> dict[str, Counter[int]]:
    return {m: Counter() for m in METRICS}


@dataclass
class IntervalCounts:
    """One second being counted: plain Counters on the hot path, an Interval when it closes."""

    requests: int = 0
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    status: Counter[int] = field(default_factory=Counter)  # every HTTP response, success or not
    anomalies: Counter[str] = field(default_factory=Counter)  # not failed requests: close timeout, unsolicited data ...
    started: int = 0  # open model: operations begun in this second
    late_starts: int = 0
    max_lag_us: int = 0
    tls_handshakes: int = 0
    tls_resumed: int = 0
    latency: dict[str, Counter[int]] = field(default_factory=_latency_counters)
    by_name: dict[str, NamedCounts] = field(default_factory=dict)

    def to_interval(self, index: int, duration: float, partial: float | None = None) -> Interval:
        return Interval(
            t=float(index), duration=duration, requests=self.requests, connections=self.connections,
            errors=Counter(self.errors), started=self.started, late_starts=self.late_starts,
            max_lag_us=self.max_lag_us, status=Counter({str(code): n for code, n in self.status.items()}),
            anomalies=Counter(self.anomalies), tls_handshakes=self.tls_handshakes, tls_resumed=self.tls_resumed,
            hists={metric: _histogram(counts) for metric, counts in self.latency.items() if counts},
            by_name={name: record.NamedCounts(c.requests, c.errors, _histogram(c.latency) if c.latency else None)
                     for name, c in self.by_name.items()},
            partial=partial, complete=partial is None)

    def to_message(self, index: int, duration: float = 1.0, partial: float | None = None) -> dict[str, Any]:
        """The worker's "interval" line: the Interval in its wire form."""
        return {"type": "interval", **self.to_interval(index, duration, partial).to_json(wire=True)}


class Recorder:
    """Assigns each event to the one-second interval in which it completed.

    Interval i covers [t0 + i, t0 + i + 1) on the shared monotonic clock;
    events before t0 (the warm-up) are dropped, as are events at or after
    t_end, so every worker's interval i means the same second.
    """

    def __init__(self, t0: float, t_end: float, interval: float = 1.0) -> None:
        self.t0 = t0
        self.t_end = t_end
        self.interval = interval
        self.open: dict[int, IntervalCounts] = {}
        self.next_index = 0
        self.requests_total = 0
        self.connections_total = 0
        self.errors_total: Counter[str] = Counter()
        # The second being filled and its bounds: most events land in it, and the
        # per-event checks below then need no call and no division.
        self._current: IntervalCounts | None = None
        self._current_from = self._current_to = 0.0

    def _bucket(self, now: float) -> IntervalCounts | None:
        if now < self.t0 or now >= self.t_end:
            return None
        i = int((now - self.t0) // self.interval)
        b = self.open.get(i)
        if b is None:
            b = self.open[i] = IntervalCounts()
        # Bounds from the same formula, so the cache and the division agree.
        self._current, self._current_from = b, self.t0 + i * self.interval
        self._current_to = min(self.t0 + (i + 1) * self.interval, self.t_end)
        return b

    def _forget_current(self) -> None:
        self._current, self._current_from, self._current_to = None, 0.0, 0.0

    def connected(self, now: float, connect_s: float) -> None:
        b = self._current if self._current_from <= now < self._current_to else self._bucket(now)
        if b is not None:
            b.connections += 1
            self.connections_total += 1
            b.latency["connect"][int(connect_s * 1e6)] += 1

    def request(self, now: float, total_s: float, ttfb_s: float, corrected_s: float | None = None,
                status: int = 0, name: str | None = None) -> None:
        """A successful exchange (for HTTP: a response with an expected status)."""
        b = self._current if self._current_from <= now < self._current_to else self._bucket(now)
        if b is not None:
            b.requests += 1
            self.requests_total += 1
            lat = b.latency
            lat["total"][int(total_s * 1e6)] += 1
            lat["ttfb"][int(ttfb_s * 1e6)] += 1
            if corrected_s is not None:
                lat["corrected"][int(corrected_s * 1e6)] += 1
            if status:
                b.status[status] += 1
            if name is not None:
                named = b.by_name.get(name) or b.by_name.setdefault(name, NamedCounts())
                named.requests += 1
                named.latency[int(total_s * 1e6)] += 1

    def failed_response(self, now: float, total_s: float, status: int, name: str | None = None) -> None:
        """A complete response whose status is not expected: an error named `HTTP nnn`."""
        b = self._bucket(now)
        if b is not None:
            key = f"HTTP {status}"
            b.errors[key] += 1
            self.errors_total[key] += 1
            b.status[status] += 1
            b.latency["error"][int(total_s * 1e6)] += 1
            if name is not None:
                named = b.by_name.get(name) or b.by_name.setdefault(name, NamedCounts())
                named.errors += 1

    def error(self, now: float, name: str) -> None:
        b = self._bucket(now)
        if b is not None:
            b.errors[name] += 1
            self.errors_total[name] += 1

    def anomaly(self, now: float, name: str) -> None:
        """Something worth knowing that is not a failed request."""
        b = self._bucket(now)
        if b is not None:
            b.anomalies[name] += 1

    def tls_handshake(self, now: float, seconds: float, resumed: bool) -> None:
        b = self._bucket(now)
        if b is not None:
            b.tls_handshakes += 1
            b.tls_resumed += resumed
            b.latency["tls"][int(seconds * 1e6)] += 1

    def started(self, now: float, lag_s: float, late_threshold_s: float) -> None:
        """An open-model operation began `lag_s` after its intended start."""
        b = self._bucket(now)
        if b is None:
            return
        b.started += 1
        if lag_s > late_threshold_s:
            b.late_starts += 1
            lag_us = int(lag_s * 1e6)
            if lag_us > b.max_lag_us:
                b.max_lag_us = lag_us

    @property
    def intervals(self) -> int:
        return max(1, math.ceil((self.t_end - self.t0) / self.interval - 1e-9))

    def length(self, index: int) -> float:
        """The scheduled length of interval `index`: the last one of a 1.5 s run lasts half a second."""
        return round(max(0.0, min(self.interval, self.t_end - self.t0 - index * self.interval)), 3)

    def take_complete(self, now: float) -> list[dict[str, Any]]:
        """Messages for every interval that has ended by `now`, in order, empty ones too.

        Emitting the empty ones tells the runner how far this worker has got,
        so it can close an interval once every worker has passed it.
        """
        return self._take_before(min(int((now - self.t0) // self.interval), self.intervals))

    def _take_before(self, current: int) -> list[dict[str, Any]]:
        out = []
        while self.next_index < current:
            self._forget_current()
            counts = self.open.pop(self.next_index, IntervalCounts())
            out.append(counts.to_message(self.next_index, self.length(self.next_index)))
            self.next_index += 1
        return out

    def take_all(self) -> list[dict[str, Any]]:
        # By index, not through take_complete(t0 + intervals): (t0 + 2.0) - t0 can be
        # 1.99999999999994 when the sum crosses a power of two (t0 = 511.42 s of
        # monotonic time, a 2 s run), and the last second was never sent.
        return self._take_before(self.intervals)

    def take_partial(self, now: float) -> list[dict[str, Any]]:
        """The interval in progress when a run is cut short, marked as partial."""
        if self.next_index >= self.intervals or now < self.t0:
            return []
        reached = round(now - (self.t0 + self.next_index * self.interval), 3)
        self._forget_current()
        msg = self.open.pop(self.next_index, IntervalCounts()).to_message(
            self.next_index, self.length(self.next_index), partial=reached)
        self.next_index += 1
        return [msg]
