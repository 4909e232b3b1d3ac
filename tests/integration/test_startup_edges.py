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
    if "Traceback" in err and "/tcpstress/" not in err:
        # Raised inside runpy or importlib before the first line of tcpstress ran (seen at 0.05 s).
        pytest.skip("the signal came while Python looked the package up, before any tcpstress code")
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


def _run_with_cli_import(tmp_path, what_the_import_does: str) -> subprocess.CompletedProcess:
    """`tcpstress --version` through the real entry point, with the import of tcpstress.cli replaced
    by `what_the_import_does` (Python source): Ctrl-C at a chosen point of the CLI's imports."""
    script = tmp_path / "entry.py"
    script.write_text(f"""
import builtins
import tcpstress.__main__ as entry
real_import = builtins.__import__
def patched(name, *args, **kwargs):
    if name == "tcpstress.cli":
        {what_the_import_does}
    return real_import(name, *args, **kwargs)
builtins.__import__ = patched
entry.run()
""")
    return subprocess.run([sys.executable, str(script), "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_ctrl_c_that_passed_through_exec_of_a_string_still_exits_130(tmp_path):
    # A dataclass or namedtuple built during an import runs exec()/eval() of a string; CPython notes a
    # KeyboardInterrupt leaving such code even when it is caught, and a plain sys.exit(130) then ends
    # as "killed by SIGINT" (-2 here): what clean-clone CI saw once.
    proc = _run_with_cli_import(tmp_path, 'exec("raise KeyboardInterrupt")')
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted (SIGINT)\n"


def test_ctrl_c_wrapped_by_python_during_a_class_body_is_exit_130(tmp_path):
    # CPython 3.11 wraps an exception raised in a descriptor's __set_name__ in RuntimeError.
    proc = _run_with_cli_import(tmp_path, "raise RuntimeError('Error calling __set_name__') from KeyboardInterrupt()")
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr


def test_another_failure_while_importing_the_cli_is_not_taken_for_ctrl_c(tmp_path):
    proc = _run_with_cli_import(tmp_path, "raise RuntimeError('broken install')")
    assert proc.returncode == 1
    assert "RuntimeError: broken install" in proc.stderr and "interrupted" not in proc.stderr
