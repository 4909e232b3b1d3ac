"""Why an open model fell behind its schedule: one cause, with the numbers that show it.

The schedule slips whenever requests cannot start on time, and the reasons
differ in what to do about them: a CPU-bound generator needs more workers, a
busy host needs the other work gone, a crowded port range needs ports, a slow
server needs more connections or a faster server, and a ramp is no lag at all
(the schedule itself asked for less). The causes are tried in that order of
evidence strength, server before generator: a generator waiting on a slow
server is never blamed for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcpstress.load.schedule import operations_due
from tcpstress.report.cpu import generator_busy, role_median
from tcpstress.report.finding import error_named
from tcpstress.report.limits import port_limit
from tcpstress.report.observations import (
    CauseUnseen,
    GeneratorBound,
    HostBusy,
    LagCause,
    PortsCrowded,
    ServerSlow,
)
from tcpstress.report.rundata import RunData
from tcpstress.report.stats import median_of, run_duration

HOST_ROLE = "host"
# The generator is CPU-bound at this share of its cores; the host at this share of all cores.
GENERATOR_BUSY = 0.9
HOST_BUSY = 0.85
OTHERS_BUSY = 40.0  # CPU % (100 = one core) used by processes other than the generator and target
STEAL_BUSY = 10.0  # % of the machine taken by the hypervisor
PORTS_CROWDED = 0.8  # TIME_WAIT + ESTABLISHED near the port range
SLOW_CONNECT_US = 10_000
SEARCH_SLOW = 0.3  # held share of the range from which connect()'s port search gets slow
_ADDR = error_named("EADDRNOTAVAIL", "EADDRINUSE")


@dataclass(frozen=True)
class ScheduleCheck:
    """What the schedule asked for over the measured phase, ramp included, and what was started."""

    intended_rate: float  # the full rate
    due: float  # operations the (ramped) schedule asked for in the measured phase
    started: int
    duration: float
    ramp: float

    @property
    def due_rate(self) -> float:
        return self.due / self.duration if self.duration else 0.0

    @property
    def started_rate(self) -> float:
        return self.started / self.duration if self.duration else 0.0

    @property
    def behind(self) -> bool:
        return self.started < 0.9 * self.due


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0


def schedule_check(run: RunData) -> ScheduleCheck | None:
    intended = run.summary.get("intended_rate")
    if not isinstance(intended, (int, float)) or intended <= 0:
        return None
    duration = run_duration(run)
    ramp = _seconds(run.scenario.load.ramp)
    warmup = _seconds(run.scenario.load.warmup)
    # The schedule starts with the warm-up; the measured phase is the part after it.
    due = operations_due(warmup + duration, float(intended), ramp) - operations_due(warmup, float(intended), ramp)
    started = run.summary.get("started")
    if not isinstance(started, int) or started <= 0:
        started = run.requests + run.error_total
    return ScheduleCheck(float(intended), float(due), int(started), duration, ramp)


def host_cores(run: RunData) -> int:
    count = run.result.data.get("cpu_count")
    return count if isinstance(count, int) and count > 0 else 1


def host_figures(run: RunData) -> dict[str, float] | None:
    """Median busy CPU (100 = one core), steal % and 1-minute load of the whole machine; None in old folders."""
    rows = [r for r in run.processes if r["role"] == HOST_ROLE and r.get("cpu_percent") is not None]
    duration = run_duration(run)
    picked = [r for r in rows if 0 <= r["t"] <= duration] or rows
    if len(picked) < 3:
        return None
    return {"cpu": median_of([r["cpu_percent"] for r in picked]),
            "steal": median_of([float(r.get("steal_percent") or 0) for r in picked]),
            "load1": max(float(r.get("load1") or 0) for r in picked)}


def _ports_cause(run: RunData) -> PortsCrowded | None:
    refused = run.error_count(_ADDR)
    held = client_ports_held(run)
    limit = port_limit(run)
    connect = run.latency_us("connect")
    crowded = limit is not None and held >= PORTS_CROWDED * limit[0]
    # A slow connect() is the port search only in churn, with a good part of the range held:
    # with a few long-lived connections it is a starved or slow process, not the ports; and
    # a CPU-bound generator sees every event late, a connect's completion included.
    churn = run.summary.get("connections") or 0
    slow = (connect is not None and connect["p99"] >= SLOW_CONNECT_US and run.counter("TcpExtListenOverflows") == 0
            and churn >= 0.5 * max(run.requests, 1) and limit is not None and held >= SEARCH_SLOW * limit[0]
            and not generator_busy(run))
    if not (refused or crowded or slow):
        return None
    return PortsCrowded(refused, held, limit, crowded, connect["p99"] if slow and connect else None)


def client_ports_held(run: RunData) -> int:
    """Peak sockets in the client's namespace that hold one of its ephemeral ports.

    A TIME_WAIT socket belongs to the side that closed first: when the server
    closes (connection.close = "server"), this run's TIME_WAIT sockets are the
    server's, keyed by its listening port, and hold no client port; on
    loopback they sit in the client's namespace all the same. On loopback each
    connection is also two ESTABLISHED sockets, one per end.
    """
    ns = run.side_ns("client")
    same_namespace = ns == run.side_ns("server")
    established = run.peak("ESTABLISHED", ns)
    if same_namespace and run.target_is_loopback:
        established //= 2
    time_wait = run.peak("TIME_WAIT", ns)
    if run.scenario.connection.close != "client":
        # Only what was there before the run can be another client's; reset leaves none.
        time_wait = run.at_start("TIME_WAIT", ns)
    return time_wait + established


def ports_crowded(run: RunData) -> bool:
    return _ports_cause(run) is not None


def _server_cause(run: RunData, check: ScheduleCheck) -> ServerSlow | None:
    target = role_median(run, "target")
    busy = target is not None and target >= GENERATOR_BUSY * 100 * run.cores("target")
    overflows = run.counter("TcpExtListenOverflows")
    # Little's law: `connections` requests in flight, each taking the server's response time,
    # carry at most connections / latency per second.
    connections = run.scenario.load.connections
    total = run.latency_us("total")
    capped: tuple[int, float, float] | None = None
    if isinstance(connections, int) and connections > 0 and total and total["p50"] > 0:
        capacity = connections / (total["p50"] / 1e6)
        # ...and only if the connections were really all busy (the started rate reached that
        # bound): a starved generator also stretches the latency it measures, but then leaves
        # connections idle.
        if capacity < 0.9 * check.due_rate and check.started_rate >= 0.8 * capacity:
            capped = (connections, total["p50"], capacity)
    if not (busy or overflows or capped):
        return None
    in_flight = run.summary.get("in_flight_at_end")
    return ServerSlow(
        target_median=target if busy else None, target_cores=run.cores("target"), overflows=overflows,
        connections=capped[0] if capped else None, p50_us=capped[1] if capped else None,
        capacity=capped[2] if capped else None,
        in_flight=in_flight if isinstance(in_flight, int) and in_flight else None)


def _generator_cause(run: RunData) -> GeneratorBound | None:
    if not generator_busy(run):
        return None
    return GeneratorBound(role_median(run, "generator"), run.cores("generator"))


def _host_cause(run: RunData) -> HostBusy | None:
    host = host_figures(run)
    if host is None:
        return None
    cores = host_cores(run)
    ours = sum(m for role in ("generator", "target") if (m := role_median(run, role)) is not None)
    others = max(host["cpu"] - ours, 0.0)
    # Tried after the port range, the server and the generator's own CPU: a late generator
    # that was not CPU-bound was starved, and other work using a good part of a core
    # (or the whole machine near full) is what starves it.
    busy = host["cpu"] >= HOST_BUSY * 100 * cores or others >= OTHERS_BUSY
    stolen = host["steal"] >= STEAL_BUSY
    if not (busy or stolen):
        return None
    return HostBusy(cores=cores, cpu=host["cpu"], others=others, steal=host["steal"], stolen=stolen,
                    load1=host["load1"], target_sampled=role_median(run, "target") is not None)


def lag_cause(run: RunData, check: ScheduleCheck) -> LagCause:
    """The strongest evidence first: ports and server before the generator, the host last."""
    for cause in (_ports_cause(run), _server_cause(run, check), _generator_cause(run), _host_cause(run)):
        if cause is not None:
            return cause
    return CauseUnseen()
