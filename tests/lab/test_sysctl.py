"""Sysctls inside lab namespaces: written there, read back, refusals explained,
and the host's values never touched (root only).

Witnesses: `ip netns exec NS sysctl -n` for the namespace's values, and a
snapshot of the host's /proc/sys/net files taken before and after.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcpstress import knowledge
from tcpstress.lab import (
    apply_profile,
    Lab,
    LabError,
    ProfileError,
    apply_sysctls,
    get_profile,
    lab_knob_paths,
    read_sysctls,
)


def _snapshot_host_net_sysctls() -> dict[str, str]:
    values = {}
    for folder in (Path("/proc/sys/net/ipv4"), Path("/proc/sys/net/core")):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                try:
                    values[str(path)] = path.read_text()
                except OSError:  # write-only files such as route/flush
                    pass
    return values


@pytest.fixture
def host_untouched():
    """Fails the test if any host value under /proc/sys/net/{ipv4,core} changed."""
    before = _snapshot_host_net_sysctls()
    assert before["/proc/sys/net/ipv4/tcp_tw_reuse"].strip() in {"0", "1", "2"}
    yield
    after = _snapshot_host_net_sysctls()
    changed = {path for path in before if before[path] != after.get(path)}
    assert not changed, f"host sysctls changed: {sorted(changed)}"


def on_this_kernel(entry: knowledge.Knob) -> bool:
    # Per-namespace knobs exist on the host exactly when the kernel has them.
    return Path(entry.proc_file).exists()


def kernel_value(in_netns, namespace: str, path: str) -> str:
    return " ".join(in_netns(namespace, "sysctl", "-n", path).split())


def test_profile_values_read_back_inside_their_namespace(lab_prefix, run_id, host_untouched, in_netns):
    profile = get_profile("narrow_ports")
    with Lab(run_id) as lab:
        read_back = apply_profile(lab, profile)
        assert read_back["client"]["net.ipv4.ip_local_port_range"] == "40000 40999"
        assert read_back["client"]["net.ipv4.tcp_tw_reuse"] == "0"
        assert kernel_value(in_netns, lab.client_ns, "net.ipv4.ip_local_port_range") == "40000 40999"
        assert kernel_value(in_netns, lab.client_ns, "net.ipv4.tcp_tw_reuse") == "0"
        # The server side was not in the profile: it keeps a fresh namespace's defaults.
        assert kernel_value(in_netns, lab.server_ns, "net.ipv4.ip_local_port_range") == "32768 60999"
        assert kernel_value(in_netns, lab.server_ns, "net.ipv4.tcp_tw_reuse") == "2"


def test_apply_profile_reports_what_the_kernel_holds_for_every_knob(lab_prefix, run_id, host_untouched, in_netns):
    with Lab(run_id) as lab:
        read_back = apply_profile(lab, get_profile("fast_keepalive"))
        for side, namespace in (("client", lab.client_ns), ("server", lab.server_ns)):
            assert list(read_back[side]) == lab_knob_paths()
            for path, value in read_back[side].items():
                if value is None:  # a knob this kernel does not have
                    assert not Path(knowledge.knob(path).proc_file).exists()
                    continue
                assert value == kernel_value(in_netns, namespace, path), (side, path)
        assert read_back["server"]["net.ipv4.tcp_keepalive_time"] == "10"


def test_a_fresh_namespace_starts_from_the_tables_defaults(lab_prefix, run_id, in_netns):
    with Lab(run_id) as lab:
        for entry in knowledge.KNOBS:
            if entry.settable_in_lab and entry.default_value is not None and on_this_kernel(entry):
                assert kernel_value(in_netns, lab.client_ns, entry.path) == entry.default_value, entry.path


def test_every_rule_bound_is_accepted_by_the_kernel(lab_prefix, run_id, host_untouched, in_netns):
    # The table's limits must never refuse what the kernel accepts at the edges
    # it states; check them in a throwaway namespace.
    with Lab(run_id) as lab:
        for entry in knowledge.KNOBS:
            if not entry.settable_in_lab or not on_this_kernel(entry):
                continue
            rule = entry.rule
            if isinstance(rule, knowledge.IntRange):
                values = [rule.low, rule.high]
            elif isinstance(rule, knowledge.Choice):
                values = [number for number, _ in rule.meanings]
            else:
                values = ["1024 65535", "40000 40000"]
            for value in values:
                text = entry.normalise(value)
                assert apply_sysctls(lab.client_ns, {entry.name: value}) == {entry.path: text}
                assert kernel_value(in_netns, lab.client_ns, entry.path) == text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tcp_tw_reuse": 7}, "net.ipv4.tcp_tw_reuse: got 7, must be one of 0, 1, 2"),
        ({"ip_local_port_range": "5000 1000"}, "net.ipv4.ip_local_port_range: got '5000 1000'"),
        ({"tcp_tw_recycle": 1}, "net.ipv4.tcp_tw_recycle was removed in Linux 4.12"),
        ({"tcp_max_orphans": 4096}, "net.ipv4.tcp_max_orphans is global, a lab namespace cannot set it"),
        # Valid values first: validation refuses the whole set before any write.
        ({"tcp_tw_reuse": 0, "ip_local_port_range": "40000 40999", "tcp_syn_retries": 999}, "from 1 to 127"),
    ],
)
def test_refused_settings_write_nothing(lab_prefix, run_id, host_untouched, in_netns, settings, message):
    with Lab(run_id) as lab:
        with pytest.raises(ProfileError) as caught:
            apply_sysctls(lab.client_ns, settings)
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)
        assert kernel_value(in_netns, lab.client_ns, "net.ipv4.tcp_tw_reuse") == "2"
        assert kernel_value(in_netns, lab.client_ns, "net.ipv4.ip_local_port_range") == "32768 60999"


def test_a_value_the_kernel_refuses_names_knob_value_and_answer(lab_prefix, run_id, host_untouched, in_netns):
    # Valid by the table (1 <= LOW <= HIGH <= 65535) but below the namespace's
    # ip_unprivileged_port_start (1024), which only the kernel knows.
    with Lab(run_id) as lab:
        with pytest.raises(ProfileError) as caught:
            apply_sysctls(lab.client_ns, {"ip_local_port_range": "1000 2000"})
        message = str(caught.value)
        assert message.startswith(
            f"the kernel refused net.ipv4.ip_local_port_range = '1000 2000' in namespace {lab.client_ns}: "
            "Invalid argument"
        )
        assert "ip_unprivileged_port_start" in message and "\n" not in message
        assert kernel_value(in_netns, lab.client_ns, "net.ipv4.ip_local_port_range") == "32768 60999"


def test_writing_needs_an_existing_named_namespace(run_id):
    with pytest.raises(LabError, match="no network namespace named"):
        apply_sysctls(f"tcpstress-{run_id}-absent", {"tcp_tw_reuse": 0})
    with pytest.raises(LabError, match="bad network namespace name"):
        apply_sysctls("../../proc/1/ns/net", {"tcp_tw_reuse": 0})


def test_global_knob_reads_none_in_a_lab_and_a_number_on_the_host(lab_prefix, run_id):
    with Lab(run_id) as lab:
        inside = read_sysctls(lab.client_ns, ["tcp_max_orphans", "net.ipv4.ip_unprivileged_port_start"])
    assert inside == {"net.ipv4.tcp_max_orphans": None, "net.ipv4.ip_unprivileged_port_start": "1024"}
    host = read_sysctls(None, ["tcp_max_orphans"])
    assert host["net.ipv4.tcp_max_orphans"] == Path("/proc/sys/net/ipv4/tcp_max_orphans").read_text().strip()


def test_apply_does_not_move_the_calling_thread(lab_prefix, run_id):
    before = os.readlink("/proc/thread-self/ns/net")
    with Lab(run_id) as lab:
        apply_sysctls(lab.client_ns, {"tcp_tw_reuse": 1})
        assert os.readlink("/proc/thread-self/ns/net") == before
