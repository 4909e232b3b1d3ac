"""The pieces of a run's lifetime that runner.run_scenario stacks on an ExitStack.

Each thing a run starts is a context manager whose exit stops it, so the
clean-up is the unwinding of the stack, in order, whatever ended the run
(normal end, Ctrl-C, SIGTERM, an exception), and one failing stop no longer
skips the stops after it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

from tcpstress import results


class RunInterrupted(Exception):
    """SIGINT or SIGTERM arrived; `.code` is the exit code to use (130 or 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = 128 + signum


class RunError(RuntimeError):
    """A run could not start or went wrong in a way the user must hear about."""


class SigtermRaises:
    """While entered, SIGTERM raises RunInterrupted (SIGINT already raises
    KeyboardInterrupt); `ignore()` shuts it off for the clean-up, and the exit
    puts back the handler that was there before."""

    def __enter__(self) -> SigtermRaises:
        def handler(signum: int, frame: FrameType | None) -> None:
            raise RunInterrupted(signum)

        self._old = signal.signal(signal.SIGTERM, handler)
        return self

    def ignore(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        signal.signal(signal.SIGTERM, self._old if self._old is not None else signal.SIG_DFL)


class _Stoppable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> dict[str, Any]: ...


class Sampling:
    """The kernel sampler of one run (or none, when it cannot be imported);
    `summary` holds what its stop returned, the last sample included."""

    def __init__(self, sampler: _Stoppable | None):
        self.sampler = sampler
        self.summary: dict[str, Any] = {}

    def __enter__(self) -> Sampling:
        if self.sampler is not None:
            self.sampler.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.sampler is not None:
            self.summary = self.sampler.stop()


@contextmanager
def hlog_writers(out_dir: Path, metrics: Sequence[str], t0_epoch: float) -> Iterator[dict[str, results.HlogWriter]]:
    """latency-<metric>.hlog per metric, closed on the way out (those already open when one fails, too)."""
    writers: dict[str, results.HlogWriter] = {}
    try:
        for metric in metrics:
            writers[metric] = results.HlogWriter(out_dir / f"latency-{metric}.hlog", t0_epoch,
                                                 comment=f"tcpstress {metric} latency, microseconds")
        yield writers
    finally:
        for writer in writers.values():
            writer.close()
