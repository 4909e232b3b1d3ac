"""A real server, the way a release benchmark meets it: TLS, headers, bodies, status codes.

nginx's access log is the witness for every claim: what it logged is what
tcpstress must have counted (give or take the requests in flight at the end).
Traffic goes to nginx on loopback only.
"""

import collections
import json

import pytest

from tcpstress.load.protocols import build_http_request
from tcpstress.load.tls import make_self_signed
from tests.conftest import nginx_instances, run_cli

pytestmark = pytest.mark.nginx

LOG = "$status $ssl_session_reused $request_length $content_length $http_x_test $request_method $uri"


@pytest.fixture
def make_nginx(tmp_path):
    yield from nginx_instances(tmp_path, LOG)


def summary(out):
    return json.loads((out / "result.json").read_text())["summary"]


def fields(nginx):
    return [line.split(" ") for line in nginx.log_entries()]


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize("keepalive", [True, False])
def test_tls_counts_and_session_resumption_match_nginx(tmp_path, make_nginx, keepalive, resume):
    cert, key = make_self_signed(tmp_path / "tls")
    nginx = make_nginx(tls=(cert, key))
    out = tmp_path / "run"
    connections = 4
    run_cli("run", f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert, "--connections", connections,
            "--workers", 1, "--duration", "2s", "--keepalive" if keepalive else "--no-keepalive",
            "--tls-resume" if resume else "--no-tls-resume", "--out", out, check=True)
    nginx.stop()
    s = summary(out)
    logged = fields(nginx)
    assert s["error_total"] == 0, s["errors"]
    assert s["requests"] > 20
    assert s["requests"] <= len(logged) <= s["requests"] + connections
    assert s["status"] == {"200": s["requests"]}
    tls = s["tls"]
    # Handshakes still under way when the run ended are connections without one.
    assert s["connections"] - connections <= tls["handshakes"] <= s["connections"]
    assert s["latency_us"]["tls"]["count"] == tls["handshakes"]
    # nginx's $ssl_session_reused is per request: "r" on a resumed connection's requests.
    reused = collections.Counter(f[1] for f in logged)
    if resume and not keepalive:
        # Only connections opened before the worker held a session are full handshakes.
        assert reused["."] <= connections and reused["r"] >= len(logged) - connections
        assert tls["resumed"] >= tls["handshakes"] - connections
    if not resume:
        assert reused["r"] == 0 and tls["resumed"] == 0


def test_status_codes_per_code_match_nginx_and_errors_are_apart(tmp_path, make_nginx):
    nginx = make_nginx(locations='location /missing { return 404; } location /busy { return 503 "busy\\n"; }')
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'''
[target]
host = "127.0.0.1"
port = {nginx.port}
[load]
connections = 4
workers = 1
duration = "2s"
[[request]]
name = "home"
path = "/"
weight = 3
[[request]]
name = "missing"
path = "/missing"
[[request]]
name = "busy"
path = "/busy"
''')
    out = tmp_path / "run"
    run_cli("run", scenario, "--out", out)
    nginx.stop()
    s = summary(out)
    logged = collections.Counter(f[0] for f in fields(nginx))
    in_flight = s["in_flight_at_end"]
    for code in ("200", "404", "503"):
        assert 0 <= logged[code] - s["status"].get(code, 0) <= in_flight, (code, logged, s["status"])
    assert s["errors"]["HTTP 404"] == s["status"]["404"] > 0
    assert s["errors"]["HTTP 503"] == s["status"]["503"] > 0
    # Successes only in the latency histogram; failed responses in their own.
    assert s["latency_us"]["total"]["count"] == s["requests"] == s["status"]["200"]
    assert s["latency_us"]["error"]["count"] == s["status"]["404"] + s["status"]["503"]
    by_name = s["requests_by_name"]
    assert by_name["home"]["requests"] == s["status"]["200"]
    assert by_name["missing"]["errors"] == s["status"]["404"]
    # Weight 3:1:1 over a shuffled pick list.
    assert 2.0 < by_name["home"]["requests"] / max(1, by_name["busy"]["errors"]) < 4.5


def test_every_response_an_error_is_not_a_success(tmp_path, make_nginx):
    """nginx answers 200; a run that expects 204 got no success at all, and must say so."""
    nginx = make_nginx()
    out = tmp_path / "run"
    proc = run_cli("run", "--target", f"127.0.0.1:{nginx.port}", "--expect-status", "204", "--connections", 2,
                   "--workers", 1, "--duration", "1s", "--out", out)
    nginx.stop()
    s = summary(out)
    assert s["requests"] == 0 and s["error_rate"] == 1.0
    assert s["errors"] == {"HTTP 200": s["status"]["200"]} and s["status"]["200"] > 10
    assert s["status"]["200"] <= nginx.log_lines() - nginx.baseline
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "No problems found" not in proc.stdout


def test_headers_method_and_body_reach_the_server_exactly(tmp_path, make_nginx):
    nginx = make_nginx()
    out = tmp_path / "run"
    body = '{"release": "1.2.3", "ok": true}'
    run_cli("run", f"http://127.0.0.1:{nginx.port}/api/items?x=1", "-H", "X-Test: tcpstress-witness",
            "-H", "Authorization: Bearer T0KEN", "--method", "PUT", "--body", body,
            "--content-type", "application/json", "--connections", 2, "--workers", 1, "--duration", "1s",
            "--out", out, check=True)
    nginx.stop()
    s = summary(out)
    logged = fields(nginx)
    assert s["requests"] > 10 and len(logged) >= s["requests"]
    expected = build_http_request("PUT", "/api/items?x=1", f"127.0.0.1:{nginx.port}", close=False,
                                  headers=("X-Test: tcpstress-witness", "Authorization: Bearer T0KEN"),
                                  body=body.encode(), content_type="application/json")
    for _status, _, request_length, content_length, x_test, method, uri in logged:
        assert (method, uri, x_test) == ("PUT", "/api/items", "tcpstress-witness")
        assert int(content_length) == len(body)
        # nginx counts the head it parsed; a body it discards (return 200) is not in $request_length.
        assert int(request_length) == len(expected) - len(body)


def test_any_host_by_name_and_ipv6(tmp_path, make_nginx):
    """A name (localhost) and an IPv6 literal: resolved once, recorded, loaded like any target."""
    nginx6 = make_nginx(listen="::1")
    out = tmp_path / "v6"
    run_cli("run", f"http://[::1]:{nginx6.port}/", "--connections", 2, "--workers", 1, "--duration", "1s",
            "--out", out, check=True)
    nginx6.stop()
    data = json.loads((out / "result.json").read_text())
    assert data["target"]["family"] == "IPv6" and data["target"]["scope"] == "loopback"
    assert data["summary"]["requests"] <= nginx6.log_lines() - nginx6.baseline
    nginx = make_nginx()
    out = tmp_path / "name"
    proc = run_cli("run", f"http://localhost:{nginx.port}/", "--connections", 2, "--workers", 1,
                   "--duration", "1s", "--out", out)
    data = json.loads((out / "result.json").read_text())
    assert data["target"]["name"] == "localhost" and data["target"]["scope"] == "loopback"
    assert "127.0.0.1" in data["target"]["addresses"]
    if data["target"]["host"] == "127.0.0.1":
        assert data["summary"]["requests"] > 0, proc.stdout
