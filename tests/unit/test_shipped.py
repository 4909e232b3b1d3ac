"""One finder for the shipped scenarios and profiles (tcpstress/shipped.py)."""

from __future__ import annotations

from pathlib import Path

import tcpstress
from tcpstress import gallery, shipped
from tcpstress.lab.profiles import shipped_profiles_path
from tests.conftest import ROOT, run_cli

PACKAGE_SCENARIOS = Path(tcpstress.__file__).resolve().parent / "scenarios"


def test_every_finder_gives_the_package_folder():
    assert shipped.scenarios_dir().resolve() == PACKAGE_SCENARIOS
    assert gallery.scenarios_dir().resolve() == PACKAGE_SCENARIOS
    assert shipped_profiles_path().resolve() == PACKAGE_SCENARIOS / "profiles.toml"
    # The checkout's scenarios/ is the same folder (README and example paths).
    assert (ROOT / "scenarios").resolve() == PACKAGE_SCENARIOS
    assert "keepalive_vs_churn" in shipped.scenario_names() and "profiles" not in shipped.scenario_names()


def test_a_bare_name_means_the_shipped_scenario_only_when_no_such_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped.scenario_argument("keepalive_vs_churn") == PACKAGE_SCENARIOS / "keepalive_vs_churn.toml"
    assert shipped.scenario_argument("keepalive_vs_churn.toml") == PACKAGE_SCENARIOS / "keepalive_vs_churn.toml"
    (tmp_path / "keepalive_vs_churn.toml").write_text('name = "mine"\n')
    assert shipped.scenario_argument("keepalive_vs_churn.toml") == "keepalive_vs_churn.toml"  # the user's file
    for text in ("sub/keepalive_vs_churn.toml", "no_such_scenario", "profiles", "profiles.toml"):
        assert shipped.scenario_argument(text) == text


def test_an_unknown_name_is_still_the_missing_file_error(tmp_path):
    proc = run_cli("run", "no_such_scenario", "--duration", "1s", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tcpstress: error: no_such_scenario")
    assert "Traceback" not in proc.stderr
