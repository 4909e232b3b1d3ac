"""Hostile input: whatever a scenario file or a flag holds, the answer is a result or one clear line."""

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from tcpstress.scenario import SCHEMA, ScenarioError, build, load_scenario

# TOML has no null, so no None: drawn directly rather than filtered out, which
# made hypothesis's filter health check fail now and then.
scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.text(max_size=30), st.binary(max_size=8).map(lambda b: b.decode("latin-1")))
values = st.recursive(scalars,
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
keys = st.sampled_from([k for sec in SCHEMA.values() for k in sec] + list(SCHEMA) + ["variants", "x"])


def _section():
    return st.dictionaries(keys, values, max_size=6)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, st.one_of(values, _section()), max_size=6))
def test_any_structure_builds_or_fails_with_one_line(raw):
    try:
        build(raw, "fuzz.toml")
    except ScenarioError as e:
        msg = str(e)
        assert msg.startswith("fuzz.toml") and "\n" not in msg and len(msg) < 2000


flag_keys = st.sampled_from([f"{sec}.{k}" if sec else k for sec, fields in SCHEMA.items() for k in fields])


@settings(max_examples=400)
@given(st.dictionaries(flag_keys, st.text(alphabet=string.printable, max_size=25), max_size=5))
def test_any_flag_values_build_or_fail_with_one_line(overrides):
    overrides = {"target.host": "127.0.0.1", "target.port": "8080", **overrides}
    try:
        load_scenario(None, overrides)
    except ScenarioError as e:
        assert "\n" not in str(e)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_any_file_bytes_load_or_fail_with_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except ScenarioError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
