"""Side-by-side tables of runs: the comparison table and the read-back knobs."""

from __future__ import annotations

from typing import Any, Iterable

from tcpstress.report.rundata import RunData, as_run_data
from tcpstress.report.wording import fmt_number
from tcpstress.results import RunResult

# Counters worth a column in the comparison table, in the order a reader meets the failures.
KEY_COUNTERS = (
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtSyncookiesSent",
    "TcpExtTCPTimeWaitOverflow", "TcpExtTWRecycled", "TcpAttemptFails", "TcpEstabResets",
    "TcpRetransSegs", "TcpOutRsts",
)


def comparison_rows(runs: Iterable[RunData | RunResult]) -> list[dict[str, Any]]:
    """One dict per run with the numbers a side-by-side table shows (raw units).

    Keys: variant, requests_per_s, connections_per_s, intended_rate, errors
    ({name: count}), error_total, error_pct, p50_ms, p99_ms, p999_ms (None
    without latency data), p99_corrected_ms (open model: from each request's
    intended start; None otherwise), at_start ({state: {ns: count}}: sockets an earlier run
    left, present before the load began, only where they matter), peaks ({state: {ns: peak}} for TIME_WAIT,
    SYN_RECV, CLOSE_WAIT, ESTABLISHED), peak_time_wait / peak_syn_recv /
    peak_close_wait (max over namespaces), counters ({name: rise summed over
    namespaces} for KEY_COUNTERS), generator_cpu_peak, target_cpu_peak.
    """
    rows = []
    for run in (as_run_data(r) for r in runs):
        lat = run.latency_us("total")
        corrected = run.latency_us("corrected")
        peaks = {state: {ns: run.peak(state, ns) for ns in run.namespaces} for state in PEAK_STATES}
        before = {state: {ns: left for ns in run.namespaces if (left := leftover(run, state, ns))}
                  for state in PEAK_STATES}
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
            "at_start": before,
            "peak_time_wait": max((p - before["TIME_WAIT"].get(ns, 0) for ns, p in peaks["TIME_WAIT"].items()),
                                  default=0),
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


def leftover(run: RunData, state: str, ns: str) -> int:
    """Sockets of this state found before the load began, when they are a noticeable part of its peak.

    ESTABLISHED at the start is the sampler's own view of long-lived connections (and on
    loopback each is counted on both ends); only the states a closed connection leaves behind count.
    """
    if state not in ("TIME_WAIT", "CLOSE_WAIT", "FIN_WAIT2", "LAST_ACK"):
        return 0
    start = run.at_start(state, ns)
    return start if start >= 10 and start >= 0.1 * run.peak(state, ns) else 0


def _cell_peak(per_ns: dict[str, int], before: dict[str, int] | None = None) -> str:
    if not per_ns:
        return "0"
    ns, peak = max(per_ns.items(), key=lambda kv: kv[1])
    if peak == 0:
        return "0"
    left = (before or {}).get(ns, 0)
    where = f" ({ns})" if ns != "host" else ""
    if left:
        # The run's own sockets, and the earlier ones said apart, not added to them.
        return f"{max(peak - left, 0):,}{where} +{left:,} before"
    return f"{peak:,}{where}"


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
        rate = fmt_number(round(r["requests_per_s"], 1))
        if r.get("intended_rate"):
            rate += f" / {fmt_number(r['intended_rate'])}"
        errs = ", ".join(f"{n} {r['errors'][n]:,}" for n in error_names if r["errors"].get(n)) or "0"
        cells = [
            r["variant"], rate, fmt_number(round(r["connections_per_s"], 1)), errs, f"{r['error_pct']:.2f}",
            _cell_ms(r["p50_ms"]), _cell_ms(r["p99_ms"]), _cell_ms(r["p999_ms"]),
        ]
        cells += [_cell_ms(r["p99_corrected_ms"])] if corrected else []
        cells += [_cell_peak(r["peaks"][s], r.get("at_start", {}).get(s)) for s in states]
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


_ZERO_CELLS = {"0", "0.00", "–", ""}


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 or header[i] == "errors" else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def terminal_tables(rows: list[dict[str, Any]], width: int = 120) -> str:
    """The side-by-side table for a terminal of `width` columns.

    Columns that are zero in every run are dropped; the kernel counters go to a
    second table, and the state peaks join them while the first is still too wide.
    """
    headers, cells = comparison_table(rows)
    keep = [i for i, h in enumerate(headers)
            if i < 2 or h in ("p50 ms", "p99 ms") or any(r[i] not in _ZERO_CELLS for r in cells)]
    counter_names = {c.removeprefix("TcpExt").removeprefix("Tcp") for c in KEY_COUNTERS}
    first = [i for i in keep if headers[i] not in counter_names]
    second = [i for i in keep if headers[i] in counter_names]

    def width_of(columns: list[int]) -> int:
        return max(len(line) for line in _text_table([headers[i] for i in columns],
                                                     [[r[i] for i in columns] for r in cells]))

    # Peaks move over, rightmost first, until the first table fits.
    while width_of(first) > width and any(headers[i].startswith("peak ") for i in first):
        moved = [i for i in first if headers[i].startswith("peak ")][-1]
        first.remove(moved)
        second.insert(0, moved)
    out = _text_table([headers[i] for i in first], [[r[i] for i in first] for r in cells])
    if second:
        columns = [0] + sorted(second)
        out += ["", *_text_table([headers[i] for i in columns], [[r[i] for i in columns] for r in cells])]
    return "\n".join(out)
