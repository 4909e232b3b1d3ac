"""Rules on the client's ephemeral ports and TIME_WAIT: ports exhausted, TIME_WAIT buckets full."""

from __future__ import annotations

from tcpstress.report.finding import error_named
from tcpstress.report.limits import port_limit
from tcpstress.report.observations import (
    ClientPorts,
    Observation,
    PortExhaustion,
    TimeWaitOverflow,
    TimeWaitPlace,
)
from tcpstress.report.places import Place, all_places, counter_rise, knob_value, side_places, state_peak
from tcpstress.report.rundata import RunData
from tcpstress.report.variants import describe_variant


def _tw_reuse_delay_s(run: RunData, place: Place) -> float:
    """tcp_tw_reuse_delay in seconds (1 s where the kernel has no such knob)."""
    value = knob_value(run, "net.ipv4.tcp_tw_reuse_delay", place)
    return int(value) / 1000.0 if value and value.strip().isdigit() and int(value) > 0 else 1.0


def _reusing(run: RunData, tw_reuse: str | None) -> bool:
    return tw_reuse == "1" or (tw_reuse == "2" and run.target_is_loopback)


def _client_ports(run: RunData, place: Place, errors: int | None) -> ClientPorts:
    tw_reuse = knob_value(run, "net.ipv4.tcp_tw_reuse", place)
    return ClientPorts(
        place=place, errors=errors, tw_peak=state_peak(run, "TIME_WAIT", place),
        est_peak=state_peak(run, "ESTABLISHED", place), limit=port_limit(run, place), tw_reuse=tw_reuse,
        reuse_delay_s=_tw_reuse_delay_s(run, place), reusing=_reusing(run, tw_reuse))


def rule_port_exhaustion(run: RunData, runs: list[RunData]) -> list[Observation]:
    is_addr = error_named("EADDRNOTAVAIL")
    failures = run.error_count(is_addr)
    if failures == 0:
        return []
    places = side_places(run, "client")
    clients: tuple[ClientPorts, ...]
    if len(places) == 1:
        clients = (_client_ports(run, places[0], None),)
    else:
        # Each shard's client has its own ports, range and tcp_tw_reuse.
        by_shard = run.shard_errors(is_addr)
        clients = tuple(_client_ports(run, p, None if by_shard is None else
                                      sum(by_shard.get(label, 0) for label in p.shards)) for p in places)
    # Only variants of the same scenario are a like-for-like comparison (a
    # gallery report holds several scenarios).
    same = run.result.data.get("name")
    clean = [o for o in runs if o is not run and o.requests > 0 and o.error_count(is_addr) == 0
             and o.result.data.get("name") == same]
    attempts = run.requests + run.error_total
    # The severity is this cause's own share: other errors have their own findings.
    return [PortExhaustion(
        run.label, failures, run.first_error_t(is_addr), error_pct=run.error_pct,
        own_pct=100.0 * failures / attempts if attempts else 0.0, clients=clients,
        without=tuple(o.label for o in clean), without_described=tuple(describe_variant(run, o) for o in clean))]


def rule_time_wait_overflow(run: RunData, runs: list[RunData]) -> list[Observation]:
    rows = []
    for place in all_places(run):
        overflow = counter_rise(run, "TcpExtTCPTimeWaitOverflow", place)
        if overflow <= 0:
            continue
        # tcp_max_tw_buckets is per namespace: each host's own value, never another shard's.
        rows.append(TimeWaitPlace(place, overflow, knob_value(run, "net.ipv4.tcp_max_tw_buckets", place),
                                  state_peak(run, "TIME_WAIT", place)))
    if not rows:
        return []
    if not run.shard_labels:
        return [TimeWaitOverflow(run.label, (row,), merged=False) for row in rows]
    # A merged run: one finding, each host's rise against its own limit.
    return [TimeWaitOverflow(run.label, tuple(rows), merged=True)]
