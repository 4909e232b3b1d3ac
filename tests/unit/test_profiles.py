"""Profile validation and the shipped profiles (pure: no namespaces)."""

from __future__ import annotations

import pytest

from tcpstress.knowledge import KNOBS_BY_PATH
from tcpstress.lab import (
    LabError,
    Profile,
    ProfileError,
    apply_sysctls,
    get_profile,
    lab_knob_paths,
    load_profiles,
    parse_profiles,
    shipped_profiles,
    shipped_profiles_path,
    validate_profile,
)


def test_validate_profile_normalises_names_and_values():
    assert validate_profile(
        {"ip_local_port_range": "40000\t40999", "net.ipv4.tcp_tw_reuse": 0, "somaxconn": "128"}
    ) == {
        "net.ipv4.ip_local_port_range": "40000 40999",
        "net.ipv4.tcp_tw_reuse": "0",
        "net.core.somaxconn": "128",
    }


def test_validate_profile_is_idempotent():
    once = validate_profile({"ip_local_port_range": [1024, 65535], "tcp_syncookies": 2})
    assert validate_profile(once) == once


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tcp_tw_resue": 1}, "unknown sysctl knob 'tcp_tw_resue' (did you mean tcp_tw_reuse?)"),
        ({"tcp_tw_recycle": 1}, "net.ipv4.tcp_tw_recycle was removed in Linux 4.12"),
        ({"net.ipv4.tcp_max_orphans": 1000}, "net.ipv4.tcp_max_orphans is global, a lab namespace cannot set it"),
        ({"tcp_tw_reuse": 7}, "net.ipv4.tcp_tw_reuse: got 7, must be one of 0, 1, 2"),
        ({"ip_local_port_range": "5000 1000"}, "net.ipv4.ip_local_port_range: got '5000 1000'"),
        ({"tcp_tw_reuse": 1, "net.ipv4.tcp_tw_reuse": 0}, "net.ipv4.tcp_tw_reuse is set twice"),
    ],
)
def test_validate_profile_refusals_are_one_line(settings, expected):
    with pytest.raises(ProfileError) as caught:
        validate_profile(settings)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("namespace", [None, ""])
def test_apply_refuses_without_a_namespace(namespace):
    # Refused before validation or any write: the host's values are never touched.
    with pytest.raises(LabError, match="never changes the host"):
        apply_sysctls(namespace, {"tcp_tw_reuse": 0})


# -- profile files -----------------------------------------------------------


def write(tmp_path, text):
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    return path


def test_load_profiles_keeps_file_order_and_validates(tmp_path):
    path = write(
        tmp_path,
        """
[profiles.b]
description = "  second letter  "
client = { ip_local_port_range = "40000 40999", tcp_tw_reuse = 0 }

[profiles.a]
server = { tcp_syncookies = 1 }

[profiles.a.client]
tcp_fin_timeout = 5
""",
    )
    profiles = load_profiles(path)
    assert list(profiles) == ["b", "a"]
    assert profiles["b"] == Profile(
        name="b",
        description="second letter",
        client={"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"},
        server={},
    )
    assert profiles["a"].client == {"net.ipv4.tcp_fin_timeout": "5"}
    assert profiles["a"].server == {"net.ipv4.tcp_syncookies": "1"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[profiles.p]\nclient = { tcp_tw_reuse = 7 }\n',
            "profile 'p', client.tcp_tw_reuse: net.ipv4.tcp_tw_reuse: got 7, must be one of 0, 1, 2",
        ),
        (
            '[profiles.p]\nserver = { tcp_tw_recycle = 1 }\n',
            "profile 'p', server.tcp_tw_recycle: net.ipv4.tcp_tw_recycle was removed in Linux 4.12",
        ),
        (
            '[profiles.p]\nserver = { tcp_max_orphans = 10 }\n',
            "profile 'p', server.tcp_max_orphans: net.ipv4.tcp_max_orphans is global",
        ),
        (
            '[profiles.p]\nclient = { ip_local_port_range = "5000 1000" }\n',
            "profile 'p', client.ip_local_port_range:",
        ),
        (
            '[profiles.p]\nclient = { somaxcon = 10 }\n',
            "(did you mean somaxconn?)",
        ),
        (
            '[profiles.p]\nclient = { tcp_tw_reuse = 1, "net.ipv4.tcp_tw_reuse" = 1 }\n',
            "net.ipv4.tcp_tw_reuse is set twice",
        ),
        ('[profiles.p]\nclinet = { tcp_tw_reuse = 1 }\n', "profile 'p': unknown key 'clinet'"),
        ('[profiles.p]\nclient = 3\n', "profile 'p', client: must be a table"),
        ('[profiles.p]\ndescription = 3\n', "profile 'p': description must be a string"),
        ('[profile.p]\nclient = {}\n', "unknown top-level key 'profile'"),
        ('title = "x"\n', "unknown top-level key 'title'"),
        ('', "no [profiles.NAME] tables"),
        ('[profiles.p\n', "not valid TOML"),
    ],
)
def test_load_profiles_errors_name_file_profile_and_key(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ":")
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profiles"):
        load_profiles(tmp_path / "nope.toml")


def test_parse_profiles_and_to_dict_round_trip():
    profiles = parse_profiles({"profiles": {"x": {"client": {"tcp_tw_reuse": 1}}}}, "inline")
    data = profiles["x"].to_dict()
    assert data == {"name": "x", "description": "", "client": {"net.ipv4.tcp_tw_reuse": "1"}, "server": {}}
    again = Profile.from_dict("x", {key: data[key] for key in ("description", "client", "server")})
    assert again == profiles["x"]


# -- the shipped file --------------------------------------------------------

EXPECTED_SHIPPED = {
    "baseline", "tw_reuse", "no_tw_reuse", "narrow_ports", "narrow_ports_tw_reuse",
    "wide_ports", "no_syncookies", "always_syncookies", "small_backlog",
    "abort_on_overflow", "fast_fin_timeout", "small_tw_buckets", "fast_keepalive",
    "short_syn_retries", "short_synack_retries",
}  # fmt: skip


def test_shipped_profiles_load_and_are_described():
    profiles = shipped_profiles()
    assert shipped_profiles_path().name == "profiles.toml"
    assert EXPECTED_SHIPPED <= set(profiles)
    settable = set(lab_knob_paths())
    for profile in profiles.values():
        assert profile.description, profile.name
        assert profile.client or profile.server, profile.name
        assert set(profile.client) | set(profile.server) <= settable, profile.name


def test_baseline_states_the_kernel_defaults():
    baseline = shipped_profiles()["baseline"]
    for side in (baseline.client, baseline.server):
        for path, value in side.items():
            default = KNOBS_BY_PATH[path].default_value
            if default is not None:
                assert value == default, path


def test_narrow_ports_is_the_facts_reproduction():
    narrow = shipped_profiles()["narrow_ports"]
    assert narrow.client == {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}


def test_get_profile_suggests():
    assert get_profile("tw_reuse").client["net.ipv4.tcp_tw_reuse"] == "1"
    with pytest.raises(ProfileError, match=r"did you mean narrow_ports\?"):
        get_profile("narow_ports")
