"""Shared fixtures: the built-in server and nginx as real processes on loopback."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=120, check=False, **kw):
    """Run the real command line, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "tcpstress", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


class ServerProcess:
    def __init__(self, **config):
        config.setdefault("max_seconds", 120)
        code = f"from tcpstress.server import serve, ServerConfig; serve(ServerConfig(**{config!r}))"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening \S+ (\S+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.host, self.port = m.group(1), int(m.group(2))

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=15)
        m = re.search(r"served connections=(\d+) requests=(\d+)", out)
        return {"connections": int(m.group(1)), "requests": int(m.group(2))} if m else {}


@pytest.fixture
def server_factory():
    made = []

    def make(**config):
        s = ServerProcess(**config)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def free_port(host="127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Nginx:
    """Debian's nginx on a free loopback port, one worker, access log on."""

    def __init__(self, tmp: Path, keepalive_requests: int = 100000, tls: tuple[Path, Path] | None = None,
                 log_format: str = "", locations: str = "", listen: str = "127.0.0.1", http_extra: str = ""):
        self.prefix = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port(listen)
        self.access_log = tmp / "access.log"
        (tmp / "logs").mkdir(exist_ok=True)
        conf = tmp / "nginx.conf"
        conf.write_text(textwrap.dedent(f"""
            daemon off;
            worker_processes 1;
            pid {tmp}/nginx.pid;
            error_log {tmp}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                {f"log_format witness '{log_format}';" if log_format else ""}
                access_log {self.access_log}{" witness" if log_format else ""};
                client_body_temp_path {tmp}/body;
                proxy_temp_path {tmp}/proxy;
                fastcgi_temp_path {tmp}/fastcgi;
                uwsgi_temp_path {tmp}/uwsgi;
                scgi_temp_path {tmp}/scgi;
                keepalive_requests {keepalive_requests};
                {http_extra}
                server {{
                    listen {f"[{listen}]" if ":" in listen else listen}:{self.port} backlog=4096{" ssl" if tls else ""};
                    {f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else ""}
                    {locations}
                    location / {{ return 200 "hello from nginx\\n"; }}
                }}
            }}
        """))
        self.proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((listen, self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("nginx did not start")
        time.sleep(0.1)
        self.baseline = self.log_lines()

    def log_entries(self) -> list[str]:
        """Lines logged since start, minus the readiness probes (they sent no request: status 400 or 000)."""
        try:
            lines = self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return lines[self.baseline:]

    def log_lines(self) -> int:
        try:
            with open(self.access_log, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the log
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def nginx(tmp_path):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    n = Nginx(tmp_path / "nginx")
    yield n
    n.stop()


def nginx_instances(tmp_path, log_format: str):
    """For a `make_nginx` fixture: yields a function starting Nginx instances that log
    `log_format`, and stops every one of them afterwards."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (make test installs nginx-light when root)")
    made = []

    def make(**kw):
        n = Nginx(tmp_path / f"nginx{len(made)}", log_format=log_format, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


def _host_net_sysctls() -> dict[str, str]:
    """Every readable file under the host's /proc/sys/net, by path."""
    values = {}
    for path in Path("/proc/sys/net").rglob("*"):
        try:
            if path.is_file():
                values[str(path)] = path.read_text()
        except OSError:
            pass
    return values


# Per-interface counters and the like move by themselves; these are settings.
_VOLATILE = ("/proc/sys/net/netfilter/nf_conntrack_count",)


@pytest.fixture(scope="session", autouse=True)
def host_sysctls_untouched():
    """The whole suite must leave the host's network settings exactly as it found them."""
    before = _host_net_sysctls()
    yield
    after = _host_net_sysctls()
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k] and k not in _VOLATILE
                     and "/conf/tcpstress" not in k and "/neigh/tcpstress" not in k)
    assert not changed, f"the test suite changed host sysctls: {changed[:10]}"
