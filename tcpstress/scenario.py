"""Scenario model: TOML loading, validation and overrides.

A scenario file is read with tomllib into a plain dict; CLI flags are applied
to that dict as dotted keys ("load.connections" = "50"); then one validator
turns the dict into frozen dataclasses. Files and flags therefore share every
check and every error message, and an error names where the bad value came
from (the file and key, or the flag).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import socket
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, get_args

from tcpstress.lab.addresses import DEFAULT_SPOOF_CIDR, LAB_NETWORK

# Closed sets: the Literal types the dataclasses' fields carry (mypy checks every
# comparison and assignment against them), and the same values as tuples for the
# validator's "allowed:" texts.
ProtocolName = Literal["http", "https", "echo"]
LoadModel = Literal["closed", "open"]
CloseMode = Literal["client", "server", "reset"]
ServerClose = Literal["client", "server", "never", "reset"]
FaultKind = Literal["none", "syn_flood", "drop_syn", "drop_fin", "partition"]
RequestOrder = Literal["weighted", "sequence"]
TlsVersion = Literal["auto", "1.2", "1.3"]

PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)
HTTP_PROTOCOLS: tuple[ProtocolName, ...] = ("http", "https")
# The methods users name; any other RFC 9110 token in capitals is accepted too (PURGE, REPORT ...).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REQUEST_ORDERS: tuple[RequestOrder, ...] = get_args(RequestOrder)
TLS_VERSIONS: tuple[TlsVersion, ...] = get_args(TlsVersion)
DEFAULT_EXPECT_STATUS = ("2xx", "3xx")
MODELS: tuple[LoadModel, ...] = get_args(LoadModel)
CLOSE_MODES: tuple[CloseMode, ...] = get_args(CloseMode)
SERVER_CLOSE_POLICIES: tuple[ServerClose, ...] = get_args(ServerClose)
# Lab faults (tcpstress/lab/faults.py): what happens to the network during a run.
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
UNLIMITED = 0  # requests_per_connection meaning "as many as the run allows"



class ScenarioError(ValueError):
    """Invalid scenario input; str() is the one-line message for the user."""


# --- value parsers ---------------------------------------------------------------

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*$")
_PART = r"(\d+(?:\.\d+)?)(ms|us|µs|min|h|m|s)"
_PART_RE = re.compile(_PART)
_COMPOUND_RE = re.compile(rf"^\s*(?:{_PART}){{2,}}\s*$")


def parse_duration(value: Any) -> float:
    """'10s', '500ms', '2m', '1h', '1.5s' or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10s, 500ms, 2m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        compound = _COMPOUND_RE.match(value.lower()) if not m else None
        if compound:
            # 1m30s, 1h2m3s, 1s500ms: the parts add up, as in Go and k6.
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _PART_RE.findall(value.lower()))
        elif not m or (m.group(2) and m.group(2) not in _DURATION_UNITS):
            raise ValueError(f"{value!r} is not a duration: use a number with us, ms, s, m or h "
                             f"(e.g. 10s, 500ms, 2m, 1m30s)")
        else:
            seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration like 10s, 500ms, 2m, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a non-negative duration")
    return seconds


def parse_address_list(value: Any) -> tuple[str, ...]:
    """A list of IPs, or ranges 'A-B' (last octet or full address), comma-separated."""
    items: list[Any]
    if isinstance(value, str):
        items = [v for v in (p.strip() for p in value.split(",")) if v]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected a list of IP addresses or a range like 127.0.0.2-127.0.0.9")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an IP address")
        if "-" in item:
            lo_s, hi_s = (s.strip() for s in item.split("-", 1))
            try:
                lo = ipaddress.ip_address(lo_s)
                hi = ipaddress.ip_address(hi_s) if "." in hi_s or ":" in hi_s else ipaddress.ip_address(
                    lo_s.rsplit(".", 1)[0] + "." + hi_s)
            except ValueError:
                raise ValueError(f"{item!r} is not an address range like 127.0.0.2-127.0.0.9") from None
            if lo.version != hi.version:
                raise ValueError(f"{item!r}: a range runs between two IPv4 or two IPv6 addresses")
            if hi < lo or int(hi) - int(lo) > 65535:  # type: ignore[operator]  # same version, checked above
                raise ValueError(f"{item!r}: the range must go up and hold at most 65536 addresses")
            out.extend(str(ipaddress.ip_address(int(lo) + i)) for i in range(int(hi) - int(lo) + 1))
        else:
            try:
                out.append(str(ipaddress.ip_address(item.strip())))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
    if len(set(out)) != len(out):
        raise ValueError("source addresses repeat")
    return tuple(out)


def is_allowed_destination(address: str) -> bool:
    """Loopback or the lab's own 198.18.0.0/15: where the lab-only tools (the SYN
    flooder, faults) may send. The load generator itself targets any address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or (ip.version == 4 and ip in LAB_NETWORK)


@dataclass(frozen=True)
class ResolvedTarget:
    """Where the load goes, resolved once at start: the first address getaddrinfo
    gives (the system's RFC 6724 order), and every address the name had."""

    host: str
    port: int
    family: int
    sockaddr: tuple[Any, ...]
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return str(self.sockaddr[0])

    @property
    def family_name(self) -> str:
        return "IPv6" if self.family == socket.AF_INET6 else "IPv4"

    @property
    def scope(self) -> str:
        return address_scope(self.address)


def address_scope(address: str) -> str:
    """loopback, lab (198.18.0.0/15) or external: what the kernel sampler can see of the server."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "external"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.version == 4 and ip in LAB_NETWORK:
        return "lab"
    return "external"


def resolve_target(host: str, port: int, sources: tuple[str, ...] = ()) -> ResolvedTarget:
    """Resolve the target once, as wrk and hey do; with source addresses, an address
    of their family (an IPv4 source cannot reach an IPv6 target: errno -9 per connect)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ScenarioError(f"target.host {host!r}: cannot resolve: {e.strerror}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if sources:
        want = socket.AF_INET6 if ":" in sources[0] else socket.AF_INET
        infos = [i for i in infos if i[0] == want] or infos
        if infos[0][0] != want:
            raise ScenarioError(f"target.host {host!r} resolves to {', '.join(addresses)}: no address of the "
                                f"family of connection.source_addresses ({sources[0]})")
    family, _, _, _, sockaddr = infos[0]
    return ResolvedTarget(host=host, port=port, family=int(family), sockaddr=tuple(sockaddr), addresses=addresses)


# --- the model --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 0  # 0: the built-in server picks a free port
    protocol: ProtocolName = "http"
    path: str = "/"
    host_header: str = ""
    method: str = "GET"
    headers: tuple[str, ...] = ()  # "Name: value", sent with every request
    body: str = ""
    body_file: str = ""  # absolute once built; read by each worker once
    content_type: str = ""
    # Statuses that count as success: codes ("204") or classes ("2xx").
    expect_status: tuple[str, ...] = DEFAULT_EXPECT_STATUS
    request_order: RequestOrder = "weighted"  # [[request]] list: picked by weight, or in sequence per connection

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS


@dataclass(frozen=True)
class Tls:
    """https targets: how the client verifies and what it offers."""

    insecure: bool = False  # do not verify the certificate (curl -k)
    ca_file: str = ""  # PEM bundle to verify with (default: the system's)
    version: TlsVersion = "auto"
    resume: bool = True  # offer the previous session's ticket on a new connection
    server_name: str = ""  # SNI and the name checked in the certificate (default: target.host)


@dataclass(frozen=True)
class RequestSpec:
    """One entry of [[request]]: a request the load sends, counted under its name."""

    name: str
    method: str = "GET"
    path: str = "/"
    headers: tuple[str, ...] = ()
    body: str = ""
    body_file: str = ""
    content_type: str = ""
    weight: int = 1


@dataclass(frozen=True)
class Server:
    """The built-in target, started by the run (absent: an external target)."""

    builtin: bool = False
    command: str = ""  # a user's server (lab only), e.g. "nginx -c {dir}/nginx.conf"
    response_size: int = 64
    close: ServerClose = "client"
    backlog: int = 4096
    workers: int = 1
    delay: float = 0.0


@dataclass(frozen=True)
class Stage:
    """One [[load.stage]]: hold `rate` for `lasts` seconds, reached by a linear ramp of `ramp` s."""

    rate: float
    lasts: float
    ramp: float = 0.0


MAX_STAGES = 1000
STAGES_ALLOWED = ("[[load.stage]] tables with rate (> 0 per second), lasts (whole seconds, >= 1s) and an optional "
                  "ramp (<= lasts), or RATE:LASTS[:RAMP],... e.g. 1000:30s,2000:30s:5s")


@dataclass(frozen=True)
class Load:
    model: LoadModel = "closed"
    connections: int = 10
    rate: float = 0.0  # open model: new operations per second
    ramp: float = 0.0  # open: rate ramps up linearly; closed: connections start one after another
    duration: float = 10.0
    warmup: float = 0.0
    workers: int = 0  # generator processes; 0: one per CPU (at most one per connection)
    max_requests: int = 0  # 0: bounded by duration only
    stage: tuple[Stage, ...] = ()  # [[load.stage]]: the open model's rate in steps (tcpstress/load/schedule.py)

    def __post_init__(self) -> None:
        # A run's result.json and the plans sent to workers carry stages as dicts.
        object.__setattr__(self, "stage", tuple(st if isinstance(st, Stage) else Stage(**st) for st in self.stage))


@dataclass(frozen=True)
class Connection:
    keepalive: bool = True
    requests_per_connection: int = UNLIMITED
    close: CloseMode = "client"
    connect_timeout: float = 5.0
    request_timeout: float = 10.0
    think_time: float = 0.0  # pause between one request's end and the next one's start, per connection
    source_addresses: tuple[str, ...] = ()
    payload_size: int = 64  # echo: bytes per request (and per echoed reply)
    so_keepalive: bool = False  # TCP keep-alive probes (tcp_keepalive_time/intvl/probes) on idle connections

    @property
    def effective_requests(self) -> int:
        """Requests per connection after keep-alive is taken into account (0 = unlimited)."""
        return self.requests_per_connection if self.keepalive else 1


@dataclass(frozen=True)
class Fault:
    """Something done to the lab's network while the load runs (lab only).

    syn_flood: spoofed SYNs at the server (SYN_RECV); drop_syn: the server
    namespace silently drops SYNs to the target port (SYN_SENT); drop_fin: the
    client namespace drops incoming segments that carry a FIN (FIN_WAIT1 /
    FIN_WAIT2 on the client, LAST_ACK on the server); partition: the server
    namespace drops everything from the client (a peer that vanished).
    """

    kind: FaultKind = "none"
    at: float = 0.0  # seconds after the measured phase starts
    lasts: float = 0.0  # 0: until the end of the run
    rate: float = 2000.0  # syn_flood: packets per second
    packets: int = 100_000  # syn_flood: at most this many
    spoof: str = DEFAULT_SPOOF_CIDR  # syn_flood: source addresses, routed into a black hole


@dataclass(frozen=True)
class Sampling:
    interval: float = 0.1
    port_filter: bool = True


@dataclass(frozen=True)
class Variant:
    name: str
    description: str = ""
    profile: str = ""
    client: dict[str, Any] = field(default_factory=dict)  # sysctl knob -> value
    server: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # "section.key" -> raw value


@dataclass(frozen=True)
class Scenario:
    name: str = "adhoc"
    description: str = ""
    target: Target = Target()
    server: Server = Server()
    load: Load = Load()
    connection: Connection = Connection()
    sampling: Sampling = Sampling()
    fault: Fault = Fault()
    tls: Tls = Tls()
    lab: bool = False
    requests: tuple[RequestSpec, ...] = ()  # [[request]]: empty means the one request [target] describes
    variants: tuple[Variant, ...] = ()
    thresholds: tuple[str, ...] = ()  # [thresholds] checks, validated by tcpstress.thresholds.parse
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source: str = "<flags>"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        d["connection"]["source_addresses"] = list(self.connection.source_addresses)
        d["target"]["headers"] = list(self.target.headers)
        d["target"]["expect_status"] = list(self.target.expect_status)
        d["requests"] = [dict(asdict(r), headers=list(r.headers)) for r in self.requests]
        d["variants"] = [asdict(v) for v in self.variants]
        d["thresholds"] = list(self.thresholds)
        return d

    def request_specs(self) -> tuple[RequestSpec, ...]:
        """The requests the load sends: [[request]], or the one [target] describes."""
        if self.requests:
            return self.requests
        t = self.target
        return (RequestSpec(name=f"{t.method} {t.path}", method=t.method, path=t.path, headers=t.headers,
                            body=t.body, body_file=t.body_file, content_type=t.content_type),)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scenario":
        """Rebuild from to_dict() output (already validated: used between processes)."""
        conn = dict(d["connection"])
        conn["source_addresses"] = tuple(conn["source_addresses"])
        target = dict(d["target"])
        # Run folders written before headers and status checks existed lack these keys.
        target["headers"] = tuple(target.get("headers", ()))
        target["expect_status"] = tuple(target.get("expect_status", DEFAULT_EXPECT_STATUS))
        requests = tuple(RequestSpec(**dict(r, headers=tuple(r.get("headers", ())))) for r in d.get("requests", ()))
        return cls(name=d["name"], description=d["description"], target=Target(**target),
                   server=Server(**d["server"]), load=Load(**d["load"]), connection=Connection(**conn),
                   sampling=Sampling(**d["sampling"]), fault=Fault(**d.get("fault", {})),
                   tls=Tls(**d.get("tls", {})), lab=d["lab"], requests=requests,
                   variants=tuple(Variant(**v) for v in d["variants"]),
                   thresholds=tuple(d.get("thresholds", ())), source=d.get("source", "<dict>"))

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ScenarioError(f"{self.source}: no variant {name!r}; variants are: "
                            f"{', '.join(v.name for v in self.variants) or '(none)'}")

    def with_variant(self, variant: Variant) -> "Scenario":
        """The same scenario with a variant's workload overrides applied."""
        if not variant.overrides:
            return self
        raw = apply_overrides(self.raw, variant.overrides, source=f"{self.source} [variants.{variant.name}]")
        return replace(build(raw, self.source), variants=self.variants)


# --- schema -------------------------------------------------------------------------
# One table drives validation, defaults, overrides and the CLI flag help:
# section -> key -> (kind, check, allowed-text).


def _int_range(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _float_range(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


SCHEMA: dict[str, dict[str, tuple[str, Callable[[Any], bool] | None, str]]] = {
    "": {
        "name": ("str", lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v)), "1-64 letters, digits, _ . -"),
        "description": ("str", None, "text"),
        "lab": ("bool", None, "true or false"),
    },
    "target": {
        "host": ("str", lambda v: bool(v) and v.isprintable() and " " not in v, "an IP address or host name"),
        "port": ("int", _int_range(0, 65535), "0-65535 (0: the built-in server picks one)"),
        "protocol": ("str", lambda v: v in PROTOCOLS, ", ".join(PROTOCOLS)),
        "path": ("str", lambda v: is_request_path(v), "a path starting with /, printable ASCII, no spaces"),
        "host_header": ("str", lambda v: v == "" or is_header_value(v) and " " not in v and "\t" not in v,
                        "a host name, printable ASCII without spaces or tabs"),
        "method": ("str", lambda v: is_method(v), f"{', '.join(HTTP_METHODS)} or another method in capitals"),
        "headers": ("headers", None, 'a list of "Name: value" strings, or a table of name = "value"'),
        "body": ("str", None, "text"),
        "body_file": ("file", None, "a readable file"),
        "content_type": ("str", lambda v: v == "" or is_header_value(v), "a header value"),
        "expect_status": ("statuses", lambda v: bool(v), 'status codes or classes, e.g. ["2xx", "3xx"] or [200, 204]'),
        "request_order": ("str", lambda v: v in REQUEST_ORDERS, " or ".join(REQUEST_ORDERS)),
    },
    "tls": {
        "insecure": ("bool", None, "true or false"),
        "ca_file": ("file", None, "a readable PEM file"),
        "version": ("str", lambda v: v in TLS_VERSIONS, ", ".join(TLS_VERSIONS)),
        "resume": ("bool", None, "true or false"),
        "server_name": ("str", lambda v: v == "" or is_header_value(v) and " " not in v, "a host name"),
    },
    "server": {
        "builtin": ("bool", None, "true or false"),
        "command": ("str", None, "a command line"),
        "response_size": ("int", _int_range(0, 64 << 20), "0 to 64 MiB"),
        "close": ("str", lambda v: v in SERVER_CLOSE_POLICIES, ", ".join(SERVER_CLOSE_POLICIES)),
        "backlog": ("int", _int_range(1, 1 << 20), "1 to 1048576"),
        "workers": ("int", _int_range(1, 64), "1 to 64"),
        "delay": ("duration", _float_range(0, 60), "0 to 60s"),
    },
    "load": {
        "model": ("str", lambda v: v in MODELS, " or ".join(MODELS)),
        "connections": ("int", _int_range(1, 1_000_000), "1 to 1000000"),
        "rate": ("float", _float_range(0, 10_000_000), "0 to 10000000 per second"),
        "ramp": ("duration", _float_range(0, 86400), "0s to 24h"),
        "duration": ("duration", _float_range(0.1, 86400), "0.1s to 24h"),
        "warmup": ("duration", _float_range(0, 3600), "0s to 1h"),
        "workers": ("int", _int_range(0, 256), "0 (one per CPU) to 256"),
        "max_requests": ("int", _int_range(0, 10**12), "0 (no limit) or more"),
        "stage": ("stages", None, STAGES_ALLOWED),
    },
    "connection": {
        "keepalive": ("bool", None, "true or false"),
        "requests_per_connection": ("requests", _int_range(0, 10**9), "a positive number or \"unlimited\""),
        "close": ("str", lambda v: v in CLOSE_MODES, ", ".join(CLOSE_MODES)),
        "connect_timeout": ("duration", _float_range(0.001, 600), "1ms to 10m"),
        "request_timeout": ("duration", _float_range(0.001, 3600), "1ms to 1h"),
        "think_time": ("duration", _float_range(0, 3600), "0s to 1h"),
        "source_addresses": ("addresses", lambda v: len(v) <= 65536, "IP addresses or ranges like 127.0.0.2-127.0.0.9"),
        "payload_size": ("int", _int_range(1, 16 << 20), "1 to 16 MiB"),
        "so_keepalive": ("bool", None, "true or false"),
    },
    "fault": {
        "kind": ("str", lambda v: v in FAULT_KINDS, ", ".join(FAULT_KINDS)),
        "at": ("duration", _float_range(0, 86400), "0s to 24h"),
        "lasts": ("duration", _float_range(0, 86400), "0s (until the end) to 24h"),
        "rate": ("float", _float_range(1, 100_000), "1 to 100000 packets per second"),
        "packets": ("int", _int_range(1, 10_000_000), "1 to 10000000"),
        "spoof": ("str", lambda v: _is_lab_cidr(v), f"a CIDR inside {LAB_NETWORK}, e.g. {DEFAULT_SPOOF_CIDR}"),
    },
    "sampling": {
        "interval": ("duration", _float_range(0.01, 60), "10ms to 60s"),
        "port_filter": ("bool", None, "true or false"),
    },
}
SECTIONS = [s for s in SCHEMA if s]
# A variant's sysctls are client_sysctls / server_sysctls: plain "server" is the
# [server] section (the built-in target), which a variant may also override.
VARIANT_KEYS = {"description", "profile", "client_sysctls", "server_sysctls", *SECTIONS}


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def is_method(text: str) -> bool:
    return text in HTTP_METHODS or bool(re.fullmatch(r"[A-Z][A-Z0-9_-]{0,31}", text))


def is_request_path(text: str) -> bool:
    """What can follow the method on a request line: printable ASCII, no spaces (RFC 9112 3.2)."""
    return (text.startswith("/") and text.isascii() and text.isprintable() and " " not in text)


def is_header_value(text: str) -> bool:
    """Visible ASCII, spaces and tabs inside (RFC 9110 5.5); no CR or LF, which would end the header."""
    return text.isascii() and all(c == "\t" or " " <= c <= "~" for c in text)


def parse_header(text: Any) -> str:
    """'Name: value' -> the same, checked: the name a token, the value one line."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a header: use \"Name: value\"")
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"{_shown(text)!r} is not a header: use \"Name: value\" (the name a token, no spaces)")
    value = value.strip(" \t")
    if not is_header_value(value):
        raise ValueError(f"header {name}: the value must be one line of printable ASCII")
    if name.lower() in ("content-length", "transfer-encoding", "connection"):
        raise ValueError(f"header {name}: tcpstress sets it itself (body, keepalive and close settings)")
    return f"{name}: {value}"


def parse_headers(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(parse_header(f"{k}: {v}" if isinstance(v, str) else v) for k, v in value.items())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError('expected a list of "Name: value" strings')
    return tuple(parse_header(v) for v in value)


def parse_stages(value: Any) -> tuple[Stage, ...]:
    """[[load.stage]] tables, or the --stages text RATE:LASTS[:RAMP],... -> Stages.

    A stage lasts whole seconds so that each one owns whole per-second intervals:
    its figures then come from its own intervals and histograms, nothing shared.
    """
    if isinstance(value, str):
        entries: list[Any] = []
        for part in value.split(","):
            fields = part.strip().split(":")
            if len(fields) not in (2, 3) or not all(fields):
                raise ValueError(f"{part.strip()!r} is not RATE:LASTS[:RAMP]")
            entries.append(dict(zip(("rate", "lasts", "ramp"), fields)))
        from_text = True
    elif isinstance(value, (list, tuple)):
        entries, from_text = list(value), False
    else:
        raise ValueError(f"expected a list of [[load.stage]] tables, got {type(value).__name__}")
    if not entries or len(entries) > MAX_STAGES:
        raise ValueError(f"{len(entries)} stages; give 1 to {MAX_STAGES}")
    out = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"stage #{n} is not a table")
        unknown = [k for k in entry if k not in ("rate", "lasts", "ramp")]
        if unknown:
            raise ValueError(f"stage #{n}: unknown key {_shown(str(unknown[0]))!r}")
        if "rate" not in entry or "lasts" not in entry:
            raise ValueError(f"stage #{n} needs rate and lasts")
        rate = _coerce("float", entry["rate"], from_text)
        if not 0 < rate <= 10_000_000:
            raise ValueError(f"stage #{n}: rate {rate:g} is outside (0, 10000000]")
        lasts = parse_duration(entry["lasts"])
        if lasts < 1 or lasts > 86400 or abs(lasts - round(lasts)) > 1e-9:
            raise ValueError(f"stage #{n}: lasts {lasts:g}s is not a whole number of seconds from 1s to 24h")
        ramp = parse_duration(entry.get("ramp", 0))
        if ramp > lasts:
            raise ValueError(f"stage #{n}: ramp {ramp:g}s is longer than lasts {lasts:g}s")
        out.append(Stage(rate=rate, lasts=float(round(lasts)), ramp=ramp))
    return tuple(out)


def _derive_from_stages(load: dict[str, Any], where: str) -> None:
    """With stages, the open model is implied, the duration is the stages' sum, and
    load.rate is the peak (what the summary and the fd check read)."""
    stages = load["stage"]
    total = sum(st.lasts for st in stages)
    if load.get("model", "open") != "open":
        raise ScenarioError(f"{where}: load.stage needs model = \"open\" (stages set a rate); "
                            f"remove load.model or set it to \"open\"")
    for key in ("rate", "ramp"):
        if load.get(key):
            raise ScenarioError(f"{where}: load.{key} and load.stage exclude each other: "
                                f"each stage sets its own {key}")
    if "duration" in load and abs(load["duration"] - total) > 1e-9:
        raise ScenarioError(f"{where}: load.duration ({load['duration']:g}s) differs from the stages' sum "
                            f"({total:g}s); remove load.duration")
    load.update(model="open", rate=max(st.rate for st in stages), duration=total)


def parse_statuses(value: Any) -> tuple[str, ...]:
    """[200, "2xx"], "200,204" or "2xx" -> ("200", "2xx"): codes 100-599 and classes 1xx-5xx."""
    items = [p.strip() for p in value.split(",")] if isinstance(value, str) else value
    if isinstance(items, (int,)) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ValueError('expected status codes or classes, e.g. ["2xx", 204]')
    out = []
    for item in items:
        text = str(item).lower() if isinstance(item, (int, str)) and not isinstance(item, bool) else ""
        if not (re.fullmatch(r"[1-5]xx", text) or (text.isdigit() and 100 <= int(text) <= 599 and len(text) == 3)):
            raise ValueError(f"{item!r} is not a status code (100-599) or class (1xx-5xx)")
        out.append(text)
    return tuple(dict.fromkeys(out))


def status_accepted(expect: tuple[str, ...]) -> bytes:
    """A 600-byte table: entry c is 1 when status c counts as a success (one index on the hot path)."""
    table = bytearray(600)
    for item in expect:
        if item.endswith("xx"):
            base = int(item[0]) * 100
            table[base:base + 100] = b"\x01" * 100
        else:
            table[int(item)] = 1
    return bytes(table)


def _is_lab_cidr(text: str) -> bool:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return net.version == 4 and net.subnet_of(LAB_NETWORK)


def _shown(key: str) -> str:
    """A key from the user as it can go into a one-line message (quoted when it is not printable)."""
    return key if key.isprintable() else repr(key)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(kind: str, value: Any, from_text: bool) -> Any:
    """Turn a TOML value (or a CLI string when from_text) into the field's type."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return value
    if kind == "bool":
        if from_text and isinstance(value, str):
            low = value.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind in ("int", "requests"):
        if kind == "requests" and isinstance(value, str) and value.lower() in ("unlimited", "inf"):
            return UNLIMITED
        if from_text and isinstance(value, str):
            try:
                value = int(value.replace("_", ""))
            except ValueError:
                raise ValueError(f"{value!r} is not a whole number") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if kind == "requests" and value == 0:
            raise ValueError("use \"unlimited\" rather than 0")
        return value
    if kind == "float":
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind == "duration":
        return parse_duration(value)
    if kind == "addresses":
        return parse_address_list(value)
    if kind == "headers":
        return parse_headers(value)
    if kind == "statuses":
        return parse_statuses(value)
    if kind == "stages":
        return parse_stages(value)
    if kind == "file":
        if not isinstance(value, str):
            raise ValueError(f"expected a file path, got {type(value).__name__}")
        return value
    raise AssertionError(kind)


def _check_field(section: str, key: str, value: Any, where: str, from_text: bool) -> Any:
    kind, check, allowed = SCHEMA[section][key]
    dotted = f"{section}.{key}" if section else key
    try:
        value = _coerce(kind, value, from_text)
    except ValueError as e:
        raise ScenarioError(f"{where}: {dotted}: {e}; allowed: {allowed}") from None
    if check is not None and not check(value):
        raise ScenarioError(f"{where}: {dotted} = {value!r} is not allowed; allowed: {allowed}")
    return value


# --- loading ------------------------------------------------------------------------


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a folder, not a scenario file") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str = "flags") -> dict[str, Any]:
    """Set dotted keys ("load.connections") on a copy of a raw scenario dict.

    Values keep their raw form (strings from the CLI are converted by the
    validator), so a flag is checked exactly like the same key in a file.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ScenarioError(f"{source}: unknown setting {dotted!r}")
        if section:
            sec = out.setdefault(section, {})
            if not isinstance(sec, dict):
                raise ScenarioError(f"{source}: [{section}] must be a table")
            sec[key] = value
        else:
            out[key] = value
    out.setdefault("_text_keys", set())
    out["_text_keys"] = set(out["_text_keys"]) | set(overrides)
    return out


def build(raw: dict[str, Any], where: str = "<flags>") -> Scenario:
    """Validate a raw dict and build the Scenario; raises ScenarioError (one line)."""
    text_keys: set[str] = set(raw.get("_text_keys", ()))
    values: dict[str, dict[str, Any]] = {s: {} for s in SCHEMA}
    for key, value in raw.items():
        if key == "_text_keys":
            continue
        if key in ("variants", "request", "thresholds"):
            continue
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ScenarioError(f"{where}: [{key}] must be a table of settings")
            for sub, v in value.items():
                if sub not in SCHEMA[key]:
                    raise ScenarioError(f"{where}: unknown key {key}.{_shown(sub)}{_did_you_mean(sub, list(SCHEMA[key]))}; "
                                        f"allowed in [{key}]: {', '.join(SCHEMA[key])}")
                values[key][sub] = _check_field(key, sub, v, where, f"{key}.{sub}" in text_keys)
        elif key in SCHEMA[""]:
            values[""][key] = _check_field("", key, value, where, key in text_keys)
        else:
            choices = SECTIONS + list(SCHEMA[""]) + ["request", "variants", "thresholds"]
            raise ScenarioError(f"{where}: unknown key {key!r}{_did_you_mean(key, choices)}; "
                                f"allowed: {', '.join(choices)}")

    if values["load"].get("stage"):
        _derive_from_stages(values["load"], where)
    if not values["load"].get("workers"):
        values["load"]["workers"] = max(1, min(os.cpu_count() or 1, values["load"].get("connections", Load.connections)))
    for key in ("body_file",):
        if key in values["target"]:
            values["target"][key] = _readable_file(values["target"][key], where, "target.body_file",
                                                   f"target.{key}" in text_keys)
    if "ca_file" in values["tls"]:
        values["tls"]["ca_file"] = _readable_file(values["tls"]["ca_file"], where, "tls.ca_file",
                                                  "tls.ca_file" in text_keys)
    server_given = "server" in raw
    server_vals = dict(values["server"])
    if server_given and "builtin" not in server_vals:
        server_vals["builtin"] = not server_vals.get("command")
    scenario = Scenario(
        name=values[""].get("name", _name_from_stem(where)),
        description=values[""].get("description", ""),
        target=Target(**values["target"]),
        server=Server(**server_vals),
        load=Load(**values["load"]),
        connection=Connection(**values["connection"]),
        sampling=Sampling(**values["sampling"]),
        fault=Fault(**values["fault"]),
        tls=Tls(**values["tls"]),
        lab=values[""].get("lab", False),
        requests=_build_requests(raw.get("request", []), where, values["target"]),
        variants=_build_variants(raw.get("variants", {}), where),
        thresholds=_build_thresholds(raw.get("thresholds", {}), where),
        raw=raw,
        source=where,
    )
    _check_consistency(scenario, where)
    return scenario


def _readable_file(value: str, where: str, dotted: str, from_flag: bool) -> str:
    """An absolute path to a readable file: relative to the scenario file's folder
    when the path came from the file, to the current folder when it came from a flag."""
    if not value:
        return ""
    base = Path(where).parent if (where.endswith(".toml") and not from_flag) else Path.cwd()
    path = (base / value).resolve()
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ScenarioError(f"{where}: {dotted} {value!r}: cannot read: {e.strerror}; allowed: a readable file") from None
    if path.is_dir():
        raise ScenarioError(f"{where}: {dotted} {value!r} is a folder; allowed: a readable file")
    return str(path)


# [[request]] keys -> the [target] key whose kind and check they share.
REQUEST_KEYS: dict[str, str | None] = {"name": None, "method": "method", "path": "path", "headers": "headers", "body": "body",
                "body_file": "body_file", "content_type": "content_type", "weight": None}


def _build_requests(raw: Any, where: str, target: dict[str, Any]) -> tuple[RequestSpec, ...]:
    """[[request]] entries; each inherits what it does not set from [target] (headers add up)."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ScenarioError(f"{where}: request must be a list of [[request]] tables")
    if len(raw) > 1000:
        raise ScenarioError(f"{where}: {len(raw)} [[request]] entries; allowed: at most 1000")
    out: list[RequestSpec] = []
    for n, entry in enumerate(raw, 1):
        at = f"{where} [[request]] #{n}"
        fields: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in REQUEST_KEYS:
                raise ScenarioError(f"{at}: unknown key {_shown(key)!r}{_did_you_mean(key, list(REQUEST_KEYS))}; "
                                    f"allowed: {', '.join(REQUEST_KEYS)}")
            if key == "name":
                if not isinstance(value, str) or not value.isprintable() or not 1 <= len(value) <= 64:
                    raise ScenarioError(f"{at}: name = {value!r} is not allowed; allowed: 1-64 printable characters")
                fields[key] = value
            elif key == "weight":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                    raise ScenarioError(f"{at}: weight = {value!r} is not allowed; allowed: a whole number 1 to 1000")
                fields[key] = value
            else:
                fields[key] = _check_field("target", str(REQUEST_KEYS[key]), value, at, False)
        if "body_file" in fields:
            fields["body_file"] = _readable_file(fields["body_file"], where, f"[[request]] #{n} body_file", False)
        merged: dict[str, Any] = {k: target[k] for k in ("method", "path", "body", "body_file", "content_type") if k in target}
        merged.update({k: v for k, v in fields.items() if k != "headers"})
        headers = tuple(target.get("headers", ())) + tuple(fields.get("headers", ()))
        spec = RequestSpec(name="", headers=headers, **{k: v for k, v in merged.items() if k != "name"})
        out.append(replace(spec, name=fields.get("name") or f"{spec.method} {spec.path}"))
    names = [r.name for r in out]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise ScenarioError(f"{where}: [[request]] names repeat: {', '.join(dupes)}; give each a distinct name")
    return tuple(out)


def _build_variants(raw: Any, where: str) -> tuple[Variant, ...]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: [variants] must be a table of [variants.NAME] tables")
    out = []
    for name, spec in raw.items():
        at = f"{where} [variants.{_shown(name)}]"
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ScenarioError(f"{at}: variant names use 1-40 letters, digits, _ . -")
        if not isinstance(spec, dict):
            raise ScenarioError(f"{at}: must be a table")
        overrides: dict[str, Any] = {}
        for key, value in spec.items():
            if key not in VARIANT_KEYS:
                raise ScenarioError(f"{at}: unknown key {key!r}{_did_you_mean(key, sorted(VARIANT_KEYS))}; "
                                    f"allowed: {', '.join(sorted(VARIANT_KEYS))}")
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ScenarioError(f"{at}: {key} must be a table, e.g. {key} = {{ ... }}")
                for sub, v in value.items():
                    if sub not in SCHEMA[key]:
                        raise ScenarioError(f"{at}: unknown key {key}.{_shown(sub)}{_did_you_mean(sub, list(SCHEMA[key]))}")
                    _check_field(key, sub, v, at, False)
                    overrides[f"{key}.{sub}"] = v
            elif key in ("client_sysctls", "server_sysctls") and not isinstance(value, dict):
                raise ScenarioError(f"{at}: {key} must be a table of sysctl knobs, e.g. {key} = {{ tcp_tw_reuse = 1 }}")
            elif key in ("description", "profile") and not isinstance(value, str):
                raise ScenarioError(f"{at}: {key} must be a string")
        out.append(Variant(name=name, description=spec.get("description", ""), profile=spec.get("profile", ""),
                           client=dict(spec.get("client_sysctls", {})), server=dict(spec.get("server_sysctls", {})),
                           overrides=overrides))
    return tuple(out)


def _build_thresholds(raw: Any, where: str) -> tuple[str, ...]:
    """[thresholds] checks = ["corrected.p99 < 20ms", ...]: each parsed now, so a bad one stops the run before it starts."""
    from tcpstress.thresholds import ThresholdError, parse

    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: [thresholds] must be a table: checks = [\"corrected.p99 < 20ms\", ...]")
    for key in raw:
        if key != "checks":
            raise ScenarioError(f"{where}: unknown key thresholds.{_shown(key)}{_did_you_mean(key, ['checks'])}; "
                                f"allowed in [thresholds]: checks")
    checks = raw.get("checks", [])
    if not isinstance(checks, list):
        raise ScenarioError(f"{where}: thresholds.checks must be a list of strings like \"corrected.p99 < 20ms\"")
    out = []
    for i, expr in enumerate(checks):
        try:
            out.append(parse(expr, source=f"{where}: thresholds.checks[{i}]").expr)
        except ThresholdError as e:
            raise ScenarioError(str(e)) from None
    return tuple(out)


def _check_consistency(s: Scenario, where: str) -> None:
    if s.load.model == "open" and s.load.rate <= 0:
        raise ScenarioError(f"{where}: load.rate must be > 0 with model = \"open\" (operations per second)")
    if s.load.model == "open" and s.connection.think_time:
        raise ScenarioError(f"{where}: connection.think_time applies to model = \"closed\"; the open model's "
                            f"schedule already sets when each request starts")
    if s.load.model == "closed" and s.load.rate > 0:
        raise ScenarioError(f"{where}: load.rate applies to model = \"open\"; remove it or set load.model = \"open\"")
    if s.load.ramp > s.load.duration:
        raise ScenarioError(f"{where}: load.ramp ({s.load.ramp:g}s) is longer than load.duration ({s.load.duration:g}s)")
    if s.load.workers > s.load.connections:
        raise ScenarioError(f"{where}: load.workers ({s.load.workers}) exceeds load.connections ({s.load.connections})")
    if not s.server.builtin and not s.server.command and s.target.port == 0:
        raise ScenarioError(f"{where}: target.port is missing: give the target's port, or add [server] builtin = true")
    if s.server.builtin and s.server.command:
        raise ScenarioError(f"{where}: server.command and server.builtin = true exclude each other")
    if s.fault.kind != "none" and not s.lab:
        raise ScenarioError(f"{where}: fault.kind = {s.fault.kind!r} changes the network: it runs only in the "
                            f"lab; set lab = true")
    if s.server.command and not s.lab:
        raise ScenarioError(f"{where}: server.command runs a server inside the lab; set lab = true")
    if not s.connection.keepalive and s.connection.requests_per_connection not in (UNLIMITED, 1):
        raise ScenarioError(f"{where}: connection.requests_per_connection = {s.connection.requests_per_connection} "
                            f"needs keepalive = true")
    if s.connection.close == "server" and s.target.protocol == "echo" and not s.server.builtin:
        raise ScenarioError(f"{where}: connection.close = \"server\" with protocol echo needs the built-in server")
    if s.target.body and s.target.body_file:
        raise ScenarioError(f"{where}: target.body and target.body_file exclude each other")
    for r in s.requests:
        if r.body and r.body_file:
            raise ScenarioError(f"{where}: [[request]] {r.name}: body and body_file exclude each other")
    if not s.target.is_http and (s.requests or s.target.headers or s.target.body or s.target.body_file):
        raise ScenarioError(f"{where}: headers, bodies and [[request]] need target.protocol = \"http\" or \"https\"")
    families = {":" in a for a in s.connection.source_addresses}
    if len(families) > 1:
        raise ScenarioError(f"{where}: connection.source_addresses mixes IPv4 and IPv6; use one family")


def _name_from_stem(where: str) -> str:
    """A scenario file's stem as its name, made a valid one (the rule of SCHEMA's name): the name
    goes into folder names and figure titles, so `x$\\n$.toml` must not carry its `$` and newline there."""
    if not where.endswith(".toml"):
        return "adhoc"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(where).stem)[:64].strip("_") or "scenario"


def load_scenario(path: str | Path | None, overrides: dict[str, Any] | None = None,
                  flag_source: str = "flags") -> Scenario:
    """Read a scenario file (or none) and apply CLI overrides; the one entry point."""
    raw = load_file(path) if path else {}
    where = str(path) if path else "<command line>"
    if overrides:
        for dotted in overrides:
            section, _, key = dotted.rpartition(".")
            if section not in SCHEMA or key not in SCHEMA[section]:
                raise ScenarioError(f"{flag_source}: unknown setting {dotted!r}")
        raw = apply_overrides(raw, overrides, source=flag_source)
    return build(raw, where)


def as_raw(s: Scenario) -> dict[str, Any]:
    """A scenario as the TOML table that would build it: what `validate` feeds back to `build`."""
    d = s.to_dict()
    raw: dict[str, Any] = {k: d[k] for k in SCHEMA[""]}
    for section in SECTIONS:
        raw[section] = {k: v for k, v in d[section].items() if k in SCHEMA[section]}
    if s.load.stage:
        # rate and duration follow from the stages; given again they would be refused.
        for key in ("rate", "duration", "ramp"):
            raw["load"].pop(key, None)
        raw["load"]["stage"] = [dict(st) for st in raw["load"]["stage"]]
    else:
        raw["load"].pop("stage", None)
    if raw["connection"]["requests_per_connection"] == UNLIMITED:
        raw["connection"]["requests_per_connection"] = "unlimited"
    server = raw["server"]
    if not server["builtin"] and not server["command"]:
        del raw["server"]  # no [server]: an external target, as in a file without the table
    if s.requests:
        raw["request"] = [{k: v for k, v in r.items() if k in REQUEST_KEYS} for r in d["requests"]]
    if s.thresholds:
        raw["thresholds"] = {"checks": list(s.thresholds)}
    if s.variants:
        variants: dict[str, Any] = {}
        for v in s.variants:
            spec: dict[str, Any] = {"description": v.description, "client_sysctls": dict(v.client),
                                    "server_sysctls": dict(v.server)}
            if v.profile:
                spec["profile"] = v.profile
            for dotted, value in v.overrides.items():
                section, _, key = dotted.partition(".")
                spec.setdefault(section, {})[key] = value
            variants[v.name] = spec
        raw["variants"] = variants
    return raw


def validate(s: Scenario) -> Scenario:
    """Check a Scenario built in Python (dataclasses, not a file) exactly as a file is
    checked, and resolve what `build` resolves (load.workers = 0: one per CPU)."""
    return build(as_raw(s), s.source if s.source != "<flags>" else "<Scenario>")


def split_target(text: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:8080', 'localhost:80' -> (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise ScenarioError(f"--target {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ScenarioError(f"--target {text!r}: port must be 1-65535")
    return host, port


DEFAULT_PORTS = {"http": 80, "https": 443}


def target_overrides(text: str) -> dict[str, str]:
    """A target as users write it -> scenario keys.

    'http://host:8080/path?q', 'https://[::1]/', 'host:8080', '[::1]:8080'. A URL
    also sets the protocol and, when it has one, the path (with its query).
    """
    text = text.strip()
    if "://" not in text:
        host, port = split_target(text)
        return {"target.host": host, "target.port": str(port)}
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        url_port = url.port
    except ValueError as e:
        raise ScenarioError(f"--target {text!r}: not a URL: {e}") from None
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ScenarioError(f"--target {text!r}: scheme {scheme!r}; allowed: http://, https://")
    if not url.hostname:
        raise ScenarioError(f"--target {text!r}: no host; e.g. https://staging.example:8443/health")
    if url.username or url.password:
        raise ScenarioError(f"--target {text!r}: credentials in the URL are not sent; "
                            f"use -H 'Authorization: ...'")
    out = {"target.protocol": scheme, "target.host": url.hostname,
           "target.port": str(url_port or DEFAULT_PORTS[scheme])}
    path = (url.path or "") + (f"?{url.query}" if url.query else "")
    if path:
        out["target.path"] = path
    return out


def format_url(protocol: str, host: str, port: int | str, path: str = "") -> str:
    """A target as a URL, IPv6 literals in brackets: http://[::1]:8080/."""
    shown = f"[{host}]" if ":" in host else host
    return f"{protocol}://{shown}:{port}{path if protocol in HTTP_PROTOCOLS else ''}"
