"""A comparison's verdict and grouped findings, computed from the fixture runs."""

from __future__ import annotations

import json
from pathlib import Path

from tcpstress.report.diagnose import diagnose, format_findings, load_runs
from tcpstress.report.finding import Finding
from tcpstress.report.verdict import group_findings, verdict_lines

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def test_verdict_names_fixing_variants_from_the_files():
    runs = load_runs([RUNS / "time_wait_exhaustion"])
    lines = verdict_lines(runs, diagnose(runs))
    errors = {}
    for v in ("baseline", "tw_reuse", "keepalive"):
        data = json.loads((RUNS / "time_wait_exhaustion" / v / "result.json").read_text())
        errors[v] = sum(sum(iv["errors"].values()) for iv in data["intervals"])
    assert errors["baseline"] > 0 and errors["tw_reuse"] == errors["keepalive"] == 0
    assert lines[0].startswith("Problem: in baseline,")
    assert lines[1] == "fixed by tw_reuse and keepalive."


def test_single_run_has_no_verdict():
    runs = load_runs([RUNS / "clean"])
    assert verdict_lines(runs, []) == []


def test_same_cause_is_one_finding_naming_the_variants():
    a = Finding("warning", "Timeouts", "a text", {"n": 1}, ["k1"], "a", "timeouts", "do x")
    b = Finding("critical", "Timeouts", "b text", {"n": 2}, ["k1", "k2"], "b", "timeouts", "do x")
    c = Finding("info", "Other", "c", {}, [], "a", "other")
    grouped = group_findings([a, b, c])
    assert [(g.title, g.variant, g.severity) for g in grouped] == [("Timeouts", "a, b", "critical"),
                                                                  ("Other", "a", "info")]
    assert "[a] a text" in grouped[0].text and "[b] b text" in grouped[0].text
    assert grouped[0].knobs == ["k1", "k2"]
    lines = format_findings([a, b, c])
    assert sum(1 for line in lines if "Timeouts" in line) == 1


def test_runs_of_different_scenarios_are_judged_within_their_own_scenario():
    # The gallery's case: a healthy run first must not make the other scenario's variants "worse".
    clean = load_runs([RUNS / "clean"])
    exhaustion = load_runs([RUNS / "time_wait_exhaustion"])
    names = {r.result.data["name"] for r in clean + exhaustion}
    assert len(names) == 2
    lines = verdict_lines(clean + exhaustion, diagnose(clean + exhaustion))
    scenario = exhaustion[0].result.data["name"]
    assert lines == [f"{scenario}: " + " ".join(verdict_lines(exhaustion, diagnose(exhaustion)))]
    assert "clean" not in lines[0]
