"""Rules on the load and the run itself: saturation, an open model's lag, an incomplete run, an injected fault."""

from __future__ import annotations

from typing import Any

from tcpstress.report.cpu import generator_busy, is_busy, saturation, shard_saturations
from tcpstress.report.finding import Finding
from tcpstress.report.lag import lag_cause, ports_crowded, schedule_check
from tcpstress.report.rundata import RunData
from tcpstress.report.wording import fmt_number, join_words, fmt_ms


def _cpu_text(median: float, peak: float, cores: int) -> str:
    return f"{median:.0f}% CPU over {cores} core{'s' if cores > 1 else ''} (peak {peak:.0f}%)"


def _saturated_shards(run: RunData, role: str) -> list[Finding]:
    """A merged run: each shard's generator and target were processes of their own, on their own cores.

    One shard whose generator was CPU-bound makes the merged rate a lower
    bound; a CPU average over shards would hide it, so each is judged alone.
    """
    sats = shard_saturations(run, role)
    busy = [(label, sat) for label, sat in sats if is_busy(sat)]
    if not busy:
        return []
    which = "generator" if role == "generator" else "target"
    each = join_words([f"{_cpu_text(*sat)} on {label}" for label, sat in busy])
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
                + (f"The merged {fmt_number(rate)} req/s is a lower bound for the servers, not their capacity. "
                   if rate else ""))
        targets = [(label, sat) for label, sat in shard_saturations(run, "target") if label in names]
        if targets:
            evidence["target_cpu_median"] = {label: round(sat[0], 1) for label, sat in targets}
            text += ("The targets used " + ("only " if not any(is_busy(sat) for _, sat in targets) else "")
                     + "a median of " + join_words([f"{sat[0]:.0f}% on {label}" for label, sat in targets]) + ".")
        return [Finding("warning", "Generator saturated: results are a lower bound", text.strip(), evidence, [],
                        run.label, "generator_saturated",
                        "Add generator workers (load.workers, up to the free cores), more shards, or run the "
                        "generators elsewhere.")]
    text = (f"The target used a median of {each}: on {some} the server was the bottleneck"
            + (f", so the merged {fmt_number(rate)} req/s is about the servers' capacity for this workload"
               if rate and len(busy) == len(sats) else "")
            + ". ")
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"The merged p99 latency of {fmt_ms(lat['p99'])} includes waiting in their queues. "
    gens = [label for label, sat in shard_saturations(run, "generator") if label in names and is_busy(sat)]
    if gens:
        text += f"The generator was saturated too on {join_words(gens)}: both compete for the same cores."
    advice = "More server workers, or a faster server, raise the ceiling; kernel knobs will not."
    return [Finding("warning", "Server saturated", text.strip(), evidence, [], run.label, "server_saturated", advice)]


def rule_generator_saturated(run: RunData, runs: list[RunData]) -> list[Finding]:
    if run.shard_labels:
        return _saturated_shards(run, "generator")
    sat = saturation(run, "generator")
    if not is_busy(sat) or ports_crowded(run):
        # A crowded port range burns the generator's CPU in connect()'s port search: more
        # workers would not help, and the ports finding says what would.
        return []
    median, peak, cores = sat
    evidence = {"generator_cpu_median": round(median, 1), "generator_cpu_peak": round(peak, 1),
                "generator_cores": cores, "requests_per_s": run.summary.get("requests_per_s")}
    rate = run.summary.get("requests_per_s")
    text = (
        f"The generator used a median of {median:.0f}% CPU over {cores} core{'s' if cores > 1 else ''} "
        f"(100% = one full core; peak {peak:.0f}%): the load tool itself was the bottleneck. "
        + (f"The achieved {fmt_number(rate)} req/s is a lower bound for the server, not its capacity. " if rate else "")
    )
    target = saturation(run, "target")
    if target is not None:
        evidence["target_cpu_median"] = round(target[0], 1)
        text += f"The target used only a median of {target[0]:.0f}%."
    return [Finding("warning", "Generator saturated: results are a lower bound", text.strip(), evidence, [],
                    run.label, "generator_saturated",
                    "Add generator workers (load.workers, up to the free cores) or run the generator elsewhere.")]


def rule_server_saturated(run: RunData, runs: list[RunData]) -> list[Finding]:
    if run.shard_labels:
        return _saturated_shards(run, "target")
    sat = saturation(run, "target")
    if not is_busy(sat):
        return []
    median, peak, cores = sat
    evidence = {"target_cpu_median": round(median, 1), "target_cpu_peak": round(peak, 1), "target_cores": cores}
    rate = run.summary.get("requests_per_s")
    text = (
        f"The target used a median of {_cpu_text(median, peak, cores)}: the server was the bottleneck"
        + (f", so {fmt_number(rate)} req/s is about its capacity for this workload" if rate else "")
        + ". "
    )
    lat = run.latency_us("total")
    if lat:
        evidence["p99_us"] = lat["p99"]
        text += f"Its p99 latency of {fmt_ms(lat['p99'])} includes waiting in its queues. "
    if is_busy(saturation(run, "generator")):
        text += "The generator was saturated too: both compete for the same cores."
    advice = "More server workers, or a faster server, raise the ceiling; kernel knobs will not."
    return [Finding("warning", "Server saturated", text.strip(), evidence, [], run.label, "server_saturated", advice)]


# The engine counts a start as late past 1 ms, which a busy event loop does all the time;
# a schedule has really slipped when requests start this much behind it.
SLIPPED_LAG_US = 100_000


def rule_open_model_lag(run: RunData, runs: list[RunData]) -> list[Finding]:
    check = schedule_check(run)
    if check is None:
        return []
    attempts = check.started
    late = int(run.summary.get("late_starts") or 0)
    max_lag = float(run.summary.get("max_lag_us") or 0)
    corrected = run.latency_us("corrected")
    uncorrected = run.latency_us("total")
    ratio = corrected["p99"] / uncorrected["p99"] if corrected and uncorrected and uncorrected["p99"] else 1.0
    # A ramp asks for less than the full rate: the started count is judged against the ramped schedule.
    behind = check.behind
    slipped = max_lag >= SLIPPED_LAG_US and late > 0.01 * attempts
    hidden_queueing = corrected is not None and ratio >= 2 and corrected["p99"] - uncorrected["p99"] >= 10_000
    if not (behind or slipped or hidden_queueing):
        return []
    achieved = float(run.summary.get("requests_per_s") or 0.0)
    evidence: dict[str, Any] = {
        "intended_rate": check.intended_rate, "scheduled_rate": round(check.due_rate, 1),
        "started_rate": round(check.started_rate, 1), "achieved_rate": round(achieved, 1),
        "late_starts": late, "max_lag_us": max_lag}
    asked = f"{fmt_number(check.intended_rate)} req/s"
    if check.ramp:
        asked += (f" after a {check.ramp:g} s ramp ({fmt_number(round(check.due_rate, 1))}/s on average over the "
                  "measured phase)")
    text = f"The open model asked for {asked} and started {fmt_number(round(check.started_rate, 1))}/s"
    if late:
        pct = 100.0 * late / attempts if attempts else 0.0
        text += f"; {late:,} requests ({pct:.1f}%) started late, by up to {fmt_ms(max_lag)}"
    cause = lag_cause(run, check)
    evidence["cause"] = cause.key
    evidence.update({k: v for k, v in cause.evidence.items() if v is not None})
    text += f". Why: {cause.seen}. "
    if corrected and uncorrected:
        evidence["p99_corrected_us"], evidence["p99_uncorrected_us"] = corrected["p99"], uncorrected["p99"]
        text += (
            f"p99 measured from each request's intended start is {fmt_ms(corrected['p99'])}, against "
            f"{fmt_ms(uncorrected['p99'])} from its actual start: the uncorrected number hides the queueing "
            "(coordinated omission); the corrected one is what users at this rate would see."
        )
    if behind or slipped:
        title, severity = "Open model fell behind its schedule: " + LAG_TITLES[cause.key], "warning"
    else:
        # The schedule was kept (as the summary's line says), but some requests waited to start:
        # the corrected percentiles carry that wait.
        title, severity = "Open model kept its schedule, but requests waited to start: " + LAG_TITLES[cause.key], "info"
    evidence["kept_schedule"] = not (behind or slipped)
    return [Finding(severity, title, text.strip(), evidence, [], run.label, "open_model_lag", cause.advice)]


LAG_TITLES = {"generator": "generator CPU-bound", "host": "host busy with other work",
              "ports": "port range crowded", "server": "server too slow for the rate",
              "unknown": "cause not seen in the samples"}


def rule_incomplete_run(run: RunData, runs: list[RunData]) -> list[Finding]:
    findings = []
    if run.result.data.get("partial"):
        reason = run.result.data.get("partial_reason") or "no reason recorded"
        findings.append(Finding(
            "warning", "Run stopped early", f"The run is partial ({reason}): its numbers cover only the part that ran.",
            {"partial_reason": reason}, [], run.label, "partial"))
    dead = [w for w in run.summary.get("workers", []) or [] if isinstance(w, dict) and w.get("exit", "ok") != "ok"]
    if dead:
        names = join_words([f"{w.get('name', '?')} ({w.get('exit')})" for w in dead])
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
