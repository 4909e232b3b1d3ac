"""Open things inside another network namespace without moving the caller.

A netlink socket answers for the namespace it was created in, and an open
/proc/thread-self/net/* file keeps showing the namespace it was opened in
(re-reading the kept fd from offset 0 regenerates it from that namespace, even
after the opening thread is gone: checked on Linux 6.18). So the sampler
creates its sockets and fds once, in a short-lived thread that joins the
target namespace with setns(2), and then uses them from any thread.

setns(CLONE_NEWNET) changes only the calling thread, so the rest of the
process never leaves its namespace; the helper thread moves back before it
ends anyway, so nothing it leaves behind runs elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIRS = (Path("/var/run/netns"), Path("/run/netns"))
_NETNS_NAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,255}$")


def netns_path(name: str) -> str:
    """The bind-mounted namespace file of `ip netns add NAME`."""
    if not _NETNS_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"netns {name!r} is not a valid namespace name")
    for directory in NETNS_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    raise ValueError(f"netns {name!r} not found: no /var/run/netns/{name} (see `ip netns list`)")


def pid_netns_path(pid: int) -> str:
    """The namespace file of a process: /proc/PID/ns/net."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid {pid!r} is not a process id: allowed a positive integer")
    path = f"/proc/{pid}/ns/net"
    if not os.path.exists(path):
        raise ValueError(f"pid {pid}: no such process")
    return path


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(ns_path: str | None, fn: Callable[[], T]) -> T:
    """Call fn() inside the namespace at ns_path and return its result.

    ns_path None means the caller's own namespace: fn runs right here. Else fn
    runs in a fresh thread that joined the namespace; its exceptions are
    raised here.
    """
    if ns_path is None:
        return fn()
    target = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    outcome: dict[str, object] = {}

    def in_namespace() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                outcome["value"] = fn()
            finally:
                _setns(own)
        except BaseException as error:  # handed to the caller below
            outcome["error"] = error
        finally:
            os.close(own)

    try:
        helper = threading.Thread(target=in_namespace, name="tcpstress-setns", daemon=True)
        helper.start()
        helper.join()
    finally:
        os.close(target)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
