"""TLS for https targets: the client's SSLContext, and a self-signed certificate
for the built-in server (`tcpstress serve --tls`) and the tests.

The client speaks TLS inside the engine's own epoll loop: each connected socket
is wrapped (client_tls: tls_native's OpenSSL connection, or CPython's SSLSocket)
in a non-blocking TLS connection whose handshake, reads and writes raise
SSLWantRead/WriteError where a plain socket raises BlockingIOError, so the
state machine waits for the next edge either way.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any

from tcpstress.scenario import Tls

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(tls: Tls, load_cas: bool = True) -> ssl.SSLContext:
    """Verification as curl does it (system CAs, or ca_file; -k skips it), ALPN http/1.1.

    load_cas=False: the same settings without reading any CA (create_default_context's
    one other step), for tls_native, which copies the settings and loads the CAs
    into its own context: reading the system store twice cost ~50 ms a worker.
    """
    ctx = ssl.create_default_context(cafile=tls.ca_file or None) if load_cas else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.version in _VERSIONS:
        ctx.minimum_version = ctx.maximum_version = _VERSIONS[tls.version]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class StdlibTls:
    """Connections through CPython's ssl module (TCPSTRESS_TLS_BACKEND=ssl, or when
    tls_native cannot work with the installed `cryptography`)."""

    # wrap_socket takes over a socket.socket (the Python subclass), not the C type
    socket_type = socket.socket

    def __init__(self, tls: Tls, server_name: str) -> None:
        self.ctx = client_context(tls)
        self.server_name = server_name

    def wrap(self, sock: socket.socket, session: ssl.SSLSession | None) -> ssl.SSLSocket:
        try:
            return self.ctx.wrap_socket(sock, server_hostname=self.server_name, do_handshake_on_connect=False,
                                        session=session)
        except ValueError:  # a session the context cannot take: a full handshake then
            return self.ctx.wrap_socket(sock, server_hostname=self.server_name, do_handshake_on_connect=False)


def client_tls(tls: Tls, server_name: str) -> Any:
    """The engine's TLS backend: OpenSSL through `cryptography`'s bindings (tls_native),
    unless TCPSTRESS_TLS_BACKEND=ssl asks for CPython's ssl module, SSLKEYLOGFILE is
    set or the bindings lack something it needs. Both verify, offer and fail alike."""
    from tcpstress.load import tls_native

    # SSLKEYLOGFILE (a key log for Wireshark) is honoured by CPython's default
    # context; tls_native does not write one, so such a run keeps the ssl module.
    if (os.environ.get("TCPSTRESS_TLS_BACKEND", "openssl") != "ssl" and not os.environ.get("SSLKEYLOGFILE")
            and tls_native.available()):
        try:
            return tls_native.NativeTls(tls, server_name)
        except ssl.SSLError:
            pass  # a setting this OpenSSL refuses: the ssl module says whether it is the scenario's
    return StdlibTls(tls, server_name)


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def make_self_signed(folder: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> tuple[Path, Path]:
    """A self-signed certificate valid for `names` (host names and IP addresses), 7 days.

    Made with the `cryptography` package: a few lines instead of driving the
    openssl command and parsing what it prints.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path
