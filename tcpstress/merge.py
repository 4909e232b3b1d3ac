"""Combine the run folders of a sharded run into one run folder.

`tcpstress run --shard I/N` runs one share of a scenario (on one machine, or
one pod of a Kubernetes Indexed Job); each shard writes an ordinary run
folder (see results.py) whose result.json also carries "shard": {"index",
"count"}, "t0_epoch" (wall-clock start of the measured phase), "hostname" and
"start_at". merge_runs() turns the N folders into one folder of the same
format, so `tcpstress report` reads it like any run:

    merge_runs([Path("shard-0"), Path("shard-1"), Path("shard-2")], Path("merged"))

How the shards line up. Each shard's interval i covers wall-clock seconds
[t0_s + i, t0_s + i + 1). The merged run's grid starts at the earliest
shard's t0 (T0); a shard's seconds move onto the grid by the whole number of
seconds nearest to its lag, offset_s = floor(t0_s - T0 + 0.5), so with
--start-at (every shard starting within milliseconds) every offset is 0 and a
shard that started 0.7 s late lands one second on. Offsets are whole
seconds, so each merged second holds whole shard seconds and nothing is split
or interpolated; the price is that a merged second may mix seconds that
were up to half a second apart on the wall clock. The sampler's rows
(samples.csv, processes.csv) are continuous in time and move by the exact
lag instead.

What is merged how:
- per-interval requests, connections, errors and late starts are summed,
  max_lag_us is the largest; an interval lasts as long as its longest part;
- latency histograms are added bucket by bucket from the shards' .hlog files
  (HdrHistogram add: exact, never an average of percentiles), then the
  interval and summary percentiles are computed from the sums;
- rates are over the merged duration (the sum of the merged intervals);
- kernel samples, process rows, summary.states/counters/processes/sampler,
  the read-back sysctls and the worker list keep one entry per shard, their
  namespace or role prefixed with the shard's label: its hostname
  ("host-a:client"), or "hostname#index" when two shards share a hostname
  (shards run as processes on one machine).

The scenario of every shard must be the same (scenario.source, the path the
file was read from, is the one field allowed to differ: each machine may keep
the file elsewhere), and every shard 0..N-1 must be there exactly once.

Pure: no trio, click or matplotlib.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from tcpstress import results
from tcpstress.record import Interval, RecordError, Summary, scenario_from_json

# Fields of a shard's scenario that may differ between shards without making
# them different workloads.
SCENARIO_FIELDS_ALLOWED_TO_DIFFER = frozenset({"source"})
SHARD_FOLDER = re.compile(r"shard-(\d+)")



class MergeError(ValueError):
    """Shard folders that cannot be merged; the message is one line naming the folder and why."""


@dataclass
class Shard:
    """One input folder, read and checked."""

    folder: Path
    result: results.RunResult
    index: int
    count: int
    hostname: str
    t0_epoch: float
    label: str = ""
    offset_s: int = 0  # whole seconds its intervals move on the merged grid
    lag_s: float = 0.0  # its exact lag behind the merged t0

    @property
    def data(self) -> dict[str, Any]:
        return self.result.data


# --- checks -------------------------------------------------------------------


def shard_folders(folders: list[Path]) -> tuple[list[Path], Path | None]:
    """One folder that is not a run but holds shard-<I> run folders (what `run --shard` writes
    without --out) stands for them: returns (the folders to merge, that parent or None)."""
    if len(folders) != 1 or (folders[0] / results.RESULT_FILE).exists() or not folders[0].is_dir():
        return folders, None
    parent = folders[0]
    numbered = sorted((int(m.group(1)), child) for child in parent.iterdir()
                      if child.is_dir() and (m := SHARD_FOLDER.fullmatch(child.name)))
    if not numbered:
        raise MergeError(f"{parent}: not a run folder, and holds no shard-<I> run folders")
    return [child for _, child in numbered], parent


def check_output(out: Path) -> None:
    if results.folder_taken(out):
        raise MergeError(f"--out {out}: exists and is not an empty folder; choose a new folder")


def load_shard(folder: Path, sharded_required: bool) -> Shard:
    try:
        result = results.load_result(folder)
    except results.ResultError as e:
        raise MergeError(str(e)) from None
    data = result.data
    shard = data.get("shard")
    if shard is None:
        if sharded_required:
            raise MergeError(f"{folder}: not a shard (result.json has \"shard\": null); merge combines the "
                             f"folders of one `tcpstress run --shard I/N` run")
        index, count = 0, 1
    else:
        index, count = _shard_numbers(folder, shard)
    t0 = data.get("t0_epoch")
    if not isinstance(t0, (int, float)) or isinstance(t0, bool) or not math.isfinite(t0):
        raise MergeError(f"{folder}: result.json has no numeric t0_epoch (wall-clock start): "
                         f"written by a tcpstress without shard support, or the run never started")
    # A compose container's hostname is its ID; its name (tcpstress-loader-3) says more.
    hostname = str(shard.get("name") if isinstance(shard, dict) and shard.get("name") else
                   data.get("hostname") or "unknown")
    return Shard(folder=folder, result=result, index=index, count=count, hostname=hostname, t0_epoch=float(t0))


def _shard_numbers(folder: Path, shard: Any) -> tuple[int, int]:
    ok = (isinstance(shard, dict) and all(isinstance(shard.get(k), int) and not isinstance(shard.get(k), bool)
                                          for k in ("index", "count")))
    if not ok or not 0 <= shard["index"] < shard["count"]:
        raise MergeError(f"{folder}: result.json shard is {shard!r}; expected "
                         f"{{\"index\": I, \"count\": N}} with 0 <= I < N")
    return shard["index"], shard["count"]


def check_complete_set(shards: list[Shard]) -> None:
    """Exactly one folder for each of shards 0..N-1 of one N."""
    first = shards[0]
    for s in shards[1:]:
        if s.count != first.count:
            raise MergeError(f"{s.folder} is shard {s.index} of {s.count} but {first.folder} is shard "
                             f"{first.index} of {first.count}: shards of different runs")
    seen: dict[int, Path] = {}
    for s in shards:
        if s.index in seen:
            raise MergeError(f"shard {s.index} of {s.count} given twice: {seen[s.index]} and {s.folder}")
        seen[s.index] = s.folder
    missing = [i for i in range(first.count) if i not in seen]
    if missing:
        have = ",".join(str(i) for i in sorted(seen))
        raise MergeError(f"have {have} of {first.count}: missing {','.join(str(i) for i in missing)}")


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first place two JSON values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}{key}"
            diff = first_difference(a[key], b[key], f"{path}{key}.")
            if diff is not None:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}{i}.")
            if diff is not None:
                return diff
        return None
    return None if a == b else (path.rstrip(".") or "(whole value)")


def _lookup(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(d, dict):
            d = d.get(part, "(absent)")
        elif isinstance(d, list) and part.isdigit() and int(part) < len(d):
            d = d[int(part)]
        else:
            return "(absent)"
    return d


def comparable_scenario(data: dict[str, Any]) -> dict[str, Any]:
    scenario = data.get("scenario")
    scenario = dict(scenario) if isinstance(scenario, dict) else {}
    for key in SCENARIO_FIELDS_ALLOWED_TO_DIFFER:
        scenario.pop(key, None)
    return {"scenario": scenario, "variant": data.get("variant")}


def check_same_scenario(shards: list[Shard]) -> None:
    ref = comparable_scenario(shards[0].data)
    for s in shards[1:]:
        other = comparable_scenario(s.data)
        where = first_difference(ref, other)
        if where is not None:
            raise MergeError(f"{s.folder}: {where} is {_lookup(other, where)!r} but {_lookup(ref, where)!r} in "
                             f"{shards[0].folder}: shards must run the same scenario")


def align(shards: list[Shard], max_clock_skew: float) -> float:
    """Check the shards started together; set each one's offset; return the merged t0 (epoch seconds)."""
    if not (isinstance(max_clock_skew, (int, float)) and max_clock_skew >= 0):
        raise MergeError(f"max_clock_skew: {max_clock_skew!r} is not a number of seconds >= 0")
    earliest = min(shards, key=lambda s: s.t0_epoch)
    latest = max(shards, key=lambda s: s.t0_epoch)
    spread = latest.t0_epoch - earliest.t0_epoch
    if spread > max_clock_skew:
        raise MergeError(f"shard clocks too far apart: {latest.folder} started {spread:.3f} s after "
                         f"{earliest.folder} (more than {max_clock_skew:g} s): start them with the same "
                         f"--start-at on NTP-synchronised clocks")
    t0 = earliest.t0_epoch
    for s in shards:
        s.lag_s = s.t0_epoch - t0
        s.offset_s = math.floor(s.lag_s + 0.5)
    return t0


def assign_labels(shards: list[Shard]) -> None:
    """Hostname, or hostname#index when hostnames repeat (several shards on one machine)."""
    names = Counter(s.hostname for s in shards)
    for s in shards:
        s.label = s.hostname if names[s.hostname] == 1 else f"{s.hostname}#{s.index}"


# --- intervals and histograms ------------------------------------------------------


def metric_files(shards: list[Shard]) -> list[str]:
    """The latency metrics every shard logged; one logged by only some shards is refused."""
    present = {m: [s for s in shards if (s.folder / f"latency-{m}.hlog").is_file()] for m in results.METRICS}
    metrics = []
    for m in results.METRICS:
        have = present[m]
        if have and len(have) < len(shards):
            lacking = next(s for s in shards if s not in have)
            raise MergeError(f"{lacking.folder}: no latency-{m}.hlog but {have[0].folder} has one: "
                             f"an incomplete run folder?")
        if have:
            metrics.append(m)
    return metrics


def merge_histograms(shards: list[Shard], metric: str) -> dict[int, tuple[float, HdrHistogram]]:
    """Merged second -> (length, exact sum of the shards' histograms of that second)."""
    merged: dict[int, tuple[float, HdrHistogram]] = {}
    for s in shards:
        try:
            lines = results.read_hlog(s.folder / f"latency-{metric}.hlog")
        except results.ResultError as e:
            raise MergeError(str(e)) from None
        for start_s, length_s, hist in lines:
            k = s.offset_s + round(start_s)
            length, total = merged.get(k) or (0.0, results.new_histogram())
            results.add_histogram(total, hist)
            merged[k] = (max(length, length_s), total)
    return merged


def shard_intervals(shard: Shard) -> list[Interval]:
    """A shard's intervals, moved onto the merged grid (t + its offset)."""
    out = []
    for i, iv in enumerate(shard.result.intervals):
        where = f"{shard.folder / results.RESULT_FILE}: intervals[{i}]"
        t = iv.get("t") if isinstance(iv, dict) else None
        if not isinstance(t, (int, float)):
            raise MergeError(f"{where} has no numeric t: hand-edited?")
        try:
            part = Interval.from_json(iv, where)
        except RecordError:
            raise MergeError(f"{where}: counts must be numbers and errors an object of name: count") from None
        # Percentiles of the merged second come from the summed .hlog histograms, not from these.
        part.latency_us = part.corrected_latency_us = None
        part.t = float(shard.offset_s + round(t))
        out.append(part)
    return out


def merge_interval_counts(shards: list[Shard]) -> dict[int, Interval]:
    """Merged second -> the sum of every shard's interval that landed on it (counts only)."""
    merged: dict[int, Interval] = {}
    for s in shards:
        for part in shard_intervals(s):
            agg = merged.get(part.index)
            merged[part.index] = part if agg is None else agg.merge(part)
    return merged


def build_intervals(counts: dict[int, Interval],
                    hists: dict[str, dict[int, tuple[float, HdrHistogram]]]) -> list[Interval]:
    """One result.json interval per merged second, in the runner's layout."""
    seconds = set(counts)
    for per_second in hists.values():
        seconds.update(per_second)
    n = max(seconds) + 1 if seconds else 0
    out = []
    for k in range(n):
        agg = counts.get(k) or Interval(t=float(k), duration=0.0)
        lengths = [agg.duration] + [per_second[k][0] for per_second in hists.values() if k in per_second]
        agg.duration = round(max(lengths) or 1.0, 3)
        agg.hists = {m: per_second[k][1] for m, per_second in hists.items() if k in per_second}
        out.append(agg.settle())
    return out


# --- summary -----------------------------------------------------------------------


def _prefixed(shards: list[Shard], key: str) -> dict[str, Any]:
    """summary[key] of every shard, its namespace/role keys prefixed with the shard's label."""
    out: dict[str, Any] = {}
    for s in shards:
        part = s.result.summary.get(key)
        if isinstance(part, dict):
            for name, value in part.items():
                out[f"{s.label}:{name}"] = value
    return out


def kept_up(summary: dict[str, Any], load: dict[str, Any], shards: list[Shard]) -> bool:
    """The runner's rule on the merged counts, and no shard may have fallen behind on its own."""
    due = None if load.get("ramp") else float(load.get("rate") or 0) * summary["duration_s"]
    return (results.kept_up(summary, due)
            and all(s.result.summary.get("kept_up", True) is not False for s in shards))


def build_summary(shards: list[Shard], intervals: list[Interval], totals: dict[str, HdrHistogram]) -> Summary:
    scenario = shards[0].data.get("scenario")
    load = scenario.get("load") if isinstance(scenario, dict) else None
    load = load if isinstance(load, dict) else {}
    open_model = load.get("model") == "open"
    summary = Summary.from_intervals(intervals, totals)
    summary.intended_rate = load.get("rate") if open_model else None
    summary.in_flight_at_end = sum(int(s.result.summary.get("in_flight_at_end") or 0) for s in shards)
    summary.workers = [dict(w, name=f"{s.label}:{w.get('name', '?')}", shard=s.index)
                       for s in shards for w in (s.result.summary.get("workers") or []) if isinstance(w, dict)]
    if open_model and any(iv.duration for iv in intervals):
        summary.kept_up = kept_up(summary.to_json(), load, shards)
    served = [s.result.summary.get("server") for s in shards]
    if all(isinstance(x, dict) for x in served):
        # Each shard had its own built-in server: together they served the sum.
        summary.server = {k: sum(int(x.get(k, 0)) for x in served if isinstance(x, dict))
                          for k in ("connections", "requests")}
    summary.states = _prefixed(shards, "states") or None
    summary.counters = _prefixed(shards, "counters") or None
    summary.processes = _prefixed(shards, "processes") or None
    summary.sampler = _prefixed(shards, "sampler") or None
    return summary


# --- CSVs --------------------------------------------------------------------------


def merge_csv(shards: list[Shard], name: str, label_column: str) -> str | None:
    """Every shard's rows in one table: t moved onto the merged clock, label column prefixed."""
    header: list[str] = []
    rows: list[tuple[float, dict[str, str]]] = []
    found = False
    for s in shards:
        path = s.folder / name
        if not path.is_file():
            continue
        found = True
        try:
            text = path.read_text()
        except OSError as e:
            raise MergeError(f"{path}: cannot read: {e.strerror}") from None
        reader = csv.reader(io.StringIO(text))
        cols = next(reader, None)
        if not cols:
            continue
        if "t" not in cols or label_column not in cols:
            raise MergeError(f"{path}: header lacks t or {label_column}: not a tcpstress {name}")
        header.extend(c for c in cols if c not in header)
        for lineno, fields in enumerate(reader, 2):
            if not fields:
                continue
            if len(fields) != len(cols):
                raise MergeError(f"{path}:{lineno}: {len(fields)} fields where the header has {len(cols)}: "
                                 f"truncated or hand-edited?")
            row = dict(zip(cols, fields))
            try:
                t = float(row["t"]) + s.lag_s
            except ValueError:
                raise MergeError(f"{path}:{lineno}: t {row['t']!r} is not a number") from None
            row["t"] = f"{t:.4f}"
            row[label_column] = f"{s.label}:{row[label_column]}"
            rows.append((t, row))
    if not found:
        return None
    rows.sort(key=lambda tr: tr[0])  # stable: rows of one instant keep their shard order
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for _, row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return buf.getvalue()


# --- the merged run ----------------------------------------------------------------


def _common(values: Iterable[Any]) -> Any:
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else None


def _joined(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values) if v is not None)


def build_result(shards: list[Shard], t0: float, intervals: list[Interval], summary: Summary) -> dict[str, Any]:
    first = shards[0].data
    partial = [s for s in shards if s.data.get("partial")]
    ended = [s.data.get("ended_at") for s in shards]
    cpu_counts: list[int] = [s.data["cpu_count"] for s in shards if isinstance(s.data.get("cpu_count"), int)]
    sysctls: dict[str, Any] = {}
    for s in shards:
        for side, values in (s.data.get("sysctls") or {}).items():
            sysctls[f"{s.label}:{side}"] = values
    return {
        "format": results.FORMAT,
        "tool_version": _joined(s.data.get("tool_version") for s in shards),
        "kernel": _joined(s.data.get("kernel") for s in shards),
        "hostname": _joined(s.hostname for s in shards),
        # Each process row and state belongs to one host, so a role can use at
        # most the cores of one machine: the smallest is the safe cap.
        "cpu_count": min(cpu_counts) if cpu_counts else None,
        "started_at": min(str(s.data.get("started_at") or "") for s in shards) or None,
        "ended_at": max(str(e) for e in ended) if all(isinstance(e, str) for e in ended) else None,
        "partial": bool(partial),
        "partial_reason": "; ".join(f"shard {s.index} ({s.label}): {s.data.get('partial_reason') or 'partial'}"
                                    for s in partial) or None,
        "name": first.get("name"), "variant": first.get("variant"),
        "scenario": first["scenario"],
        "sysctls": sysctls,
        "target": first.get("target", {}),
        "t0_epoch": t0,
        "start_at": _common(s.data.get("start_at") for s in shards),
        "shard": None,
        "shards": [{"folder": str(s.folder.resolve()), "hostname": s.hostname, "netns": s.data.get("netns"),
                    "label": s.label,
                    "index": s.index, "count": s.count, "t0_epoch": s.t0_epoch, "offset_s": s.offset_s,
                    "start_at": s.data.get("start_at"), "requests": s.result.summary.get("requests"),
                    "partial": bool(s.data.get("partial"))}
                   for s in shards],
        "intervals": [iv.to_json() for iv in intervals],
        "summary": summary.to_json(),
    }


def merge_runs(folders: list[Path], out: Path, max_clock_skew: float = 1.0) -> results.RunResult:
    """Merge the run folders of shards 0..N-1 of one sharded run into `out` (new or empty).

    Raises MergeError (one line) when the folders are not a complete set of
    shards of one scenario started together, or `out` is not empty; nothing
    is written then. The folder appears whole or not at all: it is built
    beside `out` and renamed into place.
    """
    out = Path(out)
    folders = [Path(f) for f in folders]
    if not folders:
        raise MergeError("no run folders given: pass the folders of every shard")
    check_output(out)
    shards = [load_shard(f, sharded_required=len(folders) > 1) for f in folders]
    check_complete_set(shards)
    check_same_scenario(shards)
    t0 = align(shards, max_clock_skew)
    assign_labels(shards)
    shards.sort(key=lambda s: s.index)

    metrics = metric_files(shards)
    hists = {m: merge_histograms(shards, m) for m in metrics}
    intervals = build_intervals(merge_interval_counts(shards), hists)
    totals = {}
    for m in metrics:
        total = results.new_histogram()
        for _, h in hists[m].values():
            results.add_histogram(total, h)
        totals[m] = total
    data = build_result(shards, t0, intervals, build_summary(shards, intervals, totals))
    csvs = {name: merge_csv(shards, name, column)
            for name, column in ((results.SAMPLES_FILE, "ns"), (results.PROCESSES_FILE, "role"))}
    _write_folder(out, data, metrics, hists, intervals, t0, csvs, len(shards))
    return results.RunResult(data=data, folder=out)


def _write_folder(out: Path, data: dict[str, Any], metrics: list[str],
                  hists: dict[str, dict[int, tuple[float, HdrHistogram]]], intervals: list[Interval],
                  t0: float, csvs: dict[str, str | None], shard_count: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        for m in metrics:
            writer = results.HlogWriter(tmp / f"latency-{m}.hlog", t0,
                                        comment=f"tcpstress {m} latency, microseconds, merged from {shard_count} shards")
            try:
                for k, iv in enumerate(intervals):
                    length, hist = hists[m].get(k) or (iv.duration, results.new_histogram())
                    writer.write(float(k), length or iv.duration, hist)
            finally:
                writer.close()
        for name, text in csvs.items():
            if text is not None:
                results.write_atomic(tmp / name, text)
        load = scenario_from_json(data["scenario"]).load
        if load.stage:
            # Each stage's figures from the merged .hlog files just written, judged on the
            # whole schedule (each shard judged its own 1/N).
            from tcpstress import stages

            stages.add_to_result(data, tmp, load)
        results.RunResult(data=data).save(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; runs are for sharing
        if out.exists():
            out.rmdir()  # checked empty above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
