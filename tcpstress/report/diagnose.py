"""Findings: rules over a saved run that say what went wrong and which knob matters.

Pure (no trio, click or matplotlib) so the CLI can print findings right after
a run and tests can feed it fixture folders. Everything here is computed from
the files of a run folder (see tcpstress/results.py for the layout):

    runs = [load_run(folder) for folder in folders]
    for line in format_findings(diagnose(runs)):
        print(line)

Each rule looks at one run (and, for comparisons, at the other variants),
returns zero or more Finding objects whose text cites the numbers it saw,
and names the kernel knobs that change the outcome. In a run merged from
shards (tcpstress merge) each shard's client and server is a host of its
own: the rules speak of every shard's (see Place below), not the first's. The kernel facts behind
the wording are in the project's FACTS.md; where the seed article disagrees,
FACTS.md wins (e.g. tcp_fin_timeout does not touch TIME_WAIT or CLOSE_WAIT).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from hdrh.histogram import HdrHistogram

from tcpstress import knowledge
from tcpstress.results import (
    PROCESSES_FILE,
    SAMPLES_FILE,
    ResultError,
    RunResult,
    load_result,
    merge_error_counts,
    new_histogram,
    percentiles,
    read_hlog,
)

STATES = (
    "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
)

# Columns of samples.csv that are levels, not per-interval deltas: summing them is meaningless.
GAUGE_COLUMNS = frozenset(STATES) | {
    "sockstat_inuse", "sockstat_orphan", "sockstat_tw", "sockstat_alloc", "sockstat_mem", "TcpCurrEstab",
}

# Counters worth a column in the comparison table, in the order a reader meets the failures.
KEY_COUNTERS = (
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtSyncookiesSent",
    "TcpExtTCPTimeWaitOverflow", "TcpExtTWRecycled", "TcpAttemptFails", "TcpEstabResets",
    "TcpRetransSegs", "TcpOutRsts",
)

HLOG_FILES = {
    "total": "latency-total.hlog",
    "connect": "latency-connect.hlog",
    "ttfb": "latency-ttfb.hlog",
    "corrected": "latency-corrected.hlog",
}

COMPARISON_FILE = "comparison.json"
COMPARISON_FORMAT = "tcpstress-comparison/1"

SEVERITIES = ("critical", "warning", "info")

# TCP_TIMEWAIT_LEN: fixed in mainline Linux, no sysctl changes it.
TIME_WAIT_SECONDS = 60

LISTEN_BACKLOG_TEXT = (
    "The backlog the server passes to listen(); the kernel caps it at net.core.somaxconn. "
    "It sizes the accept queue and also caps the SYN queue."
)


def knob_text(knob: str) -> str:
    """What a knob does, in plain English, from the knowledge table ("" when it is not a sysctl)."""
    if knob == "listen backlog":
        return LISTEN_BACKLOG_TEXT
    try:
        return knowledge.knob(knob).effect
    except knowledge.UnknownName:
        return ""


# --- loading -----------------------------------------------------------------


@dataclass
class RunData:
    """One run folder, loaded: result.json, the sampler's rows and the latency logs."""

    result: RunResult
    samples: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    hlogs: dict[str, list[tuple[float, float, HdrHistogram]]] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.result.name
        self._merged: dict[str, HdrHistogram] = {}

    # -- identity

    @property
    def folder(self) -> Path | None:
        return self.result.folder

    @property
    def scenario(self) -> dict[str, Any]:
        s = self.result.data.get("scenario")
        return s if isinstance(s, dict) else {}

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    # -- namespaces: "host" when there is no lab, else "client" / "server"

    @property
    def namespaces(self) -> list[str]:
        seen: list[str] = []
        for row in self.samples:
            if row["ns"] not in seen:
                seen.append(row["ns"])
        for ns in self.summary.get("states", {}) or {}:
            if ns not in seen:
                seen.append(ns)
        return seen

    def side_ns(self, side: str) -> str:
        """The namespace that holds the client's (or server's) sockets.

        A merged shard run labels them "HOST:client" (or "HOST:host"); this
        returns the first shard's, a lower bound on what all shards held
        together. The rules use side_namespaces() (every shard's) instead.
        """
        names = self.namespaces
        for wanted in (side, "host"):
            if wanted in names:
                return wanted
            prefixed = [n for n in names if n.endswith(":" + wanted)]
            if prefixed:
                return prefixed[0]
        return "host"

    def side_namespaces(self, side: str) -> list[str]:
        """Every namespace that holds one side's sockets: [side_ns(side)] for an
        ordinary run; for a merged run one per shard, in shard order, each the
        shard's own "LABEL:side" (or "LABEL:host" when it had no such side)."""
        names = self.namespaces
        found = []
        for label in self.shard_labels:
            ns = next((f"{label}:{w}" for w in (side, "host") if f"{label}:{w}" in names), None)
            if ns is not None:
                found.append(ns)
        return found or [self.side_ns(side)]

    # -- shards of a merged run (tcpstress merge)

    @property
    def shard_labels(self) -> list[str]:
        """A merged run's shard labels ("node-a", "vm#1"), in shard order; [] for an ordinary run."""
        shards = self.result.data.get("shards")
        entries = [s for s in shards if isinstance(s, dict) and s.get("label")] if isinstance(shards, list) else []
        entries.sort(key=lambda s: s["index"] if isinstance(s.get("index"), int) else 0)
        labels = list(dict.fromkeys(str(s["label"]) for s in entries))
        if not labels:
            # Namespaces of an ordinary run never hold a colon; merge's always do.
            labels = list(dict.fromkeys(ns.rpartition(":")[0] for ns in self.namespaces if ":" in ns))
        return labels

    def shard_machine(self, label: str) -> str:
        """The hostname a shard ran on (merge labels shards that share one "HOST#I")."""
        for s in self.result.data.get("shards") or []:
            if isinstance(s, dict) and s.get("label") == label and s.get("hostname"):
                return str(s["hostname"])
        return re.sub(r"#\d+$", "", label)

    def shard_sysctl(self, knob: str, side: str, label: str) -> str | None:
        """A knob as one shard read it back: never another shard's value, which may differ."""
        sysctls = self.result.data.get("sysctls") or {}
        own = [space for space in sysctls if space.startswith(f"{label}:")]
        for space in (f"{label}:{side}", f"{label}:host", *own):
            value = (sysctls.get(space) or {}).get(knob)
            if value is not None:
                return str(value)
        return None

    def shard_errors(self, match: Callable[[str], bool]) -> dict[str, int] | None:
        """Matching errors per shard label, as each shard's workers counted them; None when unknown.

        The merged intervals only hold the sum; the worker list keeps each
        worker's shard and its own error counts.
        """
        labels = {s.get("index"): str(s.get("label")) for s in self.result.data.get("shards") or []
                  if isinstance(s, dict) and s.get("label")}
        counts = {label: 0 for label in labels.values()}
        seen = False
        for w in self.summary.get("workers") or []:
            if not (isinstance(w, dict) and w.get("shard") in labels and isinstance(w.get("errors"), dict)):
                continue
            seen = True
            counts[labels[w["shard"]]] += sum(int(n) for name, n in w["errors"].items() if match(str(name)))
        return counts if seen else None

    # -- sampler series

    def series(self, column: str, ns: str) -> tuple[list[float], list[float]]:
        ts, vs = [], []
        for row in self.samples:
            if row["ns"] == ns and row.get(column) is not None:
                ts.append(row["t"])
                vs.append(row[column])
        return ts, vs

    def peak(self, state: str, ns: str) -> int:
        _, vs = self.series(state, ns)
        if vs:
            return int(max(vs))
        entry = (self.summary.get("states", {}) or {}).get(ns, {}).get(state, {})
        return int(entry.get("peak", 0) or 0) if isinstance(entry, dict) else 0

    def final(self, state: str, ns: str) -> int:
        _, vs = self.series(state, ns)
        if vs:
            return int(vs[-1])
        entry = (self.summary.get("states", {}) or {}).get(ns, {}).get(state, {})
        return int(entry.get("final", 0) or 0) if isinstance(entry, dict) else 0

    def counter(self, name: str, ns: str | None = None) -> int:
        """A kernel counter's rise over the run (a gauge's last value), in one namespace or summed over all."""
        spaces = [ns] if ns is not None else self.namespaces
        total = 0
        summary_counters = self.summary.get("counters", {}) or {}
        for space in spaces:
            from_summary = (summary_counters.get(space) or {}).get(name)
            if from_summary is not None:
                total += int(from_summary)
            elif name in GAUGE_COLUMNS:
                values = self.series(name, space)[1]
                total += int(values[-1]) if values else 0  # a level: its last reading, not a sum
            else:
                total += int(sum(self.series(name, space)[1]))
        return total

    # -- sysctls as read back from the kernel

    def sysctl(self, knob: str, side: str) -> str | None:
        sysctls = self.result.data.get("sysctls") or {}
        for space in (side, "host", *sysctls.keys()):
            value = (sysctls.get(space) or {}).get(knob)
            if value is not None:
                return str(value)
        return None

    # -- load

    @property
    def errors(self) -> dict[str, int]:
        errs = self.summary.get("errors")
        if isinstance(errs, dict):
            return {str(k): int(v) for k, v in errs.items()}
        return merge_error_counts(iv.get("errors", {}) for iv in self.result.intervals)

    def error_count(self, match: Callable[[str], bool]) -> int:
        return sum(n for name, n in self.errors.items() if match(name))

    def first_error_t(self, match: Callable[[str], bool]) -> float | None:
        for iv in self.result.intervals:
            if any(n > 0 and match(name) for name, n in (iv.get("errors") or {}).items()):
                return float(iv.get("t", 0.0))
        return None

    @property
    def requests(self) -> int:
        return int(self.summary.get("requests", 0) or 0)

    @property
    def error_total(self) -> int:
        total = self.summary.get("error_total")
        return int(total) if total is not None else sum(self.errors.values())

    @property
    def error_pct(self) -> float:
        """Failed attempts as a share of all attempts (completed requests + errors)."""
        attempts = self.requests + self.error_total
        return 100.0 * self.error_total / attempts if attempts else 0.0

    # -- latency

    def merged(self, metric: str) -> HdrHistogram | None:
        if metric not in self.hlogs:
            return None
        if metric not in self._merged:
            total = new_histogram()
            for _, _, h in self.hlogs[metric]:
                total.add(h)
            self._merged[metric] = total
        return self._merged[metric]

    def latency_us(self, metric: str = "total") -> dict[str, float] | None:
        hist = self.merged(metric)
        if hist is not None and hist.get_total_count() > 0:
            return percentiles(hist)
        pct = (self.summary.get("latency_us") or {}).get(metric)
        return pct if isinstance(pct, dict) and pct.get("count") else None

    # -- processes

    def cpu(self, role: str) -> tuple[list[float], list[float]]:
        ts, vs = [], []
        for row in self.processes:
            if row["role"] == role and row.get("cpu_percent") is not None:
                ts.append(row["t"])
                vs.append(row["cpu_percent"])
        return ts, vs

    def cores(self, role: str) -> int:
        """How many cores a role could use at most: its processes, capped by the machine.

        Each generator worker is one single-threaded trio loop, so a worker
        saturates at 100% (one core) whatever the machine has.
        """
        n = 0
        # A merged run's roles are "LABEL:generator": each shard ran load.workers of its own.
        label, _, base = role.rpartition(":")
        if base == "generator":
            load = self.scenario.get("load") if isinstance(self.scenario.get("load"), dict) else {}
            workers = self.summary.get("workers")
            if isinstance(load.get("workers"), int):
                n = load["workers"]
            elif isinstance(workers, list):
                n = len([w for w in workers if not label or (isinstance(w, dict)
                                                          and str(w.get("name", "")).startswith(f"{label}:"))])
        if not n:
            for row in self.processes:
                if row["role"] == role:
                    n = max(n, len(re.findall(r"\d+", str(row.get("pids") or ""))))
        cpu_count = self.result.data.get("cpu_count")
        if isinstance(cpu_count, int) and cpu_count > 0 and n:
            n = min(n, cpu_count)
        return max(n, 1)


def _number(text: str, where: str) -> float | int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ResultError(f"{where}: {text!r} is not a number: truncated or hand-edited?") from None
    if math.isnan(value) or math.isinf(value):
        raise ResultError(f"{where}: {text!r} is not a finite number")
    return value


def _read_csv(path: Path, required: tuple[str, ...], text_columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a sampler CSV, every field checked: a truncated line is an error, not a guess."""
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except OSError as e:
        raise ResultError(f"{path}: cannot read: {e.strerror}") from None
    if text and not text.endswith("\n"):
        raise ResultError(f"{path}: last line is cut off: truncated?")
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        return []
    missing = [c for c in required if c not in header]
    if missing:
        raise ResultError(f"{path}: header lacks {', '.join(missing)}: not a tcpstress {path.name}")
    rows = []
    for lineno, fields in enumerate(reader, 2):
        if not fields:
            continue
        if len(fields) != len(header):
            raise ResultError(
                f"{path}:{lineno}: {len(fields)} fields where the header has {len(header)}: truncated or hand-edited?"
            )
        row: dict[str, Any] = {}
        for name, value in zip(header, fields):
            if name in text_columns:
                row[name] = value
            else:
                row[name] = _number(value, f"{path}:{lineno}: column {name}")
        if row.get("t") is None:
            raise ResultError(f"{path}:{lineno}: empty t")
        rows.append(row)
    return rows


def _check_intervals(result: RunResult) -> None:
    path = result.folder / "result.json" if result.folder else "result.json"
    for i, iv in enumerate(result.intervals):
        if not isinstance(iv, dict) or not isinstance(iv.get("t"), (int, float)):
            raise ResultError(f"{path}: intervals[{i}] has no numeric t: hand-edited?")
        if not isinstance(iv.get("errors", {}), dict):
            raise ResultError(f"{path}: intervals[{i}].errors must be an object of name: count")


def load_run(folder: Path, label: str | None = None) -> RunData:
    """Load one run folder; raises ResultError (one line) on anything unreadable."""
    folder = Path(folder)
    result = load_result(folder)
    _check_intervals(result)
    samples = _read_csv(folder / SAMPLES_FILE, ("t", "ns"), ("ns",))
    processes = _read_csv(folder / PROCESSES_FILE, ("t", "role", "cpu_percent"), ("role", "pids"))
    hlogs = {}
    for metric, name in HLOG_FILES.items():
        if (folder / name).is_file():
            hlogs[metric] = read_hlog(folder / name)
    return RunData(result=result, samples=samples, processes=processes, hlogs=hlogs, label=label or "")


def as_run_data(run: RunData | RunResult) -> RunData:
    """Accept a bare RunResult (e.g. straight after a run) as RunData without samples."""
    if isinstance(run, RunData):
        return run
    if run.folder is not None and (Path(run.folder) / "result.json").is_file():
        return load_run(run.folder)
    return RunData(result=run)


# --- small helpers for rules ------------------------------------------------


@dataclass
class Finding:
    """One diagnosis: what happened, the numbers that show it, the knobs that matter."""

    severity: str  # "critical" | "warning" | "info"
    title: str
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    knobs: list[str] = field(default_factory=list)
    variant: str | None = None
    rule: str = ""
    advice: str = ""  # what to do about it, kept apart from what was seen


def _is(*names: str) -> Callable[[str], bool]:
    wanted = {n.upper() for n in names}
    return lambda name: name.upper() in wanted


def _is_timeout(name: str) -> bool:
    upper = name.upper()
    return "TIMEDOUT" in upper or "TIMEOUT" in upper


def _fmt(n: float) -> str:
    """A count or rate as a reader wants it: 12,345 / 3.2 / 0.05."""
    if isinstance(n, int) or float(n).is_integer():
        return f"{int(n):,}"
    if abs(n) >= 100:
        return f"{n:,.0f}"
    if abs(n) >= 1:
        return f"{n:.1f}"
    return f"{n:.2g}"


def _ms(us: float) -> str:
    ms = us / 1000.0
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _t(seconds: float) -> str:
    return f"t={seconds:g} s"


# --- where a side's sockets lived: one namespace, or one per shard --------------
#
# A merged run (tcpstress merge) keeps every shard's kernel samples, counters
# and read-back sysctls under the shard's label. Each shard's client (and
# server) is a host of its own, with its own ports, queues and knobs, so a
# rule states its numbers per shard and adds them up only where a sum means
# something: counter rises add exactly (each counts its own host's events);
# per-shard peaks of a state add up only to an upper bound on what the hosts
# held at one moment, as they need not have peaked together; limits such as
# ip_local_port_range or somaxconn are each host's own and are never summed
# into one host's limit; a knob that differs between shards is reported as
# differing, never as one shard's value.
#
# Shards that share a hostname (merge labels them "HOST#I": processes on one
# machine) sampled one network namespace: each saw all their sockets and the
# same counters and knobs. They are one Place, whose values are the largest
# any of them saw, not their sum, which would count the same sockets twice.


@dataclass
class Place:
    """One side's namespace: an ordinary run's, or one machine's in a merged run."""

    side: str  # "client" | "server" | "host": the side asked for, which picks the read-back knobs
    namespaces: list[str]  # an ordinary run: one; a merged run: one per shard that ran there
    shards: list[str] = field(default_factory=list)  # their labels; [] for an ordinary run
    machine: str = ""

    @property
    def name(self) -> str:
        if len(self.shards) > 1:
            return f"{self.machine} ({', '.join(self.shards)})"
        return self.shards[0] if self.shards else self.namespaces[0]


def _group_places(run: RunData, namespaces: list[str], side_of: Callable[[str], str]) -> list[Place]:
    places: dict[tuple[str, str], Place] = {}
    for ns in namespaces:
        label, sep, base = ns.rpartition(":")
        if not sep:
            places[("", ns)] = Place(side_of(ns), [ns])
            continue
        machine = run.shard_machine(label)
        place = places.setdefault((machine, base), Place(side_of(base), [], [], machine))
        place.namespaces.append(ns)
        place.shards.append(label)
    return list(places.values())


def side_places(run: RunData, side: str) -> list[Place]:
    """Where one side's sockets lived: one place for an ordinary run, one per machine for a merged one."""
    return _group_places(run, run.side_namespaces(side), lambda _: side)


def _side_of(ns: str) -> str:
    return "client" if ns == "client" else "server" if ns == "server" else "host"


def all_places(run: RunData) -> list[Place]:
    """Every sampled namespace as a place, in shard order for a merged run."""
    labels = run.shard_labels
    order = {label: i for i, label in enumerate(labels)}
    places = _group_places(run, run.namespaces, _side_of)
    return sorted(places, key=lambda p: order.get(p.shards[0], len(order)) if p.shards else -1)


def _peak(run: RunData, state: str, place: Place) -> int:
    return max(run.peak(state, ns) for ns in place.namespaces)


def _count(run: RunData, name: str, place: Place) -> int:
    return max(run.counter(name, ns) for ns in place.namespaces)


def _knob(run: RunData, knob: str, place: Place) -> str | None:
    if not place.shards:
        return run.sysctl(knob, place.side)
    for label in place.shards:
        value = run.shard_sysctl(knob, place.side, label)
        if value is not None:
            return value
    return None


def _side_count(run: RunData, name: str, side: str) -> int:
    """A counter's rise on one side: summed over the shards' hosts (each counted its own events)."""
    return sum(_count(run, name, p) for p in side_places(run, side))


def _total_count(run: RunData, name: str) -> int:
    """A counter's rise over every namespace (a namespace that shards shared counted once)."""
    if not run.shard_labels:
        return run.counter(name)
    return sum(_count(run, name, p) for p in all_places(run))


def _common(pairs: list[tuple[Place, Any]]) -> tuple[bool, Any]:
    """(True, the value) when every place has the same value, else (False, None)."""
    values = list(dict.fromkeys(v for _, v in pairs))
    return (True, values[0]) if len(values) == 1 else (False, None)


def _per_place(pairs: list[tuple[Place, Any]]) -> Any:
    """For evidence: the value all places share, else {place: value}."""
    same, value = _common(pairs)
    return value if same else {p.name: v for p, v in pairs}


def _differs(knob: str, pairs: list[tuple[Place, Any]]) -> str:
    """'tcp_tw_reuse differs between the shards: 0 on node-a and node-b, 1 on node-c'."""
    return f"{knob} differs between the shards: " + ", ".join(
        f"{'unknown' if value is None else str(value).replace(chr(9), '–')} on {_join(names)}"
        for value, names in _groups(pairs).items())


def _knob_text(knob: str, pairs: list[tuple[Place, Any]]) -> str:
    """'tcp_syncookies=0', or 'tcp_syncookies=0 on node-a and 1 on node-b' when the shards differ."""
    same, value = _common(pairs)
    if same:
        return f"{knob}={value if value is not None else '?'}"
    return f"{knob}=" + _join([f"{'?' if v is None else v} on {_join(names)}" for v, names in _groups(pairs).items()])


def _groups(pairs: list[tuple[Place, Any]]) -> dict[Any, list[str]]:
    """Place names by value, in first-seen order."""
    groups: dict[Any, list[str]] = {}
    for place, value in pairs:
        groups.setdefault(value, []).append(place.name)
    return groups


def _errors_by_shard(run: RunData, match: Callable[[str], bool]) -> tuple[dict[str, int] | None, str]:
    """A merged run's matching errors per shard, and 'by shard: node-a 3, node-b 0' for the text; (None, '') otherwise."""
    counts = run.shard_errors(match) if len(run.shard_labels) > 1 else None
    if not counts or not any(counts.values()):
        return None, ""
    return counts, "by shard: " + ", ".join(f"{label} {n:,}" for label, n in counts.items())


def port_range(value: str | None) -> tuple[int, int] | None:
    """'40000\\t40999' as read back from /proc/sys -> (40000, 40999)."""
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    low, high = int(parts[0]), int(parts[1])
    return (low, high) if high >= low else None


def scenario_get(run: "RunData", dotted: str) -> Any:
    """A field of the resolved scenario by its dotted name ("server.backlog"), or None."""
    node: Any = run.scenario
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def source_address_count(run: RunData) -> int:
    value = scenario_get(run, "connection.source_addresses")
    if isinstance(value, (list, tuple)):
        return max(len(value), 1)
    return 1


def port_limit(run: RunData, place: Place | None = None) -> tuple[int, str] | None:
    """Ephemeral ports the client (or one client place) can hold towards one target, and how it was computed."""
    knob = "net.ipv4.ip_local_port_range"
    rng = port_range(run.sysctl(knob, "client") if place is None else _knob(run, knob, place))
    if rng is None:
        return None
    size = rng[1] - rng[0] + 1
    sources = source_address_count(run)
    how = f"{rng[0]}–{rng[1]}, {size:,} ports"
    if sources > 1:
        how += f" × {sources} source addresses"
    return size * sources, how


def listen_backlog(run: RunData) -> int | None:
    """The backlog passed to listen(): known only for the built-in server."""
    if scenario_get(run, "server.builtin") is not True:
        return None
    backlog = scenario_get(run, "server.backlog")
    return backlog if isinstance(backlog, int) and backlog > 0 else None


def accept_queue_limit(run: RunData, place: Place | None = None) -> tuple[int | None, int | None, int | None]:
    """(listen backlog, somaxconn, effective accept queue = min of the known ones), of a server place if given."""
    backlog = listen_backlog(run)
    soma = run.sysctl("net.core.somaxconn", "server") if place is None else _knob(run, "net.core.somaxconn", place)
    somaxconn = int(soma) if soma and soma.strip().isdigit() else None
    known = [v for v in (backlog, somaxconn) if v is not None]
    return backlog, somaxconn, (min(known) if known else None)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = tree
    return out


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} items" if value else "none"
    text = str(value).replace("\t", "–")
    return text if len(text) <= 30 else text[:27] + "..."


def variant_differences(run: RunData, other: RunData, limit: int = 3) -> list[str]:
    """How `other` differs from `run`: read-back knobs first, then scenario fields."""
    diffs = []
    mine = run.result.data.get("sysctls") or {}
    theirs = other.result.data.get("sysctls") or {}
    for side in sorted(set(mine) | set(theirs)):
        a, b = mine.get(side) or {}, theirs.get(side) or {}
        for knob in sorted(set(a) | set(b)):
            if a.get(knob) != b.get(knob) and b.get(knob) is not None:
                diffs.append(f"{knob}={_short(b[knob])}")
    flat_a, flat_b = _flatten(run.scenario), _flatten(other.scenario)
    for key in sorted(set(flat_a) | set(flat_b)):
        if "variant" in key or key.endswith("name") or key.endswith("description"):
            continue
        if flat_a.get(key) != flat_b.get(key) and key in flat_b:
            diffs.append(f"{key.rsplit('.', 1)[-1]}={_short(flat_b[key])}")
    seen: list[str] = []
    for d in diffs:
        if d not in seen:
            seen.append(d)
    return seen[:limit]


def _describe_variant(run: RunData, other: RunData) -> str:
    diffs = variant_differences(run, other)
    return f"{other.label} ({', '.join(diffs)})" if diffs else other.label


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _duration(run: RunData) -> float:
    d = run.summary.get("duration_s")
    if isinstance(d, (int, float)) and d > 0:
        return float(d)
    return float(sum(iv.get("duration", 1.0) for iv in run.result.intervals)) or 1.0


def _median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _measured(ts: list[float], vs: list[float], duration: float) -> list[float]:
    """Values from the measured phase: warm-up and wind-down samples do not count."""
    picked = [v for t, v in zip(ts, vs) if 0 <= t <= duration]
    return picked or vs


# --- rules ---------------------------------------------------------------------

Rule = Callable[[RunData, list[RunData]], list[Finding]]


def _tw_reuse_delay_s(run: RunData, place: Place) -> float:
    """tcp_tw_reuse_delay in seconds (1 s where the kernel has no such knob)."""
    value = _knob(run, "net.ipv4.tcp_tw_reuse_delay", place)
    return int(value) / 1000.0 if value and value.strip().isdigit() and int(value) > 0 else 1.0


def _is_loopback(run: RunData) -> bool:
    target = run.result.data.get("target")
    host = (target.get("host") if isinstance(target, dict) else None) or scenario_get(run, "target.host") or ""
    return host.startswith("127.") or host in ("::1", "localhost")


def rule_port_exhaustion(run: RunData, runs: list[RunData]) -> list[Finding]:
    is_addr = _is("EADDRNOTAVAIL")
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
        described = [_describe_variant(run, o) for o in clean]
        text += f"No EADDRNOTAVAIL in {_join(described)}."
    if not general_advice:
        advice = "A wider ip_local_port_range, more source addresses, or keep-alive connections."
    else:
        advice = (
            "tcp_tw_reuse=1 (takes a TIME_WAIT port older than 1 s; needs TCP timestamps; the default 2 "
            "applies to loopback only, so it does not help over veth or a real network), a wider "
            "ip_local_port_range, more source addresses, keep-alive connections, or let the server close first."
        )
    severity = "critical" if run.error_pct >= 1 else "warning"
    return [Finding(
        severity, "Ephemeral ports exhausted (EADDRNOTAVAIL)", text.strip(), evidence,
        ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"], run.label, "port_exhaustion", advice,
    )]


def _reusing(run: RunData, tw_reuse: str | None) -> bool:
    return tw_reuse == "1" or (tw_reuse == "2" and _is_loopback(run))


def _ports_of_one_client(run: RunData, place: Place, failures: int,
                         first: float | None) -> tuple[str, dict[str, Any], bool]:
    """(text, evidence, whether the TIME_WAIT advice applies) for one client namespace."""
    tw_peak = _peak(run, "TIME_WAIT", place)
    est_peak = _peak(run, "ESTABLISHED", place)
    limit = port_limit(run, place)
    tw_reuse = _knob(run, "net.ipv4.tcp_tw_reuse", place)
    evidence: dict[str, Any] = {
        "EADDRNOTAVAIL": failures, "first_error_t_s": first,
        "time_wait_peak": tw_peak, "established_peak": est_peak, "namespace": place.namespaces[0],
    }
    if len(place.namespaces) > 1:
        evidence["namespaces"] = place.namespaces
    text = f"connect() failed with EADDRNOTAVAIL {failures:,} times"
    if first is not None:
        text += f", from {_t(first)}"
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
    return _join([f"{x:,.0f}" + (f" {unit}" if i == 0 else "") + f" from {r.place.name}"
                  for i, (x, r) in enumerate(zip(rates, rows))])


def _ports_per_client(run: RunData, places: list[Place], failures: int,
                      first: float | None) -> tuple[str, dict[str, Any], bool]:
    """Each shard's client has its own ports, range and tcp_tw_reuse: say what each held against its own."""
    by_shard = run.shard_errors(_is("EADDRNOTAVAIL"))
    rows = []
    for p in places:
        tw_reuse = _knob(run, "net.ipv4.tcp_tw_reuse", p)
        rows.append(_ClientPorts(
            place=p, errors=None if by_shard is None else sum(by_shard.get(label, 0) for label in p.shards),
            tw_peak=_peak(run, "TIME_WAIT", p), est_peak=_peak(run, "ESTABLISHED", p), limit=port_limit(run, p),
            tw_reuse=tw_reuse, reuse_delay_s=_tw_reuse_delay_s(run, p), reusing=_reusing(run, tw_reuse)))
    known = any(r.errors for r in rows)
    hit = [r for r in rows if r.errors] if known else rows
    text = f"connect() failed with EADDRNOTAVAIL {failures:,} times"
    if first is not None:
        text += f", from {_t(first)}"
    if not known:
        text += ": the clients ran out of ephemeral ports. "
    elif len(hit) == 1:
        text += f", all on {hit[0].place.name}: its client ran out of ephemeral ports. "
    elif len(hit) == len(rows):
        text += f": the clients of all {len(rows)} shards ran out of ephemeral ports. "
    else:
        text += f": the clients of {_join([r.place.name for r in hit])} ran out of ephemeral ports. "

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
        text += f"on each of {_join([r.place.name for r in rows])}, {held(rows[0])}"
        if known and all(r.errors is not None for r in rows):
            text += f", with {_join([f'{r.errors:,}' for r in rows])} EADDRNOTAVAIL"
        text += ". "
    else:
        text += "; ".join(map(one, rows)) + ". "
    held_sum = sum(r.held for r in rows)
    if all(r.limit for r in rows):
        ports_sum = sum(r.limit[0] for r in rows if r.limit)
        text += (f"Added up, the clients held at most {held_sum:,} of their {ports_sum:,} ports: the sum of "
                 "per-host peaks, which need not have come at the same moment. ")
    reuse_pairs = [(r.place, r.tw_reuse) for r in rows]
    same_reuse, _ = _common(reuse_pairs)
    if not same_reuse:
        text += _differs("tcp_tw_reuse", reuse_pairs) + ". "
    open_rows = [r for r in hit if r.holder != "TIME_WAIT"]
    if open_rows:
        text += (f"On {_join([r.place.name for r in open_rows])}, the ports are held by open connections: more "
                 "concurrent connections than ports. ")
    tw_rows = [r for r in hit if r.holder == "TIME_WAIT"]
    groups: dict[tuple[str | None, float], list[_ClientPorts]] = {}
    for r in (r for r in tw_rows if r.reusing):
        groups.setdefault((r.tw_reuse, r.reuse_delay_s), []).append(r)
    for (tw_reuse, delay), group in groups.items():
        rate = _per_client_rate(group, delay, "per second per destination")
        text += (
            f"On {_join([r.place.name for r in group])}, tcp_tw_reuse={tw_reuse}"
            f"{' (on loopback)' if tw_reuse == '2' else ''} lets a new connect() take a TIME_WAIT port only once "
            f"it is older than {delay:g} s, so the range must cover {delay:g} s of new connections"
            + (f": about {rate}" if rate else "") + "; a faster burst still fails. "
        )
    waiting = [r for r in tw_rows if not r.reusing]
    if waiting:
        rate = _per_client_rate(waiting, TIME_WAIT_SECONDS, "new connections/s per destination")
        same, tw_reuse = _common([(r.place, r.tw_reuse) for r in waiting])
        text += (
            f"On {_join([r.place.name for r in waiting])}, the side that closes first keeps each port in TIME_WAIT "
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
        evidence["tcp_tw_reuse"] = _per_place(reuse_pairs)
    evidence["shards"] = [{
        "shard": r.place.name, "namespaces": r.place.namespaces, "EADDRNOTAVAIL": r.errors,
        "time_wait_peak": r.tw_peak, "established_peak": r.est_peak,
        "ports": r.limit[0] if r.limit else None, "port_range": r.limit[1] if r.limit else None,
        "tcp_tw_reuse": r.tw_reuse,
    } for r in rows]
    return text, evidence, bool(waiting)


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
    rows = [(p, _count(run, "TcpExtListenOverflows", p), _count(run, "TcpExtListenDrops", p)) for p in places]
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
    aborts = [(p, _knob(run, "net.ipv4.tcp_abort_on_overflow", p)) for p in hit]
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
            "somaxconn": _per_place([(p, limits[id(p)][1]) for p in places]),
            "accept_queue": _per_place([(p, limits[id(p)][2]) for p in places]),
            "tcp_abort_on_overflow": _per_place(aborts),
            "shards": [{"shard": p.name, "namespaces": p.namespaces, "TcpExtListenOverflows": o,
                        "TcpExtListenDrops": d, "somaxconn": limits[id(p)][1], "accept_queue": limits[id(p)][2],
                        "tcp_abort_on_overflow": _knob(run, "net.ipv4.tcp_abort_on_overflow", p)}
                       for p, o, d in rows],
        })
        where = "; ".join(f"{p.name}: {o:,} and {d:,}" for p, o, d in rows if o > 0)
        queues = [(p, limits[id(p)]) for p in hit]
        same_queue, _ = _common([(p, q[1:]) for p, q in queues])
        queue = (_queue_text(backlog, somaxconn, limit) if same_queue else
                 f"min(listen backlog {backlog if backlog is not None else '?'}, somaxconn) = "
                 + _join([f"{'?' if q[2] is None else f'{q[2]:,}'} on {p.name}" for p, q in queues]))
        text = (
            f"TcpExtListenOverflows rose by {overflows:,} and TcpExtListenDrops by {drops:,} over the "
            f"{len(places)} shards' servers ({where}): the accept queue, {queue}, was full because the server did "
            "not call accept() fast enough. "
        )
        if not same_queue:
            text += _differs("net.core.somaxconn", [(p, q[1]) for p, q in queues]) + ". "
        same_abort, _ = _common(aborts)
        if same_abort:
            text += ACCEPT_ABORT_TEXT if abort == "1" else ACCEPT_IGNORE_TEXT
        else:
            text += (
                _differs("tcp_abort_on_overflow", aborts) + ": where it is 1 the kernel answered with RST, so "
                "clients saw ECONNRESET; elsewhere it ignored the client's final ACK, so the client's first data "
                "was retransmitted (latency of 1 s or more, or timeouts). "
            )
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"p99 latency was {_ms(lat['p99'])}."
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
        place=place, qfull_drop=_count(run, "TcpExtTCPReqQFullDrop", place),
        cookies=_count(run, "TcpExtSyncookiesSent", place), do_cookies=_count(run, "TcpExtTCPReqQFullDoCookies", place),
        peak=peak, plateau_s=_plateau_seconds(ts, vs, peak),
        syncookies=_knob(run, "net.ipv4.tcp_syncookies", place),
        max_syn_backlog=_knob(run, "net.ipv4.tcp_max_syn_backlog", place),
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
            f" ({_join([f'{n:,} on {r.place.name}' for r, n in values])})" if len(values) > 1 else "")

    held = "SYN_RECV on the servers held at about " + _join([held_on(r) for r in hit])
    same_limit, limit = _common([(r.place, r.limit) for r in hit])
    if same_limit and limit is not None:
        held += f" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = {limit:,})"
    elif not same_limit:
        held += (" (the listen backlog caps the SYN queue too: min(backlog, somaxconn) = "
                 + _join([f"{'?' if r.limit is None else f'{r.limit:,}'} on {r.place.name}" for r in hit]) + ")")
    evidence: dict[str, Any] = {
        # Per-server peaks added up: an upper bound on what the servers held at one moment.
        "syn_recv_peak": sum(r.peak for r in rows),
        "TcpExtTCPReqQFullDrop": sum(r.qfull_drop for r in rows),
        "TcpExtSyncookiesSent": sum(r.cookies for r in rows),
        "TcpExtTCPReqQFullDoCookies": sum(r.do_cookies for r in rows),
        "tcp_syncookies": _per_place([(r.place, r.syncookies) for r in rows]),
        "tcp_max_syn_backlog": _per_place([(r.place, r.max_syn_backlog) for r in rows]),
        "accept_queue": _per_place([(r.place, r.limit) for r in rows]),
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
            f"{_knob_text('tcp_syncookies', [(r.place, r.syncookies) for r in cookied])}, the kernel answered "
            "with SYN cookies instead of dropping, so real clients still connected."
        )
    if len({r.syncookies for r in rows}) > 1:
        cookie_text += " " + _differs("tcp_syncookies", [(r.place, r.syncookies) for r in rows]) + "."
    if dropped:
        text = (
            f"{held} while {rises('TcpExtTCPReqQFullDrop', [(r, r.qfull_drop) for r in dropped])}: the SYN queue "
            f"was full and, with {_knob_text('tcp_syncookies', [(r.place, r.syncookies) for r in dropped])}, new "
            "SYNs were dropped, so real clients waited for SYN retransmits (1 s, then more) or timed out. Each "
            "half-open entry lives until tcp_synack_retries is exhausted (5 → about 63 s)."
        )
        if cookied:
            text += f" On {_join([r.place.name for r in cookied])} instead, " + cookie_text
        elif cookie_text:
            text += cookie_text
        return [_syn_drop_finding(run, text.strip(), evidence)]
    return [_syn_cookie_finding(run, f"{held} while {cookie_text}".strip(), evidence)]


def _plateau_seconds(ts: list[float], vs: list[float], peak: float) -> float:
    """How long a level stayed within 10% of its peak (a queue held at its cap)."""
    if peak <= 0 or len(ts) < 2:
        return 0.0
    step = _median([b - a for a, b in zip(ts, ts[1:])]) or 1.0
    near = sum(1 for v in vs if v >= 0.9 * peak)
    return round(near * step, 1) if near >= 2 else 0.0


def rule_time_wait_overflow(run: RunData, runs: list[RunData]) -> list[Finding]:
    rows = []
    for place in all_places(run):
        overflow = _count(run, "TcpExtTCPTimeWaitOverflow", place)
        if overflow <= 0:
            continue
        # tcp_max_tw_buckets is per namespace: each host's own value, never another shard's.
        rows.append((place, overflow, _knob(run, "net.ipv4.tcp_max_tw_buckets", place),
                     _peak(run, "TIME_WAIT", place)))
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
    text = "TcpExtTCPTimeWaitOverflow rose " + _join(parts) + tail
    if len({buckets for _, _, buckets, _ in rows}) > 1:
        text += " " + _differs("tcp_max_tw_buckets", [(p, b) for p, _, b, _ in rows]) + "."
    evidence = {
        "TcpExtTCPTimeWaitOverflow": sum(o for _, o, _, _ in rows),
        "time_wait_peak": sum(pk for _, _, _, pk in rows),  # per-host peaks added up: an upper bound
        "tcp_max_tw_buckets": _per_place([(p, b) for p, _, b, _ in rows]),
        "namespaces": [ns for p, _, _, _ in rows for ns in p.namespaces],
        "shards": [{"shard": p.name, "namespaces": p.namespaces, "TcpExtTCPTimeWaitOverflow": o,
                    "time_wait_peak": pk, "tcp_max_tw_buckets": b} for p, o, b, pk in rows],
    }
    return [Finding("warning", "TIME_WAIT bucket limit reached", text, evidence, ["net.ipv4.tcp_max_tw_buckets"],
                    run.label, "tw_overflow", advice)]


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
        f"CLOSE_WAIT {where} grew from {int(start):,} to {int(final):,} (about {_fmt(rate)}/s) and never drained: "
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
        part = (f"on {place.name} from {int(g['start']):,} to {int(g['final']):,} (about {_fmt(g['rate'])}/s)")
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
    refused = run.error_count(_is("ECONNREFUSED"))
    if refused:
        first = run.first_error_t(_is("ECONNREFUSED"))
        attempt_fails = _side_count(run, "TcpAttemptFails", "client")
        out_rsts = _side_count(run, "TcpOutRsts", "server")
        evidence = {"ECONNREFUSED": refused, "first_error_t_s": first, "TcpAttemptFails": attempt_fails,
                    "server_TcpOutRsts": out_rsts, "error_pct": round(run.error_pct, 2)}
        by_shard, by = _errors_by_shard(run, _is("ECONNREFUSED"))
        if by_shard is not None:
            evidence["shards"] = by_shard
        text = (
            f"connect() got ECONNREFUSED {refused:,} times" + (f" ({by})" if by else "")
            + (f", first at {_t(first)}" if first is not None else "")
            + f" ({run.error_pct:.1f}% of attempts; TcpAttemptFails rose by {attempt_fails:,}): the target answered "
            "the SYN with RST, so nothing was listening on that address and port at the time."
        )
        findings.append(Finding("critical" if run.error_pct >= 1 else "warning", "Connections refused", text,
                                evidence, [], run.label, "refused",
                                "Check that the server was up for the whole run (a crash or restart) and the port."))
    reset = run.error_count(_is("ECONNRESET", "EPIPE"))
    if reset:
        first = run.first_error_t(_is("ECONNRESET", "EPIPE"))
        estab_resets = _total_count(run, "TcpEstabResets")
        aborts = [(p, _knob(run, "net.ipv4.tcp_abort_on_overflow", p)) for p in side_places(run, "server")]
        same_abort, abort = _common(aborts)
        evidence = {"ECONNRESET+EPIPE": reset, "first_error_t_s": first, "TcpEstabResets": estab_resets,
                    "tcp_abort_on_overflow": _per_place(aborts)}
        by_shard, by = _errors_by_shard(run, _is("ECONNRESET", "EPIPE"))
        if by_shard is not None:
            evidence["shards"] = by_shard
        text = (
            f"{reset:,} requests failed with ECONNRESET/EPIPE" + (f" ({by})" if by else "")
            + (f", first at {_t(first)}" if first is not None else "")
            + f" (TcpEstabResets rose by {estab_resets:,}): the peer sent RST on an open connection."
        )
        advice = ("Usual causes: the server closed with SO_LINGER 0 or with unread data, it crashed or hit a "
                  "limit, or its accept queue overflowed with tcp_abort_on_overflow=1"
                  + (f" ({_differs('it', aborts)})." if not same_abort
                     else f" (it is {abort} here)." if abort is not None else "."))
        findings.append(Finding("critical" if run.error_pct >= 1 else "warning", "Connections reset", text,
                                evidence, ["net.ipv4.tcp_abort_on_overflow"], run.label, "reset", advice))
    return findings


def rule_timeouts(run: RunData, runs: list[RunData]) -> list[Finding]:
    timeouts = {name: n for name, n in run.errors.items() if _is_timeout(name) and n > 0}
    if not timeouts:
        return []
    total = sum(timeouts.values())
    first = run.first_error_t(_is_timeout)
    clients = side_places(run, "client")
    syn_retrans = _side_count(run, "TcpExtTCPSynRetrans", "client")
    retrans = _total_count(run, "TcpRetransSegs")
    retries = [(p, _knob(run, "net.ipv4.tcp_syn_retries", p)) for p in clients]
    same_retries, syn_retries = _common(retries)
    evidence = {**timeouts, "first_error_t_s": first, "TcpExtTCPSynRetrans": syn_retrans,
                "TcpRetransSegs": retrans, "tcp_syn_retries": _per_place(retries)}
    by_shard, by = _errors_by_shard(run, _is_timeout)
    if by_shard is not None:
        evidence["shards"] = by_shard
    names = ", ".join(f"{name} {n:,}" for name, n in timeouts.items())
    text = (
        f"{total:,} attempts timed out ({names}" + (f"; {by}" if by else "") + ")"
        + (f", first at {_t(first)}" if first is not None else "")
        + f" ({run.error_pct:.1f}% of attempts). Retransmitted segments rose by {retrans:,}"
        + (f", SYN retransmits by {syn_retrans:,}" if syn_retrans else "")
        + ": packets (a SYN, a SYN-ACK or the final ACK) were dropped or the server answered too slowly."
    )
    here = (f"{syn_retries if syn_retries is not None else 6} here" if same_retries
            else _knob_text("tcp_syn_retries", retries).removeprefix("tcp_syn_retries="))
    advice = ("Look for SYN-queue drops or accept-queue overflow on the server. Without the tool's own timeout, "
              "a connect() to a silent peer hangs until tcp_syn_retries is exhausted "
              f"({here}; 6 → about 127 s).")
    knobs = ["net.ipv4.tcp_syn_retries", "net.ipv4.tcp_synack_retries"]
    keepalive = scenario_get(run, "connection.so_keepalive")
    if keepalive and timeouts.get("ETIMEDOUT"):
        # With SO_KEEPALIVE, ETIMEDOUT on an idle connection is the probes giving up.
        probes = [(p, "{} + {} × {} s".format(*(_knob(run, f"net.ipv4.tcp_keepalive_{k}", p)
                                                 for k in ("time", "intvl", "probes")))) for p in clients]
        same_probes, after = _common(probes)
        if not same_probes:
            # Each shard's kernel gives up after its own knobs.
            after = _join([f"{value} on {_join(names)}" for value, names in _groups(probes).items()])
        text += (f" The connections had SO_KEEPALIVE on: ETIMEDOUT on an idle connection is the keep-alive "
                 f"probes going unanswered, after tcp_keepalive_time + intvl × probes = {after}.")
        advice = ("A peer that vanished is noticed after tcp_keepalive_time + tcp_keepalive_intvl × "
                  "tcp_keepalive_probes (7200 + 75 × 9 s by default); lower them to notice sooner.")
        knobs = ["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]
    return [Finding("critical" if run.error_pct >= 1 else "warning", "Timeouts", text, evidence,
                    knobs, run.label, "timeouts", advice)]


def _saturation(run: RunData, role: str) -> tuple[float, float, int] | None:
    """(median CPU %, peak CPU %, cores) over the measured phase, or None without samples."""
    ts, vs = run.cpu(role)
    values = _measured(ts, vs, _duration(run))
    if len(values) < 3:
        return None
    return _median(values), max(values), run.cores(role)


def _busy(sat: tuple[float, float, int] | None) -> bool:
    return sat is not None and sat[0] >= 0.9 * 100 * sat[2]


def _shard_saturations(run: RunData, role: str) -> list[tuple[str, tuple[float, float, int]]]:
    """A merged run's (shard label, saturation) for each shard whose process of this role was sampled."""
    return [(label, sat) for label in run.shard_labels if (sat := _saturation(run, f"{label}:{role}")) is not None]


def _generator_busy(run: RunData) -> bool:
    """The generator, or in a merged run any shard's generator, was CPU-bound."""
    if run.shard_labels:
        return any(_busy(sat) for _, sat in _shard_saturations(run, "generator"))
    return _busy(_saturation(run, "generator"))


def _cpu_text(median: float, peak: float, cores: int) -> str:
    return f"{median:.0f}% CPU over {cores} core{'s' if cores > 1 else ''} (peak {peak:.0f}%)"


def _saturated_shards(run: RunData, role: str) -> list[Finding]:
    """A merged run: each shard's generator and target were processes of their own, on their own cores.

    One shard whose generator was CPU-bound makes the merged rate a lower
    bound; a CPU average over shards would hide it, so each is judged alone.
    """
    sats = _shard_saturations(run, role)
    busy = [(label, sat) for label, sat in sats if _busy(sat)]
    if not busy:
        return []
    which = "generator" if role == "generator" else "target"
    each = _join([f"{_cpu_text(*sat)} on {label}" for label, sat in busy])
    worst = max(busy, key=lambda ls: ls[1][0] / ls[1][2])[1]
    evidence: dict[str, Any] = {
        f"{which}_cpu_median": round(worst[0], 1), f"{which}_cpu_peak": round(worst[1], 1),
        f"{which}_cores": worst[2],
        "shards": {label: {"cpu_median": round(sat[0], 1), "cpu_peak": round(sat[1], 1), "cores": sat[2]}
                   for label, sat in sats},
    }
    rate = run.summary.get("requests_per_s")
    names = [label for label, _ in busy]
    some = f"{len(busy)} of the {len(sats)} shards" if len(busy) < len(sats) else "every shard"
    if role == "generator":
        evidence["requests_per_s"] = rate
        text = (f"The generator used a median of {each} (100% = one full core): on {some} the load tool itself "
                "was the bottleneck. "
                + (f"The merged {_fmt(rate)} req/s is a lower bound for the servers, not their capacity. "
                   if rate else ""))
        targets = [(label, sat) for label, sat in _shard_saturations(run, "target") if label in names]
        if targets:
            evidence["target_cpu_median"] = {label: round(sat[0], 1) for label, sat in targets}
            text += ("The targets used " + ("only " if not any(_busy(sat) for _, sat in targets) else "")
                     + "a median of " + _join([f"{sat[0]:.0f}% on {label}" for label, sat in targets]) + ".")
        return [Finding("warning", "Generator saturated: results are a lower bound", text.strip(), evidence, [],
                        run.label, "generator_saturated",
                        "Add generator workers (load.workers, up to the free cores), more shards, or run the "
                        "generators elsewhere.")]
    text = (f"The target used a median of {each}: on {some} the server was the bottleneck"
            + (f", so the merged {_fmt(rate)} req/s is about the servers' capacity for this workload"
               if rate and len(busy) == len(sats) else "")
            + ". ")
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"The merged p99 latency of {_ms(lat['p99'])} includes waiting in their queues. "
    gens = [label for label, sat in _shard_saturations(run, "generator") if label in names and _busy(sat)]
    if gens:
        text += f"The generator was saturated too on {_join(gens)}: both compete for the same cores."
    advice = "More server workers, or a faster server, raise the ceiling; kernel knobs will not."
    return [Finding("warning", "Server saturated", text.strip(), evidence, [], run.label, "server_saturated", advice)]


def rule_generator_saturated(run: RunData, runs: list[RunData]) -> list[Finding]:
    if run.shard_labels:
        return _saturated_shards(run, "generator")
    sat = _saturation(run, "generator")
    if sat is None:
        return []
    median, peak, cores = sat
    if median < 0.9 * 100 * cores:
        return []
    evidence = {"generator_cpu_median": round(median, 1), "generator_cpu_peak": round(peak, 1),
                "generator_cores": cores, "requests_per_s": run.summary.get("requests_per_s")}
    rate = run.summary.get("requests_per_s")
    text = (
        f"The generator used a median of {median:.0f}% CPU over {cores} core{'s' if cores > 1 else ''} "
        f"(100% = one full core; peak {peak:.0f}%): the load tool itself was the bottleneck. "
        + (f"The achieved {_fmt(rate)} req/s is a lower bound for the server, not its capacity. " if rate else "")
    )
    target = _saturation(run, "target")
    if target is not None:
        evidence["target_cpu_median"] = round(target[0], 1)
        text += f"The target used only a median of {target[0]:.0f}%."
    return [Finding("warning", "Generator saturated: results are a lower bound", text.strip(), evidence, [],
                    run.label, "generator_saturated",
                    "Add generator workers (load.workers, up to the free cores) or run the generator elsewhere.")]


def rule_server_saturated(run: RunData, runs: list[RunData]) -> list[Finding]:
    if run.shard_labels:
        return _saturated_shards(run, "target")
    sat = _saturation(run, "target")
    if sat is None:
        return []
    median, peak, cores = sat
    if median < 0.9 * 100 * cores:
        return []
    evidence = {"target_cpu_median": round(median, 1), "target_cpu_peak": round(peak, 1), "target_cores": cores}
    rate = run.summary.get("requests_per_s")
    text = (
        f"The target used a median of {median:.0f}% CPU over {cores} core{'s' if cores > 1 else ''} "
        f"(peak {peak:.0f}%): the server was the bottleneck"
        + (f", so {_fmt(rate)} req/s is about its capacity for this workload" if rate else "")
        + ". "
    )
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"Its p99 latency of {_ms(lat['p99'])} includes waiting in its queues. "
    gen = _saturation(run, "generator")
    if gen is not None and gen[0] >= 0.9 * 100 * gen[2]:
        text += "The generator was saturated too: both compete for the same cores."
    advice = "More server workers, or a faster server, raise the ceiling; kernel knobs will not."
    return [Finding("warning", "Server saturated", text.strip(), evidence, [], run.label, "server_saturated", advice)]


# The engine counts a start as late past 1 ms, which a busy event loop does all the time;
# a schedule has really slipped when requests start this much behind it.
SLIPPED_LAG_US = 100_000


def rule_open_model_lag(run: RunData, runs: list[RunData]) -> list[Finding]:
    intended = run.summary.get("intended_rate")
    if not isinstance(intended, (int, float)) or intended <= 0:
        return []
    attempts = run.requests + run.error_total
    # Failed attempts were still started on time: errors are other rules' business.
    started_rate = attempts / _duration(run)
    achieved = float(run.summary.get("requests_per_s") or 0.0)
    late = int(run.summary.get("late_starts") or 0)
    max_lag = float(run.summary.get("max_lag_us") or 0)
    corrected = run.latency_us("corrected")
    uncorrected = run.latency_us("total")
    ratio = corrected["p99"] / uncorrected["p99"] if corrected and uncorrected and uncorrected["p99"] else 1.0
    behind = started_rate < 0.9 * intended
    slipped = max_lag >= SLIPPED_LAG_US and late > 0.01 * attempts
    hidden_queueing = corrected is not None and ratio >= 2 and corrected["p99"] - uncorrected["p99"] >= 10_000
    if not (behind or slipped or hidden_queueing):
        return []
    evidence = {"intended_rate": intended, "started_rate": round(started_rate, 1), "achieved_rate": round(achieved, 1),
                "late_starts": late, "max_lag_us": max_lag}
    text = f"The open model asked for {_fmt(intended)} req/s and started {_fmt(round(started_rate, 1))}/s"
    if late:
        pct = 100.0 * late / attempts if attempts else 0.0
        text += f"; {late:,} requests ({pct:.1f}%) started late, by up to {_ms(max_lag)}"
    text += ": the generator did not keep its schedule. "
    if corrected and uncorrected:
        evidence["p99_corrected_us"], evidence["p99_uncorrected_us"] = corrected["p99"], uncorrected["p99"]
        text += (
            f"p99 measured from each request's intended start is {_ms(corrected['p99'])}, against "
            f"{_ms(uncorrected['p99'])} from its actual start: the uncorrected number hides the queueing "
            "(coordinated omission); the corrected one is what users at this rate would see."
        )
    if _generator_busy(run):
        advice = "The generator was CPU-bound: add workers (load.workers), or ask for a lower rate."
    else:
        advice = ("Either the server could not serve this rate or there were too few connections to carry it: "
                  "raise load.connections, or ask for a lower rate.")
    return [Finding("warning", "Open model fell behind its schedule", text.strip(), evidence, [], run.label,
                    "open_model_lag", advice)]


def rule_incomplete_run(run: RunData, runs: list[RunData]) -> list[Finding]:
    findings = []
    if run.result.data.get("partial"):
        reason = run.result.data.get("partial_reason") or "no reason recorded"
        findings.append(Finding(
            "warning", "Run stopped early", f"The run is partial ({reason}): its numbers cover only the part that ran.",
            {"partial_reason": reason}, [], run.label, "partial"))
    dead = [w for w in run.summary.get("workers", []) or [] if isinstance(w, dict) and w.get("exit", "ok") != "ok"]
    if dead:
        names = _join([f"{w.get('name', '?')} ({w.get('exit')})" for w in dead])
        findings.append(Finding(
            "critical", "Load workers died", f"{len(dead)} load worker(s) did not finish cleanly: {names}. "
            "Their share of the load is missing from every number.",
            {"dead_workers": len(dead)}, [], run.label, "workers_died"))
    return findings


FAULT_EFFECTS = {
    "syn_flood": ("spoofed SYNs from {spoof} at {rate:,.0f}/s were sent at the server",
                  ["net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn",
                   "net.ipv4.tcp_synack_retries"]),
    "drop_syn": ("the server namespace silently dropped every SYN to the target port, so connect() waited "
                 "through its SYN retransmits", ["net.ipv4.tcp_syn_retries"]),
    "drop_fin": ("the client namespace dropped every incoming segment that carried a FIN, so closes could not "
                 "complete (FIN_WAIT1/FIN_WAIT2 on the client, LAST_ACK or CLOSING on the server)",
                 ["net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries"]),
    "partition": ("the server namespace dropped everything from the client: a peer that vanished; only TCP "
                  "keep-alive probes (or a request timeout) can notice",
                  ["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]),
}


def rule_injected_fault(run: RunData, runs: list[RunData]) -> list[Finding]:
    """Say what the lab did to the network: the errors that follow are its effect, not the server's fault."""
    fault = run.result.data.get("fault")
    if not fault or fault.get("kind") in (None, "none") or fault["kind"] not in FAULT_EFFECTS:
        return []
    effect, knobs = FAULT_EFFECTS[fault["kind"]]
    when = f"from t={fault.get('at', 0):g} s" + (f" for {fault['lasts']:g} s" if fault.get("lasts") else " to the end")
    text = f"Injected on purpose ({fault['kind']}, {when}): " + effect.format(
        spoof=fault.get("spoof", "?"), rate=float(fault.get("rate") or 0)) + "."
    evidence = {k: v for k, v in fault.items() if isinstance(v, (int, float, str, bool)) and k != "kind"}
    if fault.get("error"):
        text += f" The fault itself reported a problem: {fault['error']}."
    if run.errors:
        text += " Errors in this run: " + ", ".join(f"{n} {c:,}" for n, c in run.errors.items()) + "."
    return [Finding("info", f"Lab fault: {fault['kind']}", text, evidence, knobs, run.label, "injected_fault")]


RULES: tuple[Rule, ...] = (
    rule_incomplete_run,
    rule_injected_fault,
    rule_port_exhaustion,
    rule_accept_queue_overflow,
    rule_syn_queue,
    rule_time_wait_overflow,
    rule_close_wait_leak,
    rule_refused_or_reset,
    rule_timeouts,
    rule_open_model_lag,
    rule_generator_saturated,
    rule_server_saturated,
)


def diagnose(runs: Iterable[RunData | RunResult]) -> list[Finding]:
    """Every rule over every run; most severe first, then in run order."""
    loaded = [as_run_data(r) for r in runs]
    findings: list[Finding] = []
    for run in loaded:
        for rule in RULES:
            findings.extend(rule(run, loaded))
    order = {label: i for i, label in enumerate(r.label for r in loaded)}
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), order.get(f.variant, 0)))
    return findings


def format_findings(findings: list[Finding], width: int = 100) -> list[str]:
    """Lines for a terminal: a headline per finding, its text wrapped and indented, its knobs."""
    import textwrap

    if not findings:
        return ["No problems found."]
    lines = []
    for f in findings:
        who = f" [{f.variant}]" if f.variant else ""
        lines.append(f"{f.severity.upper()}{who} {f.title}")
        lines.extend(textwrap.wrap(f.text, width=width, initial_indent="    ", subsequent_indent="    "))
        if f.advice:
            lines.extend(textwrap.wrap("What to do: " + f.advice, width=width, initial_indent="    ",
                                       subsequent_indent="    "))
        if f.knobs:
            lines.append("    knobs: " + ", ".join(f.knobs))
    return lines


# --- the comparison table ----------------------------------------------------


def comparison_rows(runs: Iterable[RunData | RunResult]) -> list[dict[str, Any]]:
    """One dict per run with the numbers a side-by-side table shows (raw units).

    Keys: variant, requests_per_s, connections_per_s, intended_rate, errors
    ({name: count}), error_total, error_pct, p50_ms, p99_ms, p999_ms (None
    without latency data), p99_corrected_ms (open model: from each request's
    intended start; None otherwise), peaks ({state: {ns: peak}} for TIME_WAIT,
    SYN_RECV, CLOSE_WAIT, ESTABLISHED), peak_time_wait / peak_syn_recv /
    peak_close_wait (max over namespaces), counters ({name: rise summed over
    namespaces} for KEY_COUNTERS), generator_cpu_peak, target_cpu_peak.
    """
    rows = []
    for run in (as_run_data(r) for r in runs):
        lat = run.latency_us("total")
        corrected = run.latency_us("corrected")
        peaks = {state: {ns: run.peak(state, ns) for ns in run.namespaces} for state in PEAK_STATES}
        gen = run.cpu("generator")[1]
        tgt = run.cpu("target")[1]
        rows.append({
            "variant": run.label,
            "requests_per_s": float(run.summary.get("requests_per_s") or 0.0),
            "connections_per_s": float(run.summary.get("connections_per_s") or 0.0),
            "intended_rate": run.summary.get("intended_rate"),
            "errors": run.errors,
            "error_total": run.error_total,
            "error_pct": run.error_pct,
            "p50_ms": lat["p50"] / 1000.0 if lat else None,
            "p99_ms": lat["p99"] / 1000.0 if lat else None,
            "p999_ms": lat["p99.9"] / 1000.0 if lat else None,
            "p99_corrected_ms": corrected["p99"] / 1000.0 if corrected else None,
            "peaks": peaks,
            "peak_time_wait": max(peaks["TIME_WAIT"].values(), default=0),
            "peak_syn_recv": max(peaks["SYN_RECV"].values(), default=0),
            "peak_close_wait": max(peaks["CLOSE_WAIT"].values(), default=0),
            "counters": {name: run.counter(name) for name in KEY_COUNTERS},
            "generator_cpu_peak": max(gen) if gen else None,
            "target_cpu_peak": max(tgt) if tgt else None,
        })
    return rows


def _cell_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _cell_peak(per_ns: dict[str, int]) -> str:
    if not per_ns:
        return "0"
    ns, peak = max(per_ns.items(), key=lambda kv: kv[1])
    if peak == 0:
        return "0"
    return f"{peak:,}" + (f" ({ns})" if ns != "host" else "")


# The states a side-by-side table may show (each only when some run held it),
# in the order of a connection's life.
PEAK_STATES = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSING", "TIME_WAIT",
               "CLOSE_WAIT", "LAST_ACK")


def comparison_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells for the rows; counters (and states other than TIME_WAIT) that
    stayed at zero in every run are left out."""
    counters = [c for c in KEY_COUNTERS if any(r["counters"].get(c) for r in rows)]
    error_names = sorted({n for r in rows for n in r["errors"]})
    # TIME_WAIT always has a column; the other states only when some run held them
    # ESTABLISHED is left out: every run holds some.
    states = ["TIME_WAIT"] + [s for s in PEAK_STATES if s not in ("TIME_WAIT", "ESTABLISHED")
                              and any(any(r["peaks"].get(s, {}).values()) for r in rows)]
    corrected = any(r["p99_corrected_ms"] is not None for r in rows)
    headers = ["variant", "req/s", "conn/s", "errors", "error %", "p50 ms", "p99 ms", "p99.9 ms"]
    headers += ["corrected p99 ms"] if corrected else []
    headers += [f"peak {s}" for s in states]
    headers += [c.removeprefix("TcpExt").removeprefix("Tcp") for c in counters]
    out = []
    for r in rows:
        rate = _fmt(round(r["requests_per_s"], 1))
        if r.get("intended_rate"):
            rate += f" / {_fmt(r['intended_rate'])}"
        errs = ", ".join(f"{n} {r['errors'][n]:,}" for n in error_names if r["errors"].get(n)) or "0"
        cells = [
            r["variant"], rate, _fmt(round(r["connections_per_s"], 1)), errs, f"{r['error_pct']:.2f}",
            _cell_ms(r["p50_ms"]), _cell_ms(r["p99_ms"]), _cell_ms(r["p999_ms"]),
        ]
        cells += [_cell_ms(r["p99_corrected_ms"])] if corrected else []
        cells += [_cell_peak(r["peaks"][s]) for s in states]
        cells += [f"{r['counters'][c]:,}" for c in counters]
        out.append(cells)
    return headers, out


def knob_table(runs: list[RunData]) -> tuple[list[str], list[list[str]], list[bool]]:
    """Read-back sysctls: headers (side, knob, one column per run), rows, and whether each row differs."""
    keys: list[tuple[str, str]] = []
    for run in runs:
        for side, knobs in (run.result.data.get("sysctls") or {}).items():
            for knob in knobs or {}:
                if (side, knob) not in keys:
                    keys.append((side, knob))
    keys.sort()

    def values_of(side: str, knob: str) -> list[Any]:
        return [((r.result.data.get("sysctls") or {}).get(side) or {}).get(knob) for r in runs]

    # A merged run repeats every knob once per shard ("node-a:host", "node-b:host"):
    # one row says it when every shard had the same value; shards that differ keep theirs.
    shared: dict[tuple[str, str], list[str]] = {}
    for side, knob in keys:
        label, sep, base = side.rpartition(":")
        if sep:
            shared.setdefault((base, knob), []).append(side)
    rows_for: dict[tuple[str, str], tuple[str, list[Any]]] = {}
    for (base, knob), sides in shared.items():
        columns = [values_of(side, knob) for side in sides]
        if len(sides) > 1 and all(c == columns[0] for c in columns):
            rows_for[(sides[0], knob)] = (f"{base}, all {len(sides)} shards", columns[0])
            for side in sides[1:]:
                rows_for[(side, knob)] = ("", [])
    headers = ["side", "knob"] + [r.label for r in runs]
    rows, differs = [], []
    # The values every shard shared first, then each shard's own.
    for shared_first in (True, False):
        for side, knob in keys:
            shown, values = rows_for.get((side, knob), (side, values_of(side, knob)))
            if not shown or ((side, knob) in rows_for) != shared_first:
                continue  # said once, on its group's first row
            rows.append([shown, knob] + ["–" if v is None else str(v).replace("\t", " ") for v in values])
            differs.append(len({str(v) for v in values}) > 1)
    return headers, rows, differs


# --- expanding folders -----------------------------------------------------------


def expand_folders(folders: Iterable[Path]) -> list[tuple[Path, str | None]]:
    """Run folders, with comparison folders replaced by their variants' run folders (in order)."""
    import json

    out: list[tuple[Path, str | None]] = []
    for folder in map(Path, folders):
        comparison = folder / COMPARISON_FILE
        if not comparison.is_file():
            out.append((folder, None))
            continue
        try:
            data = json.loads(comparison.read_text())
        except json.JSONDecodeError as e:
            raise ResultError(f"{comparison}: not valid JSON (line {e.lineno}): truncated or hand-edited?") from None
        if not isinstance(data, dict) or data.get("format") != COMPARISON_FORMAT:
            raise ResultError(f"{comparison}: format is not {COMPARISON_FORMAT!r}")
        runs = data.get("runs")
        variants = data.get("variants") or (list(runs) if isinstance(runs, dict) else [])
        if not isinstance(runs, dict) or not runs:
            raise ResultError(f"{comparison}: 'runs' must map each variant to its folder")
        for name in variants:
            # The runner adds a variant to "runs" as it starts it: one missing here never ran
            # (the comparison was interrupted), so the report shows the ones that did.
            if name in runs:
                out.append((folder / runs[name], str(name)))
    return out


def load_runs(folders: Iterable[Path]) -> list[RunData]:
    """Load run and comparison folders, giving every run a distinct label."""
    runs = [load_run(path, label) for path, label in expand_folders(folders)]
    seen: dict[str, int] = {}
    for run in runs:
        base = run.label
        if base in seen:
            seen[base] += 1
            run.label = f"{base} ({run.folder.name})" if run.folder and run.folder.name != base else f"{base} #{seen[base]}"
        else:
            seen[base] = 1
    return runs
