"""Run folders are made exclusively (issue #17 item 11): two runs with one --out cannot both write.

The witness is the file system: os.mkdir and O_EXCL succeed for one process
only, whatever the order; the processes race from a shared barrier.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import pytest

from tcpstress import runner
from tcpstress.results import CLAIM_FILE, FolderTaken, claim_folder, folder_taken
from tcpstress.scenario import build

RACERS = 8


def _race(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        claim_folder(Path(path))
        results.put("won")
    except FolderTaken:
        results.put("lost")


def race(path: Path) -> list[str]:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), barrier, results)) for _ in range(RACERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    return sorted(results.get(timeout=5) for _ in procs)


@pytest.mark.parametrize("exists", [False, True], ids=["new folder", "empty folder made beforehand"])
def test_of_racing_runs_exactly_one_claims_the_folder(tmp_path, exists):
    out = tmp_path / "deep" / "out"
    if exists:
        out.mkdir(parents=True)
    assert race(out) == ["lost"] * (RACERS - 1) + ["won"]
    assert out.is_dir()


def test_claim_refuses_a_folder_with_files_and_leaves_it_alone(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(FolderTaken, match="exists and is not an empty folder"):
        claim_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("exists", [False, True])
def test_claimed_folder_is_refused_to_a_second_run(tmp_path, exists):
    first = claim_folder(tmp_path if exists else tmp_path / "new")
    tmp_path = first.path
    assert first.created is not exists and (tmp_path / CLAIM_FILE).exists()
    assert not folder_taken(tmp_path)  # the owner may still write into it
    with pytest.raises(FolderTaken, match="another run"):
        claim_folder(tmp_path)
    first.release()
    assert tmp_path.exists() is exists and (not exists or list(tmp_path.iterdir()) == [])


def test_release_keeps_what_a_run_wrote(tmp_path):
    claim = claim_folder(tmp_path / "out")
    (tmp_path / "out" / "server.log").write_text("x")
    claim.release()
    assert (tmp_path / "out" / "server.log").exists()


def test_default_folders_in_the_same_second_are_distinct(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.results, "folder_stamp", lambda t=None: "20261201T000000Z")
    scenario = build({"name": "same", "target": {"host": "127.0.0.1", "port": 1}}, "same.toml")
    made = [runner.default_run_dir(scenario, tmp_path) for _ in range(3)]
    assert [p.name for p in made] == ["20261201T000000Z-same", "20261201T000000Z-same-2", "20261201T000000Z-same-3"]
    assert all(p.is_dir() for p in made)


def test_cli_second_run_with_the_same_out_writes_nothing(tmp_path):
    import subprocess

    out = tmp_path / "out"
    claim_folder(out)  # as a run that started first would have
    # The loser stops before anything runs: no traffic is sent.
    proc = subprocess.run([sys.executable, "-m", "tcpstress", "run", "--target", "127.0.0.1:9", "--duration", "1s",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "another run is writing into this folder" in proc.stderr
    assert [p.name for p in out.iterdir()] == [CLAIM_FILE]
