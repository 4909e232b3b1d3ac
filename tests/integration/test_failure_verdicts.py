"""The general failure rules against hostile servers that count the truth (issue #17 item 1).

Each server counts, itself, the requests it read and how it treated them; the
findings must cite those failures (within the requests still in flight at the
end) and never read "No problems found".
"""

from __future__ import annotations

import json
import socket
import threading
import time

from tcpstress.report.diagnose import diagnose, load_run
from tcpstress.report.finding import OUTAGE_PCT
from tests.conftest import run_cli


class CountingServer:
    """HTTP on loopback: answers 200, except every `fail_every`-th request, read and then closed unanswered."""

    def __init__(self, fail_every: int):
        self.fail_every = fail_every
        self.answered = self.dropped = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        deadline = time.monotonic() + 20  # bounded whatever the client does
        buf = b""
        try:
            conn.settimeout(1)
            while not self.stop.is_set() and time.monotonic() < deadline:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    n = self.answered + self.dropped + 1
                    drop = n % self.fail_every == 0
                    if drop:
                        self.dropped += 1
                    else:
                        self.answered += 1
                if drop:
                    return  # closed without a response
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


CONNECTIONS = 2


def within_the_end(counted: int, server_count: int, summary: dict) -> bool:
    """The server's count against the tool's: equal, but for requests the run's end cut short
    (in flight at the end, and at most one per connection being torn down as the run stopped)."""
    return counted <= server_count <= counted + summary.get("in_flight_at_end", 0) + CONNECTIONS


def run_against(server: CountingServer, out) -> tuple[dict, str]:
    proc = run_cli("run", "--target", f"127.0.0.1:{server.port}", "--connections", CONNECTIONS, "--duration", "1500ms",
                   "--request-timeout", "1s", "--out", out, timeout=120)
    server.close()
    return json.loads((out / "result.json").read_text()), proc.stdout + proc.stderr


def test_every_request_closed_unanswered_is_critical_no_success(tmp_path):
    server = CountingServer(fail_every=1)
    data, output = run_against(server, tmp_path / "run")
    s = data["summary"]
    closed = s["errors"].get("closed before response", 0)
    assert s["requests"] == 0 and server.answered == 0 and server.dropped > 0
    assert within_the_end(closed, server.dropped, s), (server.dropped, s["errors"], s.get("in_flight_at_end"))
    found = {f.rule: f for f in diagnose([load_run(tmp_path / "run")])}
    assert found["no_success"].severity == "critical"
    assert f"{closed:,} × closed before response" in found["no_success"].text, (s["errors"], found["no_success"].text)
    assert "No problems found" not in output and "No request succeeded" in output, output


def test_one_request_in_ten_closed_unanswered_is_named_with_its_share(tmp_path):
    server = CountingServer(fail_every=10)
    data, output = run_against(server, tmp_path / "run")
    s = data["summary"]
    # On a reused keep-alive connection the client cannot tell a close after reading the request from
    # an idle close: the engine calls it "stale connection"; on a fresh one "closed before response".
    names = ("closed before response", "stale connection")
    failed = sum(s["errors"].get(n, 0) for n in names)
    assert set(s["errors"]) <= set(names)
    assert within_the_end(failed, server.dropped, s), (server.dropped, s["errors"], s.get("in_flight_at_end"))
    assert s["requests"] <= server.answered
    found = {f.rule: f for f in diagnose([load_run(tmp_path / "run")])}
    f = found["errors"]
    for n in names:
        if s["errors"].get(n):
            assert f"{s['errors'][n]:,} × {n}" in f.text
    share = 100.0 * failed / (s["requests"] + s["error_total"])
    assert f"({share:.2g}%)" in f.text and 8 <= share <= 12
    # About 10% of attempts: critical from OUTAGE_PCT (an outage for the run's users), a warning below it.
    assert f.severity == ("critical" if share >= OUTAGE_PCT else "warning"), (share, f.severity)
    assert "does not retry" in f.advice or "closed connections without answering" in f.advice
    assert "Requests failed" in output
