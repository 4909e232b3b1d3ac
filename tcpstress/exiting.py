"""Leaving the process with the exit code tcpstress chose for a Ctrl-C (130).

Imported before the CLI (by `python -m tcpstress` and the `tcpstress` command),
so it imports nothing but the standard library, and that only when used.
"""

from __future__ import annotations

import sys
from typing import NoReturn

INTERRUPTED = 130


def caused_by_interrupt(error: BaseException) -> bool:
    """True when Ctrl-C is this exception or what caused it: CPython 3.11 wraps a KeyboardInterrupt
    raised while a class body's descriptors are set up in a RuntimeError, and click turns one into
    Abort; either way the user pressed Ctrl-C."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def exit_interrupted(message: str | None = "interrupted (SIGINT)") -> NoReturn:
    """Print `message` and end the process with 130, whatever CPython noted on the way.

    CPython remembers a KeyboardInterrupt that left code run by exec() or eval() of a string
    (a dataclass or namedtuple being built while a module imports) even when it was caught,
    and ends such a process by sending itself SIGINT after sys.exit(130) has done its work:
    the parent then sees "killed by SIGINT" instead of 130 (clean-clone CI caught it, 1 run in
    ~15 when Ctrl-C lands in the CLI's imports). So the interpreter's exit work is done here
    (non-daemon threads joined, atexit functions, streams flushed) and the process leaves
    with os._exit.
    """
    import atexit
    import os
    import threading

    if message:
        try:
            print(message, file=sys.stderr)
        except OSError:
            pass
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(INTERRUPTED)
