"""Sockets an earlier run left (there at the first sample, before the load) are not this run's."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from tcpstress.report.diagnose import comparison_rows, comparison_table, load_run
from tcpstress.results import load_result
from tcpstress.summary import format_summary

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
LEFT = 8164


def _with_leftover_time_wait(tmp_path: Path) -> Path:
    """The clean keep-alive fixture, as if an earlier churn run had left 8,164 TIME_WAIT draining."""
    folder = tmp_path / "clean"
    shutil.copytree(RUNS / "clean", folder)
    path = folder / "samples.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["TIME_WAIT"] = str(max(LEFT - 40 * i, 0))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    data = json.loads((folder / "result.json").read_text())
    for ns in data["summary"]["states"]:
        data["summary"]["states"][ns]["TIME_WAIT"] = {"peak": LEFT, "final": 0, "start": LEFT}
    (folder / "result.json").write_text(json.dumps(data))
    return folder


def test_table_does_not_count_an_earlier_runs_time_wait(tmp_path):
    run = load_run(_with_leftover_time_wait(tmp_path))
    rows = comparison_rows([run])
    headers, cells = comparison_table(rows)
    cell = cells[0][headers.index("peak TIME_WAIT")]
    assert cell.startswith("0") and f"+{LEFT:,} before" in cell
    assert rows[0]["peak_time_wait"] == 0


def test_summary_says_the_time_wait_was_there_before(tmp_path):
    text = format_summary(load_result(_with_leftover_time_wait(tmp_path)))
    assert f"TIME_WAIT 0 (+{LEFT:,} before the run)" in text
    assert f"TIME_WAIT {LEFT:,} " not in text


BOTH_ENDS = "each connection is two ESTABLISHED sockets"


def test_loopback_summary_says_established_counts_both_ends():
    result = load_result(RUNS / "clean")
    assert result.data["scenario"]["target"]["host"] == "127.0.0.1"
    connections = result.data["scenario"]["load"]["connections"]
    established = result.data["summary"]["states"]["host"]["ESTABLISHED"]["peak"]
    assert established >= 2 * connections - 2  # the fixture's sampler saw both ends
    assert BOTH_ENDS in format_summary(result)


def test_separate_client_and_server_namespaces_need_no_both_ends_note():
    assert BOTH_ENDS not in format_summary(load_result(RUNS / "tw_bucket_overflow"))
