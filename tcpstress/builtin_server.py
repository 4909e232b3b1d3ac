"""The built-in target: `tcpstress serve` in a child process, for one run.

The run starts it before its workers and stops it after them (as a context
manager on the run's ExitStack); its own count of what it served goes into
the result as the server-side witness.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tcpstress.lifecycle import RunError
from tcpstress.scenario import Scenario

SERVER_ARGV = [sys.executable, "-m", "tcpstress", "serve"]


@dataclass
class BuiltinServer:
    """`tcpstress serve` in a child process; learns its port from the first line."""

    proc: subprocess.Popen
    host: str
    port: int
    pid: int
    served: dict = field(default_factory=dict)

    @classmethod
    def start(cls, scenario: Scenario, host: str, run_seconds: float,
              spawn: Callable[..., subprocess.Popen] = subprocess.Popen,
              tls_files: tuple[Path, Path] | None = None) -> "BuiltinServer":
        s = scenario
        close = s.server.close
        rpc = 0
        if s.connection.close == "server" and s.target.protocol == "echo":
            # Echo has no header to ask for a close: the server closes after the
            # agreed number of exchanges.
            close, rpc = "server", max(1, s.connection.effective_requests)
        argv = SERVER_ARGV + [
            "--host", host, "--port", str(s.target.port), "--protocol", "http" if s.target.is_http else "echo",
            "--response-size", str(s.server.response_size), "--echo-size", str(s.connection.payload_size),
            "--close", close, "--requests-per-connection", str(rpc), "--backlog", str(s.server.backlog),
            "--workers", str(s.server.workers), "--delay", str(s.server.delay),
            "--max-seconds", str(int(run_seconds + 120)),
            # Dies with this process even when it is killed with SIGKILL (prctl PDEATHSIG).
            "--parent-pid", str(os.getpid()),
        ]
        if tls_files:
            argv += ["--tls-cert", str(tls_files[0]), "--tls-key", str(tls_files[1])]
        proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None and proc.stderr is not None  # both PIPE
        line = proc.stdout.readline().decode(errors="replace")
        m = re.match(r"listening \S+ (\S+):(\d+) pid=(\d+)", line)
        if not m:
            proc.kill()
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise RunError(f"the built-in server did not start: {(err or [line.strip() or 'no output'])[-1]}")
        return cls(proc=proc, host=host, port=int(m.group(2)), pid=int(m.group(3)))

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        text = out.decode(errors="replace")
        m = re.search(r"served connections=(\d+) requests=(\d+)", text)
        if m:
            self.served = {"connections": int(m.group(1)), "requests": int(m.group(2))}
            tls = re.search(r"tls_handshakes=(\d+) tls_resumed=(\d+)", text)
            if tls:
                self.served.update(tls_handshakes=int(tls.group(1)), tls_resumed=int(tls.group(2)))
        return self.served

    def __enter__(self) -> BuiltinServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def process_tree(pid: int) -> list[int]:
    try:
        import psutil
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return [pid]
