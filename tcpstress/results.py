"""Run results: the run folder layout, result.json, and HdrHistogram .hlog files.

A run folder holds everything a report needs, so `tcpstress report DIR`
re-renders any old run without running anything:

    result.json           this module's RunResult, documented below
    latency-total.hlog    HdrHistogram interval log (one interval per second),
    latency-connect.hlog  values in microseconds; "total" is measured from the
    latency-ttfb.hlog     actual start of each request, "corrected" from its
    latency-corrected.hlog  intended start (open model only, as wrk2 does)
    samples.csv           the sampler's rows: one per sample and namespace
    processes.csv         the sampler's process rows (generator / target)
    .tcpstress-claim      empty; made with O_EXCL when the run claimed the folder
                          (claim_folder), so no second run writes into it

result.json (format "tcpstress-result/1"; record.py's RunRecord is its typed form):

    {
      "format": "tcpstress-result/1",
      "tool_version": "0.1.0", "kernel": "6.x", "hostname": "...", "netns": "net:[4026531840]",
      "started_at": "2026-11-28T12:00:00Z", "ended_at": "...",
      "partial": false, "partial_reason": null,
      "name": "keepalive_vs_churn", "variant": "baseline" | null,
      "scenario": {...the resolved scenario, as Scenario.to_dict()...},
      "thresholds": [           # after the run, when there were any (tcpstress/thresholds.py)
        {"expr": "corrected.p99 < 20ms", "metric": "corrected.p99", "kind": "time", "op": "<",
         "limit": 20000.0, "measured": 1234.0 | null, "passed": true, "verdict": "PASS" | "FAIL",
         "reason": "" | "not measured", "measured_text": "1.234 ms", "source": "--threshold"}],
      "sysctls": {"client": {"net.ipv4.tcp_tw_reuse": "0", ...}, "server": {...}},
                                # read back; a run outside the lab: {"host": {...}},
                                # the namespace it loaded from (read, never written)
      "intervals": [            # one per second of the measured phase
        {"t": 0.0, "duration": 1.0,            # seconds since measurement start
         "requests": 1234, "connections": 1234,
         "errors": {"EADDRNOTAVAIL": 3},
         "started": 0, "late_starts": 0, "max_lag_us": 0,
         "latency_us": {"p50": 80, "p90": 120, "p99": 300, "p99.9": 900, "max": 1200},
         # when there were any: "status": {"200": n}, "anomalies": {name: n},
         # "tls": {"handshakes": n, "resumed": n}, "corrected_latency_us": {...} (open model)
        }
      ],
      "summary": {
        "duration_s": 10.0, "requests": 12340, "connections": 12340,
        "requests_per_s": 1234.0, "connections_per_s": 1234.0,
        "errors": {"EADDRNOTAVAIL": 3}, "error_total": 3,
        "intended_rate": null | 1000.0, "started": 0, "late_starts": 0, "max_lag_us": 0,
        "kept_up": true (open model only: started >= 90% of the (ramped) schedule, not > 1% late by 100 ms),
        "latency_us": {"total": PCT, "connect": PCT, "ttfb": PCT, "corrected": PCT | absent},
        "states": {"client": {"TIME_WAIT": {"peak": 1000, "final": 998}, ...}, ...},
        "counters": {"client": {"TcpExtListenOverflows": 0, ...}, ...},
        "processes": {"generator": {"cpu_peak": 99.0, "cpu_mean": 80.0, "rss_peak": 123}, ...},
        "workers": [{"name": "worker-0", "exit": "ok" | "died: ...", "requests": 1}]
      }
    }

where PCT = {"count": n, "min": .., "mean": .., "p50": .., "p90": .., "p99": ..,
"p99.9": .., "p99.99": .., "max": ..} in microseconds.

Times are seconds since the start of the measured phase (after warm-up),
taken from time.monotonic(), which every process on the machine shares; the
sampler's rows use the same origin, so load and kernel state line up.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from hdrh.histogram import HdrHistogram

FORMAT = "tcpstress-result/1"
RESULT_FILE = "result.json"
# A comparison folder (tcpstress compare, the gallery): its index of variant run folders.
COMPARISON_FILE = "comparison.json"
COMPARISON_FORMAT = "tcpstress-comparison/1"
SAMPLES_FILE = "samples.csv"
PROCESSES_FILE = "processes.csv"

# 1 µs .. 1 hour, 3 significant digits: wide enough for any connect or request.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
DIGITS = 3

# total, connect, ttfb: every run; corrected: open model; tls: https; error: attempts that
# failed with a response (HTTP status not expected), kept apart so they cannot flatter the rest.
METRICS = ("total", "connect", "ttfb", "corrected", "tls", "error")
OPTIONAL_METRICS = ("corrected", "tls", "error")
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))


class ResultError(Exception):
    """A run folder that cannot be read: missing, truncated or hand-edited."""


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def clamp_us(value: float) -> int:
    v = int(value)
    if v < LOWEST_US:
        return LOWEST_US
    if v > HIGHEST_US:
        return HIGHEST_US
    return v


def record_counts(hist: HdrHistogram, counts: Counter[int] | dict[int, int]) -> None:
    """Record pre-counted values: one record_value call per distinct value.

    The pure-Python record_value costs about a microsecond; the load loop keeps
    a Counter of raw microsecond values instead, and latencies cluster, so this
    turns one call per request into one call per distinct value.
    """
    for value, n in counts.items():
        hist.record_value(clamp_us(value), n)


def percentiles(hist: HdrHistogram) -> dict[str, float]:
    n = hist.get_total_count()
    out: dict[str, float] = {"count": n}
    if n == 0:
        out.update({"min": 0, "mean": 0.0, "max": 0})
        out.update({name: 0 for name, _ in PERCENTILES})
        return out
    out["min"] = hist.get_min_value()
    out["mean"], at = _one_pass(hist, [p for _, p in PERCENTILES])
    for name, p in PERCENTILES:
        out[name] = at[p]
    out["max"] = hist.get_max_value()
    return out


def _one_pass(hist: HdrHistogram, wanted: list[float]) -> tuple[float, dict[float, int]]:
    """The mean (rounded to 0.1) and the values at `wanted` percentiles, exactly as hdrh's
    get_mean_value() and get_value_at_percentile() give them, in one walk of the counts.

    hdrh walks every bucket in Python once for the mean and once per percentile, with
    a method call per bucket: 0.1-0.4 s a histogram on a 2-core machine, paid by every
    report table. Only recorded buckets cost anything here.
    """
    n = hist.get_total_count()
    targets = sorted((max(int(min(p, 100.0) * n / 100 + 0.5), 1), p) for p in wanted)
    at: dict[float, int] = {}
    total = 0
    running = 0
    value_at = hist.get_value_from_index
    median = hist._hdr_median_equiv_value
    for index, count in enumerate(hist.counts):
        if not count:
            continue
        value = value_at(index)
        total += count * median(value)
        running += count
        while targets and running >= targets[0][0]:
            p = targets.pop(0)[1]
            at[p] = hist.get_highest_equivalent_value(value) if p else hist.get_lowest_equivalent_value(value)
    for _, p in targets:  # counts short of the total (cannot happen in a consistent histogram)
        at[p] = 0
    return round(total / n, 1), at


INTERVAL_PCT = ("p50", "p90", "p99", "p99.9")


def interval_percentiles(hist: HdrHistogram) -> dict[str, int]:
    """p50 .. p99.9 and max, in one pass and without the mean.

    hdrh's get_mean_value() walks every bucket in Python (20-100 ms a
    histogram); an interval record has no mean, so it is not paid per second.
    """
    if not hist.get_total_count():
        return {**{name: 0 for name in INTERVAL_PCT}, "max": 0}
    wanted = {name: p for name, p in PERCENTILES if name in INTERVAL_PCT}
    values = hist.get_percentile_to_value_dict(list(wanted.values()))
    out = {name: values[p] for name, p in wanted.items()}
    out["max"] = hist.get_max_value()
    return out


def add_histogram(into: HdrHistogram, other: HdrHistogram) -> None:
    """into += other, skipping empty ones.

    hdrh's add() takes min(into.get_min_value(), other.get_min_value()) after
    updating the count, and get_min_value() is 0 for an empty histogram: adding
    an empty histogram to an empty one pins the minimum at 0 for good.
    """
    if other.get_total_count():
        into.add(other)


def encode(hist: HdrHistogram) -> str:
    payload: bytes = hist.encode()
    return payload.decode("ascii")


def decode(payload: str | bytes) -> HdrHistogram:
    hist = new_histogram()
    if payload:
        hist.decode_and_add(payload if isinstance(payload, bytes) else payload.encode("ascii"))
    return hist


# --- atomic writes ---------------------------------------------------------


def folder_taken(path: Path) -> bool:
    """Whether a run, merge or gallery must refuse to write into `path`: it exists and is not an empty folder.

    A folder holding only a run's CLAIM_FILE counts as empty here: the run that
    claimed it may write into it, and claim_folder refuses it to everyone else."""
    return path.exists() and (not path.is_dir() or any(p.name != CLAIM_FILE for p in path.iterdir()))


class FolderTaken(ResultError):
    """The folder a run would write into exists and holds something, or another run claimed it first."""


# Made with O_EXCL in every run folder as it is claimed: the proof that one run owns it.
CLAIM_FILE = ".tcpstress-claim"


@dataclass(frozen=True)
class FolderClaim:
    """A folder this process claimed for one run: no other run can claim it too."""

    path: Path
    created: bool  # made by this claim (else it existed, empty)

    def release(self) -> None:
        """Give the folder back when the run was refused before writing anything into it."""
        try:
            (self.path / CLAIM_FILE).unlink()
            if self.created:
                self.path.rmdir()  # only if still empty: a run that wrote something keeps its files
        except OSError:
            pass


def claim_folder(path: Path) -> FolderClaim:
    """Make (or take an empty) `path` for a run, atomically, or raise FolderTaken.

    A check then a mkdir lets two runs started at once with the same --out both
    pass the check and interleave their files. The claim is a file created with
    O_EXCL inside the folder: of any number of runs, exactly one creates it,
    whether the folder was new or made empty beforehand. The file stays (empty,
    hidden) for the folder's life, so a later run is refused too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path)
        created = True
    except FileExistsError:
        created = False
    if folder_taken(path):
        raise FolderTaken(f"{path}: exists and is not an empty folder; choose a new folder")
    try:
        os.close(os.open(path / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise FolderTaken(f"{path}: another run is writing into this folder; choose a new folder") from None
    return FolderClaim(path, created)


def folder_stamp(t: float | None = None) -> str:
    """The time in a default run folder's name (reports/20261128T133000Z-<name>), UTC, now or at t."""
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y%m%dT%H%M%SZ")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename.

    A reader (or a crash, or a full disk) sees the old file or the new one,
    never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; runs are for sharing
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --- .hlog -------------------------------------------------------------------


class HlogWriter:
    """Streams interval histograms in the HdrHistogram log format (v1.2).

    Written by hand rather than with hdrh.log.HistogramLogWriter because that
    writer replaces a start time of 0.0 by the histogram's own timestamp and
    its output_start_time is broken; the lines are the same format, and
    hdrh.log.HistogramLogReader reads them back (tested).
    """

    def __init__(self, path: Path, start_epoch: float, comment: str = ""):
        self.path = Path(path)
        self.f = open(self.path, "w")
        if comment:
            self.f.write(f"#{comment}\n")
        self.f.write("#[Histogram log format version 1.2]\n")
        self.f.write(f"#[StartTime: {start_epoch:.3f} (seconds since epoch)]\n")
        self.f.write(f"#[BaseTime: {start_epoch:.3f} (seconds since epoch)]\n")
        self.f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        self.f.flush()

    def write(self, start_s: float, length_s: float, hist: HdrHistogram) -> None:
        # Interval_Max is in milliseconds (the log's conventional unit ratio for µs values).
        self.f.write(f"{start_s:.3f},{length_s:.3f},{hist.get_max_value() / 1000.0:.3f},{encode(hist)}\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_hlog(path: Path) -> list[tuple[float, float, HdrHistogram]]:
    """(start_s, length_s, histogram) per interval line."""
    out = []
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ResultError(f"{path}: cannot read: {e.strerror}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#") or line.startswith('"'):
            continue
        parts = line.split(",")
        if len(parts) < 4:
            raise ResultError(f"{path}:{lineno}: not an HdrHistogram interval line")
        try:
            hist = decode(parts[3].strip())
            out.append((float(parts[0]), float(parts[1]), hist))
        except Exception:
            raise ResultError(f"{path}:{lineno}: corrupt interval histogram") from None
    return out


def merged_hlog(path: Path) -> HdrHistogram:
    total = new_histogram()
    for _, _, h in read_hlog(path):
        add_histogram(total, h)
    return total


# --- result.json -------------------------------------------------------------


@dataclass
class RunResult:
    """result.json as data; see the module docstring for the layout."""

    data: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.data.get("summary", {})
        return summary

    @property
    def intervals(self) -> list[dict[str, Any]]:
        intervals: list[dict[str, Any]] = self.data.get("intervals", [])
        return intervals

    @property
    def name(self) -> str:
        return self.data.get("variant") or self.data.get("name") or "run"

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RESULT_FILE
        write_atomic(path, json.dumps(self.data, indent=2, sort_keys=False) + "\n")
        self.folder = folder
        return path


class _Settled(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class StreamedResult:
    """result.json rewritten every second while a run goes on, so a crash loses at most the second in progress.

    Each settled interval is turned into JSON once, on one line, and kept as text: serializing
    all of them again each second (json.dumps with indent is the pure-Python encoder) cost the
    runner 15, 72 and 385 ms of CPU a second at 1, 10 and 60 minutes into a run; this costs 0.6,
    1.3 and 3.6 ms. The run's final save is the ordinary RunResult.save.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lines: list[str] = []

    def save(self, meta: dict[str, Any], settled: Sequence[_Settled]) -> None:
        """Write `meta` with an empty summary and the intervals in `settled` (which only ever grows)."""
        self._lines.extend(json.dumps(iv.to_json(), separators=(",", ":")) for iv in settled[len(self._lines):])
        head = json.dumps(dict(meta, summary={}), indent=2)  # small; ends with "\n}"
        body = ",\n    ".join(self._lines)
        write_atomic(self.folder / RESULT_FILE, f'{head[:-2]},\n  "intervals": [\n    {body}\n  ]\n}}\n')


REQUIRED_KEYS = ("format", "scenario", "intervals", "summary")


def load_result(folder: Path) -> RunResult:
    """Read a run folder's result.json, refusing anything that is not one."""
    folder = Path(folder)
    path = folder / RESULT_FILE
    if not folder.is_dir():
        raise ResultError(f"{folder}: not a folder")
    if not path.is_file():
        raise ResultError(f"{folder}: no {RESULT_FILE} here: not a tcpstress run folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not valid JSON (line {e.lineno}): truncated or hand-edited?") from None
    except OSError as e:
        raise ResultError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ResultError(f"{path}: missing {', '.join(missing)}: truncated or hand-edited?")
    if data["format"] != FORMAT:
        raise ResultError(f"{path}: format {data['format']!r} is not {FORMAT!r}")
    if not isinstance(data["intervals"], list) or not isinstance(data["summary"], dict):
        raise ResultError(f"{path}: intervals must be a list and summary an object")
    from tcpstress.result_check import ShapeError, check_result

    try:
        check_result(data)
    except ShapeError as e:
        raise ResultError(f"{path}: {e}: hand-edited?") from None
    return RunResult(data=data, folder=folder)


def merge_error_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def kept_up(summary: dict[str, Any], due: float | None) -> bool:
    """Did the generator start (nearly) every operation of an open model on time?

    due: the operations the schedule asked for (None under a ramp). Operations
    still waiting on a timeout at the end were started: they count, where the
    summary has "started" (folders from a runner before starts were counted have none
    or 0: requests and errors stand in for it).
    """
    started = summary.get("started") or summary["requests"] + summary["error_total"]
    if due and started < 0.9 * due:
        return False
    # The same bar as the report's "fell behind its schedule" finding, so the two agree:
    # starts late by a millisecond or two are a busy event loop, not a slipped schedule.
    return bool(summary["late_starts"] <= 0.01 * max(started, 1) or summary.get("max_lag_us", 0) < 100_000)


def interval_totals(intervals: list[dict[str, Any]], hists: dict[str, HdrHistogram]) -> dict[str, Any]:
    """The summary fields that follow from the per-second intervals and the whole-run
    histograms: the same for a run (runner.py) and for merged shards (merge.py)."""
    duration = sum(iv["duration"] for iv in intervals)
    requests = sum(iv["requests"] for iv in intervals)
    connections = sum(iv["connections"] for iv in intervals)
    errors = merge_error_counts(iv["errors"] for iv in intervals)
    return {
        "duration_s": round(duration, 3),
        "requests": requests, "connections": connections,
        "requests_per_s": round(requests / duration, 1) if duration else 0.0,
        "connections_per_s": round(connections / duration, 1) if duration else 0.0,
        "errors": errors, "error_total": sum(errors.values()),
        "late_starts": sum(iv["late_starts"] for iv in intervals),
        "max_lag_us": max([iv["max_lag_us"] for iv in intervals] + [0]),
        # An open model logs corrected latency; a closed one leaves it empty.
        "latency_us": {m: percentiles(h) for m, h in hists.items()
                       if m not in OPTIONAL_METRICS or h.get_total_count()},
        **_response_totals(intervals, requests, sum(errors.values())),
    }


def status_classes(status: dict[str, int]) -> dict[str, int]:
    """{"200": 5, "204": 1, "503": 2} -> {"2xx": 6, "5xx": 2}."""
    classes: Counter[str] = Counter()
    for code, n in status.items():
        classes[f"{str(code)[0]}xx"] += n
    return dict(classes)


def _response_totals(intervals: list[dict[str, Any]], requests: int, error_total: int) -> dict[str, Any]:
    """Status codes, error rate and the events that are not failures, summed over the intervals."""
    status: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    tls: Counter[str] = Counter()
    for iv in intervals:
        status.update(iv.get("status", {}))
        anomalies.update(iv.get("anomalies", {}))
        tls.update(iv.get("tls", {}))
    classes = status_classes(status)
    out: dict[str, Any] = {
        "error_rate": round(error_total / (requests + error_total), 6) if requests + error_total else 0.0,
        "anomalies": dict(sorted(anomalies.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    if status:
        out["responses"] = sum(status.values())
        out["status"] = dict(sorted(status.items()))
        out["status_classes"] = dict(sorted(classes.items()))
    if tls:
        out["tls"] = {"handshakes": tls["handshakes"], "resumed": tls["resumed"]}
    return out
