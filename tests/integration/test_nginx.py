"""tcpstress against real nginx: its access log is the independent witness."""

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.nginx
@pytest.mark.parametrize("flags,connections", [(["--keepalive"], 10), (["--no-keepalive"], 10),
                                               (["--no-keepalive", "--close", "server"], 5)])
def test_completed_requests_match_nginx_access_log(tmp_path, nginx, flags, connections):
    out = tmp_path / "run"
    run_cli("run", "--target", f"127.0.0.1:{nginx.port}", "--connections", connections, "--duration", "2s",
            *flags, "--out", out, check=True)
    nginx.stop()
    logged = nginx.log_lines() - nginx.baseline
    s = json.loads((out / "result.json").read_text())["summary"]
    assert s["error_total"] == 0, s["errors"]
    assert s["requests"] > 100
    # nginx logs a request once its response is sent; we count it once the
    # whole response arrived before the end. Only requests in flight at the
    # stop (at most one per connection) may be logged but not counted.
    assert s["requests"] <= logged <= s["requests"] + connections


@pytest.mark.nginx
@pytest.mark.parametrize("flags,connections", [(["--keepalive"], 4), (["--no-keepalive", "--close", "server"], 4)])
def test_head_requests_are_answered_without_a_body(tmp_path, flags, connections):
    """nginx answers HEAD with the GET's Content-Length and no body: a parser that waited for
    that body would time every request out. Every logged HEAD is counted (± in flight)."""
    import shutil

    from tests.conftest import Nginx

    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    server = Nginx(tmp_path / "nginx", log_format="$request_method $status $body_bytes_sent")
    try:
        out = tmp_path / "run"
        run_cli("run", "--target", f"127.0.0.1:{server.port}", "--method", "HEAD", "--connections", connections,
                "--duration", "1s", "--request-timeout", "2s", *flags, "--out", out, check=True)
    finally:
        server.stop()
    logged = [line.split() for line in server.log_entries()]
    heads = [entry for entry in logged if entry[0] == "HEAD"]
    s = json.loads((out / "result.json").read_text())["summary"]
    assert s["error_total"] == 0, s["errors"]
    assert s["requests"] > 50
    assert all(status == "200" and sent == "0" for _, status, sent in heads)
    assert s["requests"] <= len(heads) <= s["requests"] + connections
