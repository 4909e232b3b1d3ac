"""Rules on the load and the run itself: saturation, an open model's lag, an incomplete run, an injected fault."""

from __future__ import annotations

from tcpstress.report.cpu import is_busy, saturation, shard_saturations
from tcpstress.report.lag import lag_cause, ports_crowded, schedule_check
from tcpstress.report.observations import (
    FAULT_KNOBS,
    GeneratorSaturated,
    InjectedFault,
    Observation,
    OpenModelLag,
    RunStoppedEarly,
    ServerSaturated,
    ShardGeneratorsSaturated,
    ShardServersSaturated,
    WorkersDied,
)
from tcpstress.report.rundata import RunData


def _p99(run: RunData) -> float | None:
    lat = run.latency_us("total")
    return lat["p99"] if lat else None


def _rate(run: RunData) -> float | None:
    return run.summary.get("requests_per_s")


def _saturated_shards(run: RunData, role: str) -> list[Observation]:
    """A merged run: each shard's generator and target were processes of their own, on their own cores.

    One shard whose generator was CPU-bound makes the merged rate a lower
    bound; a CPU average over shards would hide it, so each is judged alone.
    """
    sats = shard_saturations(run, role)
    busy = [label for label, sat in sats if is_busy(sat)]
    if not busy:
        return []
    other = "target" if role == "generator" else "generator"
    others = tuple((label, sat) for label, sat in shard_saturations(run, other) if label in busy)
    if role == "generator":
        return [ShardGeneratorsSaturated(run.label, tuple(sats), _rate(run), others, None)]
    return [ShardServersSaturated(run.label, tuple(sats), _rate(run), others, _p99(run))]


def rule_generator_saturated(run: RunData, runs: list[RunData]) -> list[Observation]:
    if run.shard_labels:
        return _saturated_shards(run, "generator")
    sat = saturation(run, "generator")
    if sat is None or not is_busy(sat) or ports_crowded(run):
        # A crowded port range burns the generator's CPU in connect()'s port search: more
        # workers would not help, and the ports finding says what would.
        return []
    target = saturation(run, "target")
    return [GeneratorSaturated(run.label, sat, _rate(run), target.median if target is not None else None)]


def rule_server_saturated(run: RunData, runs: list[RunData]) -> list[Observation]:
    if run.shard_labels:
        return _saturated_shards(run, "target")
    sat = saturation(run, "target")
    if sat is None or not is_busy(sat):
        return []
    return [ServerSaturated(run.label, sat, _rate(run), _p99(run), is_busy(saturation(run, "generator")))]


# The engine counts a start as late past 1 ms, which a busy event loop does all the time;
# a schedule has really slipped when requests start this much behind it.
SLIPPED_LAG_US = 100_000


def rule_open_model_lag(run: RunData, runs: list[RunData]) -> list[Observation]:
    check = schedule_check(run)
    if check is None:
        return []
    late = int(run.summary.get("late_starts") or 0)
    max_lag = float(run.summary.get("max_lag_us") or 0)
    corrected = run.latency_us("corrected")
    uncorrected = run.latency_us("total")
    ratio = corrected["p99"] / uncorrected["p99"] if corrected and uncorrected and uncorrected["p99"] else 1.0
    # A ramp asks for less than the full rate: the started count is judged against the ramped schedule.
    behind = check.behind
    slipped = max_lag >= SLIPPED_LAG_US and late > 0.01 * check.started
    hidden_queueing = corrected is not None and uncorrected is not None and ratio >= 2 and corrected["p99"] - uncorrected["p99"] >= 10_000
    if not (behind or slipped or hidden_queueing):
        return []
    both = corrected is not None and uncorrected is not None
    return [OpenModelLag(
        run.label, intended_rate=check.intended_rate, due_rate=check.due_rate, started_rate=check.started_rate,
        achieved_rate=float(run.summary.get("requests_per_s") or 0.0), ramp=check.ramp, started=check.started,
        late=late, max_lag_us=max_lag,
        p99_corrected_us=corrected["p99"] if both and corrected else None,
        p99_uncorrected_us=uncorrected["p99"] if both and uncorrected else None,
        # Kept: the rate was met, but some requests waited to start (the corrected percentiles carry it).
        kept_schedule=not (behind or slipped), cause=lag_cause(run, check))]


def rule_incomplete_run(run: RunData, runs: list[RunData]) -> list[Observation]:
    found: list[Observation] = []
    if run.result.data.get("partial"):
        found.append(RunStoppedEarly(run.label, run.result.data.get("partial_reason") or None))
    dead = [w for w in run.summary.get("workers", []) or [] if isinstance(w, dict) and w.get("exit", "ok") != "ok"]
    if dead:
        found.append(WorkersDied(run.label, tuple((str(w.get("name", "?")), str(w.get("exit"))) for w in dead)))
    return found


def rule_injected_fault(run: RunData, runs: list[RunData]) -> list[Observation]:
    """Say what the lab did to the network: the errors that follow are its effect, not the server's fault."""
    fault = run.result.data.get("fault")
    if not fault or fault.get("kind") in (None, "none") or fault["kind"] not in FAULT_KNOBS:
        return []
    return [InjectedFault(
        run.label, fault["kind"], at=fault.get("at", 0), lasts=fault.get("lasts") or None,
        spoof=fault.get("spoof", "?"), rate=float(fault.get("rate") or 0), error=fault.get("error") or None,
        settings=tuple((k, v) for k, v in fault.items() if isinstance(v, (int, float, str, bool)) and k != "kind"),
        errors=tuple(run.errors.items()) if run.errors else ())]
