"""tcpstress: a TCP load generator that also watches what the kernel holds.

The public Python API is what this module exports (`__all__`); everything else
is internal and may change. See README "Use from Python".
"""

__version__ = "0.1.0"

from tcpstress.api import compare, load_scenario, run  # noqa: E402
from tcpstress.results import RunResult  # noqa: E402
from tcpstress.scenario import (  # noqa: E402
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
