"""The sampler's host row: /proc/stat differences as busy CPU (100 = one core) and steal."""

from __future__ import annotations

from tcpstress.sampler.hostcpu import HostCpuMeter


def test_busy_and_steal_from_two_readings(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    meter = HostCpuMeter(str(stat))
    meter.cores = 2
    stat.write_text("cpu  250 0 150 850 0 0 0 50 0 0\n")  # +150 user, +50 system, +50 idle, +50 steal
    host = meter.measure()
    assert host is not None
    assert round(host.busy_percent, 1) == round(100 * 2 * 200 / 300, 1)
    assert round(host.steal_percent, 1) == round(100 * 50 / 300, 1)


def test_unreadable_stat_gives_no_row(tmp_path):
    meter = HostCpuMeter(str(tmp_path / "missing"))
    assert meter.measure() is None
