"""The wrk-like text summary of a run (formatting only; cli.py prints it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from tcpstress.results import RunResult
from tcpstress.scenario import format_url

if TYPE_CHECKING:
    from tcpstress.report.rundata import RunData

KEY_STATES = ("TIME_WAIT", "SYN_RECV", "CLOSE_WAIT", "ESTABLISHED")


def _ms(us: float) -> str:
    return f"{us / 1000.0:.3f}"


def describe_load(scenario: dict[str, Any]) -> str:
    load, conn = scenario["load"], scenario["connection"]
    if load["model"] == "open" and load.get("stage"):
        rates = [st["rate"] for st in load["stage"]]
        model = (f"open model in {len(rates)} stages, {min(rates):g}/s to {max(rates):g}/s "
                 f"(at most {load['connections']} in flight)")
    elif load["model"] == "open":
        model = f"open model at {load['rate']:g}/s (at most {load['connections']} in flight)"
    else:
        model = f"closed model, {load['connections']} connections"
    rpc = conn["requests_per_connection"] if conn["keepalive"] else 1
    ka = ("keep-alive" + (f", {rpc} requests per connection" if rpc else "")) if conn["keepalive"] else "new connection per request"
    return f"{model}, {ka}, {conn['close']} closes, {load['workers']} worker(s)"


def _state_peak(state: str, entry: dict[str, Any]) -> str:
    """A state's peak; sockets an earlier run left (there before the load began) are said apart."""
    peak, start = int(entry.get("peak", 0) or 0), int(entry.get("start", 0) or 0)
    if state != "ESTABLISHED" and start >= 10 and start >= 0.1 * peak:
        return f"{state} {max(peak - start, 0):,} (+{start:,} before the run)"
    return f"{state} {peak:,}"


def _is_loopback(result: RunResult) -> bool:
    from tcpstress.report.rundata import RunData

    return RunData(result=result).target_is_loopback


def _both_ends_seen(states: dict[str, Any]) -> bool:
    return any(int((per_state.get("ESTABLISHED") or {}).get("peak", 0) or 0) > 0 for per_state in states.values())


def _lag_reason(result: RunResult) -> str:
    """The cause the report's open-model finding names, so the summary line and the finding agree."""
    from tcpstress.report.lag import lag_cause, schedule_check
    from tcpstress.report.words import LAG_TITLES
    from tcpstress.report.rundata import as_run_data
    from tcpstress.results import ResultError

    try:
        run = as_run_data(result)
        check = schedule_check(run)
        return f": {LAG_TITLES[lag_cause(run, check).key]}" if check is not None else ""
    except (ResultError, OSError, ValueError, KeyError, TypeError):
        return ""  # an odd folder loses the cause on this line, never the summary itself


def format_summary(result: RunResult) -> str:
    d = result.data
    s = d["summary"]
    sc = d["scenario"]
    t = d.get("target", {})
    lines = []
    title = d.get("name", "run") + (f" [{d['variant']}]" if d.get("variant") else "")
    lines.append(f"tcpstress {d.get('tool_version', '')}: {title}: {s.get('duration_s', 0):.1f} s measured")
    lines.append(f"  target   {format_url(sc['target']['protocol'], t.get('name') or sc['target']['host'], t.get('port', ''), sc['target']['path'])}"
                 f"{' (built-in server)' if sc['server']['builtin'] else ''}")
    if t.get("scope"):
        shown = t["host"] if t.get("name") in (None, t["host"]) else f"{t['name']} = {', '.join(t.get('addresses') or [t['host']])}, used {t['host']}"
        where = {"loopback": "loopback", "lab": "lab namespace",
                 "external": "external: the kernel figures below are this client's side only"}[t["scope"]]
        lines.append(f"  address  {shown} ({t.get('family', '')}, {where})")
    shard = d.get("shard")
    lines.append(f"  load     {describe_load(sc)}"
                 + (f"; this is shard {shard['index']}/{shard['count']} of it"
                    + (f" ({shard['name']})" if shard.get("name") else "")
                    if shard and shard["count"] > 1 else ""))
    lines.append(f"  requests     {s['requests']:>12,}   {s['requests_per_s']:>12,.1f}/s")
    lines.append(f"  connections  {s['connections']:>12,}   {s['connections_per_s']:>12,.1f}/s")
    if s.get("error_total"):
        errs = ", ".join(f"{k} {v:,}" for k, v in s["errors"].items())
        lines.append(f"  errors       {s['error_total']:>12,}   {errs}  ({100 * s.get('error_rate', 0):.2f}% of attempts)")
    else:
        lines.append("  errors                  0")
    if s.get("status"):
        codes = "  ".join(f"{code} {n:,}" for code, n in s["status"].items())
        lines.append(f"  status       {s.get('responses', 0):>12,}   {codes}")
    if s.get("in_flight_at_end"):
        lines.append(f"  in flight at end {s['in_flight_at_end']:>8,}   (sent, no answer by the end: neither success nor error)")
    if s.get("anomalies"):
        lines.append("  also         " + ", ".join(f"{k} {v:,}" for k, v in s["anomalies"].items())
                     + "  (not failed requests)")
    if s.get("tls"):
        tls = s["tls"]
        lines.append(f"  tls          {tls['handshakes']:>12,} handshakes, {tls['resumed']:,} resumed")
    lat = s.get("latency_us", {})
    lines.append("  latency (ms)         p50        p90        p99      p99.9        max")
    for metric, label in (("total", "total"), ("corrected", "corrected"), ("connect", "connect"), ("tls", "tls handshake"),
                          ("ttfb", "first byte"), ("error", "failed (HTTP)")):
        p = lat.get(metric)
        if p and p.get("count"):
            lines.append(f"    {label:<12}" + "".join(f"{_ms(p[k]):>11}" for k in ("p50", "p90", "p99", "p99.9", "max")))
    if s.get("intended_rate"):
        kept = s.get("kept_up", True)
        lines.append(f"  schedule     {s['intended_rate']:g}/s intended, {s['late_starts']:,} late starts, "
                     f"max lag {_ms(s['max_lag_us'])} ms"
                     + ("" if kept else f"  ** behind schedule{_lag_reason(result)}: corrected latencies include the lag **"))
    lines += format_stages(s.get("stages") or [])
    states = s.get("states", {})
    for label, per_state in states.items():
        peaks = "  ".join(_state_peak(st, per_state.get(st, {})) for st in KEY_STATES)
        lines.append(f"  kernel ({label}) peak  {peaks}")
    if _is_loopback(result) and len(states) == 1 and _both_ends_seen(states):
        # One namespace holds the client and the server end of each loopback
        # connection: 50 connections are 100 ESTABLISHED sockets.
        lines.append("    (on loopback one namespace holds both ends: each connection is two ESTABLISHED sockets)")
    if lat.get("error", {}).get("count"):
        lines.append("    (latencies are of successful requests; \"failed\" is responses with an unexpected status)")
    for name, part in (s.get("requests_by_name") or {}).items():
        p = part["latency_us"]
        lines.append(f"  request {name[:30]:<30} {part['requests']:>10,} ok {part['errors']:>8,} errors  "
                     f"p50 {_ms(p['p50'])} p99 {_ms(p['p99'])} ms")
    server = s.get("server")
    if server:
        lines.append(f"  server counted {server['requests']:,} requests on {server['connections']:,} connections "
                     f"(whole run, warm-up included)")
    for w in s.get("workers", []):
        if w["exit"] != "ok":
            lines.append(f"  !! {w['name']} {w['exit']} after {w['requests']:,} requests")
    if d.get("partial"):
        lines.append(f"  PARTIAL RESULT: {d.get('partial_reason')}")
    if not s.get("requests") and not d.get("partial"):
        lines.append("  NO REQUEST SUCCEEDED: the run failed")
    from tcpstress.thresholds import format_table, recorded

    table = format_table(recorded(d))
    if table:
        lines += ["", table]
    return "\n".join(lines)


def format_stages(stages: list[dict[str, Any]]) -> list[str]:
    """One line per [[load.stage]]: its intended and achieved rate, errors and percentiles."""
    if not stages:
        return []
    out = ["  stage    intended   achieved/s   errors   p50 ms   p99 ms   corrected p99 ms"]
    for st in stages:
        lat = st.get("latency_us", {})
        total, corr = lat.get("total") or {}, lat.get("corrected") or {}
        out.append(f"    {st['index'] + 1:<4} {st['rate']:>9,.0f}/s {st.get('requests_per_s', 0):>11,.1f} "
                   f"{100 * st.get('error_rate', 0):>7.2f}% {_ms(total.get('p50', 0)):>8} {_ms(total.get('p99', 0)):>8} "
                   f"{_ms(corr.get('p99', 0)):>18}" + ("" if st.get("kept_up", True) else "  (generator behind)"))
    return out


def format_comparison(runs: Sequence[RunData | RunResult]) -> str:
    """A side-by-side text table of variants, from the reporter's comparison rows."""
    from tcpstress.report.diagnose import comparison_rows
    from tcpstress.report.tables import terminal_tables

    # 120 columns: zero columns dropped, kernel counters (and peaks if need be) in a second table.
    return terminal_tables(comparison_rows(runs))
