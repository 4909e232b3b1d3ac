"""`tcpstress compare` in the lab, end to end, as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tcpstress.lab import list_namespaces
from tests.conftest import ROOT, run_cli

SCENARIO = ROOT / "scenarios" / "time_wait_exhaustion.toml"


def namespaces_of(comparison: Path) -> list[str]:
    run_id = json.loads((comparison / "comparison.json").read_text())["run_id"]
    return [n for n in list_namespaces("tcpstress-") if n.startswith(f"tcpstress-{run_id}-")]


def read_ss(ns: str, state: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htan", "state", state], capture_output=True, text=True)
    return len([line for line in out.stdout.splitlines() if line.strip()])


def test_time_wait_exhaustion_baseline_fails_and_keepalive_does_not(tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli("compare", SCENARIO, "--variants", "baseline,keepalive", "--duration", "4s", "--out", out,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    base = json.loads((out / "baseline" / "result.json").read_text())
    keep = json.loads((out / "keepalive" / "result.json").read_text())
    # The kernel, not tcpstress, decides: a port range of 1,000 and a 60 s TIME_WAIT.
    assert base["sysctls"]["client"]["net.ipv4.ip_local_port_range"].split() == ["40000", "40999"]
    assert base["summary"]["errors"].get("EADDRNOTAVAIL", 0) > 0
    tw = base["summary"]["states"]["client"]["TIME_WAIT"]["peak"]
    assert 900 <= tw <= 1000 + 50  # about the whole range (the sampler may catch a few extra in flight)
    assert keep["summary"]["errors"].get("EADDRNOTAVAIL", 0) == 0
    assert keep["summary"]["requests"] > 0
    assert (out / "report.html").is_file()
    assert "EADDRNOTAVAIL" in proc.stdout
    assert namespaces_of(out) == []


def host_veths() -> list[str]:
    return subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout.split("\n")


def test_sigterm_during_a_lab_comparison_cleans_up_and_keeps_results(tmp_path):
    out = tmp_path / "cmp"
    veths_before = host_veths()
    proc = subprocess.Popen([sys.executable, "-m", "tcpstress", "compare", str(SCENARIO), "--variants",
                             "baseline,tw_reuse", "--duration", "30s", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        result = out / "baseline" / "result.json"
        if result.is_file() and json.loads(result.read_text() or "{}").get("intervals"):
            seen = namespaces_of(out)
            if len(seen) == 2:
                break
        time.sleep(0.2)
    assert len(seen) == 2, "the lab did not come up"
    client_ns = [n for n in seen if n.endswith("-c")][0]
    assert read_ss(client_ns, "time-wait") > 0  # independent witness: the load really ran in the lab
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    data = json.loads((out / "baseline" / "result.json").read_text())
    assert data["partial"] and "SIGTERM" in data["partial_reason"]
    assert not (out / "tw_reuse").exists()  # the comparison stopped with the interrupted variant
    assert (out / "report.html").is_file()
    assert namespaces_of(out) == []
    assert host_veths() == veths_before  # the lab's veth pair lived and died inside its namespaces
