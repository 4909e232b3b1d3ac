"""A capacity the kernel sets: 1,000 client ports with tcp_tw_reuse = 1 in the lab.

A closed connection's port sits in TIME_WAIT and comes back for a new outgoing
connection once its TIME_WAIT is older than tcp_tw_reuse_delay (1 s), so churn
caps near 1,000 new connections a second; above that connect() fails with
EADDRNOTAVAIL. Run under the load lock (root):
    flock /tmp/tcpstress-load.lock pytest tests/lab/test_capacity_lab.py
"""

import json

from tests.conftest import run_cli

PORTS = 1000

SCENARIO = """
name = "port_capacity"
lab = true

[target]
protocol = "http"
host = "198.18.0.1"
port = 8080

[server]
builtin = true

[load]
model = "open"
rate = 500
connections = 200
workers = 1

[connection]
keepalive = false
close = "client"
connect_timeout = "1s"
request_timeout = "2s"

[variants.narrow_ports_tw_reuse]
profile = "narrow_ports_tw_reuse"
"""


def test_search_lands_near_the_port_range_rate_and_names_it(tmp_path):
    scenario = tmp_path / "ports.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "search"
    proc = run_cli("capacity", scenario, "--slo", "error_rate < 1%", "--step", "2s", "--max-steps", "10",
                   "--no-report", "--json", "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)["narrow_ports_tw_reuse"]
    assert answer["status"] == "found", answer
    assert 0.8 * PORTS <= answer["capacity"] <= 1.1 * PORTS, answer
    assert answer["limit"]["name"].startswith("EADDRNOTAVAIL")
    assert "net.ipv4.ip_local_port_range" in answer["limit"]["knobs"]
    steps = json.loads((out / "narrow_ports_tw_reuse" / "capacity.json").read_text())["steps"]
    failing = min((s for s in steps if not s["passed"]), key=lambda s: s["rate"])
    data = json.loads((next(out.glob(f"narrow_ports_tw_reuse/step-{failing['index']:02d}-*")) / "result.json")
                      .read_text())
    # The kernel's settings in the client namespace, read back, are the ones the arithmetic assumes.
    assert data["sysctls"]["client"]["net.ipv4.ip_local_port_range"] == "40000 40999"
    assert data["sysctls"]["client"]["net.ipv4.tcp_tw_reuse"] == "1"
    assert dict(failing["error_names"]).get("EADDRNOTAVAIL", 0) > 0
    # The built-in server (its own process) counted the connections that got through,
    # warm-up included: never more than the port range lets out, 1,000 a second plus the first 1,000.
    seconds = data["summary"]["duration_s"] + data["scenario"]["load"]["warmup"]
    served = data["summary"]["server"]["connections"]
    assert data["summary"]["requests"] <= served <= PORTS * (seconds + 1) + 50
    for s in steps:
        if s["passed"]:
            assert dict(s["error_names"]).get("EADDRNOTAVAIL", 0) <= 0.01 * (s["requests"] + s["errors"])
