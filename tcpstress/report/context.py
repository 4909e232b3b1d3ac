"""ReportContext: what a page says about the runs besides findings, tables and figures.

A module of its own, below render and the two page writers (html, markdown),
so that the writers need not import render, which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcpstress.report.rundata import RunData


@dataclass
class ReportContext:
    """What the page says about the runs besides findings, tables and figures."""

    title: str
    runs: list[RunData]
    description: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    variant_notes: list[tuple[str, str]] = field(default_factory=list)  # (description, differences) per run
    run_lines: list[list[str]] = field(default_factory=list)
    scenario_text: str = ""
    tool_version: str = ""
