"""The threshold grammar, its one-line errors, and evaluation against hand-made summaries."""

from __future__ import annotations

import pytest

from tcpstress.scenario import ScenarioError, load_scenario
from tcpstress.thresholds import ThresholdError, evaluate, format_table, parse
from tests.conftest import run_cli

SUMMARY = {
    "requests": 990, "error_total": 10, "error_rate": 0.01, "requests_per_s": 99.0, "connections_per_s": 5.0,
    "responses": 1000, "errors": {"ECONNREFUSED": 4, "HTTP 503": 6},
    "status": {"200": 990, "503": 6, "404": 4}, "status_classes": {"2xx": 990, "5xx": 6, "4xx": 4},
    "latency_us": {"total": {"count": 990, "min": 100, "mean": 900.0, "p50": 800, "p90": 1500, "p99": 19_000,
                             "p99.9": 40_000, "p99.99": 45_000, "max": 50_000},
                   "connect": {"count": 0, "p99": 0}},
    "states": {"client": {"TIME_WAIT": {"peak": 1200, "final": 1100}}, "server": {"SYN_RECV": {"peak": 3, "final": 0}}},
    "counters": {"client": {"TcpExtListenOverflows": 0, "TcpActiveOpens": 100},
                 "server": {"TcpExtListenOverflows": 7, "TcpActiveOpens": 0}},
}


def verdict(expr, summary=SUMMARY):
    (r,) = evaluate([parse(expr)], summary)
    return r


@pytest.mark.parametrize("expr, passed", [
    ("total.p99 < 20ms", True), ("total.p99 < 19ms", False),
    ("total.p99 <= 19ms", True), ("total.p99 > 19ms", False), ("total.p99 >= 19ms", True),
    ("total.p99 == 19000us", True), ("total.p99 != 19000us", False), ("total.p99 != 19ms", False),
    ("total.p99.9 < 0.05s", True), ("total.p99.99 < 45ms", False), ("total.max <= 50", True),
    ("total.mean < 1ms", True), ("total.p50 > 799us", True),
])
def test_every_operator_and_time_unit(expr, passed):
    assert verdict(expr).passed is passed


def test_whitespace_is_free_and_the_expression_is_kept_canonical():
    assert parse("  requests_per_s\n>1_000 ").expr == "requests_per_s > 1_000"
    assert parse("corrected.p99<20 ms").expr == "corrected.p99 < 20ms"


def test_a_plain_latency_number_is_milliseconds():
    assert parse("total.p99 < 20").limit == parse("total.p99 < 20ms").limit == 20_000


@pytest.mark.parametrize("expr, passed, measured", [
    ("error_rate < 0.1%", False, 0.01), ("error_rate <= 1%", True, 0.01), ("error_rate < 0.02", True, 0.01),
    ("status.5xx == 0", False, 6), ("status.404 == 4", True, 4), ("status.2xx > 900", True, 990),
    ("status.302 == 0", True, 0),
    ("requests_per_s > 100", False, 99), ("errors.ECONNREFUSED == 4", True, 4), ("errors.EMFILE == 0", True, 0),
    ("client.TIME_WAIT.peak < 20000", True, 1200), ("client.TIME_WAIT.final == 1100", True, 1100),
    ("client.CLOSE_WAIT.peak == 0", True, 0),
    ("counters.TcpExtListenOverflows == 0", False, 7), ("counters.client.TcpExtListenOverflows == 0", True, 0),
    ("counters.TcpActiveOpens > 50", True, 100),
])
def test_other_metrics(expr, passed, measured):
    r = verdict(expr)
    assert (r.passed, r.measured) == (passed, measured)


@pytest.mark.parametrize("expr", [
    "tls.p99 < 10ms",              # no TLS on plain http
    "connect.p99 < 10ms",          # a latency with no samples
    "host.TIME_WAIT.peak < 10",    # a namespace that was not sampled
    "counters.TcpExtNoSuchCounter == 0",
    "counters.lab.TcpExtListenOverflows == 0",
])
def test_a_metric_the_run_did_not_measure_fails_as_not_measured(expr):
    r = verdict(expr)
    assert (r.passed, r.measured, r.reason, r.verdict) == (False, None, "not measured", "FAIL")
    assert "not measured" in format_table([r])


def test_status_is_not_measured_in_a_run_without_status_counts():
    r = verdict("status.5xx == 0", {"requests": 5})
    assert r.reason == "not measured"


def test_error_rate_from_its_parts_in_an_older_run():
    assert verdict("error_rate < 5%", {"requests": 90, "error_total": 10}).measured == pytest.approx(0.1)


@pytest.mark.parametrize("expr, message", [
    ("corected.p99 < 20ms", "unknown metric 'corected.p99' (did you mean 'corrected.p99'?)"),
    ("total.p999 < 20ms", "unknown latency figure 'p999' (did you mean 'p99.9'?)"),
    ("total.p99 < 20mss", "unit 'mss' (did you mean 'ms'?) is not allowed; use us, ms or s"),
    ("total.p99 < 5%", "total.p99 is a latency: unit '%'"),
    ("error_rate < 20ms", "error_rate is a rate: unit 'ms' is not allowed"),
    ("requests_per_s > 10k", "requests_per_s is a count: it takes a plain number, not 'k'"),
    ("client.TIME_WAT.peak < 5", "unknown TCP state 'TIME_WAT' (did you mean 'TIME_WAIT'?)"),
    ("client.TIME_WAIT.max < 5", "a state takes .peak or .final"),
    ("counters.ListenOverflows == 0", "unknown kernel counter 'ListenOverflows' (did you mean 'TcpExtListenOverflows'?)"),
    ("status.600 == 0", "expected a status code or class"),
    ("total.p99 = 20ms", "operators are <, <=, >, >=, == and !="),
    ("total.p99 => 20ms", "operators are"),
    ("total.p99 <", "expected METRIC OP VALUE"),
    ("", "expected METRIC OP VALUE"),
    ("< 20ms", "expected METRIC OP VALUE"),
    ("total.p99 < twenty", "expected METRIC OP VALUE"),
    ("total\x00.p99 < 1ms", "unknown metric 'total\\x00.p99'"),
])
def test_bad_input_is_one_line_naming_the_expression(expr, message):
    with pytest.raises(ThresholdError) as e:
        parse(expr, source="--threshold")
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"--threshold {expr!r}: ")
    assert message in text


def test_a_scenario_file_carries_thresholds(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[target]\nport = 80\n[thresholds]\nchecks = ["corrected.p99 < 20 ms", "error_rate < 0.1%"]\n')
    s = load_scenario(path)
    assert s.thresholds == ("corrected.p99 < 20ms", "error_rate < 0.1%")
    assert s.to_dict()["thresholds"] == ["corrected.p99 < 20ms", "error_rate < 0.1%"]


@pytest.mark.parametrize("table, message", [
    ('[thresholds]\nchecks = ["total.p99 < 20 mss"]', "s.toml: thresholds.checks[0] 'total.p99 < 20 mss': "),
    ('[thresholds]\ncheck = []', "unknown key thresholds.check (did you mean 'checks'?)"),
    ('[thresholds]\nchecks = "total.p99 < 1ms"', "thresholds.checks must be a list"),
    ('[thresholds]\nchecks = [3]', "thresholds.checks[0]: expected a string"),
    ('thresholds = 3', "[thresholds] must be a table"),
])
def test_bad_thresholds_in_a_scenario_file(tmp_path, table, message):
    path = tmp_path / "s.toml"
    path.write_text(f"{table}\n[target]\nport = 80\n" if table.startswith("thresholds =") else
                    f"[target]\nport = 80\n{table}\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_release_check_has_its_thresholds():
    s = load_scenario("scenarios/http_release_check.toml")
    assert "corrected.p99 < 20ms" in s.thresholds and "error_rate == 0" in s.thresholds


def test_the_cli_refuses_a_bad_threshold_with_one_line_and_exit_2(tmp_path):
    proc = run_cli("run", "--target", "127.0.0.1:9", "--threshold", "error_rate < 5ms", "--out", tmp_path / "r")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tcpstress: error: --threshold 'error_rate < 5ms'")
    assert not (tmp_path / "r").exists()
