"""render_report: saved run folders in, report.html + report.md + PNG figures out.

Never runs anything: everything comes from the folders' files, so an old run
renders the same today as the day it ran. Every file is written to a
temporary name and renamed into place, so an interrupted render leaves the
previous report (or nothing), never half a file.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tcpstress.report.context import ReportContext
from tcpstress.report.diagnose import diagnose
from tcpstress.report.finding import Finding
from tcpstress.report.html import render_html
from tcpstress.report.markdown import render_markdown
from tcpstress.report.rundata import RunData, load_runs, scenario_get
from tcpstress.report.variants import variant_differences
from tcpstress.results import ResultError, write_atomic

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"


def _default_title(runs: list[RunData]) -> str:
    names = []
    for run in runs:
        name = run.result.data.get("name") or run.label
        if name not in names:
            names.append(name)
    if len(runs) == 1:
        run = runs[0]
        variant = run.result.data.get("variant")
        return f"{names[0]} ({variant})" if variant else names[0]
    if len(names) > 1:  # several scenarios: their runs are listed just below the title
        return " + ".join(names)
    labels = ", ".join(r.label for r in runs)
    return f"{names[0]}: {labels}"


def _describe_load(run: RunData) -> list[tuple[str, str]]:
    facts = []
    # The runner records where it really connected (the built-in server's port is picked at run time).
    recorded = run.result.data.get("target")
    actual = recorded if isinstance(recorded, dict) else {}
    host = actual.get("host") or scenario_get(run, "target.host")
    port = actual.get("port") or scenario_get(run, "target.port")
    protocol = scenario_get(run, "target.protocol")
    if host:
        where = f"{host}:{port}" if port else str(host)
        facts.append(("target", f"{protocol or ''} {where}".strip()))
    model = scenario_get(run, "load.model")
    if model:
        text = f"{model}, {scenario_get(run, 'load.connections')} connections"
        rate = scenario_get(run, "load.rate")
        if model == "open" and rate:
            text += f", {rate:,.0f} req/s asked"
        workers = scenario_get(run, "load.workers")
        if workers:
            text += f", {workers} worker{'s' if workers != 1 else ''}"
        facts.append(("load", text))
    keepalive = scenario_get(run, "connection.keepalive")
    if keepalive is not None:
        close = scenario_get(run, "connection.close")
        facts.append(("connections", ("keep-alive" if keepalive else "one request each")
                      + (f", {close} closes first" if close and close != "reset" else ", closed with RST"
                         if close == "reset" else "")))
    if scenario_get(run, "server.builtin"):
        facts.append(("server", f"built-in, backlog {scenario_get(run, 'server.backlog')}, "
                                f"closes: {scenario_get(run, 'server.close')}"))
    elif scenario_get(run, "server.command"):
        facts.append(("server", str(scenario_get(run, "server.command"))))
    lab = scenario_get(run, "lab")
    if lab is not None:
        if lab:
            network = "lab namespaces over veth"
        elif run.target_is_loopback:
            network = "loopback"
        else:
            # A compose container, or a namespace of the user's: not one the lab made.
            network = "routed from the generator's own network namespace"
        shards = run.result.data.get("shards")
        if isinstance(shards, list) and len(shards) > 1:
            network += f"; merged from {len(shards)} shards"
        facts.append(("network", network))
    return facts



def build_context(runs: list[RunData], title: str | None) -> ReportContext:
    first = runs[0]
    data = first.result.data
    # A report over several scenarios (the gallery) has no one load or
    # description to show, and runs compare only with their own scenario.
    scenarios = {r.result.data.get("name") for r in runs}
    mixed = len(scenarios) > 1
    facts = [] if mixed else _describe_load(first)
    if mixed:
        facts.append(("scenarios", ", ".join(sorted(str(n) for n in scenarios))))
    durations = sorted({f"{r.summary.get('duration_s', 0):g} s" for r in runs})
    facts.append(("measured", " / ".join(durations)))
    facts.append(("kernel", str(data.get("kernel", "?"))))
    partial = [r.label for r in runs if r.result.data.get("partial")]
    if partial:
        facts.append(("partial", ", ".join(partial)))
    notes = []
    references: dict = {}
    for run in runs:
        reference = references.setdefault(run.result.data.get("name"), run)
        if run is reference:
            differs = "(the reference)"
        else:
            differs = ", ".join(variant_differences(reference, run, limit=6)) or "nothing recorded"
        notes.append((_variant_description(run), differs))
    run_lines = []
    for run in runs:
        d = run.result.data
        run_lines.append([run.label, str(run.folder or ""), str(d.get("started_at", "")), str(d.get("kernel", "")),
                          f"{run.summary.get('duration_s', 0):g} s"])
    scenario_text = json.dumps(first.scenario, indent=2, sort_keys=False) if first.scenario else "(none recorded)"
    return ReportContext(
        title=title or _default_title(runs),
        runs=runs,
        description="" if mixed else str(first.scenario.get("description") or ""),
        facts=facts,
        variant_notes=notes,
        run_lines=run_lines,
        scenario_text=scenario_text,
        tool_version=str(data.get("tool_version", "")),
    )


def _variant_description(run: RunData) -> str:
    name = run.result.data.get("variant")
    for v in run.scenario.get("variants") or []:
        if isinstance(v, dict) and v.get("name") == name:
            return str(v.get("description") or "")
    return ""


def render_report(run_dirs: list[Path], out_dir: Path, title: str | None = None) -> Path:
    """Render run and comparison folders into out_dir; returns the report.html path.

    Raises ResultError (one line) when a folder is not a run folder or is
    truncated or hand-edited.
    """
    runs = load_report_runs(run_dirs)
    return render_runs(runs, diagnose(runs), out_dir, title)


def load_report_runs(run_dirs: list[Path]) -> list[RunData]:
    """The runs of run and comparison folders; ResultError (one line) when there are none."""
    if not run_dirs:
        raise ResultError("no run folders given: pass one or more run or comparison folders")
    runs = load_runs(run_dirs)
    if not runs:
        raise ResultError(f"{run_dirs[0]}: the comparison lists no runs")
    return runs


@contextmanager
def _collector_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector off for the block, back on after (if it was on).

    matplotlib's import and a figure's artists are some hundred thousand objects:
    the collector walked them about 200 times per report (17 middle-generation
    passes and a full one), 0.15 s of CPU in 1.7 s for one run's report here
    (medians of 12 renders each). Most of what a report allocates is freed by
    reference counts anyway; the cycles left (figures and their artists) wait for
    the collector's next pass, ~15 MB more at the peak of a 7-run report. A
    forked figure helper inherits the pause, so it does not dirty (copy) the
    pages it shares with its parent by walking them either.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def render_runs(runs: list[RunData], findings: list[Finding], out_dir: Path, title: str | None = None) -> Path:
    """Write the figures, report.md and report.html of loaded runs and their findings; returns report.html."""
    with _collector_paused():
        # Here, not at the top: `run --no-report` loads runs and diagnoses them through this
        # module, and importing matplotlib cost it about a CPU second.
        from tcpstress.report.plots import colours_for, make_figures

        colours = colours_for(runs)
        figures = make_figures(runs)
    ctx = build_context(runs, title)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, _, png in figures:
        write_atomic(out_dir / name, png)
    write_atomic(out_dir / MARKDOWN_FILE, render_markdown(ctx, findings, figures).encode("utf-8"))
    html_path = out_dir / HTML_FILE
    write_atomic(html_path, render_html(ctx, findings, figures, colours).encode("utf-8"))
    return html_path
