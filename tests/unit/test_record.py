"""The typed run record: Interval.merge, the JSON round trips, and every fixture's result.json read back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpstress import results
from tcpstress.load.processes import IntervalMerger
from tcpstress.load.recorder import Recorder
from tcpstress.record import Interval, NamedCounts, RecordError, RunRecord, Summary, merge_all
from tcpstress.report.rundata import load_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
FIXTURE_RESULTS = sorted(FIXTURES.rglob("result.json"))

names = st.sampled_from(["ECONNREFUSED", "HTTP 503", "timeout", "ECONNRESET"])
counts = st.dictionaries(names, st.integers(0, 10_000), max_size=3)
latencies = st.lists(st.integers(1, 5_000_000), max_size=40)


def hist_of(values: list[int]) -> results.HdrHistogram:
    h = results.new_histogram()
    results.record_counts(h, Counter(values))
    return h


@st.composite
def intervals(draw, t: float | None = None) -> Interval:
    hists = {m: hist_of(v) for m in ("total", "connect", "corrected")
             if (v := draw(latencies))}
    named = {n: NamedCounts(draw(st.integers(0, 50)), draw(st.integers(0, 5)), hist_of(v) if (v := draw(latencies)) else None)
             for n in draw(st.lists(st.sampled_from(["GET /", "POST /api"]), max_size=2, unique=True))}
    partial = draw(st.none() | st.floats(0.0, 1.0).map(lambda x: round(x, 3)))
    return Interval(
        t=float(draw(st.integers(0, 30))) if t is None else t,
        duration=draw(st.sampled_from([1.0, 0.5, 0.25])),
        requests=draw(st.integers(0, 100_000)), connections=draw(st.integers(0, 10_000)),
        errors=Counter(draw(counts)), started=draw(st.none() | st.integers(0, 100_000)),
        late_starts=draw(st.integers(0, 100)), max_lag_us=draw(st.integers(0, 10**7)),
        status=Counter(draw(st.dictionaries(st.sampled_from(["200", "204", "404", "503"]), st.integers(0, 99),
                                            max_size=3))),
        anomalies=Counter(draw(st.dictionaries(st.sampled_from(["close timeout", "unsolicited data"]),
                                               st.integers(0, 9), max_size=2))),
        tls_handshakes=draw(st.integers(0, 50)), tls_resumed=draw(st.integers(0, 50)),
        hists=hists, by_name=named, partial=partial, complete=partial is None)


# --- merge ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intervals(t=3.0), intervals(t=3.0))
def test_merge_adds_counts_and_histograms_exactly(a, b):
    a_json, b_json = a.to_json(wire=True), b.to_json(wire=True)
    m = a.merge(b)
    assert (a.to_json(wire=True), b.to_json(wire=True)) == (a_json, b_json)  # inputs unchanged
    assert m.requests == a.requests + b.requests and m.connections == a.connections + b.connections
    assert m.errors == Counter({k: a.errors[k] + b.errors[k] for k in a.errors | b.errors})
    assert m.status == Counter({k: a.status[k] + b.status[k] for k in a.status | b.status})
    assert m.late_starts == a.late_starts + b.late_starts
    assert m.max_lag_us == max(a.max_lag_us, b.max_lag_us)
    assert m.duration == max(a.duration, b.duration)
    assert (m.tls_handshakes, m.tls_resumed) == (a.tls_handshakes + b.tls_handshakes, a.tls_resumed + b.tls_resumed)
    if a.started is None and b.started is None:
        assert m.started is None
    else:
        assert m.started == (a.started or 0) + (b.started or 0)
    for metric in set(a.hists) | set(b.hists):
        # The witness: one histogram that recorded both intervals' values.
        both = results.new_histogram()
        for h in (a.hists.get(metric), b.hists.get(metric)):
            if h is not None:
                results.add_histogram(both, h)
        assert list(m.hists[metric].counts) == list(both.counts), metric
        assert m.hists[metric] is not a.hists.get(metric) and m.hists[metric] is not b.hists.get(metric)
    for name in set(a.by_name) | set(b.by_name):
        parts = [x.by_name[name] for x in (a, b) if name in x.by_name]
        assert m.by_name[name].requests == sum(p.requests for p in parts)
    assert m.complete == (a.complete or b.complete)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intervals(t=1.0), intervals(t=1.0), intervals(t=1.0))
def test_merge_is_commutative_and_associative(a, b, c):
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c)) == merge_all([a, b, c])


# --- JSON ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intervals())
def test_wire_form_round_trips(iv):
    wire = json.loads(json.dumps(iv.to_json(wire=True)))
    back = Interval.from_json(wire)
    assert back == iv
    assert back.to_json(wire=True) == wire


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intervals())
def test_result_form_round_trips_without_histograms(iv):
    settled = iv.settle()
    written = json.loads(json.dumps(settled.to_json()))
    assert "h" not in written and "by_name" not in written and "partial" not in written
    assert written["latency_us"] == results.interval_percentiles(iv.hist("total"))
    assert Interval.from_json(written).to_json() == written
    assert Interval.from_json(written) == settled


def test_a_worker_message_is_the_wire_form_of_the_recorders_interval():
    r = Recorder(t0=10.0, t_end=11.5)
    r.request(10.2, 0.002, 0.001, status=200, name="GET /")
    r.failed_response(10.3, 0.004, 503, name="GET /")
    r.tls_handshake(10.4, 0.003, resumed=True)
    r.anomaly(10.5, "close timeout")
    r.started(10.6, 0.2, 0.1)
    first, second = r.take_all()
    assert first["type"] == "interval"
    iv = Interval.from_json(first)
    assert (iv.t, iv.duration, iv.requests, iv.started, iv.late_starts) == (0.0, 1.0, 1, 1, 1)
    assert iv.errors == {"HTTP 503": 1} and iv.status == {"200": 1, "503": 1}
    assert (iv.tls_handshakes, iv.tls_resumed) == (1, 1) and iv.anomalies == {"close timeout": 1}
    assert iv.hists["total"].get_total_count() == 1 and iv.hists["error"].get_total_count() == 1
    assert iv.by_name["GET /"].requests == 1 and iv.by_name["GET /"].errors == 1
    assert Interval.from_json(second).duration == 0.5  # the last second of a 1.5 s run


def test_the_merger_closes_a_cut_short_second_at_its_real_length():
    m = IntervalMerger(2, 2.0)
    for stop in (1.3, 1.6):  # both workers cut short: the second lasted as long as the longer one ran
        r = Recorder(t0=0.0, t_end=2.0)
        r.request(0.5, 0.001, 0.001)
        r.request(stop - 0.1, 0.001, 0.001)
        for msg in r.take_complete(stop) + r.take_partial(stop):
            m.add(msg)
    closed = m.finalize_upto(1)
    assert [iv.duration for iv in closed] == [1.0, 0.6]
    assert [iv.requests for iv in m.final] == [2, 2]
    assert all(not iv.hists for iv in m.final) and m.final[0].latency_us["max"] > 0


def test_bad_interval_fields_are_named():
    with pytest.raises(RecordError, match=r"intervals\[2\]\.requests must be a whole number"):
        Interval.from_json({"t": 0.0, "requests": "many"}, "intervals[2]")
    with pytest.raises(RecordError, match=r"errors must be an object"):
        Interval.from_json({"t": 0.0, "errors": [1]})
    with pytest.raises(RecordError, match="has no t"):
        Interval.from_json({"requests": 1})


def test_summary_from_intervals_matches_the_sum_of_its_seconds():
    ivs = [Interval(t=0.0, requests=10, errors=Counter({"x": 1}), started=12, status=Counter({"200": 10})),
           Interval(t=1.0, duration=0.5, requests=4, started=None, late_starts=2, max_lag_us=7)]
    s = Summary.from_intervals(ivs, {"total": hist_of([100] * 14)})
    assert (s.duration_s, s.requests, s.error_total, s.started, s.late_starts, s.max_lag_us) == (1.5, 14, 1, 12, 2, 7)
    assert s.requests_per_s == round(14 / 1.5, 1) and s.status == {"200": 10}
    assert Summary.from_json(s.to_json()) == s


# --- every fixture ---------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_RESULTS, ids=lambda p: str(p.parent.relative_to(FIXTURES)))
def test_every_fixture_reads_as_a_record_and_writes_back_the_same(path):
    data = json.loads(path.read_text())
    record = RunRecord.from_json(data)
    assert record.to_json() == data
    assert list(record.to_json()) == list(data)  # key order kept too
    assert len(record.intervals) == len(data["intervals"])
    assert record.summary is not None and record.summary.requests == data["summary"]["requests"]
    assert sum(iv.requests for iv in record.intervals) == data["summary"]["requests"]


@pytest.mark.parametrize("path", FIXTURE_RESULTS, ids=lambda p: str(p.parent.relative_to(FIXTURES)))
def test_run_data_rebuilds_the_fixtures_scenario(path):
    run = load_run(path.parent)
    recorded = json.loads(path.read_text())["scenario"]
    assert run.scenario.load.connections == recorded["load"]["connections"]
    assert run.scenario.load.model == recorded["load"]["model"]
    assert run.scenario.connection.keepalive == recorded["connection"]["keepalive"]
    assert run.scenario.target.port == recorded["target"]["port"]
    assert dict(run.scenario) == recorded  # the dict view is still what the file holds
    assert run.intervals[0].t == 0.0


def test_an_in_progress_result_has_no_summary():
    data = {"format": results.FORMAT, "name": "x", "variant": None, "partial": False, "partial_reason": None,
            "scenario": {}, "intervals": [Interval(t=0.0).settle().to_json()], "summary": {}}
    record = RunRecord.from_json(data)
    assert record.summary is None and record.to_json() == data


def test_another_format_is_refused():
    with pytest.raises(RecordError, match="tcpstress-result/2"):
        RunRecord.from_json({"format": "tcpstress-result/2", "intervals": [], "summary": {}})


# --- the shard merge sums the same Interval -----------------------------------------------


def test_merged_seconds_keep_started_when_the_shards_counted_it(tmp_path):
    from tcpstress.merge import merge_runs
    from tests.unit.test_merge import make_shard

    def counted(i):
        def edit(data):
            for k, iv in enumerate(data["intervals"]):
                iv["started"] = 100 * (i + 1) + k
                iv["status"] = {"200": iv["requests"]}
        return edit

    with_starts = [make_shard(tmp_path / f"a{i}", i, 2, [[100, 200], [300]], hostname=f"h{i}", open_model=True,
                              edit=counted(i)) for i in range(2)]
    merged = json.loads((merge_runs(with_starts, tmp_path / "a").folder / "result.json").read_text())
    assert [iv["started"] for iv in merged["intervals"]] == [100 + 200, 101 + 201]
    assert merged["summary"]["started"] == 602
    assert [iv["status"] for iv in merged["intervals"]] == [{"200": 4}, {"200": 2}]

    # Shards from a runner that did not count starts: the merge does not claim 0 for them.
    without = [make_shard(tmp_path / f"b{i}", i, 2, [[100, 200], [300]], hostname=f"h{i}") for i in range(2)]
    merged = json.loads((merge_runs(without, tmp_path / "b").folder / "result.json").read_text())
    assert all("started" not in iv for iv in merged["intervals"]) and "started" not in merged["summary"]
    assert [iv["requests"] for iv in merged["intervals"]] == [4, 2]


def _worker_reports(drop_last: bool) -> str:
    """A worker's real messages (a Recorder's seconds, its "done" totals) through the
    runner's bookkeeping; the last second left out when `drop_last`."""
    from tcpstress.load.processes import WorkerHandle, WorkerPool

    r = Recorder(t0=0.0, t_end=2.0)
    for t in (0.2, 0.4, 1.5):
        r.connected(t, 0.0001)
        r.request(t, 0.001, 0.001)
    msgs = r.take_all()
    pool, handle = WorkerPool(1), WorkerHandle(name="worker-0", proc=None)  # type: ignore[arg-type]
    for msg in msgs[:-1] if drop_last else msgs:
        pool._note(handle, msg)
    pool._note(handle, {"type": "done", "requests": r.requests_total, "connections": r.connections_total,
                        "in_flight": 0})
    return handle.lost_counts()


def test_the_runner_notices_a_second_a_worker_counted_and_never_sent():
    assert _worker_reports(drop_last=False) == ""
    assert _worker_reports(drop_last=True) == \
        "worker-0 counted 3 requests, 2 in its seconds; 3 connections, 2 in its seconds"
