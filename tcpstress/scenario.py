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
from typing import Any, Callable

PROTOCOLS = ("http", "echo")
MODELS = ("closed", "open")
CLOSE_MODES = ("client", "server", "reset")
SERVER_CLOSE_POLICIES = ("client", "server", "never", "reset")
# Lab faults (tcpstress/lab/faults.py): what happens to the network during a run.
FAULT_KINDS = ("none", "syn_flood", "drop_syn", "drop_fin", "partition")
UNLIMITED = 0  # requests_per_connection meaning "as many as the run allows"

# The only addresses besides loopback that tcpstress sends to (RFC 2544 benchmarking range):
# the one definition every safety check uses.
LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")


class ScenarioError(ValueError):
    """Invalid scenario input; str() is the one-line message for the user."""


# --- value parsers ---------------------------------------------------------------

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*$")


def parse_duration(value: Any) -> float:
    """'10s', '500ms', '2m', '1h', '1.5s' or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10s, 500ms, 2m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        if not m or (m.group(2) and m.group(2) not in _DURATION_UNITS):
            raise ValueError(f"{value!r} is not a duration: use a number with us, ms, s, m or h (e.g. 10s, 500ms, 2m)")
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
            if hi < lo or int(hi) - int(lo) > 65535:
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
    """Traffic may only go to loopback or to the lab's own 198.18.0.0/15."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or (ip.version == 4 and ip in LAB_NETWORK)


def resolve_target(host: str, port: int) -> tuple[int, tuple]:
    """Resolve to (family, sockaddr), refusing anything but loopback and lab addresses."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ScenarioError(f"target.host {host!r}: cannot resolve: {e.strerror}") from None
    for family, _, _, _, sockaddr in infos:
        if is_allowed_destination(sockaddr[0]):
            return family, sockaddr
    raise ScenarioError(
        f"target.host {host!r} resolves to {infos[0][4][0]}: tcpstress sends load only to loopback "
        f"(127.0.0.0/8, ::1) or to its own lab namespaces ({LAB_NETWORK})")


# --- the model --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 0  # 0: the built-in server picks a free port
    protocol: str = "http"
    path: str = "/"
    host_header: str = ""
    method: str = "GET"


@dataclass(frozen=True)
class Server:
    """The built-in target, started by the run (absent: an external target)."""

    builtin: bool = False
    command: str = ""  # a user's server (lab only), e.g. "nginx -c {dir}/nginx.conf"
    response_size: int = 64
    close: str = "client"
    backlog: int = 4096
    workers: int = 1
    delay: float = 0.0


@dataclass(frozen=True)
class Load:
    model: str = "closed"
    connections: int = 10
    rate: float = 0.0  # open model: new operations per second
    ramp: float = 0.0  # open: rate ramps up linearly; closed: connections start one after another
    duration: float = 10.0
    warmup: float = 0.0
    workers: int = 0  # generator processes; 0: one per CPU (at most one per connection)
    max_requests: int = 0  # 0: bounded by duration only


@dataclass(frozen=True)
class Connection:
    keepalive: bool = True
    requests_per_connection: int = UNLIMITED
    close: str = "client"
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

    kind: str = "none"
    at: float = 0.0  # seconds after the measured phase starts
    lasts: float = 0.0  # 0: until the end of the run
    rate: float = 2000.0  # syn_flood: packets per second
    packets: int = 100_000  # syn_flood: at most this many
    spoof: str = "198.19.0.0/16"  # syn_flood: source addresses, routed into a black hole


@dataclass(frozen=True)
class Sampling:
    interval: float = 0.1
    port_filter: bool = True


@dataclass(frozen=True)
class Variant:
    name: str
    description: str = ""
    profile: str = ""
    client: dict = field(default_factory=dict)  # sysctl knob -> value
    server: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # "section.key" -> raw value


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
    lab: bool = False
    variants: tuple[Variant, ...] = ()
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    source: str = "<flags>"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        d["connection"]["source_addresses"] = list(self.connection.source_addresses)
        d["variants"] = [asdict(v) for v in self.variants]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scenario":
        """Rebuild from to_dict() output (already validated: used between processes)."""
        conn = dict(d["connection"])
        conn["source_addresses"] = tuple(conn["source_addresses"])
        return cls(name=d["name"], description=d["description"], target=Target(**d["target"]),
                   server=Server(**d["server"]), load=Load(**d["load"]), connection=Connection(**conn),
                   sampling=Sampling(**d["sampling"]), fault=Fault(**d.get("fault", {})), lab=d["lab"],
                   variants=tuple(Variant(**v) for v in d["variants"]), source=d.get("source", "<dict>"))

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
        "host": ("str", lambda v: bool(v), "a loopback or lab address or name"),
        "port": ("int", _int_range(0, 65535), "0-65535 (0: the built-in server picks one)"),
        "protocol": ("str", lambda v: v in PROTOCOLS, " or ".join(PROTOCOLS)),
        "path": ("str", lambda v: v.startswith("/") and all("!" <= c <= "~" for c in v),
                 "a path starting with /, printable ASCII without spaces (percent-encode the rest: /%C3%A9)"),
        "host_header": ("str", lambda v: all("!" <= c <= "~" for c in v),
                        "printable ASCII without spaces (empty: the target's host:port)"),
        "method": ("str", lambda v: v in ("GET", "HEAD", "POST"), "GET, HEAD or POST"),
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
        "spoof": ("str", lambda v: _is_lab_cidr(v), "a CIDR inside 198.18.0.0/15, e.g. 198.19.0.0/16"),
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
        if key == "variants":
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
            choices = SECTIONS + list(SCHEMA[""]) + ["variants"]
            raise ScenarioError(f"{where}: unknown key {key!r}{_did_you_mean(key, choices)}; "
                                f"allowed: {', '.join(choices)}")

    if not values["load"].get("workers"):
        values["load"]["workers"] = max(1, min(os.cpu_count() or 1, values["load"].get("connections", Load.connections)))
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
        lab=values[""].get("lab", False),
        variants=_build_variants(raw.get("variants", {}), where),
        raw=raw,
        source=where,
    )
    _check_consistency(scenario, where)
    return scenario


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
    if not s.lab:
        host = s.target.host
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None  # a name: checked when it is resolved
        if literal is not None and not is_allowed_destination(host):
            raise ScenarioError(f"{where}: target.host {host!r} is not loopback (127.0.0.0/8, ::1) or a lab "
                                f"address ({LAB_NETWORK}): tcpstress sends load only there")
        for a in s.connection.source_addresses:
            if not is_allowed_destination(a):
                raise ScenarioError(f"{where}: connection.source_addresses: {a} is not a loopback or lab address")


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
