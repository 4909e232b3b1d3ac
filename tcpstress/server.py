"""The built-in target: a small, fast trio server speaking HTTP/1.1 or fixed-size echo.

It exists to be predictable and countable: every accepted connection and every
answered request is counted exactly, so a test or a run can compare the
client's numbers with the server's. Its close policy decides which side sends
the first FIN, and therefore which side collects TIME_WAIT (see docs/kernel.md):

- "client": the server never closes on its own initiative: after reaching
  `requests_per_connection` (or, for echo, after the agreed exchanges) it waits
  for the client's FIN, then closes (client holds TIME_WAIT). A request with
  `Connection: close` is the client's own choice, and HTTP requires the server
  to close after answering it (RFC 9112 9.6), so it does (server holds
  TIME_WAIT), as nginx does.
- "server": after such an exchange the server closes at once (server holds TIME_WAIT).
- "never": the server never closes, not even after the client's FIN, and keeps
  the socket until it stops: CLOSE_WAIT piles up, as in a leaking application.
- "reset": SO_LINGER {1, 0} and close after the ending exchange, or on the
  client's FIN: an RST, no TIME_WAIT on either side.

Garbage gets `400 Bad Request` and the connection is closed at once (held
under "never", reset under "reset"): a peer that sends garbage cannot be
trusted to close.

Speed: the server shares two cores with the load generator, so it skips trio's
stream layer and even trio.socket's per-call checkpoints (which yield to the
scheduler on every call). Each connection is a plain non-blocking stdlib
socket: recv/send are tried directly, and the task parks in
`trio.lowlevel.wait_readable/wait_writable` when the kernel says EAGAIN and
after every answer, which is also what keeps a client pipelining flat out from
starving the others.

With workers > 1 the parent picks the port, starts that many processes, each
with its own SO_REUSEPORT listener on it (a process may hold at most 20,000
descriptors here), and sums their counts when it stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import trio
from trio.lowlevel import checkpoint, wait_readable, wait_writable

from tcpstress.load.protocols import HttpRequestParser, ProtocolError
from tcpstress.scenario import SERVER_CLOSE_POLICIES as CLOSE_POLICIES

PROTOCOLS = ("http", "echo")  # https is http with tls_cert/tls_key

__all__ = ["CLOSE_POLICIES", "PROTOCOLS", "ServerConfig", "ServerStats", "serve"]


# Large enough for any burst of pipelined requests, and below glibc's mmap
# threshold (128 KiB): Python allocates the full size on every recv(), and a
# 256 KiB recv() measured 14 us here against 2 us for 64 KiB.
RECV_SIZE = 64 * 1024
# How long the "client" policy waits for the client's FIN after an ending
# exchange before closing anyway (nginx's lingering_time is 30 s).
CLIENT_CLOSE_WAIT_SECONDS = 30.0
# Accepts in a row before the accept loop yields to the connections.
ACCEPTS_BEFORE_YIELD = 64
# Back-off when accept() fails for lack of descriptors or memory.
ACCEPT_ERROR_PAUSE = 0.05
WORKER_START_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 10.0
# Workers outlive the parent's max_seconds by this much at most, should the
# parent be unable to stop them (PR_SET_PDEATHSIG covers a parent that dies).
WORKER_SAFETY_MARGIN = 10.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    protocol: str = "http"  # "http" | "echo"
    response_size: int = 64  # HTTP body bytes
    echo_size: int = 64  # echo: bytes per message, read whole and written back
    close: str = "client"  # see CLOSE_POLICIES and the module docstring
    requests_per_connection: int = 0  # 0: unlimited ("never" ignores it)
    backlog: int = 128
    workers: int = 1
    delay: float = 0.0  # seconds to wait before each response
    stall_at: float | None = None  # after this much uptime, stop answering...
    stall_for: float = 0.0  # ...for this long
    max_seconds: float | None = None  # stop by itself after this long
    tls_cert: str | None = None  # PEM files: serve HTTPS (HTTP over TLS)
    tls_key: str | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.host, str) and self.host != "", "host", self.host, "a non-empty address"
        )
        _require_int(self.port, "port", 0, 65535)
        _require(
            self.protocol in PROTOCOLS, "protocol", self.protocol, f"one of {', '.join(PROTOCOLS)}"
        )
        _require(
            self.close in CLOSE_POLICIES, "close", self.close, f"one of {', '.join(CLOSE_POLICIES)}"
        )
        _require_int(self.response_size, "response_size", 0, 1 << 30)
        _require_int(self.echo_size, "echo_size", 1, 1 << 24)
        _require_int(self.requests_per_connection, "requests_per_connection", 0, None)
        _require_int(self.backlog, "backlog", 1, 1 << 20)
        _require_int(self.workers, "workers", 1, 64)
        _require_seconds(self.delay, "delay", allow_zero=True)
        if self.stall_at is not None:
            _require_seconds(self.stall_at, "stall_at", allow_zero=True)
        _require_seconds(self.stall_for, "stall_for", allow_zero=True)
        if self.max_seconds is not None:
            _require_seconds(self.max_seconds, "max_seconds", allow_zero=False)
        _require((self.tls_cert is None) == (self.tls_key is None), "tls_cert", self.tls_cert,
                 "given together with tls_key")
        _require(self.tls_cert is None or self.protocol == "http", "protocol", self.protocol,
                 "http when TLS is on")


def _require(ok: bool, field: str, value: object, allowed: str) -> None:
    if not ok:
        raise ValueError(f"server {field}={value!r}: must be {allowed}")


def _require_int(value: object, field: str, low: int, high: int | None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)  # type: ignore[operator]
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    _require(ok, field, value, allowed)


def _require_seconds(value: object, field: str, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)  # type: ignore[operator]
    _require(ok, field, value, "a finite number of seconds " + (">= 0" if allow_zero else "> 0"))


@dataclass
class ServerStats:
    connections: int = 0  # accepted
    requests: int = 0  # HTTP requests answered 200, or echo messages written back, in full
    bad_requests: int = 0  # HTTP requests answered 400
    accept_errors: int = 0  # accept() failures (EMFILE, ENOBUFS, ...)
    tls_handshakes: int = 0  # completed TLS handshakes
    tls_resumed: int = 0  # of which resumed a session
    tls_failures: int = 0  # handshakes that failed
    host: str = ""
    port: int = 0
    workers: int = 1

    def add(self, other: ServerStats) -> None:
        self.connections += other.connections
        self.requests += other.requests
        self.bad_requests += other.bad_requests
        self.accept_errors += other.accept_errors
        self.tls_handshakes += other.tls_handshakes
        self.tls_resumed += other.tls_resumed
        self.tls_failures += other.tls_failures


# --------------------------------------------------------------------------
# Entry point


def serve(config: ServerConfig, ready: Callable[[str, int], None] | None = None) -> ServerStats:
    """Run the server until SIGINT/SIGTERM or `max_seconds`; return the counts.

    Prints `listening PROTO HOST:PORT pid=N workers=W` once listening and
    `served connections=N requests=M` when stopped, both flushed. `ready(host,
    port)` is called once listening (after the first line is printed).
    """
    _raise_fd_limit()
    if config.workers == 1:
        return _serve_single(config, ready)
    return _serve_workers(config, ready)


def _serve_single(config: ServerConfig, ready) -> ServerStats:
    listener = _open_listener(config.host, config.port, config.backlog, reuseport=False)
    stats = ServerStats(host=config.host, port=listener.getsockname()[1], workers=1)

    def announce() -> None:
        _print_listening(config, stats.port)
        if ready is not None:
            ready(config.host, stats.port)

    with _stop_signals_ignored():
        trio.run(
            _serve_listener, listener, config, stats, time.monotonic(), config.max_seconds, announce
        )
        _print_served(stats)
    return stats


@contextlib.contextmanager
def _stop_signals_ignored():
    """Ignore SIGINT/SIGTERM except while trio's receiver handles them.

    trio restores the previous handlers when its receiver closes; were that the
    default one, a second signal arriving between the end of trio.run and the
    counts being printed would kill us with nothing printed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_listening(config: ServerConfig, port: int) -> None:
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(
        f"listening {config.protocol} {host}:{port} pid={os.getpid()} workers={config.workers}",
        flush=True,
    )


def _print_served(stats: ServerStats) -> None:
    tls = (f" tls_handshakes={stats.tls_handshakes} tls_resumed={stats.tls_resumed}"
           f" tls_failures={stats.tls_failures}" if stats.tls_handshakes or stats.tls_failures else "")
    print(f"served connections={stats.connections} requests={stats.requests}{tls}", flush=True)
    if stats.accept_errors:
        print(
            f"server: accept() failed {stats.accept_errors} times (out of descriptors?)",
            file=sys.stderr,
        )


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _open_listener(host: str, port: int, backlog: int, reuseport: bool) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


# --------------------------------------------------------------------------
# One process: the trio part


class _Context:
    """What every connection task of one process shares."""

    def __init__(self, config: ServerConfig, stats: ServerStats, started_at: float) -> None:
        self.config = config
        self.stats = stats
        self.held: list[socket.socket] = []  # "never": kept open until the server stops
        self.tls: ssl.SSLContext | None = None
        if config.tls_cert and config.tls_key:
            from tcpstress.load.tls import server_context

            self.tls = server_context(config.tls_cert, config.tls_key)
        body = b"x" * config.response_size
        length = f"Content-Length: {config.response_size}\r\n".encode()
        self.ok = b"HTTP/1.1 200 OK\r\n" + length + b"\r\n" + body
        self.ok_close = b"HTTP/1.1 200 OK\r\n" + length + b"Connection: close\r\n\r\n" + body
        # An HTTP/1.0 client keeps the connection only if told so (ab -k relies on it).
        self.ok_keep_alive = (
            b"HTTP/1.1 200 OK\r\n" + length + b"Connection: keep-alive\r\n\r\n" + body
        )
        self.limit = config.requests_per_connection if config.close != "never" else 0
        # When the server is about to close, the last answer goes out with
        # MSG_MORE: the kernel holds it and close() sends it in one segment with
        # the FIN. Sent apart, a client woken by the answer can close first
        # (the scheduler may run it before our close()), and TIME_WAIT would
        # land on the wrong side. (Not under "reset": an RST drops unsent data.)
        # An SSLSocket takes no send flags: over TLS the answer and the FIN go apart.
        self.ending_flags = socket.MSG_MORE if config.close == "server" and not self.tls else 0
        self.refusal_flags = socket.MSG_MORE if config.close in ("server", "client") and not self.tls else 0
        self.close_flags = 0 if self.tls else socket.MSG_MORE
        self.slow = config.delay > 0 or config.stall_at is not None
        self.stall_start = self.stall_end = 0.0
        if config.stall_at is not None:
            # trio's clock has its own origin: translate from the monotonic start.
            self.stall_start = trio.current_time() + (
                started_at + config.stall_at - time.monotonic()
            )
            self.stall_end = self.stall_start + config.stall_for


# How a connection's exchanges ended.
_PEER_CLOSED = 0  # the client's FIN (or an error)
_EXCHANGE_ENDED = 1  # Connection: close or requests_per_connection
_REFUSED = 2  # garbage, answered 400
_CLIENT_ASKED_CLOSE = 3  # the request said Connection: close

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def _serve_listener(
    listener: socket.socket,
    config: ServerConfig,
    stats: ServerStats,
    started_at: float,
    max_seconds: float | None,
    announce: Callable[[], None],
) -> None:
    context = _Context(config, stats, started_at)
    handler = _http_connection if config.protocol == "http" else _echo_connection
    try:
        with contextlib.ExitStack() as stack:
            async with trio.open_nursery() as nursery:
                if max_seconds is not None:
                    nursery.cancel_scope.deadline = trio.current_time() + max_seconds
                if threading.current_thread() is threading.main_thread():
                    # Installed before announcing, so a SIGTERM sent as soon as
                    # the listening line is read still stops us cleanly.
                    receiver = stack.enter_context(
                        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                    )
                    nursery.start_soon(_cancel_on_signal, receiver, nursery.cancel_scope)
                announce()
                await _accept_loop(listener, handler, context, nursery)
    finally:
        listener.close()
        for sock in context.held:
            sock.close()


async def _cancel_on_signal(receiver, cancel_scope: trio.CancelScope) -> None:
    # Keeps receiving after the first signal: a second one during shutdown
    # must not meet the default handler and kill us before the counts print.
    async for _ in receiver:
        cancel_scope.cancel()


async def _accept_loop(listener: socket.socket, handler, context: _Context, nursery) -> None:
    stats = context.stats
    accept = listener.accept
    hold_all = context.config.close == "never"
    in_a_row = 0
    while True:
        try:
            conn, _ = accept()
        except BlockingIOError:
            in_a_row = 0
            await wait_readable(listener)
            continue
        except OSError:
            # EMFILE and friends: the connection stays queued; pause rather than spin.
            stats.accept_errors += 1
            await trio.sleep(ACCEPT_ERROR_PAUSE)
            continue
        conn.setblocking(False)
        # Answers to a pipelining client may go out in several sends (with
        # `delay`); Nagle would hold each one until the last is ACKed.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stats.connections += 1
        if hold_all:
            context.held.append(conn)
        nursery.start_soon(handler, conn, context)
        in_a_row += 1
        if in_a_row >= ACCEPTS_BEFORE_YIELD:
            in_a_row = 0
            await checkpoint()


async def _receive(sock: socket.socket) -> bytes:
    """What the peer sent next (b"" once it closed), waiting for it when there is none yet."""
    while True:
        try:
            return sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError):
            await wait_readable(sock)
        except ssl.SSLWantWriteError:
            await wait_writable(sock)


async def _send_all(sock: socket.socket, data: bytes | bytearray, flags: int = 0) -> None:
    try:
        sent = sock.send(data, flags)
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)
    while sent < len(data):
        await wait_writable(sock)
        try:
            sent += sock.send(view[sent:], flags)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass


async def _wait_for_input(sock: socket.socket) -> None:
    """Wait until the next request may be read; TLS may already hold decrypted bytes."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return
    await wait_readable(sock)


async def _tls_accept(sock: socket.socket, context: _Context, tls: ssl.SSLContext) -> ssl.SSLSocket | None:
    """Wrap an accepted socket and run the server side of the handshake (bounded)."""
    tls_sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    with trio.move_on_after(CLIENT_CLOSE_WAIT_SECONDS):
        while True:
            try:
                tls_sock.do_handshake()
                context.stats.tls_handshakes += 1
                context.stats.tls_resumed += bool(tls_sock.session_reused)
                if context.config.close == "never":
                    context.held.append(tls_sock)
                return tls_sock
            except ssl.SSLWantReadError:
                await wait_readable(tls_sock)
            except ssl.SSLWantWriteError:
                await wait_writable(tls_sock)
            except OSError:
                break
    context.stats.tls_failures += 1
    tls_sock.close()
    return None


async def _http_connection(sock: socket.socket, context: _Context) -> None:
    if context.tls is not None:
        tls_sock = await _tls_accept(sock, context, context.tls)
        if tls_sock is None:
            return
        sock = tls_sock
    try:
        await _end_connection(sock, context, await _http_exchanges(sock, context))
    except OSError:
        pass  # reset by the client: nothing left to close politely
    finally:
        if context.config.close != "never":
            sock.close()


async def _http_exchanges(sock: socket.socket, context: _Context) -> int:
    """Answer requests until one ends the connection; say how it ended."""
    stats = context.stats
    parser = HttpRequestParser()
    limit = context.limit
    answered = 0
    while True:
        data = await _receive(sock)
        if not data:
            return _PEER_CLOSED
        try:
            requests = parser.feed(data)
        except ProtocolError:
            await _send_all(sock, BAD_REQUEST, context.refusal_flags)
            stats.bad_requests += 1
            return _REFUSED
        if not requests:
            continue
        count = len(requests)
        ending = False
        asked_close = False
        if limit and answered + count >= limit:
            count = limit - answered
            ending = True
        for index in range(count):
            if requests[index].close:
                count = index + 1
                ending = asked_close = True
                break
        if asked_close and context.config.close == "client":
            # RFC 9112 9.6: a server that receives "close" MUST initiate the
            # close after the response; "client" only means it never closes
            # on its own initiative. MSG_MORE sends the FIN with the answer.
            ending_flags = context.close_flags
        else:
            ending_flags = context.ending_flags
        if context.slow:
            for index in range(count):
                await _before_response(context)
                last = ending and index == count - 1
                flags = ending_flags if last else 0
                await _send_all(sock, _response_for(context, requests[index], last), flags)
                stats.requests += 1
        elif count == 1 and not ending and requests[0].version == 11:
            await _send_all(sock, context.ok)
            stats.requests += 1
        else:
            await _send_all(
                sock,
                b"".join(
                    _response_for(context, requests[index], ending and index == count - 1)
                    for index in range(count)
                ),
                ending_flags if ending else 0,
            )
            stats.requests += count
        answered += count
        if ending:
            return _CLIENT_ASKED_CLOSE if asked_close else _EXCHANGE_ENDED
        if parser.error is not None:  # garbage after the requests just answered
            await _send_all(sock, BAD_REQUEST, context.refusal_flags)
            stats.bad_requests += 1
            return _REFUSED
        # A client that waits for each response has sent nothing yet: wait
        # first instead of paying for a recv() that fails with EAGAIN. This
        # is also the yield point that keeps a pipelining client from
        # starving the others.
        await _wait_for_input(sock)


def _response_for(context: _Context, request, ends_connection: bool) -> bytes:
    if ends_connection:
        return context.ok_close
    if request.version == 10:
        return context.ok_keep_alive
    return context.ok


async def _before_response(context: _Context) -> None:
    if context.config.stall_at is not None:
        now = trio.current_time()
        if context.stall_start <= now < context.stall_end:
            await trio.sleep_until(context.stall_end)
    if context.config.delay:
        await trio.sleep(context.config.delay)


async def _echo_connection(sock: socket.socket, context: _Context) -> None:
    try:
        await _end_connection(sock, context, await _echo_exchanges(sock, context))
    except OSError:
        pass
    finally:
        if context.config.close != "never":
            sock.close()


async def _echo_exchanges(sock: socket.socket, context: _Context) -> int:
    """Echo whole messages until the limit; say how it ended."""
    stats = context.stats
    size = context.config.echo_size
    limit = context.limit
    pending = bytearray()  # the start of an incomplete message
    answered = 0
    while True:
        data: bytes | bytearray = await _receive(sock)
        if not data:
            return _PEER_CLOSED
        if pending:
            pending += data
            data = pending
        count = len(data) // size
        ending = False
        if limit and answered + count >= limit:
            count = limit - answered
            ending = True
        whole = count * size
        reply: bytes | bytearray
        if data is pending:
            reply = bytes(pending[:whole])
            del pending[:whole]
        elif whole == len(data):
            reply = data
        else:
            reply = data[:whole]
            pending = bytearray(data[whole:])
        if count:
            if context.slow:
                for index in range(count):
                    await _before_response(context)
                    flags = context.ending_flags if ending and index == count - 1 else 0
                    await _send_all(sock, reply[index * size : (index + 1) * size], flags)
                    stats.requests += 1
            else:
                await _send_all(sock, reply, context.ending_flags if ending else 0)
                stats.requests += count
            answered += count
        if ending:
            return _EXCHANGE_ENDED
        await wait_readable(sock)  # see _http_exchanges


_LINGER_RESET = struct.pack("ii", 1, 0)


async def _end_connection(sock: socket.socket, context: _Context, how: int) -> None:
    """Do what the close policy asks before the socket is closed (or held, for "never").

    A client that sent garbage cannot be trusted to close: under "client" it is
    closed at once, like "server" would.
    """
    policy = context.config.close
    if policy == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    elif policy == "client" and how == _EXCHANGE_ENDED:
        await _wait_for_peer_close(sock)


async def _wait_for_peer_close(sock: socket.socket) -> None:
    with trio.move_on_after(CLIENT_CLOSE_WAIT_SECONDS):
        while await _receive(sock):
            pass


# --------------------------------------------------------------------------
# Several processes


def _serve_workers(config: ServerConfig, ready) -> ServerStats:
    # Hold the port with a bound (not listening) socket while workers start: it
    # is in no SO_REUSEPORT listening group, so it never takes connections.
    family, _, _, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    placeholder = socket.socket(family, socket.SOCK_STREAM)
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    placeholder.bind(address)
    port = placeholder.getsockname()[1]
    stats = ServerStats(host=config.host, port=port, workers=config.workers)
    started_at = time.monotonic()
    wake_read, wake_write = os.pipe()
    dead: list[str] = []
    previous = _install_stop_handlers(wake_write)
    spawn = multiprocessing.get_context("spawn")
    workers = []
    try:
        for _ in range(config.workers):
            parent_end, child_end = spawn.Pipe()
            process = spawn.Process(
                target=_worker_main,
                args=(config, port, started_at, os.getpid(), child_end),
                daemon=True,
            )
            process.start()
            child_end.close()
            workers.append((process, parent_end))
        _wait_workers_ready(workers)
        placeholder.close()
        _print_listening(config, port)
        if ready is not None:
            ready(config.host, port)
        deadline = None if config.max_seconds is None else started_at + config.max_seconds
        dead = _wait_for_stop(workers, wake_read, deadline)
    finally:
        placeholder.close()
        for worker_stats in _stop_workers(workers):
            stats.add(worker_stats)
        _restore_handlers(previous)
        os.close(wake_read)
        os.close(wake_write)
    _print_served(stats)
    if dead:
        raise RuntimeError(f"server worker died while serving: {', '.join(dead)}")
    return stats


def _install_stop_handlers(wake_write: int):
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_signal(signum, frame) -> None:
        os.write(wake_write, b"x")

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(previous) -> None:
    if previous:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_workers_ready(workers) -> None:
    for process, pipe in workers:
        if not pipe.poll(WORKER_START_TIMEOUT):
            raise RuntimeError(f"server worker pid={process.pid} did not start")
        try:
            message = pipe.recv()
        except EOFError:
            raise RuntimeError(f"server worker pid={process.pid} exited while starting") from None
        if message[0] != "ready":
            raise RuntimeError(f"server worker pid={process.pid} failed: {message[1]}")


def _wait_for_stop(workers, wake_read: int, deadline: float | None) -> list[str]:
    """Wait for a stop signal, the deadline, or a worker's death; describe dead workers."""
    by_sentinel = {process.sentinel: process for process, _ in workers}
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = multiprocessing.connection.wait([wake_read, *by_sentinel], timeout)
        if ready or timeout == 0.0:
            break
    dead = [by_sentinel[item] for item in ready if item in by_sentinel]
    for process in dead:
        process.join(WORKER_STOP_TIMEOUT)  # its sentinel closes a moment before it is reaped
    return [f"pid={process.pid} exit code {process.exitcode}" for process in dead]


def _stop_workers(workers) -> list[ServerStats]:
    for process, _ in workers:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    collected = []
    for process, pipe in workers:
        try:
            if pipe.poll(WORKER_STOP_TIMEOUT):
                message = pipe.recv()
                if message[0] == "stats":
                    collected.append(ServerStats(**message[1]))
        except (EOFError, OSError):
            print(f"server worker pid={process.pid} died without its counts", file=sys.stderr)
        process.join(WORKER_STOP_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()
        pipe.close()
    return collected


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Be killed when the process that started this one dies, even by SIGKILL.

    SIGKILL, not SIGTERM: the server ignores SIGTERM while starting and stopping
    (see _stop_signals_ignored), and with the parent gone its counts are lost
    anyway. The kernel sends it when the parent *thread* that forked us exits,
    so the runner starts the server from its main thread. A built-in server's
    own workers get the same, so the whole tree goes.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect (we were reparented)
        os._exit(1)


def exit_with_parent(parent_pid: int) -> None:
    """`tcpstress serve --parent-pid PID`: a runner's built-in server never outlives the runner."""
    _die_with_parent(parent_pid)


def _worker_main(config: ServerConfig, port: int, started_at: float, parent_pid: int, pipe) -> None:
    _die_with_parent(parent_pid)
    _raise_fd_limit()
    try:
        listener = _open_listener(config.host, port, config.backlog, reuseport=True)
    except OSError as exc:
        pipe.send(("error", str(exc)))
        return
    stats = ServerStats(host=config.host, port=port, workers=1)
    max_seconds = None
    if config.max_seconds is not None:
        max_seconds = config.max_seconds + WORKER_SAFETY_MARGIN

    def announce() -> None:
        pipe.send(("ready",))

    with _stop_signals_ignored():
        trio.run(_serve_listener, listener, config, stats, started_at, max_seconds, announce)
        with contextlib.suppress(OSError):  # the parent may be gone
            pipe.send(("stats", asdict(stats)))
