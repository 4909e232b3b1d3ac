"""Sysctl values inside lab namespaces: validate, write, read back, explain refusals.

A profile's values are checked against the knowledge table first (unknown,
removed, global or out-of-range knobs fail with one line before anything is
touched), then written inside the named namespace and read back, because the
kernel has the last word: a value it refuses or changes is an error naming
the knob, the value and the kernel's answer.

Values travel in the kernel's text form with whitespace collapsed
("40000 40999"), the same form `knowledge.kernel_text` gives a /proc read.

The host's sysctls are never written: every write needs a named namespace,
and a name that turns out to be the host's own namespace is refused.
"""

from __future__ import annotations

import errno
import os
import platform
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tcpstress import knowledge
from tcpstress.lab.netns import SIDES, Lab, LabError, run_in_netns


class ProfileError(ValueError):
    """A sysctl setting that cannot be applied; the message is one line."""


def validate_setting(name: str, value: object) -> tuple[str, str]:
    """(full sysctl name, value in kernel text form) for one knob, or ProfileError."""
    try:
        knob = knowledge.knob(name)
    except knowledge.UnknownName as error:
        raise ProfileError(str(error)) from None
    if knob.removed_in:
        raise ProfileError(
            f"{knob.path} was removed in Linux {knob.removed_in} (it broke clients behind "
            f"NAT); use tcp_tw_reuse, a wider ip_local_port_range or keep-alive instead"
        )
    if not knob.per_namespace:
        raise ProfileError(
            f"{knob.path} is global, a lab namespace cannot set it "
            f"(only the host has it, and the host's sysctls are never changed)"
        )
    try:
        return knob.path, knob.normalise(value)
    except ValueError as error:
        raise ProfileError(str(error)) from None


def validate_profile(settings: Mapping[str, object]) -> dict[str, str]:
    """Full sysctl names -> kernel text values, in the order given.

    Short names ("tcp_tw_reuse"), full names and /proc/sys paths are accepted;
    naming one knob twice (say, short and full) is an error.
    """
    validated: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in settings.items():
        path, text = validate_setting(name, value)
        if path in validated:
            raise ProfileError(f"{path} is set twice (as {spelled[path]!r} and {name!r})")
        validated[path] = text
        spelled[path] = name
    return validated


def lab_knob_paths() -> list[str]:
    """Full names of the knobs a lab namespace has and a profile may set."""
    return [knob.path for knob in knowledge.KNOBS if knob.settable_in_lab]


def _require_lab_namespace(netns_name: str | None) -> str:
    if not netns_name:
        raise LabError(
            "refusing to write sysctls without a lab namespace name: "
            "tcpstress never changes the host's values"
        )
    return netns_name


def _kernel_refusal(path: str, text: str, netns_name: str, error: OSError) -> ProfileError:
    where = f"in namespace {netns_name}"
    if error.errno == errno.ENOENT:
        return ProfileError(
            f"{path} does not exist {where} on this kernel (Linux {platform.release()})"
        )
    if error.errno in (errno.EPERM, errno.EACCES):
        return ProfileError(f"cannot write {path} {where}: {error.strerror} (needs root)")
    hint = ""
    if path == "net.ipv4.ip_local_port_range":
        hint = (
            " (the kernel also wants LOW >= net.ipv4.ip_unprivileged_port_start, 1024 by "
            "default, and LOW <= HIGH)"
        )
    return ProfileError(
        f"the kernel refused {path} = {text!r} {where}: {error.strerror}{hint}"
    )


def _write_and_read_back(path: str, text: str, netns_name: str) -> str:
    # os.write rather than a buffered file: the kernel's EINVAL comes from this
    # write, not from a later flush that would hide which value it was.
    try:
        fd = os.open(knowledge.proc_file(path), os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        with open(knowledge.proc_file(path)) as current:
            got = knowledge.kernel_text(current.read())
    except OSError as error:
        raise _kernel_refusal(path, text, netns_name, error) from None
    if got != text:
        raise ProfileError(
            f"the kernel kept {path} = {got!r} after {text!r} was written in namespace {netns_name}"
        )
    return got


def apply_sysctls(netns_name: str, settings: Mapping[str, object]) -> dict[str, str]:
    """Write `settings` inside namespace `netns_name`; returns the read-back values.

    Everything is validated before the first write. Stops at the first value
    the kernel refuses (ProfileError); values written before it stay, which is
    harmless in a lab namespace that is about to be thrown away.
    """
    netns_name = _require_lab_namespace(netns_name)
    wanted = validate_profile(settings)
    if not wanted:
        return {}

    def write_all() -> dict[str, str]:
        return {path: _write_and_read_back(path, text, netns_name) for path, text in wanted.items()}

    return run_in_netns(netns_name, write_all)


def _resolve_read_name(name: str) -> str:
    try:
        return knowledge.knob(name).path
    except knowledge.UnknownName:
        # Reading any net.* sysctl is harmless and sometimes useful to record
        # (ip_unprivileged_port_start, tcp_mem, ...).
        if re.fullmatch(r"net(\.[A-Za-z0-9_-]+)+", name):
            return name
        raise


def _read_all(paths: list[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for path in paths:
        try:
            with open(knowledge.proc_file(path)) as current:
                values[path] = knowledge.kernel_text(current.read())
        except FileNotFoundError:
            values[path] = None  # absent in this namespace (tcp_max_orphans) or kernel
    return values


def read_sysctls(netns_name: str | None, names: Iterable[str]) -> dict[str, str | None]:
    """Current values inside `netns_name` (None: this process's own namespace,
    for reading global knobs), keyed by full name; None for a missing file."""
    paths = [_resolve_read_name(name) for name in names]
    if not netns_name:
        return _read_all(paths)
    return run_in_netns(netns_name, lambda: _read_all(paths))


def apply_profile(lab: Lab, profile: Any) -> dict[str, dict[str, str | None]]:
    """Write a profile's client and server values in the lab's two namespaces.

    `profile` is anything with `client` and `server` mappings (a Profile).
    Returns what each namespace reads back afterwards for every
    per-namespace knob of the knowledge table (not only the profile's), so
    a run records the effective values, defaults included.
    """
    lab.require_up()
    apply_sysctls(lab.client_ns, getattr(profile, "client", {}) or {})
    apply_sysctls(lab.server_ns, getattr(profile, "server", {}) or {})
    return {side: read_sysctls(lab.namespace(side), lab_knob_paths()) for side in SIDES}
