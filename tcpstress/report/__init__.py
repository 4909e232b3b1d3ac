"""Reports from saved run folders: findings (pure), figures and pages (matplotlib).

The pure half is importable without matplotlib, so the CLI can print
findings and tables cheaply; render_report pulls in matplotlib only when it
is first used.
"""

from __future__ import annotations

from typing import Any

from tcpstress.report.diagnose import diagnose, format_findings
from tcpstress.report.finding import Finding
from tcpstress.report.rundata import RunData, load_run, load_runs
from tcpstress.report.tables import comparison_rows, comparison_table

__all__ = [
    "Finding",
    "RunData",
    "comparison_rows",
    "comparison_table",
    "diagnose",
    "format_findings",
    "load_run",
    "load_runs",
    "render_report",
]


def __getattr__(name: str) -> Any:
    # Importing render loads matplotlib (~0.5 s); only pay for it when a report is drawn.
    if name == "render_report":
        from tcpstress.report.render import render_report

        return render_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
