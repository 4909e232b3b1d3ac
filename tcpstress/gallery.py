"""The state gallery: every TCP state of the seed article, made on demand in the lab.

    result = run_gallery(Path("reports/gallery"))
    for line in result.lines():
        print(line)
    print(result.report)          # one report.html over every run

Each entry is a shipped scenario (scenarios/<name>.toml) and the variants the
quick gallery runs; `quick=False` runs every variant of each. Every scenario
runs through `runner.run_comparison` into out_dir/<name>/, in fresh lab
namespaces per variant, and one report is rendered over all of them. The
result says, per state, the highest count any run sampled and where, so the
caller can show which states were reached.

Which entry shows which state (numbers measured on Linux 6.18, 2 cores; each
scenario file explains the mechanism):

    SYN_SENT     syn_sent            server drops SYNs: 20 connects retransmitting
    SYN_RECV     syn_flood           spoofed SYNs, SYN-ACKs into a black hole: 129
    ESTABLISHED  keepalive_dead_peer idle keep-alive connections to a vanished peer
    FIN_WAIT1    fin_wait_last_ack   the client's FIN unacknowledged (ACK rides on a dropped FIN)
    FIN_WAIT2    close_wait_leak     the server never closes: orphans until tcp_fin_timeout
    CLOSE_WAIT   close_wait_leak     the server never calls close(): 1,500 in 15 s
    LAST_ACK     fin_wait_last_ack   the server's FIN never arrives
    CLOSING      fin_wait_last_ack   server_closes: the client's FIN meets the server's
                                     unacknowledged one: a simultaneous close, made
                                     deterministic by dropping FINs
    TIME_WAIT    time_wait_exhaustion, tw_buckets (capped by tcp_max_tw_buckets)

Needs the lab (root and network namespaces); GalleryError says why not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tcpstress.results import COMPARISON_FILE, COMPARISON_FORMAT, folder_taken

# The states the seed article walks through, in the order a connection meets them.
ARTICLE_STATES = (
    "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
    "CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT",
)



class GalleryError(RuntimeError):
    """The gallery cannot run here (no lab, a missing scenario, a used folder); one line."""


@dataclass(frozen=True)
class Entry:
    scenario: str  # scenarios/<scenario>.toml
    quick: tuple[str, ...]  # the variants the quick gallery runs
    shows: tuple[str, ...]  # the states it is in the gallery for


GALLERY: tuple[Entry, ...] = (
    Entry("time_wait_exhaustion", ("baseline",), ("TIME_WAIT", "ESTABLISHED")),
    Entry("syn_flood", ("cookies_on", "cookies_off"), ("SYN_RECV",)),
    Entry("syn_sent", ("syn_retries_2",), ("SYN_SENT",)),
    Entry("close_wait_leak", ("fin_timeout_10",), ("CLOSE_WAIT", "FIN_WAIT2")),
    Entry("fin_wait_last_ack", ("client_closes", "server_closes"), ("FIN_WAIT1", "LAST_ACK", "CLOSING")),
    Entry("keepalive_dead_peer", ("fast",), ("ESTABLISHED",)),
    Entry("tw_buckets", ("buckets_200",), ("TIME_WAIT",)),
)


@dataclass(frozen=True)
class StatePeak:
    peak: int
    run: str  # "scenario/variant"
    namespace: str


@dataclass
class GalleryResult:
    report: Path | None
    folders: list[Path]
    peaks: dict[str, StatePeak]  # every state seen anywhere, with its highest count
    failures: dict[str, str] = field(default_factory=dict)  # scenario -> why it did not run

    def reached(self) -> list[str]:
        return [s for s in ARTICLE_STATES if s in self.peaks and self.peaks[s].peak > 0]

    def missing(self) -> list[str]:
        return [s for s in ARTICLE_STATES if s not in self.reached()]

    def lines(self) -> list[str]:
        """A table a command line can print as it is: state, peak, where."""
        out = [f"{'state':<12} {'peak':>7}  where"]
        for state in ARTICLE_STATES:
            p = self.peaks.get(state)
            if p is None or p.peak == 0:
                out.append(f"{state:<12} {0:>7}  NOT REACHED")
            else:
                out.append(f"{state:<12} {p.peak:>7,}  {p.run} ({p.namespace})")
        for scenario, why in self.failures.items():
            out.append(f"failed: {scenario}: {why}")
        return out


def scenarios_dir() -> Path:
    """The shipped scenarios (tcpstress/shipped.py), or GalleryError."""
    from tcpstress import shipped

    try:
        return shipped.scenarios_dir()
    except shipped.ShippedFilesMissing as e:
        raise GalleryError(str(e)) from None


def plan(quick: bool = True, directory: Path | None = None,
         entries: tuple[Entry, ...] = GALLERY) -> list[tuple[Path, list[str] | None]]:
    """(scenario file, variant names or None for all) per entry; checks every file and variant first."""
    from tcpstress.scenario import load_scenario

    directory = directory or scenarios_dir()
    out = []
    for entry in entries:
        path = directory / f"{entry.scenario}.toml"
        if not path.is_file():
            raise GalleryError(f"{path}: missing: the gallery needs every shipped scenario")
        scenario = load_scenario(path)
        if not scenario.lab:
            raise GalleryError(f"{path}: lab = false; gallery scenarios run in the lab")
        names = list(entry.quick) if quick else None
        for name in names or []:
            scenario.variant(name)  # ScenarioError naming the variants when one is gone
        out.append((path, names))
    return out


def state_peaks(folders: list[Path]) -> dict[str, StatePeak]:
    """The highest sampled count of each state over the runs in these comparison folders."""
    from tcpstress.report.diagnose import expand_folders

    peaks: dict[str, StatePeak] = {}
    for folder in folders:
        for run_dir, variant in expand_folders([folder]):
            path = run_dir / "result.json"
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a run that never wrote its result; the report says so
            states = (data.get("summary") or {}).get("states") or {}
            label = f"{data.get('name') or folder.name}/{variant or data.get('variant') or run_dir.name}"
            for ns, per_state in states.items():
                for state, entry in (per_state or {}).items():
                    peak = int((entry or {}).get("peak") or 0)
                    if state not in peaks or peak > peaks[state].peak:
                        peaks[state] = StatePeak(peak=peak, run=label, namespace=ns)
    return peaks


def _require_lab() -> None:
    from tcpstress.lab.netns import check_lab_capability

    reason = check_lab_capability()
    if reason is not None:
        raise GalleryError(f"the state gallery runs in the lab: {reason}")


def _require_empty(out_dir: Path) -> None:
    if folder_taken(out_dir):
        raise GalleryError(f"{out_dir}: exists and is not an empty folder; choose a new one")


def run_gallery(out_dir: Path, quick: bool = True, progress: Callable[[str], None] | None = print,
                entries: tuple[Entry, ...] = GALLERY, live=None) -> GalleryResult:
    """Run the gallery's scenarios into out_dir/<scenario>/ and render one report over all.

    A scenario that fails (a run error, a lab error) is noted in `failures`
    and the others still run; Ctrl-C and SIGTERM end the gallery (the
    runner's own exceptions), keeping the runs already saved.
    """
    from tcpstress.lab.faults import FaultError
    from tcpstress.lab.netns import LabError
    from tcpstress.report.render import render_report
    from tcpstress.runner import RunError, run_comparison
    from tcpstress.scenario import ScenarioError, load_scenario

    out_dir = Path(out_dir)
    _require_empty(out_dir)
    steps = plan(quick, entries=entries)
    _require_lab()
    say = progress or (lambda _line: None)
    folders: list[Path] = []
    failures: dict[str, str] = {}
    for index, (path, variants) in enumerate(steps, 1):
        name = path.stem
        say(f"gallery {index}/{len(steps)}: {name}" + (f" ({', '.join(variants)})" if variants else " (all variants)"))
        folder = out_dir / name
        try:
            run_comparison(load_scenario(path), folder, variants, live=live, progress=progress)
        except (RunError, ScenarioError, LabError, FaultError, OSError) as e:
            # The next scenario gets fresh namespaces: one failure ends only its own runs.
            failures[name] = (str(e).splitlines() or [type(e).__name__])[0]
            say(f"gallery: {name} failed: {failures[name]}")
        if (folder / COMPARISON_FILE).is_file():
            folders.append(folder)
    report = None
    if folders:
        write_gallery_index(out_dir, folders)
        report = render_report([out_dir], out_dir, title="TCP state gallery")
    return GalleryResult(report=report, folders=folders, peaks=state_peaks(folders), failures=failures)


def write_gallery_index(out_dir: Path, folders: list[Path]) -> Path:
    """out_dir/comparison.json listing every run as "scenario/variant".

    A comparison file names each run and its folder, so `tcpstress report
    out_dir` re-renders the whole gallery, and the report labels each run
    with its scenario: variant names alone repeat across scenarios
    ("baseline") and say nothing of which scenario a line belongs to.
    """
    from tcpstress.report.diagnose import expand_folders
    from tcpstress.results import write_atomic

    runs: dict[str, str] = {}
    for folder in folders:
        for run_dir, variant in expand_folders([folder]):
            if (run_dir / "result.json").is_file():
                runs[f"{folder.name}/{variant or run_dir.name}"] = str(run_dir.relative_to(out_dir))
    index = {"format": COMPARISON_FORMAT, "scenario": "gallery", "lab": True, "variants": list(runs),
             "runs": runs, "gallery": [f.name for f in folders]}
    path = out_dir / COMPARISON_FILE
    write_atomic(path, json.dumps(index, indent=2) + "\n")
    return path
