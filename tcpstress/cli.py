"""The tcpstress command line: the only place that prints results and picks exit codes.

Exit codes: 0 success, 1 the run itself failed (a worker could not start, the
target never answered, not one request succeeded), 2 bad input (scenario,
flags, run folders), 99 a threshold failed (k6's code; also a CRITICAL finding
with --fail-on critical, and a regression beyond `diff --max-regression`),
130/143 interrupted by SIGINT/SIGTERM after saving what was gathered.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import click

from tcpstress import __version__

class DurationType(click.ParamType):
    """A duration flag: 10ms, 1.5s, 1m30s, or a plain number of seconds."""

    name = "duration"

    def convert(self, value, param, ctx):
        from tcpstress.scenario import parse_duration

        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = DurationType()


class UsageFail(click.ClickException):
    """A one-line error with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"tcpstress: error: {self.message}", err=True)


def fail(message: str) -> NoReturn:
    raise UsageFail(message)


def _flag_name(dotted: str) -> str | None:
    from tcpstress.flags import flag_for

    return flag_for(dotted)


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
    """One flag per scenario field (tcpstress/flags.py), checked by the scenario validator."""
    from tcpstress.flags import run_flags

    for flag in reversed(run_flags()):
        if flag.is_bool:
            on = flag.decls[-1]
            if flag.dotted == "tls.insecure":
                f = click.option(*flag.decls, flag.param, flag_value="true", default=None, help=flag.help_text())(f)
            else:
                f = click.option(f"{on}/--no-{on[2:]}", flag.param, default=None, help=flag.help_text())(f)
        elif flag.multiple:
            f = click.option(*flag.decls, flag.param, multiple=True, metavar=flag.metavar,
                             help=flag.help_text())(f)
        else:
            f = click.option(*flag.decls, flag.param, default=None, metavar=flag.metavar,
                             help=flag.help_text())(f)
    return f


def _gate_options(f):
    """The release-gate flags of run and compare (README "Release gate")."""
    f = click.option("--fail-on", type=click.Choice(["critical"]), default=None,
                     help="a CRITICAL finding fails the run too (exit 99)")(f)
    f = click.option("--no-report", is_flag=True,
                     help="skip the figures and report.html (findings still decide --fail-on); "
                          "`tcpstress report DIR` makes them later")(f)
    f = click.option("--json", "json_out", is_flag=True,
                     help="print the summary and the threshold verdicts as JSON on stdout, nothing else there")(f)
    f = click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
                     help="run N times (compare: the variants interleaved, a b a b); the summary shows the "
                          "spread, `tcpstress diff` pools the repetitions")(f)
    f = click.option("--threshold", "threshold_exprs", multiple=True, metavar="EXPR",
                     help="a pass/fail check, e.g. 'corrected.p99 < 20ms' (repeatable; exit 99 when one fails)")(f)
    return f


def _thresholds(scenario, exprs):
    """The scenario's [thresholds] and the --threshold flags, parsed before anything runs."""
    from tcpstress.thresholds import ThresholdError, parse_all

    try:
        return parse_all(scenario.thresholds, f"{scenario.source}: thresholds") + parse_all(exprs, "--threshold")
    except ThresholdError as e:
        fail(str(e))


def _gate_code(results_, findings, fail_on, empty_fails: bool = True) -> int:
    """0, 1 (a run in which not one request succeeded) or 99 (a threshold or, with --fail-on, a finding).

    The verdicts are those record() kept in each result. empty_fails=False (compare):
    a variant that provokes a total failure (SYN_SENT, a partition) is the experiment
    working, so it is named but decides nothing; its thresholds still do."""
    from tcpstress.thresholds import EXIT_FAILED, recorded

    empty = [r for r in results_ if not r.summary.get("requests")]
    for result in empty:
        errors = ", ".join(f"{k} {v:,}" for k, v in (result.summary.get("errors") or {}).items()) or "none"
        what = "run failed" if empty_fails else "note"
        click.echo(f"tcpstress: {what}: not one request succeeded ({result.name}; errors: {errors})", err=True)
    if empty and empty_fails:
        return 1
    code = 0
    failed = [f"{r.name}: {v.expr} ({'' if v.measured is None else 'measured '}{v.measured_text})"
              for r in results_ for v in recorded(r.data) if not v.passed]
    if failed:
        click.echo("tcpstress: threshold failed: " + "; ".join(failed), err=True)
        code = EXIT_FAILED
    critical = [f for f in findings if f.severity == "critical"] if fail_on == "critical" else []
    if critical:
        click.echo(f"tcpstress: --fail-on critical: {critical[0].title}"
                   + (f" ({critical[0].variant})" if critical[0].variant else ""), err=True)
        code = EXIT_FAILED
    return code


def _overrides(kwargs: dict) -> dict:
    from tcpstress.flags import param_to_dotted

    out = {}
    for param, value in list(kwargs.items()):
        if "__" in param and value is not None and value != ():
            out[param_to_dotted(param)] = (list(value) if isinstance(value, tuple) else
                                           str(value).lower() if isinstance(value, bool) else value)
    return out


HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")


def _host_port_argument(text: str) -> bool:
    """`tcpstress run 127.0.0.1:8080`, as with --target: HOST:PORT that is no file here."""
    return HOST_PORT.fullmatch(text) is not None and not os.path.exists(text)


def _load(scenario_file, target, overrides):
    from tcpstress.scenario import ScenarioError, load_scenario, target_overrides

    try:
        if scenario_file and ("://" in str(scenario_file) or _host_port_argument(str(scenario_file))):
            if target:
                fail("give the target once: as a URL or HOST:PORT argument or as --target")
            scenario_file, target = None, str(scenario_file)
        if target:
            # A URL or HOST:PORT replaces the file's target; explicit flags still win.
            overrides = {**target_overrides(target), **overrides}
            # An explicit target replaces a scenario's built-in server.
            overrides.setdefault("server.builtin", "false")
        if (not scenario_file and not target and overrides.get("server.builtin") != "true"
                and "target.port" not in overrides):
            fail("no target: give a scenario file, --target HOST:PORT, or --builtin-server")
        if overrides.get("server.builtin") == "true" and not target and "target.port" not in overrides:
            overrides.setdefault("target.port", "0")
        if scenario_file:
            from tcpstress.shipped import scenario_argument

            scenario_file = scenario_argument(str(scenario_file))  # a bare name: the shipped scenario
        return load_scenario(scenario_file, overrides)
    except ScenarioError as e:
        fail(_name_flags(str(e), overrides))


@cli.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="the server to load: a URL (https://host:8443/path) or HOST:PORT; "
              "any host, IPv4 or IPv6 ([::1]:8080)")
@_run_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="run folder (default: reports/<time>-<name>; a shard: reports/<start time>-<name>/shard-<I>)")
@click.option("--quiet", "-q", is_flag=True, help="no live line")
@click.option("--shard", help="run share I of N (I/N); `env`: JOB_COMPLETION_INDEX of TCPSTRESS_SHARDS "
              "(Kubernetes Indexed Job); `compose`: the replica number in this container's name, "
              "of TCPSTRESS_SHARDS (docker compose --scale)")
@click.option("--start-at", help="start at this UTC time (ISO 8601), so shards share one schedule; "
              "an empty value means now")
@click.option("--wait-for-target", "wait_for_target", metavar="SECONDS",
              help="first wait up to SECONDS (e.g. 60s) for the target to accept a connection "
              "(a container started beside it)")
@_gate_options
def run(scenario_file, target, out, quiet, shard, start_at, threshold_exprs, json_out, no_report, fail_on, repeat,
        wait_for_target=None, **kwargs):
    """Run one scenario (a TOML file, flags, or both) and write a run folder.

    \b
    Examples:
      tcpstress run https://staging.example/api -H 'Authorization: Bearer T' --duration 30s
      tcpstress run scenarios/keepalive_vs_churn.toml
      tcpstress run 127.0.0.1:8080 --connections 50 --duration 10s --no-keepalive
      tcpstress run scenarios/http_release_check.toml --target https://staging.example/
    """
    from tcpstress import runner, sharding
    from tcpstress.scenario import ScenarioError

    overrides = _rate_implies_open(_overrides(kwargs))
    scenario = _load(scenario_file, target, overrides)
    checks = _thresholds(scenario, threshold_exprs)
    say = _say(json_out)
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
    if wait_for_target:
        _wait_for_target(scenario, wait_for_target, start_at)
    if not out:
        sharded = ctx.shard is not None and ctx.shard[1] > 1
        out = sharding.shard_run_dir(scenario, ctx.shard, ctx.start_at) if sharded else None
    live = None if quiet else sys.stderr  # not a terminal: a plain line every few seconds
    if out is None:
        out = runner.default_run_dir(scenario)  # claimed exclusively there
    else:
        _check_output_dir(out)
    if repeat > 1:
        if ctx.shard or ctx.start_at:
            fail("--repeat: not with --shard or --start-at (a shard's schedule is one run); repeat the sharded run instead")
        _run_repeats(scenario, out, repeat, live, checks, json_out, no_report, fail_on)
        return
    try:
        result = runner.run_scenario(scenario, out, ctx, live=live)
    except (runner.RunInterrupted, runner.RunError, OSError) as e:
        code = _run_stopped(e, out)
        if isinstance(e, runner.RunInterrupted):
            _report_after_run([out], out, err=json_out, render=not no_report)
        sys.exit(code)
    from tcpstress.summary import format_summary
    from tcpstress.thresholds import record

    try:
        record(result, checks)
    except OSError as e:
        sys.exit(_run_stopped(e, out))
    say(format_summary(result))
    findings = []  # filled by _report_after_run
    reported = _report_after_run([out], out, err=json_out, render=not no_report, found=findings)
    say(f"results: {out}")
    if json_out:
        _print_json(result)
    if result.data.get("partial"):
        # The numbers are saved, but they are not the whole run: say so in the exit code.
        click.echo(f"tcpstress: partial result: {result.data.get('partial_reason')}", err=True)
        sys.exit(1)
    if not reported:
        sys.exit(1)
    code = _gate_code([result], findings, fail_on)
    if code:
        sys.exit(code)


def _wait_for_target(scenario, text: str, start_at: str | None) -> None:
    from tcpstress import sharding, target_wait
    from tcpstress.scenario import ScenarioError

    try:
        seconds = target_wait.parse_wait(text)
    except ValueError as e:
        fail(f"--wait-for-target {text!r}: {e}; expected a duration from 0 to 3600 s, e.g. 60s")
    if scenario.server.builtin:
        return  # the run starts its own target
    host, port = scenario.target.host, scenario.target.port
    waited = target_wait.wait_for_target(host, port, seconds)
    if not waited.listening:
        click.echo(f"tcpstress: run failed: --wait-for-target {text}: {host}:{port} accepted no connection "
                   f"within {waited.waited_s:.0f} s ({waited.probes} tries, last: {waited.last_error})", err=True)
        sys.exit(1)
    if waited.probes > 1:
        click.echo(f"target {host}:{port} listening after {waited.waited_s:.1f} s", err=True)
    if start_at:
        try:
            sharding.parse_start_at(start_at)  # the wait may have used up the time before START_AT
        except ScenarioError as e:
            click.echo(f"tcpstress: run failed: the target listened only after the start time: {e}", err=True)
            sys.exit(1)


def _run_repeats(scenario, out: Path, repeat: int, live, checks, json_out, no_report, fail_on) -> None:
    """`run --repeat N`: N run folders in one repeat folder, then the spread between them."""
    import json

    from tcpstress import repeat as repeats
    from tcpstress import runner
    from tcpstress.summary import format_comparison
    from tcpstress.thresholds import record

    say = _say(json_out)
    groups: dict[str, str] = {}
    done = []
    code = 0
    for k in range(repeat):
        folder = Path(out) / repeats.folder_name(None, k)
        groups[folder.name] = scenario.name
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
            repeats.write_index(out, scenario.name, groups)
            click.echo(f"repetition {k + 1}/{repeat}", err=True)
            result = runner.run_scenario(scenario, folder, runner.RunContext(variant=folder.name), live=live)
        except (runner.RunInterrupted, runner.RunError) as e:
            code = _run_stopped(e, out)
            break  # the repetitions done so far are still reported
        except OSError as e:
            sys.exit(_run_stopped(e, out))
        record(result, checks)
        done.append(result)
        if result.data.get("partial"):
            click.echo(f"tcpstress: partial result: {result.data.get('partial_reason')}", err=True)
            code = code or 1
    findings: list = []
    if done:
        say(format_comparison(done))
        say(repeats.format_spread(scenario.name, done))
        _say_thresholds(done, say)
        if not _report_after_run([Path(out)], Path(out), err=json_out, render=not no_report, found=findings):
            code = code or 1
    say(f"results: {out}")
    if json_out:
        click.echo(json.dumps({"repeats": {r.name: {**r.summary, "thresholds": r.data.get("thresholds", [])}
                                           for r in done},
                               "spread": [vars(s) for s in repeats.spread(done)]}, indent=2))
    if not code and done:
        code = _gate_code(done, findings, fail_on)
    if code:
        sys.exit(code)


PARTIAL_KEPT = "partial results saved in"
STEPS_KEPT = "the steps so far are in"


def _run_stopped(e: Exception, out, kept: str = PARTIAL_KEPT) -> int:
    """The one line for a run that stopped early (interrupted, failed, or unable to write), and its exit code."""
    from tcpstress import runner

    if isinstance(e, runner.RunInterrupted):
        click.echo(f"interrupted ({e.args[0]}): {kept} {out}", err=True)
        return e.code
    if isinstance(e, runner.RunError):
        where = f" ({kept} {out})" if kept != PARTIAL_KEPT else ""
        click.echo(f"tcpstress: run failed: {e}{where}", err=True)
        return 1
    click.echo(f"tcpstress: cannot write results in {out}: {getattr(e, 'strerror', None) or e}", err=True)
    return 1


def _say(to_stderr: bool):
    """click.echo to stdout, or to stderr when stdout is kept for --json."""
    return lambda message="": click.echo(message, err=to_stderr)


def _print_json(result) -> None:
    """The summary (as result.json has it) plus the threshold verdicts: the only thing --json puts on stdout."""
    import json

    click.echo(json.dumps({**result.summary, "thresholds": result.data.get("thresholds", [])}, indent=2))


def _rate_implies_open(overrides: dict) -> dict:
    """-R/--rate without --model means the open model, as wrk2's -R does."""
    if "load.rate" in overrides and "load.model" not in overrides:
        return {**overrides, "load.model": "open"}
    return overrides


def _new_folder(path: Path) -> Path:
    """path, or path-2, path-3 ... : the first that does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


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


def _report_after_run(folders: list[Path], out: Path, err: bool = False, render: bool = True,
                      found: list | None = None) -> bool:
    """Print the findings and render the report; a failure here never hides the saved results.
    Returns whether the report was written (or, with render=False, the findings made).
    err: print on stderr (stdout holds --json); found: receives the findings."""
    from tcpstress.report import diagnose, format_findings
    from tcpstress.report.render import load_report_runs, render_runs
    from tcpstress.results import ResultError

    try:
        runs = load_report_runs(folders)
        findings = diagnose(runs)
    except ResultError as e:
        click.echo(f"tcpstress: cannot diagnose: {e}", err=True)
        return False
    if found is not None:
        found.extend(findings)
    from tcpstress.report.verdict import verdict_lines

    verdict = verdict_lines(runs, findings)
    if verdict:
        click.echo("", err=err)
    for line in verdict:
        click.echo(f"verdict: {line}", err=err)
    if findings:
        click.echo("\nfindings:", err=err)
        for line in format_findings(findings):
            click.echo(f"  {line}", err=err)
    if not render:
        return True
    try:
        path = render_runs(runs, findings, out)
        click.echo(f"report: {path}", err=err)
        return True
    except (ResultError, OSError, ValueError) as e:
        click.echo(f"tcpstress: could not render the report: {getattr(e, 'strerror', None) or e}", err=True)
        return False


@cli.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--variants", "variant_names", help="comma-separated variant names (default: all)")
@click.option("--profiles", "profile_names", help="comma-separated shipped profiles (tcpstress profiles) to run as "
              "the variants instead of the scenario's own (a lab scenario)")
@click.option("--target", "-t", help="the server to load, as for run: a URL or HOST:PORT")
@_run_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="comparison folder")
@click.option("--quiet", "-q", is_flag=True, help="no live line")
@_gate_options
def compare(scenario_file, variant_names, profile_names, target, out, quiet, threshold_exprs, json_out, no_report,
            fail_on, repeat, **kwargs):
    """Run every variant of a scenario (in a fresh lab each, when lab = true) and compare them."""
    if profile_names and variant_names:
        fail("--profiles and --variants: give one of them (the profiles are the variants)")
    _compare(scenario_file, variant_names, out, quiet, _rate_implies_open(_overrides(kwargs)),
             threshold_exprs=threshold_exprs, json_out=json_out, no_report=no_report, fail_on=fail_on,
             repeat=repeat, target=target, profile_names=profile_names)


def _compare(scenario_file, variant_names, out, quiet, overrides, threshold_exprs=(), json_out=False,
             no_report=False, fail_on=None, repeat=1, target=None, profile_names=None) -> None:
    from tcpstress import runner
    from tcpstress.results import load_result
    from tcpstress.scenario import ScenarioError
    from tcpstress.summary import format_comparison

    scenario = _load(scenario_file, target, overrides)
    if profile_names:
        from tcpstress.profile_variants import with_profiles

        try:
            scenario = with_profiles(scenario, profile_names)
        except ScenarioError as e:
            fail(str(e))
    checks = _thresholds(scenario, threshold_exprs)
    say = _say(json_out)
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
    live = None if quiet else sys.stderr  # not a terminal: a plain line every few seconds
    code = 0
    try:
        runner.run_comparison(scenario, out, names, live=live,
                              progress=lambda m: click.echo(m, err=True), repeat=repeat)
    except ScenarioError as e:
        # Refused before any variant ran: the folder is given back, nothing half-written.
        if claim is not None:
            claim.release()
        else:
            _remove_if_empty(out)
        fail(str(e))
    except (runner.RunInterrupted, runner.RunError) as e:
        code = _run_stopped(e, out)
    order = {name: i for i, name in enumerate(comparison_names(Path(out)))}
    folders = sorted((p for p in Path(out).iterdir() if (p / "result.json").is_file()),
                     key=lambda p: (order.get(p.name, len(order)), p.name))
    runs = [load_result(p) for p in folders]
    findings: list = []
    if runs:
        from tcpstress.thresholds import record

        for result in runs:
            record(result, checks)
        say("")
        say(format_comparison(runs))
        if repeat > 1:
            from tcpstress import repeat as repeats

            groups = repeats.groups_of(Path(out))
            group_of = {id(r): groups.get(folder.name, folder.name) for r, folder in zip(runs, folders)}
            for name in dict.fromkeys(group_of.values()):
                say(repeats.format_spread(name, [r for r in runs if group_of[id(r)] == name]))
        _say_thresholds(runs, say)
        if not _report_after_run([Path(out)], Path(out), err=json_out, render=not no_report, found=findings):
            code = code or 1
    say(f"results: {out}")
    if json_out:
        import json
        click.echo(json.dumps({"variants": {r.name: {**r.summary, "thresholds": r.data.get("thresholds", [])}
                                            for r in runs}}, indent=2))
    if not code and runs:
        code = _gate_code(runs, findings, fail_on, empty_fails=False)
    if code:
        sys.exit(code)


def _say_thresholds(runs, say) -> None:
    """Each variant's PASS/FAIL table under the side-by-side table."""
    from tcpstress.thresholds import format_table, recorded

    for result in runs:
        table = format_table(recorded(result.data))
        if table:
            say(f"\nthresholds [{result.name}]:")
            say(table)


def comparison_names(folder: Path) -> list[str]:
    import json
    try:
        return json.loads((folder / "comparison.json").read_text())["variants"]
    except (OSError, ValueError, KeyError):
        return []


@cli.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False))
@click.option("--target", "-t", help="the server to search: a URL or HOST:PORT")
@click.option("--slo", "slo_exprs", multiple=True, metavar="EXPR",
              help="a check every step must pass, e.g. 'corrected.p99 < 50ms', 'error_rate < 1%' (repeatable; "
                   "default: the scenario's [thresholds])")
@click.option("--step", "step_s", type=DURATION, default="5s", show_default=True,
              help="measured length of a step (lengthened until it holds enough requests for the SLO's figures)")
@click.option("--max-step", "max_step_s", type=DURATION, default="60s", show_default=True,
              help="never lengthen a step beyond this")
@click.option("--max-rate", type=click.FloatRange(1, 10_000_000), default=1_000_000, show_default=True,
              help="stop growing here")
@click.option("--growth", type=click.FloatRange(1.1, 10), default=2.0, show_default=True,
              help="factor between rates until the SLO first fails")
@click.option("--precision", default="5%", show_default=True,
              help="stop bisecting when fail - pass is within this share of pass")
@click.option("--min-rate", type=click.FloatRange(1, 10_000_000), default=None,
              help="stop lowering here when the first rate already fails (default: an eighth of the start)")
@click.option("--max-steps", type=click.IntRange(1, 100), default=20, show_default=True)
@_run_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="search folder: one run folder per step, capacity.json, capacity.png "
                   "(default: reports/<time>-<name>-capacity)")
@click.option("--quiet", "-q", is_flag=True, help="no progress lines")
@click.option("--json", "json_out", is_flag=True, help="print the answer as JSON on stdout, nothing else there")
@click.option("--no-report", is_flag=True, help="no report.html per step (findings still name the limit)")
@click.option("--variants", "variant_names", help="lab = true: comma-separated variants to search (default: all)")
def capacity(scenario_file, target, slo_exprs, step_s, max_step_s, max_rate, growth, precision, min_rate, max_steps, out,
             quiet, json_out, no_report, variant_names=None, **kwargs):
    """Search the highest open-model rate the target sustains within the SLO, and name the first limit.

    \b
    The rate (--rate: where to start; default the scenario's open-model rate, else 100/s)
    doubles until a step fails the SLO, then bisects between the last pass and the first
    fail. Each step is an ordinary run (--warmup before it, default 1s) in its own folder.
    Exit codes: 0 a capacity was bracketed, 1 none was (generator-limited, the SLO never
    failed up to --max-rate or never passed, a step's run failed), 2 bad input.
    \b
    Example:
      tcpstress capacity --target http://127.0.0.1:8080/ --slo 'corrected.p99 < 50ms' --slo 'error_rate < 1%'
    """
    import json

    from tcpstress import capacity as cap
    from tcpstress import runner
    from tcpstress.diff import DiffError, parse_fraction
    from tcpstress.results import folder_stamp
    from tcpstress.scenario import ScenarioError

    overrides = _overrides(kwargs)
    for dotted in ("load.duration", "load.stage", "load.ramp", "load.model"):
        if dotted in overrides:
            fail(f"{_flag_name(dotted)}: not with capacity: it sets each step's rate and length "
                 f"(--rate to start from, --step for the length)")
    start_rate = overrides.pop("load.rate", None)
    scenario = _load(scenario_file, target, overrides)
    from tcpstress.thresholds import ThresholdError, parse_all

    try:
        checks = parse_all(slo_exprs, "--slo") if slo_exprs else parse_all(scenario.thresholds,
                                                                           f"{scenario.source}: thresholds")
    except ThresholdError as e:
        fail(str(e))
    if not checks:
        fail("no SLO: give --slo 'corrected.p99 < 50ms' (repeatable) or [thresholds] checks in the scenario")
    try:
        frac = parse_fraction(precision, "--precision")
    except DiffError as e:
        fail(str(e))
    if not 0 < frac < 1:
        fail(f"--precision {precision}: allowed more than 0% and less than 100%")
    if start_rate is not None:
        try:
            start = float(start_rate)
        except ValueError:
            fail(f"--rate {start_rate!r}: not a number; allowed: the rate to start from, e.g. 500")
        if not 1 <= start <= max_rate:
            fail(f"--rate {start_rate}: allowed 1 to --max-rate ({max_rate:g})")
    else:
        start = scenario.load.rate if scenario.load.model == "open" and scenario.load.rate else 100.0
    warmup = scenario.load.warmup if scenario.load.warmup or "load.warmup" in overrides else 1.0
    if step_s < 1 or step_s != int(step_s):
        fail(f"--step {step_s:g}s: allowed whole seconds, at least 1s")
    try:
        runner.check_fd_limit(scenario)
    except ScenarioError as e:
        fail(_name_flags(str(e), overrides))
    out = out or Path("reports") / f"{folder_stamp()}-{scenario.name}-capacity"
    _check_output_dir(out)
    start = min(start, max_rate)
    plan = cap.SearchPlan(start=start, growth=growth, precision=frac, max_rate=max_rate,
                          min_rate=min(min_rate or max(1.0, start / 8), start), max_steps=max_steps)
    options = cap.CapacityOptions(step=float(step_s), warmup=warmup, longest_step=float(max_step_s),
                                  render=not no_report)
    say = _say(json_out)
    progress = None if quiet else (lambda m: click.echo(m, err=True))
    if scenario.lab:
        _capacity_lab(scenario, checks, out, plan, options, variant_names, progress, say, json_out)
        return
    try:
        answer = cap.run_search(scenario, checks, out, plan, options, progress=progress)
    except (runner.RunInterrupted, runner.RunError, OSError) as e:
        sys.exit(_run_stopped(e, out, kept=STEPS_KEPT))
    say(cap.format_answer(answer, [t.expr for t in checks]))
    say(f"figure: {out / cap.FIGURE_FILE}")
    say(f"results: {out}")
    if json_out:
        d = answer.to_dict()
        click.echo(json.dumps({k: d[k] for k in ("status", "capacity", "bracket", "limit", "message")}, indent=2))
    if answer.status != "found":
        sys.exit(1)


def _capacity_lab(scenario, checks, out, plan, options, variant_names, progress, say, json_out) -> None:
    """lab = true: one search per variant, each step in a fresh lab with the variant's sysctls."""
    import json
    import secrets

    from tcpstress import capacity as cap
    from tcpstress import runner
    from tcpstress.lab.netns import check_lab_capability
    from tcpstress.scenario import ScenarioError

    names = [n.strip() for n in variant_names.split(",") if n.strip()] if variant_names else None
    try:
        variants = runner.pick_variants(scenario, names)
        profiles = runner._variant_profiles(scenario, variants)
        for v in variants:
            runner.check_fd_limit(scenario.with_variant(v))
    except ScenarioError as e:
        fail(str(e))
    missing = check_lab_capability()
    if missing:
        fail(f"{scenario.source}: lab = true, but {missing}")
    run_id = secrets.token_hex(3)
    answers: dict = {}
    try:
        for k, v in enumerate(variants):
            if progress:
                progress(f"variant {k + 1}/{len(variants)}: {v.name}" + (f" ({v.description})" if v.description else ""))
            step = cap.lab_step(v, profiles[v.name], run_id, first_index=k * plan.max_steps)
            answers[v.name] = cap.run_search(scenario.with_variant(v), checks, Path(out) / v.name, plan, options,
                                             progress=progress, run_step=step)
            cap.save_variants(answers, Path(out), scenario, checks)
    except (runner.RunInterrupted, runner.RunError, OSError) as e:
        sys.exit(_run_stopped(e, out, kept=STEPS_KEPT))
    for name, answer in answers.items():
        say(f"\n[{name}]")
        say(cap.format_answer(answer, [t.expr for t in checks]))
    say(f"\ncapacity per variant, SLO: {' and '.join(t.expr for t in checks)}")
    say(cap.format_side_by_side(answers))
    say(f"results: {out}")
    if json_out:
        click.echo(json.dumps({name: {k: v for k, v in a.to_dict().items() if k != "steps"}
                               for name, a in answers.items()}, indent=2))
    if any(a.status != "found" for a in answers.values()):
        sys.exit(1)


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
    from tcpstress.shipped import ShippedFilesMissing, scenarios_dir

    try:
        return scenarios_dir()
    except ShippedFilesMissing as e:
        fail(str(e))


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
@click.option("--delay", type=DURATION, default="0s", show_default=True,
              help="before each response, e.g. 10ms (a plain number: seconds)")
@click.option("--stall-at", type=float, default=None, help="after this many seconds of uptime, stop answering...")
@click.option("--stall-for", type=float, default=0.0, help="...for this many seconds (coordinated-omission demos)")
@click.option("--max-seconds", type=float, default=None, help="stop by itself after this long")
@click.option("--tls", is_flag=True, help="serve HTTPS; without --tls-cert, a self-signed certificate for "
              "localhost, 127.0.0.1 and ::1 is made and its path printed")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="PEM certificate (implies --tls)")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="PEM private key of --tls-cert")
@click.option("--parent-pid", type=click.IntRange(1), default=None,
              help="exit (SIGKILL) when this process, the one that started the server, dies")
def serve(tls, parent_pid, **kwargs):
    """The built-in target: an HTTP/1.1 (or HTTPS) or echo server with close policies."""
    from tcpstress.server import ServerConfig, exit_with_parent, serve as run_server

    if parent_pid is not None:
        exit_with_parent(parent_pid)

    if tls and not kwargs["tls_cert"]:
        import tempfile

        from tcpstress.load.tls import make_self_signed

        folder = Path(tempfile.mkdtemp(prefix="tcpstress-tls-"))
        cert, key = make_self_signed(folder, tuple(dict.fromkeys(("localhost", kwargs["host"], "127.0.0.1", "::1"))))
        kwargs.update(tls_cert=str(cert), tls_key=str(key))
        click.echo(f"certificate: {cert} (self-signed; clients: --ca-file {cert} or --insecure)", err=True)
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
@click.option("--interval", default="1s", show_default=True, help="time between samples (and live lines)")
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
              help="where to write the report (default: one folder: into it; several: a new "
                   "reports/<time>-report, never into the first)")
def report(folders, out):
    """Re-render the report of saved run or comparison folders (runs nothing)."""
    from tcpstress.report import diagnose, format_findings
    from tcpstress.report.render import load_report_runs, render_runs
    from tcpstress.results import ResultError, folder_stamp

    if out is None and len(folders) > 1:
        # Several folders make a new report: writing it into the first would replace that run's own.
        out = _new_folder(Path("reports") / f"{folder_stamp()}-report")
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
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--max-regression", metavar="PERCENT",
              help="exit 99 when a metric got significantly worse by more than this, e.g. 5%")
@click.option("--min-change", metavar="PERCENT", default="2%", show_default=True,
              help="smaller changes read 'no significant change' whatever the test says")
@click.option("--json", "json_out", is_flag=True, help="the comparison as JSON on stdout, nothing else there")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="where to write diff.html, diff.md and diff.json (default: reports/<time>-diff)")
def diff(base, new, max_regression, min_change, json_out, out):
    """Compare two run (or comparison, or --repeat) folders: faster, slower or no significant change.

    \b
    Significance comes from the per-second intervals (Mann-Whitney U), never
    from two single numbers. Exit codes: 0 no regression beyond --max-regression,
    99 a significant regression beyond it, 2 bad input.
    \b
    Example:
      tcpstress diff last-release/ this-release/ --max-regression 5%
    """
    import json

    from tcpstress.diff import DiffError, diff_folders, format_text, parse_fraction, write_report
    from tcpstress.results import ResultError, folder_stamp
    from tcpstress.thresholds import EXIT_FAILED

    claim = None
    try:
        limit = parse_fraction(max_regression, "--max-regression") if max_regression is not None else None
        floor = parse_fraction(min_change, "--min-change")
        if out is not None:
            claim = _check_output_dir(out)
        result = diff_folders(base, new, min_change=floor, max_regression=limit)
    except (DiffError, ResultError) as e:
        if claim is not None:
            claim.release()  # refused: nothing written, the folder given back
        fail(str(e))
    out = out or _new_folder(Path("reports") / f"{folder_stamp()}-diff")
    say = _say(json_out)
    say(format_text(result))
    try:
        say(f"report: {write_report(result, out)}")
    except OSError as e:
        click.echo(f"tcpstress: could not write the diff report in {out}: {e.strerror}", err=True)
    if json_out:
        click.echo(json.dumps(result.to_dict(), indent=2))
    if result.regressions():
        sys.exit(EXIT_FAILED)


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
    """Make each TCP state from SYN_SENT to TIME_WAIT on demand in the lab and show them in one report (a few minutes; root)."""
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


def main() -> NoReturn:
    from tcpstress.allocator import pin_mmap_threshold
    from tcpstress.exiting import INTERRUPTED, caused_by_interrupt, exit_interrupted

    pin_mmap_threshold()

    # Not click's standalone mode: it turns a Ctrl-C before the runner's own handler is in place
    # (loading, start-up) into "Aborted!" and exit 1; an interrupt is 130 whenever it comes.
    try:
        code = cli.main(standalone_mode=False)
        code = code if isinstance(code, int) else 0  # a command's return value is not an exit code
    except SystemExit as e:
        code = e.code
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except BaseException as e:
        if caused_by_interrupt(e):
            exit_interrupted()
        if not isinstance(e, click.exceptions.Abort):
            raise
        click.echo("aborted", err=True)
        code = 1
    if code == INTERRUPTED:
        exit_interrupted(message=None)  # the command said why; 130 must reach the parent as 130
    sys.exit(code)

if __name__ == "__main__":
    main()
