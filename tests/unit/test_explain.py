"""`tcpstress explain`: every state, knob and counter explained from the
knowledge table, the seed article's misspellings and myths corrected where
they apply, unknown names refused with a suggestion, and live values that
match what /proc and `ss` say right now."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tcpstress import explain as explain_module
from tcpstress import knowledge
from tcpstress.explain import UnknownTopic, count_in_state, explain, explain_index, read_knob
from tcpstress.knowledge import COUNTERS, KNOBS, STATES

WIDTH = 90


def flat(text: str) -> str:
    """Text with line wrapping undone, for phrase searches."""
    return " ".join(text.split())


def contains_phrase(text: str, phrase: str) -> bool:
    # The first letter may have been capitalised into a sentence.
    phrase = flat(phrase)
    return phrase[1:] in flat(text) and phrase[:1].lower() in flat(text).lower()


def assert_fits(text: str) -> None:
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, f"lines over {WIDTH} columns: {too_long}"


# --------------------------------------------------------------------------
# Every entry of the tables


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
def test_every_state_is_explained(state):
    text = explain(state.name, read_live=False)
    assert text.splitlines()[0].startswith(state.name)
    held_by = next(line for line in text.splitlines() if line.startswith("Held by"))
    assert state.side.split()[0] in held_by
    assert contains_phrase(text, state.arises)
    assert contains_phrase(text, state.ends)
    mentioned = [knowledge.knob(k).path for k in state.knobs] + list(state.counters)
    assert mentioned, f"{state.name} has neither knobs nor counters in the table"
    for name in mentioned:
        assert name in text
    assert_fits(text)


@pytest.mark.parametrize("entry", KNOBS, ids=lambda k: k.name)
def test_every_knob_is_explained(entry):
    text = explain(entry.name, read_live=False)
    assert text.splitlines()[0].startswith(entry.path)
    assert contains_phrase(text, entry.effect)
    assert flat(entry.default) in flat(text)
    for name in entry.counters:
        assert name in text
    for state_name in entry.states:
        assert state_name in text
    others = [k.name for k in KNOBS if k.name != entry.name]
    assert entry.counters or any(re.search(rf"\b{o}\b", text) for o in others)
    if entry.states:  # who holds what it acts on
        acts_on = flat(text.split("Acts on", 1)[1])
        assert "held by" in acts_on
    assert_fits(text)


@pytest.mark.parametrize("entry", COUNTERS, ids=lambda c: c.name)
def test_every_counter_is_explained(entry):
    text = explain(entry.name, read_live=False)
    assert text.splitlines()[0].startswith(entry.name)
    assert contains_phrase(text, entry.meaning)
    assert contains_phrase(text, entry.reveals)
    assert entry.source in text
    assert_fits(text)


def test_a_counter_names_the_knobs_and_the_side_that_matter():
    text = explain("ListenOverflows", read_live=False)
    assert text.startswith("TcpExtListenOverflows")
    assert "net.core.somaxconn" in text and "net.ipv4.tcp_abort_on_overflow" in text
    assert re.search(r"^Seen on\s+the server$", text, re.MULTILINE)


def test_global_and_removed_knobs_say_so():
    assert "GLOBAL" in explain("tcp_max_orphans", read_live=False).splitlines()[0]
    recycle = explain("tcp_tw_recycle", read_live=False)
    assert "removed in Linux 4.12" in recycle.splitlines()[0]
    assert "nothing: it cannot be set" in recycle


# --------------------------------------------------------------------------
# Spellings


@pytest.mark.parametrize(
    "spelling, canonical",
    [
        ("TIME-WAIT", "TIME_WAIT"),
        ("time_wait", "TIME_WAIT"),
        ("fin wait 1", "FIN_WAIT1"),
        ("ESTAB", "ESTABLISHED"),
        ("syn-recv", "SYN_RECV"),
        ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_fin_timeout"),
        ("/proc/sys/net/core/somaxconn", "net.core.somaxconn"),
        ("SOMAXCONN", "net.core.somaxconn"),
        ("ListenOverflows", "TcpExtListenOverflows"),
        ("TcpExt:ListenOverflows", "TcpExtListenOverflows"),
        ("tcpextlistenoverflows", "TcpExtListenOverflows"),
        ("CurrEstab", "TcpCurrEstab"),
    ],
)
def test_names_match_loosely(spelling, canonical):
    assert explain(spelling, read_live=False).splitlines()[0].startswith(canonical + " ")


@pytest.mark.parametrize("wrong, right", [("SYN_SEND", "SYN_SENT"), ("LASK_ACK", "LAST_ACK")])
def test_the_articles_misspellings_are_corrected(wrong, right):
    text = explain(wrong, read_live=False)
    assert text.startswith(right + " ")
    assert f"Note: '{wrong}' is a misspelling of {right}" in flat(text)
    assert "Note:" not in explain(right, read_live=False)


# --------------------------------------------------------------------------
# Myths, where they apply and only there


@pytest.mark.parametrize(
    "name, phrases",
    [
        ("TIME_WAIT", ["RHEL", "TCP_TIMEWAIT_LEN", "no sysctl changes it", "removed in Linux 4.12",
                       "180000", "scales with memory", "tcp_fin_timeout shortens TIME_WAIT"]),
        ("tcp_fin_timeout", ["tcp_fin_timeout shortens TIME_WAIT", "TCP_TIMEWAIT_LEN", "ACTIVE closer"]),
        ("tcp_tw_recycle", ["removed in Linux 4.12", "NAT"]),
        ("tcp_syn_retries", ["defaults to 5, about 180 s", "The default is 6", "127 s"]),
        ("SYN_SENT", ["defaults to 5, about 180 s", "127 s"]),
        ("tcp_max_tw_buckets", ["defaults to 180000", "scales with memory"]),
        ("tcp_synack_retries", ["about 63 s"]),
        ("CLOSE_WAIT", ["the fix is in the application"]),
    ],
)  # fmt: skip
def test_myths_appear_where_they_apply(name, phrases):
    text = flat(explain(name, read_live=False))
    for phrase in phrases:
        assert phrase in text, f"{name}: missing {phrase!r}"


@pytest.mark.parametrize("name", ["ESTABLISHED", "SYN_RECV", "tcp_keepalive_time", "somaxconn", "LISTEN"])
def test_time_wait_myths_stay_out_of_unrelated_entries(name):
    text = explain(name, read_live=False)
    for phrase in ("RHEL", "180000", "tcp_tw_recycle"):
        assert phrase not in text


def test_a_myth_shared_by_two_states_is_told_once_per_knob():
    text = flat(explain("tcp_fin_timeout", read_live=False))
    assert text.count("Myth: tcp_fin_timeout shortens TIME_WAIT") == 1


# --------------------------------------------------------------------------
# Unknown names


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("TIME_WIAT", "TIME_WAIT"),
        ("tcp_fin_timout", "tcp_fin_timeout"),
        ("net.ipv4.tcp_tw_reuze", "net.ipv4.tcp_tw_reuse"),
        ("ListenOverflow", "TcpExtListenOverflows"),
        ("SYN_SND", "SYN_SENT"),
        ("syn-recieved", "SYN_RECV"),
    ],
)
def test_unknown_names_suggest_the_closest(typo, suggestion):
    with pytest.raises(UnknownTopic) as raised:
        explain(typo, read_live=False)
    message = str(raised.value)
    assert "\n" not in message
    assert f"(did you mean {suggestion}?)" in message
    assert repr(typo) in message
    assert not message.startswith(("'", '"'))


def test_unknown_names_are_lookup_errors_with_one_line():
    with pytest.raises(LookupError) as raised:
        explain("frobnicate", read_live=False)
    assert isinstance(raised.value, knowledge.UnknownName)
    assert "did you mean" not in str(raised.value)
    assert "`tcpstress explain` lists them all" in str(raised.value)


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_name_is_refused(empty):
    with pytest.raises(UnknownTopic, match="give a TCP state"):
        explain(empty, read_live=False)


# --------------------------------------------------------------------------
# The index


def test_index_lists_every_state_knob_and_counter():
    text = explain_index()
    for entry in STATES:
        assert re.search(rf"^  {entry.name}\b", text, re.MULTILINE)
    for entry in KNOBS:
        assert re.search(rf"^  {re.escape(entry.path)}\b", text, re.MULTILINE)
    for entry in COUNTERS:
        assert re.search(rf"^  {entry.name}\b", text, re.MULTILINE)
    assert "SYN_SEND" in text and "LASK_ACK" in text
    assert_fits(text)


# --------------------------------------------------------------------------
# Live values


def test_read_live_false_reads_nothing(monkeypatch):
    def forbidden(*_args):
        raise AssertionError("a live read happened with read_live=False")

    for reader in ("read_knob", "read_counters", "count_in_state"):
        monkeypatch.setattr(explain_module, reader, forbidden)
    for name in ("TIME_WAIT", "tcp_fin_timeout", "ListenOverflows", "tcp_tw_recycle"):
        text = explain(name, read_live=False)
        assert " here" not in text and not re.search(r"^Now", text, re.MULTILINE)


def test_live_knob_value_is_the_proc_sys_file():
    expected = Path("/proc/sys/net/ipv4/tcp_fin_timeout").read_text().strip()
    assert read_knob(knowledge.knob("tcp_fin_timeout")) == expected
    text = explain("net.ipv4.tcp_fin_timeout")
    assert re.search(rf"^Now\s+{expected} here \(/proc/sys/net/ipv4/tcp_fin_timeout\)$", text, re.MULTILINE)


def test_live_port_range_is_shown_with_its_whitespace_collapsed():
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert f"Now         {low} {high} here" in explain("ip_local_port_range")
    # ... and as a state's knob, with the same value.
    assert f"net.ipv4.ip_local_port_range = {low} {high} here" in flat(explain("TIME_WAIT"))


@pytest.mark.skipif(Path("/proc/sys/net/ipv4/tcp_tw_recycle").exists(), reason="this kernel predates 4.12")
def test_removed_knob_is_absent_here():
    assert "absent here, as expected: removed in Linux 4.12" in flat(explain("tcp_tw_recycle"))


def _proc_counter(name: str) -> int:
    """The counter read from /proc/net/netstat by hand (independent of procfs.py)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        section, names = header.split(":", 1)
        for field, value in zip(names.split(), values.split(":", 1)[1].split()):
            if section + field == name:
                return int(value)
    raise KeyError(name)


def test_live_counter_value_lies_between_two_reads_of_proc():
    before = _proc_counter("TcpExtTW")
    text = explain("TcpExtTW")
    after = _proc_counter("TcpExtTW")
    shown = int(re.search(r"^Now\s+(\d+) here", text, re.MULTILINE).group(1))
    assert before <= shown <= after  # it only grows


def _ss_count(filter_name: str) -> int:
    out = subprocess.run(["ss", "-Htan", "state", filter_name], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def _count_matches_ss(count_now) -> None:
    # Other tests may open and close sockets meanwhile: compare only when ss
    # saw the same count just before and just after.
    for _ in range(10):
        before = _ss_count("listening")
        value = count_now()
        after = _ss_count("listening")
        if before == after:
            assert value == before
            return
    assert min(before, after) <= value <= max(before, after)


@pytest.fixture
def three_listeners():
    socks = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        socks.append(sock)
    yield
    for sock in socks:
        sock.close()


def test_live_state_count_matches_ss(three_listeners):
    listen = knowledge.state("LISTEN")
    assert count_in_state(listen) >= 3

    def shown() -> int:
        now = re.search(r"^Now\s+(\d+) sockets? in LISTEN here$", explain("LISTEN"), re.MULTILINE)
        return int(now.group(1))

    _count_matches_ss(shown)


def test_state_count_falls_back_to_ss(three_listeners, monkeypatch):
    from tcpstress.sampler import netlink

    def no_netlink(*_args, **_kwargs):
        raise OSError("netlink unavailable")

    monkeypatch.setattr(netlink, "count_states", no_netlink)
    _count_matches_ss(lambda: count_in_state(knowledge.state("LISTEN")))


@pytest.mark.parametrize(
    "name", ["TIME_WAIT", "tcp_tw_recycle", "tcp_max_orphans", "TcpCurrEstab", "SYN_RECV"]
)
def test_live_texts_fit_the_terminal(name):
    assert_fits(explain(name))


def test_explain_imports_no_trio_click_or_matplotlib():
    code = (
        "import sys, tcpstress.explain; "
        "print(sorted(m for m in ('trio', 'click', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
