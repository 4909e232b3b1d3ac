"""`tcpstress explain NAME`: what the kernel does behind a TCP state, a sysctl
knob or a counter, as plain text for a terminal.

    explain("TIME_WAIT")            a state (any spelling: TIME-WAIT, time_wait,
                                    and the seed article's SYN_SEND / LASK_ACK,
                                    which get a correction note)
    explain("tcp_fin_timeout")      a knob (short, full or /proc/sys path)
    explain("ListenOverflows")      a counter (TcpExtListenOverflows, TcpExt:...)
    explain_index()                 every name it knows

Each text says who holds the state or where the knob and counter act, how a
state arises and what ends it, which knobs and counters matter, the myths that
apply, and (with read_live=True) the current value on this machine: the knob's
/proc/sys value, the socket count in the state, the counter's value, all in
the caller's network namespace. Everything except the small `read_*`
functions is pure: it renders the tables in tcpstress.knowledge.

Unknown names raise UnknownTopic (a LookupError, via knowledge.UnknownName)
with a one-line message and a did-you-mean.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tcpstress import knowledge
from tcpstress.knowledge import KernelCounter, Knob, Myth, State
from tcpstress.sampler import procfs

WIDTH = 90
LABEL_WIDTH = 12
_INDENT = " " * LABEL_WIDTH
_BULLET = "  - "
_BULLET_INDENT = "    "

# `ss` state filter names (ss(8), "STATE-FILTER"); they differ from what ss prints.
_SS_FILTER = {
    "ESTABLISHED": "established",
    "SYN_SENT": "syn-sent",
    "SYN_RECV": "syn-recv",
    "FIN_WAIT1": "fin-wait-1",
    "FIN_WAIT2": "fin-wait-2",
    "TIME_WAIT": "time-wait",
    "CLOSE_WAIT": "close-wait",
    "LAST_ACK": "last-ack",
    "LISTEN": "listening",
    "CLOSING": "closing",
}

COUNTER_FILES = ("/proc/net/netstat", "/proc/net/snmp")


class UnknownTopic(knowledge.UnknownName):
    """A name that is not a state, knob or counter; str() is one line."""


# --------------------------------------------------------------------------
# Live reads: the only impure part, each small and separately callable.


def read_knob(entry: Knob) -> str | None:
    """The knob's value in this namespace (whitespace collapsed), or None
    when its /proc/sys file does not exist here."""
    try:
        with open(entry.proc_file) as current:
            return knowledge.kernel_text(current.read())
    except (FileNotFoundError, PermissionError):
        return None


def read_counters() -> dict[str, int]:
    """Every counter of /proc/net/netstat and /proc/net/snmp, nstat-style names."""
    counters: dict[str, int] = {}
    for path in COUNTER_FILES:
        try:
            with open(path) as source:
                counters.update(procfs.parse_netstat(source.read()))
        except (OSError, ValueError):
            continue
    return counters


def count_in_state(entry: State) -> int | None:
    """Sockets now in `entry` in this namespace: over netlink as ss asks, or
    with `ss` itself when that is not available; None if neither works."""
    try:
        from tcpstress.sampler.netlink import count_states

        return int(count_states().get(entry.name, 0))
    except (ImportError, OSError, ValueError):
        pass  # no netlink here (or a kernel that answers oddly): ask ss instead
    if shutil.which("ss") is None:
        return None
    try:
        listing = subprocess.run(
            ["ss", "-Htan", "state", _SS_FILTER[entry.name]],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in listing.splitlines() if line.strip())


@dataclass
class _Live:
    """What the live reads returned for one explanation; empty when off."""

    enabled: bool
    counters: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, enabled: bool, need_counters: bool) -> _Live:
        if not enabled:
            return cls(False)
        return cls(True, read_counters() if need_counters else {})

    def knob(self, entry: Knob) -> str:
        value = read_knob(entry)
        return "absent here" if value is None else f"{value} here"

    def counter(self, name: str) -> str:
        value = self.counters.get(name)
        return "not on this kernel" if value is None else f"{value} here"


# --------------------------------------------------------------------------
# Looking names up


def _lookup_key(name: str) -> str:
    return re.sub(r"[\s:]", "", name).lower()


def _counter_keys() -> dict[str, KernelCounter]:
    keys: dict[str, KernelCounter] = {}
    for entry in knowledge.COUNTERS:
        keys[entry.name.lower()] = entry
        for prefix in ("TcpExt", "Tcp"):
            if entry.name.startswith(prefix):
                keys.setdefault(entry.name[len(prefix) :].lower(), entry)
                break
    return keys


def _spellings() -> dict[str, str]:
    """Every name a user might type (lookup key) -> the name to suggest."""
    suggestions: dict[str, str] = {}
    for entry in knowledge.STATES:
        for spelling in (entry.name, entry.ss_name):
            suggestions.setdefault(_lookup_key(spelling).replace("-", "_"), entry.name)
    for spelling in ("SYN_SEND", "LASK_ACK", "SYN_RECEIVED", "NEW_SYN_RECV", "ESTAB"):
        suggestions.setdefault(_lookup_key(spelling), knowledge.state(spelling).name)
    for knob in knowledge.KNOBS:
        suggestions[_lookup_key(knob.name)] = knob.name
        suggestions[_lookup_key(knob.path)] = knob.path
    for key, counter in _counter_keys().items():
        suggestions.setdefault(key, counter.name)
    return suggestions


def _did_you_mean(name: str) -> str:
    suggestions = _spellings()
    key = _lookup_key(name).replace("-", "_")
    close = difflib.get_close_matches(key, list(suggestions), n=1, cutoff=0.6)
    return f" (did you mean {suggestions[close[0]]}?)" if close else ""


def resolve(name: str) -> State | Knob | KernelCounter:
    """The state, knob or counter called `name`, or UnknownTopic."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownTopic(
            "explain: give a TCP state, sysctl knob or counter name (`tcpstress explain` lists them)"
        )
    try:
        return knowledge.state(name)
    except knowledge.UnknownName:
        pass
    try:
        return knowledge.knob(name)
    except knowledge.UnknownName:
        pass
    found = _counter_keys().get(_lookup_key(name))
    if found is not None:
        return found
    raise UnknownTopic(
        f"unknown name {name.strip()!r}: not a TCP state, sysctl knob or kernel counter tcpstress "
        f"knows{_did_you_mean(name)}; `tcpstress explain` lists them all"
    )


# --------------------------------------------------------------------------
# Text helpers


def _field(label: str, text: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=f"{label:<{LABEL_WIDTH}}", subsequent_indent=_INDENT,
        break_on_hyphens=False,
    )  # fmt: skip


def _bullet(text: str, more: str = "") -> list[str]:
    lines = textwrap.wrap(text, WIDTH, initial_indent=_BULLET, subsequent_indent=_BULLET_INDENT,
                          break_on_hyphens=False)
    if more:
        lines += textwrap.wrap(more, WIDTH, initial_indent=_BULLET_INDENT + "  ",
                               subsequent_indent=_BULLET_INDENT + "  ", break_on_hyphens=False)
    return lines


def _sentence(text: str) -> str:
    """`text` with a capital and a full stop, leaving identifiers such as
    connect() or tcp_fin_timeout as the kernel spells them."""
    text = text.strip()
    if re.match(r"[a-z]+(\s|$)", text):
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _holder(side: str) -> str:
    """A state's side from the table, as words: 'the client', 'both sides'."""
    if side == "both":
        return "both sides"
    if side.startswith(("client", "server", "active", "passive")):
        return f"the {side}"
    return side


def _title(text: str) -> str:
    return textwrap.fill(text, WIDTH, subsequent_indent="  ")


def _section(title: str, lines: list[str]) -> list[str]:
    return ["", title, *lines] if lines else []


def _myth_lines(myths: Iterable[Myth]) -> list[str]:
    lines: list[str] = []
    for myth in myths:
        # A bare name as the claim is a misspelling that was taken for a state.
        claim = myth.claim if " " in myth.claim else f"there is a state called {myth.claim}"
        lines += _bullet(f"Myth: {_sentence(claim)}", f"Fact: {_sentence(myth.correction)}")
    return lines


def _knob_lines(names: Iterable[str], live: _Live) -> list[str]:
    lines: list[str] = []
    for name in names:
        entry = knowledge.knob(name)
        value = f" = {live.knob(entry)}" if live.enabled else ""
        lines += _bullet(f"{entry.path}{value} (default {entry.default})", entry.summary)
    return lines


def _counter_lines(names: Iterable[str], live: _Live) -> list[str]:
    lines: list[str] = []
    for name in names:
        entry = knowledge.COUNTERS_BY_NAME.get(name)
        value = f" = {live.counter(name)}" if live.enabled else ""
        meaning = _sentence(entry.meaning) if entry else ""
        lines += _bullet(f"{name}{value}", meaning)
    return lines


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text) is not None


def _live_note(live: _Live) -> list[str]:
    if live.enabled:
        return ["", textwrap.fill("Values marked 'here' were read just now in this process's network "
                                  "namespace (the host's, unless run inside a lab namespace).", WIDTH)]
    return []


# --------------------------------------------------------------------------
# States


def _explain_state(entry: State, note: str | None, live: _Live) -> str:
    lines = [_title(f"{entry.name}  (TCP state {entry.code}; ss shows {entry.ss_name})")]
    if note:
        lines += ["", *textwrap.wrap(f"Note: {_sentence(note)}", WIDTH, subsequent_indent="      ")]
    lines += [
        "",
        _field("Held by", _holder(entry.side)),
        _field("Arises", _sentence(entry.arises)),
        _field("Ends", _sentence(entry.ends)),
    ]
    if live.enabled:
        count = count_in_state(entry)
        now = "could not be counted (no netlink, no ss)" if count is None else (
            f"{count} socket{'s' if count != 1 else ''} in {entry.name} here")
        lines.append(_field("Now", now))
    lines += _section("Knobs that matter", _knob_lines(entry.knobs, live))
    lines += _section("Counters that reveal it", _counter_lines(entry.counters, live))
    lines += _section("Myths", _myth_lines(entry.myths))
    lines += _live_note(live)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Knobs


def _knob_myths(entry: Knob) -> list[Myth]:
    """The myths whose claim is about this knob, once each."""
    seen: dict[str, Myth] = {}
    for state_entry in knowledge.STATES:
        for myth in state_entry.myths:
            if _mentions(myth.claim, entry.name):
                seen.setdefault(myth.claim, myth)
    return list(seen.values())


def _scope(entry: Knob) -> str:
    if entry.removed_in:
        return f"sysctl knob, removed in Linux {entry.removed_in}"
    if not entry.per_namespace:
        return "sysctl knob, GLOBAL: one value for the whole machine, not per namespace"
    return "sysctl knob, one value per network namespace"


def _state_holders(states: Iterable[str]) -> str:
    parts = []
    for name in states:
        parts.append(f"{name} (held by {_holder(knowledge.state(name).side)})")
    return ", ".join(parts)


def _knob_now(entry: Knob) -> str:
    value = read_knob(entry)
    where = f"({entry.proc_file})"
    if entry.removed_in:
        if value is None:
            return f"absent here, as expected: removed in Linux {entry.removed_in} {where}"
        return f"{value} here: this kernel predates its removal in {entry.removed_in} {where}"
    if value is None:
        if not entry.per_namespace:
            return f"absent here {where}: a global knob has no file inside a lab namespace"
        return f"absent here {where}: this kernel does not have it"
    return f"{value} here {where}"


def _explain_knob(entry: Knob, live: _Live) -> str:
    lines = [_title(f"{entry.path}  ({_scope(entry)})"), ""]
    if live.enabled:
        lines.append(_field("Now", _knob_now(entry)))
    lines += [
        _field("Default", entry.default),
        _field("Accepts", entry.describe_rule()),
        _field("Effect", entry.effect),
    ]
    if entry.states:
        lines.append(_field("Acts on", _state_holders(entry.states)))
    related = _unique(
        name for s in entry.states for name in knowledge.state(s).knobs if name != entry.name
    )
    if related:
        lines.append(_field("See also", ", ".join(related)))
    lines += _section("Counters to watch", _counter_lines(entry.counters, live))
    lines += _section("Myths", _myth_lines(_knob_myths(entry)))
    lines += _live_note(live)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Counters


def _counter_states(entry: KernelCounter) -> list[State]:
    return [
        s for s in knowledge.STATES
        if entry.name in s.counters or _mentions(s.arises, entry.name) or _mentions(s.ends, entry.name)
    ]  # fmt: skip


def _counter_knobs(entry: KernelCounter) -> list[str]:
    return [k.name for k in knowledge.KNOBS if entry.name in k.counters]


def _file_field(entry: KernelCounter) -> str:
    section = "TcpExt" if entry.name.startswith("TcpExt") else "Tcp"
    return f"{entry.source}, line {section}:, field {entry.name[len(section):]}"


def _explain_counter(entry: KernelCounter, live: _Live) -> str:
    kind = "gauge: a current level" if entry.gauge else "counter: only grows, since the namespace was created"
    lines = [_title(f"{entry.name}  (kernel {kind})"), ""]
    if live.enabled:
        lines.append(_field("Now", f"{live.counter(entry.name)} (nstat -az {entry.name} shows the same)"))
    lines += [
        _field("Counts", _sentence(entry.meaning)),
        # A gauge's "reveals" describes a level; a counter's names a cause.
        _field("Shows", _sentence(entry.reveals))
        if entry.gauge
        else _field("If it rises", _sentence(f"suspect {entry.reveals}")),
        _field("Read from", _file_field(entry)),
        _field("Scope", "per network namespace" if entry.per_namespace else "host-wide"),
    ]
    states = _counter_states(entry)
    if states:
        sides = _unique(_holder(s.side) for s in states)
        lines.append(_field("Seen on", " and ".join(sides)))
        lines.append(_field("States", _state_holders(s.name for s in states)))
    knobs = _counter_knobs(entry)
    lines += _section("Knobs that matter", _knob_lines(knobs, live))
    lines += _live_note(live)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Entry points


def explain(name: str, read_live: bool = True) -> str:
    """The text `tcpstress explain NAME` prints; UnknownTopic for unknown names.

    read_live=False skips every read of this machine (tests, docs)."""
    found = resolve(name)
    if isinstance(found, State):
        _, note = knowledge.state_with_note(name)
        live = _Live.read(read_live, need_counters=bool(found.counters))
        return _explain_state(found, note, live)
    if isinstance(found, Knob):
        return _explain_knob(found, _Live.read(read_live, need_counters=bool(found.counters)))
    return _explain_counter(found, _Live.read(read_live, need_counters=True))


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text.strip(), maxsplit=1)[0].rstrip(".")


def _index_rows(rows: Iterable[tuple[str, str]], name_width: int) -> list[str]:
    lines: list[str] = []
    for name, text in rows:
        lead = f"  {name:<{name_width}}  "
        if len(lead) > WIDTH // 2:
            lines.append(f"  {name}")
            lead = " " * (name_width + 4)
        lines += textwrap.wrap(text, WIDTH, initial_indent=lead, subsequent_indent=" " * len(lead),
                               break_on_hyphens=False) or [lead.rstrip()]
    return lines


def explain_index() -> str:
    """Every state, knob and counter `explain` knows, one entry each."""
    states = [(s.name, f"{s.side}: {_first_sentence(s.arises)}") for s in knowledge.STATES]
    knobs = [(k.path, k.summary) for k in knowledge.KNOBS]  # the summary says REMOVED / GLOBAL
    counters = [(c.name, c.meaning) for c in knowledge.COUNTERS]
    lines = [
        "tcpstress explain NAME: what the kernel does behind a TCP state, a sysctl knob or",
        "a counter, with the value on this machine now.",
        "",
        "TCP states (who holds it: how it arises)",
        *_index_rows(states, max(len(name) for name, _ in states)),
        "",
        "Sysctl knobs",
        *_index_rows(knobs, max(len(name) for name, _ in knobs)),
        "",
        "Kernel counters (/proc/net/netstat and /proc/net/snmp, nstat names)",
        *_index_rows(counters, max(len(name) for name, _ in counters)),
        "",
        *textwrap.wrap(
            "Names match loosely: SYN-RECV or syn_recv, tcp_fin_timeout or "
            "net.ipv4.tcp_fin_timeout, ListenOverflows or TcpExtListenOverflows. The seed "
            "article's misspellings SYN_SEND and LASK_ACK are explained with a correction.",
            WIDTH,
        ),
    ]
    return "\n".join(lines) + "\n"


__all__ = [
    "UnknownTopic",
    "count_in_state",
    "explain",
    "explain_index",
    "read_counters",
    "read_knob",
    "resolve",
]
