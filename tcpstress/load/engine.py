"""The load loop of one worker process: closed and open models.

Structure: one plain loop per worker around a private epoll set. Every ready
socket is handled by synchronous code (a small state machine per connection
slot), and everything that waits on time (the open model's schedule, ramp
starts, think times, retries after errors, timeout sweeps, the flush of
finished seconds) is a due time the loop sleeps until, in the same
epoll_wait: no timer, task or task switch per operation.

Why no trio here (it ran this loop before): trio's per-wait cost (two
epoll_ctl calls, a task switch and the run-loop bookkeeping) was paid once per
batch of ready sockets, and the open model paid a timer and a task switch per
operation; with small batches (the open model, churn) that was a large part
of a request's cost, and importing trio took 0.2 s of every worker's start.
Earlier, one trio task per connection reached 27-30k requests/s where the
private epoll set reached 72k (nginx, keep-alive, 100 connections).

SIGTERM (the runner ending a run early) sets a flag, and signal.set_wakeup_fd
makes it end the current epoll wait at once.

Timing: every timestamp is time.perf_counter() (CLOCK_MONOTONIC on Linux, like
time.monotonic()), so it shares the clock of the runner, the other workers and
the sampler. The clock is read once per event (`Engine.t`): the response's
end, the next request's start and the budget check share that reading. Tests
pass a fake clock.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import os
import random
import select
import signal
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tcpstress.load import schedule
from tcpstress.load.protocols import HttpResponseParser, ProtocolError, build_http_request
from tcpstress.load.recorder import Recorder
from tcpstress.load.tls import client_tls
from tcpstress.scenario import UNLIMITED, RequestSpec, Scenario, status_accepted

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_RESET = struct.pack("ii", 1, 0)
RECV_SIZE = 65536
# An open-model operation that starts more than this after its intended time
# counts as a late start. 1 ms marked 15-20% of starts late on this shared
# 2-core machine even in runs that held their rate exactly; 10 ms is well
# above scheduling jitter and still far below any latency worth reporting.
LATE_THRESHOLD_S = 0.010
# After a failed attempt a closed-model slot pauses this long before trying
# again: failures such as EADDRNOTAVAIL or ECONNREFUSED return at once, and
# without a pause failing slots would spin and starve the slots that work.
ERROR_PAUSE_S = 0.002
FLUSH_EVERY_S = 0.25  # finished seconds go to the runner this often
MAX_EVENTS = 1024

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
# Edge-triggered, both directions, registered once per socket: no epoll_ctl
# when a connection goes from connecting to waiting for its answer. The price
# is that a readable socket must be read until EAGAIN (or until it is done
# with), which every reader below does.
# EPOLLRDHUP reports the server's FIN even when it came in the same batch as
# an answer that was read to its end but not to EAGAIN: without it, a keep-alive
# connection the server had closed took the next request and waited out its
# timeout.
EPOLL_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET | select.EPOLLRDHUP
EPOLLRDHUP = select.EPOLLRDHUP
# A socket whose request went out with its connect (see Engine.send_with_connect)
# has no use for EPOLLOUT, whose edge would be one more event per connection;
# it is added back by epoll.modify when a request is only partly sent.
EPOLL_IN_MASK = select.EPOLLIN | select.EPOLLET | select.EPOLLRDHUP
# Whether the request goes out right after connect() is judged on this many
# connections: where the handshake never completes inside connect() (any real
# network), the try is one failed send() each, and it stops.
EARLY_SEND_TRIAL = 64
SOCK_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
EINPROGRESS = errno.EINPROGRESS
# slot states
IDLE, CONNECTING, SENDING, WAITING, DRAINING, PAUSED, THINKING, HANDSHAKING = range(8)
# A request is on the wire (or its connection is being made for it) in these states.
BUSY_STATES = (CONNECTING, HANDSHAKING, SENDING, WAITING)
# Nothing to wait for on this socket until the next edge (plain or TLS).
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

# Events that are not failed requests, counted apart from errors.
CLOSE_TIMEOUT = "close timeout"  # the server said it would close, then did not within request_timeout
UNSOLICITED = "unsolicited data"  # bytes outside a request/response pair
SERVER_CLOSED = "closed by server"  # a keep-alive connection the server ended without announcing it


class RequestTimeout(Exception):
    pass


class ConnectTimeout(Exception):
    pass


class HandshakeTimeout(Exception):
    pass


class ShortResponse(Exception):
    """The server closed before a complete response (or echo) arrived."""


class StaleConnection(Exception):
    """A request on a reused keep-alive connection failed before any answer: the
    server had closed the connection while it was idle (wrk does not retry; nor do we)."""


def error_name(exc: BaseException) -> str:
    """The key an error is counted under: errno name, timeout, or protocol reason."""
    if isinstance(exc, ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, HandshakeTimeout):
        return "TLS handshake timeout"
    if isinstance(exc, RequestTimeout):
        return "request timeout"
    if isinstance(exc, ShortResponse):
        return "closed before response"
    if isinstance(exc, StaleConnection):
        return "stale connection"
    if isinstance(exc, ProtocolError):
        return f"protocol: {exc.reason}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or 'certificate verify failed'}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker does: its share of the scenario and the shared clock."""

    scenario: Scenario
    family: int
    sockaddr: tuple[Any, ...]
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


class Slot:
    """One connection slot: at most one socket at a time, and where it is in its exchange."""

    __slots__ = ("index", "source", "sock", "fd", "state", "count", "t_conn", "t_req", "first", "parser",
                 "want", "out", "deadline", "closing", "op_n", "op_intended", "op_start", "retry_at", "tpl",
                 "t_tls", "out_watched")

    def __init__(self, index: int, source: str | None):
        self.index = index
        self.source = source
        # socket.SocketType (plain); https: tls_native.NativeTlsSocket or ssl.SSLSocket
        self.sock: socket.SocketType | None = None
        self.fd = -1
        self.state = IDLE
        self.count = 0  # requests sent on the current connection
        self.t_conn = 0.0
        self.t_req = 0.0
        self.first = 0.0
        self.parser: HttpResponseParser | None = None
        self.want = 0  # echo: bytes still to come back
        self.out: memoryview | None = None  # unsent rest of a request
        self.deadline = 0.0
        self.closing = False  # the server said it will close after this response
        self.op_n = -1  # open model: the operation in progress and its schedule
        self.op_intended = 0.0
        self.op_start = 0.0
        self.retry_at = 0.0
        self.tpl: RequestTemplate | None = None  # the request on the wire
        self.t_tls = 0.0  # TLS handshake start
        self.out_watched = True  # EPOLLOUT is in the socket's epoll mask


@dataclass(frozen=True)
class RequestTemplate:
    """One request's bytes, built once: with and without Connection: close."""

    name: str
    method: str
    keep: bytes
    close: bytes


def build_templates(s: Scenario, port: int) -> list[RequestTemplate]:
    host = s.target.host_header or _host_header(s.target.host, port, s.target.protocol)
    return [_template(spec, host) for spec in s.request_specs()]


def _template(spec: RequestSpec, host: str) -> RequestTemplate:
    if spec.body_file:
        with open(spec.body_file, "rb") as f:
            body: bytes | None = f.read()
    else:
        body = spec.body.encode() if spec.body else None
    return RequestTemplate(spec.name, spec.method, *(
        build_http_request(spec.method, spec.path, host, close=close, headers=spec.headers, body=body,
                           content_type=spec.content_type) for close in (False, True)))


def weighted_picks(specs: tuple[RequestSpec, ...], seed: int) -> list[int]:
    """Template indices in a shuffled order whose counts follow the weights: one list
    index per request instead of a random draw."""
    picks = [i for i, spec in enumerate(specs) for _ in range(spec.weight)]
    while len(picks) < 1000:
        picks = picks * 2
    random.Random(seed).shuffle(picks)
    return picks


class Engine:
    def __init__(self, plan: WorkerPlan, emit: Callable[[dict[str, Any]], None], clock: Callable[[], float] = time.perf_counter):
        self.now = clock
        self.t = clock()  # the time of the event being handled: one clock read per event
        self.plan = plan
        self.family, self.sockaddr = plan.family, plan.sockaddr  # read once per connection
        self.emit = emit
        s = plan.scenario
        self.s = s
        self.rec = Recorder(plan.t0, plan.t_end)
        self.t_end = plan.t_end
        self.max_requests = plan.max_requests  # a property that splits the total: read once
        self.nreq = s.connection.effective_requests
        self.close_mode = s.connection.close
        self.sources = s.connection.source_addresses
        self.connect_timeout = s.connection.connect_timeout
        self.request_timeout = s.connection.request_timeout
        self.model = s.load.model
        self.open_model = self.model == "open"
        self.http = s.target.is_http
        self.accepted = status_accepted(s.target.expect_status)
        if self.http:
            self.templates = build_templates(s, plan.sockaddr[1])
        else:
            payload = b"x" * s.connection.payload_size
            self.templates = [RequestTemplate("echo", "", payload, payload)]
        self.many = len(self.templates) > 1
        self.sequence = self.many and s.target.request_order == "sequence"
        self.picks = weighted_picks(s.request_specs(), plan.index) if self.many else [0]
        self.pick_n = 0
        self.server_name = s.tls.server_name or s.target.host
        # NativeTls or StdlibTls (tcpstress.load.tls.client_tls): wrap(sock, session)
        self.tls: Any = client_tls(s.tls, self.server_name) if s.target.protocol == "https" else None
        self.resume = s.tls.resume
        self.session: Any = None  # the backend's session object
        self.issued = 0  # requests sent (what load.max_requests limits)
        self.in_flight_at_end = 0
        self.answered_after_end = 0
        self.interrupted = False
        self.epoll = select.epoll()
        self.by_fd: dict[int, Slot] = {}
        self.in_flight = 0  # open model: operations started and not finished
        self.queue: collections.deque[tuple[int, float]] = collections.deque()  # open keep-alive: (n, intended) waiting for a slot
        self.idle: list[Slot] = []  # open keep-alive: slots with nothing to do
        self.capacity = 1  # open model: connection slots of this worker
        self.ops: Iterator[tuple[int, float]] = iter(())  # open model: the schedule still to start
        self.next_op: tuple[int, float] | None = None
        self.closed_in_batch: set[int] = set()
        self.think_time = s.connection.think_time
        self.so_keepalive = s.connection.so_keepalive
        # Plain sockets are the C type itself: socket.socket is a Python subclass
        # whose __init__ and close() cost a few microseconds per connection. TLS
        # through CPython's ssl needs the subclass (wrap_socket takes it over).
        self.socket_type = self.tls.socket_type if self.tls is not None else socket.SocketType
        # Nagle holds a small segment only while earlier data is unacknowledged.
        # A request that fits one segment is sent when the previous answer (which
        # acknowledged the previous request) has arrived, so it never waits;
        # only requests larger than a segment need TCP_NODELAY, and skipping the
        # setsockopt saves a syscall per connection.
        # TLS writes several small records per connection (handshake flights,
        # then the request): Nagle would hold the request for the server's
        # delayed ACK (40 ms a connection, measured with TLS 1.2).
        self.nodelay = max(len(t.keep) for t in self.templates) > 1200 or s.target.protocol == "https"
        # Plain connections with one kind of request may send it right after
        # connect() (see send_with_connect); tried on the first EARLY_SEND_TRIAL.
        self.early_send = self.tls is None and not self.many
        self.early_tries = 0
        self.early_hits = 0
        # (when, seq, slot): slots waiting for their ramp start, the end of their
        # think time, or (closed model) their retry after an error
        self.wakeups: list[tuple[float, int, Slot]] = []
        self.wakeup_seq = itertools.count()

    # --- helpers ---------------------------------------------------------------

    def source_for(self, n: int) -> str | None:
        return self.sources[n % len(self.sources)] if self.sources else None

    def budget_left(self) -> bool:
        """May another request start? Not past the end, and not beyond load.max_requests
        (counted as requests sent, so concurrent connections cannot overshoot it)."""
        if self.t >= self.t_end:
            return False
        return not self.max_requests or self.issued < self.max_requests

    def requests_in_flight(self) -> int:
        """Requests on the wire now (and, open model, operations whose connection is being made)."""
        busy = BUSY_STATES if self.open_model else (SENDING, WAITING)
        return sum(1 for slot in self.by_fd.values() if slot.state in busy)

    # --- a slot's life: connect, send, read, close ------------------------------

    def connect(self, slot: Slot) -> None:
        # SOCK_NONBLOCK at creation saves the fcntl() of setblocking(False).
        sock = self.socket_type(self.family, SOCK_STREAM_NONBLOCK)
        slot.sock, slot.fd, slot.count = sock, sock.fileno(), 0
        slot.t_conn = self.t
        try:
            if self.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.so_keepalive:
                # Probing follows the namespace's tcp_keepalive_time/intvl/probes.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if slot.source:
                # The kernel picks the port at connect() time, per destination,
                # instead of reserving one at bind() for any destination.
                if self.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((slot.source, 0))
            err = sock.connect_ex(self.sockaddr)
        except OSError as exc:
            self.fail(slot, exc)
            return
        if err == 0:
            self.by_fd[slot.fd] = slot
            self.epoll.register(slot.fd, EPOLL_MASK)
            slot.out_watched = True
            self.connected(slot)
        elif err == EINPROGRESS:
            self.by_fd[slot.fd] = slot
            if self.early_send and self.send_with_connect(slot):
                return
            self.epoll.register(slot.fd, EPOLL_MASK)
            slot.out_watched = True
            slot.state = CONNECTING
            slot.deadline = slot.t_conn + self.connect_timeout
        else:
            self.fail(slot, OSError(err, os.strerror(err)))

    def send_with_connect(self, slot: Slot) -> bool:
        """Send the first request right after a non-blocking connect(); True if it went.

        On loopback the whole handshake runs inside connect() (the SYN, the
        server's SYN-ACK and the ACK are processed before it returns), yet it
        returns EINPROGRESS: waiting for the EPOLLOUT edge then costs a wake-up
        and an event per connection. send() on a socket still in SYN_SENT fails
        with EAGAIN and sends nothing, so a successful send is proof that the
        connection was made before it began.
        """
        if self.early_tries >= EARLY_SEND_TRIAL and self.early_hits * 2 < self.early_tries:
            self.early_send = False  # the handshake takes a round trip here: stop trying
            return False
        self.early_tries += 1
        req = self.request_bytes(self.templates[0], 1)  # what prepare_request() will pick
        # A send that succeeds found the connection made when it began: the clock
        # read just before it is when the handshake was known done, and when the
        # request left.
        self.t = self.now()
        try:
            sent = slot.sock.send(req)  # type: ignore[union-attr]
        except WOULD_BLOCK:
            return False  # still connecting: wait for the edge as usual
        except OSError as exc:
            # Refused or reset during the handshake: send() took the socket's error,
            # which the EPOLLERR edge would otherwise have reported.
            self.fail(slot, exc)
            return True
        self.early_hits += 1
        self.epoll.register(slot.fd, EPOLL_IN_MASK)
        slot.out_watched = False
        self.connected(slot, early=True)
        self.request_sent(slot, self.prepare_request(slot), sent)
        return True

    def connected(self, slot: Slot, early: bool = False) -> None:
        """The handshake is done; `early`: its first request already went (send_with_connect)."""
        end = self.t
        self.rec.connected(end, end - slot.t_conn)
        if self.http:
            # One parser per slot, back at the start of a message after each response;
            # a new one only after a connection that ended mid-response or in error.
            parser = slot.parser
            if parser is None or not parser.at_message_start():
                slot.parser = HttpResponseParser(self.templates[0].method)
        if early:
            return
        if not self.open_model and not self.budget_left():
            self.close_socket(slot)  # the run ended (or max_requests was reached) while connecting
            return
        if self.tls is not None:
            self.start_tls(slot, end)
            return
        self.send_request(slot)

    def start_tls(self, slot: Slot, now: float) -> None:
        """Wrap the connected socket; the handshake runs on the same edges as everything else."""
        assert self.tls is not None and slot.sock is not None
        try:
            slot.sock = self.tls.wrap(slot.sock, self.session if self.resume else None)
        except OSError as exc:
            self.fail(slot, exc)
            return
        slot.state = HANDSHAKING
        slot.t_tls = now
        slot.deadline = now + self.connect_timeout
        try:
            self.handshake(slot)
        except WOULD_BLOCK:
            pass
        except OSError as exc:
            self.fail(slot, exc)

    def handshake(self, slot: Slot) -> None:
        sock: Any = slot.sock  # the backend's TLS socket (tls_native or ssl)
        sock.do_handshake()  # SSLWantRead/WriteError: wait for the next edge
        end = self.t
        self.rec.tls_handshake(end, end - slot.t_tls, bool(sock.session_reused))
        if not self.open_model and not self.budget_left():
            self.close_socket(slot)
            return
        self.send_request(slot)

    def next_template(self, slot: Slot) -> RequestTemplate:
        if not self.many:
            return self.templates[0]
        if self.sequence and self.nreq != 1:
            return self.templates[(slot.count - 1) % len(self.templates)]
        self.pick_n += 1
        return self.templates[self.picks[self.pick_n % len(self.picks)]]

    def send_request(self, slot: Slot) -> None:
        req = self.prepare_request(slot)
        try:
            sent = slot.sock.send(req)  # type: ignore[union-attr]
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self.fail(slot, exc)
            return
        self.request_sent(slot, req, sent)

    def request_bytes(self, tpl: RequestTemplate, count: int) -> bytes:
        """The bytes of a connection's `count`-th request: its last, when the server is to
        close, asks for the close."""
        last = self.nreq != UNLIMITED and count >= self.nreq
        return tpl.close if (last and self.close_mode == "server") else tpl.keep

    def prepare_request(self, slot: Slot) -> bytes:
        """Count the slot's next request, pick it, and start its clocks; its bytes."""
        slot.count += 1
        self.issued += 1
        tpl = slot.tpl = self.next_template(slot) if self.many else self.templates[0]
        req = self.request_bytes(tpl, slot.count)
        slot.t_req = t = self.t
        slot.first = 0.0
        slot.deadline = t + self.request_timeout
        if self.http:
            if self.many:
                slot.parser.expect(tpl.method)  # type: ignore[union-attr]
        else:
            slot.want = len(req)
        return req

    def request_sent(self, slot: Slot, req: bytes, sent: int) -> None:
        """The first `sent` bytes of the request are on the wire; the rest waits for EPOLLOUT."""
        if sent < len(req):
            slot.out = memoryview(req)[sent:]  # the rest goes on the next EPOLLOUT edge
            slot.state = SENDING
            if not slot.out_watched:
                self.epoll.modify(slot.fd, EPOLL_MASK)  # re-armed: reports the edge at once if writable
                slot.out_watched = True
        else:
            slot.state = WAITING

    def on_event(self, slot: Slot, events: int) -> None:
        self.t = self.now()
        state = slot.state
        try:
            if state == WAITING:
                self.on_readable(slot, events)
            elif state == HANDSHAKING:
                self.handshake(slot)
            elif state == CONNECTING:
                if events & (select.EPOLLERR | select.EPOLLHUP):
                    err = slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                    raise OSError(err or errno.ECONNRESET, os.strerror(err or errno.ECONNRESET))
                if events & EPOLLOUT:  # writable without an error flag: the handshake is done
                    self.connected(slot)
            elif state == SENDING:
                if events & EPOLLOUT:
                    self.send_rest(slot)
                if slot.state in (SENDING, WAITING) and events & EPOLLIN:
                    self.on_readable(slot, events)
            elif state == DRAINING:
                self.drain(slot)
            elif state == IDLE or state == THINKING:
                if events & (EPOLLIN | EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP):
                    self.on_idle_readable(slot)
        except WOULD_BLOCK:
            pass
        except (OSError, ProtocolError, ShortResponse, StaleConnection) as exc:
            self.fail(slot, exc)

    def send_rest(self, slot: Slot) -> None:
        sock = slot.sock
        assert sock is not None
        while slot.out:
            sent = sock.send(slot.out)  # BlockingIOError: wait for the next edge
            slot.out = slot.out[sent:]
        slot.out = None
        slot.state = WAITING
        if not self.http and slot.want <= 0:
            # The whole echo came back while the request was still going out.
            self.echo_done(slot)

    def drain(self, slot: Slot) -> None:
        """Read until the server's FIN, then carry on; EAGAIN waits for the next edge.
        Bytes here came after a complete response: nobody asked for them."""
        sock = slot.sock
        assert sock is not None
        unsolicited = False
        while True:
            data = sock.recv(RECV_SIZE)
            if not data:
                break
            unsolicited = True
        if unsolicited:
            self.rec.anomaly(self.t, UNSOLICITED)
        self.close_socket(slot)
        self.after_connection(slot)

    def on_idle_readable(self, slot: Slot) -> None:
        """A connection between requests became readable: the server closed it
        (an idle keep-alive timeout, normal) or sent something nobody asked for."""
        sock = slot.sock
        assert sock is not None
        try:
            data = sock.recv(RECV_SIZE)
        except WOULD_BLOCK:
            return  # a TLS record that held no application data (a session ticket)
        except (ConnectionResetError, BrokenPipeError):
            data = b""  # the server reset an idle connection: it ended it, no request failed
        # Any other OSError (ETIMEDOUT from keep-alive probes finding a dead
        # peer) is the connection failing: on_event counts it under its errno.
        thinking = slot.state == THINKING
        self.close_socket(slot)
        self.rec.anomaly(self.t, UNSOLICITED if data else SERVER_CLOSED)
        slot.state = THINKING if thinking else IDLE  # the next request reconnects

    def on_readable(self, slot: Slot, events: int = 0) -> None:
        """Read until the answer is complete or the socket has nothing more (EAGAIN)."""
        recv = slot.sock.recv  # type: ignore[union-attr]
        parser = slot.parser
        while True:
            # BlockingIOError ends the turn (wait for the next edge); a reset
            # goes to fail(), which names it a stale connection when it is one.
            data = recv(RECV_SIZE)
            if not slot.first and data:
                slot.first = self.t
            if parser is not None:
                if not data:
                    responses = parser.feed_eof()
                    if not responses:
                        raise StaleConnection() if self.is_stale(slot) else ShortResponse()
                    self.response_done(slot, responses[0].status, closing=True, eof=True)
                    return
                whole = parser.feed_whole(data)
                if whole is not None:
                    # The common case: exactly one complete answer with a known head.
                    status, close = whole
                    fin = bool(events & EPOLLRDHUP)
                    closing = close or fin
                    if closing and not close and (self.nreq == UNLIMITED or slot.count < self.nreq):
                        self.rec.anomaly(self.t, SERVER_CLOSED)
                    # The FIN was queued before this event was reported, so everything
                    # sent before it is in the receive queue, and a read shorter than the
                    # buffer took all of it: the stream is at its end without the read
                    # that returns b"" (one syscall per connection in churn). Plain TCP
                    # only: a TLS read returns one record and may leave others.
                    eof = fin and self.tls is None and len(data) < RECV_SIZE
                    self.response_done(slot, status, closing, eof=eof)
                    return
                interim = parser.interim
                responses = parser.feed(data)
                if not responses and parser.interim != interim and not parser.in_progress:
                    # Only a 100 Continue so far: the answer's first byte is still to come.
                    slot.first = 0.0
                if responses:
                    if len(responses) > 1 or parser.in_progress:
                        # More than the one answer asked for: the framing of this
                        # connection cannot be trusted, so it ends here.
                        self.rec.anomaly(self.t, UNSOLICITED)
                        self.response_done(slot, responses[0].status, closing=True, reset=True)
                        return
                    # EPOLLRDHUP: the server's FIN came with the answer; the next
                    # request needs a new connection.
                    closing = responses[0].close or bool(events & EPOLLRDHUP)
                    if closing and not responses[0].close and (self.nreq == UNLIMITED or slot.count < self.nreq):
                        self.rec.anomaly(self.t, SERVER_CLOSED)
                    self.response_done(slot, responses[0].status, closing)
                    return
            else:
                if not data:
                    raise ShortResponse()
                slot.want -= len(data)
                if slot.want <= 0 and slot.out is None:
                    self.echo_done(slot)
                    return

    def is_stale(self, slot: Slot) -> bool:
        """A reused keep-alive connection that died before the first byte of the answer."""
        return slot.count > 1 and not slot.first

    def echo_done(self, slot: Slot) -> None:
        if slot.want < 0:
            # More came back than was sent: not an echo of this request.
            self.rec.anomaly(self.t, UNSOLICITED)
            self.record_success(slot, 0)
            self.finish_request(slot, closing=True, reset=True)
            return
        self.record_success(slot, 0)
        self.finish_request(slot, closing=False)

    def request_start(self, slot: Slot) -> float:
        """Where a request's latency is measured from: the open model's actual start, or
        in the closed model the request, except the first of a fresh connection, which
        pays for the handshake too."""
        if self.open_model:
            return slot.op_start
        return slot.t_conn if slot.count == 1 else slot.t_req

    def record_success(self, slot: Slot, status: int) -> None:
        end = self.t
        if self.open_model:
            start = slot.op_start
            corrected: float | None = end - slot.op_intended
        else:  # request_start(), inline: this runs once per request
            start = slot.t_conn if slot.count == 1 else slot.t_req
            corrected = None
        self.rec.request(end, end - start, slot.first - start, corrected, status,
                         slot.tpl.name if self.many else None)  # type: ignore[union-attr]

    def response_done(self, slot: Slot, status: int, closing: bool, eof: bool = False, reset: bool = False) -> None:
        """A complete HTTP response: a success if its status is expected, else an `HTTP nnn` error
        whose latency goes to the error histogram (a fast 503 must not improve p99)."""
        if self.accepted[status]:
            self.record_success(slot, status)
        else:
            end = self.t
            self.rec.failed_response(end, end - self.request_start(slot), status,
                                     slot.tpl.name if self.many else None)  # type: ignore[union-attr]
        if self.tls is not None and self.resume and slot.count == 1:
            sock: Any = slot.sock
            # TLS 1.3 sends its ticket after the handshake; by the first answer it is here.
            # CPython's ssl copies the session when it is set (serialises and parses it
            # again, peer certificate included), so it is read only after a full
            # handshake: a resumed one goes on with the session it resumed.
            if self.session is None or not sock.session_reused:
                self.session = sock.session
        self.finish_request(slot, closing, eof, reset)

    def finish_request(self, slot: Slot, closing: bool, eof: bool = False, reset: bool = False) -> None:
        if self.t >= self.t_end:
            # Answered after the measured end: not counted, but the server did
            # serve it; reported with the requests still in flight.
            self.answered_after_end += 1
        slot.state = IDLE
        if reset:
            self.close_socket(slot)
            self.after_request(slot, connection_open=False)
            return
        more = (self.nreq == UNLIMITED or slot.count < self.nreq) and not closing
        if not more:
            if eof:
                self.close_socket(slot)  # the server's FIN is already here
            elif not self.close_connection(slot, server_closing=closing):
                return  # waiting for the server's FIN, or failed (fail() chose what comes next)
        self.after_request(slot, more)

    def close_connection(self, slot: Slot, server_closing: bool) -> bool:
        """Close the way the scenario says: client FIN, RST, or wait for the server's FIN.
        True when the connection is closed now."""
        if self.close_mode != "reset" and (self.close_mode == "server" or server_closing):
            sock = slot.sock
            assert sock is not None
            slot.state = DRAINING
            slot.deadline = self.t + self.request_timeout
            # The FIN often came in the same batch as the answer: under edge
            # triggering there will be no new edge for it, so look now.
            try:
                while sock.recv(RECV_SIZE):
                    pass
            except WOULD_BLOCK:  # TLS says SSLWantReadError where a plain socket says BlockingIOError
                return False
            except OSError as exc:
                self.fail(slot, exc)
                return False
        self.close_socket(slot)
        return True

    def close_socket(self, slot: Slot) -> None:
        sock = slot.sock
        if sock is not None:
            if self.close_mode == "reset":
                # Every close of a reset run sends RST, also the ones cut off by
                # the end or an error: a FIN would leave the TIME_WAIT that
                # close = "reset" promises not to.
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                except OSError:
                    pass
            self.by_fd.pop(slot.fd, None)
            self.closed_in_batch.add(slot.fd)
            sock.close()  # closing also removes it from the epoll set
            slot.sock = None
            slot.fd = -1
        slot.state = IDLE

    def fail(self, slot: Slot, exc: BaseException) -> None:
        if (isinstance(exc, (ConnectionResetError, BrokenPipeError)) and slot.state in (SENDING, WAITING)
                and self.is_stale(slot)):
            exc = StaleConnection()
        self.rec.error(self.t, error_name(exc))
        self.close_socket(slot)
        if not self.open_model:
            slot.state = PAUSED
            self.wake_later(slot, self.t + ERROR_PAUSE_S)
        else:
            self.finish_operation(slot)

    # --- what a slot does next, per model ---------------------------------------

    def after_request(self, slot: Slot, connection_open: bool) -> None:
        if not self.open_model:
            if not self.budget_left():
                self.close_socket(slot)
            elif self.think_time:
                slot.state = THINKING
                self.wake_later(slot, self.t + self.think_time)
            elif connection_open:
                self.send_request(slot)
            else:
                self.connect(slot)
        else:
            self.finish_operation(slot)

    def wake_later(self, slot: Slot, when: float) -> None:
        heapq.heappush(self.wakeups, (when, next(self.wakeup_seq), slot))

    def wake(self, slot: Slot) -> None:
        """A slot's ramp start, think time or pause after an error is over: its next
        request (or connection)."""
        if not self.budget_left():
            self.close_socket(slot)
        elif slot.sock is not None:
            self.send_request(slot)
        else:
            slot.state = IDLE
            self.connect(slot)

    def after_connection(self, slot: Slot) -> None:
        """The connection ended after the server's FIN (DRAINING is over)."""
        if not self.open_model:
            if self.budget_left():
                self.connect(slot)
        else:
            self.finish_operation(slot)

    def finish_operation(self, slot: Slot) -> None:
        """Open model: an operation is over (done or failed); take the next or free the slot."""
        slot.op_n = -1
        if self.nreq == 1:
            self.in_flight -= 1
            self.idle.append(slot)
        elif self.queue:
            n, intended = self.queue.popleft()
            self.begin_operation(slot, n, intended)
        else:
            self.idle.append(slot)

    def begin_operation(self, slot: Slot, n: int, intended: float) -> None:
        start = self.t
        slot.op_n, slot.op_intended, slot.op_start = n, intended, start
        self.rec.started(start, start - intended, LATE_THRESHOLD_S)
        if slot.sock is None:
            if self.nreq == 1:
                slot.source = self.source_for(n)
            self.connect(slot)
        else:
            self.send_request(slot)

    # --- the open model's schedule ---------------------------------------------

    def _operations(self) -> Iterator[tuple[int, float]]:
        load = self.s.load
        schedule_start = self.plan.t_start
        if load.stage:
            ops = schedule.Piecewise.of_stages(load.stage, warmup=self.plan.t0 - schedule_start).worker_operations(
                self.plan.index, self.plan.workers, self.plan.t_end - schedule_start)
        else:
            ops = schedule.worker_operations(self.plan.index, self.plan.workers,
                                             self.plan.t_end - schedule_start, load.rate, load.ramp)
        for n, offset in ops:
            yield n, schedule_start + offset

    def start_schedule(self) -> None:
        """Open model: the slots and the schedule, started by dispatch_due() as time passes."""
        self.capacity = max(1, self.plan.connections)
        self.idle = [Slot(i, self.source_for(i * self.plan.workers + self.plan.index)) for i in range(self.capacity)]
        self.ops = self._operations()
        self.next_op = next(self.ops, None)

    def dispatch_due(self) -> float | None:
        """Start every operation whose intended time has come (open model); return when
        the next one is due, or None when none is waiting on time (the schedule is
        done, or churn has all its connections busy and waits for one to end).

        Churn: a new connection per operation, at most `connections` in
        flight; an operation that finds them all busy starts late, and the
        lag is counted. Keep-alive: operations go to an idle connection or
        wait in a queue; corrected latency includes that wait, as in wrk2.
        The epoll loop calls this after every batch and sleeps until the time
        it returns: no timer or task switch per operation.
        """
        ops = self.ops
        op = self.next_op
        while op is not None:
            n, intended = op
            now = self.now()
            if intended > now:
                self.next_op = op
                return intended
            self.t = now
            if not self.budget_left():
                self.next_op = None
                return None
            if self.nreq == 1:
                if self.in_flight >= self.capacity:
                    self.next_op = op
                    return None  # late: it starts when a connection is free
                self.in_flight += 1
                self.begin_operation(self.idle.pop(), n, intended)
            elif self.idle:
                self.begin_operation(self.idle.pop(), n, intended)
            else:
                self.queue.append((n, intended))
            op = next(ops, None)
        self.next_op = None
        return None

    # --- the loop --------------------------------------------------------------

    def timers(self, now: float) -> None:
        """Wake slots whose ramp start, think time or retry pause is over."""
        wakeups = self.wakeups
        while wakeups and wakeups[0][0] <= now:
            self.t = self.now()
            self.wake(heapq.heappop(wakeups)[2])

    def sweep(self, now: float) -> None:
        """Enforce connect, handshake and request timeouts."""
        self.t = now
        for slot in list(self.by_fd.values()):
            if slot.deadline > now:
                continue
            if slot.state == DRAINING:
                # The answer was counted; only the close it announced is late.
                self.rec.anomaly(now, CLOSE_TIMEOUT)
                self.close_socket(slot)
                self.after_connection(slot)
            elif slot.state in BUSY_STATES:
                self.fail(slot, ConnectTimeout() if slot.state == CONNECTING else
                          HandshakeTimeout() if slot.state == HANDSHAKING else RequestTimeout())

    def serve(self, events: list[tuple[int, int]]) -> None:
        """Handle one batch of ready sockets."""
        closed = self.closed_in_batch
        closed.clear()
        by_fd = self.by_fd
        on_event = self.on_event
        for fd, ev in events:
            # An fd closed earlier in this batch may already belong to a
            # new socket: its event here is stale, so skip it.
            if fd in closed:
                continue
            slot = by_fd.get(fd)
            if slot is not None:
                on_event(slot, ev)

    def finished(self) -> bool:
        """Nothing left to do before the end: the request budget is spent (closed model)
        or the schedule is (open), and nothing is on the wire or about to be."""
        if self.open_model:
            return self.next_op is None and (not self.by_fd or not self.budget_left())
        return not self.budget_left() and not self.by_fd and not self.wakeups

    def start_closed(self) -> None:
        plan = self.plan
        slots = [Slot(i, self.source_for(i * plan.workers + plan.index)) for i in range(plan.connections)]
        ramp = self.s.load.ramp
        for i, slot in enumerate(slots):
            if ramp:
                # Connections open one after another over the ramp
                # rather than as one burst against the listen backlog.
                slot.state = THINKING
                self.wake_later(slot, plan.t_start + ramp * i / len(slots))
            elif not self.interrupted:
                # connect() can take milliseconds when the port range is nearly
                # used up: SIGTERM and the run's end still get through between them.
                self.t = self.now()
                if self.t >= self.t_end:
                    break
                self.connect(slot)

    def loop(self) -> None:
        """Until the end: serve ready sockets, start what is due, sleep until the next
        thing due (an operation, a wake-up, a timeout sweep, a flush) or a socket event."""
        poll = self.epoll.poll
        t_end = self.t_end
        # Timeouts are enforced to a tenth of their length: the sweep walks every
        # open socket, which at 15,000 connections a worker cost a fifth of a
        # core when it ran every 50 ms.
        sweep_every = min(1.0, max(0.002, min(self.connect_timeout, self.request_timeout) / 10))
        now = self.now()
        next_sweep = now + sweep_every
        next_flush = now + FLUSH_EVERY_S
        open_model = self.open_model
        wakeups = self.wakeups
        while not self.interrupted:
            self.t = now = self.now()
            if now >= t_end:
                break
            due = t_end
            if open_model:
                op_due = self.dispatch_due()
                if op_due is not None and op_due < due:
                    due = op_due
            if wakeups:
                if wakeups[0][0] <= now:
                    self.timers(now)
                if wakeups and wakeups[0][0] < due:
                    due = wakeups[0][0]
            if now >= next_sweep:
                next_sweep = now + sweep_every
                self.sweep(now)
            if now >= next_flush:
                next_flush = now + FLUSH_EVERY_S
                for msg in self.rec.take_complete(now):
                    self.emit(msg)
            if self.finished():
                break
            due = min(due, next_sweep, next_flush)
            events = poll(max(0.0, due - self.now()), MAX_EVENTS)
            if events:
                self.serve(events)

    def run(self) -> None:
        """The worker's whole load: wait for the start, run until the end (or SIGTERM,
        or the request budget), then report every interval."""
        plan = self.plan
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The runner sends SIGTERM to end a run early (Ctrl-C, a failure
        # elsewhere): stop the load and still report every finished interval.
        # The wake-up fd makes a signal end the epoll wait at once (Python
        # would otherwise retry the wait after the handler).
        self.epoll.register(wake_r, EPOLLIN | select.EPOLLET)  # edge: never needs draining
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:
            old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            while not self.interrupted:
                left = plan.t_start - self.now()
                if left <= 0:
                    break
                self.epoll.poll(left, 1)
            if not self.interrupted:
                if self.open_model:
                    self.start_schedule()
                else:
                    self.start_closed()
                self.loop()
        finally:
            if on_main_thread:
                signal.set_wakeup_fd(old_wakeup)
                signal.signal(signal.SIGTERM, old_handler)
            self.t = self.now()
            self.in_flight_at_end = self.requests_in_flight() + self.answered_after_end
            for slot in list(self.by_fd.values()):
                self.close_socket(slot)
            self.epoll.close()
            os.close(wake_r)
            os.close(wake_w)
        now = self.now()
        if self.interrupted or now < plan.t_end - 0.001:
            # Cut short (SIGTERM), or load.max_requests spent before the end: the
            # second in progress is closed at its real length, so rates are over
            # the time actually used.
            msgs = self.rec.take_complete(now) + self.rec.take_partial(now)
        else:
            msgs = self.rec.take_all()
        for msg in msgs:
            self.emit(msg)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.interrupted = True


def _host_header(host: str, port: int, protocol: str = "http") -> str:
    """Host as curl and browsers send it: the default port of the scheme is left out."""
    shown = f"[{host}]" if ":" in host else host
    if (protocol, port) in (("http", 80), ("https", 443)):
        return shown
    return f"{shown}:{port}"
