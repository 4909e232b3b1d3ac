"""The general failure rules (report/rules_errors.py) against fixture runs whose errors are known.

The counts a finding cites are checked against result.json read here with
json, not through the reporter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstress.report.diagnose import diagnose, format_findings, load_run
from tcpstress.report.rules_errors import (
    CRITICAL_PCT,
    DEDICATED_RULES,
    WARNING_PCT,
    rule_errors,
    rule_no_success,
    severity,
)
from tcpstress.report.rundata import RunData
from tcpstress.report.words import finding
from tcpstress.results import RunResult

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def result_of(name: str) -> dict:
    return json.loads((RUNS / name / "result.json").read_text())


def by_rule(name: str) -> dict:
    return {f.rule: f for f in diagnose([load_run(RUNS / name)])}


@pytest.mark.parametrize("name, error", [
    ("protocol_errors", "protocol: malformed chunk size"),
    ("closed_before_response", "closed before response"),
    ("address_family", "errno -9"),
])
def test_a_run_that_failed_entirely_is_critical(name, error):
    data = result_of(name)
    assert data["summary"]["requests"] == 0
    count = sum(iv["errors"].get(error, 0) for iv in data["intervals"])
    assert count > 500
    found = by_rule(name)
    assert set(found) == {"no_success"}
    f = found["no_success"]
    assert f.severity == "critical"
    assert f"{count:,} × {error}" in f.text
    assert f.advice  # no dedicated rule explains these errors: the general rule says what to do
    assert format_findings(list(found.values()))[0].startswith("CRITICAL")


def test_the_reproductions_counts():
    # The numbers of issue #17's hostile servers, as the fixtures hold them.
    assert result_of("protocol_errors")["summary"]["errors"] == {"protocol: malformed chunk size": 527}
    assert result_of("closed_before_response")["summary"]["errors"] == {"closed before response": 544}
    assert result_of("address_family")["summary"]["errors"] == {"errno -9": 820}


def test_all_refused_states_the_verdict_without_repeating_advice():
    found = by_rule("all_refused")
    refused, none = found["refused"], found["no_success"]
    assert refused.severity == none.severity == "critical"
    assert '"Connections refused" above explains them' in none.text
    assert none.advice == ""
    assert refused.advice not in none.text


def test_in_flight_at_end_counts_in_the_verdict():
    data = result_of("never_answered")
    assert data["summary"]["requests"] == 0 and data["summary"]["error_total"] == 0
    assert data["summary"]["in_flight_at_end"] == 5
    f = by_rule("never_answered")["no_success"]
    assert f.severity == "critical"
    assert "5 requests were still waiting" in f.text
    assert f.evidence["in_flight_at_end"] == 5


def edited_clean(tmp_path: Path, errors: dict[str, int], requests: int | None = None, **summary) -> RunData:
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["intervals"][2]["errors"] = errors
    data["summary"]["errors"] = errors
    data["summary"]["error_total"] = sum(errors.values())
    if requests is not None:
        data["summary"]["requests"] = requests
    data["summary"].update(summary)
    (folder / "result.json").write_text(json.dumps(data))
    return load_run(folder)


def test_some_failures_are_named_with_their_share(tmp_path):
    run = edited_clean(tmp_path, {"HTTP 503": 900, "closed before response": 100})
    f = {f.rule: f for f in diagnose([run])}["errors"]
    attempts = run.requests + 1000
    assert f.severity == "warning"  # 1,000 of 81,000 = 1.2%: the p99 hides them, but no outage
    assert "900 × HTTP 503, 100 × closed before response" in f.text
    assert f"1,000 of {attempts:,} attempts" in f.text
    assert "5xx" in f.advice and "closed connections" in f.advice


def test_share_sets_the_severity(tmp_path):
    assert (severity(CRITICAL_PCT), severity(WARNING_PCT), severity(0.01)) == ("critical", "warning", "info")
    run = edited_clean(tmp_path, {"protocol: bad status line": 81})  # 0.1% of 80,081
    assert {f.rule: f for f in diagnose([run])}["errors"].severity == "warning"


def test_errors_a_dedicated_rule_explains_are_not_repeated(tmp_path):
    run = edited_clean(tmp_path, {"ECONNREFUSED": 5000, "HTTP 500": 10})
    found = {f.rule: f for f in diagnose([run])}
    assert set(found) == {"refused", "errors"}
    general = found["errors"]
    # Severity by the share no other finding explains; the overall share is still said.
    assert general.severity == "info"
    assert "10 × HTTP 500" in general.text and "ECONNREFUSED" not in general.evidence["errors"]
    assert '"Connections refused" explains the others' in general.text
    assert found["refused"].advice not in general.advice


@pytest.mark.parametrize("name", ["EADDRNOTAVAIL", "ECONNREFUSED", "ECONNRESET", "EPIPE", "connect timeout",
                                  "request timeout", "ETIMEDOUT"])
def test_dedicated_list_matches_the_dedicated_rules(tmp_path, name):
    # DEDICATED_RULES says which rule explains an error; that rule must really fire.
    run = edited_clean(tmp_path, {name: 50})
    rules = {f.rule for f in diagnose([run])}
    expected = next(rule for match, rule in DEDICATED_RULES if match(name))
    assert expected in rules
    assert rule_errors(run, [run]) == []


def test_in_flight_as_many_as_finished_is_a_warning(tmp_path):
    run = edited_clean(tmp_path, {}, requests=40, in_flight_at_end=40)
    f = {f.rule: f for f in diagnose([run])}["in_flight"]
    assert f.severity == "warning" and "40 requests were still waiting" in f.text
    assert "in_flight" not in {f.rule for f in diagnose([edited_clean(tmp_path / "b", {}, in_flight_at_end=20)])}


names = st.one_of(st.sampled_from(["ECONNREFUSED", "EADDRNOTAVAIL", "request timeout", "closed before response",
                                   "HTTP 503", "protocol: x", "errno -9", "EBADF"]), st.text(min_size=1, max_size=20))


@settings(max_examples=200, deadline=None)
@given(errors=st.dictionaries(names, st.integers(0, 10**6), max_size=6), in_flight=st.integers(0, 1000))
def test_no_success_never_reads_as_all_clear(errors, in_flight):
    data = {"name": "x", "scenario": {}, "intervals": [],
            "summary": {"requests": 0, "errors": errors, "error_total": sum(errors.values()),
                        "in_flight_at_end": in_flight}}
    run = RunData(result=RunResult(data=data))
    found = diagnose([run])
    assert any(f.rule == "no_success" and f.severity == "critical" for f in found)
    assert format_findings(found) != ["No problems found."]
    assert finding(rule_no_success(run, [run])[0]).text.strip()


def test_a_summary_without_requests_counts_them_from_the_intervals(tmp_path):
    # A streamed result.json ("in progress") has an empty summary: its successes are in the intervals.
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    in_intervals = sum(iv["requests"] for iv in data["intervals"])
    data["summary"] = {}
    (folder / "result.json").write_text(json.dumps(data))
    run = load_run(folder)
    assert run.requests == in_intervals > 0
    assert "no_success" not in {f.rule for f in diagnose([run])}
