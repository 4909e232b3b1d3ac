"""render_report and the figures, on the fixture run folders.

PNGs are checked as files (signature, IHDR size), the page by what it
embeds: the same bytes as the PNG files, every run's name, no scripts and no
outside references.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from tcpstress.report import render as render_module
from tcpstress.report.diagnose import load_runs
from tcpstress.report.plots import (
    FIGURES,
    LIMIT_STYLE,
    colours_for,
    plot_cpu,
    plot_latency,
    plot_states,
    plot_summary,
    plot_throughput,
    png_bytes,
    spectrum,
)
from tcpstress.report.render import render_report
from tcpstress.results import ResultError

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURE_NAMES = [name for name, _, _ in FIGURES]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def comparison_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return render_report([RUNS / "time_wait_exhaustion"], out)


def test_report_files(comparison_report):
    out = comparison_report.parent
    assert comparison_report == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURE_NAMES + ["report.html", "report.md"])


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_figures_are_real_pngs(comparison_report, name):
    data = (comparison_report.parent / name).read_bytes()
    width, height = png_size(data)
    assert len(data) > 8_000
    assert 900 <= width <= 1600 and 300 <= height <= 2400


def test_html_embeds_every_figure(comparison_report):
    html = comparison_report.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    files = [(comparison_report.parent / name).read_bytes() for name in FIGURE_NAMES]
    assert [base64.b64decode(e) for e in embedded] == files


def test_html_is_self_contained(comparison_report):
    html = comparison_report.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "<style>" in html


def test_html_lists_every_variant_and_the_finding(comparison_report):
    html = comparison_report.read_text()
    comparison = json.loads((RUNS / "time_wait_exhaustion" / "comparison.json").read_text())
    table = html[html.index("<h2>Side by side</h2>"):html.index("<h2>Kernel settings")]
    for variant in comparison["variants"]:
        assert f"{variant}</td>" in table
    assert "Ephemeral ports exhausted (EADDRNOTAVAIL)" in html
    assert "net.ipv4.tcp_tw_reuse" in html
    # The knob that differs between variants is highlighted.
    assert re.search(r'<tr class="differs"><td class="l">client</td><td class="l">net.ipv4.tcp_tw_reuse</td>', html)


def test_markdown_has_tables_findings_and_figure_links(comparison_report):
    md = (comparison_report.parent / "report.md").read_text()
    for name in FIGURE_NAMES:
        assert f"]({name})" in md
    for variant in ("baseline", "tw_reuse", "keepalive"):
        assert f"| {variant} |" in md
    assert "**CRITICAL** [baseline] **Ephemeral ports exhausted (EADDRNOTAVAIL)**" in md


def test_several_folders_in_one_report(tmp_path):
    html = render_report([RUNS / "clean", RUNS / "generator_saturated"], tmp_path, title="two runs").read_text()
    assert "<title>two runs</title>" in html
    assert "clean</td>" in html and "generator_saturated</td>" in html
    assert "Generator saturated" in html


def test_refuses_a_truncated_run_and_writes_nothing(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RUNS / "clean", folder)
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[:200])
    out = tmp_path / "out"
    with pytest.raises(ResultError) as e:
        render_report([folder], out)
    assert "\n" not in str(e.value) and "truncated" in str(e.value)
    assert not out.exists()


def test_refuses_no_folders(tmp_path):
    with pytest.raises(ResultError):
        render_report([], tmp_path)


def test_interrupted_render_keeps_the_previous_report(tmp_path, monkeypatch):
    first = render_report([RUNS / "clean"], tmp_path).read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render_module, "render_html", explode)
    with pytest.raises(KeyboardInterrupt):
        render_report([RUNS / "close_wait_leak"], tmp_path)
    assert (tmp_path / "report.html").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- the figures' content -------------------------------------------------------------


@pytest.fixture(scope="module")
def tw_runs():
    return load_runs([RUNS / "time_wait_exhaustion"])


def lines_by_colour(ax, colour: str):
    return [line for line in ax.get_lines() if line.get_color() == colour]


def test_states_figure_draws_time_wait_and_the_port_limit(tw_runs):
    colours = colours_for(tw_runs)
    fig = plot_states(tw_runs, colours)
    ax = next(a for a in fig.axes if a.get_title(loc="left") == "TIME_WAIT")
    baseline = lines_by_colour(ax, colours["baseline"])
    assert baseline and max(baseline[0].get_ydata()) == 1000
    limits = [line for line in ax.get_lines() if line.get_linestyle() == LIMIT_STYLE["linestyle"]]
    assert [list(line.get_ydata()) for line in limits] == [[1000, 1000]]
    # keepalive never held TIME_WAIT: it has no line in that panel.
    assert not lines_by_colour(ax, colours["keepalive"])
    png_bytes(fig)


def test_states_figure_marks_the_server_namespace_and_backlog():
    runs = load_runs([RUNS / "syn_flood"])
    fig = plot_states(runs, colours_for(runs))
    ax = next(a for a in fig.axes if a.get_title(loc="left") == "SYN_RECV")
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert ":" in styles  # server sockets dotted
    limits = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in limits] == [128]
    png_bytes(fig)


def test_same_colour_for_a_run_in_every_figure(tw_runs):
    colours = colours_for(tw_runs)
    assert len(set(colours.values())) == len(tw_runs)
    for draw in (plot_states, plot_throughput, plot_cpu):
        fig = draw(tw_runs, colours)
        legend_colours = [h.get_color() for h in fig.legends[0].legend_handles][: len(tw_runs)]
        assert legend_colours == [colours[r.label] for r in tw_runs]
        png_bytes(fig)


def test_throughput_splits_errors_by_name():
    runs = load_runs([RUNS / "connection_refused"])
    fig = plot_throughput(runs, colours_for(runs))
    errors_ax = fig.axes[2]
    labels = [t.get_text() for t in errors_ax.get_legend().get_texts()]
    assert labels == ["ECONNREFUSED", "ECONNRESET"]
    png_bytes(fig)


def test_latency_spectrum_axis_and_values():
    hist = HdrHistogram(1, 3_600_000_000, 3)
    for ms in range(1, 1001):
        hist.record_value(ms * 1000)
    xs, ys = spectrum(hist)
    assert xs[0] == 1 and xs[-1] == pytest.approx(1000)
    at_99 = ys[min(range(len(xs)), key=lambda i: abs(xs[i] - 100))]
    assert at_99 == pytest.approx(990, rel=0.02)
    assert ys == sorted(ys)


def test_latency_figure_shows_corrected_when_present():
    runs = load_runs([RUNS / "open_model_lag"])
    fig = plot_latency(runs, colours_for(runs))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels()]
    assert {"0%", "90%", "99%", "99.9%"} <= set(labels)
    styles = sorted(line.get_linestyle() for line in ax.get_lines())
    assert styles == ["-", "--"]
    png_bytes(fig)


def test_cpu_figure_shows_the_one_core_line():
    runs = load_runs([RUNS / "generator_saturated"])
    fig = plot_cpu(runs, colours_for(runs))
    gen_ax = fig.axes[0]
    assert 100 in [line.get_ydata()[0] for line in gen_ax.get_lines() if line.get_linestyle() == "--"]
    cpu = next(line for line in gen_ax.get_lines() if line.get_linestyle() == "-")
    assert min(cpu.get_ydata()) > 95
    png_bytes(fig)


def test_summary_is_bars_for_several_runs_and_tiles_for_one(tw_runs):
    fig = plot_summary(tw_runs, colours_for(tw_runs))
    assert sum(len(ax.patches) for ax in fig.axes) >= 3 * 5
    png_bytes(fig)
    one = load_runs([RUNS / "clean"])
    fig = plot_summary(one, colours_for(one))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "8,000" in texts
    png_bytes(fig)


def test_cpu_curve_is_a_trailing_one_second_mean():
    from tcpstress.report.plots import trailing_mean

    ts = [i / 10 for i in range(30)]
    vs = [0.0, 10.0] * 15  # 100 ms samples of 10 ms ticks: 5% on average
    smooth = trailing_mean(ts, vs)
    assert smooth[0] == 0.0 and smooth[1] == 5.0
    assert all(abs(v - 5.0) < 0.6 for v in smooth[10:])  # the level, not the ticks
    assert trailing_mean([], []) == []


@pytest.mark.parametrize(("lab", "host", "shards", "expected"), [
    (True, "198.18.0.1", None, "lab namespaces over veth"),
    (False, "127.0.0.1", None, "loopback"),
    (False, "::1", None, "loopback"),
    # A compose loader reaches its target over the project's network, not loopback.
    (False, "198.18.200.10", None, "routed from the generator's own network namespace"),
    (False, "198.18.200.10", [{}, {}, {}], "routed from the generator's own network namespace; merged from 3 shards"),
])
def test_the_network_fact_says_where_the_load_went(lab, host, shards, expected):
    from tcpstress.report.diagnose import RunData
    from tcpstress.results import RunResult

    data = {"name": "x", "scenario": {"lab": lab, "target": {"host": host, "port": 8080}},
            "target": {"host": host, "port": 8080}, "summary": {}, "intervals": []}
    if shards:
        data["shards"] = shards
    facts = dict(render_module._describe_load(RunData(result=RunResult(data=data, folder=None))))
    assert facts["network"] == expected


def test_evidence_of_a_merged_run_reads_as_text_not_python():
    from tcpstress.report.html import evidence_value

    shards = [{"shard": "tcpstress-loader-1", "EADDRNOTAVAIL": 667, "ports": None, "port_range": "40000-40999"},
              {"shard": "tcpstress-loader-2", "EADDRNOTAVAIL": 1666, "tcp_tw_reuse": "1"}]
    assert evidence_value(shards) == ("(shard tcpstress-loader-1, EADDRNOTAVAIL 667, port_range 40000-40999), "
                                       "(shard tcpstress-loader-2, EADDRNOTAVAIL 1,666, tcp_tw_reuse 1)")
    assert evidence_value({"node-a": 3, "node-b": 0.5}) == "(node-a 3, node-b 0.5)"
    assert evidence_value(True) == "yes" and evidence_value(["a", 1200]) == "a, 1,200"


def test_states_figure_of_a_merged_run_says_each_line_is_a_shard(tmp_path):
    from tcpstress.merge import merge_runs
    from tcpstress.report.rundata import load_run
    from tests.unit.test_diagnose_merged import churn_shard, make_shard, lab_shard

    folders = [make_shard(tmp_path / f"s{i}", i, 2, **churn_shard(f"loader-{i + 1}", 40000, 40999, 900 + i, 5))
               for i in range(2)]
    merge_runs(folders, tmp_path / "m")
    run = load_run(tmp_path / "m")
    fig = plot_states([run], colours_for([run]))
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "one line per shard (2)" in labels
    (tw,) = [ax for ax in fig.axes if ax.get_title(loc="left") == "TIME_WAIT"]
    assert sorted(max(line.get_ydata()) for line in tw.get_lines() if line.get_linestyle() == "-"
                  and max(line.get_ydata(), default=0) > 0) == [900, 901]
    # Shards with client and server namespaces keep the server's dotted line.
    folders = [make_shard(tmp_path / f"l{i}", i, 2, **lab_shard(f"node-{i}", server={"SYN_RECV": [0, 5, 5, 0]}))
               for i in range(2)]
    merge_runs(folders, tmp_path / "lm")
    lab = load_run(tmp_path / "lm")
    fig = plot_states([lab], colours_for([lab]))
    (syn,) = [ax for ax in fig.axes if ax.get_title(loc="left") == "SYN_RECV"]
    assert {line.get_linestyle() for line in syn.get_lines() if max(line.get_ydata(), default=0) > 0} == {":"}
    assert "server namespace" in [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_diagnosing_without_rendering_does_not_import_matplotlib():
    # `run --no-report` diagnoses through render.load_report_runs; matplotlib's import
    # was most of that run's fixed CPU cost (issue 20).
    import subprocess
    import sys

    code = ("import sys, tcpstress.cli\n"
            "from tcpstress.report.render import load_report_runs\n"
            "from tcpstress.report import diagnose\n"
            "from tcpstress.report.verdict import verdict_lines\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
