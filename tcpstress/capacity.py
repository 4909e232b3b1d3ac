"""Capacity search: the highest open-model rate a server sustains within an SLO, and
the limit that stops it first.

The rate grows geometrically until the SLO (release-gate thresholds) fails,
then bisects between the last pass and the first fail. Each step is one
ordinary run (runner.run_scenario) in its own folder, so each has the full
run folder, findings and report. The limit is named from the failing step's
evidence: its errors by name, and the report's findings (diagnose) with
their knobs.

A step in which the generator could not keep its schedule stops the search:
what failed there is the load tool, and the answer says so instead of
presenting a rate as the server's capacity.

search() is pure (it takes the step as a function) so its logic is tested
without a network.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tcpstress import results
from tcpstress.record import RunRecord, Summary

CAPACITY_FILE = "capacity.json"
CAPACITY_FORMAT = "tcpstress-capacity/1"
FIGURE_FILE = "capacity.png"

# For a percentile q to rest on something, about ten requests must lie beyond it:
# 10 / (1 - q), so 1,000 requests for a p99 and 10,000 for a p99.9.
TAIL_REQUESTS = 10
MIN_STEP_REQUESTS = 100
# The open model counts as behind when over 1% of its starts were late (results.kept_up);
# it is the generator's own fault when, by Little's law, under half of its connections were busy.
BUSY_SLOTS_SHARE = 0.5
GENERATOR_BUSY_SHARE = 0.9  # of one core per worker
# A worker that waited this share of the time for a CPU (another process on its core) measures
# those waits into its latencies: measured 7% per worker sharing a core with the built-in server,
# 30% with a busy loop on its core as well (2-core machine, 4,000/s).
GENERATOR_WAIT_SHARE = 0.2
# Behind enough to void the step: a tenth of the starts late, or under 95% of the schedule started.
LATE_SHARE = 0.10
STARTED_SHARE = 0.95


@dataclass(frozen=True)
class SearchPlan:
    start: float
    growth: float = 2.0
    precision: float = 0.05  # stop bisecting when (fail - pass) <= precision * pass
    max_rate: float = 1_000_000.0
    min_rate: float = 1.0
    max_steps: int = 20
    retries: int = 1  # runs again at the same rate when a step was generator-limited


@dataclass(frozen=True)
class Limit:
    """What stopped the server at the failing step, and the knobs that govern it."""

    name: str
    knobs: tuple[str, ...] = ()
    evidence: str = ""

    def text(self) -> str:
        knobs = f" [knobs: {', '.join(self.knobs)}]" if self.knobs else ""
        return f"{self.name}{knobs}" + (f": {self.evidence}" if self.evidence else "")


@dataclass(frozen=True)
class Verdict:
    expr: str
    measured: str
    passed: bool


@dataclass(frozen=True)
class StepResult:
    """One step of the search: a run at `rate` and how it fared against the SLO."""

    rate: float
    passed: bool
    generator_limited: str | None = None  # why, when the generator (not the server) fell behind
    index: int = 0
    seconds: float = 0.0
    folder: str | None = None
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    requests_per_s: float = 0.0
    corrected_p99_us: float | None = None
    total_p99_us: float | None = None
    kept_up: bool = True
    verdicts: tuple[Verdict, ...] = ()
    limit: Limit | None = None
    per_second: tuple[tuple[float, int, int], ...] = ()  # (seconds, requests, errors) per interval
    error_names: tuple[tuple[str, int], ...] = ()


@dataclass
class Answer:
    """The search's outcome. status: found | generator-limited | no-fail | no-pass."""

    status: str
    steps: list[StepResult] = field(default_factory=list)
    capacity: float | None = None  # the highest passing rate (found, or no-fail: a lower bound)
    bracket: tuple[float, float] | None = None  # [pass, fail]
    limit: Limit | None = None  # at the bracket's failing rate
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bracket"] = list(self.bracket) if self.bracket else None
        return d


# --- the search (pure) --------------------------------------------------------------


def _round_rate(rate: float) -> float:
    return float(max(1, round(rate)))


def next_rate(best_pass: float | None, first_fail: float | None, plan: SearchPlan) -> float | None:
    """The next rate to try, or None when the search is done."""
    if first_fail is None:
        if best_pass is None or best_pass >= plan.max_rate:
            return None
        return _round_rate(min(best_pass * plan.growth, plan.max_rate))
    if best_pass is None:
        lower = _round_rate(first_fail / plan.growth)
        return lower if lower >= plan.min_rate and lower < first_fail else None
    if first_fail - best_pass <= plan.precision * best_pass:
        return None
    mid = _round_rate((best_pass + first_fail) / 2)
    return mid if best_pass < mid < first_fail else None


def search(step: Callable[[float], StepResult], plan: SearchPlan) -> Answer:
    """Grow the rate geometrically until a step fails, then bisect [last pass, first fail]."""
    steps: list[StepResult] = []
    best_pass: float | None = None
    first_fail: float | None = None
    rate: float | None = _round_rate(plan.start)
    while rate is not None and len(steps) < plan.max_steps:
        r = step(rate)
        steps.append(r)
        for _ in range(plan.retries):
            # A generator that fell behind once may have met a burst of other work on a
            # shared machine; a real generator limit comes back at the same rate.
            if not r.generator_limited or len(steps) >= plan.max_steps:
                break
            r = step(rate)
            steps.append(r)
        if r.generator_limited:
            below = (f"; the server met the SLO at {best_pass:,.0f}/s, the last rate this generator could hold"
                     if best_pass else "")
            return Answer("generator-limited", steps, capacity=None, bracket=None,
                          message=f"generator-limited at {rate:,.0f}/s: not the server's capacity; use more "
                                  f"--workers or shards ({r.generator_limited}){below}")
        if not r.passed and not r.requests and r.errors:
            # Not one success: the target is down or refuses everything; lower rates will not tell more.
            names = ", ".join(f"{n} {c:,}" for n, c in r.error_names[:3]) or "no answer"
            return Answer("no-pass", steps, limit=r.limit,
                          message=f"not one request succeeded at {rate:,.0f}/s ({names}): nothing to search")
        if r.passed:
            best_pass = rate if best_pass is None else max(best_pass, rate)
        else:
            first_fail = rate if first_fail is None else min(first_fail, rate)
        rate = next_rate(best_pass, first_fail, plan)
    if best_pass is not None and first_fail is not None:
        failing = min((s for s in steps if not s.passed and s.rate == first_fail), key=lambda s: s.index)
        return Answer("found", steps, capacity=best_pass, bracket=(best_pass, first_fail), limit=failing.limit,
                      message=f"capacity {best_pass:,.0f}/s within the SLO (bracket [{best_pass:,.0f}, "
                              f"{first_fail:,.0f}]/s)")
    if best_pass is not None:
        why = (f"--max-rate {plan.max_rate:,.0f}/s" if best_pass >= plan.max_rate else f"{plan.max_steps} steps")
        return Answer("no-fail", steps, capacity=best_pass,
                      message=f"the SLO held at every rate tried, up to {best_pass:,.0f}/s (stopped at {why}): "
                              f"the capacity is above that")
    lowest = min(s.rate for s in steps) if steps else plan.start
    limit = steps[-1].limit if steps else None
    return Answer("no-pass", steps, limit=limit,
                  message=f"the SLO failed at every rate tried, down to {lowest:,.0f}/s")


# --- what a step needs ----------------------------------------------------------------


def needed_requests(checks) -> int:
    """Requests a step needs for the SLO's figures to mean something: ten beyond a
    percentile's tail, ten failures at a ratio's bound."""
    need = MIN_STEP_REQUESTS
    for t in checks:
        head, _, figure = t.metric.partition(".")
        if t.kind == "time" and figure.startswith("p"):
            q = float(figure[1:]) / 100.0
            if q < 1:
                need = max(need, math.ceil(round(TAIL_REQUESTS / (1 - q), 6)))
        elif t.kind == "ratio" and t.limit > 0:
            need = max(need, math.ceil(round(TAIL_REQUESTS / t.limit, 6)))
    return need


def step_seconds(rate: float, step: float, needed: int, longest: float) -> float:
    """The step's measured length: `step`, or longer (whole seconds) until it holds `needed` requests."""
    return float(min(max(step, math.ceil(needed / rate)), max(step, longest)))


# --- reading a finished step ------------------------------------------------------------

# Findings (report rules) that name a limit, with the words the answer uses.
RULE_LIMITS: dict[str, str] = {
    "port_exhaustion": "EADDRNOTAVAIL: ip_local_port_range / TIME_WAIT",
    "accept_queue": "ListenOverflows: accept queue (somaxconn, backlog)",
    "syn_queue": "TCPReqQFullDrop: SYN queue (tcp_max_syn_backlog, somaxconn)",
    "tw_overflow": "TIME_WAIT bucket limit (tcp_max_tw_buckets)",
    "refused": "ECONNREFUSED: connections refused",
    "reset": "ECONNRESET: connections reset",
    "timeouts": "timeouts",
    "server_saturated": "server CPU saturated",
}
# An error name -> the rule whose finding explains it.
ERROR_RULES: dict[str, tuple[str, ...]] = {
    "EADDRNOTAVAIL": ("port_exhaustion",),
    "ECONNREFUSED": ("accept_queue", "refused"),
    "ECONNRESET": ("accept_queue", "reset"),
    "EPIPE": ("accept_queue", "reset"),
}
REFUSING_STATUSES = {"503": "the server refused: rate limiting?", "429": "the server refused: rate limiting"}


def _http_limit(name: str, count: int, total: int) -> Limit:
    code = name.split()[1] if len(name.split()) > 1 else "?"
    why = REFUSING_STATUSES.get(code) or ("server errors" if code.startswith("5") else "the server's answer")
    return Limit(name=f"{name} ({why})", knobs=("the server's own limits (rate limiting, workers, upstreams)",),
                 evidence=f"{count:,} of {total:,} attempts answered {name}")


def _finding_limit(f, extra: str = "") -> Limit:
    name = RULE_LIMITS.get(f.rule) or f.title
    evidence = f.title + (f"; {extra}" if extra else "")
    return Limit(name=name, knobs=tuple(f.knobs), evidence=evidence)


def _by_count(errors: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(errors.items(), key=lambda kv: -kv[1]))


def name_limit(summary: Summary, verdicts: list[Verdict], findings: list) -> Limit:
    """The first limit the failing step shows: its most frequent error, explained by a finding
    when one matches, else the kernel's or the server's finding behind a latency failure."""
    failed = "; ".join(f"{v.expr} (measured {v.measured})" for v in verdicts if not v.passed)
    errors = _by_count(summary.errors)
    by_rule: dict[str, Any] = {}
    for f in findings:
        by_rule.setdefault(f.rule, f)
    attempts = summary.requests + summary.error_total
    if errors:
        name, count = errors[0]
        share = f"{name} {count:,} of {attempts:,} attempts"
        if name.startswith("HTTP "):
            lim = _http_limit(name, count, attempts)
            return replace(lim, evidence=f"{lim.evidence}; failed: {failed}" if failed else lim.evidence)
        for rule in ERROR_RULES.get(name, ()):
            if rule in by_rule:
                return _finding_limit(by_rule[rule], f"{share}; failed: {failed}")
        if "timeout" in name.lower() and "timeouts" in by_rule:
            return _finding_limit(by_rule["timeouts"], f"{share}; failed: {failed}")
    for rule in ("syn_queue", "accept_queue", "port_exhaustion", "tw_overflow", "timeouts", "refused", "reset",
                 "server_saturated"):
        if rule in by_rule:
            return _finding_limit(by_rule[rule], f"failed: {failed}")
    if errors:
        name, count = errors[0]
        return Limit(name=f"{name} errors", evidence=f"{count:,} of {attempts:,} attempts; failed: {failed}")
    return Limit(name="latency (the server's queueing grew with the rate)",
                 evidence=f"failed: {failed}" if failed else "")


def generator_limit(summary: Summary, findings: list, connections: int, workers: int,
                    passed: bool = True) -> str | None:
    """Why the generator, not the server, is what fell behind at this step (None: it held its schedule
    or the server's queue explains the lag). A failing step whose generator kept waiting for a CPU
    is the generator's too: the latencies that failed the SLO hold those waits."""
    for f in findings:
        if f.rule == "generator_saturated":
            return f"its CPU was saturated: {f.evidence.get('generator_cpu_median', '?')}% median"
    generator = (summary.processes or {}).get("generator") or {}
    wait = generator.get("wait_mean")
    per_worker = wait / max(1, workers) if isinstance(wait, (int, float)) else 0.0
    if not passed and per_worker >= GENERATOR_WAIT_SHARE * 100:
        return (f"its workers waited for a CPU {per_worker:.0f}% of the time (mean per worker): other work "
                f"shares their cores, and the latencies that failed the SLO include those waits")
    if summary.kept_up is not False:
        return None
    started = summary.started or summary.requests + summary.error_total
    due = (summary.intended_rate or 0) * summary.duration_s
    late = summary.late_starts
    if late < LATE_SHARE * max(started, 1) and not (due and started < STARTED_SHARE * due):
        # A few late starts are the shared machine's scheduling jitter: the step's
        # figures still stand, and the SLO judges them.
        return None
    cpu = generator.get("cpu_mean")
    if cpu is not None and cpu >= GENERATOR_BUSY_SHARE * 100 * max(1, workers):
        return f"it fell behind its schedule with its CPU at {cpu:.0f}% (mean)"
    duration = summary.duration_s
    lat = summary.latency_us
    if not duration or any("timeout" in name.lower() for name in summary.errors):
        return None  # timeouts hold connections for their whole length: Little's law cannot tell
    busy_us = (summary.requests * (lat.get("total") or {}).get("mean", 0)
               + (lat.get("error") or {}).get("count", 0) * (lat.get("error") or {}).get("mean", 0))
    in_flight = busy_us / 1e6 / duration
    if in_flight < BUSY_SLOTS_SHARE * connections:
        return (f"{late:,} of {started:,} starts were late (by up to {summary.max_lag_us / 1000:.0f} ms) while only "
                f"~{in_flight:.1f} of its {connections:,} connections were busy: its own loop fell behind")
    return None


def read_step(result, checks, findings, rate: float, index: int, seconds: float, connections: int,
              workers: int) -> StepResult:
    from tcpstress.thresholds import evaluate

    # The thresholds grammar names result.json's keys, so it reads the summary as written.
    verdicts = tuple(Verdict(v.expr, v.measured_text, v.passed) for v in evaluate(checks, result.summary))
    record = RunRecord.from_json(result.data)
    summary = record.summary or Summary()
    passed = all(v.passed for v in verdicts) and bool(summary.requests)
    lat = summary.latency_us
    per_second = tuple((iv.duration, iv.requests, sum(iv.errors.values())) for iv in record.intervals)
    step = StepResult(
        rate=rate, passed=passed, index=index, seconds=seconds, folder=str(result.folder),
        requests=summary.requests, errors=summary.error_total,
        error_rate=summary.error_rate or 0.0, requests_per_s=summary.requests_per_s,
        corrected_p99_us=(lat.get("corrected") or {}).get("p99"), total_p99_us=(lat.get("total") or {}).get("p99"),
        kept_up=summary.kept_up is not False, verdicts=verdicts, per_second=per_second,
        error_names=_by_count(summary.errors),
        generator_limited=generator_limit(summary, findings, connections, workers, passed))
    if not passed:
        step = replace(step, limit=name_limit(summary, list(verdicts), findings))
    return step


# --- running it --------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityOptions:
    step: float = 5.0
    warmup: float = 1.0
    longest_step: float = 60.0
    render: bool = True


def step_scenario(scenario, rate: float, seconds: float, warmup: float):
    """The scenario as one step: the open model at `rate`, flat, for `seconds` after `warmup`."""
    load = replace(scenario.load, model="open", rate=rate, ramp=0.0, duration=seconds, warmup=warmup, stage=())
    return replace(scenario, load=load)


def _host_step(scenario, folder: Path, index: int, live):
    from tcpstress import runner

    return runner.run_scenario(scenario, folder, runner.RunContext(variant=folder.name), live=live)


def lab_step(variant, profile, run_id: str, first_index: int):
    """A step runner for one lab variant: each step in a fresh lab (client and server namespaces,
    the variant's sysctls), so no TIME_WAIT or queue carries over from the step before."""
    from tcpstress import runner

    def run(scenario, folder: Path, index: int, live):
        runner.run_in_lab(scenario, variant, profile, folder, run_id, (first_index + index) % 256, live)
        return results.load_result(folder)

    return run


def run_search(scenario, checks, out: Path, plan: SearchPlan, options: CapacityOptions,
               progress: Callable[[str], None] | None = None, live=None, run_step=None) -> Answer:
    """The search against a real target; each step a run folder in `out`, capacity.json after each.

    run_step(scenario, folder, index, live) -> RunResult runs one step (default: on this host)."""
    from tcpstress.report import diagnose
    from tcpstress.report.render import load_report_runs, render_runs

    run_step = run_step or _host_step
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    needed = needed_requests(checks)
    done: list[StepResult] = []

    def step(rate: float) -> StepResult:
        index = len(done) + 1
        seconds = step_seconds(rate, options.step, needed, options.longest_step)
        folder = out / f"step-{index:02d}-{rate:.0f}"
        if progress:
            longer = f" (lengthened to hold {needed:,} requests)" if seconds > options.step else ""
            progress(f"step {index}: {rate:,.0f}/s for {seconds:g} s{longer}")
        sc = step_scenario(scenario, rate, seconds, options.warmup)
        result = run_step(sc, folder, index, live)
        runs = load_report_runs([folder])
        findings = diagnose(runs)
        if options.render:
            try:
                render_runs(runs, findings, folder)
            except (OSError, ValueError, results.ResultError) as e:
                if progress:
                    progress(f"  (no report for {folder.name}: {e})")
        r = read_step(result, checks, findings, rate, index, seconds, sc.load.connections, sc.load.workers)
        done.append(r)
        if progress:
            progress(f"  {format_step(r)}")
        save(Answer("in progress", list(done)), out, scenario, checks, plan)
        return r

    answer = search(step, plan)
    save(answer, out, scenario, checks, plan)
    try:
        plot(answer, out / FIGURE_FILE, checks)
    except (OSError, ValueError) as e:
        if progress:
            progress(f"(no figure: {e})")
    return answer


def save(answer: Answer, out: Path, scenario, checks, plan: SearchPlan) -> Path:
    data = {"format": CAPACITY_FORMAT, "scenario": scenario.name, "slo": [t.expr for t in checks],
            "plan": asdict(plan), **answer.to_dict()}
    path = Path(out) / CAPACITY_FILE
    results.write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


# --- words and figure ------------------------------------------------------------------------


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f} ms"


def _verdict(s: StepResult) -> str:
    return "GENERATOR-LIMITED" if s.generator_limited else ("PASS" if s.passed else "FAIL")


def format_step(s: StepResult) -> str:
    """A progress line for one finished step."""
    return (f"{s.rate:,.0f}/s for {s.seconds:g} s: {s.requests + s.errors:,} attempts, {s.requests_per_s:,.1f} ok/s, "
            f"errors {100 * s.error_rate:.2f}%, corrected p99 {_ms(s.corrected_p99_us)}: {_verdict(s)}")


def format_answer(answer: Answer, slo: list[str]) -> str:
    lines = [f"capacity search, SLO: {' and '.join(slo)}",
             f"  {'step':>4}  {'rate/s':>9}  {'lasted':>6}  {'attempts':>9}  {'ok/s':>9}  {'errors':>7}  "
             f"{'corrected p99':>13}  verdict"]
    for s in answer.steps:
        lines.append(f"  {s.index:>4}  {s.rate:>9,.0f}  {s.seconds:>5g}s  {s.requests + s.errors:>9,}  "
                     f"{s.requests_per_s:>9,.1f}  {100 * s.error_rate:>6.2f}%  {_ms(s.corrected_p99_us):>13}  "
                     f"{_verdict(s)}")
    lines.append("")
    if answer.status == "found" and answer.bracket:
        lines.append(f"capacity: {answer.capacity:,.0f}/s (the highest rate that met the SLO; "
                     f"bracket [{answer.bracket[0]:,.0f}, {answer.bracket[1]:,.0f}]/s)")
        if answer.limit:
            lines.append(f"first limit at {answer.bracket[1]:,.0f}/s: {answer.limit.text()}")
    else:
        lines.append(answer.message)
        if answer.limit and answer.status == "no-pass":
            lines.append(f"limit: {answer.limit.text()}")
    return "\n".join(lines)


def plot(answer: Answer, path: Path, checks: Sequence[Any] = ()) -> Path:
    """Rate stepped over time (asked and achieved), corrected p99 per step, errors per second;
    each step marked pass/fail, the capacity as a dashed line, and the SLO's corrected-p99
    limit (a `corrected.p99` threshold among `checks`) on the p99 axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_p99) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    t = 0.0
    for s in answer.steps:
        colour = "#7f7f7f" if s.generator_limited else ("#2ca02c" if s.passed else "#d62728")
        ax_rate.plot([t, t + s.seconds], [s.rate, s.rate], color="#1f77b4", linewidth=2)
        xs, ok, err = [], [], []
        u = t
        for length, requests, errors in s.per_second:
            xs.append(u + length / 2)
            ok.append(requests / length if length else 0)
            err.append(errors / length if length else 0)
            u += length
        ax_rate.plot(xs, ok, color="#2ca02c", marker=".", linewidth=0.8)
        if any(err):
            ax_rate.bar(xs, err, width=0.8, color="#d62728", alpha=0.5)
        ax_rate.axvspan(t, t + s.seconds, color=colour, alpha=0.08)
        ax_rate.text(t + s.seconds / 2, s.rate, "gen" if s.generator_limited else ("pass" if s.passed else "FAIL"),
                     ha="center", va="bottom", fontsize=8, color=colour)
        if s.corrected_p99_us is not None:
            ax_p99.plot([t, t + s.seconds], [s.corrected_p99_us / 1000] * 2, color=colour, linewidth=2)
        t += s.seconds
    if answer.capacity is not None:
        ax_rate.axhline(answer.capacity, color="#555555", linestyle="--", linewidth=1.2)
    for check in checks:
        if check.metric == "corrected.p99" and check.kind == "time":
            ax_p99.axhline(check.limit / 1000, color="#555555", linestyle=":", linewidth=1.2)
            ax_p99.annotate(f"SLO {check.expr}", xy=(1, check.limit / 1000), xycoords=("axes fraction", "data"),
                            ha="right", va="bottom", fontsize=8, color="#555555")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="#1f77b4", linewidth=2, label="asked"),
               Line2D([], [], color="#2ca02c", marker=".", label="ok"),
               Patch(color="#d62728", alpha=0.5, label="errors")]
    if answer.capacity is not None:
        handles.append(Line2D([], [], color="#555555", linestyle="--", label=f"capacity {answer.capacity:,.0f}/s"))
    ax_rate.legend(handles=handles, loc="upper left", fontsize=8)
    ax_rate.set_ylabel("per second")
    ax_p99.set_ylabel("corrected p99 (ms)\ngreen pass, red fail")
    ax_p99.set_xlabel("measured time, steps one after another (s)")
    ax_rate.set_title("capacity search: " + (answer.message or answer.status), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return Path(path)


def format_side_by_side(answers: dict[str, Answer]) -> str:
    """Lab variants: one line each, capacity and first limit (or why there is none)."""
    width = max([len("variant")] + [len(n) for n in answers])
    lines = [f"  {'variant':<{width}}  {'capacity':>10}  {'bracket':>17}  first limit"]
    for name, a in answers.items():
        if a.status == "found" and a.bracket:
            lines.append(f"  {name:<{width}}  {a.capacity:>8,.0f}/s  "
                         f"{f'[{a.bracket[0]:,.0f}, {a.bracket[1]:,.0f}]':>17}  {a.limit.name if a.limit else '-'}")
        else:
            lines.append(f"  {name:<{width}}  {'-':>10}  {'-':>17}  {a.message}")
    return "\n".join(lines)


def save_variants(answers: dict[str, Answer], out: Path, scenario, checks) -> Path:
    data = {"format": CAPACITY_FORMAT, "scenario": scenario.name, "slo": [t.expr for t in checks], "lab": True,
            "variants": {name: {k: v for k, v in a.to_dict().items() if k != "steps"} for name, a in answers.items()}}
    path = Path(out) / CAPACITY_FILE
    results.write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path
