"""Count TCP sockets by state over NETLINK_SOCK_DIAG.

One dump with the state bits asked for (the sampler leaves TIME_WAIT out when
sockstat can count it), and per reply message only two reads:
nlmsg_len/nlmsg_type to walk the buffer and idiag_state to count. The dump is
the older TCPDIAG_GETSOCK request (inet_diag_req), which the kernel answers
with the sockets of both address families in one walk of its TCP hash table;
`ss` sends one SOCK_DIAG_BY_FAMILY request (inet_diag_req_v2) per family, and
so walks it twice. The walk costs per hash bucket, not only per socket: every
bucket of the whole machine's table (262,144 here, shared by all network
namespaces unless tcp_child_ehash_entries gives one its own), so a namespace
with 5 sockets cost 14-18 ms per count with two walks and 7-9 ms with one, on
this 2-core machine holding ~20k TIME_WAIT sockets elsewhere. A kernel that
refuses the older request gets the two per-family requests. The kernel does
the rest:

- the optional port filter is inet_diag bytecode, the same program `ss` builds
  for '( sport = :P or dport = :P )', so sockets on other ports are skipped
  in the kernel and never copied out;
- TIME_WAIT minisockets report their substate in idiag_state (an orphaned
  FIN_WAIT2 that became a minisocket shows FIN_WAIT2), request sockets are
  reported as SYN_RECV when that bit is asked for: the counts match `ss`.

Measured by bench/bench_sampler.py (Linux 6.18, 2 shared and busy cores,
medians of 5). With one walk, 87,728 TIME_WAIT + 20,002 ESTABLISHED: `ss
-Htan | wc -l` 421 ms, this count 106 ms, with the port filter 66 ms when it
keeps the TIME_WAIT sockets and 21 ms when it keeps nothing. Earlier, with
two walks, with 88-89k TIME_WAIT + 20k ESTABLISHED sockets, over two runs: `ss -Htan | wc -l` 174-349 ms; this count 59-73 ms (0.17-0.42x ss);
with the port filter 45-60 ms when it keeps the TIME_WAIT sockets, 21-32 ms
when it keeps nothing (the kernel still walks every socket); /proc/net/tcp{,6}
read and parsed 255-296 ms; psutil.net_connections 0.9-1.0 s. With 80k
ESTABLISHED + 17k TIME_WAIT: ss 193 ms, this count 94 ms (full sockets carry
attributes, so more bytes per socket), procfs 253 ms, psutil 1.35 s.
The kernel's dump and the recv copies are most of this count's cost (34 of
42 ms with 113k TIME_WAIT in a quieter moment); the Python walk is the rest.
Filtering the port in Python instead (reading sport/dport of each message)
cost 59 ms against the kernel filter's 11 ms for a port that matched
nothing, hence the bytecode. Counting 14-byte header patterns with
bytes.count() instead of walking was slower (66 ms).

A dump is not an atomic snapshot: the kernel fills one ~32 KiB reply at a
time and resumes by position inside a hash bucket, so sockets opened or
closed meanwhile can be missed or seen twice. With the port filter a few
hundred matching sockets fit in one reply, which avoids that (each bucket
is read under its lock, though the whole is still not one instant).

The socket answers for the network namespace it was created in; see
nsenter.run_in_netns to create one elsewhere.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct

from tcpstress.sampler.procfs import STATE_BY_CODE, TCP_STATES

NETLINK_SOCK_DIAG = 4
TCPDIAG_GETSOCK = 18
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_REQ_BYTECODE = 1

# inet_diag bytecode op codes (include/uapi/linux/inet_diag.h)
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ = 11
INET_DIAG_BC_D_EQ = 12

# Bits 1..11 are the TCP states; 12 (NEW_SYN_RECV) is what request sockets
# are inside the kernel, which adds it by itself whenever SYN_RECV is asked.
ALL_STATES_MASK = sum(1 << code for code in STATE_BY_CODE) | (1 << 12)
TIME_WAIT_CODE = 6
FIN_WAIT2_CODE = 5
TIME_WAIT_MASK = 1 << TIME_WAIT_CODE
LISTEN_MASK = 1 << 10
# TIME_WAIT sockets are most of a busy namespace and the costliest to copy
# out; the sampler takes their number from /proc/net/sockstat instead.
NO_TIME_WAIT_MASK = ALL_STATES_MASK & ~TIME_WAIT_MASK
# idiag_timer of a timewait minisocket (inet_twsk_diag_fill); full sockets
# report 0, 1 (retransmit), 2 (keepalive/FIN_WAIT2) or 4 (zero window probe).
_TIMEWAIT_TIMER = 3

_NLMSGHDR = struct.Struct("=IHHII")
_REQ_V2 = struct.Struct("=BBBBI48x")  # family, protocol, ext, pad, states, zeroed sockid
_REQ_V1 = struct.Struct("=BBBB48xII")  # family, src_len, dst_len, ext, zeroed sockid, states, dbs
_RTATTR = struct.Struct("=HH")
_LEN_TYPE = struct.Struct("=IH")
_DONE_ERROR = struct.Struct("=i")
# inet_diag_msg follows the 16-byte nlmsghdr: family(1) state(1) timer(1) ...
_STATE_OFFSET = 16 + 1
_TIMER_OFFSET = 16 + 2
_RECV_SIZE = 1 << 16  # the kernel fills at most ~32 KiB per dump recv


def port_filter_bytecode(port: int) -> bytes:
    """inet_diag bytecode accepting a socket whose sport or dport is `port`.

    Each op is (code, yes, no): the run jumps `yes` bytes forward when the
    condition holds and `no` bytes otherwise; landing exactly on the end
    accepts, jumping past it rejects. The kernel's audit requires every `no`
    target to be reachable along the `yes` chain, hence the JMP in the middle
    (it always takes `no`), exactly as `ss` compiles an "or":

        0  S_EQ port  yes→8  no→12     sport matches: go to the JMP
        8  JMP        no→20 (accept)
        12 D_EQ port  yes→20 (accept)  no→24 (reject)
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range: allowed 1..65535")
    return struct.pack(
        "=BBHBBH" "BBH" "BBHBBH",
        INET_DIAG_BC_S_EQ, 8, 12, 0, 0, port,
        INET_DIAG_BC_JMP, 4, 12,
        INET_DIAG_BC_D_EQ, 8, 12, 0, 0, port,
    )


def build_request(family: int, seq: int, states: int = ALL_STATES_MASK, bytecode: bytes = b"") -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP sockets of one family."""
    body = _REQ_V2.pack(family, socket.IPPROTO_TCP, 0, 0, states)
    if bytecode:
        body += _RTATTR.pack(_RTATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def build_one_walk_request(seq: int, states: int = ALL_STATES_MASK, bytecode: bytes = b"") -> bytes:
    """A TCPDIAG_GETSOCK dump request: the kernel answers it for IPv4 and IPv6
    alike (it dumps with family AF_UNSPEC, whatever idiag_family says), and its
    replies carry the request's type, TCPDIAG_GETSOCK."""
    body = _REQ_V1.pack(socket.AF_INET, 0, 0, 0, states, 0)
    if bytecode:
        body += _RTATTR.pack(_RTATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


class _Refused(OSError):
    """The kernel answered a request with NLMSG_ERROR before any socket."""


class StateCounter:
    """A sock_diag socket, kept open to count again and again.

    Not thread-safe: one count at a time (the kernel refuses a second dump on
    a socket while one is running).
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self._buf = bytearray(_RECV_SIZE)
        self._unfinished = False
        # Until the kernel refuses it once: one walk for both families.
        self.one_walk = True
        # FIN_WAIT2 sockets of the last count that are timewait minisockets:
        # /proc/net/sockstat's `tw` counts them with the TIME_WAIT ones.
        self.fin_wait2_minisockets = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "StateCounter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, port: int | None = None, states: int = ALL_STATES_MASK) -> dict[str, int]:
        """Sockets per state (every state present, zeros too), IPv4 + IPv6.

        With `port`: only sockets whose local or remote port equals it. With
        `states` (a mask of 1 << state code): only those states are dumped, the
        others count 0 and cost the kernel one comparison per socket.
        """
        bytecode = port_filter_bytecode(port) if port is not None else b""
        if self._unfinished:
            self._drain()
        # indexed by state | timer << 4, so the hot loop stays one increment
        by_code = [0] * 128
        if self.one_walk:
            try:
                self._dump(build_one_walk_request(random.getrandbits(31), states, bytecode), TCPDIAG_GETSOCK, by_code)
            except _Refused:
                self.one_walk = False
                by_code = [0] * 128
        if not self.one_walk:
            for family in (socket.AF_INET, socket.AF_INET6):
                request = build_request(family, random.getrandbits(31), states, bytecode=bytecode)
                self._dump(request, SOCK_DIAG_BY_FAMILY, by_code)
        self.fin_wait2_minisockets = by_code[FIN_WAIT2_CODE | _TIMEWAIT_TIMER << 4]
        return {name: sum(by_code[code::16]) for code, name in STATE_BY_CODE.items()}

    def _dump(self, request: bytes, reply_type: int, by_code: list[int]) -> None:
        self._sock.send(request)
        self._unfinished = True
        buf, recv_into, unpack = self._buf, self._sock.recv_into, _LEN_TYPE.unpack_from
        # The hot loop: one unpack and two byte reads per socket.
        while True:
            size = recv_into(buf)
            offset = 0
            while offset < size:
                length, kind = unpack(buf, offset)
                if kind == reply_type:
                    by_code[buf[offset + _STATE_OFFSET] | (buf[offset + _TIMER_OFFSET] & 7) << 4] += 1
                elif kind == NLMSG_DONE:
                    self._unfinished = False
                    (status,) = _DONE_ERROR.unpack_from(buf, offset + 16) if length >= 20 else (0,)
                    if status < 0:
                        raise OSError(-status, f"sock_diag dump: {os.strerror(-status)}")
                    return
                elif kind == NLMSG_ERROR:
                    self._unfinished = False
                    (status,) = _DONE_ERROR.unpack_from(buf, offset + 16)
                    raise _Refused(-status, f"sock_diag request refused: {os.strerror(-status)}")
                if length < 16:
                    raise OSError(errno.EPROTO, f"sock_diag reply with a bad length {length}")
                offset += (length + 3) & ~3

    def _drain(self) -> None:
        """Read away what an interrupted dump left, so counts start clean."""
        self._sock.setblocking(False)
        try:
            while True:
                self._sock.recv_into(self._buf)
        except BlockingIOError:
            pass
        finally:
            self._sock.setblocking(True)
        self._unfinished = False


def count_states(port: int | None = None) -> dict[str, int]:
    """Sockets per state in the calling thread's network namespace."""
    with StateCounter() as counter:
        return counter.count(port)


__all__ = ["NO_TIME_WAIT_MASK", "TIME_WAIT_MASK", "LISTEN_MASK", "StateCounter", "count_states", "port_filter_bytecode",
           "build_request", "build_one_walk_request", "TCP_STATES"]
