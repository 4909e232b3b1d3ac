"""Rules on the server's listen queues: the accept queue and the SYN queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcpstress.report.finding import Finding
from tcpstress.report.limits import accept_queue_limit
from tcpstress.report.places import (
    Place,
    common_value,
    counter_rise,
    differs_text,
    knob_value,
    knob_values_text,
    per_place,
    side_places,
)
from tcpstress.report.rundata import RunData
from tcpstress.report.stats import median_of
from tcpstress.report.wording import join_words, fmt_ms

ACCEPT_ABORT_TEXT = "With tcp_abort_on_overflow=1 the kernel answered with RST, so clients saw ECONNRESET. "
ACCEPT_IGNORE_TEXT = (
    "With tcp_abort_on_overflow=0 the kernel ignored the client's final ACK; the client thinks it is "
    "connected and its first data is retransmitted, which shows up as latency of 1 s or more, or timeouts. "
)


def _queue_text(backlog: int | None, somaxconn: int | None, limit: int | None) -> str:
    return (
        f"min(listen backlog {backlog if backlog is not None else '?'}, "
        f"somaxconn {somaxconn if somaxconn is not None else '?'})"
        + (f" = {limit:,}" if limit is not None else "")
    )


def rule_accept_queue_overflow(run: RunData, runs: list[RunData]) -> list[Finding]:
    places = side_places(run, "server")
    rows = [(p, counter_rise(run, "TcpExtListenOverflows", p), counter_rise(run, "TcpExtListenDrops", p)) for p in places]
    # Each shard's server (its own built-in server, or a sidecar) has its own
    # accept queue: the rises add up, the queue sizes do not.
    overflows = sum(o for _, o, _ in rows)
    drops = sum(d for _, _, d in rows)
    # ListenDrops also counts every SYN dropped by a full SYN queue; only
    # ListenOverflows says the accept queue itself was full.
    if overflows == 0:
        return []
    hit = [p for p, o, _ in rows if o > 0]
    limits = {id(p): accept_queue_limit(run, p) for p in places}
    backlog, somaxconn, limit = limits[id(hit[0])]
    aborts = [(p, knob_value(run, "net.ipv4.tcp_abort_on_overflow", p)) for p in hit]
    abort = aborts[0][1]
    evidence: dict[str, Any] = {
        "TcpExtListenOverflows": overflows, "TcpExtListenDrops": drops,
        "listen_backlog": backlog, "somaxconn": somaxconn, "accept_queue": limit,
        "tcp_abort_on_overflow": abort,
    }
    if len(places) == 1:
        text = (
            f"TcpExtListenOverflows rose by {overflows:,} and TcpExtListenDrops by {drops:,}: the accept queue, "
            f"{_queue_text(backlog, somaxconn, limit)}, was full because the server did not call accept() fast "
            "enough. "
        )
        text += ACCEPT_ABORT_TEXT if abort == "1" else ACCEPT_IGNORE_TEXT
    else:
        evidence.update({
            "somaxconn": per_place([(p, limits[id(p)][1]) for p in places]),
            "accept_queue": per_place([(p, limits[id(p)][2]) for p in places]),
            "tcp_abort_on_overflow": per_place(aborts),
            "shards": [{"shard": p.name, "namespaces": p.namespaces, "TcpExtListenOverflows": o,
                        "TcpExtListenDrops": d, "somaxconn": limits[id(p)][1], "accept_queue": limits[id(p)][2],
                        "tcp_abort_on_overflow": knob_value(run, "net.ipv4.tcp_abort_on_overflow", p)}
                       for p, o, d in rows],
        })
        where = "; ".join(f"{p.name}: {o:,} and {d:,}" for p, o, d in rows if o > 0)
        queues = [(p, limits[id(p)]) for p in hit]
        same_queue, _ = common_value([(p, q[1:]) for p, q in queues])
        queue = (_queue_text(backlog, somaxconn, limit) if same_queue else
                 f"min(listen backlog {backlog if backlog is not None else '?'}, somaxconn) = "
                 + join_words([f"{'?' if q[2] is None else f'{q[2]:,}'} on {p.name}" for p, q in queues]))
        text = (
            f"TcpExtListenOverflows rose by {overflows:,} and TcpExtListenDrops by {drops:,} over the "
            f"{len(places)} shards' servers ({where}): the accept queue, {queue}, was full because the server did "
            "not call accept() fast enough. "
        )
        if not same_queue:
            text += differs_text("net.core.somaxconn", [(p, q[1]) for p, q in queues]) + ". "
        same_abort, _ = common_value(aborts)
        if same_abort:
            text += ACCEPT_ABORT_TEXT if abort == "1" else ACCEPT_IGNORE_TEXT
        else:
            text += (
                differs_text("tcp_abort_on_overflow", aborts) + ": where it is 1 the kernel answered with RST, so "
                "clients saw ECONNRESET; elsewhere it ignored the client's final ACK, so the client's first data "
                "was retransmitted (latency of 1 s or more, or timeouts). "
            )
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"p99 latency was {fmt_ms(lat['p99'])}."
    advice = ("Make the server accept faster (more workers). A bigger backlog and somaxconn only absorb "
              "bursts; under sustained overload they add queueing delay.")
    return [Finding(
        "critical", "Accept queue overflow", text.strip(), evidence,
        ["net.core.somaxconn", "listen backlog", "net.ipv4.tcp_abort_on_overflow"], run.label, "accept_queue", advice,
    )]


@dataclass
class _SynQueue:
    """One server place as rule_syn_queue sees it."""

    place: Place
    qfull_drop: int
    cookies: int
    do_cookies: int
    peak: int
    plateau_s: float
    syncookies: str | None
    max_syn_backlog: str | None
    limit: int | None


def _syn_queue_of(run: RunData, place: Place) -> _SynQueue:
    # Shards on one machine sampled the same namespace: its series with the highest peak stands for it.
    ns = max(place.namespaces, key=lambda n: run.peak("SYN_RECV", n))
    ts, vs = run.series("SYN_RECV", ns)
    peak = run.peak("SYN_RECV", ns)
    return _SynQueue(
        place=place, qfull_drop=counter_rise(run, "TcpExtTCPReqQFullDrop", place),
        cookies=counter_rise(run, "TcpExtSyncookiesSent", place), do_cookies=counter_rise(run, "TcpExtTCPReqQFullDoCookies", place),
        peak=peak, plateau_s=_plateau_seconds(ts, vs, peak),
        syncookies=knob_value(run, "net.ipv4.tcp_syncookies", place),
        max_syn_backlog=knob_value(run, "net.ipv4.tcp_max_syn_backlog", place),
        limit=accept_queue_limit(run, place)[2])


def rule_syn_queue(run: RunData, runs: list[RunData]) -> list[Finding]:
    places = side_places(run, "server")
    rows = [_syn_queue_of(run, p) for p in places]
    hit = [r for r in rows if r.qfull_drop or r.cookies or r.do_cookies]
    if not hit:
        return []
    if len(rows) > 1:
        return _syn_queue_per_server(run, rows, hit)
    r = rows[0]
    qfull_drop, cookies, do_cookies, peak, plateau_s = r.qfull_drop, r.cookies, r.do_cookies, r.peak, r.plateau_s
    syncookies, max_syn_backlog, limit = r.syncookies, r.max_syn_backlog, r.limit
    evidence = {
        "syn_recv_peak": peak, "syn_recv_plateau_s": plateau_s,
        "TcpExtTCPReqQFullDrop": qfull_drop, "TcpExtSyncookiesSent": cookies,
        "TcpExtTCPReqQFullDoCookies": do_cookies, "tcp_syncookies": syncookies,
        "tcp_max_syn_backlog": max_syn_backlog, "accept_queue": limit,
    }
    held = f"SYN_RECV on the server held at about {peak:,}"
    if plateau_s:
        held += f" for {plateau_s:g} s"
    if limit is not None:
        held += f" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = {limit:,})"
    if qfull_drop > 0:
        text = (
            f"{held} while TcpExtTCPReqQFullDrop rose by {qfull_drop:,}: the SYN queue was full and, with "
            f"tcp_syncookies={syncookies if syncookies is not None else '?'}, new SYNs were dropped, so real clients "
            "waited for SYN retransmits (1 s, then more) or timed out. Each half-open entry lives until "
            "tcp_synack_retries is exhausted (5 → about 63 s)."
        )
        return [_syn_drop_finding(run, text, evidence)]
    counter, sent = ("TcpExtSyncookiesSent", cookies) if cookies else ("TcpExtTCPReqQFullDoCookies", do_cookies)
    text = (
        f"{held} while {counter} rose by {sent:,}: the SYN queue overflowed and, with "
        f"tcp_syncookies={syncookies if syncookies is not None else '?'}, the kernel answered with SYN cookies "
        "instead of dropping, so real clients still connected."
    )
    return [_syn_cookie_finding(run, text, evidence)]


SYN_KNOBS = ["net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn",
             "net.ipv4.tcp_synack_retries"]


def _syn_drop_finding(run: RunData, text: str, evidence: dict[str, Any]) -> Finding:
    advice = ("tcp_syncookies=1 keeps the server answering when the queue is full; a bigger "
              "tcp_max_syn_backlog and listen backlog only help against bursts, not a flood.")
    return Finding("critical", "SYN queue full: SYNs dropped", text, evidence, list(SYN_KNOBS), run.label,
                   "syn_queue", advice)


def _syn_cookie_finding(run: RunData, text: str, evidence: dict[str, Any]) -> Finding:
    advice = ("Nothing urgent: cookies are doing their job. A SYN flood or a burst bigger than the queue is the "
              "cause; raise the listen backlog and tcp_max_syn_backlog if the bursts are legitimate.")
    return Finding("warning", "SYN queue overflowed: SYN cookies sent", text, evidence, list(SYN_KNOBS), run.label,
                   "syn_queue", advice)


def _syn_queue_per_server(run: RunData, rows: list[_SynQueue], hit: list[_SynQueue]) -> list[Finding]:
    """Each shard's server has its own SYN queue, knobs and counters: say which overflowed and how."""
    def held_on(r: _SynQueue) -> str:
        return f"{r.peak:,} on {r.place.name}" + (f" for {r.plateau_s:g} s" if r.plateau_s else "")

    def rises(counter: str, values: list[tuple[_SynQueue, int]]) -> str:
        total = sum(n for _, n in values)
        return f"{counter} rose by {total:,}" + (
            f" ({join_words([f'{n:,} on {r.place.name}' for r, n in values])})" if len(values) > 1 else "")

    held = "SYN_RECV on the servers held at about " + join_words([held_on(r) for r in hit])
    same_limit, limit = common_value([(r.place, r.limit) for r in hit])
    if same_limit and limit is not None:
        held += f" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = {limit:,})"
    elif not same_limit:
        held += (" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = "
                 + join_words([f"{'?' if r.limit is None else f'{r.limit:,}'} on {r.place.name}" for r in hit]) + ")")
    evidence: dict[str, Any] = {
        # Per-server peaks added up: an upper bound on what the servers held at one moment.
        "syn_recv_peak": sum(r.peak for r in rows),
        "TcpExtTCPReqQFullDrop": sum(r.qfull_drop for r in rows),
        "TcpExtSyncookiesSent": sum(r.cookies for r in rows),
        "TcpExtTCPReqQFullDoCookies": sum(r.do_cookies for r in rows),
        "tcp_syncookies": per_place([(r.place, r.syncookies) for r in rows]),
        "tcp_max_syn_backlog": per_place([(r.place, r.max_syn_backlog) for r in rows]),
        "accept_queue": per_place([(r.place, r.limit) for r in rows]),
        "shards": [{"shard": r.place.name, "namespaces": r.place.namespaces, "syn_recv_peak": r.peak,
                    "syn_recv_plateau_s": r.plateau_s, "TcpExtTCPReqQFullDrop": r.qfull_drop,
                    "TcpExtSyncookiesSent": r.cookies, "TcpExtTCPReqQFullDoCookies": r.do_cookies,
                    "tcp_syncookies": r.syncookies, "tcp_max_syn_backlog": r.max_syn_backlog,
                    "accept_queue": r.limit} for r in rows],
    }
    dropped = [r for r in hit if r.qfull_drop]
    cookied = [r for r in hit if not r.qfull_drop]
    cookie_text = ""
    if cookied:
        sent = [(r, r.cookies or r.do_cookies) for r in cookied]
        counter = "TcpExtSyncookiesSent" if all(r.cookies for r in cookied) else "SYN cookie counters"
        cookie_text = (
            f"{rises(counter, sent)}: the SYN queue overflowed and, with "
            f"{knob_values_text('tcp_syncookies', [(r.place, r.syncookies) for r in cookied])}, the kernel answered "
            "with SYN cookies instead of dropping, so real clients still connected."
        )
    if len({r.syncookies for r in rows}) > 1:
        cookie_text += " " + differs_text("tcp_syncookies", [(r.place, r.syncookies) for r in rows]) + "."
    if dropped:
        text = (
            f"{held} while {rises('TcpExtTCPReqQFullDrop', [(r, r.qfull_drop) for r in dropped])}: the SYN queue "
            f"was full and, with {knob_values_text('tcp_syncookies', [(r.place, r.syncookies) for r in dropped])}, new "
            "SYNs were dropped, so real clients waited for SYN retransmits (1 s, then more) or timed out. Each "
            "half-open entry lives until tcp_synack_retries is exhausted (5 → about 63 s)."
        )
        if cookied:
            text += f" On {join_words([r.place.name for r in cookied])} instead, " + cookie_text
        elif cookie_text:
            text += cookie_text
        return [_syn_drop_finding(run, text.strip(), evidence)]
    return [_syn_cookie_finding(run, f"{held} while {cookie_text}".strip(), evidence)]


def _plateau_seconds(ts: list[float], vs: list[float], peak: float) -> float:
    """How long a level stayed within 10% of its peak (a queue held at its cap)."""
    if peak <= 0 or len(ts) < 2:
        return 0.0
    step = median_of([b - a for a, b in zip(ts, ts[1:])]) or 1.0
    near = sum(1 for v in vs if v >= 0.9 * peak)
    return round(near * step, 1) if near >= 2 else 0.0
