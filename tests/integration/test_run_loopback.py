"""End-to-end runs on loopback, checked against the server's own count."""

import json

import pytest

from tests.conftest import run_cli


def result(folder):
    return json.loads((folder / "result.json").read_text())


def assert_counts_match_server(res, served, in_flight):
    """The server answered every request we counted, plus at most those in flight at the end."""
    s = res["summary"]
    assert s["requests"] > 0
    assert s["requests"] <= served["requests"] <= s["requests"] + in_flight


@pytest.mark.parametrize("keepalive", [True, False])
def test_closed_model_against_builtin_server(tmp_path, server_factory, keepalive):
    server = server_factory(protocol="http")
    out = tmp_path / "run"
    flags = ["--keepalive"] if keepalive else ["--no-keepalive"]
    run_cli("run", "--target", f"127.0.0.1:{server.port}", "--connections", 8, "--duration", "2s",
            *flags, "--out", out, check=True)
    served = server.stop()
    res = result(out)
    assert_counts_match_server(res, served, in_flight=8)
    s = res["summary"]
    if keepalive:
        assert s["connections"] <= 8 and served["connections"] == 8
    else:
        assert s["connections"] >= s["requests"]
        assert served["connections"] >= s["requests"]
    assert len(res["intervals"]) == 2
    assert sum(i["requests"] for i in res["intervals"]) == s["requests"]
    assert s["latency_us"]["total"]["count"] == s["requests"]
    for name in ("latency-total.hlog", "latency-connect.hlog", "latency-ttfb.hlog", "samples.csv"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_host_port_as_the_first_argument(tmp_path, server_factory, host):
    """`tcpstress run HOST:PORT`, as the README says: the server's own count is the witness."""
    server = server_factory(protocol="http")
    out = tmp_path / "run"
    run_cli("run", f"{host}:{server.port}", "--connections", 2, "--max-requests", 40, "--duration", "5s",
            "--out", out, "--no-report", check=True)
    served = server.stop()
    assert result(out)["summary"]["requests"] == served["requests"] == 40


def test_host_port_argument_and_target_flag_conflict(tmp_path):
    proc = run_cli("run", "127.0.0.1:8080", "--target", "127.0.0.1:8081", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "give the target once" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_multi_worker_counts_merge_exactly(tmp_path, server_factory):
    server = server_factory(protocol="http")
    out = tmp_path / "run"
    run_cli("run", "--target", f"127.0.0.1:{server.port}", "--connections", 6, "--workers", 2,
            "--duration", "2s", "--out", out, check=True)
    served = server.stop()
    res = result(out)
    assert_counts_match_server(res, served, in_flight=6)
    assert [w["exit"] for w in res["summary"]["workers"]] == ["ok", "ok"]
    assert sum(w["requests"] for w in res["summary"]["workers"]) == res["summary"]["requests"]


def test_ipv6_loopback(tmp_path, server_factory):
    server = server_factory(protocol="http", host="::1")
    out = tmp_path / "run"
    run_cli("run", "--target", f"[::1]:{server.port}", "--connections", 2, "--duration", "1s", "--out", out,
            check=True)
    served = server.stop()
    assert_counts_match_server(result(out), served, in_flight=2)


def test_echo_with_server_close_puts_time_wait_on_the_server(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--builtin-server", "--protocol", "echo", "--payload-size", 100, "--no-keepalive",
                   "--close", "server", "--connections", 4, "--duration", "1s", "--out", out, check=True)
    res = result(out)
    assert res["summary"]["error_total"] == 0, res["summary"]["errors"]
    assert res["summary"]["requests"] > 0
    assert "served" not in proc.stderr


def test_reset_close_leaves_no_time_wait(tmp_path):
    out = tmp_path / "run"
    run_cli("run", "--builtin-server", "--no-keepalive", "--close", "reset", "--connections", 4,
            "--duration", "1s", "--out", out, check=True)
    res = result(out)
    assert res["summary"]["requests"] > 100
    tw = res["summary"]["states"]["host"]["TIME_WAIT"]["peak"]
    # RST instead of FIN: neither side enters TIME_WAIT for these connections
    assert tw == 0


def test_open_model_with_a_stalling_server_reports_corrected_latency(tmp_path, server_factory):
    server = server_factory(protocol="http", stall_at=1.5, stall_for=0.5)
    out = tmp_path / "run"
    run_cli("run", "--target", f"127.0.0.1:{server.port}", "--model", "open", "--rate", 200,
            "--connections", 4, "--duration", "3s", "--out", out, check=True)
    server.stop()
    s = result(out)["summary"]
    corrected, uncorrected = s["latency_us"]["corrected"], s["latency_us"]["total"]
    assert s["late_starts"] > 0 and s["max_lag_us"] > 100_000
    assert corrected["p99"] > uncorrected["p99"]
    assert corrected["max"] >= 400_000  # requests queued through the 0.5 s stall


@pytest.mark.parametrize("args,needle", [
    (["run", "--target", "127.0.0.1:80", "--duration", "10 sekunds"], "--duration: '10 sekunds' is not a duration"),
    (["run", "--target", "127.0.0.1:80", "--connections", "0"], "--connections = 0 is not allowed"),
    (["run", "--target", "ftp://127.0.0.1/"], "scheme 'ftp'; allowed: http://, https://"),
    (["run", "--target", "127.0.0.1:80", "-H", "X-Bad"], "is not a header"),
    (["run", "--target", "127.0.0.1:80", "--expect-status", "700"], "not a status code"),
    (["run", "--target", "127.0.0.1:80", "--body-file", "/nonexistent/b.json"], "cannot read"),
    (["run", "--target", "nonsense"], "expected HOST:PORT"),
    (["run"], "no target"),
    (["run", "nope.toml"], "nope.toml: no such scenario file"),
    (["compare", "scenarios/keepalive_vs_churn.toml", "--variants", "nope"], "no variant 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    proc = run_cli(*args, "--out", tmp_path / "x")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("variant,needle", [
    ('client_sysctls = { tcp_tw_reuse = 1 }', "sysctl profiles run only in the lab"),
    ('connection = { keepalive = "maybe" }', "connection.keepalive: expected true or false"),
])
def test_compare_refuses_bad_variants_before_writing_anything(tmp_path, variant, needle):
    scenario = tmp_path / "s.toml"
    scenario.write_text('[target]\nhost = "127.0.0.1"\nport = 0\n[server]\nbuiltin = true\n'
                        f'[variants.a]\n[variants.b]\n{variant}\n')
    proc = run_cli("compare", scenario, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
