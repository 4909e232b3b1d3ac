"""Lab network namespaces: a client and a server namespace joined by a veth pair.

One `Lab` is one variant of a run:

    with Lab(run_id="ab12cd", index=0, client_addresses=2) as lab:
        apply_profile(lab, profile)   # tcpstress.lab.sysctl
        server = lab.popen("server", [sys.executable, "-m", "tcpstress", "serve", ...])
        ...

Both namespaces are created fresh (so every knob starts at the kernel's
default, not at the host's value), the veth pair is created inside them (the
host never sees an interface), and everything goes away on exit, exceptions
and KeyboardInterrupt included. `cleanup()` removes what a killed run left.

Traffic stays on 198.18.0.0/15 (RFC 2544 benchmarking addresses): variant
`index` gets 198.18.<index>.0/24, the server .1, the client .2 upwards.

Each namespace this module creates has an owner file in /run/tcpstress/netns
naming the process that made it, so `cleanup()` can tell a killed run's
leftovers from a run still going on in another process.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from tcpstress.sampler import nsenter
from tcpstress.lab.addresses import LAB_NETWORK, variant_subnet

NETNS_DIR = Path("/var/run/netns")  # where `ip netns` and pyroute2 keep named namespaces
OWNER_DIR = Path("/run/tcpstress/netns")
DEFAULT_PREFIX = "tcpstress-"
SIDES = ("client", "server")
CLIENT_IF = "veth-c"
SERVER_IF = "veth-s"
TERM_GRACE_S = 2.0
# How Lab names its namespaces: tcpstress-<run_id>-<index>-c|s.
_LAB_NAME = re.compile(r"tcpstress-[A-Za-z0-9_]{1,32}-\d{1,3}-[cs]")

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21

_ALTERNATIVES = (
    "still possible without namespaces: a loopback run on 127.0.0.1, a run against "
    "a real target, or the docker-compose setup"
)

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab namespace could not be created, entered, used or removed."""


# --------------------------------------------------------------------------
# Namespace primitives


def netns_path(name: str) -> Path:
    """The file that pins the named namespace; refuses names that are not plain."""
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise LabError(f"bad network namespace name {name!r}: use letters, digits, '_', '.', '-'")
    return NETNS_DIR / name


def namespace_exists(name: str) -> bool:
    return netns_path(name).exists()


def list_namespaces(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Named namespaces whose name starts with `prefix`, sorted."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if name.startswith(prefix))


def _own_netns_inode() -> tuple[int, int]:
    info = os.stat("/proc/self/ns/net")
    return info.st_dev, info.st_ino


def _checked_netns_path(name: str) -> str:
    path = netns_path(name)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LabError(f"no network namespace named {name!r} ({path} does not exist)") from None
    if (info.st_dev, info.st_ino) == _own_netns_inode():
        # `ip netns attach NAME 1` can pin the host's own namespace under a name;
        # entering it would make "inside the lab" mean "on the host".
        raise LabError(f"namespace {name!r} is the host's own namespace (the one this process runs in)")
    return str(path)


def run_in_netns(name: str, function: Callable[[], T]) -> T:
    """Call `function` in a short-lived thread that has joined namespace `name`.

    /proc/sys/net and new sockets follow the thread's namespace, so this
    process (and any reused worker thread) stays where it was. Measured:
    ~0.15 ms a call, against ~3 ms for `ip netns exec NAME sysctl`.
    """
    return nsenter.run_in_netns(str(_checked_netns_path(name)), function)


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is `name` (what `ip netns pids` shows)."""
    try:
        target = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            info = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone, a zombie, or another user namespace's process
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return sorted(pids)


def _signal(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop_processes(
    namespaces: Sequence[str],
    children: Sequence[subprocess.Popen] = (),
    grace: float = TERM_GRACE_S,
) -> list[int]:
    """SIGTERM every process in `namespaces` and every child in `children`,
    SIGKILL what is left after `grace` seconds, and reap the children.
    Returns the pids that needed SIGKILL."""
    own = _own_netns_inode()
    for name in namespaces:
        try:
            info = os.stat(netns_path(name))
        except FileNotFoundError:
            continue
        if (info.st_dev, info.st_ino) == own:
            # Everything on the host lives there: never signal it wholesale.
            raise LabError(f"refusing to stop the processes of {name!r}: it is the host's own namespace")

    def alive() -> set[int]:
        pids = {child.pid for child in children if child.poll() is None}
        for name in namespaces:
            pids.update(pids_in_netns(name))
        pids.discard(os.getpid())
        return pids

    pids = alive()
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = alive()
    killed = sorted(pids)
    _signal(killed, signal.SIGKILL)
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel; removing the namespace still unpins it
    return killed


# --------------------------------------------------------------------------
# Owner files: which process made a namespace


def _process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _write_owner(name: str) -> None:
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (OWNER_DIR / name).write_text(f"{pid} {_process_start_time(pid)}\n")


def _forget_owner(name: str) -> None:
    try:
        (OWNER_DIR / name).unlink()
    except FileNotFoundError:
        pass


def owner_alive(name: str) -> bool:
    """Whether the process that created namespace `name` still runs.

    The start time guards against a recycled pid; a namespace without an owner
    file (made by an older version, or by hand) counts as abandoned.
    """
    try:
        pid_text, start = (OWNER_DIR / name).read_text().split()
    except (OSError, ValueError):
        return False
    return _process_start_time(int(pid_text)) == start


def remove_namespace(name: str, grace: float = TERM_GRACE_S) -> None:
    """Stop the processes inside `name`, then remove it."""
    from pyroute2 import netns

    stop_processes([name], grace=grace)
    try:
        netns.remove(name)
    except FileNotFoundError:
        pass
    _forget_owner(name)


def _check_prefix(prefix: str) -> None:
    # Without this a prefix of "" would sweep other tools' namespaces too.
    if not prefix.startswith(DEFAULT_PREFIX):
        raise LabError(f"namespace prefix {prefix!r} must start with {DEFAULT_PREFIX!r}")


def cleanup(prefix: str = DEFAULT_PREFIX, *, include_live_runs: bool = False) -> list[str]:
    """Remove lab namespaces named `prefix`* left by runs that were killed, with
    the processes still inside them. Namespaces of a run whose process is still
    alive are kept unless `include_live_runs`, and so is any namespace not named
    the way a Lab names them (tests and tools share the "tcpstress-" prefix).
    Returns the removed names."""
    _check_prefix(prefix)
    removed = []
    for name in list_namespaces(prefix):
        if not _LAB_NAME.fullmatch(name):
            continue
        if not include_live_runs and owner_alive(name):
            continue
        remove_namespace(name)
        removed.append(name)
    if OWNER_DIR.is_dir():
        for owner_file in OWNER_DIR.glob(prefix + "*"):
            if not namespace_exists(owner_file.name):
                _forget_owner(owner_file.name)
    return removed


# --------------------------------------------------------------------------
# Capability


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


_probe_counter = itertools.count()


def check_lab_capability() -> str | None:
    """None when lab namespaces work here; else one line: what is missing and
    what still works. Creates (and removes) a real probe lab to find out."""
    if not sys.platform.startswith("linux"):
        return f"lab namespaces need Linux; {_ALTERNATIVES}"
    caps = _effective_capabilities()
    needed = (1 << _CAP_SYS_ADMIN) | (1 << _CAP_NET_ADMIN)
    if caps & needed != needed:
        who = "not root" if os.geteuid() != 0 else "root without them"
        return (
            f"lab namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN ({who}); "
            f"run as root, or: {_ALTERNATIVES}"
        )
    if shutil.which("ip") is None:
        return f"the `ip` command (Debian package iproute2) is missing; {_ALTERNATIVES}"
    try:
        with Lab(run_id=f"probe{os.getpid()}x{next(_probe_counter)}", term_grace=0.5):
            pass
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"cannot create lab namespaces here ({first_line}); {_ALTERNATIVES}"
    return None


# --------------------------------------------------------------------------
# The lab


def lab_subnet(index: int) -> ipaddress.IPv4Network:
    if not 0 <= index <= 255:
        raise LabError(f"lab index {index} out of range: must be 0..255")
    return variant_subnet(index)


def _check_lab_cidr(cidr: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError as error:
        raise LabError(f"bad CIDR {cidr!r}: {error}") from None
    if not network.subnet_of(LAB_NETWORK):
        raise LabError(f"CIDR {cidr} is outside the lab range {LAB_NETWORK}")
    return network


class Lab:
    """A client and a server namespace joined by a veth pair, for one variant."""

    def __init__(
        self,
        run_id: str,
        index: int = 0,
        client_addresses: int = 1,
        *,
        prefix: str = DEFAULT_PREFIX,
        term_grace: float = TERM_GRACE_S,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", run_id or ""):
            raise LabError(f"bad run_id {run_id!r}: 1 to 32 letters, digits or '_'")
        _check_prefix(prefix)
        if not 1 <= client_addresses <= 253:
            raise LabError(f"client_addresses = {client_addresses}: must be 1..253")
        subnet = lab_subnet(index)
        self.run_id = run_id
        self.index = index
        self.subnet = subnet
        self.client_ns = f"{prefix}{run_id}-{index}-c"
        self.server_ns = f"{prefix}{run_id}-{index}-s"
        self.client_if = CLIENT_IF
        self.server_if = SERVER_IF
        self.server_addr = str(subnet.network_address + 1)
        self.client_addrs = [str(subnet.network_address + 2 + i) for i in range(client_addresses)]
        self.term_grace = term_grace
        self._created: list[str] = []
        self._children: list[subprocess.Popen] = []
        self._state = "new"  # -> "up" -> "closed"

    def __repr__(self) -> str:
        return f"Lab({self.client_ns!r}, {self.server_ns!r}, {self._state})"

    def namespace(self, side: str) -> str:
        if side == "client":
            return self.client_ns
        if side == "server":
            return self.server_ns
        raise LabError(f"side {side!r}: must be 'client' or 'server'")

    # -- lifetime --------------------------------------------------------

    def __enter__(self) -> Lab:
        if self._state != "new":
            raise LabError(f"{self!r} cannot be entered twice")
        self._state = "up"
        try:
            self._build()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        errors = self._teardown()
        if errors:
            summary = "; ".join(errors)
            if exc is None:
                raise LabError(f"cleaning up {self.client_ns}/{self.server_ns}: {summary}")
            exc.add_note(f"also while cleaning up the lab: {summary}")
        return False

    def close(self) -> None:
        self.__exit__(None, None, None)

    def _build(self) -> None:
        from pyroute2 import netns

        for name in (self.client_ns, self.server_ns):
            if namespace_exists(name):
                raise LabError(
                    f"namespace {name} already exists (left by a killed run? "
                    f"`tcpstress lab cleanup` removes it)"
                )
            _write_owner(name)  # first, so a concurrent cleanup() never sees it ownerless
            self._created.append(name)
            netns.create(name)
        # The pair is born inside the client namespace with its peer in the
        # server namespace: no host interface, so no name clash between runs.
        def client_side(ipr: Any) -> None:
            ipr.link(
                "add",
                ifname=self.client_if,
                kind="veth",
                peer={"ifname": self.server_if, "net_ns_fd": self.server_ns},
            )
            _bring_up(ipr, self.client_if, self.client_addrs, self.subnet.prefixlen)

        with_iproute(self.client_ns, client_side)
        with_iproute(self.server_ns, lambda ipr: _bring_up(ipr, self.server_if, [self.server_addr],
                                                           self.subnet.prefixlen))

    def _teardown(self) -> list[str]:
        if self._state == "closed":
            return []
        self._state = "closed"
        errors = []
        try:
            stop_processes(self._created, self._children, grace=self.term_grace)
        except Exception as error:
            errors.append(f"stopping processes: {error}")
        for name in reversed(self._created):
            try:
                remove_namespace(name, grace=self.term_grace)
            except Exception as error:
                errors.append(f"removing {name}: {error}")
        return errors

    def _require_up(self) -> None:
        if self._state != "up":
            raise LabError(f"{self!r} is not running: use it inside `with lab:`")

    # -- using it ----------------------------------------------------------

    def popen(self, side: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start `argv` inside the side's namespace; stopped when the lab closes.

        `ip netns exec` execs `argv` in place (the Popen's pid is the program's),
        and gives it a /sys that shows the namespace's interfaces. setns in a
        preexec_fn would save an exec but is unsafe in a threaded parent.
        """
        self._require_up()
        if isinstance(argv, (str, bytes)) or popen_kwargs.get("shell"):
            raise LabError("Lab.popen takes an argv list, not a shell command")
        namespace = self.namespace(side)
        command = ["ip", "netns", "exec", namespace, *(os.fspath(arg) for arg in argv)]
        child = subprocess.Popen(command, **popen_kwargs)
        self._children.append(child)
        return child

    def require_up(self) -> None:
        """LabError unless inside `with lab:` (sysctl.apply_profile checks it before writing)."""
        self._require_up()

    def add_blackhole_route(self, side: str, cidr: str, kind: str = "blackhole") -> None:
        """Route a lab CIDR (e.g. 198.19.0.0/16) to nowhere inside one namespace.

        "blackhole" drops silently, "unreachable" and "prohibit" fail sends with
        an error. The SYN-flood lab uses it so replies to spoofed sources vanish.
        """
        self._require_up()
        if kind not in ("blackhole", "unreachable", "prohibit"):
            raise LabError(f"route kind {kind!r}: must be blackhole, unreachable or prohibit")
        network = _check_lab_cidr(cidr)
        with_iproute(self.namespace(side), lambda ipr: ipr.route("add", dst=str(network), type=kind))


def with_iproute(name: str, function: Callable[[Any], T]) -> T:
    """function(IPRoute()) with a netlink socket opened inside namespace `name`.

    Not IPRoute(netns=...): that forks a helper process, and a fork taken
    while other threads run (the sampler, the worker pipe readers) can
    deadlock in the child, as it did once for 12 minutes.
    """
    from pyroute2 import IPRoute

    def work() -> T:
        with IPRoute() as ipr:
            return function(ipr)

    return run_in_netns(name, work)


def _bring_up(ipr: Any, ifname: str, addresses: Sequence[str], prefixlen: int) -> None:
    (index,) = ipr.link_lookup(ifname=ifname)
    for address in addresses:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")
    (loopback,) = ipr.link_lookup(ifname="lo")
    ipr.link("set", index=loopback, state="up")
