"""Rules over the fixture run folders (tests/fixtures/runs, built by make_fixtures.py).

Each rule must fire on the fixture that shows its problem and stay silent on
every other one; the numbers a finding cites are checked against the files
themselves (read with csv/json/hdrh here, not through the reporter).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstress.report.diagnose import (
    RULES,
    Finding,
    comparison_rows,
    comparison_table,
    diagnose,
    format_findings,
    knob_table,
    load_run,
    load_runs,
)
from tcpstress.report.limits import port_range
from tcpstress.results import ResultError

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"

# Every fixture's complete diagnosis as (rule, run label): a rule firing anywhere
# else, or missing here, fails the test.
EXPECTED = {
    "clean": set(),
    "time_wait_exhaustion": {("port_exhaustion", "baseline")},
    "accept_queue_overflow": {("accept_queue", "accept_queue_overflow"),
                              ("server_saturated", "accept_queue_overflow")},
    "syn_flood": {("syn_queue", "syncookies_off"), ("timeouts", "syncookies_off"), ("syn_queue", "syncookies_on")},
    "close_wait_leak": {("close_wait", "close_wait_leak")},
    "generator_saturated": {("generator_saturated", "generator_saturated")},
    "open_model_lag": {("open_model_lag", "open_model_lag"), ("generator_saturated", "open_model_lag")},
    # Each late open model names its own cause; the ramped one kept its (ramped) schedule.
    "lag_causes": {("open_model_lag", "host_busy"), ("open_model_lag", "ports_crowded"),
                   ("open_model_lag", "server_slow")},
    "connection_refused": {("refused", "connection_refused"), ("reset", "connection_refused")},
    "tw_bucket_overflow": {("tw_overflow", "small_buckets")},
    # Runs in which not one request succeeded (issue #17): the general rules in rules_errors.py.
    "protocol_errors": {("no_success", "protocol_errors")},
    "closed_before_response": {("no_success", "closed_before_response")},
    "address_family": {("no_success", "address_family")},
    "all_refused": {("refused", "all_refused"), ("no_success", "all_refused")},
    "never_answered": {("no_success", "never_answered")},
}


def findings_of(name: str) -> list[Finding]:
    return diagnose(load_runs([RUNS / name]))


def one(findings: list[Finding], rule: str, variant: str | None = None) -> Finding:
    hits = [f for f in findings if f.rule == rule and (variant is None or f.variant == variant)]
    assert len(hits) == 1, [(f.rule, f.variant) for f in findings]
    return hits[0]


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "samples.csv", newline="") as f:
        return list(csv.DictReader(f))


def column_max(folder: Path, column: str, ns: str) -> int:
    return max(int(r[column]) for r in csv_rows(folder) if r["ns"] == ns)


def column_sum(folder: Path, column: str, ns: str) -> int:
    return sum(int(r[column]) for r in csv_rows(folder) if r["ns"] == ns)


def interval_errors(folder: Path, name: str) -> int:
    data = json.loads((folder / "result.json").read_text())
    return sum(iv["errors"].get(name, 0) for iv in data["intervals"])


def test_every_fixture_is_covered():
    folders = {p.name for p in RUNS.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exactly_the_expected_rules_fire(name):
    got = {(f.rule, f.variant) for f in findings_of(name)}
    assert got == EXPECTED[name]


def test_every_rule_fires_on_some_fixture():
    fired = {rule for expected in EXPECTED.values() for rule, _ in expected}
    # rule_refused_or_reset yields two rule names; rule_incomplete_run and
    # rule_injected_fault are covered below; rule_errors and rule_in_flight in test_rules_errors.py.
    assert len(fired) >= len(RULES) - 4


def test_findings_are_well_formed():
    for name in EXPECTED:
        for f in findings_of(name):
            assert f.severity in ("critical", "warning", "info")
            assert f.title and f.text.strip() and f.evidence
            assert all(k.startswith("net.") or k == "listen backlog" for k in f.knobs)
            # Numbers are formatted for people: no raw floats like 0.30000000000000004.
            assert "0000000" not in f.text


def test_port_exhaustion_cites_the_files_numbers():
    folder = RUNS / "time_wait_exhaustion" / "baseline"
    f = one(findings_of("time_wait_exhaustion"), "port_exhaustion", "baseline")
    assert f.severity == "critical"
    failures = interval_errors(folder, "EADDRNOTAVAIL")
    peak = column_max(folder, "TIME_WAIT", "client")
    assert peak == 1000
    assert f"{failures:,}" in f.text
    assert "1,000" in f.text and "40000" in f.text
    assert f.evidence["time_wait_peak"] == peak and f.evidence["ports"] == 1000
    # The clean variants are named, with what made them clean.
    assert f.evidence["variants_without"] == ["tw_reuse", "keepalive"]
    assert "net.ipv4.tcp_tw_reuse=1" in f.text and "keepalive=true" in f.text
    # docs/kernel.md: tw_reuse=2 is loopback-only; TIME_WAIT is 60 s and not a sysctl.
    assert "loopback" in f.advice and "60 s" in f.text
    assert f.knobs == ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"]
    first = json.loads((folder / "result.json").read_text())["intervals"]
    first_t = next(iv["t"] for iv in first if iv["errors"].get("EADDRNOTAVAIL"))
    assert f"t={first_t:g} s" in f.text


def test_accept_queue_overflow_cites_counter_and_queue():
    folder = RUNS / "accept_queue_overflow"
    f = one(findings_of("accept_queue_overflow"), "accept_queue")
    overflows = column_sum(folder, "TcpExtListenOverflows", "server")
    assert overflows > 0
    assert f"{overflows:,}" in f.text
    assert "= 128" in f.text and "somaxconn 4096" in f.text
    assert "net.core.somaxconn" in f.knobs


def test_syn_queue_distinguishes_drops_from_cookies():
    findings = findings_of("syn_flood")
    off = one(findings, "syn_queue", "syncookies_off")
    on = one(findings, "syn_queue", "syncookies_on")
    assert off.severity == "critical" and on.severity == "warning"
    drops = column_sum(RUNS / "syn_flood" / "syncookies_off", "TcpExtTCPReqQFullDrop", "server")
    sent = column_sum(RUNS / "syn_flood" / "syncookies_on", "TcpExtSyncookiesSent", "server")
    assert f"TcpExtTCPReqQFullDrop rose by {drops:,}" in off.text and "tcp_syncookies=0" in off.text
    assert f"TcpExtSyncookiesSent rose by {sent:,}" in on.text and "tcp_syncookies=1" in on.text
    assert f"about {column_max(RUNS / 'syn_flood' / 'syncookies_off', 'SYN_RECV', 'server')}" in off.text


def test_close_wait_leak_says_no_sysctl_helps():
    f = one(findings_of("close_wait_leak"), "close_wait")
    final = int(csv_rows(RUNS / "close_wait_leak")[-1]["CLOSE_WAIT"])
    assert f"{final:,}" in f.text
    assert f.knobs == []
    assert "close()" in f.text and "tcp_fin_timeout" in f.advice


def test_tw_bucket_overflow_names_the_knob_value():
    f = one(findings_of("tw_bucket_overflow"), "tw_overflow")
    assert "tcp_max_tw_buckets=2000" in f.text
    assert f.knobs == ["net.ipv4.tcp_max_tw_buckets"]


def test_saturation_rules_use_cores():
    gen = one(findings_of("generator_saturated"), "generator_saturated")
    assert gen.evidence["generator_cores"] == 1
    assert "lower bound" in gen.text
    srv = one(findings_of("accept_queue_overflow"), "server_saturated")
    assert srv.evidence["target_cores"] == 1


def test_open_model_compares_corrected_and_uncorrected():
    folder = RUNS / "open_model_lag"
    f = one(findings_of("open_model_lag"), "open_model_lag")

    def p99(path: Path) -> int:
        reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
        total = HdrHistogram(1, 3_600_000_000, 3)
        while (h := reader.get_next_interval_histogram()) is not None:
            total.add(h)
        return total.get_value_at_percentile(99)

    assert f.evidence["p99_corrected_us"] == p99(folder / "latency-corrected.hlog")
    assert f.evidence["p99_uncorrected_us"] == p99(folder / "latency-total.hlog")
    assert f.evidence["p99_corrected_us"] > 10 * f.evidence["p99_uncorrected_us"]
    assert "5,000 req/s" in f.text and "coordinated omission" in f.text


def _process_rows(folder: Path, role: str) -> list[dict[str, str]]:
    with open(folder / "processes.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["role"] == role]


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


@pytest.mark.parametrize("variant, cause, title_words", [
    ("host_busy", "host", "host busy"),
    ("ports_crowded", "ports", "port range crowded"),
    ("server_slow", "server", "server too slow"),
])
def test_late_open_model_names_its_cause(variant, cause, title_words):
    f = one(findings_of("lag_causes"), "open_model_lag", variant)
    assert f.evidence["cause"] == cause and title_words in f.title
    # Never "add workers" when the generator was not the limit.
    assert "load.workers" not in f.advice


def test_lag_cause_numbers_come_from_the_files():
    folder = RUNS / "lag_causes"
    host = one(findings_of("lag_causes"), "open_model_lag", "host_busy")
    rows = [r for r in _process_rows(folder / "host_busy", "host") if float(r["t"]) <= 10]
    assert host.evidence["host_cpu_median"] == round(_median([float(r["cpu_percent"]) for r in rows]), 1)
    assert f"{host.evidence['host_cpu_median']:.0f}%" in host.text
    ports = one(findings_of("lag_causes"), "open_model_lag", "ports_crowded")
    # The client closes first (TIME_WAIT is its own); on loopback each connection is two
    # ESTABLISHED sockets in the one namespace, one of them the server's.
    assert ports.evidence["ports_held_peak"] == (column_max(folder / "ports_crowded", "TIME_WAIT", "host")
                                                 + column_max(folder / "ports_crowded", "ESTABLISHED", "host") // 2)
    # The generator was at 100% CPU there, in connect(): the ports finding, not "add workers".
    assert "generator_saturated" not in {f.rule for f in findings_of("lag_causes") if f.variant == "ports_crowded"}
    slow = one(findings_of("lag_causes"), "open_model_lag", "server_slow")
    reader = HistogramLogReader(str(folder / "server_slow" / "latency-total.hlog"), HdrHistogram(1, 3_600_000_000, 3))
    total = HdrHistogram(1, 3_600_000_000, 3)
    while (h := reader.get_next_interval_histogram()) is not None:
        total.add(h)
    assert slow.evidence["capacity_per_s"] == round(50 / (total.get_value_at_percentile(50) / 1e6), 1)


def test_ramp_is_judged_against_the_ramped_schedule():
    data = json.loads((RUNS / "lag_causes" / "ramped" / "result.json").read_text())
    started = sum(iv["requests"] for iv in data["intervals"])
    assert started < 0.9 * 5000 * 10  # below the full rate: the old rule warned here
    assert "open_model_lag" not in {f.rule for f in findings_of("lag_causes") if f.variant == "ramped"}


def test_old_processes_csv_without_host_row_still_renders():
    f = one(findings_of("open_model_lag"), "open_model_lag")
    assert f.evidence["cause"] == "generator"
    assert "steal_percent" not in (RUNS / "open_model_lag" / "processes.csv").read_text()


def test_refused_and_reset_counts():
    findings = findings_of("connection_refused")
    refused = one(findings, "refused")
    assert f"{interval_errors(RUNS / 'connection_refused', 'ECONNREFUSED'):,}" in refused.text
    reset = one(findings, "reset")
    assert reset.evidence["ECONNRESET+EPIPE"] == 20


def test_partial_run_and_dead_worker(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["partial"], data["partial_reason"] = True, "interrupted (Ctrl-C)"
    data["summary"]["workers"][0]["exit"] = "died: MemoryError"
    (folder / "result.json").write_text(json.dumps(data))
    got = {f.rule: f for f in diagnose([load_run(folder)])}
    assert set(got) == {"partial", "workers_died"}
    assert "Ctrl-C" in got["partial"].text and "MemoryError" in got["workers_died"].text


def test_port_exhaustion_without_read_back_sysctls(tmp_path):
    # A host run records no sysctls: the rule must still fire and say what it can.
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["sysctls"] = {}
    data["intervals"][3]["errors"] = {"EADDRNOTAVAIL": 5}
    data["summary"]["errors"] = {"EADDRNOTAVAIL": 5}
    data["summary"]["error_total"] = 5
    (folder / "result.json").write_text(json.dumps(data))
    f = one(diagnose([load_run(folder)]), "port_exhaustion")
    assert "5 times" in f.text and "t=3 s" in f.text
    assert "ports" not in f.evidence


def test_port_exhaustion_with_tw_reuse_on(tmp_path):
    # Seen in the lab: with tcp_tw_reuse=1 the first second still fails a few connects,
    # because a TIME_WAIT port is reusable only after 1 s.
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "time_wait_exhaustion" / "tw_reuse", folder)
    data = json.loads((folder / "result.json").read_text())
    data["intervals"][1]["errors"] = {"EADDRNOTAVAIL": 35}
    data["summary"]["errors"] = {"EADDRNOTAVAIL": 35}
    data["summary"]["error_total"] = 35
    (folder / "result.json").write_text(json.dumps(data))
    f = one(diagnose([load_run(folder)]), "port_exhaustion")
    assert f.severity == "warning"  # 35 of 4,035 attempts
    assert "older than 1 s" in f.text and "1,000 per second" in f.text
    assert "tcp_tw_reuse=1" not in f.advice


def test_open_model_on_schedule_is_silent(tmp_path):
    # The engine calls a start late past 1 ms: many small lags are not a slipped schedule.
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "open_model_lag", folder)
    (folder / "latency-corrected.hlog").unlink()
    data = json.loads((folder / "result.json").read_text())
    for iv in data["intervals"]:
        iv["requests"], iv["late_starts"], iv["max_lag_us"] = 5000, 900, 9000
    data["summary"].update(requests=50_000, requests_per_s=5000.0, late_starts=9000, max_lag_us=9000)
    del data["summary"]["latency_us"]["corrected"]
    (folder / "result.json").write_text(json.dumps(data))
    assert "open_model_lag" not in {f.rule for f in diagnose([load_run(folder)])}


def test_format_findings():
    lines = format_findings(findings_of("time_wait_exhaustion"))
    assert lines[0] == "CRITICAL [baseline] Ephemeral ports exhausted (EADDRNOTAVAIL)"
    assert all(len(line) <= 100 or line.startswith("    knobs:") for line in lines)
    assert any(line.startswith("    What to do:") for line in lines)
    assert lines[-1] == "    knobs: net.ipv4.ip_local_port_range, net.ipv4.tcp_tw_reuse"
    assert format_findings([]) == ["No problems found."]


def test_findings_sorted_by_severity():
    findings = findings_of("syn_flood")
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=("critical", "warning", "info").index)


# --- comparison rows ------------------------------------------------------------------


def test_comparison_rows_against_the_files():
    runs = load_runs([RUNS / "time_wait_exhaustion"])
    rows = comparison_rows(runs)
    assert [r["variant"] for r in rows] == ["baseline", "tw_reuse", "keepalive"]
    for row, run in zip(rows, runs):
        data = json.loads((run.folder / "result.json").read_text())
        assert row["requests_per_s"] == data["summary"]["requests_per_s"]
        reader = HistogramLogReader(str(run.folder / "latency-total.hlog"), HdrHistogram(1, 3_600_000_000, 3))
        total = HdrHistogram(1, 3_600_000_000, 3)
        while (h := reader.get_next_interval_histogram()) is not None:
            total.add(h)
        assert row["p99_ms"] == total.get_value_at_percentile(99) / 1000.0
        assert row["peak_time_wait"] == column_max(run.folder, "TIME_WAIT", "client")
    baseline = rows[0]
    attempts = baseline["error_total"] + interval_sum(runs[0].folder, "requests")
    assert baseline["error_pct"] == pytest.approx(100.0 * baseline["error_total"] / attempts)
    assert rows[1]["counters"]["TcpExtTWRecycled"] == column_sum(runs[1].folder, "TcpExtTWRecycled", "client")


def interval_sum(folder: Path, key: str) -> int:
    return sum(iv[key] for iv in json.loads((folder / "result.json").read_text())["intervals"])


def test_comparison_table_leaves_out_all_zero_columns():
    headers, cells = comparison_table(comparison_rows(load_runs([RUNS / "time_wait_exhaustion"])))
    assert "TWRecycled" in headers and "ListenOverflows" not in headers
    assert "peak TIME_WAIT" in headers and "peak SYN_RECV" not in headers
    assert cells[0][headers.index("errors")] == "EADDRNOTAVAIL 52,500"
    assert cells[0][headers.index("peak TIME_WAIT")] == "1,000 (client)"
    assert all(len(row) == len(headers) for row in cells)


def test_comparison_table_shows_corrected_latency_for_open_model():
    headers, cells = comparison_table(comparison_rows(load_runs([RUNS / "open_model_lag"])))
    corrected = float(cells[0][headers.index("corrected p99 ms")].replace(",", ""))
    assert corrected > 10 * float(cells[0][headers.index("p99 ms")])
    assert cells[0][headers.index("req/s")] == "3,200 / 5,000"


def test_knob_table_marks_differences():
    headers, rows, differs = knob_table(load_runs([RUNS / "time_wait_exhaustion"]))
    assert headers == ["side", "knob", "baseline", "tw_reuse", "keepalive"]
    marked = [row[1] for row, d in zip(rows, differs) if d]
    assert marked == ["net.ipv4.tcp_tw_reuse"]


def test_port_range_parsing():
    assert port_range("40000\t40999") == (40000, 40999)
    assert port_range("32768 60999") == (32768, 60999)
    assert port_range("") is None and port_range("5 1") is None and port_range("a b") is None


def test_duplicate_labels_are_made_distinct():
    runs = load_runs([RUNS / "clean", RUNS / "clean"])
    assert len({r.label for r in runs}) == 2


# --- refusing bad folders ------------------------------------------------------------------


def copy_run(tmp_path: Path, name: str = "clean") -> Path:
    folder = tmp_path / name
    shutil.copytree(RUNS / name, folder)
    return folder


def assert_one_line_error(excinfo, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_truncated_result_json_is_refused(tmp_path):
    folder = copy_run(tmp_path)
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[: len(text) // 2])
    with pytest.raises(ResultError) as e:
        load_run(folder)
    assert_one_line_error(e, "result.json", "truncated")


def test_not_a_run_folder_is_refused(tmp_path):
    with pytest.raises(ResultError) as e:
        load_runs([tmp_path])
    assert_one_line_error(e, "not a tcpstress run folder")


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("\n0.5,host,", "\n0.5,host,x", 1), ("samples.csv:3", "not a number")),
    (lambda t: t.rstrip("\n").rsplit(",", 3)[0] + "\n", ("fields",)),
    (lambda t: t[:-5], ("cut off",)),
    (lambda t: t.replace("t,ns,", "time,ns,", 1), ("header lacks t",)),
])
def test_hand_edited_samples_are_refused(tmp_path, edit, words):
    folder = copy_run(tmp_path)
    path = folder / "samples.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ResultError) as e:
        load_run(folder)
    assert_one_line_error(e, *words)


def test_corrupt_hlog_is_refused(tmp_path):
    folder = copy_run(tmp_path)
    path = folder / "latency-total.hlog"
    lines = path.read_text().splitlines(keepends=True)
    lines[-1] = lines[-1][:40] + "!!!\n"
    path.write_text("".join(lines))
    with pytest.raises(ResultError) as e:
        load_run(folder)
    assert_one_line_error(e, "latency-total.hlog")


def test_intervals_without_t_are_refused(tmp_path):
    folder = copy_run(tmp_path)
    data = json.loads((folder / "result.json").read_text())
    del data["intervals"][2]["t"]
    (folder / "result.json").write_text(json.dumps(data))
    with pytest.raises(ResultError) as e:
        load_run(folder)
    assert_one_line_error(e, "intervals[2]")


def test_interrupted_comparison_shows_the_variants_that_ran(tmp_path):
    folder = tmp_path / "cmp"
    shutil.copytree(RUNS / "time_wait_exhaustion", folder)
    comparison = json.loads((folder / "comparison.json").read_text())
    del comparison["runs"]["keepalive"]
    (folder / "comparison.json").write_text(json.dumps(comparison))
    assert [r.label for r in load_runs([folder])] == ["baseline", "tw_reuse"]


def test_comparison_with_a_missing_variant_folder_is_refused(tmp_path):
    folder = tmp_path / "cmp"
    shutil.copytree(RUNS / "time_wait_exhaustion", folder)
    shutil.rmtree(folder / "keepalive")
    with pytest.raises(ResultError) as e:
        load_runs([folder])
    assert_one_line_error(e, "keepalive")


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0))
def test_any_truncation_of_samples_is_a_prefix_or_an_error(tmp_path_factory, fraction):
    # A crash can cut samples.csv anywhere: the loader either reads whole rows that
    # were really there, or refuses; it never invents a row from half a line.
    folder = tmp_path_factory.mktemp("cut") / "run"
    shutil.copytree(RUNS / "clean", folder)
    path = folder / "samples.csv"
    full = path.read_text()
    complete = load_run(folder).samples
    path.write_text(full[: int(len(full) * fraction)])
    try:
        rows = load_run(folder).samples
    except ResultError:
        return
    assert rows == complete[: len(rows)]


def test_diagnose_is_pure():
    # The CLI prints findings without paying for matplotlib; the pure modules import none of these.
    code = ("import sys, tcpstress.report, tcpstress.report.diagnose; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'trio', 'click'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kind,knob", [("drop_syn", "net.ipv4.tcp_syn_retries"),
                                       ("partition", "net.ipv4.tcp_keepalive_time"),
                                       ("syn_flood", "net.ipv4.tcp_syncookies")])
def test_an_injected_fault_is_named_so_its_errors_are_not_blamed_on_the_server(tmp_path, kind, knob):
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    assert not [f for f in diagnose([load_run(folder)]) if f.rule == "injected_fault"]
    data = json.loads((folder / "result.json").read_text())
    data["fault"] = {"kind": kind, "at": 1.0, "lasts": 0.0, "rate": 2000.0, "spoof": "198.19.0.0/16",
                     "started": True}
    (folder / "result.json").write_text(json.dumps(data))
    (finding,) = [f for f in diagnose([load_run(folder)]) if f.rule == "injected_fault"]
    assert finding.severity == "info" and kind in finding.title and "t=1 s" in finding.text
    assert knob in finding.knobs
