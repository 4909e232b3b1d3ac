"""Built-in servers left behind by a runner that was killed (`tcpstress lab cleanup` removes them).

A runner starts its built-in server as `python -m tcpstress serve ...
--max-seconds N --parent-pid RUNNER`; the server asks the kernel to kill it
when the runner dies (PR_SET_PDEATHSIG), so a stray is rare: a server from an
older tcpstress, or one whose prctl failed. One is recognised precisely, by
its command line and its parent, never by a name alone:

- the command line is the runner's: `-m tcpstress serve` with `--max-seconds`
  (a server started by hand has no reason to carry both, and is left alone);
- its parent is no longer the runner it names with `--parent-pid` (or, with
  no `--parent-pid`, it was reparented to init).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import psutil

STOP_WAIT_S = 3.0


@dataclass(frozen=True)
class StrayServer:
    pid: int
    cmdline: tuple[str, ...]

    def describe(self) -> str:
        port = _option(self.cmdline, "--port")
        return f"pid {self.pid}" + (f" (port {port})" if port and port != "0" else "")


def _option(cmdline: tuple[str, ...], name: str) -> str | None:
    if name in cmdline:
        i = cmdline.index(name)
        return cmdline[i + 1] if i + 1 < len(cmdline) else None
    return None


def is_stray(cmdline: tuple[str, ...], ppid: int) -> bool:
    """Whether a process with this command line and parent is a runner's built-in server left behind."""
    if len(cmdline) < 4 or tuple(cmdline[1:4]) != ("-m", "tcpstress", "serve") or "--max-seconds" not in cmdline:
        return False
    parent = _option(cmdline, "--parent-pid")
    if parent is None:
        return ppid == 1
    return parent.isdigit() and int(parent) != ppid


def find_strays() -> list[StrayServer]:
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmdline = tuple(proc.info.get("cmdline") or ())
        if is_stray(cmdline, proc.info.get("ppid") or 0):
            found.append(StrayServer(proc.info["pid"], cmdline))
    return found


def stop_strays() -> list[str]:
    """SIGTERM each stray (its counts printed, its workers stopped), SIGKILL what is left; what was stopped."""
    stopped = []
    procs = []
    for stray in find_strays():
        try:
            proc = psutil.Process(stray.pid)
            if tuple(proc.cmdline()) != stray.cmdline:  # the pid was reused meanwhile
                continue
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
            stopped.append(stray.describe())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _, alive = psutil.wait_procs(procs, timeout=STOP_WAIT_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return stopped
