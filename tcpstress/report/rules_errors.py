"""The general failure rules: every error name, whether or not a dedicated rule knows it.

The dedicated rules (ports, refusals, resets, timeouts) explain the errors
they know and say what to do. An error none of them knows (`protocol: ...`,
`closed before response`, `HTTP 503`, `errno -9`) used to leave a run that
failed entirely with "No problems found". These rules close that gap:

- no_success: not one request succeeded (or none was even attempted). Always
  critical, even when a dedicated rule explained the errors, because the
  run's rates and latencies then describe nothing.
- errors: some requests succeeded and some errors have no dedicated rule.
  Severity by the share of attempts that those errors account for
  (share_severity() in observations.py: critical from 10%, as the dedicated
  rules, a warning from 0.1%); the text (words.py) still states the overall share and points to the
  dedicated findings for the rest, without repeating their advice.
- in_flight: as many requests were left waiting at the end as completed,
  so the latencies describe only the fast ones.
"""

from __future__ import annotations

from typing import Callable

from tcpstress.report.finding import error_named, is_timeout
from tcpstress.report.observations import (
    CRITICAL_PCT,
    WARNING_PCT,
    ErrorShares,
    ManyInFlight,
    NoSuccess,
    Observation,
    UnexplainedErrors,
    share_severity,
)
from tcpstress.report.rundata import RunData

__all__ = ["CRITICAL_PCT", "DEDICATED_RULES", "WARNING_PCT", "rule_errors", "rule_in_flight", "rule_no_success",
           "severity", "shares"]

# The errors a dedicated rule explains, by that rule. Kept in step with
# rules_ports, rules_connections (a test runs each dedicated rule on a run
# holding only that error, so a drift fails there).
DEDICATED_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (error_named("EADDRNOTAVAIL"), "port_exhaustion"),
    (error_named("ECONNREFUSED"), "refused"),
    (error_named("ECONNRESET", "EPIPE"), "reset"),
    (is_timeout, "timeouts"),
)

severity = share_severity


def dedicated_rule(name: str) -> str | None:
    """The dedicated rule that explains this error name, or None."""
    return next((rule for match, rule in DEDICATED_RULES if match(name)), None)


def shares(run: RunData) -> ErrorShares:
    counts = {n: c for n, c in run.errors.items() if c > 0}
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    in_flight = run.summary.get("in_flight_at_end")
    rules = {dedicated_rule(n) for n in ordered}
    return ErrorShares(
        requests=run.requests, errors=ordered, in_flight=int(in_flight) if isinstance(in_flight, int) else 0,
        uncovered={n: c for n, c in ordered.items() if dedicated_rule(n) is None},
        explained_by=tuple(rule for _, rule in DEDICATED_RULES if rule in rules))


def rule_no_success(run: RunData, runs: list[RunData]) -> list[Observation]:
    s = shares(run)
    return [] if s.requests > 0 else [NoSuccess(run.label, s)]


def rule_errors(run: RunData, runs: list[RunData]) -> list[Observation]:
    s = shares(run)
    if s.requests == 0 or not s.uncovered:
        return []
    return [UnexplainedErrors(run.label, s)]


def rule_in_flight(run: RunData, runs: list[RunData]) -> list[Observation]:
    s = shares(run)
    if s.requests == 0 or s.in_flight < s.requests:
        return []
    return [ManyInFlight(run.label, s.in_flight, s.requests)]
