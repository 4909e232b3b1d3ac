"""The run's lifetime pieces (tcpstress/lifecycle.py) without a run around them."""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack

import pytest

from tcpstress import results
from tcpstress.lifecycle import RunInterrupted, Sampling, SigtermRaises, hlog_writers


def test_sigterm_raises_inside_is_ignored_for_the_clean_up_and_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as caught:
        with SigtermRaises():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            pytest.fail("SIGTERM did not raise")
    assert caught.value.code == 143 and str(caught.value) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
    with SigtermRaises() as guard:
        guard.ignore()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # would end this test run if not ignored
    assert signal.getsignal(signal.SIGTERM) == before


def test_hlog_writers_close_what_they_opened_when_one_cannot_be_made(tmp_path, monkeypatch):
    made: list[results.HlogWriter] = []

    class Kept(results.HlogWriter):
        """Kept alive by the list, so garbage collection cannot close the file in the code's place."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(results, "HlogWriter", Kept)
    (tmp_path / "latency-ttfb.hlog").mkdir()  # a folder where the second file should go
    with pytest.raises(IsADirectoryError):
        with hlog_writers(tmp_path, ("total", "ttfb"), 0.0):
            pytest.fail("entered although a file could not be made")
    assert [w.path.name for w in made] == ["latency-total.hlog"]
    assert made[0].f.closed
    assert made[0].path.read_text().startswith("#tcpstress total latency")


class FakeSampler:
    def __init__(self, calls: list[str]):
        self.calls = calls

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> dict:
        self.calls.append("stop")
        return {"states": {"host": {}}}


def test_sampling_keeps_the_summary_of_its_stop_and_the_stack_unwinds_past_a_failing_stop():
    calls: list[str] = []

    def failing_stop() -> None:
        calls.append("failing")
        raise OSError("a stop that fails")

    with pytest.raises(OSError):
        with ExitStack() as stack:
            sampling = stack.enter_context(Sampling(FakeSampler(calls)))
            stack.callback(failing_stop)
    # The stop registered after the sampler failed; the sampler was still stopped after it.
    assert calls == ["start", "failing", "stop"]
    assert sampling.summary == {"states": {"host": {}}}
    assert Sampling(None).__enter__().summary == {}

