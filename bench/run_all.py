#!/usr/bin/env python3
"""`make bench`: every benchmark, each printing ratios against a peer measured in the same run."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

STEPS = [
    ("load speed and CPU per request against wrk (nginx, 1 worker; plain and TLS)", [str(HERE / "bench_load.py")]),
    ("report rendering time (fixture runs: one run, 7 variants)", [str(HERE / "bench_report.py")]),
    ("60,000 held connections and memory per connection", [str(HERE / "bench_connections.py")]),
    ("state counting cost against ss (needs root)", [str(HERE / "bench_sampler.py")]),
    ("soak: workers' and runner's memory over time (4 minutes; --minutes 10 for the full soak)",
     [str(HERE / "soak.py"), "--minutes", "4"]),
]

failed = 0
for title, argv in STEPS:
    print(f"\n=== {title}", flush=True)
    if "sampler" in argv[0] and os.geteuid() != 0:
        print("skipped: needs root (network namespaces)")
        continue
    failed += subprocess.run([sys.executable, *argv]).returncode != 0
sys.exit(1 if failed else 0)
