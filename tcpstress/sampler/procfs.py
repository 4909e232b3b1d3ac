"""Pure parsers for the kernel's /proc/net text: TCP tables, sockstat, counters.

Nothing here opens a file: the sampler reads the text (from whichever network
namespace it is watching) and hands it over, so tests feed recorded text.

    parse_tcp_table(text, port=None) -> Counter   /proc/net/tcp and tcp6
    parse_sockstat(text) -> dict                  the "TCP:" line of sockstat
    parse_netstat(text, sections=None) -> dict    /proc/net/netstat and snmp
    counter_deltas(prev, cur) -> dict             per-interval deltas

Counter names follow nstat: the section name glued to the field name
("TcpExtListenOverflows", "TcpActiveOpens").
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

# Kernel order (include/net/tcp_states.h, 1..11): the column order of samples.csv.
TCP_STATES: tuple[str, ...] = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
)
STATE_BY_CODE: dict[int, str] = {code: name for code, name in enumerate(TCP_STATES, start=1)}
_STATE_BY_HEX: dict[str, str] = {f"{code:02X}": name for code, name in STATE_BY_CODE.items()}

SOCKSTAT_FIELDS: tuple[str, ...] = ("inuse", "orphan", "tw", "alloc", "mem")

# The sections of /proc/net/netstat and /proc/net/snmp the sampler keeps.
TCP_SECTIONS: tuple[str, ...] = ("Tcp", "TcpExt")

# Values that are levels or constants, not event counts: a delta of them means
# nothing, so they are carried as they are (nstat skips the same ones).
GAUGES: frozenset[str] = frozenset(
    {"TcpCurrEstab", "TcpRtoAlgorithm", "TcpRtoMin", "TcpRtoMax", "TcpMaxConn"}
)

# The counters that reveal the failures tcpstress provokes (see docs/kernel.md).
KEY_COUNTERS: tuple[str, ...] = (
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtTCPReqQFullDrop",
    "TcpExtTCPReqQFullDoCookies",
    "TcpExtSyncookiesSent",
    "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesFailed",
    "TcpExtTW",
    "TcpExtTWKilled",
    "TcpExtTWRecycled",
    "TcpExtTCPTimeWaitOverflow",
    "TcpExtTCPAbortOnData",
    "TcpExtTCPAbortOnClose",
    "TcpExtTCPAbortOnTimeout",
    "TcpExtTCPAbortOnMemory",
    "TcpExtTCPSynRetrans",
    "TcpActiveOpens",
    "TcpPassiveOpens",
    "TcpAttemptFails",
    "TcpEstabResets",
    "TcpCurrEstab",
    "TcpRetransSegs",
    "TcpOutRsts",
)


def port_hex(port: int) -> str:
    """The port as /proc/net/tcp prints it after the colon: 8080 -> '1F90'."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range: allowed 0..65535")
    return f"{port:04X}"


def parse_tcp_table(text: str, port: int | None = None) -> Counter[str]:
    """Count the sockets of a /proc/net/tcp or tcp6 table by state name.

    With `port`, only lines whose local or remote port equals it are counted.
    Request sockets (SYN_RECV) and TIME_WAIT minisockets have lines of their
    own; a minisocket prints its substate, so an orphaned FIN_WAIT2 that
    became a minisocket counts as FIN_WAIT2, as `ss` shows it.
    """
    counts: Counter[str] = Counter()
    wanted = port_hex(port) if port is not None else None
    lines = text.splitlines()
    if lines and lines[0].lstrip().startswith("sl"):
        lines = lines[1:]
    # split() per line beats a regex over the whole text here (33 ms against
    # 79 ms for 113k lines), and the kernel's own formatting costs far more.
    for number, line in enumerate(lines, start=2):
        fields = line.split(None, 4)
        if not fields:
            continue
        if len(fields) < 4 or not fields[0].endswith(":"):
            raise ValueError(f"tcp table line {number} is not a socket line: {line[:80]!r}")
        if wanted is not None and fields[1][-4:] != wanted and fields[2][-4:] != wanted:
            continue
        name = _STATE_BY_HEX.get(fields[3])
        if name is not None:
            counts[name] += 1
    return counts


def parse_sockstat(text: str) -> dict[str, int]:
    """The TCP figures of /proc/net/sockstat: inuse, orphan, tw, alloc, mem.

    inuse and tw belong to the reader's namespace; orphan, alloc and mem are
    host-wide (mem is in pages).
    """
    for line in text.splitlines():
        if line.startswith("TCP:"):
            words = line.split()[1:]
            if len(words) % 2:
                raise ValueError(f"sockstat TCP line has an odd number of words: {line!r}")
            pairs = dict(zip(words[::2], words[1::2]))
            try:
                return {name: int(pairs[name]) for name in SOCKSTAT_FIELDS}
            except KeyError as missing:
                raise ValueError(f"sockstat TCP line lacks {missing.args[0]!r}: {line!r}") from None
            except ValueError:
                raise ValueError(f"sockstat TCP line has a non-number: {line!r}") from None
    raise ValueError("sockstat text has no 'TCP:' line")


def parse_netstat(text: str, sections: Iterable[str] | None = None) -> dict[str, int]:
    """Counters of /proc/net/netstat or /proc/net/snmp, named nstat-style.

    Both files hold pairs of lines, a header "Sec: Name1 Name2" followed by
    "Sec: v1 v2". `sections` keeps only the named ones (e.g. TCP_SECTIONS).
    """
    keep = frozenset(sections) if sections is not None else None
    counters: dict[str, int] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise ValueError(f"counter text has {len(lines)} lines: expected header/value pairs")
    for header, values in zip(lines[::2], lines[1::2]):
        section, _, names = header.partition(":")
        value_section, _, numbers = values.partition(":")
        if section != value_section:
            raise ValueError(f"counter section {section!r} is followed by {value_section!r}")
        if keep is not None and section not in keep:
            continue
        names_list, numbers_list = names.split(), numbers.split()
        if len(names_list) != len(numbers_list):
            raise ValueError(
                f"counter section {section!r} has {len(names_list)} names "
                f"but {len(numbers_list)} values"
            )
        try:
            for name, number in zip(names_list, numbers_list):
                counters[section + name] = int(number)
        except ValueError:
            raise ValueError(f"counter section {section!r} has a non-number value") from None
    return counters


def counter_deltas(prev: Mapping[str, int], cur: Mapping[str, int]) -> dict[str, int]:
    """What happened between two readings: cur - prev for each counter of cur.

    Gauges (TcpCurrEstab and the constants) keep their current value. A name
    new in cur has no history and gets 0. A counter that went backwards means
    its namespace was replaced, so it counts from zero: the delta is cur.
    """
    deltas: dict[str, int] = {}
    for name, value in cur.items():
        if name in GAUGES:
            deltas[name] = value
            continue
        before = prev.get(name, value)
        deltas[name] = value - before if value >= before else value
    return deltas
