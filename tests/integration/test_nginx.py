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
