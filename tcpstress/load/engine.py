"""The trio load loop of one worker process: closed and open models.

Sockets are trio.socket objects used directly: trio streams cost about twice
as much per connection (FACTS.md: 5k conn/s with open_tcp_stream against
10.9k with trio.socket), and a load generator must not be slower than the
server it tests.

Timing: every timestamp is time.perf_counter(), which on Linux is
CLOCK_MONOTONIC like time.monotonic(), so it shares the clock of the runner,
the other workers and the sampler.
"""

from __future__ import annotations

import errno
import math
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

import trio

from tcpstress.load import schedule
from tcpstress.load.protocols import HttpResponseParser, ProtocolError, build_http_request
from tcpstress.load.recorder import Recorder
from tcpstress.scenario import UNLIMITED, Scenario

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_RESET = struct.pack("ii", 1, 0)
RECV_SIZE = 65536
# An open-model operation that starts more than this after its intended time
# counts as a late start (trio's own scheduling jitter is well below it).
LATE_THRESHOLD_S = 0.001
# After a failed attempt a closed-model slot pauses this long: failures such as
# EADDRNOTAVAIL or ECONNREFUSED return at once, and without a pause a few
# failing slots would spin and starve the slots that work.
ERROR_PAUSE_S = 0.001



class RequestTimeout(Exception):
    pass


class ConnectTimeout(Exception):
    pass


class ShortResponse(Exception):
    """The server closed before a complete response (or echo) arrived."""


def error_name(exc: BaseException) -> str:
    """The key an error is counted under: errno name, timeout, or protocol reason."""
    if isinstance(exc, ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, RequestTimeout):
        return "request timeout"
    if isinstance(exc, ShortResponse):
        return "closed before response"
    if isinstance(exc, ProtocolError):
        return f"protocol: {exc.reason}"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker does: its share of the scenario and the shared clock."""

    scenario: Scenario
    family: int
    sockaddr: tuple
    index: int = 0
    workers: int = 1
    t_start: float = 0.0  # load begins (warm-up starts)
    t0: float = 0.0  # measurement begins
    t_end: float = 0.0  # everything stops

    @property
    def connections(self) -> int:
        return schedule.split_evenly(self.scenario.load.connections, self.workers, self.index)

    @property
    def max_requests(self) -> int:
        total = self.scenario.load.max_requests
        return schedule.split_evenly(total, self.workers, self.index) if total else 0


class Engine:
    def __init__(self, plan: WorkerPlan, emit: Callable[[dict], None], clock: Callable[[], float] = time.perf_counter):
        # `clock` is the shared monotonic clock; tests pass trio.current_time
        # under a MockClock to run schedules in virtual time.
        self.now = clock
        self.plan = plan
        self.emit = emit
        s = plan.scenario
        self.s = s
        self.rec = Recorder(plan.t0, plan.t_end)
        self.protocol = s.target.protocol
        self.nreq = s.connection.effective_requests
        self.close_mode = s.connection.close
        self.sources = s.connection.source_addresses
        self.connect_timeout = s.connection.connect_timeout
        self.request_timeout = s.connection.request_timeout
        if self.protocol == "http":
            host = s.target.host_header or _host_header(s.target.host, plan.sockaddr[1])
            self.req_keep = build_http_request(s.target.method, s.target.path, host, close=False)
            self.req_close = build_http_request(s.target.method, s.target.path, host, close=True)
        else:
            self.req_keep = self.req_close = b"x" * s.connection.payload_size
        self.done_requests = 0
        self.stop_event = trio.Event()
        self.interrupted = False

    # --- one connection --------------------------------------------------------

    async def connect(self, source: str | None) -> trio.socket.SocketType:
        sock = trio.socket.socket(self.plan.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if source:
                # The kernel picks the port at connect() time, per destination,
                # instead of reserving one at bind() for any destination.
                if self.plan.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                await sock.bind((source, 0))
            t = self.now()
            with trio.move_on_after(self.connect_timeout) as scope:
                await sock.connect(self.plan.sockaddr)
            if scope.cancelled_caught:
                raise ConnectTimeout()
            end = self.now()
            self.rec.connected(end, end - t)
            return sock
        except BaseException:
            sock.close()
            raise

    async def exchange(self, sock, last: bool) -> tuple[float, bool]:
        """Send one request and read its whole response; returns (ttfb_time, server_closes)."""
        req = self.req_close if (last and self.close_mode == "server") else self.req_keep
        with trio.move_on_after(self.request_timeout) as scope:
            await sock.send(req)  # requests are small: one send fits the socket buffer
            if self.protocol == "http":
                parser = HttpResponseParser(self.s.target.method)
                first = 0.0
                while True:
                    data = await sock.recv(RECV_SIZE)
                    if not first:
                        first = self.now()
                    if not data:
                        if parser.feed_eof():
                            return first, True
                        raise ShortResponse()
                    responses = parser.feed(data)
                    if responses:
                        return first, responses[0].close
            else:
                want = len(req)
                first = 0.0
                while want > 0:
                    data = await sock.recv(min(RECV_SIZE, want))
                    if not first:
                        first = self.now()
                    if not data:
                        raise ShortResponse()
                    want -= len(data)
                return first, False
        assert scope.cancelled_caught
        raise RequestTimeout()

    async def finish(self, sock, server_closing: bool) -> None:
        """Close the way the scenario says: client FIN, RST, or wait for the server's FIN."""
        if self.close_mode == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        elif self.close_mode == "server" or server_closing:
            with trio.move_on_after(self.request_timeout) as scope:
                while await sock.recv(RECV_SIZE):
                    pass
            if scope.cancelled_caught:
                raise RequestTimeout()
        sock.close()

    def source_for(self, n: int) -> str | None:
        return self.sources[n % len(self.sources)] if self.sources else None

    def budget_left(self) -> bool:
        """May another request start? Not past the end (trio's cancel can come a little
        late), and not beyond load.max_requests."""
        if self.now() >= self.plan.t_end:
            return False
        limit = self.plan.max_requests
        return not limit or self.done_requests < limit

    # --- closed model --------------------------------------------------------------

    async def closed_slot(self, slot: int) -> None:
        """One of the N connections: connect, request(s), close, again, until the end."""
        source = self.source_for(slot * self.plan.workers + self.plan.index)
        rec = self.rec
        while self.budget_left():
            sock = None
            try:
                t_conn = self.now()
                sock = await self.connect(source)
                count = 0
                server_closing = False
                while (self.nreq == UNLIMITED or count < self.nreq) and self.budget_left():
                    count += 1
                    last = self.nreq != UNLIMITED and count == self.nreq
                    t_req = self.now()
                    ttfb, server_closing = await self.exchange(sock, last)
                    end = self.now()
                    # The first request of a fresh connection pays for the handshake too.
                    start = t_conn if count == 1 else t_req
                    rec.request(end, end - start, ttfb - start)
                    self.done_requests += 1
                    if server_closing:
                        break
                await self.finish(sock, server_closing)
                sock = None
            except (OSError, ProtocolError, ShortResponse, ConnectTimeout, RequestTimeout) as exc:
                rec.error(self.now(), error_name(exc))
                if sock is not None:
                    sock.close()
                await trio.sleep(ERROR_PAUSE_S)
        self.stop_event.set()

    # --- open model --------------------------------------------------------------

    def _operations(self):
        load = self.s.load
        schedule_start = self.plan.t_start
        for n, offset in schedule.worker_operations(self.plan.index, self.plan.workers,
                                                    self.plan.t_end - schedule_start, load.rate, load.ramp):
            yield n, schedule_start + offset

    async def open_churn(self, nursery) -> None:
        """A new connection per operation, started on schedule; at most `connections` in flight."""
        limiter = trio.CapacityLimiter(max(1, self.plan.connections))
        offset = trio.current_time() - self.now()
        for n, intended in self._operations():
            if not self.budget_left():
                break
            await trio.sleep_until(intended + offset)
            await limiter.acquire_on_behalf_of(n)
            nursery.start_soon(self._churn_op, n, intended, limiter)
        self.stop_event.set()

    async def _churn_op(self, n: int, intended: float, limiter) -> None:
        start = self.now()
        self.rec.started(start, start - intended, LATE_THRESHOLD_S)
        sock = None
        try:
            sock = await self.connect(self.source_for(n))
            ttfb, server_closing = await self.exchange(sock, last=True)
            end = self.now()
            self.rec.request(end, end - start, ttfb - start, end - intended)
            self.done_requests += 1
            await self.finish(sock, server_closing)
            sock = None
        except (OSError, ProtocolError, ShortResponse, ConnectTimeout, RequestTimeout) as exc:
            self.rec.error(self.now(), error_name(exc))
        finally:
            if sock is not None:
                sock.close()
            limiter.release_on_behalf_of(n)

    async def open_keepalive(self, nursery) -> None:
        """Requests on schedule over a pool of persistent connections.

        An operation waits in the queue while every connection is busy; its
        corrected latency includes that wait, as wrk2's does.
        """
        send, receive = trio.open_memory_channel(math.inf)
        for slot in range(max(1, self.plan.connections)):
            nursery.start_soon(self._keepalive_conn, slot, receive.clone())
        offset = trio.current_time() - self.now()
        async with send:
            for n, intended in self._operations():
                if not self.budget_left():
                    break
                await trio.sleep_until(intended + offset)
                send.send_nowait((n, intended))
        self.stop_event.set()

    async def _keepalive_conn(self, slot: int, receive) -> None:
        source = self.source_for(slot * self.plan.workers + self.plan.index)
        sock = None
        count = 0
        async with receive:
            async for n, intended in receive:
                start = self.now()
                self.rec.started(start, start - intended, LATE_THRESHOLD_S)
                try:
                    if sock is None:
                        sock = await self.connect(source)
                        count = 0
                    count += 1
                    last = self.nreq != UNLIMITED and count == self.nreq
                    ttfb, server_closing = await self.exchange(sock, last)
                    end = self.now()
                    self.rec.request(end, end - start, ttfb - start, end - intended)
                    self.done_requests += 1
                    if last or server_closing:
                        await self.finish(sock, server_closing)
                        sock = None
                except (OSError, ProtocolError, ShortResponse, ConnectTimeout, RequestTimeout) as exc:
                    self.rec.error(self.now(), error_name(exc))
                    if sock is not None:
                        sock.close()
                        sock = None

    # --- the whole run -------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await trio.sleep(0.25)
            for msg in self.rec.take_complete(self.now()):
                self.emit(msg)

    async def _stop_on_sigterm(self, scope) -> None:
        # The runner sends SIGTERM to end a run early (Ctrl-C, a failure
        # elsewhere): stop the load and still report every finished interval.
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                scope.cancel()
                return

    async def run(self) -> None:
        plan = self.plan
        offset = trio.current_time() - self.now()
        await trio.sleep_until(plan.t_start + offset)
        with trio.move_on_at(plan.t_end + offset) as run_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._stop_on_sigterm, run_scope)
                if self.s.load.model == "closed":
                    async with trio.open_nursery() as slots:
                        for slot in range(plan.connections):
                            slots.start_soon(self.closed_slot, slot)
                elif self.nreq == 1:
                    async with trio.open_nursery() as ops:
                        await self.open_churn(ops)
                else:
                    async with trio.open_nursery() as conns:
                        await self.open_keepalive(conns)
                nursery.cancel_scope.cancel()
        if self.interrupted:
            msgs = self.rec.take_complete(self.now()) + self.rec.take_partial(self.now())
        else:
            msgs = self.rec.take_all()
        for msg in msgs:
            self.emit(msg)


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
