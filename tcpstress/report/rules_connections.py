"""Rules on connections that went wrong: CLOSE_WAIT leaks, refused and reset connections, timeouts."""

from __future__ import annotations

from tcpstress.report.finding import error_named, is_timeout
from tcpstress.report.observations import (
    CloseWaitGrowth,
    CloseWaitLeak,
    ConnectionsRefused,
    ConnectionsReset,
    Observation,
    Timeouts,
)
from tcpstress.report.places import (
    Place,
    errors_by_shard,
    knob_value,
    side_counter_rise,
    side_places,
    total_counter_rise,
)
from tcpstress.report.rundata import RunData


def _close_wait_growth(run: RunData, place: Place) -> CloseWaitGrowth | None:
    """How CLOSE_WAIT grew in a server place, if it grew and never drained (a leak)."""
    for ns in place.namespaces:
        ts, vs = run.series("CLOSE_WAIT", ns)
        if len(vs) < 4:
            continue
        peak, final = max(vs), vs[-1]
        third = max(len(vs) // 3, 1)
        early = sum(vs[:third]) / third
        late = sum(vs[-third:]) / third
        if peak < 10 or final < 0.8 * peak or late < 1.5 * early + 5:
            continue
        span = (ts[-1] - ts[0]) or 1.0
        fds = _fds(run, _role(place, "target"))
        return CloseWaitGrowth(place, ns, vs[0], final, peak, (final - vs[0]) / span,
                               (fds[0], fds[-1]) if fds else None)
    return None


def rule_close_wait_leak(run: RunData, runs: list[RunData]) -> list[Observation]:
    places = side_places(run, "server")
    leaks = tuple(g for p in places if (g := _close_wait_growth(run, p)) is not None)
    return [CloseWaitLeak(run.label, len(places), leaks)] if leaks else []


def _role(place: Place, role: str) -> str:
    """The processes.csv role of a place's process: "target", or a merged run's "LABEL:target"."""
    return f"{place.shards[0]}:{role}" if place.shards else role


def _fds(run: RunData, role: str) -> list[int]:
    return [int(row["fds"]) for row in run.processes if row["role"] == role and row.get("fds") is not None]


def _share(run: RunData, count: int) -> float:
    """count as a share (%) of the run's attempts: one cause's impact, apart from the other errors'."""
    attempts = run.requests + run.error_total
    return 100.0 * count / attempts if attempts else 0.0


def rule_refused_or_reset(run: RunData, runs: list[RunData]) -> list[Observation]:
    found: list[Observation] = []
    refused_match = error_named("ECONNREFUSED")
    refused = run.error_count(refused_match)
    if refused:
        found.append(ConnectionsRefused(
            run.label, refused, run.first_error_t(refused_match),
            attempt_fails=side_counter_rise(run, "TcpAttemptFails", "client"),
            out_rsts=side_counter_rise(run, "TcpOutRsts", "server"),
            error_pct=run.error_pct, own_pct=_share(run, refused), by_shard=errors_by_shard(run, refused_match)))
    reset_match = error_named("ECONNRESET", "EPIPE")
    reset = run.error_count(reset_match)
    if reset:
        found.append(ConnectionsReset(
            run.label, reset, run.first_error_t(reset_match),
            estab_resets=total_counter_rise(run, "TcpEstabResets"),
            aborts=tuple((p, knob_value(run, "net.ipv4.tcp_abort_on_overflow", p))
                         for p in side_places(run, "server")),
            own_pct=_share(run, reset), by_shard=errors_by_shard(run, reset_match)))
    return found


def rule_timeouts(run: RunData, runs: list[RunData]) -> list[Observation]:
    timeouts = {name: n for name, n in run.errors.items() if is_timeout(name) and n > 0}
    if not timeouts:
        return []
    clients = side_places(run, "client")
    probes: tuple[tuple[Place, tuple[str | None, str | None, str | None]], ...] = ()
    if run.scenario.connection.so_keepalive and timeouts.get("ETIMEDOUT"):
        # With SO_KEEPALIVE, ETIMEDOUT on an idle connection is the probes giving up.
        probes = tuple((p, (knob_value(run, "net.ipv4.tcp_keepalive_time", p),
                            knob_value(run, "net.ipv4.tcp_keepalive_intvl", p),
                            knob_value(run, "net.ipv4.tcp_keepalive_probes", p))) for p in clients)
    return [Timeouts(
        run.label, timeouts, run.first_error_t(is_timeout),
        syn_retrans=side_counter_rise(run, "TcpExtTCPSynRetrans", "client"),
        retrans=total_counter_rise(run, "TcpRetransSegs"),
        syn_retries=tuple((p, knob_value(run, "net.ipv4.tcp_syn_retries", p)) for p in clients),
        own_pct=_share(run, sum(timeouts.values())),
        by_shard=errors_by_shard(run, is_timeout), keepalive_probes=probes)]
