import pytest

from tcpstress.scenario import ScenarioError, Stage, build, load_scenario
from tests.conftest import run_cli


def _build(load):
    return build({"target": {"host": "127.0.0.1", "port": 80}, "load": load}, "s.toml")


def test_stage_tables_imply_open_model_and_duration():
    s = _build({"stage": [{"rate": 100, "lasts": "2s"}, {"rate": 300, "lasts": 3, "ramp": "1s"}]})
    assert s.load.model == "open" and s.load.duration == 5 and s.load.rate == 300
    assert s.load.stage == (Stage(100, 2.0), Stage(300, 3.0, 1.0))


def test_stages_flag_text():
    s = load_scenario(None, {"target.host": "127.0.0.1", "target.port": "80", "load.stage": "1000:30s,2000:30s:5s"})
    assert s.load.stage == (Stage(1000, 30.0), Stage(2000, 30.0, 5.0))


@pytest.mark.parametrize("load, words", [
    ({"stage": [{"rate": 100}]}, "needs rate and lasts"),
    ({"stage": [{"rate": 100, "lasts": "1.5s"}]}, "whole number of seconds"),
    ({"stage": [{"rate": 0, "lasts": "1s"}]}, "outside"),
    ({"stage": [{"rate": 10, "lasts": "1s", "ramp": "2s"}]}, "longer than lasts"),
    ({"stage": [{"rate": 10, "lasts": "1s", "speed": 1}]}, "unknown key 'speed'"),
    ({"stage": [{"rate": 10, "lasts": "1s"}], "rate": 5}, "exclude each other"),
    ({"stage": [{"rate": 10, "lasts": "1s"}], "model": "closed"}, "needs model"),
    ({"stage": [{"rate": 10, "lasts": "1s"}], "duration": "5s"}, "differs from the stages' sum"),
    ({"stage": []}, "0 stages"),
])
def test_bad_stages_are_one_line_errors(load, words):
    with pytest.raises(ScenarioError) as e:
        _build(load)
    assert words in str(e.value) and str(e.value).startswith("s.toml: ") and "\n" not in str(e.value)


def test_bad_stages_flag_exits_2_naming_the_flag():
    proc = run_cli("run", "--target", "127.0.0.1:9", "--stages", "1000")
    assert proc.returncode == 2
    assert proc.stderr.startswith("tcpstress: error: --stages: ") and "RATE:LASTS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_staged_scenario_survives_validation_and_the_round_trip():
    from tcpstress.scenario import Scenario, validate

    s = _build({"stage": [{"rate": 100, "lasts": "2s"}, {"rate": 300, "lasts": 3, "ramp": "1s"}]})
    again = validate(s)
    assert again.load == s.load
    assert Scenario.from_dict(s.to_dict()).load == s.load
