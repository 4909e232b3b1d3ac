"""Two real runs started at once with one --out (issue #17 item 11): one runs, the other writes nothing.

The witnesses are the folder's own files, read without tcpstress: one
.hlog header per latency log, one CSV header, and as many .hlog interval
lines as result.json has intervals (two runs interleaving would double them).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_two_runs_with_the_same_out_started_together(tmp_path):
    out = tmp_path / "same"
    argv = [sys.executable, "-m", "tcpstress", "run", "--builtin-server", "--connections", "2", "--duration", "1s",
            "--out", str(out), "-q"]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert loser.count("\n") == 1 and "another run is writing into this folder" in loser or \
        "exists and is not an empty folder" in loser
    data = json.loads((out / "result.json").read_text())
    assert data["partial"] is False
    hlog = (out / "latency-total.hlog").read_text().splitlines()
    assert sum(line.startswith("#[StartTime") for line in hlog) == 1
    assert len([line for line in hlog if line and line[0].isdigit()]) == len(data["intervals"])
    samples = (out / "samples.csv").read_text().splitlines()
    assert sum(line.startswith("t,") for line in samples) == 1
