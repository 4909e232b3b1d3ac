"""`tcpstress sample --out FILE` never overwrites a file silently (issue #17 item 12).

A run's samples.csv stands in for the file at risk; its bytes are the witness.
Sampling reads /proc only: no traffic.
"""

from __future__ import annotations

from tests.conftest import run_cli


def test_existing_file_is_refused_and_kept(tmp_path):
    target = tmp_path / "samples.csv"
    target.write_text("t,ns\n0,host\n")
    proc = run_cli("sample", "--duration", "200ms", "--interval", "100ms", "--quiet", "--out", target, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "the file exists" in proc.stderr and "--force" in proc.stderr
    assert target.read_text() == "t,ns\n0,host\n"


def test_a_run_folder_given_as_out_keeps_its_samples(tmp_path):
    # --out DIR writes DIR/samples.csv: a run folder's own file is refused the same way.
    (tmp_path / "samples.csv").write_text("keep\n")
    proc = run_cli("sample", "--duration", "200ms", "--interval", "100ms", "--quiet", "--out", tmp_path, timeout=60)
    assert proc.returncode == 2 and (tmp_path / "samples.csv").read_text() == "keep\n"


def test_force_overwrites_and_a_new_file_is_written(tmp_path):
    target = tmp_path / "samples.csv"
    target.write_text("old\n")
    forced = run_cli("sample", "--duration", "300ms", "--interval", "100ms", "--quiet", "--out", target, "--force",
                     timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert target.read_text().startswith("t,") and "old" not in target.read_text()
    fresh = run_cli("sample", "--duration", "300ms", "--interval", "100ms", "--quiet", "--out", tmp_path / "new.csv",
                    timeout=60)
    assert fresh.returncode == 0 and (tmp_path / "new.csv").read_text().startswith("t,")
