
import heapq
import itertools

import pytest
from hypothesis import given, settings, strategies as st

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


class VirtualClock:
    """The engines' clock in these tests: it only moves when the test moves it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _engine(rate, duration, clock, workers=1, index=0, ramp=0.0, connections=1000):
    s = build({"target": {"host": "127.0.0.1", "port": 9}, "load": {
        "model": "open", "rate": rate, "duration": duration, "ramp": ramp, "connections": connections},
        "connection": {"keepalive": False}})
    plan = WorkerPlan(scenario=s, family=2, sockaddr=("127.0.0.1", 9), index=index, workers=workers,
                      t_start=0.0, t0=0.0, t_end=duration)
    return Engine(plan, emit=lambda m: None, clock=clock)


def _run_virtual(engines, clock, log, op_seconds):
    """Drive the engines' open-model dispatchers as their epoll loop does, with the socket
    work replaced: an operation 'runs' for op_seconds of virtual time, and the clock jumps
    to whatever is due next (an operation's start or an operation's end)."""
    finishes = []
    seq = itertools.count()

    def fake_begin(eng):
        def begin(slot, n, intended):
            start = eng.now()
            eng.rec.started(start, start - intended, 0.001)
            log.append((n, intended, start))
            heapq.heappush(finishes, (start + op_seconds, next(seq), eng, slot))
        return begin

    for eng in engines:
        eng.begin_operation = fake_begin(eng)
        eng.start_schedule()
    while True:
        due = [t for t in (eng.dispatch_due() for eng in engines) if t is not None]
        if finishes:
            due.append(finishes[0][0])
        if not due:
            return
        clock.t = min(due)
        while finishes and finishes[0][0] <= clock.t:
            _, _, eng, slot = heapq.heappop(finishes)
            eng.t = clock.t
            eng.finish_operation(slot)


@pytest.mark.parametrize("workers", [1, 3])
def test_open_model_starts_on_schedule_in_virtual_time(workers):
    """Each worker starts its operations at their intended times; together they are the whole schedule."""
    starts = []
    clock = VirtualClock()
    engines = [_engine(rate=50, duration=2.0, clock=clock, workers=workers, index=i) for i in range(workers)]
    _run_virtual(engines, clock, starts, op_seconds=0.5)  # slower than the gap: overlap allowed
    ns = sorted(n for n, _, _ in starts)
    assert ns == list(range(100))
    for n, intended, actual in starts:
        assert intended == pytest.approx(n / 50)
        assert actual == pytest.approx(intended)


def test_open_model_counts_late_starts_when_capacity_runs_out():
    """With one slot and operations slower than the gap, starts fall behind and are counted as late."""
    starts = []
    clock = VirtualClock()
    eng = _engine(rate=10, duration=1.0, clock=clock, connections=1)
    _run_virtual([eng], clock, starts, op_seconds=0.2)  # twice the 0.1 s gap
    # operation n starts at 0.2 n instead of 0.1 n: every one after the first is late
    lags = [actual - intended for _, intended, actual in starts]
    assert lags[0] == pytest.approx(0) and all(lag > 0.05 for lag in lags[1:])
    late = sum(b.late_starts for b in eng.rec.open.values())
    # the recorder counts starts inside the measured second [0, 1)
    assert late == len([1 for _, intended, actual in starts if actual - intended > 0.001 and actual < 1.0]) >= 4


# --- stages: the piecewise schedule -------------------------------------------------

from tcpstress.scenario import Stage  # noqa: E402

stage_lists = st.lists(st.tuples(st.floats(1, 5000), st.integers(1, 4), st.floats(0, 1)), min_size=1, max_size=4)


def _stages(spec):
    return [Stage(rate=r, lasts=float(n), ramp=n * part) for r, n, part in spec]


def test_flat_stages_are_evenly_spaced_within_each_stage():
    p = schedule.Piecewise.of_stages([Stage(10, 2), Stage(20, 1)])
    times = [p.intended_start(n) for n in range(40)]
    assert times[:20] == pytest.approx([n / 10 for n in range(20)])
    assert times[20:40] == pytest.approx([2 + k / 20 for k in range(20)])
    assert p.operations_due(2.0) == 20 and p.operations_due(3.0) == 40


def test_a_stage_ramps_from_the_previous_rate():
    # 100/s for 1 s, then a 1 s ramp from 100 to 300: 100 + 200 operations in those 2 s
    p = schedule.Piecewise.of_stages([Stage(100, 1), Stage(300, 2, ramp=1)])
    assert p.cumulative(2.0) == pytest.approx(300)
    assert p.cumulative(3.0) == pytest.approx(600)
    gaps = [p.intended_start(n + 1) - p.intended_start(n) for n in range(99, 300)]
    assert all(b <= a + 1e-12 for a, b in zip(gaps, gaps[1:]))  # the rate only rises during the ramp


def test_warmup_runs_at_the_first_stage_rate():
    p = schedule.Piecewise.of_stages([Stage(50, 1), Stage(100, 1)], warmup=2.0)
    assert p.cumulative(2.0) == pytest.approx(100)
    assert p.intended_start(100) == pytest.approx(2.0)
    assert p.cumulative(4.0) == pytest.approx(250)


@given(stage_lists, st.integers(0, 20_000))
def test_piecewise_due_inverts_intended(spec, n):
    p = schedule.Piecewise.of_stages(_stages(spec))
    t = p.intended_start(n)
    assert p.operations_due(t + 1e-6) >= n + 1
    assert p.operations_due(max(t - 1e-6, 0)) <= n + 1


@settings(deadline=None)  # up to ~60,000 operations a case: slow on a busy shared machine, not wrong
@given(stage_lists, st.integers(1, 16), st.floats(0.1, 1))
def test_piecewise_worker_shares_add_up_exactly(spec, workers, part):
    p = schedule.Piecewise.of_stages(_stages(spec))
    duration = sum(n for _, n, _ in spec) * part
    shares = [list(p.worker_operations(w, workers, duration)) for w in range(workers)]
    ns = sorted(n for share in shares for n, _ in share)
    assert ns == list(range(p.operations_due(duration)))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    starts = sorted(t for share in shares for _, t in share)
    assert all(t < duration for t in starts)


def test_one_flat_stage_is_the_plain_schedule():
    p = schedule.Piecewise.of_stages([Stage(37.5, 3)])
    for n in range(0, 112, 7):
        assert p.intended_start(n) == pytest.approx(schedule.intended_start(n, 37.5))
    assert p.operations_due(2.5) == schedule.operations_due(2.5, 37.5)


def test_engine_follows_the_stages_in_virtual_time():
    """Two workers together start 10/s for 1 s then 40/s for 1 s, each at its intended time."""
    starts = []
    s = build({"target": {"host": "127.0.0.1", "port": 9}, "load": {
        "stage": [{"rate": 10, "lasts": "1s"}, {"rate": 40, "lasts": "1s"}], "connections": 100},
        "connection": {"keepalive": False}})
    clock = VirtualClock()
    engines = [Engine(WorkerPlan(scenario=s, family=2, sockaddr=("127.0.0.1", 9), index=index, workers=2,
                                 t_start=0.0, t0=0.0, t_end=2.0), emit=lambda m: None, clock=clock)
               for index in range(2)]
    _run_virtual(engines, clock, starts, op_seconds=0.05)
    assert sorted(n for n, _, _ in starts) == list(range(50))
    in_first = [1 for _, intended, _ in starts if intended < 1.0]
    assert len(in_first) == 10
    for n, intended, actual in starts:
        assert actual == pytest.approx(intended)
        assert intended == pytest.approx(n / 10 if n < 10 else 1 + (n - 10) / 40)
