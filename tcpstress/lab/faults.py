"""Lab faults: what happens to the lab's network while a run's load goes on.

The runner builds one fault per lab run (`make_fault(scenario.fault, lab,
port)`), calls `prepare()` before the load starts, `start()` at t0 +
fault.at from a timer thread, and `stop()` after fault.lasts or at the end of
the run; stop() returns a JSON-able record that lands in result.json (what
was done, and nftables' count of dropped packets or the flood's sent count).
A packet-filter fault at 0 s is loaded by prepare() already: loaded by the
timer at t0 it would race the first connects, which start at t0 too.

Kinds and the TCP state each one produces (measured on Linux 6.18 over the
lab's veth pair; the scenario files cite the numbers):

- syn_flood: spoofed SYNs from the client namespace (tcpstress.lab.flood),
  their SYN-ACKs routed into a black hole: half-open SYN_RECV entries fill
  the server's SYN queue.
- drop_syn: the SERVER namespace drops incoming SYNs (SYN set, ACK clear) to
  the target port: connect() sits in SYN_SENT, retransmitting its SYN, until
  tcp_syn_retries runs out (ETIMEDOUT) or the connect timeout ends it.
- drop_fin: the CLIENT namespace drops incoming segments from the target port
  that carry FIN. When the client closes first, the server's ACK of the
  client's FIN rides on the server's own FIN (the kernel delays the ACK of
  a FIN hoping to piggyback on the application's close), so the whole
  segment is lost: the client sits in FIN_WAIT1 and retransmits its FIN; the
  server, in LAST_ACK, answers that retransmission with a bare ACK, which
  gets through, so the client moves on to FIN_WAIT2 and stays there until
  tcp_fin_timeout, while the server retransmits its FIN from LAST_ACK until
  tcp_orphan_retries gives up. When the server closes first, its response
  and its FIN leave in one segment, which is dropped: the server waits in
  FIN_WAIT1, the client gets no response and, at its request timeout,
  closes; the client's FIN reaches a server whose own FIN is still
  unacknowledged, and the server is in CLOSING: a simultaneous close made
  deterministic. The server's bare ACK of that FIN passes, and the client
  waits in FIN_WAIT2.
- partition: the SERVER namespace drops every packet from and to the client
  addresses: a peer that vanished without a FIN or RST. Idle connections
  notice only through TCP keep-alive (ETIMEDOUT after tcp_keepalive_time +
  intvl x probes), new ones hang in SYN_SENT.

Packet filtering uses nftables (`nft`), always inside a lab namespace, in a
table of its own (inet tcpstress_fault) that stop() deletes; the table would
vanish with the namespace anyway. A namespace that is not a lab's (the
host's own, or any other) is refused before anything runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Protocol

from tcpstress import scenario
from tcpstress.lab.flood import (
    INIT_NET_INODE,
    MAX_SECONDS,
    FloodRefused,
    flood_argv,
    parse_flood_output,
    prepare_syn_sink,
)
from tcpstress.lab.addresses import LAB_NETWORK
from tcpstress.lab.netns import DEFAULT_PREFIX, NETNS_DIR, LabError

# The scenario's fault kinds, less "none".
FAULT_KINDS = tuple(kind for kind in scenario.FAULT_KINDS if kind != "none")
TABLE = "tcpstress_fault"
TABLE_FAMILY = "inet"
NFT_TIMEOUT_S = 15.0
FLOOD_STOP_S = 10.0  # how long stop() waits for the flooder's count after SIGTERM
_LAB_NS_NAME = re.compile(r"tcpstress-[A-Za-z0-9_]{1,32}-\d{1,3}-[cs]")


class FaultError(ValueError):
    """A fault that must not or cannot run; str() is one line for the user."""


class Fault(Protocol):
    kind: str

    def prepare(self) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> dict: ...


# --------------------------------------------------------------------------
# Refusing anything but a lab namespace


def _ns_id(path: str | os.PathLike) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def check_lab_namespace(name: str, netns_dir: Path = NETNS_DIR) -> None:
    """FaultError unless `name` is a namespace a Lab made (and not the host's).

    The name must be a Lab's (tcpstress-<run>-<index>-c|s) and pinned in
    /var/run/netns, and the namespace must be neither this process's own nor
    PID 1's nor the kernel's initial one: `ip netns attach` can pin the host's
    namespace under any name, and a rule there would filter the host.
    """
    if not isinstance(name, str) or not _LAB_NS_NAME.fullmatch(name):
        raise FaultError(f"namespace {name!r} is not a lab namespace ({DEFAULT_PREFIX}<run>-<index>-c|s): "
                         f"faults change packet filtering only inside the lab")
    path = Path(netns_dir) / name
    try:
        there = _ns_id(path)
    except OSError:
        raise FaultError(f"namespace {name!r} does not exist ({path}): faults run only inside a live lab") from None
    for who, ident in (("this process", _safe_id("/proc/self/ns/net")), ("PID 1", _safe_id("/proc/1/ns/net"))):
        if ident == there:
            raise FaultError(f"namespace {name!r} is the host's own network namespace ({who}'s): refusing "
                             f"to change packet filtering there")
    if there[1] == INIT_NET_INODE:
        raise FaultError(f"namespace {name!r} is the kernel's initial (host) network namespace: refusing")


def _safe_id(path: str) -> tuple[int, int] | None:
    try:
        return _ns_id(path)
    except OSError:
        return None


def _lab_namespace(lab: Any, side: str) -> str:
    try:
        name = lab.namespace(side)
    except (AttributeError, LabError) as e:
        raise FaultError(f"not a lab: {e}") from None
    check_lab_namespace(name)
    return name


# --------------------------------------------------------------------------
# nftables rulesets (text, so tests can read them)


def _table(chains: list[str]) -> str:
    body = "\n".join(chains)
    return f"table {TABLE_FAMILY} {TABLE} {{\n{body}\n}}\n"


def _chain(name: str, hook: str, rules: list[str]) -> str:
    lines = [f"\tchain {name} {{", f"\t\ttype filter hook {hook} priority filter; policy accept;"]
    lines += [f"\t\t{rule}" for rule in rules]
    lines.append("\t}")
    return "\n".join(lines)


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise FaultError(f"port {port!r}: must be an integer from 1 to 65535")
    return port


def _check_addresses(addresses: list[str]) -> list[str]:
    if not addresses:
        raise FaultError("partition: no client addresses to cut off")
    out = []
    for a in addresses:
        try:
            ip = ipaddress.IPv4Address(a)
        except ValueError:
            raise FaultError(f"partition: {a!r} is not an IPv4 address") from None
        if ip not in LAB_NETWORK:
            raise FaultError(f"partition: {ip} is outside the lab range {LAB_NETWORK}")
        out.append(str(ip))
    return out


def drop_syn_ruleset(port: int) -> str:
    """Server namespace: drop connection requests (SYN without ACK) to `port`.

    SYN-ACKs and everything else pass, so connections made before the fault
    keep working; only new ones hang.
    """
    rule = f"tcp dport {_check_port(port)} tcp flags & (syn | ack) == syn counter drop"
    return _table([_chain("input", "input", [rule])])


def drop_fin_ruleset(port: int) -> str:
    """Client namespace: drop segments from the server's `port` that carry FIN.

    Whatever rides with the FIN (an ACK, the last data) is lost with it; the
    sender retransmits and loses it again.
    """
    rule = f"tcp sport {_check_port(port)} tcp flags & fin == fin counter drop"
    return _table([_chain("input", "input", [rule])])


def partition_ruleset(client_addresses: list[str]) -> str:
    """Server namespace: nothing from or to the client addresses, either way.

    Dropping the way in is what makes the peer vanish (keep-alive probes and
    SYNs get no answer); dropping the way out keeps the server's own
    retransmissions from reaching the client and refreshing its idea that the
    peer is alive.
    """
    addrs = ", ".join(_check_addresses(client_addresses))
    return _table([
        _chain("input", "input", [f"ip saddr {{ {addrs} }} counter drop"]),
        _chain("output", "output", [f"ip daddr {{ {addrs} }} counter drop"]),
    ])


def delete_ruleset() -> str:
    return f"delete table {TABLE_FAMILY} {TABLE}\n"


def counted_packets(listing: str) -> int:
    """Packets the table's counters saw, from `nft -j list table` output."""
    try:
        data = json.loads(listing)
    except json.JSONDecodeError:
        raise FaultError(f"nft printed no JSON listing: {listing[:80]!r}") from None
    total = 0
    for item in data.get("nftables", []):
        for expr in (item.get("rule") or {}).get("expr", []):
            if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                total += int(expr["counter"].get("packets", 0))
    return total


# --------------------------------------------------------------------------
# Running nft inside a lab namespace


def _nft(namespace: str, args: list[str], stdin: str | None = None) -> str:
    check_lab_namespace(namespace)
    if shutil.which("nft") is None:
        raise FaultError("the `nft` command is missing (Debian package nftables): lab faults need it")
    try:
        proc = subprocess.run(["ip", "netns", "exec", namespace, "nft", *args], input=stdin, check=False,
                              capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FaultError(f"nft {' '.join(args)} in {namespace} did not finish in {NFT_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise FaultError(f"nft {' '.join(args)} in {namespace} failed: {detail}")
    return proc.stdout


class NftFault:
    """A packet filter in one lab namespace, on from start() to stop()."""

    def __init__(self, kind: str, lab: Any, side: str, ruleset: str, note: str, from_the_start: bool = False) -> None:
        self.kind = kind
        self.side = side
        self.namespace = _lab_namespace(lab, side)
        self.ruleset = ruleset
        self.note = note
        self.from_the_start = from_the_start
        self.active = False

    def prepare(self) -> None:
        # Check mode (-c) parses the ruleset against this kernel without
        # loading it, so a bad rule fails the run before the load starts.
        _nft(self.namespace, ["-c", "-f", "-"], self.ruleset)
        if self.from_the_start:
            # A fault at 0 s loaded by the timer at t0 races the first
            # connects, which start at t0 too (measured: 52 requests of a
            # 20-connection run got through a drop_syn loaded that way).
            self.start()

    def start(self) -> None:
        if self.active:  # already in place since prepare()
            return
        _nft(self.namespace, ["-f", "-"], self.ruleset)
        self.active = True

    def stop(self) -> dict:
        record: dict = {"kind": self.kind, "namespace": self.side, "effect": self.note}
        if not self.active:
            return record
        try:
            record["dropped_packets"] = counted_packets(
                _nft(self.namespace, ["-j", "list", "table", TABLE_FAMILY, TABLE]))
        finally:
            _nft(self.namespace, ["-f", "-"], delete_ruleset())
            self.active = False
        return record


class SynFlood:
    """The raw-socket flooder in the client namespace, SYN-ACKs into a black hole."""

    kind = "syn_flood"

    def __init__(self, spec: Any, lab: Any, port: int) -> None:
        self.lab = lab
        self.spoof = spec.spoof
        _lab_namespace(lab, "client")
        _lab_namespace(lab, "server")
        # Without `lasts` the flood runs until the run ends (stop() sends
        # SIGTERM); its own bound only matters should that SIGTERM never come.
        max_seconds = spec.lasts if spec.lasts else min(MAX_SECONDS, spec.packets / spec.rate + 1.0)
        try:
            self.argv = flood_argv(lab.server_addr, _check_port(port), spec.spoof, spec.rate, spec.packets,
                                   min(MAX_SECONDS, max_seconds))
        except ValueError as e:  # FloodRefused included
            raise FaultError(f"syn_flood: {e}") from None
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        """The routes that make SYN-ACKs to the spoofed range vanish (see prepare_syn_sink)."""
        _lab_namespace(self.lab, "server")
        _lab_namespace(self.lab, "client")
        try:
            prepare_syn_sink(self.lab, self.spoof)
        except FloodRefused as e:
            raise FaultError(f"syn_flood: {e}") from None

    def start(self) -> None:
        self.proc = self.lab.popen("client", self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True)

    def stop(self) -> dict:
        record: dict = {"kind": self.kind, "namespace": "client", "spoof": self.spoof}
        if self.proc is None:
            return record
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the flooder still prints its count
        try:
            out, err = self.proc.communicate(timeout=FLOOD_STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            result = parse_flood_output(out)
        except ValueError as e:
            record["error"] = f"{e}; stderr: {(err or '').strip()[-200:]}"
            return record
        record.update(sent=result.sent, seconds=result.seconds, send_errors=result.errors)
        if result.first_error:
            record["first_error"] = result.first_error
        return record


def make_fault(spec: Any, lab: Any, port: int) -> Fault:
    """The fault `spec` (a tcpstress.scenario.Fault) describes, for this lab and target port."""
    kind = getattr(spec, "kind", None)
    early = not getattr(spec, "at", 0)
    if kind == "syn_flood":
        return SynFlood(spec, lab, port)
    if kind == "drop_syn":
        return NftFault(kind, lab, "server", drop_syn_ruleset(port),
                        "server drops incoming SYNs to the port: clients wait in SYN_SENT", early)
    if kind == "drop_fin":
        return NftFault(kind, lab, "client", drop_fin_ruleset(port),
                        "client drops incoming FIN segments: FIN_WAIT1 then FIN_WAIT2 on the client and LAST_ACK "
                        "on the server when the client closes first; FIN_WAIT1 then CLOSING on the server when "
                        "the server does", early)
    if kind == "partition":
        return NftFault(kind, lab, "server", partition_ruleset(list(lab.client_addrs)),
                        "server drops everything from and to the client: a vanished peer", early)
    raise FaultError(f"fault.kind = {kind!r} is not a fault this lab can make; allowed: {', '.join(FAULT_KINDS)}")
