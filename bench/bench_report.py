#!/usr/bin/env python3
"""How long the report takes: one run, and a 7-variant comparison.

Renders fixture runs from tests/fixtures/runs (no load, no root) in a fresh
process each time, so matplotlib's import is paid as `tcpstress run` pays it,
and prints the median wall time of --repeat renders against issue 20's goals:
<= 1.5 s for one 10 s run, <= 6 s for a 7-variant comparison.

An installed tcpstress has its modules compiled (pip writes the .pyc files;
a checkout writes them on first import). Where PYTHONDONTWRITEBYTECODE is set,
every render would compile tcpstress's ~40 modules again (about 0.2-0.3 s
here), so the renders get a bytecode cache of their own (PYTHONPYCACHEPREFIX,
a temporary folder) and one untimed render fills it first; --cold keeps the
environment as it is.

    python bench/bench_report.py [--repeat 3] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "tests" / "fixtures" / "runs"
RENDER = "import sys; from pathlib import Path; from tcpstress.report.render import render_report; " \
         "render_report([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]))"


def time_render(folders: list[Path], repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (the render and any child it forks)."""
    walls, cpus = [], []
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(prefix="bench-report-"))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", RENDER, str(out), *map(str, folders)], check=True, cwd=ROOT, env=env)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        shutil.rmtree(out, ignore_errors=True)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="no bytecode cache of the bench's own: keep the environment")
    args = ap.parse_args()
    if not 1 <= args.repeat <= 20:
        raise SystemExit(f"--repeat {args.repeat} is out of range: 1..20")
    one = RUNS / "clean"
    seven = sorted(p for p in RUNS.iterdir() if (p / "result.json").exists())[:7]
    env = dict(os.environ)
    cache = None
    if not args.cold:
        cache = tempfile.mkdtemp(prefix="bench-report-pycache-")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        time_render(seven, 1, env)  # compiles every module the renders import, untimed
    try:
        single = time_render([one], args.repeat, env)
        many = time_render(seven, args.repeat, env)  # several run folders: one comparison report
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    print(f"bytecode: {'as the environment has it' if args.cold else 'compiled once, before timing'}; "
          f"cores this process may use: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
    duration = json.loads((one / "result.json").read_text()).get("summary", {}).get("duration_s")
    for what, (wall, cpu), goal in ((f"one run ({one.name}, {duration} s)", single, 1.5),
                                    (f"a {len(seven)}-variant comparison", many, 6.0)):
        print(f"report of {what}: {wall:.2f} s wall, {cpu:.2f} s CPU  (goal <= {goal} s wall)  "
              f"{'ok' if wall <= goal else 'ABOVE GOAL'}")


if __name__ == "__main__":
    main()
