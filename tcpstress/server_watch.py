"""Notice a built-in server that dies in the middle of a run.

Without this a crashed (or killed) built-in server left the workers counting
ECONNREFUSED until the end of the run, which then read as complete. A thread
polls the server process; when it exits before the runner stops it, the watch
records when and how, and calls `on_death` (the runner ends the load: every
second after it would measure a closed port).
"""

from __future__ import annotations

import subprocess
import threading
import time
from types import TracebackType
from typing import Callable

# Often enough to stop within a second of the death, cheap enough to be free (one waitpid).
POLL_S = 0.25


class ServerWatch:
    def __init__(self, proc: subprocess.Popen, t0: float, on_death: Callable[[], None] | None = None):
        self.proc = proc
        self.t0 = t0  # the monotonic time of t=0 in the run's intervals
        self.on_death = on_death
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    @classmethod
    def start(cls, proc: subprocess.Popen, t0: float, on_death: Callable[[], None] | None = None) -> "ServerWatch":
        watch = cls(proc, t0, on_death)
        watch._thread.start()
        return watch

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            code = self.proc.poll()
            if code is not None:
                t = time.monotonic() - self.t0
                how = f"signal {-code}" if code < 0 else f"code {code}"
                self.reason = f"the built-in server exited with {how} at t={t:.1f} s"
                if self.on_death is not None:
                    self.on_death()
                return

    def stop(self) -> str | None:
        """Stop watching (before the runner stops the server itself); the reason if it died first."""
        self._stop.set()
        self._thread.join()
        return self.reason

    def __enter__(self) -> ServerWatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
