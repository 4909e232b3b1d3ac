"""Host-wide CPU, steal and load: what every process on the machine used, not only ours.

A late open model is blamed on the generator only when the generator was
the busy one; on a shared machine other processes (or a hypervisor's steal)
can starve it while its own CPU looks modest, and the report needs this row
to tell the two apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal guest guest_nice.
# guest and guest_nice are already counted in user and nice.
_IDLE_FIELDS = (3, 4)  # idle, iowait
_STEAL_FIELD = 7


@dataclass(frozen=True)
class HostCpu:
    """One interval of the whole machine's CPU: 100 = one core, as for processes."""

    busy_percent: float  # all cores together, steal excluded
    steal_percent: float  # share of the interval the hypervisor took, in % of all cores (0-100)
    load1: float  # 1-minute load average
    cores: int


def _read_cpu_line(path: str = "/proc/stat") -> list[int] | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu "):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


class HostCpuMeter:
    """Differences of /proc/stat between two readings; the first reading only sets the baseline."""

    def __init__(self, stat_path: str = "/proc/stat") -> None:
        self._path = stat_path
        self._last = _read_cpu_line(stat_path)
        self.cores = os.cpu_count() or 1

    def measure(self) -> HostCpu | None:
        now = _read_cpu_line(self._path)
        last, self._last = self._last, now
        if now is None or last is None or len(now) < 4:
            return None
        delta = [a - b for a, b in zip(now[:8], last[:8])]
        # guest time is inside user time: summing the first 8 fields counts each tick once.
        total = sum(delta)
        if total <= 0:
            return None
        idle = sum(delta[i] for i in _IDLE_FIELDS if i < len(delta))
        steal = delta[_STEAL_FIELD] if len(delta) > _STEAL_FIELD else 0
        busy = total - idle - steal
        try:
            load1 = os.getloadavg()[0]
        except OSError:
            load1 = 0.0
        return HostCpu(busy_percent=100.0 * self.cores * busy / total,
                       steal_percent=100.0 * steal / total, load1=load1, cores=self.cores)
