"""A stand-in for Docker's embedded DNS server, for the reverse lookups `--shard compose` makes.

Docker answers a PTR question for a container's address on a user-defined
network with "<container name>.<network name>." (compose names containers
<project>-<service>-<replica>) and NXDOMAIN for addresses it does not know.
This server does the same for the names it is given, over UDP, on loopback
only. In a thread (unit tests):

    with FakeDockerDns({"198.18.200.130": "tcpstress-loader-3"}) as dns: ...dns.address...

or as a process inside a lab namespace, on Docker's own address:

    python -m tests.fake_docker_dns 127.0.0.11 53 198.18.0.2=tcpstress-loader-2 ...
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset

NETWORK_SUFFIX = "tcpstress_tcplab."


class FakeDockerDns:
    def __init__(self, names: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host}: the fake DNS server listens on loopback only")
        self.names = {dns.reversename.from_address(a): n for a, n in names.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.address = self.sock.getsockname()
        self.questions: list[str] = []
        self._thread: threading.Thread | None = None

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        reply = dns.message.make_response(query)
        (question,) = query.question
        self.questions.append(question.name.to_text())
        name = self.names.get(question.name)
        if question.rdtype == dns.rdatatype.PTR and name is not None:
            reply.answer.append(dns.rrset.from_text(question.name, 600, "IN", "PTR", f"{name}.{NETWORK_SUFFIX}"))
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply.to_wire()

    def serve_forever(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(65535)
            except OSError:  # closed
                return
            self.sock.sendto(self.answer(wire), peer)

    def __enter__(self) -> FakeDockerDns:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def main(argv: list[str]) -> None:
    host, port, *pairs = argv
    server = FakeDockerDns(dict(pair.split("=", 1) for pair in pairs), host, int(port))
    print(f"listening {server.address[0]}:{server.address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
