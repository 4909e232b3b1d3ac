"""docker-compose.yml's services, run as written but without Docker, in a lab (root only).

A compose container is a network namespace with its `sysctls:` written
inside it; a Lab gives the same thing: the target's sysctls go into the
server namespace, the loader's into the client namespace, and each service's
command runs in its namespace with the compose address swapped for the lab's
(the loader's run shortened to 4 s and written into tmp_path).

Witnesses: `sysctl -n` and `ss` run inside the namespaces with iproute2/procps,
and the target's own count of the connections it accepted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from tcpstress.lab import Lab, apply_profile
from tests.integration.test_compose import (
    command_of,
    load_compose,
    service_address,
    service_environment,
    sysctls_of,
)

ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 4


def _lab_argv(argv: list[str], compose_address: str, lab_address: str) -> list[str]:
    """The service's command for the lab: this checkout's tcpstress, the lab's address."""
    assert argv[0] == "tcpstress"
    return [sys.executable, "-m", "tcpstress", *(arg.replace(compose_address, lab_address) for arg in argv[1:])]


def _healthcheck_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", "the healthcheck must run without a shell (the slim image's sh is enough, but be plain)"
    argv = list(test[1:])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def _port_range_size(sysctls: dict[str, str]) -> int:
    low, high = map(int, sysctls["net.ipv4.ip_local_port_range"].split())
    return high - low + 1


def _served_connections(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGTERM)
    out, err = server.communicate(timeout=30)
    match = re.search(r"served connections=(\d+)", out)
    assert match, f"the target did not report its counts:\n{out}\n{err}"
    return int(match.group(1))


def _run_compose_services(run_id: str, env: dict[str, str], out: Path, in_netns) -> dict:
    """Both services in a fresh lab; returns what the witnesses and the run saw."""
    compose = load_compose(env)
    target, loader = compose["services"]["target"], compose["services"]["loader"]
    compose_address = service_address(compose, "target")
    with Lab(run_id) as lab:
        apply_profile(lab, SimpleNamespace(client=sysctls_of(loader), server=sysctls_of(target)))
        kernel = {
            side: {name: " ".join(in_netns(lab.namespace(side), "sysctl", "-n", name).split()) for name in sysctls}
            for side, sysctls in (("client", sysctls_of(loader)), ("server", sysctls_of(target)))
        }
        server = lab.popen("server", _lab_argv(command_of(target), compose_address, lab.server_addr),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        first_line = server.stdout.readline()
        assert first_line.startswith("listening"), f"the target did not start: {first_line!r}"
        health = lab.popen("server", _healthcheck_argv(target), stdin=subprocess.DEVNULL)
        assert health.wait(timeout=30) == 0, "the compose healthcheck fails against a listening target"

        loader_argv = _lab_argv(command_of(loader), compose_address, lab.server_addr)
        loader_argv += ["--duration", f"{RUN_SECONDS}s", "--out", str(out), "--quiet"]
        run = lab.popen("client", loader_argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, text=True, env={**os.environ, **service_environment(loader)})
        stdout, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, f"the loader's command failed ({run.returncode}):\n{stdout}\n{stderr}"
        # TIME_WAIT lasts 60 s: right after a 4 s run every one is still there.
        time_wait = in_netns(lab.client_ns, "ss", "-Htan", "state", "time-wait", "dport", "=", ":8080")
        return {
            "kernel": kernel,
            "time_wait": len(time_wait.splitlines()),
            # less the healthcheck's connection and the loader's --wait-for-target probe
            "served": _served_connections(server) - 2,
            "stdout": stdout,
            "result": json.loads((out / "result.json").read_text()),
            "ports": _port_range_size(sysctls_of(loader)),
        }


def _time_wait_peak(result: dict) -> int:
    (states,) = result["summary"]["states"].values()  # one namespace: the loader's
    return states["TIME_WAIT"]["peak"]


def test_default_profile_exhausts_the_loader_s_ports(run_id, lab_prefix, tmp_path, in_netns):
    seen = _run_compose_services(run_id, {}, tmp_path / "run", in_netns)
    ports, summary = seen["ports"], seen["result"]["summary"]
    # The compose sysctls were taken by the kernel in the right namespaces.
    assert seen["kernel"]["client"]["net.ipv4.ip_local_port_range"] == "40000 40999"
    assert seen["kernel"]["client"]["net.ipv4.tcp_tw_reuse"] in {"0", "2"}
    assert seen["kernel"]["server"]["net.core.somaxconn"] == "4096"
    # Each port carries one connection, then sits in TIME_WAIT for the rest of the run.
    assert 0.95 * ports <= seen["served"] <= ports
    assert 0.95 * ports <= seen["time_wait"] <= ports
    assert summary["errors"].get("EADDRNOTAVAIL", 0) > ports  # about 1,000/s once the ports are gone
    assert 0.95 * ports <= _time_wait_peak(seen["result"]) <= ports
    assert "EADDRNOTAVAIL" in seen["stdout"]  # the summary says it, not only result.json


def test_tw_reuse_profile_gives_the_ports_back(run_id, lab_prefix, tmp_path, in_netns):
    seen = _run_compose_services(run_id, {"TW_REUSE": "1"}, tmp_path / "run", in_netns)
    ports, summary = seen["ports"], seen["result"]["summary"]
    assert seen["kernel"]["client"]["net.ipv4.tcp_tw_reuse"] == "1"
    # Ports older than 1 s are reused: far more connections than ports get through.
    assert seen["served"] > 2 * ports
    assert summary["errors"].get("EADDRNOTAVAIL", 0) < ports
    assert _time_wait_peak(seen["result"]) <= ports
