"""Findings on merged shard runs: every shard's host is stated, not the first shard's.

The merged folders are made by the real tcpstress.merge.merge_runs from
synthetic shard folders, so the namespace, role and sysctl keys are the ones
merge writes ("node-a:host", "vm#1:host", "node-b:server"). Each test picks
numbers for which a rule that reads only the first shard would say something
else.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tcpstress.merge import merge_runs
from tcpstress.report.diagnose import Finding, diagnose, load_run, load_runs

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
T0 = 1_795_871_962.0
SECONDS = 4
STATE_COLUMNS = ("ESTABLISHED", "SYN_RECV", "TIME_WAIT", "CLOSE_WAIT")

SCENARIO = {
    "name": "churn", "description": "",
    "target": {"host": "198.18.200.10", "port": 8080, "protocol": "http", "path": "/", "host_header": "",
               "method": "GET"},
    "server": {"builtin": True, "command": "", "response_size": 64, "close": "client", "backlog": 4096,
               "workers": 1, "delay": 0.0},
    "load": {"model": "closed", "connections": 30, "rate": 0.0, "ramp": 0.0, "duration": 4.0, "warmup": 0.0,
             "workers": 1, "max_requests": 0},
    "connection": {"keepalive": False, "requests_per_connection": 1, "close": "client", "connect_timeout": 5.0,
                   "request_timeout": 10.0, "source_addresses": [], "payload_size": 64},
    "sampling": {"interval": 1.0, "port_filter": True},
    "lab": False, "variants": [], "source": "churn.toml",
}


def ramp(peak: int) -> list[int]:
    """A level that climbs to `peak` and stays there, one value per second."""
    return [0, peak // 2, peak, peak]


def make_shard(folder: Path, index: int, count: int, hostname: str, *,
               series: dict[str, dict[str, list[int]]], sysctls: dict[str, dict[str, str]] | None = None,
               errors: dict[str, int] | None = None, processes: dict[str, list[float]] | None = None,
               netns: str | None = None) -> Path:
    """A shard's run folder as `tcpstress run --shard index/count` writes it (no latency logs).

    series: namespace -> column -> one value per second (states are levels,
    Tcp* columns per-interval rises); errors: this shard's errors, all in its
    second 2; processes: role -> CPU % per second.
    """
    folder.mkdir(parents=True)
    errors = errors or {}
    intervals = [{"t": float(i), "duration": 1.0, "requests": 100, "connections": 100,
                  "errors": dict(errors) if i == 2 else {}, "late_starts": 0, "max_lag_us": 0, "latency_us": {}}
                 for i in range(SECONDS)]
    columns = sorted({c for cols in series.values() for c in cols})
    rows = [[f"{float(t):.1f}", ns] + [str(cols.get(c, [0] * SECONDS)[t]) for c in columns]
            for t in range(SECONDS) for ns, cols in series.items()]
    with open(folder / "samples.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["t", "ns", *columns])
        writer.writerows(rows)
    states = {ns: {c: {"peak": max(v), "final": v[-1]} for c, v in cols.items() if c in STATE_COLUMNS}
              for ns, cols in series.items()}
    counters = {ns: {c: sum(v) for c, v in cols.items() if c.startswith("Tcp")} for ns, cols in series.items()}
    with open(folder / "processes.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["t", "role", "pids", "cpu_percent", "rss_bytes", "fds"])
        for role, cpu in (processes or {}).items():
            writer.writerows([f"{t + 0.5:.1f}", role, "100", str(v), "1000", "10"] for t, v in enumerate(cpu))
    error_total = sum(errors.values())
    data = {
        "format": "tcpstress-result/1", "tool_version": "0.1.0", "kernel": "6.18.44", "hostname": hostname,
        "netns": netns, "cpu_count": 4, "started_at": "2026-11-28T13:19:21Z", "ended_at": "2026-11-28T13:19:25Z",
        "partial": False, "partial_reason": None, "name": "churn", "variant": None,
        "scenario": SCENARIO, "sysctls": sysctls or {},
        "target": {"host": "198.18.200.10", "port": 8080},
        "t0_epoch": T0, "start_at": "2026-11-28T13:19:22Z", "shard": {"index": index, "count": count},
        "intervals": intervals,
        "summary": {
            "duration_s": float(SECONDS), "requests": 100 * SECONDS, "connections": 100 * SECONDS,
            "requests_per_s": 100.0, "connections_per_s": 100.0, "errors": dict(errors),
            "error_total": error_total, "intended_rate": None, "late_starts": 0, "max_lag_us": 0,
            "latency_us": {},
            "workers": [{"name": "worker-0", "pid": 10 + index, "exit": "ok", "requests": 100 * SECONDS,
                         "connections": 100 * SECONDS, "errors": dict(errors)}],
            "states": states, "counters": counters,
        },
    }
    (folder / "result.json").write_text(json.dumps(data))
    return folder


def port_knobs(low: int, high: int, tw_reuse: str = "0", **more: str) -> dict[str, str]:
    return {"net.ipv4.ip_local_port_range": f"{low}\t{high}", "net.ipv4.tcp_tw_reuse": tw_reuse, **more}


def merged(tmp_path: Path, shards: list[dict], order: list[int] | None = None):
    """merge_runs over make_shard(**spec) folders (given to merge in `order`), loaded as the report loads it."""
    folders = [make_shard(tmp_path / f"shard-{i}", i, len(shards), **spec) for i, spec in enumerate(shards)]
    order = order or list(range(len(folders)))
    merge_runs([folders[i] for i in order], tmp_path / "merged")
    return load_run(tmp_path / "merged")


def one(findings: list[Finding], rule: str) -> Finding:
    hits = [f for f in findings if f.rule == rule]
    assert len(hits) == 1, [(f.rule, f.text) for f in findings]
    return hits[0]


def churn_shard(hostname: str, low: int, high: int, tw_peak: int, failures: int, tw_reuse: str = "0") -> dict:
    """A loader in its own container: its own host namespace, port range and tcp_tw_reuse."""
    return {"hostname": hostname, "errors": {"EADDRNOTAVAIL": failures} if failures else {},
            "series": {"host": {"TIME_WAIT": ramp(tw_peak), "ESTABLISHED": [10] * SECONDS,
                                "TcpActiveOpens": [tw_peak // 2] * SECONDS}},
            "sysctls": {"host": port_knobs(low, high, tw_reuse)}}


# --- the namespaces of a side ----------------------------------------------------------


def test_side_namespaces_are_one_per_shard_in_shard_order(tmp_path):
    run = merged(tmp_path, [churn_shard(f"node-{c}", 40000, 40999, 100, 0) for c in "abc"], order=[2, 0, 1])
    assert run.side_namespaces("client") == ["node-a:host", "node-b:host", "node-c:host"]
    assert run.side_namespaces("server") == ["node-a:host", "node-b:host", "node-c:host"]
    assert run.side_ns("client") == "node-a:host"  # unchanged: the first shard's


def test_side_namespaces_of_shards_with_client_and_server_namespaces(tmp_path):
    spec = {"series": {"client": {"TIME_WAIT": ramp(5)}, "server": {"ESTABLISHED": ramp(5)}}}
    run = merged(tmp_path, [dict(spec, hostname="node-a"), dict(spec, hostname="node-b")])
    assert run.side_namespaces("client") == ["node-a:client", "node-b:client"]
    assert run.side_namespaces("server") == ["node-a:server", "node-b:server"]


def test_side_namespaces_of_an_ordinary_run_is_its_one_namespace():
    lab = load_runs([RUNS / "time_wait_exhaustion"])[0]
    assert lab.side_namespaces("client") == ["client"] and lab.side_namespaces("server") == ["server"]
    host = load_run(RUNS / "clean")
    assert host.side_namespaces("client") == [host.side_ns("client")] == ["host"]


# --- port exhaustion -------------------------------------------------------------------


def test_port_exhaustion_states_each_shards_client_against_its_own_range(tmp_path):
    run = merged(tmp_path, [
        churn_shard("node-a", 40000, 40999, 1000, 300),
        churn_shard("node-b", 30000, 31999, 1990, 200),
        churn_shard("node-c", 50000, 50499, 500, 100),
    ])
    f = one(diagnose([run]), "port_exhaustion")
    assert f.evidence["EADDRNOTAVAIL"] == 600
    assert "600 times" in f.text and "the clients of all 3 shards ran out" in f.text
    # Every shard's own peak against its own range, with its own errors...
    assert "on node-a TIME_WAIT peaked at 1,000 ≈ its whole ip_local_port_range (40000–40999, 1,000 ports), " \
           "300 EADDRNOTAVAIL" in f.text
    assert "on node-b TIME_WAIT peaked at 1,990 ≈ its whole ip_local_port_range (30000–31999, 2,000 ports), " \
           "200 EADDRNOTAVAIL" in f.text
    assert "on node-c TIME_WAIT peaked at 500 ≈ its whole ip_local_port_range (50000–50499, 500 ports)" in f.text
    # ... and the sum against the sum, called an upper bound.
    assert "3,490 of their 3,500 ports" in f.text and "need not have come at the same moment" in f.text
    assert f.evidence["time_wait_peak"] == 3490 and f.evidence["ports"] == 3500
    assert [(s["shard"], s["time_wait_peak"], s["ports"], s["EADDRNOTAVAIL"]) for s in f.evidence["shards"]] == [
        ("node-a", 1000, 1000, 300), ("node-b", 1990, 2000, 200), ("node-c", 500, 500, 100)]
    assert f.evidence["namespaces"] == ["node-a:host", "node-b:host", "node-c:host"]
    # The churn each client sustains comes from its own range: 1,000/60, 2,000/60, 500/60.
    assert "near 17 new connections/s per destination from node-a, 33 from node-b and 8 from node-c" in f.text
    assert f.evidence["tcp_tw_reuse"] == "0" and "differs" not in f.text
    assert "tcp_tw_reuse=1" in f.advice
    assert f.severity == "critical"


def test_port_exhaustion_says_once_what_alike_clients_held(tmp_path):
    # Scaled compose loaders: the same range and the same peak on each, only their errors differ.
    run = merged(tmp_path, [churn_shard(f"loader-{n}", 40000, 40999, 1000, e) for n, e in ((1, 667), (2, 666), (3, 666))])
    f = one(diagnose([run]), "port_exhaustion")
    assert ("on each of loader-1, loader-2 and loader-3, TIME_WAIT peaked at 1,000 ≈ its whole "
            "ip_local_port_range (40000–40999, 1,000 ports), with 667, 666 and 666 EADDRNOTAVAIL.") in f.text
    assert "on loader-2 TIME_WAIT" not in f.text
    assert [s["EADDRNOTAVAIL"] for s in f.evidence["shards"]] == [667, 666, 666]


def test_port_exhaustion_says_tcp_tw_reuse_differs_between_shards(tmp_path):
    run = merged(tmp_path, [
        churn_shard("node-a", 40000, 40999, 1000, 300),
        churn_shard("node-b", 40000, 40999, 1000, 250),
        churn_shard("node-c", 40000, 40999, 990, 20, tw_reuse="1"),
    ])
    f = one(diagnose([run]), "port_exhaustion")
    assert "tcp_tw_reuse differs between the shards: 0 on node-a and node-b, 1 on node-c" in f.text
    assert f.evidence["tcp_tw_reuse"] == {"node-a": "0", "node-b": "0", "node-c": "1"}
    # Each group gets the explanation that holds for its knob, not one shard's.
    assert "On node-c, tcp_tw_reuse=1 lets a new connect() take a TIME_WAIT port only once it is older " \
           "than 1 s" in f.text
    assert "about 1,000 per second per destination" in f.text
    assert "On node-a and node-b, the side that closes first keeps each port in TIME_WAIT for 60 s" in f.text
    assert "17 new connections/s per destination from each client; tcp_tw_reuse is 0 there" in f.text
    # node-a and node-b still need the TIME_WAIT advice.
    assert "tcp_tw_reuse=1" in f.advice
    assert [s["tcp_tw_reuse"] for s in f.evidence["shards"]] == ["0", "0", "1"]


def test_port_exhaustion_when_only_one_shard_ran_out(tmp_path):
    run = merged(tmp_path, [
        churn_shard("node-a", 40000, 40999, 120, 0),
        churn_shard("node-b", 40000, 40999, 1000, 450),
        churn_shard("node-c", 40000, 40999, 130, 0),
    ])
    f = one(diagnose([run]), "port_exhaustion")
    share = 100.0 * 450 / (run.requests + run.error_total)
    assert f"450 times ({share:.1f}% of attempts), from t=2 s, all on node-b: its client ran out of ephemeral ports" \
        in f.text
    assert "on node-b TIME_WAIT peaked at 1,000 ≈ its whole ip_local_port_range" in f.text
    assert "on node-a TIME_WAIT peaked at 120 of 1,000 (40000–40999, 1,000 ports), no EADDRNOTAVAIL" in f.text
    assert [s["EADDRNOTAVAIL"] for s in f.evidence["shards"]] == [0, 450, 0]
    # Only node-b's TIME_WAIT explains the failures.
    assert "On node-b, the side that closes first keeps each port in TIME_WAIT for 60 s" in f.text
    assert "On node-a" not in f.text


def test_shards_on_one_machine_share_one_namespace_and_one_port_range(tmp_path):
    # Two shards as processes on one machine both sampled its host namespace:
    # the same 1,000 TIME_WAIT sockets, seen twice, in one 1,000-port range.
    run = merged(tmp_path, [churn_shard("vm", 40000, 40999, 1000, 300),
                            churn_shard("vm", 40000, 40999, 990, 200)])
    assert run.side_namespaces("client") == ["vm#0:host", "vm#1:host"]
    f = one(diagnose([run]), "port_exhaustion")
    assert f.evidence["time_wait_peak"] == 1000 and f.evidence["ports"] == 1000
    assert f.evidence["namespaces"] == ["vm#0:host", "vm#1:host"]
    assert "TIME_WAIT on the client peaked at 1,000 ≈ the whole ip_local_port_range (40000–40999" in f.text
    assert "2,000" not in f.text and "1,990" not in f.text


def test_shards_on_one_machine_in_one_recorded_namespace_are_one_place(tmp_path):
    run = merged(tmp_path, [dict(churn_shard("vm", 40000, 40999, 1000, 300), netns="net:[4026531840]"),
                            dict(churn_shard("vm", 40000, 40999, 990, 200), netns="net:[4026531840]")])
    f = one(diagnose([run]), "port_exhaustion")
    assert f.evidence["time_wait_peak"] == 1000 and f.evidence["ports"] == 1000


def test_shards_on_one_machine_in_namespaces_of_their_own_are_places_of_their_own(tmp_path):
    # `ip netns exec` shards: one hostname, but each its own sockets and port range.
    run = merged(tmp_path, [dict(churn_shard("vm", 40000, 40999, 1000, 300), netns="net:[4026532001]"),
                            dict(churn_shard("vm", 40000, 40999, 990, 200), netns="net:[4026532002]")])
    assert run.result.data["shards"][0]["netns"] == "net:[4026532001]"
    f = one(diagnose([run]), "port_exhaustion")
    assert f.evidence["time_wait_peak"] == 1990 and f.evidence["ports"] == 2000
    assert "on vm#0 TIME_WAIT peaked at 1,000" in f.text and "on vm#1 TIME_WAIT peaked at 990" in f.text


# --- the server side -----------------------------------------------------------------


def lab_shard(hostname: str, *, client: dict | None = None, server: dict | None = None,
              client_knobs: dict | None = None, server_knobs: dict | None = None, **kw) -> dict:
    """A shard with its own client and server namespaces (a pod with its server as a sidecar)."""
    return {"hostname": hostname,
            "series": {"client": {"ESTABLISHED": [10] * SECONDS, **(client or {})},
                       "server": {"ESTABLISHED": [10] * SECONDS, **(server or {})}},
            "sysctls": {"client": client_knobs or {}, "server": server_knobs or {}}, **kw}


def test_accept_queue_overflow_adds_each_shards_server_and_says_somaxconn_differs(tmp_path):
    run = merged(tmp_path, [
        lab_shard("node-a", server={"TcpExtListenOverflows": [0, 0, 0, 0], "TcpExtListenDrops": [0, 0, 0, 0]},
                  server_knobs={"net.core.somaxconn": "4096", "net.ipv4.tcp_abort_on_overflow": "0"}),
        lab_shard("node-b", server={"TcpExtListenOverflows": [0, 20, 30, 0], "TcpExtListenDrops": [0, 21, 30, 0]},
                  server_knobs={"net.core.somaxconn": "128", "net.ipv4.tcp_abort_on_overflow": "0"}),
        lab_shard("node-c", server={"TcpExtListenOverflows": [0, 5, 5, 0], "TcpExtListenDrops": [0, 5, 5, 0]},
                  server_knobs={"net.core.somaxconn": "64", "net.ipv4.tcp_abort_on_overflow": "1"}),
    ])
    f = one(diagnose([run]), "accept_queue")
    assert f.evidence["TcpExtListenOverflows"] == 60 and f.evidence["TcpExtListenDrops"] == 61
    assert "rose by 60 and TcpExtListenDrops by 61 over the 3 shards' servers (node-b: 50 and 51; " \
           "node-c: 10 and 10)" in f.text
    assert "min(listen backlog 4096, somaxconn) = 128 on node-b and 64 on node-c" in f.text
    assert "net.core.somaxconn differs between the shards: 128 on node-b, 64 on node-c" in f.text
    assert "tcp_abort_on_overflow differs between the shards: 0 on node-b, 1 on node-c" in f.text
    assert f.evidence["somaxconn"] == {"node-a": 4096, "node-b": 128, "node-c": 64}
    assert [s["TcpExtListenOverflows"] for s in f.evidence["shards"]] == [0, 50, 10]


def test_time_wait_overflow_cites_each_hosts_own_bucket_limit(tmp_path):
    run = merged(tmp_path, [
        lab_shard("node-a", client={"TIME_WAIT": ramp(2000), "TcpExtTCPTimeWaitOverflow": [0, 0, 40, 60]},
                  client_knobs={"net.ipv4.tcp_max_tw_buckets": "2000"}),
        lab_shard("node-b", client={"TIME_WAIT": ramp(5000), "TcpExtTCPTimeWaitOverflow": [0, 0, 0, 7]},
                  client_knobs={"net.ipv4.tcp_max_tw_buckets": "5000"}),
    ])
    f = one(diagnose([run]), "tw_overflow")
    assert "rose by 100 in node-a:client (TIME_WAIT peaked at 2,000 against tcp_max_tw_buckets=2000) and " \
           "by 7 in node-b:client (TIME_WAIT peaked at 5,000 against tcp_max_tw_buckets=5000)" in f.text
    assert "tcp_max_tw_buckets differs between the shards: 2000 on node-a, 5000 on node-b" in f.text
    assert f.evidence["TcpExtTCPTimeWaitOverflow"] == 107
    assert f.evidence["tcp_max_tw_buckets"] == {"node-a": "2000", "node-b": "5000"}


def test_close_wait_leak_on_one_shards_server(tmp_path):
    run = merged(tmp_path, [
        lab_shard("node-a", server={"CLOSE_WAIT": [0, 1, 0, 1]}),
        lab_shard("node-b", server={"CLOSE_WAIT": [0, 200, 400, 600]}),
    ])
    f = one(diagnose([run]), "close_wait")
    assert "on 1 of the 2 shards' servers: on node-b from 0 to 600 (about 200/s)" in f.text
    assert f.evidence["namespaces"] == ["node-b:server"]
    assert f.evidence["shards"][0]["close_wait_final"] == 600


# --- errors and counters -----------------------------------------------------------------


def test_refused_counts_per_shard_and_sums_every_clients_counter(tmp_path):
    run = merged(tmp_path, [
        lab_shard("node-a", client={"TcpAttemptFails": [0, 0, 3, 0]}, errors={"ECONNREFUSED": 3}),
        lab_shard("node-b", client={"TcpAttemptFails": [0, 0, 0, 0]}),
        lab_shard("node-c", client={"TcpAttemptFails": [0, 5, 4, 0]}, errors={"ECONNREFUSED": 9}),
    ])
    f = one(diagnose([run]), "refused")
    assert f.evidence["TcpAttemptFails"] == 12  # 3 + 0 + 9: node-a alone would say 3
    assert "ECONNREFUSED 12 times (by shard: node-a 3, node-b 0, node-c 9)" in f.text
    assert f.evidence["shards"] == {"node-a": 3, "node-b": 0, "node-c": 9}


def test_timeouts_name_each_shards_syn_retries_when_they_differ(tmp_path):
    run = merged(tmp_path, [
        lab_shard("node-a", client={"TcpExtTCPSynRetrans": [0, 4, 4, 0]}, errors={"connect timeout": 8},
                  client_knobs={"net.ipv4.tcp_syn_retries": "6"}),
        lab_shard("node-b", client={"TcpExtTCPSynRetrans": [0, 1, 1, 0]}, errors={"connect timeout": 2},
                  client_knobs={"net.ipv4.tcp_syn_retries": "2"}),
    ])
    f = one(diagnose([run]), "timeouts")
    assert f.evidence["TcpExtTCPSynRetrans"] == 10 and "SYN retransmits by 10" in f.text
    assert "(connect timeout 10; by shard: node-a 8, node-b 2)" in f.text
    assert f.evidence["tcp_syn_retries"] == {"node-a": "6", "node-b": "2"}
    assert "(6 on node-a and 2 on node-b; 6 → about 127 s)" in f.advice


def test_generator_saturated_on_one_shard_makes_the_merged_rate_a_lower_bound(tmp_path):
    run = merged(tmp_path, [
        dict(churn_shard("node-a", 40000, 40999, 10, 0), processes={"generator": [40, 45, 42, 41]}),
        dict(churn_shard("node-b", 40000, 40999, 10, 0), processes={"generator": [99, 100, 98, 99]}),
    ])
    f = one(diagnose([run]), "generator_saturated")
    assert "on node-b" in f.text and "1 of the 2 shards" in f.text and "lower bound" in f.text
    assert "node-a" not in f.text
    assert f.evidence["generator_cores"] == 1
    assert f.evidence["shards"]["node-a"]["cpu_median"] < 50 <= f.evidence["shards"]["node-b"]["cpu_median"]


def test_a_clean_merged_run_has_no_findings(tmp_path):
    run = merged(tmp_path, [churn_shard(f"node-{c}", 40000, 40999, 100, 0) for c in "ab"])
    assert diagnose([run]) == []


def test_the_knob_table_says_a_shared_value_once_and_keeps_differing_ones(tmp_path):
    from tcpstress.report.diagnose import RunData, knob_table
    from tcpstress.results import RunResult

    sysctls = {f"loader-{n}:host": {"net.ipv4.tcp_tw_reuse": "2",
                                    "net.ipv4.ip_local_port_range": "40000\t40999" if n < 3 else "10000\t65000"}
               for n in (1, 2, 3)}
    run = RunData(result=RunResult(data={"name": "m", "sysctls": sysctls, "summary": {}, "intervals": []},
                                   folder=None))
    _, rows, differs = knob_table([run])
    assert rows == [
        ["host, all 3 shards", "net.ipv4.tcp_tw_reuse", "2"],
        ["loader-1:host", "net.ipv4.ip_local_port_range", "40000 40999"],
        ["loader-2:host", "net.ipv4.ip_local_port_range", "40000 40999"],
        ["loader-3:host", "net.ipv4.ip_local_port_range", "10000 65000"],
    ]
    assert differs == [False] * 4
