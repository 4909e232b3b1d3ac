"""The answer first: a comparison's verdict, and one finding per cause instead of one per variant.

The verdict is computed from the runs (errors and when they began, and a late
schedule), the first run being the problem the other variants try to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcpstress.report.finding import Finding
from tcpstress.report.rundata import RunData
from tcpstress.report.wording import join_words

SEVERITIES = ("critical", "warning", "info")
NEARLY_PCT = 5.0  # errors below this share, where the problem run had more: nearly fixed
DELAYED_S = 1.0  # errors that begin this much later than in the problem run: delayed


@dataclass(frozen=True)
class Outcome:
    label: str
    error_pct: float
    first_error_t: float | None
    late: bool  # an open model that fell behind its schedule


def _outcome(run: RunData, late_labels: set[str]) -> Outcome:
    return Outcome(run.label, run.error_pct, run.first_error_t(lambda name: True), run.label in late_labels)


def _pct(p: float) -> str:
    return f"{p:.2g}%" if p < 1 else f"{p:.1f}%"


def verdict_lines(runs: list[RunData], findings: list[Finding]) -> list[str]:
    """One or two lines for a comparison (empty for a single run)."""
    if len(runs) < 2:
        return []
    late = {f.variant for f in findings
            if f.rule == "open_model_lag" and f.variant and not f.evidence.get("kept_schedule")}
    base, *others = [_outcome(r, late) for r in runs]
    if base.error_pct == 0 and not base.late:
        worse = [o.label for o in others if o.error_pct > 0 or o.late]
        line = f"{base.label} had no errors and kept up"
        return [line + (f"; worse: {join_words(worse)}" if worse else "; so did every variant") + "."]
    problem = f"{_pct(base.error_pct)} of attempts failed" if base.error_pct else "fell behind its schedule"
    if base.first_error_t is not None:
        problem += f" from t={base.first_error_t:g} s"
    fixed, nearly, delayed, worse, same = [], [], [], [], []
    for o in others:
        if o.error_pct == 0 and not o.late:
            fixed.append(o.label)
        elif o.error_pct > base.error_pct * 1.1 + 0.01 or (o.late and not base.late and o.error_pct >= base.error_pct):
            worse.append(f"{o.label} ({_pct(o.error_pct)} errors)" if o.error_pct else f"{o.label} (late)")
        elif o.error_pct < min(NEARLY_PCT, base.error_pct / 2) and not o.late:
            nearly.append(f"{o.label} ({_pct(o.error_pct)} errors)")
        elif (o.first_error_t is not None and base.first_error_t is not None
              and o.first_error_t >= base.first_error_t + DELAYED_S):
            delayed.append((o.first_error_t, o.label))
        else:
            same.append(f"{o.label} ({_pct(o.error_pct)} errors)" if o.error_pct else f"{o.label} (late)")
    parts = []
    if fixed:
        parts.append("fixed by " + join_words(fixed))
    if nearly:
        parts.append("nearly by " + join_words(nearly))
    for t in sorted({t for t, _ in delayed}):
        parts.append(f"delayed to t={t:g} s by " + join_words([label for tt, label in delayed if tt == t]))
    if same:
        parts.append("not fixed by " + join_words(same))
    if worse:
        parts.append("made worse by " + join_words(worse))
    return [f"Problem: in {base.label}, {problem}.", (("; ".join(parts)) or "no other variant") + "."]


def group_findings(findings: list[Finding]) -> list[Finding]:
    """Findings of the same rule and title across variants become one, naming them all.

    Most severe member wins; each variant's own numbers stay in the text.
    """
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.rule, f.title), []).append(f)
    out = []
    for members in groups.values():
        if len(members) == 1 or any(m.variant is None for m in members):
            out.extend(members)
            continue
        severity = min((m.severity for m in members), key=SEVERITIES.index)
        names = [m.variant or "" for m in members]
        text = " ".join(f"[{m.variant}] {m.text}" for m in members)
        knobs = list(dict.fromkeys(k for m in members for k in m.knobs))
        evidence = {m.variant or "": m.evidence for m in members}
        out.append(Finding(severity, members[0].title, text, evidence, knobs, ", ".join(names),
                           members[0].rule, members[0].advice))
    out.sort(key=lambda f: SEVERITIES.index(f.severity))
    return out
