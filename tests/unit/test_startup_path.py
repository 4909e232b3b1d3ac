"""The start of a run: workers boot while the runner sets up, and the runner's checks stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tcpstress import runner
from tcpstress.load.processes import WorkerPool
from tcpstress.scenario import load_scenario
from tests.conftest import ROOT

# A stand-in worker that says "booted" only once it has read a line: the test decides when.
HELD_WORKER = textwrap.dedent("""
    import json, sys
    sys.stdin.readline()
    print(json.dumps({"type": "booted"}), flush=True)
    sys.stdin.readline()
""")


def test_launch_returns_before_the_workers_boot_and_wait_booted_waits_for_each():
    def spawn(argv, **kw):
        return subprocess.Popen([sys.executable, "-c", HELD_WORKER], **kw)

    pool = WorkerPool(2, spawn=spawn)
    try:
        pool.launch()
        assert [w.state for w in pool.workers] == ["starting", "starting"]
        assert all(w.proc.poll() is None for w in pool.workers)
        for w in pool.workers:
            assert w.proc.stdin is not None
            w.proc.stdin.write(b"boot\n")
            w.proc.stdin.flush()
        pool.wait_booted()
        assert [w.state for w in pool.workers] == ["booted", "booted"]
    finally:
        pool.stop()
    assert all(w.proc.returncode is not None for w in pool.workers)


def test_the_open_file_check_does_not_import_the_load_engine():
    # The runner reads FD_MARGIN from the worker module before it starts any worker;
    # the engine (ssl, the HTTP parser, the recorder) is the workers' to import.
    code = ("import sys; from tcpstress import runner; from tcpstress.scenario import load_scenario; "
            "runner.check_fd_limit(load_scenario(None, {'target.port': '80'})); "
            "print('tcpstress.load.engine' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_https_target_on_the_system_ca_store_gets_more_start_slack():
    plain = load_scenario(None, {"target.host": "127.0.0.1", "target.port": "80"})
    system_store = load_scenario(None, {"target.host": "example.test", "target.port": "443",
                                        "target.protocol": "https"})
    own_ca = load_scenario(None, {"target.host": "example.test", "target.port": "443",
                                  "target.protocol": "https", "tls.ca_file": str(ROOT / "pyproject.toml")})
    assert runner.start_slack(plain) == runner.START_SLACK_S
    assert runner.start_slack(own_ca) == runner.START_SLACK_S
    assert runner.start_slack(system_store) == runner.START_SLACK_S + runner.TLS_STORE_SLACK_S
