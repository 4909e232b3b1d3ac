"""Capacity search against a capacity we can compute: nginx's limit_req on loopback, with
nginx's access log as the witness; and a starved generator that must say so.

Run under the load lock: flock /tmp/tcpstress-load.lock pytest tests/integration/test_capacity.py
"""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Nginx, run_cli

LIMIT = 1000  # nginx's limit_req rate, requests per second


@pytest.fixture
def limited_nginx(tmp_path):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed")
    # limit_req acts in nginx's preaccess phase: a location that answers with `return`
    # (rewrite phase) is never limited, so this one answers with a content handler
    # (empty_gif). $server_name is empty without a server_name, and an empty key is
    # not limited either.
    n = Nginx(tmp_path / "nginx", log_format="$status",
              http_extra=f"limit_req_zone $server_name zone=one:1m rate={LIMIT}r/s;",
              locations=("server_name capacity.test; location /limited { limit_req zone=one burst=20 nodelay; "
                         "limit_req_status 503; empty_gif; }"))
    yield n
    n.stop()


@pytest.mark.nginx
def test_search_finds_nginx_limit_req_rate_and_names_http_503(tmp_path, limited_nginx):
    out = tmp_path / "search"
    proc = run_cli("capacity", "--target", f"http://127.0.0.1:{limited_nginx.port}/limited",
                   "--slo", "error_rate < 1%", "--rate", "500", "--step", "2s", "--warmup", "0s",
                   "--workers", "1", "--connections", "20", "--max-steps", "12", "--no-report", "--json",
                   "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["status"] == "found"
    assert abs(answer["capacity"] - LIMIT) <= 0.1 * LIMIT, answer
    lo, hi = answer["bracket"]
    assert lo <= LIMIT * 1.1 and hi > lo
    assert answer["limit"]["name"].startswith("HTTP 503")
    # The witness: what nginx logged. With no warm-up every request it saw was measured by
    # one of the steps; only the last requests of a step may still be in flight at its end.
    limited_nginx.stop()
    logged = Counter(limited_nginx.log_entries())
    saved = json.loads((out / "capacity.json").read_text())
    steps = saved["steps"]
    counted_503 = sum(dict(s["error_names"]).get("HTTP 503", 0) for s in steps)
    counted_ok = sum(s["requests"] for s in steps)
    assert counted_503 > 0
    assert counted_503 <= logged["503"] <= counted_503 + 20 * len(steps)
    assert counted_ok <= logged["200"] <= counted_ok + 20 * len(steps)
    # The passing side served about what it was asked; each failing step's 503s are its excess over the limit.
    for s in steps:
        assert len(list((out).glob(f"step-{s['index']:02d}-*"))) == 1
        if s["passed"]:
            assert s["error_rate"] < 0.01
        else:
            attempts = s["requests"] + s["errors"]
            excess = max(0.0, 1 - LIMIT / s["rate"])
            assert abs(s["error_rate"] - excess) < 0.03 + 25 / attempts, s
    assert (out / "capacity.png").stat().st_size > 10_000


@pytest.mark.nginx
def test_a_starved_generator_reports_generator_limited(tmp_path, nginx):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: one for the starved generator, one for nginx")
    core = cpus[0]
    # A busy loop on the generator's core, bounded in time, so the generator gets about half of it.
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 240\nwhile time.time() < end: pass"])
    try:
        os.sched_setaffinity(hog.pid, {core})
        out = tmp_path / "search"
        proc = run_cli("capacity", "--target", f"http://127.0.0.1:{nginx.port}/",
                       "--slo", "corrected.p99 < 50ms", "--slo", "error_rate < 1%",
                       "--rate", "1000", "--step", "2s", "--workers", "1", "--connections", "50",
                       "--max-rate", "64000", "--max-steps", "10", "--no-report", "--json", "--out", out,
                       timeout=300, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 1, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["status"] == "generator-limited", answer
    assert answer["capacity"] is None and answer["bracket"] is None
    assert answer["message"].startswith("generator-limited at ")
    assert "not the server's capacity" in answer["message"] and "--workers or shards" in answer["message"]
    # The server was not what failed: nginx answered every request it logged with 200.
    nginx.stop()
    statuses = Counter(line.split('"')[2].split()[0] for line in nginx.log_entries() if line.count('"') >= 2)
    assert set(statuses) <= {"200"}, statuses
    steps = json.loads((out / "capacity.json").read_text())["steps"]
    last = steps[-1]
    assert last["generator_limited"]
    # What the generator started fell short of the schedule, or it was late, or it kept the
    # schedule but its worker waited for the core the busy loop holds (schedstat, read from
    # the step's own result): its own limit each time.
    if last["requests_per_s"] >= last["rate"] and last["kept_up"]:
        assert "waited for a CPU" in last["generator_limited"], last
        step = json.loads((Path(last["folder"]) / "result.json").read_text())
        assert step["summary"]["processes"]["generator"]["wait_mean"] >= 20, step["summary"]["processes"]


@pytest.mark.nginx
def test_stages_per_stage_counts_match_nginx_log(tmp_path):
    """--stages 200:2s,600:2s with two workers: each stage's requests, by nginx's own clock ($msec)."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed")
    n = Nginx(tmp_path / "nginx", log_format="$msec $status")
    try:
        out = tmp_path / "run"
        run_cli("run", "--target", f"127.0.0.1:{n.port}", "--stages", "200:2s,600:2s", "--workers", "2",
                "--connections", "20", "--no-report", "--out", out, check=True)
    finally:
        n.stop()
    data = json.loads((out / "result.json").read_text())
    assert data["stages"] == [{"index": 0, "rate": 200.0, "lasts": 2.0, "ramp": 0.0, "intervals": [0, 2]},
                              {"index": 1, "rate": 600.0, "lasts": 2.0, "ramp": 0.0, "intervals": [2, 4]}]
    stages = data["summary"]["stages"]
    t0 = data["t0_epoch"]
    logged = [float(line.split()[0]) - t0 for line in n.log_entries()]
    for st, (lo, hi) in zip(stages, [(0, 2), (2, 4)]):
        in_nginx = sum(1 for t in logged if lo <= t < hi)
        # nginx logs at the response's end, we count by the second it completed in:
        # only requests completing right at a boundary may land on the other side.
        assert abs(in_nginx - st["requests"]) <= 0.03 * st["requests"] + 5, (st["requests"], in_nginx)
        assert abs(st["requests_per_s"] - st["rate"]) <= 0.05 * st["rate"], st
        assert st["latency_us"]["total"]["count"] == st["requests"]  # its own histogram, not the run's
    assert sum(st["requests"] for st in stages) == data["summary"]["requests"]
