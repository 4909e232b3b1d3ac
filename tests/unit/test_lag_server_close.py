"""A late open model on loopback whose server closes first: its TIME_WAIT sockets are the
server's and hold no client port, so a crowded port range is not the reason.

Seen for real (nginx on 127.0.0.1, `--model open --no-keepalive --close server`, one
CPU-bound worker): 13,706 TIME_WAIT sockets from earlier runs, all keyed by nginx's
port, made the report say "port range crowded" where the worker was the limit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from tcpstress.report.diagnose import diagnose, load_runs
from tcpstress.report.lag import client_ports_held

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "make_fixtures.py"


@pytest.fixture()
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("make_fixtures_for_lag", FIXTURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUNS", tmp_path)
    return module


def _late_churn(make: Any, folder: Path, close: str, generator_cpu: float) -> Path:
    """5,000/s asked, 2,600/s started; 13,000 TIME_WAIT before the run growing to 16,000;
    connect() completions seen 12 ms late (p99)."""
    raw = make.host_raw("churn", "open-model churn on loopback", model="open", rate=5000.0, connections=500)
    raw["connection"] = {"keepalive": False, "close": close}

    def lag_ms(t: float) -> float:
        return 1000.0 * t * (1 - 2600 / 5000)

    make.build_run(make.Spec(
        folder, raw, {"host": {"net.ipv4.ip_local_port_range": "32768\t60999", "net.ipv4.tcp_tw_reuse": "2"}},
        load=lambda sec: make.Second(2600, 2600, late_starts=1500, max_lag_us=int(lag_ms(sec + 1) * 1000)),
        latency_ms=lambda rng, t: make.lognormal_ms(rng, 40.0, 0.3), lag_ms=lag_ms,
        states=lambda ns, t: {"TIME_WAIT": 13_000 + int(300 * max(t, 0)), "ESTABLISHED": 1000},
        counters=lambda ns, t: {"TcpActiveOpens": 2600, "TcpPassiveOpens": 2600},
        cpu=lambda role, t: generator_cpu if role == "generator" else 40.0,
        namespaces=("host",), pids={"generator": "4101", "target": "4201"}, cpu_count=2,
        host_cpu=lambda t: (190.0, 0.0, 2.0), phase_hlogs=True,
        summary_extra={"started": 26_000, "in_flight_at_end": 0}))
    return folder


def _lag_finding(folder: Path) -> Any:
    found = [f for f in diagnose(load_runs([folder])) if f.rule == "open_model_lag"]
    assert len(found) == 1, found
    return found[0]


def test_server_side_time_wait_holds_no_client_port(make: Any, tmp_path: Path) -> None:
    folder = _late_churn(make, tmp_path / "server_close", "server", generator_cpu=100.5)
    run = load_runs([folder])[0]
    # What was there before the run may be another client's; the run's own growth is the server's.
    # ESTABLISHED: 1,000 sockets, both ends of 500 connections.
    assert client_ports_held(run) == 13_000 + 500
    finding = _lag_finding(folder)
    assert finding.evidence["cause"] == "generator", finding.text
    assert "port range" not in finding.title


def test_client_side_time_wait_still_counts(make: Any, tmp_path: Path) -> None:
    folder = _late_churn(make, tmp_path / "client_close", "client", generator_cpu=100.5)
    run = load_runs([folder])[0]
    assert client_ports_held(run) >= 13_000 + 300 * 9 + 500


def test_slow_connect_of_an_idle_generator_is_still_the_port_search(make: Any, tmp_path: Path) -> None:
    # The same numbers with a generator at 30% of a core: nothing of its own made
    # connect() late, and a third of the range is held.
    folder = _late_churn(make, tmp_path / "idle_generator", "server", generator_cpu=30.0)
    assert _lag_finding(folder).evidence["cause"] == "ports"
