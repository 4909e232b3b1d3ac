"""The release gate end to end: thresholds and their exit codes, --json, and `tcpstress diff`.

Every load run here is at most 3 s on loopback. The witnesses are nginx's
access log (requests really were answered), a port nobody listens on, and
the built-in server's configured delay (a connection cannot finish more than
1/delay requests a second, whatever the generator reports).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import free_port, run_cli


def result(folder):
    return json.loads((folder / "result.json").read_text())


def test_a_threshold_that_must_fail_exits_99_and_prints_fail(tmp_path, nginx):
    out = tmp_path / "run"
    proc = run_cli("run", "--target", f"127.0.0.1:{nginx.port}", "-c", 2, "-d", "1s", "--workers", 1,
                   "--threshold", "total.p99 < 1us", "--threshold", "error_rate < 1%", "--no-report", "--out", out)
    assert proc.returncode == 99, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert any(w[:3] == ["total.p99", "<", "1us"] and w[-1] == "FAIL" for w in lines)
    assert any(w[:3] == ["error_rate", "<", "1%"] and w[-1] == "PASS" for w in lines)
    assert "threshold failed" in proc.stderr
    res = result(out)
    assert [t["verdict"] for t in res["thresholds"]] == ["FAIL", "PASS"]
    # The run was real: nginx logged what the summary counted (plus those in flight at the end).
    served = nginx.log_lines() - nginx.baseline
    assert res["summary"]["requests"] > 0
    assert res["summary"]["requests"] <= served <= res["summary"]["requests"] + 2
    assert res["thresholds"][0]["measured"] >= 1  # no latency is under 1 µs: the FAIL is the number's
    assert not (out / "report.html").exists()


def test_thresholds_that_must_pass_exit_0(tmp_path, nginx):
    out = tmp_path / "run"
    proc = run_cli("run", "--target", f"127.0.0.1:{nginx.port}", "-c", 2, "-d", "1s", "--workers", 1,
                   "--threshold", "total.p99 < 10s", "--threshold", "errors.ECONNREFUSED == 0",
                   "--threshold", "requests > 0", "--no-report", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert [t["verdict"] for t in result(out)["thresholds"]] == ["PASS", "PASS", "PASS"]
    assert "FAIL" not in proc.stdout


def test_a_run_against_a_closed_port_exits_1(tmp_path):
    port = free_port()  # bound and released: nothing listens there
    out = tmp_path / "run"
    proc = run_cli("run", "--target", f"127.0.0.1:{port}", "-c", 2, "-d", "1s", "--workers", 1, "--no-report",
                   "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not one request succeeded" in proc.stderr
    s = result(out)["summary"]
    assert s["requests"] == 0 and s["errors"].get("ECONNREFUSED", 0) > 0


def test_json_is_the_only_thing_on_stdout_and_equals_result_json(tmp_path, server_factory):
    server = server_factory(protocol="http")
    out = tmp_path / "run"
    proc = run_cli("run", "--target", f"127.0.0.1:{server.port}", "-c", 2, "-d", "1s", "--workers", 1,
                   "--threshold", "total.p99 < 10s", "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)  # nothing but the JSON document
    saved = result(out)
    thresholds = printed.pop("thresholds")
    assert printed == saved["summary"]
    assert thresholds == saved["thresholds"] and thresholds[0]["verdict"] == "PASS"
    assert "results:" in proc.stderr and "report:" in proc.stderr
    served = server.stop()
    assert printed["requests"] <= served["requests"] <= printed["requests"] + 2


def test_short_flags_and_rate_implies_the_open_model(tmp_path):
    out = tmp_path / "run"
    run_cli("run", "--builtin-server", "-c", 2, "-d", "1s", "-R", 200, "--workers", 1, "--no-report",
            "--out", out, check=True)
    sc = result(out)["scenario"]
    assert (sc["load"]["model"], sc["load"]["rate"], sc["load"]["connections"], sc["load"]["duration"]) == \
        ("open", 200.0, 2, 1.0)


def test_a_bad_threshold_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--builtin-server", "-d", "1s", "--threshold", "corected.p99 < 20ms", "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tcpstress: error: --threshold 'corected.p99 < 20ms': unknown metric 'corected.p99' "
        "(did you mean 'corrected.p99'?)"]
    assert not out.exists()


# --- diff ---------------------------------------------------------------------------


def scenario(tmp_path, name, delay):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        name = "{name}"
        [server]
        builtin = true
        delay = "{delay}"
        [load]
        connections = 4
        duration = "2s"
        workers = 1
    """))
    return path


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """Three repeat folders (2 runs of 2 s each: 4 one-second intervals a side): the same
    config twice, and the same server 30 ms slower per response. The delays are tens of
    milliseconds so that the generator's and the machine's share of each response time
    (a fraction of a millisecond, a few when the shared machine is busy) moves the same
    config's figures by a few percent at most: with 2 ms it moved req/s by over 10%
    between two back-to-back runs in CI."""
    tmp = tmp_path_factory.mktemp("diff")
    folders = {}
    for name, delay in (("base", "20ms"), ("same", "20ms"), ("slow", "50ms")):
        folders[name] = tmp / name
        run_cli("run", scenario(tmp, "gate", delay), "--repeat", 2, "--no-report", "-q", "--out", folders[name],
                check=True)
    return folders


def rows(diff_json):
    (pair,) = diff_json["pairs"]
    return {m["metric"]: m for m in pair["metrics"]}


def test_diff_of_the_same_config_finds_no_significant_change(sides, tmp_path):
    # The two sides run one after the other on a shared 2-core machine: other work
    # there moves the same config's req/s by a few percent, consistently enough
    # over 4 intervals to be "significant". The claim tested is that the same config
    # shows no change that matters: none of 10% or more (the slower server below
    # differs by 60%).
    proc = run_cli("diff", sides["base"], sides["same"], "--json", "--min-change", "10%", "--out", tmp_path / "d")
    assert proc.returncode == 0, proc.stderr
    m = rows(json.loads(proc.stdout))
    for metric in ("requests_per_s", "total.p50"):
        assert m[metric]["verdict"] == "no significant change", m[metric]
        assert m[metric]["n_base"] == m[metric]["n_new"] == 4
    assert (tmp_path / "d" / "diff.html").is_file() and (tmp_path / "d" / "diff.md").is_file()


def test_diff_against_a_slower_server_says_slower_with_the_right_ratio(sides, tmp_path):
    proc = run_cli("diff", sides["base"], sides["slow"], "--json", "--out", tmp_path / "d")
    assert proc.returncode == 0, proc.stderr  # no --max-regression: a report, not a gate
    m = rows(json.loads(proc.stdout))
    rate, p50 = m["requests_per_s"], m["total.p50"]
    assert rate["verdict"] == "slower" and p50["verdict"] == "slower"
    assert rate["p_value"] < 0.05 and p50["p_value"] < 0.05
    # 4 connections, each waiting 50 ms per response: at most 80 responses a second.
    assert rate["new"] <= 4 / 0.050 * 1.02
    assert p50["new"] >= 50.0  # ms: no response comes back before the server's delay
    # 20 ms + overhead against 50 ms + the same overhead: 50/20 with none, 2.2 with 5 ms.
    assert 2.0 <= p50["ratio"] <= 2.6
    assert 0.38 <= rate["ratio"] <= 0.5


def test_diff_exit_code_follows_max_regression(sides, tmp_path):
    strict = run_cli("diff", sides["base"], sides["slow"], "--max-regression", "5%", "--out", tmp_path / "a")
    assert strict.returncode == 99, strict.stdout + strict.stderr
    assert "REGRESSION beyond 5.0%" in strict.stdout
    loose = run_cli("diff", sides["base"], sides["slow"], "--max-regression", "1000%", "--out", tmp_path / "b")
    assert loose.returncode == 0, loose.stdout + loose.stderr
    faster = run_cli("diff", sides["slow"], sides["base"], "--max-regression", "5%", "--out", tmp_path / "c")
    assert faster.returncode == 0, faster.stdout
    assert "faster" in faster.stdout


def test_report_of_several_folders_goes_to_a_new_folder_never_into_the_first(sides, tmp_path):
    first_files = sorted(p.name for p in (sides["base"]).iterdir())
    proc = run_cli("report", sides["base"], sides["slow"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (made,) = (tmp_path / "reports").iterdir()
    assert made.name.endswith("-report") and (made / "report.html").is_file()
    assert sorted(p.name for p in sides["base"].iterdir()) == first_files


def test_diff_refuses_a_folder_that_is_no_run_with_one_line(sides, tmp_path):
    proc = run_cli("diff", sides["base"], tmp_path, "--out", tmp_path / "d")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"tcpstress: error: {tmp_path}: no result.json here: not a tcpstress run folder"]
    bad = run_cli("diff", sides["base"], sides["slow"], "--max-regression", "five", "--out", tmp_path / "e")
    assert bad.returncode == 2 and "--max-regression 'five'" in bad.stderr
