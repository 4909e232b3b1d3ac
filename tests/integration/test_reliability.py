"""Faults injected for real: signals, dead workers, vanished targets, hostile servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tcpstress.results import CLAIM_FILE
from tests.conftest import ROOT, run_cli


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tcpstress", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_intervals(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> dict:
    """Poll the streamed result.json until it holds n intervals."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            data = json.loads((out / "result.json").read_text())
            if len(data["intervals"]) >= n:
                return data
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("the run did not stream its intervals")


def descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pids) -> list[int]:
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_run_saves_partial_result_and_stops_everything(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start_cli("run", "--builtin-server", "--connections", 4, "--workers", 2, "--duration", "60s", "--out", out)
    wait_for_intervals(out, 2, proc)
    children = descendants(proc.pid)
    assert len(children) >= 3  # two workers and the built-in server
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    data = json.loads((out / "result.json").read_text())
    assert data["partial"] is True and signal.Signals(sig).name in data["partial_reason"]
    assert len(data["intervals"]) >= 2 and data["summary"]["requests"] > 0
    assert data["summary"]["requests"] == sum(i["requests"] for i in data["intervals"])
    assert (out / "report.html").is_file()
    assert alive(children) == []


def test_a_worker_killed_mid_run_is_reported_and_the_run_ends(tmp_path):
    out = tmp_path / "run"
    proc = start_cli("run", "--builtin-server", "--connections", 4, "--workers", 2, "--duration", "4s", "--out", out)
    wait_for_intervals(out, 1, proc)
    workers = [p for p in psutil.Process(proc.pid).children() if "tcpstress.load.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    workers[1].kill()
    stdout, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    data = json.loads((out / "result.json").read_text())
    assert data["partial"] and "killed by SIGKILL" in data["partial_reason"]
    dead = [w for w in data["summary"]["workers"] if w["exit"] != "ok"]
    assert len(dead) == 1 and "SIGKILL" in dead[0]["exit"] and dead[0]["requests"] > 0
    assert len(data["intervals"]) == 4  # the other worker carried on to the end
    assert "killed by SIGKILL" in stdout


def test_target_that_disappears_mid_run_gives_counted_errors_and_an_on_time_end(tmp_path, server_factory):
    server = server_factory(protocol="http")
    out = tmp_path / "run"
    proc = start_cli("run", "--target", f"127.0.0.1:{server.port}", "--connections", 4, "--no-keepalive",
                     "--duration", "4s", "--connect-timeout", "1s", "--request-timeout", "1s", "--out", out)
    wait_for_intervals(out, 1, proc)
    server.proc.kill()
    proc.communicate(timeout=90)
    assert proc.returncode == 0
    s = json.loads((out / "result.json").read_text())["summary"]
    assert s["requests"] > 0
    assert s["errors"].get("ECONNREFUSED", 0) > 0, s["errors"]
    assert len(json.loads((out / "result.json").read_text())["intervals"]) == 4


def test_killed_runner_leaves_a_readable_streamed_result(tmp_path):
    """SIGKILL cannot be caught: what was streamed must still be a valid, partial result."""
    out = tmp_path / "run"
    proc = start_cli("run", "--builtin-server", "--connections", 2, "--duration", "60s", "--out", out)
    wait_for_intervals(out, 2, proc)
    children = descendants(proc.pid)
    proc.kill()
    proc.communicate()
    for pid in alive(children):  # orphans of a SIGKILLed runner: the test cleans up
        os.kill(pid, signal.SIGKILL)
    data = json.loads((out / "result.json").read_text())
    assert data["partial"] is True and data["partial_reason"] == "in progress"
    assert len(data["intervals"]) >= 2
    hlog = (out / "latency-total.hlog").read_text().splitlines()
    assert sum(1 for line in hlog if line[:1].isdigit()) >= 2
    refused = run_cli("report", out)
    assert refused.returncode == 0, refused.stderr  # a partial run still renders


def test_open_file_limit_too_low_is_refused_up_front(tmp_path):
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.run([sys.executable, "-m", "tcpstress", "run", "--builtin-server", "--connections", "1000", "--workers", "1",
                           "--out", tmp_path / "x"], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=low_limit, timeout=60)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "needs 1064 open files per worker" in line and "limit here is 256" in line
    assert "--workers" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
@pytest.mark.parametrize("size", ["12k", "48k"])  # full while running / full while writing the report
def test_full_disk_gives_a_clear_message_and_no_corrupt_files(tmp_path, size):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "run"
        proc = run_cli("run", "--builtin-server", "--connections", 4, "--duration", "3s", "--out", out, timeout=120)
        assert proc.returncode == 1
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        result = out / "result.json"
        if result.exists():
            json.loads(result.read_text())  # whatever is there is whole
        leftovers = ([p.name for p in out.iterdir() if p.name.startswith(".") and p.name != CLAIM_FILE]
                     if out.exists() else [])
        assert leftovers == []  # no half-written temporary files
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# --- hostile servers ------------------------------------------------------------


class HostileServer:
    """A loopback server that misbehaves in one way, on every connection."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
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
        deadline = time.monotonic() + 20  # bounded, whatever the client does
        try:
            conn.settimeout(1)
            conn.recv(65536)
            if self.behaviour == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            elif self.behaviour == "huge_length":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n" + b"x" * 65536)
                time.sleep(2)
            elif self.behaviour == "endless":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
                while not self.stop.is_set() and time.monotonic() < deadline:
                    conn.sendall(chunk)
            elif self.behaviour == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello":
                    if self.stop.is_set() or time.monotonic() > deadline:
                        break
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("behaviour,expected", [
    ("garbage", {"protocol: malformed status line"}),
    ("huge_length", {"protocol: body too large"}),
    # an endless body hits the 64 MiB body cap, or the request timeout first
    ("endless", {"protocol: body too large", "request timeout"}),
    ("trickle", {"request timeout"}),
])
def test_hostile_servers_are_counted_with_bounded_memory(tmp_path, behaviour, expected):
    server = HostileServer(behaviour)
    try:
        out = tmp_path / "run"
        proc = run_cli("run", "--target", f"127.0.0.1:{server.port}", "--connections", 2, "--duration", "3s",
                       "--request-timeout", "1s", "--sample-interval", "200ms", "--out", out, timeout=120)
        # Not one request succeeded: the run failed (README "Exit codes"), and says why.
        assert proc.returncode == 1, proc.stderr
        assert "not one request succeeded" in proc.stderr
    finally:
        server.close()
    data = json.loads((out / "result.json").read_text())
    errors = data["summary"]["errors"]
    assert sum(errors.get(name, 0) for name in expected) > 0 and set(errors) <= expected, errors
    rows = (out / "processes.csv").read_text().splitlines()
    header = rows[0].split(",")
    rss = [int(float(r.split(",")[header.index("rss_bytes")])) for r in rows[1:]
           if r.split(",")[header.index("role")] == "generator"]
    assert rss and max(rss) < 150 * 2**20  # an endless body is counted and dropped, never kept


@pytest.mark.parametrize("damage", ["truncate", "edit", "missing"])
def test_report_refuses_damaged_run_folders(tmp_path, damage):
    out = tmp_path / "run"
    run_cli("run", "--builtin-server", "--connections", 2, "--duration", "1s", "--out", out, check=True)
    result = out / "result.json"
    text = result.read_text()
    if damage == "truncate":
        result.write_text(text[: len(text) // 2])
    elif damage == "edit":
        data = json.loads(text)
        del data["intervals"]
        result.write_text(json.dumps(data))
    else:
        result.unlink()
    proc = run_cli("report", out, "--out", tmp_path / "rep")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "Traceback" not in proc.stderr
