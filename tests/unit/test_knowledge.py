"""The knowledge table: complete, self-consistent, and free of the seed article's errors."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstress import knowledge
from tcpstress.knowledge import (
    COUNTERS_BY_NAME,
    KNOBS,
    KNOBS_BY_NAME,
    STATES,
    STATES_BY_NAME,
    UnknownName,
    counter,
    knob,
    state,
    state_with_note,
)

# The knob table (docs/kernel.md), with where each lives and whether a namespace has it.
FACTS_KNOBS = {
    "ip_local_port_range": ("net.ipv4.ip_local_port_range", True),
    "tcp_tw_reuse": ("net.ipv4.tcp_tw_reuse", True),
    "tcp_tw_recycle": ("net.ipv4.tcp_tw_recycle", True),
    "tcp_max_tw_buckets": ("net.ipv4.tcp_max_tw_buckets", True),
    "tcp_fin_timeout": ("net.ipv4.tcp_fin_timeout", True),
    "tcp_max_syn_backlog": ("net.ipv4.tcp_max_syn_backlog", True),
    "somaxconn": ("net.core.somaxconn", True),
    "tcp_syncookies": ("net.ipv4.tcp_syncookies", True),
    "tcp_synack_retries": ("net.ipv4.tcp_synack_retries", True),
    "tcp_syn_retries": ("net.ipv4.tcp_syn_retries", True),
    "tcp_syn_linear_timeouts": ("net.ipv4.tcp_syn_linear_timeouts", True),
    "tcp_abort_on_overflow": ("net.ipv4.tcp_abort_on_overflow", True),
    "tcp_keepalive_time": ("net.ipv4.tcp_keepalive_time", True),
    "tcp_keepalive_intvl": ("net.ipv4.tcp_keepalive_intvl", True),
    "tcp_keepalive_probes": ("net.ipv4.tcp_keepalive_probes", True),
    "tcp_max_orphans": ("net.ipv4.tcp_max_orphans", False),
    "tcp_tw_reuse_delay": ("net.ipv4.tcp_tw_reuse_delay", True),
}

FACTS_COUNTERS = [
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
    "TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesFailed", "TcpExtTW", "TcpExtTWKilled", "TcpExtTWRecycled",
    "TcpExtTCPTimeWaitOverflow", "TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose",
    "TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnMemory", "TcpExtTCPSynRetrans",
    "TcpActiveOpens", "TcpPassiveOpens", "TcpAttemptFails", "TcpEstabResets",
    "TcpCurrEstab", "TcpRetransSegs", "TcpOutRsts",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(FACTS_KNOBS))
def test_every_facts_knob_is_in_the_table(name):
    path, per_namespace = FACTS_KNOBS[name]
    entry = KNOBS_BY_NAME[name]
    assert entry.path == path
    assert entry.per_namespace is per_namespace
    assert entry.proc_file == "/proc/sys/" + path.replace(".", "/")
    assert entry.effect and entry.default


def test_removed_and_global_knobs_are_marked():
    assert knob("tcp_tw_recycle").removed_in == "4.12"
    assert not knob("tcp_tw_recycle").settable_in_lab
    assert not knob("tcp_max_orphans").per_namespace
    assert not knob("tcp_max_orphans").settable_in_lab
    assert knob("tcp_tw_reuse").settable_in_lab


@pytest.mark.parametrize("name", FACTS_COUNTERS)
def test_every_facts_counter_is_in_the_table(name):
    entry = COUNTERS_BY_NAME[name]
    assert entry.meaning and entry.reveals
    assert entry.source == ("/proc/net/netstat" if name.startswith("TcpExt") else "/proc/net/snmp")


def test_cross_references_point_at_real_entries():
    for entry in KNOBS:
        assert set(entry.counters) <= set(COUNTERS_BY_NAME), entry.name
        assert set(entry.states) <= set(STATES_BY_NAME), entry.name
    for entry in STATES:
        assert set(entry.knobs) <= set(KNOBS_BY_NAME), entry.name
        assert set(entry.counters) <= set(COUNTERS_BY_NAME), entry.name


def test_tables_are_ordered_tuples_of_frozen_records():
    assert isinstance(KNOBS, tuple) and isinstance(STATES, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        KNOBS[0].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        KNOBS_BY_NAME["x"] = KNOBS[0]  # type: ignore[index]


# -- the facts the seed article got wrong -------------------------------------


def _prose(record) -> list[str]:
    return [value for value in dataclasses.astuple(record) if isinstance(value, str)]


def test_no_description_repeats_a_seed_article_error():
    texts = []
    for entry in KNOBS:
        texts += [entry.effect, entry.default]
    for entry in STATES:
        texts += [entry.arises, entry.ends, entry.side] + [m.correction for m in entry.myths]
    for entry in knowledge.COUNTERS:
        texts += [entry.meaning, entry.reveals]
    prose = " ".join(texts)
    assert "SYN_SEND " not in prose.replace("'SYN_SEND' is", "")
    assert "LASK_ACK" not in prose.replace("'LASK_ACK' is", "")
    assert "180000" not in prose and "180 s" not in prose
    assert "RHEL" not in prose


def test_fin_timeout_governs_fin_wait2_not_time_wait():
    fin_timeout = knob("tcp_fin_timeout")
    assert fin_timeout.states == ("FIN_WAIT2",)
    assert "ACTIVE closer" in fin_timeout.effect
    assert "tcp_fin_timeout" not in state("TIME_WAIT").knobs
    assert "tcp_fin_timeout" in state("FIN_WAIT2").knobs


def test_time_wait_is_fixed_and_on_the_side_that_closes_first():
    time_wait = state("TIME_WAIT")
    assert "TCP_TIMEWAIT_LEN" in time_wait.ends and "not a sysctl" in time_wait.ends
    assert time_wait.side == "whichever side closed first"
    claims = {m.claim: m.correction for m in time_wait.myths}
    assert "TCP_TIMEWAIT_LEN" in claims["TIME_WAIT lasts 60 s because of a RHEL setting"]
    assert "4.12" in claims["tcp_tw_recycle = 1 recycles TIME_WAIT sockets quickly"]
    assert any("tcp_fin_timeout" in claim for claim in claims)


def test_defaults_match_facts():
    assert knob("tcp_syn_retries").default_value == "6"
    assert knob("tcp_tw_reuse").default_value == "2"
    assert knob("ip_local_port_range").default_value == "32768 60999"
    assert knob("somaxconn").default_value == "4096"
    assert knob("tcp_fin_timeout").default_value == "60"
    assert knob("tcp_tw_reuse_delay").default_value == "1000"


# -- lookups ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    ["tcp_tw_reuse", "net.ipv4.tcp_tw_reuse", "/proc/sys/net/ipv4/tcp_tw_reuse", " TCP_TW_REUSE "],
)
def test_knob_accepts_short_full_and_proc_names(spelling):
    assert knob(spelling) is KNOBS_BY_NAME["tcp_tw_reuse"]


def test_knob_full_name_of_a_core_knob():
    assert knob("net.core.somaxconn").name == "somaxconn"


def test_unknown_knob_suggests_and_reads_as_one_line():
    with pytest.raises(KeyError) as caught:
        knob("tcp_tw_resue")
    message = str(caught.value)
    assert isinstance(caught.value, UnknownName)
    assert "did you mean tcp_tw_reuse?" in message
    assert "\n" not in message and not message.startswith("'")


def test_unknown_knob_far_from_everything_has_no_suggestion():
    with pytest.raises(UnknownName) as caught:
        knob("vm.swappiness")
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("spelling", "canonical", "note_has"),
    [
        ("SYN_SEND", "SYN_SENT", "misspelling"),
        ("LASK_ACK", "LAST_ACK", "misspelling"),
        ("SYN_RECEIVED", "SYN_RECV", "RFC 793"),
        ("NEW_SYN_RECV", "SYN_RECV", "request sock"),
        ("SYN_SENT", "SYN_SENT", None),
        ("syn-sent", "SYN_SENT", None),
        ("FIN-WAIT-1", "FIN_WAIT1", None),
        ("fin_wait2", "FIN_WAIT2", None),
        ("ESTAB", "ESTABLISHED", None),
        ("TIME-WAIT", "TIME_WAIT", None),
        ("close-wait", "CLOSE_WAIT", None),
    ],
)
def test_state_spellings(spelling, canonical, note_has):
    found, note = state_with_note(spelling)
    assert found.name == canonical
    assert state(spelling) is found
    if note_has is None:
        assert note is None
    else:
        assert note_has in note


def test_unknown_state_suggests():
    with pytest.raises(UnknownName) as caught:
        state("TIME_WAT")
    assert "did you mean TIME_WAIT?" in str(caught.value)


def test_state_codes_match_the_kernel():
    # Witness: the kernel's own number for a listening socket in /proc/net/tcp.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    local = f"0100007F:{port:04X}"
    codes = {int(row[3], 16) for row in rows if row[1] == local}
    assert codes == {state("LISTEN").code}
    assert {s.code for s in STATES} == {1, 2, 3, 4, 5, 6, 8, 9, 10, 11}


@pytest.mark.parametrize("spelling", ["TcpExtListenOverflows", "ListenOverflows", "TcpExt:ListenOverflows"])
def test_counter_lookup(spelling):
    assert counter(spelling).name == "TcpExtListenOverflows"


def test_counter_lookup_of_snmp_field_and_unknown():
    assert counter("CurrEstab").gauge
    with pytest.raises(UnknownName, match="did you mean TcpExtListenDrops"):
        counter("TcpExtListenDrop")


# -- value rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("tcp_tw_reuse", 0, "0"),
        ("tcp_tw_reuse", "2", "2"),
        ("tcp_syn_retries", " 3 ", "3"),
        ("ip_local_port_range", "40000 40999", "40000 40999"),
        ("ip_local_port_range", "40000\t40999", "40000 40999"),
        ("ip_local_port_range", [40000, 40999], "40000 40999"),
        ("ip_local_port_range", "1 65535", "1 65535"),
        ("somaxconn", 2**31 - 1, str(2**31 - 1)),
    ],
)
def test_values_normalise_to_kernel_text(name, value, text):
    assert knob(name).normalise(value) == text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("tcp_tw_reuse", 7, "must be one of 0, 1, 2"),
        ("tcp_tw_reuse", -1, "must be one of 0, 1, 2"),
        ("tcp_tw_reuse", True, "true/false"),
        ("tcp_tw_reuse", "yes", "not an integer"),
        ("tcp_syn_retries", 0, "from 1 to 127"),
        ("tcp_syn_retries", 128, "from 1 to 127"),
        ("tcp_tw_reuse_delay", 60001, "from 1 to 60000"),
        ("ip_local_port_range", "5000 1000", "LOW <= HIGH"),
        ("ip_local_port_range", "0 1000", "1 <= LOW"),
        ("ip_local_port_range", "1000 65536", "65535"),
        ("ip_local_port_range", "40000", "'LOW HIGH'"),
        ("ip_local_port_range", "a b", "'LOW HIGH'"),
        ("ip_local_port_range", 40000, "'LOW HIGH'"),
    ],
)
def test_out_of_range_values_name_the_knob(name, value, message):
    with pytest.raises(ValueError) as caught:
        knob(name).normalise(value)
    text = str(caught.value)
    assert text.startswith(knob(name).path + ":")
    assert message in text
    assert "\n" not in text


def test_removed_knob_cannot_be_normalised():
    with pytest.raises(ValueError, match="cannot be set"):
        knob("tcp_tw_recycle").normalise(1)


@given(st.integers(-5, 70000), st.integers(-5, 70000))
def test_port_range_accepts_exactly_the_valid_pairs(low, high):
    rule = knowledge.PortRange()
    valid = 1 <= low <= high <= 65535
    try:
        text = rule.normalise(f"{low} {high}")
    except ValueError:
        assert not valid
    else:
        assert valid and text == f"{low} {high}"
        assert rule.normalise(text) == text  # idempotent


def test_kernel_text_collapses_whitespace():
    assert knowledge.kernel_text("40000\t40999\n") == "40000 40999"
