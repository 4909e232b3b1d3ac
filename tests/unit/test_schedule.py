
import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from tcpstress.load import schedule
from tcpstress.load.engine import Engine, WorkerPlan
from tcpstress.scenario import build


def test_even_schedule():
    assert [schedule.intended_start(n, 4) for n in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]
    assert schedule.operations_due(1.0, 4) == 4
    assert schedule.operations_due(1.01, 4) == 5


def test_ramp_schedule_is_monotonic_and_reaches_rate():
    rate, ramp = 100.0, 2.0
    times = [schedule.intended_start(n, rate, ramp) for n in range(500)]
    assert all(b > a for a, b in zip(times, times[1:]))
    # during the ramp the count due is rate t^2 / (2 ramp): 100 ops by t = 2 s
    assert schedule.operations_due(2.0, rate, ramp) == 100
    # after it, exactly 1/rate apart
    assert times[300] - times[299] == pytest.approx(1 / rate)


@given(st.floats(1, 1e5), st.floats(0, 10), st.integers(0, 100_000))
def test_due_inverts_intended(rate, ramp, n):
    t = schedule.intended_start(n, rate, ramp)
    # operation n is due by any time after its start, and not before
    assert schedule.operations_due(t + 1e-6, rate, ramp) >= n + 1 - 1e-9
    assert schedule.operations_due(max(t - 1e-6, 0), rate, ramp) <= n + 1


@given(st.integers(1, 16), st.floats(1, 5000), st.floats(0.1, 5), st.floats(0, 1))
def test_worker_shares_add_up_exactly(workers, rate, duration, ramp_part):
    ramp = duration * ramp_part
    shares = [list(schedule.worker_operations(w, workers, duration, rate, ramp)) for w in range(workers)]
    ns = sorted(n for share in shares for n, _ in share)
    assert ns == list(range(schedule.operations_due(duration, rate, ramp)))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(0, 10**6), st.integers(1, 64))
def test_split_evenly(total, parts):
    shares = [schedule.split_evenly(total, parts, i) for i in range(parts)]
    assert sum(shares) == total and max(shares) - min(shares) <= 1


def _engine(rate, duration, workers=1, index=0, ramp=0.0, connections=1000):
    s = build({"target": {"host": "127.0.0.1", "port": 9}, "load": {
        "model": "open", "rate": rate, "duration": duration, "ramp": ramp, "connections": connections},
        "connection": {"keepalive": False}})
    plan = WorkerPlan(scenario=s, family=2, sockaddr=("127.0.0.1", 9), index=index, workers=workers,
                      t_start=0.0, t0=0.0, t_end=duration)
    return Engine(plan, emit=lambda m: None, clock=trio.current_time)


def _fake_operations(eng, nursery, log, op_seconds):
    """Replace the socket work: an operation 'runs' for op_seconds of virtual time."""

    async def finish_later(slot):
        await trio.sleep(op_seconds)
        eng.finish_operation(slot)

    def begin(slot, n, intended):
        start = eng.now()
        eng.rec.started(start, start - intended, 0.001)
        log.append((n, intended, start))
        nursery.start_soon(finish_later, slot)

    eng.begin_operation = begin


@pytest.mark.parametrize("workers", [1, 3])
def test_open_model_starts_on_schedule_in_virtual_time(workers):
    """Each worker starts its operations at their intended times; together they are the whole schedule."""
    starts = []

    async def one_worker(index):
        eng = _engine(rate=50, duration=2.0, workers=workers, index=index)
        async with trio.open_nursery() as nursery:
            _fake_operations(eng, nursery, starts, op_seconds=0.5)  # slower than the gap: overlap allowed
            await eng.open_dispatch()

    async def main():
        async with trio.open_nursery() as workers_nursery:
            for index in range(workers):
                workers_nursery.start_soon(one_worker, index)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ns = sorted(n for n, _, _ in starts)
    assert ns == list(range(100))
    for n, intended, actual in starts:
        assert intended == pytest.approx(n / 50)
        assert actual == pytest.approx(intended)


def test_open_model_counts_late_starts_when_capacity_runs_out():
    """With one slot and operations slower than the gap, starts fall behind and are counted as late."""
    starts = []

    async def main():
        eng = _engine(rate=10, duration=1.0, connections=1)
        async with trio.open_nursery() as nursery:
            _fake_operations(eng, nursery, starts, op_seconds=0.2)  # twice the 0.1 s gap
            await eng.open_dispatch()
        return eng

    eng = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # operation n starts at 0.2 n instead of 0.1 n: every one after the first is late
    lags = [actual - intended for _, intended, actual in starts]
    assert lags[0] == pytest.approx(0) and all(lag > 0.05 for lag in lags[1:])
    late = sum(b.late_starts for b in eng.rec.open.values())
    # the recorder counts starts inside the measured second [0, 1)
    assert late == len([1 for _, intended, actual in starts if actual - intended > 0.001 and actual < 1.0]) >= 4
