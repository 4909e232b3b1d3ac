"""The sampling loop: kernel state of some network namespaces, plus process figures.

Every `interval` seconds, in its own thread (/proc reads and netlink block), the
Sampler takes for each namespace:

- TCP sockets per state, IPv4 and IPv6 (sock_diag netlink; /proc/net/tcp{,6}
  when netlink is not available), optionally only those whose local or remote
  port is `port`;
- the TCP line of /proc/net/sockstat;
- the deltas of every Tcp and TcpExt counter of /proc/net/snmp and netstat
  since the previous sample (TcpCurrEstab and the constants as values);

and for each process role ("generator", "target") the summed CPU % (100 = one
core), RSS and open fds of the PIDs the caller's registry names at that moment,
plus a "host" row: the whole machine's busy CPU (100 = one core), steal % and
1-minute load average, so the report can tell our CPU from everyone else's.

Rows go to samples.csv / processes.csv as they are taken, flushed each
interval. Times are `time.monotonic() - t0`, so they line up with the load
generator's intervals. The first sample is taken inside start() (its deltas
are 0: it is the baseline), the last inside stop().

Namespaces are opened once, at start(): a netlink socket and fds on
/proc/thread-self/net/* created by a short-lived thread that joined the
namespace (see nsenter.py); the kept fds are re-read from offset 0 each time.

No count is an atomic snapshot. /proc/net/tcp comes out ~4 KiB per read()
and the kernel finds its place again by position inside a hash bucket, so on
a busy namespace a socket can be listed twice or missed; a netlink dump
resumes the same way, but only at each ~32 KiB reply, and with the port
filter a few hundred matching sockets fit in one reply. Peaks taken while
sockets churn can therefore overshoot by a few.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TextIO, Union

from tcpstress.results import PROCESSES_FILE, SAMPLES_FILE
from tcpstress.sampler import procfs
from tcpstress.sampler.hostcpu import HostCpuMeter
from tcpstress.sampler.netlink import ALL_STATES_MASK, LISTEN_MASK, NO_TIME_WAIT_MASK, StateCounter
from tcpstress.sampler.nsenter import netns_path, pid_netns_path, run_in_netns

SOCKSTAT_COLUMNS = tuple(f"sockstat_{name}" for name in procfs.SOCKSTAT_FIELDS)
PROCESS_COLUMNS = ("t", "role", "pids", "cpu_percent", "rss_bytes", "fds", "steal_percent", "load1", "wait_percent")
# The row of role "host" is the whole machine (hostcpu.py): every process, not only ours.
HOST_ROLE = "host"
# The share of one core that dumping sockets may take per namespace (issue 20:
# the runner, sampler included, <= 5% of a core at 100 ms with 20,000 sockets).
DUMP_BUDGET = 0.02
_PROC_NET_FILES = ("tcp", "tcp6", "sockstat", "netstat", "snmp")

ProcessRegistry = Union[Callable[[], Mapping[str, Iterable[int]]], Mapping[str, Iterable[int]]]


@dataclass(frozen=True)
class NamespaceRef:
    """Which network namespace to watch, and the label its rows carry.

    Neither netns nor pid: the namespace of the thread that calls start().
    netns: a name of `ip netns` (/var/run/netns/NAME). pid: that process's.
    """

    label: str
    netns: str | None = None
    pid: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label or any(c in self.label for c in ",\n\r\""):
            raise ValueError(f"namespace label {self.label!r} is not allowed: use a non-empty name without commas or quotes")
        if self.netns is not None and self.pid is not None:
            raise ValueError(f"namespace {self.label!r}: give netns or pid, not both")
        if self.pid is not None and (isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid <= 0):
            raise ValueError(f"namespace {self.label!r}: pid {self.pid!r} is not allowed: a positive integer")

    def ns_path(self) -> str | None:
        """The namespace file to setns() into; None for the caller's own."""
        if self.netns is not None:
            return netns_path(self.netns)
        if self.pid is not None:
            return pid_netns_path(self.pid)
        return None


def _read_fd(fd: int) -> str:
    # A seq_file regenerates its text from offset 0, in the namespace it was opened in.
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks).decode("ascii", "replace")


def _open_proc_net(directory: str) -> dict[str, int]:
    fds: dict[str, int] = {}
    try:
        for name in _PROC_NET_FILES:
            fds[name] = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def _open_in_current_namespace(method: str) -> tuple[dict[str, int], StateCounter | None, str | None]:
    fds = _open_proc_net("/proc/thread-self/net")
    if method == "procfs":
        return fds, None, None
    try:
        counter = StateCounter()
        # Proves sock_diag answers before we rely on it; listeners only, so that with
        # 100k sockets the proof does not cost a full dump (about 100 ms) at start.
        counter.count(None, LISTEN_MASK)
        return fds, counter, None
    except OSError as error:
        if method == "netlink":
            for fd in fds.values():
                os.close(fd)
            raise
        return fds, None, f"netlink unavailable ({error}); reading /proc/net/tcp"


class _NamespaceProbe:
    """Everything needed to sample one namespace, opened once."""

    def __init__(self, ref: NamespaceRef, port: int | None, method: str = "auto") -> None:
        self.ref = ref
        self.port = port
        self.samples = 0
        self.errors = 0
        self.last_error: str | None = None
        self.total_cost = 0.0
        self.max_cost = 0.0
        self.last_cost = 0.0
        self.states_age = 0.0
        self._states: dict[str, int] | None = None
        self._minisockets = 0
        self._states_at = 0.0
        self._dump_due = 0.0
        self._prev_counters: dict[str, int] | None = None
        path = ref.ns_path()
        try:
            self._fds, self._counter, self.note = run_in_netns(path, lambda: _open_in_current_namespace(method))
        except PermissionError:
            if ref.pid is None or method == "netlink":
                raise
            # Without the right to setns, /proc/PID/net still shows PID's namespace.
            self._fds = _open_proc_net(f"/proc/{ref.pid}/net")
            self._counter, self.note = None, "setns refused; reading /proc/PID/net"

    @property
    def method(self) -> str:
        return "netlink" if self._counter is not None else "procfs"

    def sample(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """(states, sockstat, counter deltas) now; costs are recorded."""
        started = time.perf_counter()
        if self._counter is not None:
            states, sockstat = self._count_netlink(self._counter, started)
        else:
            table = procfs.parse_tcp_table(_read_fd(self._fds["tcp"]), self.port)
            table.update(procfs.parse_tcp_table(_read_fd(self._fds["tcp6"]), self.port))
            states = {name: table.get(name, 0) for name in procfs.TCP_STATES}
            sockstat = procfs.parse_sockstat(_read_fd(self._fds["sockstat"]))
        counters = procfs.parse_netstat(_read_fd(self._fds["snmp"]), procfs.TCP_SECTIONS)
        counters.update(procfs.parse_netstat(_read_fd(self._fds["netstat"]), procfs.TCP_SECTIONS))
        deltas = procfs.counter_deltas(self._prev_counters if self._prev_counters is not None else counters, counters)
        self._prev_counters = counters
        cost = time.perf_counter() - started
        self.samples += 1
        self.total_cost += cost
        self.max_cost = max(self.max_cost, cost)
        self.last_cost = cost
        return states, sockstat, deltas

    def _count_netlink(self, counter: StateCounter, now: float) -> tuple[dict[str, int], dict[str, int]]:
        """States at a bounded cost. Dumping sockets costs per socket (copy + Python walk):
        with ~13k TIME_WAIT sockets it was 88% of the runner's samples (py-spy); and the
        kernel walks its whole TCP hash table for every dump (netlink.py), sockets of
        other namespaces included.

        - Without a port filter TIME_WAIT is not dumped: it is sockstat's `tw` (O(1), per
          namespace) less the FIN_WAIT2 minisockets that `tw` counts too; it is fresh
          on every row.
        - The dump runs when due: a dump that took c seconds of this thread's CPU is
          not repeated for c / DUMP_BUDGET seconds, so dumping takes at most that
          share of one core however many sockets there are (CPU, not wall time: on
          a busy machine waiting for a core is not the dump's cost). Between dumps a
          row repeats the last dumped figures; states_age_ms in samples.csv says
          how old they are.
        """
        sockstat = procfs.parse_sockstat(_read_fd(self._fds["sockstat"]))
        if now >= self._dump_due or self._states is None:
            mask = NO_TIME_WAIT_MASK if self.port is None else ALL_STATES_MASK
            cpu_started = time.thread_time()
            self._states = counter.count(self.port, mask)
            self._minisockets = counter.fin_wait2_minisockets
            self._states_at = time.perf_counter()
            self._dump_due = now + (time.thread_time() - cpu_started) / DUMP_BUDGET
        states = dict(self._states)
        if self.port is None:
            states["TIME_WAIT"] = max(0, sockstat["tw"] - self._minisockets)
        self.states_age = time.perf_counter() - self._states_at
        return states, sockstat

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


def _run_delay_ns(pid: int) -> int | None:
    """Nanoseconds the process's main thread has spent runnable but waiting for a CPU
    (/proc/PID/schedstat, second field; needs CONFIG_SCHEDSTATS, else None)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system, every thread) and resident bytes from one read of
    /proc/PID/stat; OSError when the process is gone.

    psutil reads /proc/PID/stat for the CPU and /proc/PID/statm for the memory, with
    its own Python around each: for the five or six processes of a run, ten times a
    second, that was about half of the sampler's own CPU.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name, in parentheses, may hold spaces: count fields after it.
    fields = data.rpartition(b")")[2].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE
    except (IndexError, ValueError):
        raise ProcessLookupError(pid) from None


def _fd_count(pid: int) -> int:
    """Open fds; PermissionError for another user's process (as psutil's AccessDenied was)."""
    # Since Linux 6.2 the size of /proc/PID/fd is its number of open fds: one
    # stat instead of listing 20,000 entries. Older kernels report 0.
    size = os.stat(f"/proc/{pid}/fd").st_size
    return size if size > 0 else len(os.listdir(f"/proc/{pid}/fd"))


class _ProcessTracker:
    """CPU, RSS and fds per role, over whatever PIDs the registry names now."""

    def __init__(self, registry: ProcessRegistry | None) -> None:
        self._registry = registry
        # pid -> (monotonic time, CPU seconds) at the previous reading
        self._cpu: dict[int, tuple[float, float]] = {}
        # pid -> (monotonic time, run delay ns) at the previous reading
        self._delays: dict[int, tuple[float, int]] = {}

    def _roles(self) -> dict[str, list[int]]:
        if self._registry is None:
            return {}
        named = self._registry() if callable(self._registry) else self._registry
        return {role: sorted({int(pid) for pid in pids}) for role, pids in dict(named).items()}

    def _measure_one(self, pid: int) -> dict[str, Any] | None:
        """cpu %, rss, fds and whether the cpu figure is real; None if gone."""
        try:
            now = time.monotonic()
            cpu_s, rss = _cpu_and_rss(pid)
            fds = _fd_count(pid)
        except OSError:  # gone, or another user's (no fd count), as psutil's errors were
            self._cpu.pop(pid, None)
            return None
        before = self._cpu.get(pid)
        self._cpu[pid] = (now, cpu_s)
        # A process's first reading has nothing to compare with: 0.0, marked incomplete.
        used, elapsed = (max(cpu_s - before[1], 0.0), now - before[0]) if before else (0.0, 0.0)
        cpu = 100.0 * used / elapsed if elapsed > 0 else 0.0
        return {"cpu": cpu, "cpu_s": used, "elapsed": elapsed, "complete": before is not None, "rss": rss,
                "fds": fds, "wait": self._wait_percent(pid)}

    def _wait_percent(self, pid: int) -> float | None:
        """Share of the time since the last reading that the process waited for a CPU (100 = all of it):
        a process that shares its core with other work measures its own waits into the latencies."""
        delay, now = _run_delay_ns(pid), time.monotonic()
        if delay is None:
            return None
        before = self._delays.get(pid)
        self._delays[pid] = (now, delay)
        if before is None or now <= before[0]:
            return None
        return 100.0 * (delay - before[1]) / 1e9 / (now - before[0])

    def measure(self) -> dict[str, dict[str, Any]]:
        roles = self._roles()
        # Each PID once per tick, even if named by two roles: a second reading
        # right after the first would measure nothing.
        by_pid = {pid: found for pid in sorted({p for pids in roles.values() for p in pids})
                  if (found := self._measure_one(pid)) is not None}  # a PID that is gone is left out
        for gone in set(self._cpu) - set(by_pid):
            del self._cpu[gone]
            self._delays.pop(gone, None)
        figures: dict[str, dict[str, Any]] = {}
        for role, pids in roles.items():
            alive = [pid for pid in pids if pid in by_pid]
            figures[role] = {
                "pids": alive,
                "cpu_percent": sum(by_pid[pid]["cpu"] for pid in alive),
                # The CPU seconds themselves and the time they were used in, for a mean
                # weighted by time (see _Summary.add_process_row).
                "cpu_seconds": sum(by_pid[pid]["cpu_s"] for pid in alive),
                "elapsed": max((by_pid[pid]["elapsed"] for pid in alive), default=0.0),
                "cpu_complete": all(by_pid[pid]["complete"] for pid in alive),
                "rss_bytes": sum(by_pid[pid]["rss"] for pid in alive),
                "fds": sum(by_pid[pid]["fds"] for pid in alive),
                "wait_percent": (sum(by_pid[pid]["wait"] for pid in alive)
                                 if alive and all(by_pid[pid]["wait"] is not None for pid in alive) else None),
            }
        return figures


class _Summary:
    """Running peaks, finals, totals and means: what result.json keeps."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, dict[str, int]]] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.processes: dict[str, dict[str, Any]] = {}

    def add_namespace_row(self, label: str, states: Mapping[str, int], deltas: Mapping[str, int]) -> None:
        first = label not in self.states
        per_state = self.states.setdefault(label, {})
        for name, value in states.items():
            # "start": sockets already there at the first sample, before the load began
            # (an earlier run's TIME_WAIT): the report tells them from this run's own.
            entry = per_state.setdefault(name, {"peak": value, "final": value, **({"start": value} if first else {})})
            entry["peak"] = max(entry["peak"], value)
            entry["final"] = value
        totals = self.counters.setdefault(label, {})
        for name, value in deltas.items():
            totals[name] = value if name in procfs.GAUGES else totals.get(name, 0) + value

    def add_process_row(self, role: str, figures: Mapping[str, Any]) -> None:
        entry = self.processes.setdefault(
            role, {"cpu_peak": 0.0, "cpu_seconds": 0.0, "elapsed": 0.0, "rss_peak": 0, "fds_peak": 0,
                   "wait_sum": 0.0, "wait_samples": 0}
        )
        if figures.get("wait_percent") is not None:
            entry["wait_sum"] += figures["wait_percent"]
            entry["wait_samples"] += 1
        entry["rss_peak"] = max(entry["rss_peak"], figures["rss_bytes"])
        entry["fds_peak"] = max(entry["fds_peak"], figures["fds"])
        if figures["cpu_complete"]:  # a process's first reading has no CPU figure (0.0)
            entry["cpu_peak"] = max(entry["cpu_peak"], figures["cpu_percent"])
            # The kernel counts CPU in clock ticks (10 ms here): one sample's share of a
            # 50-100 ms interval is off by a tick either way, and a plain mean of such
            # shares over intervals of uneven length drifted (a clean-clone test run on a
            # loaded machine: 135% where the process's own CPU time said 86%). CPU
            # seconds over seconds has no such bias.
            entry["cpu_seconds"] += figures["cpu_seconds"]
            entry["elapsed"] += figures["elapsed"]

    def processes_summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for role, entry in self.processes.items():
            mean = 100.0 * entry["cpu_seconds"] / entry["elapsed"] if entry["elapsed"] else 0.0
            out[role] = {
                "cpu_peak": round(entry["cpu_peak"], 1),
                "cpu_mean": round(mean, 1),
                "rss_peak": entry["rss_peak"],
                "fds_peak": entry["fds_peak"],
            }
            if entry["wait_samples"]:
                # Mean share of the time its processes (summed) waited for a CPU.
                out[role]["wait_mean"] = round(entry["wait_sum"] / entry["wait_samples"], 1)
        return out


class _CsvOut:
    """samples.csv and processes.csv writers; the header waits for the first row."""

    def __init__(self, samples: TextIO | None, processes: TextIO | None, owned: list[TextIO]) -> None:
        self._samples_file, self._processes_file, self._owned = samples, processes, owned
        self._samples: "csv.DictWriter[str] | None" = None
        self._processes: "csv.DictWriter[str] | None" = None
        if processes is not None:
            self._processes = csv.DictWriter(processes, PROCESS_COLUMNS, lineterminator="\n")
            self._processes.writeheader()

    def write_samples(self, rows: list[dict[str, Any]]) -> None:
        if self._samples_file is None or not rows:
            return
        if self._samples is None:
            fixed = ["t", "ns", *procfs.TCP_STATES, *SOCKSTAT_COLUMNS]
            counter_names = sorted({name for row in rows for name in row} - set(fixed))
            columns = [*fixed, *counter_names]
            self._samples = csv.DictWriter(self._samples_file, columns, extrasaction="ignore", restval=0, lineterminator="\n")
            self._samples.writeheader()
        self._samples.writerows(rows)
        self._samples_file.flush()

    def write_processes(self, rows: list[dict[str, Any]]) -> None:
        if self._processes is None or self._processes_file is None or not rows:
            return
        self._processes.writerows(rows)
        self._processes_file.flush()

    def close(self) -> None:
        for stream in self._owned:
            stream.close()


class Sampler:
    """Samples namespaces and processes every `interval` s in a background thread.

    `processes` is a mapping role -> PIDs, or a callable returning one; it is
    read at every sample, so PIDs added later are picked up. `method` "auto"
    counts states over netlink and falls back to /proc/net/tcp; "netlink" or
    "procfs" force one (tests and bench/ use that). `samples_stream` sends
    samples.csv to an open text stream instead of out_dir; `on_sample` is
    called from the sampler thread with latest() after each interval.
    """

    def __init__(
        self,
        namespaces: Iterable[NamespaceRef],
        interval: float = 0.1,
        t0: float | None = None,
        port: int | None = None,
        out_dir: Path | None = None,
        processes: ProcessRegistry | None = None,
        *,
        samples_stream: TextIO | None = None,
        on_sample: Callable[[dict[str, dict[str, Any]]], None] | None = None,
        method: str = "auto",
    ) -> None:
        self._refs = list(namespaces)
        if not self._refs:
            raise ValueError("sampler namespaces: give at least one NamespaceRef")
        labels = [ref.label for ref in self._refs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sampler namespaces: labels must differ, got {labels}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.001 <= interval <= 3600:
            raise ValueError(f"sampler interval {interval!r} is not allowed: 0.001..3600 seconds")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise ValueError(f"sampler port {port!r} is not allowed: 1..65535 or None")
        if method not in ("auto", "netlink", "procfs"):
            raise ValueError(f"sampler method {method!r} is not allowed: auto, netlink or procfs")
        self.method = method
        self.interval = float(interval)
        self.t0 = time.monotonic() if t0 is None else t0
        self.port = port
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self._samples_stream = samples_stream
        self._on_sample = on_sample
        self._tracker = _ProcessTracker(processes)
        self._host_cpu = HostCpuMeter()
        self._probes: list[_NamespaceProbe] = []
        self._summary = _Summary()
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: _CsvOut | None = None
        self.overruns = 0
        self.cpu_seconds = 0.0  # of the sampling thread (and start()/stop()'s own samples)
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._final: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Open every namespace, take the first sample, start the thread.

        Raises ValueError for a namespace that does not exist.
        """
        if self._thread is not None or self._final is not None:
            raise RuntimeError("Sampler.start() may be called once")
        try:
            for ref in self._refs:
                self._probes.append(_NamespaceProbe(ref, self.port, self.method))
            self._out = self._open_outputs()
            self._started_at = time.monotonic()
            self._tick()
        except BaseException:
            self._close_resources()
            self._probes = []
            raise
        self._thread = threading.Thread(target=self._run, name="tcpstress-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Take a last sample, end the thread, close files; return the summary."""
        if self._final is not None:
            return self._final
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        elif self._probes:
            self._tick()
        self._stopped_at = time.monotonic()
        self._close_resources()
        self._final = self.summary()
        return self._final

    def latest(self) -> dict[str, dict[str, Any]]:
        """The most recent row of each namespace (label -> column -> value)."""
        with self._lock:
            return {label: dict(row) for label, row in self._latest.items()}

    def summary(self) -> dict[str, Any]:
        """{"states", "counters", "processes", "sampler"} as result.json keeps them."""
        with self._lock:
            return {
                "states": {label: {s: dict(v) for s, v in states.items()} for label, states in self._summary.states.items()},
                "counters": {label: dict(totals) for label, totals in self._summary.counters.items()},
                "processes": self._summary.processes_summary(),
                "sampler": {
                    probe.ref.label: {
                        "samples": probe.samples,
                        "method": probe.method,
                        "mean_cost_ms": round(1000 * probe.total_cost / probe.samples, 3) if probe.samples else 0.0,
                        "max_cost_ms": round(1000 * probe.max_cost, 3),
                        "skipped_intervals": self.overruns,
                        "errors": probe.errors,
                        "last_error": probe.last_error,
                        "note": probe.note,
                        # The whole sampler (every namespace, processes, host) as a share of one core.
                        "cpu_percent": self._cpu_percent(),
                    }
                    for probe in self._probes
                },
            }

    def _cpu_percent(self) -> float:
        if self._started_at is None:
            return 0.0
        ended = self._stopped_at if self._stopped_at is not None else time.monotonic()
        elapsed = max(ended - self._started_at, self.interval)
        return round(100 * self.cpu_seconds / elapsed, 2)

    # -- internals -------------------------------------------------------

    def _open_outputs(self) -> _CsvOut:
        owned: list[TextIO] = []
        samples, processes = self._samples_stream, None
        if self._out_dir is not None:
            self._out_dir.mkdir(parents=True, exist_ok=True)
            if samples is None:
                samples = open(self._out_dir / SAMPLES_FILE, "w", newline="", encoding="utf-8")
                owned.append(samples)
            processes = open(self._out_dir / PROCESSES_FILE, "w", newline="", encoding="utf-8")
            owned.append(processes)
        return _CsvOut(samples, processes, owned)

    def _close_resources(self) -> None:
        for probe in self._probes:
            probe.close()
        if self._out is not None:
            self._out.close()
            self._out = None

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as error:  # recorded in the summary; stop() still works
            for probe in self._probes:
                probe.errors += 1
                probe.last_error = f"sampler thread ended: {type(error).__name__}: {error}"

    def _loop(self) -> None:
        # Ticks sit on a fixed grid from the first sample, so slow samples do
        # not shift later ones; a tick that falls behind skips to the next slot.
        origin = time.monotonic()
        slot = 1
        while True:
            due = origin + slot * self.interval
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            self._tick()
            late_slots = int((time.monotonic() - origin) / self.interval)
            if late_slots >= slot + 1:
                self.overruns += late_slots - slot
                slot = late_slots
            slot += 1
        self._tick()

    def _tick(self) -> None:
        tick_started = time.thread_time()
        rows: list[dict[str, Any]] = []
        probe_cpu: list[float] = []
        for probe in self._probes:
            t = time.monotonic() - self.t0
            cpu_started = time.thread_time()
            try:
                states, sockstat, deltas = probe.sample()
            except Exception as error:  # one bad read must not end the run
                probe.errors += 1
                probe.last_error = f"{type(error).__name__}: {error}"
                continue
            row: dict[str, Any] = {"t": round(t, 4), "ns": probe.ref.label, **states}
            row.update({f"sockstat_{name}": value for name, value in sockstat.items()})
            row.update(deltas)
            # The sampler's own cost, so a user can see what watching cost the run.
            row["sampler_cost_ms"] = round(probe.last_cost * 1000, 3)
            row["states_age_ms"] = round(probe.states_age * 1000, 1)
            rows.append(row)
            probe_cpu.append(time.thread_time() - cpu_started)
            with self._lock:
                self._summary.add_namespace_row(probe.ref.label, states, deltas)
        process_rows = self._sample_processes()
        # CPU of this thread per row: its namespace's reads and an equal share of the rest of
        # the tick (processes, host CPU), so the column sums to what sampling cost the run.
        tick_cpu = time.thread_time() - tick_started
        shared = (tick_cpu - sum(probe_cpu)) / len(rows) if rows else 0.0
        for row, own in zip(rows, probe_cpu):
            row["sample_cpu_us"] = round((own + shared) * 1e6)
        self.cpu_seconds += tick_cpu
        with self._lock:
            for row in rows:
                self._latest[row["ns"]] = row
        if self._out is not None:
            self._out.write_samples(rows)
            self._out.write_processes(process_rows)
        if self._on_sample is not None and rows:
            self._on_sample(self.latest())

    def _sample_processes(self) -> list[dict[str, Any]]:
        t = round(time.monotonic() - self.t0, 4)
        try:
            figures = self._tracker.measure()
        except Exception:  # a registry callable that fails must not end the run
            return []
        rows = []
        for role, figure in figures.items():
            with self._lock:
                self._summary.add_process_row(role, figure)
            rows.append({
                "t": t,
                "role": role,
                "pids": " ".join(map(str, figure["pids"])),
                "cpu_percent": round(figure["cpu_percent"], 1),
                "rss_bytes": figure["rss_bytes"],
                "fds": figure["fds"],
                "wait_percent": "" if figure.get("wait_percent") is None else round(figure["wait_percent"], 1),
            })
        host = self._host_cpu.measure()
        if host is not None:
            rows.append({"t": t, "role": HOST_ROLE, "pids": "", "cpu_percent": round(host.busy_percent, 1),
                         "rss_bytes": "", "fds": "", "steal_percent": round(host.steal_percent, 1),
                         "load1": round(host.load1, 2)})
        return rows


# -- `tcpstress sample` --------------------------------------------------

_LIVE_STATES = (
    ("ESTAB", "ESTABLISHED"),
    ("SYN_SENT", "SYN_SENT"),
    ("SYN_RECV", "SYN_RECV"),
    ("FIN_W1", "FIN_WAIT1"),
    ("FIN_W2", "FIN_WAIT2"),
    ("TIME_WAIT", "TIME_WAIT"),
    ("CLOSE_WAIT", "CLOSE_WAIT"),
    ("LAST_ACK", "LAST_ACK"),
)
_LIVE_HEADER_EVERY = 40


def _short_counter_name(name: str) -> str:
    for prefix in ("TcpExt", "Tcp"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def format_live_header() -> str:
    return f"{'t':>8} " + " ".join(f"{short:>{max(len(short), 6)}}" for short, _ in _LIVE_STATES) + "  counters"


def format_live_line(row: Mapping[str, Any]) -> str:
    """One line of the live table: states, then the key counters that moved."""
    cells = " ".join(f"{row.get(state, 0):>{max(len(short), 6)}}" for short, state in _LIVE_STATES)
    moved = [
        f"{_short_counter_name(name)}+{row[name]}"
        for name in procfs.KEY_COUNTERS
        if name not in procfs.GAUGES and row.get(name)
    ]
    return f"{row.get('t', 0.0):>8.2f} {cells}  {' '.join(moved)}".rstrip()


def run_sample_command(
    netns: str | None,
    pid: int | None,
    port: int | None,
    interval: float,
    duration: float,
    out: Path | None,
    live: bool,
    stream: TextIO = sys.stderr,
    force: bool = False,
) -> dict[str, Any]:
    """`tcpstress sample`: watch one namespace for `duration` seconds.

    Prints a live line per interval to `stream` when `live`. Writes the
    samples CSV to `out` (a file, or samples.csv inside an existing
    directory), else to stdout when stdout is not a terminal. Ctrl-C ends the
    run early. Returns the summary. Raises ValueError for bad input, and for
    an `out` file that exists unless `force` (it may be a run's samples.csv).
    """
    if netns is not None and pid is not None:
        raise ValueError("sample: give --netns or --pid, not both")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0 or math.isnan(duration):
        raise ValueError(f"sample duration {duration!r} is not allowed: a positive number of seconds")
    label = f"netns:{netns}" if netns is not None else (f"pid:{pid}" if pid is not None else "host")
    ref = NamespaceRef(label=label, netns=netns, pid=pid)
    ref.ns_path()  # fails early with the one-line message for a missing namespace

    csv_stream: TextIO | None = None
    owned: TextIO | None = None
    if out is not None:
        target = Path(out) / SAMPLES_FILE if Path(out).is_dir() else Path(out)
        try:
            # "x": created here or refused, even if another process makes the file meanwhile.
            owned = csv_stream = open(target, "w" if force else "x", newline="", encoding="utf-8")
        except FileExistsError:
            raise ValueError(f"--out {target}: the file exists; choose a new file, or --force to overwrite it") from None
        except OSError as e:
            raise ValueError(f"--out {target}: cannot write: {e.strerror}") from None
    elif not sys.stdout.isatty():
        csv_stream = sys.stdout

    printed = 0

    def show(latest: dict[str, dict[str, Any]]) -> None:
        nonlocal printed
        row = latest.get(label)
        if row is None:
            return
        if printed % _LIVE_HEADER_EVERY == 0:
            print(format_live_header(), file=stream)
        print(format_live_line(row), file=stream, flush=True)
        printed += 1

    try:
        sampler = Sampler(
            [ref], interval=interval, port=port, samples_stream=csv_stream,
            on_sample=show if live else None,
        )
        sampler.start()
        try:
            end = time.monotonic() + duration
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 0.5))
        except KeyboardInterrupt:
            pass
        finally:
            summary = sampler.stop()
        return summary
    finally:
        if owned is not None:
            owned.close()
