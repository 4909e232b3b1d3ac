"""The sans-IO HTTP/1.1 parsers: every input whole, byte by byte, and with trailing data.

Real peers check interop: the request parser reads what stdlib http.client
sends, and the response parser reads what Debian's nginx answers (its access
log and http.client's own decoding are the witnesses).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpstress.load import protocols
from tcpstress.load.protocols import (
    HttpRequestParser,
    HttpResponseParser,
    ProtocolError,
    build_http_request,
)


@pytest.fixture(autouse=True, params=["fast path", "strict only"])
def response_parser_path(request, monkeypatch):
    """Every case runs through both response paths: the cached common-head fast path
    (what the engine uses) and the strict parser alone; they must agree byte for byte."""
    monkeypatch.setattr(HttpResponseParser, "fast_path", request.param == "fast path")
    monkeypatch.setattr(protocols, "_KNOWN_HEADS", {})
    return request.param


# --------------------------------------------------------------------------
# Feeding helpers


def feed_whole(parser, data: bytes) -> list:
    return parser.feed(data)


def feed_bytewise(parser, data: bytes) -> list:
    out = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out


def feed_split(parser, data: bytes, cuts) -> list:
    out = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += parser.feed(data[start:cut])
        start = cut
    return out


def feed_engine_way(parser, data: bytes) -> list:
    """As the engine reads a response: feed_whole() first (one complete common answer, no
    Response object), feed() when it declines. What it accepts must be what feed() says."""
    whole = parser.feed_whole(data) if isinstance(parser, HttpResponseParser) else None
    if whole is None:
        return parser.feed(data)
    status, close = whole
    head_end = data.find(b"\r\n\r\n") + 4
    strict = HttpResponseParser()
    strict.fast_path = False
    assert [summary(r) for r in strict.feed(data)] == [(status, close, len(data) - head_end)]
    response = protocols.Response(status, 11, close, head_end)
    response.body_bytes = len(data) - head_end
    return [response]


FEEDERS = {"whole": feed_whole, "bytewise": feed_bytewise, "engine": feed_engine_way}


def summary(message) -> tuple:
    if hasattr(message, "status"):
        return (message.status, message.close, message.body_bytes)
    return (message.method, message.target, message.close, message.body_bytes)


# --------------------------------------------------------------------------
# Responses

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n3;name=value\r\nabc\r\n1A\r\n" + b"y" * 26 + b"\r\n0\r\nTrailer: yes\r\n\r\n"
)
RESPONSES = [
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", [(200, False, 5)]),
    ("empty body", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [(200, False, 0)]),
    ("no reason phrase", b"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno", [(404, False, 2)]),
    (
        "connection close",
        b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        [(503, True, 2)],
    ),
    (
        "connection token list, any case",
        b"HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\ncontent-LENGTH: 2\r\n\r\nok",
        [(200, True, 2)],
    ),
    (
        "http/1.0 closes by default",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        [(200, True, 2)],
    ),
    (
        "http/1.0 keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
        [(200, False, 2)],
    ),
    ("chunked with extension and trailer", CHUNKED, [(200, False, 34)]),
    (
        "chunked without trailer",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        [(200, False, 4)],
    ),
    (
        "interim 100 is skipped",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
        [(201, False, 1)],
    ),
    ("204 has no body", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", [(204, False, 0)]),
    (
        "304 has no body",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        [(304, False, 0)],
    ),
    (
        "repeated identical content-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        [(200, False, 3)],
    ),
    (
        "listed content-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        [(200, False, 3)],
    ),
    (
        "whitespace around values",
        b"HTTP/1.1 200 OK\r\nContent-Length: \t 4 \t\r\nX-Empty:\r\n\r\nabcd",
        [(200, False, 4)],
    ),
    (
        "stray CRLF before the status line",
        b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        [(200, False, 1)],
    ),
    (
        "pipelined",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"
        + CHUNKED
        + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        [(200, False, 2), (200, False, 34), (404, False, 0)],
    ),
]
NEXT_RESPONSE = b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nnxt"


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in RESPONSES], ids=[c[0] for c in RESPONSES]
)
def test_response(feeder, data, expected):
    parser = HttpResponseParser()
    assert [summary(r) for r in feeder(parser, data)] == expected
    assert not parser.in_progress
    assert parser.buffered_bytes == 0
    assert parser.feed_eof() == []


@pytest.mark.parametrize("cut", [1, 10, 20, 30])
@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in RESPONSES], ids=[c[0] for c in RESPONSES]
)
def test_response_with_trailing_data(data, expected, cut):
    parser = HttpResponseParser()
    assert [summary(r) for r in parser.feed(data + NEXT_RESPONSE[:cut])] == expected
    assert parser.in_progress
    assert [summary(r) for r in parser.feed(NEXT_RESPONSE[cut:])] == [(202, False, 3)]
    assert not parser.in_progress


UNTIL_CLOSE = [
    ("no framing", b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nsome body", (200, True, 9)),
    ("http/1.0 no framing", b"HTTP/1.0 200 OK\r\n\r\n0123456789", (200, True, 10)),
    (
        "transfer-encoding not ending in chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        (200, True, 3),
    ),
    ("empty body", b"HTTP/1.1 200 OK\r\n\r\n", (200, True, 0)),
]


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in UNTIL_CLOSE], ids=[c[0] for c in UNTIL_CLOSE]
)
def test_response_body_until_close(feeder, data, expected):
    parser = HttpResponseParser()
    assert feeder(parser, data) == []
    assert parser.in_progress
    assert [summary(r) for r in parser.feed_eof()] == [expected]
    assert not parser.in_progress


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
def test_response_to_head_has_no_body(feeder):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" * 2
    parser = HttpResponseParser(request_method="HEAD")
    assert [summary(r) for r in feeder(parser, data)] == [(200, False, 0)] * 2


def test_response_reports_head_size_and_version():
    data = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    (response,) = HttpResponseParser().feed(data)
    assert (response.version, response.head_bytes) == (10, len(data) - 2)


def test_body_remaining_counts_down():
    parser = HttpResponseParser()
    assert parser.body_remaining is None
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123")
    assert parser.body_remaining == 7
    parser.feed(b"4567")
    assert parser.body_remaining == 3
    assert len(parser.feed(b"890")) == 1
    assert parser.body_remaining is None


RESPONSE_ERRORS = [
    ("ssh banner", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed status line"),
    ("binary", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", "malformed status line"),
    ("bad status code", b"HTTP/1.1 2OO OK\r\n\r\n", "malformed status line"),
    ("http/2 status line", b"HTTP/2 200\r\n\r\n", "malformed status line"),
    ("no space after code", b"HTTP/1.1 200OK\r\n\r\n", "malformed status line"),
    ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", "malformed header"),
    (
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
        "malformed header",
    ),
    ("line without colon", b"HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", "malformed header"),
    ("control character", b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n", "malformed header"),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF line endings"),
    (
        "conflicting length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        "conflicting content-length",
    ),
    (
        "negative length",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "malformed content-length",
    ),
    ("hex length", b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "malformed content-length"),
    (
        "length over the max",
        b"HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\n",
        "body too large",
    ),
    (
        "absurd length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "malformed content-length",
    ),
    (
        "bad chunk size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "malformed chunk size",
    ),
    (
        "chunk longer than its size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "malformed chunk",
    ),
    (
        "chunked body over the max",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000001\r\n" + b"x" * 10 + b"\r\n",
        "body too large",
    ),
    (
        "upgrade",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "unexpected upgrade",
    ),
]


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
@pytest.mark.parametrize(
    ("data", "reason"), [c[1:] for c in RESPONSE_ERRORS], ids=[c[0] for c in RESPONSE_ERRORS]
)
def test_response_errors(feeder, data, reason):
    parser = HttpResponseParser(max_body_bytes=64 * 1024 * 1024)
    with pytest.raises(ProtocolError) as caught:
        feeder(parser, data)
    assert caught.value.reason == reason
    # A failed parser stays failed: nothing after garbage can be trusted.
    with pytest.raises(ProtocolError) as again:
        parser.feed(NEXT_RESPONSE)
    assert again.value.reason == reason


def test_garbage_is_refused_at_the_first_byte():
    with pytest.raises(ProtocolError, match="malformed status line"):
        HttpResponseParser().feed(b"<")


def test_eof_mid_response_is_an_error():
    parser = HttpResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError) as caught:
        parser.feed_eof()
    assert caught.value.reason == "incomplete response"


def test_eof_mid_head_is_an_error():
    parser = HttpResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Le")
    with pytest.raises(ProtocolError, match="incomplete response"):
        parser.feed_eof()


def test_headers_too_large_whole_and_growing():
    big = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 70_000 + b"\r\n\r\n"
    with pytest.raises(ProtocolError) as caught:
        HttpResponseParser().feed(big)
    assert caught.value.reason == "headers too large"
    # Arriving in pieces with no end in sight, it is refused once over the limit,
    # and what the parser holds never grows past it.
    parser = HttpResponseParser()
    with pytest.raises(ProtocolError, match="headers too large"):
        for i in range(0, len(big), 1000):
            parser.feed(big[i : i + 1000])
            assert parser.buffered_bytes <= 64 * 1024
    assert i < len(big) - 1000


def test_limits_are_configurable():
    with pytest.raises(ProtocolError, match="body too large"):
        HttpResponseParser(max_body_bytes=100).feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n"
        )
    with pytest.raises(ProtocolError, match="headers too large"):
        HttpResponseParser(max_header_bytes=100).feed(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100 + b"\r\n\r\n"
        )
    with pytest.raises(ValueError, match="max_header_bytes"):
        HttpResponseParser(max_header_bytes=0)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_body_is_counted_not_buffered(chunked):
    size = 10 * 1024 * 1024
    piece = b"b" * 65536
    parser = HttpResponseParser()
    if chunked:
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        for _ in range(size // len(piece)):
            assert parser.feed(chunk) == []
            assert parser.buffered_bytes == 0
        done = parser.feed(b"0\r\n\r\n")
    else:
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(piece) - 1):
            assert parser.feed(piece) == []
            assert parser.buffered_bytes == 0
        done = parser.feed(piece)
    assert [summary(r) for r in done] == [(200, False, size)]


# --------------------------------------------------------------------------
# Requests

REQUESTS = [
    ("wrk", b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", [(b"GET", b"/", False, 0)]),
    (
        "connection close",
        b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        [(b"GET", b"/a?b=c", True, 0)],
    ),
    ("http/1.0 closes by default", b"GET / HTTP/1.0\r\n\r\n", [(b"GET", b"/", True, 0)]),
    (
        "http/1.0 keep-alive (ab -k)",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n",
        [(b"GET", b"/", False, 0)],
    ),
    (
        "post with content-length",
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        [(b"POST", b"/up", False, 11)],
    ),
    (
        "chunked post",
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        [(b"POST", b"/up", False, 3)],
    ),
    (
        "stray CRLF before the request line",
        b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        [(b"GET", b"/", False, 0)],
    ),
    ("options *", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", [(b"OPTIONS", b"*", False, 0)]),
    (
        "pipelined",
        (
            b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPUT /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy"
            b"GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ),
        [(b"GET", b"/1", False, 0), (b"PUT", b"/2", False, 2), (b"GET", b"/3", True, 0)],
    ),
]
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_request(feeder, data, expected):
    parser = HttpRequestParser()
    assert [summary(r) for r in feeder(parser, data)] == expected
    assert not parser.in_progress
    assert parser.buffered_bytes == 0


@pytest.mark.parametrize("cut", [1, 5, 20])
@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_request_with_trailing_data(data, expected, cut):
    parser = HttpRequestParser()
    assert [summary(r) for r in parser.feed(data + NEXT_REQUEST[:cut])] == expected
    assert parser.in_progress
    assert [summary(r) for r in parser.feed(NEXT_REQUEST[cut:])] == [(b"GET", b"/next", False, 0)]


REQUEST_ERRORS = [
    ("tls client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "malformed request line"),
    ("http/0.9", b"GET /\r\n\r\n", "malformed request line"),
    ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "unsupported http version"),
    ("unknown version", b"GET / HTTP/1.2\r\n\r\n", "malformed request line"),
    ("two spaces", b"GET  / HTTP/1.1\r\n\r\n", "malformed request line"),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", "malformed header"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\n\tmore\r\n\r\n", "malformed header"),
    ("bare LF", b"GET / HTTP/1.1\nHost: h\n\n", "bare LF line endings"),
    (
        "content-length and transfer-encoding",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "both content-length and transfer-encoding",
    ),
    (
        "transfer-encoding without chunked",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "unsupported transfer-encoding",
    ),
    (
        "conflicting length",
        b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nx",
        "conflicting content-length",
    ),
    (
        "malformed length",
        b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nx",
        "malformed content-length",
    ),
    ("body over the max", b"POST / HTTP/1.1\r\nContent-Length: 67108865\r\n\r\n", "body too large"),
    (
        "headers too large",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        "headers too large",
    ),
]


@pytest.mark.parametrize("feeder", FEEDERS.values(), ids=FEEDERS.keys())
@pytest.mark.parametrize(
    ("data", "reason"), [c[1:] for c in REQUEST_ERRORS], ids=[c[0] for c in REQUEST_ERRORS]
)
def test_request_errors(feeder, data, reason):
    parser = HttpRequestParser()
    with pytest.raises(ProtocolError) as caught:
        feeder(parser, data)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(reason)


# --------------------------------------------------------------------------
# Building requests


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("GET", "/", "example.test", False), b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"),
        (
            ("GET", "/x?y=1", "127.0.0.1:8080", True),
            b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
        ),
        (("POST", "/", "h", False), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
        (("PUT", "/", "h", False, 3), b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxxx"),
    ],
)
def test_build_http_request(args, expected):
    assert build_http_request(*args) == expected


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("G ET", "/", "h", False), "method"),
        (("", "/", "h", False), "method"),
        (("GET", "no-slash", "h", False), "path"),
        (("GET", "/a b", "h", False), "path"),
        (("GET", "/\r\nX: y", "h", False), "path"),
        (("GET", "/", "", False), "host_header"),
        (("GET", "/", "h\r\nX: y", False), "host_header"),
        (("GET", "/", "h", False, -1), "body_size"),
    ],
)
def test_build_http_request_refuses_bad_input(args, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        build_http_request(*args)


# --------------------------------------------------------------------------
# Properties

token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=12,
)
field_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@st.composite
def responses(draw, last: bool = False):
    """(raw bytes, expected summary) of one response with random fields and framing."""
    status = draw(st.sampled_from([200, 201, 301, 404, 500, 503]))
    close = draw(st.booleans())
    framing = draw(st.sampled_from(["length", "chunked"] + (["until-close"] if last else [])))
    fields = draw(st.lists(st.tuples(token, field_value), max_size=4))
    # Random names must not collide with the framing ones.
    fields = [
        (n, v)
        for n, v in fields
        if n.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    head = [f"HTTP/1.1 {status} Whatever".encode()]
    head += [f"{n}: {v}".encode() for n, v in fields]
    if close:
        head.append(b"Connection: close")
    if framing == "length":
        body_len = draw(st.integers(0, 3000))
        head.append(b"Content-Length: %d" % body_len)
        body = b"z" * body_len
    elif framing == "chunked":
        sizes = draw(st.lists(st.integers(1, 700), max_size=5))
        head.append(b"Transfer-Encoding: chunked")
        body = b"".join(b"%x\r\n%s\r\n" % (s, b"c" * s) for s in sizes) + b"0\r\n\r\n"
        body_len = sum(sizes)
    else:
        body_len = draw(st.integers(0, 3000))
        body = b"u" * body_len
        close = True
    return b"\r\n".join(head) + b"\r\n\r\n" + body, (status, close, body_len)


@st.composite
def response_streams(draw):
    items = draw(st.lists(responses(), min_size=0, max_size=4)) + [draw(responses(last=True))]
    data = b"".join(raw for raw, _ in items)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=30))
    return data, [expected for _, expected in items], cuts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response_streams())
def test_any_split_of_a_response_stream_parses_the_same(stream):
    data, expected, cuts = stream
    parser = HttpResponseParser()
    got = feed_split(parser, data, cuts) + parser.feed_eof()
    assert [summary(r) for r in got] == expected
    assert not parser.in_progress


@st.composite
def request_streams(draw):
    raws, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
        target = "/" + draw(st.text(alphabet="abc/?=&%0123456789", max_size=30))
        close = draw(st.booleans())
        body = draw(st.integers(0, 2000)) if method in ("POST", "PUT") else 0
        raw = build_http_request(method, target, draw(token), close, body)
        raws.append(raw)
        expected.append((method.encode(), target.encode(), close, body))
    data = b"".join(raws)
    return data, expected, draw(st.lists(st.integers(0, len(data)), max_size=30))


@settings(max_examples=300, deadline=None)
@given(request_streams())
def test_any_split_of_a_request_stream_parses_the_same(stream):
    data, expected, cuts = stream
    parser = HttpRequestParser()
    assert [summary(r) for r in feed_split(parser, data, cuts)] == expected
    assert parser.buffered_bytes == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_give_messages_or_a_protocol_error(data, cuts):
    for parser in (
        HttpRequestParser(max_header_bytes=200),
        HttpResponseParser(max_header_bytes=200),
    ):
        try:
            feed_split(parser, data, [c for c in cuts if c <= len(data)])
        except ProtocolError as exc:
            assert exc.reason and len(exc.reason) < 50
        assert parser.buffered_bytes <= 200 + 300


# --------------------------------------------------------------------------
# Interop: stdlib http.client as the requesting peer


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(10)
        yield sock


def read_requests(conn: socket.socket, parser: HttpRequestParser, count: int) -> list:
    got = []
    while len(got) < count:
        data = conn.recv(65536)
        assert data, f"peer closed after {len(got)} of {count} requests"
        got += parser.feed(data)
    return got


def test_request_parser_reads_http_client(listener):
    client = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1], timeout=10)
    client.connect()
    conn, _ = listener.accept()
    sends = [
        lambda: client.request(
            "GET", "/index.html?q=1", headers={"Accept": "*/*", "X-Trace": "abc"}
        ),
        lambda: client.request("POST", "/form", body=b"a=1&b=" + b"2" * 5000),
        lambda: client.request(
            "PUT", "/stream", body=iter([b"abc", b"de" * 3000, b"f"]), encode_chunked=True
        ),
        lambda: client.request("DELETE", "/thing", headers={"Connection": "close"}),
    ]
    parser = HttpRequestParser()
    got = []
    with conn, contextlib.closing(client):
        conn.settimeout(10)
        for send in sends:
            # http.client sends one request at a time and waits for its answer.
            send()
            (request,) = read_requests(conn, parser, 1)
            got.append(request)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            assert client.getresponse().read() == b"ok"
    assert [summary(r) for r in got] == [
        (b"GET", b"/index.html?q=1", False, 0),
        (b"POST", b"/form", False, 5006),
        (b"PUT", b"/stream", False, 6004),
        (b"DELETE", b"/thing", True, 0),
    ]
    assert not parser.in_progress


def test_request_parser_reads_http_client_http10(listener):
    class Http10Connection(http.client.HTTPConnection):
        _http_vsn, _http_vsn_str = 10, "HTTP/1.0"

    client = Http10Connection("127.0.0.1", listener.getsockname()[1], timeout=10)
    client.connect()
    conn, _ = listener.accept()
    with conn, contextlib.closing(client):
        conn.settimeout(10)
        client.request("GET", "/old")
        (request,) = read_requests(conn, HttpRequestParser(), 1)
    assert (request.version, request.close) == (10, True)


# --------------------------------------------------------------------------
# Interop: Debian's nginx as the responding peer

NGINX_FILE_SIZE = 1024 * 1024 + 17


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx_server(tmp_path):
    """nginx with a few locations that exercise the framings a client meets."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    root = tmp_path / "html"
    root.mkdir()
    (root / "file.bin").write_bytes(
        bytes(range(256)) * (NGINX_FILE_SIZE // 256) + b"t" * (NGINX_FILE_SIZE % 256)
    )
    (root / "text.txt").write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 2000)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            daemon off;
            {"user root;" if os.geteuid() == 0 else ""}
            worker_processes 1;
            pid {tmp_path}/nginx.pid;
            error_log {tmp_path}/error.log warn;
            events {{ worker_connections 256; }}
            http {{
                access_log {tmp_path}/access.log;
                client_body_temp_path {tmp_path}/body;
                proxy_temp_path {tmp_path}/proxy;
                fastcgi_temp_path {tmp_path}/fastcgi;
                uwsgi_temp_path {tmp_path}/uwsgi;
                scgi_temp_path {tmp_path}/scgi;
                default_type text/plain;
                gzip on;
                gzip_types text/plain;
                server {{
                    listen 127.0.0.1:{port};
                    root {root};
                    location = /empty {{ return 204; }}
                    location = /hello {{ return 200 "hello from nginx\\n"; }}
                    location /limited {{ keepalive_requests 2; return 200 "limited\\n"; }}
                }}
            }}
            """
        )
    )
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.05)
        else:
            pytest.fail("nginx did not start listening")
        yield port, tmp_path / "access.log"
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def exchange_raw(port: int, data: bytes) -> list[bytes]:
    """Send `data`, then collect what the server sends, piece by piece, until it closes."""
    pieces = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while True:
            piece = sock.recv(65536)
            if not piece:
                return pieces
            pieces.append(piece)


def body_length_per_http_client(port: int, path: str, headers: dict) -> int:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", path, headers=headers)
        return len(client.getresponse().read())
    finally:
        client.close()


def access_log_lines(path) -> int:
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.nginx
def test_response_parser_reads_nginx_pipelined(nginx_server):
    port, access_log = nginx_server
    at_start = access_log_lines(access_log)
    gzip_length = body_length_per_http_client(port, "/text.txt", {"Accept-Encoding": "gzip"})
    missing_length = body_length_per_http_client(port, "/missing", {})
    # nginx writes a request's log line after its answer: wait for these two
    # lines before taking the baseline, or one of them counts as pipelined.
    for _ in range(100):
        if access_log_lines(access_log) >= at_start + 2:
            break
        time.sleep(0.05)
    logged_before = access_log_lines(access_log)
    requests = [
        build_http_request("GET", "/file.bin", "t", False),
        build_http_request("GET", "/text.txt", "t", False).replace(
            b"\r\n\r\n", b"\r\nAccept-Encoding: gzip\r\n\r\n"
        ),
        build_http_request("GET", "/missing", "t", False),
        build_http_request("GET", "/empty", "t", False),
        build_http_request("GET", "/hello", "t", True),
    ]
    pieces = exchange_raw(port, b"".join(requests))
    raw = b"".join(pieces)
    assert b"\r\nTransfer-Encoding: chunked\r\n" in raw  # the gzip answer really is chunked
    expected = [
        (200, False, NGINX_FILE_SIZE),
        (200, False, gzip_length),
        (404, False, missing_length),
        (204, False, 0),
        (200, True, len("hello from nginx\n")),
    ]
    for feed in (
        lambda p: [r for piece in pieces for r in p.feed(piece)],
        lambda p: feed_bytewise(p, raw[:5000]) + p.feed(raw[5000:]),
    ):
        parser = HttpResponseParser()
        assert [summary(r) for r in feed(parser)] == expected
        assert parser.feed_eof() == []
    # Witness that nginx answered exactly these requests (it logs when done).
    for _ in range(100):
        if access_log_lines(access_log) - logged_before >= len(requests):
            break
        time.sleep(0.05)
    assert access_log_lines(access_log) - logged_before == len(requests)


@pytest.mark.nginx
def test_response_parser_sees_nginx_close_after_keepalive_requests(nginx_server):
    port, _ = nginx_server
    pieces = exchange_raw(port, build_http_request("GET", "/limited", "t", False) * 3)
    parser = HttpResponseParser()
    got = [r for piece in pieces for r in parser.feed(piece)] + parser.feed_eof()
    assert [summary(r) for r in got] == [(200, False, 8), (200, True, 8)]


@pytest.mark.nginx
def test_response_parser_reads_nginx_head_and_http10(nginx_server):
    port, _ = nginx_server
    parser = HttpResponseParser(request_method="HEAD")
    pieces = exchange_raw(
        port,
        build_http_request("HEAD", "/file.bin", "t", False)
        + build_http_request("HEAD", "/file.bin", "t", True),
    )
    assert [summary(r) for piece in pieces for r in parser.feed(piece)] == [
        (200, False, 0),
        (200, True, 0),
    ]
    parser = HttpResponseParser()
    pieces = exchange_raw(port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert [summary(r) for piece in pieces for r in parser.feed(piece)] == [(200, True, 17)]


def test_messages_before_garbage_are_kept_and_the_error_follows():
    parser = HttpRequestParser()
    got = parser.feed(NEXT_REQUEST * 2 + b"\x16\x03\x01 garbage\r\n\r\n")
    assert [summary(r) for r in got] == [(b"GET", b"/next", False, 0)] * 2
    assert parser.error is not None and parser.error.reason == "malformed request line"
    with pytest.raises(ProtocolError, match="malformed request line"):
        parser.feed(b"")


def test_messages_before_garbage_byte_by_byte():
    parser = HttpRequestParser()
    data = NEXT_REQUEST * 2 + b"\x16\x03\x01 garbage\r\n\r\n"
    got = []
    with pytest.raises(ProtocolError, match="malformed request line"):
        for i in range(len(data)):
            got += parser.feed(data[i : i + 1])
    assert len(got) == 2 and i == 2 * len(NEXT_REQUEST)


# --------------------------------------------------------------------------
# The cached-head fast path: a head seen before must be read exactly as the first time


def test_a_known_head_is_read_the_same_under_other_limits_and_methods():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    (first,) = HttpResponseParser().feed(head + b"hello")
    assert summary(first) == (200, True, 5)
    # the same head, now cached: a HEAD request's answer still has no body ...
    head_parser = HttpResponseParser(request_method="HEAD")
    (response,) = head_parser.feed(head)
    assert summary(response) == (200, True, 0) and not head_parser.in_progress
    # ... a smaller body cap still refuses it ...
    with pytest.raises(ProtocolError) as caught:
        HttpResponseParser(max_body_bytes=4).feed(head + b"hello")
    assert caught.value.reason == "body too large"
    # ... bytes beyond the body still show as a message in progress ...
    parser = HttpResponseParser()
    (response,) = parser.feed(head + b"hello" + b"HTTP/1.1 2")
    assert summary(response) == (200, True, 5) and parser.in_progress
    # ... and a body cut short waits for the rest.
    parser = HttpResponseParser()
    assert parser.feed(head + b"he") == [] and parser.body_remaining == 3
    (response,) = parser.feed(b"llo")
    assert summary(response) == (200, True, 5) and not parser.in_progress


def test_a_head_the_fast_path_declines_is_left_to_the_strict_parser():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    for _ in range(2):
        (response,) = HttpResponseParser().feed(chunked)
        assert summary(response) == (200, False, 5)
    bad = b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"
    for _ in range(2):
        with pytest.raises(ProtocolError) as caught:
            HttpResponseParser().feed(bad)
        assert caught.value.reason == "malformed header"


def test_status_below_100_is_no_status_at_all():
    from tcpstress.load.protocols import HttpResponseParser, ProtocolError

    with pytest.raises(ProtocolError) as e:
        HttpResponseParser().feed(b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
    assert e.value.reason == "malformed status line"


def test_http10_response_with_transfer_encoding_closes_the_connection():
    from tcpstress.load.protocols import HttpResponseParser

    (response,) = HttpResponseParser().feed(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert response.close and response.body_bytes == 2


def test_interim_responses_are_counted_for_first_byte_timing():
    from tcpstress.load.protocols import HttpResponseParser

    parser = HttpResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") == [] and parser.interim == 1
    assert not parser.in_progress
    (response,) = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert response.status == 200
