import pytest
from hypothesis import given, strategies as st

from tcpstress.load import schedule
from tcpstress.sharding import check_shard_fits, parse_shard, parse_start_at
from tcpstress.scenario import ScenarioError, build


@given(st.integers(1, 40), st.integers(1, 8), st.integers(0, 100_000))
def test_shards_times_workers_split_connections_exactly(shards, workers, total):
    parts = [schedule.split_evenly(total, shards * workers, i + shards * k)
             for i in range(shards) for k in range(workers)]
    assert sum(parts) == total and max(parts) - min(parts) <= 1


@given(st.integers(1, 12), st.integers(1, 4), st.floats(1, 2000), st.floats(0.1, 3))
def test_shards_times_workers_split_the_schedule_exactly(shards, workers, rate, duration):
    ops = sorted(n for i in range(shards) for k in range(workers)
                 for n, _ in schedule.worker_operations(i + shards * k, shards * workers, duration, rate))
    assert ops == list(range(schedule.operations_due(duration, rate)))


def test_parse_shard():
    assert parse_shard("2/5").pair == (2, 5)
    assert parse_shard("env", {"JOB_COMPLETION_INDEX": "3", "TCPSTRESS_SHARDS": "4"}).pair == (3, 4)
    for bad in ["5/5", "-1/3", "a/b", "1"]:
        with pytest.raises(ScenarioError):
            parse_shard(bad)
    with pytest.raises(ScenarioError, match="JOB_COMPLETION_INDEX"):
        parse_shard("env", {})


def test_parse_start_at():
    now = 1_800_000_000.0
    assert parse_start_at("2027-01-15T08:00:05Z", now=1_800_000_000.0) == 1_800_000_005.0
    with pytest.raises(ScenarioError, match="in the past"):
        parse_start_at("2027-01-15T07:59:00Z", now=now)
    with pytest.raises(ScenarioError, match="more than an hour"):
        parse_start_at("2027-01-15T10:00:00Z", now=now)
    with pytest.raises(ScenarioError, match="time zone"):
        parse_start_at("2027-01-15T08:00:05", now=now)


def test_shard_must_leave_every_worker_a_connection():
    s = build({"target": {"host": "127.0.0.1", "port": 80}, "load": {"connections": 3, "workers": 1}})
    check_shard_fits(s, (0, 3))
    with pytest.raises(ScenarioError, match="4 shards x 1 workers exceed load.connections"):
        check_shard_fits(s, (0, 4))
