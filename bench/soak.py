#!/usr/bin/env python3
"""A long run against the built-in server: does tcpstress's memory stay flat?

    python bench/soak.py [--minutes 10] [--connections 100]

One closed-model churn run with keep-alive off exercises every allocation path
(connect, parse, record, close). The sampler's processes.csv gives the workers'
RSS every second (role "generator"); this script reads the runner's own RSS
from /proc once a second (the sampler runs inside the runner and does not count
it). It prints both per minute and the slope of a least-squares line over the
second half of the run (after the allocators' warm-up), in KiB per minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def slope_per_minute(points: list[tuple[float, int]]) -> tuple[float, float] | None:
    """(KiB per minute, mean MiB) of a least-squares line through the second half of `points`."""
    half = [(t, rss) for t, rss in points if t >= points[-1][0] / 2] if points else []
    n = len(half)
    if n <= 2:
        return None
    mt = sum(t for t, _ in half) / n
    mr = sum(r for _, r in half) / n
    slope = sum((t - mt) * (r - mr) for t, r in half) / sum((t - mt) ** 2 for t, _ in half)
    return slope * 60 / 1024, mr / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=100)
    args = ap.parse_args()
    if not 0.5 <= args.minutes <= 120:
        raise SystemExit(f"--minutes {args.minutes:g} is out of range: 0.5..120")
    out = Path(tempfile.mkdtemp(prefix="soak-")) / "run"
    duration = args.minutes * 60
    cmd = [sys.executable, "-m", "tcpstress", "run", "-q", "--builtin-server", "--no-keepalive",
           "--connections", str(args.connections), "--duration", f"{duration:.0f}s",
           "--sample-interval", "1s", "--out", str(out)]
    runner: list[tuple[float, int]] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    started = time.monotonic()
    while proc.poll() is None:
        rss = rss_bytes(proc.pid)
        if rss:
            runner.append((time.monotonic() - started, rss))
        time.sleep(1.0)
    rows = [r for r in csv.DictReader(open(out / "processes.csv")) if r["role"] == "generator"]
    workers = [(float(r["t"]), int(float(r["rss_bytes"]))) for r in rows
               if 0 <= float(r["t"]) <= duration and float(r["rss_bytes"]) > 0]
    # The runner's clock starts with the command, a little before the load: samples past
    # `duration` may be the report's (matplotlib's import alone is ~40 MiB), so they are left out.
    runner = [(t, rss) for t, rss in runner if t <= duration]
    summary = json.loads((out / "result.json").read_text())["summary"]
    print(f"soak: {args.minutes:g} min, {summary['requests']:,} requests, {summary['error_total']:,} errors, "
          f"{summary['requests_per_s']:,.0f} req/s")
    for half_minutes in range(int(args.minutes * 2) + 1):
        at = half_minutes * 30
        near = [rss for t, rss in workers if at <= t < at + 1.5]
        # 2 s in: at 0 s the runner is an interpreter still starting (1.8 MiB).
        mine = [rss for t, rss in runner if at + 2 <= t < at + 4]
        if near or mine:
            print(f"  t={at / 60:>4.1f} min  workers' RSS {near[0] / 2**20 if near else float('nan'):8.1f} MiB   "
                  f"runner's RSS {mine[0] / 2**20 if mine else float('nan'):8.1f} MiB")
    for who, points in (("workers", workers), ("runner", runner)):
        fit = slope_per_minute(points)
        if fit:
            kib, mib = fit
            print(f"  {who}: second-half slope {kib:+.1f} KiB per minute "
                  f"({kib / 1024 / mib * 100:+.2f}% of {mib:.0f} MiB; flat: within ±1% a minute) "
                  f"{'flat' if abs(kib / 1024) < 0.01 * mib else 'NOT FLAT'}")


if __name__ == "__main__":
    main()
