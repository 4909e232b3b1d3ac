"""report.md: the same findings and tables as report.html, figures as relative PNG links.

Plain GitHub-flavoured Markdown, so a report can be pasted into an issue or
read in a terminal.
"""

from __future__ import annotations

from html import escape

from tcpstress.report.context import ReportContext
from tcpstress.report.finding import Finding
from tcpstress.report.responses import LATENCY_NOTE, request_table, response_table
from tcpstress.report.tables import comparison_rows, comparison_table, knob_table
from tcpstress.report.verdict import group_findings, verdict_lines


def _text(text: object) -> str:
    """User text (a description, a name, an error name) as Markdown text: Markdown passes raw HTML
    through, so a scenario's "<script>" would become markup in any viewer that renders it."""
    return escape(str(text), quote=False)


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    align = [":--" if i < left else "--:" for i in range(len(headers))]
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _finding(f: Finding) -> list[str]:
    who = f" [{_text(f.variant)}]" if f.variant else ""
    lines = [f"- **{f.severity.upper()}**{who} **{_text(f.title)}**: {_text(f.text)}"]
    if f.advice:
        lines.append(f"  *What to do:* {_text(f.advice)}")
    if f.knobs:
        lines.append("  Knobs: " + ", ".join(f"`{k}`" for k in f.knobs))
    return lines


def render_markdown(ctx: ReportContext, findings: list[Finding], figures: list[tuple[str, str, bytes]]) -> str:
    out = [f"# {_text(ctx.title)}", ""]
    if ctx.description:
        out += [_text(ctx.description), ""]
    out += [" · ".join(f"**{_text(k)}** {_text(v)}" for k, v in ctx.facts), ""]
    from tcpstress.thresholds import report_rows

    t_headers, t_rows = report_rows(ctx.runs)
    if t_rows:
        # The release gate's verdict first: it is what a CI reader opens the report for.
        out += ["## Thresholds", ""] + md_table(t_headers, t_rows, left=len(t_headers) - 2) + [""]
    if len(ctx.runs) > 1:
        rows = [[r.label, described, differs] for r, (described, differs) in zip(ctx.runs, ctx.variant_notes)]
        mixed = len({r.result.data.get("name") for r in ctx.runs}) > 1
        against = "differs from the first run of its scenario in" if mixed else f"differs from {ctx.runs[0].label} in"
        out += md_table(["run", "description", against], rows, left=3)
        out.append("")

    answer = verdict_lines(ctx.runs, findings)
    if answer:
        out += ["**Verdict:** " + _text(" ".join(answer)), ""]
    out += ["## Findings", ""]
    if findings:
        for f in group_findings(findings):
            out += _finding(f)
    else:
        out.append("No problems found: no rule fired on these runs.")
    out += ["", "## Side by side", ""]
    headers, rows = comparison_table(comparison_rows(ctx.runs))
    out += md_table(headers, rows)
    out += ["", LATENCY_NOTE]
    for title, (r_headers, r_rows), left in (("Responses", response_table(ctx.runs), 3),
                                            ("Requests by name", request_table(ctx.runs), 2)):
        if r_rows:
            out += ["", f"## {title}", ""] + md_table(r_headers, r_rows, left=left)
    out += ["", "## Kernel settings as read back", ""]
    k_headers, k_rows, differs = knob_table(ctx.runs)
    if k_rows:
        marked = [[r[0], f"**{r[1]}**" if d else r[1], *r[2:]] for r, d in zip(k_rows, differs)]
        out += md_table(k_headers, marked, left=2)
        if any(differs):
            out += ["", "Bold: knobs whose value differs between runs."]
    else:
        out.append("No sysctls were read back.")
    out += ["", "## Figures", ""]
    for name, caption, _ in figures:
        out += [f"![{caption}]({name})", ""]
    out += ["## Runs", ""]
    out += md_table(["run", "folder", "started", "kernel", "duration"], ctx.run_lines, left=4)
    out.append("")
    return "\n".join(out)
