"""The `run` and `compare` flags, one per scenario field, derived from scenario.SCHEMA.

The schema says what a field holds and what is allowed; this table adds only
what a command line needs besides: the flag's name (and wrk's short one),
and a sentence of help. Values are still checked by the scenario validator,
so a flag and the same key in a file give the same message. `--help` shows
each flag's kind and its default, read from the scenario dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tcpstress import scenario as sc

# dotted key -> (flag names, help). A key missing here fails tests/unit/test_flags.py.
FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "name": (("--name",), "the run folder's name"),
    "description": (("--description",), "a line of text for the report"),
    "lab": (("--lab",), "run each variant in fresh network namespaces (compare; root)"),
    "target.host": (("--host",), "the target's address or name (--target sets host and port together)"),
    "target.port": (("--port",), "the target's port"),
    "target.protocol": (("--protocol",), "what to speak (a URL target sets it)"),
    "target.path": (("--path",), "HTTP request path, with a query if any (a URL target sets it)"),
    "target.host_header": (("--host-header",), "HTTP Host header (default: the target's host[:port])"),
    "target.method": (("--method",), "HTTP method"),
    "target.headers": (("-H", "--header"), "request header 'Name: value', repeatable"),
    "target.body": (("--body",), "request body text"),
    "target.body_file": (("--body-file",), "request body from a file (read once)"),
    "target.content_type": (("--content-type",), "Content-Type of the body, e.g. application/json"),
    "target.expect_status": (("--expect-status",), "statuses that count as success, e.g. 2xx,3xx or 200,204"),
    "target.request_order": (("--request-order",), "how a [[request]] list is picked"),
    "tls.insecure": (("-k", "--insecure"), "https: do not verify the server's certificate"),
    "tls.ca_file": (("--ca-file",), "https: PEM bundle to verify the server with (default: the system's)"),
    "tls.version": (("--tls-version",), "https: TLS version"),
    "tls.resume": (("--tls-resume",), "https: resume the previous TLS session on new connections"),
    "tls.server_name": (("--server-name",), "https: SNI and certificate name (default: the target host)"),
    "server.builtin": (("--builtin-server",), "start the built-in target for this run"),
    "server.command": (("--server-command",), "a server to start in the lab, e.g. 'nginx -c {dir}/nginx.conf'"),
    "server.response_size": (("--response-size",), "built-in server: HTTP body bytes"),
    "server.close": (("--server-close",), "built-in server close policy"),
    "server.backlog": (("--backlog",), "built-in server listen backlog"),
    "server.workers": (("--server-workers",), "built-in server processes (SO_REUSEPORT)"),
    "server.delay": (("--server-delay",), "built-in server: wait this long before each response"),
    "load.model": (("--model",), "closed (N connections) or open (a fixed rate)"),
    "load.connections": (("-c", "--connections"), "concurrent connections (open model: the most in flight)"),
    "load.rate": (("-R", "--rate"), "open model: operations per second (without --model: implies open, as wrk2's -R)"),
    "load.ramp": (("--ramp",), "open: linear ramp to the rate; closed: open the connections over this time"),
    "load.duration": (("-d", "--duration"), "measured duration"),
    "load.warmup": (("--warmup",), "unmeasured warm-up before the duration"),
    "load.workers": (("--workers",), "generator processes (0: one per CPU)"),
    "load.max_requests": (("--max-requests",), "stop after sending this many requests (0: no limit)"),
    "connection.keepalive": (("--keepalive",), "reuse connections (--no-keepalive: one request per connection)"),
    "connection.requests_per_connection": (("--requests-per-connection",), "reconnect after N requests"),
    "connection.close": (("--close",), "who closes: client, server or reset (RST, no TIME_WAIT)"),
    "connection.connect_timeout": (("--connect-timeout",), "give up a connect() after this long"),
    "connection.request_timeout": (("--request-timeout",), "give up waiting for an answer after this long"),
    "connection.think_time": (("--think-time",), "closed model: pause between requests on a connection"),
    "connection.source_addresses": (("--source",), "source addresses, e.g. 127.0.0.2-127.0.0.9"),
    "connection.payload_size": (("--payload-size",), "echo: bytes per request"),
    "connection.so_keepalive": (("--so-keepalive",), "TCP keep-alive probes on idle connections"),
    "fault.kind": (("--fault",), "lab: what happens to the network during the run"),
    "fault.at": (("--fault-at",), "lab: when the fault starts, after the measured phase begins"),
    "fault.lasts": (("--fault-lasts",), "lab: how long the fault lasts (0: until the end)"),
    "fault.rate": (("--fault-rate",), "lab syn_flood: packets per second"),
    "fault.packets": (("--fault-packets",), "lab syn_flood: at most this many packets"),
    "fault.spoof": (("--fault-spoof",), "lab syn_flood: spoofed source range"),
    "sampling.interval": (("--sample-interval",), "time between kernel samples"),
    "sampling.port_filter": (("--port-filter",), "count only sockets on the target's port"),
}

_METAVARS = {"int": "INT", "float": "NUMBER", "duration": "DURATION", "requests": "N|unlimited",
             "addresses": "ADDRESSES", "headers": "'NAME: VALUE'", "statuses": "CODES", "file": "FILE",
             "str": "TEXT"}
_DEFAULTS = {"": sc.Scenario(), "target": sc.Target(), "tls": sc.Tls(), "server": sc.Server(), "load": sc.Load(),
             "connection": sc.Connection(), "fault": sc.Fault(), "sampling": sc.Sampling()}
# Closed sets shown as choices in --help (the validator still checks them).
_CHOICES = {"target.protocol": sc.PROTOCOLS, "target.request_order": sc.REQUEST_ORDERS,
            "tls.version": sc.TLS_VERSIONS, "server.close": sc.SERVER_CLOSE_POLICIES, "load.model": sc.MODELS,
            "connection.close": sc.CLOSE_MODES, "fault.kind": sc.FAULT_KINDS}


@dataclass(frozen=True)
class Flag:
    dotted: str
    decls: tuple[str, ...]
    kind: str  # the schema's kind
    help: str

    @property
    def param(self) -> str:
        """click's parameter name: the dotted key with __ for the dot."""
        return self.dotted.replace(".", "__") if "." in self.dotted else f"top__{self.dotted}"

    @property
    def name(self) -> str:
        return self.decls[-1]

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def multiple(self) -> bool:
        return self.kind == "headers"

    @property
    def metavar(self) -> str:
        choices = _CHOICES.get(self.dotted)
        return "[" + "|".join(choices) + "]" if choices else _METAVARS.get(self.kind, "TEXT")

    def help_text(self) -> str:
        section, _, key = self.dotted.rpartition(".")
        default = getattr(_DEFAULTS[section], key)
        return f"{self.help}  [default: {_shown_default(self.kind, default)}]"


def _shown_default(kind: str, value) -> str:
    if kind == "bool":
        return "on" if value else "off"
    if kind == "duration":
        return f"{value:g}s"
    if kind == "requests":
        return "unlimited" if value == sc.UNLIMITED else str(value)
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    if value == "" or value is None:
        return "none"
    return str(value)


def run_flags() -> list[Flag]:
    out = []
    for section, keys in sc.SCHEMA.items():
        for key, (kind, _, _) in keys.items():
            dotted = f"{section}.{key}" if section else key
            decls, help_text = FLAGS[dotted]
            out.append(Flag(dotted, decls, kind, help_text))
    return out


def flag_for(dotted: str) -> str | None:
    entry = FLAGS.get(dotted)
    return entry[0][-1] if entry else None


def param_to_dotted(param: str) -> str:
    return param.removeprefix("top__").replace("__", ".")


assert all(dataclasses.is_dataclass(v) for v in _DEFAULTS.values())
