"""The side-by-side tables fit a 120-column terminal; the HTML folds the knobs that did not differ."""

from __future__ import annotations

from pathlib import Path

from tcpstress.report.diagnose import load_runs
from tcpstress.report.html import knobs_html
from tcpstress.report.tables import knob_table
from tcpstress.summary import format_comparison

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def test_every_fixture_comparison_fits_120_columns():
    for name in ("time_wait_exhaustion", "syn_flood", "lag_causes", "tw_bucket_overflow"):
        text = format_comparison(load_runs([RUNS / name]))
        assert max(len(line) for line in text.splitlines()) <= 120, (name, text)


def test_counters_in_a_second_table_and_zero_columns_dropped():
    text = format_comparison(load_runs([RUNS / "syn_flood"]))
    first, second = text.split("\n\n")
    assert "SyncookiesSent" in second and "SyncookiesSent" not in first
    # No run of lag_causes failed: no errors column at all.
    assert "errors" not in format_comparison(load_runs([RUNS / "lag_causes"])).splitlines()[0]


def test_html_shows_the_knobs_that_differ_and_folds_the_rest():
    runs = load_runs([RUNS / "time_wait_exhaustion"])
    _, rows, differs = knob_table(runs)
    html = knobs_html(runs)
    head, folded = html.split("<details>")
    for row, d in zip(rows, differs):
        assert (row[1] in head) == d or (d and row[1] in head)
    assert "tcp_tw_reuse" in head and f"other {differs.count(False)} knobs" in folded
