"""The two TLS backends of the load engine, against nginx on loopback: tls_native
(OpenSSL through cryptography's bindings, the default) and CPython's ssl module
(TCPSTRESS_TLS_BACKEND=ssl). nginx's access log says what each connection
negotiated (version, SNI, ALPN, resumption); failures must be counted under the
same names by both.
"""

import collections
import json
import os
import socket
import threading

import pytest

from tcpstress.load import tls_native
from tcpstress.load.tls import StdlibTls, client_tls, make_self_signed
from tcpstress.scenario import Tls
from tests.conftest import Nginx, nginx_instances, run_cli

pytestmark = pytest.mark.nginx

LOG = "$ssl_session_reused $ssl_protocol $ssl_server_name $ssl_alpn_protocol $status"
BACKENDS = ["openssl", "ssl"]


@pytest.fixture
def make_nginx(tmp_path):
    yield from nginx_instances(tmp_path, LOG)


def run(tmp_path, backend, url, *args):
    out = tmp_path / f"run-{backend}-{len(list(tmp_path.glob('run-*')))}"
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    proc = run_cli("run", url, "--connections", 2, "--workers", 1, "--duration", "1s", "--out", out, *args,
                   env={**env, "TCPSTRESS_TLS_BACKEND": backend})
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads((out / "result.json").read_text())["summary"]


def test_the_default_backend_is_the_native_one_and_the_variable_selects_the_ssl_module(monkeypatch):
    assert tls_native.available()
    monkeypatch.delenv("TCPSTRESS_TLS_BACKEND", raising=False)
    assert isinstance(client_tls(Tls(insecure=True), "localhost"), tls_native.NativeTls)
    monkeypatch.setenv("TCPSTRESS_TLS_BACKEND", "ssl")
    assert isinstance(client_tls(Tls(insecure=True), "localhost"), StdlibTls)
    monkeypatch.delenv("TCPSTRESS_TLS_BACKEND")
    monkeypatch.setenv("SSLKEYLOGFILE", "/dev/null")  # only the ssl module writes a key log
    assert isinstance(client_tls(Tls(insecure=True), "localhost"), StdlibTls)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", ["auto", "1.2", "1.3"])
def test_churn_resumes_and_negotiates_what_nginx_logged(tmp_path, make_nginx, backend, version):
    cert, key = make_self_signed(tmp_path / "tls")
    # nginx 1.22 (Debian 12) offers TLS 1.3 only when told to.
    nginx = make_nginx(tls=(cert, key), http_extra="ssl_protocols TLSv1.2 TLSv1.3;")
    s = run(tmp_path, backend, f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert, "--no-keepalive",
            "--close", "server", "--tls-version", version)
    nginx.stop()
    logged = [line.split(" ") for line in nginx.log_entries()]
    assert s["error_total"] == 0, s["errors"]
    assert s["requests"] > 20 and s["requests"] <= len(logged) <= s["requests"] + 2
    # Only each connection slot's first handshake is a full one; nginx saw the rest resumed.
    reused = collections.Counter(f[0] for f in logged)
    assert reused["."] <= 2 and reused["r"] >= len(logged) - 2
    assert s["tls"]["resumed"] >= s["tls"]["handshakes"] - 2 and s["tls"]["resumed"] <= reused["r"]
    assert {f[1] for f in logged} == {"TLSv1.2" if version == "1.2" else "TLSv1.3"}
    # An IP address target: no SNI (nginx logs "-"), as curl and CPython do; ALPN http/1.1.
    assert {f[2] for f in logged} == {"-"}
    assert {f[3] for f in logged} == {"http/1.1"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_name_is_sent_as_sni_and_checked_in_the_certificate(tmp_path, make_nginx, backend):
    cert, key = make_self_signed(tmp_path / "tls", names=("tcpstress.test",))
    nginx = make_nginx(tls=(cert, key))
    good = run(tmp_path, backend, f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert,
               "--server-name", "tcpstress.test")
    bad = run(tmp_path, backend, f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert,
              "--server-name", "other.test")
    nginx.stop()
    logged = [line.split(" ") for line in nginx.log_entries()]
    assert good["error_total"] == 0 and good["requests"] > 0
    assert {f[2] for f in logged} == {"tcpstress.test"}  # the refused run never got to a request
    assert len(logged) >= good["requests"]
    assert bad["requests"] == 0
    assert set(bad["errors"]) == {"TLS: Hostname mismatch, certificate is not valid for 'other.test'."}


def errors_of_both(tmp_path, url, *args):
    return {backend: run(tmp_path, backend, url, *args)["errors"] for backend in BACKENDS}


def test_an_untrusted_certificate_fails_alike_and_insecure_skips_the_check(tmp_path, make_nginx):
    cert, key = make_self_signed(tmp_path / "tls")
    nginx = make_nginx(tls=(cert, key))
    url = f"https://127.0.0.1:{nginx.port}/"
    errors = errors_of_both(tmp_path, url, "--ca-file", make_self_signed(tmp_path / "other")[0])
    insecure = {backend: run(tmp_path, backend, url, "--insecure") for backend in BACKENDS}
    nginx.stop()
    assert errors["openssl"] == errors["ssl"] or set(errors["openssl"]) == set(errors["ssl"])
    assert set(errors["openssl"]) == {"TLS: self-signed certificate"}
    for s in insecure.values():
        assert s["error_total"] == 0 and s["requests"] > 0
    assert len(nginx.log_entries()) >= sum(s["requests"] for s in insecure.values())


def test_an_ip_address_not_in_the_certificate_fails_alike(tmp_path, make_nginx):
    cert, key = make_self_signed(tmp_path / "tls", names=("localhost",))
    nginx = make_nginx(tls=(cert, key))
    errors = errors_of_both(tmp_path, f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert)
    nginx.stop()
    assert set(errors["openssl"]) == set(errors["ssl"]) == {
        "TLS: IP address mismatch, certificate is not valid for '127.0.0.1'."}


def test_a_plain_http_server_fails_alike(tmp_path, make_nginx):
    nginx = make_nginx()
    errors = errors_of_both(tmp_path, f"https://127.0.0.1:{nginx.port}/", "--insecure")
    nginx.stop()
    assert set(errors["openssl"]) == set(errors["ssl"]) and len(errors["ssl"]) == 1
    assert next(iter(errors["ssl"])).startswith("TLS: ")


@pytest.fixture
def closing_listener():
    """Accepts and at once closes every connection (a FIN, or with linger 0 a reset;
    the unread ClientHello may turn the FIN into a reset too);
    bounded: it stops when the test ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    mode = {"reset": False}
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if mode["reset"]:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], mode
    stop.set()
    thread.join(2)
    listener.close()


@pytest.mark.parametrize("reset", [False, True])
def test_a_server_that_closes_during_the_handshake_fails_alike(tmp_path, closing_listener, reset):
    port, mode = closing_listener
    mode["reset"] = reset
    errors = errors_of_both(tmp_path, f"https://127.0.0.1:{port}/", "--insecure")
    assert set(errors["openssl"]) == set(errors["ssl"]), errors
    assert set(errors["ssl"]) <= {"TLS: unexpected eof while reading", "ECONNRESET"}, errors


@pytest.mark.parametrize("version", ["auto", "1.2"])
def test_both_backends_offer_the_same_ciphers_and_groups(tmp_path, version):
    """nginx logs what each ClientHello offered ($ssl_ciphers, $ssl_curves): the native
    backend offers what CPython's ssl module offers."""
    import shutil

    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed")
    cert, key = make_self_signed(tmp_path / "tls")
    offered = {}
    for backend in BACKENDS:
        nginx = Nginx(tmp_path / f"nginx-{backend}", tls=(cert, key), log_format="$ssl_ciphers|$ssl_curves",
                      http_extra="ssl_protocols TLSv1.2 TLSv1.3;")
        try:
            s = run(tmp_path, backend, f"https://127.0.0.1:{nginx.port}/", "--ca-file", cert, "--tls-version", version,
                    "--no-keepalive", "--close", "server")
        finally:
            nginx.stop()
        assert s["error_total"] == 0 and s["requests"] > 0, s["errors"]
        # OpenSSL 3.0 (CPython's here) also lists the renegotiation SCSV; the newer
        # OpenSSL in cryptography's wheel does not (neither renegotiates).
        offered[backend] = {line.replace(":TLS_EMPTY_RENEGOTIATION_INFO_SCSV", "") for line in nginx.log_entries()}
    # nginx logs the groups of full handshakes only ("-" on resumed ones)
    assert offered["openssl"] == offered["ssl"] and any(not line.endswith("|-") for line in offered["ssl"]), offered
