"""A lab fault on a timer: started at its second of the run, ended after `lasts` or at the end."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any


class FaultTimer:
    """Starts a lab fault at its time in the run and ends it after `lasts` (or at the end)."""

    def __init__(self, fault: Any, start_at: float, lasts: float):
        self.fault = fault
        self.start_at = start_at
        self.end_at = start_at + lasts if lasts else None
        self.stop_event = threading.Event()
        self.record: dict[str, Any] = {"started": False}
        self.thread = threading.Thread(target=self._run, name="fault", daemon=True)

    def _run(self) -> None:
        if self.stop_event.wait(max(0.0, self.start_at - time.monotonic())):
            return
        try:
            self.fault.start()
            self.record["started"] = True
        except Exception as e:  # reported in the result; the load goes on
            self.record["error"] = f"could not start: {e}"
            return
        if self.end_at is not None and not self.stop_event.wait(max(0.0, self.end_at - time.monotonic())):
            try:
                self.record.update(self.fault.stop() or {})
            except Exception as e:
                self.record["error"] = f"could not stop: {e}"
            self.record["stopped"] = True

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> dict[str, Any]:
        """End the fault now if it still runs (once: a second call would stop it again)."""
        self.stop_event.set()
        self.thread.join(30)
        if self.record.get("started") and not self.record.get("stopped"):
            try:
                self.record.update(self.fault.stop() or {})
            except Exception as e:
                self.record["error"] = f"could not stop: {e}"
        return self.record

    def __enter__(self) -> FaultTimer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()
