"""Without CAP_NET_ADMIN a lab scenario stops at once, says what is missing and what still works."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to drop the capabilities")


def test_lab_compare_without_capabilities_is_one_line_and_exit_2(tmp_path):
    # Root with an empty capability bounding set: like an unprivileged user for the lab.
    proc = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "tcpstress",
                           "compare", str(ROOT / "scenarios" / "time_wait_exhaustion.toml"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_NET_ADMIN" in lines[0]
    assert "loopback" in lines[0] and "docker-compose" in lines[0]  # what still works
    assert not (tmp_path / "out").exists()
