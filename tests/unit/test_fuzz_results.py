"""Hostile run folders: whatever result.json holds, `tcpstress report` gives a report or one line.

The scenario-file fuzzing (test_fuzz_input.py) applied to result folders: a
valid result.json (the clean fixture's) with fields replaced by any JSON
value, or removed, must either be refused with one ResultError line or go
through loading, every rule and the tables without an exception (the figures
are drawn from the same loaded data; test_report_renders_hostile_text draws
them for the text that reaches matplotlib).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpstress.report.diagnose import comparison_rows, comparison_table, diagnose, format_findings, load_runs
from tcpstress.results import ResultError

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
CLEAN = json.loads((RUNS / "clean" / "result.json").read_text())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in the JSON tree, as a tuple of keys and indexes (intervals: the first two only)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:2]):
            out += _paths(v, prefix + (i,))
    return out


PATHS = _paths(CLEAN)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["y", "$\\nosuchcmd$", "<b>x</b>", "-1", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
edits = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(st.just("delete"), values)), min_size=1, max_size=3)


def _apply(data: dict, path: tuple, value: Any) -> None:
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node or isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return  # an earlier edit replaced the branch
    last = path[-1]
    if isinstance(node, dict):
        if value == "delete":
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if value == "delete":
            del node[last]
        else:
            node[last] = value


def _everything_the_report_reads(folder: Path) -> None:
    runs = load_runs([folder])
    findings = diagnose(runs)
    format_findings(findings)
    comparison_table(comparison_rows(runs))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzzrun") / "run"
    shutil.copytree(RUNS / "clean", path)
    return path


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_any_edit_of_result_json_reports_or_fails_with_one_line(folder, edits):
    data = json.loads(json.dumps(CLEAN))
    for path, value in edits:
        _apply(data, path, value)
    (folder / "result.json").write_text(json.dumps(data))
    try:
        _everything_the_report_reads(folder)
    except ResultError as e:
        assert "\n" not in str(e) and str(e).startswith(str(folder))


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["summary"]["errors"].update(ECONNRESET="y"), "summary.errors"),
    (lambda d: d.update(intervals=[{"t": 0}]), "intervals[0] lacks duration, requests, errors"),
    (lambda d: d["intervals"][3]["errors"].update(EPIPE=-1), "intervals[3].errors"),
    (lambda d: d.update(name=7), "name = 7"),
    (lambda d: d["scenario"]["load"].update(connections="many"), "scenario.load.connections"),
    (lambda d: d["summary"]["latency_us"]["total"].update(p99="slow"), "summary.latency_us"),
    (lambda d: d["summary"]["workers"].append("w"), "summary.workers[1]"),
])
def test_hand_edits_of_the_issue_are_named(tmp_path, edit, words):
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    edit(data)
    (folder / "result.json").write_text(json.dumps(data))
    with pytest.raises(ResultError, match=r"^[^\n]*$") as e:
        load_runs([folder])
    assert words in str(e.value) and "hand-edited" in str(e.value)


@pytest.mark.parametrize("text", ["$\\nosuchcmd$", "x$\\nosuchcmd$", "$a^{$", "50$ and 60$"])
def test_report_renders_hostile_text(tmp_path, text):
    # A name, a variant and an error name reach figure titles, legends and labels: mathtext
    # would parse "$...$" in them and raise on an unknown command.
    from tcpstress.report.render import render_report

    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["name"], data["variant"] = text, text
    data["intervals"][2]["errors"] = {text: 3}
    data["summary"]["errors"], data["summary"]["error_total"] = {text: 3}, 3
    (folder / "result.json").write_text(json.dumps(data))
    page = render_report([folder], tmp_path / "report").read_text()
    assert text.replace("<", "&lt;") in page or text in page


def test_report_md_does_not_copy_raw_html(tmp_path):
    from tcpstress.report.render import render_report

    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    data["scenario"]["description"] = "<script>alert(1)</script><img src=x onerror=alert(2)> & more"
    (folder / "result.json").write_text(json.dumps(data))
    render_report([folder], tmp_path / "report")
    for page in ("report.md", "report.html"):
        text = (tmp_path / "report" / page).read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize("edit", [
    lambda d: d["summary"]["errors"].update(ECONNRESET="y"),
    lambda d: d.update(intervals=[{"t": 0}]),
    lambda d: d.update(name=["$\\nosuchcmd$"]),
])
def test_report_command_refuses_a_hand_edited_folder_in_one_line(tmp_path, edit):
    from tests.conftest import run_cli

    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    data = json.loads((folder / "result.json").read_text())
    edit(data)
    (folder / "result.json").write_text(json.dumps(data))
    proc = run_cli("report", folder, "--out", tmp_path / "rep", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "hand-edited" in proc.stderr
    assert "No problems found" not in proc.stdout
    assert not (tmp_path / "rep").exists()
