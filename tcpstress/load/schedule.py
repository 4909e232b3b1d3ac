"""Open-model schedule arithmetic and how work is split between workers.

Pure functions, so tests can check them exactly. Operation n (counting from
0 over the whole run, all workers together) has an intended start time; a
worker k of W owns the operations n with n % W == k, so the workers' shares
interleave and together are exactly the requested schedule at every instant.
"""

from __future__ import annotations

import math


def intended_start(n: int, rate: float, ramp: float = 0.0) -> float:
    """Seconds after the schedule's start at which operation n should begin.

    Without a ramp, operations are evenly spaced at 1/rate. With a linear ramp
    from 0 to `rate` over `ramp` seconds, the cumulative number of operations
    due by time t is rate·t²/(2·ramp) during the ramp and rate·ramp/2 +
    rate·(t - ramp) after it; this inverts that curve.
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if ramp <= 0:
        return n / rate
    ops_in_ramp = rate * ramp / 2.0
    if n < ops_in_ramp:
        return math.sqrt(2.0 * ramp * n / rate)
    return ramp + (n - ops_in_ramp) / rate


def operations_due(t: float, rate: float, ramp: float = 0.0) -> int:
    """How many operations (all workers) are due strictly before time t."""
    if t <= 0:
        return 0
    if ramp <= 0:
        due = rate * t
    elif t < ramp:
        due = rate * t * t / (2.0 * ramp)
    else:
        due = rate * ramp / 2.0 + rate * (t - ramp)
    # Operation 0 is due at t = 0, so any t > 0 has at least one due; the
    # tolerance keeps a float like 4.0000000001 from counting a fifth.
    return max(1, math.ceil(due - 1e-9))


def worker_operations(worker: int, workers: int, duration: float, rate: float, ramp: float = 0.0):
    """Yield (n, intended_start) for worker `worker`'s share, ending before `duration`."""
    total = operations_due(duration, rate, ramp)
    for n in range(worker, total, workers):
        yield n, intended_start(n, rate, ramp)


def split_evenly(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split into `parts` shares that differ by at most one."""
    if parts <= 0 or not 0 <= index < parts:
        raise ValueError("index must be in [0, parts)")
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)
