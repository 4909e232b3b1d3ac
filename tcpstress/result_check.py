"""The shape of result.json, checked before anything reads it.

A hand-edited or damaged result.json (an error count of "y", an interval
without its counts, a name that is a number) used to surface as a traceback
from deep inside the report, or worse as "No problems found" over intervals
that hold nothing. check_result() refuses it first, with one line naming the
field, the value and what is allowed.

Only the fields the report, the summary and merge read are checked, each by
type (a field may be absent: a streamed "in progress" result has an empty
summary, and newer runners add fields); an interval must carry the counts the
figures and rules are built from. Unknown fields are left alone.
"""

from __future__ import annotations

import math
from typing import Any, Callable

Check = Callable[[Any], bool]


class ShapeError(ValueError):
    """One field of result.json that is not what the format says; str() is the one-line reason."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _or_none(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _mapping(value_check: Check) -> Check:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and value_check(x) for k, x in v.items())


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or _number(v)


NUMBER = (_number, "a finite number")
COUNT = (_count, "a whole number >= 0")
TEXT = (_text, "text")
FLAG = (_flag, "true or false")
COUNTS = (_mapping(_count), "an object of name: whole number >= 0")
NUMBERS = (_mapping(_number), "an object of name: number")

TOP = {
    "name": TEXT, "variant": (_or_none(_text), "text or null"), "partial": FLAG,
    "partial_reason": (_or_none(_text), "text or null"), "scenario": (lambda v: isinstance(v, dict), "an object"),
    "sysctls": (_mapping(_mapping(_scalar)), "an object of namespace: {knob: value}"),
    "shards": (lambda v: isinstance(v, list) and all(isinstance(s, dict) for s in v), "a list of objects"),
    "fault": (_or_none(lambda v: isinstance(v, dict)), "an object or null"),
    "target": (_or_none(lambda v: isinstance(v, dict)), "an object or null"),
    "cpu_count": (_or_none(_count), "a whole number or null"),
}

# Every interval carries these: the figures, the rates and the first-error times come from them.
INTERVAL_REQUIRED = ("t", "duration", "requests", "errors")
INTERVAL = {
    # The last interval may be a fraction of a second, rounded to the millisecond (so possibly 0).
    "t": NUMBER, "duration": (lambda v: _number(v) and v >= 0, "a number of seconds >= 0"),
    "requests": COUNT, "connections": COUNT, "errors": COUNTS, "started": COUNT, "late_starts": COUNT,
    "max_lag_us": NUMBER, "latency_us": NUMBERS, "status": COUNTS, "responses": COUNT,
    "anomalies": COUNTS, "tls": COUNTS, "corrected_latency_us": NUMBERS,
}

SUMMARY = {
    "duration_s": NUMBER, "requests": COUNT, "connections": COUNT, "requests_per_s": NUMBER,
    "connections_per_s": NUMBER, "errors": COUNTS, "error_total": COUNT, "error_rate": NUMBER,
    "intended_rate": (_or_none(_number), "a number or null"), "started": COUNT, "late_starts": COUNT,
    "max_lag_us": NUMBER, "kept_up": FLAG, "in_flight_at_end": COUNT, "responses": COUNT,
    "status": COUNTS, "status_classes": COUNTS, "tls": COUNTS, "anomalies": COUNTS,
    "requests_by_name": (_mapping(lambda v: isinstance(v, dict) and _count(v.get("requests", 0))
                                  and _count(v.get("errors", 0))),
                         "an object of request name: {requests, errors, latency_us}"),
    "latency_us": (_mapping(_mapping(_number)), "an object of metric: {p50: number, ...}"),
    "states": (_mapping(_mapping(_mapping(_number))), "an object of namespace: {state: {peak, final}}"),
    "counters": (_mapping(_mapping(_number)), "an object of namespace: {counter: number}"),
    "processes": (_mapping(_mapping(_or_none(_number))), "an object of role: {field: number}"),
    "server": (_mapping(_number), "an object of name: number"),
    "workers": (lambda v: isinstance(v, list), "a list"),
}

WORKER = {"name": TEXT, "exit": TEXT, "requests": COUNT, "errors": COUNTS,
          "shard": (_or_none(_count), "a whole number or null")}

# The scenario as Scenario.to_dict() wrote it: the type of each field by its SCHEMA type name.
SCENARIO_TYPES: dict[str, tuple[Check, str]] = {
    "str": TEXT, "int": COUNT, "requests": COUNT, "bool": FLAG, "float": NUMBER, "duration": NUMBER,
    "addresses": (lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v), "a list of addresses"),
}


def _check_fields(obj: dict[str, Any], fields: dict[str, tuple[Check, str]], where: str) -> None:
    for key, (check, allowed) in fields.items():
        if key in obj and not check(obj[key]):
            raise ShapeError(f"{where}{key} = {_show(obj[key])} is not allowed: {allowed}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_scenario(scenario: dict[str, Any]) -> None:
    from tcpstress.scenario import SCHEMA

    for section, fields in SCHEMA.items():
        node = scenario if not section else scenario.get(section)
        if node is None:
            continue
        if not isinstance(node, dict):
            raise ShapeError(f"scenario.{section} = {_show(node)} is not allowed: an object")
        where = f"scenario.{section}." if section else "scenario."
        _check_fields(node, {k: SCENARIO_TYPES[t] for k, (t, _, _) in fields.items() if t in SCENARIO_TYPES}, where)


def check_result(data: dict[str, Any]) -> None:
    """Raise ShapeError (one line, naming the field) if result.json's fields are not the format's types."""
    _check_fields(data, TOP, "")
    check_scenario(data["scenario"])
    for i, iv in enumerate(data["intervals"]):
        where = f"intervals[{i}]"
        if not isinstance(iv, dict):
            raise ShapeError(f"{where} is not an object")
        missing = [k for k in INTERVAL_REQUIRED if k not in iv]
        if missing:
            raise ShapeError(f"{where} lacks {', '.join(missing)}")
        _check_fields(iv, INTERVAL, f"{where}.")
    summary = data["summary"]
    _check_fields(summary, SUMMARY, "summary.")
    for i, w in enumerate(summary.get("workers") or []):
        if not isinstance(w, dict):
            raise ShapeError(f"summary.workers[{i}] is not an object")
        _check_fields(w, WORKER, f"summary.workers[{i}].")
