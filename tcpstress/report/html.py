"""report.html: one self-contained page (inline CSS, PNGs as data: URIs, no JavaScript).

Laid out for a reader with a minute to spare: what ran, what went wrong
(the findings), the numbers side by side, the kernel settings that differed,
then the figures and the details.
"""

from __future__ import annotations

import base64
import re
from html import escape
from typing import Any

from tcpstress.report.context import ReportContext
from tcpstress.report.diagnose import knob_text
from tcpstress.report.finding import Finding
from tcpstress.report.responses import LATENCY_NOTE, request_table, response_table
from tcpstress.report.rundata import RunData
from tcpstress.report.tables import comparison_rows, comparison_table, knob_table
from tcpstress.report.verdict import group_findings, verdict_lines

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0; background: #f6f7f9; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e3e5e8; }
.sub { color: #5b6168; margin: 0 0 14px; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 8px 0 0; padding: 0; list-style: none; }
.facts li { color: #333; } .facts b { color: #5b6168; font-weight: 600; margin-right: 4px; }
.verdict { margin: 18px 0 0; padding: 12px 16px; border-radius: 6px; font-weight: 600; }
.verdict.ok { background: #e8f5ec; color: #1e6b34; }
.verdict.bad { background: #fdecee; color: #9b1c2c; }
.verdict.warn { background: #fff4e0; color: #7a4d00; }
.verdict.answer { background: #eaf1fb; color: #123a6b; font-size: 16px; }
.finding { border-left: 5px solid #999; background: #fafafa; padding: 10px 14px; margin: 10px 0;
           border-radius: 0 6px 6px 0; }
.finding.critical { border-color: #c62828; background: #fdf1f2; }
.finding.warning { border-color: #e08a00; background: #fff8eb; }
.finding.info { border-color: #2f6db5; background: #f1f6fc; }
.finding h3 { margin: 0 0 4px; font-size: 16px; }
.finding p { margin: 4px 0; }
.sev { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; padding: 1px 6px; border-radius: 3px;
       color: #fff; background: #777; margin-right: 6px; vertical-align: 2px; }
.critical .sev { background: #c62828; } .warning .sev { background: #c77700; } .info .sev { background: #2f6db5; }
.variant { font-weight: 600; padding: 0 6px; border-radius: 3px; color: #fff; margin-right: 6px; }
.knobs code { background: #eef0f3; padding: 1px 5px; border-radius: 3px; margin-right: 4px; font-size: 13px; }
.evidence { color: #5b6168; font-size: 13px; }
.advice b { color: #333; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e3e5e8; text-align: right; white-space: nowrap; }
th { background: #f1f3f5; font-weight: 600; white-space: normal; vertical-align: bottom; min-width: 3.5em; }
td.l, th.l { text-align: left; }
tr.differs td { background: #fff8d6; }
td.bad { color: #b3261e; font-weight: 600; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.scroll { overflow-x: auto; }
figure { margin: 18px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e5e8; }
figcaption { color: #5b6168; font-size: 13px; margin-top: 4px; }
.note { color: #5b6168; font-size: 13px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
details summary { cursor: pointer; color: #2f6db5; }
.glossary dd { margin: 2px 0 10px 18px; color: #333; font-size: 14px; }
"""


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{escape(colour)}"></span>'


def _facts(ctx: ReportContext) -> str:
    items = "".join(f"<li><b>{escape(k)}</b>{escape(v)}</li>" for k, v in ctx.facts)
    return f'<ul class="facts">{items}</ul>'


def _verdict(findings: list[Finding]) -> str:
    if not findings:
        return '<div class="verdict ok">No problems found: no rule fired on these runs.</div>'
    counts = {sev: sum(1 for f in findings if f.severity == sev) for sev in ("critical", "warning", "info")}
    parts = [f"{n} {sev}{'s' if n > 1 and sev == 'warning' else ''}" for sev, n in counts.items() if n]
    cls = "bad" if counts["critical"] else "warn"
    headline = findings[0].title + (f" ({findings[0].variant})" if findings[0].variant else "")
    return f'<div class="verdict {cls}">{escape(", ".join(parts))} — first: {escape(headline)}</div>'


def _finding(f: Finding, colours: dict[str, str], several_runs: bool) -> str:
    variant = ""
    if f.variant and several_runs:
        variant = f'<span class="variant" style="background:{escape(colours.get(f.variant, "#777"))}">' \
                  f"{escape(f.variant)}</span>"
    knobs = ""
    if f.knobs:
        chips = "".join(f'<code title="{escape(knob_text(k))}">{escape(k)}</code>' for k in f.knobs)
        knobs = f'<p class="knobs">Knobs: {chips}</p>'
    advice = f'<p class="advice"><b>What to do:</b> {escape(f.advice)}</p>' if f.advice else ""
    evidence = ", ".join(f"{k} = {evidence_value(v)}" for k, v in f.evidence.items() if v is not None)
    return (
        f'<div class="finding {escape(f.severity)}"><h3><span class="sev">{escape(f.severity)}</span>{variant}'
        f"{escape(f.title)}</h3><p>{escape(f.text)}</p>{advice}{knobs}"
        f'<p class="evidence">Evidence: {escape(evidence)}</p></div>'
    )


def _glossary(findings: list[Finding]) -> str:
    """What each knob named in the findings does, folded away for whoever needs it."""
    knobs = []
    for f in findings:
        knobs += [k for k in f.knobs if k not in knobs]
    rows = "".join(f"<dt><code>{escape(k)}</code></dt><dd>{escape(knob_text(k))}</dd>" for k in knobs if knob_text(k))
    if not rows:
        return ""
    return f'<details class="glossary"><summary>What these knobs do</summary><dl>{rows}</dl></details>'


def evidence_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.1f}" if not v.is_integer() else f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, list):
        return ", ".join(map(evidence_value, v))
    if isinstance(v, dict):
        # A merged run's per-shard evidence: "(shard node-a, EADDRNOTAVAIL 667, ...)".
        return "(" + ", ".join(f"{k} {evidence_value(x)}" for k, x in v.items() if x is not None) + ")"
    return str(v).replace("\t", " ")


def _breakable(header: str) -> str:
    """Let long CamelCase counter names wrap inside a header cell instead of widening the table."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "<wbr>", escape(header))


def html_table(headers: list[str], rows: list[list[str]], left: int = 1, row_classes: list[str] | None = None,
           cell_class=None, first_cell_html: list[str] | None = None) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_breakable(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            classes = ["l"] if i < left else []
            if cell_class and cell_class(r, i, cell):
                classes.append(cell_class(r, i, cell))
            content = first_cell_html[r] if (i == 0 and first_cell_html) else escape(cell)
            cells.append(f'<td class="{" ".join(classes)}">{content}</td>')
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _comparison(runs: list[RunData], colours: dict[str, str]) -> str:
    headers, rows = comparison_table(comparison_rows(runs))
    error_cols = {headers.index("errors"), headers.index("error %")}

    def bad(r: int, i: int, cell: str) -> str:
        return "bad" if i in error_cols and cell not in ("0", "0.00") else ""

    names = [_swatch(colours[run.label]) + escape(run.label) for run in runs]
    note = ('<p class="note">req/s with an open model reads achieved / intended. Peaks are the highest sampled '
            "count, in the namespace named. Counters are their rise over the run, summed over namespaces; "
            "counters and states that stayed at zero everywhere are left out.</p>")
    return html_table(headers, rows, cell_class=bad, first_cell_html=names) + note


def knobs_html(runs: list[RunData]) -> str:
    headers, rows, differs = knob_table(runs)
    if not rows:
        return '<p class="note">No sysctls were read back.</p>'
    if len(runs) < 2 or not any(differs) or all(differs):
        classes = ["differs" if d else "" for d in differs]
        note = '<p class="note">Highlighted: knobs whose value differs between runs.</p>' if any(differs) else ""
        return html_table(headers, rows, left=2, row_classes=classes) + note
    # The knobs that differ are the point of a comparison; the rest are folded away.
    changed = [r for r, d in zip(rows, differs) if d]
    same = [r for r, d in zip(rows, differs) if not d]
    return (f'<p class="note">{len(changed)} knob{"s" if len(changed) > 1 else ""} differed between runs:</p>'
            + html_table(headers, changed, left=2, row_classes=["differs"] * len(changed))
            + f"<details><summary>The other {len(same)} knobs, the same in every run</summary>"
            + html_table(headers, same, left=2) + "</details>")


def _variants(ctx: ReportContext, colours: dict[str, str]) -> str:
    if len(ctx.runs) < 2:
        return ""
    names = {r.result.data.get("name") for r in ctx.runs}
    against = (f"differs from {ctx.runs[0].label} in" if len(names) == 1
               else "differs from the first run of its scenario in")
    rows = []
    for run, (described, differs) in zip(ctx.runs, ctx.variant_notes):
        rows.append(f'<tr><td class="l">{_swatch(colours[run.label])}{escape(run.label)}</td>'
                    f'<td class="l">{escape(described)}</td><td class="l">{escape(differs)}</td></tr>')
    return ('<div class="scroll"><table><thead><tr><th class="l">run</th><th class="l">description</th>'
            f'<th class="l">{escape(against)}</th></tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def _thresholds(runs: list[RunData]) -> str:
    """The release gate's PASS/FAIL table, first on the page: what a CI reader opens the report for."""
    from tcpstress.thresholds import report_rows

    headers, rows = report_rows(runs)
    if not rows:
        return ""
    failed = sum(1 for r in rows if r[-1] == "FAIL")
    verdict = (f'<div class="verdict bad">{failed} of {len(rows)} thresholds failed</div>' if failed
               else f'<div class="verdict ok">all {len(rows)} thresholds passed</div>')

    def mark(r: int, i: int, cell: str) -> str:
        return "bad" if i == len(headers) - 1 and cell == "FAIL" else ""

    return "<h2>Thresholds</h2>" + verdict + html_table(headers, rows, left=len(headers) - 2, cell_class=mark)


def _responses(runs: list[RunData]) -> str:
    out = ""
    headers, rows = response_table(runs)
    if rows:
        out += "<h2>Responses</h2>" + html_table(headers, rows, left=3)
    headers, rows = request_table(runs)
    if rows:
        out += "<h2>Requests by name</h2>" + html_table(headers, rows, left=2)
    return out


def render_html(ctx: ReportContext, findings: list[Finding], figures: list[tuple[str, str, bytes]],
                colours: dict[str, str]) -> str:
    several = len(ctx.runs) > 1
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(ctx.title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(ctx.title)}</h1>",
    ]
    if ctx.description:
        parts.append(f'<p class="sub">{escape(ctx.description)}</p>')
    parts.append(_facts(ctx))
    parts.append(_thresholds(ctx.runs))
    parts.append(_variants(ctx, colours))
    answer = verdict_lines(ctx.runs, findings)
    if answer:
        parts.append('<div class="verdict answer"><b>Verdict:</b> ' + "<br>".join(escape(x) for x in answer) + "</div>")
    parts.append(_verdict(findings))
    parts.append("<h2>Findings</h2>")
    if findings:
        parts.extend(_finding(f, colours, several) for f in group_findings(findings))
        parts.append(_glossary(findings))
    else:
        parts.append('<p class="note">No rule fired: no port exhaustion, queue overflow, leak, errors or '
                     "saturation was seen.</p>")
    parts.append("<h2>Side by side</h2>")
    parts.append(_comparison(ctx.runs, colours))
    parts.append(f'<p class="note">{escape(LATENCY_NOTE)}</p>')
    parts.append(_responses(ctx.runs))
    parts.append("<h2>Kernel settings as read back</h2>")
    parts.append(knobs_html(ctx.runs))
    parts.append("<h2>Figures</h2>")
    for name, caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure id="{escape(name)}"><img src="data:image/png;base64,{data}" '
                     f'alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>')
    parts.append("<h2>Runs</h2>")
    parts.append(html_table(["run", "folder", "started", "kernel", "duration"], ctx.run_lines, left=4))
    parts.append(f'<details><summary>Scenario as run</summary><pre>{escape(ctx.scenario_text)}</pre></details>')
    parts.append(f'<p class="note">Made by tcpstress {escape(ctx.tool_version)} from the saved run folders; '
                 "<code>tcpstress report</code> re-renders it without running anything.</p>")
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p) + "\n"
