"""`docker compose up --scale loader=3`, emulated without Docker (root only).

What Docker would build for docker-compose.yml, built here with iproute2:
one network namespace per container, each joined by a veth to a bridge in a
namespace of its own (Docker's bridge is on the host; here nothing touches
the host), the target at its fixed address, the loaders at addresses from
the network's ip_range (handed out in an order unrelated to their replica
numbers), each loader's `sysctls:` written in its own namespace, and in each
loader namespace a stand-in for Docker's embedded DNS server on
127.0.0.11:53 that knows every container's name (tests/fake_docker_dns.py).
Then the services' commands run as written in docker-compose.yml, with
LOADERS=3 and START_AT, and the run folders are merged the way
docs/docker.md says.

Witnesses: the target's own count of the connections it accepted, and `ss`
run in each loader's namespace (each loader has a port range of its own).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tcpstress.lab.netns import remove_namespace
from tests.integration.test_compose import (
    command_of,
    dynamic_range,
    load_compose,
    only_network,
    service_address,
    service_environment,
    sysctls_of,
)

ROOT = Path(__file__).resolve().parents[2]
LOADERS = 3
RUN_SECONDS = 5
PROJECT = "tcpstress"


class ComposeNetwork:
    """Namespaces on one bridge, named like Docker's containers; removed with everything in them."""

    def __init__(self, prefix: str, subnet_prefixlen: int):
        self.prefix = prefix
        self.prefixlen = subnet_prefixlen
        self.bridge_ns = f"{prefix}net"
        self.namespaces: list[str] = []

    def _ip(self, *argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)

    def __enter__(self) -> ComposeNetwork:
        self._add_namespace(self.bridge_ns)
        self._ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        self.namespaces.append(name)
        self._ip("netns", "add", name)
        self._ip("-n", name, "link", "set", "lo", "up")

    def container(self, short: str, address: str) -> str:
        name = f"{self.prefix}{short}"
        self._add_namespace(name)
        port = f"v-{short}"[:15]
        # Born inside the container's namespace, its peer inside the bridge's.
        self._ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        self._ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        self._ip("-n", name, "addr", "add", f"{address}/{self.prefixlen}", "dev", "eth0")
        self._ip("-n", name, "link", "set", "eth0", "up")
        return name

    def __exit__(self, *exc) -> None:
        for name in reversed(self.namespaces):
            remove_namespace(name)


def _in(ns: str, argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)


def _tcpstress(argv: list[str]) -> list[str]:
    """A service's command with this checkout's tcpstress (the image's is the same code)."""
    assert argv[0] == "tcpstress"
    return [sys.executable, "-m", "tcpstress", *argv[1:]]


def _write_sysctls(ns: str, sysctls: dict[str, str]) -> None:
    for name, value in sysctls.items():
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{name}={value}"],
                       check=True, capture_output=True, timeout=30)


def _start_at() -> str:
    # Whole seconds, a few ahead: every loader's processes must be up before it.
    return datetime.fromtimestamp(math.ceil(time.time()) + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def app_dir(tmp_path):
    """The image's /app: the scenarios, and reports/ (in compose, the host's ./reports)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "scenarios").symlink_to(ROOT / "scenarios")
    return app


def _dns(ns: str, names: dict[str, str]) -> subprocess.Popen:
    """Docker's DNS server in a container's namespace, knowing `names` (address -> container name)."""
    proc = _in(ns, [sys.executable, "-m", "tests.fake_docker_dns", "127.0.0.11", "53",
                    *(f"{a}={n}" for a, n in names.items())],
               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening 127.0.0.11:53"):
        proc.kill()
        raise AssertionError(f"the fake DNS server did not start: {line!r} {proc.communicate()[1]}")
    return proc


def test_scaled_loaders_split_the_load_and_merge_into_one_run(run_id, lab_prefix, app_dir, in_netns):
    start_at = _start_at()
    env = {"LOADERS": str(LOADERS), "START_AT": start_at, "DURATION": f"{RUN_SECONDS}s"}
    compose = load_compose(env)
    target, loader = compose["services"]["target"], compose["services"]["loader"]
    _, subnet = only_network(compose)
    pool = list(dynamic_range(compose).hosts())
    # Docker's order of addresses says nothing about replica numbers.
    addresses = {f"{PROJECT}-loader-{n}": str(pool[i]) for n, i in ((1, 7), (2, 0), (3, 3))}
    loader_env = {**os.environ, **service_environment(loader)}
    assert loader_env["TCPSTRESS_SHARDS"] == str(LOADERS)
    served_re = re.compile(r"served connections=(\d+)")

    with ComposeNetwork(lab_prefix, subnet.prefixlen) as net:
        target_ns = net.container("target", service_address(compose, "target"))
        _write_sysctls(target_ns, sysctls_of(target))
        loader_ns = {name: net.container(f"loader{name[-1]}", address) for name, address in addresses.items()}
        helpers = []
        for ns in loader_ns.values():
            _write_sysctls(ns, sysctls_of(loader))
            helpers.append(_dns(ns, {a: n for n, a in addresses.items()}))
        server = _in(target_ns, _tcpstress(command_of(target)), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout.readline().startswith("listening")
            runs = {name: _in(ns, _tcpstress(command_of(loader)), cwd=app_dir, env=loader_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                    for name, ns in loader_ns.items()}
            outputs = {name: run.communicate(timeout=120) for name, run in runs.items()}
            for name, run in runs.items():
                assert run.returncode == 0, f"{name} failed ({run.returncode}):\n{outputs[name]}"
            # TIME_WAIT lasts 60 s: right after the run every one is still there.
            time_wait = {name: len(in_netns(ns, "ss", "-Htan", "state", "time-wait").splitlines())
                         for name, ns in loader_ns.items()}
        finally:
            server.send_signal(signal.SIGTERM)
            server_out, _ = server.communicate(timeout=30)
            for helper in helpers:
                helper.kill()
                helper.wait()

    # Each loader found its replica number in its name and wrote its shard
    # beside the others, in the folder named by START_AT.
    stamp = datetime.fromisoformat(start_at.replace("Z", "+00:00")).strftime("%Y%m%dT%H%M%SZ")
    run_folder = app_dir / "reports" / f"{stamp}-compose_time_wait"
    shards = {}
    for n in range(1, LOADERS + 1):
        data = json.loads((run_folder / f"shard-{n - 1}" / "result.json").read_text())
        assert data["shard"] == {"index": n - 1, "count": LOADERS, "name": f"{PROJECT}-loader-{n}"}
        assert data["start_at"] == start_at
        name = f"{PROJECT}-loader-{n}"
        shards[name] = data["summary"]
        assert f"this is shard {n - 1}/{LOADERS} of it ({name})" in outputs[name][0]  # in the compose log

    # The merge as docs/docker.md gives it: the run folder, merged/ inside it.
    merge = subprocess.run([sys.executable, "-m", "tcpstress", "merge", str(run_folder)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    merged_data = json.loads((run_folder / "merged" / "result.json").read_text())
    merged = merged_data["summary"]

    served = int(served_re.search(server_out).group(1))
    low, high = map(int, sysctls_of(loader)["net.ipv4.ip_local_port_range"].split())
    ports = high - low + 1
    # Every loader ran its third of the rate and ran out of its own ports.
    for name, summary in shards.items():
        assert 0.95 * ports <= time_wait[name] <= ports, (name, time_wait)
        assert 0.95 * ports <= summary["connections"] <= ports, (name, summary["connections"])
        assert summary["errors"].get("EADDRNOTAVAIL", 0) > 0, name
    # The merged run is the three together, and agrees with the target's count.
    assert merged["connections"] == sum(s["connections"] for s in shards.values())
    served -= LOADERS  # each loader's --wait-for-target probe, one connection closed with RST
    assert merged["connections"] <= served <= merged["connections"] + LOADERS
    assert merged["errors"]["EADDRNOTAVAIL"] == sum(s["errors"]["EADDRNOTAVAIL"] for s in shards.values())
    assert set(merged["states"]) == {f"{PROJECT}-loader-{n}:host" for n in range(1, LOADERS + 1)}

    # Each loader read its own namespace's knobs back, and the finding holds
    # each loader's TIME_WAIT against its own range.
    for n in range(1, LOADERS + 1):
        own = merged_data["sysctls"][f"{PROJECT}-loader-{n}:host"]
        assert own["net.ipv4.ip_local_port_range"].split() == [str(low), str(high)]
    (finding,) = [line for line in (run_folder / "merged" / "report.md").read_text().splitlines()
                  if "Ephemeral ports exhausted" in line]
    assert "the clients of all 3 shards ran out of ephemeral ports" in finding
    assert all(f"{PROJECT}-loader-{n}" in finding for n in range(1, LOADERS + 1))
    assert f"its whole ip_local_port_range ({low}–{high}, {ports:,} ports)" in finding


def test_a_loader_that_cannot_place_itself_stops_before_sending(run_id, lab_prefix, app_dir):
    """Scaled without LOADERS, or LOADERS without START_AT: one line, exit 2, no folder, no load."""
    compose = load_compose({})
    _, subnet = only_network(compose)
    pool = list(dynamic_range(compose).hosts())
    names = {str(pool[0]): f"{PROJECT}-loader-2"}
    with ComposeNetwork(lab_prefix, subnet.prefixlen) as net:
        ns = net.container("loader2", str(pool[0]))
        dns = _dns(ns, names)
        try:
            cases = [
                ({}, "replica 2, but TCPSTRESS_SHARDS=1: set LOADERS to the --scale count"),
                ({"LOADERS": "3"}, "TCPSTRESS_SHARDS=3: needs --start-at (START_AT in docker-compose.yml)"),
            ]
            for env, message in cases:
                service = load_compose(env)["services"]["loader"]
                run = subprocess.run(["ip", "netns", "exec", ns, *_tcpstress(command_of(service))], cwd=app_dir,
                                     env={**os.environ, **service_environment(service)},
                                     capture_output=True, text=True, timeout=60, check=False)
                assert run.returncode == 2, (env, run.stdout, run.stderr)
                (line,) = run.stderr.strip().splitlines()
                assert message in line, line
        finally:
            dns.kill()
            dns.wait()
    assert not (app_dir / "reports").exists()
