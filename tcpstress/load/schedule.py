"""Open-model schedule arithmetic and how work is split between workers.

Pure functions, so tests can check them exactly. Operation n (counting from
0 over the whole run, all workers together) has an intended start time; a
worker k of W owns the operations n with n % W == k, so the workers' shares
interleave and together are exactly the requested schedule at every instant.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence


def intended_start(n: int, rate: float, ramp: float = 0.0) -> float:
    """Seconds after the schedule's start at which operation n should begin.

    Without a ramp, operations are evenly spaced at 1/rate. With a linear ramp
    from 0 to `rate` over `ramp` seconds, the cumulative number of operations
    due by time t is rate·t²/(2·ramp) during the ramp and rate·ramp/2 +
    rate·(t - ramp) after it; this inverts that curve.
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if ramp <= 0:
        return n / rate
    ops_in_ramp = rate * ramp / 2.0
    if n < ops_in_ramp:
        return math.sqrt(2.0 * ramp * n / rate)
    return ramp + (n - ops_in_ramp) / rate


def operations_due(t: float, rate: float, ramp: float = 0.0) -> int:
    """How many operations (all workers) are due strictly before time t."""
    if t <= 0:
        return 0
    if ramp <= 0:
        due = rate * t
    elif t < ramp:
        due = rate * t * t / (2.0 * ramp)
    else:
        due = rate * ramp / 2.0 + rate * (t - ramp)
    # Operation 0 is due at t = 0, so any t > 0 has at least one due; the
    # tolerance keeps a float like 4.0000000001 from counting a fifth.
    return max(1, math.ceil(due - 1e-9))


def worker_operations(worker: int, workers: int, duration: float, rate: float,
                      ramp: float = 0.0) -> Iterator[tuple[int, float]]:
    """Yield (n, intended_start) for worker `worker`'s share, ending before `duration`."""
    total = operations_due(duration, rate, ramp)
    for n in range(worker, total, workers):
        yield n, intended_start(n, rate, ramp)


def split_evenly(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split into `parts` shares that differ by at most one."""
    if parts <= 0 or not 0 <= index < parts:
        raise ValueError("index must be in [0, parts)")
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


# --- stages: a piecewise schedule -----------------------------------------------


class Segment:
    """A stretch of the schedule whose rate goes linearly from `a` to `b` over `length` s."""

    __slots__ = ("start", "length", "a", "b", "before")

    def __init__(self, start: float, length: float, a: float, b: float, before: float):
        self.start, self.length, self.a, self.b = start, length, a, b
        self.before = before  # operations due before this segment starts (a real number)

    @property
    def count(self) -> float:
        return (self.a + self.b) * self.length / 2.0

    def due(self, tau: float) -> float:
        """Operations due in the first tau seconds of the segment: a·τ + (b-a)·τ²/(2·length)."""
        slope = (self.b - self.a) / self.length if self.length else 0.0
        return self.a * tau + slope * tau * tau / 2.0

    def offset_of(self, m: float) -> float:
        """The tau at which due(tau) = m: the root of a quadratic, written so that neither a
        flat segment (slope 0) nor a ramp from 0 (a = 0) divides by zero."""
        if m <= 0:
            return 0.0
        slope = (self.b - self.a) / self.length if self.length else 0.0
        return 2.0 * m / (self.a + math.sqrt(max(self.a * self.a + 2.0 * slope * m, 0.0)))


class Piecewise:
    """An open-model schedule made of stages (rate, lasts, ramp), after an optional warm-up.

    Operation n (all workers) starts when the cumulative count due reaches n,
    as in intended_start(); the same interleaving (n % workers) splits it
    between workers, so the shares stay exact across stage boundaries. After
    the last stage the last rate goes on (the run's end bounds it).
    """

    def __init__(self, segments: list[Segment]):
        if not segments:
            raise ValueError("a schedule needs at least one stage")
        self.segments = segments

    @classmethod
    def of_stages(cls, stages: Sequence[Any], warmup: float = 0.0) -> "Piecewise":
        """stages: objects with .rate, .lasts, .ramp. A stage ramps linearly from the rate
        before it (0 for the first, or its own rate after a warm-up, which runs at the first
        stage's rate) to its own rate over .ramp seconds, then holds it."""
        segments: list[Segment] = []
        t = before = 0.0

        def add(length: float, a: float, b: float) -> None:
            nonlocal t, before
            if length <= 0:
                return
            seg = Segment(t, length, a, b, before)
            segments.append(seg)
            t += length
            before += seg.count

        previous = 0.0
        if warmup > 0 and stages:
            add(warmup, stages[0].rate, stages[0].rate)
            previous = stages[0].rate
        for st in stages:
            if st.rate <= 0:
                raise ValueError("a stage's rate must be > 0")
            ramp = min(st.ramp, st.lasts)
            add(ramp, previous, st.rate)
            add(st.lasts - ramp, st.rate, st.rate)
            previous = st.rate
        return cls(segments)

    def _segment_at_count(self, n: float) -> Segment:
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:  # the last segment whose `before` is <= n
            mid = (lo + hi + 1) // 2
            if self.segments[mid].before <= n:
                lo = mid
            else:
                hi = mid - 1
        return self.segments[lo]

    def cumulative(self, t: float) -> float:
        """Operations due in [0, t) as a real number."""
        if t <= 0:
            return 0.0
        for seg in reversed(self.segments):
            if t >= seg.start:
                tau = t - seg.start
                if tau <= seg.length or seg is self.segments[-1]:
                    if tau > seg.length:  # past the end: the last rate goes on
                        return seg.before + seg.count + seg.b * (tau - seg.length)
                    return seg.before + seg.due(tau)
                return seg.before + seg.count
        return 0.0

    def intended_start(self, n: int) -> float:
        seg = self._segment_at_count(n)
        m = n - seg.before
        if m > seg.count and seg is self.segments[-1]:
            return seg.start + seg.length + (m - seg.count) / seg.b
        return seg.start + min(seg.offset_of(m), seg.length)

    def operations_due(self, t: float) -> int:
        """How many operations are due strictly before t (as operations_due())."""
        if t <= 0:
            return 0
        return max(1, math.ceil(self.cumulative(t) - 1e-9))

    def worker_operations(self, worker: int, workers: int, duration: float) -> Iterator[tuple[int, float]]:
        """Yield (n, intended_start) for worker `worker`'s share, ending before `duration`."""
        total = self.operations_due(duration)
        for n in range(worker, total, workers):
            yield n, self.intended_start(n)
