"""`tcpstress run --wait-for-target`: start the run only once the target listens.

docker compose holds the loader back until the target's healthcheck passes
(`depends_on: condition: service_healthy`); podman-compose on podman older
than 4.6 skips that condition (it logs "Ignored target condition check")
and starts both containers at once. A run whose first second meets a closed
port measures the target's start-up, not the load, so the loader checks for
itself, and one compose file serves both engines.

Each probe is one TCP connection, closed with a reset: a normal close would
leave the loader's port in TIME_WAIT for 60 s, one port fewer for the run
that measures exactly that. The target counts the probe as a connection.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass

PROBE_INTERVAL_S = 0.2
PROBE_TIMEOUT_S = 1.0
MAX_WAIT_S = 3600.0


@dataclass(frozen=True)
class TargetWait:
    listening: bool
    waited_s: float
    probes: int
    last_error: str = ""  # why the last probe failed, when none succeeded


def parse_wait(text: str) -> float:
    """The flag's value ('60s', '60', '2m') -> seconds; ValueError names what is allowed."""
    from tcpstress.scenario import parse_duration

    seconds = parse_duration(text)
    if seconds > MAX_WAIT_S:
        raise ValueError(f"{text!r} is more than {MAX_WAIT_S:.0f} s")
    return seconds


def wait_for_target(host: str, port: int, seconds: float, clock=time.monotonic,
                    sleep=time.sleep) -> TargetWait:
    """Probe host:port until a connection is accepted or `seconds` have passed (at least one probe)."""
    started = clock()
    deadline = started + seconds
    probes, last_error = 0, ""
    while True:
        probes += 1
        error = _probe(host, port, min(PROBE_TIMEOUT_S, max(0.05, deadline - clock())))
        if error is None:
            return TargetWait(True, clock() - started, probes)
        last_error = error
        if clock() + PROBE_INTERVAL_S > deadline:
            return TargetWait(False, clock() - started, probes, last_error)
        sleep(PROBE_INTERVAL_S)


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None if a connection was accepted, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except socket.timeout:
            return f"no answer within {timeout:.1f} s"
        except OSError as e:
            if not e.errno:
                return str(e)
            name = errno.errorcode.get(e.errno, "")
            return f"{name} ({os.strerror(e.errno)})" if name else str(e)
        # SO_LINGER 0: close() sends RST, so this port never enters TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return None
