"""The docker-compose reproduction, checked without a Docker engine.

What the README's compose section relies on: the file is valid compose (Debian's
`docker-compose config`, the v1 tool, validates it against the compose schema
and interpolates the profile variables without an engine: it is the witness
for both), the two services and their sysctls, the network inside the lab
range, the reports volume, and service commands that the real `tcpstress`
command line accepts. The image's install step is built from the same
context Docker would send, with the same `pip install .`.

tests/lab/test_compose_commands.py runs the services' commands in a real lab
and imports the compose helpers below.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCENARIO = "scenarios/compose_time_wait.toml"
LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
# Every variable docker-compose.yml reads; cleared so the defaults are what is tested.
PROFILE_VARIABLES = ("PORT_RANGE", "TW_REUSE", "FIN_TIMEOUT", "RATE", "DURATION", "CLOSE",
                     "SERVER_CLOSE", "SOMAXCONN", "LOADERS", "START_AT")


# --------------------------------------------------------------------------
# Reading the compose file the way compose does (helpers shared with the lab test)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}."""

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = env.get(name)
        if match["op"] == ":-" and not value:
            return match["default"]
        if match["op"] == "-" and value is None:
            return match["default"]
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items() if not str(key).startswith("x-")}
    return node


def load_compose(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml with `env`'s variables substituted (none given: every default)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing: it is in the test extras (pip install -e '.[test]')")
    raw = yaml.safe_load(COMPOSE_FILE.read_text())  # also resolves the `<<: *tcpstress` merge keys
    return _interpolate_tree(raw, env or {})


def sysctls_of(service: dict) -> dict[str, str]:
    """A service's sysctls as name -> value, from either compose form (mapping or NAME=VALUE list)."""
    sysctls = service.get("sysctls") or {}
    if isinstance(sysctls, list):
        sysctls = dict(item.split("=", 1) for item in sysctls)
    return {str(name): " ".join(str(value).split()) for name, value in sysctls.items()}


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def option_value(argv: list[str], option: str) -> str | None:
    """The last value given to `option` (click keeps the last one)."""
    value = None
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def only_network(compose: dict) -> tuple[str, ipaddress.IPv4Network]:
    (name, network), = compose["networks"].items()
    (pool,) = network["ipam"]["config"]
    return name, ipaddress.IPv4Network(pool["subnet"])


def dynamic_range(compose: dict) -> ipaddress.IPv4Network:
    """The ip_range Docker gives addresses from to containers without a fixed one (the loaders)."""
    (network,) = compose["networks"].values()
    (pool,) = network["ipam"]["config"]
    return ipaddress.IPv4Network(pool["ip_range"])


def service_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def service_address(compose: dict, service: str) -> str:
    network_name, _ = only_network(compose)
    return compose["services"][service]["networks"][network_name]["ipv4_address"]


# --------------------------------------------------------------------------
# docker-compose itself as the witness


def _docker_compose_config(extra_env: dict[str, str]) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose: Debian's v1 tool, "
                    "which validates without a Docker engine; .ci/run installs it)")
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES and not k.startswith("COMPOSE_")}
    env.update(extra_env)
    proc = subprocess.run(["docker-compose", "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, f"docker-compose config refused the file:\n{proc.stderr}"
    yaml = pytest.importorskip("yaml", reason="PyYAML is missing: it is in the test extras (pip install -e '.[test]')")
    return yaml.safe_load(proc.stdout)


def test_docker_compose_validates_the_file_and_agrees_with_our_reading():
    resolved = _docker_compose_config({})
    ours = load_compose()
    assert set(resolved["services"]) == {"target", "loader"}
    for name in ("target", "loader"):
        assert sysctls_of(resolved["services"][name]) == sysctls_of(ours["services"][name])
        assert command_of(resolved["services"][name]) == command_of(ours["services"][name])


def test_profile_variables_reach_the_loader_through_docker_compose():
    profile = {"TW_REUSE": "1", "PORT_RANGE": "10000 65000", "RATE": "500", "DURATION": "5s", "FIN_TIMEOUT": "15"}
    resolved = _docker_compose_config(profile)
    loader = resolved["services"]["loader"]
    assert sysctls_of(loader)["net.ipv4.tcp_tw_reuse"] == "1"
    assert sysctls_of(loader)["net.ipv4.ip_local_port_range"] == "10000 65000"
    assert sysctls_of(loader)["net.ipv4.tcp_fin_timeout"] == "15"
    argv = command_of(loader)
    assert option_value(argv, "--rate") == "500"
    assert option_value(argv, "--duration") == "5s"
    # Our reading must give the same answer as compose for the same variables.
    assert sysctls_of(load_compose(profile)["services"]["loader"]) == sysctls_of(loader)


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A:-x y}", {}, "x y"),
    ("${A:-x y}", {"A": ""}, "x y"),
    ("${A-x}", {"A": ""}, ""),
    ("${A:-x}", {"A": "1"}, "1"),
    ("$A/$${B}", {"A": "a"}, "a/${B}"),
])
def test_interpolate_follows_compose_rules(text, env, expected):
    assert interpolate(text, env) == expected


# --------------------------------------------------------------------------
# The fields the README section relies on


def test_two_services_on_one_internal_network_inside_the_lab_range():
    compose = load_compose()
    assert set(compose["services"]) == {"target", "loader"}
    name, subnet = only_network(compose)
    # tcpstress refuses any target outside loopback and 198.18.0.0/15.
    assert subnet.subnet_of(LAB_NETWORK)
    assert compose["networks"][name].get("internal") is True
    for service_name, service in compose["services"].items():
        # Docker refuses every net.* sysctl with the host's network namespace.
        assert "network_mode" not in service, service_name
        assert "container_name" not in service, service_name  # a fixed name cannot be scaled
    target = ipaddress.IPv4Address(service_address(compose, "target"))
    assert target in subnet and target not in (subnet.network_address, subnet.network_address + 1,
                                               subnet.broadcast_address)  # .1 is the bridge's gateway
    # The loader can be scaled: no fixed address, and the pool Docker hands
    # addresses from lies inside the subnet and leaves the target's alone.
    loader_networks = compose["services"]["loader"]["networks"]
    assert loader_networks == [name] or not (loader_networks.get(name) or {}).get("ipv4_address")
    pool = dynamic_range(compose)
    assert pool.subnet_of(subnet) and target not in pool and pool.num_addresses >= 64


def test_the_loader_takes_its_share_from_its_name_and_loaders():
    loader = load_compose()["services"]["loader"]
    argv = command_of(loader)
    assert option_value(argv, "--shard") == "compose"
    assert option_value(argv, "--start-at") == ""  # START_AT unset: start at once
    assert service_environment(loader)["TCPSTRESS_SHARDS"] == "1"
    scaled = load_compose({"LOADERS": "4", "START_AT": "2026-11-28T16:00:00Z"})["services"]["loader"]
    assert service_environment(scaled)["TCPSTRESS_SHARDS"] == "4"
    assert option_value(command_of(scaled), "--start-at") == "2026-11-28T16:00:00Z"
    # LOADERS alone also sets how many containers compose starts.
    assert str(loader["scale"]) == "1" and str(scaled["scale"]) == "4"


def test_docker_compose_passes_loaders_and_start_at():
    resolved = _docker_compose_config({"LOADERS": "4", "START_AT": "2026-11-28T16:00:00Z"})
    loader = resolved["services"]["loader"]
    assert service_environment(loader)["TCPSTRESS_SHARDS"] == "4"
    assert option_value(command_of(loader), "--start-at") == "2026-11-28T16:00:00Z"
    assert dynamic_range(resolved) == dynamic_range(load_compose())
    assert loader["scale"] == 4


def test_sysctls_are_per_namespace_knobs_and_the_defaults_exhaust_ports():
    from tcpstress.lab.sysctl import validate_profile

    compose = load_compose()
    loader, target = (sysctls_of(compose["services"][name]) for name in ("loader", "target"))
    # Global knobs (tcp_max_orphans) would make Docker fail the container; the
    # knowledge table knows which are per namespace, and refuses the rest.
    validate_profile(loader)
    validate_profile(target)
    low, high = map(int, loader["net.ipv4.ip_local_port_range"].split())
    assert high - low + 1 <= 1000, "the default port range must be narrow enough to run out in seconds"
    # 2 reuses TIME_WAIT ports only on loopback; the compose network is a bridge.
    assert loader["net.ipv4.tcp_tw_reuse"] in {"0", "2"}
    assert {"net.ipv4.tcp_fin_timeout", "net.core.somaxconn"} <= set(loader) | set(target)
    # A profile that fixes it is valid too.
    validate_profile(sysctls_of(load_compose({"TW_REUSE": "1", "PORT_RANGE": "10000 65000"})["services"]["loader"]))


def test_validate_profile_would_catch_a_global_knob():
    from tcpstress.lab.sysctl import ProfileError, validate_profile

    with pytest.raises(ProfileError, match="global"):
        validate_profile({"net.ipv4.tcp_max_orphans": "4096"})


def _parse_with_the_real_cli(argv: list[str]):
    import click

    from tcpstress.cli import cli

    assert argv[0] == "tcpstress", f"not a tcpstress command: {argv}"
    command = cli.commands.get(argv[1])
    assert command is not None, f"tcpstress has no command {argv[1]!r}"
    try:
        return command.make_context(f"tcpstress {argv[1]}", list(argv[2:]))
    except click.ClickException as error:
        raise AssertionError(f"`{shlex.join(argv)}`: {error.format_message()}") from None


def _load_run_command(argv: list[str]):
    """The Scenario `tcpstress run` builds from these arguments (flags on top of the file)."""
    from tcpstress.scenario import load_scenario, split_target

    params = _parse_with_the_real_cli(argv).params
    overrides = {key.replace("__", "."): (str(value).lower() if isinstance(value, bool) else value)
                 for key, value in params.items() if "__" in key and value is not None}
    if params["target"]:
        host, port = split_target(params["target"])
        overrides.update({"target.host": host, "target.port": str(port), "server.builtin": "false"})
    return load_scenario(ROOT / params["scenario_file"], overrides), params


@pytest.mark.parametrize("env", [{}, {"CLOSE": "server", "SERVER_CLOSE": "server", "RATE": "500", "DURATION": "5s"},
                                 {"CLOSE": "reset"}], ids=["defaults", "server_closes", "reset"])
def test_service_commands_are_real_tcpstress_commands(env):
    compose = load_compose(env)
    serve = _parse_with_the_real_cli(command_of(compose["services"]["target"]))
    assert serve.params["host"] == "0.0.0.0"
    scenario, _ = _load_run_command(command_of(compose["services"]["loader"]))
    assert not scenario.lab and not scenario.server.builtin
    # The loader loads the target's fixed address on the port it listens on.
    assert (scenario.target.host, scenario.target.port) == (service_address(compose, "target"), serve.params["port"])
    assert scenario.connection.close == env.get("CLOSE", "client")
    assert serve.params["close"] == env.get("SERVER_CLOSE", "client")


def test_an_unknown_option_is_caught():
    with pytest.raises(AssertionError, match="No such option .--conections"):
        _parse_with_the_real_cli(["tcpstress", "run", SCENARIO, "--conections", "5"])


def test_scenario_matches_the_compose_file_and_exhausts_by_client_time_wait():
    from tcpstress.scenario import load_scenario

    compose = load_compose()
    scenario = load_scenario(ROOT / SCENARIO)
    from_compose, _ = _load_run_command(command_of(compose["services"]["loader"]))
    assert not scenario.lab and not scenario.server.builtin
    assert (scenario.target.host, scenario.target.port) == (from_compose.target.host, from_compose.target.port)
    # The compose defaults restate the scenario's values; they must not drift apart.
    assert (from_compose.load.rate, from_compose.load.duration) == (scenario.load.rate, scenario.load.duration)
    assert scenario.load.model == "open" and not scenario.connection.keepalive
    assert scenario.connection.close == "client" and scenario.connection.connect_timeout <= 1
    low, high = map(int, sysctls_of(compose["services"]["loader"])["net.ipv4.ip_local_port_range"].split())
    # The whole port range is used up within the first seconds of the run.
    assert scenario.load.rate >= high - low + 1 and scenario.load.duration >= 10


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _workdir() -> str:
    return [arg for op, arg in _dockerfile_instructions() if op == "WORKDIR"][-1]


@pytest.mark.parametrize("env", [{}, {"LOADERS": "3", "START_AT": "2026-11-28T16:00:00Z"}], ids=["one", "scaled"])
def test_runs_land_in_the_mounted_reports_folder(env):
    from tcpstress import runner, sharding

    compose = load_compose(env)
    loader = compose["services"]["loader"]
    mounts = dict(volume.split(":")[:2] for volume in loader["volumes"])
    assert mounts.get("./reports"), f"./reports is not mounted in the loader: {loader['volumes']}"
    inside = PurePosixPath(mounts["./reports"])
    scenario, params = _load_run_command(command_of(loader))
    if env:
        start = datetime.fromisoformat(env["START_AT"].replace("Z", "+00:00")).timestamp()
        out = sharding.shard_run_dir(scenario, (2, 3), start)
        # Every loader of the run writes beside the others, in a folder named by START_AT.
        assert out.parent.name == "20261128T160000Z-compose_time_wait" and out.name == "shard-2"
    else:
        out = params["out"] or runner.default_run_dir(scenario)
    run_dir = PurePosixPath(loader.get("working_dir") or _workdir()) / PurePosixPath(*Path(out).parts)
    assert inside in run_dir.parents, f"the run folder {run_dir} is not under the mounted {inside}"


def test_dockerfile_installs_the_checkout_like_the_readme():
    instructions = _dockerfile_instructions()
    # The base is a build argument whose default is the image a Docker user pulls.
    assert instructions[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")]
    runs = [arg for op, arg in instructions if op == "RUN"]
    pip_lines = [shlex.split(run) for run in runs if "pip install" in run]
    assert len(pip_lines) == 1
    words = pip_lines[0]
    assert words[:2] == ["pip", "install"]
    # The project directory itself, not a package from an index or a wheel from elsewhere.
    assert [word for word in words[2:] if not word.startswith("-")] == ["."]
    assert ("COPY", f". {_workdir()}") in instructions
    assert any("apt-get install" in run and "iproute2" in shlex.split(run) for run in runs)
    for op, arg in instructions:
        assert not (op == "ADD" and "://" in arg), "no downloads into the image"
        assert not re.search(r"\b(curl|wget)\b", arg), "no downloads into the image"


# --------------------------------------------------------------------------
# The build context: what Docker sends, built the way the Dockerfile does


def _ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    patterns = [line for line in lines if line and not line.startswith("#")]
    # Only the plain form is written here; '!' exceptions would need Docker's full rules.
    assert not any(p.startswith("!") for p in patterns)
    return patterns


def _ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    """Docker's matching for plain patterns: a match on a path excludes all below it."""
    candidates = [PurePosixPath(*relative.parts[: i + 1]) for i in range(len(relative.parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        for candidate in candidates:
            if fnmatchcase(str(candidate), pattern):
                return True
            if pattern.startswith("**/") and fnmatchcase(candidate.name, pattern[3:]):
                return True
    return False


def _copy_build_context(destination: Path) -> list[str]:
    patterns = _ignore_patterns()
    sent = []
    for path in sorted(ROOT.rglob("*")):
        relative = PurePosixPath(path.relative_to(ROOT).as_posix())
        if _ignored(relative, patterns) or any((ROOT / parent).is_symlink() for parent in relative.parents):
            continue
        target = destination / relative
        if path.is_symlink():
            # As Docker's COPY does: the link itself (scenarios -> tcpstress/scenarios).
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(path))
            sent.append(str(relative))
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            sent.append(str(relative))
    return sent


def test_dockerignore_matching():
    patterns = ["reports", "**/__pycache__", "*.egg-info"]
    assert _ignored(PurePosixPath("reports/x/result.json"), patterns)
    assert _ignored(PurePosixPath("tcpstress/load/__pycache__/a.pyc"), patterns)
    assert _ignored(PurePosixPath("tcpstress.egg-info/PKG-INFO"), patterns)
    assert not _ignored(PurePosixPath("tcpstress/reports.py"), patterns)
    assert not _ignored(PurePosixPath("scenarios/compose_time_wait.toml"), patterns)


def test_build_context_builds_the_package_with_the_compose_scenario(tmp_path):
    context = tmp_path / "context"
    sent = _copy_build_context(context)
    # The path docker-compose.yml gives goes through the scenarios link into the package.
    assert "scenarios" in sent and "tcpstress/scenarios/compose_time_wait.toml" in sent
    assert (context / SCENARIO).resolve() == (context / "tcpstress/scenarios/compose_time_wait.toml").resolve()
    assert (context / SCENARIO).is_file()
    assert not any(name.startswith((".venv/", ".git/", "reports/")) for name in sent)
    # pip install . builds a wheel from the context first; no isolation here:
    # the test machine may have no index to fetch setuptools from.
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(wheels), str(context)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"the build context does not build:\n{proc.stderr}"
    (wheel,) = wheels.glob("tcpstress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tcpstress/cli.py" in names
    assert "tcpstress/scenarios/compose_time_wait.toml" in names  # package data, found by tcpstress/shipped.py
    # A context without README.md still builds, silently without the description.
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    first_line = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.strip())
    assert first_line in metadata
