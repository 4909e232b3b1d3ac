"""Edges of start-up (issue #17 item 16): Ctrl-C before the runner's handler, a tiny open-file limit."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.35, 0.5, 0.8])
def test_ctrl_c_at_any_point_of_start_up_is_exit_130(tmp_path, delay):
    # Early delays land in imports and scenario loading, later ones in the runner's start-up or run.
    proc = subprocess.Popen([sys.executable, "-m", "tcpstress", "run", "--builtin-server", "--connections", "2",
                             "--duration", "2s", "--out", str(tmp_path / "run"), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if "Fatal Python error: init_import_site" in err:
        pytest.skip("the signal came while the interpreter itself started, before any tcpstress code")
    if proc.returncode == -signal.SIGINT and not err.strip():
        # Killed silently: SIGINT still had its default action, so the interpreter had not yet
        # installed its handler (seen when a busy machine made start-up slower than the delay).
        pytest.skip("the signal came before the interpreter installed its SIGINT handler")
    assert proc.returncode == 130, err
    assert "Aborted!" not in err and "Traceback" not in err


def test_an_open_file_limit_too_low_for_any_worker_says_what_it_needs(tmp_path):
    def limit_64():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.run([sys.executable, "-m", "tcpstress", "run", "--builtin-server", "--connections", "2",
                           "--duration", "1s", "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, preexec_fn=limit_64)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "the limit here is 64" in proc.stderr and "at least 65 (ulimit -n 65" in proc.stderr
    assert not (tmp_path / "run").exists()
