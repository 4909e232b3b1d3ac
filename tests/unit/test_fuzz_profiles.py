"""Hostile profiles: whatever a profiles file or a knob value holds, the answer is a profile or one clear line.

The scenario fuzz (test_fuzz_input.py) stops at the scenario's own fields;
profiles, and the client_sysctls/server_sysctls a variant carries, are
validated by tcpstress/lab (knob names against the knowledge table, values
by each knob's own rule) and must fail the same way.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from tcpstress import knowledge
from tcpstress.lab.profiles import load_profiles, parse_profiles
from tcpstress.lab.sysctl import ProfileError, validate_setting

scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.text(max_size=30), st.binary(max_size=8).map(lambda b: b.decode("latin-1")))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
knob_names = st.one_of(
    st.sampled_from([k.name for k in knowledge.KNOBS] + [k.path for k in knowledge.KNOBS]),
    st.sampled_from(["tcp_tw_recycle", "net.ipv4.tcp_max_orphans", "tcp_tw_resue", "", "net.", "vm.swappiness"]),
    st.text(max_size=20),
)
profile_keys = st.one_of(st.sampled_from(["description", "client", "server"]), st.text(max_size=10))
profile_body = st.dictionaries(profile_keys, st.one_of(values, st.dictionaries(knob_names, values, max_size=4)),
                               max_size=4)


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message and len(message) < 2000, message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=12), profile_body, max_size=3), st.booleans())
def test_any_profiles_table_builds_or_fails_with_one_line(profiles, wrapped):
    data = {"profiles": profiles} if wrapped else profiles
    try:
        parsed = parse_profiles(data, "fuzz.toml")
    except ProfileError as e:
        _one_line(str(e))
        assert str(e).startswith("fuzz.toml")
        return
    for p in parsed.values():  # what was accepted is kernel text for known, per-namespace knobs
        for name, text in {**p.client, **p.server}.items():
            assert knowledge.knob(name).per_namespace and isinstance(text, str) and "\n" not in text


@settings(max_examples=500)
@given(knob_names, st.one_of(values, st.text(alphabet=string.printable, max_size=25)))
def test_any_knob_value_validates_or_fails_with_one_line(name, value):
    try:
        path, text = validate_setting(name, value)
    except ProfileError as e:
        _one_line(str(e))
        return
    assert path.startswith("net.") and "\n" not in text


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_any_profiles_file_bytes_load_or_fail_with_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "profiles.toml"
    path.write_bytes(data)
    try:
        load_profiles(path)
    except ProfileError as e:
        _one_line(str(e))
        assert str(e).startswith(str(path))


def test_a_knob_name_with_a_line_break_is_shown_quoted():
    """Found by the fuzz above: a quoted TOML key may hold "\\r" or "\\n"."""
    for key in ("\r", "no\nsuch_knob", "a\tb"):
        try:
            parse_profiles({"profiles": {"p": {"client": {key: 1}}}}, "fuzz.toml")
        except ProfileError as error:
            _one_line(str(error))
            assert repr(key) in str(error)
        else:
            raise AssertionError(f"{key!r} was taken as a knob")
