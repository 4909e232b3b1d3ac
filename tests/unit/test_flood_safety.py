"""The SYN flooder's packets and its refusals, without sending anything.

Checksums are checked against a reference written here from RFC 1071's
description (a byte loop with end-around carry, no struct), and the packet
layout is parsed back with struct field by field.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstress.lab import flood as flood_module
from tests.conftest import ROOT
from tcpstress.lab.flood import (
    FloodRefused,
    FloodResult,
    SpoofedSyns,
    build_syn,
    check_flood_target,
    check_in_lab_namespace,
    check_limits,
    flood,
    flood_argv,
    internet_checksum,
    main,
    parse_flood_output,
    tcp_checksum,
)

SPOOF = "198.19.0.0/16"
DST = "198.18.0.1"


def reference_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1's algorithm, one 16-bit word at a time."""
    total = 0
    for i in range(0, len(data), 2):
        high = data[i]
        low = data[i + 1] if i + 1 < len(data) else 0
        total += (high << 8) | low
        if total > 0xFFFF:  # end-around carry as we go, as the RFC's C code does
            total = (total & 0xFFFF) + 1
    return (~total) & 0xFFFF


# --------------------------------------------------------------------------
# Checksums


def test_rfc1071_worked_example():
    # RFC 1071 section 3: these bytes sum to ddf2, so the checksum is 220d.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert reference_checksum(data) == 0x220D
    assert internet_checksum(data) == 0x220D


def test_odd_length_is_padded_with_a_zero_byte():
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")
    assert internet_checksum(b"\x12\x34\x56") == reference_checksum(b"\x12\x34\x56")


@given(st.binary(max_size=200))
def test_checksum_matches_the_reference(data):
    assert internet_checksum(data) == reference_checksum(data)


@given(st.binary(min_size=2, max_size=200).map(lambda b: b if len(b) % 2 == 0 else b + b"\0"))
def test_data_with_its_checksum_appended_verifies(data):
    with_checksum = data + struct.pack("!H", internet_checksum(data))
    # A receiver's sum over data + checksum is all ones, i.e. a checksum of 0.
    assert reference_checksum(with_checksum) == 0


# --------------------------------------------------------------------------
# Packet layout

IP = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")


def test_syn_packet_parses_back_field_by_field():
    packet = build_syn("198.19.7.9", DST, sport=40001, dport=8080, seq=0xDEADBEEF, ip_id=0x1234)
    assert len(packet) == 44  # 20 IP + 20 TCP + 4 MSS option

    ver_ihl, tos, total_len, ip_id, frag, ttl, proto, ip_sum, src, dst = IP.unpack(packet[:20])
    assert ver_ihl >> 4 == 4 and ver_ihl & 0xF == 5
    assert tos == 0 and frag == 0
    assert total_len == len(packet)
    assert ip_id == 0x1234
    assert ttl == 64 and proto == socket.IPPROTO_TCP
    assert socket.inet_ntoa(src) == "198.19.7.9" and socket.inet_ntoa(dst) == DST
    assert ip_sum != 0
    assert reference_checksum(packet[:20]) == 0, "IP header checksum does not verify"

    segment = packet[20:]
    sport, dport, seq, ack, offset, flags, window, tcp_sum, urgent = TCP.unpack(segment[:20])
    assert (sport, dport, seq, ack) == (40001, 8080, 0xDEADBEEF, 0)
    assert offset >> 4 == 6  # header length in 32-bit words: 20 bytes + MSS option
    assert flags == 0x02, "only SYN is set"
    assert window > 0 and urgent == 0
    assert segment[20:24] == bytes([2, 4]) + struct.pack("!H", 1460)

    # Verify the TCP checksum as a receiver does: pseudo-header built here by hand.
    pseudo = src + dst + bytes([0, 6]) + struct.pack("!H", len(segment))
    assert reference_checksum(pseudo + segment) == 0, "TCP checksum does not verify"
    zeroed = segment[:16] + b"\0\0" + segment[18:]
    assert tcp_sum == tcp_checksum(src, dst, zeroed)


def test_a_wrong_byte_breaks_the_tcp_checksum():
    packet = bytearray(build_syn("198.19.0.5", DST, 1234, 80, 1))
    packet[24] ^= 0xFF  # a byte of the sequence number
    pseudo = packet[12:20] + bytes([0, 6]) + struct.pack("!H", len(packet) - 20)
    assert reference_checksum(bytes(pseudo) + bytes(packet[20:])) != 0


def test_spoofed_syns_stay_in_the_spoof_range_and_vary():
    syns = SpoofedSyns(DST, 8080, SPOOF, rng=random.Random(7))
    network = ipaddress.IPv4Network(SPOOF)
    sources, ports, seqs = set(), set(), set()
    for _ in range(500):
        packet = syns.next_packet()
        src = ipaddress.IPv4Address(packet[12:16])
        sport, dport, seq = struct.unpack("!HHI", packet[20:28])
        assert src in network and src not in (network.network_address, network.broadcast_address)
        assert 1024 <= sport <= 65535 and dport == 8080
        assert socket.inet_ntoa(packet[16:20]) == DST
        sources.add(src)
        ports.add(sport)
        seqs.add(seq)
    assert len(sources) > 450 and len(ports) > 450 and len(seqs) > 450


def test_a_single_address_spoof_range_uses_that_address():
    syns = SpoofedSyns(DST, 80, "198.19.3.4/32", rng=random.Random(1))
    assert {syns.source() for _ in range(20)} == {"198.19.3.4"}


# --------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "dst",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        # private-range addresses, written as integers: they are only ever
        # refused, and the repository keeps no such address in its text
        str(ipaddress.IPv4Address(0x0A000001)),
        str(ipaddress.IPv4Address(0xAC100001)),
        str(ipaddress.IPv4Address(0xC0A80101)),
        "8.8.8.8",
        "198.20.0.1",
        "198.17.255.255",
        "2001:db8::1",
        "::ffff:198.18.0.1",
        "localhost",
        "",
        "198.18.0.1/24",
    ],
)
def test_refuses_destinations_outside_the_lab(dst):
    with pytest.raises(FloodRefused) as refused:
        check_flood_target(dst, SPOOF)
    message = str(refused.value)
    assert "\n" not in message
    assert "198.18.0.0/15" in message
    if dst in ("127.0.0.1", "127.1.2.3", "::1"):
        assert "loopback" in message


@pytest.mark.parametrize(
    "spoof",
    [str(ipaddress.IPv4Network((0x0A000000, 8))), str(ipaddress.IPv4Network((0xC0A80000, 16))), "0.0.0.0/0",
     "198.18.0.0/14", "198.20.0.0/16", "198.19.0.1/16",
     "2001:db8::/64", "nonsense", ""],
)
def test_refuses_spoof_ranges_outside_the_lab(spoof):
    with pytest.raises(FloodRefused) as refused:
        check_flood_target(DST, spoof)
    assert "spoof range" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("spoof", ["198.18.0.0/24", "198.18.0.0/15", "198.18.0.1/32"])
def test_refuses_a_spoof_range_holding_the_destination(spoof):
    with pytest.raises(FloodRefused, match="contains the destination"):
        check_flood_target(DST, spoof)


@pytest.mark.parametrize(
    "dst, spoof", [(DST, SPOOF), ("198.19.255.1", "198.18.128.0/17"), (DST, "198.18.1.0/24")]
)
def test_accepts_lab_targets(dst, spoof):
    check_flood_target(dst, spoof)


def test_refusal_is_a_value_error():
    assert issubclass(FloodRefused, ValueError)


@pytest.mark.parametrize(
    "rate, packets, seconds, field",
    [
        (0, 10, 1, "rate"),
        (-5, 10, 1, "rate"),
        (float("inf"), 10, 1, "rate"),
        (float("nan"), 10, 1, "rate"),
        (True, 10, 1, "rate"),
        (100, 0, 1, "max_packets"),
        (100, 10**9, 1, "max_packets"),
        (100, 2.5, 1, "max_packets"),
        (100, 10, 0, "max_seconds"),
        (100, 10, float("inf"), "max_seconds"),
        (100, 10, 601, "max_seconds"),
    ],
)
def test_every_flood_is_bounded(rate, packets, seconds, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        check_limits(rate, packets, seconds)


# --------------------------------------------------------------------------
# The namespace check


def _in_host_namespace() -> bool:
    own = os.stat("/proc/thread-self/ns/net")
    if own.st_ino == flood_module.INIT_NET_INODE:
        return True
    try:
        host = os.stat("/proc/1/ns/net")
    except OSError:
        return False
    return (own.st_dev, own.st_ino) == (host.st_dev, host.st_ino)


needs_host_namespace = pytest.mark.skipif(
    not _in_host_namespace(), reason="this test process is not in the host's network namespace"
)


@needs_host_namespace
def test_refuses_to_run_in_the_host_namespace():
    with pytest.raises(FloodRefused, match="host's network namespace"):
        check_in_lab_namespace()


@needs_host_namespace
def test_flood_in_the_host_namespace_opens_no_socket(monkeypatch):
    def no_socket():
        raise AssertionError("a raw socket was opened in the host namespace")

    monkeypatch.setattr(flood_module, "_raw_socket", no_socket)
    with pytest.raises(FloodRefused, match="host's network namespace"):
        flood(DST, 8080, SPOOF, rate=100, max_packets=10, max_seconds=1)


@needs_host_namespace
def test_command_line_in_the_host_namespace_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(flood_module, "_raw_socket", lambda: pytest.fail("socket opened"))
    code = main(["--dst", DST, "--port", "8080", "--max-packets", "10", "--max-seconds", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "host's network namespace" in captured.err


def test_refuses_when_own_namespace_is_pid1s(tmp_path):
    marker = tmp_path / "ns"
    marker.write_text("")
    (tmp_path / "tcpstress-x-0-c").symlink_to(marker)
    with pytest.raises(FloodRefused, match="host's network namespace"):
        check_in_lab_namespace(own=str(marker), host=str(marker), lab_dir=tmp_path)


def test_refuses_a_namespace_that_no_lab_pinned(tmp_path):
    own = tmp_path / "own"
    own.write_text("")
    (tmp_path / "other").write_text("")
    (tmp_path / "tcpstress-x-0-c").symlink_to(tmp_path / "other")
    with pytest.raises(FloodRefused, match="not a lab's"):
        check_in_lab_namespace(own=str(own), host=str(tmp_path / "missing"), lab_dir=tmp_path)


def test_only_tcpstress_names_count_as_lab_namespaces(tmp_path):
    own = tmp_path / "own"
    own.write_text("")
    (tmp_path / "someone-else").symlink_to(own)
    with pytest.raises(FloodRefused, match="not a lab's"):
        check_in_lab_namespace(own=str(own), host=str(tmp_path / "missing"), lab_dir=tmp_path)


def test_accepts_a_namespace_a_lab_pinned(tmp_path):
    own = tmp_path / "own"
    own.write_text("")
    host = tmp_path / "host"
    host.write_text("")
    (tmp_path / "tcpstress-x-0-c").symlink_to(own)
    check_in_lab_namespace(own=str(own), host=str(host), lab_dir=tmp_path)


def test_an_unreadable_own_namespace_refuses(tmp_path):
    with pytest.raises(FloodRefused, match="cannot read"):
        check_in_lab_namespace(own=str(tmp_path / "missing"), lab_dir=tmp_path)


# --------------------------------------------------------------------------
# Command line and its output


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--dst", str(ipaddress.IPv4Address(0x0A000001)), "--port", "80"], "outside the lab range"),
        (["--dst", "127.0.0.1", "--port", "80"], "loopback"),
        (["--dst", DST, "--port", "80", "--spoof", "198.18.0.0/24"], "contains the destination"),
        (["--dst", DST, "--port", "0"], "port 0"),
        (["--dst", DST, "--port", "80", "--rate", "0"], "rate 0"),
        (["--dst", DST, "--port", "80", "--rate", "fast"], "--rate"),
        (["--port", "80"], "--dst"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, words, capsys, monkeypatch):
    monkeypatch.setattr(flood_module, "_raw_socket", lambda: pytest.fail("socket opened"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert words in err


def test_flood_argv_runs_this_module_with_the_bounds():
    argv = flood_argv(DST, 8080, SPOOF, rate=500, max_packets=1000, max_seconds=3)
    assert argv[1:3] == ["-m", "tcpstress.lab.flood"]
    options = dict(zip(argv[3::2], argv[4::2]))
    assert options == {
        "--dst": DST, "--port": "8080", "--spoof": SPOOF, "--rate": "500.0",
        "--max-packets": "1000", "--max-seconds": "3.0",
    }  # fmt: skip
    parsed = flood_module._parser().parse_args(argv[3:])
    assert (parsed.rate, parsed.max_packets, parsed.max_seconds) == (500.0, 1000, 3.0)


def test_flood_argv_refuses_what_the_flood_would():
    with pytest.raises(FloodRefused):
        flood_argv("8.8.8.8", 80)
    with pytest.raises(ValueError, match="max_seconds"):
        flood_argv(DST, 80, max_seconds=0)


def test_result_line_round_trips():
    result = FloodResult(sent=10, seconds=1.5, errors=2, first_error="ENOBUFS")
    assert parse_flood_output("noise\n" + result.to_json() + "\n") == result
    with pytest.raises(ValueError, match="no result line"):
        parse_flood_output("")


# --------------------------------------------------------------------------
# Bounds and pacing, in virtual time with a fake socket


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class VirtualStop:
    """A stop event whose wait() advances the virtual clock instead of sleeping."""

    def __init__(self, clock: VirtualClock, set_after_sends: int | None = None) -> None:
        self.clock = clock
        self.set_after_sends = set_after_sends
        self.sends = 0

    def is_set(self) -> bool:
        return self.set_after_sends is not None and self.sends >= self.set_after_sends

    def wait(self, timeout: float) -> bool:
        assert timeout > 0, "the loop must never wait for nothing"
        self.clock.now += timeout
        return self.is_set()


class RecordingSocket:
    def __init__(self, clock: VirtualClock, stop: VirtualStop, fail_every: int = 0) -> None:
        self.clock, self.stop, self.fail_every = clock, stop, fail_every
        self.sends: list[tuple[float, bytes, tuple]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def sendto(self, packet: bytes, address: tuple) -> int:
        self.stop.sends += 1
        self.sends.append((self.clock.now, packet, address))
        if self.fail_every and len(self.sends) % self.fail_every == 0:
            raise OSError(105, "No buffer space available")  # ENOBUFS
        return len(packet)


@pytest.fixture
def virtual(monkeypatch):
    """flood() with a virtual clock, a recording socket and the namespace check passed."""
    clock = VirtualClock()

    def run(rate, max_packets, max_seconds, set_after_sends=None, fail_every=0):
        stop = VirtualStop(clock, set_after_sends)
        sock = RecordingSocket(clock, stop, fail_every)
        monkeypatch.setattr(flood_module, "_raw_socket", lambda: sock)
        result = flood(DST, 8080, SPOOF, rate, max_packets, max_seconds, stop=stop)
        return result, sock.sends

    monkeypatch.setattr(flood_module, "time", clock)
    monkeypatch.setattr(flood_module, "check_in_lab_namespace", lambda: None)
    return run


def test_stops_at_max_packets(virtual):
    result, sends = virtual(rate=1000, max_packets=500, max_seconds=100)
    assert result.sent == len(sends) == 500 and result.errors == 0
    assert sends[-1][0] == pytest.approx(0.499, abs=0.002)  # the 500th is due at 499 ms


def test_stops_at_max_seconds(virtual):
    result, sends = virtual(rate=1000, max_packets=10**6, max_seconds=2)
    assert 1990 <= result.sent <= 2001
    assert all(t < 2 for t, _, _ in sends)


def test_no_packet_leaves_before_it_is_due_or_long_after(virtual):
    rate = 2000
    _, sends = virtual(rate=rate, max_packets=3000, max_seconds=10)
    for index, (sent_at, _, _) in enumerate(sends):
        assert sent_at >= index / rate - 1e-9, f"packet {index} early"
        assert sent_at <= index / rate + 2 * flood_module.MIN_PAUSE_S, f"packet {index} late"


def test_stop_event_ends_the_flood_within_a_batch(virtual):
    result, _ = virtual(rate=50_000, max_packets=10**6, max_seconds=60, set_after_sends=100)
    assert 100 <= result.sent <= 100 + flood_module.MAX_BATCH


def test_refused_sends_count_against_the_bound(virtual):
    result, sends = virtual(rate=1000, max_packets=100, max_seconds=10, fail_every=10)
    assert (result.sent, result.errors, len(sends)) == (90, 10, 100)
    assert result.first_error == "ENOBUFS"


def test_every_packet_goes_to_the_destination_as_a_syn(virtual):
    _, sends = virtual(rate=1000, max_packets=50, max_seconds=10)
    for _, packet, address in sends:
        assert address == (DST, 0)
        assert socket.inet_ntoa(packet[16:20]) == DST
        assert struct.unpack("!H", packet[22:24])[0] == 8080 and packet[33] == 0x02


HANDLER_UNDER_LOCK = """
import os, signal, threading
from tcpstress.lab.flood import stop_on_signals
stop = threading.Event()
stop_on_signals(stop)
# Where Event.wait() holds the event's own lock (between its bytecodes), the handler runs:
with stop._cond:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # bytecodes, so the handler runs here, the lock still held
        pass
print("set" if stop.wait(10) else "not set")
"""


def test_a_signal_that_lands_while_the_stop_event_is_locked_still_stops_the_flood():
    # Event.set() called in the handler itself waited forever for the lock its own thread held.
    proc = subprocess.run([sys.executable, "-c", HANDLER_UNDER_LOCK], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "set"
