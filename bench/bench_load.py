#!/usr/bin/env python3
"""Load-generation speed and CPU cost against wrk, measured in the same run.

Starts Debian's nginx (one worker, access log off) on free loopback ports, one
plain and one HTTPS (a self-signed certificate from tcpstress.load.tls), then
runs each tool against it for the same duration and prints each tcpstress
figure as a ratio to the peer's, and CPU microseconds per request for both.
Absolute numbers on a shared 2-core machine mean little; ratios taken seconds
apart mean a bit more. Run it alone: `flock /tmp/tcpstress-load.lock python
bench/bench_load.py`.

    python bench/bench_load.py [--duration 4] [--workers 2] [--only churn,keepalive,tls,open]

CPU per request: the tool's process tree (tcpstress: runner + workers; wrk:
its threads) is read from /proc/PID/stat every 0.1 s; the CPU used between 1 s
after the load started and 0.5 s before it ended, divided by the requests
answered in that stretch (the tool's own requests per second times its
length). nginx's CPU is not counted for either.

Goals (issue 20): churn >= 0.75 x wrk -t2 -H 'Connection: close',
keep-alive >= 0.5 x wrk -t2, TLS churn >= 0.8 x, TLS keep-alive >= 0.5 x;
CPU per request <= 3 x wrk's for keep-alive and <= 1.5 x for churn; the open
model at 10,000/s with 2 workers keeps up with >= 0.99 of the rate, at a CPU
cost per request within 1.5 x the closed model's (keep-alive row); a
`run --no-report` at 10 requests/s costs <= 1 CPU second in all and sends
its first request within 0.5 s of being started; open-model churn with one
worker >= 0.5 x wrk -t1 -H 'Connection: close' (the issue's peer, tcpkali
--connect-rate, does not build from Debian's packages alone). The open row
also prints the closed model paced to about the same rate by a think time,
which pays the same wake-ups, and wrk2's own open model when `wrk2` is on
the PATH. hey and wrk2 are not in Debian; their rows are printed only when
they are on the PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")
SECTIONS = ("churn", "keepalive", "tls", "open", "startup")


@dataclass
class Measured:
    """One tool's run: requests per second and CPU microseconds per request (None: not measured)."""

    rate: float
    cpu_us: float | None
    extra: dict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp: Path, cert: Path | None = None, key: Path | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    # A session cache as a real HTTPS server has: resumption is what clients that reconnect use.
    tls = f"ssl_certificate {cert}; ssl_certificate_key {key}; ssl_session_cache shared:S:1m;" if cert else ""
    conf.write_text(textwrap.dedent(f"""
        daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
        events {{ worker_connections 8192; }}
        http {{
            access_log off; keepalive_requests 10000000;
            client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
            uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
            server {{ listen 127.0.0.1:{port} {"ssl" if cert else ""} backlog=4096; {tls}
                     location / {{ return 200 "hello from nginx\\n"; }} }}
        }}"""))
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nginx did not start: {(tmp / 'error.log').read_text()[-500:]}")


# -- CPU of a process tree, from /proc ----------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def _cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def tree_cpu(root: int) -> tuple[float, int, float]:
    """CPU seconds of `root` and its live descendants, how many processes that is, and root's own."""
    own = _cpu(root) or 0.0
    total, count, todo = 0.0, 0, [root]
    while todo:
        pid = todo.pop()
        cpu = _cpu(pid)
        if cpu is None:
            continue
        total += cpu
        count += 1
        todo += _children(pid)
    return total, count, own


def watch(cmd: list[str], ready_procs: int, duration: float,
          **popen) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run cmd, reading its tree's CPU every 0.1 s; returns its result, the tree's CPU seconds
    per second of load in the steady stretch (from 1 s after the tree reached `ready_procs`
    processes until 0.5 s before the load ends) and the root process's own (tcpstress: the
    runner, sampler included)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    points: list[tuple[float, float, float]] = []
    ready_at = None
    while proc.poll() is None:
        now = time.monotonic()
        cpu, count, own = tree_cpu(proc.pid)
        if ready_at is None and count >= ready_procs:
            ready_at = now
        if ready_at is not None:
            points.append((now, cpu, own))
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode not in (0, 1) or ready_at is None:
        raise SystemExit(f"{' '.join(cmd[:4])}...: exit {proc.returncode}: {err[-500:]}")
    stretch = [p for p in points if ready_at + 1.0 <= p[0] <= ready_at + duration - 0.5]
    if len(stretch) < 2:
        raise SystemExit(f"{cmd[0]}: too short to measure CPU (use --duration 3 or more)")
    (t0, c0, r0), (t1, c1, r1) = stretch[0], stretch[-1]
    return (subprocess.CompletedProcess(cmd, proc.returncode, out, err), (c1 - c0) / (t1 - t0),
            (r1 - r0) / (t1 - t0))


# -- the tools --------------------------------------------------------------


def wrk(url: str, duration: int, close: bool, threads: int = 2) -> Measured:
    cmd = ["wrk", f"-t{threads}", "-c100", f"-d{duration}s", url] + (["-H", "Connection: close"] if close else [])
    done, cpu_rate, _ = watch(cmd, 1, duration)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", done.stdout)
    return Measured(rate, cpu_rate / rate * 1e6, {"errors": errors.group(0) if errors else ""})


def wrk2(url: str, duration: int, rate: int) -> Measured:
    """wrk2's open model (-R): CPU per request at a fixed rate. Its first seconds calibrate;
    the CPU stretch starts 1 s in and its rate is what it reports."""
    done, cpu_rate, _ = watch(["wrk2", "-t2", "-c100", f"-R{rate}", f"-d{duration}s", url], 1, duration)
    rate_seen = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    # CPU per request at the rate it was asked to keep (it reports a lower average that
    # includes its calibration start).
    return Measured(rate_seen, cpu_rate / rate * 1e6, {})


def hey(url: str, duration: int, close: bool) -> Measured:
    cmd = ["hey", "-z", f"{duration}s", "-c", "100"] + (["-disable-keepalive"] if close else []) + [url]
    done, cpu_rate, _ = watch(cmd, 1, duration)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    return Measured(rate, cpu_rate / rate * 1e6, {})


def tcpstress(target: str, duration: int, workers: int, args: list[str], env: dict[str, str] | None = None) -> Measured:
    out_dir = Path(tempfile.mkdtemp(prefix="bench-")) / "run"
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--no-report", "--target", target,
           "--duration", f"{duration}s", "--out", str(out_dir), "--workers", str(workers)] + args
    try:
        _, cpu_rate, runner_rate = watch(cmd, 1 + workers, duration, cwd=ROOT,
                                         env={**os.environ, **env} if env else None)
        summary = json.loads((out_dir / "result.json").read_text())["summary"]
    finally:
        shutil.rmtree(out_dir.parent, ignore_errors=True)
    rate = summary["requests_per_s"]
    return Measured(rate, cpu_rate / rate * 1e6 if rate else None,
                    {"errors": summary["error_total"], "late_starts": summary.get("late_starts", 0),
                     "kept_up": summary.get("kept_up"),
                     "runner": runner_rate})


def first_request_listener() -> tuple[socket.socket, list[float]]:
    """A loopback HTTP server answering every request with an empty 200, noting when the
    first connection arrived (time.monotonic()). One thread per connection: a few requests."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    first: list[float] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if not first:
                first.append(time.monotonic())
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, first


def startup(workers: int) -> None:
    """Fixed cost of a run: a 2 s `run --no-report` at 10 requests/s (its load costs next to
    nothing), timed from the command's start to its first connection, and its CPU seconds
    (the runner and its workers, from getrusage of waited children)."""
    import resource

    listener, first = first_request_listener()
    out_dir = Path(tempfile.mkdtemp(prefix="bench-")) / "run"
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--no-report", "--target",
           f"127.0.0.1:{listener.getsockname()[1]}", "--model", "open", "--rate", "10", "--connections", "2",
           "--duration", "2s", "--out", str(out_dir), "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads((out_dir / "result.json").read_text())["summary"]
    finally:
        listener.close()
        shutil.rmtree(out_dir.parent, ignore_errors=True)
    if done.returncode not in (0, 1) or not first:
        raise SystemExit(f"startup run: exit {done.returncode}: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    to_first = first[0] - started
    print(f"\nfixed cost: `run --no-report` at 10 req/s for 2 s, {workers} workers: "
          f"{summary['requests']} requests, wall {wall:.2f} s, CPU {cpu:.2f} s (goal <= 1 + its load), "
          f"first connection {to_first:.2f} s after the start (goal <= 0.5)  "
          f"{'ok' if cpu <= 1.0 and to_first <= 0.5 else 'ABOVE GOAL'}")


# -- the table --------------------------------------------------------------


def section(title: str, ours_name: str, ours: Measured, peers: dict[str, Measured],
            goals: dict[str, float], cpu_goals: dict[str, float]) -> list[dict]:
    """Print one comparison: each tool's rate and CPU per request, then tcpstress's ratios."""
    print(f"\n{title}")
    for name, m in {**peers, ours_name: ours}.items():
        cpu = f"{m.cpu_us:7.1f} CPU us/request" if m.cpu_us else ""
        errors = f"  errors {m.extra['errors']}" if m.extra.get("errors") else ""
        runner = f"  (runner {m.extra['runner'] * 100:.1f}% of a core)" if "runner" in m.extra else ""
        print(f"  {name:<58} {m.rate:>10,.0f} req/s  {cpu}{errors}{runner}")
    rows = []
    for peer, goal in goals.items():
        ratio = ours.rate / peers[peer].rate
        print(f"  speed  tcpstress / {peer.split()[0]:<5} {ratio:5.2f}  (goal >= {goal})  "
              f"{'ok' if ratio >= goal else 'BELOW GOAL'}")
        rows.append({"section": title, "peer": peer, "ratio": round(ratio, 3), "goal": goal})
    for peer, goal in cpu_goals.items():
        if ours.cpu_us and peers[peer].cpu_us:
            ratio = ours.cpu_us / peers[peer].cpu_us
            print(f"  CPU    tcpstress / {peer.split()[0]:<5} {ratio:5.2f}  (goal <= {goal})  "
                  f"{'ok' if ratio <= goal else 'ABOVE GOAL'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=4, help="seconds per measurement, 3..30")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not 3 <= args.duration <= 30 or only - set(SECTIONS) or not 1 <= args.workers <= 16:
        raise SystemExit(f"bad arguments: --duration 3..30, --workers 1..16, --only among {', '.join(SECTIONS)}")
    missing = [t for t in ("nginx", "wrk") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing peer tools: {', '.join(missing)} (apt-get install nginx-light wrk)")
    has_hey = shutil.which("hey") is not None
    if not has_hey:
        print("hey: not installed (not packaged in Debian); its rows are left out")
    from tcpstress.load.tls import make_self_signed

    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    (tmp / "plain").mkdir()
    (tmp / "tls").mkdir()
    cert, key = make_self_signed(tmp / "cert")
    nginx, port = start_nginx(tmp / "plain")
    nginx_tls, tls_port = start_nginx(tmp / "tls", cert, key)
    url, tls_url = f"http://127.0.0.1:{port}/", f"https://127.0.0.1:{tls_port}/"
    d, w = args.duration, args.workers
    churn_args = ["--no-keepalive", "--close", "server", "--connections", "100"]
    keep_args = ["--keepalive", "--connections", "100"]
    tls_args = ["--ca-file", str(cert)]
    ours = f"tcpstress --workers {w}"
    closed_keepalive_cpu = None
    closed_wrk_cpu = None
    try:
        if "churn" in only:
            # wrk's "Connection: close" (and hey's -disable-keepalive) make the
            # server close first, as --close server does.
            peers = {"wrk -t2 -c100 -H 'Connection: close'": wrk(url, d, True)}
            if has_hey:
                peers["hey -c 100 -disable-keepalive"] = hey(url, d, True)
            mine = tcpstress(f"127.0.0.1:{port}", d, w, churn_args)
            goals = {list(peers)[0]: 0.75, **({list(peers)[1]: 1.0} if has_hey else {})}
            section("churn: one request per connection, 100 connections, nginx 1 worker",
                    f"{ours} --no-keepalive --close server -c 100", mine, peers, goals, {list(peers)[0]: 1.5})
        if "keepalive" in only:
            peers = {"wrk -t2 -c100": wrk(url, d, False)}
            if has_hey:
                peers["hey -c 100"] = hey(url, d, False)
            mine = tcpstress(f"127.0.0.1:{port}", d, w, keep_args)
            goals = {list(peers)[0]: 0.5, **({list(peers)[1]: 1.2} if has_hey else {})}
            section("keep-alive: 100 connections, nginx 1 worker", f"{ours} --keepalive -c 100", mine, peers,
                    goals, {list(peers)[0]: 3.0})
            closed_keepalive_cpu = mine.cpu_us
            closed_wrk_cpu = peers["wrk -t2 -c100"].cpu_us
        if "tls" in only:
            peers = {"wrk -t2 -c100 -H 'Connection: close' https://": wrk(tls_url, d, True)}
            mine = tcpstress(tls_url, d, w, churn_args + tls_args)
            section("TLS churn (self-signed ECDSA P-256; tcpstress resumes sessions, its default)",
                    f"{ours} --no-keepalive --close server -c 100", mine, peers, {list(peers)[0]: 0.8},
                    {list(peers)[0]: 1.5})
            # The same run through CPython's ssl module (the backend before tls_native), beside it.
            stdlib = tcpstress(tls_url, d, w, churn_args + tls_args, {"TCPSTRESS_TLS_BACKEND": "ssl"})
            section("TLS churn, CPython's ssl module (TCPSTRESS_TLS_BACKEND=ssl)",
                    f"{ours} ... (ssl module)", stdlib, peers, {list(peers)[0]: 0.8}, {list(peers)[0]: 1.5})
            peers = {"wrk -t2 -c100 https://": wrk(tls_url, d, False)}
            mine = tcpstress(tls_url, d, w, keep_args + tls_args)
            section("TLS keep-alive", f"{ours} --keepalive -c 100", mine, peers, {list(peers)[0]: 0.5},
                    {list(peers)[0]: 3.0})
        if "open" in only:
            rate = 10000
            open_run = tcpstress(f"127.0.0.1:{port}", d, w, ["--model", "open", "--rate", str(rate)] + keep_args)
            print(f"\nopen model at {rate:,}/s (keep-alive, 100 connections, {w} workers): achieved "
                  f"{open_run.rate:,.1f}/s = {open_run.rate / rate:.4f} of the rate (goal >= 0.99), "
                  f"kept_up {open_run.extra['kept_up']}, late starts {open_run.extra['late_starts']:,}, "
                  f"errors {open_run.extra['errors']:,}, {open_run.cpu_us:.1f} CPU us/request, "
                  f"runner {open_run.extra['runner'] * 100:.1f}% of a core")
            if closed_keepalive_cpu and open_run.cpu_us:
                ratio = open_run.cpu_us / closed_keepalive_cpu
                print(f"  CPU per request, open / closed keep-alive at full speed: {ratio:.2f} (goal <= 1.5)  "
                      f"{'ok' if ratio <= 1.5 else 'ABOVE GOAL'}")
            # The closed model held near the same rate by a think time (100 connections, 6 ms
            # each; its rate is printed): what pacing itself costs, wake-ups and cold caches,
            # without the open model's schedule.
            paced = tcpstress(f"127.0.0.1:{port}", d, w, keep_args + ["--think-time", "6ms"])
            if paced.cpu_us and open_run.cpu_us:
                print(f"  closed model paced by a 6 ms think time: {paced.rate:,.0f}/s, {paced.cpu_us:.1f} CPU "
                      f"us/request; open / paced closed: {open_run.cpu_us / paced.cpu_us:.2f}")
            if shutil.which("wrk2"):
                # wrk2 (not in Debian; used when on the PATH): the peer's own open model at the same rate.
                peer = wrk2(url, d + 2, rate)
                if peer.cpu_us and open_run.cpu_us and closed_wrk_cpu:
                    print(f"  wrk2 -t2 -c100 -R{rate}: {peer.cpu_us:.1f} CPU us/request = "
                          f"{peer.cpu_us / closed_wrk_cpu:.2f} x wrk's closed model; tcpstress / wrk2: "
                          f"{open_run.cpu_us / peer.cpu_us:.2f}")
            else:
                print("  wrk2: not installed (not packaged in Debian); its row is left out")
            # Open-model churn: asked for more than one worker can start, it starts what it can.
            wrk1 = wrk(url, d, True, threads=1)
            churn = tcpstress(f"127.0.0.1:{port}", d, 1, ["--model", "open", "--rate", str(int(2 * wrk1.rate))]
                              + churn_args)
            section(f"open-model churn, one worker asked for {int(2 * wrk1.rate):,}/s (twice what wrk -t1 does)",
                    "tcpstress --workers 1 --model open --no-keepalive --close server", churn,
                    {"wrk -t1 -c100 -H 'Connection: close'": wrk1}, {"wrk -t1 -c100 -H 'Connection: close'": 0.5},
                    {})
        if "startup" in only:
            startup(w)
    finally:
        for proc in (nginx, nginx_tls):
            proc.send_signal(signal.SIGQUIT)
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
