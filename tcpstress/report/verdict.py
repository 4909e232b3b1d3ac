"""The answer first: a comparison's verdict, and one finding per cause instead of one per variant.

The verdict is computed from the runs (errors and when they began, and a late
schedule), the first run being the problem the other variants try to fix.
"""

from __future__ import annotations

from tcpstress.report.finding import SEVERITIES, Finding
from tcpstress.report.observations import Outcome, Verdict
from tcpstress.report.rundata import RunData
from tcpstress.report.words import verdict_text

NEARLY_PCT = 5.0  # errors below this share, where the problem run had more: nearly fixed
DELAYED_S = 1.0  # errors that begin this much later than in the problem run: delayed


def _outcome(run: RunData, late_labels: set[str]) -> Outcome:
    return Outcome(run.label, run.error_pct, run.first_error_t(lambda name: True), run.label in late_labels)


def judge(runs: list[RunData], findings: list[Finding]) -> Verdict | None:
    """How each variant fared against the first run, the problem they try to fix (None for a single run)."""
    if len(runs) < 2:
        return None
    late = {f.variant for f in findings
            if f.rule == "open_model_lag" and f.variant and not f.evidence.get("kept_schedule")}
    base, *others = [_outcome(r, late) for r in runs]
    if base.error_pct == 0 and not base.late:
        return Verdict(base, worse=tuple(o for o in others if o.error_pct > 0 or o.late))
    fixed, nearly, delayed, worse, same = [], [], [], [], []
    for o in others:
        if o.error_pct == 0 and not o.late:
            fixed.append(o)
        elif o.error_pct > base.error_pct * 1.1 + 0.01 or (o.late and not base.late and o.error_pct >= base.error_pct):
            worse.append(o)
        elif o.error_pct < min(NEARLY_PCT, base.error_pct / 2) and not o.late:
            nearly.append(o)
        elif (o.first_error_t is not None and base.first_error_t is not None
              and o.first_error_t >= base.first_error_t + DELAYED_S):
            delayed.append(o)
        else:
            same.append(o)
    return Verdict(base, tuple(fixed), tuple(nearly), tuple(delayed), tuple(same), tuple(worse))


def verdict_lines(runs: list[RunData], findings: list[Finding]) -> list[str]:
    """One or two lines for a comparison (empty for a single run).

    Runs of different scenarios (the gallery, `report` over unrelated folders)
    are no fixes of each other: each scenario with several variants gets its
    own line, judged against its own first variant.
    """
    by_scenario: dict[str, list[RunData]] = {}
    for run in runs:
        by_scenario.setdefault(str(run.result.data.get("name") or ""), []).append(run)
    if len(by_scenario) == 1:
        verdict = judge(runs, findings)
        return [] if verdict is None else verdict_text(verdict)
    lines = []
    for name, group in by_scenario.items():
        verdict = judge(group, findings)
        if verdict is not None:
            lines.append(f"{name}: " + " ".join(verdict_text(verdict)))
    return lines


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
