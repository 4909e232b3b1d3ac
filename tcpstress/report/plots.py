"""The report's figures, drawn with matplotlib from loaded runs (rundata.RunData).

Every figure gives a run the same colour (colours_for) and, when several runs
share an axis, the same hollow marker (markers_for), placed so that runs do
not put theirs on the same points: lines that lie on top of each other still
show every run. Each function returns a Figure; png_bytes() turns it into PNG
bytes, and make_figures() draws them all, in two processes when there are two
cores.

Speed (issue 20): each figure is laid out once, in inches, from the text it
holds (title, legend rows, labels), instead of by tight_layout and
bbox_inches="tight", each of which costs another full draw; pyplot (a global
figure registry and backend switching) is not used.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import pickle
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Literal

import matplotlib
import matplotlib.artist

# Names, variants and error names come from users and result.json: "$...$" in them must stay
# text, never mathtext (an unknown command like $\nosuchcmd$ raises). No figure uses mathtext.
matplotlib.rcParams["text.parse_math"] = False

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from tcpstress.report.lag import host_cores  # noqa: E402
from tcpstress.report.limits import accept_queue_limit, port_limit  # noqa: E402
from tcpstress.report.rundata import RunData  # noqa: E402
from tcpstress.report.tables import KEY_COUNTERS, comparison_rows  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

LineStyle = Literal["-", "--", ":", "-."]

# Client sockets solid, server sockets dotted; a limit is a dashed grey line.
NS_STYLE: dict[str, LineStyle] = {"client": "-", "host": "-", "server": ":"}
LIMIT_STYLE: dict[str, Any] = {"color": "#555555", "linestyle": "--", "linewidth": 1.2}
FAULT_COLOUR = "#9c27b0"

# Drawn in this order; LISTEN and CLOSE are not worth a panel.
STATE_ORDER = ("TIME_WAIT", "ESTABLISHED", "SYN_RECV", "SYN_SENT", "CLOSE_WAIT", "FIN_WAIT2", "FIN_WAIT1",
               "LAST_ACK", "CLOSING")

WIDTH_IN = 11.0
DPI = 110
TIME_LABEL = "time since measurement start (s)"

# Margins in inches: room for y tick labels with thousands separators and the y label on
# the left, for x tick labels and the x label below, for an axes title above each row.
LEFT_IN = 1.0
RIGHT_IN = 0.3
BOTTOM_IN = 0.6
GAP_H_IN = 0.5
TITLE_IN = 0.45
LEGEND_ROW_IN = 0.24
LEGEND_FONT = 9


def colours_for(runs: list[RunData]) -> dict[str, str]:
    return {run.label: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}


def markers_for(runs: list[RunData]) -> dict[str, str]:
    """A marker per run when several runs share the axes; none for a single run."""
    if len(runs) < 2:
        return {}
    return {run.label: MARKERS[i % len(MARKERS)] for i, run in enumerate(runs)}


def png_bytes(fig: Figure) -> bytes:
    """The figure as a PNG: RGB (the background is opaque white) at zlib level 3, which
    encodes in about half the time of savefig's RGBA at level 6 for ~15% more bytes."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=3)
    return buf.getvalue()


# --- layout -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _measurer() -> RendererAgg:
    return RendererAgg(8, 8, DPI)


@lru_cache(maxsize=512)
def text_width_in(text: str, size: float = LEGEND_FONT) -> float:
    """How wide a line of text is drawn, in inches (the font's own metrics, no figure drawn)."""
    width, _, _ = _measurer().get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return float(width) / DPI


@dataclass
class Grid:
    """A figure of n axes in a grid whose margins are set in inches when the header is known."""

    fig: Figure
    axes: list[Axes]
    gridspec: GridSpec
    rows: int
    cols: int
    axes_h: float
    left: float = LEFT_IN
    right: float = RIGHT_IN
    bottom: float = BOTTOM_IN
    gap_h: float = GAP_H_IN
    gap_w: float = LEFT_IN + 0.3

    def finish(self, title: str, handles: list[Line2D] | None = None) -> Figure:
        """Title on top, a legend of `handles` under it in as many rows as it needs, the axes below."""
        fig = self.fig
        ncol, legend_rows = _legend_shape(handles or [])
        title_lines = title.count("\n") + 1
        header = TITLE_IN + 0.2 * (title_lines - 1) + LEGEND_ROW_IN * legend_rows + (0.3 if legend_rows else 0.15)
        height = header + self.rows * self.axes_h + (self.rows - 1) * self.gap_h + self.bottom
        fig.set_size_inches(WIDTH_IN, height)
        axes_w = (WIDTH_IN - self.left - self.right - (self.cols - 1) * self.gap_w) / self.cols
        self.gridspec.update(left=self.left / WIDTH_IN, right=1 - self.right / WIDTH_IN, bottom=self.bottom / height,
                             top=1 - header / height, hspace=self.gap_h / self.axes_h, wspace=self.gap_w / axes_w)
        for ax in self.axes:  # update() moves only the axes of pyplot's figures
            spec = ax.get_subplotspec()
            if spec is not None:
                ax.set_position(spec.get_position(fig))
        fig.suptitle(title, fontsize=12, y=1 - 0.1 / height, va="top")
        if handles:
            fig.legend(handles=_row_major(handles, ncol), loc="upper center", ncol=ncol, frameon=False, fontsize=LEGEND_FONT,
                       bbox_to_anchor=(0.5, 1 - (0.22 + 0.2 * title_lines) / height))
        return fig


def _legend_shape(handles: list[Line2D]) -> tuple[int, int]:
    """(columns, rows) of a figure legend that fits the figure's width."""
    if not handles:
        return 1, 0
    # Per entry: the handle (2 em), the gap to the text (0.8 em), the text; columns 2 em apart.
    em = LEGEND_FONT / 72
    widths = [2.8 * em + text_width_in(str(h.get_label())) for h in handles]
    for ncol in range(min(len(handles), 8), 0, -1):
        # The legend fills columns top to bottom, the first len % ncol of them one entry longer;
        # a column is as wide as its widest entry.
        rows, longer = divmod(len(handles), ncol)
        sizes = [rows + 1] * longer + [rows] * (ncol - longer)
        starts = [sum(sizes[:c]) for c in range(ncol)]
        columns = [max(widths[start:start + size]) for start, size in zip(starts, sizes)]
        if sum(columns) + 2 * em * (ncol - 1) <= WIDTH_IN - 0.4:
            return ncol, max(sizes)
    return 1, len(handles)


def _row_major(handles: list[Line2D], ncol: int) -> list[Line2D]:
    """The order to give a legend that fills columns first, so that it reads left to right, row by row."""
    rows = math.ceil(len(handles) / ncol)
    return [handles[r * ncol + c] for c in range(ncol) for r in range(rows) if r * ncol + c < len(handles)]


def _grid(n: int, cols: int, axes_h: float, sharex: bool = True, **margins: float) -> Grid:
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(WIDTH_IN, rows * axes_h + 2), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    gridspec = fig.add_gridspec(rows, cols)
    axes: list[Axes] = []
    for i in range(max(n, 1)):
        ax = fig.add_subplot(gridspec[i // cols, i % cols], sharex=axes[0] if sharex and axes else None)
        if sharex and i + cols < n:
            ax.tick_params(labelbottom=False)  # the axes below carry the time labels
        axes.append(ax)
    return Grid(fig, axes, gridspec, rows, cols, axes_h, **margins)


# Titles and axis labels are placed from known sizes: left to itself, matplotlib measures
# the drawn tick labels of every axes to place them, a good share of a figure's cost.


def _title(ax: Axes, text: str, **style: Any) -> None:
    ax.set_title(text, y=1.0, **style)  # a given y: no search for tick labels above the axes


def _ylabel(ax: Axes, text: str, top: float) -> None:
    """The y label, left of tick labels no wider than `top` printed with thousands separators."""
    ax.set_ylabel(text)
    offset = text_width_in(f"{top:,.0f}" if top >= 10 else "0.25", 10) + 0.17
    ax.yaxis.set_label_coords(0, 0.5, transform=ax.transAxes + ScaledTranslation(-offset, 0, ax.figure.dpi_scale_trans))


def _xlabel(ax: Axes, text: str) -> None:
    ax.set_xlabel(text)
    ax.xaxis.set_label_coords(0.5, 0, transform=ax.transAxes + ScaledTranslation(0, -0.27, ax.figure.dpi_scale_trans))


def _thousands(ax: Axes, axis: str = "y") -> None:
    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _run_handles(runs: list[RunData], colours: dict[str, str], markers: dict[str, str]) -> list[Line2D]:
    return [Line2D([], [], color=colours[r.label], linewidth=3, label=r.label, **_marker_style(markers.get(r.label)))
            for r in runs]


def _marker_style(marker: str | None) -> dict[str, Any]:
    if marker is None:
        return {}
    return {"marker": marker, "markersize": 6, "markerfacecolor": "white", "markeredgewidth": 1.3}


def _markers_on(marker: str | None, index: int, runs: int, points: int) -> dict[str, Any]:
    """Hollow markers on one run's line, at points no other run marks: lines that coincide show every run."""
    if marker is None or points == 0:
        return {}
    step = max(runs, math.ceil(points / 9))
    return {**_marker_style(marker), "markevery": (min(index * step // runs, points - 1), step)}


def _integer_ticks(ax: Axes) -> None:
    """Counts of sockets or requests are whole: no 0.2 ticks on a series that peaked at 1 or 2."""
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # each tick is a label and a grid line to draw


@dataclass(frozen=True)
class FaultSpan:
    kind: str
    start: float
    end: float | None  # None: to the end of the run


def fault_spans(runs: list[RunData]) -> list[FaultSpan]:
    """When the runs' lab faults (a SYN flood, dropped SYNs ...) were on; one entry for runs that share one."""
    spans: dict[tuple[str, float, float | None], None] = {}
    for run in runs:
        fault = run.result.data.get("fault")
        if not isinstance(fault, dict) or fault.get("kind") in (None, "none"):
            continue
        at, lasts = fault.get("at"), fault.get("lasts")
        if not isinstance(at, (int, float)) or fault.get("started") is False:
            continue  # a fault that never started changed nothing
        end = float(at) + float(lasts) if isinstance(lasts, (int, float)) and lasts > 0 else None
        spans.setdefault((str(fault["kind"]), float(at), end), None)
    return [FaultSpan(kind, start, end) for kind, start, end in spans]


def _mark_fault(axes: list[Axes], runs: list[RunData]) -> list[Line2D]:
    """A lab fault's (or flood's) start as a vertical line on every time axis, its time on shaded; legend handles."""
    spans = fault_spans(runs)
    run_end = max((float(r.summary.get("duration_s") or 0) for r in runs), default=0.0)
    for ax in axes:
        for span in spans:
            ax.axvline(span.start, color=FAULT_COLOUR, linestyle="-.", linewidth=1.2)
            if span.end is not None:
                ax.axvline(span.end, color=FAULT_COLOUR, linestyle=":", linewidth=1.0)
            ax.axvspan(span.start, span.end if span.end is not None else max(run_end, span.start), color=FAULT_COLOUR,
                       alpha=0.06, linewidth=0)
    return [Line2D([], [], color=FAULT_COLOUR, linestyle="-.",
                   label=f"{s.kind} t={s.start:g}" + (f"-{s.end:g} s" if s.end is not None else " s to the end"))
            for s in spans[:2]]


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777777")


# --- 1. socket states ---------------------------------------------------------------


def _port_limit_shown(run: RunData) -> tuple[int, str] | None:
    """The port range, if it is what limited this run (errors, or TIME_WAIT close to it)."""
    limit = port_limit(run)
    if limit is None:
        return None
    client = run.side_ns("client")
    held = max(run.peak("TIME_WAIT", client), run.peak("ESTABLISHED", client))
    if run.errors.get("EADDRNOTAVAIL") or held >= 0.8 * limit[0]:
        return limit
    return None


def _backlog_shown(run: RunData) -> int | None:
    _, _, limit = accept_queue_limit(run)
    if limit is None:
        return None
    return limit if run.peak("SYN_RECV", run.side_ns("server")) >= 0.8 * limit else None


def _limit_label(ax: Axes, y: float, text: str, colour: str) -> None:
    # On the left: the sides' names sit at the lines' right ends.
    ax.annotate(text, xy=(0.01, y), xycoords=("axes fraction", "data"), xytext=(0, 4), textcoords="offset points",
                ha="left", va="bottom", fontsize=8, color=colour,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _width(index: int, runs: int) -> float:
    """Earlier runs drawn wider and underneath, so identical lines stay visible as a coloured edge."""
    return 1.8 if runs == 1 else max(3.2 - 0.7 * index, 1.2)


def _draw_limits(ax: Axes, values: dict[str, int], colours: dict[str, str], label: str) -> list[Line2D]:
    """One dashed line per distinct limit: grey when runs share it, in the run's colour when it is its own."""
    if not values:
        return []
    by_value: dict[int, list[str]] = {}
    for name, v in values.items():
        by_value.setdefault(v, []).append(name)
    for v, names in by_value.items():
        shared = len(names) > 1 or len(by_value) == 1
        colour = LIMIT_STYLE["color"] if shared else colours[names[0]]
        ax.axhline(v, color=colour, linestyle=LIMIT_STYLE["linestyle"], linewidth=LIMIT_STYLE["linewidth"])
        who = "" if len(by_value) == 1 else f" ({', '.join(names)})"
        _limit_label(ax, v, f"{label} {v:,}{who}", colour)
    return [Line2D([], [], color=LIMIT_STYLE["color"], linestyle=LIMIT_STYLE["linestyle"],
                   linewidth=LIMIT_STYLE["linewidth"], label="limit")]


@dataclass
class EndLabel:
    """The side ("client", "server", "client + server") named at the right end of a run's line."""

    value: float
    text: str
    colour: str


def spread(positions: list[float], gap: float, top: float = 1.0) -> list[float]:
    """Positions (sorted or not) moved apart to at least `gap` from each other, kept under `top`
    where they can be; the order is kept. Used for the labels at the lines' ends."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = [positions[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    if placed and placed[-1] > top:
        placed[-1] = max(top, positions[order[-1]])
        for k in range(len(placed) - 2, -1, -1):
            placed[k] = min(placed[k], placed[k + 1] - gap)
    out = [0.0] * len(positions)
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _end_labels(ax: Axes, labels: list[EndLabel], top: float, axes_h: float) -> None:
    gap = 9.0 / (72 * axes_h)  # one 7-point line of text, in axes fractions
    fractions = spread([label.value / top for label in labels], gap)
    for label, y in zip(labels, fractions):
        ax.annotate(label.text, xy=(1.0, y), xycoords="axes fraction", xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=7, color=label.colour, annotation_clip=False)


def _side(ns: str) -> str:
    return ns.rpartition(":")[2]  # a merged run's are "SHARD:client"


def _side_name(run: RunData, ns: str) -> str:
    """Whose sockets a namespace's line counts: without a lab, the host's namespace holds
    both ends of a loopback connection, and only the client's towards another machine."""
    side = _side(ns)
    if side != "host":
        return side
    return "client + server" if run.target_is_loopback else "client"


def plot_states(runs: list[RunData], colours: dict[str, str]) -> Figure:
    # A state that never passed 1 socket anywhere is noise of the sampling, not a finding.
    shown = [s for s in STATE_ORDER if any(r.peak(s, ns) > 1 for r in runs for ns in r.namespaces)]
    if not shown:
        grid = _grid(1, 1, 1.6)
        _no_data(grid.axes[0], "no socket states were sampled")
        return grid.finish("Socket states over time")
    markers = markers_for(runs)
    # Sides are named at the lines' right ends, in the margin: it is as wide as the longest name.
    label_in = text_width_in("client + server", 7) + 0.15
    cols = 1 if len(shown) == 1 else 2
    grid = _grid(len(shown), cols, 2.2, right=max(RIGHT_IN, label_in), gap_w=LEFT_IN + label_in)
    spaces_seen: set[str] = set()
    limit_handles: list[Line2D] = []
    for ax, state in zip(grid.axes, shown):
        labels: list[EndLabel] = []
        top = 0.0
        for i, run in enumerate(runs):
            ends: dict[float, list[str]] = {}  # a line's last value -> the sides whose line ends there
            for ns in run.namespaces:
                ts, vs = run.series(state, ns)
                if vs and max(vs) > 0:
                    ax.plot(ts, vs, color=colours[run.label], linestyle=NS_STYLE.get(_side(ns), "-"),
                            linewidth=_width(i, len(runs)), **_markers_on(markers.get(run.label), i, len(runs), len(ts)))
                    spaces_seen.add(ns)
                    top = max(top, max(vs))
                    ends.setdefault(vs[-1], []).append(_side_name(run, ns))
            labels += [EndLabel(value, " + ".join(dict.fromkeys(sides)), colours[run.label])
                       for value, sides in ends.items()]
        if state == "TIME_WAIT":
            ports = {r.label: lim[0] for r in runs if (lim := _port_limit_shown(r))}
            limit_handles += _draw_limits(ax, ports, colours, "ports:")
            top = max([top, *ports.values()])
        if state == "SYN_RECV":
            backlogs = {r.label: b for r in runs if (b := _backlog_shown(r))}
            limit_handles += _draw_limits(ax, backlogs, colours, "min(backlog, somaxconn):")
            top = max([top, *backlogs.values()])
        top = max(top * 1.15, 2.0)
        ax.set_ylim(0, top)
        _end_labels(ax, labels, top, grid.axes_h)
        _title(ax, state, fontsize=10, loc="left", fontweight="bold")
        _ylabel(ax, "sockets", top)
        ax.grid(alpha=0.3)
        _integer_ticks(ax)
        _thousands(ax)
    for ax in grid.axes[-cols:]:
        _xlabel(ax, TIME_LABEL)
    extra = []
    sides = {_side(ns) for ns in spaces_seen}
    if len(sides) > 1 or "server" in sides:
        extra += [Line2D([], [], color="black", linestyle=NS_STYLE[ns], label=f"{ns} namespace")
                  for ns in ("client", "server") if ns in sides]
    shard_labels = {ns.rpartition(":")[0] for ns in spaces_seen if ":" in ns}
    if len(shard_labels) > 1:
        # A merged run: its shards' namespaces share the run's colour, and lines that coincide hide each other.
        extra.append(Line2D([], [], color="black", linewidth=1, label=f"one line per shard ({len(shard_labels)})"))
    extra += limit_handles[:1]
    extra += _mark_fault(grid.axes, runs)
    return grid.finish("Socket states over time (states that stayed at 0-1 are left out; each line's side at its end)",
                       _run_handles(runs, colours, markers) + extra)


# --- 2. throughput and errors --------------------------------------------------------

ERROR_STYLES: tuple[LineStyle, ...] = ("-", "--", ":", "-.")


def _steps(run: RunData, value: Callable[[dict[str, Any]], float]) -> tuple[list[float], list[float]]:
    """Per-interval rates as a step line: each value held over its interval."""
    ts: list[float] = []
    vs: list[float] = []
    for iv in run.result.intervals:
        duration = float(iv.get("duration") or 1.0)
        ts.append(float(iv["t"]))
        vs.append(value(iv) / duration)
    if ts:
        last = run.result.intervals[-1]
        ts.append(ts[-1] + float(last.get("duration") or 1.0))
        vs.append(vs[-1])
    return ts, vs


def plot_throughput(runs: list[RunData], colours: dict[str, str]) -> Figure:
    names = sorted({n for r in runs for n in r.errors if r.errors[n]})
    # Without errors the third panel would only say so: the title does.
    grid = _grid(3 if names else 2, 1, 1.9)
    ax_req, ax_conn = grid.axes[:2]
    markers = markers_for(runs)
    tops = {id(ax): 1.0 for ax in grid.axes}
    for i, run in enumerate(runs):
        c = colours[run.label]
        for ax, key in ((ax_req, "requests"), (ax_conn, "connections")):
            ts, vs = _steps(run, lambda iv: iv.get(key, 0))  # noqa: B023 (called at once)
            tops[id(ax)] = max([tops[id(ax)], *vs])
            ax.plot(ts, vs, color=c, drawstyle="steps-post", linewidth=_width(i, len(runs)),
                    **_markers_on(markers.get(run.label), i, len(runs), len(ts)))

    intended = {r.label: int(r.summary["intended_rate"]) for r in runs if r.summary.get("intended_rate")}
    _draw_limits(ax_req, intended, colours, "intended rate:")
    tops[id(ax_req)] = max([tops[id(ax_req)], *intended.values()])
    panels = [(ax_req, "Requests completed (counted by the client, tcpstress)", "requests/s"),
              (ax_conn, "Connections opened by the client", "connections/s")]
    if names:
        ax_err = grid.axes[2]
        error_handles = []
        for k, name in enumerate(names):
            style = ERROR_STYLES[k % len(ERROR_STYLES)]
            for i, run in enumerate(runs):
                if run.errors.get(name):
                    ts, vs = _steps(run, lambda iv: (iv.get("errors") or {}).get(name, 0))  # noqa: B023
                    tops[id(ax_err)] = max([tops[id(ax_err)], *vs])
                    ax_err.plot(ts, vs, color=colours[run.label], linestyle=style, drawstyle="steps-post",
                                linewidth=1.8, **_markers_on(markers.get(run.label), i, len(runs), len(ts)))
            error_handles.append(Line2D([], [], color="black", linestyle=style, label=name))
        ax_err.legend(handles=error_handles, loc="upper left", fontsize=8, title="error", title_fontsize=8)
        panels.append((ax_err, "Errors the client saw, by name", "errors/s"))
    for ax, title, unit in panels:
        ax.set_ylim(0, tops[id(ax)] * 1.15)
        _title(ax, title, fontsize=10, loc="left", fontweight="bold")
        _ylabel(ax, unit, tops[id(ax)] * 1.15)
        ax.grid(alpha=0.3)
        _integer_ticks(ax)
        _thousands(ax)
    _xlabel(grid.axes[-1], TIME_LABEL)
    title = "Throughput and errors per second" if names else "Throughput per second (no errors in any run)"
    return grid.finish(title, _run_handles(runs, colours, markers) + _mark_fault(grid.axes, runs))


# --- 3. latency percentile spectrum ----------------------------------------------------

SPECTRUM_TICKS = ((1, "0%"), (10, "90%"), (100, "99%"), (1_000, "99.9%"), (10_000, "99.99%"),
                  (100_000, "99.999%"), (1_000_000, "99.9999%"))


def spectrum(hist: Any) -> tuple[list[float], list[float]]:
    """HdrHistogram's percentile plot: x = 1/(1-p), y = latency in ms, up to the data's depth."""
    count = hist.get_total_count()
    if count == 0:
        return [], []
    top = max(1.0, min(float(count), 1e6))
    steps = 120
    xs = [10 ** (math.log10(top) * i / steps) for i in range(steps + 1)]
    pcts = [100.0 * (1.0 - 1.0 / x) for x in xs]
    values = hist.get_percentile_to_value_dict(pcts)
    ys = [values[p] / 1000.0 for p in pcts]
    return xs, ys


def plot_latency(runs: list[RunData], colours: dict[str, str]) -> Figure:
    markers = markers_for(runs)
    lines = []
    for i, run in enumerate(runs):
        for metric, style in (("total", "-"), ("corrected", "--")):
            hist = run.merged(metric)
            if hist is None or hist.get_total_count() == 0:
                continue
            xs, ys = spectrum(hist)
            # Failed attempts have no latency here: their share stands beside the run's name,
            # so a run where most attempts failed does not read as the fastest.
            failed = f" ({run.error_pct:.1f}% failed: not in the line)" if run.error_total else ""
            label = run.label + failed if metric == "total" else f"{run.label}, from intended start"
            lines.append((i, run, style, xs, ys, label))
    # The legend stands right of the axes: inside, it covers the tail the figure is drawn for.
    legend_in = max((text_width_in(label) for *_, label in lines), default=0.0) + 0.75
    grid = _grid(1, 1, 3.6, right=max(RIGHT_IN, legend_in))
    ax = grid.axes[0]
    all_y: list[float] = []
    top_x = 1.0
    for i, run, style, xs, ys, label in lines:
        ax.plot(xs, ys, color=colours[run.label], linestyle=style, linewidth=_width(i, len(runs)), label=label,
                **_markers_on(markers.get(run.label), i, len(runs), len(xs)))
        all_y += ys
        top_x = max(top_x, xs[-1])
    if not lines:
        _no_data(ax, "no latency logs in these runs")
    ax.set_xscale("log")
    ticks = [(x, t) for x, t in SPECTRUM_TICKS if x <= max(top_x, 100)]
    ax.xaxis.set_major_locator(FixedLocator([x for x, _ in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: dict(ticks).get(round(v), "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, max(top_x, 100))
    positive = [y for y in all_y if y > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
        _ylabel(ax, "latency (ms, log scale)", max(positive))
    else:
        ax.set_ylim(bottom=0)
        _ylabel(ax, "latency (ms)", max(all_y, default=1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    _xlabel(ax, "percentile")
    ax.grid(alpha=0.3, which="both")
    if lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0)
    title = "Latency by percentile of answered requests (merged .hlog, one line per run)"
    if any(style == "--" for _, _, style, *_ in lines):
        title += "\ndashed: measured from each request's intended start (corrected for coordinated omission)"
    return grid.finish(title)


# --- 4. summary panel ------------------------------------------------------------------


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _ms_text(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _pct(v: float) -> str:
    return f"{v:.1f}%" if v >= 0.1 or v == 0 else f"{v:.2g}%"


@dataclass
class Metric:
    """One panel of summary.png: a value per run (None: the run has none, e.g. no answered request)."""

    title: str
    values: list[float | None]
    fmt: Callable[[float], str]


def _summary_metrics(runs: list[RunData]) -> list[Metric]:
    rows = comparison_rows(runs)
    metrics = [
        Metric("achieved requests/s", [r["requests_per_s"] for r in rows], _count),
        Metric("connections/s", [r["connections_per_s"] for r in rows], _count),
        Metric("errors (% of attempts)", [r["error_pct"] for r in rows], _pct),
        Metric("p99 latency of answered requests (ms)", [r["p99_ms"] for r in rows], _ms_text),
        Metric("peak TIME_WAIT", [r["peak_time_wait"] for r in rows], _count),
    ]
    for state, key in (("SYN_RECV", "peak_syn_recv"), ("CLOSE_WAIT", "peak_close_wait")):
        if any(r[key] for r in rows):
            metrics.append(Metric(f"peak {state}", [r[key] for r in rows], _count))
    for name in KEY_COUNTERS:
        if any(r["counters"][name] for r in rows):
            metrics.append(Metric(f"{name} (rise)", [r["counters"][name] for r in rows], _count))
    return metrics


def _value_text(metric: Metric, v: float | None) -> str:
    return "no answers" if v is None else metric.fmt(v)


def _scorecard(runs: list[RunData], colours: dict[str, str]) -> Figure:
    """One run: a bar per metric says nothing, so show the numbers as tiles."""
    metrics = _summary_metrics(runs)
    grid = _grid(len(metrics), 4, 0.8, sharex=False, left=0.3, bottom=0.15, gap_h=0.4, gap_w=0.3)
    colour = colours[runs[0].label]
    for ax, metric in zip(grid.axes, metrics):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(colour)
            spine.set_linewidth(1.5)
        ax.text(0.5, 0.45, _value_text(metric, metric.values[0]), transform=ax.transAxes, ha="center",
                va="center", fontsize=17, fontweight="bold", color=colour)
        _title(ax, metric.title, fontsize=9)
    return grid.finish(f"Summary: {runs[0].label}")


def plot_summary(runs: list[RunData], colours: dict[str, str]) -> Figure:
    if len(runs) == 1:
        return _scorecard(runs, colours)
    metrics = _summary_metrics(runs)
    cols = 3
    labels = [r.label for r in runs]
    # Horizontal bars: a run's name reads on one line however many runs there are; names only on the left column.
    names_in = max(text_width_in(label, 8) for label in labels) + 0.2
    grid = _grid(len(metrics), cols, 0.2 + 0.26 * len(runs), sharex=False, left=names_in, bottom=0.15,
                 gap_h=0.4, gap_w=0.25)
    rows = list(range(len(runs)))[::-1]  # the first run on top
    for n, (ax, metric) in enumerate(zip(grid.axes, metrics)):
        values = [v or 0.0 for v in metric.values]
        bars = ax.barh(rows, values, color=[colours[label] for label in labels], height=0.65)
        top = max(values) if values and max(values) > 0 else 1.0
        ax.set_xlim(0, top * 1.45)
        ax.set_ylim(-0.6, len(runs) - 0.4)
        for bar, v in zip(bars, metric.values):
            ax.annotate(_value_text(metric, v), xy=(v or 0.0, bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8)
        _title(ax, metric.title, fontsize=9, fontweight="bold", loc="left")
        ax.set_yticks(rows)
        ax.set_yticklabels(labels if n % cols == 0 else [], fontsize=8)
        ax.set_xticks([])
    return grid.finish("Summary per run")


# --- 5. CPU -----------------------------------------------------------------------------


def trailing_mean(ts: list[float], vs: list[float], window: float = 1.0) -> list[float]:
    """Mean of the values in the `window` seconds up to each point.

    CPU time moves in 10 ms clock ticks, so a 100 ms sample reads 0, 10, 20 ...
    percent; a one-second mean shows the level instead of the quantization.
    """
    out: list[float] = []
    start = 0
    total = 0.0
    for i, t in enumerate(ts):
        total += vs[i]
        while ts[start] <= t - window:
            total -= vs[start]
            start += 1
        out.append(total / (i - start + 1))
    return out


CPU_PANELS = (("generator", "Generator: the client, tcpstress load workers"),
              ("target", "Target: the server under test"),
              # The whole machine: other work on a shared host starves the generator without showing in its own CPU.
              ("host", "Whole machine (every process; 100% = one core)"))


def plot_cpu(runs: list[RunData], colours: dict[str, str]) -> Figure:
    # A role no run has samples of (an outside server, an old run without host rows) gets no panel.
    panels = [(role, title) for role, title in CPU_PANELS if any(run.cpu(role)[0] for run in runs)]
    grid = _grid(max(len(panels), 1), 1, 2.0)
    markers = markers_for(runs)
    if not panels:
        _no_data(grid.axes[0], "no process samples")
    for ax, (role, title) in zip(grid.axes, panels):
        cores = 1
        for i, run in enumerate(runs):
            ts, vs = run.cpu(role)
            if ts:
                ax.plot(ts, trailing_mean(ts, vs), color=colours[run.label], linewidth=_width(i, len(runs)),
                        **_markers_on(markers.get(run.label), i, len(runs), len(ts)))
                cores = max(cores, host_cores(run) if role == "host" else run.cores(role))
        for k in range(1, cores + 1):
            ax.axhline(100 * k, **LIMIT_STYLE)
            ax.annotate(f"{k} core{'s' if k > 1 else ''} busy", xy=(0.995, 100 * k), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, ha="right",
                        color=LIMIT_STYLE["color"])
        ax.set_ylim(0, 100 * cores * 1.18)
        _title(ax, title, fontsize=10, loc="left", fontweight="bold")
        _ylabel(ax, "CPU %, 1 s mean", 100 * cores * 1.18)
        ax.grid(alpha=0.3)
    _xlabel(grid.axes[-1], TIME_LABEL)
    return grid.finish("CPU use: a flat line at a core limit means saturated",
                       _run_handles(runs, colours, markers) + _mark_fault(grid.axes, runs))


FIGURES = (
    ("states.png", "Socket states over time", plot_states),
    ("throughput.png", "Throughput and errors", plot_throughput),
    ("latency.png", "Latency percentile spectrum", plot_latency),
    ("summary.png", "Summary per run", plot_summary),
    ("cpu.png", "CPU of generator, target and the whole machine", plot_cpu),
)

# The costliest first (they grow with runs and panels), so that two processes end together.
DRAW_ORDER = ("states.png", "summary.png", "throughput.png", "cpu.png", "latency.png")
# A helper process that has not answered in this long is given up on; the figures it
# had not delivered are drawn here.
HELPER_PATIENCE_S = 60.0


def _cpu_jiffies() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs since boot, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[3] + fields[4], sum(fields)) if len(fields) == 8 else None


# Taken when this module is imported: make_figures sees how idle the machine was while
# matplotlib loaded (about a second), with no waiting of its own.
_JIFFIES_AT_IMPORT = _cpu_jiffies()


def idle_cores() -> float | None:
    """How many cores stood idle, on average, since this module was imported; None: unknown."""
    now = _cpu_jiffies()
    if now is None or _JIFFIES_AT_IMPORT is None or now[1] - _JIFFIES_AT_IMPORT[1] < 20:
        return None
    share = (now[0] - _JIFFIES_AT_IMPORT[0]) / (now[1] - _JIFFIES_AT_IMPORT[1])
    return share * (os.cpu_count() or 1)


def default_processes() -> int:
    """2 when a second core is there and was mostly idle lately, else 1.

    A helper on a core that other work keeps busy only shares it: the two
    processes then took longer than one (measured: 1.09 s against 0.85-0.90 s
    for one run's figures on this 2-core machine with both cores busy).
    Never while another thread runs: a fork copies the locks that thread may
    hold (an import, logging), and the helper could wait on them forever."""
    if len(os.sched_getaffinity(0)) < 2 or threading.active_count() > 1:
        return 1
    idle = idle_cores()
    return 2 if idle is None or idle >= 0.5 else 1


def _draw(runs: list[RunData], colours: dict[str, str], index: int) -> bytes:
    _, _, draw = FIGURES[index]
    return png_bytes(draw(runs, colours))


def make_figures(runs: list[RunData], processes: int | None = None) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) for every figure, in report order.

    processes: 1 draws here; 2 forks one helper, and the two take figures
    from a shared counter; None (the default) picks with default_processes().
    The PNGs are the same either way.
    """
    colours = colours_for(runs)
    if processes is None:
        processes = default_processes()
    order = [next(i for i, f in enumerate(FIGURES) if f[0] == name) for name in DRAW_ORDER]
    pngs: dict[int, bytes] = {}
    if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
        pngs = _draw_with_helper(runs, colours, order)
    for index in order:
        if index not in pngs:
            pngs[index] = _draw(runs, colours, index)
    return [(name, caption, pngs[i]) for i, (name, caption, _) in enumerate(FIGURES)]


def _draw_with_helper(runs: list[RunData], colours: dict[str, str], order: list[int]) -> dict[int, bytes]:
    """Draw figures here and in one forked helper, each taking the next undrawn one.

    The helper inherits the loaded runs and matplotlib, so it starts drawing at
    once. Whatever it fails to deliver (an error, a crash, no answer within
    HELPER_PATIENCE_S) is left out of the result and drawn by the caller, so a
    failure shows as the same exception the single-process path raises.
    """
    for weight in ("normal", "bold"):
        # Loaded once here, the fonts are shared with the helper instead of read by both.
        _measurer().get_text_width_height_descent("0", FontProperties(size=10, weight=weight), ismath=False)
    ctx = multiprocessing.get_context("fork")
    taken = ctx.Value("i", 0)
    receive, send = ctx.Pipe(duplex=False)

    def take() -> int | None:
        with taken.get_lock():
            k = taken.value
            taken.value = k + 1
        return order[k] if k < len(order) else None

    def helper() -> None:
        receive.close()
        while (index := take()) is not None:
            try:
                png: bytes | None = _draw(runs, colours, index)
            except Exception:  # the parent draws it again and raises it there
                png = None
            send.send_bytes(pickle.dumps((index, png)))
        send.close()

    process = ctx.Process(target=helper, name="tcpstress-figures", daemon=True)
    try:
        process.start()
    except OSError:
        return {}
    send.close()
    delivered: dict[int, bytes] = {}

    def collect() -> None:
        # A thread, so the helper never blocks on a full pipe while this process draws.
        try:
            while True:
                index, png = pickle.loads(receive.recv_bytes())
                if png is not None:
                    delivered[index] = png
        except (EOFError, OSError):
            pass

    reader = threading.Thread(target=collect, name="tcpstress-figures-reader", daemon=True)
    reader.start()
    mine: dict[int, bytes] = {}
    try:
        while (index := take()) is not None:
            mine[index] = _draw(runs, colours, index)
        process.join(HELPER_PATIENCE_S)
    finally:
        # Given up on, or this process failed: the helper's figures are not wanted any more.
        if process.is_alive():
            process.kill()
        process.join()
        reader.join(5.0)  # the helper's end closed the pipe: the reader sees EOF at once
        receive.close()
    return {**dict(delivered), **mine}
