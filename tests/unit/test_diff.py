"""tcpstress diff's statistics on synthetic intervals, where the right answer is known."""

from __future__ import annotations

import json
import math

import pytest

from tcpstress.diff import NO_CHANGE, DiffError, DiffResult, diff_pair, mann_whitney_p, min_samples, parse_fraction
from tcpstress.report.rundata import RunData
from tcpstress.results import RunResult, new_histogram


def test_exact_mann_whitney_matches_the_textbook_values():
    # Complete separation of 5 against 5: 2 of C(10,5) = 252 splits are as extreme.
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    # One swapped pair in 4 against 4: U = 1; P(U <= 1) = 2/70, twice for two sides.
    assert mann_whitney_p([1, 2, 3, 5], [4, 6, 7, 8]) == pytest.approx(4 / 70)
    # U = 2: P(U <= 2) = 4/70 (U = 0, 1 and the two splits with U = 2).
    assert mann_whitney_p([1, 2, 3, 6], [4, 5, 7, 8]) == pytest.approx(8 / 70)
    assert mann_whitney_p([5, 5, 5], [5, 5, 5]) == 1.0
    assert mann_whitney_p([1, 2], []) is None


def test_the_sampled_test_for_many_intervals_is_seeded_and_sensible():
    a, b = [float(x) for x in range(30)], [float(x) for x in range(100, 130)]
    p = mann_whitney_p(a, b)
    assert p == mann_whitney_p(a, b) and p < 0.001
    mixed = [float(x) for x in range(0, 60, 2)], [float(x) for x in range(1, 61, 2)]
    assert mann_whitney_p(*mixed) > 0.5


def test_three_intervals_a_side_can_never_be_significant():
    assert min_samples(0.05) == 4


def run(rates, latency_us=1000, errors=None, last=None):
    intervals = [{"t": float(i), "duration": 1.0, "requests": r, "connections": 1, "errors": (errors or [{}] * len(rates))[i]}
                 for i, r in enumerate(rates)]
    hlog = []
    for i, r in enumerate(rates):
        h = new_histogram()
        h.record_value(latency_us + i, r)  # distinct per second, so the intervals are real samples
        hlog.append((float(i), 1.0, h))
    if last is not None:  # a short last interval: too short to count as a sample
        intervals.append({"t": float(len(rates)), "duration": 0.2, "requests": last, "connections": 0, "errors": {}})
    data = {"name": "x", "intervals": intervals, "summary": {"duration_s": float(len(rates))}}
    return RunData(result=RunResult(data=data), hlogs={"total": hlog})


def metric(pair, name):
    return next(m for m in pair.metrics if m.metric == name)


def test_fewer_requests_and_more_latency_read_slower_with_the_ratio():
    pair = diff_pair("x", [run([1000, 1010, 990, 1005, 995])], [run([800, 810, 790, 805, 795], latency_us=2000)])
    rate, p50 = metric(pair, "requests_per_s"), metric(pair, "total.p50")
    assert rate.verdict == "slower" and rate.ratio == pytest.approx(0.8)
    assert rate.regression == pytest.approx(0.2) and rate.p_value == pytest.approx(2 / 252)
    assert p50.verdict == "slower" and p50.ratio == pytest.approx(2.0, rel=0.01)
    assert p50.base == pytest.approx(1.0, rel=0.01)  # shown in ms


def test_direction_is_metric_aware():
    pair = diff_pair("x", [run([800, 810, 790, 805, 795], latency_us=2000)], [run([1000, 1010, 990, 1005, 995])])
    assert metric(pair, "requests_per_s").verdict == "faster"
    assert metric(pair, "total.p50").verdict == "faster"
    assert not any(m.is_regression for m in pair.metrics)


def test_a_shift_inside_the_noise_is_no_significant_change():
    pair = diff_pair("x", [run([1000, 900, 1100, 950, 1050])], [run([1010, 890, 1090, 960, 1060])])
    assert metric(pair, "requests_per_s").verdict == NO_CHANGE


def test_min_change_ignores_a_consistent_but_small_change():
    base, new = [run([1000, 1001, 1002, 1003, 1004])], [run([990, 991, 992, 993, 994])]
    assert metric(diff_pair("x", base, new), "requests_per_s").verdict == "slower"
    assert metric(diff_pair("x", base, new, min_change=0.02), "requests_per_s").verdict == NO_CHANGE


def test_errors_from_zero_are_worse_without_bound_and_json_says_so():
    base = run([1000] * 5)
    new = run([1000] * 5, errors=[{"ECONNRESET": 10}] * 5)
    pair = diff_pair("x", [base], [new])
    er = metric(pair, "error_rate")
    assert er.verdict == "worse" and math.isinf(er.regression)
    result = DiffResult(base="a", new="b", pairs=[pair], unpaired=[], alpha=0.05, min_change=0.0, max_regression=0.05)
    d = json.loads(json.dumps(result.to_dict()))
    (m,) = [m for m in d["pairs"][0]["metrics"] if m["metric"] == "error_rate"]
    assert m["regression"] is None and m["from_zero"] is True
    assert {"pair": "x", "metric": "error_rate"} in d["regressions"]


def test_max_regression_is_the_tolerance():
    pair = diff_pair("x", [run([1000, 1010, 990, 1005, 995])], [run([900, 910, 890, 905, 895])])
    def regressions(limit):
        r = DiffResult(base="a", new="b", pairs=[pair], unpaired=[], alpha=0.05, min_change=0.0, max_regression=limit)
        return [m.metric for _, m in r.regressions()]
    assert regressions(0.05) == ["requests_per_s"]
    assert regressions(0.15) == []
    assert regressions(None) == []


def test_a_short_last_interval_is_not_a_sample():
    pair = diff_pair("x", [run([1000] * 4, last=10)], [run([1000] * 4, last=10)])
    assert metric(pair, "requests_per_s").n_base == 4


def test_repeats_pool_their_intervals():
    pair = diff_pair("x", [run([1000, 1010]), run([990, 1005])], [run([800, 810]), run([790, 805])])
    rate = metric(pair, "requests_per_s")
    assert (rate.n_base, rate.n_new, rate.verdict) == (4, 4, "slower")


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("0%", 0.0), (" 12.5% ", 0.125)])
def test_percentages(text, value):
    assert parse_fraction(text, "--max-regression") == pytest.approx(value)


@pytest.mark.parametrize("text", ["five", "-5%", "nan", "%"])
def test_bad_percentages(text):
    with pytest.raises(DiffError, match="--max-regression"):
        parse_fraction(text, "--max-regression")


def save_run(folder, rates, variant=None):
    from tcpstress.results import FORMAT

    data = {"format": FORMAT, "name": "s", "variant": variant, "scenario": {},
            "intervals": [{"t": float(i), "duration": 1.0, "requests": r, "connections": 1, "errors": {}}
                          for i, r in enumerate(rates)],
            "summary": {"duration_s": float(len(rates))}}
    RunResult(data=data).save(folder)


def save_comparison(folder, runs, groups=None):
    from tcpstress.results import COMPARISON_FILE, COMPARISON_FORMAT

    folder.mkdir(parents=True)
    for name, rates in runs.items():
        save_run(folder / name, rates, variant=name)
    index = {"format": COMPARISON_FORMAT, "variants": list(runs), "runs": {n: n for n in runs}}
    if groups:
        index["groups"] = groups
    (folder / COMPARISON_FILE).write_text(json.dumps(index))


def test_comparison_folders_pair_by_variant_and_repeats_pool(tmp_path):
    from tcpstress.diff import diff_folders

    save_comparison(tmp_path / "base", {"a-1": [100, 101], "b-1": [50, 51], "a-2": [102, 103], "b-2": [52, 53],
                                        "old-1": [1, 1]},
                    groups={"a-1": "a", "a-2": "a", "b-1": "b", "b-2": "b", "old-1": "old"})
    save_comparison(tmp_path / "new", {"a-1": [80, 81], "b-1": [50, 52], "a-2": [82, 83], "b-2": [51, 53],
                                       "fresh-1": [1, 1]},
                    groups={"a-1": "a", "a-2": "a", "b-1": "b", "b-2": "b", "fresh-1": "fresh"})
    result = diff_folders(tmp_path / "base", tmp_path / "new", max_regression=0.05)
    by_name = {p.name: metric(p, "requests_per_s") for p in result.pairs}
    assert set(by_name) == {"a", "b"}
    assert (by_name["a"].n_base, by_name["a"].verdict) == (4, "slower")
    assert by_name["b"].verdict == NO_CHANGE
    assert by_name["a"].ratio == pytest.approx(81.5 / 101.5)
    assert sorted(result.unpaired) == [f"fresh (only in {tmp_path / 'new'})", f"old (only in {tmp_path / 'base'})"]
    assert [(p.name, m.metric) for p, m in result.regressions()] == [("a", "requests_per_s")]


def test_two_single_runs_pair_whatever_their_names(tmp_path):
    from tcpstress.diff import diff_folders

    save_run(tmp_path / "x", [10, 10, 10, 10], variant="one")
    save_run(tmp_path / "y", [10, 10, 10, 10], variant="two")
    (pair,) = diff_folders(tmp_path / "x", tmp_path / "y").pairs
    assert pair.name == "one -> two" and metric(pair, "requests_per_s").verdict == NO_CHANGE


def test_comparisons_with_nothing_in_common_are_refused(tmp_path):
    from tcpstress.diff import diff_folders

    save_comparison(tmp_path / "base", {"a": [1, 2], "b": [1, 2]})
    save_comparison(tmp_path / "new", {"c": [1, 2], "d": [1, 2]})
    with pytest.raises(DiffError, match="share no variant name: a, b against c, d"):
        diff_folders(tmp_path / "base", tmp_path / "new")
