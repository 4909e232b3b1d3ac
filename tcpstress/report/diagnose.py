"""Findings: rules over a saved run that say what went wrong and which knob matters.

Pure (no trio, click or matplotlib) so the CLI can print findings right after
a run and tests can feed it fixture folders. Everything here is computed from
the files of a run folder (see tcpstress/results.py for the layout):

    runs = [load_run(folder) for folder in folders]
    for line in format_findings(diagnose(runs)):
        print(line)

Each rule looks at one run (and, for comparisons, at the other variants)
and returns zero or more observations (observations.py: typed, one class
per kind, with the numbers it saw and the kernel knobs that change the
outcome); words.py turns each into a Finding whose text cites them. In a run merged from
shards (tcpstress merge) each shard's client and server is a host of its
own: the rules speak of every shard's (see places.py), not the first's. The kernel facts behind
the wording are in tcpstress/knowledge.py (docs/kernel.md); where the seed
article disagrees, they win (e.g. tcp_fin_timeout does not touch TIME_WAIT or CLOSE_WAIT).

The pieces, each a module of this package: rundata (loading run and
comparison folders), places (where a side's sockets lived, per shard),
limits (port range, accept queue), variants (how variants differ), the
rules by topic (rules_ports, rules_queues, rules_connections, rules_load),
observations and words (what a rule returns and how it is worded), finding
(the Finding a page prints), wording (how numbers are written), and tables
(the comparison and knob tables).
"""

from __future__ import annotations

import textwrap
from typing import Callable, Iterable

from tcpstress import knowledge
from tcpstress.report.finding import SEVERITIES, Finding
from tcpstress.report.observations import Observation
from tcpstress.report.rules_connections import (
    rule_close_wait_leak,
    rule_refused_or_reset,
    rule_timeouts,
)
from tcpstress.report.rules_errors import rule_errors, rule_in_flight, rule_no_success
from tcpstress.report.rules_load import (
    rule_generator_saturated,
    rule_incomplete_run,
    rule_injected_fault,
    rule_open_model_lag,
    rule_server_saturated,
)
from tcpstress.report.rules_ports import rule_port_exhaustion, rule_time_wait_overflow
from tcpstress.report.rules_queues import rule_accept_queue_overflow, rule_syn_queue
from tcpstress.report.rundata import (
    RunData,
    as_run_data,
    expand_folders,
    load_run,
    load_runs,
)
from tcpstress.report.tables import comparison_rows, comparison_table, knob_table
from tcpstress.report.verdict import group_findings
from tcpstress.report.words import finding
from tcpstress.results import RunResult

# Loading and the tables live in rundata and tables; they are named here too because the CLI,
# gallery, summary and the tests import them from this module.
__all__ = [
    "RULES",
    "Finding",
    "RunData",
    "comparison_rows",
    "comparison_table",
    "diagnose",
    "expand_folders",
    "format_findings",
    "knob_table",
    "knob_text",
    "load_run",
    "load_runs",
]



LISTEN_BACKLOG_TEXT = (
    "The backlog the server passes to listen(); the kernel caps it at net.core.somaxconn. "
    "It sizes the accept queue and also caps the SYN queue."
)


def knob_text(knob: str) -> str:
    """What a knob does, in plain English, from the knowledge table ("" when it is not a sysctl)."""
    if knob == "listen backlog":
        return LISTEN_BACKLOG_TEXT
    try:
        return knowledge.knob(knob).effect
    except knowledge.UnknownName:
        return ""


Rule = Callable[[RunData, list[RunData]], list[Observation]]

RULES: tuple[Rule, ...] = (
    rule_incomplete_run,
    rule_injected_fault,
    rule_port_exhaustion,
    rule_accept_queue_overflow,
    rule_syn_queue,
    rule_time_wait_overflow,
    rule_close_wait_leak,
    rule_refused_or_reset,
    rule_timeouts,
    rule_open_model_lag,
    rule_generator_saturated,
    rule_server_saturated,
    # Last: they speak of the errors the rules above leave unexplained.
    rule_no_success,
    rule_errors,
    rule_in_flight,
)


def diagnose(runs: Iterable[RunData | RunResult]) -> list[Finding]:
    """Every rule over every run; most severe first, then in run order."""
    loaded = [as_run_data(r) for r in runs]
    findings: list[Finding] = []
    for run in loaded:
        for rule in RULES:
            findings.extend(finding(obs) for obs in rule(run, loaded))
    order = {label: i for i, label in enumerate(r.label for r in loaded)}
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), order.get(f.variant or "", 0)))
    return findings


def format_findings(findings: list[Finding], width: int = 100) -> list[str]:
    """Lines for a terminal: a headline per finding, its text wrapped and indented, its knobs."""
    if not findings:
        return ["No problems found."]
    lines = []
    for f in group_findings(findings):
        who = f" [{f.variant}]" if f.variant else ""
        lines.append(f"{f.severity.upper()}{who} {f.title}")
        lines.extend(textwrap.wrap(f.text, width=width, initial_indent="    ", subsequent_indent="    "))
        if f.advice:
            lines.extend(textwrap.wrap("What to do: " + f.advice, width=width, initial_indent="    ",
                                       subsequent_indent="    "))
        if f.knobs:
            lines.append("    knobs: " + ", ".join(f.knobs))
    return lines
