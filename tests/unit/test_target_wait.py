"""--wait-for-target: the loader starts only once the target accepts a connection."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from tcpstress.target_wait import parse_wait, wait_for_target
from tests.conftest import free_port, run_cli


def _time_wait_towards(port: int) -> int:
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", "dst", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def test_a_listening_target_is_found_at_once_and_the_probe_leaves_no_time_wait():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        waited = wait_for_target("127.0.0.1", port, 5)
        assert waited.listening and waited.probes == 1
        accepted, _ = listener.accept()  # the probe really reached the listener
        accepted.close()
    # The probe closed with RST: its port is not held in TIME_WAIT (ss is the witness).
    assert _time_wait_towards(port) == 0


def test_a_target_that_starts_late_is_waited_for():
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    timer = threading.Timer(0.7, lambda: (listener.bind(("127.0.0.1", port)), listener.listen(4)))
    timer.start()
    try:
        waited = wait_for_target("127.0.0.1", port, 10)
    finally:
        timer.join()
        listener.close()
    assert waited.listening and waited.probes > 1


def test_a_closed_port_gives_up_after_the_time_with_the_reason():
    clock = iter(float(t) for t in range(1000))
    waited = wait_for_target("127.0.0.1", free_port(), 3, clock=lambda: next(clock), sleep=lambda s: None)
    assert not waited.listening
    assert waited.last_error.startswith("ECONNREFUSED")


@pytest.mark.parametrize("bad", ["soon", "-5s", "2h"])
def test_a_bad_value_is_refused(bad):
    with pytest.raises(ValueError):
        parse_wait(bad)


def test_the_command_line_fails_in_one_line_when_nothing_listens(tmp_path):
    port = free_port()
    done = run_cli("run", "--target", f"127.0.0.1:{port}", "--wait-for-target", "1s", "--duration", "1s",
                   "--out", tmp_path / "run", timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"tcpstress: run failed: --wait-for-target 1s: 127.0.0.1:{port} accepted no connection")
    assert "ECONNREFUSED" in line
    assert not (tmp_path / "run").exists()


def test_the_command_line_refuses_a_bad_wait_in_one_line(tmp_path):
    done = run_cli("run", "--target", "127.0.0.1:9", "--wait-for-target", "soon", "--out", tmp_path / "run")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tcpstress: error: --wait-for-target 'soon': ")
    assert not (tmp_path / "run").exists()
