"""--start-at that passes while the workers start up is refused, not run with an empty window."""

import subprocess
import time

import pytest

from tcpstress import runner
from tcpstress.scenario import load_scenario


def test_a_start_time_that_passed_during_start_up_is_refused(tmp_path):
    scenario = load_scenario(None, {"server.builtin": "true", "target.port": "0", "load.connections": "1",
                                    "load.workers": "1", "load.duration": "1s"})

    def slow_spawn(*args, **kw):
        time.sleep(1.5)  # a start-up slower than the time left before --start-at
        return subprocess.Popen(*args, **kw)

    ctx = runner.RunContext(client_spawn=slow_spawn, start_at=time.time() + 0.5)
    with pytest.raises(runner.RunError) as e:
        runner.run_scenario(scenario, tmp_path / "run", ctx)
    assert "had passed" in str(e.value) and "--start-at" in str(e.value)
