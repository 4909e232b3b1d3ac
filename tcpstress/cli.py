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
    ("--ramp", "load.ramp", "open model: linear ramp to the rate, e.g. 5s"),
    ("--duration", "load.duration", "measured duration, e.g. 10s, 2m"),
    ("--warmup", "load.warmup", "unmeasured warm-up before the duration"),
    ("--workers", "load.workers", "worker processes"),
    ("--max-requests", "load.max_requests", "stop after this many requests (0: no limit)"),
    ("--requests-per-connection", "connection.requests_per_connection", "N or unlimited"),
    ("--close", "connection.close", "who closes: client, server or reset (RST, no TIME_WAIT)"),
    ("--connect-timeout", "connection.connect_timeout", "e.g. 2s"),
    ("--request-timeout", "connection.request_timeout", "e.g. 5s"),
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
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="run folder (default: reports/<time>-<name>)")
@click.option("--quiet", "-q", is_flag=True, help="no live line")
def run(scenario_file, target, out, quiet, **kwargs):
    """Run one scenario (a TOML file, flags, or both) and write a run folder.

    \b
    Examples:
      tcpstress run scenarios/keepalive_vs_churn.toml
      tcpstress run --target 127.0.0.1:8080 --connections 50 --duration 10s --no-keepalive
    """
    from tcpstress import runner

    overrides = _overrides(kwargs)
    scenario = _load(scenario_file, target, overrides)
    if scenario.lab:
        fail(f"{scenario.source}: lab = true: use `tcpstress compare {scenario.source}` to run it in the lab")
    out = out or runner.default_run_dir(scenario)
    live = sys.stderr if (not quiet and sys.stderr.isatty()) else None
    _check_output_dir(out)
    try:
        result = runner.run_scenario(scenario, out, live=live)
    except runner.RunInterrupted as e:
        click.echo(f"interrupted ({e.args[0]}): partial results saved in {out}", err=True)
        sys.exit(e.code)
    except runner.RunError as e:
        click.echo(f"tcpstress: run failed: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"tcpstress: cannot write results in {out}: {e.strerror}", err=True)
        sys.exit(1)
    from tcpstress.summary import format_summary

    click.echo(format_summary(result))
    _report_after_run([out], out)
    click.echo(f"results: {out}")


def _check_output_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        fail(f"--out {out}: folder exists and is not empty; choose a new folder")


def _report_after_run(folders: list[Path], out: Path) -> None:
    """Render the report and print the findings, when the reporter is present."""
    try:
        from tcpstress.report.render import render_report
    except ImportError:
        return
    try:
        path = render_report(folders, out)
        click.echo(f"report: {path}")
    except Exception as e:  # a report failure must not hide the saved results
        click.echo(f"tcpstress: could not render the report: {e}", err=True)


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
@click.option("--max-seconds", type=float, default=None, help="stop by itself after this long")
def serve(**kwargs):
    """The built-in target: an HTTP/1.1 or echo server with close policies."""
    from tcpstress.server import ServerConfig, serve as run_server

    try:
        config = ServerConfig(**kwargs)
    except ValueError as e:
        fail(str(e))
    try:
        run_server(config)
    except OSError as e:
        click.echo(f"tcpstress serve: cannot listen on {kwargs['host']}:{kwargs['port']}: {e.strerror}", err=True)
        sys.exit(1)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
