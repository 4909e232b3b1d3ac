"""merge_runs over synthetic shard folders: real .hlog files, result.json shaped like the runner's."""

from __future__ import annotations

import copy
import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpstress import results
from tcpstress.merge import MergeError, first_difference, merge_runs
from tcpstress.report.diagnose import load_run

T0 = 1_795_871_962.124096

# A real closed-model run's result.json (`tcpstress run --builtin-server --duration 2s`),
# states and counters cut down; shards below vary it.
TEMPLATE = {
    "format": "tcpstress-result/1", "tool_version": "0.1.0", "kernel": "6.18.44", "hostname": "vm",
    "cpu_count": 2, "started_at": "2026-11-28T13:19:21Z", "ended_at": "2026-11-28T13:19:24Z",
    "partial": False, "partial_reason": None, "name": "adhoc", "variant": None,
    "scenario": {
        "name": "adhoc", "description": "",
        "target": {"host": "127.0.0.1", "port": 0, "protocol": "http", "path": "/", "host_header": "",
                   "method": "GET"},
        "server": {"builtin": True, "command": "", "response_size": 64, "close": "client", "backlog": 4096,
                   "workers": 1, "delay": 0.0},
        "load": {"model": "closed", "connections": 10, "rate": 0.0, "ramp": 0.0, "duration": 2.0, "warmup": 0.0,
                 "workers": 1, "max_requests": 0},
        "connection": {"keepalive": True, "requests_per_connection": 0, "close": "client",
                       "connect_timeout": 5.0, "request_timeout": 10.0, "source_addresses": [],
                       "payload_size": 64},
        "sampling": {"interval": 0.1, "port_filter": True},
        "lab": False, "variants": [], "source": "<command line>",
    },
    "sysctls": {},
    "server": {"builtin": True, "pid": 5377, "port": 34277},
    "target": {"host": "127.0.0.1", "port": 34277},
    "t0_epoch": T0,
    "intervals": [],
    "summary": {
        "duration_s": 2.0, "requests": 30494, "connections": 10, "requests_per_s": 15247.0,
        "connections_per_s": 5.0, "errors": {}, "error_total": 0, "intended_rate": None, "late_starts": 0,
        "max_lag_us": 0, "latency_us": {},
        "workers": [{"name": "worker-0", "pid": 5383, "exit": "ok", "requests": 30494, "connections": 10,
                     "errors": {}}],
        "server": {"connections": 10, "requests": 30504},
        "states": {"host": {"TIME_WAIT": {"peak": 10, "final": 10}, "ESTABLISHED": {"peak": 20, "final": 0}}},
        "counters": {"host": {"TcpActiveOpens": 10, "TcpExtListenOverflows": 0}},
        "processes": {"generator": {"cpu_peak": 50.5, "cpu_mean": 32.2, "rss_peak": 29437952, "fds_peak": 19}},
        "sampler": {"host": {"samples": 24, "method": "netlink"}},
    },
}

METRICS3 = ("total", "connect", "ttfb")


def make_shard(folder: Path, index: int | None, count: int, seconds: list[list[int]], *, hostname: str = "vm",
               t0: float = T0, errors: list[dict] | None = None, connections: list[int] | None = None,
               open_model: bool = False, late: list[int] | None = None, lag: list[int] | None = None,
               edit=None) -> Path:
    """A run folder whose second i recorded the latencies seconds[i] (µs), as a shard's runner writes it."""
    folder.mkdir(parents=True)
    data = copy.deepcopy(TEMPLATE)
    data["hostname"] = hostname
    data["t0_epoch"] = t0
    data["shard"] = None if index is None else {"index": index, "count": count}
    data["start_at"] = None
    metrics = METRICS3 + (("corrected",) if open_model else ())
    if open_model:
        data["scenario"]["load"].update(model="open", rate=100.0)
    writers = {m: results.HlogWriter(folder / f"latency-{m}.hlog", t0) for m in metrics}
    whole = {m: results.new_histogram() for m in metrics}
    intervals = []
    for i, values in enumerate(seconds):
        hist = results.new_histogram()
        results.record_counts(hist, Counter(values))
        for m in metrics:
            # corrected = total + 5 µs so the metrics differ and cross-metric mix-ups show
            h = hist if m != "corrected" else _shifted(values, 5)
            writers[m].write(float(i), 1.0, h)
            whole[m].add(h)
        intervals.append({"t": float(i), "duration": 1.0, "requests": len(values),
                          "connections": (connections or [0] * len(seconds))[i],
                          "errors": (errors or [{}] * len(seconds))[i],
                          "late_starts": (late or [0] * len(seconds))[i],
                          "max_lag_us": (lag or [0] * len(seconds))[i],
                          "latency_us": {}})
    for w in writers.values():
        w.close()
    data["intervals"] = intervals
    s = data["summary"]
    s["requests"] = sum(iv["requests"] for iv in intervals)
    s["connections"] = sum(iv["connections"] for iv in intervals)
    s["errors"] = results.merge_error_counts(iv["errors"] for iv in intervals)
    s["error_total"] = sum(s["errors"].values())
    # merge recomputes these from the .hlog files; only the count is kept here (the mean costs ~50 ms each)
    s["latency_us"] = {m: {"count": h.get_total_count()} for m, h in whole.items()}
    if open_model:
        s["intended_rate"] = 100.0
        s["kept_up"] = True
    (folder / "samples.csv").write_text("t,ns,TIME_WAIT,TcpActiveOpens\n-0.1,host,0,0\n0.5,host,3,4\n1.5,host,5,2\n")
    (folder / "processes.csv").write_text("t,role,pids,cpu_percent,rss_bytes,fds\n0.5,generator,11,50.0,100,9\n")
    if edit:
        edit(data)
    (folder / "result.json").write_text(json.dumps(data))
    return folder


def _shifted(values, by):
    h = results.new_histogram()
    results.record_counts(h, Counter(v + by for v in values))
    return h


def recorded(hist) -> list[tuple[int, int]]:
    return [(it.value_iterated_to, it.count_at_value_iterated_to) for it in hist.get_recorded_iterator()]


def hist_of(values) -> results.HdrHistogram:
    h = results.new_histogram()
    results.record_counts(h, Counter(values))
    return h


def read_merged_hlog(path: Path) -> list:
    """Interval histograms as HdrHistogram's own log reader sees them (a witness independent of merge.py)."""
    reader = HistogramLogReader(str(path), results.new_histogram())
    out = []
    while (h := reader.get_next_interval_histogram()) is not None:
        out.append(h)
    return out


def three_shards(tmp_path, **kw) -> list[Path]:
    return [make_shard(tmp_path / f"s{i}", i, 3, [[100 + i, 200], [300 * (i + 1)]], hostname=f"host-{'abc'[i]}",
                       **kw) for i in range(3)]


# --- exact histograms -------------------------------------------------------------

latencies = st.lists(st.integers(1, 5_000_000), min_size=0, max_size=60)


@given(shards=st.lists(st.lists(latencies, min_size=1, max_size=3), min_size=1, max_size=4))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_merged_histograms_equal_the_histogram_of_every_recorded_value(tmp_path_factory, shards):
    base = tmp_path_factory.mktemp("prop")
    folders = [make_shard(base / f"s{i}", i, len(shards), secs, hostname=f"h{i}") for i, secs in enumerate(shards)]
    merged = merge_runs(folders, base / "merged")

    everything = [v for secs in shards for vals in secs for v in vals]
    per_hlog = read_merged_hlog(base / "merged" / "latency-total.hlog")
    whole = results.new_histogram()
    for h in per_hlog:
        whole.add(h)
    assert recorded(whole) == recorded(hist_of(everything))
    assert merged.summary["requests"] == len(everything)
    assert merged.summary["latency_us"]["total"]["count"] == len(everything)
    expected = results.percentiles(hist_of(everything))
    assert merged.summary["latency_us"]["total"] == expected
    # second by second too: second k is the sum of every shard's second k
    longest = max(len(secs) for secs in shards)
    assert len(per_hlog) == longest
    for k in range(longest):
        values_k = [v for secs in shards if k < len(secs) for v in secs[k]]
        assert recorded(per_hlog[k]) == recorded(hist_of(values_k))


def test_metrics_stay_apart_and_corrected_is_merged(tmp_path):
    folders = [make_shard(tmp_path / f"s{i}", i, 2, [[1000 * (i + 1)]], hostname=f"h{i}", open_model=True)
               for i in range(2)]
    merged = merge_runs(folders, tmp_path / "m")
    lat = merged.summary["latency_us"]
    assert lat["total"]["min"] == 1000 and lat["total"]["max"] == 2000
    assert lat["corrected"]["min"] == 1005 and lat["corrected"]["count"] == 2
    assert merged.intervals[0]["corrected_latency_us"]["max"] == 2005
    assert (tmp_path / "m" / "latency-corrected.hlog").is_file()


# --- counts and layout -------------------------------------------------------------


def test_counts_sum_and_rates_are_over_the_merged_duration(tmp_path):
    errs = [[{"ECONNREFUSED": 2}, {}], [{"ECONNREFUSED": 1, "ETIMEDOUT": 4}, {}], [{}, {"request timeout": 1}]]
    folders = [make_shard(tmp_path / f"s{i}", i, 3, [[100] * (i + 1), [200] * 10], hostname=f"h{i}",
                          errors=errs[i], connections=[i + 1, 0], late=[i, 1], lag=[10 * i, 5])
               for i in range(3)]
    merged = merge_runs(folders, tmp_path / "m")
    s = merged.summary
    assert [iv["requests"] for iv in merged.intervals] == [1 + 2 + 3, 30]
    assert merged.intervals[0]["errors"] == {"ECONNREFUSED": 3, "ETIMEDOUT": 4}
    assert s["requests"] == 36 and s["connections"] == 6
    assert s["errors"] == {"ETIMEDOUT": 4, "ECONNREFUSED": 3, "request timeout": 1} and s["error_total"] == 8
    assert s["duration_s"] == 2.0 and s["requests_per_s"] == 18.0
    assert s["late_starts"] == 0 + 1 + 2 + 3 and s["max_lag_us"] == 20
    assert merged.intervals[0]["latency_us"]["max"] == 100
    assert s["server"] == {"connections": 30, "requests": 3 * 30504}
    assert [w["name"] for w in s["workers"]] == ["h0:worker-0", "h1:worker-0", "h2:worker-0"]


def test_merged_folder_reads_back_as_a_run(tmp_path):
    folders = three_shards(tmp_path)
    merge_runs(folders, tmp_path / "m")
    run = load_run(tmp_path / "m")  # the report's own loader: the folder is a valid run folder
    assert run.requests == 9
    assert run.merged("total").get_total_count() == 9
    assert set(run.namespaces) == {"host-a:host", "host-b:host", "host-c:host"}
    assert run.peak("TIME_WAIT", "host-b:host") == 5
    assert [r["role"] for r in run.processes] == ["host-a:generator", "host-b:generator", "host-c:generator"]
    assert set(run.summary["states"]) == {"host-a:host", "host-b:host", "host-c:host"}
    assert run.summary["counters"]["host-c:host"]["TcpActiveOpens"] == 10
    assert run.summary["processes"]["host-a:generator"]["cpu_peak"] == 50.5
    data = run.result.data
    assert data["shard"] is None
    assert [(x["index"], x["hostname"]) for x in data["shards"]] == [(0, "host-a"), (1, "host-b"), (2, "host-c")]
    assert all(x["t0_epoch"] == T0 and Path(x["folder"]).is_absolute() for x in data["shards"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_shards_on_one_host_get_distinct_labels(tmp_path):
    folders = [make_shard(tmp_path / f"s{i}", i, 2, [[100]], hostname="vm") for i in range(2)]
    merged = merge_runs(folders, tmp_path / "m")
    assert set(merged.summary["states"]) == {"vm#0:host", "vm#1:host"}
    assert merged.data["hostname"] == "vm"


def test_a_late_shard_lands_on_the_nearest_second(tmp_path):
    # shard 1 started 0.3 s late (same second), shard 2 0.7 s late (the next second)
    folders = [make_shard(tmp_path / f"s{i}", i, 3, [[100 * (i + 1)] * (i + 1), [1000]], hostname=f"h{i}",
                          t0=T0 + lag) for i, lag in enumerate((0.0, 0.3, 0.7))]
    merged = merge_runs(folders, tmp_path / "m")
    assert [x["offset_s"] for x in merged.data["shards"]] == [0, 0, 1]
    assert [iv["requests"] for iv in merged.intervals] == [1 + 2, 1 + 1 + 3, 1]
    assert [iv["t"] for iv in merged.intervals] == [0.0, 1.0, 2.0]
    assert merged.data["t0_epoch"] == T0
    hl = read_merged_hlog(tmp_path / "m" / "latency-total.hlog")
    assert recorded(hl[1]) == recorded(hist_of([1000, 1000, 300, 300, 300]))
    # kernel samples move by the exact lag, not the rounded one
    with open(tmp_path / "m" / "samples.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["ns"] == "h2:host"]
    assert [float(r["t"]) for r in rows] == pytest.approx([0.6, 1.2, 2.2])
    assert merged.summary["duration_s"] == 3.0


def test_partial_shard_makes_a_partial_merge(tmp_path):
    def crash(d):
        d["partial"], d["partial_reason"] = True, "interrupted by SIGTERM"

    folders = [make_shard(tmp_path / "s0", 0, 2, [[1]], hostname="a"),
               make_shard(tmp_path / "s1", 1, 2, [[1]], hostname="b", edit=crash)]
    merged = merge_runs(folders, tmp_path / "m")
    assert merged.data["partial"] is True
    assert merged.data["partial_reason"] == "shard 1 (b): interrupted by SIGTERM"


def test_open_model_kept_up_only_if_every_shard_did(tmp_path):
    def fell_behind(d):
        d["summary"]["kept_up"] = False

    folders = [make_shard(tmp_path / "s0", 0, 2, [[10] * 50], hostname="a", open_model=True),
               make_shard(tmp_path / "s1", 1, 2, [[10] * 50], hostname="b", open_model=True, edit=fell_behind)]
    merged = merge_runs(folders, tmp_path / "m")
    assert merged.summary["intended_rate"] == 100.0
    assert merged.summary["kept_up"] is False
    ok = [make_shard(tmp_path / f"t{i}", i, 2, [[10] * 50], hostname=f"h{i}", open_model=True) for i in range(2)]
    assert merge_runs(ok, tmp_path / "m2").summary["kept_up"] is True


def test_a_single_unsharded_run_merges_as_itself(tmp_path):
    folder = make_shard(tmp_path / "s", None, 1, [[5, 6], [7]])
    merged = merge_runs([folder], tmp_path / "m")
    assert merged.summary["requests"] == 3


def test_the_scenario_source_may_differ(tmp_path):
    def elsewhere(d):
        d["scenario"]["source"] = "/home/b/scenario.toml"

    folders = [make_shard(tmp_path / "s0", 0, 2, [[1]], hostname="a"),
               make_shard(tmp_path / "s1", 1, 2, [[1]], hostname="b", edit=elsewhere)]
    assert merge_runs(folders, tmp_path / "m").summary["requests"] == 2


def test_an_empty_output_folder_is_used(tmp_path):
    (tmp_path / "m").mkdir()
    merge_runs(three_shards(tmp_path), tmp_path / "m")
    assert (tmp_path / "m" / "result.json").is_file()


# --- refusals ---------------------------------------------------------------------------


def _shards(tmp_path, specs, **kw):
    """specs: (index, count[, edit]) per folder."""
    out = []
    for n, spec in enumerate(specs):
        index, count, *edit = spec
        out.append(make_shard(tmp_path / f"in{n}", index, count, [[100]], hostname=f"h{n}",
                              edit=edit[0] if edit else None, **kw))
    return out


def set_path(dotted, value):
    def edit(d):
        node = d
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


REFUSALS = [
    ("missing", [(0, 4), (1, 4), (3, 4)], "have 0,1,3 of 4: missing 2"),
    ("duplicate", [(0, 2), (1, 2), (1, 2)], "shard 1 of 2 given twice: "),
    ("counts differ", [(0, 2), (1, 3)], "is shard 1 of 3 but "),
    ("not sharded", [(0, 2), (None, 1)], "not a shard (result.json has \"shard\": null)"),
    ("scenario", [(0, 2), (1, 2, set_path("scenario.load.connections", 12))],
     "scenario.load.connections is 12 but 10 in "),
    ("variant", [(0, 2), (1, 2, set_path("variant", "churn"))], "variant is 'churn' but None in "),
    ("bad shard", [(0, 2), (1, 2, set_path("shard", {"index": 2, "count": 2}))],
     "result.json shard is {'index': 2, 'count': 2}; expected"),
    ("no t0", [(0, 2), (1, 2, set_path("t0_epoch", None))], "has no numeric t0_epoch"),
    ("clock", [(0, 2), (1, 2, set_path("t0_epoch", T0 + 1.5))],
     "shard clocks too far apart: "),
]


@pytest.mark.parametrize("specs,message", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_problem_and_write_nothing(tmp_path, specs, message):
    folders = _shards(tmp_path, specs)
    with pytest.raises(MergeError) as e:
        merge_runs(folders, tmp_path / "m")
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_clock_message_says_how_far(tmp_path):
    folders = _shards(tmp_path, [(0, 2), (1, 2, set_path("t0_epoch", T0 + 1.5))])
    with pytest.raises(MergeError, match=r"in1 started 1\.500 s after .*in0 \(more than 1 s\)"):
        merge_runs(folders, tmp_path / "m")
    assert merge_runs(folders, tmp_path / "m", max_clock_skew=2.0).data["shards"][1]["offset_s"] == 2


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    good = make_shard(tmp_path / "s0", 0, 2, [[1]])
    with pytest.raises(MergeError, match=r"empty: no result.json here: not a tcpstress run folder"):
        merge_runs([good, tmp_path / "empty"], tmp_path / "m")
    with pytest.raises(MergeError, match="nowhere: not a folder"):
        merge_runs([tmp_path / "nowhere"], tmp_path / "m")
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "result.json").write_text('{"format": "tcpstress-result/1", "scen')
    with pytest.raises(MergeError, match="not valid JSON"):
        merge_runs([tmp_path / "trunc"], tmp_path / "m")


def test_no_folders(tmp_path):
    with pytest.raises(MergeError, match="no run folders given"):
        merge_runs([], tmp_path / "m")


def test_existing_output_is_refused_and_left_alone(tmp_path):
    folders = three_shards(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match=r"--out .*m: exists and is not an empty folder"):
        merge_runs(folders, tmp_path / "m")
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["keep.txt"]
    with pytest.raises(MergeError, match="exists and is not an empty folder"):
        merge_runs(folders, folders[0])  # into one of its own inputs


def test_a_shard_missing_a_latency_log_is_refused(tmp_path):
    folders = three_shards(tmp_path)
    (folders[1] / "latency-ttfb.hlog").unlink()
    with pytest.raises(MergeError, match=r"s1: no latency-ttfb.hlog but .*s0 has one"):
        merge_runs(folders, tmp_path / "m")


def test_a_corrupt_latency_log_is_refused(tmp_path):
    folders = three_shards(tmp_path)
    with open(folders[2] / "latency-total.hlog", "a") as f:
        f.write("2.000,1.000,0.1,HISTFAAAnotbase64!!\n")
    with pytest.raises(MergeError, match=r"s2/latency-total.hlog:\d+: corrupt interval histogram"):
        merge_runs(folders, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_truncated_samples_row_is_refused(tmp_path):
    folders = three_shards(tmp_path)
    with open(folders[0] / "samples.csv", "a") as f:
        f.write("2.5,host,1\n")
    with pytest.raises(MergeError, match=r"s0/samples.csv:5: 3 fields where the header has 4"):
        merge_runs(folders, tmp_path / "m")


def test_first_difference_paths():
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 1}}) is None
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 2}}) == "a.b"
    assert first_difference({"a": [1, 2]}, {"a": [1, 3]}) == "a.1"
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a"
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b"


def test_an_empty_second_does_not_pin_the_minimum_at_zero(tmp_path):
    # hdrh's add() of an empty histogram into an empty one sets min to 0 for good
    folders = [make_shard(tmp_path / "s0", 0, 2, [[], [700]], hostname="a"),
               make_shard(tmp_path / "s1", 1, 2, [[], [900]], hostname="b")]
    merged = merge_runs(folders, tmp_path / "m")
    assert merged.summary["latency_us"]["total"]["min"] == 700
    assert merged.intervals[0]["latency_us"]["p50"] == 0 and merged.intervals[1]["latency_us"]["max"] == 900


@given(st.lists(st.integers(1, 5_000_000), min_size=0, max_size=200))
@settings(max_examples=40, deadline=None)
def test_interval_percentiles_match_the_runners(values):
    from tcpstress.results import interval_percentiles

    h = hist_of(values)
    full = results.percentiles(h)
    assert interval_percentiles(h) == {k: full[k] for k in ("p50", "p90", "p99", "p99.9", "max")}


# --- the Kubernetes Indexed Job (deploy/kubernetes) -----------------------------------

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def k8s_objects(name: str) -> list[dict]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def k8s_kind(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def k8s_refs(text: str) -> list[str]:
    """$(VAR) references as Kubernetes expands them in command, args and env ($$ escapes)."""
    import re
    return re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text)


def test_the_indexed_job_runs_every_shard_at_once():
    job = k8s_kind(k8s_objects("job.yaml"), "Job")
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 2
    assert spec["backoffLimit"] == 0  # a retried shard cannot rejoin the schedule
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (main,) = pod["containers"]
    env = [e["name"] for e in main["env"]]
    values = {e["name"]: e for e in main["env"]}
    assert values["TCPSTRESS_SHARDS"]["value"] == str(spec["completions"])
    assert values["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert values["START_AT"]["value"] == "@START_AT@"  # the README's sed replaces it
    # Kubernetes leaves an undefined $(VAR) as literal text: every reference must be defined
    command = main["command"] + main.get("args", [])
    for ref in k8s_refs(" ".join(command)):
        assert ref in env, ref
    for i, e in enumerate(main["env"]):
        for ref in k8s_refs(e.get("value", "")):
            assert ref in env[:i], f"{e['name']} uses {ref} before it is defined"
    assert command[:3] == ["tcpstress", "run", "/scenario/scenario.toml"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags["--shard"] == "env" and flags["--start-at"] == "$(START_AT)"
    assert flags["--out"] == "/results/$(JOB_NAME)/shard-$(JOB_COMPLETION_INDEX)"
    assert values["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['job-name']"


def test_the_job_mounts_the_scenario_and_the_shared_results():
    objects = k8s_objects("job.yaml")
    claim = k8s_kind(objects, "PersistentVolumeClaim")
    assert claim["apiVersion"] == "v1" and "ReadWriteMany" in claim["spec"]["accessModes"]
    config = k8s_kind(k8s_objects("configmap.yaml"), "ConfigMap")
    pod = k8s_kind(objects, "Job")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert volumes[mounts["/results"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    cm = volumes[mounts["/scenario"]]["configMap"]
    assert cm["name"] == config["metadata"]["name"]
    assert [(i["key"], i["path"]) for i in cm["items"]] == [("scenario.toml", "scenario.toml")]
    assert "scenario.toml" in config["data"]


def test_the_configmap_scenario_loads_and_targets_the_pods_own_sidecar(tmp_path):
    from tcpstress.scenario import is_allowed_destination, load_scenario

    config = k8s_kind(k8s_objects("configmap.yaml"), "ConfigMap")
    path = tmp_path / "scenario.toml"
    path.write_text(config["data"]["scenario.toml"])
    s = load_scenario(path)
    assert is_allowed_destination(s.target.host) and not s.server.builtin
    pod = k8s_kind(k8s_objects("job.yaml"), "Job")["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: stopped when the load is done
    port = sidecar["command"][sidecar["command"].index("--port") + 1]
    assert int(port) == s.target.port == sidecar["startupProbe"]["tcpSocket"]["port"]


def test_the_job_uses_only_flags_the_command_line_has():
    import subprocess
    import sys

    pod = k8s_kind(k8s_objects("job.yaml"), "Job")["spec"]["template"]["spec"]
    for container, sub in ((pod["containers"][0], "run"), (pod["initContainers"][0], "serve")):
        assert container["command"][:2] == ["tcpstress", sub]
        help_text = subprocess.run([sys.executable, "-m", "tcpstress", sub, "--help"], capture_output=True,
                                   text=True, check=True).stdout
        for arg in container["command"]:
            if arg.startswith("--"):
                assert arg in help_text, f"tcpstress {sub} has no {arg}"


def test_the_readme_manifests_parse_and_mount_the_same_claim():
    import re

    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")
    blocks = re.findall(r"```yaml\n(.*?)```", (K8S / "README.md").read_text(), flags=re.DOTALL)
    assert blocks
    claim = k8s_kind(k8s_objects("job.yaml"), "PersistentVolumeClaim")["metadata"]["name"]
    for block in blocks:
        pod = yaml.safe_load(block)
        assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
        assert [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]] == [claim]
