"""Three shards as local processes against one built-in server, merged, checked against the server's count."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from tcpstress import results
from tcpstress.merge import merge_runs
from tests.conftest import ROOT, ServerProcess, run_cli

SHARDS = 3
CONNECTIONS = 6  # closed model: 2 per shard


def _require(command_args: list[str], needle: str) -> None:
    """Fail, never skip, when a flag or command is missing: a rename must not turn this test into a skip."""
    usage = run_cli(*command_args, "--help").stdout
    assert needle in usage, f"`tcpstress {' '.join(command_args)} --help` no longer mentions {needle}"


def run_shards(base: Path, count: int, *args: str) -> tuple[list[Path], list[tuple[str, str]], dict, str]:
    """`count` shards of one run (extra `args`) against one counting server, started on the same
    second; returns (shard folders, each shard's (stdout, stderr), the server's own count, start)."""
    server = ServerProcess(protocol="http", max_seconds=60)
    procs: list[subprocess.Popen] = []
    try:
        # Whole seconds, a few ahead: every shard's processes must be up before it.
        start = datetime.fromtimestamp(math.ceil(time.time()) + 4, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        folders = [base / f"shard-{i}" for i in range(count)]
        for i, folder in enumerate(folders):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tcpstress", "run", "--target", f"127.0.0.1:{server.port}",
                 "--shard", f"{i}/{count}", "--start-at", start, *args, "--quiet", "--out", str(folder)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=90) for p in procs]
        for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
            assert p.returncode == 0, f"shard {i} exited {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
        served = server.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    return folders, outputs, served, start


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory):
    """Run the shards once for the module; yields (shard folders, the server's own count, start)."""
    _require(["run"], "--shard")
    _require(["run"], "--start-at")
    folders, _, served, start = run_shards(tmp_path_factory.mktemp("shards"), SHARDS, "--duration", "2s",
                                           "--connections", str(CONNECTIONS))
    yield folders, served, start


def hlog_total_count(path: Path) -> int:
    """Count through HdrHistogram's own log reader, not ours."""
    reader = HistogramLogReader(str(path), results.new_histogram())
    n = 0
    while (h := reader.get_next_interval_histogram()) is not None:
        n += h.get_total_count()
    return n


def check_merged(folder: Path, shard_folders: list[Path], served: dict, start: str) -> None:
    merged = json.loads((folder / "result.json").read_text())
    s = merged["summary"]
    assert served, "the server did not print its count"
    # The server saw everything the shards counted, plus at most one request in flight per connection.
    assert served["requests"] >= s["requests"] >= served["requests"] - CONNECTIONS
    assert served["connections"] == CONNECTIONS  # keep-alive: the shards' shares add up to the whole
    assert s["connections"] == CONNECTIONS
    assert s["error_total"] == 0, s["errors"]
    assert hlog_total_count(folder / "latency-total.hlog") == s["requests"]
    assert s["latency_us"]["total"]["count"] == s["requests"]
    shard_requests = [json.loads((f / "result.json").read_text())["summary"]["requests"] for f in shard_folders]
    assert all(n > 0 for n in shard_requests)
    assert sum(shard_requests) == s["requests"]
    assert [x["index"] for x in merged["shards"]] == list(range(SHARDS))
    # No shard may start before the agreed second.
    start_epoch = datetime.fromisoformat(start).timestamp()
    assert all(x["t0_epoch"] >= start_epoch - 0.01 for x in merged["shards"])
    roles = {r.split(":")[0] for r in s.get("processes", {})}
    assert len(roles) == SHARDS  # one host label per shard, though they share a hostname
    # Each runner recorded the network namespace it ran in: this test's, as the kernel names it.
    assert {x["netns"] for x in merged["shards"]} == {os.readlink("/proc/self/ns/net")}


def test_merged_shards_match_the_servers_count(shard_run, tmp_path):
    folders, served, start = shard_run
    merge_runs(folders, tmp_path / "merged")
    check_merged(tmp_path / "merged", folders, served, start)


def test_merge_command_line(shard_run, tmp_path):
    _require([], "merge")
    folders, served, start = shard_run
    proc = run_cli("merge", *folders, "--out", tmp_path / "merged", check=True)
    check_merged(tmp_path / "merged", folders, served, start)
    assert f"{json.loads((tmp_path / 'merged' / 'result.json').read_text())['summary']['requests']:,}" in proc.stdout
    again = run_cli("merge", *folders, "--out", tmp_path / "merged")
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr
    missing = run_cli("merge", folders[0], folders[2], "--out", tmp_path / "other")
    assert missing.returncode == 2 and "have 0,2 of 3: missing 1" in missing.stderr


def test_a_missing_flag_fails_instead_of_skipping():
    with pytest.raises(AssertionError, match="no longer mentions --renamed-away"):
        _require(["run"], "--renamed-away")


def test_open_model_shards_are_judged_on_their_share_and_the_merge_on_the_whole(tmp_path):
    """Two shards of a staged open-model run: each ran half the schedule and kept up with it; the
    merge recomputes each stage from the merged histograms against the whole schedule."""
    folders, outputs, served, _ = run_shards(tmp_path, 2, "--stages", "200:2s,400:2s", "--connections", "20",
                                             "--workers", "1", "--no-report")
    for out, _ in outputs:
        assert "fell behind" not in out, out
    for folder in folders:
        s = json.loads((folder / "result.json").read_text())["summary"]
        assert s["kept_up"] is True, s
        assert s["intended_rate"] == 150.0  # half of the 300/s the two stages average
        assert [st["intended_rate"] for st in s["stages"]] == [100.0, 200.0]
        assert all(st["kept_up"] for st in s["stages"])
    merge_runs(folders, tmp_path / "merged")
    merged = json.loads((tmp_path / "merged" / "result.json").read_text())["summary"]
    # The server's count is the witness: both shards' requests, plus at most one in flight per connection.
    assert served["requests"] >= merged["requests"] >= served["requests"] - 40
    assert 0.95 * 1200 <= merged["requests"] <= 1.05 * 1200  # 200/s and 400/s for 2 s each
    assert merged["kept_up"] is True and merged["intended_rate"] == 300.0
    stages = merged["stages"]
    assert [st["intended_rate"] for st in stages] == [200.0, 400.0]
    assert sum(st["requests"] for st in stages) == merged["requests"]
    assert stages[1]["requests"] >= 1.5 * stages[0]["requests"]
    assert stages[1]["latency_us"]["total"]["count"] == stages[1]["requests"]
