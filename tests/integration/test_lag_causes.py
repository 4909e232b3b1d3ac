"""A late open model blamed on what really held it back, in real runs on loopback.

- a CPU hog pinned to the core the single load worker is pinned to, the server
  on the other core: the lag is the host's, not the server's;
- the built-in server waiting 20 ms per response, 5 connections, 1,000/s asked:
  the lag is the server's (5 / 20 ms = 250/s), not the generator's.

The witnesses are outside the report: the hog's own CPU time, and the built-in
server's count of requests it served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tcpstress.report.diagnose import diagnose, load_run
from tests.conftest import ROOT

SECONDS = 4

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"),
                                reason="needs two cores and sched_setaffinity")


def _lag(folder):
    hits = [f for f in diagnose([load_run(folder)]) if f.rule == "open_model_lag"]
    assert len(hits) == 1, [f.title for f in diagnose([load_run(folder)])]
    return hits[0]


def test_cpu_hog_on_the_generators_core_is_blamed_on_the_host(tmp_path, server_factory):
    server = server_factory(protocol="http")
    os.sched_setaffinity(server.proc.pid, {1})
    # Busy loops on core 0, bounded to the run's length (and killed after it in any case).
    # At nice -10 where allowed (root): at equal priority the scheduler favours the
    # generator, which sleeps between operations, and on a fast machine it kept
    # 8,000/s on half of the core beside three hogs.
    hog = ("import os, time\nos.sched_setaffinity(0, {0})\ntry:\n    os.nice(-10)\nexcept OSError:\n    pass\n"
           "end = time.monotonic() + %d\nwhile time.monotonic() < end:\n    pass\n" % (SECONDS + 6))
    # Three: with two the generator (a third of the core) sometimes kept 8,000/s.
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(3)]
    out = tmp_path / "run"
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "tcpstress", "run", "--target", f"127.0.0.1:{server.port}", "--model", "open",
             "--rate", "8000", "-c", "50", "--workers", "1", "--duration", f"{SECONDS}s", "--out", str(out),
             "--no-report"],
            preexec_fn=lambda: os.sched_setaffinity(0, {0}), capture_output=True, text=True, timeout=90, cwd=ROOT)
        elapsed = time.monotonic() - started
        hog_cpu = [float(open(f"/proc/{h.pid}/stat").read().rsplit(")", 1)[1].split()[11]) / os.sysconf("SC_CLK_TCK")
                   for h in hogs]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    server.stop()
    assert proc.returncode == 0, proc.stderr
    # The hogs really took their share of core 0 while the run lasted.
    assert sum(hog_cpu) >= 0.3 * elapsed
    finding = _lag(out)
    assert finding.evidence["cause"] == "host", finding.text
    assert "load.workers" not in finding.advice
    summary = json.loads((out / "result.json").read_text())["summary"]
    assert summary["kept_up"] is False
    assert "behind schedule: host busy" in proc.stdout


def test_slow_builtin_server_is_blamed_on_the_server(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tcpstress", "run", "--builtin-server", "--server-delay", "20ms", "--model", "open",
         "--rate", "1000", "-c", "5", "--workers", "1", "--duration", "3s", "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "result.json").read_text())
    served = data["summary"]["server"]["requests"]
    # The server's own count: 5 connections at >= 20 ms each cannot pass 250/s, warm-up included.
    assert served <= 250 * (data["summary"]["duration_s"] + 1.5)
    finding = _lag(out)
    assert finding.evidence["cause"] == "server", finding.text
    assert "generator was waiting" in finding.advice
    assert "behind schedule: server too slow" in proc.stdout
