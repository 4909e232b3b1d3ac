"""The figures' layout and marks, on the fixture runs (issue 18's figure items, issue 20's speed levers).

The layout is computed in inches instead of by tight_layout/bbox_inches, so
these tests draw each figure and check with the drawn text's own extents that
nothing lands outside the canvas or on top of the title; the marks (markers,
the side at each line's end, the fault's start) are checked on the artists.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from matplotlib.text import Text

from tcpstress.report import plots
from tcpstress.report.diagnose import load_runs
from tcpstress.report.plots import (
    FIGURES,
    FAULT_COLOUR,
    colours_for,
    make_figures,
    plot_cpu,
    plot_latency,
    plot_states,
    plot_throughput,
    png_bytes,
    spread,
)

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def fixture_runs(*names: str):
    return load_runs([RUNS / name for name in names])


@pytest.fixture(scope="module")
def seven():
    """Seven runs of different scenarios in one comparison, as bench/bench_report.py renders them."""
    folders = sorted(p for p in RUNS.iterdir() if (p / "result.json").exists())[:7]
    return load_runs(folders)


def drawn_texts(fig):
    """Every text the figure draws, with its extent in pixels."""
    png_bytes(fig)  # draws it
    renderer = fig.canvas.get_renderer()
    # An axis keeps tick labels for ticks outside its view too; only those inside are drawn.
    ticks, drawn = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.majorTicks + axis.minorTicks:
                ticks |= {id(tick.label1), id(tick.label2)}
            for tick in axis._update_ticks():
                drawn |= {id(tick.label1), id(tick.label2)}
    return [(t, t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and (id(t) not in ticks or id(t) in drawn)]


@pytest.mark.parametrize("name", [name for name, _, _ in FIGURES])
@pytest.mark.parametrize("which", ["one", "seven", "tw_comparison"])
def test_every_text_is_inside_the_canvas(name, which, seven):
    runs = {"one": fixture_runs("clean"), "seven": seven, "tw_comparison": fixture_runs("time_wait_exhaustion")}[which]
    draw = next(d for n, _, d in FIGURES if n == name)
    fig = draw(runs, colours_for(runs))
    width, height = fig.canvas.get_width_height(physical=True)
    for text, box in drawn_texts(fig):
        assert box.x0 >= -1 and box.x1 <= width + 1 and box.y0 >= -1 and box.y1 <= height + 1, \
            f"{name}: {text.get_text()!r} at {box} is outside the {width}x{height} canvas"


@pytest.mark.parametrize("draw", [plot_states, plot_throughput, plot_cpu, plot_latency])
def test_legend_and_axes_stay_below_the_title(draw, seven):
    fig = draw(seven, colours_for(seven))
    texts = drawn_texts(fig)
    title = next(box for t, box in texts if t is fig._suptitle)
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert box.y1 <= title.y0 + 1 and box.x0 >= 0 and box.x1 <= fig.canvas.get_width_height()[0]
    for ax in fig.axes:
        top = ax.title.get_window_extent(renderer).y1 if ax.get_title(loc="left") or ax.get_title() else 0
        top = max(top, ax._left_title.get_window_extent(renderer).y1 if ax._left_title.get_text() else 0)
        legend_bottom = min((lg.get_window_extent(renderer).y0 for lg in fig.legends), default=title.y0)
        assert top <= legend_bottom + 1, f"{draw.__name__}: an axes title overlaps the legend or title"


def test_a_long_run_legend_wraps_to_rows_that_fit(seven):
    fig = plot_states(seven, colours_for(seven))
    png_bytes(fig)
    (legend,) = fig.legends
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert box.x1 - box.x0 <= fig.canvas.get_width_height()[0]
    assert legend._ncols < len(legend.legend_handles)  # seven long names and the sides: more than one row


def test_runs_sharing_axes_get_markers_at_different_points():
    runs = fixture_runs("syn_flood")  # two variants whose lines coincide in several panels
    colours = colours_for(runs)
    fig = plot_states(runs, colours)
    ax = next(a for a in fig.axes if a.get_title(loc="left") == "SYN_RECV")
    by_run = {}
    for line in ax.get_lines():
        if line.get_marker() not in (None, "None", ""):
            start, step = line.get_markevery()
            by_run[line.get_color()] = (line.get_marker(), {start + k * step for k in range(len(line.get_xdata()))})
    assert set(by_run) == set(colours.values())
    (m1, points1), (m2, points2) = by_run.values()
    assert m1 != m2 and not points1 & points2


def test_a_single_run_has_no_markers():
    runs = fixture_runs("clean")
    for draw in (plot_states, plot_throughput, plot_cpu, plot_latency):
        fig = draw(runs, colours_for(runs))
        assert all(line.get_marker() in (None, "None", "") for ax in fig.axes for line in ax.get_lines())


def end_labels(ax):
    return [t.get_text() for t in ax.texts if t.get_text() in ("client", "server", "client + server")]


def test_every_states_line_names_its_side():
    runs = fixture_runs("syn_flood")
    fig = plot_states(runs, colours_for(runs))
    for ax in fig.axes:
        # Lines of one run that end at the same value share one label.
        ends = {(line.get_color(), line.get_ydata()[-1]) for line in ax.get_lines() if line.get_linestyle() in ("-", ":")}
        assert len(end_labels(ax)) == len(ends) > 0, ax.get_title(loc="left")
    syn = next(a for a in fig.axes if a.get_title(loc="left") == "SYN_RECV")
    assert set(end_labels(syn)) == {"server"}


def test_loopback_lines_count_both_ends():
    runs = fixture_runs("clean")  # no lab: the host namespace holds client and server sockets of 127.0.0.1
    assert runs[0].target_is_loopback
    fig = plot_states(runs, colours_for(runs))
    assert [label for ax in fig.axes for label in end_labels(ax)] == ["client + server"]


def test_end_labels_are_spread_apart_and_keep_their_order():
    placed = spread([0.5, 0.5, 0.49, 0.1, 0.98, 0.99], gap=0.05)
    order = sorted(range(6), key=lambda i: [0.5, 0.5, 0.49, 0.1, 0.98, 0.99][i])
    ys = [placed[i] for i in order]
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(ys, ys[1:]))
    assert max(placed) <= 1.0 + 1e-9
    assert placed[3] == 0.1  # a label with room stays where its line ends


def with_fault(tmp_path: Path, fault: dict) -> list:
    folder = tmp_path / "flood"
    shutil.copytree(RUNS / "syn_flood", folder)
    for variant in ("syncookies_off", "syncookies_on"):
        path = folder / variant / "result.json"
        data = json.loads(path.read_text())
        data["fault"] = fault
        path.write_text(json.dumps(data))
    return load_runs([folder])


def fault_lines(ax):
    return [line for line in ax.get_lines() if line.get_color() == FAULT_COLOUR]


def test_a_fault_is_marked_on_every_time_axis(tmp_path):
    runs = with_fault(tmp_path, {"kind": "syn_flood", "at": 2.0, "lasts": 5.0, "started": True, "stopped": True})
    for draw in (plot_states, plot_throughput, plot_cpu):
        fig = draw(runs, colours_for(runs))
        for ax in fig.axes:
            assert sorted(line.get_xdata()[0] for line in fault_lines(ax)) == [2.0, 7.0], draw.__name__
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert "syn_flood t=2-7 s" in labels


def test_a_fault_that_never_started_is_not_marked(tmp_path):
    runs = with_fault(tmp_path, {"kind": "syn_flood", "at": 20.0, "lasts": 0, "started": False})
    fig = plot_states(runs, colours_for(runs))
    assert not any(fault_lines(ax) for ax in fig.axes)


def test_throughput_without_errors_has_no_empty_errors_panel():
    runs = fixture_runs("clean")
    fig = plot_throughput(runs, colours_for(runs))
    assert len(fig.axes) == 2 and "no errors" in fig._suptitle.get_text()


def test_cpu_leaves_out_roles_without_samples():
    runs = fixture_runs("clean")
    roles = [role for role, _ in plots.CPU_PANELS if runs[0].cpu(role)[0]]
    fig = plot_cpu(runs, colours_for(runs))
    assert len(fig.axes) == len(roles) >= 1


def test_two_processes_make_the_same_pngs_as_one(seven):
    one = make_figures(seven, processes=1)
    two = make_figures(seven, processes=2)
    assert [name for name, _, _ in two] == [name for name, _, _ in FIGURES]
    assert one == two


def test_figures_the_helper_fails_are_drawn_here(seven, monkeypatch):
    """A helper that dies (here: at its first figure) costs time, never a figure."""
    parent = os.getpid()
    real = plots._draw

    def dies_in_the_helper(runs, colours, index):
        if os.getpid() != parent:
            os._exit(3)
        return real(runs, colours, index)

    monkeypatch.setattr(plots, "_draw", dies_in_the_helper)
    figures = make_figures(seven, processes=2)
    assert [name for name, _, _ in figures] == [name for name, _, _ in FIGURES]
    assert all(png.startswith(b"\x89PNG") for _, _, png in figures)


def test_an_error_in_a_figure_is_raised_as_without_the_helper(seven, monkeypatch):
    def broken(runs, colours):
        raise ValueError("broken figure")

    monkeypatch.setattr(plots, "FIGURES", (*FIGURES[:-1], ("cpu.png", "CPU", broken)))
    with pytest.raises(ValueError, match="broken figure"):
        make_figures(seven, processes=2)


def test_one_process_when_the_other_cores_were_busy(monkeypatch):
    # Earlier tests in the same pytest process may leave threads behind; this one is about cores.
    monkeypatch.setattr(plots.threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(plots, "idle_cores", lambda: 0.2)
    assert plots.default_processes() == 1
    monkeypatch.setattr(plots, "idle_cores", lambda: 0.9)
    assert plots.default_processes() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert plots.default_processes() == 1


def test_one_process_while_another_thread_runs(monkeypatch):
    import threading

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(plots, "idle_cores", lambda: 0.9)
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(10,))
    other.start()
    try:
        assert threading.active_count() > 1
        assert plots.default_processes() == 1
    finally:
        release.set()
        other.join()
    # Alone again (earlier tests in this pytest process may have left threads: counted as none).
    monkeypatch.setattr(plots.threading, "active_count", lambda: 1)
    assert plots.default_processes() == 2
