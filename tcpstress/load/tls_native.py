"""TLS for the load engine straight on OpenSSL, through the cffi bindings that
the `cryptography` package (already a dependency) documents as its exposed
OpenSSL API (`cryptography.hazmat.bindings.openssl.binding.Binding`).

Why not CPython's ssl module on the connection-churn path (measured, README
"Benchmarks"): its `session=` setter copies the session it is given by
serialising and parsing it again, peer certificate included, on every
connection (a quarter of the client's time per resumed connection in a
blocking micro-benchmark here), and its
SSLSocket object costs Python on every call. Here the worker's session is
handed to SSL_set_session as it is, OpenSSL reads and writes the socket itself
(SSL_set_fd), and a connection is one small object.

The behaviour is CPython's, copied from the SSLContext that
`tls.client_context` builds: the same verification (the CA file or the
system's CA paths, the host name or IP address checked as CPython checks it),
SNI only for a host name, the same TLS versions, TLS 1.2 cipher list and ALPN,
and the errors raised as the ssl module's exception types with the same
reasons, so the engine counts them under the same names. `--insecure` skips
verification as it does there.

When the bindings lack a function this needs (a future `cryptography` may drop
one), `available()` is False and the engine keeps CPython's ssl module.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from typing import Any

from tcpstress.scenario import Tls

try:
    from cryptography.hazmat.bindings.openssl.binding import Binding

    _binding = Binding()  # instantiating loads the library (older releases fill Binding.lib then)
    _lib: Any = _binding.lib
    _ffi: Any = _binding.ffi
except ImportError:  # pragma: no cover - cryptography is a dependency
    _lib = _ffi = None

_NEEDED = (
    "TLS_client_method SSL_CTX_new SSL_CTX_free SSL_CTX_load_verify_locations SSL_CTX_set_verify "
    "SSL_CTX_set_alpn_protos SSL_CTX_set_min_proto_version SSL_CTX_set_max_proto_version "
    "SSL_CTX_set_cipher_list SSL_CTX_set1_curves_list SSL_CTX_set_mode SSL_CTX_get0_param "
    "X509_VERIFY_PARAM_set1_host X509_VERIFY_PARAM_set1_ip X509_VERIFY_PARAM_set_hostflags "
    "SSL_new SSL_free SSL_set_fd SSL_set_tlsext_host_name SSL_set_session SSL_set_connect_state "
    "SSL_do_handshake SSL_get_error SSL_read SSL_write SSL_session_reused SSL_get1_session "
    "SSL_SESSION_free SSL_set_shutdown SSL_get_verify_result X509_verify_cert_error_string "
    "ERR_get_error ERR_clear_error ERR_reason_error_string ERR_GET_REASON"
).split()

# OpenSSL's defaults for the supported groups before post-quantum hybrids (the
# system OpenSSL 3.0 that CPython uses here): the ClientHello offers what it
# offered before, with one X25519 key share, whatever newer OpenSSL
# `cryptography` bundles.
# The finite-field groups are TLS 1.3's: OpenSSL 3.0 leaves them out of a TLS 1.2
# ClientHello (nginx's $ssl_curves shows both; tests/integration/test_tls_backends.py).
_GROUPS_TLS12 = b"X25519:P-256:X448:P-521:P-384"
_GROUPS = _GROUPS_TLS12 + b":ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192"
_SSL_R_CERTIFICATE_VERIFY_FAILED = 134  # ssl/sslerr.h; not among the bindings' constants
_SENT_AND_RECEIVED_SHUTDOWN = 3  # SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN


def available() -> bool:
    return _lib is not None and all(hasattr(_lib, name) for name in _NEEDED)


def _plain(kind: type[ssl.SSLError], code: int, message: str) -> ssl.SSLError:
    """An ssl exception without an OpenSSL reason, as CPython raises for these codes."""
    exc = kind(code, message)
    exc.reason = exc.library = None  # type: ignore[assignment]
    return exc


class NativeTls:
    """A worker's client context: what every connection of the run shares."""

    # The C socket type is enough: OpenSSL only needs its descriptor.
    socket_type = socket.SocketType

    def __init__(self, tls: Tls, server_name: str) -> None:
        model = _stdlib_context(tls)  # the settings to copy, made as the ssl path makes them
        ctx = _lib.SSL_CTX_new(_lib.TLS_client_method())
        if ctx == _ffi.NULL:
            raise ssl.SSLError("SSL_CTX_new failed")
        self.ctx = _ffi.gc(ctx, _lib.SSL_CTX_free)
        self.insecure = tls.insecure
        _check(_lib.SSL_CTX_set_mode(ctx, _lib.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | _lib.SSL_MODE_AUTO_RETRY) != 0)
        if model.minimum_version > 0:
            _check(_lib.SSL_CTX_set_min_proto_version(ctx, int(model.minimum_version)) == 1)
        if model.maximum_version > 0:
            _check(_lib.SSL_CTX_set_max_proto_version(ctx, int(model.maximum_version)) == 1)
        tls12 = ":".join(c["name"] for c in model.get_ciphers() if c["protocol"] != "TLSv1.3")
        if tls12:
            _check(_lib.SSL_CTX_set_cipher_list(ctx, b"@SECLEVEL=2:" + tls12.encode()) == 1)
        tls12_only = 0 < model.maximum_version <= ssl.TLSVersion.TLSv1_2
        _check(_lib.SSL_CTX_set1_curves_list(ctx, _GROUPS_TLS12 if tls12_only else _GROUPS) == 1)
        _check(_lib.SSL_CTX_set_alpn_protos(ctx, b"\x08http/1.1", 9) == 0)  # 0 is success here
        if tls.insecure:
            _lib.SSL_CTX_set_verify(ctx, _lib.SSL_VERIFY_NONE, _ffi.NULL)
        else:
            self._load_cas(ctx, tls.ca_file)
            _lib.SSL_CTX_set_verify(ctx, _lib.SSL_VERIFY_PEER, _ffi.NULL)
        # The name is the same for every connection of the run: set once on the
        # context, every SSL_new inherits it.
        self.ip = _ip_bytes(server_name)
        name = server_name.encode("idna") if self.ip is None else b""
        self.sni = name or None
        if not tls.insecure:
            param = _lib.SSL_CTX_get0_param(ctx)
            _lib.X509_VERIFY_PARAM_set_hostflags(param, _lib.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
            if self.ip is not None:
                _check(_lib.X509_VERIFY_PARAM_set1_ip(param, self.ip, len(self.ip)) == 1)
            else:
                _check(_lib.X509_VERIFY_PARAM_set1_host(param, name, len(name)) == 1)
        self.server_name = server_name
        self.buf = _ffi.new("char[]", 65536)

    @staticmethod
    def _load_cas(ctx: Any, ca_file: str) -> None:
        if ca_file:
            ok = _lib.SSL_CTX_load_verify_locations(ctx, os.fsencode(ca_file), _ffi.NULL)
        else:
            # The system's CAs as CPython finds them (its OpenSSL's default paths,
            # SSL_CERT_FILE and SSL_CERT_DIR honoured): the bundled OpenSSL's own
            # defaults point into the wheel's build tree.
            paths = ssl.get_default_verify_paths()
            if not paths.cafile and not paths.capath:
                return
            ok = _lib.SSL_CTX_load_verify_locations(ctx, os.fsencode(paths.cafile) if paths.cafile else _ffi.NULL,
                                                    os.fsencode(paths.capath) if paths.capath else _ffi.NULL)
        if ok != 1:
            _raise_queued(ssl.SSLError)

    def wrap(self, sock: socket.socket, session: Any) -> NativeTlsSocket:
        ssl_ = _lib.SSL_new(self.ctx)
        if ssl_ == _ffi.NULL:
            _raise_queued(ssl.SSLError)
        conn = NativeTlsSocket(self, sock, _ffi.gc(ssl_, _lib.SSL_free))
        _lib.SSL_set_fd(ssl_, sock.fileno())
        if self.sni is not None:
            _lib.SSL_set_tlsext_host_name(ssl_, self.sni)
        if session is not None:
            _lib.SSL_set_session(ssl_, session)
        _lib.SSL_set_connect_state(ssl_)
        return conn


class NativeTlsSocket:
    """One TLS connection: the parts of ssl.SSLSocket the engine uses, same exceptions."""

    __slots__ = ("tls", "sock", "ssl")

    def __init__(self, tls: NativeTls, sock: socket.socket, ssl_: Any) -> None:
        self.tls, self.sock, self.ssl = tls, sock, ssl_

    def fileno(self) -> int:
        return self.sock.fileno()

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def do_handshake(self) -> None:
        ret = _lib.SSL_do_handshake(self.ssl)
        if ret != 1:
            self._raise(ret, reading=False)

    @property
    def session_reused(self) -> bool:
        return bool(_lib.SSL_session_reused(self.ssl))

    @property
    def session(self) -> Any:
        """The connection's session as it is (no copy), freed when the last holder lets go."""
        sess = _lib.SSL_get1_session(self.ssl)
        return None if sess == _ffi.NULL else _ffi.gc(sess, _lib.SSL_SESSION_free)

    def send(self, data: bytes | memoryview) -> int:
        ret = _lib.SSL_write(self.ssl, data if isinstance(data, bytes) else _ffi.from_buffer(data), len(data))
        if ret <= 0:
            self._raise(ret, reading=False)
        return int(ret)

    def recv(self, size: int) -> bytes:
        buf = self.tls.buf
        ret = _lib.SSL_read(self.ssl, buf, min(size, 65536))
        if ret > 0:
            data: bytes = _ffi.buffer(buf, ret)[:]
            return data
        return self._raise(ret, reading=True)

    def close(self) -> None:
        ssl_ = self.ssl
        if ssl_ is not None:
            # Freed without a close_notify of ours, as CPython's close() does, but
            # not "unclean": OpenSSL would mark the session it resumed (the
            # worker's, shared, not a copy as in CPython) not resumable.
            _lib.SSL_set_shutdown(ssl_, _SENT_AND_RECEIVED_SHUTDOWN)
            _ffi.release(ssl_)
            self.ssl = None
        self.sock.close()

    def _raise(self, ret: int, reading: bool) -> bytes:
        """Raise what CPython's ssl module raises for this result; b"" where its
        recv() returns the end of the stream (close_notify, or a bare EOF: its
        suppress_ragged_eofs default)."""
        errno = _ffi.errno  # saved by cffi after the SSL call; the next C call replaces it
        err = _lib.SSL_get_error(self.ssl, ret)
        if err == _lib.SSL_ERROR_WANT_READ:
            raise _plain(ssl.SSLWantReadError, ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)")
        if err == _lib.SSL_ERROR_WANT_WRITE:
            raise _plain(ssl.SSLWantWriteError, ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)")
        if err == _lib.SSL_ERROR_ZERO_RETURN:
            if reading:
                return b""
            raise _plain(ssl.SSLZeroReturnError, ssl.SSL_ERROR_ZERO_RETURN, "TLS/SSL connection has been closed (EOF)")
        if err == _lib.SSL_ERROR_SYSCALL:
            code = _lib.ERR_get_error()
            _lib.ERR_clear_error()
            if code == 0:
                if ret < 0 and errno:
                    raise OSError(errno, os.strerror(errno))
                if reading:
                    return b""
                raise _plain(ssl.SSLEOFError, ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
            raise _error(code, ssl.SSLSyscallError)
        if err == _lib.SSL_ERROR_SSL:
            code = _lib.ERR_get_error()
            _lib.ERR_clear_error()
            reason = _lib.ERR_GET_REASON(code)
            if reading and reason == _lib.SSL_R_UNEXPECTED_EOF_WHILE_READING:
                return b""
            if reason == _SSL_R_CERTIFICATE_VERIFY_FAILED:
                raise self._verify_error(code)
            raise _error(code, ssl.SSLEOFError if reason == _lib.SSL_R_UNEXPECTED_EOF_WHILE_READING else ssl.SSLError)
        _lib.ERR_clear_error()
        raise _plain(ssl.SSLError, err, f"SSL error {err}")

    def _verify_error(self, code: int) -> ssl.SSLCertVerificationError:
        verify = _lib.SSL_get_verify_result(self.ssl)
        if verify == _lib.X509_V_ERR_HOSTNAME_MISMATCH:
            message = f"Hostname mismatch, certificate is not valid for '{self.tls.server_name}'."
        elif verify == _lib.X509_V_ERR_IP_ADDRESS_MISMATCH:
            message = f"IP address mismatch, certificate is not valid for '{self.tls.server_name}'."
        else:
            message = _string(_lib.X509_verify_cert_error_string(verify))
        exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
        exc.reason = "CERTIFICATE_VERIFY_FAILED"
        exc.verify_code = verify
        exc.verify_message = message
        return exc


def _string(ptr: Any) -> str:
    return "" if ptr == _ffi.NULL else _ffi.string(ptr).decode("ascii", "replace")


def _error(code: int, kind: type[ssl.SSLError]) -> ssl.SSLError:
    """An ssl.SSLError whose reason is the code's name as CPython spells it
    (OpenSSL's reason text in capitals with underscores)."""
    text = _string(_lib.ERR_reason_error_string(code)) or f"reason({_lib.ERR_GET_REASON(code)})"
    exc = kind(1, f"[SSL] {text}")
    exc.reason = text.upper().replace(" ", "_")
    exc.library = "SSL"
    return exc


def _raise_queued(kind: type[ssl.SSLError]) -> None:
    code = _lib.ERR_get_error()
    _lib.ERR_clear_error()
    raise _error(code, kind)


def _check(ok: bool) -> None:
    if not ok:
        _raise_queued(ssl.SSLError)


def _ip_bytes(name: str) -> bytes | None:
    try:
        return ipaddress.ip_address(name).packed
    except ValueError:
        return None


def _stdlib_context(tls: Tls) -> ssl.SSLContext:
    from tcpstress.load.tls import client_context

    return client_context(tls, load_cas=False)
