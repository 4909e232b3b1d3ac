"""Each state scenario makes its TCP state in a real lab (root only).

Every test runs one decisive variant of a shipped scenario, shortened, the
way `tcpstress compare` does (fresh namespaces, the variant's sysctls, the
built-in server, the scenario's fault), but in a Lab named with the test's
own prefix so the `lab_prefix` fixture can check nothing is left behind.

The witnesses are the kernel's, read with iproute2 rather than tcpstress:
`ss -Htan` inside each namespace polled while the run goes on (`SsWatcher`),
`ss` and /proc/net/netstat inside the namespaces right after it (the lab
still up), and nftables' own rule counters in the fault's record. The
sampler's peaks are checked against `ss` as a second opinion.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tcpstress.lab import Lab, apply_profile, validate_profile
from tcpstress.lab.profiles import Profile
from tcpstress.runner import RunContext, run_scenario
from tcpstress.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SS_POLL_S = 0.2


def ss_states(namespace: str) -> Counter:
    """State name (as ss spells it) -> sockets, every TCP socket of the namespace."""
    out = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Htan"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return Counter(line.split()[0] for line in out.splitlines() if line.strip())


def netstat(namespace: str) -> dict[str, int]:
    """TcpExt* and Tcp* counters of the namespace, from its own /proc."""
    counters = {}
    for name in ("netstat", "snmp"):
        text = subprocess.run(["ip", "netns", "exec", namespace, "cat", f"/proc/net/{name}"], capture_output=True,
                              text=True, timeout=30, check=True).stdout
        lines = [line for line in text.splitlines() if line.strip()]
        for header, values in zip(lines[::2], lines[1::2]):
            section, names = header.split(":", 1)
            for key, value in zip(names.split(), values.split(":", 1)[1].split()):
                counters[section + key] = int(value)
    return counters


class SsWatcher:
    """Polls `ss` in both namespaces of a lab and keeps each state's highest count."""

    def __init__(self, lab: Lab) -> None:
        self.namespaces = {"client": lab.client_ns, "server": lab.server_ns}
        self.peaks: dict[str, Counter] = {side: Counter() for side in self.namespaces}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for side, ns in self.namespaces.items():
                for state, n in ss_states(ns).items():
                    self.peaks[side][state] = max(self.peaks[side][state], n)
            self.polls += 1
            self._stop.wait(SS_POLL_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


@dataclass
class LabRun:
    result: object
    watched: dict[str, Counter]  # side -> state -> highest count `ss` saw during the run
    after: dict[str, Counter] = field(default_factory=dict)  # side -> `ss` right after the run
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # side -> /proc counters after the run

    @property
    def summary(self) -> dict:
        return self.result.data["summary"]

    def sampled_peak(self, side: str, state: str) -> int:
        return int(((self.summary.get("states") or {}).get(side, {}).get(state) or {}).get("peak", 0))


def run_variant(scenario: str, variant: str, run_id: str, out_dir: Path, **overrides) -> LabRun:
    """One variant, as `tcpstress compare` runs it, in a lab named after run_id."""
    sc = load_scenario(SCENARIOS / f"{scenario}.toml", {k.replace("__", "."): v for k, v in overrides.items()})
    v = sc.variant(variant)
    sc = sc.with_variant(v)
    profile = Profile(name=variant, client=validate_profile(v.client), server=validate_profile(v.server))
    with Lab(run_id=run_id, index=0) as lab:
        ctx = RunContext.for_lab(lab, sc, apply_profile(lab, profile), variant=variant)
        watcher = SsWatcher(lab)
        watcher.start()
        try:
            result = run_scenario(sc, out_dir, ctx)
        finally:
            watcher.stop()
        assert watcher.polls >= 3, "ss was polled too rarely to witness anything"
        run = LabRun(result=result, watched=watcher.peaks)
        for side in ("client", "server"):
            ns = lab.namespace(side)
            run.after[side] = ss_states(ns)
            run.counters[side] = netstat(ns)
    return run


def near(sampled: int, witnessed: int) -> bool:
    """The sampler and ss poll at different instants of a moving count."""
    return abs(sampled - witnessed) <= max(5, 0.15 * witnessed)


def test_syn_flood_without_cookies_holds_syn_recv_at_the_backlog(run_id, lab_prefix, tmp_path):
    run = run_variant("syn_flood", "cookies_off", run_id, tmp_path, load__duration="4s")
    syn_recv = run.watched["server"]["SYN-RECV"]
    # listen(128): the queue holds 128 + 1 request socks, then drops.
    assert 120 <= syn_recv <= 140, run.watched
    assert run.counters["server"]["TcpExtTCPReqQFullDrop"] > 1000
    assert run.counters["server"]["TcpExtSyncookiesSent"] == 0
    assert run.summary["errors"].get("connect timeout", 0) > 0  # the real clients' SYNs were dropped too
    assert run.result.data["fault"]["sent"] > 1000
    assert near(run.sampled_peak("server", "SYN_RECV"), syn_recv)


def test_drop_syn_keeps_every_connect_in_syn_sent_until_tcp_syn_retries(run_id, lab_prefix, tmp_path):
    run = run_variant("syn_sent", "syn_retries_2", run_id, tmp_path, load__duration="8.5s")
    assert run.watched["client"]["SYN-SENT"] == 20
    assert run.summary["requests"] == 0  # the rule was in place before the first connect
    # tcp_syn_retries = 2 gives up after (2^3 - 1) x 1 s = 7 s: one ETIMEDOUT per
    # connection, before the 10 s connect timeout and before the end at 8.5 s.
    assert run.summary["errors"] == {"ETIMEDOUT": 20}
    first = min(iv["t"] for iv in run.result.data["intervals"] if iv["errors"])
    assert 6.0 <= first <= 8.0
    # 5 retransmits each in those 7 s (linear timeouts), counted by the client's kernel...
    assert run.counters["client"]["TcpExtTCPSynRetrans"] >= 100
    # ...and every SYN dropped by the server's rule, by nftables' count.
    assert run.result.data["fault"]["dropped_packets"] >= 120
    assert run.sampled_peak("client", "SYN_SENT") == 20


def test_a_server_that_never_closes_piles_up_close_wait(run_id, lab_prefix, tmp_path):
    run = run_variant("close_wait_leak", "fin_timeout_60", run_id, tmp_path, load__duration="3s")
    # 100 connections/s for 3 s, each closed by the client and never by the server.
    assert 250 <= run.watched["server"]["CLOSE-WAIT"] <= 300
    assert 250 <= run.watched["client"]["FIN-WAIT-2"] <= 300
    # Nothing but the application ends CLOSE_WAIT: the last sample (taken
    # before the run stops the server) still holds every one.
    closes = run.summary["states"]["server"]["CLOSE_WAIT"]
    assert closes["final"] == closes["peak"]
    # The server never sent a FIN while the run lasted (ss may catch the
    # LAST_ACKs of the shutdown that follows, so the sampler's rows say it).
    assert run.sampled_peak("server", "LAST_ACK") == 0 and run.sampled_peak("client", "TIME_WAIT") == 0
    assert near(run.sampled_peak("server", "CLOSE_WAIT"), run.watched["server"]["CLOSE-WAIT"])


def test_dropped_fins_leave_fin_wait_on_the_client_and_last_ack_on_the_server(run_id, lab_prefix, tmp_path):
    run = run_variant("fin_wait_last_ack", "client_closes", run_id, tmp_path, load__duration="3s")
    assert run.watched["client"]["FIN-WAIT-1"] > 0
    assert 250 <= run.watched["client"]["FIN-WAIT-2"] <= 300
    assert 250 <= run.watched["server"]["LAST-ACK"] <= 300
    assert run.result.data["fault"]["dropped_packets"] >= 250
    assert run.summary["error_total"] == 0  # every response arrived: only FINs are lost
    assert near(run.sampled_peak("server", "LAST_ACK"), run.watched["server"]["LAST-ACK"])


def test_dropped_fins_when_the_server_closes_first_make_closing(run_id, lab_prefix, tmp_path):
    run = run_variant("fin_wait_last_ack", "server_closes", run_id, tmp_path, load__duration="3s")
    assert run.watched["server"]["FIN-WAIT-1"] > 0
    assert run.watched["server"]["CLOSING"] >= 150
    assert run.after["server"]["CLOSING"] >= 150
    assert run.watched["client"]["FIN-WAIT-2"] >= 150
    assert run.summary["errors"].get("request timeout", 0) >= 150  # the response rode on the dropped FIN


def test_keepalive_finds_the_vanished_peer_after_time_plus_intvl_times_probes(run_id, lab_prefix, tmp_path):
    run = run_variant("keepalive_dead_peer", "fast", run_id, tmp_path, load__duration="7s")
    assert run.watched["client"]["ESTAB"] == 20
    assert run.summary["errors"].get("ETIMEDOUT") == 20
    # 2 s idle + 3 probes x 1 s after the last packet (at about t = 0).
    first = min(iv["t"] for iv in run.result.data["intervals"] if iv["errors"].get("ETIMEDOUT"))
    assert 4.0 <= first <= 6.0
    # The server never hears of it: its 20 connections stay ESTABLISHED to
    # the end of the run (the sampler's last row; the run then stops it).
    assert run.watched["server"]["ESTAB"] == 20
    assert run.summary["states"]["server"]["ESTABLISHED"]["final"] == 20
    assert run.after["client"]["ESTAB"] == 0


def test_tcp_max_tw_buckets_caps_time_wait(run_id, lab_prefix, tmp_path):
    run = run_variant("tw_buckets", "buckets_200", run_id, tmp_path, load__duration="3s")
    assert 190 <= run.watched["client"]["TIME-WAIT"] <= 200
    assert run.after["client"]["TIME-WAIT"] <= 200
    # 1,500 connections closed, 200 kept in TIME_WAIT, the rest skipped it.
    assert run.counters["client"]["TcpExtTCPTimeWaitOverflow"] >= 1000
    assert run.summary["error_total"] == 0
