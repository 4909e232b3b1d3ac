"""The sampler on live loopback sockets, checked against `ss`, /proc and nstat-free witnesses.

socket_zoo.py builds a known set of sockets on a test-chosen free port (both
families): LISTEN, ESTABLISHED pairs, TIME_WAIT from client-first closes,
CLOSE_WAIT from a server that never closes (and the orphaned FIN_WAIT2 on the
client side), SYN_RECV request sockets from a deferring listener. Other tests
and programs share the host namespace, so every count here uses the port
filter, and host-wide counters are only bounded, never matched exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcpstress.sampler import procfs
from tcpstress.sampler.netlink import StateCounter, count_states, port_filter_bytecode
from tcpstress.sampler.sampler import NamespaceRef, Sampler, run_sample_command

ZOO = Path(__file__).resolve().parent.parent / "fixtures" / "procfs" / "socket_zoo.py"
SS_STATE_FILTERS = {
    "ESTABLISHED": "established", "SYN_SENT": "syn-sent", "SYN_RECV": "syn-recv",
    "FIN_WAIT1": "fin-wait-1", "FIN_WAIT2": "fin-wait-2", "TIME_WAIT": "time-wait",
    "CLOSE": "closed", "CLOSE_WAIT": "close-wait", "LAST_ACK": "last-ack",
    "LISTEN": "listening", "CLOSING": "closing",
}
ZOO_SIZES = {"established": 5, "time_wait": 7, "close_wait": 3, "syn_recv": 2}


def ss_count(state: str, port: int) -> int:
    out = subprocess.run(
        ["ss", "-Htan", "state", SS_STATE_FILTERS[state], f"( sport = :{port} or dport = :{port} )"],
        check=True, capture_output=True, text=True,
    ).stdout
    return len(out.splitlines())


def ss_counts(port: int) -> dict[str, int]:
    return {state: ss_count(state, port) for state in procfs.TCP_STATES}


def free_port_on_both_families() -> int:
    """A port free on 127.0.0.1 and ::1, below the ephemeral range.

    Outside that range no other program's outgoing connection can take it as
    its local port and slip into the port-filtered counts.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        try:
            with socket.socket() as probe, socket.socket(socket.AF_INET6) as probe6:
                probe.bind(("127.0.0.1", port))
                probe6.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


def start_zoo(port: int) -> tuple[subprocess.Popen, dict[str, int]]:
    args = [sys.executable, str(ZOO), "--port", str(port), "--family", "both", "--hold", "90"]
    for name, value in ZOO_SIZES.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    zoo = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = zoo.stdout.readline()
    if not ready.startswith("ready "):
        zoo.kill()
        zoo.wait()
        zoo.stdin.close()
        zoo.stdout.close()
        raise RuntimeError(f"socket_zoo did not start: {ready!r}")
    return zoo, json.loads(ready[len("ready "):])


@pytest.fixture(scope="module")
def zoo():
    port = free_port_on_both_families()
    process, expected = start_zoo(port)
    try:
        full = {state: expected.get(state, 0) for state in procfs.TCP_STATES}
        yield port, process, full
    finally:
        process.stdin.close()
        process.wait(timeout=10)
        process.stdout.close()


def test_zoo_is_what_ss_sees(zoo):
    port, _, expected = zoo
    assert ss_counts(port) == expected


def test_netlink_counts_match_ss(zoo):
    port, _, expected = zoo
    counts = count_states(port)
    assert counts == ss_counts(port)
    assert counts == expected


def first_of_tries(read, expected, tries: int = 5):
    """read() until it gives `expected`, at most `tries` times; the last reading.

    /proc/net/tcp comes out in ~4 KiB reads, and the kernel finds its place
    again between them by position in a hash bucket: when other programs open
    or close sockets meanwhile, a line can repeat or go missing. A busy host
    does that now and then; a real miscount does it every time.
    """
    for _ in range(tries):
        got = read()
        if got == expected:
            break
    return got


def test_procfs_counts_match_ss(zoo):
    port, _, expected = zoo

    def read():
        table = procfs.parse_tcp_table(Path("/proc/net/tcp").read_text(), port)
        table += procfs.parse_tcp_table(Path("/proc/net/tcp6").read_text(), port)
        return {s: table.get(s, 0) for s in procfs.TCP_STATES}

    assert first_of_tries(read, expected) == expected


def test_counter_reuses_its_socket_and_filters_in_kernel(zoo):
    port, _, expected = zoo
    with StateCounter() as counter:
        first = counter.count(port)
        second = counter.count(port)
        everything = counter.count(None)
    assert first == second == expected
    assert all(everything[s] >= expected[s] for s in procfs.TCP_STATES)
    assert port_filter_bytecode(port)[-2:] == port.to_bytes(2, sys.byteorder)


def test_one_walk_dump_counts_what_two_per_family_dumps_count(zoo):
    """The older TCPDIAG_GETSOCK request answers for IPv4 and IPv6 together (the zoo holds both)."""
    port, _, expected = zoo
    with StateCounter() as one, StateCounter() as two:
        two.one_walk = False
        assert first_of_tries(lambda: one.count(port), expected) == expected
        assert one.one_walk  # this kernel answered the one-walk request
        assert first_of_tries(lambda: two.count(port), expected) == expected
        assert not two.one_walk


def test_a_refused_one_walk_request_falls_back_to_two(zoo, monkeypatch):
    """A kernel that answers the one-walk request with NLMSG_ERROR: the counter asks per family."""
    from tcpstress.sampler import netlink

    port, _, expected = zoo
    real = netlink.build_one_walk_request

    def unknown_type(seq, states, bytecode=b""):
        request = bytearray(real(seq, states, bytecode))
        request[4:6] = (99).to_bytes(2, sys.byteorder)  # a message type sock_diag does not know: -EINVAL
        return bytes(request)

    monkeypatch.setattr(netlink, "build_one_walk_request", unknown_type)
    with StateCounter() as counter:
        assert first_of_tries(lambda: counter.count(port), expected) == expected
        assert not counter.one_walk


def test_sample_cpu_column_is_bounded_by_the_process_cpu(tmp_path):
    """sample_cpu_us (the sampling thread's CPU per row) sums to at most what the kernel
    charged this whole process meanwhile, and is not zero; the summary's share agrees."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    sampler = Sampler([NamespaceRef("host")], interval=0.02, port=None, out_dir=tmp_path)
    sampler.start()
    time.sleep(0.6)
    summary = sampler.stop()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    process_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    rows = list(csv.DictReader((tmp_path / "samples.csv").open()))
    cpu = [int(row["sample_cpu_us"]) for row in rows]
    assert len(cpu) >= 10 and all(c >= 0 for c in cpu) and sum(cpu) > 0
    assert sum(cpu) / 1e6 <= process_cpu + 0.01  # clock ticks of getrusage: 10 ms
    share = summary["sampler"]["host"]["cpu_percent"]
    assert 0 < share <= 100 * (process_cpu + 0.01) / (wall - 0.05)


def test_unused_port_counts_nothing(zoo):
    port, _, _ = zoo
    assert sum(count_states(free_port_on_both_families()).values()) == 0


def read_tcp_counters() -> dict[str, int]:
    return procfs.parse_netstat(Path("/proc/net/snmp").read_text(), procfs.TCP_SECTIONS)


def churn(port: int, connections: int) -> None:
    """connect+close to a listener of our own; bounded."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen(connections)
        for _ in range(connections):
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
            listener.accept()[0].close()


def test_sampler_end_to_end(zoo, tmp_path):
    port, zoo_process, expected = zoo
    registry: dict[str, list[int]] = {"generator": [os.getpid()]}
    t0 = time.monotonic() + 1000.0  # times before t0 are negative, which is allowed
    before = read_tcp_counters()
    t_before = time.monotonic() - t0
    sampler = Sampler([NamespaceRef("host")], interval=0.05, t0=t0, port=port,
                      out_dir=tmp_path, processes=registry)
    sampler.start()
    first = sampler.latest()["host"]
    registry["target"] = [zoo_process.pid]  # a role that appears after start
    extra_fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(300)]
    try:
        churn(free_port_on_both_families(), 40)
        time.sleep(0.3)
        spin_until = time.monotonic() + 0.6
        while time.monotonic() < spin_until:
            pass
        fds_witness = len(os.listdir("/proc/self/fd"))
    finally:
        summary = sampler.stop()
        t_after = time.monotonic() - t0
        for fd in extra_fds:
            os.close(fd)
    after = read_tcp_counters()

    for state in procfs.TCP_STATES:
        assert first[state] == expected[state]
        assert summary["states"]["host"][state]["final"] == expected[state]
        assert summary["states"]["host"][state]["peak"] == expected[state]

    totals = summary["counters"]["host"]
    opened = totals["TcpActiveOpens"]
    assert 40 <= opened <= after["TcpActiveOpens"] - before["TcpActiveOpens"]
    assert totals["TcpCurrEstab"] >= 0 and "TcpExtListenOverflows" in totals

    info = summary["sampler"]["host"]
    assert info["method"] == "netlink" and info["errors"] == 0
    assert info["samples"] >= 3 and info["mean_cost_ms"] > 0

    rows = list(csv.DictReader((tmp_path / "samples.csv").read_text().splitlines()))
    header = (tmp_path / "samples.csv").read_text().splitlines()[0].split(",")
    assert header[:18] == ["t", "ns", *procfs.TCP_STATES, "sockstat_inuse", "sockstat_orphan",
                           "sockstat_tw", "sockstat_alloc", "sockstat_mem"]
    assert header[18:] == sorted(header[18:]) and "TcpExtTW" in header
    assert len(rows) == info["samples"]
    times = [float(row["t"]) for row in rows]
    assert times == sorted(times) and t_before <= times[0] < times[-1] <= t_after < 0
    assert all(int(row["TIME_WAIT"]) == expected["TIME_WAIT"] for row in rows)
    assert int(rows[0]["TcpActiveOpens"]) == 0  # the first row is the baseline
    assert sum(int(row["TcpActiveOpens"]) for row in rows) == opened

    proc_rows = list(csv.DictReader((tmp_path / "processes.csv").read_text().splitlines()))
    generator = summary["processes"]["generator"]
    # The peak may also hold what was open only for a moment: churn's sockets
    # (one listener per family, a client and an accepted one) and the sampler
    # thread's own netlink and /proc descriptors (seen: witness + 7).
    assert 300 <= generator["fds_peak"] <= fds_witness + 16
    assert generator["cpu_peak"] > 0
    target_rows = [row for row in proc_rows if row["role"] == "target"]
    assert target_rows and target_rows[-1]["pids"] == str(zoo_process.pid)
    zoo_fds = len(os.listdir(f"/proc/{zoo_process.pid}/fd"))
    assert int(target_rows[-1]["fds"]) == zoo_fds
    vm_rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{zoo_process.pid}/status").read_text().splitlines()
                     if line.startswith("VmRSS:"))
    assert abs(int(target_rows[-1]["rss_bytes"]) - vm_rss_kb * 1024) < 1 << 20


def test_cpu_mean_follows_cpu_time(zoo):
    """A process that spins shows ~its CPU time over wall time; an idle one ~0."""
    _, zoo_process, _ = zoo
    sampler = Sampler([NamespaceRef("host")], interval=0.05, port=1,
                      processes=lambda: {"generator": [os.getpid()], "idle": [zoo_process.pid]})
    sampler.start()
    cpu_start, wall_start = time.process_time(), time.monotonic()
    while time.monotonic() - wall_start < 1.0:
        pass
    witness = 100 * (time.process_time() - cpu_start) / (time.monotonic() - wall_start)
    summary = sampler.stop()
    assert abs(summary["processes"]["generator"]["cpu_mean"] - witness) < 30
    assert summary["processes"]["idle"]["cpu_peak"] < 30


def test_procfs_method_gives_the_same_rows(zoo):
    port, _, expected = zoo

    def one_row():
        sampler = Sampler([NamespaceRef("host")], interval=60, port=port, method="procfs")
        sampler.start()
        row = sampler.latest()["host"]
        assert sampler.stop()["sampler"]["host"]["method"] == "procfs"
        return {s: row[s] for s in procfs.TCP_STATES}

    assert first_of_tries(one_row, expected) == expected


def test_sample_command_live_table_and_csv(zoo, tmp_path):
    port, _, expected = zoo
    stream = io.StringIO()
    out = tmp_path / "live.csv"
    summary = run_sample_command(netns=None, pid=None, port=port, interval=0.05, duration=0.3,
                                 out=out, live=True, stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].split()[:9] == ["t", "ESTAB", "SYN_SENT", "SYN_RECV", "FIN_W1", "FIN_W2",
                                    "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK"]
    body = [line.split() for line in lines[1:]]
    assert len(body) >= 2
    assert all(fields[6] == str(expected["TIME_WAIT"]) and fields[7] == str(expected["CLOSE_WAIT"]) for fields in body)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == summary["sampler"]["host"]["samples"] == len(body)
    assert {row["ns"] for row in rows} == {"host"}


def test_sample_command_csv_into_a_directory(zoo, tmp_path):
    port, _, _ = zoo
    run_sample_command(None, None, port, 0.05, 0.1, tmp_path, live=False, stream=io.StringIO())
    assert (tmp_path / "samples.csv").read_text().startswith("t,ns,ESTABLISHED,")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"netns": "tcpstress-no-such-ns"}, "netns 'tcpstress-no-such-ns' not found"),
        ({"netns": "../etc"}, "not a valid namespace name"),
        ({"pid": 2**22 + 12345}, r"pid \d+: no such process"),
        ({"netns": "x", "pid": 1}, "not both"),
        ({"duration": 0}, "duration 0 is not allowed"),
    ],
)
def test_sample_command_bad_input(kwargs, message):
    args = {"netns": None, "pid": None, "port": None, "interval": 0.1, "duration": 1.0,
            "out": None, "live": False, "stream": io.StringIO()}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_sample_command(**args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"namespaces": []}, "at least one"),
        ({"namespaces": [NamespaceRef("a"), NamespaceRef("a")]}, "labels must differ"),
        ({"interval": 0}, "interval 0 is not allowed"),
        ({"port": 70000}, "port 70000 is not allowed"),
        ({"method": "magic"}, "method 'magic'"),
    ],
)
def test_sampler_bad_input(kwargs, message):
    args = {"namespaces": [NamespaceRef("host")]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Sampler(**args)


def test_namespace_ref_bad_input():
    with pytest.raises(ValueError, match="not both"):
        NamespaceRef("x", netns="a", pid=1)
    with pytest.raises(ValueError, match="label"):
        NamespaceRef("a,b")
    with pytest.raises(ValueError, match="pid -3"):
        NamespaceRef("x", pid=-3)


def test_stop_is_idempotent_and_start_once():
    sampler = Sampler([NamespaceRef("host")], interval=0.05, port=1)
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    first = sampler.stop()
    assert sampler.stop() is first
    assert first["sampler"]["host"]["samples"] >= 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace")
def test_time_wait_from_sockstat_without_port_filter_agrees_with_ss(tmp_path):
    """Without a port filter TIME_WAIT is not dumped but taken from sockstat's `tw`, which also
    counts orphaned FIN_WAIT2 minisockets; in a namespace of the test's own, every state must
    still match `ss`, sample after sample."""
    from tcpstress.sampler.nsenter import netns_path, run_in_netns

    name = f"tcpstress-test-tw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)

        def build() -> list[socket.socket]:
            held = []
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                listener = socket.socket(family)
                listener.bind((host, 0))
                listener.listen(64)
                held.append(listener)
                for i in range(30):
                    client = socket.create_connection(listener.getsockname()[:2], timeout=5)
                    server = listener.accept()[0]
                    if i < 20:  # client first, server after: TIME_WAIT on the client
                        client.close()
                        server.close()
                    elif i < 25:  # client closes, server keeps it: FIN_WAIT2 minisocket + CLOSE_WAIT
                        client.close()
                        held.append(server)
                    else:  # kept: ESTABLISHED pairs
                        held += [client, server]
            time.sleep(0.2)
            return held

        held = run_in_netns(netns_path(name), build)
        try:
            witness_out = subprocess.run(["ip", "netns", "exec", name, "ss", "-Htan"], check=True,
                                         capture_output=True, text=True).stdout
            witness: dict[str, int] = {}
            for line in witness_out.splitlines():
                witness[line.split()[0]] = witness.get(line.split()[0], 0) + 1
            sampler = Sampler([NamespaceRef("ns", netns=name)], interval=0.05, port=None, out_dir=tmp_path)
            sampler.start()
            time.sleep(0.3)
            sampler.stop()
        finally:
            for sock in held:
                sock.close()
        rows = list(csv.DictReader((tmp_path / "samples.csv").read_text().splitlines()))
        assert witness.get("TIME-WAIT") == 40 and witness.get("FIN-WAIT-2") == 10
        assert len(rows) >= 3
        for row in rows:
            for state in procfs.TCP_STATES:
                ss_name = {"ESTABLISHED": "ESTAB", "CLOSE": "UNCONN"}.get(state, state.replace("_", "-"))
                ss_name = {"FIN-WAIT1": "FIN-WAIT-1", "FIN-WAIT2": "FIN-WAIT-2"}.get(ss_name, ss_name)
                assert int(row[state]) == witness.get(ss_name, 0), (state, row[state], witness)
            assert int(row["sockstat_tw"]) == 50  # sockstat alone would have said 50 TIME_WAIT
            assert float(row["sampler_cost_ms"]) > 0 and float(row["states_age_ms"]) >= 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_wait_percent_is_the_time_a_runnable_process_did_not_run(zoo):
    """Two busy loops pinned to one CPU: each always runnable, so its CPU share and its wait
    for the CPU add up to about the whole time (CPU from /proc/PID/stat, wait from schedstat);
    a sleeping process waits for nothing."""
    _, zoo_process, _ = zoo
    core = sorted(os.sched_getaffinity(0))[0]
    spin = "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        for p in spinners:
            os.sched_setaffinity(p.pid, {core})
        sampler = Sampler([NamespaceRef("host")], interval=0.1, port=1,
                          processes=lambda: {"generator": [spinners[0].pid], "idle": [zoo_process.pid]})
        sampler.start()
        time.sleep(1.5)
        summary = sampler.stop()
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    spinner = summary["processes"]["generator"]
    assert 20 < spinner["wait_mean"] < 80, spinner  # about half, with a second loop on its CPU
    assert 80 < spinner["cpu_mean"] + spinner["wait_mean"] < 120, spinner
    assert summary["processes"]["idle"]["wait_mean"] < 5
