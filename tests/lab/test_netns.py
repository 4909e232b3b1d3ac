"""Lab namespaces: made, connected, used and always removed (root only).

Witnesses are iproute2 (`ip netns list`, `ip -n NS ...`) and the processes'
own output, not the Lab object's idea of itself.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tcpstress.lab import Lab, LabError, cleanup, run_in_netns
from tcpstress.lab import netns as lab_netns
from tcpstress.lab.sysctl import apply_sysctls, read_sysctls

SLEEP = ["sleep", "300"]


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_lab_builds_both_namespaces_joined_by_veth(lab_prefix, run_id, netns_list):
    with Lab(run_id, index=7, client_addresses=3) as lab:
        assert {lab.client_ns, lab.server_ns} <= netns_list()
        assert lab.client_ns.startswith(lab_prefix) and lab.server_ns.startswith(lab_prefix)
        client = subprocess.run(["ip", "-n", lab.client_ns, "-4", "-o", "addr", "show"],
                                capture_output=True, text=True, check=True).stdout
        server = subprocess.run(["ip", "-n", lab.server_ns, "-4", "-o", "addr", "show"],
                                capture_output=True, text=True, check=True).stdout
        assert lab.client_addrs == ["198.18.7.2", "198.18.7.3", "198.18.7.4"]
        assert lab.server_addr == "198.18.7.1"
        for address in lab.client_addrs:
            assert f"{lab.client_if}    inet {address}/24" in client
        assert f"{lab.server_if}    inet 198.18.7.1/24" in server
        assert "lo    inet 127.0.0.1/8" in client and "lo    inet 127.0.0.1/8" in server
        host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert f" {lab.client_if}@" not in host_links and f" {lab.server_if}@" not in host_links
        names = (lab.client_ns, lab.server_ns)
    assert not set(names) & netns_list()
    assert not any((lab_netns.OWNER_DIR / name).exists() for name in names)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_exception_mid_with_leaves_nothing(lab_prefix, run_id, netns_list, error):
    lab = Lab(run_id)
    with pytest.raises(type(error)), lab:
        client = lab.popen("client", SLEEP)
        server = lab.popen("server", ["sh", "-c", "sleep 300 & sleep 300"])
        raise error
    assert not {lab.client_ns, lab.server_ns} & netns_list()
    assert client.returncode == -signal.SIGTERM
    assert server.returncode == -signal.SIGTERM


def test_a_process_ignoring_sigterm_is_killed(lab_prefix, run_id):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(300)")
    with Lab(run_id, term_grace=0.3) as lab:
        stubborn = lab.popen("server", [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert stubborn.stdout.readline() == "ready\n"
    assert stubborn.returncode == -signal.SIGKILL
    stubborn.stdout.close()


SERVER = textwrap.dedent("""
    import socket, sys
    listener = socket.socket()
    listener.settimeout(20)
    listener.bind((sys.argv[1], 7000))
    listener.listen()
    print("listening", flush=True)
    conn, peer = listener.accept()
    conn.settimeout(20)
    conn.sendall(conn.recv(100).replace(b"ping", b"pong"))
    print(peer[0], flush=True)
    conn.close()
""")

CLIENT = textwrap.dedent("""
    import socket, sys
    sock = socket.socket()
    sock.settimeout(20)
    sock.bind((sys.argv[1], 0))
    sock.connect((sys.argv[2], 7000))
    sock.sendall(b"ping")
    print(sock.recv(100).decode(), flush=True)
""")


def test_tcp_connect_from_client_to_server_across_the_veth(lab_prefix, run_id):
    with Lab(run_id, index=3, client_addresses=2) as lab:
        server = lab.popen("server", [sys.executable, "-c", SERVER, lab.server_addr],
                           stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "listening\n"
        source = lab.client_addrs[1]  # the secondary address: source spreading works
        client = lab.popen("client", [sys.executable, "-c", CLIENT, source, lab.server_addr],
                           stdout=subprocess.PIPE, text=True)
        reply, _ = client.communicate(timeout=30)
        peer, _ = server.communicate(timeout=30)
    assert reply == "pong\n"
    assert peer == f"{source}\n"  # what the server saw, independent of the client


def test_the_server_is_not_reachable_from_the_client_namespace_loopback(lab_prefix, run_id):
    # Loopback stays per namespace: the server's 127.0.0.1 is not the client's.
    with Lab(run_id) as lab:
        server = lab.popen("server", [sys.executable, "-c", SERVER, "127.0.0.1"],
                           stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "listening\n"
        client = lab.popen("client", [sys.executable, "-c", CLIENT, "127.0.0.1", "127.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, error = client.communicate(timeout=30)
        assert client.returncode != 0 and "ConnectionRefusedError" in error
        server.stdout.close()


KILLED_RUN = textwrap.dedent("""
    import sys, time
    from tcpstress.lab import Lab
    lab = Lab(sys.argv[1], index=0).__enter__()
    sleeper = lab.popen("server", ["sleep", "300"])
    print(lab.client_ns, lab.server_ns, sleeper.pid, flush=True)
    time.sleep(300)
""")


def test_cleanup_removes_a_killed_runs_namespaces_and_processes(lab_prefix, run_id, netns_list):
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, run_id], stdout=subprocess.PIPE, text=True)
    try:
        client_ns, server_ns, sleeper = run.stdout.readline().split()
    finally:
        run.kill()
        run.wait()
        run.stdout.close()
    sleeper_pid = int(sleeper)
    assert {client_ns, server_ns} <= netns_list()  # the kill left them behind
    assert not process_gone(sleeper_pid)

    assert cleanup(lab_prefix) == sorted([client_ns, server_ns])
    assert not {client_ns, server_ns} & netns_list()
    assert process_gone(sleeper_pid)
    assert cleanup(lab_prefix) == []


def test_cleanup_leaves_a_live_runs_namespaces_alone(lab_prefix, run_id, netns_list):
    with Lab(run_id) as lab:
        assert cleanup(lab_prefix) == []
        assert {lab.client_ns, lab.server_ns} <= netns_list()


def test_cleanup_only_touches_namespaces_named_like_a_lab(lab_prefix, netns_list):
    # Other tests and tools use "tcpstress-..." names too; without a Lab's
    # name and owner file a namespace is not cleanup's to remove.
    foreign = f"{lab_prefix}sampler-test"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        assert cleanup(lab_prefix) == []
        assert cleanup(lab_prefix, include_live_runs=True) == []
        assert foreign in netns_list()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)


@pytest.mark.parametrize("prefix", ["", "other-", "tcpstress"])
def test_cleanup_refuses_prefixes_outside_its_own(prefix):
    with pytest.raises(LabError, match="must start with 'tcpstress-'"):
        cleanup(prefix)


def test_an_existing_namespace_is_never_taken_over(lab_prefix, run_id, netns_list):
    squatter = f"{lab_prefix}0-s"
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        lab = Lab(run_id)
        with pytest.raises(LabError, match="already exists"):
            lab.__enter__()
        assert squatter in netns_list()  # not removed by the failed lab
        assert lab.client_ns not in netns_list()  # what it did make is gone
    finally:
        subprocess.run(["ip", "netns", "del", squatter], check=False)


def _routes(*namespace_args: str) -> str:
    return subprocess.run(["ip", *namespace_args, "route", "show", "table", "all"],
                          capture_output=True, text=True, check=True).stdout


def test_blackhole_routes_go_only_into_lab_namespaces(lab_prefix, run_id):
    host_before = _routes()
    with Lab(run_id) as lab:
        lab.add_blackhole_route("server", "198.19.0.0/16")
        lab.add_blackhole_route("client", "198.19.7.0/24", kind="unreachable")
        assert "blackhole 198.19.0.0/16" in _routes("-n", lab.server_ns)
        assert "unreachable 198.19.7.0/24" in _routes("-n", lab.client_ns)
        assert "198.19" not in _routes("-n", lab.client_ns).replace("unreachable 198.19.7.0/24", "")
        private = [str(ipaddress.IPv4Network((0x0A000000, 8))), str(ipaddress.IPv4Network((0xC0A80100, 24)))]
        for bad in (*private, "198.16.0.0/12", "0.0.0.0/0", "nonsense"):
            with pytest.raises(LabError):
                lab.add_blackhole_route("server", bad)
        with pytest.raises(LabError, match="must be blackhole"):
            lab.add_blackhole_route("server", "198.19.0.0/16", kind="throw")
    assert _routes() == host_before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_id": "has space"}, "bad run_id"),
        ({"run_id": ""}, "bad run_id"),
        ({"run_id": "x" * 33}, "bad run_id"),
        ({"run_id": "ok", "index": 256}, "must be 0..255"),
        ({"run_id": "ok", "client_addresses": 0}, "must be 1..253"),
        ({"run_id": "ok", "client_addresses": 254}, "must be 1..253"),
        ({"run_id": "ok", "prefix": "mine-"}, "must start with 'tcpstress-'"),
    ],
)
def test_bad_lab_arguments(kwargs, message):
    with pytest.raises(LabError, match=message):
        Lab(**kwargs)


def test_popen_misuse(lab_prefix, run_id):
    lab = Lab(run_id)
    with pytest.raises(LabError, match="inside `with lab:`"):
        lab.popen("client", SLEEP)
    with lab:
        with pytest.raises(LabError, match="'client' or 'server'"):
            lab.popen("middle", SLEEP)
        with pytest.raises(LabError, match="argv list"):
            lab.popen("client", "sleep 300")
        with pytest.raises(LabError, match="argv list"):
            lab.popen("client", SLEEP, shell=True)
    with pytest.raises(LabError, match="entered twice"):
        lab.__enter__()


def test_run_in_netns_leaves_the_callers_thread_where_it_was(lab_prefix, run_id):
    before = os.readlink("/proc/thread-self/ns/net")
    with Lab(run_id) as lab:
        inside = run_in_netns(lab.client_ns, lambda: os.readlink("/proc/thread-self/ns/net"))
        target = os.stat(lab_netns.netns_path(lab.client_ns)).st_ino
    assert inside == f"net:[{target}]"
    assert os.readlink("/proc/thread-self/ns/net") == before


def test_a_name_pinning_the_hosts_own_namespace_is_refused(monkeypatch, run_id):
    # `ip netns attach NAME PID` names the namespace PID lives in; with our own
    # pid that is the host's. Nothing may treat it as a lab: no sysctl write,
    # and above all no "stop every process inside it".
    signalled = []
    monkeypatch.setattr(lab_netns, "_signal", lambda pids, signum: signalled.append(list(pids)))
    pinned = f"tsxhost{run_id}"
    subprocess.run(["ip", "netns", "attach", pinned, str(os.getpid())], check=True)
    try:
        with pytest.raises(LabError, match="host's own"):
            apply_sysctls(pinned, {"tcp_tw_reuse": 0})
        with pytest.raises(LabError, match="host's own"):
            read_sysctls(pinned, ["tcp_tw_reuse"])
        with pytest.raises(LabError, match="host's own"):
            lab_netns.remove_namespace(pinned)
        assert signalled == []
    finally:
        subprocess.run(["ip", "netns", "delete", pinned], check=False)
