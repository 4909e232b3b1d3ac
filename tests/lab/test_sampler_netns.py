"""The sampler inside network namespaces the test creates (root only).

Each test makes tcpstress-test-<random>, brings its loopback up, builds
socket_zoo.py's sockets in it with `ip netns exec`, and deletes it in a
finally. A fresh namespace is quiet and its counters start at zero, so here
counts and counter totals are matched exactly, against `ss` and `nstat` run
inside the namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcpstress.sampler import procfs
from tcpstress.sampler.netlink import count_states
from tcpstress.sampler.nsenter import netns_path, run_in_netns
from tcpstress.sampler.sampler import NamespaceRef, Sampler

pytestmark = pytest.mark.lab

ZOO = Path(__file__).resolve().parent.parent / "fixtures" / "procfs" / "socket_zoo.py"
PORT = 7001
SS_STATE_FILTERS = {
    "ESTABLISHED": "established", "SYN_SENT": "syn-sent", "SYN_RECV": "syn-recv",
    "FIN_WAIT1": "fin-wait-1", "FIN_WAIT2": "fin-wait-2", "TIME_WAIT": "time-wait",
    "CLOSE": "closed", "CLOSE_WAIT": "close-wait", "LAST_ACK": "last-ack",
    "LISTEN": "listening", "CLOSING": "closing",
}


@pytest.fixture
def namespace():
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None or shutil.which("ss") is None:
        pytest.skip("needs iproute2 (ip, ss)")
    name = f"tcpstress-test-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class Zoo:
    """socket_zoo.py running inside a namespace; closing stdin ends it."""

    def __init__(self, namespace: str, **sizes: int) -> None:
        args = ["ip", "netns", "exec", namespace, sys.executable, str(ZOO), "--port", str(PORT),
                "--family", "both", "--hold", "90"]
        for name, value in sizes.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline()
        if not ready.startswith("ready "):
            self.close()
            raise RuntimeError(f"socket_zoo did not start: {ready!r}")
        made = json.loads(ready[len("ready "):])
        self.expected = {state: made.get(state, 0) for state in procfs.TCP_STATES}
        self.connects = 2 * sum(sizes.values())  # one connect() per socket pair, two families

    def close(self) -> None:
        if not self.process.stdin.closed:
            self.process.stdin.close()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def make_zoo():
    zoos: list[Zoo] = []

    def make(namespace: str, **sizes: int) -> Zoo:
        zoos.append(Zoo(namespace, **sizes))
        return zoos[-1]

    yield make
    for zoo in zoos:
        zoo.close()


def ss_in(namespace: str) -> dict[str, int]:
    counts = {}
    for state, ss_name in SS_STATE_FILTERS.items():
        out = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Htan", "state", ss_name],
                             check=True, capture_output=True, text=True).stdout
        counts[state] = len(out.splitlines())
    return counts


def nstat_in(namespace: str) -> dict[str, int]:
    # -a absolute values, -s keep no history, -z zeros too
    out = subprocess.run(["ip", "netns", "exec", namespace, "nstat", "-asz"],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:] if line.strip()}


def wait_for(predicate, what: str, limit: float = 20.0):
    """Poll until predicate() is truthy; the limit only catches a hang."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def row_read_after(sampler: Sampler, label: str, since: float) -> dict:
    """The first row whose reading began at or after `since` (sampler time)."""
    return wait_for(lambda: (row := sampler.latest()[label]) and row["t"] >= since and row, "a new sample")


def stable_states(sampler: Sampler, label: str, namespace: str) -> tuple[dict, dict]:
    """A sample read between two equal `ss` readings, and that reading."""
    for _ in range(20):
        since = time.monotonic() - sampler.t0
        before = ss_in(namespace)
        row = row_read_after(sampler, label, since)
        if ss_in(namespace) == before:
            return {state: row[state] for state in procfs.TCP_STATES}, before
    raise AssertionError("the namespace never held still between two ss readings")


@pytest.mark.parametrize("method", ["netlink", "procfs"])
def test_named_namespace_states_and_counters(namespace, make_zoo, method):
    sampler = Sampler([NamespaceRef("lab", netns=namespace), NamespaceRef("host")],
                      interval=0.05, port=PORT, method=method)
    sampler.start()
    try:
        assert all(sampler.latest()["lab"][s] == 0 for s in procfs.TCP_STATES)
        zoo = make_zoo(namespace, established=4, time_wait=6, close_wait=3, syn_recv=2)
        states, witness = stable_states(sampler, "lab", namespace)
        assert states == witness == zoo.expected
        assert all(sampler.latest()["host"][s] == 0 for s in procfs.TCP_STATES)

        # The kept socket / fds keep following the namespace as it changes.
        zoo.close()
        wait_for(lambda: ss_in(namespace)["LISTEN"] == 0, "the zoo's listener to go")
        states, witness = stable_states(sampler, "lab", namespace)
        assert states == witness and witness["TIME_WAIT"] > 0
    finally:
        summary = sampler.stop()
    assert summary["sampler"]["lab"]["method"] == method
    assert summary["sampler"]["lab"]["errors"] == 0
    # teardown moves sockets between tables while they are read: peaks may overshoot
    assert summary["states"]["lab"]["ESTABLISHED"]["peak"] >= zoo.expected["ESTABLISHED"]
    assert summary["states"]["lab"]["TIME_WAIT"]["final"] > 0

    # A fresh namespace counts from zero and the sampler started before any
    # connection, so its totals are the namespace's absolute counters.
    totals, witness = summary["counters"]["lab"], nstat_in(namespace)
    assert totals["TcpActiveOpens"] == zoo.connects == witness["TcpActiveOpens"]
    for name in ("TcpPassiveOpens", "TcpExtTW", "TcpEstabResets", "TcpOutRsts", "TcpExtListenOverflows"):
        assert totals[name] == witness.get(name, 0), name
    assert totals["TcpExtTW"] > 0


def test_process_namespace(namespace, make_zoo):
    zoo = make_zoo(namespace, established=3, time_wait=2, close_wait=1, syn_recv=1)
    sampler = Sampler([NamespaceRef("server", pid=zoo.process.pid)], interval=0.05)
    sampler.start()
    try:
        states, witness = stable_states(sampler, "server", namespace)
    finally:
        summary = sampler.stop()
    assert states == witness == zoo.expected
    assert summary["sampler"]["server"]["method"] == "netlink"


def test_unfiltered_netlink_count_inside_namespace(namespace, make_zoo):
    zoo = make_zoo(namespace, established=2, time_wait=3, close_wait=2, syn_recv=1)
    path = netns_path(namespace)
    for _ in range(20):
        before = ss_in(namespace)
        counts = run_in_netns(path, count_states)
        if ss_in(namespace) == before:
            break
    assert counts == before == zoo.expected


def test_kept_proc_fd_rereads_its_namespace(namespace, make_zoo):
    own = os.readlink("/proc/thread-self/ns/net")
    fd = run_in_netns(netns_path(namespace), lambda: os.open("/proc/thread-self/net/sockstat", os.O_RDONLY))
    try:
        assert os.readlink("/proc/thread-self/ns/net") == own
        empty = procfs.parse_sockstat(os.pread(fd, 65536, 0).decode())
        assert empty["inuse"] == 0 and empty["tw"] == 0
        make_zoo(namespace, established=2, time_wait=3, close_wait=1)
        again = procfs.parse_sockstat(os.pread(fd, 65536, 0).decode())
        witness = subprocess.run(["ip", "netns", "exec", namespace, "cat", "/proc/net/sockstat"],
                                 check=True, capture_output=True, text=True).stdout
        inside = procfs.parse_sockstat(witness)
        # inuse and tw are per namespace; orphan, alloc and mem are host-wide and move
        assert (again["inuse"], again["tw"]) == (inside["inuse"], inside["tw"])
        # per family: 3 TIME_WAIT + 1 orphaned FIN_WAIT2, both timewait minisockets
        assert again["tw"] == 2 * (3 + 1)
    finally:
        os.close(fd)


def test_unknown_namespace_is_a_clear_error():
    with pytest.raises(ValueError, match="netns 'tcpstress-test-missing' not found"):
        Sampler([NamespaceRef("x", netns="tcpstress-test-missing")]).start()
