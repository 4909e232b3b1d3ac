"""Rules on connections that went wrong: CLOSE_WAIT leaks, refused and reset connections, timeouts."""

from __future__ import annotations

from typing import Any

from tcpstress.report.finding import Finding, impact_severity, error_named, is_timeout
from tcpstress.report.places import (
    Place,
    common_value,
    differs_text,
    errors_by_shard,
    names_by_value,
    knob_value,
    knob_values_text,
    per_place,
    side_counter_rise,
    total_counter_rise,
    side_places,
)
from tcpstress.report.rundata import RunData, scenario_get
from tcpstress.report.wording import fmt_number, join_words, fmt_t


def _close_wait_growth(run: RunData, place: Place) -> dict[str, Any] | None:
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
        return {"ns": ns, "start": vs[0], "final": final, "peak": peak, "rate": (final - vs[0]) / span}
    return None


CLOSE_WAIT_ADVICE = ("Fix the application: close the socket when the peer has closed (read returned 0). No sysctl "
                     "helps: tcp_fin_timeout governs the active closer's orphaned FIN_WAIT2, not CLOSE_WAIT.")
CLOSE_WAIT_CAUSE = "the peer closed its side but the application never called close() on these sockets. "


def rule_close_wait_leak(run: RunData, runs: list[RunData]) -> list[Finding]:
    places = side_places(run, "server")
    leaks = [(p, g) for p in places if (g := _close_wait_growth(run, p)) is not None]
    if not leaks:
        return []
    if len(places) > 1:
        return _close_wait_per_server(run, places, leaks)
    place, g = leaks[0]
    server = g["ns"]
    start, final, peak, rate = g["start"], g["final"], g["peak"], g["rate"]
    where = "on the server" if server.rpartition(":")[2] == "server" else "on this host"
    evidence = {"close_wait_start": int(start), "close_wait_final": int(final), "close_wait_peak": int(peak),
                "growth_per_s": round(rate, 1), "namespace": server}
    text = (
        f"CLOSE_WAIT {where} grew from {int(start):,} to {int(final):,} (about {fmt_number(rate)}/s) and never drained: "
        + CLOSE_WAIT_CAUSE
    )
    fd_ts, _ = _fds(run, _role(place, "target"))
    if fd_ts:
        evidence["target_fds_start"], evidence["target_fds_final"] = fd_ts[0], fd_ts[-1]
        text += f"The target's open file descriptors went from {fd_ts[0]:,} to {fd_ts[-1]:,}; it will hit its open-file limit."
    return [Finding("critical", "CLOSE_WAIT leak in the application", text.strip(), evidence, [], run.label,
                    "close_wait", CLOSE_WAIT_ADVICE)]


def _role(place: Place, role: str) -> str:
    """The processes.csv role of a place's process: "target", or a merged run's "LABEL:target"."""
    return f"{place.shards[0]}:{role}" if place.shards else role


def _close_wait_per_server(run: RunData, places: list[Place],
                           leaks: list[tuple[Place, dict[str, Any]]]) -> list[Finding]:
    # A leak lives in one server process: each shard's is stated on its own, never summed.
    parts = []
    shards = []
    for place, g in leaks:
        part = (f"on {place.name} from {int(g['start']):,} to {int(g['final']):,} (about {fmt_number(g['rate'])}/s)")
        entry = {"shard": place.name, "namespace": g["ns"], "close_wait_start": int(g["start"]),
                 "close_wait_final": int(g["final"]), "close_wait_peak": int(g["peak"]),
                 "growth_per_s": round(g["rate"], 1)}
        fd_ts, _ = _fds(run, _role(place, "target"))
        if fd_ts:
            part += f", its target's open files from {fd_ts[0]:,} to {fd_ts[-1]:,}"
            entry["target_fds_start"], entry["target_fds_final"] = fd_ts[0], fd_ts[-1]
        parts.append(part)
        shards.append(entry)
    which = (f"on all {len(places)} shards' servers" if len(leaks) == len(places)
             else f"on {len(leaks)} of the {len(places)} shards' servers")
    text = (f"CLOSE_WAIT grew and never drained {which}: " + "; ".join(parts) + ": " + CLOSE_WAIT_CAUSE
            + "An open file per leaked socket: each leaking server will hit its open-file limit.")
    evidence = {"close_wait_final": sum(int(g["final"]) for _, g in leaks),
                "growth_per_s": round(sum(g["rate"] for _, g in leaks), 1),
                "namespaces": [g["ns"] for _, g in leaks], "shards": shards}
    return [Finding("critical", "CLOSE_WAIT leak in the application", text, evidence, [], run.label,
                    "close_wait", CLOSE_WAIT_ADVICE)]


def _fds(run: RunData, role: str) -> tuple[list[int], list[float]]:
    fds, ts = [], []
    for row in run.processes:
        if row["role"] == role and row.get("fds") is not None:
            fds.append(int(row["fds"]))
            ts.append(row["t"])
    return fds, ts


def rule_refused_or_reset(run: RunData, runs: list[RunData]) -> list[Finding]:
    findings = []
    refused = run.error_count(error_named("ECONNREFUSED"))
    if refused:
        first = run.first_error_t(error_named("ECONNREFUSED"))
        attempt_fails = side_counter_rise(run, "TcpAttemptFails", "client")
        out_rsts = side_counter_rise(run, "TcpOutRsts", "server")
        evidence = {"ECONNREFUSED": refused, "first_error_t_s": first, "TcpAttemptFails": attempt_fails,
                    "server_TcpOutRsts": out_rsts, "error_pct": round(run.error_pct, 2)}
        by_shard, by = errors_by_shard(run, error_named("ECONNREFUSED"))
        if by_shard is not None:
            evidence["shards"] = by_shard
        text = (
            f"connect() got ECONNREFUSED {refused:,} times" + (f" ({by})" if by else "")
            + (f", first at {fmt_t(first)}" if first is not None else "")
            + f" ({run.error_pct:.1f}% of attempts; TcpAttemptFails rose by {attempt_fails:,}): the target answered "
            "the SYN with RST, so nothing was listening on that address and port at the time."
        )
        findings.append(Finding(impact_severity(run.error_pct), "Connections refused", text,
                                evidence, [], run.label, "refused",
                                "Check that the server was up for the whole run (a crash or restart) and the port."))
    reset = run.error_count(error_named("ECONNRESET", "EPIPE"))
    if reset:
        first = run.first_error_t(error_named("ECONNRESET", "EPIPE"))
        estab_resets = total_counter_rise(run, "TcpEstabResets")
        aborts = [(p, knob_value(run, "net.ipv4.tcp_abort_on_overflow", p)) for p in side_places(run, "server")]
        same_abort, abort = common_value(aborts)
        evidence = {"ECONNRESET+EPIPE": reset, "first_error_t_s": first, "TcpEstabResets": estab_resets,
                    "tcp_abort_on_overflow": per_place(aborts)}
        by_shard, by = errors_by_shard(run, error_named("ECONNRESET", "EPIPE"))
        if by_shard is not None:
            evidence["shards"] = by_shard
        text = (
            f"{reset:,} requests failed with ECONNRESET/EPIPE" + (f" ({by})" if by else "")
            + (f", first at {fmt_t(first)}" if first is not None else "")
            + f" (TcpEstabResets rose by {estab_resets:,}): the peer sent RST on an open connection."
        )
        advice = ("Usual causes: the server closed with SO_LINGER 0 or with unread data, it crashed or hit a "
                  "limit, or its accept queue overflowed with tcp_abort_on_overflow=1"
                  + (f" ({differs_text('it', aborts)})." if not same_abort
                     else f" (it is {abort} here)." if abort is not None else "."))
        findings.append(Finding(impact_severity(run.error_pct), "Connections reset", text,
                                evidence, ["net.ipv4.tcp_abort_on_overflow"], run.label, "reset", advice))
    return findings


def rule_timeouts(run: RunData, runs: list[RunData]) -> list[Finding]:
    timeouts = {name: n for name, n in run.errors.items() if is_timeout(name) and n > 0}
    if not timeouts:
        return []
    total = sum(timeouts.values())
    first = run.first_error_t(is_timeout)
    clients = side_places(run, "client")
    syn_retrans = side_counter_rise(run, "TcpExtTCPSynRetrans", "client")
    retrans = total_counter_rise(run, "TcpRetransSegs")
    retries = [(p, knob_value(run, "net.ipv4.tcp_syn_retries", p)) for p in clients]
    same_retries, syn_retries = common_value(retries)
    evidence = {**timeouts, "first_error_t_s": first, "TcpExtTCPSynRetrans": syn_retrans,
                "TcpRetransSegs": retrans, "tcp_syn_retries": per_place(retries)}
    by_shard, by = errors_by_shard(run, is_timeout)
    if by_shard is not None:
        evidence["shards"] = by_shard
    names = ", ".join(f"{name} {n:,}" for name, n in timeouts.items())
    text = (
        f"{total:,} attempts timed out ({names}" + (f"; {by}" if by else "") + ")"
        + (f", first at {fmt_t(first)}" if first is not None else "")
        + f" ({run.error_pct:.1f}% of attempts). Retransmitted segments rose by {retrans:,}"
        + (f", SYN retransmits by {syn_retrans:,}" if syn_retrans else "")
        + ": packets (a SYN, a SYN-ACK or the final ACK) were dropped or the server answered too slowly."
    )
    here = (f"{syn_retries if syn_retries is not None else 6} here" if same_retries
            else knob_values_text("tcp_syn_retries", retries).removeprefix("tcp_syn_retries="))
    advice = ("Look for SYN-queue drops or accept-queue overflow on the server. Without the tool's own timeout, "
              "a connect() to a silent peer hangs until tcp_syn_retries is exhausted "
              f"({here}; 6 → about 127 s).")
    knobs = ["net.ipv4.tcp_syn_retries", "net.ipv4.tcp_synack_retries"]
    keepalive = scenario_get(run, "connection.so_keepalive")
    if keepalive and timeouts.get("ETIMEDOUT"):
        # With SO_KEEPALIVE, ETIMEDOUT on an idle connection is the probes giving up.
        probes = [(p, "{} + {} × {} s".format(*(knob_value(run, f"net.ipv4.tcp_keepalive_{k}", p)
                                                 for k in ("time", "intvl", "probes")))) for p in clients]
        same_probes, after = common_value(probes)
        if not same_probes:
            # Each shard's kernel gives up after its own knobs.
            after = join_words([f"{value} on {join_words(names)}" for value, names in names_by_value(probes).items()])
        text += (f" The connections had SO_KEEPALIVE on: ETIMEDOUT on an idle connection is the keep-alive "
                 f"probes going unanswered, after tcp_keepalive_time + intvl × probes = {after}.")
        advice = ("A peer that vanished is noticed after tcp_keepalive_time + tcp_keepalive_intvl × "
                  "tcp_keepalive_probes (7200 + 75 × 9 s by default); lower them to notice sooner.")
        knobs = ["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]
    return [Finding(impact_severity(run.error_pct), "Timeouts", text, evidence,
                    knobs, run.label, "timeouts", advice)]
