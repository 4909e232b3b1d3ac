"""The report's figures, drawn with matplotlib from loaded runs (rundata.RunData).

Every figure gives a run the same colour (colours_for), so a reader who has
found "baseline" in one figure finds it in all of them. Each function returns
a Figure; png_bytes() turns it into PNG bytes for the renderer to write.
"""

from __future__ import annotations

import io
import math
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and in tests
# Names, variants and error names come from users and result.json: "$...$" in them must stay
# text, never mathtext (an unknown command like $\nosuchcmd$ raises). No figure uses mathtext.
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from tcpstress.report.lag import host_cores  # noqa: E402
from tcpstress.report.limits import accept_queue_limit, port_limit  # noqa: E402
from tcpstress.report.rundata import RunData  # noqa: E402
from tcpstress.report.tables import KEY_COUNTERS, comparison_rows  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")

# Client sockets solid, server sockets dotted; a limit is a dashed grey line.
NS_STYLE = {"client": "-", "host": "-", "server": ":"}
LIMIT_STYLE = {"color": "#555555", "linestyle": "--", "linewidth": 1.2}

# Drawn in this order; LISTEN and CLOSE are not worth a panel.
STATE_ORDER = ("TIME_WAIT", "ESTABLISHED", "SYN_RECV", "SYN_SENT", "CLOSE_WAIT", "FIN_WAIT2", "FIN_WAIT1",
               "LAST_ACK", "CLOSING")

WIDTH_IN = 11.0
DPI = 110
TIME_LABEL = "time since measurement start (s)"


def colours_for(runs: list[RunData]) -> dict[str, str]:
    return {run.label: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, cols: int, row_height: float, sharex: bool = True) -> tuple[Figure, list]:
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, row_height * rows + 0.9), sharex=sharex,
                             squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _thousands(ax, axis: str = "y") -> None:
    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


HEADER_IN = 0.55  # room above the axes for the title and the run legend


def _header(fig: Figure, title: str, handles: list | None = None) -> None:
    """Title on top, a one-row legend under it, axes laid out below both (fixed inches, any height)."""
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=12, y=1 - 0.08 / height, va="top")
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, 1 - 0.36 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - (HEADER_IN if handles else 0.35) / height))


def _run_legend(fig: Figure, runs: list[RunData], colours: dict[str, str], extra: list | None = None,
                title: str = "") -> None:
    handles = [Line2D([], [], color=colours[r.label], linewidth=3, label=r.label) for r in runs]
    _header(fig, title, handles + (extra or []))


def _integer_ticks(ax) -> None:
    """Counts of sockets or requests are whole: no 0.2 ticks on a series that peaked at 1 or 2."""
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_fault(axes: list, runs: list[RunData]) -> list[Line2D]:
    """A lab fault's (or flood's) start as a vertical line on every time axis; its legend handle."""
    starts = {}
    for run in runs:
        fault = run.result.data.get("fault")
        if isinstance(fault, dict) and fault.get("kind") not in (None, "none") and isinstance(fault.get("at"), (int, float)):
            starts.setdefault((float(fault["at"]), str(fault["kind"])), None)
    for ax in axes:
        for at, _ in starts:
            ax.axvline(at, color="#9c27b0", linestyle="-.", linewidth=1.2)
    return [Line2D([], [], color="#9c27b0", linestyle="-.", label=f"{kind} starts (t={at:g} s)")
            for at, kind in list(starts)[:2]]


def _no_data(ax, text: str) -> None:
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


def _limit_label(ax, y: float, text: str, colour: str) -> None:
    ax.annotate(text, xy=(0.99, y), xycoords=("axes fraction", "data"), xytext=(0, 4), textcoords="offset points",
                ha="right", va="bottom", fontsize=8, color=colour,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _width(index: int, runs: int) -> float:
    """Earlier runs drawn wider and underneath, so identical lines stay visible as a coloured edge."""
    return 1.8 if runs == 1 else max(3.2 - 0.7 * index, 1.2)


def _draw_limits(ax, values: dict[str, int], colours: dict[str, str], label: str) -> list[Line2D]:
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
    return [Line2D([], [], **LIMIT_STYLE, label="limit")]


def plot_states(runs: list[RunData], colours: dict[str, str]) -> Figure:
    # A state that never passed 1 socket anywhere is noise of the sampling, not a finding.
    shown = [s for s in STATE_ORDER if any(r.peak(s, ns) > 1 for r in runs for ns in r.namespaces)]
    if not shown:
        fig, axes = _grid(1, 1, 2.5)
        _no_data(axes[0], "no socket states were sampled")
        _header(fig, "Socket states over time")
        return fig
    cols = 1 if len(shown) == 1 else 2
    fig, axes = _grid(len(shown), cols, 2.7)
    spaces_seen: set[str] = set()
    limit_handles: list[Line2D] = []
    for ax, state in zip(axes, shown):
        for i, run in enumerate(runs):
            ends: dict[float, list[str]] = {}  # a line's last value -> the sides whose line ends there
            last_t = 0.0
            for ns in run.namespaces:
                ts, vs = run.series(state, ns)
                if vs and max(vs) > 0:
                    ax.plot(ts, vs, color=colours[run.label], linestyle=NS_STYLE.get(ns.rpartition(":")[2], "-"),
                            linewidth=_width(i, len(runs)))
                    spaces_seen.add(ns)
                    if ns != "host":
                        ends.setdefault(vs[-1], []).append(ns.rpartition(":")[2])
                        last_t = max(last_t, ts[-1])
            # The side named on the line itself, at its end, stacked by run; sides ending together share a label.
            for value, sides in ends.items():
                ax.annotate(" + ".join(dict.fromkeys(sides)), xy=(last_t, value), xytext=(4, 9 * i - 4),
                            textcoords="offset points", fontsize=7, color=colours[run.label], annotation_clip=False)
        if state == "TIME_WAIT":
            ports = {r.label: lim[0] for r in runs if (lim := _port_limit_shown(r))}
            limit_handles += _draw_limits(ax, ports, colours, "ports:")
        if state == "SYN_RECV":
            backlogs = {r.label: b for r in runs if (b := _backlog_shown(r))}
            limit_handles += _draw_limits(ax, backlogs, colours, "min(backlog, somaxconn):")
        ax.set_title(state, fontsize=10, loc="left", fontweight="bold")
        ax.set_ylabel("sockets")
        ax.set_ylim(bottom=0)
        ax.margins(y=0.12)
        ax.grid(alpha=0.3)
        _integer_ticks(ax)
        _thousands(ax)
    for ax in axes[-cols:]:
        ax.set_xlabel(TIME_LABEL)
        ax.tick_params(labelbottom=True)
    extra = []
    sides = {ns.rpartition(":")[2] for ns in spaces_seen}  # a merged run's are "SHARD:client"
    if len(sides) > 1 or "server" in sides:
        extra += [Line2D([], [], color="black", linestyle=NS_STYLE[ns], label=f"{ns} namespace")
                  for ns in ("client", "server") if ns in sides]
    shard_labels = {ns.rpartition(":")[0] for ns in spaces_seen if ":" in ns}
    if len(shard_labels) > 1:
        # A merged run: its shards' namespaces share the run's colour, and lines that coincide hide each other.
        extra.append(Line2D([], [], color="black", linewidth=1, label=f"one line per shard ({len(shard_labels)})"))
    extra += limit_handles[:1]
    extra += _mark_fault(axes, runs)
    _run_legend(fig, runs, colours, extra, "Socket states over time (states that stayed at 0-1 are left out)")
    return fig


# --- 2. throughput and errors --------------------------------------------------------

ERROR_STYLES = ("-", "--", ":", "-.")


def _steps(run: RunData, value) -> tuple[list[float], list[float]]:
    """Per-interval rates as a step line: each value held over its interval."""
    ts, vs = [], []
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
    fig, axes = _grid(3, 1, 2.4)
    ax_req, ax_conn, ax_err = axes
    for i, run in enumerate(runs):
        c = colours[run.label]
        ax_req.plot(*_steps(run, lambda iv: iv.get("requests", 0)), color=c, drawstyle="steps-post",
                    linewidth=_width(i, len(runs)))
        ax_conn.plot(*_steps(run, lambda iv: iv.get("connections", 0)), color=c, drawstyle="steps-post",
                     linewidth=_width(i, len(runs)))

    intended = {r.label: int(r.summary["intended_rate"]) for r in runs if r.summary.get("intended_rate")}
    _draw_limits(ax_req, intended, colours, "intended rate:")
    names = sorted({n for r in runs for n in r.errors if r.errors[n]})
    error_handles = []
    for i, name in enumerate(names):
        style = ERROR_STYLES[i % len(ERROR_STYLES)]
        for run in runs:
            if run.errors.get(name):
                ax_err.plot(*_steps(run, lambda iv: (iv.get("errors") or {}).get(name, 0)),  # noqa: B023 (called at once)
                            color=colours[run.label], linestyle=style, drawstyle="steps-post", linewidth=1.8)
        error_handles.append(Line2D([], [], color="black", linestyle=style, label=name))
    if not names:
        _no_data(ax_err, "no errors")
    else:
        ax_err.legend(handles=error_handles, loc="upper left", fontsize=8, title="error", title_fontsize=8)
    for ax, title, unit in ((ax_req, "Requests completed", "requests/s"),
                            (ax_conn, "Connections opened", "connections/s"),
                            (ax_err, "Errors, by name", "errors/s")):
        ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.margins(y=0.12)
        ax.grid(alpha=0.3)
        _integer_ticks(ax)
        _thousands(ax)
    ax_err.set_xlabel(TIME_LABEL)
    _run_legend(fig, runs, colours, _mark_fault(axes, runs), title="Throughput and errors per second")
    return fig


# --- 3. latency percentile spectrum ----------------------------------------------------

SPECTRUM_TICKS = ((1, "0%"), (10, "90%"), (100, "99%"), (1_000, "99.9%"), (10_000, "99.99%"),
                  (100_000, "99.999%"), (1_000_000, "99.9999%"))


def spectrum(hist) -> tuple[list[float], list[float]]:
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
    fig, axes = _grid(1, 1, 4.2)
    ax = axes[0]
    any_line = False
    corrected_seen = False
    all_y: list[float] = []
    top_x = 1.0
    for i, run in enumerate(runs):
        for metric, style in (("total", "-"), ("corrected", "--")):
            hist = run.merged(metric)
            if hist is None or hist.get_total_count() == 0:
                continue
            xs, ys = spectrum(hist)
            # Failed attempts have no latency here: their share stands beside the run's name,
            # so a run where most attempts failed does not read as the fastest.
            failed = f" ({run.error_pct:.1f}% failed, not drawn)" if run.error_total else ""
            label = run.label + failed if metric == "total" else f"{run.label}, from intended start"
            ax.plot(xs, ys, color=colours[run.label], linestyle=style, linewidth=_width(i, len(runs)), label=label)
            any_line = True
            corrected_seen |= metric == "corrected"
            all_y += ys
            top_x = max(top_x, xs[-1])
    if not any_line:
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
        ax.set_ylabel("latency (ms, log scale)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel("latency (ms)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    ax.set_xlabel("percentile")
    ax.grid(alpha=0.3, which="both")
    if any_line:
        # Outside the axes: inside, it covers the tail the figure is drawn for.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0)
    title = "Latency by percentile (merged .hlog, one line per run)"
    if corrected_seen:
        title += "\ndashed: measured from each request's intended start (corrected for coordinated omission)"
    _header(fig, title)
    return fig


# --- 4. summary panel ------------------------------------------------------------------


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _ms_text(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _pct(v: float) -> str:
    return f"{v:.1f}%" if v >= 0.1 or v == 0 else f"{v:.2g}%"


def _summary_metrics(runs: list[RunData]) -> list[tuple[str, list[float], Callable[[float], str]]]:
    rows = comparison_rows(runs)
    metrics = [
        ("achieved requests/s", [r["requests_per_s"] for r in rows], _count),
        ("connections/s", [r["connections_per_s"] for r in rows], _count),
        ("errors (% of attempts)", [r["error_pct"] for r in rows], _pct),
        ("p99 latency (ms)", [r["p99_ms"] or 0.0 for r in rows], _ms_text),
        ("peak TIME_WAIT", [r["peak_time_wait"] for r in rows], _count),
    ]
    for state, key in (("SYN_RECV", "peak_syn_recv"), ("CLOSE_WAIT", "peak_close_wait")):
        if any(r[key] for r in rows):
            metrics.append((f"peak {state}", [r[key] for r in rows], _count))
    for name in KEY_COUNTERS:
        if any(r["counters"][name] for r in rows):
            metrics.append((f"{name} (rise)", [r["counters"][name] for r in rows], _count))
    return metrics


def _scorecard(runs: list[RunData], colours: dict[str, str]) -> Figure:
    """One run: a bar per metric says nothing, so show the numbers as tiles."""
    metrics = _summary_metrics(runs)
    cols = 4
    fig, axes = _grid(len(metrics), cols, 1.15, sharex=False)
    colour = colours[runs[0].label]
    for ax, (title, values, fmt) in zip(axes, metrics):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(colour)
            spine.set_linewidth(1.5)
        ax.text(0.5, 0.42, fmt(values[0]), transform=ax.transAxes, ha="center", va="center", fontsize=17,
                fontweight="bold", color=colour)
        ax.set_title(title, fontsize=9)
    _header(fig, f"Summary: {runs[0].label}")
    return fig


def plot_summary(runs: list[RunData], colours: dict[str, str]) -> Figure:
    if len(runs) == 1:
        return _scorecard(runs, colours)
    metrics = _summary_metrics(runs)
    cols = 4
    cols = 3
    # Horizontal bars: a run's name reads on one line however many runs there are.
    fig, axes = _grid(len(metrics), cols, 0.45 + 0.28 * len(runs), sharex=False)
    labels = [r.label for r in runs]
    for n, (ax, (title, values, fmt)) in enumerate(zip(axes, metrics)):
        rows = list(range(len(values)))[::-1]  # the first run on top
        bars = ax.barh(rows, values, color=[colours[label] for label in labels], height=0.65)
        top = max(values) if values and max(values) > 0 else 1.0
        ax.set_xlim(0, top * 1.45)
        for bar, v in zip(bars, values):
            ax.annotate(fmt(v), xy=(v, bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8)
        ax.set_title(title, fontsize=9, fontweight="bold", loc="left")
        ax.set_yticks(rows)
        ax.set_yticklabels(labels if n % cols == 0 else [], fontsize=8)
        ax.set_xticks([])
        ax.grid(axis="x", alpha=0.3)
    _header(fig, "Summary per run")
    return fig


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


def plot_cpu(runs: list[RunData], colours: dict[str, str]) -> Figure:
    panels = [("generator", "Generator (tcpstress load workers)"), ("target", "Target (the server under test)")]
    if any(run.cpu("host")[0] for run in runs):
        # The whole machine: other work on a shared host starves the generator without showing in its own CPU.
        panels.append(("host", "Whole machine (every process; 100% = one core)"))
    fig, axes = _grid(len(panels), 1, 2.5)
    for ax, (role, title) in zip(axes, panels):
        cores = 1
        drawn = False
        for i, run in enumerate(runs):
            ts, vs = run.cpu(role)
            if ts:
                ax.plot(ts, trailing_mean(ts, vs), color=colours[run.label], linewidth=_width(i, len(runs)))
                drawn = True
                cores = max(cores, host_cores(run) if role == "host" else run.cores(role))
        if not drawn:
            _no_data(ax, f"no {role} process samples")
        for k in range(1, cores + 1):
            ax.axhline(100 * k, **LIMIT_STYLE)
            ax.annotate(f"{k} core{'s' if k > 1 else ''} busy", xy=(0.995, 100 * k), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, ha="right",
                        color=LIMIT_STYLE["color"])
        ax.set_ylim(0, 100 * cores * 1.18)
        ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
        ax.set_ylabel("CPU %, 1 s mean")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(TIME_LABEL)
    _run_legend(fig, runs, colours, _mark_fault(axes, runs), title="CPU use: a flat line at a core limit means saturated")
    return fig


FIGURES = (
    ("states.png", "Socket states over time", plot_states),
    ("throughput.png", "Throughput and errors", plot_throughput),
    ("latency.png", "Latency percentile spectrum", plot_latency),
    ("summary.png", "Summary per run", plot_summary),
    ("cpu.png", "CPU of generator, target and the whole machine", plot_cpu),
)


def make_figures(runs: list[RunData]) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) for every figure, in report order."""
    colours = colours_for(runs)
    return [(name, caption, png_bytes(draw(runs, colours))) for name, caption, draw in FIGURES]
