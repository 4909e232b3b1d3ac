"""The state gallery end to end in the lab (root only; about a minute and a half).

The quick gallery must bring every state of the seed article above zero,
CLOSING included. The gallery's own table comes from the runs' sampler; the
witness here is `ss`, polled in every tcpstress lab namespace while the
gallery runs, which must see each state too.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter

import pytest

from tcpstress.gallery import ARTICLE_STATES, GALLERY, GalleryError, plan, run_gallery
from tcpstress.lab import list_namespaces

pytestmark = pytest.mark.slow

SS_NAMES = {
    "SYN_SENT": "SYN-SENT", "SYN_RECV": "SYN-RECV", "ESTABLISHED": "ESTAB", "FIN_WAIT1": "FIN-WAIT-1",
    "FIN_WAIT2": "FIN-WAIT-2", "CLOSE_WAIT": "CLOSE-WAIT", "LAST_ACK": "LAST-ACK", "CLOSING": "CLOSING",
    "TIME_WAIT": "TIME-WAIT",
}


class AllLabsWatcher:
    """`ss` in every new tcpstress-* namespace, every 0.3 s: each state's highest count per namespace."""

    def __init__(self, ignore: set[str]) -> None:
        self.ignore = ignore
        self.peaks: dict[str, Counter] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for ns in set(list_namespaces()) - self.ignore:
                peaks = self.peaks.setdefault(ns, Counter())
                # A namespace may vanish meanwhile: then ss fails and counts nothing.
                out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htan"], check=False, capture_output=True,
                                     text=True, timeout=30).stdout
                counts = Counter(line.split()[0] for line in out.splitlines() if line.strip())
                for state, n in counts.items():
                    peaks[state] = max(peaks[state], n)
            self._stop.wait(0.3)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)

    def seen(self, prefixes: list[str]) -> Counter:
        """Highest count of each state over the namespaces named with these prefixes."""
        total: Counter = Counter()
        for ns, peaks in self.peaks.items():
            if ns.startswith(tuple(prefixes)):
                for state, n in peaks.items():
                    total[state] = max(total[state], n)
        return total


def test_the_quick_gallery_reaches_every_state_of_the_article(tmp_path):
    before = set(list_namespaces())
    out = tmp_path / "gallery"
    with AllLabsWatcher(ignore=before) as watcher:
        result = run_gallery(out, quick=True, progress=None)
    # Only the gallery's own labs count (another run may share the machine):
    # each comparison names the run id its namespaces carry.
    prefixes = [f"tcpstress-{json.loads((f / 'comparison.json').read_text())['run_id']}-" for f in result.folders]
    seen = watcher.seen(prefixes)
    ours = [ns for ns in watcher.peaks if ns.startswith(tuple(prefixes))]

    assert result.failures == {}
    assert result.missing() == [], "\n".join(result.lines())
    assert result.report is not None and result.report.is_file()
    # The witness: ss saw every one of them in the gallery's namespaces too.
    assert [s for s in ARTICLE_STATES if seen[SS_NAMES[s]] == 0] == []
    assert result.peaks["CLOSING"].run == "fin_wait_last_ack/server_closes"
    assert result.peaks["SYN_RECV"].peak >= 120

    # One folder per scenario and an index over every run, so `tcpstress report` re-renders it.
    index = json.loads((out / "comparison.json").read_text())
    expected = [f"{e.scenario}/{v}" for e in GALLERY for v in e.quick]
    assert index["variants"] == expected
    for label, folder in index["runs"].items():
        assert (out / folder / "result.json").is_file(), label
    html = result.report.read_text()
    assert "fin_wait_last_ack/server_closes" in html

    table = "\n".join(result.lines())
    assert "NOT REACHED" not in table
    # Every lab namespace the gallery made is gone.
    assert len(ours) >= 2 * len(index["variants"]) - 2, "the watcher missed most of the labs"
    assert not (set(list_namespaces()) & set(ours))


def test_the_gallery_refuses_a_folder_in_use_before_running_anything(tmp_path):
    (tmp_path / "old.txt").write_text("a previous run\n")
    before = set(list_namespaces())
    with pytest.raises(GalleryError, match="not an empty folder"):
        run_gallery(tmp_path, progress=None)
    assert set(list_namespaces()) == before


def test_every_quick_variant_exists_in_its_scenario():
    steps = plan(quick=True)
    assert [p.stem for p, _ in steps] == [e.scenario for e in GALLERY]
    assert all(variants for _, variants in steps)
    assert all(variants is None for _, variants in plan(quick=False))
