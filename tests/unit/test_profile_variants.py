"""compare --profiles: shipped profiles as the variants of a lab scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstress.lab.profiles import shipped_profiles
from tcpstress.profile_variants import with_profiles
from tcpstress.scenario import ScenarioError, load_scenario
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_profiles_become_the_variants_in_order():
    s = with_profiles(load_scenario(ROOT / "scenarios" / "time_wait_exhaustion.toml"), "wide_ports, narrow_ports")
    assert [(v.name, v.profile) for v in s.variants] == [("wide_ports", "wide_ports"), ("narrow_ports", "narrow_ports")]
    assert s.variants[0].description == shipped_profiles()["wide_ports"].description


@pytest.mark.parametrize("names, words", [("nope", "no profile 'nope'"), ("wide_ports,wide_ports", "named twice"),
                                          (" , ", "one or more profile names")])
def test_bad_profile_lists_are_refused(names, words):
    with pytest.raises(ScenarioError, match=words):
        with_profiles(load_scenario(ROOT / "scenarios" / "time_wait_exhaustion.toml"), names)


def test_cli_refuses_profiles_outside_a_lab_in_one_line():
    proc = run_cli("compare", "scenarios/keepalive_vs_churn.toml", "--profiles", "wide_ports")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("tcpstress: error: --profiles:") and "lab = true" in proc.stderr


def test_wide_ports_variant_is_the_wide_ports_profile():
    s = load_scenario(ROOT / "scenarios" / "time_wait_exhaustion.toml")
    assert {v.name: v.profile for v in s.variants}["wide_ports"] == "wide_ports"
    sources = [v for v in s.variants if v.name == "more_sources"][0].overrides
    assert not any(str(a).startswith("127.") for a in str(sources).split("'"))
