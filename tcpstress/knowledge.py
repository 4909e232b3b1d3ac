"""What the kernel does behind each TCP state, sysctl knob and counter, as data.

This is the project's kernel facts (docs/kernel.md) as frozen tables that the lab (to
validate profiles), `tcpstress explain` and the report's findings all read, so
a fact is written once. Descriptions are plain English and follow the kernel,
not the 2015 seed article the project grew from: where that article is wrong,
the correction is recorded as a `Myth` on the state it misdescribes.

Pure module: standard library only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

INT_MAX = 2**31 - 1


class UnknownName(KeyError):
    """A state, knob or counter name that is not in the tables.

    A KeyError so `except KeyError` works, but with a readable one-line str():
    KeyError's own str() wraps the message in quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------
# Value rules: what a knob accepts, and the kernel's text form of a value.
#
# The text form is what /proc/sys returns, with runs of whitespace collapsed to
# one space ("40000 40999", not the kernel's tab), so values compare as strings
# and read cleanly in result.json.


def _as_int(value: object) -> int:
    # TOML gives ints; CLI overrides give strings. A bool is refused because
    # `true` for a knob with three meanings (0/1/2) is a guess, not a value.
    if isinstance(value, bool):
        raise ValueError(f"got {value!r}, write a number instead of true/false")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(f"got {value!r}, which is not an integer")


@dataclass(frozen=True)
class IntRange:
    """An integer from `low` to `high` inclusive."""

    low: int
    high: int
    unit: str = ""

    def describe(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"an integer from {self.low} to {self.high}{unit}"

    def normalise(self, value: object) -> str:
        number = _as_int(value)
        if not self.low <= number <= self.high:
            raise ValueError(f"got {number}, must be {self.describe()}")
        return str(number)


@dataclass(frozen=True)
class Choice:
    """One of a few integers, each with a meaning."""

    meanings: tuple[tuple[int, str], ...]

    def describe(self) -> str:
        options = [f"{number} ({meaning})" for number, meaning in self.meanings]
        return "one of " + ", ".join(options)

    def normalise(self, value: object) -> str:
        number = _as_int(value)
        if number not in dict(self.meanings):
            allowed = ", ".join(str(n) for n, _ in self.meanings)
            raise ValueError(f"got {number}, must be one of {allowed}")
        return str(number)

    def meaning(self, value: str | int) -> str:
        return dict(self.meanings).get(int(value), "unknown")


@dataclass(frozen=True)
class PortRange:
    """Two port numbers "LOW HIGH" with 1 <= LOW <= HIGH <= 65535.

    The kernel additionally refuses LOW below net.ipv4.ip_unprivileged_port_start
    (1024 by default); that is per namespace and changeable, so it is left to
    the kernel's answer when the value is written.
    """

    def describe(self) -> str:
        return "'LOW HIGH' with 1 <= LOW <= HIGH <= 65535"

    def normalise(self, value: object) -> str:
        if isinstance(value, (list, tuple)):
            parts = list(value)
        elif isinstance(value, str):
            parts = value.split()
        else:
            raise ValueError(f"got {value!r}, must be {self.describe()}")
        if len(parts) != 2:
            raise ValueError(f"got {value!r}, must be {self.describe()}")
        try:
            low, high = (_as_int(part) for part in parts)
        except ValueError:
            raise ValueError(f"got {value!r}, must be {self.describe()}") from None
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"got {value!r}, must be {self.describe()}")
        return f"{low} {high}"


ValueRule = IntRange | Choice | PortRange


def kernel_text(raw: str) -> str:
    """A value as read from /proc/sys, in this module's text form."""
    return " ".join(raw.split())


# --------------------------------------------------------------------------
# Knobs


def proc_file(path: str) -> str:
    """net.ipv4.tcp_tw_reuse -> /proc/sys/net/ipv4/tcp_tw_reuse."""
    return "/proc/sys/" + path.replace(".", "/")


@dataclass(frozen=True)
class Knob:
    """One sysctl: where it lives, what it does, and what it accepts."""

    name: str  # short name, e.g. "tcp_tw_reuse"
    path: str  # full sysctl name, e.g. "net.ipv4.tcp_tw_reuse"
    default: str  # plain-English default, e.g. "2" or "ehash/2 (131072 here)"
    effect: str
    rule: ValueRule | None  # None when the knob cannot be set (removed)
    default_value: str | None = None  # text form when the default is a constant
    per_namespace: bool = True
    removed_in: str | None = None  # kernel version that removed it
    unit: str = ""
    counters: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    @property
    def proc_file(self) -> str:
        return proc_file(self.path)

    @property
    def settable_in_lab(self) -> bool:
        return self.removed_in is None and self.per_namespace and self.rule is not None

    @property
    def summary(self) -> str:
        """The first sentence of `effect`: one line for a table or a finding."""
        return re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", self.effect, maxsplit=1)[0]

    def describe_rule(self) -> str:
        return self.rule.describe() if self.rule else "nothing: it cannot be set"

    def normalise(self, value: object) -> str:
        """The kernel's text form of `value`, or ValueError naming the knob."""
        if self.rule is None:
            raise ValueError(f"{self.path} cannot be set")
        try:
            return self.rule.normalise(value)
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None


_TW_REUSE = Choice(
    (
        (0, "off"),
        (1, "on for every outgoing connection"),
        (2, "on for loopback only"),
    )
)

KNOBS: tuple[Knob, ...] = (
    Knob(
        name="ip_local_port_range",
        path="net.ipv4.ip_local_port_range",
        default="32768 60999 (28,232 ports)",
        default_value="32768 60999",
        rule=PortRange(),
        effect=(
            "The ports the kernel picks from for an outgoing connection that did not "
            "bind one. A port can be reused for a different (source address, "
            "destination address, destination port), so the limit is per such "
            "tuple: a client that closes first keeps each port 60 s in TIME_WAIT, "
            "which caps sustained churn at about 28,232 / 60 = 470 new connections "
            "per second per tuple with the default range. Past that, connect() fails "
            "with EADDRNOTAVAIL (no kernel counter counts it: the generator's error "
            "count shows it). A wider range, more source addresses, more destination "
            "ports or tcp_tw_reuse = 1 raise the cap."
        ),
        counters=("TcpExtTW", "TcpExtTWRecycled", "TcpActiveOpens"),
        states=("TIME_WAIT",),
    ),
    Knob(
        name="tcp_tw_reuse",
        path="net.ipv4.tcp_tw_reuse",
        default="2 (loopback only)",
        default_value="2",
        rule=_TW_REUSE,
        effect=(
            "Lets a new OUTGOING connection take the port of a TIME_WAIT socket "
            "with the same addresses once that socket is older than "
            "tcp_tw_reuse_delay and TCP timestamps were seen on it. 0 off, 1 on, "
            "2 on for loopback traffic only, which is why a demo over 127.0.0.1 "
            "does not run out of ports with the default while one over a veth pair "
            "does. It frees nothing on a server: the server's TIME_WAIT sockets "
            "stay their 60 s. TcpExtTWRecycled counts each port taken over."
        ),
        counters=("TcpExtTWRecycled",),
        states=("TIME_WAIT",),
    ),
    Knob(
        name="tcp_tw_recycle",
        path="net.ipv4.tcp_tw_recycle",
        default="none: removed",
        rule=None,
        removed_in="4.12",
        effect=(
            "Removed in Linux 4.12: it dropped connections from clients behind NAT "
            "because it compared TCP timestamps across different hosts sharing an "
            "address. The file no longer exists; use tcp_tw_reuse on the client, "
            "a wider ip_local_port_range, or keep-alive connections instead."
        ),
        states=("TIME_WAIT",),
    ),
    Knob(
        name="tcp_tw_reuse_delay",
        path="net.ipv4.tcp_tw_reuse_delay",
        default="1000 ms",
        default_value="1000",
        unit="ms",
        rule=IntRange(1, 60000, "ms"),
        effect=(
            "How old (in milliseconds) a TIME_WAIT socket must be before "
            "tcp_tw_reuse may give its port to a new outgoing connection. Only on "
            "recent kernels; older ones use a fixed 1 s."
        ),
        counters=("TcpExtTWRecycled",),
        states=("TIME_WAIT",),
    ),
    Knob(
        name="tcp_max_tw_buckets",
        path="net.ipv4.tcp_max_tw_buckets",
        default="half the established-hash size; scales with memory (131072 on a small test machine)",
        rule=IntRange(0, INT_MAX),
        effect=(
            "The most TIME_WAIT sockets the namespace holds. Past it, a closing "
            "socket skips TIME_WAIT entirely (it is simply destroyed) and "
            "TcpExtTCPTimeWaitOverflow counts it; the kernel also logs "
            "'TCP: time wait bucket table overflow'."
        ),
        counters=("TcpExtTCPTimeWaitOverflow",),
        states=("TIME_WAIT",),
    ),
    Knob(
        name="tcp_fin_timeout",
        path="net.ipv4.tcp_fin_timeout",
        default="60 s",
        default_value="60",
        unit="s",
        rule=IntRange(1, 2147483, "s"),
        effect=(
            "How long an ORPHANED FIN_WAIT2 socket (the application already closed "
            "it) on the ACTIVE closer waits for the peer's FIN before the kernel "
            "drops it. It does not change TIME_WAIT, which is always 60 s, and it "
            "does not apply to the passive closer."
        ),
        counters=("TcpExtTWKilled", "TcpExtTW"),
        states=("FIN_WAIT2",),
    ),
    Knob(
        name="tcp_max_syn_backlog",
        path="net.ipv4.tcp_max_syn_backlog",
        default="max(128, established-hash size / 128); 2048 in a fresh namespace on a small test machine",
        rule=IntRange(1, INT_MAX),
        effect=(
            "The size of a listener's SYN queue (half-open SYN_RECV connections). "
            "With syncookies off, once the queue passes three quarters of it, SYNs "
            "from peers the kernel has not talked to before are dropped. The queue "
            "is also capped by min(listen() backlog, somaxconn)."
        ),
        counters=("TcpExtTCPReqQFullDrop", "TcpExtListenDrops"),
        states=("SYN_RECV",),
    ),
    Knob(
        name="somaxconn",
        path="net.core.somaxconn",
        default="4096 (128 before Linux 5.4)",
        default_value="4096",
        rule=IntRange(0, INT_MAX),
        effect=(
            "The ceiling on the backlog an application passes to listen(): the "
            "accept queue of finished handshakes waiting for accept(). When that "
            "queue is full the final ACK of a handshake is ignored (or answered "
            "with RST under tcp_abort_on_overflow = 1) and TcpExtListenOverflows "
            "counts it."
        ),
        counters=("TcpExtListenOverflows", "TcpExtListenDrops"),
        states=("LISTEN", "SYN_RECV"),
    ),
    Knob(
        name="tcp_syncookies",
        path="net.ipv4.tcp_syncookies",
        default="1",
        default_value="1",
        rule=Choice(
            (
                (0, "off"),
                (1, "send cookies when the SYN queue is full"),
                (2, "always send cookies"),
            )
        ),
        effect=(
            "SYN cookies let a server answer a SYN without keeping state, so a SYN "
            "flood cannot fill the SYN queue. 0 off (a full queue drops SYNs: "
            "TcpExtTCPReqQFullDrop), 1 cookies only when the queue is full "
            "(TcpExtTCPReqQFullDoCookies, TcpExtSyncookiesSent), 2 always."
        ),
        counters=(
            "TcpExtSyncookiesSent",
            "TcpExtSyncookiesRecv",
            "TcpExtSyncookiesFailed",
            "TcpExtTCPReqQFullDoCookies",
            "TcpExtTCPReqQFullDrop",
        ),
        states=("SYN_RECV",),
    ),
    Knob(
        name="tcp_synack_retries",
        path="net.ipv4.tcp_synack_retries",
        default="5 (about 63 s)",
        default_value="5",
        rule=IntRange(0, 255),
        effect=(
            "How many times a server retransmits its SYN-ACK when the final ACK "
            "does not come, so how long a half-open SYN_RECV entry lives: with "
            "backoff 1, 2, 4, 8, 16, 32 s the default 5 gives up after about 63 s. "
            "Under a SYN flood from spoofed addresses this is how long each bogus "
            "entry occupies the SYN queue."
        ),
        counters=("TcpExtTCPSynRetrans",),
        states=("SYN_RECV",),
    ),
    Knob(
        name="tcp_syn_retries",
        path="net.ipv4.tcp_syn_retries",
        default="6 (about 127 s)",
        default_value="6",
        rule=IntRange(1, 127),
        effect=(
            "How long a connect() to an address that never answers hangs before "
            "failing with ETIMEDOUT. The kernel gives up once the time that N "
            "exponentially backed-off retransmits would take, (2^(N+1) - 1) s, has "
            "passed: 6 gives about 127 s, 2 about 7 s. Kernels with "
            "tcp_syn_linear_timeouts send the first retransmits 1 s apart, which "
            "sends more SYNs but does not give up sooner: the first retransmit timer "
            "past that time ends it (measured on Linux 6.18 with the default 4: "
            "2 -> 7 s, 3 -> 19 s, 4 -> 35 s, 6 -> about 131 s)."
        ),
        counters=("TcpExtTCPSynRetrans", "TcpAttemptFails", "TcpExtTCPAbortOnTimeout"),
        states=("SYN_SENT",),
    ),
    Knob(
        name="tcp_syn_linear_timeouts",
        path="net.ipv4.tcp_syn_linear_timeouts",
        default="4",
        default_value="4",
        rule=IntRange(0, 127),
        effect=(
            "On recent kernels: how many of connect()'s SYN retransmits are sent at "
            "the initial 1 s timeout before exponential backoff starts. More SYNs go "
            "out early (a lost SYN costs 1 s, not 1 + 2 + 4 ...), but a connect() to "
            "a dead address does not fail sooner: that time still follows "
            "tcp_syn_retries (measured: syn_retries 2 sends 5 SYN retransmits with "
            "the default 4 and 2 with 0, both failing after about 7 s). It does not "
            "affect the server's SYN-ACKs."
        ),
        counters=("TcpExtTCPSynRetrans",),
        states=("SYN_SENT",),
    ),
    Knob(
        name="tcp_abort_on_overflow",
        path="net.ipv4.tcp_abort_on_overflow",
        default="0",
        default_value="0",
        rule=Choice(((0, "ignore the final ACK"), (1, "answer with RST"))),
        effect=(
            "What a listener does with a handshake's final ACK when its accept "
            "queue is full. 0: ignore it, so the client (which already believes it "
            "is connected) retransmits and the connection usually recovers once the "
            "application catches up. 1: reset the connection at once, which turns "
            "a short stall into client-visible ECONNRESET errors."
        ),
        counters=("TcpExtListenOverflows", "TcpOutRsts"),
        states=("LISTEN",),
    ),
    Knob(
        name="tcp_keepalive_time",
        path="net.ipv4.tcp_keepalive_time",
        default="7200 s (2 hours)",
        default_value="7200",
        unit="s",
        rule=IntRange(1, 32767, "s"),
        effect=(
            "How long a connection with SO_KEEPALIVE must be idle before the first "
            "keep-alive probe. Only sockets that turned SO_KEEPALIVE on are probed. "
            "A dead peer is detected after time + intvl x probes "
            "(7200 + 75 x 9 = 7875 s by default); a live idle peer is never dropped."
        ),
        counters=("TcpExtTCPKeepAlive", "TcpExtTCPAbortOnTimeout"),
        states=("ESTABLISHED",),
    ),
    Knob(
        name="tcp_keepalive_intvl",
        path="net.ipv4.tcp_keepalive_intvl",
        default="75 s",
        default_value="75",
        unit="s",
        rule=IntRange(1, 32767, "s"),
        effect="Seconds between keep-alive probes once probing has started.",
        counters=("TcpExtTCPKeepAlive",),
        states=("ESTABLISHED",),
    ),
    Knob(
        name="tcp_keepalive_probes",
        path="net.ipv4.tcp_keepalive_probes",
        default="9",
        default_value="9",
        rule=IntRange(1, 127),
        effect=(
            "Unanswered keep-alive probes before the kernel drops the connection "
            "and the application's next call fails with ETIMEDOUT "
            "(TcpExtTCPAbortOnTimeout counts it)."
        ),
        counters=("TcpExtTCPKeepAlive", "TcpExtTCPAbortOnTimeout"),
        states=("ESTABLISHED",),
    ),
    Knob(
        name="tcp_max_orphans",
        path="net.ipv4.tcp_max_orphans",
        default="half the established-hash size; scales with memory (131072 on a small test machine)",
        rule=IntRange(0, INT_MAX),
        per_namespace=False,
        effect=(
            "GLOBAL, not per namespace: the most orphaned sockets (closed by the "
            "application but still finishing their close: FIN_WAIT1, FIN_WAIT2, "
            "LAST_ACK, CLOSING) the whole machine keeps. Past it the kernel resets "
            "them and logs 'too many orphaned sockets'. A lab namespace has no such "
            "file, so a profile cannot set it."
        ),
        counters=("TcpExtTCPAbortOnMemory",),
        states=("FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING"),
    ),
    Knob(
        name="tcp_orphan_retries",
        path="net.ipv4.tcp_orphan_retries",
        default="0 (which the kernel treats as 8)",
        default_value="0",
        rule=IntRange(0, 255),
        effect=(
            "How many times the kernel retransmits for an orphaned socket (one the "
            "application closed, e.g. in FIN_WAIT1 or LAST_ACK waiting for the ACK "
            "of its FIN) before giving up. 0 means the built-in 8."
        ),
        counters=("TcpExtTCPAbortOnTimeout",),
        states=("FIN_WAIT1", "LAST_ACK", "CLOSING"),
    ),
    Knob(
        name="tcp_timestamps",
        path="net.ipv4.tcp_timestamps",
        default="1",
        default_value="1",
        rule=Choice(
            (
                (0, "off"),
                (1, "on, with a random offset per connection"),
                (2, "on, without the random offset"),
            )
        ),
        effect=(
            "TCP timestamps (RFC 7323), which tcp_tw_reuse relies on to tell old "
            "segments from new ones: with timestamps off on either side a "
            "TIME_WAIT port is never reused early."
        ),
        counters=("TcpExtTWRecycled",),
        states=("TIME_WAIT",),
    ),
)

KNOBS_BY_NAME: Mapping[str, Knob] = MappingProxyType({k.name: k for k in KNOBS})
KNOBS_BY_PATH: Mapping[str, Knob] = MappingProxyType({k.path: k for k in KNOBS})


def _knob_key(name: str) -> str:
    key = name.strip().lower()
    key = key.removeprefix("/proc/sys/")
    return key.replace("/", ".")


def knob(name: str) -> Knob:
    """The knob called `name`: short ("somaxconn"), full ("net.core.somaxconn"),
    or a /proc/sys path. Unknown names raise UnknownName with a suggestion."""
    key = _knob_key(name)
    found = KNOBS_BY_NAME.get(key) or KNOBS_BY_PATH.get(key)
    if found is not None:
        return found
    candidates = list(KNOBS_BY_NAME) + list(KNOBS_BY_PATH)
    raise UnknownName(
        f"unknown sysctl knob {name!r}{_suggest(key, candidates)}; "
        f"known: {', '.join(KNOBS_BY_NAME)}"
    )


def _suggest(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


# --------------------------------------------------------------------------
# States


@dataclass(frozen=True)
class Myth:
    """A claim often repeated (the seed article makes most of them) and the fact."""

    claim: str
    correction: str


@dataclass(frozen=True)
class State:
    name: str  # as the kernel's tcp_states.h and this project write it
    code: int  # the kernel's TCP_* number, as in /proc/net/tcp's "st" column (hex)
    ss_name: str  # as `ss` prints it
    side: str
    arises: str
    ends: str
    knobs: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()
    myths: tuple[Myth, ...] = ()


_FIN_TIMEOUT_IS_NOT_TIME_WAIT = (
    "tcp_fin_timeout bounds how long an orphaned FIN_WAIT2 socket waits for the "
    "peer's FIN; the TIME_WAIT that follows still lasts the compiled-in 60 s "
    "(TCP_TIMEWAIT_LEN)."
)
_TIME_WAIT_IS_FIXED = (
    "TIME_WAIT lasts 60 s on every mainline Linux kernel: TCP_TIMEWAIT_LEN is "
    "compiled in and no sysctl changes it."
)

STATES: tuple[State, ...] = (
    State(
        name="LISTEN",
        code=10,
        ss_name="LISTEN",
        side="server",
        arises="the application called listen() on a bound socket",
        ends="the application closes the listening socket",
        knobs=("somaxconn", "tcp_max_syn_backlog", "tcp_abort_on_overflow", "tcp_syncookies"),
        counters=("TcpExtListenOverflows", "TcpExtListenDrops"),
    ),
    State(
        name="SYN_SENT",
        code=2,
        ss_name="SYN-SENT",
        side="client",
        arises="connect() sent a SYN and no SYN-ACK has come back yet",
        ends=(
            "a SYN-ACK (the connection becomes ESTABLISHED), a RST (ECONNREFUSED), "
            "or the time allowed by tcp_syn_retries runs out (ETIMEDOUT; default 6, "
            "about 127 s)"
        ),
        knobs=("tcp_syn_retries", "tcp_syn_linear_timeouts"),
        counters=("TcpActiveOpens", "TcpExtTCPSynRetrans", "TcpAttemptFails"),
        myths=(
            Myth("SYN_SEND", "The state is SYN_SENT; 'SYN_SEND' is a misspelling."),
            Myth(
                "tcp_syn_retries defaults to 5, about 180 s",
                "The default is 6 since Linux 3.7: connect() to a dead address fails "
                "after about 127 s (tcp_syn_linear_timeouts sends more SYNs early but "
                "does not shorten that).",
            ),
        ),
    ),
    State(
        name="SYN_RECV",
        code=3,
        ss_name="SYN-RECV",
        side="server",
        arises=(
            "a SYN arrived on a listener and the SYN-ACK was sent; the kernel keeps "
            "a small request sock in the SYN queue, not a full socket"
        ),
        ends=(
            "the client's final ACK (a full socket moves to the accept queue), or "
            "tcp_synack_retries exhausted (default 5, about 63 s)"
        ),
        knobs=("tcp_max_syn_backlog", "somaxconn", "tcp_syncookies", "tcp_synack_retries"),
        counters=(
            "TcpExtTCPReqQFullDrop",
            "TcpExtTCPReqQFullDoCookies",
            "TcpExtSyncookiesSent",
            "TcpExtTCPSynRetrans",
        ),
        myths=(
            Myth(
                "tcp_synack_retries defaults to 5, about 180 s",
                "5 retransmits with backoff 1, 2, 4, 8, 16, 32 s give up after about 63 s.",
            ),
            Myth(
                "tcp_max_syn_backlog defaults to 1024, and raising it protects against SYN floods",
                "Its default scales with memory (2048 in a fresh namespace on a small "
                "machine), the SYN queue is also capped by min(listen backlog, "
                "somaxconn), and syncookies, not a bigger queue, are what survive a flood.",
            ),
        ),
    ),
    State(
        name="ESTABLISHED",
        code=1,
        ss_name="ESTAB",
        side="both",
        arises="the three-way handshake completed",
        ends="either side sends a FIN (an orderly close) or a RST (an abort)",
        knobs=("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"),
        counters=("TcpCurrEstab", "TcpEstabResets"),
        myths=(
            Myth(
                "keep-alive closes idle connections after tcp_keepalive_probes x "
                "tcp_keepalive_intvl (about 11 minutes)",
                "Keep-alive only probes sockets with SO_KEEPALIVE, only after "
                "tcp_keepalive_time of idleness (7200 s), and only drops a peer that "
                "stops answering: detection takes time + intvl x probes = 7875 s by default.",
            ),
        ),
    ),
    State(
        name="FIN_WAIT1",
        code=4,
        ss_name="FIN-WAIT-1",
        side="active closer",
        arises="the side closing first sent its FIN, which is not acknowledged yet",
        ends=(
            "the ACK of the FIN (the socket moves to FIN_WAIT2). It lingers while "
            "unsent data or a zero window from the peer holds the FIN back"
        ),
        knobs=("tcp_orphan_retries", "tcp_max_orphans"),
        counters=("TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnMemory"),
    ),
    State(
        name="FIN_WAIT2",
        code=5,
        ss_name="FIN-WAIT-2",
        side="active closer",
        arises="the active closer's FIN was acknowledged; it waits for the peer's FIN",
        ends=(
            "the peer's FIN (the socket moves to TIME_WAIT); if the application has "
            "already closed the socket (orphaned), tcp_fin_timeout (default 60 s) ends it"
        ),
        knobs=("tcp_fin_timeout", "tcp_max_orphans"),
        counters=("TcpExtTWKilled",),
        myths=(
            Myth(
                "tcp_fin_timeout is the timeout of the passive closer after it sends its FIN",
                "It limits how long an orphaned FIN_WAIT2 socket of the ACTIVE closer "
                "waits for the peer's FIN.",
            ),
            Myth("tcp_fin_timeout shortens TIME_WAIT", _FIN_TIMEOUT_IS_NOT_TIME_WAIT),
        ),
    ),
    State(
        name="CLOSE_WAIT",
        code=8,
        ss_name="CLOSE-WAIT",
        side="passive closer",
        arises="the peer's FIN arrived; the application has not called close() yet",
        ends=(
            "the application closes the socket. No timeout sysctl ends it, so a "
            "growing CLOSE_WAIT count is an application that leaks sockets"
        ),
        counters=("TcpCurrEstab",),
        myths=(
            Myth(
                "a sysctl makes the kernel clean up CLOSE_WAIT",
                "The socket belongs to the application until it calls close(); the fix "
                "is in the application, not in the kernel.",
            ),
        ),
    ),
    State(
        name="LAST_ACK",
        code=9,
        ss_name="LAST-ACK",
        side="passive closer",
        arises="after CLOSE_WAIT, the application closed and its FIN went out",
        ends="the ACK of that FIN (retransmitted up to tcp_orphan_retries times)",
        knobs=("tcp_orphan_retries", "tcp_max_orphans"),
        counters=("TcpExtTCPAbortOnTimeout",),
        myths=(Myth("LASK_ACK", "The state is LAST_ACK; 'LASK_ACK' is a misspelling."),),
    ),
    State(
        name="CLOSING",
        code=11,
        ss_name="CLOSING",
        side="both",
        arises="both sides sent a FIN at the same time (simultaneous close)",
        ends="the ACK of its own FIN (the socket moves to TIME_WAIT)",
        knobs=("tcp_orphan_retries",),
    ),
    State(
        name="TIME_WAIT",
        code=6,
        ss_name="TIME-WAIT",
        side="whichever side closed first",
        arises=(
            "the side that sent the first FIN acknowledged the peer's FIN. A client "
            "that closes first collects it; so does a server that closes after "
            "'Connection: close'. A close() with SO_LINGER {on, 0} sends a RST and "
            "skips TIME_WAIT (counted by TcpExtTCPAbortOnData)"
        ),
        ends=(
            "a fixed 60 s timer (TCP_TIMEWAIT_LEN, not a sysctl); a new outgoing "
            "connection may take its port earlier under tcp_tw_reuse"
        ),
        knobs=(
            "ip_local_port_range",
            "tcp_tw_reuse",
            "tcp_tw_reuse_delay",
            "tcp_max_tw_buckets",
            "tcp_timestamps",
        ),
        counters=("TcpExtTW", "TcpExtTWRecycled", "TcpExtTCPTimeWaitOverflow"),
        myths=(
            Myth("TIME_WAIT lasts 60 s because of a RHEL setting", _TIME_WAIT_IS_FIXED),
            Myth("tcp_fin_timeout shortens TIME_WAIT", _FIN_TIMEOUT_IS_NOT_TIME_WAIT),
            Myth(
                "tcp_tw_recycle = 1 recycles TIME_WAIT sockets quickly",
                "tcp_tw_recycle was removed in Linux 4.12 (it broke clients behind NAT); "
                "the file does not exist.",
            ),
            Myth(
                "tcp_tw_reuse frees TIME_WAIT sockets",
                "It only lets a new outgoing connection take over the port of a "
                "TIME_WAIT socket older than tcp_tw_reuse_delay; the server's TIME_WAIT "
                "sockets are untouched.",
            ),
            Myth(
                "tcp_max_tw_buckets defaults to 180000",
                "Its default scales with memory (half the established-hash size).",
            ),
            Myth(
                "the client ends in TIME_WAIT",
                "Whichever side closes first ends in TIME_WAIT, client or server.",
            ),
        ),
    ),
)

STATES_BY_NAME: Mapping[str, State] = MappingProxyType({s.name: s for s in STATES})
STATES_BY_CODE: Mapping[int, State] = MappingProxyType({s.code: s for s in STATES})


def _state_key(name: str) -> str:
    # "FIN-WAIT-1", "fin_wait1" and "FIN WAIT 1" all mean FIN_WAIT1.
    return re.sub(r"[\s_-]", "", name).upper()


# Other spellings people (and tools) use, with a note when the spelling is wrong
# rather than merely different.
_STATE_ALIASES: dict[str, tuple[str, str | None]] = {
    "SYNSEND": ("SYN_SENT", "'SYN_SEND' is a misspelling of SYN_SENT (the seed article uses it)"),
    "LASKACK": ("LAST_ACK", "'LASK_ACK' is a misspelling of LAST_ACK (the seed article uses it)"),
    "SYNRECEIVED": ("SYN_RECV", "RFC 793 calls it SYN-RECEIVED; Linux and ss call it SYN_RECV / SYN-RECV"),
    "NEWSYNRECV": ("SYN_RECV", "NEW_SYN_RECV is the kernel's internal name for a SYN_RECV request sock"),
    "ESTAB": ("ESTABLISHED", None),
}
for _state in STATES:
    _STATE_ALIASES[_state_key(_state.name)] = (_state.name, None)
    _STATE_ALIASES[_state_key(_state.ss_name)] = (_state.name, None)


def state_with_note(name: str) -> tuple[State, str | None]:
    """The state called `name` in any common spelling, and a correction note
    when the spelling is a known mistake or a different convention."""
    alias = _STATE_ALIASES.get(_state_key(name))
    if alias is None:
        raise UnknownName(
            f"unknown TCP state {name!r}{_suggest(name.upper(), list(STATES_BY_NAME))}; "
            f"known: {', '.join(STATES_BY_NAME)}"
        )
    canonical, note = alias
    return STATES_BY_NAME[canonical], note


def state(name: str) -> State:
    """The state called `name`; misspellings such as SYN_SEND are accepted."""
    return state_with_note(name)[0]


# --------------------------------------------------------------------------
# Counters


@dataclass(frozen=True)
class KernelCounter:
    name: str  # nstat-style: file prefix + field, e.g. "TcpExtListenOverflows"
    source: str  # the /proc/net file holding it
    meaning: str
    reveals: str  # the failure a rise in it points to
    per_namespace: bool = True
    gauge: bool = False  # a current value, not a count that only grows


def _netstat(field: str, meaning: str, reveals: str) -> KernelCounter:
    return KernelCounter("TcpExt" + field, "/proc/net/netstat", meaning, reveals)


def _snmp(field: str, meaning: str, reveals: str, gauge: bool = False) -> KernelCounter:
    return KernelCounter("Tcp" + field, "/proc/net/snmp", meaning, reveals, gauge=gauge)


COUNTERS: tuple[KernelCounter, ...] = (
    _netstat(
        "ListenOverflows",
        "handshakes that completed (or SYNs that arrived) while the listener's accept queue was full",
        "the server accepts too slowly for the connection rate, or its backlog "
        "(min(listen() backlog, somaxconn)) is too small",
    ),
    _netstat(
        "ListenDrops",
        "everything a listener dropped, accept-queue overflows included",
        "connection attempts lost at the server; compare with ListenOverflows to "
        "see whether the accept queue is the cause",
    ),
    _netstat(
        "TCPReqQFullDrop",
        "SYNs dropped because the SYN queue was full and no syncookie was sent",
        "a SYN flood, or a burst of connects, against a server with syncookies off",
    ),
    _netstat(
        "TCPReqQFullDoCookies",
        "SYNs answered with a syncookie because the SYN queue was full",
        "the SYN queue overflowed; syncookies kept the server answering",
    ),
    _netstat(
        "SyncookiesSent",
        "SYN-ACKs sent carrying a syncookie",
        "the server is under a SYN flood or a connect burst larger than its SYN queue",
    ),
    _netstat(
        "SyncookiesRecv",
        "final ACKs carrying a valid syncookie (connections rebuilt from a cookie)",
        "real clients completing handshakes while cookies were in use",
    ),
    _netstat(
        "SyncookiesFailed",
        "ACKs whose syncookie did not check out",
        "stray or forged ACKs, or cookies that expired before the client answered",
    ),
    _netstat(
        "TW",
        "sockets that entered TIME_WAIT (counted when the 60 s timer starts)",
        "the active-close rate on this side: how fast TIME_WAIT sockets pile up",
    ),
    _netstat(
        "TWKilled",
        "timewait sockets started with a timer of 4 s or less, in practice orphaned "
        "FIN_WAIT2 sockets under a small tcp_fin_timeout",
        "a short tcp_fin_timeout cutting orphaned FIN_WAIT2 sockets off",
    ),
    _netstat(
        "TWRecycled",
        "TIME_WAIT sockets whose port a new outgoing connection took over (tcp_tw_reuse)",
        "tcp_tw_reuse at work: without it those connects would have needed fresh ports",
    ),
    _netstat(
        "TCPTimeWaitOverflow",
        "closing sockets that skipped TIME_WAIT because tcp_max_tw_buckets was reached",
        "more TIME_WAIT sockets than tcp_max_tw_buckets allows",
    ),
    _netstat(
        "TCPAbortOnData",
        "connections aborted with a RST by close() with SO_LINGER {on, 0}, or because "
        "data arrived after the application had closed them",
        "an application aborting connections instead of closing them (no TIME_WAIT "
        "follows), or a peer still sending after this side closed",
    ),
    _netstat(
        "TCPAbortOnClose",
        "connections reset because the application closed them with unread data",
        "an application closing before reading the whole reply or request",
    ),
    _netstat(
        "TCPAbortOnTimeout",
        "connections dropped after their retransmits, SYN retries or keep-alive probes ran out",
        "an unreachable or dead peer (connect() or keep-alive timeouts)",
    ),
    _netstat(
        "TCPAbortOnMemory",
        "connections reset because of too many orphaned sockets or TCP memory pressure",
        "tcp_max_orphans or tcp_mem exceeded (both are global, shared with the host)",
    ),
    _netstat(
        "TCPSynRetrans",
        "SYN and SYN-ACK retransmits",
        "handshakes not answered in time: a loaded or unreachable peer, or dropped packets",
    ),
    _netstat(
        "TCPKeepAlive",
        "keep-alive probes sent",
        "idle SO_KEEPALIVE connections being probed",
    ),
    _snmp("ActiveOpens", "connect() calls that sent a SYN", "the client's connection attempt rate"),
    _snmp(
        "PassiveOpens",
        "connections a listener completed (a full socket created)",
        "the server's accepted-connection rate",
    ),
    _snmp(
        "AttemptFails",
        "connection attempts that failed during the handshake (refused, reset or timed out)",
        "connects to a closed port, an overloaded server, or an unreachable address",
    ),
    _snmp(
        "EstabResets",
        "established connections ended by a RST",
        "aborts: peers resetting, accept-queue overflow with tcp_abort_on_overflow, or SO_LINGER {on, 0}",
    ),
    _snmp(
        "CurrEstab",
        "connections now in ESTABLISHED (and, on recent kernels, CLOSE_WAIT)",
        "how many connections are held open; a rise with CLOSE_WAIT points to a socket leak",
        gauge=True,
    ),
    _snmp("RetransSegs", "segments retransmitted", "loss or congestion on the path"),
    _snmp("OutRsts", "segments sent with RST", "connections this side refused or aborted"),
)

COUNTERS_BY_NAME: Mapping[str, KernelCounter] = MappingProxyType({c.name: c for c in COUNTERS})


def counter(name: str) -> KernelCounter:
    """The counter called `name`, nstat-style ("TcpExtListenOverflows"); the
    bare field name ("ListenOverflows") and "TcpExt:ListenOverflows" also work."""
    key = name.strip().replace(":", "")
    if key in COUNTERS_BY_NAME:
        return COUNTERS_BY_NAME[key]
    for prefix in ("TcpExt", "Tcp"):
        if prefix + key in COUNTERS_BY_NAME:
            return COUNTERS_BY_NAME[prefix + key]
    raise UnknownName(
        f"unknown kernel counter {name!r}{_suggest(key, list(COUNTERS_BY_NAME))}"
    )


@dataclass(frozen=True)
class SockstatField:
    """A field of /proc/net/sockstat's "TCP:" line."""

    name: str
    per_namespace: bool
    meaning: str


SOCKSTAT_FIELDS: tuple[SockstatField, ...] = (
    SockstatField("inuse", True, "TCP sockets in use, listeners included (TIME_WAIT excluded)"),
    SockstatField("orphan", False, "orphaned sockets (closed by the application, still closing), host-wide"),
    SockstatField("tw", True, "sockets in TIME_WAIT"),
    SockstatField("alloc", False, "TCP sockets allocated, host-wide"),
    SockstatField("mem", False, "pages of memory TCP uses, host-wide (compare with tcp_mem)"),
)
