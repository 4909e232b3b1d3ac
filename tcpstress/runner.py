"""Compose one run: target, sampler, workers; merge, stream and save results.

The runner owns every process it starts and stops them all on the way out,
whatever happens (normal end, Ctrl-C, SIGTERM, an exception). Results stream
to the run folder once a second (result.json rewritten atomically, .hlog
lines appended), so an interrupted run keeps what it had gathered.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from tcpstress import __version__, results
from tcpstress.builtin_server import BuiltinServer, process_tree
from tcpstress.lab.fault_timer import FaultTimer
from tcpstress.lifecycle import RunError, RunInterrupted, Sampling, SigtermRaises, hlog_writers
from tcpstress.live import LiveLine
from tcpstress.load import schedule
from tcpstress.load.processes import IntervalMerger, WorkerFailure, WorkerPool
from tcpstress.record import Summary
from tcpstress.scenario import ResolvedTarget, Scenario, ScenarioError, resolve_target
from tcpstress.server_watch import ServerWatch

if TYPE_CHECKING:
    from tcpstress.lab.netns import Lab
    from tcpstress.lab.profiles import Profile
    from tcpstress.scenario import Variant

# How long after the end the runner waits for workers to send their last
# seconds; a worker still busy then is stopped and the run marked partial.
STOP_GRACE_S = 30.0
# Between handing out the plans and the first scheduled operation. It covers the
# longer of a worker reading its plan and building its engine (1-3 ms here) and the
# runner starting its sampler, hlog files and server watch after the plans (5-15 ms
# here): everything slower (the workers' boot, imports) is done before the plans
# go out. Measured with a loaded machine in mind: a worker that missed it would
# start its schedule late (late starts), not lose requests.
START_SLACK_S = 0.05
# Each https worker verifying against the system's CA store loads it when it builds
# its engine (tls_native: ~16 ms here; the ssl module's create_default_context, its
# fallback: ~60 ms); a --ca-file is one file.
TLS_STORE_SLACK_S = 0.1


def utc_stamp(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_run_dir(scenario: Scenario, base: Path = Path("reports")) -> Path:
    """reports/<time>-<name>[-N], made here: two runs started in the same second each get their own.

    The folder is claimed exclusively (results.claim_folder), so a name another
    run took between a check and the mkdir moves on to the next N instead of
    sharing it.
    """
    stamp = results.folder_stamp()
    n = 1
    path = base / f"{stamp}-{scenario.name}"
    while True:
        try:
            results.claim_folder(path)
            return path
        except results.FolderTaken:
            n += 1
            path = base / f"{stamp}-{scenario.name}-{n}"


@dataclass
class RunContext:
    """Where and how a run's processes start: the host, or a lab's namespaces."""

    client_spawn: Callable[..., subprocess.Popen] = subprocess.Popen
    server_spawn: Callable[..., subprocess.Popen] = subprocess.Popen
    server_host: str | None = None  # the built-in server's listen address (lab: its namespace address)
    target_host: str | None = None  # where the workers connect (lab: the server namespace address)
    source_addresses: tuple[str, ...] | None = None
    namespaces: list = field(default_factory=list)  # sampler NamespaceRefs
    sysctls: dict = field(default_factory=dict)  # read back per side
    variant: str | None = None
    fault_factory: Callable[[int], Any] | None = None  # port -> a lab fault (tcpstress/lab/faults.py)
    target_pids: Callable[[], list[int]] | None = None  # a user's server started by the lab
    shard: tuple[int, int] | None = None  # (index, count): run only this share of the scenario
    shard_name: str | None = None  # where the index came from: a compose container's name
    start_at: float | None = None  # wall-clock epoch seconds at which the load begins

    @classmethod
    def for_lab(cls, lab: Lab, sc: Scenario, sysctls: dict, variant: str | None = None,
                user_server: subprocess.Popen | None = None) -> RunContext:
        """A run inside `lab` (entered): workers in its client namespace, the built-in server in its
        server namespace, the sampler in both, the scenario's fault on the lab's network, and a
        user's server (server.command, already started) counted as the target's processes."""
        from tcpstress.sampler.sampler import NamespaceRef

        return cls(
            client_spawn=partial(lab.popen, "client"), server_spawn=partial(lab.popen, "server"),
            server_host=lab.server_addr, target_host=lab.server_addr,
            source_addresses=tuple(lab.client_addrs) if sc.connection.source_addresses else None,
            namespaces=[NamespaceRef(label="client", netns=lab.client_ns),
                        NamespaceRef(label="server", netns=lab.server_ns)],
            sysctls=sysctls, variant=variant,
            fault_factory=_fault_factory(sc, lab),
            target_pids=partial(process_tree, user_server.pid) if user_server else None)


def own_netns() -> str | None:
    """This process's network namespace ("net:[4026531840]"): shards on one hostname may
    still each have their own (`ip netns exec`), and a merge must not count them as one."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def own_namespace_sysctls() -> dict[str, dict[str, str | None]]:
    """The knobs of the namespace a non-lab run loads from (this host, or a compose
    loader's container), read and never written: the findings cite them."""
    from tcpstress.lab.sysctl import lab_knob_paths, read_sysctls

    try:
        return {"host": read_sysctls(None, lab_knob_paths())}
    except OSError:
        return {}


def check_fd_limit(s: Scenario, shard_count: int = 1) -> None:
    """Refuse up front a concurrency the open-file limit cannot hold, with the numbers."""
    import math
    import resource

    from tcpstress.load.worker import FD_MARGIN

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    parts = s.load.workers * shard_count
    per_worker = math.ceil(s.load.connections / parts)
    if per_worker + FD_MARGIN > limit:
        needed = math.ceil(s.load.connections / (limit - FD_MARGIN)) if limit > FD_MARGIN else None
        # A worker needs FD_MARGIN files before its first connection: below that, only a higher limit helps.
        advice = (f"use load.workers >= {math.ceil(needed / shard_count)} (--workers)" if needed
                  else f"raise the open-file limit to at least {per_worker + FD_MARGIN} "
                       f"(ulimit -n {per_worker + FD_MARGIN}; {FD_MARGIN} per worker go to the process itself)")
        raise ScenarioError(
            f"{s.source}: load.connections = {s.load.connections} "
            f"over {parts} worker process(es) needs {per_worker + FD_MARGIN} open files per worker; "
            f"the limit here is {limit} (hard RLIMIT_NOFILE): {advice}")


def run_scenario(scenario: Scenario, out_dir: Path, ctx: RunContext | None = None,
                 live: TextIO | None = None) -> results.RunResult:
    """Run one scenario (one variant) and save it in out_dir; returns the result.

    Raises RunInterrupted after saving the partial result when SIGINT or
    SIGTERM arrived during the run.

    What the run starts goes on one of two stacks. `load` holds what makes
    traffic (the workers, a lab fault) and unwinds first; `run` holds the
    target and what watches it (sampler, server watch, hlog files), so the
    sampler's last sample and the server's own count come after the traffic
    has stopped.
    """
    ctx = ctx or RunContext()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = scenario
    merger = IntervalMerger(max(1, int(-(-s.load.duration // 1))), s.load.duration)
    streamed = results.StreamedResult(out_dir)
    # The namespace's knobs are read once the workers are spawned (below): ~20-30 ms off the start.
    meta = _first_meta(s, ctx, started_at=time.time(), sysctls=ctx.sysctls or {})
    live_line = LiveLine(live)
    server: BuiltinServer | None = None
    pool: WorkerPool | None = None
    sampling = Sampling(None)
    fault_timer: FaultTimer | None = None
    watch: ServerWatch | None = None
    hlogs: dict[str, results.HlogWriter] = {}
    interrupted: RunInterrupted | None = None
    partial_reason: str | None = None
    with SigtermRaises() as sigterm, ExitStack() as run, ExitStack() as load:
        try:
            # The workers first: their boot (an interpreter and its imports, ~0.15 s each, in
            # parallel) overlaps everything below up to wait_booted(). Pushed before launch():
            # its exit stops whatever workers got going.
            pool = load.push(WorkerPool(s.load.workers, spawn=ctx.client_spawn, log_dir=out_dir))
            pool.launch()
            if not ctx.sysctls:
                meta["sysctls"] = own_namespace_sysctls()
            port = s.target.port
            if s.server.builtin:
                tls_files = _builtin_tls(s, out_dir)
                server = run.enter_context(BuiltinServer.start(s, ctx.server_host or s.target.host,
                                                               s.load.duration + s.load.warmup,
                                                               spawn=ctx.server_spawn, tls_files=tls_files))
                port = server.port
                meta["server"] = {"builtin": True, "pid": server.pid, "port": port}
                if tls_files and not s.tls.ca_file and not s.tls.insecure:
                    # The run's own certificate is the one to trust, and only for this run.
                    s = replace(s, tls=replace(s.tls, ca_file=str(tls_files[0])))
            if ctx.source_addresses is not None:
                s = _with_sources(s, ctx.source_addresses)
            target_host = ctx.target_host or s.target.host
            resolved = resolve_target(target_host, port, s.connection.source_addresses)
            meta["scenario"] = s.to_dict()
            meta["target"] = {"host": resolved.address, "port": port, "name": target_host,
                              "addresses": list(resolved.addresses), "family": resolved.family_name,
                              "scope": resolved.scope}
            sampler_type = _sampler_type()  # imported (~30 ms) while the workers boot
            pool.wait_booted()
            fault = None
            if ctx.fault_factory and s.fault.kind != "none":
                fault = ctx.fault_factory(port)
                fault.prepare()
            t_start = _load_start(ctx, s)
            t0 = t_start + s.load.warmup
            t_end = t0 + s.load.duration
            meta["t0_epoch"] = time.time() + (t0 - time.monotonic())
            # Plans first: each worker builds its engine while the runner starts what
            # watches the run; the slack covers the longer of the two.
            pool.send_plans(_plans(s, ctx, resolved, t_start, t0, t_end))
            sampling = run.enter_context(_sampling(s, ctx, out_dir, t0, port, pool, server, sampler_type))
            if fault is not None:
                fault_timer = load.enter_context(FaultTimer(fault, t0 + s.fault.at, s.fault.lasts))
            hlogs = run.enter_context(hlog_writers(out_dir, _metrics(s), meta["t0_epoch"]))
            if server:
                watch = run.enter_context(ServerWatch.start(server.proc, t0,
                                                            on_death=partial(pool.signal_all, signal.SIGTERM)))
            _collect(pool, merger, hlogs, live_line, meta, streamed, deadline=t_end + STOP_GRACE_S)
        except (KeyboardInterrupt, RunInterrupted) as e:
            interrupted = e if isinstance(e, RunInterrupted) else RunInterrupted(signal.SIGINT)
            partial_reason = f"interrupted by {interrupted.args[0]}"
            live_line.done()
            if pool:
                # Workers flush the second in progress on SIGTERM; gather it.
                pool.signal_all(signal.SIGTERM)
                _collect(pool, merger, hlogs, None, meta, streamed, deadline=time.monotonic() + 3.0, drain=True)
        except WorkerFailure as e:
            partial_reason = str(e)
            raise RunError(str(e)) from None
        finally:
            sigterm.ignore()  # nothing may interrupt the clean-up: the stacks unwind next
    if fault_timer is not None:
        meta["fault"] = dict(asdict(s.fault), **fault_timer.record)
    server_gone = watch.reason if watch is not None else None

    live_line.done()
    meta["ended_at"] = utc_stamp()
    if pool:
        died = [w for w in pool.workers if w.state in ("died", "fatal")]
        if died and not partial_reason:
            partial_reason = "; ".join(f"{w.name} {w.state}: {w.detail}" for w in died)
        lost = [text for text in (w.lost_counts() for w in pool.workers) if text]
        if lost and not partial_reason:
            partial_reason = "; ".join(lost) + ": seconds were lost between a worker and the results (a tcpstress bug)"
        late = [w for w in pool.workers if w.state in ("ready", "booted", "starting")]
        if late and not partial_reason:
            partial_reason = (f"{', '.join(w.name for w in late)} did not finish within {STOP_GRACE_S:.0f} s "
                              f"of the end (overloaded machine?); their last seconds are missing")
    if server_gone and not interrupted:
        partial_reason = server_gone  # the cause: the workers' errors and early ends follow from it
    meta["partial"] = partial_reason is not None
    meta["partial_reason"] = partial_reason
    # A shard runs 1/N of the schedule (its workers take every N-th share of the operations),
    # and is judged on that: against the whole rate, every shard "fell behind" by N times.
    share = 1.0 / ctx.shard[1] if ctx.shard else 1.0
    result = results.RunResult(data=_result_data(meta, merger, s, pool, server, sampling.summary, share),
                               folder=out_dir)
    if s.load.stage:
        from tcpstress import stages

        stages.add_to_result(result.data, out_dir, s.load, share)
    result.save(out_dir)
    if interrupted:
        raise interrupted
    return result


def _first_meta(s: Scenario, ctx: RunContext, started_at: float,
                sysctls: dict[str, Any] | None = None) -> dict[str, Any]:
    """result.json's head as it stands before anything starts (streamed as "in progress")."""
    return {
        "format": results.FORMAT, "tool_version": __version__, "kernel": platform.release(),
        "hostname": socket.gethostname(), "netns": own_netns(), "cpu_count": os.cpu_count(), "started_at": utc_stamp(started_at), "ended_at": None,
        "partial": True, "partial_reason": "in progress", "name": s.name, "variant": ctx.variant,
        "scenario": s.to_dict(), "sysctls": (ctx.sysctls or own_namespace_sysctls()) if sysctls is None else sysctls,
        "shard": ({"index": ctx.shard[0], "count": ctx.shard[1],
                   **({"name": ctx.shard_name} if ctx.shard_name else {})} if ctx.shard else None),
        "start_at": utc_stamp(ctx.start_at) if ctx.start_at else None,
    }


def start_slack(s: Scenario) -> float:
    """Seconds between handing out the plans and the first scheduled operation."""
    if s.target.protocol == "https" and not s.tls.ca_file:
        return START_SLACK_S + TLS_STORE_SLACK_S
    return START_SLACK_S


def _load_start(ctx: RunContext, s: Scenario) -> float:
    """The monotonic time of the first scheduled operation, warm-up included."""
    slack = start_slack(s)
    if ctx.start_at is None:
        return time.monotonic() + slack
    # Every shard starts on the same wall-clock second; the schedule
    # below is relative to it, so intended start times agree too.
    late = time.time() + slack - ctx.start_at
    if late > 0:
        raise RunError(f"--start-at {utc_stamp(ctx.start_at)} had passed by {late:.1f} s when the "
                       f"workers were ready (start-up took longer): give a time further ahead")
    return time.monotonic() + (ctx.start_at - time.time())


def _metrics(s: Scenario) -> tuple[str, ...]:
    """The latency histograms this run keeps (one .hlog each)."""
    metrics = ("total", "connect", "ttfb") + (("corrected",) if s.load.model == "open" else ())
    return metrics + (("tls",) if s.target.protocol == "https" else ()) + (("error",) if s.target.is_http else ())


def _plans(s: Scenario, ctx: RunContext, resolved: ResolvedTarget, t_start: float, t0: float,
           t_end: float) -> list[dict[str, Any]]:
    # A shard's workers are workers shard + count·k of count·W in all:
    # the same interleaving that splits work between workers splits it
    # between shards, exactly.
    shard_index, shard_count = ctx.shard or (0, 1)
    return [{"scenario": s.to_dict(), "family": int(resolved.family), "sockaddr": list(resolved.sockaddr),
             "index": shard_index + shard_count * i, "workers": shard_count * s.load.workers,
             "t_start": t_start, "t0": t0, "t_end": t_end}
            for i in range(s.load.workers)]


def _builtin_tls(s: Scenario, out_dir: Path) -> tuple[Path, Path] | None:
    """A certificate for an https built-in server, made for this run and kept in its folder."""
    if s.target.protocol != "https":
        return None
    from tcpstress.load.tls import make_self_signed

    names = tuple(dict.fromkeys((s.tls.server_name or s.target.host, "localhost", "127.0.0.1", "::1")))
    return make_self_signed(out_dir / "tls", names)


def _with_sources(s: Scenario, sources: tuple[str, ...]) -> Scenario:
    return replace(s, connection=replace(s.connection, source_addresses=sources))


def _sampler_type() -> type | None:
    """The kernel sampler's class, or None when it cannot be imported."""
    try:
        from tcpstress.sampler.sampler import Sampler
    except ImportError:  # the sampler is optional until it lands
        return None
    return Sampler


def _sampling(s: Scenario, ctx: RunContext, out_dir: Path, t0: float, port: int,
              pool: WorkerPool, server: BuiltinServer | None, sampler_type: type | None = None) -> Sampling:
    """The run's kernel sampler, started when entered, its summary kept when it stops."""
    Sampler = sampler_type or _sampler_type()
    if Sampler is None:
        return Sampling(None)
    from tcpstress.sampler.sampler import NamespaceRef

    namespaces = ctx.namespaces or [NamespaceRef(label="host")]

    def processes() -> dict:
        procs = {"generator": pool.pids()}
        if server:
            procs["target"] = server.pids()
        elif ctx.target_pids:
            procs["target"] = ctx.target_pids()
        return procs

    return Sampling(Sampler(namespaces=namespaces, interval=s.sampling.interval, t0=t0,
                            port=port if s.sampling.port_filter else None, out_dir=out_dir, processes=processes))


def _collect(pool: WorkerPool, merger: IntervalMerger, hlogs: dict, live: LiveLine | None, meta: dict,
             streamed: results.StreamedResult, deadline: float, drain: bool = False) -> None:
    """Merge worker messages and close each second once every running worker has passed it.

    With `drain` (stopping early), whatever the workers reported is closed too.
    """
    def reported() -> int:
        return max([w.last_interval for w in pool.workers] + [-1])

    for _, msg in pool.messages(deadline):
        if msg is not None:
            merger.add(msg)
        running = [w.last_interval for w in pool.workers if w.state not in ("done", "died", "fatal")]
        if running:
            upto = min(running)
        else:
            # Every worker has ended: what they reported is all there is (fewer
            # seconds than planned when load.max_requests ended the run early).
            upto = reported()
        _close_intervals(merger, upto, hlogs, live, meta, streamed)
    if drain:
        _close_intervals(merger, reported(), hlogs, None, meta, streamed)


def _close_intervals(merger: IntervalMerger, upto: int, hlogs: dict, live: LiveLine | None, meta: dict,
                     streamed: results.StreamedResult) -> None:
    closed = merger.finalize_upto(upto)
    for agg in closed:
        for metric, writer in hlogs.items():
            writer.write(agg.t, agg.duration, agg.hist(metric))
        if live:
            live.show(agg, merger.count)
    if closed:
        # Stream: a crash from here on loses at most the second in progress.
        streamed.save(meta, merger.final)


def _result_data(meta: dict, merger: IntervalMerger, s: Scenario, pool: WorkerPool | None,
                 server: BuiltinServer | None, sampler_summary: dict, share: float = 1.0) -> dict:
    """result.json's data; `share` is the part of the scenario's schedule this process ran (a shard's 1/N)."""
    intervals = merger.final
    summary = Summary.from_intervals(intervals, merger.hists)
    summary.intended_rate = s.load.rate * share if s.load.model == "open" else None
    summary.in_flight_at_end = sum(w.in_flight for w in pool.workers) if pool else 0
    summary.workers = [w.describe() for w in pool.workers] if pool else []
    if merger.by_name:
        summary.requests_by_name = merger.named_summary()
    duration = sum(iv.duration for iv in intervals)
    if s.load.model == "open" and duration:
        # The ramped schedule, from the end of the warm-up: a ramp asks for less than the full rate.
        due = share * (schedule.operations_due(s.load.warmup + duration, s.load.rate, s.load.ramp)
                       - schedule.operations_due(s.load.warmup, s.load.rate, s.load.ramp))
        summary.kept_up = results.kept_up(summary.to_json(), due)
    if server and server.served:
        summary.server = server.served
    for key in ("states", "counters", "processes", "sampler"):
        if key in sampler_summary:
            setattr(summary, key, sampler_summary[key])
    return dict(meta, intervals=[iv.to_json() for iv in intervals], summary=summary.to_json())


# --- comparisons ----------------------------------------------------------------


def pick_variants(scenario: Scenario, names: list[str] | None) -> list:
    from tcpstress.scenario import Variant

    if names:
        return [scenario.variant(n) for n in names]
    return list(scenario.variants) or [Variant(name="base")]


def run_comparison(scenario: Scenario, out_dir: Path, variant_names: list[str] | None = None,
                   live: TextIO | None = None, progress: Callable[[str], None] | None = None,
                   repeat: int = 1) -> dict:
    """Run each variant with otherwise the same workload; one run folder per variant.

    With repeat > 1 the variants run `repeat` times, interleaved (a-1 b-1 a-2 b-2:
    a drift of the machine hits every variant alike), and comparison.json's
    "groups" names the variant each folder repeats (tcpstress/repeat.py).

    With `lab = true` every variant gets fresh client and server namespaces and
    its own sysctl profile; without, variants may only change the workload and
    run one after another on loopback.
    """
    import json
    import secrets

    # Everything that can be refused is checked before the folder is made.
    variants = pick_variants(scenario, variant_names)
    profiles = _variant_profiles(scenario, variants) if scenario.lab else {}
    if not scenario.lab:
        for v in variants:
            if v.profile or v.client or v.server:
                raise ScenarioError(f"{scenario.source} [variants.{v.name}]: sysctl profiles run only in the lab: "
                                    f"set lab = true (needs root), or remove profile/client_sysctls/server_sysctls")
    for v in variants:
        check_fd_limit(scenario.with_variant(v))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(3)
    comparison: dict[str, Any] = {"format": results.COMPARISON_FORMAT, "scenario": scenario.name, "lab": scenario.lab,
                  "variants": [v.name for v in variants], "runs": {}, "run_id": run_id}
    plan = [(v, k) for k in range(repeat) for v in variants]
    if repeat > 1:
        comparison.update(variants=[f"{v.name}-{k + 1}" for v, k in plan], groups={}, repeat=True)
    for index, (v, k) in enumerate(plan):
        sc = scenario.with_variant(v)
        folder = v.name if repeat == 1 else f"{v.name}-{k + 1}"
        run_dir = out_dir / folder
        if progress:
            progress(f"variant {index + 1}/{len(plan)}: {folder}" + (f" ({v.description})" if v.description else ""))
        comparison["runs"][folder] = folder
        if repeat > 1:
            comparison["groups"][folder] = v.name
        results.write_atomic(out_dir / results.COMPARISON_FILE, json.dumps(comparison, indent=2) + "\n")
        if scenario.lab:
            run_in_lab(sc, v, profiles[v.name], run_dir, run_id, index, live)
        else:
            run_scenario(sc, run_dir, RunContext(variant=folder), live=live)
    return comparison


def _variant_profiles(scenario: Scenario, variants: list) -> dict:
    """Each variant's sysctls: its named profile, then its own client/server knobs on top."""
    from tcpstress.lab.profiles import Profile, get_profile, shipped_profiles
    from tcpstress.lab.sysctl import ProfileError, validate_profile

    shipped = shipped_profiles()
    out = {}
    for v in variants:
        where = f"{scenario.source} [variants.{v.name}]"
        client: dict = {}
        server: dict = {}
        if v.profile:
            try:
                named = get_profile(v.profile, shipped)
            except ProfileError as e:
                raise ScenarioError(f"{where}: {e}") from None
            client.update(named.client)
            server.update(named.server)
        try:
            client.update(validate_profile(v.client))
            server.update(validate_profile(v.server))
        except ProfileError as e:
            raise ScenarioError(f"{where}: {e}") from None
        out[v.name] = Profile(name=v.profile or v.name, description=v.description, client=client, server=server)
    return out


def run_in_lab(sc: Scenario, v: Variant, profile: Profile, run_dir: Path, run_id: str, index: int,
               live: TextIO | None = None) -> results.RunResult:
    """One variant in a fresh lab (lab `index` of comparison `run_id`): the profile's sysctls,
    a user's server.command if any, then the run; the lab goes away afterwards, whatever happens."""
    from tcpstress.lab.netns import Lab
    from tcpstress.lab.sysctl import apply_profile

    sources = max(1, len(sc.connection.source_addresses))
    # The user's server stops before the lab tears its namespaces down.
    with Lab(run_id=run_id, index=index, client_addresses=sources) as lab, ExitStack() as stack:
        sysctls = apply_profile(lab, profile)
        user_server = stack.enter_context(_user_server(sc, lab, run_dir)) if sc.server.command else None
        ctx = RunContext.for_lab(lab, sc, sysctls, variant=v.name, user_server=user_server)
        return run_scenario(sc, run_dir, ctx, live=live)


def _fault_factory(sc: Scenario, lab: Lab) -> Callable[[int], Any] | None:
    if sc.fault.kind == "none":
        return None
    from tcpstress.lab.faults import make_fault

    return lambda port: make_fault(sc.fault, lab, port)


@contextmanager
def _user_server(sc: Scenario, lab: Lab, run_dir: Path) -> Iterator[subprocess.Popen]:
    user_server = _start_user_server(sc, lab, run_dir)
    try:
        yield user_server
    finally:
        if user_server.poll() is None:
            user_server.terminate()
            try:
                user_server.wait(5)
            except subprocess.TimeoutExpired:
                user_server.kill()


USER_SERVER_START_S = 15.0


def server_argv(sc: Scenario, host: str, run_dir: Path) -> list[str]:
    """server.command as an argument list: split first, then {host} {port} {dir} filled into each argument.

    Substituting before the split let a space or a quote in --out (the {dir})
    change the argument list; a value now lands inside the one argument that
    named it, whatever it holds.
    """
    import shlex

    try:
        words = shlex.split(sc.server.command)
        return [w.format(host=host, port=sc.target.port, dir=run_dir) for w in words]
    except (KeyError, IndexError, ValueError) as e:
        raise ScenarioError(f"{sc.source}: server.command: {e}: use {{host}}, {{port}} and {{dir}}") from None


def _start_user_server(sc: Scenario, lab, run_dir: Path) -> subprocess.Popen:
    """A user's server (server.command) in the server namespace, ready when its port accepts.

    The command may use {host} (the server namespace's address), {port} and
    {dir} (the run folder, for configs and logs).
    """
    from tcpstress.lab.netns import run_in_netns

    run_dir.mkdir(parents=True, exist_ok=True)
    argv = server_argv(sc, lab.server_addr, run_dir)
    log = open(run_dir / "server.log", "wb")
    proc = lab.popen("server", argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()

    def accepts() -> bool:
        try:
            socket.create_connection((lab.server_addr, sc.target.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    deadline = time.monotonic() + USER_SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (run_dir / "server.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise RunError(f"server.command exited with code {proc.returncode}: {tail[0] if tail else 'no output'}")
        if run_in_netns(lab.client_ns, accepts):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RunError(f"server.command did not accept connections on {lab.server_addr}:{sc.target.port} "
                   f"within {USER_SERVER_START_S:.0f} s")
