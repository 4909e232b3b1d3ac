"""The public Python API: what tcpstress exports, and scenarios made in Python checked like files."""

import inspect
from pathlib import Path

import pytest

import tcpstress
from tcpstress.scenario import Load, Scenario, ScenarioError, Server, Target, validate

ROOT = Path(__file__).resolve().parents[2]


def test_exports_are_the_documented_public_api():
    assert sorted(tcpstress.__all__) == sorted({"Connection", "Fault", "Load", "RequestSpec", "RunResult", "Sampling",
                                                "Scenario", "ScenarioError", "Server", "Target", "Tls",
                                                "__version__", "compare", "load_scenario", "run"})
    for name in tcpstress.__all__:
        obj = getattr(tcpstress, name)
        if name != "__version__":
            assert inspect.getdoc(obj), f"tcpstress.{name} has no docstring"
    assert (ROOT / "tcpstress" / "py.typed").is_file()


SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.toml") if p.stem != "profiles")  # profiles: not a scenario


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_survives_validation_unchanged(path):
    loaded = tcpstress.load_scenario(path)
    assert validate(loaded) == loaded


def test_a_scenario_made_in_python_gets_its_workers_resolved():
    s = validate(Scenario(server=Server(builtin=True), load=Load(duration=1, connections=2)))
    assert 1 <= s.load.workers <= 2


@pytest.mark.parametrize("scenario,needle", [
    (Scenario(target=Target(port=80), load=Load(connections=0)), "load.connections = 0 is not allowed"),
    (Scenario(target=Target(port=0)), "target.port is missing"),
    (Scenario(target=Target(port=80, method="get")), "target.method = 'get' is not allowed"),
    (Scenario(target=Target(port=80), load=Load(model="open")), "load.rate must be > 0"),
])
def test_an_invalid_scenario_made_in_python_is_refused_with_the_files_message(scenario, needle):
    with pytest.raises(ScenarioError) as e:
        validate(scenario)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_run_refuses_before_starting_anything(tmp_path):
    with pytest.raises(ScenarioError):
        tcpstress.run(Scenario(target=Target(port=80), load=Load(connections=0)), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_run_refuses_a_folder_another_run_claimed(tmp_path):
    from tcpstress.results import FolderTaken, claim_folder

    claim_folder(tmp_path / "x")
    with pytest.raises(FolderTaken, match="another run"):
        tcpstress.run(Scenario(target=Target(host="127.0.0.1", port=9)), out=tmp_path / "x")
