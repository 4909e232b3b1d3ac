import json
from collections import Counter

import pytest
from hdrh.log import HistogramLogReader
from hypothesis import given, settings, strategies as st

from tcpstress import results
from tcpstress.load.processes import IntervalMerger
from tcpstress.load.recorder import Recorder
from tcpstress.record import Interval

values = st.lists(st.integers(1, 10**7), min_size=0, max_size=300)


@given(values, st.integers(1, 5))
@settings(max_examples=60)
def test_merging_encoded_parts_equals_recording_everything(vals, parts):
    whole = results.new_histogram()
    for v in vals:
        whole.record_value(v)
    merged = results.new_histogram()
    for k in range(parts):
        part = results.new_histogram()
        results.record_counts(part, Counter(vals[k::parts]))
        merged.add(results.decode(results.encode(part)))
    assert merged.get_total_count() == len(vals)
    for p in (50, 90, 99, 99.9, 100):
        assert merged.get_value_at_percentile(p) == whole.get_value_at_percentile(p)


def test_hlog_round_trip_with_the_hdrhistogram_reader(tmp_path):
    path = tmp_path / "latency-total.hlog"
    w = results.HlogWriter(path, start_epoch=1_700_000_000.0, comment="test")
    written = []
    for i in range(3):
        h = results.new_histogram()
        for v in range(100 * (i + 1), 100 * (i + 1) + 50):
            h.record_value(v)
        w.write(float(i), 1.0, h)
        written.append(h)
    w.close()
    ours = results.read_hlog(path)
    assert [(start, length) for start, length, _ in ours] == [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]
    reader = HistogramLogReader(str(path), results.new_histogram())
    theirs = []
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        theirs.append(h)
    assert len(theirs) == 3
    for a, b in zip(theirs, written):
        assert a.get_total_count() == b.get_total_count() == 50
        assert a.get_max_value() == b.get_max_value()
    assert results.merged_hlog(path).get_total_count() == 150


def test_corrupt_hlog_is_refused(tmp_path):
    p = tmp_path / "x.hlog"
    p.write_text("0.0,1.0,1.0,not-base64!!\n")
    with pytest.raises(results.ResultError, match="corrupt interval histogram"):
        results.read_hlog(p)


def test_load_result_refuses_non_runs(tmp_path):
    with pytest.raises(results.ResultError, match="no result.json"):
        results.load_result(tmp_path)
    (tmp_path / "result.json").write_text('{"format": "tcpstress-result/1", "scen')
    with pytest.raises(results.ResultError, match="not valid JSON"):
        results.load_result(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({"format": "tcpstress-result/1", "scenario": {}}))
    with pytest.raises(results.ResultError, match="missing intervals, summary"):
        results.load_result(tmp_path)


def test_write_atomic_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a.json"
    results.write_atomic(target, "one")
    results.write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_recorder_buckets_by_completion_second_and_drops_warmup():
    r = Recorder(t0=100.0, t_end=103.0)
    r.request(99.5, 0.001, 0.0005)  # warm-up: dropped
    r.request(100.2, 0.001, 0.0005)
    r.request(101.9, 0.002, 0.001)
    r.error(101.0, "ECONNREFUSED")
    r.request(103.0, 0.001, 0.001)  # at t_end: dropped
    msgs = r.take_complete(102.5)
    assert [m["t"] for m in msgs] == [0.0, 1.0]
    assert [m["requests"] for m in msgs] == [1, 1]
    assert msgs[1]["errors"] == {"ECONNREFUSED": 1}
    rest = r.take_all()
    assert [m["t"] for m in rest] == [2.0] and rest[0]["requests"] == 0  # empty seconds are reported too
    assert r.requests_total == 2


def test_take_all_sends_every_second_where_the_clock_crosses_a_power_of_two():
    # A CI run lost the second second of a 2 s run: its t0 was 511.42 s of monotonic
    # time, and (t0 + 2.0) - t0 can round below 2.0 when t0 + 2.0 is past 512.
    t0 = 510.2687284882248  # one such time (the run's own is known to 1e-7 s only)
    assert (t0 + 2.0) - t0 < 2.0  # the rounding this test is about
    r = Recorder(t0=t0, t_end=t0 + 2.0)
    r.request(t0 + 0.5, 0.001, 0.001)
    r.request(t0 + 1.5, 0.001, 0.001)
    msgs = r.take_all()
    assert [(m["t"], m["requests"]) for m in msgs] == [(0.0, 1), (1.0, 1)]


def test_merger_sums_workers_and_closes_intervals_in_order():
    m = IntervalMerger(3)
    for worker in range(2):
        r = Recorder(t0=0.0, t_end=3.0)
        for i in range(3):
            r.request(i + 0.5, 0.001 * (worker + 1), 0.0005)
        for msg in r.take_all():
            m.add(msg)
    done = m.finalize_upto(1)
    assert [a.index for a in done] == [0, 1]
    assert m.finalize_upto(5)[0].index == 2
    assert m.hists["total"].get_total_count() == 6
    assert sum(a.requests for a in m.final) == 6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60_000_000), st.integers(1, 1000)), min_size=1, max_size=300))
def test_percentiles_agree_with_hdrh_walking_every_bucket(recorded):
    """percentiles() walks the counts once; hdrh's own get_mean_value() and
    get_value_at_percentile() are the witness it must match exactly."""
    from tcpstress.results import PERCENTILES, new_histogram, percentiles

    hist = new_histogram()
    for value, count in recorded:
        hist.record_value(value, count)
    got = percentiles(hist)
    assert got["mean"] == round(hist.get_mean_value(), 1)
    for name, p in PERCENTILES:
        assert got[name] == hist.get_value_at_percentile(p), name
    assert (got["min"], got["max"], got["count"]) == (hist.get_min_value(), hist.get_max_value(),
                                                     sum(c for _, c in recorded))


class _CountingInterval:
    def __init__(self, t: int) -> None:
        self.t = t
        self.serialized = 0

    def to_json(self) -> dict:
        self.serialized += 1
        return _interval_json(self.t)


def _interval_json(t: int) -> dict:
    errors = Counter({"ECONNRESET": 1} if t % 2 else {})
    return Interval(t=float(t), duration=1.0, requests=t * 10, errors=errors).settle().to_json()


def test_streamed_result_is_the_run_so_far_and_serializes_each_interval_once(tmp_path):
    streamed = results.StreamedResult(tmp_path)
    meta = {"format": results.FORMAT, "scenario": {"name": "s"}, "partial": True, "partial_reason": "in progress"}
    settled: list[_CountingInterval] = []
    streamed.save(meta, settled)
    assert json.loads((tmp_path / "result.json").read_text()) == dict(meta, intervals=[], summary={})
    for second in range(5):
        settled.append(_CountingInterval(second))
        meta = dict(meta, seconds=second)  # the runner adds keys to meta as the run goes on
        streamed.save(meta, settled)
        on_disk = json.loads((tmp_path / "result.json").read_text())
        assert on_disk == dict(meta, intervals=[_interval_json(t) for t in range(second + 1)], summary={})
    assert [iv.serialized for iv in settled] == [1] * 5
    assert results.load_result(tmp_path).intervals[4]["requests"] == 40
