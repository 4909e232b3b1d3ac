"""The built-in server as a real process on loopback.

Witnesses: stdlib http.client parses its answers, and the kernel (through `ss`)
says which side holds TIME_WAIT or CLOSE_WAIT, how many listeners share the
port and which processes own them. The counts line the server prints on
SIGTERM must equal what each test sent.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tcpstress.server import ServerConfig, serve

pytestmark = pytest.mark.skipif(
    shutil.which("ss") is None, reason="needs ss (Debian package iproute2)"
)

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


# --------------------------------------------------------------------------
# Helpers


def stop(server) -> dict:
    """SIGTERM the server (unless it already stopped); it must exit 0 and print its counts."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    out, err = server.proc.communicate(timeout=30)
    assert server.proc.returncode == 0, err
    found = re.findall(r"^served connections=(\d+) requests=(\d+)$", out, re.MULTILINE)
    assert len(found) == 1, out
    return {"connections": int(found[0][0]), "requests": int(found[0][1])}


def tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, local port, peer port) of every TCP socket on `port`, as the kernel sees them."""
    out = subprocess.run(
        ["ss", "-Htan", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sockets = []
    for line in out.splitlines():
        state, _, _, local, peer = line.split()[:5]
        if state != "LISTEN":
            sockets.append((state, int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])))
    return sockets


def pair_states(server_port: int, client_port: int) -> set[tuple[str, str]]:
    """States of one connection's two ends: {("server"|"client", state)}."""
    found = set()
    for state, local, peer in tcp_sockets(server_port):
        if (local, peer) == (server_port, client_port):
            found.add(("server", state))
        elif (local, peer) == (client_port, server_port):
            found.add(("client", state))
    return found


def settle(probe, done, attempts: int = 200, pause: float = 0.025):
    """Call `probe` until `done(result)` (the kernel finishes a close asynchronously)."""
    for _ in range(attempts):
        result = probe()
        if done(result):
            return result
        time.sleep(pause)
    return result


class SharedFile:
    """Lets several http.client responses read one buffered stream in turn.

    http.client closes its file once a body is read; this one stays open.
    """

    def __init__(self, fp):
        self.fp = fp

    def makefile(self, *args, **kwargs):
        return self

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self.fp, name)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, str | None, bytes]]:
    fp = sock.makefile("rb")
    responses = []
    for _ in range(count):
        response = http.client.HTTPResponse(SharedFile(fp))
        response.begin()
        responses.append((response.status, response.getheader("Connection"), response.read()))
    return responses


def read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the peer sends, and how it ended: "eof" or "reset"."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not piece:
            return data, "eof"
        data += piece


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


# --------------------------------------------------------------------------
# HTTP


def test_http_keep_alive_with_http_client(server_factory):
    server = server_factory(response_size=100)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with contextlib.closing(client):
        for _ in range(25):
            client.request("GET", "/")
            response = client.getresponse()
            assert (response.status, response.read()) == (200, b"x" * 100)
        client_port = client.sock.getsockname()[1]
        # One connection carried all 25: the kernel sees exactly one, established.
        assert pair_states(server.port, client_port) == {("server", "ESTAB"), ("client", "ESTAB")}
        established = sorted(s for s in tcp_sockets(server.port) if s[0] == "ESTAB")
        assert established == sorted(
            [("ESTAB", server.port, client_port), ("ESTAB", client_port, server.port)]
        )
    assert stop(server) == {"connections": 1, "requests": 25}


def test_http_connection_close_with_http_client(server_factory):
    # close="client" means the server never closes on its own initiative, but a
    # request with Connection: close obliges it to close first (RFC 9112 9.6).
    server = server_factory()
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    client_ports = []
    with contextlib.closing(client):
        for _ in range(5):
            client.request("GET", "/", headers={"Connection": "close"})
            client_ports.append(client.sock.getsockname()[1])
            response = client.getresponse()
            assert response.getheader("Connection") == "close"
            assert response.read() == b"x" * 64
            response.close()  # http.client hands the socket to the response: this is the FIN
    assert len(set(client_ports)) == 5
    for client_port in client_ports:
        states = settle(
            lambda port=client_port: pair_states(server.port, port),
            lambda s: s == {("server", "TIME-WAIT")},
        )
        assert states == {("server", "TIME-WAIT")}
    assert stop(server) == {"connections": 5, "requests": 5}


def test_http_pipelined_requests_on_a_raw_socket(server_factory):
    server = server_factory(response_size=10)
    with connect(server) as sock:
        sock.sendall(REQUEST * 9 + CLOSE_REQUEST)
        responses = read_responses(sock, 10)
    assert [(status, body) for status, _, body in responses] == [(200, b"x" * 10)] * 10
    assert [connection for _, connection, _ in responses] == [None] * 9 + ["close"]
    assert stop(server) == {"connections": 1, "requests": 10}


def test_http_requests_split_across_packets(server_factory):
    server = server_factory()
    data = REQUEST * 3
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
            time.sleep(0.001)
        responses = read_responses(sock, 3)
    assert [status for status, _, _ in responses] == [200] * 3
    assert stop(server) == {"connections": 1, "requests": 3}


def test_http10_keep_alive_is_confirmed(server_factory):
    # ab -k speaks HTTP/1.0 and keeps the connection only if told so.
    server = server_factory()
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" * 2)
        responses = read_responses(sock, 2)
    assert [connection for _, connection, _ in responses] == ["keep-alive"] * 2
    assert stop(server) == {"connections": 1, "requests": 2}


def test_http_garbage_gets_400_and_close(server_factory):
    server = server_factory()
    with connect(server) as sock:
        sock.sendall(REQUEST + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
        data, how = read_until_closed(sock)
    # The server closes even under close="client": a garbage sender cannot be trusted to.
    assert how == "eof"
    first, second = data.split(b"HTTP/1.1 ", 2)[1:]
    assert first.startswith(b"200 OK\r\n")
    assert second.startswith(b"400 Bad Request\r\n") and b"Connection: close\r\n" in second
    assert stop(server) == {"connections": 1, "requests": 1}


def test_http_requests_per_connection(server_factory):
    server = server_factory(close="server", requests_per_connection=3)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    first_port = None
    with contextlib.closing(client):
        for i in range(5):
            client.request("GET", "/")
            if i == 0:
                first_port = client.sock.getsockname()[1]
            response = client.getresponse()
            assert response.getheader("Connection") == ("close" if i == 2 else None)
            response.read()
    # http.client reconnected after the third; the server closed that first connection.
    states = settle(
        lambda: pair_states(server.port, first_port), lambda s: s == {("server", "TIME-WAIT")}
    )
    assert states == {("server", "TIME-WAIT")}
    assert stop(server) == {"connections": 2, "requests": 5}


def test_http_delay_holds_each_response(server_factory):
    server = server_factory(delay=0.3)
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(REQUEST * 2)
        read_responses(sock, 2)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.6  # a lower bound only: the server may be slower, never faster
    assert stop(server) == {"connections": 1, "requests": 2}


def test_http_stall_holds_responses_until_it_ends(server_factory):
    before_start = time.monotonic()
    server = server_factory(stall_at=0.0, stall_for=1.5)
    with connect(server) as sock:
        sock.sendall(REQUEST)
        read_responses(sock, 1)
    assert time.monotonic() - before_start >= 1.5  # the stall began after we took the time
    assert stop(server) == {"connections": 1, "requests": 1}


def test_http_on_ipv6_loopback(server_factory):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = server_factory(host="::1")
    assert server.host == "[::1]"
    client = http.client.HTTPConnection("::1", server.port, timeout=10)
    with contextlib.closing(client):
        for _ in range(3):
            client.request("GET", "/")
            assert client.getresponse().read() == b"x" * 64
    assert stop(server) == {"connections": 1, "requests": 3}


# --------------------------------------------------------------------------
# Close policies, checked against the kernel


@pytest.mark.parametrize("protocol", ["http", "echo"])
def test_server_close_leaves_time_wait_on_the_server(server_factory, protocol):
    server = server_factory(
        protocol=protocol, close="server", requests_per_connection=1, echo_size=16
    )
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(CLOSE_REQUEST if protocol == "http" else b"e" * 16)
        data, how = read_until_closed(sock)
    assert how == "eof" and data
    states = settle(
        lambda: pair_states(server.port, client_port), lambda s: s == {("server", "TIME-WAIT")}
    )
    assert states == {("server", "TIME-WAIT")}
    assert stop(server) == {"connections": 1, "requests": 1}


def test_client_close_leaves_time_wait_on_the_client(server_factory):
    server = server_factory(close="client")
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(REQUEST)  # keep-alive: the client decides when to close
        (response,) = read_responses(sock, 1)
        assert response[1] is None
        # The server waits for our FIN rather than sending its own.
        assert ("server", "ESTAB") in pair_states(server.port, client_port)
    states = settle(
        lambda: pair_states(server.port, client_port), lambda s: s == {("client", "TIME-WAIT")}
    )
    assert states == {("client", "TIME-WAIT")}
    assert stop(server) == {"connections": 1, "requests": 1}


@pytest.mark.parametrize("protocol", ["http", "echo"])
def test_never_close_leaves_close_wait_on_the_server(server_factory, protocol):
    server = server_factory(protocol=protocol, close="never", echo_size=8)
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        if protocol == "http":
            sock.sendall(REQUEST)
            read_responses(sock, 1)
        else:
            sock.sendall(b"12345678")
            assert sock.recv(8) == b"12345678"
    # Our FIN arrived and the server never answers it with its own.
    expected = {("server", "CLOSE-WAIT"), ("client", "FIN-WAIT-2")}
    assert (
        settle(lambda: pair_states(server.port, client_port), lambda s: s == expected) == expected
    )
    time.sleep(0.3)
    assert ("server", "CLOSE-WAIT") in pair_states(server.port, client_port)
    assert stop(server) == {"connections": 1, "requests": 1}
    # Stopping releases what it held.
    assert ("server", "CLOSE-WAIT") not in pair_states(server.port, client_port)


@pytest.mark.parametrize("protocol", ["http", "echo"])
def test_reset_leaves_no_time_wait_anywhere(server_factory, protocol):
    server = server_factory(
        protocol=protocol, close="reset", requests_per_connection=1, echo_size=8
    )
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(CLOSE_REQUEST if protocol == "http" else b"abcdefgh")
        data, how = read_until_closed(sock)
        assert how in ("reset", "eof")
        assert (
            data.startswith(b"HTTP/1.1 200 OK\r\n")
            if protocol == "http"
            else data in (b"", b"abcdefgh")
        )
        # The RST removed the server's end before we even close ours.
        states = settle(
            lambda: pair_states(server.port, client_port),
            lambda s: not any(e == "server" for e, _ in s),
        )
        assert not any(end == "server" for end, _ in states)
    assert settle(lambda: pair_states(server.port, client_port), lambda s: not s) == set()
    counts = stop(server)
    assert counts["connections"] == 1 and counts["requests"] == 1


def test_reset_on_the_clients_fin(server_factory):
    server = server_factory(close="reset")
    with connect(server) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(REQUEST)
        read_responses(sock, 1)
        sock.shutdown(socket.SHUT_WR)
        data, how = read_until_closed(sock)
        assert (data, how) == (b"", "reset")
    assert pair_states(server.port, client_port) == set()
    assert stop(server) == {"connections": 1, "requests": 1}


# --------------------------------------------------------------------------
# Echo


def test_echo_exchange(server_factory):
    server = server_factory(protocol="echo", echo_size=100)
    messages = bytes(range(256)) + bytes(range(44))  # three 100-byte messages
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (messages[:50], messages[50:200], messages[200:]):
            sock.sendall(piece)
            time.sleep(0.01)
        echoed = b""
        while len(echoed) < 300:
            chunk = sock.recv(1000)
            assert chunk
            echoed += chunk
        assert echoed == messages
        sock.sendall(b"partial")  # not a whole message: never echoed, never counted
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == (b"", "eof")
    assert stop(server) == {"connections": 1, "requests": 3}


def test_echo_requests_per_connection(server_factory):
    server = server_factory(protocol="echo", echo_size=4, close="server", requests_per_connection=2)
    with connect(server) as sock:
        sock.sendall(b"aaaabbbbcccc")  # the third message is beyond the limit
        data, how = read_until_closed(sock)
    assert (data, how) in ((b"aaaabbbb", "eof"), (b"aaaabbbb", "reset"))
    assert stop(server) == {"connections": 1, "requests": 2}


# --------------------------------------------------------------------------
# Processes, signals, lifetime


def listeners(port: int) -> list[int]:
    """PIDs of the processes listening on `port`, one entry per listening socket."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    return [int(pid) for pid in re.findall(r"pid=(\d+)", out)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_share_the_port_and_sum_their_counts(server_factory):
    server = server_factory(workers=2)
    pids = listeners(server.port)
    assert len(pids) == 2 and len(set(pids)) == 2 and server.proc.pid not in pids
    for _ in range(40):
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with contextlib.closing(client):
            client.request("GET", "/")
            client.getresponse().read()
            client.request("GET", "/", headers={"Connection": "close"})
            client.getresponse().read()
    assert stop(server) == {"connections": 40, "requests": 80}
    assert settle(lambda: [pid for pid in pids if alive(pid)], lambda left: not left) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_counts_are_exact_under_concurrent_clients(server_factory, workers):
    server = server_factory(workers=workers)
    answered = []

    def client_thread():
        count = 0
        for _ in range(5):
            client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            with contextlib.closing(client):
                for _ in range(10):
                    client.request("GET", "/")
                    if client.getresponse().read() == b"x" * 64:
                        count += 1
        answered.append(count)

    threads = [threading.Thread(target=client_thread) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answered == [50] * 8
    assert stop(server) == {"connections": 40, "requests": 400}


def test_workers_die_with_their_parent(server_factory):
    server = server_factory(workers=2)
    pids = listeners(server.port)
    assert len(pids) == 2
    server.proc.kill()
    server.proc.wait()
    assert (
        settle(lambda: [pid for pid in pids if alive(pid)], lambda left: not left, attempts=400)
        == []
    )


def test_a_dead_worker_stops_the_server_with_an_error(server_factory):
    server = server_factory(workers=2)
    pids = listeners(server.port)
    os.kill(pids[0], signal.SIGKILL)
    out, err = server.proc.communicate(timeout=60)
    assert server.proc.returncode != 0
    assert f"pid={pids[0]} exit code -9" in err
    assert "served connections=0 requests=0" in out  # the survivor still reported
    assert settle(lambda: alive(pids[1]), lambda a: not a) is False


def test_sigint_stops_cleanly(server_factory):
    server = server_factory()
    with connect(server) as sock:
        sock.sendall(CLOSE_REQUEST)
        read_responses(sock, 1)
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=30)
    assert stop(server) == {"connections": 1, "requests": 1}


def test_max_seconds_stops_by_itself(server_factory):
    server = server_factory(max_seconds=0.5)
    out, _ = server.proc.communicate(timeout=60)
    assert server.proc.returncode == 0
    assert "served connections=0 requests=0" in out


def test_stop_while_connections_are_open(server_factory):
    server = server_factory()
    with connect(server) as first, connect(server) as second:
        first.sendall(REQUEST)
        read_responses(first, 1)
        second.sendall(b"GET / HTTP/1.1\r\nHost")  # a request cut short
        assert (
            settle(
                lambda: len([s for s in tcp_sockets(server.port) if s[0] == "ESTAB"]),
                lambda n: n == 4,
            )
            == 4
        )
        assert stop(server) == {"connections": 2, "requests": 1}
        assert read_until_closed(first)[0] == b""


def test_port_in_use_fails_clearly(server_factory):
    server = server_factory()
    code = f"from tcpstress.server import serve, ServerConfig; serve(ServerConfig(port={server.port}, max_seconds=5))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "Address already in use" in proc.stderr or str(errno.EADDRINUSE) in proc.stderr
    stop(server)


def test_serve_in_process_calls_ready_and_returns_its_stats(capsys):
    announced = threading.Event()
    address = []
    results = []

    def ready(host, port):
        address.append((host, port))
        announced.set()

    # Off the main thread there are no signal handlers: max_seconds ends it.
    thread = threading.Thread(
        target=lambda: results.append(serve(ServerConfig(max_seconds=2.0), ready))
    )
    thread.start()
    assert announced.wait(30)
    host, port = address[0]
    client = http.client.HTTPConnection(host, port, timeout=10)
    with contextlib.closing(client):
        client.request("GET", "/")
        assert client.getresponse().read() == b"x" * 64
    thread.join(60)
    (stats,) = results
    assert (stats.connections, stats.requests, stats.port) == (1, 1, port)
    out = capsys.readouterr().out
    assert out.startswith(f"listening http 127.0.0.1:{port} pid={os.getpid()} workers=1\n")
    assert out.endswith("served connections=1 requests=1\n")


# --------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protocol", "ftp"),
        ("close", "sometimes"),
        ("port", 70000),
        ("port", -1),
        ("response_size", -1),
        ("echo_size", 0),
        ("requests_per_connection", -2),
        ("backlog", 0),
        ("workers", 0),
        ("workers", True),
        ("delay", -0.1),
        ("delay", float("nan")),
        ("stall_at", -1.0),
        ("max_seconds", 0),
        ("host", ""),
    ],
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"^server {field}=.*: must be "):
        ServerConfig(**{field: value})
