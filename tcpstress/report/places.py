"""Where a side's sockets lived: one namespace, or one per shard.

A merged run (tcpstress merge) keeps every shard's kernel samples, counters
and read-back sysctls under the shard's label. Each shard's client (and
server) is a host of its own, with its own ports, queues and knobs, so a
rule states its numbers per shard and adds them up only where a sum means
something: counter rises add exactly (each counts its own host's events);
per-shard peaks of a state add up only to an upper bound on what the hosts
held at one moment, as they need not have peaked together; limits such as
ip_local_port_range or somaxconn are each host's own and are never summed
into one host's limit; a knob that differs between shards is reported as
differing, never as one shard's value.

Shards that share a hostname (merge labels them "HOST#I": processes on one
machine) and a network namespace (each runner records its own, "netns")
sampled the same sockets, counters and knobs. They are one Place, whose
values are the largest any of them saw, not their sum, which would count
the same sockets twice. Shards on one machine in different namespaces
(`ip netns exec`) are places of their own; runs from before "netns" was
recorded count as one namespace per hostname.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tcpstress.report.rundata import RunData
from tcpstress.report.wording import join_words


@dataclass
class Place:
    """One side's namespace: an ordinary run's, or one machine's in a merged run."""

    side: str  # "client" | "server" | "host": the side asked for, which picks the read-back knobs
    namespaces: list[str]  # an ordinary run: one; a merged run: one per shard that ran there
    shards: list[str] = field(default_factory=list)  # their labels; [] for an ordinary run
    machine: str = ""

    @property
    def name(self) -> str:
        if len(self.shards) > 1:
            return f"{self.machine} ({', '.join(self.shards)})"
        return self.shards[0] if self.shards else self.namespaces[0]


def _group_places(run: RunData, namespaces: list[str], side_of: Callable[[str], str]) -> list[Place]:
    places: dict[tuple[str, str | None, str], Place] = {}
    for ns in namespaces:
        label, sep, base = ns.rpartition(":")
        if not sep:
            places[("", None, ns)] = Place(side_of(ns), [ns])
            continue
        machine = run.shard_machine(label)
        # One machine, one namespace, unless the runners recorded different ones.
        key = (machine, run.shard_netns(label), base)
        place = places.setdefault(key, Place(side_of(base), [], [], machine))
        place.namespaces.append(ns)
        place.shards.append(label)
    return list(places.values())


def side_places(run: RunData, side: str) -> list[Place]:
    """Where one side's sockets lived: one place for an ordinary run, one per machine for a merged one."""
    return _group_places(run, run.side_namespaces(side), lambda _: side)


def _side_of(ns: str) -> str:
    return "client" if ns == "client" else "server" if ns == "server" else "host"


def all_places(run: RunData) -> list[Place]:
    """Every sampled namespace as a place, in shard order for a merged run."""
    labels = run.shard_labels
    order = {label: i for i, label in enumerate(labels)}
    places = _group_places(run, run.namespaces, _side_of)
    return sorted(places, key=lambda p: order.get(p.shards[0], len(order)) if p.shards else -1)


def state_peak(run: RunData, state: str, place: Place) -> int:
    return max(run.peak(state, ns) for ns in place.namespaces)


def counter_rise(run: RunData, name: str, place: Place) -> int:
    return max(run.counter(name, ns) for ns in place.namespaces)


def knob_value(run: RunData, knob: str, place: Place) -> str | None:
    if not place.shards:
        return run.sysctl(knob, place.side)
    for label in place.shards:
        value = run.shard_sysctl(knob, place.side, label)
        if value is not None:
            return value
    return None


def side_counter_rise(run: RunData, name: str, side: str) -> int:
    """A counter's rise on one side: summed over the shards' hosts (each counted its own events)."""
    return sum(counter_rise(run, name, p) for p in side_places(run, side))


def total_counter_rise(run: RunData, name: str) -> int:
    """A counter's rise over every namespace (a namespace that shards shared counted once)."""
    if not run.shard_labels:
        return run.counter(name)
    return sum(counter_rise(run, name, p) for p in all_places(run))


def common_value(pairs: list[tuple[Place, Any]]) -> tuple[bool, Any]:
    """(True, the value) when every place has the same value, else (False, None)."""
    values = list(dict.fromkeys(v for _, v in pairs))
    return (True, values[0]) if len(values) == 1 else (False, None)


def per_place(pairs: list[tuple[Place, Any]]) -> Any:
    """For evidence: the value all places share, else {place: value}."""
    same, value = common_value(pairs)
    return value if same else {p.name: v for p, v in pairs}


def differs_text(knob: str, pairs: list[tuple[Place, Any]]) -> str:
    """'tcp_tw_reuse differs between the shards: 0 on node-a and node-b, 1 on node-c'."""
    return f"{knob} differs between the shards: " + ", ".join(
        f"{'unknown' if value is None else str(value).replace(chr(9), '–')} on {join_words(names)}"
        for value, names in names_by_value(pairs).items())


def knob_values_text(knob: str, pairs: list[tuple[Place, Any]]) -> str:
    """'tcp_syncookies=0', or 'tcp_syncookies=0 on node-a and 1 on node-b' when the shards differ."""
    same, value = common_value(pairs)
    if same:
        return f"{knob}={value if value is not None else '?'}"
    return f"{knob}=" + join_words([f"{'?' if v is None else v} on {join_words(names)}" for v, names in names_by_value(pairs).items()])


def names_by_value(pairs: list[tuple[Place, Any]]) -> dict[Any, list[str]]:
    """Place names by value, in first-seen order."""
    groups: dict[Any, list[str]] = {}
    for place, value in pairs:
        groups.setdefault(value, []).append(place.name)
    return groups


def errors_by_shard(run: RunData, match: Callable[[str], bool]) -> dict[str, int] | None:
    """A merged run's matching errors per shard; None for an ordinary run or when no shard counted any."""
    counts = run.shard_errors(match) if len(run.shard_labels) > 1 else None
    return counts if counts and any(counts.values()) else None
