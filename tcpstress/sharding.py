"""Which share of a scenario this process runs, when it starts, and where it writes.

`tcpstress run --shard` takes the share three ways, all without a coordinator
(the placement and the lifecycle belong to Kubernetes or docker compose):

  I/N      given on the command line;
  env      JOB_COMPLETION_INDEX, which a Kubernetes Indexed Job sets, of
           TCPSTRESS_SHARDS;
  compose  the replica number docker compose put in this container's name
           (`<project>-loader-3` is replica 3, shard 2), of TCPSTRESS_SHARDS.

Compose gives a scaled container no index variable (docker/compose#9153);
the one place the number shows is the container's name, which Docker's
embedded DNS server (127.0.0.11, inside every container on a user-defined
network) returns for a reverse lookup of the container's own address. The
name is asked of that server directly: the resolver library would look in
/etc/hosts first, where Docker maps the address to the container ID.

podman has no server at 127.0.0.11 (its DNS server, aardvark-dns, is the
network's gateway, and version 1.4 answers reverse lookups with names glibc
rejects); podman writes the name into the container's /etc/hosts instead,
beside the container ID, on the line of the container's own address. That is
where the name is read when Docker's server is not there.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tcpstress.results import folder_stamp
from tcpstress.scenario import Scenario, ScenarioError

MAX_SHARDS = 10_000
# Docker's embedded DNS server: the same loopback address in every container.
DOCKER_DNS = ("127.0.0.11", 53)
DNS_TIMEOUT_S = 2.0
HOSTS_FILE = Path("/etc/hosts")
SHARDS_VARIABLE = "TCPSTRESS_SHARDS"


@dataclass(frozen=True)
class ShardChoice:
    index: int
    count: int
    name: str | None = None  # the compose container's name, when the index came from it

    @property
    def pair(self) -> tuple[int, int]:
        return self.index, self.count


def parse_shard(text: str, environ: dict | None = None,
                own_name=None) -> ShardChoice:
    """'I/N', 'env' or 'compose' -> the share to run.

    own_name() returns this container's DNS name (or None, and why); it is
    called only for 'compose'.
    """
    env = os.environ if environ is None else environ
    if text == "env":
        index, count = env.get("JOB_COMPLETION_INDEX"), env.get(SHARDS_VARIABLE)
        if index is None or count is None:
            raise ScenarioError(f"--shard env: needs JOB_COMPLETION_INDEX and {SHARDS_VARIABLE} in the environment")
        text = f"{index}/{count}"
    elif text == "compose":
        if own_name is None:
            raise ScenarioError("--shard compose: needs the target's address to find its own")
        return compose_shard(_shard_count(env), own_name)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (0 <= int(m.group(1)) < int(m.group(2)) <= MAX_SHARDS):
        raise ScenarioError(f"--shard {text!r}: expected I/N with 0 <= I < N <= {MAX_SHARDS}, e.g. 0/4, "
                            "or env, or compose")
    return ShardChoice(int(m.group(1)), int(m.group(2)))


def _shard_count(env) -> int:
    raw = env.get(SHARDS_VARIABLE)
    if raw is None:
        raise ScenarioError(f"--shard compose: needs {SHARDS_VARIABLE} in the environment, the number of "
                            "loader containers (docker-compose.yml sets it from LOADERS)")
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_SHARDS:
        raise ScenarioError(f"{SHARDS_VARIABLE}={raw!r}: expected a whole number from 1 to {MAX_SHARDS}")
    return int(raw)


def compose_shard(count: int, own_name) -> ShardChoice:
    """Shard (replica number - 1) of `count`, from the container's name."""
    name, why = own_name()
    m = re.fullmatch(r".*?[-_](\d+)", name or "")
    number = int(m.group(1)) if m else None
    if count == 1 and number in (None, 1):
        # One loader is the whole scenario whatever its name, or without one.
        return ShardChoice(0, 1, name if number else None)
    if name is None:
        raise ScenarioError(f"--shard compose: cannot learn this container's name ({why}); it works in a "
                            "docker compose service on a user-defined network, like docker-compose.yml's")
    if number is None or number < 1:
        raise ScenarioError(f"--shard compose: this container is named {name!r}, which does not end in a "
                            "replica number (-1, -2 ...): a service with container_name: cannot be scaled")
    if number > count:
        raise ScenarioError(
            f"--shard compose: this container is {name}, replica {number}, but {SHARDS_VARIABLE}={count}: "
            f"set LOADERS to the --scale count (replica numbers restart at 1 after `docker compose down`)")
    return ShardChoice(number - 1, count, name)


def container_name(toward: str, server: tuple[str, int] = DOCKER_DNS,
                   hosts_file: Path = HOSTS_FILE) -> tuple[str | None, str]:
    """This container's name, as (name, '') or (None, why not): from Docker's DNS
    server, else from the hosts file podman writes.

    Its address is the one it reaches `toward` (the target) from: in compose,
    its address on the project's network.
    """
    try:
        address = source_address(toward)
    except OSError as e:
        return None, f"no address of its own: {e.strerror or e}"
    name, why = _name_from_dns(address, server)
    if name is not None:
        return name, ""
    from_hosts = replica_name_in_hosts(address, hosts_file)
    if from_hosts is not None:
        return from_hosts, ""
    return None, f"{why}, and {hosts_file} names no replica (-1, -2 ...) for {address}"


def replica_name_in_hosts(address: str, hosts_file: Path = HOSTS_FILE) -> str | None:
    """The name ending in a replica number that `hosts_file` gives `address` (podman:
    '198.18.200.130 758b86689400 tcpstress-loader-1'), or None.

    Docker's line for the address carries only the container ID, which ends in
    hex digits, never in -N: a Docker container is never misnamed from here."""
    try:
        lines = hosts_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] == address:
            for name in fields[1:]:
                if re.fullmatch(r".+[-_]\d+", name):
                    return name
    return None


def _name_from_dns(address: str, server: tuple[str, int]) -> tuple[str | None, str]:
    """The first label of the PTR name `server` gives `address`, or (None, why not)."""
    import dns.exception
    import dns.message
    import dns.rdatatype
    import dns.reversename

    query = dns.message.make_query(dns.reversename.from_address(address), dns.rdatatype.PTR)
    try:
        # Connected, so a closed port answers ECONNREFUSED at once instead of a timeout.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(DNS_TIMEOUT_S)
            sock.connect(server)
            sock.send(query.to_wire())
            reply = dns.message.from_wire(sock.recv(65535))
    except OSError as e:
        return None, f"no DNS server at {server[0]}: {e.strerror or e}"
    except dns.exception.DNSException as e:
        return None, f"unreadable DNS reply from {server[0]}: {e}"
    if reply.id != query.id:
        return None, f"DNS reply from {server[0]} to another question"
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.PTR:
            for record in rrset:
                # "<project>-loader-3.<project>_<network>." -> its first label.
                return record.target.to_text(omit_final_dot=True).split(".")[0], ""
    return None, f"{server[0]} has no name for {address}"


def source_address(toward: str) -> str:
    """The local address a connection to `toward` leaves from (a UDP connect(): no packet is sent)."""
    family = socket.AF_INET6 if ":" in toward else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((toward, 9))
        return sock.getsockname()[0]


def parse_start_at(text: str, now: float | None = None) -> float:
    """An ISO 8601 UTC time ('2026-11-28T13:30:00Z') within the next hour -> epoch seconds."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"--start-at {text!r}: expected an ISO 8601 time such as 2026-11-28T13:30:00Z") from None
    if when.tzinfo is None:
        raise ScenarioError(f"--start-at {text!r}: give the time zone, e.g. a trailing Z for UTC")
    epoch = when.timestamp()
    now = time.time() if now is None else now
    if epoch < now - 1.0:
        raise ScenarioError(f"--start-at {text!r} is {now - epoch:.1f} s in the past")
    if epoch > now + 3600:
        raise ScenarioError(f"--start-at {text!r} is more than an hour away")
    return epoch


def check_shard_fits(s: Scenario, shard: tuple[int, int]) -> None:
    if s.load.model == "closed" and shard[1] * s.load.workers > s.load.connections:
        raise ScenarioError(f"{s.source}: {shard[1]} shards x {s.load.workers} workers exceed load.connections "
                            f"({s.load.connections}): every worker needs at least one connection")


def shard_run_dir(scenario: Scenario, shard: tuple[int, int], start_at: float | None,
                  base: Path = Path("reports")) -> Path:
    """reports/<start time>-<name>/shard-<I>: every shard of one run in one folder, named alike
    on every machine when they share --start-at (`tcpstress merge` takes that folder)."""
    return base / f"{folder_stamp(start_at)}-{scenario.name}" / f"shard-{shard[0]}"
