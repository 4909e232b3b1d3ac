"""`tcpstress merge RUNFOLDER`: the folder of shard-<I> folders that `run --shard` writes without --out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpstress.merge import MergeError, merge_runs, shard_folders
from tests.conftest import run_cli
from tests.unit.test_merge import make_shard


def _run_folder(tmp_path: Path, count: int, names: list[str] | None = None) -> Path:
    folder = tmp_path / "20261128T160000Z-adhoc"
    for i in range(count):
        def name_it(data, i=i):
            if names:
                data["shard"]["name"] = names[i]
        make_shard(folder / f"shard-{i}", i, count, [[100 + i]], hostname="3f2a9c1d0e4b", edit=name_it)
    return folder


def test_the_shards_of_a_folder_are_taken_in_index_order(tmp_path):
    folder = _run_folder(tmp_path, 12)
    (folder / "notes").mkdir()  # anything else in it is not a shard
    found, parent = shard_folders([folder])
    assert parent == folder
    assert [p.name for p in found] == [f"shard-{i}" for i in range(12)]  # shard-10 after shard-9


def test_named_run_folders_are_left_as_given(tmp_path):
    folders = [make_shard(tmp_path / f"s{i}", i, 2, [[100]]) for i in range(2)]
    assert shard_folders(folders) == (folders, None)
    assert shard_folders(folders[:1]) == (folders[:1], None)  # one run folder is a run, not a parent


def test_a_folder_without_shards_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MergeError, match="empty: not a run folder, and holds no shard-<I> run folders"):
        shard_folders([tmp_path / "empty"])


def test_compose_names_label_the_shards(tmp_path):
    # Every container's hostname is its ID; the name compose gave it is what a reader knows it by.
    folder = _run_folder(tmp_path, 3, [f"tcpstress-loader-{n}" for n in (1, 2, 3)])
    found, _ = shard_folders([folder])
    merged = merge_runs(found, folder / "merged")
    assert set(merged.summary["states"]) == {f"tcpstress-loader-{n}:host" for n in (1, 2, 3)}


def test_the_command_merges_into_merged_inside_the_folder(tmp_path):
    folder = _run_folder(tmp_path, 3)
    done = run_cli("merge", str(folder))
    assert done.returncode == 0, done.stderr
    assert (folder / "merged" / "result.json").is_file() and (folder / "merged" / "report.html").is_file()
    assert f"results: {folder / 'merged'}" in done.stdout
    # Again: merged/ is there now, and is neither a shard nor overwritten.
    again = run_cli("merge", str(folder))
    assert again.returncode == 2 and "merged: exists and is not an empty folder" in again.stderr


def test_named_folders_need_out(tmp_path):
    folders = [make_shard(tmp_path / f"s{i}", i, 2, [[100]]) for i in range(2)]
    done = run_cli("merge", *map(str, folders))
    assert done.returncode == 2
    assert done.stderr.strip() == "tcpstress: error: --out is needed: where to write the merged run"
