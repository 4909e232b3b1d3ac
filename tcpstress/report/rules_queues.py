"""Rules on the server's listen queues: the accept queue and the SYN queue."""

from __future__ import annotations

from tcpstress.report.limits import accept_queue_limit
from tcpstress.report.observations import AcceptQueue, AcceptQueueOverflow, Observation, SynQueue, SynQueueOverflow
from tcpstress.report.places import Place, counter_rise, knob_value, side_places
from tcpstress.report.rundata import RunData
from tcpstress.report.stats import median_of


def rule_accept_queue_overflow(run: RunData, runs: list[RunData]) -> list[Observation]:
    # Each shard's server (its own built-in server, or a sidecar) has its own
    # accept queue: the rises add up, the queue sizes do not.
    servers = tuple(_accept_queue_of(run, p) for p in side_places(run, "server"))
    # ListenDrops also counts every SYN dropped by a full SYN queue; only
    # ListenOverflows says the accept queue itself was full.
    if not any(s.overflows for s in servers):
        return []
    lat = run.latency_us("total")
    return [AcceptQueueOverflow(run.label, servers, lat["p99"] if lat else None)]


def _accept_queue_of(run: RunData, place: Place) -> AcceptQueue:
    backlog, somaxconn, limit = accept_queue_limit(run, place)
    return AcceptQueue(
        place=place, overflows=counter_rise(run, "TcpExtListenOverflows", place),
        drops=counter_rise(run, "TcpExtListenDrops", place), backlog=backlog, somaxconn=somaxconn, limit=limit,
        abort=knob_value(run, "net.ipv4.tcp_abort_on_overflow", place))


def _syn_queue_of(run: RunData, place: Place) -> SynQueue:
    # Shards on one machine sampled the same namespace: its series with the highest peak stands for it.
    ns = max(place.namespaces, key=lambda n: run.peak("SYN_RECV", n))
    ts, vs = run.series("SYN_RECV", ns)
    peak = run.peak("SYN_RECV", ns)
    return SynQueue(
        place=place, qfull_drop=counter_rise(run, "TcpExtTCPReqQFullDrop", place),
        cookies=counter_rise(run, "TcpExtSyncookiesSent", place),
        do_cookies=counter_rise(run, "TcpExtTCPReqQFullDoCookies", place),
        peak=peak, plateau_s=_plateau_seconds(ts, vs, peak),
        syncookies=knob_value(run, "net.ipv4.tcp_syncookies", place),
        max_syn_backlog=knob_value(run, "net.ipv4.tcp_max_syn_backlog", place),
        limit=accept_queue_limit(run, place)[2])


def rule_syn_queue(run: RunData, runs: list[RunData]) -> list[Observation]:
    servers = tuple(_syn_queue_of(run, p) for p in side_places(run, "server"))
    if not any(s.overflowed for s in servers):
        return []
    return [SynQueueOverflow(run.label, servers)]


def _plateau_seconds(ts: list[float], vs: list[float], peak: float) -> float:
    """How long a level stayed within 10% of its peak (a queue held at its cap)."""
    if peak <= 0 or len(ts) < 2:
        return 0.0
    step = median_of([b - a for a, b in zip(ts, ts[1:])]) or 1.0
    near = sum(1 for v in vs if v >= 0.9 * peak)
    return round(near * step, 1) if near >= 2 else 0.0
