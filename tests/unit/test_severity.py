"""Severity scales with impact (issue #18): 2.9% and 87.5% of attempts failing are not alike.

Each error finding is critical from OUTAGE_PCT of attempts failed, a warning
below, and its text states the share, so two variants that failed the same
way read differently. The shares are computed here from the numbers written
into result.json, not taken from the report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tcpstress.report.diagnose import diagnose, format_findings, load_run
from tcpstress.report.finding import OUTAGE_PCT
from tcpstress.report.rundata import RunData

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def failing_clean(folder: Path, errors: dict[str, int], variant: str) -> RunData:
    """The clean fixture with these errors added to one second, labelled as a variant."""
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["intervals"][2]["errors"] = errors
    data["summary"]["errors"] = errors
    data["summary"]["error_total"] = sum(errors.values())
    data["variant"] = variant
    (folder / "result.json").write_text(json.dumps(data))
    return load_run(folder, variant)


def requests_of() -> int:
    return json.loads((RUNS / "clean" / "result.json").read_text())["summary"]["requests"]


def count_for(pct: float) -> int:
    """Errors that make pct% of the clean run's attempts (requests + errors)."""
    requests = requests_of()
    return round(pct / (100 - pct) * requests)


@pytest.mark.parametrize("error, rule", [("EADDRNOTAVAIL", "port_exhaustion"), ("ECONNRESET", "reset"),
                                         ("ECONNREFUSED", "refused"), ("request timeout", "timeouts"),
                                         ("HTTP 503", "errors")])
def test_a_few_failures_warn_and_many_are_critical(tmp_path, error, rule):
    found = {}
    for pct in (2.9, 87.5):
        n = count_for(pct)
        run = failing_clean(tmp_path / str(pct), {error: n}, f"v{pct}")
        share = 100.0 * n / (run.requests + n)
        assert share == pytest.approx(pct, abs=0.05)
        f = {f.rule: f for f in diagnose([run])}[rule]
        found[pct] = f
        assert f"{share:.1f}%" in f.text or f"{share:.2g}%" in f.text, f.text
    assert found[2.9].severity == "warning" and found[87.5].severity == "critical"
    assert 2.9 < OUTAGE_PCT < 87.5


def test_a_comparison_keeps_each_variants_share_in_the_one_finding(tmp_path):
    low = failing_clean(tmp_path / "a", {"EADDRNOTAVAIL": count_for(87.5)}, "baseline")
    high = failing_clean(tmp_path / "b", {"EADDRNOTAVAIL": count_for(2.9)}, "tw_reuse")
    lines = format_findings(diagnose([low, high]))
    headline = [line for line in lines if "Ephemeral ports exhausted" in line]
    assert headline == ["CRITICAL [baseline, tw_reuse] Ephemeral ports exhausted (EADDRNOTAVAIL)"]
    text = " ".join(lines)
    assert "87.5% of attempts" in text and "2.9% of attempts" in text
