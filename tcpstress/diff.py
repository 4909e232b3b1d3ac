"""`tcpstress diff BASE NEW`: did a release get faster, slower, or not significantly different?

pyperf's compare_to is the model: each metric's two values, their ratio and a
verdict. The verdict never rests on two single numbers: every run is a series
of one-second intervals, and a metric's per-interval values (requests/s per
second, the p99 of each second's histogram from the .hlog files, errors per
second, each second's peak socket count) are the samples of a two-sided
Mann-Whitney U test, computed exactly by permutation (or from 20,000 seeded
random permutations when there are too many). A change is significant when
p < ALPHA and it is at least `min_change` (relative); its direction decides
the word: for a metric where higher is better (requests/s) a rise is
"faster", for one where lower is better (latency) a rise is "slower"; error
and kernel-failure figures read "better"/"worse", and figures with no good
direction (connections/s, socket-state peaks) "higher"/"lower".

A side is a run folder, a comparison folder (its variants, paired by name
with the other side's), or a `--repeat` folder (its repeats pooled: the
intervals of every repetition are samples of the same group).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tcpstress.report.rundata import RunData, load_run
from tcpstress.results import COMPARISON_FILE, COMPARISON_FORMAT, ResultError, add_histogram, new_histogram

ALPHA = 0.05
EXACT_LIMIT = 20_000  # permutations enumerated exactly up to this many; beyond, sampled
SAMPLED_PERMUTATIONS = 20_000
MIN_INTERVAL_S = 0.5  # a shorter last interval is too short to be a fair sample of a rate
LATENCY_METRICS = ("total", "corrected")
LATENCY_FIGURES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
KEY_STATES = ("ESTABLISHED", "TIME_WAIT", "SYN_RECV", "CLOSE_WAIT", "FIN_WAIT2")
# Counters that only rise when something goes wrong: more is worse.
FAILURE_COUNTERS = (
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtTCPTimeWaitOverflow",
    "TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnMemory", "TcpExtTCPSynRetrans", "TcpAttemptFails",
    "TcpEstabResets", "TcpRetransSegs",
)

NO_CHANGE = "no significant change"
WORDS = {"higher": ("faster", "slower"), "lower": ("faster", "slower"), "less": ("better", "worse"),
         None: ("higher", "lower")}


class DiffError(ValueError):
    """Folders that cannot be compared; str() is the one-line message."""


# --- statistics -----------------------------------------------------------------


def _midranks(values: list[float]) -> list[float]:
    """Ranks 1..n of values, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def mann_whitney_p(a: list[float], b: list[float], seed: int = 0) -> float | None:
    """Two-sided p-value of the Mann-Whitney U test of a against b, by permutation.

    Exact (every split of the pooled ranks) when there are at most EXACT_LIMIT
    splits, else SAMPLED_PERMUTATIONS seeded random ones, so the same folders
    always give the same answer. Ties take mid-ranks. None when a side is empty.
    With 3 samples a side the smallest possible p is 0.1: short runs cannot
    show a significant change, and say so (see `min_samples`).
    """
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return None
    ranks = _midranks(list(a) + list(b))
    centre = n1 * (n1 + len(b) + 1) / 2.0  # the expected rank sum of a
    observed = abs(sum(ranks[:n1]) - centre)
    eps = 1e-9
    total = math.comb(n1 + n2, n1)
    if total <= EXACT_LIMIT:
        hits = sum(1 for idx in itertools.combinations(range(n1 + n2), n1)
                   if abs(sum(ranks[i] for i in idx) - centre) >= observed - eps)
        return hits / total
    rng = random.Random(seed)
    hits = 0
    for _ in range(SAMPLED_PERMUTATIONS):
        if abs(sum(rng.sample(ranks, n1)) - centre) >= observed - eps:
            hits += 1
    return (hits + 1) / (SAMPLED_PERMUTATIONS + 1)


def min_samples(alpha: float = ALPHA) -> int:
    """The fewest intervals per side (equal sides) with which p < alpha is possible at all."""
    n = 1
    while 2 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


# --- the model --------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDiff:
    """One metric of one pair: the two values, their ratio, the test and the verdict."""

    metric: str
    unit: str  # "req/s", "ms", "%", "" ...
    better: str | None  # "higher" | "lower" | "less" (a failure figure) | None (no good direction)
    base: float | None
    new: float | None
    ratio: float | None  # new / base (None when base is 0 or a side is missing)
    p_value: float | None
    n_base: int
    n_new: int
    verdict: str
    regression: float  # how much worse, relative (0 when not worse; inf from 0 to something)

    @property
    def is_regression(self) -> bool:
        return self.verdict in ("slower", "worse")


@dataclass
class PairDiff:
    name: str
    base_folders: list[str]
    new_folders: list[str]
    metrics: list[MetricDiff] = field(default_factory=list)


@dataclass
class DiffResult:
    base: str
    new: str
    pairs: list[PairDiff]
    unpaired: list[str]
    alpha: float
    min_change: float
    max_regression: float | None

    def regressions(self) -> list[tuple[PairDiff, MetricDiff]]:
        """Significant regressions beyond --max-regression (none without it)."""
        if self.max_regression is None:
            return []
        return [(p, m) for p in self.pairs for m in p.metrics
                if m.is_regression and m.regression > self.max_regression]

    def to_dict(self) -> dict[str, Any]:
        def metric(m: MetricDiff) -> dict[str, Any]:
            d = asdict(m)
            if math.isinf(d["regression"]):
                d["regression"] = None  # JSON has no infinity: from zero to something
                d["from_zero"] = True
            return d

        return {"format": "tcpstress-diff/1", "base": self.base, "new": self.new, "alpha": self.alpha,
                "min_change": self.min_change, "max_regression": self.max_regression,
                "pairs": [{"name": p.name, "base_folders": p.base_folders, "new_folders": p.new_folders,
                           "metrics": [metric(m) for m in p.metrics]} for p in self.pairs],
                "unpaired": self.unpaired,
                "regressions": [{"pair": p.name, "metric": m.metric} for p, m in self.regressions()]}


# --- loading the sides --------------------------------------------------------------


def load_side(folder: Path) -> dict[str, list[RunData]]:
    """A side's groups: name -> runs. A run folder is one group; a comparison folder one per
    variant; a --repeat folder (comparison.json "groups") pools each group's repeats."""
    folder = Path(folder)
    index = folder / COMPARISON_FILE
    if not index.is_file():
        run = load_run(folder)
        return {run.result.data.get("variant") or run.result.data.get("name") or folder.name: [run]}
    try:
        data = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError):
        raise ResultError(f"{index}: not valid JSON: truncated or hand-edited?") from None
    if not isinstance(data, dict) or data.get("format") != COMPARISON_FORMAT or not isinstance(data.get("runs"), dict):
        raise ResultError(f"{index}: not a tcpstress comparison index ({COMPARISON_FORMAT})")
    groups_of: dict[str, Any] = data["groups"] if isinstance(data.get("groups"), dict) else {}
    runs: dict[str, Any] = data["runs"]
    out: dict[str, list[RunData]] = {}
    for name in data.get("variants") or list(runs):
        sub = runs.get(name)
        if not isinstance(sub, str) or not (folder / sub / "result.json").is_file():
            continue  # a variant the comparison never reached
        out.setdefault(str(groups_of.get(name, name)), []).append(load_run(folder / sub, str(name)))
    if not out:
        raise ResultError(f"{folder}: the comparison holds no finished runs")
    return out


# --- per-metric samples ------------------------------------------------------------


@dataclass
class _Metric:
    name: str
    unit: str
    better: str | None
    value: Callable[[list[RunData]], float | None]  # the pooled whole-run figure
    samples: Callable[[list[RunData]], list[float]]  # one per interval
    scale: float = 1.0  # shown value = value / scale


def _intervals(runs: list[RunData]):
    for run in runs:
        for iv in run.result.intervals:
            if float(iv.get("duration", 1.0)) >= MIN_INTERVAL_S:
                yield iv


def _rate(key: str) -> tuple[Callable, Callable]:
    def value(runs):
        duration = sum(float(iv.get("duration", 1.0)) for run in runs for iv in run.result.intervals)
        return sum(iv.get(key, 0) for run in runs for iv in run.result.intervals) / duration if duration else None

    def samples(runs):
        return [iv.get(key, 0) / float(iv.get("duration", 1.0)) for iv in _intervals(runs)]

    return value, samples


def _errors(iv: dict) -> int:
    return sum((iv.get("errors") or {}).values())


def _error_rate() -> tuple[Callable, Callable]:
    def fraction(ok: float, bad: float) -> float:
        return bad / (ok + bad) if ok + bad else 0.0

    def value(runs):
        ivs = [iv for run in runs for iv in run.result.intervals]
        return fraction(sum(iv.get("requests", 0) for iv in ivs), sum(_errors(iv) for iv in ivs)) if ivs else None

    def samples(runs):
        return [fraction(iv.get("requests", 0), _errors(iv)) for iv in _intervals(runs)]

    return value, samples


def _status(code: str) -> tuple[Callable, Callable]:
    def value(runs):
        duration = sum(float(iv.get("duration", 1.0)) for run in runs for iv in run.result.intervals)
        n = sum((iv.get("status") or {}).get(code, 0) for run in runs for iv in run.result.intervals)
        return n / duration if duration else None

    def samples(runs):
        return [(iv.get("status") or {}).get(code, 0) / float(iv.get("duration", 1.0)) for iv in _intervals(runs)]

    return value, samples


def _latency(metric: str, percentile: float) -> tuple[Callable, Callable]:
    def value(runs):
        merged = new_histogram()
        for run in runs:
            for _, _, h in run.hlogs.get(metric, []):
                add_histogram(merged, h)
        return float(merged.get_value_at_percentile(percentile)) if merged.get_total_count() else None

    def samples(runs):
        return [float(h.get_value_at_percentile(percentile)) for run in runs
                for _, length, h in run.hlogs.get(metric, []) if length >= MIN_INTERVAL_S and h.get_total_count()]

    return value, samples


def _per_second(run: RunData, ns: str, column: str, combine: Callable[[list[float]], float]) -> list[float]:
    """A samples.csv column of one namespace, combined per whole second of the measured phase."""
    duration = float(run.summary.get("duration_s") or len(run.result.intervals))
    seconds: dict[int, list[float]] = {}
    for row in run.samples:
        t, v = row.get("t"), row.get(column)
        if row.get("ns") != ns or not isinstance(t, (int, float)) or not isinstance(v, (int, float)):
            continue
        if 0 <= t < duration:
            seconds.setdefault(int(t), []).append(float(v))
    return [combine(vs) for _, vs in sorted(seconds.items())]


def _state_peak(ns: str, state: str) -> tuple[Callable, Callable]:
    def value(runs):
        peaks = [((run.summary.get("states") or {}).get(ns) or {}).get(state, {}).get("peak") for run in runs]
        peaks = [p for p in peaks if isinstance(p, (int, float))]
        return float(max(peaks)) if peaks else None

    def samples(runs):
        return [v for run in runs for v in _per_second(run, ns, state, max)]

    return value, samples


def _counter(name: str) -> tuple[Callable, Callable]:
    def value(runs):
        """Per second of the measured phase, so runs of different lengths compare."""
        total = duration = 0.0
        for run in runs:
            for table in (run.summary.get("counters") or {}).values():
                if isinstance(table, dict) and isinstance(table.get(name), (int, float)):
                    total += table[name]
            duration += float(run.summary.get("duration_s") or 0)
        return total / duration if duration else None

    def samples(runs):
        out = []
        for run in runs:
            per_ns = [_per_second(run, ns, name, sum) for ns in (run.summary.get("counters") or {})]
            out += [sum(col) for col in zip(*per_ns)] if per_ns else []
        return out

    return value, samples


def metrics_for(base: list[RunData], new: list[RunData]) -> list[_Metric]:
    """What a pair is compared on: rates and latencies always, the rest when either side has any."""
    both = base + new
    out = [_Metric("requests_per_s", "req/s", "higher", *_rate("requests")),
           _Metric("connections_per_s", "conn/s", None, *_rate("connections"))]
    for metric in LATENCY_METRICS:
        if any(run.hlogs.get(metric) for run in both):
            for figure, pct in LATENCY_FIGURES:
                out.append(_Metric(f"{metric}.{figure}", "ms", "lower", *_latency(metric, pct), scale=1000.0))
    out.append(_Metric("error_rate", "%", "less", *_error_rate(), scale=0.01))
    codes = sorted({code for run in both for code in (run.summary.get("status") or {})})
    for code in codes:
        out.append(_Metric(f"status.{code}", "/s", "less" if code[:1] in "45" else None, *_status(code)))
    namespaces = sorted({ns for run in both for ns in (run.summary.get("states") or {})})
    for ns in namespaces:
        for state in KEY_STATES:
            if any(((run.summary.get("states") or {}).get(ns) or {}).get(state, {}).get("peak") for run in both):
                out.append(_Metric(f"{ns}.{state}.peak", "", None, *_state_peak(ns, state)))
    for name in FAILURE_COUNTERS:
        if any(isinstance(t, dict) and t.get(name) for run in both for t in (run.summary.get("counters") or {}).values()):
            out.append(_Metric(f"counters.{name}", "/s", "less", *_counter(name)))
    return out


def _verdict(m: _Metric, base: float | None, new: float | None, p: float | None, alpha: float,
             min_change: float) -> tuple[str, float]:
    """(verdict, regression) of one metric."""
    if base is None or new is None or p is None:
        return "not measured", 0.0
    if base == new:
        return NO_CHANGE, 0.0
    relative = abs(new - base) / abs(base) if base else math.inf
    if p >= alpha or relative < min_change:
        return NO_CHANGE, 0.0
    rises = new > base
    good, bad = WORDS[m.better]
    if m.better is None:
        return (good if rises else bad), 0.0
    improved = rises if m.better == "higher" else not rises
    if improved:
        return good, 0.0
    worse = (base - new) / base if m.better == "higher" else (relative if base else math.inf)
    return bad, worse


def diff_pair(name: str, base: list[RunData], new: list[RunData], alpha: float = ALPHA,
              min_change: float = 0.0) -> PairDiff:
    pair = PairDiff(name=name, base_folders=[str(r.folder) for r in base], new_folders=[str(r.folder) for r in new])
    for m in metrics_for(base, new):
        b, n = m.value(base), m.value(new)
        sb, sn = m.samples(base), m.samples(new)
        p = mann_whitney_p(sb, sn)
        verdict, regression = _verdict(m, b, n, p, alpha, min_change)
        ratio = (n / b) if (b and n is not None) else None
        pair.metrics.append(MetricDiff(
            metric=m.name, unit=m.unit, better=m.better,
            base=None if b is None else b / m.scale, new=None if n is None else n / m.scale,
            ratio=ratio, p_value=p, n_base=len(sb), n_new=len(sn), verdict=verdict, regression=regression))
    return pair


def diff_folders(base: Path, new: Path, alpha: float = ALPHA, min_change: float = 0.0,
                 max_regression: float | None = None) -> DiffResult:
    """Compare two sides; raises ResultError/DiffError (one line) for folders that cannot be compared."""
    sides = load_side(base), load_side(new)
    if len(sides[0]) == 1 and len(sides[1]) == 1:
        # Two runs of one thing, whatever each side's variant was called.
        (bn, bruns), (nn, nruns) = next(iter(sides[0].items())), next(iter(sides[1].items()))
        pairs = [(bn if bn == nn else f"{bn} -> {nn}", bruns, nruns)]
        unpaired: list[str] = []
    else:
        common = [n for n in sides[0] if n in sides[1]]
        if not common:
            raise DiffError(f"{base} and {new} share no variant name: {', '.join(sides[0])} against "
                            f"{', '.join(sides[1])}")
        pairs = [(n, sides[0][n], sides[1][n]) for n in common]
        unpaired = [f"{n} (only in {base})" for n in sides[0] if n not in sides[1]]
        unpaired += [f"{n} (only in {new})" for n in sides[1] if n not in sides[0]]
    return DiffResult(base=str(base), new=str(new),
                      pairs=[diff_pair(n, b, nw, alpha, min_change) for n, b, nw in pairs],
                      unpaired=unpaired, alpha=alpha, min_change=min_change, max_regression=max_regression)


# --- output -------------------------------------------------------------------------


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:,.3f}"
    if unit == "%":
        return f"{value:.3g}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def rows(pair: PairDiff) -> list[list[str]]:
    out = []
    for m in pair.metrics:
        label = m.metric + (f" ({m.unit})" if m.unit else "")
        ratio = "-" if m.ratio is None else f"{m.ratio:.2f}x"
        p = "-" if m.p_value is None else f"{m.p_value:.3f}"
        out.append([label, _num(m.base, m.unit), _num(m.new, m.unit), ratio, p, f"{m.n_base}/{m.n_new}", m.verdict])
    return out


HEADERS = ["metric", "base", "new", "ratio", "p", "intervals", "verdict"]


def format_text(result: DiffResult) -> str:
    lines = [f"base: {result.base}", f"new:  {result.new}"]
    for pair in result.pairs:
        table = [HEADERS] + rows(pair)
        widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
        lines.append("")
        lines.append(f"{pair.name}:")
        for r in table:
            lines.append("  " + "  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        few = min(min(m.n_base, m.n_new) for m in pair.metrics) if pair.metrics else 0
        need = min_samples(result.alpha)
        if few < need:
            lines.append(f"  note: {few} interval(s) on a side; a change can be significant at p < {result.alpha:g} "
                         f"only with {need} or more per side: run longer or --repeat")
    for u in result.unpaired:
        lines.append(f"not compared: {u}")
    lines.append(_bottom_line(result))
    return "\n".join(lines)


def _bottom_line(result: DiffResult) -> str:
    worse = [(p, m) for p in result.pairs for m in p.metrics if m.is_regression]
    if result.max_regression is not None:
        beyond = result.regressions()
        if beyond:
            return (f"REGRESSION beyond {result.max_regression:.1%}: "
                    + "; ".join(f"{p.name} {m.metric} {m.verdict} ({_change(m)})" for p, m in beyond))
        return f"no significant regression beyond {result.max_regression:.1%}"
    if worse:
        return "significant regressions: " + "; ".join(f"{p.name} {m.metric} ({_change(m)})" for p, m in worse)
    return "no significant regression"


def _change(m: MetricDiff) -> str:
    return "from 0" if math.isinf(m.regression) else f"{m.regression:.1%} worse"


def format_markdown(result: DiffResult) -> str:
    from tcpstress.report.markdown import md_table

    out = ["# tcpstress diff", "", f"**base** `{result.base}` · **new** `{result.new}`", "",
           f"Verdicts: two-sided Mann-Whitney U over per-second intervals, p < {result.alpha:g}"
           + (f", changes under {result.min_change:.1%} ignored" if result.min_change else "") + ".", "",
           f"**{_bottom_line(result)}**", ""]
    for pair in result.pairs:
        out += [f"## {pair.name}", ""] + md_table(HEADERS, rows(pair)) + [""]
    for u in result.unpaired:
        out.append(f"- not compared: {u}")
    return "\n".join(out) + "\n"


def format_html(result: DiffResult) -> str:
    from html import escape

    from tcpstress.report.html import CSS, html_table  # the report's look, so a diff page reads like one

    def mark(r: int, i: int, cell: str) -> str:
        return "bad" if i == 6 and cell in ("slower", "worse") else ""

    bad = bool(result.regressions()) or (result.max_regression is None and any(
        m.is_regression for p in result.pairs for m in p.metrics))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>tcpstress diff</title><style>{CSS}</style></head><body><main>",
             "<h1>tcpstress diff</h1>",
             f'<p class="sub">base <code>{escape(result.base)}</code> · new <code>{escape(result.new)}</code></p>',
             f'<div class="verdict {"bad" if bad else "ok"}">{escape(_bottom_line(result))}</div>']
    for pair in result.pairs:
        parts.append(f"<h2>{escape(pair.name)}</h2>")
        parts.append(html_table(HEADERS, rows(pair), cell_class=mark))
    for u in result.unpaired:
        parts.append(f'<p class="note">not compared: {escape(u)}</p>')
    parts.append(f'<p class="note">Verdicts: two-sided Mann-Whitney U over per-second intervals, p &lt; '
                 f"{result.alpha:g}; ratio is new / base of the whole-run figures.</p>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def parse_fraction(text: str, flag: str) -> float:
    """'5%' or '0.05' -> 0.05; raises DiffError naming the flag."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise DiffError(f"{flag} {raw!r}: expected a percentage like 5% (or a fraction like 0.05)") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise DiffError(f"{flag} {raw!r}: allowed 0% to 10000%")
    return value


def write_report(result: DiffResult, out: Path) -> Path:
    """diff.html, diff.md and diff.json in out (each written atomically); returns diff.html."""
    from tcpstress.results import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "diff.json", json.dumps(result.to_dict(), indent=2) + "\n")
    write_atomic(out / "diff.md", format_markdown(result))
    write_atomic(out / "diff.html", format_html(result))
    return out / "diff.html"
