"""Fan the load out to worker processes and merge what they send back.

Each worker is a plain child process speaking JSON lines on a pipe (see
worker.py), read by one thread per worker into a queue. Plain processes and
pipes work the same in the host namespace and inside a lab namespace, and a
worker that dies shows up as an end of file with no "done" line: the run
notes it by name with its last counts and goes on.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Callable, Iterator, Literal

from tcpstress import results
from tcpstress.record import Interval, NamedCounts

WORKER_ARGV = [sys.executable, "-m", "tcpstress.load.worker"]
BOOT_TIMEOUT_S = 30.0


class WorkerFailure(RuntimeError):
    pass


# starting -> booted (code imported) -> ready (plan taken) -> done; died (exited
# early) or fatal (reported an error it cannot go on from) from any of them.
WorkerState = Literal["starting", "booted", "ready", "done", "died", "fatal"]


@dataclass
class WorkerHandle:
    name: str
    proc: subprocess.Popen[bytes]
    state: WorkerState = "starting"
    last_interval: int = -1
    requests: int = 0
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0  # requests on the wire when it stopped
    detail: str = ""
    stderr_path: Path | None = None
    # The worker's own whole-run totals from its "done" line, to check its seconds against.
    counted_requests: int | None = None
    counted_connections: int | None = None

    def lost_counts(self) -> str:
        """What the worker counted that its seconds do not hold ("" when they agree).

        The runner only sees the seconds; a second never sent (a bug in
        tcpstress, such as the one fixed in Recorder.take_all) would otherwise
        shrink the results without a word."""
        if self.state != "done" or self.counted_requests is None:
            return ""
        lost = []
        if self.counted_requests != self.requests:
            lost.append(f"{self.counted_requests} requests, {self.requests} in its seconds")
        if self.counted_connections is not None and self.counted_connections != self.connections:
            lost.append(f"{self.counted_connections} connections, {self.connections} in its seconds")
        return f"{self.name} counted {'; '.join(lost)}" if lost else ""

    def describe(self) -> dict[str, Any]:
        exit_text = {"done": "ok"}.get(self.state, f"{self.state}: {self.detail}".rstrip(": "))
        return {"name": self.name, "pid": self.proc.pid, "exit": exit_text, "requests": self.requests,
                "connections": self.connections, "errors": dict(self.errors)}


class WorkerPool:
    """Start workers, hand them their plans, and stream their messages."""

    def __init__(self, count: int, spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
                 log_dir: Path | None = None) -> None:
        self.count = count
        self.spawn = spawn
        self.log_dir = log_dir
        self.workers: list[WorkerHandle] = []
        self.queue: queue.Queue[tuple[WorkerHandle, dict[str, Any] | None]] = queue.Queue()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc.poll() is None]

    def start(self) -> None:
        """Start every worker and wait until each has imported its code."""
        self.launch()
        self.wait_booted()

    def launch(self) -> None:
        """Start every worker process without waiting for it: a worker's boot (an
        interpreter and its imports, ~0.15 s) then overlaps the caller's own set-up."""
        for i in range(self.count):
            name = f"worker-{i}"
            stderr_path = (self.log_dir / f"{name}.stderr") if self.log_dir else None
            err: IO[bytes] | int = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
            try:
                proc = self.spawn(WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                  start_new_session=False)
            finally:
                if not isinstance(err, int):
                    err.close()
            handle = WorkerHandle(name=name, proc=proc, stderr_path=stderr_path)
            self.workers.append(handle)
            threading.Thread(target=self._read, args=(handle,), daemon=True, name=f"read-{name}").start()

    def wait_booted(self) -> None:
        """Wait until every spawned worker has imported its code (its "booted" line)."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while any(w.state == "starting" for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailure(f"workers did not start within {BOOT_TIMEOUT_S:.0f}s")
            try:
                handle, msg = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            self._note(handle, msg)
            if handle.state in ("died", "fatal"):
                raise WorkerFailure(f"{handle.name} failed to start: {handle.detail}")

    def send_plans(self, plans: list[dict[str, Any]]) -> None:
        for handle, plan in zip(self.workers, plans):
            assert handle.proc.stdin is not None  # spawned with stdin=PIPE
            handle.proc.stdin.write((json.dumps(plan) + "\n").encode())
            handle.proc.stdin.flush()

    def _read(self, handle: WorkerHandle) -> None:
        assert handle.proc.stdout is not None  # spawned with stdout=PIPE
        for line in handle.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            self.queue.put((handle, msg))
        self.queue.put((handle, None))

    def _note(self, handle: WorkerHandle, msg: dict[str, Any] | None) -> Interval | None:
        """Update the worker's state from one message; an interval message comes back as its Interval."""
        if msg is None:
            if handle.state not in ("done", "fatal"):
                code = handle.proc.wait()
                handle.state = "died"
                handle.detail = _exit_text(code) + _stderr_tail(handle.stderr_path)
            return None
        kind = msg.get("type")
        if kind == "booted":
            handle.state = "booted"
        elif kind == "ready":
            handle.state = "ready"
        elif kind == "interval":
            iv = Interval.from_json(msg, f"{handle.name}'s interval")
            handle.last_interval = iv.index
            handle.requests += iv.requests
            handle.connections += iv.connections
            handle.errors.update(iv.errors)
            return iv
        elif kind == "done":
            handle.state = "done"
            handle.in_flight = int(msg.get("in_flight", 0))
            handle.counted_requests = msg.get("requests")
            handle.counted_connections = msg.get("connections")
        elif kind == "fatal":
            handle.state = "fatal"
            handle.detail = msg.get("error", "")
        return None

    def messages(self, deadline: float) -> Iterator[tuple[WorkerHandle | None, Interval | None]]:
        """Yield each worker's intervals until every worker has ended or `deadline` passes."""
        while any(w.state not in ("done", "died", "fatal") for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                handle, msg = self.queue.get(timeout=min(left, 0.2))
            except queue.Empty:
                yield None, None  # a tick: lets the caller refresh its display
                continue
            interval = self._note(handle, msg)
            if interval is not None:
                yield handle, interval
            elif handle.state == "fatal":
                raise WorkerFailure(f"{handle.name}: {handle.detail}")

    def signal_all(self, sig: int) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    w.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float = 3.0) -> None:
        """End every worker: SIGTERM, then SIGKILL after `grace` seconds."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            for f in (w.proc.stdin, w.proc.stdout):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass
            if w.stderr_path and w.stderr_path.exists() and w.stderr_path.stat().st_size == 0:
                w.stderr_path.unlink()

    # A context manager for the run's ExitStack: the runner pushes the pool (only
    # __exit__ is registered) before start(), so workers a failing start() left are stopped.
    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _stderr_tail(path: Path | None) -> str:
    if not path or not path.exists():
        return ""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return f" ({lines[-1][:200]})" if lines else ""


class IntervalMerger:
    """Sums the workers' per-second messages into one interval per second.

    An interval is final once every worker still running has reported it
    (workers report every second in order, empty ones included) or ended.
    Interval i of a run of `duration` seconds lasts min(1, duration - i): the
    last one of a 1.5 s run is half a second long, and its rate says so.
    """

    def __init__(self, interval_count: int, duration: float | None = None) -> None:
        self.count = interval_count
        self.duration = float(duration) if duration is not None else float(interval_count)
        self.pending: dict[int, Interval] = {}
        self.final: list[Interval] = []  # settled (result.json) intervals, in order
        self.hists = {m: results.new_histogram() for m in results.METRICS}
        self.by_name: dict[str, NamedCounts] = {}  # [[request]] name -> whole-run counts and histogram
        self.next_final = 0

    def length(self, index: int) -> float:
        return max(0.0, min(1.0, self.duration - index))

    def add(self, msg: Interval | dict[str, Any]) -> None:
        """One worker's second (its wire message, or the Interval read from it)."""
        iv = msg if isinstance(msg, Interval) else Interval.from_json(msg, "worker message")
        for name, counts in iv.by_name.items():
            self.by_name.setdefault(name, NamedCounts()).absorb(counts)
        iv.by_name = {}  # counted for the whole run above; an interval's own share is not kept
        agg = self.pending.get(iv.index)
        if agg is None:
            self.pending[iv.index] = iv
        else:
            agg.absorb(iv)

    def interval_length(self, agg: Interval) -> float:
        """The real length of a closed interval: scheduled, or where every worker stopped."""
        scheduled = self.length(agg.index)
        if agg.partial is not None and not agg.complete:
            return min(scheduled, agg.partial)
        return scheduled

    def finalize_upto(self, last_index: int) -> list[Interval]:
        """Close intervals up to and including `last_index`; returns them, histograms and all."""
        out = []
        while self.next_final <= min(last_index, self.count - 1):
            agg = self.pending.pop(self.next_final, None) or Interval(t=float(self.next_final), complete=True)
            for metric, h in agg.hists.items():
                results.add_histogram(self.hists[metric], h)
            agg.duration = round(self.interval_length(agg), 3)
            # Keep the result.json record, not the histograms: four of them a
            # second (~180 KB each at this range and precision) made a
            # 90-second run's runner hold 165 MB. The caller writes them to
            # the .hlog files right away.
            self.final.append(agg.settle())
            out.append(agg)
            self.next_final += 1
        return out

    def named_summary(self) -> dict[str, dict[str, Any]]:
        """[[request]] entries' whole-run counts and latency percentiles."""
        return {name: {"requests": c.requests, "errors": c.errors,
                       "latency_us": results.percentiles(c.latency or results.new_histogram())}
                for name, c in self.by_name.items()}
