"""Thresholds: pass/fail checks over a run's own figures (the k6 idea, one small grammar).

    METRIC OP VALUE[UNIT]          OP: <  <=  >  >=  ==  !=

Metrics, and what their value takes:

    total|corrected|connect|ttfb|tls|error . p50|p90|p99|p99.9|p99.99|max|min|mean
                           a latency: us, ms or s; a plain number is milliseconds
                           (as in k6), e.g. corrected.p99 < 20ms, total.p99.9 < 50
    error_rate             errors / (requests + errors): a fraction or a percentage,
                           e.g. error_rate < 0.1%  (the same as error_rate < 0.001)
    requests_per_s  connections_per_s  requests  connections  responses
    error_total  in_flight_at_end  late_starts
                           plain numbers, e.g. requests_per_s > 10000
    status.404  status.5xx a count of responses by status code or class
    errors.NAME            a count of one error, e.g. errors.ECONNREFUSED == 0
    NS.STATE.peak|final    sockets in a TCP state in namespace NS (a label of
                           summary.states: host, client, server), e.g. client.TIME_WAIT.peak < 20000
    counters.NAME          a kernel counter's rise over the run, summed over the
                           namespaces; counters.NS.NAME for one namespace,
                           e.g. counters.TcpExtListenOverflows == 0

Every expression is parsed into a Threshold before anything runs (bad input
is one line naming the expression and what is allowed); evaluate() turns the
thresholds and a finished run's summary into ThresholdResults. A metric the
run did not measure (tls on plain http, a namespace that was not sampled)
fails with the reason "not measured": a gate must not pass on a figure it
never saw.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

LATENCIES = ("total", "corrected", "connect", "ttfb", "tls", "error")
STATS = ("p50", "p90", "p99", "p99.9", "p99.99", "max", "min", "mean")
COUNTS = ("requests_per_s", "connections_per_s", "requests", "connections", "responses", "error_total",
          "in_flight_at_end", "late_starts")
RATIOS = ("error_rate",)
STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
          "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
STATE_FIGURES = ("peak", "final")
OPERATORS = ("<=", ">=", "==", "!=", "<", ">")

TIME_UNITS = {"us": 1.0, "µs": 1.0, "ms": 1000.0, "s": 1_000_000.0}
PLAIN_TIME_UNIT = "ms"  # k6 reads a bare latency bound as milliseconds; so do we
RATIO_UNITS = {"%": 0.01}
ALL_UNITS = list(TIME_UNITS) + list(RATIO_UNITS)

_EXPR_RE = re.compile(r"^\s*(?P<metric>[^\s<>=!]+)\s*(?P<op><=|>=|==|!=|<|>)\s*"
                      r"(?P<value>[-+]?(?:\d[\d_]*)(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(?P<unit>\S*)\s*$")
_COUNTER_RE = re.compile(r"^(Tcp|TcpExt|Ip|IpExt|Udp|MPTcpExt)[A-Z][A-Za-z0-9]*$")
_STATUS_RE = re.compile(r"^([1-5]\d\d|[1-5]xx)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")

ALLOWED = ("METRIC OP VALUE, e.g. 'corrected.p99 < 20ms', 'error_rate < 0.1%', 'status.5xx == 0', "
           "'requests_per_s > 10000', 'client.TIME_WAIT.peak < 20000', 'counters.TcpExtListenOverflows == 0'")


class ThresholdError(ValueError):
    """A threshold that cannot be parsed; str() is the one-line message (with where it came from)."""


@dataclass(frozen=True)
class Threshold:
    """One parsed check. `limit` is in the metric's base unit: µs for a latency, a fraction for a ratio."""

    expr: str
    metric: str
    kind: str  # "time" | "ratio" | "count"
    op: str
    limit: float
    source: str = "--threshold"

    def holds(self, measured: float) -> bool:
        a, b = measured, self.limit
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[self.op]


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold against one run: what was measured, in the metric's base unit, and the verdict."""

    expr: str
    metric: str
    kind: str
    op: str
    limit: float
    measured: float | None  # None: the run did not measure it
    passed: bool
    reason: str = ""  # why it failed other than by its value ("not measured")
    source: str = "--threshold"

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def measured_text(self) -> str:
        return "not measured" if self.measured is None else format_value(self.kind, self.measured)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        d["measured_text"] = self.measured_text
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThresholdResult":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def format_value(kind: str, value: float) -> str:
    if kind == "time":
        if value >= 1_000_000:
            return f"{value / 1_000_000:.3g} s"
        if value >= 1000:
            return f"{value / 1000:.3f} ms"
        return f"{value:g} us"
    if kind == "ratio":
        return f"{value * 100:.3g}%"
    return f"{value:,.1f}" if not float(value).is_integer() else f"{int(value):,}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_metrics() -> list[str]:
    """Spellings to suggest from; namespaces and counters are open-ended, so these are examples."""
    names = [f"{m}.{s}" for m in LATENCIES for s in STATS] + list(COUNTS) + list(RATIOS)
    names += ["status.2xx", "status.4xx", "status.5xx", "errors.ECONNREFUSED"]
    names += [f"{ns}.{st}.{fig}" for ns in ("host", "client", "server") for st in STATES for fig in STATE_FIGURES]
    try:
        from tcpstress.knowledge import COUNTERS_BY_NAME
        names += [f"counters.{c}" for c in COUNTERS_BY_NAME]
    except ImportError:
        pass
    return names


def _metric_kind(metric: str) -> str:
    """The kind of a metric name ("time", "ratio" or "count"); raises ValueError with a did-you-mean."""
    head, _, rest = metric.partition(".")
    if head in LATENCIES:
        if rest not in STATS:
            raise ValueError(f"unknown latency figure {rest!r}{_suggest(rest, STATS)}: "
                             f"{head}. takes {', '.join(STATS)}")
        return "time"
    if not rest:
        if metric in RATIOS:
            return "ratio"
        if metric in COUNTS:
            return "count"
        raise ValueError(f"unknown metric {metric!r}{_suggest(metric, _known_metrics())}")
    if head == "status":
        if not _STATUS_RE.match(rest):
            raise ValueError(f"status.{rest}: expected a status code or class, e.g. status.404, status.5xx")
        return "count"
    if head == "errors":
        if not _NAME_RE.match(rest):
            raise ValueError(f"errors.{rest}: expected an error name, e.g. errors.ECONNREFUSED")
        return "count"
    if head == "counters":
        name = rest.rpartition(".")[2]
        namespace = rest.rpartition(".")[0]
        if namespace and not _NAME_RE.match(namespace):
            raise ValueError(f"counters.{rest!r}: expected counters.NAME or counters.NAMESPACE.NAME")
        if not _COUNTER_RE.match(name):
            from tcpstress.knowledge import COUNTERS_BY_NAME
            known = list(COUNTERS_BY_NAME)
            hint = _suggest(name, known) or _suggest("TcpExt" + name, known) or _suggest("Tcp" + name, known)
            raise ValueError(f"unknown kernel counter {name!r}{hint}: counters are named like "
                             f"TcpExtListenOverflows or TcpActiveOpens, as in /proc/net/netstat and snmp")
        return "count"
    parts = metric.split(".")
    if len(parts) == 3 and _NAME_RE.match(parts[0]) and (parts[1].isupper() or parts[1] in STATES):
        if parts[1] not in STATES:
            raise ValueError(f"unknown TCP state {parts[1]!r}{_suggest(parts[1], STATES)}; states: {', '.join(STATES)}")
        if parts[2] not in STATE_FIGURES:
            raise ValueError(f"{metric}: a state takes .peak or .final{_suggest(parts[2], STATE_FIGURES)}")
        return "count"
    raise ValueError(f"unknown metric {metric!r}{_suggest(metric, _known_metrics())}")


def _scale(kind: str, metric: str, unit: str) -> float:
    """Multiplier from the written unit to the metric's base unit; ValueError when they do not fit."""
    if kind == "time":
        if not unit:
            return TIME_UNITS[PLAIN_TIME_UNIT]
        if unit in TIME_UNITS:
            return TIME_UNITS[unit]
        raise ValueError(f"{metric} is a latency: unit {unit!r}{_suggest(unit, TIME_UNITS)} is not allowed; "
                         f"use us, ms or s (a plain number is {PLAIN_TIME_UNIT})")
    if kind == "ratio":
        if not unit:
            return 1.0
        if unit in RATIO_UNITS:
            return RATIO_UNITS[unit]
        raise ValueError(f"{metric} is a rate: unit {unit!r} is not allowed; use a percentage (0.1%) "
                         f"or a fraction (0.001)")
    if unit:
        raise ValueError(f"{metric} is a count: it takes a plain number, not {unit!r}")
    return 1.0


def parse(expr: str, source: str = "--threshold") -> Threshold:
    """Parse one expression; raises ThresholdError "<source> '<expr>': <what is wrong>; ...".

    `source` names where it came from: "--threshold" or "file.toml: thresholds.checks[2]".
    """
    if not isinstance(expr, str):
        raise ThresholdError(f"{source}: expected a string like 'corrected.p99 < 20ms', got {type(expr).__name__}")
    where = f"{source} {expr!r}"
    m = _EXPR_RE.match(expr)
    if not m:
        if re.search(r"[^<>=!]=[^=]", expr) or "=>" in expr or "=<" in expr:
            raise ThresholdError(f"{where}: operators are <, <=, >, >=, == and !=; expected {ALLOWED}")
        raise ThresholdError(f"{where}: expected {ALLOWED}")
    metric, op, text, unit = m.group("metric"), m.group("op"), m.group("value"), m.group("unit")
    try:
        kind = _metric_kind(metric)
        scale = _scale(kind, metric, unit)
    except ValueError as e:
        raise ThresholdError(f"{where}: {e}") from None
    value = float(text.replace("_", ""))
    if not math.isfinite(value):
        raise ThresholdError(f"{where}: {text!r} is not a finite number")
    canonical = f"{metric} {op} {text}{unit}"
    return Threshold(expr=canonical, metric=metric, kind=kind, op=op, limit=value * scale, source=source)


def parse_all(exprs: Iterable[str], source: str = "--threshold") -> list[Threshold]:
    return [parse(e, source) for e in exprs]


# --- evaluation -------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def measure(metric: str, summary: dict[str, Any]) -> float | None:
    """The metric's value in a result.json summary, in its base unit; None when not measured."""
    head, _, rest = metric.partition(".")
    if head in LATENCIES:
        pct = (summary.get("latency_us") or {}).get(head)
        if not isinstance(pct, dict) or not pct.get("count"):
            return None
        return _number(pct.get(rest))
    if not rest:
        if metric == "error_rate" and "error_rate" not in summary:
            # A run from before error_rate was recorded: the same formula from its parts.
            ok, bad = _number(summary.get("requests")), _number(summary.get("error_total"))
            if ok is None or bad is None:
                return None
            return bad / (ok + bad) if ok + bad else 0.0
        return _number(summary.get(metric))
    if head == "status":
        codes = summary.get("status")
        if not isinstance(codes, dict):
            return None
        if rest.endswith("xx"):
            classes = summary.get("status_classes")
            if isinstance(classes, dict):
                return float(classes.get(rest, 0))
            return float(sum(n for code, n in codes.items() if str(code)[:1] == rest[0]))
        return float(codes.get(rest, 0))
    if head == "errors":
        errors = summary.get("errors")
        return float(errors.get(rest, 0)) if isinstance(errors, dict) else None
    if head == "counters":
        counters = summary.get("counters")
        if not isinstance(counters, dict) or not counters:
            return None
        namespace, _, name = rest.rpartition(".")
        tables = [counters.get(namespace)] if namespace else list(counters.values())
        numbers = [_number(t.get(name)) for t in tables if isinstance(t, dict) and name in t]
        values = [v for v in numbers if v is not None]
        return sum(values) if values else None
    namespace, state, figure = metric.split(".")
    entry = ((summary.get("states") or {}).get(namespace) or {})
    if not entry:
        return None
    # A state the sampler never saw in a sampled namespace held no sockets.
    return _number((entry.get(state) or {}).get(figure, 0))


def evaluate(thresholds: Iterable[Threshold], summary: dict[str, Any]) -> list[ThresholdResult]:
    out = []
    for t in thresholds:
        measured = measure(t.metric, summary)
        passed = measured is not None and t.holds(measured)
        out.append(ThresholdResult(expr=t.expr, metric=t.metric, kind=t.kind, op=t.op, limit=t.limit,
                                   measured=measured, passed=passed,
                                   reason="not measured" if measured is None else "", source=t.source))
    return out


def format_table(results: list[ThresholdResult]) -> str:
    """The PASS/FAIL table that ends a run's text summary."""
    if not results:
        return ""
    rows = [(r.expr, r.measured_text, r.verdict) for r in results]
    w0 = max(len("threshold"), *(len(r[0]) for r in rows))
    w1 = max(len("measured"), *(len(r[1]) for r in rows))
    lines = [f"  {'threshold':<{w0}}  {'measured':>{w1}}  verdict"]
    lines += [f"  {a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    failed = sum(1 for r in results if not r.passed)
    lines.append(f"  thresholds: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


# --- a run's gate -----------------------------------------------------------------

EXIT_FAILED = 99  # a threshold (or, with --fail-on, a finding) failed: the code k6 uses


def record(result, thresholds: list[Threshold]) -> list[ThresholdResult]:
    """Evaluate against a finished run and keep the verdicts in its result.json ("thresholds", top level)."""
    verdicts = evaluate(thresholds, result.summary)
    result.data["thresholds"] = [v.to_dict() for v in verdicts]
    if result.folder is not None:
        result.save(result.folder)
    return verdicts


def recorded(data: dict[str, Any]) -> list[ThresholdResult]:
    """The verdicts a result.json holds (none for a run without thresholds)."""
    out = []
    for d in data.get("thresholds") or []:
        try:
            out.append(ThresholdResult.from_dict(d))
        except TypeError:
            continue  # hand-edited: the report shows what it can read
    return out


def report_rows(runs) -> tuple[list[str], list[list[str]]]:
    """The report's thresholds table (headers, rows) over loaded runs; no rows when none had thresholds.
    The run column is there only when several runs are shown."""
    several = len(runs) > 1
    headers = (["run"] if several else []) + ["threshold", "measured", "verdict"]
    rows = []
    for run in runs:
        for v in recorded(run.result.data):
            rows.append(([run.label] if several else []) + [v.expr, v.measured_text, v.verdict])
    return headers, rows
