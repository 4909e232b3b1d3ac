"""Finding: one diagnosis, and the matchers the rules pick errors by name with.

A module of its own, below both, so that the rule modules and diagnose.py
(which lists the rules) need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, get_args

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)  # most severe first


@dataclass
class Finding:
    """One diagnosis: what happened, the numbers that show it, the knobs that matter."""

    severity: Severity
    title: str
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    knobs: list[str] = field(default_factory=list)
    variant: str | None = None
    rule: str = ""
    advice: str = ""  # what to do about it, kept apart from what was seen


def error_named(*names: str) -> Callable[[str], bool]:
    wanted = {n.upper() for n in names}
    return lambda name: name.upper() in wanted


def is_timeout(name: str) -> bool:
    upper = name.upper()
    return "TIMEDOUT" in upper or "TIMEOUT" in upper


# A failure share this large is an outage for the users of the run; below it, a degradation.
OUTAGE_PCT = 10.0


def impact_severity(error_pct: float) -> Severity:
    """Severity of an error finding by the share of attempts that failed: 2.9% and 87.5% are not alike."""
    return "critical" if error_pct >= OUTAGE_PCT else "warning"
