"""tcpstress: a TCP load generator that also watches what the kernel holds.

The public Python API is what this module exports (`__all__`); everything else
is internal and may change. See README "Use from Python".
"""

__version__ = "0.1.0"

# Not `from typing import TYPE_CHECKING`: importing typing here widened the window in which a Ctrl-C
# lands before any code of ours can catch it (type checkers treat this name the same way).
TYPE_CHECKING = False

# The public names are imported on first use (PEP 562), not here: `python -m tcpstress` and the
# `tcpstress` command import this package before any code of theirs runs, so a Ctrl-C during these
# imports was a traceback instead of exit 130 (and `tcpstress --help` paid for the whole runner).
_EXPORTED_FROM = {
    "compare": "tcpstress.api", "load_scenario": "tcpstress.api", "run": "tcpstress.api",
    "RunResult": "tcpstress.results",
    **{name: "tcpstress.scenario" for name in ("Connection", "Fault", "Load", "RequestSpec", "Sampling", "Scenario",
                                              "ScenarioError", "Server", "Target", "Tls")},
}

if TYPE_CHECKING:
    from tcpstress.api import compare, load_scenario, run
    from tcpstress.results import RunResult
    from tcpstress.scenario import (
        Connection,
        Fault,
        Load,
        RequestSpec,
        Sampling,
        Scenario,
        ScenarioError,
        Server,
        Target,
        Tls,
    )


def __getattr__(name: str) -> object:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'tcpstress' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Connection",
    "Fault",
    "Load",
    "RequestSpec",
    "RunResult",
    "Sampling",
    "Scenario",
    "ScenarioError",
    "Server",
    "Target",
    "Tls",
    "__version__",
    "compare",
    "load_scenario",
    "run",
]
