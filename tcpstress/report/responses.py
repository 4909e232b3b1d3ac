"""What the server answered: status codes, TLS, requests by name, and what was left open.

The latency tables elsewhere are of successful requests only; this is where the
rest is shown, so a run whose answers were mostly 503s cannot pass for a fast one.
"""

from __future__ import annotations

from typing import Any, Iterable

from tcpstress.report.rundata import RunData


def _ms(us: float) -> str:
    ms = us / 1000.0
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def _codes(status: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in sorted(status.items())) or "–"


def response_table(runs: Iterable[RunData]) -> tuple[list[str], list[list[str]]]:
    """One row per run that has something to say here; empty when none has."""
    runs = list(runs)
    show_tls = any(r.summary.get("tls") for r in runs)
    headers = ["run", "responses", "status codes", "failed %", "failed p99 ms", "in flight at end", "also"]
    headers += ["TLS handshakes", "resumed", "TLS p50 ms", "TLS p99 ms"] if show_tls else []
    rows = []
    for run in runs:
        s: dict[str, Any] = run.summary
        if not (s.get("status") or s.get("tls") or s.get("in_flight_at_end") or s.get("anomalies")):
            continue
        failed = (s.get("latency_us") or {}).get("error") or {}
        also = ", ".join(f"{k} {v:,}" for k, v in (s.get("anomalies") or {}).items()) or "–"
        row = [run.label, f"{s.get('responses', 0):,}", _codes(s.get("status") or {}),
               f"{100 * float(s.get('error_rate') or 0):.2f}",
               _ms(failed["p99"]) if failed.get("count") else "–",
               f"{int(s.get('in_flight_at_end') or 0):,}", also]
        if show_tls:
            tls = s.get("tls") or {}
            hs = (s.get("latency_us") or {}).get("tls") or {}
            row += [f"{tls.get('handshakes', 0):,}", f"{tls.get('resumed', 0):,}",
                    _ms(hs["p50"]) if hs.get("count") else "–", _ms(hs["p99"]) if hs.get("count") else "–"]
        rows.append(row)
    return headers, rows


def request_table(runs: Iterable[RunData]) -> tuple[list[str], list[list[str]]]:
    """[[request]] entries, each with its own counts and latency."""
    headers = ["run", "request", "ok", "failed", "p50 ms", "p99 ms", "max ms"]
    rows = []
    for run in runs:
        for name, part in (run.summary.get("requests_by_name") or {}).items():
            lat = part.get("latency_us") or {}
            ok = int(part.get("requests") or 0)
            rows.append([run.label, name, f"{ok:,}", f"{int(part.get('errors') or 0):,}",
                         _ms(lat["p50"]) if ok else "–", _ms(lat["p99"]) if ok else "–",
                         _ms(lat["max"]) if ok else "–"])
    return headers, rows


LATENCY_NOTE = ("Latencies are of successful requests: a failed attempt (an error, or an answer whose "
                "status was not expected) is left out of them and counted in error % instead.")
