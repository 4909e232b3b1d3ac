"""tcpstress from Python: the same runs as the command line, results as objects.

    import tcpstress
    scenario = tcpstress.load_scenario("scenarios/keepalive_vs_churn.toml", {"load.duration": "2s"})
    result = tcpstress.run(scenario, out="reports/my-run")
    print(result.summary["requests_per_s"])

A Scenario built from the dataclasses is checked exactly as a file is
(`scenario.validate`) before anything starts, so an invalid one raises
ScenarioError with the same one-line message the command line prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tcpstress import runner
from tcpstress import scenario as scenario_module
from tcpstress.results import RunResult, load_result
from tcpstress.scenario import Scenario, ScenarioError


def load_scenario(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """A scenario file (or none) with dotted overrides such as {"load.connections": 50}."""
    return scenario_module.load_scenario(path, dict(overrides) if overrides else None, flag_source="overrides")


def _checked(scenario: Scenario | str | Path) -> Scenario:
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario)
    if not isinstance(scenario, Scenario):
        raise TypeError(f"expected a Scenario or a scenario file, got {type(scenario).__name__}")
    return scenario_module.validate(scenario)


def run(scenario: Scenario | str | Path, out: str | Path | None = None, *, report: bool = False) -> RunResult:
    """One run, as `tcpstress run`: returns the saved result (also in `out`, default
    reports/<time>-<name>). Raises ScenarioError for bad input, results.FolderTaken when `out`
    holds files or another run claimed it, runner.RunError when the run could not start,
    runner.RunInterrupted after saving a run cut short by a signal."""
    s = _checked(scenario)
    if s.lab:
        raise ScenarioError(f"{s.source}: lab = true: use tcpstress.compare() to run it in the lab")
    runner.check_fd_limit(s)
    folder = _claim(out) if out is not None else runner.default_run_dir(s)
    result = runner.run_scenario(s, folder, runner.RunContext())
    if report:
        _render([folder], folder)
    return result


def compare(scenario: Scenario | str | Path, out: str | Path | None = None, variants: list[str] | None = None,
            *, report: bool = False) -> list[RunResult]:
    """Every variant (or the named ones), as `tcpstress compare`; one result per variant, in order."""
    s = _checked(scenario)
    folder = _claim(out) if out is not None else runner.default_run_dir(s)
    if s.lab:
        from tcpstress.lab.netns import check_lab_capability

        missing = check_lab_capability()
        if missing:
            raise ScenarioError(f"{s.source}: lab = true but {missing}")
    comparison = runner.run_comparison(s, folder, variants)
    results = [load_result(folder / name) for name in comparison["runs"].values()]
    if report:
        _render([folder], folder)
    return results


def _claim(out: str | Path) -> Path:
    """The run folder, claimed as `tcpstress run --out` claims it: one run per folder."""
    from tcpstress.results import claim_folder

    return claim_folder(Path(out)).path


def _render(folders: list[Path], out: Path) -> Path:
    from tcpstress.report import diagnose
    from tcpstress.report.render import load_report_runs, render_runs

    runs = load_report_runs(folders)
    return render_runs(runs, diagnose(runs), out)
