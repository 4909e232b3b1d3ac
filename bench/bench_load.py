#!/usr/bin/env python3
"""Load-generation speed against peer tools, measured in the same run.

Starts Debian's nginx (one worker, access log off) on a free loopback port,
then runs each tool against it for the same duration and prints each
tcpstress figure as a ratio to the peers'. Absolute numbers on a shared
2-core machine mean little; ratios taken minutes apart mean a bit more.

    python bench/bench_load.py [--duration 5] [--repeat 1]

Targets (issue 3): churn >= 0.75 x wrk -t2 and >= 1.0 x hey -disable-keepalive;
keep-alive >= 0.5 x wrk and >= 1.2 x hey; open model within 1% of the rate.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
        events {{ worker_connections 8192; }}
        http {{
            access_log off; keepalive_requests 10000000;
            client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
            uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
            server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "hello from nginx\\n"; }} }}
        }}"""))
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


def wrk(url: str, duration: int, close: bool, threads: int = 2) -> float:
    cmd = ["wrk", f"-t{threads}", "-c100", f"-d{duration}s", url] + (["-H", "Connection: close"] if close else [])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def hey(url: str, duration: int, close: bool) -> float:
    cmd = ["hey", "-z", f"{duration}s", "-c", "100"] + (["-disable-keepalive"] if close else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def tcpstress(port: int, duration: int, args: list[str]) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix="bench-")) / "run"
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--target", f"127.0.0.1:{port}",
           "--duration", f"{duration}s", "--out", str(out_dir)] + args
    subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    summary = json.loads((out_dir / "result.json").read_text())["summary"]
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    missing = [t for t in ("nginx", "wrk", "hey") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing peer tools: {', '.join(missing)} (apt-get install nginx-light wrk hey)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    nginx, port = start_nginx(tmp)
    url = f"http://127.0.0.1:{port}/"
    d = args.duration
    w = ["--workers", str(args.workers)]
    rows = []
    try:
        churn = {
            "wrk -t2 -c100 -H 'Connection: close'": wrk(url, d, True),
            "hey -c 100 -disable-keepalive": hey(url, d, True),
            # wrk's "Connection: close" and hey's -disable-keepalive both ask the
            # server to close first; --close server does the same (the client
            # closing first would pile TIME_WAIT on the client and make every
            # connect() search a crowded port range: a different experiment).
            f"tcpstress --no-keepalive --close server -c 100 --workers {args.workers}":
                tcpstress(port, d, ["--no-keepalive", "--close", "server", "--connections", "100"] + w)["requests_per_s"],
        }
        keep = {
            "wrk -t2 -c100": wrk(url, d, False),
            "hey -c 100": hey(url, d, False),
            f"tcpstress --keepalive -c 100 --workers {args.workers}":
                tcpstress(port, d, ["--keepalive", "--connections", "100"] + w)["requests_per_s"],
        }
        rate = 10000
        open_run = tcpstress(port, d, ["--model", "open", "--rate", str(rate), "--connections", "100"] + w)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    def table(title: str, figures: dict, goals: dict) -> None:
        print(f"\n{title}")
        ours = list(figures.values())[-1]
        for name, value in figures.items():
            print(f"  {name:<48} {value:>10,.0f} req/s")
        for peer, goal in goals.items():
            ratio = ours / figures[peer]
            print(f"  ratio tcpstress / {peer.split()[0]:<5} {ratio:5.2f}   (goal >= {goal})  "
                  f"{'ok' if ratio >= goal else 'BELOW GOAL'}")
            rows.append((title, peer.split()[0], ratio, goal))

    table("churn: one request per connection, 100 connections, nginx 1 worker", churn,
          {list(churn)[0]: 0.75, list(churn)[1]: 1.0})
    table("keep-alive: 100 connections, nginx 1 worker", keep, {list(keep)[0]: 0.5, list(keep)[1]: 1.2})
    achieved = open_run["requests_per_s"]
    print(f"\nopen model at {rate:,}/s (keep-alive, 100 connections): achieved {achieved:,.1f}/s "
          f"= {achieved / rate:.4f} of the rate, late starts {open_run['late_starts']:,}, "
          f"errors {open_run['error_total']:,}")


if __name__ == "__main__":
    main()
