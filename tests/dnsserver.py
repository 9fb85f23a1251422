"""
A small scripted authoritative DNS server for tests, built on dnspython.

It answers over UDP and TCP on one free loopback port, from records a test
adds at run time, and can be told to misbehave per name:

- a name with records of the asked type gets them (multi-string TXT included),
  following CNAMEs it knows, like an authoritative server for in-zone targets;
- a known name without the asked type gets NODATA (NOERROR, SOA in authority);
- an unknown name gets NXDOMAIN (SOA in authority), so negative TTLs work;
- :meth:`DNSServer.servfail` names get SERVFAIL, :meth:`DNSServer.drop` names
  get no reply at all (the client times out).

Every query is logged in :attr:`DNSServer.queries` as ``(name, type)``, which
lets tests count TXT queries (single-flight, negative caching).

Typical use::

    with DNSServer() as dns_server:
        dns_server.add("_mta-sts.example.com", "TXT", '"v=STSv1; " "id=1;"')
        resolver = make_resolver([dns_server.address])
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DNSServer", "dns_server_fixture"]

MAX_CNAME_CHAIN = 8


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text if text.endswith(".") else text + ".")


class DNSServer:
    """
    A scripted authoritative server on ``127.0.0.1:<free port>`` (UDP and TCP).

    Args:
        negative_ttl: The SOA minimum (and SOA TTL) used for negative answers.
    """

    def __init__(self, *, negative_ttl: int = 60) -> None:
        self.negative_ttl = negative_ttl
        self._lock = threading.Lock()
        self._records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._servfail: set[dns.name.Name] = set()
        self._drop: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp: socketserver.ThreadingUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []
        self.port = 0

    # ------------------------------------------------------------------ script

    def add(self, name: str, rdtype: str, *rdatas: str, ttl: int = 300) -> None:
        """Add records (rdata text, e.g. ``'"v=STSv1; " "id=1;"'``) at ``name``."""
        owner = _name(name)
        kind = dns.rdatatype.from_text(rdtype)
        with self._lock:
            rrset = self._records.get((owner, kind))
            if rrset is None:
                rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, kind)
                self._records[(owner, kind)] = rrset
            for text in rdatas:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, kind, text), ttl)
            rrset.ttl = ttl

    def set(self, name: str, rdtype: str, *rdatas: str, ttl: int = 300) -> None:
        """Replace the records of one type at ``name`` (no rdatas: remove them)."""
        self.remove(name, rdtype)
        if rdatas:
            self.add(name, rdtype, *rdatas, ttl=ttl)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        """Remove the records of one type at ``name``, or all of them."""
        owner = _name(name)
        with self._lock:
            for key in list(self._records):
                if key[0] == owner and (
                    rdtype is None or key[1] == dns.rdatatype.from_text(rdtype)
                ):
                    del self._records[key]

    def cname(self, name: str, target: str, *, ttl: int = 300) -> None:
        """Make ``name`` an alias of ``target``."""
        self.set(name, "CNAME", _name(target).to_text(), ttl=ttl)

    def servfail(self, name: str, *, on: bool = True) -> None:
        """Answer SERVFAIL for every query at ``name`` (or stop doing so)."""
        with self._lock:
            (self._servfail.add if on else self._servfail.discard)(_name(name))

    def drop(self, name: str, *, on: bool = True) -> None:
        """Never answer queries at ``name`` (or answer them again)."""
        with self._lock:
            (self._drop.add if on else self._drop.discard)(_name(name))

    def count(self, name: str, rdtype: str) -> int:
        """How many queries for ``name``/``rdtype`` arrived so far."""
        key = (_name(name).to_text().lower(), rdtype.upper())
        with self._lock:
            return sum(1 for q in self.queries if q == key)

    # ------------------------------------------------------------------ answering

    def _exists(self, owner: dns.name.Name) -> bool:
        return any(key[0] == owner for key in self._records)

    def _soa(self, owner: dns.name.Name) -> dns.rrset.RRset:
        apex = owner.parent() if len(owner) > 2 else owner
        return dns.rrset.from_text(
            apex,
            self.negative_ttl,
            "IN",
            "SOA",
            f"ns.{apex.to_text()} hostmaster.{apex.to_text()} 1 3600 600 86400 {self.negative_ttl}",
        )

    def respond(self, wire: bytes, *, udp: bool = False) -> bytes | None:
        """
        Build the reply to one query (``None``: stay silent).

        Over UDP a reply larger than the client's payload size (512 without
        EDNS) is cut to the header with TC set, so the client retries on TCP.
        """
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self.queries.append(
                (qname.to_text().lower(), dns.rdatatype.to_text(qtype)),
            )
            if qname in self._drop:
                return None
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if qname in self._servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            owner = qname
            for _ in range(MAX_CNAME_CHAIN):
                rrset = self._records.get((owner, qtype))
                if rrset is not None:
                    response.answer.append(rrset)
                    break
                alias = self._records.get((owner, dns.rdatatype.CNAME))
                if alias is None:
                    if not self._exists(owner):
                        response.set_rcode(dns.rcode.NXDOMAIN)
                    response.authority.append(self._soa(owner))
                    break
                response.answer.append(alias)
                owner = alias[0].target
                if owner in self._servfail:
                    response.set_rcode(dns.rcode.SERVFAIL)
                    response.answer.clear()
                    break
        if udp:
            limit = max(512, query.payload) if query.edns >= 0 else 512
            try:
                return response.to_wire(max_size=limit)
            except dns.exception.TooBig:
                response.answer.clear()
                response.authority.clear()
                response.flags |= dns.flags.TC
        return response.to_wire()

    # ------------------------------------------------------------------ serving

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the form ``--nameserver`` takes."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Bind UDP and TCP on one free loopback port and serve in threads."""
        server = self

        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server.respond(data, udp=True)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                with suppress(OSError):
                    while True:
                        head = _recv_exact(sock, 2)
                        if head is None:
                            return
                        (length,) = struct.unpack("!H", head)
                        data = _recv_exact(sock, length)
                        if data is None:
                            return
                        reply = server.respond(data)
                        if reply is None:
                            return
                        sock.sendall(struct.pack("!H", len(reply)) + reply)

        for _ in range(50):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDPHandler)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), TCPHandler)
            except OSError:
                udp.server_close()
                continue
            break
        else:  # pragma: no cover - the kernel keeps handing out busy ports
            raise OSError("no free port for UDP and TCP")
        udp.daemon_threads = tcp.daemon_threads = True
        self._udp, self._tcp, self.port = udp, tcp, port
        for srv in (udp, tcp):
            thread = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def dns_server_fixture() -> Iterator[DNSServer]:
    """Generator body for a pytest fixture that yields a running server."""
    with DNSServer() as server:
        yield server
