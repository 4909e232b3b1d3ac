"""The words of every finding: an observation in, a Finding (title, text, advice) out.

The one place where what a rule saw becomes English. The rules
(rules_*.py) measure and return observations (observations.py); diagnose()
passes each through finding() here. A new kind of observation gets one
function below, registered with @finding.register.
"""

from __future__ import annotations

from functools import singledispatch
from tcpstress.report.finding import Finding
from tcpstress.report.observations import (
    AcceptQueueOverflow,
    CauseUnseen,
    ClientPorts,
    CloseWaitLeak,
    ConnectionsRefused,
    ConnectionsReset,
    CpuUse,
    GeneratorBound,
    GeneratorSaturated,
    HostBusy,
    InjectedFault,
    LagCause,
    ManyInFlight,
    NoSuccess,
    Observation,
    OpenModelLag,
    Outcome,
    PortExhaustion,
    PortsCrowded,
    RunStoppedEarly,
    ServerSaturated,
    ServerSlow,
    ShardsSaturated,
    SynQueue,
    SynQueueOverflow,
    TimeWaitOverflow,
    Timeouts,
    UnexplainedErrors,
    Verdict,
    WorkersDied,
)
from tcpstress.report.places import common_value, differs_text, knob_values_text, names_by_value
from tcpstress.report.wording import fmt_ms, fmt_number, fmt_t, join_words

# TCP_TIMEWAIT_LEN: fixed in mainline Linux, no sysctl changes it.
TIME_WAIT_SECONDS = 60


@singledispatch
def finding(obs: Observation) -> Finding:
    """The finding that words an observation."""
    raise TypeError(f"no words for {type(obs).__name__}")


def _finding(obs: Observation, title: str, text: str, advice: str = "") -> Finding:
    return Finding(obs.severity, title, text, obs.evidence(), obs.knob_list(), obs.variant, obs.rule, advice)


def _by_shard(counts: dict[str, int] | None) -> str:
    """'by shard: node-a 3, node-b 0' for a merged run's errors; '' otherwise."""
    return "by shard: " + ", ".join(f"{label} {n:,}" for label, n in counts.items()) if counts else ""


def _pct(count: int, pct: float) -> str:
    return f"{pct:.1f}%" if pct >= 1 or not count else f"{pct:.2g}%"


# --- the run itself ---------------------------------------------------------------------------------


@finding.register
def _stopped(obs: RunStoppedEarly) -> Finding:
    return _finding(obs, "Run stopped early",
                    f"The run is partial ({obs.reason or obs.NO_REASON}): its numbers cover only the part that ran.")


@finding.register
def _workers(obs: WorkersDied) -> Finding:
    names = join_words([f"{name} ({how})" for name, how in obs.workers])
    return _finding(obs, "Load workers died", f"{len(obs.workers)} load worker(s) did not finish cleanly: {names}. "
                    "Their share of the load is missing from every number.")


FAULT_EFFECTS = {
    "syn_flood": "spoofed SYNs from {spoof} at {rate:,.0f}/s were sent at the server",
    "drop_syn": ("the server namespace silently dropped every SYN to the target port, so connect() waited "
                 "through its SYN retransmits"),
    "drop_fin": ("the client namespace dropped every incoming segment that carried a FIN, so closes could not "
                 "complete (FIN_WAIT1/FIN_WAIT2 on the client, LAST_ACK or CLOSING on the server)"),
    "partition": ("the server namespace dropped everything from the client: a peer that vanished; only TCP "
                  "keep-alive probes (or a request timeout) can notice"),
}


@finding.register
def _fault(obs: InjectedFault) -> Finding:
    when = f"from t={obs.at:g} s" + (f" for {obs.lasts:g} s" if obs.lasts else " to the end")
    text = f"Injected on purpose ({obs.kind}, {when}): " + FAULT_EFFECTS[obs.kind].format(
        spoof=obs.spoof, rate=obs.rate) + "."
    if obs.error:
        text += f" The fault itself reported a problem: {obs.error}."
    if obs.errors:
        text += " Errors in this run: " + ", ".join(f"{n} {c:,}" for n, c in obs.errors) + "."
    return _finding(obs, f"Lab fault: {obs.kind}", text)


# --- the client's ports and TIME_WAIT -----------------------------------------------------------

PORTS_TITLE = "Ephemeral ports exhausted (EADDRNOTAVAIL)"


@finding.register
def _ports(obs: PortExhaustion) -> Finding:
    text = f"connect() failed with EADDRNOTAVAIL {obs.failures:,} times ({_pct(obs.failures, obs.own_pct)} of attempts)"
    if obs.first_t is not None:
        text += f", from {fmt_t(obs.first_t)}"
    text += _one_client(obs.clients[0]) if len(obs.clients) == 1 else _per_client(obs)
    if obs.without_described:
        text += f"No EADDRNOTAVAIL in {join_words(list(obs.without_described))}."
    if not obs.time_wait_bound:
        advice = "A wider ip_local_port_range, more source addresses, or keep-alive connections."
    else:
        advice = (
            "tcp_tw_reuse=1 (takes a TIME_WAIT port older than 1 s; needs TCP timestamps; the default 2 "
            "applies to loopback only, so it does not help over veth or a real network), a wider "
            "ip_local_port_range, more source addresses, keep-alive connections, or let the server close first."
        )
    return _finding(obs, PORTS_TITLE, text.strip(), advice)


def _one_client(c: ClientPorts) -> str:
    text = ": the client ran out of ephemeral ports. "
    if c.limit:
        ports, how = c.limit
        share = c.held / ports if ports else 0
        text += f"{c.holder} on the client peaked at {c.held:,}"
        text += f" ≈ the whole ip_local_port_range ({how})" if share >= 0.8 else f" of {ports:,} ports ({how})"
        text += ". "
    else:
        text += f"{c.holder} on the client peaked at {c.held:,}. "
    if c.holder != "TIME_WAIT":
        text += "The ports are held by open connections: more concurrent connections than ports. "
    elif c.reusing:
        text += (
            f"tcp_tw_reuse={c.tw_reuse}{' (on loopback)' if c.tw_reuse == '2' else ''} lets a new connect() take a "
            f"TIME_WAIT port only once it is older than {c.reuse_delay_s:g} s, so the range must cover "
            f"{c.reuse_delay_s:g} s of new connections"
            + (f": about {c.limit[0] / c.reuse_delay_s:,.0f} per second per destination" if c.limit else "")
            + "; a faster burst still fails. "
        )
    else:
        text += (
            f"The side that closes first keeps each port in TIME_WAIT for {TIME_WAIT_SECONDS} s "
            "(TCP_TIMEWAIT_LEN, not a sysctl)"
            + (f", so sustained churn tops out near {c.limit[0] / TIME_WAIT_SECONDS:,.0f} new connections/s "
               "per destination" if c.limit else "")
            + (f"; tcp_tw_reuse is {c.tw_reuse} here" if c.tw_reuse is not None else "")
            + ". "
        )
    return text


def _per_client_rate(rows: list[ClientPorts], seconds: float, unit: str) -> str | None:
    """'17 new connections/s from each client', or '17 ... from node-a and 33 from node-b'."""
    if any(r.limit is None for r in rows):
        return None
    rates = [r.limit[0] / seconds for r in rows if r.limit]
    if len({round(x) for x in rates}) == 1:
        return f"{rates[0]:,.0f} {unit}" + (" from each client" if len(rows) > 1 else "")
    return join_words([f"{x:,.0f}" + (f" {unit}" if i == 0 else "") + f" from {r.place.name}"
                       for i, (x, r) in enumerate(zip(rates, rows))])


def _per_client(obs: PortExhaustion) -> str:
    """Each shard's client has its own ports, range and tcp_tw_reuse: say what each held against its own."""
    rows, hit, known = list(obs.clients), obs.hit, obs.counts_known
    if not known:
        text = ": the clients ran out of ephemeral ports. "
    elif len(hit) == 1:
        text = f", all on {hit[0].place.name}: its client ran out of ephemeral ports. "
    elif len(hit) == len(rows):
        text = f": the clients of all {len(rows)} shards ran out of ephemeral ports. "
    else:
        text = f": the clients of {join_words([r.place.name for r in hit])} ran out of ephemeral ports. "

    def held(r: ClientPorts) -> str:
        part = f"{r.holder} peaked at {r.held:,}"
        if r.limit:
            ports, how = r.limit
            part += f" ≈ its whole ip_local_port_range ({how})" if r.held >= 0.8 * ports else f" of {ports:,} ({how})"
        return part

    def one(r: ClientPorts) -> str:
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
    groups: dict[tuple[str | None, float], list[ClientPorts]] = {}
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
    waiting = obs.waiting
    if waiting:
        rate = _per_client_rate(waiting, TIME_WAIT_SECONDS, "new connections/s per destination")
        same, tw_reuse = common_value([(r.place, r.tw_reuse) for r in waiting])
        text += (
            f"On {join_words([r.place.name for r in waiting])}, the side that closes first keeps each port in "
            f"TIME_WAIT for {TIME_WAIT_SECONDS} s (TCP_TIMEWAIT_LEN, not a sysctl)"
            + (f", so sustained churn tops out near {rate}" if rate else "")
            + (f"; tcp_tw_reuse is {tw_reuse} there" if same and tw_reuse is not None else "")
            + ". "
        )
    return text


@finding.register
def _time_wait(obs: TimeWaitOverflow) -> Finding:
    advice = "Raise tcp_max_tw_buckets, or cut connection churn with keep-alive."
    tail = (", so further closing sockets skipped TIME_WAIT entirely and their ports lost the protection "
            "against late duplicate segments.")
    rows = obs.places
    if not obs.merged:
        r = rows[0]
        text = (
            f"TcpExtTCPTimeWaitOverflow rose by {r.overflow:,} in the {r.place.namespaces[0]} namespace: TIME_WAIT "
            f"peaked at {r.peak:,}" + (f" against tcp_max_tw_buckets={r.buckets}" if r.buckets else "") + tail
        )
        return _finding(obs, "TIME_WAIT bucket limit reached", text, advice)
    # A merged run: one finding, each host's rise against its own limit.
    parts = [f"by {r.overflow:,} in {r.place.namespaces[0]} ("
             + (f"shared by {', '.join(r.place.shards)}; " if len(r.place.shards) > 1 else "")
             + f"TIME_WAIT peaked at {r.peak:,}" + (f" against tcp_max_tw_buckets={r.buckets}" if r.buckets else "")
             + ")" for r in rows]
    text = "TcpExtTCPTimeWaitOverflow rose " + join_words(parts) + tail
    if len({r.buckets for r in rows}) > 1:
        text += " " + differs_text("tcp_max_tw_buckets", [(r.place, r.buckets) for r in rows]) + "."
    return _finding(obs, "TIME_WAIT bucket limit reached", text, advice)


# --- the server's listen queues ------------------------------------------------------------------

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


@finding.register
def _accept_queue(obs: AcceptQueueOverflow) -> Finding:
    hit = obs.hit
    first = hit[0]
    if len(obs.servers) == 1:
        text = (
            f"TcpExtListenOverflows rose by {obs.overflows:,} and TcpExtListenDrops by {obs.drops:,}: the accept "
            f"queue, {_queue_text(first.backlog, first.somaxconn, first.limit)}, was full because the server did "
            "not call accept() fast enough. "
        )
        text += ACCEPT_ABORT_TEXT if first.abort == "1" else ACCEPT_IGNORE_TEXT
    else:
        where = "; ".join(f"{s.place.name}: {s.overflows:,} and {s.drops:,}" for s in hit)
        same_queue, _ = common_value([(s.place, (s.somaxconn, s.limit)) for s in hit])
        queue = (_queue_text(first.backlog, first.somaxconn, first.limit) if same_queue else
                 f"min(listen backlog {first.backlog if first.backlog is not None else '?'}, somaxconn) = "
                 + join_words([f"{'?' if s.limit is None else f'{s.limit:,}'} on {s.place.name}" for s in hit]))
        text = (
            f"TcpExtListenOverflows rose by {obs.overflows:,} and TcpExtListenDrops by {obs.drops:,} over the "
            f"{len(obs.servers)} shards' servers ({where}): the accept queue, {queue}, was full because the server "
            "did not call accept() fast enough. "
        )
        if not same_queue:
            text += differs_text("net.core.somaxconn", [(s.place, s.somaxconn) for s in hit]) + ". "
        aborts = [(s.place, s.abort) for s in hit]
        same_abort, _ = common_value(aborts)
        if same_abort:
            text += ACCEPT_ABORT_TEXT if first.abort == "1" else ACCEPT_IGNORE_TEXT
        else:
            text += (
                differs_text("tcp_abort_on_overflow", aborts) + ": where it is 1 the kernel answered with RST, so "
                "clients saw ECONNRESET; elsewhere it ignored the client's final ACK, so the client's first data "
                "was retransmitted (latency of 1 s or more, or timeouts). "
            )
    if obs.p99_us is not None:
        text += f"p99 latency was {fmt_ms(obs.p99_us)}."
    advice = ("Make the server accept faster (more workers). A bigger backlog and somaxconn only absorb "
              "bursts; under sustained overload they add queueing delay.")
    return _finding(obs, "Accept queue overflow", text.strip(), advice)


SYN_DROP_ADVICE = ("tcp_syncookies=1 keeps the server answering when the queue is full; a bigger "
                   "tcp_max_syn_backlog and listen backlog only help against bursts, not a flood.")
SYN_COOKIE_ADVICE = ("Nothing urgent: cookies are doing their job. A SYN flood or a burst bigger than the queue is "
                     "the cause; raise the listen backlog and tcp_max_syn_backlog if the bursts are legitimate.")


@finding.register
def _syn_queue(obs: SynQueueOverflow) -> Finding:
    text = _syn_one_server(obs.servers[0]) if len(obs.servers) == 1 else _syn_per_server(obs)
    if obs.dropped:
        return _finding(obs, "SYN queue full: SYNs dropped", text, SYN_DROP_ADVICE)
    return _finding(obs, "SYN queue overflowed: SYN cookies sent", text, SYN_COOKIE_ADVICE)


def _syn_one_server(r: SynQueue) -> str:
    held = f"SYN_RECV on the server held at about {r.peak:,}"
    if r.plateau_s:
        held += f" for {r.plateau_s:g} s"
    if r.limit is not None:
        held += f" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = {r.limit:,})"
    syncookies = r.syncookies if r.syncookies is not None else "?"
    if r.qfull_drop > 0:
        return (
            f"{held} while TcpExtTCPReqQFullDrop rose by {r.qfull_drop:,}: the SYN queue was full and, with "
            f"tcp_syncookies={syncookies}, new SYNs were dropped, so real clients "
            "waited for SYN retransmits (1 s, then more) or timed out. Each half-open entry lives until "
            "tcp_synack_retries is exhausted (5 → about 63 s)."
        )
    counter, sent = ("TcpExtSyncookiesSent", r.cookies) if r.cookies else ("TcpExtTCPReqQFullDoCookies", r.do_cookies)
    return (
        f"{held} while {counter} rose by {sent:,}: the SYN queue overflowed and, with "
        f"tcp_syncookies={syncookies}, the kernel answered with SYN cookies "
        "instead of dropping, so real clients still connected."
    )


def _syn_per_server(obs: SynQueueOverflow) -> str:
    """Each shard's server has its own SYN queue, knobs and counters: say which overflowed and how."""
    rows, hit = obs.servers, obs.hit

    def held_on(r: SynQueue) -> str:
        return f"{r.peak:,} on {r.place.name}" + (f" for {r.plateau_s:g} s" if r.plateau_s else "")

    def rises(counter: str, values: list[tuple[SynQueue, int]]) -> str:
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
            f"was full and, with {knob_values_text('tcp_syncookies', [(r.place, r.syncookies) for r in dropped])}, "
            "new SYNs were dropped, so real clients waited for SYN retransmits (1 s, then more) or timed out. Each "
            "half-open entry lives until tcp_synack_retries is exhausted (5 → about 63 s)."
        )
        if cookied:
            text += f" On {join_words([r.place.name for r in cookied])} instead, " + cookie_text
        elif cookie_text:
            text += cookie_text
        return text.strip()
    return f"{held} while {cookie_text}".strip()


# --- connections that went wrong ----------------------------------------------------------------

CLOSE_WAIT_ADVICE = ("Fix the application: close the socket when the peer has closed (read returned 0). No sysctl "
                     "helps: tcp_fin_timeout governs the active closer's orphaned FIN_WAIT2, not CLOSE_WAIT.")
CLOSE_WAIT_CAUSE = "the peer closed its side but the application never called close() on these sockets. "


@finding.register
def _close_wait(obs: CloseWaitLeak) -> Finding:
    title = "CLOSE_WAIT leak in the application"
    if obs.servers == 1:
        g = obs.leaks[0]
        where = "on the server" if g.namespace.rpartition(":")[2] == "server" else "on this host"
        text = (f"CLOSE_WAIT {where} grew from {int(g.start):,} to {int(g.final):,} (about {fmt_number(g.rate)}/s) "
                "and never drained: " + CLOSE_WAIT_CAUSE)
        if g.fds:
            text += (f"The target's open file descriptors went from {g.fds[0]:,} to {g.fds[1]:,}; it will hit its "
                     "open-file limit.")
        return _finding(obs, title, text.strip(), CLOSE_WAIT_ADVICE)
    # A leak lives in one server process: each shard's is stated on its own, never summed.
    parts = []
    for g in obs.leaks:
        part = f"on {g.place.name} from {int(g.start):,} to {int(g.final):,} (about {fmt_number(g.rate)}/s)"
        if g.fds:
            part += f", its target's open files from {g.fds[0]:,} to {g.fds[1]:,}"
        parts.append(part)
    which = (f"on all {obs.servers} shards' servers" if len(obs.leaks) == obs.servers
             else f"on {len(obs.leaks)} of the {obs.servers} shards' servers")
    text = (f"CLOSE_WAIT grew and never drained {which}: " + "; ".join(parts) + ": " + CLOSE_WAIT_CAUSE
            + "An open file per leaked socket: each leaking server will hit its open-file limit.")
    return _finding(obs, title, text, CLOSE_WAIT_ADVICE)


REFUSED_TITLE = "Connections refused"
RESET_TITLE = "Connections reset"
TIMEOUTS_TITLE = "Timeouts"


@finding.register
def _refused(obs: ConnectionsRefused) -> Finding:
    by = _by_shard(obs.by_shard)
    text = (
        f"connect() got ECONNREFUSED {obs.count:,} times" + (f" ({by})" if by else "")
        + (f", first at {fmt_t(obs.first_t)}" if obs.first_t is not None else "")
        + f" ({obs.own_pct:.1f}% of attempts; TcpAttemptFails rose by {obs.attempt_fails:,}): the target answered "
        "the SYN with RST, so nothing was listening on that address and port at the time."
    )
    return _finding(obs, REFUSED_TITLE, text,
                    "Check that the server was up for the whole run (a crash or restart) and the port.")


@finding.register
def _reset(obs: ConnectionsReset) -> Finding:
    by = _by_shard(obs.by_shard)
    text = (
        f"{obs.count:,} requests failed with ECONNRESET/EPIPE" + (f" ({by})" if by else "")
        + (f", first at {fmt_t(obs.first_t)}" if obs.first_t is not None else "")
        + f" ({_pct(obs.count, obs.own_pct)} of attempts; TcpEstabResets rose by {obs.estab_resets:,}): "
        "the peer sent RST on an open connection."
    )
    same_abort, abort = common_value(list(obs.aborts))
    advice = ("Usual causes: the server closed with SO_LINGER 0 or with unread data, it crashed or hit a "
              "limit, or its accept queue overflowed with tcp_abort_on_overflow=1"
              + (f" ({differs_text('it', list(obs.aborts))})." if not same_abort
                 else f" (it is {abort} here)." if abort is not None else "."))
    return _finding(obs, RESET_TITLE, text, advice)


@finding.register
def _timeouts(obs: Timeouts) -> Finding:
    by = _by_shard(obs.by_shard)
    names = ", ".join(f"{name} {n:,}" for name, n in obs.counts.items())
    text = (
        f"{obs.total:,} attempts timed out ({names}" + (f"; {by}" if by else "") + ")"
        + (f", first at {fmt_t(obs.first_t)}" if obs.first_t is not None else "")
        + f" ({obs.own_pct:.1f}% of attempts). Retransmitted segments rose by {obs.retrans:,}"
        + (f", SYN retransmits by {obs.syn_retrans:,}" if obs.syn_retrans else "")
        + ": packets (a SYN, a SYN-ACK or the final ACK) were dropped or the server answered too slowly."
    )
    retries = list(obs.syn_retries)
    same_retries, syn_retries = common_value(retries)
    here = (f"{syn_retries if syn_retries is not None else 6} here" if same_retries
            else knob_values_text("tcp_syn_retries", retries).removeprefix("tcp_syn_retries="))
    advice = ("Look for SYN-queue drops or accept-queue overflow on the server. Without the tool's own timeout, "
              "a connect() to a silent peer hangs until tcp_syn_retries is exhausted "
              f"({here}; 6 → about 127 s).")
    if obs.keepalive_probes:
        probes = [(place, "{} + {} × {} s".format(*knobs)) for place, knobs in obs.keepalive_probes]
        same_probes, after = common_value(probes)
        if not same_probes:
            # Each shard's kernel gives up after its own knobs.
            after = join_words([f"{value} on {join_words(names)}" for value, names in names_by_value(probes).items()])
        text += (f" The connections had SO_KEEPALIVE on: ETIMEDOUT on an idle connection is the keep-alive "
                 f"probes going unanswered, after tcp_keepalive_time + intvl × probes = {after}.")
        advice = ("A peer that vanished is noticed after tcp_keepalive_time + tcp_keepalive_intvl × "
                  "tcp_keepalive_probes (7200 + 75 × 9 s by default); lower them to notice sooner.")
    return _finding(obs, TIMEOUTS_TITLE, text, advice)


# --- failures in general ------------------------------------------------------------------------

# The title of the finding that explains an error, by the rule that words it.
DEDICATED_TITLES = {"port_exhaustion": PORTS_TITLE, "refused": REFUSED_TITLE, "reset": RESET_TITLE,
                    "timeouts": TIMEOUTS_TITLE}


def _names(errors: dict[str, int], top: int = 5) -> str:
    shown = [f"{count:,} × {name}" for name, count in list(errors.items())[:top]]
    rest = len(errors) - top
    if rest > 0:
        shown.append(f"{rest} other error name{'s' if rest > 1 else ''}")
    return ", ".join(shown)


def _explained(rules: tuple[str, ...]) -> list[str]:
    return [f'"{DEDICATED_TITLES[rule]}"' for rule in rules]


def advice_for(errors: dict[str, int]) -> str:
    """What to do about errors no dedicated rule explains: one sentence per kind present."""
    parts = []
    names = list(errors)
    if any(n.startswith("protocol:") for n in names):
        parts.append("The responses did not parse: check that the target speaks what target.protocol says "
                     "and look at one response with curl -v (or ncat for an echo server).")
    if "closed before response" in names:
        parts.append("The server closed connections without answering: look in its logs for a crash, a "
                     "connection or request limit, or an idle timeout shorter than the client's keep-alive.")
    if "stale connection" in names:
        parts.append("Requests sent on reused keep-alive connections found them closed by the server: its idle "
                     "timeout is shorter than the gaps between requests, or it closes after some requests "
                     "(requests_per_connection below its limit avoids it); like wrk, tcpstress does not retry.")
    if any(n.startswith("TLS:") for n in names):
        parts.append("The TLS handshake failed: check tls.ca_file (or --insecure for a self-signed test server), "
                     "tls.server_name and tls.version.")
    if any(n.startswith("HTTP 5") for n in names):
        parts.append("The server answered with 5xx statuses: its own logs say why.")
    if any(n.startswith("HTTP 4") for n in names):
        parts.append("The server refused the requests with 4xx statuses: check target.path, the Host header "
                     "and the method.")
    if any(n.startswith("errno -") for n in names):
        parts.append("A negative errno is a getaddrinfo() error (EAI_*; -9 is EAI_ADDRFAMILY: the source "
                     "addresses and the target are not of the same family, IPv4 against IPv6).")
    known = ("protocol:", "closed before response", "stale connection", "TLS:", "HTTP ", "errno -")
    if any(not n.startswith(known) for n in names):
        parts.append("man 2 connect, man 2 send and man 3 errno say when the kernel returns an errno name.")
    return " ".join(parts)


@finding.register
def _no_success(obs: NoSuccess) -> Finding:
    s = obs.shares
    if not s.failed and not s.in_flight:
        text = "Not one request was attempted: no request succeeded, none failed and none was in flight."
        advice = ("Check that the load had time to start (duration, warm-up, --start-at) and that the "
                  "workers ran (the worker lines of the summary).")
    else:
        parts = []
        if s.failed:
            parts.append(f"{'all ' if not s.in_flight else ''}{s.failed:,} attempts failed ({_names(s.errors)})")
        if s.in_flight:
            parts.append(f"{s.in_flight:,} request{'s were' if s.in_flight != 1 else ' was'} still waiting for a "
                         "response when the run ended")
        text = "Not one request succeeded: " + join_words(parts) + "."
        if s.in_flight and not s.failed:
            text += (" The server accepted the connections and never answered, or answers more slowly than the "
                     "run lasted.")
            advice = "Run longer than one response takes, or check why the server does not answer."
        else:
            explained = _explained(s.explained_by)
            if explained:
                text += f" {join_words(explained)} above explain{'s' if len(explained) == 1 else ''} " + (
                    "them." if not s.uncovered else "some of them.")
            advice = advice_for(s.uncovered)
    text += " This run's rates and latencies describe no successful exchange."
    return _finding(obs, "No request succeeded", text, advice)


@finding.register
def _errors(obs: UnexplainedErrors) -> Finding:
    s = obs.shares
    own = obs.own
    text = (f"{own:,} of {s.requests + s.failed:,} attempts ({s.pct(own):.2g}%) failed with errors no other "
            f"finding explains: {_names(s.uncovered)}.")
    if own < s.failed:
        explained = _explained(s.explained_by)
        text += (f" With the rest, {s.failed:,} attempts ({s.pct(s.failed):.2g}%) failed; {join_words(explained)} "
                 f"{'explains' if len(explained) == 1 else 'explain'} the others.")
    text += " The latencies and rates count successful requests only."
    return _finding(obs, "Requests failed", text, advice_for(s.uncovered))


@finding.register
def _in_flight(obs: ManyInFlight) -> Finding:
    text = (f"{obs.in_flight:,} requests were still waiting for a response when the run ended, against "
            f"{obs.requests:,} that succeeded: the latencies describe the requests fast enough to finish, "
            "not the ones that were not.")
    return _finding(obs, "Many requests unanswered at the end", text,
                    "Run longer than a response takes, or find out why the server is this slow.")


# --- the load -----------------------------------------------------------------------------------

GENERATOR_TITLE = "Generator saturated: results are a lower bound"
SERVER_TITLE = "Server saturated"
SERVER_ADVICE = "More server workers, or a faster server, raise the ceiling; kernel knobs will not."


def _cpu_text(cpu: CpuUse) -> str:
    return f"{cpu.median:.0f}% CPU over {cpu.cores} core{'s' if cpu.cores > 1 else ''} (peak {cpu.peak:.0f}%)"


@finding.register
def _generator(obs: GeneratorSaturated) -> Finding:
    g = obs.generator
    text = (
        f"The generator used a median of {g.median:.0f}% CPU over {g.cores} core{'s' if g.cores > 1 else ''} "
        f"(100% = one full core; peak {g.peak:.0f}%): the load tool itself was the bottleneck. "
        + (f"The achieved {fmt_number(obs.rate)} req/s is a lower bound for the server, not its capacity. "
           if obs.rate else "")
    )
    if obs.target_median is not None:
        text += f"The target used only a median of {obs.target_median:.0f}%."
    return _finding(obs, GENERATOR_TITLE, text.strip(),
                    "Add generator workers (load.workers, up to the free cores) or run the generator elsewhere.")


@finding.register
def _server(obs: ServerSaturated) -> Finding:
    text = (
        f"The target used a median of {_cpu_text(obs.target)}: the server was the bottleneck"
        + (f", so {fmt_number(obs.rate)} req/s is about its capacity for this workload" if obs.rate else "")
        + ". "
    )
    if obs.p99_us is not None:
        text += f"Its p99 latency of {fmt_ms(obs.p99_us)} includes waiting in its queues. "
    if obs.generator_busy:
        text += "The generator was saturated too: both compete for the same cores."
    return _finding(obs, SERVER_TITLE, text.strip(), SERVER_ADVICE)


@finding.register
def _shards_saturated(obs: ShardsSaturated) -> Finding:
    """A merged run: one shard whose generator was CPU-bound makes the merged rate a lower bound."""
    busy, sats, rate = obs.busy, obs.shards, obs.rate
    each = join_words([f"{_cpu_text(cpu)} on {label}" for label, cpu in busy])
    some = f"{len(busy)} of the {len(sats)} shards" if len(busy) < len(sats) else "every shard"
    if obs.role == "generator":
        text = (f"The generator used a median of {each} (100% = one full core): on {some} the load tool itself "
                "was the bottleneck. "
                + (f"The merged {fmt_number(rate)} req/s is a lower bound for the servers, not their capacity. "
                   if rate else ""))
        if obs.others:
            text += ("The targets used " + ("only " if not any(_is_busy(cpu) for _, cpu in obs.others) else "")
                     + "a median of " + join_words([f"{cpu.median:.0f}% on {label}" for label, cpu in obs.others])
                     + ".")
        return _finding(obs, GENERATOR_TITLE, text.strip(),
                        "Add generator workers (load.workers, up to the free cores), more shards, or run the "
                        "generators elsewhere.")
    text = (f"The target used a median of {each}: on {some} the server was the bottleneck"
            + (f", so the merged {fmt_number(rate)} req/s is about the servers' capacity for this workload"
               if rate and len(busy) == len(sats) else "")
            + ". ")
    if obs.p99_us is not None:
        text += f"The merged p99 latency of {fmt_ms(obs.p99_us)} includes waiting in their queues. "
    gens = [label for label, cpu in obs.others if _is_busy(cpu)]
    if gens:
        text += f"The generator was saturated too on {join_words(gens)}: both compete for the same cores."
    return _finding(obs, SERVER_TITLE, text.strip(), SERVER_ADVICE)


def _is_busy(cpu: CpuUse) -> bool:
    return cpu.median >= 0.9 * 100 * cpu.cores


LAG_TITLES = {"generator": "generator CPU-bound", "host": "host busy with other work",
              "ports": "port range crowded", "server": "server too slow for the rate",
              "unknown": "cause not seen in the samples"}


@singledispatch
def lag_seen(cause: LagCause) -> str:
    """What was seen that made the schedule slip, as the finding's "Why:" says it."""
    return "neither the generator, the host, the port range nor the server's figures show why"


@lag_seen.register
def _(cause: PortsCrowded) -> str:
    parts = []
    if cause.eaddrnotavail:
        parts.append(f"{cause.eaddrnotavail:,} connect() calls found no free port (EADDRNOTAVAIL)")
    if cause.crowded and cause.limit:
        parts.append(f"up to {cause.held:,} client sockets held ports of the {cause.limit[0]:,} available "
                     f"({cause.limit[1]})")
    if cause.connect_p99_us is not None:
        parts.append(f"connect() took up to {fmt_ms(cause.connect_p99_us)} at p99 (the kernel searching the range "
                     "for a free port)")
    return "the client's port range was crowded: " + "; ".join(parts)


@lag_seen.register
def _(cause: ServerSlow) -> str:
    parts = []
    if cause.target_median is not None:
        parts.append(f"the target used a median of {cause.target_median:.0f}% CPU over {cause.target_cores} core(s)")
    if cause.overflows:
        parts.append(f"its accept queue overflowed {cause.overflows:,} times (ListenOverflows)")
    if cause.capacity is not None and cause.p50_us is not None and cause.connections is not None:
        parts.append(f"each request took a median of {fmt_ms(cause.p50_us)} to answer, so {cause.connections:,} "
                     f"connections in flight carry at most {fmt_number(round(cause.capacity))}/s")
    if cause.in_flight:
        parts.append(f"{cause.in_flight:,} requests were still waiting for an answer at the end")
    return "the server was slow: " + "; ".join(parts)


@lag_seen.register
def _(cause: GeneratorBound) -> str:
    text = "the generator was CPU-bound"
    if cause.median is not None:
        text += f": a median of {cause.median:.0f}% CPU over {cause.cores} worker(s) (100% = one core each)"
    return text


@lag_seen.register
def _(cause: HostBusy) -> str:
    sampled = "the generator and the target" if cause.target_sampled else "the generator"
    parts = [f"the machine's {cause.cores} core(s) were busy at a median of {cause.cpu:.0f}% (100% = one core), "
             f"{cause.others:.0f}% of it outside {sampled}"]
    if cause.stolen:
        parts.append(f"the hypervisor took {cause.steal:.0f}% (steal)")
    parts.append(f"1-minute load average up to {cause.load1:.1f}")
    return "the host was busy with other work: " + "; ".join(parts)


LAG_ADVICE = {
    PortsCrowded: ("Free ports: a wider net.ipv4.ip_local_port_range, keep-alive, or tcp_tw_reuse; "
                   "the generator's CPU went into connect()'s port search, more workers will not help."),
    ServerSlow: ("Raise load.connections to carry the rate at this response time, or make the server faster "
                 "(more workers); the generator was waiting, not working."),
    GeneratorBound: "Add generator workers (load.workers, up to the free cores), or ask for a lower rate.",
    HostBusy: ("Run again on a quiet machine (or pin the generator to a free core); the generator and the "
               "server were not the limit."),
    CauseUnseen: ("Raise load.connections, or ask for a lower rate; re-run with sampling to see "
                  "the generator's and the host's CPU."),
}


@finding.register
def _lag(obs: OpenModelLag) -> Finding:
    asked = f"{fmt_number(obs.intended_rate)} req/s"
    if obs.ramp:
        asked += (f" after a {obs.ramp:g} s ramp ({fmt_number(round(obs.due_rate, 1))}/s on average over the "
                  "measured phase)")
    text = f"The open model asked for {asked} and started {fmt_number(round(obs.started_rate, 1))}/s"
    if obs.late:
        pct = 100.0 * obs.late / obs.started if obs.started else 0.0
        text += f"; {obs.late:,} requests ({pct:.1f}%) started late, by up to {fmt_ms(obs.max_lag_us)}"
    text += f". Why: {lag_seen(obs.cause)}. "
    if obs.p99_corrected_us is not None and obs.p99_uncorrected_us is not None:
        text += (
            f"p99 measured from each request's intended start is {fmt_ms(obs.p99_corrected_us)}, against "
            f"{fmt_ms(obs.p99_uncorrected_us)} from its actual start: the uncorrected number hides the queueing "
            "(coordinated omission); the corrected one is what users at this rate would see."
        )
    if obs.kept_schedule:
        # The schedule was kept (as the summary's line says), but some requests waited to start:
        # the corrected percentiles carry that wait.
        title = "Open model kept its schedule, but requests waited to start: " + LAG_TITLES[obs.cause.key]
    else:
        title = "Open model fell behind its schedule: " + LAG_TITLES[obs.cause.key]
    return _finding(obs, title, text.strip(), LAG_ADVICE[type(obs.cause)])


# --- a comparison's verdict ---------------------------------------------------------------------


def _share(p: float) -> str:
    return f"{p:.2g}%" if p < 1 else f"{p:.1f}%"


def _errors_or_late(o: Outcome) -> str:
    return f"{o.label} ({_share(o.error_pct)} errors)" if o.error_pct else f"{o.label} (late)"


def verdict_text(v: Verdict) -> list[str]:
    """The verdict's one or two lines: the problem, then which variants fix it, delay it or make it worse."""
    base = v.base
    if v.base_clean:
        worse = [o.label for o in v.worse]
        line = f"{base.label} had no errors and kept up"
        return [line + (f"; worse: {join_words(worse)}" if worse else "; so did every variant") + "."]
    problem = f"{_share(base.error_pct)} of attempts failed" if base.error_pct else "fell behind its schedule"
    if base.first_error_t is not None:
        problem += f" from t={base.first_error_t:g} s"
    parts = []
    if v.fixed:
        parts.append("fixed by " + join_words([o.label for o in v.fixed]))
    if v.nearly:
        parts.append("nearly by " + join_words([f"{o.label} ({_share(o.error_pct)} errors)" for o in v.nearly]))
    for t in sorted({o.first_error_t for o in v.delayed if o.first_error_t is not None}):
        parts.append(f"delayed to t={t:g} s by " + join_words([o.label for o in v.delayed if o.first_error_t == t]))
    if v.same:
        parts.append("not fixed by " + join_words([_errors_or_late(o) for o in v.same]))
    if v.worse:
        parts.append("made worse by " + join_words([_errors_or_late(o) for o in v.worse]))
    return [f"Problem: in {base.label}, {problem}.", (("; ".join(parts)) or "no other variant") + "."]
