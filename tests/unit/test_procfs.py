"""The /proc/net parsers, on text recorded from a real kernel and on generated text.

The fixtures come from tests/fixtures/procfs/record.py: a namespace holding
socket_zoo.py's sockets (per family, on port 7001: 1 LISTEN, 3 ESTABLISHED
pairs, 4 TIME_WAIT, 2 CLOSE_WAIT with their orphaned FIN_WAIT2 peers, 2
SYN_RECV request sockets); expected.json holds what `ss` counted then.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from tcpstress.sampler import procfs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "procfs"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


# -- TCP tables ------------------------------------------------------------


@pytest.mark.parametrize("table", ["tcp", "tcp6"])
def test_tcp_table_counts_match_ss(table):
    counts = procfs.parse_tcp_table(fixture(table))
    assert dict(counts) == EXPECTED["ss"][table]


@pytest.mark.parametrize("table", ["tcp", "tcp6"])
def test_tcp_table_port_filter_keeps_every_zoo_socket(table):
    counts = procfs.parse_tcp_table(fixture(table), port=EXPECTED["port"])
    assert dict(counts) == EXPECTED["ss"][table]


@pytest.mark.parametrize("table", ["tcp", "tcp6"])
def test_tcp_table_port_filter_drops_other_ports(table):
    assert procfs.parse_tcp_table(fixture(table), port=EXPECTED["port"] + 1) == Counter()


def test_tcp_table_port_filter_matches_remote_port_too():
    # A TIME_WAIT client line: its local port appears on no other line.
    text = fixture("tcp")
    tw_line = next(line for line in text.splitlines()[1:] if line.split()[3] == "06")
    client_port = int(tw_line.split()[1].split(":")[1], 16)
    assert procfs.parse_tcp_table(text, port=client_port) == Counter({"TIME_WAIT": 1})


def test_both_families_add_up_to_the_zoo():
    total = procfs.parse_tcp_table(fixture("tcp")) + procfs.parse_tcp_table(fixture("tcp6"))
    assert dict(total) == EXPECTED["zoo"]


def test_request_and_minisocket_lines_are_counted():
    counts = procfs.parse_tcp_table(fixture("tcp"))
    # request sockets (SYN_RECV) and FIN_WAIT2 minisockets print inode 0
    assert counts["SYN_RECV"] == 2
    assert counts["FIN_WAIT2"] == 2


def test_tcp_table_without_header_and_with_blank_lines():
    lines = fixture("tcp").splitlines()
    body = "\n".join(lines[1:]) + "\n\n"
    assert dict(procfs.parse_tcp_table(body)) == EXPECTED["ss"]["tcp"]


def test_tcp_table_empty():
    assert procfs.parse_tcp_table(fixture("tcp").splitlines()[0] + "\n") == Counter()
    assert procfs.parse_tcp_table("") == Counter()


def test_tcp_table_garbage_line_names_the_line():
    text = fixture("tcp") + "this is not a socket\n"
    with pytest.raises(ValueError, match="line .* not a socket line"):
        procfs.parse_tcp_table(text)


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range(port):
    with pytest.raises(ValueError, match="out of range"):
        procfs.parse_tcp_table(fixture("tcp"), port=port)


# -- sockstat ---------------------------------------------------------------


def test_sockstat_fixture():
    figures = procfs.parse_sockstat(fixture("sockstat"))
    assert set(figures) == set(procfs.SOCKSTAT_FIELDS)
    # tw counts every timewait minisocket of the namespace, FIN_WAIT2 substate included
    ss = EXPECTED["ss"]
    minisockets = sum(ss[t].get("TIME_WAIT", 0) + ss[t].get("FIN_WAIT2", 0) for t in ss)
    assert figures["tw"] == minisockets
    assert figures["orphan"] >= 0 and figures["mem"] >= 0


def test_sockstat_line_order_does_not_matter():
    text = "sockets: used 3\nTCP: mem 7 tw 2 inuse 5 alloc 9 orphan 1\n"
    assert procfs.parse_sockstat(text) == {"inuse": 5, "orphan": 1, "tw": 2, "alloc": 9, "mem": 7}


@pytest.mark.parametrize(
    "text, message",
    [
        ("UDP: inuse 0 mem 0\n", "no 'TCP:' line"),
        ("TCP: inuse 1 orphan 0 tw 0 alloc 1\n", "lacks 'mem'"),
        ("TCP: inuse x orphan 0 tw 0 alloc 1 mem 2\n", "non-number"),
        ("TCP: inuse 1 orphan\n", "odd number"),
    ],
)
def test_sockstat_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        procfs.parse_sockstat(text)


# -- netstat / snmp ---------------------------------------------------------


def header_names(text: str, section: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.startswith(section + ":")]
    return lines[0].split()[1:]


def test_netstat_fixture_names_and_values():
    text = fixture("netstat")
    counters = procfs.parse_netstat(text)
    for section in ("TcpExt", "IpExt"):
        for name in header_names(text, section):
            assert section + name in counters
    # 8 TIME_WAIT + 4 FIN_WAIT2 minisockets were made: the kernel counted 12 TW
    assert counters["TcpExtTW"] == procfs.parse_sockstat(fixture("sockstat"))["tw"]
    assert counters["TcpExtListenOverflows"] == 0


def test_netstat_sections_filter():
    counters = procfs.parse_netstat(fixture("netstat"), procfs.TCP_SECTIONS)
    assert counters and all(name.startswith("TcpExt") for name in counters)


def test_snmp_fixture():
    counters = procfs.parse_netstat(fixture("snmp"), procfs.TCP_SECTIONS)
    assert set(counters) == {"Tcp" + name for name in header_names(fixture("snmp"), "Tcp")}
    zoo = EXPECTED["zoo"]
    # every zoo connection was one connect(); all but SYN_RECV were accepted
    connects = (zoo["ESTABLISHED"] - zoo["SYN_RECV"]) // 2 + zoo["TIME_WAIT"] + zoo["CLOSE_WAIT"] + zoo["SYN_RECV"]
    assert counters["TcpActiveOpens"] == connects
    assert counters["TcpPassiveOpens"] == connects - zoo["SYN_RECV"]
    assert counters["TcpCurrEstab"] == zoo["ESTABLISHED"] + zoo["CLOSE_WAIT"]
    assert counters["TcpMaxConn"] == -1


def test_every_key_counter_is_in_the_fixtures():
    counters = procfs.parse_netstat(fixture("snmp")) | procfs.parse_netstat(fixture("netstat"))
    assert [name for name in procfs.KEY_COUNTERS if name not in counters] == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("Tcp: A B\n", "header/value pairs"),
        ("Tcp: A B\nUdp: 1 2\n", "followed by 'Udp'"),
        ("Tcp: A B\nTcp: 1\n", "2 names but 1 values"),
        ("Tcp: A B\nTcp: 1 x\n", "non-number"),
    ],
)
def test_netstat_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        procfs.parse_netstat(text)


# -- counter deltas ---------------------------------------------------------


def test_counter_deltas_examples():
    prev = {"TcpActiveOpens": 10, "TcpCurrEstab": 5, "TcpExtTW": 100, "TcpRtoMin": 200}
    cur = {"TcpActiveOpens": 15, "TcpCurrEstab": 3, "TcpExtTW": 40, "TcpRtoMin": 200, "TcpExtNew": 7}
    assert procfs.counter_deltas(prev, cur) == {
        "TcpActiveOpens": 5,
        "TcpCurrEstab": 3,  # a gauge keeps its value
        "TcpExtTW": 40,  # went backwards: a new namespace, counted from zero
        "TcpRtoMin": 200,
        "TcpExtNew": 0,  # no history yet
    }


# -- generated text ---------------------------------------------------------


def hex_v4(address: int) -> str:
    return f"{address:08X}"


def hex_v6(address: int) -> str:
    return f"{address:032X}"


socket_entries = st.lists(
    st.tuples(
        st.integers(1, 11),  # state
        st.integers(0, 65535),  # local port
        st.integers(0, 65535),  # remote port
        st.integers(0, 2**32 - 1),  # an address (v4), widened for v6
        st.sampled_from(["full", "request", "timewait"]),  # line shape
    ),
    max_size=60,
)


def format_line(sl: int, entry: tuple, six: bool) -> str:
    """One line in the kernel's format (net/ipv4/tcp_ipv4.c, net/ipv6/tcp_ipv6.c)."""
    state, lport, rport, address, shape = entry
    addr = hex_v6(address * 2**96 + address) if six else hex_v4(address)
    head = f"{sl:4d}: {addr}:{lport:04X} {addr}:{rport:04X} {state:02X} 00000000:00000000"
    if shape == "full":
        return head + " 00:00000000 00000000     0        0 1407658 1 0000000006a91d63 20 4 30 10 -1"
    if shape == "request":
        return head + " 01:0000009E 00000001     0        0 0 0 00000000ec6a0e55"
    return head + " 03:000016E1 00000000     0        0 0 3 0000000036549b2e"


@given(socket_entries, st.booleans(), st.integers(0, 20000))
def test_generated_tables_count_exactly(entries, six, first_sl):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    text = "\n".join([header] + [format_line(first_sl + i, e, six) for i, e in enumerate(entries)]) + "\n"
    expected = Counter(procfs.STATE_BY_CODE[e[0]] for e in entries)
    assert procfs.parse_tcp_table(text) == expected


@given(socket_entries, st.integers(0, 65535))
def test_generated_tables_port_filter(entries, port):
    text = "\n".join(format_line(i, e, False) for i, e in enumerate(entries))
    expected = Counter(procfs.STATE_BY_CODE[e[0]] for e in entries if port in (e[1], e[2]))
    assert procfs.parse_tcp_table(text, port=port) == expected


# Names start lowercase so that no section+name can equal another section's
# ("Tcp" + "ExtX" would collide with "TcpExt" + "X").
counter_tables = st.dictionaries(
    st.sampled_from(["Tcp", "TcpExt", "Ip", "IpExt", "Udp", "MPTcpExt"]),
    st.dictionaries(
        st.from_regex(r"[a-z][A-Za-z0-9]{0,20}", fullmatch=True),
        st.integers(-(2**63), 2**64 - 1),
        min_size=1,
        max_size=30,
    ),
    max_size=6,
)


@given(counter_tables, st.sampled_from(["", "\n", "\n\n"]))
def test_generated_counter_text_round_trips(table, trailer):
    lines = []
    for section, values in table.items():
        lines.append(f"{section}: " + " ".join(values))
        lines.append(f"{section}: " + " ".join(str(v) for v in values.values()))
    text = "\n".join(lines) + trailer
    expected = {section + name: value for section, values in table.items() for name, value in values.items()}
    assert procfs.parse_netstat(text) == expected
    tcp_only = {section + name: value for section, values in table.items()
                if section in ("Tcp", "TcpExt") for name, value in values.items()}
    assert procfs.parse_netstat(text, procfs.TCP_SECTIONS) == tcp_only


counter_maps = st.dictionaries(
    st.sampled_from(["TcpActiveOpens", "TcpExtTW", "TcpCurrEstab", "TcpMaxConn", "TcpExtListenDrops", "TcpOutRsts"]),
    st.integers(0, 2**40),
)


@given(counter_maps, counter_maps)
def test_counter_deltas_properties(prev, cur):
    deltas = procfs.counter_deltas(prev, cur)
    assert deltas.keys() == cur.keys()
    for name, delta in deltas.items():
        if name in procfs.GAUGES:
            assert delta == cur[name]
        elif name in prev and cur[name] >= prev[name]:
            assert prev[name] + delta == cur[name]
        else:
            assert 0 <= delta <= cur[name]
    assert all(v == 0 or k in procfs.GAUGES for k, v in procfs.counter_deltas(cur, cur).items())


def test_fixture_lines_look_like_kernel_lines():
    # Guards the generator above: its shapes must match what the kernel printed.
    shape = re.compile(r"^ *\d+: [0-9A-F]+:[0-9A-F]{4} [0-9A-F]+:[0-9A-F]{4} [0-9A-F]{2} ")
    for table in ("tcp", "tcp6"):
        for line in fixture(table).splitlines()[1:]:
            assert shape.match(line), line
    assert shape.match(format_line(12345, (6, 1, 2, 3, "timewait"), True))
