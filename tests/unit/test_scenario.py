import pytest

from tests.conftest import run_cli
from hypothesis import given, strategies as st

from tcpstress.scenario import (ScenarioError, build, load_scenario, parse_address_list, parse_duration,
                                split_target, UNLIMITED)

BASE = {"target": {"host": "127.0.0.1", "port": 8080}}


def err(raw, where="s.toml"):
    with pytest.raises(ScenarioError) as e:
        build(raw, where)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("text,seconds", [
    ("10s", 10), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("1.5s", 1.5), (3, 3), (0.25, 0.25), ("7", 7),
    ("250us", 0.00025),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 sekunds", "ten", "-1s", "1d", "", True, [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m"]))
def test_duration_roundtrip(n, unit):
    factor = {"ms": 1e-3, "s": 1, "m": 60}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)


def test_address_ranges():
    assert parse_address_list("127.0.0.2-127.0.0.4") == ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    assert parse_address_list("127.0.0.2-4") == ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    assert parse_address_list(["127.0.0.9", "::1"]) == ("127.0.0.9", "::1")
    for bad in ["127.0.0.5-127.0.0.1", "nope", "127.0.0.1,127.0.0.1"]:
        with pytest.raises(ValueError):
            parse_address_list(bad)


def test_a_range_across_address_families_is_a_one_line_error(tmp_path):
    # Comparing an IPv4 with an IPv6 address raised TypeError: a traceback for the user.
    with pytest.raises(ValueError, match="two IPv4 or two IPv6 addresses"):
        parse_address_list("127.0.0.1-::1")
    proc = run_cli("run", "--builtin-server", "--duration", "1s", "--out", tmp_path / "run",
                   "--source", "127.0.0.1-::1", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tcpstress: error: --source: '127.0.0.1-::1': a range runs between two IPv4 or two IPv6 "
        "addresses; allowed: IP addresses or ranges like 127.0.0.2-127.0.0.9"]
    assert not (tmp_path / "run").exists()


def test_defaults_and_fields():
    s = build({**BASE, "load": {"connections": 5, "duration": "2s"},
               "connection": {"keepalive": False, "close": "reset"}}, "x.toml")
    assert s.load.connections == 5 and s.load.duration == 2.0
    assert s.connection.effective_requests == 1 and s.connection.close == "reset"
    assert s.name == "x"


def test_unlimited_requests():
    s = build({**BASE, "connection": {"requests_per_connection": "unlimited"}})
    assert s.connection.requests_per_connection == UNLIMITED
    s = build({**BASE, "connection": {"requests_per_connection": 100}})
    assert s.connection.effective_requests == 100


@pytest.mark.parametrize("raw,needle", [
    ({**BASE, "lod": {}}, "unknown key 'lod' (did you mean 'load'?)"),
    ({**BASE, "load": {"conections": 3}}, "load.conections (did you mean 'connections'?)"),
    ({**BASE, "load": {"connections": "many"}}, "load.connections: expected a whole number"),
    ({**BASE, "load": {"connections": 0}}, "load.connections = 0 is not allowed; allowed: 1 to 1000000"),
    ({**BASE, "load": {"duration": "10 sekunds"}}, "load.duration: '10 sekunds' is not a duration"),
    ({**BASE, "target": {"host": "127.0.0.1", "port": 8080, "protocol": "ftp"}}, "target.protocol"),
    ({"target": {"host": "127.0.0.1"}}, "target.port is missing"),
    ({**BASE, "load": {"model": "open"}}, "load.rate must be > 0"),
    ({**BASE, "load": {"rate": 10}}, "load.rate applies to model = \"open\""),
    ({**BASE, "connection": {"keepalive": "yes"}}, "connection.keepalive: expected true or false"),
    ({**BASE, "connection": {"close": "both"}}, "connection.close = 'both' is not allowed"),
    ({**BASE, "connection": {"source_addresses": ["127.0.0.2", "::1"]}}, "mixes IPv4 and IPv6"),
    ({**BASE, "target": {**BASE["target"], "headers": ["NoColon"]}}, "is not a header"),
    ({**BASE, "target": {**BASE["target"], "headers": ["Content-Length: 5"]}}, "tcpstress sets it itself"),
    ({**BASE, "target": {**BASE["target"], "expect_status": [200, "6xx"]}}, "is not a status code"),
    ({**BASE, "target": {**BASE["target"], "method": "get"}}, "target.method = 'get' is not allowed"),
    ({**BASE, "target": {**BASE["target"], "path": "/a b"}}, "target.path = '/a b' is not allowed"),
    ({**BASE, "target": {**BASE["target"], "body": "x", "body_file": "s.toml"}}, "cannot read"),
    ({**BASE, "request": [{"path": "/a", "wieght": 2}]}, "unknown key 'wieght' (did you mean 'weight'?)"),
    ({**BASE, "request": [{"name": "a"}, {"name": "a"}]}, "[[request]] names repeat: a"),
    ({**BASE, "tls": {"version": "1.1"}}, "tls.version = '1.1' is not allowed"),
    ({**BASE, "load": {"workers": 4, "connections": 2}}, "exceeds load.connections"),
    ({**BASE, "variants": {"a": {"lod": {}}}}, "[variants.a]: unknown key 'lod'"),
    ({**BASE, "variants": {"a": {"load": {"connections": -1}}}}, "load.connections = -1"),
    ({**BASE, "target": []}, "[target] must be a table"),
])
def test_validation_errors_name_file_and_key(raw, needle):
    msg = err(raw)
    assert msg.startswith("s.toml")
    assert needle in msg


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[load\nx=1")
    with pytest.raises(ScenarioError, match="bad.toml: not valid TOML"):
        load_scenario(bad)


def test_overrides_are_validated_like_the_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[target]\nhost = "127.0.0.1"\nport = 80\n[load]\nconnections = 5\n')
    s = load_scenario(f, {"load.connections": "50", "connection.keepalive": "false", "load.duration": "3s"})
    assert s.load.connections == 50 and not s.connection.keepalive and s.load.duration == 3
    with pytest.raises(ScenarioError, match="load.connections: '5x' is not a whole number"):
        load_scenario(f, {"load.connections": "5x"})


def test_variants_apply_overrides():
    s = build({**BASE, "load": {"connections": 4},
               "variants": {"base": {}, "churn": {"connection": {"keepalive": False}, "load": {"connections": 8}}}})
    churn = s.with_variant(s.variant("churn"))
    assert not churn.connection.keepalive and churn.load.connections == 8
    assert s.with_variant(s.variant("base")).connection.keepalive
    with pytest.raises(ScenarioError, match="no variant 'x'"):
        s.variant("x")


def test_to_dict_round_trip():
    s = build({**BASE, "connection": {"source_addresses": "127.0.0.2-3"}, "variants": {"v": {"client_sysctls": {"tcp_tw_reuse": 1}, "server_sysctls": {"tcp_syncookies": 0},
                                       "server": {"close": "never"}}}})
    assert s.variants[0].server == {"tcp_syncookies": 0}
    assert s.with_variant(s.variants[0]).server.close == "never"
    from tcpstress.scenario import Scenario
    again = Scenario.from_dict(s.to_dict())
    assert again.to_dict() == s.to_dict()


@pytest.mark.parametrize("text,expected", [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:8080", ("::1", 8080)),
                                           ("localhost:1", ("localhost", 1))])
def test_split_target(text, expected):
    assert split_target(text) == expected


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:99999", ":80", "[::1]"])
def test_split_target_bad(bad):
    with pytest.raises(ScenarioError):
        split_target(bad)


def test_shipped_scenarios_load():
    from pathlib import Path
    for f in sorted((Path(__file__).parents[2] / "scenarios").glob("*.toml")):
        if f.name == "profiles.toml":
            continue
        s = load_scenario(f)
        for v in s.variants:
            s.with_variant(v)
