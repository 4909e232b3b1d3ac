#!/usr/bin/env python3
"""Hold many concurrent keep-alive connections and measure the generator's memory per connection.

    python bench/bench_connections.py [--connections 60000] [--workers 4] [--sources 127.0.0.2-127.0.0.9]

The built-in server runs with several SO_REUSEPORT processes and the generator
with several workers, because one process may hold at most 20,000 open files
here. Each connection sends a request every --think-time, so the machine is
not saturated by requests while it holds the connections. Independent
witnesses: `ss` run by this script while the load runs (established sockets on
the server port), and the kernel's own counts sampled by tcpstress.

Goal (issue 3): 60,000 established connections with 8 loopback source
addresses, generator RSS at most 8 KiB per held connection.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ss_established(port: int) -> int:
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=60000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--server-workers", type=int, default=4)
    ap.add_argument("--sources", default="127.0.0.2-127.0.0.9")
    ap.add_argument("--think-time", default="10s")
    ap.add_argument("--ramp", default="15s")
    ap.add_argument("--duration", default="30s")
    args = ap.parse_args()

    server = subprocess.Popen([sys.executable, "-m", "tcpstress", "serve", "--port", "0", "--workers",
                               str(args.server_workers), "--backlog", "4096", "--max-seconds", "300"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    port = int(re.search(r":(\d+) ", server.stdout.readline()).group(1))
    out = Path(tempfile.mkdtemp(prefix="bench-conn-")) / "run"
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--target", f"127.0.0.1:{port}",
           "--connections", str(args.connections), "--workers", str(args.workers), "--source", args.sources,
           "--think-time", args.think_time, "--ramp", args.ramp, "--duration", args.duration,
           "--request-timeout", "20s", "--connect-timeout", "20s", "--sample-interval", "1s", "--out", str(out)]
    started = time.monotonic()
    load = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak_ss = 0
    while load.poll() is None:
        time.sleep(2)
        peak_ss = max(peak_ss, ss_established(port))
    load.communicate()
    server.send_signal(signal.SIGTERM)
    served = server.communicate(timeout=30)[0]
    res = json.loads((out / "result.json").read_text())
    s = res["summary"]
    gen = s.get("processes", {}).get("generator", {})
    rss = gen.get("rss_peak", 0)
    print(f"asked for {args.connections:,} connections, {args.workers} workers, sources {args.sources}, "
          f"server {args.server_workers} processes; run took {time.monotonic() - started:.0f} s")
    print(f"  ss (witness): peak {peak_ss:,} established server-side sockets on port {port}")
    est = s.get("states", {}).get("host", {}).get("ESTABLISHED", {}).get("peak", 0)
    print(f"  tcpstress sampler: peak ESTABLISHED {est:,} (both ends on loopback: /2 = {est // 2:,} connections)")
    print(f"  requests {s['requests']:,}, connections opened in the measured phase {s['connections']:,}, "
          f"errors {s['errors']}")
    if rss and peak_ss:
        print(f"  generator RSS peak {rss / 2**20:,.0f} MiB over {args.workers} processes = "
              f"{rss / peak_ss / 1024:.2f} KiB per held connection (goal <= 8 KiB)")
    print(f"  server: {served.strip().splitlines()[-1] if served.strip() else 'no count'}")


if __name__ == "__main__":
    main()
