"""Input the worker would refuse mid-run is refused up front (issue #17 item 15): one line, exit 2, no folder.

The witness for "up front" is the file system (no run folder, no reports/)
and the request builder itself: whatever the scenario accepts, it builds.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstress.load.protocols import build_http_request
from tcpstress.scenario import ScenarioError, load_scenario
from tests.conftest import run_cli


@pytest.mark.parametrize("flag", ["--host-header=a b", "--path=/é", "--path=/a\tb", "--path=/a\x7fb",
                                  "--host-header=h\u00e9"])
def test_bad_path_or_host_header_is_refused_before_a_folder(tmp_path, flag):
    out = tmp_path / "out"
    proc = run_cli("run", "--builtin-server", "--duration", "1s", "--out", out, flag, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tcpstress: error: --")
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


@settings(max_examples=300)
@given(path=st.text(max_size=12).map(lambda t: "/" + t), host=st.text(max_size=12))
def test_whatever_the_scenario_accepts_the_request_builder_builds(path, host):
    overrides = {"target.host": "127.0.0.1", "target.port": "8080", "target.path": path, "target.host_header": host}
    try:
        s = load_scenario(None, overrides)
    except ScenarioError as e:
        assert "\n" not in str(e)
        return
    build_http_request(s.target.method, s.target.path, s.target.host_header or "127.0.0.1:8080", close=False)


@pytest.mark.parametrize("stem, name", [("x$\\nosuchcmd$", "x_nosuchcmd"), ("my scenario", "my_scenario"),
                                        ("$$$", "scenario"), ("ok-name.v2", "ok-name.v2")])
def test_a_file_stem_becomes_a_valid_name(tmp_path, stem, name):
    path = tmp_path / f"{stem}.toml"
    path.write_text('[target]\nhost = "127.0.0.1"\nport = 8080\n')
    assert load_scenario(path).name == name


def test_a_newline_in_the_file_name_is_not_carried_into_the_name(tmp_path):
    path = tmp_path / "x$\nosuchcmd$.toml"
    path.write_text('[target]\nhost = "127.0.0.1"\nport = 8080\n')
    assert load_scenario(path).name == "x_osuchcmd"  # "\n" is one character: a newline
