"""A run folder, loaded: result.json, the sampler's rows and the latency logs.

Pure (no trio, click or matplotlib), so the CLI can load runs without
paying for the figures. A run folder's layout is in tcpstress/results.py;
a comparison folder (comparison.json) stands for its variants' run
folders, in order.
"""

from __future__ import annotations

import csv
import ipaddress
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from hdrh.histogram import HdrHistogram

from tcpstress.record import Interval, RunRecord, Summary, scenario_from_json
from tcpstress.results import (
    COMPARISON_FILE,
    COMPARISON_FORMAT,
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
from tcpstress.scenario import (
    Connection,
    Fault,
    Load,
    RequestSpec,
    Sampling,
    Scenario,
    Server,
    Target,
    Tls,
    Variant,
)

STATES = (
    "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
)

# Columns of samples.csv that are levels, not per-interval deltas: summing them is meaningless.
GAUGE_COLUMNS = frozenset(STATES) | {
    "sockstat_inuse", "sockstat_orphan", "sockstat_tw", "sockstat_alloc", "sockstat_mem", "TcpCurrEstab",
    "sampler_cost_ms", "states_age_ms",
}

HLOG_FILES = {
    "total": "latency-total.hlog",
    "connect": "latency-connect.hlog",
    "ttfb": "latency-ttfb.hlog",
    "corrected": "latency-corrected.hlog",
}



class RecordedScenario(dict[str, Any]):
    """A run's scenario as result.json recorded it, and as the Scenario rebuilt from that.

    `run.scenario.load.connections` reads the typed Scenario; the dict
    interface (`run.scenario.get("description")`, json.dumps) still reads
    what the file holds, for the code that has not moved to the typed one yet.
    The Scenario is rebuilt on first use, so a folder whose scenario an older
    version wrote differently still renders.
    """

    @cached_property
    def typed(self) -> Scenario:
        return scenario_from_json(self)

    @property
    def name(self) -> str:
        return self.typed.name

    @property
    def description(self) -> str:
        return self.typed.description

    @property
    def target(self) -> Target:
        return self.typed.target

    @property
    def server(self) -> Server:
        return self.typed.server

    @property
    def load(self) -> Load:
        return self.typed.load

    @property
    def connection(self) -> Connection:
        return self.typed.connection

    @property
    def sampling(self) -> Sampling:
        return self.typed.sampling

    @property
    def fault(self) -> Fault:
        return self.typed.fault

    @property
    def tls(self) -> Tls:
        return self.typed.tls

    @property
    def lab(self) -> bool:
        return self.typed.lab

    @property
    def requests(self) -> tuple[RequestSpec, ...]:
        return self.typed.requests

    @property
    def variants(self) -> tuple[Variant, ...]:
        return self.typed.variants

    @property
    def thresholds(self) -> tuple[str, ...]:
        return self.typed.thresholds


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
        # percentiles() walks every bucket in Python (hdrh's mean): 0.1-0.4 s a run, and
        # the tables, the scorecard and the HTML each asked for it again.
        self._latency: dict[str, dict[str, float] | None] = {}

    # -- identity

    @property
    def folder(self) -> Path | None:
        return self.result.folder

    @cached_property
    def scenario(self) -> RecordedScenario:
        """The run's scenario: typed attributes (run.scenario.load.connections) over the recorded dict."""
        s = self.result.data.get("scenario")
        return RecordedScenario(s if isinstance(s, dict) else {})

    @cached_property
    def record(self) -> RunRecord:
        """result.json as the typed RunRecord (read once; the folder's result.json does not change)."""
        return RunRecord.from_json(self.result.data)

    @cached_property
    def intervals(self) -> list[Interval]:
        """The run's seconds, typed (read on their own: a RunData made in code may lack the rest of a record)."""
        return [Interval.from_json(iv, f"intervals[{i}]") for i, iv in enumerate(self.result.intervals)]

    @property
    def summary_record(self) -> Summary | None:
        """The typed summary; None while a run is still in progress."""
        return self.record.summary

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

    def _shard_field(self, label: str, key: str) -> str | None:
        """A field of the merged run's entry for this shard, when it holds one."""
        for s in self.result.data.get("shards") or []:
            if isinstance(s, dict) and s.get("label") == label and s.get(key):
                return str(s[key])
        return None

    def shard_machine(self, label: str) -> str:
        """The hostname a shard ran on (merge labels shards that share one "HOST#I")."""
        return self._shard_field(label, "hostname") or re.sub(r"#\d+$", "", label)

    def shard_netns(self, label: str) -> str | None:
        """The network namespace a shard ran in, as its runner recorded it (None: not recorded)."""
        return self._shard_field(label, "netns")

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

    def at_start(self, state: str, ns: str) -> int:
        """Sockets in this state at the first sample, taken before the load began: an earlier run's leftovers."""
        _, vs = self.series(state, ns)
        if vs:
            return int(vs[0])
        entry = (self.summary.get("states", {}) or {}).get(ns, {}).get(state, {})
        return int(entry.get("start", 0) or 0) if isinstance(entry, dict) else 0

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

    @property
    def target_is_loopback(self) -> bool:
        """Whether the load went to a loopback address (where tcp_tw_reuse=2 applies)."""
        # The runner records where it really connected; older folders have only the scenario's.
        target = self.result.data.get("target")
        host = str((target.get("host") if isinstance(target, dict) else None) or scenario_get(self, "target.host") or "")
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    def error_count(self, match: Callable[[str], bool]) -> int:
        return sum(n for name, n in self.errors.items() if match(name))

    def first_error_t(self, match: Callable[[str], bool]) -> float | None:
        for iv in self.intervals:
            if any(n > 0 and match(name) for name, n in iv.errors.items()):
                return iv.t
        return None

    @property
    def requests(self) -> int:
        # A summary without it (streamed while running, or made by hand) counts from the intervals,
        # so a run's successes are never read as none.
        if "requests" not in self.summary:
            return sum(int(iv.get("requests") or 0) for iv in self.result.intervals)
        return int(self.summary.get("requests") or 0)

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
        if metric not in self._latency:
            self._latency[metric] = self._latency_us(metric)
        found = self._latency[metric]
        return dict(found) if found is not None else None

    def _latency_us(self, metric: str) -> dict[str, float] | None:
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

        Each generator worker is one single-threaded epoll loop, so a worker
        saturates at 100% (one core) whatever the machine has.
        """
        n = 0
        # A merged run's roles are "LABEL:generator": each shard ran load.workers of its own.
        label, _, base = role.rpartition(":")
        if base == "generator":
            recorded = self.scenario.get("load")
            load: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
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


# --- a run's scenario and measured phase --------------------------------------


def scenario_get(run: "RunData", dotted: str) -> Any:
    """A field of the resolved scenario by its dotted name ("server.backlog"), or None."""
    node: Any = run.scenario
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
