"""The limits a run met: the client's ephemeral ports and the server's accept queue.

Read back from the kernel (per place in a merged run, never another
shard's) and from the scenario; the rules cite them, the figures draw them.
"""

from __future__ import annotations

from tcpstress.report.places import Place, knob_value
from tcpstress.report.rundata import RunData


def port_range(value: str | None) -> tuple[int, int] | None:
    """'40000\\t40999' as read back from /proc/sys -> (40000, 40999)."""
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    low, high = int(parts[0]), int(parts[1])
    return (low, high) if high >= low else None


def source_address_count(run: RunData) -> int:
    return max(len(run.scenario.connection.source_addresses), 1)


def port_limit(run: RunData, place: Place | None = None) -> tuple[int, str] | None:
    """Ephemeral ports the client (or one client place) can hold towards one target, and how it was computed."""
    knob = "net.ipv4.ip_local_port_range"
    rng = port_range(run.sysctl(knob, "client") if place is None else knob_value(run, knob, place))
    if rng is None:
        return None
    size = rng[1] - rng[0] + 1
    sources = source_address_count(run)
    how = f"{rng[0]}–{rng[1]}, {size:,} ports"
    if sources > 1:
        how += f" × {sources} source addresses"
    return size * sources, how


def listen_backlog(run: RunData) -> int | None:
    """The backlog passed to listen(): known only for the built-in server."""
    server = run.scenario.server
    return server.backlog if server.builtin and server.backlog > 0 else None


def accept_queue_limit(run: RunData, place: Place | None = None) -> tuple[int | None, int | None, int | None]:
    """(listen backlog, somaxconn, effective accept queue = min of the known ones), of a server place if given."""
    backlog = listen_backlog(run)
    soma = run.sysctl("net.core.somaxconn", "server") if place is None else knob_value(run, "net.core.somaxconn", place)
    somaxconn = int(soma) if soma and soma.strip().isdigit() else None
    known = [v for v in (backlog, somaxconn) if v is not None]
    return backlog, somaxconn, (min(known) if known else None)
