"""The general failure rules: every error name, whether or not a dedicated rule knows it.

The dedicated rules (ports, refusals, resets, timeouts) explain the errors
they know and say what to do. An error none of them knows (`protocol: ...`,
`closed before response`, `HTTP 503`, `errno -9`) used to leave a run that
failed entirely with "No problems found". These rules close that gap:

- no_success: not one request succeeded (or none was even attempted). Always
  critical, even when a dedicated rule explained the errors, because the
  run's rates and latencies then describe nothing.
- errors: some requests succeeded and some errors have no dedicated rule.
  Severity by the share of attempts that those errors account for (see
  severity()); the text still states the overall share and points to the
  dedicated findings for the rest, without repeating their advice.
- in_flight: as many requests were left waiting at the end as completed,
  so the latencies describe only the fast ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tcpstress.report.finding import Finding, error_named, is_timeout
from tcpstress.report.rundata import RunData
from tcpstress.report.wording import join_words

# The errors a dedicated rule explains, by the title of its finding. Kept in
# step with rules_ports, rules_connections (a test runs each dedicated rule on
# a run holding only that error, so a drift fails there).
DEDICATED: tuple[tuple[Callable[[str], bool], str], ...] = (
    (error_named("EADDRNOTAVAIL"), "Ephemeral ports exhausted (EADDRNOTAVAIL)"),
    (error_named("ECONNREFUSED"), "Connections refused"),
    (error_named("ECONNRESET", "EPIPE"), "Connections reset"),
    (is_timeout, "Timeouts"),
)

# Thresholds on the share of attempts that failed, the same as the dedicated
# rules use: the latency percentiles describe successful requests only, so once
# 1% of attempts fail the p99 (and above) hides them, and at 0.1% the p99.9 does.
CRITICAL_PCT = 1.0
WARNING_PCT = 0.1
TOP_NAMES = 5


def severity(pct: float) -> str:
    if pct >= CRITICAL_PCT:
        return "critical"
    return "warning" if pct >= WARNING_PCT else "info"


def dedicated_title(name: str) -> str | None:
    """The title of the dedicated finding that explains this error name, or None."""
    return next((title for match, title in DEDICATED if match(name)), None)


@dataclass(frozen=True)
class ErrorShares:
    """A run's outcome counts as the general rules see them."""

    requests: int
    errors: dict[str, int]  # every error name with a count > 0, most frequent first
    in_flight: int

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def uncovered(self) -> dict[str, int]:
        return {n: c for n, c in self.errors.items() if dedicated_title(n) is None}

    def pct(self, count: int) -> float:
        attempts = self.requests + self.failed
        return 100.0 * count / attempts if attempts else 0.0


def shares(run: RunData) -> ErrorShares:
    counts = {n: c for n, c in run.errors.items() if c > 0}
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    in_flight = run.summary.get("in_flight_at_end")
    return ErrorShares(run.requests, ordered, int(in_flight) if isinstance(in_flight, int) else 0)


def _names(errors: dict[str, int]) -> str:
    shown = [f"{count:,} × {name}" for name, count in list(errors.items())[:TOP_NAMES]]
    rest = len(errors) - TOP_NAMES
    if rest > 0:
        shown.append(f"{rest} other error name{'s' if rest > 1 else ''}")
    return ", ".join(shown)


def _explained(errors: dict[str, int]) -> list[str]:
    """The dedicated findings that explain some of these errors, in DEDICATED order."""
    titles = {dedicated_title(n) for n in errors}
    return [f'"{title}"' for _, title in DEDICATED if title in titles]


def advice_for(errors: dict[str, int]) -> str:
    """What to do about errors no dedicated rule explains: one sentence per kind present."""
    parts = []
    names = list(errors)
    if any(n.startswith("protocol:") for n in names):
        parts.append("The responses did not parse: check that the target speaks what target.protocol says "
                     "and look at one response with curl -v (or ncat for an echo server).")
    if "closed before response" in names:
        parts.append("The server closed connections without answering: look in its logs for a crash, a "
                     "connection or request limit, or an idle timeout shorter than the client's keep-alive.")
    if "stale connection" in names:
        parts.append("Requests sent on reused keep-alive connections found them closed by the server: its idle "
                     "timeout is shorter than the gaps between requests, or it closes after some requests "
                     "(requests_per_connection below its limit avoids it); like wrk, tcpstress does not retry.")
    if any(n.startswith("TLS:") for n in names):
        parts.append("The TLS handshake failed: check tls.ca_file (or --insecure for a self-signed test server), "
                     "tls.server_name and tls.version.")
    if any(n.startswith("HTTP 5") for n in names):
        parts.append("The server answered with 5xx statuses: its own logs say why.")
    if any(n.startswith("HTTP 4") for n in names):
        parts.append("The server refused the requests with 4xx statuses: check target.path, the Host header "
                     "and the method.")
    if any(n.startswith("errno -") for n in names):
        parts.append("A negative errno is a getaddrinfo() error (EAI_*; -9 is EAI_ADDRFAMILY: the source "
                     "addresses and the target are not of the same family, IPv4 against IPv6).")
    known = ("protocol:", "closed before response", "stale connection", "TLS:", "HTTP ", "errno -")
    if any(not n.startswith(known) for n in names):
        parts.append("man 2 connect, man 2 send and man 3 errno say when the kernel returns an errno name.")
    return " ".join(parts)


def rule_no_success(run: RunData, runs: list[RunData]) -> list[Finding]:
    s = shares(run)
    if s.requests > 0:
        return []
    evidence: dict[str, object] = {"requests": 0, "error_total": s.failed, "in_flight_at_end": s.in_flight,
                                   "errors": dict(list(s.errors.items())[:TOP_NAMES])}
    if not s.failed and not s.in_flight:
        text = "Not one request was attempted: no request succeeded, none failed and none was in flight."
        advice = ("Check that the load had time to start (duration, warm-up, --start-at) and that the "
                  "workers ran (the worker lines of the summary).")
    else:
        parts = []
        if s.failed:
            parts.append(f"{'all ' if not s.in_flight else ''}{s.failed:,} attempts failed ({_names(s.errors)})")
        if s.in_flight:
            parts.append(f"{s.in_flight:,} request{'s were' if s.in_flight != 1 else ' was'} still waiting for a "
                         "response when the run ended")
        text = "Not one request succeeded: " + join_words(parts) + "."
        if s.in_flight and not s.failed:
            text += (" The server accepted the connections and never answered, or answers more slowly than the "
                     "run lasted.")
            advice = "Run longer than one response takes, or check why the server does not answer."
        else:
            explained = _explained(s.errors)
            if explained:
                text += f" {join_words(explained)} above explain{'s' if len(explained) == 1 else ''} " + (
                    "them." if not s.uncovered else "some of them.")
            advice = advice_for(s.uncovered)
    text += " This run's rates and latencies describe no successful exchange."
    return [Finding("critical", "No request succeeded", text, evidence, [], run.label, "no_success", advice)]


def rule_errors(run: RunData, runs: list[RunData]) -> list[Finding]:
    s = shares(run)
    uncovered = s.uncovered
    if s.requests == 0 or not uncovered:
        return []
    own = sum(uncovered.values())
    pct_own, pct_all = s.pct(own), s.pct(s.failed)
    text = (f"{own:,} of {s.requests + s.failed:,} attempts ({pct_own:.2g}%) failed with errors no other "
            f"finding explains: {_names(uncovered)}.")
    if own < s.failed:
        explained = _explained(s.errors)
        text += (f" With the rest, {s.failed:,} attempts ({pct_all:.2g}%) failed; {join_words(explained)} "
                 f"{'explains' if len(explained) == 1 else 'explain'} the others.")
    text += " The latencies and rates count successful requests only."
    evidence: dict[str, object] = {"errors": uncovered, "error_total": s.failed, "requests": s.requests,
                                   "error_pct": round(pct_all, 2), "unexplained_pct": round(pct_own, 2)}
    return [Finding(severity(pct_own), "Requests failed", text, evidence, [], run.label, "errors",
                    advice_for(uncovered))]


def rule_in_flight(run: RunData, runs: list[RunData]) -> list[Finding]:
    s = shares(run)
    if s.requests == 0 or s.in_flight < s.requests:
        return []
    text = (f"{s.in_flight:,} requests were still waiting for a response when the run ended, against "
            f"{s.requests:,} that succeeded: the latencies describe the requests fast enough to finish, "
            "not the ones that were not.")
    return [Finding("warning", "Many requests unanswered at the end", text,
                    {"in_flight_at_end": s.in_flight, "requests": s.requests}, [], run.label, "in_flight",
                    "Run longer than a response takes, or find out why the server is this slow.")]
