"""Numbers, times and lists as the findings and the tables word them."""

from __future__ import annotations


def fmt_number(n: float) -> str:
    """A count or rate as a reader wants it: 12,345 / 3.2 / 0.05."""
    if isinstance(n, int) or float(n).is_integer():
        return f"{int(n):,}"
    if abs(n) >= 100:
        return f"{n:,.0f}"
    if abs(n) >= 1:
        return f"{n:.1f}"
    return f"{n:.2g}"


def fmt_ms(us: float) -> str:
    ms = us / 1000.0
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_t(seconds: float) -> str:
    return f"t={seconds:g} s"


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
