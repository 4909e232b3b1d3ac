"""Every kind of observation has its words, and the words come only from words.py.

A rule returns observations (report/observations.py); words.finding() turns
each into a Finding. A new observation class without a registered wording
would fail at report time on the run that shows it: caught here instead.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from tcpstress.report import lag, observations, words
from tcpstress.report.observations import LagCause, Observation


def subclasses(base: type) -> set[type]:
    found = set()
    for cls in base.__subclasses__():
        found |= {cls} | subclasses(cls)
    return found


def test_every_observation_has_its_words():
    kinds = {cls for cls in subclasses(Observation) if cls.__module__ == observations.__name__}
    assert len(kinds) >= 15  # the rules' kinds, counted by hand: a broken walk would find none
    base = words.finding.dispatch(Observation)
    unworded = sorted(cls.__name__ for cls in kinds if words.finding.dispatch(cls) is base
                      and not inspect.isabstract(cls) and cls.rule)
    assert unworded == []


def test_every_lag_cause_has_its_advice_and_title():
    causes = subclasses(LagCause)
    assert {c.key for c in causes} == set(words.LAG_TITLES)
    assert causes <= set(words.LAG_ADVICE)


def sentences(source: str) -> list[tuple[int, str]]:
    """String constants of three words or more that are not docstrings."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and len(node.value.split()) >= 3]


def test_the_sentence_finder_finds_one():
    assert sentences('"""A docstring of words."""\nx = f"the peer sent {n} RSTs"\ny = "a_name"') \
        == [(2, "the peer sent ")]


def test_the_rules_lag_causes_and_verdict_write_no_sentences():
    # They measure and judge; their strings are names (counters, knobs, error names, roles).
    folder = Path(lag.__file__).parent
    modules = [folder / "lag.py", folder / "verdict.py", *folder.glob("rules_*.py")]
    found = {path.name: sentences(path.read_text()) for path in modules}
    assert len(found) >= 7
    assert {name: lines for name, lines in found.items() if lines} == {}
