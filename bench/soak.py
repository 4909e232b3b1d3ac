#!/usr/bin/env python3
"""A long run against the built-in server: does the generator's memory stay flat?

    python bench/soak.py [--minutes 10] [--connections 100]

Keep-alive and churn alternate each minute would need two runs; one closed-model
churn run with keep-alive off exercises every allocation path (connect, parse,
record, close). The sampler's processes.csv gives the generator's RSS every
second; this prints it per minute and the slope of a least-squares line over
the second half of the run (after warm-up of the allocator), in KiB per minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=100)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="soak-")) / "run"
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--builtin-server", "--no-keepalive",
           "--connections", str(args.connections), "--duration", f"{args.minutes * 60:.0f}s",
           "--sample-interval", "1s", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    rows = [r for r in csv.DictReader(open(out / "processes.csv")) if r["role"] == "generator"]
    duration = args.minutes * 60
    points = [(float(r["t"]), int(float(r["rss_bytes"]))) for r in rows
              if 0 <= float(r["t"]) <= duration and float(r["rss_bytes"]) > 0]
    summary = json.loads((out / "result.json").read_text())["summary"]
    print(f"soak: {args.minutes:g} min, {summary['requests']:,} requests, {summary['error_total']:,} errors, "
          f"{summary['requests_per_s']:,.0f} req/s")
    for minute in range(int(args.minutes) + 1):
        near = [rss for t, rss in points if minute * 60 <= t < minute * 60 + 1.5]
        if near:
            print(f"  t={minute:>3} min  generator RSS {near[0] / 2**20:8.1f} MiB")
    half = [(t, rss) for t, rss in points if t >= points[-1][0] / 2]
    n = len(half)
    if n > 2:
        mt = sum(t for t, _ in half) / n
        mr = sum(r for _, r in half) / n
        slope = sum((t - mt) * (r - mr) for t, r in half) / sum((t - mt) ** 2 for t, _ in half)
        print(f"  second-half slope: {slope * 60 / 1024:+.1f} KiB per minute "
              f"(flat means |slope| well under 1% of {mr / 2**20:.0f} MiB per minute)")


if __name__ == "__main__":
    main()
