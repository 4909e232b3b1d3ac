"""docker-compose.yml run for real: podman 4.3 and podman-compose 1.6 on Debian 12 (root only).

The commands of docs/docker.md, with `podman-compose` in place of
`docker compose`, on the project's own compose file and Dockerfile:

- the baseline runs out of the loader's 1,000 ephemeral ports: EADDRNOTAVAIL,
  TIME_WAIT = the port range, counted by tcpstress (result.json) and by `ss`
  run in the loader container's network namespace while it is alive;
- TW_REUSE=1 gets the ports back; PORT_RANGE="10000 65000" never runs out;
- LOADERS=3 --scale loader=3 and `tcpstress merge`: each loader finds its
  replica number in its own name, and the merged count is the target's own.

Set-up, once per machine (cached in /var/cache/tcpstress-test): the Debian
packages podman needs (apt-get, when missing), podman-compose 1.6 in a venv
(Debian's 1.0.3 has no ipv4_address and ignores --scale), a base image made
with debootstrap from the Debian mirror apt uses (no registry is reachable
here), and the image the Dockerfile builds on it (`--build-arg BASE_IMAGE`).

What the test keeps off the host: podman reads its settings from the cache
folder (CONTAINERS_CONF), not /etc; every podman command that creates
networks runs in a network namespace of the test's own, so the compose
bridge, netavark's iptables rules and the ip_forward it turns on live and die
there (a podman on the host itself would add them to the host). The image
builds use the host's network (`--network=host`: no bridge, no rule), to
reach Debian and PyPI. The test asserts the host as it found it: no
container, pod, network, container mount or engine process left, the same
/proc/sys/net, the same firewall ruleset (`nft -s list ruleset`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.test_compose import PROFILE_VARIABLES, _copy_build_context, load_compose, sysctls_of

# Cold: packages, debootstrap and two image builds take minutes before the first run.
pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TCPSTRESS_TEST_CACHE", "/var/cache/tcpstress-test"))
BASE_IMAGE = "localhost/tcpstress-pybase:bookworm"
IMAGE = "localhost/tcpstress:local"  # docker-compose.yml's `image: tcpstress:local`, as podman names it
PODMAN_COMPOSE_VERSION = "1.6.0"
PROJECT = "tcpstress"  # the folder's name, as in a checkout: compose's project name
DURATION_S = 6
LOADERS = 3
# A file each needed Debian package installs -> the package.
PACKAGES = {
    "/usr/bin/podman": "podman",
    "/usr/lib/podman/netavark": "netavark",          # podman 4's network back end
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",  # container names on compose networks
    "/usr/libexec/podman/catatonit": "catatonit",    # `init: true`
    "/usr/sbin/runc": "runc",       # crun refuses hybrid cgroups ("drop all controllers from cgroupv2")
    "/usr/sbin/iptables": "iptables",  # netavark runs it for every network, in our namespace
    "/usr/sbin/debootstrap": "debootstrap",
    "/usr/sbin/nft": "nftables",    # the witness for the host's firewall
}
ENGINE_PROCESSES = {"podman", "conmon", "netavark", "aardvark-dns", "catatonit", "runc"}
BASE_PACKAGES = "python3,python3-venv,python3-pip,iproute2,ca-certificates,procps"


_config = None  # pytest's, set by the fixture


def _say(message: str) -> None:
    """A line on the terminal past pytest's capture: a set-up that takes minutes says what it does,
    and each profile what it measured."""
    if _config is None:
        return
    reporter = _config.pluginmanager.get_plugin("terminalreporter")
    capture = _config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"tests/containers: {message}")


def _run(argv, timeout: float, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(map(str, argv))}` exited {proc.returncode}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


# --------------------------------------------------------------------------
# Set-up: packages, podman-compose, podman's settings, the base image


def _install_missing_packages() -> None:
    missing = sorted({package for path, package in PACKAGES.items() if not Path(path).exists()})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"podman and its helpers are missing ({', '.join(missing)}) and there is no apt-get")
    _say(f"apt-get install {' '.join(missing)} (missing: docker-compose.yml under podman needs them)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if _run(install, timeout=900, check=False, env=env).returncode != 0:
        _run(["apt-get", "update", "-qq"], timeout=600, env=env)
        _run(install, timeout=900, env=env)


def _podman_compose() -> Path:
    venv = CACHE / f"podman-compose-{PODMAN_COMPOSE_VERSION}"
    binary = venv / "bin" / "podman-compose"
    if not binary.exists():
        _say(f"pip install podman-compose=={PODMAN_COMPOSE_VERSION} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", venv], timeout=300)
        _run([venv / "bin" / "pip", "install", "-q", f"podman-compose=={PODMAN_COMPOSE_VERSION}"], timeout=600)
    return binary


def containers_conf_text() -> str:
    """podman's settings for this machine: ulimits within the hard limits, and runc.

    Without them every `podman run` fails with "error setting rlimit type 7:
    operation not permitted" (podman asks for nofile 1048576, above the hard
    limit) and crun refuses a hybrid cgroup v1/v2 host."""
    def within(limit: int, wanted: int) -> int:
        return wanted if limit == resource.RLIM_INFINITY else min(limit, wanted)

    nofile = within(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)
    nproc = within(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    return ("[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
            "[engine]\n"
            'runtime = "runc"\n')


def _containers_conf() -> Path:
    path = CACHE / "containers.conf"
    text = containers_conf_text()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def debian_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror apt uses for bookworm (one-line or deb822 sources)."""
    if sources is None:
        folder = Path("/etc/apt/sources.list.d")
        sources = [Path("/etc/apt/sources.list"), *sorted(folder.glob("*.list")), *sorted(folder.glob("*.sources"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for block in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(URIs|Suites):\s*(.+)$", block, re.M))
            if "bookworm" in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"


def _ensure_base_image(env: dict) -> None:
    """Debian bookworm with Python, pip and iproute2, as `python:3.11-slim` would give them."""
    if _run(["podman", "image", "exists", BASE_IMAGE], timeout=60, check=False, env=env).returncode == 0:
        return
    mirror = debian_mirror()
    rootfs = CACHE / f"rootfs-{secrets.token_hex(4)}"
    _say(f"building {BASE_IMAGE}: debootstrap bookworm from {mirror} (about a minute, once)")
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", rootfs, mirror],
             timeout=1200)
        # What python:3.11-slim has and the Dockerfile relies on: `python`, a
        # pip allowed to install system-wide, and CAs that reach the index from here.
        (rootfs / "usr/bin/python").symlink_to("python3")
        (rootfs / "etc/pip.conf").write_text("[global]\nbreak-system-packages = true\n")
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        archive = rootfs.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        _run(["podman", "import", archive, BASE_IMAGE], timeout=600, env=env)
    finally:
        _remove_rootfs(rootfs)


def _remove_rootfs(rootfs: Path) -> None:
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
               if line.split()[1].startswith(str(rootfs))]
    for point in sorted(mounted, reverse=True):  # debootstrap unmounts; a killed one may not have
        _run(["umount", "-l", point], timeout=60, check=False)
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.with_suffix(".tar").unlink(missing_ok=True)


# --------------------------------------------------------------------------
# The host's state, before and after


@dataclass(frozen=True)
class HostState:
    containers: tuple[str, ...]
    pods: tuple[str, ...]
    networks: tuple[str, ...]
    namespaces: tuple[str, ...]
    storage_mounts: tuple[str, ...]
    engine_processes: frozenset[tuple[int, str]]
    sysctls: tuple[tuple[str, str], ...]
    ruleset: str


def _lines(proc: subprocess.CompletedProcess) -> tuple[str, ...]:
    return tuple(sorted(line.strip() for line in proc.stdout.splitlines() if line.strip()))


def host_state(env: dict) -> HostState:
    podman = lambda *args: _lines(_run(["podman", *args], timeout=60, env=env))  # noqa: E731
    # podman first: whatever its first call on a machine sets up is in both snapshots.
    containers = podman("ps", "-a", "--format", "{{.ID}} {{.Names}}")
    pods = podman("pod", "ps", "--format", "{{.ID}} {{.Name}}")
    networks = podman("network", "ls", "--format", "{{.Name}}")
    sysctls = []
    for folder, _, files in os.walk("/proc/sys/net"):
        for name in files:
            path = os.path.join(folder, name)
            try:
                sysctls.append((path, Path(path).read_text()))
            except OSError:  # write-only (route/flush) or not readable
                pass
    processes = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, state = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2]
        if comm in ENGINE_PROCESSES and state != "Z":
            processes.add((int(stat.parent.name), comm))
    mounts = tuple(sorted(line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                          if "/containers/storage" in line.split()[1]))
    return HostState(
        containers=containers,
        pods=pods,
        networks=networks,
        namespaces=_lines(_run(["ip", "netns", "list"], timeout=30)),
        storage_mounts=mounts,
        engine_processes=frozenset(processes),
        sysctls=tuple(sorted(sysctls)),
        ruleset=_run(["nft", "-s", "list", "ruleset"], timeout=30).stdout,
    )


def assert_host_unchanged(before: HostState, after: HostState) -> None:
    for field in ("containers", "pods", "networks", "namespaces", "storage_mounts", "ruleset"):
        assert getattr(after, field) == getattr(before, field), f"the host's {field} changed"
    assert after.engine_processes <= before.engine_processes, \
        f"engine processes left running: {sorted(after.engine_processes - before.engine_processes)}"
    changed = sorted(set(after.sysctls) ^ set(before.sysctls))
    assert not changed, f"/proc/sys/net changed: {changed[:10]}"


# --------------------------------------------------------------------------
# The engine: podman-compose in the test's network namespace


@dataclass
class ProfileRun:
    result: dict          # the loader's result.json
    loader_log: str
    served: int           # the target's own count of accepted connections
    time_wait_ss: int     # most TIME_WAIT sockets `ss` saw in the loader's namespace
    loader_exit: int


@dataclass
class Engine:
    netns: str
    env: dict
    podman_compose: Path
    project: Path

    def _in_netns(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def podman(self, *args, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run([*self._in_netns(), "podman", *args], timeout=timeout, check=check, env=self.env)

    def compose(self, *args, env: dict | None = None, timeout: float = 180, check: bool = True,
                netns: bool = True) -> subprocess.CompletedProcess:
        prefix = self._in_netns() if netns else []
        return _run([*prefix, self.podman_compose, *args], timeout=timeout, check=check, cwd=self.project,
                    env={**self.env, **(env or {})})

    def build(self) -> None:
        """`docker compose build`, on the local base, on the host's network (Debian and PyPI)."""
        started = time.monotonic()
        untagged = self.untagged_images()
        self.compose(f"--podman-build-args=--network=host --build-arg BASE_IMAGE={BASE_IMAGE}", "build",
                     timeout=1200, netns=False)
        # Both services build the image (one tag, two builds), and a changed checkout
        # untags the last one: drop what this build left untagged, not 500 MB a run.
        for image in sorted(self.untagged_images() - untagged):
            _run(["podman", "rmi", image], timeout=120, check=False, env=self.env)
        _say(f"image {IMAGE} built in {time.monotonic() - started:.0f} s")

    def untagged_images(self) -> set[str]:
        listed = _run(["podman", "images", "--quiet", "--no-trunc", "--filter", "dangling=true"], timeout=60,
                      env=self.env)
        return set(listed.stdout.split())

    def containers(self, service: str) -> list[str]:
        names = self.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                            "--filter", f"label=com.docker.compose.service={service}",
                            "--format", "{{.Names}}").stdout.split()
        return sorted(names, key=lambda name: int(re.search(r"(\d+)$", name).group(1)))

    def pid(self, container: str) -> int:
        return int(self.podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())

    def wait(self, container: str) -> int:
        return int(self.podman("wait", container, timeout=DURATION_S + 180).stdout.split()[0])

    def watch_time_wait(self, pids: dict[str, int], seconds: float) -> dict[str, int]:
        """The most TIME_WAIT sockets `ss` counts in each container's namespace while it runs."""
        peaks = dict.fromkeys(pids, 0)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = {name: pid for name, pid in pids.items() if pid and Path(f"/proc/{pid}").exists()}
            if not alive:
                break
            for name, pid in alive.items():
                ss = _run(["nsenter", "-t", pid, "-n", "ss", "-Htan", "state", "time-wait"], timeout=30, check=False)
                if ss.returncode == 0:
                    peaks[name] = max(peaks[name], len(ss.stdout.splitlines()))
            time.sleep(0.5)
        return peaks

    def new_run_folders(self, before: set[Path]) -> list[Path]:
        return sorted(set((self.project / "reports").glob("*")) - before)

    def run_folders(self) -> set[Path]:
        return set((self.project / "reports").glob("*"))

    def up_detached(self, env: dict) -> ProfileRun:
        """`up -d`, `ss` in the loader while it runs, its exit code, the logs, `down`."""
        before = self.run_folders()
        try:
            self.compose("up", "-d", env=env)
            (loader,) = self.containers("loader")
            peaks = self.watch_time_wait({loader: self.pid(loader)}, DURATION_S + 120)
            loader_exit = self.wait(loader)
            self.compose("stop", "target", env=env, timeout=120)  # SIGTERM: it prints its count
            target_log = self.compose("logs", "target", env=env).stdout
            loader_log = self.compose("logs", "loader", env=env).stdout
        finally:
            self.compose("down", env=env, timeout=180)
        (folder,) = self.new_run_folders(before)
        run = ProfileRun(json.loads((folder / "result.json").read_text()), loader_log,
                         served_count(target_log), peaks[loader], loader_exit)
        summary = run.result["summary"]
        _say(f"{env}: exit {loader_exit}, connections {summary['connections']}, errors {summary['errors']}, "
             f"TIME_WAIT peak {time_wait_peak(run.result)} (tcpstress) {run.time_wait_ss} (ss), "
             f"target served {run.served}")
        return run


def served_count(target_log: str) -> int:
    match = re.search(r"served connections=(\d+)", target_log)
    assert match, f"the target did not report its count:\n{target_log[-3000:]}"
    return int(match.group(1))


def assert_target_agrees(summary: dict, served: int) -> None:
    """The target's count is the loader's connections plus its one --wait-for-target probe, plus
    at most the operations the loader scheduled but neither completed nor failed in its measured
    window (still in flight at its end: 1 of 6,000 seen)."""
    scheduled = round(summary["intended_rate"] * summary["duration_s"])
    unfinished = scheduled - summary["connections"] - sum(summary["errors"].values())
    extra = served - 1 - summary["connections"]
    assert 0 <= extra <= max(unfinished, 0), (served, summary["connections"], summary["errors"], scheduled)


def time_wait_peak(result: dict) -> int:
    (states,) = result["summary"]["states"].values()  # one namespace: the loader's
    return states["TIME_WAIT"]["peak"]


def port_range_size(env: dict) -> int:
    low, high = map(int, sysctls_of(load_compose(env)["services"]["loader"])["net.ipv4.ip_local_port_range"].split())
    return high - low + 1


@pytest.fixture(scope="module")
def engine(tmp_path_factory, request):
    global _config
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux: podman as root, and a network namespace to hold its networks")
    _config = request.config
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    _install_missing_packages()
    podman_compose = _podman_compose()
    env = {key: value for key, value in os.environ.items() if key not in PROFILE_VARIABLES}
    env["CONTAINERS_CONF"] = str(_containers_conf())
    before = host_state(env)
    netns = f"tcpstress-podman-{secrets.token_hex(4)}"
    project = tmp_path_factory.mktemp("podman") / PROJECT
    _copy_build_context(project)
    _run(["ip", "netns", "add", netns], timeout=30)
    engine = Engine(netns, env, podman_compose, project)
    try:
        _run(["ip", "-n", netns, "link", "set", "lo", "up"], timeout=30)
        _ensure_base_image(env)
        engine.build()
        _say(f"set-up took {time.monotonic() - started:.0f} s")
        yield engine
    finally:
        engine.compose("down", timeout=180, check=False)  # whatever a failed test left
        _run(["ip", "netns", "del", netns], timeout=30, check=False)
    # The engine's processes stop as their containers go: give them a moment.
    deadline = time.monotonic() + 20
    while (after := host_state(env)).engine_processes - before.engine_processes and time.monotonic() < deadline:
        time.sleep(0.5)
    assert_host_unchanged(before, after)


# --------------------------------------------------------------------------
# The profiles of docs/docker.md


def test_baseline_runs_out_of_ports_counted_by_tcpstress_and_by_ss(engine):
    env = {"DURATION": f"{DURATION_S}s"}
    run = engine.up_detached(env)
    ports = port_range_size(env)
    summary = run.result["summary"]
    assert run.loader_exit == 0, run.loader_log[-3000:]
    # podman wrote the compose sysctls inside the loader's namespace, and the loader read them back.
    assert run.result["sysctls"]["host"]["net.ipv4.ip_local_port_range"].split() == ["40000", "40999"]
    # Each port carried one connection, then sat in TIME_WAIT: ss and tcpstress agree.
    assert 0.95 * ports <= run.time_wait_ss <= ports, run.time_wait_ss
    assert 0.95 * ports <= time_wait_peak(run.result) <= ports
    assert 0.95 * ports <= summary["connections"] <= ports
    assert summary["errors"].get("EADDRNOTAVAIL", 0) > 2 * ports  # about 1,000/s once the ports are gone
    # The target counted the same connections, plus the loader's --wait-for-target probe.
    assert_target_agrees(summary, run.served)
    assert "Ephemeral ports exhausted (EADDRNOTAVAIL)" in run.loader_log


def test_tw_reuse_gets_the_ports_back(engine):
    env = {"DURATION": f"{DURATION_S}s", "TW_REUSE": "1"}
    run = engine.up_detached(env)
    ports, summary = port_range_size(env), run.result["summary"]
    assert run.loader_exit == 0, run.loader_log[-3000:]
    assert run.result["sysctls"]["host"]["net.ipv4.tcp_tw_reuse"] == "1"
    # Ports older than 1 s are reused: the baseline carries 1,000 connections and
    # fails ~5,000; here most of the 6,000 get through. A few fail while the
    # oldest ports are not yet 1 s old (30-300 measured, more on a busy machine).
    assert summary["connections"] > 4 * ports
    assert summary["errors"].get("EADDRNOTAVAIL", 0) < ports, summary["errors"]
    assert_target_agrees(summary, run.served)
    assert run.time_wait_ss <= ports


def test_a_wide_port_range_never_runs_out(engine):
    """The docs' own form: attached, stopped when the loader exits, its exit code."""
    env = {"DURATION": f"{DURATION_S}s", "PORT_RANGE": "10000 65000"}
    before = engine.run_folders()
    try:
        up = engine.compose("up", "--abort-on-container-exit", "--exit-code-from", "loader", env=env,
                            timeout=DURATION_S + 240, check=False)
    finally:
        engine.compose("down", env=env, timeout=180)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    (folder,) = engine.new_run_folders(before)
    result = json.loads((folder / "result.json").read_text())
    summary = result["summary"]
    _say(f"{env}: exit {up.returncode}, connections {summary['connections']}, errors {summary['errors']}, "
         f"target served {served_count(up.stdout)}")
    assert result["sysctls"]["host"]["net.ipv4.ip_local_port_range"].split() == ["10000", "65000"]
    assert summary["errors"].get("EADDRNOTAVAIL", 0) == 0, summary["errors"]
    assert summary["connections"] >= 0.95 * 1000 * DURATION_S
    # --abort-on-container-exit stopped the target, which printed its count into the log.
    assert_target_agrees(summary, served_count(up.stdout))


def test_scaled_loaders_merge_into_the_target_s_count(engine):
    start_at = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = {"DURATION": f"{DURATION_S}s", "LOADERS": str(LOADERS), "START_AT": start_at}
    stamp = start_at.replace("-", "").replace(":", "")
    folder = engine.project / "reports" / f"{stamp}-compose_time_wait"
    try:
        engine.compose("up", "--detach", "--scale", f"loader={LOADERS}", env=env)
        loaders = engine.containers("loader")
        assert len(loaders) == LOADERS, loaders
        peaks = engine.watch_time_wait({name: engine.pid(name) for name in loaders}, DURATION_S + 180)
        exits = {name: engine.wait(name) for name in loaders}
        merge = engine.compose("run", "--rm", "--no-deps", "loader", "tcpstress", "merge",
                               f"reports/{folder.name}", env=env, timeout=300, check=False)
        engine.compose("stop", "target", env=env, timeout=120)
        served = served_count(engine.compose("logs", "target", env=env).stdout)
        logs = engine.compose("logs", "loader", env=env).stdout
    finally:
        engine.compose("down", env=env, timeout=180)
    assert all(code == 0 for code in exits.values()), (exits, logs[-3000:])
    assert merge.returncode == 0, merge.stdout[-3000:] + merge.stderr[-3000:]
    ports = port_range_size(env)
    shards = {}
    for number, name in enumerate(loaders, start=1):
        data = json.loads((folder / f"shard-{number - 1}" / "result.json").read_text())
        # The share came from the container's own name (podman: its /etc/hosts line).
        assert data["shard"] == {"index": number - 1, "count": LOADERS, "name": name}
        shards[name] = data["summary"]
        # A third of the rate each, from 1,000 ports each: every loader ran out (ss is the witness).
        assert 0.95 * ports <= peaks[name] <= ports, peaks
        assert 0.95 * ports <= data["summary"]["connections"] <= ports
        assert data["summary"]["errors"].get("EADDRNOTAVAIL", 0) > 0
    merged = json.loads((folder / "merged" / "result.json").read_text())["summary"]
    _say(f"{LOADERS} loaders: ss TIME_WAIT peaks {peaks}, merged connections {merged['connections']}, "
         f"errors {merged['errors']}, target served {served}")
    assert merged["connections"] == sum(s["connections"] for s in shards.values())
    assert merged["errors"]["EADDRNOTAVAIL"] == sum(s["errors"]["EADDRNOTAVAIL"] for s in shards.values())
    # The target's own count, less one --wait-for-target probe per loader.
    assert merged["connections"] <= served - LOADERS <= merged["connections"] + LOADERS


# --------------------------------------------------------------------------
# The set-up's own rules (no engine needed)


def test_the_mirror_is_read_from_apt_s_sources_in_either_form(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    one_line = tmp_path / "sources.list"
    one_line.write_text("# deb http://old.example/debian bookworm main\n"
                        "deb [arch=amd64] http://line.example/debian bookworm main\n")
    assert debian_mirror([deb822]) == "http://mirror.example/debian"
    assert debian_mirror([one_line]) == "http://line.example/debian"
    assert debian_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"


def test_podman_s_ulimits_stay_within_the_hard_limits():
    text = containers_conf_text()
    nofile = int(re.search(r'"nofile=(\d+):\1"', text).group(1))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nofile <= hard or hard == resource.RLIM_INFINITY
    assert 'runtime = "runc"' in text
