"""How much one state count costs with ~100k sockets, against `ss` and psutil.

    sudo python bench/bench_sampler.py [--time-wait 90000] [--established 10000] [--repeat 5]

Needs root: it makes a namespace tcpstress-bench-<random> (deleted at the end,
whatever happens), sets that namespace's own port range and tcp_tw_reuse
(the host's settings are not touched), and re-runs itself inside it. There it
builds TIME_WAIT sockets by connect+close churn from several processes to
127.0.0.1..127.0.0.4 (TIME_WAIT holds no fd), and ESTABLISHED pairs held by
processes of at most 9,000 pairs each (a process may open 20,000 fds here).
Then, within the 60 s that TIME_WAIT lasts, it times each way of counting the
same sockets and prints the median cost and its ratio to `ss -Htan | wc -l`
(which includes starting ss and wc, as a person or script would pay it), and
the share of one core a Sampler takes at the default 100 ms interval, with
and without the port filter (issue 20's goal: <= 5% with 20,000 sockets):

    sudo python bench/bench_sampler.py --time-wait 20000 --established 0
    sudo python bench/bench_sampler.py --time-wait 0 --established 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHURN_PORT = 5555
HOLD_PORT_BASE = 6000
DESTINATIONS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
PAIRS_PER_PROCESS = 9000
BUILD_LIMIT_S = 40.0


# -- building sockets (inside the bench namespace) ---------------------------


def _churn_server(stop_at: float) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", CHURN_PORT))
    listener.listen(4096)
    listener.settimeout(0.5)
    while time.monotonic() < stop_at:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        conn.close()


def _churn_client(destination: str, count: int, stop_at: float, done: "multiprocessing.Queue") -> None:
    made = 0
    for _ in range(count):
        if time.monotonic() > stop_at:
            break
        client = socket.socket()
        try:
            client.connect((destination, CHURN_PORT))
        except OSError:
            client.close()
            break
        client.close()  # the client closes first: it keeps the TIME_WAIT
        made += 1
    done.put(made)


def build_time_wait(total: int) -> int:
    stop_at = time.monotonic() + BUILD_LIMIT_S
    server = multiprocessing.Process(target=_churn_server, args=(stop_at,), daemon=True)
    server.start()
    time.sleep(0.3)
    done: multiprocessing.Queue = multiprocessing.Queue()
    share = total // len(DESTINATIONS)
    clients = [multiprocessing.Process(target=_churn_client, args=(d, share, stop_at, done), daemon=True)
               for d in DESTINATIONS]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    server.terminate()
    server.join()
    return sum(done.get() for _ in clients)


def _hold_pairs(port: int, pairs: int, ready: "multiprocessing.Queue", release: "multiprocessing.Event") -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    held = [listener]
    while len(held) < 1 + 2 * pairs:
        batch = min(1000, pairs - (len(held) - 1) // 2)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
        held += clients + [listener.accept()[0] for _ in range(batch)]
    ready.put(pairs)
    release.wait(300)


def build_established(pairs: int) -> tuple[list[multiprocessing.Process], "multiprocessing.Event", int]:
    ready: multiprocessing.Queue = multiprocessing.Queue()
    release = multiprocessing.Event()
    holders = []
    left, index = pairs, 0
    while left > 0:
        share = min(PAIRS_PER_PROCESS, left)
        holder = multiprocessing.Process(target=_hold_pairs, args=(HOLD_PORT_BASE + index, share, ready, release), daemon=True)
        holder.start()
        holders.append(holder)
        left -= share
        index += 1
    made = sum(ready.get(timeout=120) for _ in holders)
    return holders, release, made


# -- timing -----------------------------------------------------------------


def timed(fn, repeat: int) -> tuple[float, object]:
    costs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        costs.append(time.perf_counter() - started)
    return statistics.median(costs) * 1000, result


def measure(repeat: int) -> list[dict]:
    import psutil

    from tcpstress.sampler import procfs
    from tcpstress.sampler.netlink import StateCounter
    from tcpstress.sampler.sampler import NamespaceRef, Sampler

    counter = StateCounter()

    def procfs_count():
        table = procfs.parse_tcp_table(Path("/proc/net/tcp").read_text())
        table.update(procfs.parse_tcp_table(Path("/proc/net/tcp6").read_text()))
        return sum(table.values())

    def ss_count():
        out = subprocess.run("ss -Htan | wc -l", shell=True, check=True, capture_output=True, text=True)
        return int(out.stdout)

    def sampler_tick(method: str):
        sampler = Sampler([NamespaceRef("bench")], interval=3600, method=method)
        sampler.start()
        return sampler.stop()["sampler"]["bench"]["mean_cost_ms"]

    ways = [
        ("ss -Htan | wc -l", ss_count),
        ("netlink count", lambda: sum(counter.count().values())),
        ("netlink, port filter matching all churn sockets", lambda: sum(counter.count(CHURN_PORT).values())),
        ("netlink, port filter matching nothing", lambda: sum(counter.count(9).values())),
        ("procfs read + parse tcp, tcp6", procfs_count),
        ("psutil.net_connections('tcp')", lambda: len(psutil.net_connections("tcp"))),
    ]
    rows = []
    for name, fn in ways:
        ms, count = timed(fn, repeat if "psutil" not in name else max(1, repeat // 2))
        rows.append({"way": name, "median_ms": round(ms, 2), "sockets": count})
    for method in ("netlink", "procfs"):
        costs = [sampler_tick(method) for _ in range(repeat)]
        rows.append({"way": f"Sampler, one full sample ({method}: states+sockstat+counters)",
                     "median_ms": round(statistics.median(costs), 2), "sockets": None})
    counter.close()
    return rows


def sampler_share(port: int | None, seconds: float = 4.0) -> dict:
    """CPU share of one core a Sampler at the default 100 ms takes over `seconds`, from
    getrusage (this process runs nothing else meanwhile; the socket holders are other
    processes), and its mean cost per sample as samples.csv records it."""
    import csv
    import resource
    import tempfile

    from tcpstress.sampler.sampler import NamespaceRef, Sampler

    out = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    sampler = Sampler([NamespaceRef("bench")], interval=0.1, port=port, out_dir=out)
    sampler.start()
    time.sleep(seconds)
    summary = sampler.stop()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = list(csv.DictReader((out / "samples.csv").open()))
    costs = [float(row["sampler_cost_ms"]) for row in rows]
    cpu_us = [int(row["sample_cpu_us"]) for row in rows]
    ages = [float(row["states_age_ms"]) for row in rows]
    for path in out.iterdir():
        path.unlink()
    out.rmdir()
    return {"port_filter": port is not None, "core_share": round(cpu / wall, 4), "samples": len(rows),
            "mean_cost_ms": round(statistics.mean(costs), 3), "mean_cpu_us": round(statistics.mean(cpu_us)),
            "own_cpu_percent": summary["sampler"]["bench"]["cpu_percent"], "max_states_age_ms": max(ages),
            "mean_states_age_ms": round(statistics.mean(ages), 1)}


def inner(args: argparse.Namespace) -> None:
    started = time.monotonic()
    holders, release, pairs = build_established(args.established) if args.established else ([], None, 0)
    made = build_time_wait(args.time_wait) if args.time_wait else 0
    built = time.monotonic()
    try:
        sockstat = Path("/proc/net/sockstat").read_text().splitlines()[1]
        rows = measure(args.repeat)
        shares = [sampler_share(None), sampler_share(CHURN_PORT)]
    finally:
        if release is not None:
            release.set()
        for holder in holders:
            holder.join(10)
    measured = time.monotonic()
    print(json.dumps({"connections_churned": made, "established_pairs": pairs, "sockstat": sockstat,
                      "build_s": round(built - started, 1), "measure_s": round(measured - built, 1),
                      "rows": rows, "shares": shares}))


def report(result: dict) -> None:
    rows = result["rows"]
    ss_ms = rows[0]["median_ms"]
    print(f"built {result['connections_churned']} churned connections + {result['established_pairs']} "
          f"established pairs in {result['build_s']} s; measured in {result['measure_s']} s")
    print(f"before timing: {result['sockstat']}")
    print(f"{'way':<62} {'median ms':>10} {'x ss':>7} {'sockets':>8}")
    for row in rows:
        sockets = "" if row["sockets"] is None else row["sockets"]
        print(f"{row['way']:<62} {row['median_ms']:>10.2f} {row['median_ms'] / ss_ms:>7.2f} {sockets:>8}")
    print("\nSampler at the default 100 ms for 4 s (goal: <= 5% of one core with 20,000 sockets):")
    for share in result["shares"]:
        what = "port filter (all churn sockets match)" if share["port_filter"] else "no port filter"
        print(f"  {what:<40} {share['core_share'] * 100:5.1f}% of one core (the sampler's own count: "
              f"{share['own_cpu_percent']}%), {share['samples']} samples, mean {share['mean_cost_ms']} ms "
              f"and {share['mean_cpu_us']} us of CPU a sample, states {share['mean_states_age_ms']} ms old on "
              f"average, up to {share['max_states_age_ms']} ms {'ok' if share['core_share'] <= 0.05 else 'ABOVE GOAL'}")


def outer(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench_sampler needs root to make its network namespace")
    namespace = f"tcpstress-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        def in_ns(*command: str) -> list[str]:
            return ["ip", "netns", "exec", namespace, *command]

        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        # This namespace's own knobs: a wide port range, and no TIME_WAIT reuse
        # on loopback, so the churn piles TIME_WAIT up instead of recycling it.
        subprocess.run(in_ns("sysctl", "-q", "net.ipv4.ip_local_port_range=1024 65535",
                             "net.ipv4.tcp_tw_reuse=0"), check=True)
        out = subprocess.run(in_ns(sys.executable, __file__, "--inner", "--time-wait", str(args.time_wait),
                                   "--established", str(args.established), "--repeat", str(args.repeat)),
                             check=True, capture_output=True, text=True, timeout=600).stdout
        result = json.loads(out.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            report(result)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-wait", type=int, default=90_000, help="connect+close churns (TIME_WAIT sockets)")
    parser.add_argument("--established", type=int, default=10_000, help="ESTABLISHED pairs (2 sockets each)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("time_wait", "established", "repeat"):
        if getattr(args, name) < 0 or getattr(args, name) > 200_000:
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(args, name)} is out of range: 0..200000")
    (inner if args.inner else outer)(args)


if __name__ == "__main__":
    main()
