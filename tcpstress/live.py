"""The progress line a run prints while it goes."""

from __future__ import annotations

from typing import TextIO

from tcpstress import results
from tcpstress.record import Interval


class LiveLine:
    """One status line a second on a terminal (wrk-style progress); elsewhere (a CI log)
    a plain line every PLAIN_EVERY seconds, since carriage returns make a log unreadable."""

    PLAIN_EVERY = 5

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.terminal = bool(stream) and bool(isatty and isatty())

    def show(self, agg: Interval, intervals_total: int) -> None:
        if not self.stream:
            return
        second = agg.index + 1
        if not self.terminal and second % self.PLAIN_EVERY and second != intervals_total:
            return
        p99 = agg.hist("total").get_value_at_percentile(99) / 1000.0 if agg.requests else 0.0
        errors = agg.error_total
        classes = results.status_classes(agg.status)
        bad = "  ".join(f"{c} {n:,}" for c, n in sorted(classes.items()) if c[0] in "45")
        text = (f"  {second:>4}/{intervals_total}s  {agg.connections:>8,} conn/s  "
                f"{agg.requests:>8,} req/s  p99 {p99:8.2f} ms  errors {errors:,}" + (f"  ({bad})" if bad else ""))
        self.stream.write(f"\r{text}   " if self.terminal else f"progress {text.strip()}\n")
        self.stream.flush()


    def done(self) -> None:
        if self.stream and self.terminal:
            self.stream.write("\n")
            self.stream.flush()
