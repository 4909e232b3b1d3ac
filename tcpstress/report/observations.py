"""What the rules saw: one small typed class per kind of observation.

A rule measures and returns observations; tcpstress/report/words.py turns
each into a Finding (title, text, advice). So the numbers a rule relies on
are fields with types, tests can check them without parsing English, and
the wording of every finding lives in one module.

An observation knows its own severity (it scales with the impact the
numbers show), the kernel knobs that change the outcome, and its evidence:
the JSON-ready numbers the report prints under the finding, in the order it
prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from tcpstress.report.finding import OUTAGE_PCT, Severity, impact_severity
from tcpstress.report.places import Place, per_place


@dataclass(frozen=True)
class Observation:
    """One thing a rule saw in one run (variant)."""

    variant: str
    rule: ClassVar[str] = ""
    knobs: ClassVar[tuple[str, ...]] = ()
    SEVERITY: ClassVar[Severity] = "warning"  # for the kinds whose severity does not depend on the numbers

    @property
    def severity(self) -> Severity:
        return self.SEVERITY

    def knob_list(self) -> list[str]:
        return list(self.knobs)

    def evidence(self) -> dict[str, Any]:
        raise NotImplementedError


# --- the run itself ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStoppedEarly(Observation):
    reason: str | None  # as the runner recorded it
    rule: ClassVar[str] = "partial"
    SEVERITY: ClassVar[Severity] = "warning"
    NO_REASON: ClassVar[str] = "no reason recorded"

    def evidence(self) -> dict[str, Any]:
        return {"partial_reason": self.reason or self.NO_REASON}


@dataclass(frozen=True)
class WorkersDied(Observation):
    workers: tuple[tuple[str, str], ...]  # (name, how it exited)
    rule: ClassVar[str] = "workers_died"
    SEVERITY: ClassVar[Severity] = "critical"

    def evidence(self) -> dict[str, Any]:
        return {"dead_workers": len(self.workers)}


FAULT_KNOBS: dict[str, tuple[str, ...]] = {
    "syn_flood": ("net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn",
                  "net.ipv4.tcp_synack_retries"),
    "drop_syn": ("net.ipv4.tcp_syn_retries",),
    "drop_fin": ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"),
    "partition": ("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"),
}


@dataclass(frozen=True)
class InjectedFault(Observation):
    kind: str
    at: float
    lasts: float | None
    spoof: str
    rate: float
    error: str | None  # what the fault itself reported going wrong
    settings: tuple[tuple[str, Any], ...]  # the fault's scalar fields as recorded, kind aside
    errors: tuple[tuple[str, int], ...]  # the run's errors, as recorded
    rule: ClassVar[str] = "injected_fault"
    SEVERITY: ClassVar[Severity] = "info"

    def knob_list(self) -> list[str]:
        return list(FAULT_KNOBS[self.kind])

    def evidence(self) -> dict[str, Any]:
        return dict(self.settings)


# --- the client's ports and TIME_WAIT -----------------------------------------------------------


@dataclass(frozen=True)
class ClientPorts:
    """One client place as the port rule sees it."""

    place: Place
    errors: int | None  # EADDRNOTAVAIL its shards' workers counted; None when unknown (or one client)
    tw_peak: int
    est_peak: int
    limit: tuple[int, str] | None  # (ports, the range as text)
    tw_reuse: str | None
    reuse_delay_s: float
    reusing: bool  # tcp_tw_reuse lets connect() take TIME_WAIT ports here

    @property
    def holder(self) -> str:
        return "TIME_WAIT" if self.tw_peak >= self.est_peak else "ESTABLISHED"

    @property
    def held(self) -> int:
        return max(self.tw_peak, self.est_peak)


@dataclass(frozen=True)
class PortExhaustion(Observation):
    failures: int
    first_t: float | None
    error_pct: float  # every error's share of the attempts
    own_pct: float  # EADDRNOTAVAIL's share of the attempts, which sets the severity
    clients: tuple[ClientPorts, ...]
    without: tuple[str, ...]  # variants of the same scenario with no EADDRNOTAVAIL
    without_described: tuple[str, ...]  # the same, each with how it differs
    rule: ClassVar[str] = "port_exhaustion"
    knobs: ClassVar[tuple[str, ...]] = ("net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse")

    @property
    def severity(self) -> Severity:
        return impact_severity(self.own_pct)

    @property
    def counts_known(self) -> bool:
        """A merged run whose shards' workers said how many EADDRNOTAVAIL each had."""
        return any(c.errors for c in self.clients)

    @property
    def hit(self) -> list[ClientPorts]:
        return [c for c in self.clients if c.errors] if self.counts_known else list(self.clients)

    @property
    def waiting(self) -> list[ClientPorts]:
        """The hit clients whose ports sat in TIME_WAIT without tcp_tw_reuse to take them."""
        return [c for c in self.hit if c.holder == "TIME_WAIT" and not c.reusing]

    @property
    def time_wait_bound(self) -> bool:
        """TIME_WAIT held the ports and nothing reused them: the TIME_WAIT advice applies."""
        if len(self.clients) == 1:
            c = self.clients[0]
            return c.holder == "TIME_WAIT" and not c.reusing
        return bool(self.waiting)

    def evidence(self) -> dict[str, Any]:
        if len(self.clients) == 1:
            ev = self._one_client()
        else:
            ev = self._per_client()
        if self.without:
            ev["variants_without"] = list(self.without)
        return ev

    def _one_client(self) -> dict[str, Any]:
        c = self.clients[0]
        ev: dict[str, Any] = {
            "EADDRNOTAVAIL": self.failures, "first_error_t_s": self.first_t,
            "time_wait_peak": c.tw_peak, "established_peak": c.est_peak, "namespace": c.place.namespaces[0],
        }
        if len(c.place.namespaces) > 1:
            ev["namespaces"] = c.place.namespaces
        if c.limit:
            ev.update({"ports": c.limit[0], "port_range": c.limit[1]})
        if c.tw_reuse is not None:
            ev["tcp_tw_reuse"] = c.tw_reuse
        return ev

    def _per_client(self) -> dict[str, Any]:
        rows = self.clients
        ev: dict[str, Any] = {
            "EADDRNOTAVAIL": self.failures, "first_error_t_s": self.first_t,
            # Per-host peaks added up: an upper bound on what the clients held at one moment.
            "time_wait_peak": sum(r.tw_peak for r in rows), "established_peak": sum(r.est_peak for r in rows),
            "namespaces": [ns for r in rows for ns in r.place.namespaces],
        }
        if all(r.limit for r in rows):
            ev["ports"] = sum(r.limit[0] for r in rows if r.limit)
        if any(r.tw_reuse is not None for r in rows):
            ev["tcp_tw_reuse"] = per_place([(r.place, r.tw_reuse) for r in rows])
        ev["shards"] = [{
            "shard": r.place.name, "namespaces": r.place.namespaces, "EADDRNOTAVAIL": r.errors,
            "time_wait_peak": r.tw_peak, "established_peak": r.est_peak,
            "ports": r.limit[0] if r.limit else None, "port_range": r.limit[1] if r.limit else None,
            "tcp_tw_reuse": r.tw_reuse,
        } for r in rows]
        return ev


@dataclass(frozen=True)
class TimeWaitPlace:
    place: Place
    overflow: int  # TcpExtTCPTimeWaitOverflow's rise
    buckets: str | None  # tcp_max_tw_buckets there
    peak: int  # TIME_WAIT's peak there


@dataclass(frozen=True)
class TimeWaitOverflow(Observation):
    places: tuple[TimeWaitPlace, ...]  # one for an ordinary run; every place that overflowed for a merged one
    merged: bool
    rule: ClassVar[str] = "tw_overflow"
    knobs: ClassVar[tuple[str, ...]] = ("net.ipv4.tcp_max_tw_buckets",)
    SEVERITY: ClassVar[Severity] = "warning"

    def evidence(self) -> dict[str, Any]:
        rows = self.places
        if not self.merged:
            r = rows[0]
            return {"TcpExtTCPTimeWaitOverflow": r.overflow, "time_wait_peak": r.peak,
                    "tcp_max_tw_buckets": r.buckets, "namespace": r.place.namespaces[0]}
        return {
            "TcpExtTCPTimeWaitOverflow": sum(r.overflow for r in rows),
            "time_wait_peak": sum(r.peak for r in rows),  # per-host peaks added up: an upper bound
            "tcp_max_tw_buckets": per_place([(r.place, r.buckets) for r in rows]),
            "namespaces": [ns for r in rows for ns in r.place.namespaces],
            "shards": [{"shard": r.place.name, "namespaces": r.place.namespaces,
                        "TcpExtTCPTimeWaitOverflow": r.overflow, "time_wait_peak": r.peak,
                        "tcp_max_tw_buckets": r.buckets} for r in rows],
        }


# --- the server's listen queues ------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptQueue:
    """One server place's accept queue."""

    place: Place
    overflows: int  # TcpExtListenOverflows' rise
    drops: int  # TcpExtListenDrops' rise
    backlog: int | None
    somaxconn: int | None
    limit: int | None  # min(backlog, somaxconn)
    abort: str | None  # tcp_abort_on_overflow


@dataclass(frozen=True)
class AcceptQueueOverflow(Observation):
    servers: tuple[AcceptQueue, ...]
    p99_us: float | None
    rule: ClassVar[str] = "accept_queue"
    knobs: ClassVar[tuple[str, ...]] = ("net.core.somaxconn", "listen backlog", "net.ipv4.tcp_abort_on_overflow")
    SEVERITY: ClassVar[Severity] = "critical"

    @property
    def hit(self) -> list[AcceptQueue]:
        return [s for s in self.servers if s.overflows > 0]

    @property
    def overflows(self) -> int:
        return sum(s.overflows for s in self.servers)

    @property
    def drops(self) -> int:
        return sum(s.drops for s in self.servers)

    def evidence(self) -> dict[str, Any]:
        first = self.hit[0]
        ev: dict[str, Any] = {
            "TcpExtListenOverflows": self.overflows, "TcpExtListenDrops": self.drops,
            "listen_backlog": first.backlog, "somaxconn": first.somaxconn, "accept_queue": first.limit,
            "tcp_abort_on_overflow": first.abort,
        }
        if len(self.servers) > 1:
            ev.update({
                "somaxconn": per_place([(s.place, s.somaxconn) for s in self.servers]),
                "accept_queue": per_place([(s.place, s.limit) for s in self.servers]),
                "tcp_abort_on_overflow": per_place([(s.place, s.abort) for s in self.hit]),
                "shards": [{"shard": s.place.name, "namespaces": s.place.namespaces,
                            "TcpExtListenOverflows": s.overflows, "TcpExtListenDrops": s.drops,
                            "somaxconn": s.somaxconn, "accept_queue": s.limit, "tcp_abort_on_overflow": s.abort}
                           for s in self.servers],
            })
        if self.p99_us is not None:
            ev["p99_us"] = self.p99_us
        return ev


@dataclass(frozen=True)
class SynQueue:
    """One server place's SYN queue."""

    place: Place
    qfull_drop: int
    cookies: int
    do_cookies: int
    peak: int
    plateau_s: float
    syncookies: str | None
    max_syn_backlog: str | None
    limit: int | None

    @property
    def overflowed(self) -> bool:
        return bool(self.qfull_drop or self.cookies or self.do_cookies)


@dataclass(frozen=True)
class SynQueueOverflow(Observation):
    servers: tuple[SynQueue, ...]
    rule: ClassVar[str] = "syn_queue"
    knobs: ClassVar[tuple[str, ...]] = ("net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog",
                                        "net.core.somaxconn", "net.ipv4.tcp_synack_retries")

    @property
    def hit(self) -> list[SynQueue]:
        return [s for s in self.servers if s.overflowed]

    @property
    def dropped(self) -> bool:
        """SYNs were dropped (not answered with cookies) somewhere: real clients waited."""
        return any(s.qfull_drop for s in self.hit)

    @property
    def severity(self) -> Severity:
        return "critical" if self.dropped else "warning"

    def evidence(self) -> dict[str, Any]:
        rows = self.servers
        if len(rows) == 1:
            r = rows[0]
            return {
                "syn_recv_peak": r.peak, "syn_recv_plateau_s": r.plateau_s,
                "TcpExtTCPReqQFullDrop": r.qfull_drop, "TcpExtSyncookiesSent": r.cookies,
                "TcpExtTCPReqQFullDoCookies": r.do_cookies, "tcp_syncookies": r.syncookies,
                "tcp_max_syn_backlog": r.max_syn_backlog, "accept_queue": r.limit,
            }
        return {
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


# --- connections that went wrong ----------------------------------------------------------------


@dataclass(frozen=True)
class CloseWaitGrowth:
    """CLOSE_WAIT that grew in one server place and never drained."""

    place: Place
    namespace: str
    start: float
    final: float
    peak: float
    rate: float  # per second
    fds: tuple[int, int] | None  # the target's open files, first and last sample


@dataclass(frozen=True)
class CloseWaitLeak(Observation):
    servers: int  # server places in the run
    leaks: tuple[CloseWaitGrowth, ...]
    rule: ClassVar[str] = "close_wait"
    SEVERITY: ClassVar[Severity] = "critical"

    def evidence(self) -> dict[str, Any]:
        if self.servers == 1:
            g = self.leaks[0]
            ev: dict[str, Any] = {"close_wait_start": int(g.start), "close_wait_final": int(g.final),
                                  "close_wait_peak": int(g.peak), "growth_per_s": round(g.rate, 1),
                                  "namespace": g.namespace}
            if g.fds:
                ev["target_fds_start"], ev["target_fds_final"] = g.fds
            return ev
        shards = []
        for g in self.leaks:
            entry: dict[str, Any] = {"shard": g.place.name, "namespace": g.namespace,
                                     "close_wait_start": int(g.start), "close_wait_final": int(g.final),
                                     "close_wait_peak": int(g.peak), "growth_per_s": round(g.rate, 1)}
            if g.fds:
                entry["target_fds_start"], entry["target_fds_final"] = g.fds
            shards.append(entry)
        return {"close_wait_final": sum(int(g.final) for g in self.leaks),
                "growth_per_s": round(sum(g.rate for g in self.leaks), 1),
                "namespaces": [g.namespace for g in self.leaks], "shards": shards}


@dataclass(frozen=True)
class ConnectionsRefused(Observation):
    count: int
    first_t: float | None
    attempt_fails: int  # TcpAttemptFails' rise on the clients
    out_rsts: int  # TcpOutRsts' rise on the servers
    error_pct: float  # every error's share of the attempts
    own_pct: float  # these errors' share, which sets the severity
    by_shard: dict[str, int] | None
    rule: ClassVar[str] = "refused"

    @property
    def severity(self) -> Severity:
        return impact_severity(self.own_pct)

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {"ECONNREFUSED": self.count, "first_error_t_s": self.first_t,
                              "TcpAttemptFails": self.attempt_fails, "server_TcpOutRsts": self.out_rsts,
                              "error_pct": round(self.error_pct, 2)}
        if self.by_shard is not None:
            ev["shards"] = self.by_shard
        return ev


@dataclass(frozen=True)
class ConnectionsReset(Observation):
    count: int
    first_t: float | None
    estab_resets: int  # TcpEstabResets' rise
    aborts: tuple[tuple[Place, str | None], ...]  # tcp_abort_on_overflow per server place
    own_pct: float  # these errors' share, which sets the severity
    by_shard: dict[str, int] | None
    rule: ClassVar[str] = "reset"
    knobs: ClassVar[tuple[str, ...]] = ("net.ipv4.tcp_abort_on_overflow",)

    @property
    def severity(self) -> Severity:
        return impact_severity(self.own_pct)

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {"ECONNRESET+EPIPE": self.count, "first_error_t_s": self.first_t,
                              "TcpEstabResets": self.estab_resets,
                              "tcp_abort_on_overflow": per_place(list(self.aborts))}
        if self.by_shard is not None:
            ev["shards"] = self.by_shard
        return ev


@dataclass(frozen=True)
class Timeouts(Observation):
    counts: dict[str, int]  # each timeout error name
    first_t: float | None
    syn_retrans: int
    retrans: int
    syn_retries: tuple[tuple[Place, str | None], ...]  # tcp_syn_retries per client place
    own_pct: float  # these errors' share, which sets the severity
    by_shard: dict[str, int] | None
    # With SO_KEEPALIVE and ETIMEDOUT: tcp_keepalive_time, _intvl and _probes per client place; else empty.
    keepalive_probes: tuple[tuple[Place, tuple[str | None, str | None, str | None]], ...] = ()
    rule: ClassVar[str] = "timeouts"

    @property
    def severity(self) -> Severity:
        return impact_severity(self.own_pct)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def knob_list(self) -> list[str]:
        if self.keepalive_probes:
            return ["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]
        return ["net.ipv4.tcp_syn_retries", "net.ipv4.tcp_synack_retries"]

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {**self.counts, "first_error_t_s": self.first_t, "TcpExtTCPSynRetrans": self.syn_retrans,
                              "TcpRetransSegs": self.retrans, "tcp_syn_retries": per_place(list(self.syn_retries))}
        if self.by_shard is not None:
            ev["shards"] = self.by_shard
        return ev


# --- failures in general ------------------------------------------------------------------------

# Thresholds on the share of attempts that failed. Critical from the same share
# as the dedicated rules (an outage for the run's users); a warning from 0.1%,
# where the latency percentiles, which describe successful requests only,
# start to hide the failures (the p99.9 at 0.1%, the p99 at 1%).
CRITICAL_PCT = OUTAGE_PCT
WARNING_PCT = 0.1


def share_severity(pct: float) -> Severity:
    if pct >= CRITICAL_PCT:
        return "critical"
    return "warning" if pct >= WARNING_PCT else "info"


@dataclass(frozen=True)
class ErrorShares:
    """A run's outcome counts as the general rules see them."""

    requests: int
    errors: dict[str, int]  # every error name with a count > 0, most frequent first
    in_flight: int
    uncovered: dict[str, int]  # the errors no dedicated rule explains
    explained_by: tuple[str, ...]  # the dedicated rules that explain the others, in their order

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def pct(self, count: int) -> float:
        attempts = self.requests + self.failed
        return 100.0 * count / attempts if attempts else 0.0


TOP_NAMES = 5


@dataclass(frozen=True)
class NoSuccess(Observation):
    shares: ErrorShares
    rule: ClassVar[str] = "no_success"
    SEVERITY: ClassVar[Severity] = "critical"

    def evidence(self) -> dict[str, Any]:
        s = self.shares
        return {"requests": 0, "error_total": s.failed, "in_flight_at_end": s.in_flight,
                "errors": dict(list(s.errors.items())[:TOP_NAMES])}


@dataclass(frozen=True)
class UnexplainedErrors(Observation):
    shares: ErrorShares
    rule: ClassVar[str] = "errors"

    @property
    def own(self) -> int:
        return sum(self.shares.uncovered.values())

    @property
    def severity(self) -> Severity:
        return share_severity(self.shares.pct(self.own))

    def evidence(self) -> dict[str, Any]:
        s = self.shares
        return {"errors": s.uncovered, "error_total": s.failed, "requests": s.requests,
                "error_pct": round(s.pct(s.failed), 2), "unexplained_pct": round(s.pct(self.own), 2)}


@dataclass(frozen=True)
class ManyInFlight(Observation):
    in_flight: int
    requests: int
    rule: ClassVar[str] = "in_flight"
    SEVERITY: ClassVar[Severity] = "warning"

    def evidence(self) -> dict[str, Any]:
        return {"in_flight_at_end": self.in_flight, "requests": self.requests}


# --- the load -----------------------------------------------------------------------------------


class CpuUse(NamedTuple):
    """A process's CPU over the measured phase (100 = one core)."""

    median: float
    peak: float
    cores: int


@dataclass(frozen=True)
class GeneratorSaturated(Observation):
    generator: CpuUse
    rate: float | None  # requests per second achieved
    target_median: float | None
    rule: ClassVar[str] = "generator_saturated"
    SEVERITY: ClassVar[Severity] = "warning"

    def evidence(self) -> dict[str, Any]:
        g = self.generator
        ev: dict[str, Any] = {"generator_cpu_median": round(g.median, 1), "generator_cpu_peak": round(g.peak, 1),
                              "generator_cores": g.cores, "requests_per_s": self.rate}
        if self.target_median is not None:
            ev["target_cpu_median"] = round(self.target_median, 1)
        return ev


@dataclass(frozen=True)
class ServerSaturated(Observation):
    target: CpuUse
    rate: float | None
    p99_us: float | None
    generator_busy: bool
    rule: ClassVar[str] = "server_saturated"
    SEVERITY: ClassVar[Severity] = "warning"

    def evidence(self) -> dict[str, Any]:
        t = self.target
        ev: dict[str, Any] = {"target_cpu_median": round(t.median, 1), "target_cpu_peak": round(t.peak, 1),
                              "target_cores": t.cores}
        if self.p99_us is not None:
            ev["p99_us"] = self.p99_us
        return ev


def _busy(cpu: CpuUse) -> bool:
    return cpu.median >= 0.9 * 100 * cpu.cores


@dataclass(frozen=True)
class ShardsSaturated(Observation):
    """A merged run: the generators (or targets) that were CPU-bound, each judged on its own shard."""

    shards: tuple[tuple[str, CpuUse], ...]  # every shard whose process of this role was sampled
    rate: float | None
    others: tuple[tuple[str, CpuUse], ...]  # the other role's CPU on the busy shards
    p99_us: float | None
    SEVERITY: ClassVar[Severity] = "warning"

    role: ClassVar[str] = ""

    @property
    def busy(self) -> list[tuple[str, CpuUse]]:
        return [(label, cpu) for label, cpu in self.shards if _busy(cpu)]

    def evidence(self) -> dict[str, Any]:
        which = "generator" if self.role == "generator" else "target"
        worst = max(self.busy, key=lambda ls: ls[1].median / ls[1].cores)[1]
        ev: dict[str, Any] = {
            f"{which}_cpu_median": round(worst.median, 1), f"{which}_cpu_peak": round(worst.peak, 1),
            f"{which}_cores": worst.cores,
            "shards": {label: {"cpu_median": round(cpu.median, 1), "cpu_peak": round(cpu.peak, 1),
                               "cores": cpu.cores} for label, cpu in self.shards},
        }
        if self.role == "generator":
            ev["requests_per_s"] = self.rate
            if self.others:
                ev["target_cpu_median"] = {label: round(cpu.median, 1) for label, cpu in self.others}
        elif self.p99_us is not None:
            ev["p99_us"] = self.p99_us
        return ev


@dataclass(frozen=True)
class ShardGeneratorsSaturated(ShardsSaturated):
    rule: ClassVar[str] = "generator_saturated"
    role: ClassVar[str] = "generator"


@dataclass(frozen=True)
class ShardServersSaturated(ShardsSaturated):
    rule: ClassVar[str] = "server_saturated"
    role: ClassVar[str] = "target"


# Why an open model fell behind: one of these, the strongest evidence first (see lag.py).


@dataclass(frozen=True)
class LagCause:
    key: ClassVar[str] = "unknown"

    def evidence(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class PortsCrowded(LagCause):
    eaddrnotavail: int  # connect() calls that found no free port
    held: int  # TIME_WAIT + ESTABLISHED peaks on the client
    limit: tuple[int, str] | None
    crowded: bool  # held near the whole range
    connect_p99_us: float | None  # set when connect() was slow searching the range
    key: ClassVar[str] = "ports"

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {}
        if self.eaddrnotavail:
            ev["eaddrnotavail"] = self.eaddrnotavail
        if self.crowded and self.limit:
            ev["ports_held_peak"], ev["ports_available"] = self.held, self.limit[0]
        if self.connect_p99_us is not None:
            ev["connect_p99_us"] = self.connect_p99_us
        return ev


@dataclass(frozen=True)
class ServerSlow(LagCause):
    target_median: float | None  # set when the target was CPU-bound
    target_cores: int
    overflows: int  # TcpExtListenOverflows
    connections: int | None  # set with the two below when they cap the rate (Little's law)
    p50_us: float | None
    capacity: float | None
    in_flight: int | None
    key: ClassVar[str] = "server"

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {}
        if self.target_median is not None:
            ev["target_cpu_median"] = round(self.target_median, 1)
        if self.overflows:
            ev["listen_overflows"] = self.overflows
        if self.capacity is not None:
            ev["capacity_per_s"] = round(self.capacity, 1)
            ev["p50_us"] = self.p50_us
        if self.in_flight:
            ev["in_flight_at_end"] = self.in_flight
        return ev


@dataclass(frozen=True)
class GeneratorBound(LagCause):
    median: float | None
    cores: int
    key: ClassVar[str] = "generator"

    def evidence(self) -> dict[str, Any]:
        return {"generator_cpu_median": round(self.median, 1) if self.median is not None else None}


@dataclass(frozen=True)
class HostBusy(LagCause):
    cores: int
    cpu: float  # the whole machine's median busy CPU (100 = one core)
    others: float  # of it, outside the sampled processes
    steal: float
    stolen: bool
    load1: float
    target_sampled: bool
    key: ClassVar[str] = "host"

    def evidence(self) -> dict[str, Any]:
        return {"host_cpu_median": round(self.cpu, 1), "others_cpu_median": round(self.others, 1),
                "host_steal_median": round(self.steal, 1), "host_load1_peak": self.load1, "host_cores": self.cores}


@dataclass(frozen=True)
class CauseUnseen(LagCause):
    key: ClassVar[str] = "unknown"


@dataclass(frozen=True)
class OpenModelLag(Observation):
    intended_rate: float
    due_rate: float
    started_rate: float
    achieved_rate: float
    ramp: float
    started: int
    late: int  # requests that started late
    max_lag_us: float
    p99_corrected_us: float | None  # both set, or neither
    p99_uncorrected_us: float | None
    kept_schedule: bool  # the rate was kept; only the corrected percentiles carry the wait
    cause: LagCause = field(default_factory=CauseUnseen)
    rule: ClassVar[str] = "open_model_lag"

    @property
    def severity(self) -> Severity:
        return "info" if self.kept_schedule else "warning"

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "intended_rate": self.intended_rate, "scheduled_rate": round(self.due_rate, 1),
            "started_rate": round(self.started_rate, 1), "achieved_rate": round(self.achieved_rate, 1),
            "late_starts": self.late, "max_lag_us": self.max_lag_us, "cause": self.cause.key}
        ev.update({k: v for k, v in self.cause.evidence().items() if v is not None})
        if self.p99_corrected_us is not None and self.p99_uncorrected_us is not None:
            ev["p99_corrected_us"], ev["p99_uncorrected_us"] = self.p99_corrected_us, self.p99_uncorrected_us
        ev["kept_schedule"] = self.kept_schedule
        return ev



# --- a comparison's verdict (verdict.py judges, words.verdict_text says it) ---------------------


@dataclass(frozen=True)
class Outcome:
    """How one run of a comparison fared."""

    label: str
    error_pct: float
    first_error_t: float | None
    late: bool  # an open model that fell behind its schedule


@dataclass(frozen=True)
class Verdict:
    """The other variants against the first run, each in one class; all but worse empty when base is clean."""

    base: Outcome
    fixed: tuple[Outcome, ...] = ()
    nearly: tuple[Outcome, ...] = ()  # a few errors left
    delayed: tuple[Outcome, ...] = ()  # errors began later
    same: tuple[Outcome, ...] = ()  # not fixed
    worse: tuple[Outcome, ...] = ()

    @property
    def base_clean(self) -> bool:
        return self.base.error_pct == 0 and not self.base.late
