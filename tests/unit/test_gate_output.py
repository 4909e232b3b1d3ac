"""CI-facing output: the plain progress line off a terminal, compound durations, serve --delay."""

from __future__ import annotations

import io

import pytest
from hdrh.histogram import HdrHistogram

from tcpstress.live import LiveLine
from tcpstress.record import Interval
from tcpstress.scenario import parse_duration
from tests.conftest import run_cli


def agg(i):
    return Interval(t=float(i), connections=3, hists={"total": HdrHistogram(1, 1000, 2)})


def test_off_a_terminal_the_live_line_is_a_plain_line_every_five_seconds():
    stream = io.StringIO()  # not a terminal, like a CI log
    live = LiveLine(stream)
    for i in range(12):
        live.show(agg(i), 12)
    live.done()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["5/12s", "10/12s", "12/12s"]
    assert all(line.startswith("progress ") for line in lines) and "\r" not in stream.getvalue()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_live_line_rewrites_itself_every_second():
    stream = Terminal()
    live = LiveLine(stream)
    for i in range(3):
        live.show(agg(i), 3)
    live.done()
    assert stream.getvalue().count("\r") == 3 and stream.getvalue().endswith("\n")


@pytest.mark.parametrize("text, seconds", [("1m30s", 90), ("1h2m3s", 3723), ("1s500ms", 1.5), ("2m", 120),
                                           ("10ms", 0.01), ("1.5s", 1.5), ("3", 3)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1m30", "1x", "m30s", "1m 30s s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="1m30s"):
        parse_duration(text)


def test_serve_delay_takes_a_duration():
    proc = run_cli("serve", "--port", 0, "--delay", "10xs", "--max-seconds", 1)
    assert proc.returncode == 2 and "'10xs' is not a duration" in proc.stderr
    proc = run_cli("serve", "--port", 0, "--delay", "10ms", "--max-seconds", 0.2, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("listening http")


def gate(summary, thresholds=(), findings=(), fail_on=None, empty_fails=True):
    from tcpstress.cli import _gate_code
    from tcpstress.results import RunResult

    data = {"name": "x", "summary": summary, "thresholds": [t.to_dict() for t in thresholds]}
    return _gate_code([RunResult(data=data)], list(findings), fail_on, empty_fails=empty_fails)


def test_exit_codes_of_the_gate(capsys):
    from tcpstress.report.finding import Finding
    from tcpstress.thresholds import evaluate, parse

    ok = {"requests": 10, "error_total": 0, "latency_us": {"total": {"count": 10, "p99": 500}}}
    critical = Finding(severity="critical", title="Connections refused", text="...")
    warning = Finding(severity="warning", title="Generator saturated", text="...")
    assert gate(ok) == 0
    assert gate(ok, evaluate([parse("total.p99 < 1ms")], ok)) == 0
    assert gate(ok, evaluate([parse("total.p99 < 100us")], ok)) == 99
    assert gate(ok, findings=[critical]) == 0
    assert gate(ok, findings=[warning], fail_on="critical") == 0
    assert gate(ok, findings=[critical], fail_on="critical") == 99
    assert "--fail-on critical: Connections refused" in capsys.readouterr().err
    # A run in which not one request succeeded failed, whatever its thresholds say.
    assert gate({"requests": 0, "errors": {"ECONNREFUSED": 5}}, evaluate([parse("error_rate <= 100%")],
                                                                          {"requests": 0})) == 1
    assert "not one request succeeded (x; errors: ECONNREFUSED 5)" in capsys.readouterr().err
    # compare: a variant that provokes a total failure is the experiment, not a failed run.
    assert gate({"requests": 0, "errors": {"ETIMEDOUT": 5}}, empty_fails=False) == 0
    assert "note: not one request succeeded" in capsys.readouterr().err
    assert gate({"requests": 0}, evaluate([parse("requests > 0")], {"requests": 0}), empty_fails=False) == 99
