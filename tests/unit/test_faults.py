"""Lab faults without a lab: what is refused, and the nftables rulesets as text.

Nothing here creates a namespace or runs nft: a refused fault must fail
before any command runs, which `no_commands` checks by making subprocess.run
fail the test.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tcpstress.lab import faults
from tcpstress.lab.faults import (
    FaultError,
    check_lab_namespace,
    counted_packets,
    delete_ruleset,
    drop_fin_ruleset,
    drop_syn_ruleset,
    make_fault,
    partition_ruleset,
)
from tcpstress.scenario import Fault as FaultSpec
from tcpstress.scenario import ScenarioError, load_scenario


class FakeLab:
    """Looks like a Lab to make_fault; its namespaces exist nowhere."""

    def __init__(self, client_ns="tcpstress-abc123-0-c", server_ns="tcpstress-abc123-0-s"):
        self.client_ns = client_ns
        self.server_ns = server_ns
        self.server_addr = "198.18.0.1"
        self.client_addrs = ["198.18.0.2"]
        self.subnet = "198.18.0.0/24"

    def namespace(self, side):
        return {"client": self.client_ns, "server": self.server_ns}[side]

    def popen(self, *args, **kwargs):  # pragma: no cover - a refused fault never gets here
        raise AssertionError("a refused fault started a process")


@pytest.fixture
def no_commands(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a refused fault ran a command: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["drop_syn", "drop_fin", "partition", "syn_flood"])
@pytest.mark.parametrize("name", ["host", "default", "tcpstress-", "other-abc-0-c", "tcpstress-abc-0-x",
                                  "tcpstress-abc-0-c; rm -rf /", "../tcpstress-abc-0-c"])
def test_a_namespace_not_named_like_a_lab_is_refused(kind, name, no_commands):
    lab = FakeLab(client_ns=name, server_ns=name)
    with pytest.raises(FaultError, match="not a lab namespace"):
        make_fault(FaultSpec(kind=kind), lab, 8080)


@pytest.mark.parametrize("kind", ["drop_syn", "drop_fin", "partition", "syn_flood"])
def test_a_lab_namespace_that_does_not_exist_is_refused(kind, no_commands):
    lab = FakeLab(client_ns="tcpstress-gone0-0-c", server_ns="tcpstress-gone0-0-s")
    with pytest.raises(FaultError, match="does not exist"):
        make_fault(FaultSpec(kind=kind), lab, 8080)


def test_the_hosts_own_namespace_under_a_lab_name_is_refused(tmp_path):
    # `ip netns attach NAME 1` pins the host's namespace under any name; a
    # symlink to our own namespace file stands in for that here.
    (tmp_path / "tcpstress-abc123-0-s").symlink_to("/proc/self/ns/net")
    with pytest.raises(FaultError, match="host's own network namespace"):
        check_lab_namespace("tcpstress-abc123-0-s", netns_dir=tmp_path)


def test_another_namespace_under_a_lab_name_passes_the_check(tmp_path):
    # Any file that is not a network namespace of the host: the check is about
    # identity, the namespace files themselves are the kernel's business.
    other = tmp_path / "elsewhere"
    other.write_text("")
    (tmp_path / "tcpstress-abc123-0-c").symlink_to(other)
    check_lab_namespace("tcpstress-abc123-0-c", netns_dir=tmp_path)


@pytest.mark.parametrize("kind", ["none", "", "drop_ack", "SYN_FLOOD", None])
def test_unknown_kinds_are_refused_naming_the_allowed_ones(kind, no_commands):
    with pytest.raises(FaultError) as info:
        make_fault(FaultSpec(kind=kind), FakeLab(), 8080)
    message = str(info.value)
    assert "\n" not in message
    assert repr(kind) in message
    for allowed in ("syn_flood", "drop_syn", "drop_fin", "partition"):
        assert allowed in message


@pytest.mark.parametrize("port", [0, 65536, -1, True, "8080", 80.0])
def test_bad_ports_are_refused(port):
    with pytest.raises(FaultError, match="port"):
        drop_syn_ruleset(port)
    with pytest.raises(FaultError, match="port"):
        drop_fin_ruleset(port)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "198.20.0.1", "not-an-ip", "198.18.0.0/24"])
def test_partition_refuses_addresses_outside_the_lab(address):
    with pytest.raises(FaultError, match=r"partition: .*(outside the lab range|not an IPv4 address)"):
        partition_ruleset(["198.18.0.2", address])


def test_partition_needs_an_address():
    with pytest.raises(FaultError, match="no client addresses"):
        partition_ruleset([])


def test_a_fault_outside_a_lab_is_refused_by_the_scenario_too(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[server]\nbuiltin = true\n[fault]\nkind = "drop_syn"\n')
    with pytest.raises(ScenarioError, match="runs only in the lab"):
        load_scenario(path)


# --- the rulesets as text ----------------------------------------------------


def rules(ruleset: str) -> list[str]:
    return [line.strip() for line in ruleset.splitlines() if "drop" in line]


def test_drop_syn_drops_only_connection_requests_to_the_port_coming_in():
    text = drop_syn_ruleset(8080)
    assert text.startswith("table inet tcpstress_fault {")
    assert "type filter hook input priority filter; policy accept;" in text
    assert "hook output" not in text
    # SYN set and ACK clear: a SYN-ACK or an ACK to the port still passes.
    assert rules(text) == ["tcp dport 8080 tcp flags & (syn | ack) == syn counter drop"]


def test_drop_fin_drops_segments_from_the_server_port_that_carry_fin():
    text = drop_fin_ruleset(9000)
    assert "hook input" in text and "hook output" not in text
    assert rules(text) == ["tcp sport 9000 tcp flags & fin == fin counter drop"]


def test_partition_drops_both_ways_for_every_client_address():
    text = partition_ruleset(["198.18.3.2", "198.18.3.3"])
    assert "type filter hook input priority filter; policy accept;" in text
    assert "type filter hook output priority filter; policy accept;" in text
    assert rules(text) == [
        "ip saddr { 198.18.3.2, 198.18.3.3 } counter drop",
        "ip daddr { 198.18.3.2, 198.18.3.3 } counter drop",
    ]


def test_every_ruleset_is_one_table_that_delete_removes():
    for text in (drop_syn_ruleset(1), drop_fin_ruleset(65535), partition_ruleset(["198.18.0.2"])):
        assert text.count("table ") == 1
        assert text.count("{") == text.count("}")
    assert delete_ruleset() == "delete table inet tcpstress_fault\n"


def test_counted_packets_sums_every_rule_counter():
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "tcpstress_fault", "handle": 1}},
        {"chain": {"family": "inet", "table": "tcpstress_fault", "name": "input", "handle": 1}},
        {"rule": {"family": "inet", "table": "tcpstress_fault", "chain": "input", "handle": 2,
                  "expr": [{"match": {"op": "==", "left": {}, "right": 8080}},
                           {"counter": {"packets": 17, "bytes": 1020}}, {"drop": None}]}},
        {"rule": {"family": "inet", "table": "tcpstress_fault", "chain": "output", "handle": 4,
                  "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": None}]}},
    ]}
    assert counted_packets(json.dumps(listing)) == 20
    assert counted_packets(json.dumps({"nftables": []})) == 0
    with pytest.raises(FaultError, match="no JSON"):
        counted_packets("Error: No such file or directory")


def test_the_fault_kinds_match_the_scenario_model():
    from tcpstress.scenario import FAULT_KINDS

    assert set(FAULT_KINDS) - {"none"} == set(faults.FAULT_KINDS)


def test_nft_commands_refuse_a_namespace_that_is_not_a_live_lab(no_commands):
    for run in (lambda ns: faults._nft(ns, ["list", "ruleset"]),):
        with pytest.raises(FaultError, match="not a lab namespace"):
            run("host")
        with pytest.raises(FaultError, match="does not exist"):
            run("tcpstress-gone0-0-s")
