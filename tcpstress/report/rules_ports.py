"""Rules on the client's ephemeral ports and TIME_WAIT: ports exhausted, TIME_WAIT buckets full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcpstress.report.finding import Finding, impact_severity, error_named
from tcpstress.report.limits import port_limit
from tcpstress.report.places import (
    Place,
    common_value,
    counter_rise,
    differs_text,
    knob_value,
    state_peak,
    per_place,
    all_places,
    side_places,
)
from tcpstress.report.rundata import RunData
from tcpstress.report.variants import describe_variant
from tcpstress.report.wording import join_words, fmt_t

# TCP_TIMEWAIT_LEN: fixed in mainline Linux, no sysctl changes it.
TIME_WAIT_SECONDS = 60


def _tw_reuse_delay_s(run: RunData, place: Place) -> float:
    """tcp_tw_reuse_delay in seconds (1 s where the kernel has no such knob)."""
    value = knob_value(run, "net.ipv4.tcp_tw_reuse_delay", place)
    return int(value) / 1000.0 if value and value.strip().isdigit() and int(value) > 0 else 1.0


def rule_port_exhaustion(run: RunData, runs: list[RunData]) -> list[Finding]:
    is_addr = error_named("EADDRNOTAVAIL")
    failures = run.error_count(is_addr)
    if failures == 0:
        return []
    first = run.first_error_t(is_addr)
    places = side_places(run, "client")
    if len(places) == 1:
        text, evidence, general_advice = _ports_of_one_client(run, places[0], failures, first)
    else:
        text, evidence, general_advice = _ports_per_client(run, places, failures, first)
    # Only variants of the same scenario are a like-for-like comparison (a
    # gallery report holds several scenarios).
    same = run.result.data.get("name")
    clean = [o for o in runs if o is not run and o.requests > 0 and o.error_count(is_addr) == 0
             and o.result.data.get("name") == same]
    if clean:
        evidence["variants_without"] = [o.label for o in clean]
        described = [describe_variant(run, o) for o in clean]
        text += f"No EADDRNOTAVAIL in {join_words(described)}."
    if not general_advice:
        advice = "A wider ip_local_port_range, more source addresses, or keep-alive connections."
    else:
        advice = (
            "tcp_tw_reuse=1 (takes a TIME_WAIT port older than 1 s; needs TCP timestamps; the default 2 "
            "applies to loopback only, so it does not help over veth or a real network), a wider "
            "ip_local_port_range, more source addresses, keep-alive connections, or let the server close first."
        )
    severity = impact_severity(run.error_pct)
    return [Finding(
        severity, "Ephemeral ports exhausted (EADDRNOTAVAIL)", text.strip(), evidence,
        ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"], run.label, "port_exhaustion", advice,
    )]


def _reusing(run: RunData, tw_reuse: str | None) -> bool:
    return tw_reuse == "1" or (tw_reuse == "2" and run.target_is_loopback)


def _ports_of_one_client(run: RunData, place: Place, failures: int,
                         first: float | None) -> tuple[str, dict[str, Any], bool]:
    """(text, evidence, whether the TIME_WAIT advice applies) for one client namespace."""
    tw_peak = state_peak(run, "TIME_WAIT", place)
    est_peak = state_peak(run, "ESTABLISHED", place)
    limit = port_limit(run, place)
    tw_reuse = knob_value(run, "net.ipv4.tcp_tw_reuse", place)
    evidence: dict[str, Any] = {
        "EADDRNOTAVAIL": failures, "first_error_t_s": first,
        "time_wait_peak": tw_peak, "established_peak": est_peak, "namespace": place.namespaces[0],
    }
    if len(place.namespaces) > 1:
        evidence["namespaces"] = place.namespaces
    text = f"connect() failed with EADDRNOTAVAIL {failures:,} times"
    if first is not None:
        text += f", from {fmt_t(first)}"
    text += ": the client ran out of ephemeral ports. "
    holder = "TIME_WAIT" if tw_peak >= est_peak else "ESTABLISHED"
    held = max(tw_peak, est_peak)
    if limit:
        ports, how = limit
        evidence.update({"ports": ports, "port_range": how})
        share = held / ports if ports else 0
        text += f"{holder} on the client peaked at {held:,}"
        text += f" ≈ the whole ip_local_port_range ({how})" if share >= 0.8 else f" of {ports:,} ports ({how})"
        text += ". "
    else:
        text += f"{holder} on the client peaked at {held:,}. "
    reuse_delay_s = _tw_reuse_delay_s(run, place)
    reusing = _reusing(run, tw_reuse)
    if tw_reuse is not None:
        evidence["tcp_tw_reuse"] = tw_reuse
    if holder != "TIME_WAIT":
        text += "The ports are held by open connections: more concurrent connections than ports. "
    elif reusing:
        text += (
            f"tcp_tw_reuse={tw_reuse}{' (on loopback)' if tw_reuse == '2' else ''} lets a new connect() take a "
            f"TIME_WAIT port only once it is older than {reuse_delay_s:g} s, so the range must cover "
            f"{reuse_delay_s:g} s of new connections"
            + (f": about {limit[0] / reuse_delay_s:,.0f} per second per destination" if limit else "")
            + "; a faster burst still fails. "
        )
    else:
        text += (
            f"The side that closes first keeps each port in TIME_WAIT for {TIME_WAIT_SECONDS} s "
            "(TCP_TIMEWAIT_LEN, not a sysctl)"
            + (f", so sustained churn tops out near {limit[0] / TIME_WAIT_SECONDS:,.0f} new connections/s "
               "per destination" if limit else "")
            + (f"; tcp_tw_reuse is {tw_reuse} here" if tw_reuse is not None else "")
            + ". "
        )
    return text, evidence, holder == "TIME_WAIT" and not reusing


@dataclass
class _ClientPorts:
    """One client place of a merged run, as rule_port_exhaustion sees it."""

    place: Place
    errors: int | None  # EADDRNOTAVAIL its shards' workers counted; None when unknown
    tw_peak: int
    est_peak: int
    limit: tuple[int, str] | None
    tw_reuse: str | None
    reuse_delay_s: float
    reusing: bool

    @property
    def holder(self) -> str:
        return "TIME_WAIT" if self.tw_peak >= self.est_peak else "ESTABLISHED"

    @property
    def held(self) -> int:
        return max(self.tw_peak, self.est_peak)


def _per_client_rate(rows: list[_ClientPorts], seconds: float, unit: str) -> str | None:
    """'17 new connections/s from each client', or '17 ... from node-a and 33 from node-b'."""
    if any(r.limit is None for r in rows):
        return None
    rates = [r.limit[0] / seconds for r in rows if r.limit]
    if len({round(x) for x in rates}) == 1:
        return f"{rates[0]:,.0f} {unit}" + (" from each client" if len(rows) > 1 else "")
    return join_words([f"{x:,.0f}" + (f" {unit}" if i == 0 else "") + f" from {r.place.name}"
                  for i, (x, r) in enumerate(zip(rates, rows))])


def _ports_per_client(run: RunData, places: list[Place], failures: int,
                      first: float | None) -> tuple[str, dict[str, Any], bool]:
    """Each shard's client has its own ports, range and tcp_tw_reuse: say what each held against its own."""
    by_shard = run.shard_errors(error_named("EADDRNOTAVAIL"))
    rows = []
    for p in places:
        tw_reuse = knob_value(run, "net.ipv4.tcp_tw_reuse", p)
        rows.append(_ClientPorts(
            place=p, errors=None if by_shard is None else sum(by_shard.get(label, 0) for label in p.shards),
            tw_peak=state_peak(run, "TIME_WAIT", p), est_peak=state_peak(run, "ESTABLISHED", p), limit=port_limit(run, p),
            tw_reuse=tw_reuse, reuse_delay_s=_tw_reuse_delay_s(run, p), reusing=_reusing(run, tw_reuse)))
    known = any(r.errors for r in rows)
    hit = [r for r in rows if r.errors] if known else rows
    text = f"connect() failed with EADDRNOTAVAIL {failures:,} times"
    if first is not None:
        text += f", from {fmt_t(first)}"
    if not known:
        text += ": the clients ran out of ephemeral ports. "
    elif len(hit) == 1:
        text += f", all on {hit[0].place.name}: its client ran out of ephemeral ports. "
    elif len(hit) == len(rows):
        text += f": the clients of all {len(rows)} shards ran out of ephemeral ports. "
    else:
        text += f": the clients of {join_words([r.place.name for r in hit])} ran out of ephemeral ports. "

    def held(r: _ClientPorts) -> str:
        part = f"{r.holder} peaked at {r.held:,}"
        if r.limit:
            ports, how = r.limit
            part += f" ≈ its whole ip_local_port_range ({how})" if r.held >= 0.8 * ports else f" of {ports:,} ({how})"
        return part

    def one(r: _ClientPorts) -> str:
        part = f"on {r.place.name} {held(r)}"
        if r.errors is not None and known:
            part += f", {r.errors:,} EADDRNOTAVAIL" if r.errors else ", no EADDRNOTAVAIL"
        return part

    text += "Every client host has its own ports and its own ip_local_port_range: "
    if len(rows) > 1 and len({(r.holder, r.held, r.limit) for r in rows}) == 1:
        # Alike but for their errors: say it once.
        text += f"on each of {join_words([r.place.name for r in rows])}, {held(rows[0])}"
        if known and all(r.errors is not None for r in rows):
            text += f", with {join_words([f'{r.errors:,}' for r in rows])} EADDRNOTAVAIL"
        text += ". "
    else:
        text += "; ".join(map(one, rows)) + ". "
    held_sum = sum(r.held for r in rows)
    if all(r.limit for r in rows):
        ports_sum = sum(r.limit[0] for r in rows if r.limit)
        text += (f"Added up, the clients held at most {held_sum:,} of their {ports_sum:,} ports: the sum of "
                 "per-host peaks, which need not have come at the same moment. ")
    reuse_pairs = [(r.place, r.tw_reuse) for r in rows]
    same_reuse, _ = common_value(reuse_pairs)
    if not same_reuse:
        text += differs_text("tcp_tw_reuse", reuse_pairs) + ". "
    open_rows = [r for r in hit if r.holder != "TIME_WAIT"]
    if open_rows:
        text += (f"On {join_words([r.place.name for r in open_rows])}, the ports are held by open connections: more "
                 "concurrent connections than ports. ")
    tw_rows = [r for r in hit if r.holder == "TIME_WAIT"]
    groups: dict[tuple[str | None, float], list[_ClientPorts]] = {}
    for r in (r for r in tw_rows if r.reusing):
        groups.setdefault((r.tw_reuse, r.reuse_delay_s), []).append(r)
    for (tw_reuse, delay), group in groups.items():
        rate = _per_client_rate(group, delay, "per second per destination")
        text += (
            f"On {join_words([r.place.name for r in group])}, tcp_tw_reuse={tw_reuse}"
            f"{' (on loopback)' if tw_reuse == '2' else ''} lets a new connect() take a TIME_WAIT port only once "
            f"it is older than {delay:g} s, so the range must cover {delay:g} s of new connections"
            + (f": about {rate}" if rate else "") + "; a faster burst still fails. "
        )
    waiting = [r for r in tw_rows if not r.reusing]
    if waiting:
        rate = _per_client_rate(waiting, TIME_WAIT_SECONDS, "new connections/s per destination")
        same, tw_reuse = common_value([(r.place, r.tw_reuse) for r in waiting])
        text += (
            f"On {join_words([r.place.name for r in waiting])}, the side that closes first keeps each port in TIME_WAIT "
            f"for {TIME_WAIT_SECONDS} s (TCP_TIMEWAIT_LEN, not a sysctl)"
            + (f", so sustained churn tops out near {rate}" if rate else "")
            + (f"; tcp_tw_reuse is {tw_reuse} there" if same and tw_reuse is not None else "")
            + ". "
        )
    evidence: dict[str, Any] = {
        "EADDRNOTAVAIL": failures, "first_error_t_s": first,
        # Per-host peaks added up: an upper bound on what the clients held at one moment.
        "time_wait_peak": sum(r.tw_peak for r in rows), "established_peak": sum(r.est_peak for r in rows),
        "namespaces": [ns for r in rows for ns in r.place.namespaces],
    }
    if all(r.limit for r in rows):
        evidence["ports"] = sum(r.limit[0] for r in rows if r.limit)
    if any(r.tw_reuse is not None for r in rows):
        evidence["tcp_tw_reuse"] = per_place(reuse_pairs)
    evidence["shards"] = [{
        "shard": r.place.name, "namespaces": r.place.namespaces, "EADDRNOTAVAIL": r.errors,
        "time_wait_peak": r.tw_peak, "established_peak": r.est_peak,
        "ports": r.limit[0] if r.limit else None, "port_range": r.limit[1] if r.limit else None,
        "tcp_tw_reuse": r.tw_reuse,
    } for r in rows]
    return text, evidence, bool(waiting)


def rule_time_wait_overflow(run: RunData, runs: list[RunData]) -> list[Finding]:
    rows = []
    for place in all_places(run):
        overflow = counter_rise(run, "TcpExtTCPTimeWaitOverflow", place)
        if overflow <= 0:
            continue
        # tcp_max_tw_buckets is per namespace: each host's own value, never another shard's.
        rows.append((place, overflow, knob_value(run, "net.ipv4.tcp_max_tw_buckets", place),
                     state_peak(run, "TIME_WAIT", place)))
    if not rows:
        return []
    advice = "Raise tcp_max_tw_buckets, or cut connection churn with keep-alive."
    tail = (", so further closing sockets skipped TIME_WAIT entirely and their ports lost the protection "
            "against late duplicate segments.")
    if not run.shard_labels:
        findings = []
        for place, overflow, buckets, peak in rows:
            ns = place.namespaces[0]
            evidence = {"TcpExtTCPTimeWaitOverflow": overflow, "time_wait_peak": peak,
                        "tcp_max_tw_buckets": buckets, "namespace": ns}
            text = (
                f"TcpExtTCPTimeWaitOverflow rose by {overflow:,} in the {ns} namespace: TIME_WAIT peaked at {peak:,}"
                + (f" against tcp_max_tw_buckets={buckets}" if buckets else "")
                + tail
            )
            findings.append(Finding("warning", "TIME_WAIT bucket limit reached", text, evidence,
                                    ["net.ipv4.tcp_max_tw_buckets"], run.label, "tw_overflow", advice))
        return findings
    # A merged run: one finding, each host's rise against its own limit.
    parts = [f"by {overflow:,} in {place.namespaces[0]} ("
             + (f"shared by {', '.join(place.shards)}; " if len(place.shards) > 1 else "")
             + f"TIME_WAIT peaked at {peak:,}" + (f" against tcp_max_tw_buckets={buckets}" if buckets else "") + ")"
             for place, overflow, buckets, peak in rows]
    text = "TcpExtTCPTimeWaitOverflow rose " + join_words(parts) + tail
    if len({buckets for _, _, buckets, _ in rows}) > 1:
        text += " " + differs_text("tcp_max_tw_buckets", [(p, b) for p, _, b, _ in rows]) + "."
    evidence = {
        "TcpExtTCPTimeWaitOverflow": sum(o for _, o, _, _ in rows),
        "time_wait_peak": sum(pk for _, _, _, pk in rows),  # per-host peaks added up: an upper bound
        "tcp_max_tw_buckets": per_place([(p, b) for p, _, b, _ in rows]),
        "namespaces": [ns for p, _, _, _ in rows for ns in p.namespaces],
        "shards": [{"shard": p.name, "namespaces": p.namespaces, "TcpExtTCPTimeWaitOverflow": o,
                    "time_wait_peak": pk, "tcp_max_tw_buckets": b} for p, o, b, pk in rows],
    }
    return [Finding("warning", "TIME_WAIT bucket limit reached", text, evidence, ["net.ipv4.tcp_max_tw_buckets"],
                    run.label, "tw_overflow", advice)]
