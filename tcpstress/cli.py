"""The tcpstress command line: the only place that prints results and picks exit codes.

Exit codes: 0 success, 1 the run itself failed (a worker could not start, the
target never answered), 2 bad input (scenario, flags, run folders), 130/143
interrupted by SIGINT/SIGTERM after saving what was gathered.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tcpstress import __version__

# CLI flag -> scenario key. Every scenario field has a flag; flags go through
# the same validator as the file, so the messages are the same.
RUN_FLAGS: list[tuple[str, str, str]] = [
    # (option declaration, dotted key, help)
    ("--protocol", "target.protocol", "http or echo"),
    ("--path", "target.path", "HTTP request path"),
    ("--host-header", "target.host_header", "HTTP Host header (default: the target)"),
    ("--method", "target.method", "GET, HEAD or POST"),
    ("--response-size", "server.response_size", "built-in server: HTTP body bytes"),
    ("--server-close", "server.close", "built-in server close policy: client, server, never, reset"),
    ("--backlog", "server.backlog", "built-in server listen backlog"),
    ("--server-workers", "server.workers", "built-in server processes (SO_REUSEPORT)"),
    ("--model", "load.model", "closed (N connections) or open (a fixed rate)"),
    ("--connections", "load.connections", "concurrent connections (open model: the most in flight)"),
    ("--rate", "load.rate", "open model: new operations per second"),
    ("--ramp", "load.ramp", "open: linear ramp to the rate; closed: open the connections over this time"),
    ("--duration", "load.duration", "measured duration, e.g. 10s, 2m"),
    ("--warmup", "load.warmup", "unmeasured warm-up before the duration"),
    ("--workers", "load.workers", "worker processes (default: one per CPU)"),
    ("--max-requests", "load.max_requests", "stop after this many requests (0: no limit)"),
    ("--requests-per-connection", "connection.requests_per_connection", "N or unlimited"),
    ("--close", "connection.close", "who closes: client, server or reset (RST, no TIME_WAIT)"),
    ("--connect-timeout", "connection.connect_timeout", "e.g. 2s"),
    ("--request-timeout", "connection.request_timeout", "e.g. 5s"),
    ("--think-time", "connection.think_time", "closed model: pause between requests on a connection, e.g. 1s"),
    ("--source", "connection.source_addresses", "source addresses, e.g. 127.0.0.2-127.0.0.9"),
    ("--payload-size", "connection.payload_size", "echo: bytes per request"),
    ("--sample-interval", "sampling.interval", "sampler interval, e.g. 100ms"),
]
BOOL_FLAGS: list[tuple[str, str, str]] = [
    ("keepalive", "connection.keepalive", "reuse connections (--no-keepalive: one request per connection)"),
    ("builtin-server", "server.builtin", "start the built-in target for this run"),
    ("port-filter", "sampling.port_filter", "count only sockets on the target's port"),
]


class UsageFail(click.ClickException):
    """A one-line error with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"tcpstress: error: {self.message}", err=True)


def fail(message: str) -> None:
    raise UsageFail(message)


def _flag_name(dotted: str) -> str | None:
    for decl, key, _ in RUN_FLAGS:
        if key == dotted:
            return decl
    for name, key, _ in BOOL_FLAGS:
        if key == dotted:
            return f"--{name}"
    return None


def _name_flags(message: str, overrides: dict) -> str:
    """Say "--duration" rather than "load.duration" when the value came from a flag."""
    if message.startswith("<command line>: "):
        message = message[len("<command line>: "):]
        for dotted in overrides:
            flag = _flag_name(dotted)
            if flag and message.startswith(dotted):
                return flag + message[len(dotted):]
    return message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tcpstress")
def cli() -> None:
    """tcpstress: TCP load generation that also shows what the kernel holds."""


def _run_options(f):
    for name, key, help_text in reversed(BOOL_FLAGS):
        f = click.option(f"--{name}/--no-{name}", key.replace(".", "__"), default=None, help=help_text)(f)
    for decl, key, help_text in reversed(RUN_FLAGS):
        f = click.option(decl, key.replace(".", "__"), default=None, help=help_text)(f)
    return f


def _overrides(kwargs: dict) -> dict:
    out = {}
    for param, value in list(kwargs.items()):
        if "__" in param and value is not None:
            out[param.replace("__", ".")] = value if not isinstance(value, bool) else str(value).lower()
    return out


def _load(scenario_file, target, overrides):
    from tcpstress.scenario import ScenarioError, load_scenario, split_target

    try:
        if target:
            host, port = split_target(target)
            overrides = {"target.host": host, "target.port": str(port), **overrides}
            # An explicit target replaces a scenario's built-in server.
            overrides.setdefault("server.builtin", "false")
        if not scenario_file and not target and overrides.get("server.builtin") != "true":
            fail("no target: give a scenario file, --target HOST:PORT, or --builtin-server")
        if overrides.get("server.builtin") == "true" and not target and "target.port" not in overrides:
            overrides.setdefault("target.port", "0")
        return load_scenario(scenario_file, overrides)
    except ScenarioError as e:
        fail(_name_flags(str(e), overrides))


@cli.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="HOST:PORT of the server to load (loopback or lab only)")
@_run_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="run folder (default: reports/<time>-<name>; a shard: reports/<start time>-<name>/shard-<I>)")
@click.option("--quiet", "-q", is_flag=True, help="no live line")
@click.option("--shard", help="run share I of N (I/N); `env`: JOB_COMPLETION_INDEX of TCPSTRESS_SHARDS "
              "(Kubernetes Indexed Job); `compose`: the replica number in this container's name, "
              "of TCPSTRESS_SHARDS (docker compose --scale)")
@click.option("--start-at", help="start at this UTC time (ISO 8601), so shards share one schedule; "
              "an empty value means now")
def run(scenario_file, target, out, quiet, shard, start_at, **kwargs):
    """Run one scenario (a TOML file, flags, or both) and write a run folder.

    \b
    Examples:
      tcpstress run scenarios/keepalive_vs_churn.toml
      tcpstress run --target 127.0.0.1:8080 --connections 50 --duration 10s --no-keepalive
    """
    from tcpstress import runner, sharding
    from tcpstress.scenario import ScenarioError

    overrides = _overrides(kwargs)
    scenario = _load(scenario_file, target, overrides)
    if scenario.lab:
        fail(f"{scenario.source}: lab = true: use `tcpstress compare {scenario.source}` to run it in the lab")
    ctx = runner.RunContext()
    try:
        if shard:
            choice = sharding.parse_shard(shard, own_name=lambda: sharding.container_name(scenario.target.host))
            ctx.shard, ctx.shard_name = choice.pair, choice.name
            sharding.check_shard_fits(scenario, ctx.shard)
        if start_at:
            ctx.start_at = sharding.parse_start_at(start_at)
        elif shard == "compose" and ctx.shard[1] > 1:
            # Without a common start the loaders' folders and schedules would not line up.
            raise ScenarioError(f"--shard compose with {sharding.SHARDS_VARIABLE}={ctx.shard[1]}: needs --start-at "
                                "(START_AT in docker-compose.yml), the same UTC time for every loader")
        runner.check_fd_limit(scenario, ctx.shard[1] if ctx.shard else 1)
    except ScenarioError as e:
        fail(_name_flags(str(e), overrides))
    if not out:
        sharded = ctx.shard is not None and ctx.shard[1] > 1
        out = sharding.shard_run_dir(scenario, ctx.shard, ctx.start_at) if sharded else None
    live = sys.stderr if (not quiet and sys.stderr.isatty()) else None
    if out is None:
        out = runner.default_run_dir(scenario)  # made exclusively there
    else:
        _check_output_dir(out)
    try:
        result = runner.run_scenario(scenario, out, ctx, live=live)
    except runner.RunInterrupted as e:
        click.echo(f"interrupted ({e.args[0]}): partial results saved in {out}", err=True)
        _report_after_run([out], out)
        sys.exit(e.code)
    except runner.RunError as e:
        click.echo(f"tcpstress: run failed: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"tcpstress: cannot write results in {out}: {e.strerror}", err=True)
        sys.exit(1)
    from tcpstress.summary import format_summary

    click.echo(format_summary(result))
    reported = _report_after_run([out], out)
    click.echo(f"results: {out}")
    if result.data.get("partial"):
        # The numbers are saved, but they are not the whole run: say so in the exit code.
        click.echo(f"tcpstress: partial result: {result.data.get('partial_reason')}", err=True)
        sys.exit(1)
    if not reported:
        sys.exit(1)


def _check_output_dir(out: Path):
    """Claim the output folder before anything runs (results.claim_folder): of two runs started
    with the same --out, the second stops here with one line and writes nothing."""
    from tcpstress.results import FolderTaken, claim_folder

    try:
        return claim_folder(out)
    except FolderTaken as e:
        fail(f"--out {e}")
    except OSError as e:
        fail(f"--out {out}: cannot make the folder: {e.strerror}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _report_after_run(folders: list[Path], out: Path) -> bool:
    """Print the findings and render the report; a failure here never hides the saved results.
    Returns whether the report was written."""
    from tcpstress.report import diagnose, format_findings
    from tcpstress.report.render import load_report_runs, render_runs
    from tcpstress.results import ResultError

    try:
        runs = load_report_runs(folders)
        findings = diagnose(runs)
    except ResultError as e:
        click.echo(f"tcpstress: cannot diagnose: {e}", err=True)
        return False
    if findings:
        click.echo("\nfindings:")
        for line in format_findings(findings):
            click.echo(f"  {line}")
    try:
        path = render_runs(runs, findings, out)
        click.echo(f"report: {path}")
        return True
    except (ResultError, OSError, ValueError) as e:
        click.echo(f"tcpstress: could not render the report: {getattr(e, 'strerror', None) or e}", err=True)
        return False


@cli.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--variants", "variant_names", help="comma-separated variant names (default: all)")
@_run_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="comparison folder")
@click.option("--quiet", "-q", is_flag=True, help="no live line")
def compare(scenario_file, variant_names, out, quiet, **kwargs):
    """Run every variant of a scenario (in a fresh lab each, when lab = true) and compare them."""
    _compare(scenario_file, variant_names, out, quiet, _overrides(kwargs))


def _compare(scenario_file, variant_names, out, quiet, overrides) -> None:
    from tcpstress import runner
    from tcpstress.results import load_result
    from tcpstress.scenario import ScenarioError
    from tcpstress.summary import format_comparison

    scenario = _load(scenario_file, None, overrides)
    names = [n.strip() for n in variant_names.split(",") if n.strip()] if variant_names else None
    try:
        runner.pick_variants(scenario, names)
    except ScenarioError as e:
        fail(str(e))
    if scenario.lab:
        from tcpstress.lab.netns import check_lab_capability
        missing = check_lab_capability()
        if missing:
            fail(f"{scenario.source}: lab = true but {missing}")
    claim = _check_output_dir(out) if out else None
    out = out or runner.default_run_dir(scenario)
    live = sys.stderr if (not quiet and sys.stderr.isatty()) else None
    code = 0
    try:
        runner.run_comparison(scenario, out, names, live=live,
                              progress=lambda m: click.echo(m, err=True))
    except ScenarioError as e:
        # Refused before any variant ran: the folder is given back, nothing half-written.
        if claim is not None:
            claim.release()
        else:
            _remove_if_empty(out)
        fail(str(e))
    except runner.RunInterrupted as e:
        click.echo(f"interrupted ({e.args[0]}): partial results saved in {out}", err=True)
        code = e.code
    except runner.RunError as e:
        click.echo(f"tcpstress: run failed: {e}", err=True)
        code = 1
    order = {name: i for i, name in enumerate(comparison_names(Path(out)))}
    folders = sorted((p for p in Path(out).iterdir() if (p / "result.json").is_file()),
                     key=lambda p: (order.get(p.name, len(order)), p.name))
    runs = [load_result(p) for p in folders]
    if runs:
        click.echo("")
        click.echo(format_comparison(runs))
        if not _report_after_run([Path(out)], Path(out)):
            code = code or 1
    click.echo(f"results: {out}")
    if code:
        sys.exit(code)


def comparison_names(folder: Path) -> list[str]:
    import json
    try:
        return json.loads((folder / "comparison.json").read_text())["variants"]
    except (OSError, ValueError, KeyError):
        return []


@cli.command()
def demo():
    """The built-in demonstration: TIME_WAIT exhaustion across profiles in the lab (root),
    or keep-alive against churn on loopback when namespaces cannot be made."""
    scen = _scenarios_dir()
    reason = None
    try:
        from tcpstress.lab.netns import check_lab_capability
        reason = check_lab_capability()
    except ImportError as e:
        reason = f"the lab is not available ({e})"
    if reason is None:
        click.echo("demo: TIME_WAIT exhaustion, one fresh lab (network namespaces) per tuning profile", err=True)
        _compare(str(scen / "time_wait_exhaustion.toml"), None, None, False, {})
    else:
        click.echo(f"demo: no lab here ({reason}); comparing keep-alive with churn on loopback instead", err=True)
        _compare(str(scen / "keepalive_vs_churn.toml"), None, None, False, {})


def _scenarios_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "scenarios", Path(sys.prefix) / "share" / "tcpstress" / "scenarios"):
        if candidate.is_dir():
            return candidate
    fail("cannot find the scenarios folder next to the tcpstress package")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: pick a free port")
@click.option("--protocol", type=click.Choice(["http", "echo"]), default="http", show_default=True)
@click.option("--response-size", type=click.IntRange(0, 64 << 20), default=64, show_default=True)
@click.option("--echo-size", type=click.IntRange(1, 16 << 20), default=64, show_default=True)
@click.option("--close", type=click.Choice(["client", "server", "never", "reset"]), default="client",
              show_default=True, help="who closes: wait for the client, close first, never (CLOSE_WAIT), reset")
@click.option("--requests-per-connection", type=click.IntRange(0), default=0, show_default=True,
              help="close after this many requests (0: unlimited)")
@click.option("--backlog", type=click.IntRange(1), default=4096, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes, each with its own SO_REUSEPORT listener")
@click.option("--delay", type=float, default=0.0, help="seconds before each response")
@click.option("--stall-at", type=float, default=None, help="after this many seconds of uptime, stop answering...")
@click.option("--stall-for", type=float, default=0.0, help="...for this many seconds (coordinated-omission demos)")
@click.option("--max-seconds", type=float, default=None, help="stop by itself after this long")
@click.option("--parent-pid", type=click.IntRange(1), default=None,
              help="exit (SIGKILL) when this process, the one that started the server, dies")
def serve(parent_pid, **kwargs):
    """The built-in target: an HTTP/1.1 or echo server with close policies."""
    from tcpstress.server import ServerConfig, exit_with_parent, serve as run_server

    if parent_pid is not None:
        exit_with_parent(parent_pid)

    try:
        config = ServerConfig(**kwargs)
    except ValueError as e:
        fail(str(e))
    try:
        run_server(config)
    except OSError as e:
        click.echo(f"tcpstress serve: cannot listen on {kwargs['host']}:{kwargs['port']}: {e.strerror}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--netns", help="a named network namespace (/var/run/netns/NAME)")
@click.option("--pid", type=int, help="the network namespace of this process")
@click.option("--port", type=click.IntRange(1, 65535), help="count only sockets with this local or remote port")
@click.option("--interval", default="100ms", show_default=True, help="time between samples")
@click.option("--duration", default="30s", show_default=True, help="how long to sample")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="CSV file (default: stdout when it is not a terminal)")
@click.option("--quiet", "-q", is_flag=True, help="no live table")
@click.option("--force", is_flag=True, help="overwrite the --out file if it exists")
def sample(netns, pid, port, interval, duration, out, quiet, force):
    """Watch TCP states and kernel counters in one namespace: a better `watch ss -s`."""
    from tcpstress.sampler.sampler import run_sample_command
    from tcpstress.scenario import parse_duration

    try:
        every = parse_duration(interval)
        length = parse_duration(duration)
    except ValueError as e:
        fail(f"--interval/--duration: {e}")
    if not 0.01 <= every <= 60:
        fail(f"--interval {interval}: allowed 10ms to 60s")
    try:
        run_sample_command(netns, pid, port, every, length, out, live=not quiet, stream=sys.stderr, force=force)
    except ValueError as e:
        fail(str(e))


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="where to write the report (default: the first folder)")
def report(folders, out):
    """Re-render the report of saved run or comparison folders (runs nothing)."""
    from tcpstress.report import diagnose, format_findings
    from tcpstress.report.render import load_report_runs, render_runs
    from tcpstress.results import ResultError

    out = out or folders[0]
    try:
        runs = load_report_runs(list(folders))
        findings = diagnose(runs)
        path = render_runs(runs, findings, out)
    except ResultError as e:
        fail(str(e))
    for line in format_findings(findings):
        click.echo(line)
    click.echo(f"report: {path}")


@cli.command()
@click.option("--file", "profiles_file", type=click.Path(dir_okay=False, path_type=Path),
              help="a profiles TOML file (default: the shipped scenarios/profiles.toml)")
def profiles(profiles_file):
    """List the tuning profiles and the sysctls each one sets."""
    from tcpstress.lab.profiles import load_profiles, shipped_profiles
    from tcpstress.lab.sysctl import ProfileError

    try:
        found = load_profiles(profiles_file) if profiles_file else shipped_profiles()
    except (ProfileError, OSError) as e:
        fail(str(e))
    for p in found.values():
        click.echo(f"{p.name}: {p.description}")
        for side, values in (("client", p.client), ("server", p.server)):
            for knob, value in values.items():
                click.echo(f"    {side:<6} {knob} = {value}")


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="the merged run folder (must not exist or be empty); "
                   "default for a folder of shard-<I> folders: its merged/")
@click.option("--max-clock-skew", type=float, default=1.0, show_default=True,
              help="refuse shards whose measured phases started further apart (seconds)")
def merge(folders, out, max_clock_skew):
    """Combine shard run folders (run --shard I/N) into one run: exact histogram merge.

    \b
    FOLDERS: the shards' run folders, or the one folder that holds them as
    shard-0, shard-1 ... (what `run --shard` writes without --out).
    """
    from tcpstress.merge import MergeError, merge_runs, shard_folders
    from tcpstress.results import ResultError
    from tcpstress.summary import format_summary

    try:
        folders, parent = shard_folders(list(folders))
        if out is None and parent is None:
            raise MergeError("--out is needed: where to write the merged run")
        out = out or parent / "merged"
        result = merge_runs(folders, out, max_clock_skew=max_clock_skew)
    except (MergeError, ResultError) as e:
        fail(str(e))
    click.echo(format_summary(result))
    if not _report_after_run([out], out):
        sys.exit(1)
    click.echo(f"results: {out}")


@cli.command()
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="gallery folder (default: reports/<time>-gallery)")
@click.option("--full", is_flag=True, help="every variant of every state scenario (about 6 minutes)")
def gallery(out, full):
    """Every TCP state of the article, reproduced in the lab, in one report (a few minutes; root)."""
    from tcpstress.gallery import GalleryError, run_gallery
    from tcpstress.lab.netns import check_lab_capability
    from tcpstress.results import folder_stamp

    missing = check_lab_capability()
    if missing:
        fail(f"the gallery runs in the lab, but {missing}")
    out = out or Path("reports") / f"{folder_stamp()}-gallery"
    claim = _check_output_dir(out)
    try:
        result = run_gallery(out, quick=not full, progress=lambda m: click.echo(m, err=True))
    except GalleryError as e:
        claim.release()
        fail(str(e))
    for line in result.lines():
        click.echo(line)
    if result.report:
        click.echo(f"report: {result.report}")
    click.echo(f"results: {out}")
    if result.failures or result.missing():
        sys.exit(1)


@cli.command()
@click.argument("name", required=False)
def explain(name):
    """What a TCP state, sysctl knob or kernel counter means, with its value here now."""
    from tcpstress.explain import UnknownTopic, explain as explain_topic, explain_index

    if not name:
        click.echo(explain_index())
        return
    try:
        click.echo(explain_topic(name))
    except UnknownTopic as e:
        fail(str(e.args[0]) if e.args else str(e))


@cli.group()
def lab():
    """Lab housekeeping."""


@lab.command("cleanup")
@click.option("--all", "include_live", is_flag=True, help="also namespaces of runs still alive")
def lab_cleanup(include_live):
    """Remove namespaces (and their processes) left by lab runs that were killed, and stray built-in servers."""
    from tcpstress.lab.netns import check_lab_capability, cleanup
    from tcpstress.strays import stop_strays

    # Needs no lab rights: a loopback run's built-in server is the user's own process.
    servers = stop_strays()
    click.echo(f"stopped {len(servers)} stray built-in server(s)" + (": " + ", ".join(servers) if servers else ""))
    missing = check_lab_capability()
    if missing:
        fail(missing)
    removed = cleanup(include_live_runs=include_live)
    click.echo(f"removed {len(removed)} namespace(s)" + (": " + ", ".join(removed) if removed else ""))


def main() -> None:
    # Not click's standalone mode: it turns a Ctrl-C before the runner's own handler is in place
    # (loading, start-up) into "Aborted!" and exit 1; an interrupt is 130 whenever it comes.
    try:
        code = cli.main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort) as e:
        interrupted = isinstance(e, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt)
        click.echo("interrupted (SIGINT)" if interrupted else "aborted", err=True)
        sys.exit(130 if interrupted else 1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
