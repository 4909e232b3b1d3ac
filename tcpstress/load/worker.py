"""Entry point of one load worker process: `python -m tcpstress.load.worker`.

Reads its plan as one JSON line on stdin and writes JSON lines on stdout:
{"type": "ready"}, then {"type": "interval", ...} per completed second (see
recorder.IntervalCounts.to_message), then {"type": "done", ...}; or
{"type": "fatal", "error": "..."} when it cannot run at all. A plain process
and a pipe are all it needs, so the runner can start it in the host's
namespace or inside a lab namespace alike.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcpstress.load.engine import WorkerPlan

FD_MARGIN = 64  # stdin/stdout, the epoll set, the signal wake-up pipe and the interpreter's own


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def plan_from_message(msg: dict[str, Any]) -> WorkerPlan:
    from tcpstress.load.engine import WorkerPlan
    from tcpstress.scenario import Scenario

    return WorkerPlan(
        scenario=Scenario.from_dict(msg["scenario"]), family=msg["family"], sockaddr=tuple(msg["sockaddr"]),
        index=msg["index"], workers=msg["workers"], t_start=msg["t_start"], t0=msg["t0"], t_end=msg["t_end"])


def main() -> int:
    out = sys.stdout

    def emit(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg, separators=(",", ":")) + "\n")
        out.flush()

    # The runner decides when to stop; a Ctrl-C on the terminal reaches the
    # whole process group, and the worker must still report what it has.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The engine is imported here, not at the top, so that the runner's
    # check_fd_limit can read FD_MARGIN without paying for it; "booted" still
    # means everything the run needs is imported (the runner times the start
    # of the load from that line).
    from tcpstress.load.engine import Engine

    emit({"type": "booted", "pid": os.getpid()})
    try:
        plan = plan_from_message(json.loads(sys.stdin.readline()))
    except Exception as e:  # a bad plan is a bug in the runner: say it plainly
        emit({"type": "fatal", "error": f"bad worker plan: {e}"})
        return 1
    limit = raise_fd_limit()
    if plan.connections + FD_MARGIN > limit:
        emit({"type": "fatal", "error": f"worker {plan.index} needs {plan.connections + FD_MARGIN} open files "
                                        f"for {plan.connections} connections; the limit is {limit}: "
                                        f"use more workers (load.workers)"})
        return 1
    engine = Engine(plan, emit)
    emit({"type": "ready", "connections": plan.connections})
    try:
        engine.run()
    except KeyboardInterrupt:
        pass
    emit({"type": "done", "requests": engine.rec.requests_total, "connections": engine.rec.connections_total,
          "errors": dict(engine.rec.errors_total), "in_flight": engine.in_flight_at_end})
    return 0


if __name__ == "__main__":
    sys.exit(main())
