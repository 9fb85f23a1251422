"""
Loopback servers for ``smtpsts lab``: DNS, HTTPS, STARTTLS SMTP and a CA.

The HTTPS server is both the MTA-STS policy host and the TLS-RPT ``rua``
receiver; the CA is made on the fly.

Everything binds to ``127.0.0.1`` on free ports, runs in daemon threads, and
stops with its ``close()`` method (or the ``with`` block). Nothing needs root or the
internet. Only the standard library, ``cryptography`` and ``dnspython``
are used.

The module is over 600 lines because it holds the lab's four servers (the
CA, DNS, HTTPS and STARTTLS SMTP), which one lab starts together and which
share the CA's certificates and the thread start and stop helpers; each
server is a small protocol handler a test reads on its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "DNSServer", "HTTPSServer", "Issued", "SMTPServer"]

_MAX_LINE = 4096
_MAX_MESSAGE = 1 << 20
_IDLE = 10.0


# --------------------------------------------------------------------------- certificates


@attrs.frozen
class Issued:
    """
    A certificate and its private key.

    Attributes:
        cert: The certificate.
        key: Its private key.
    """

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def chain_pem(self) -> bytes:
        """
        The certificate then the key, PEM (what ``load_cert_chain`` reads).

        Returns:
            The PEM bytes.
        """
        return self.cert.public_bytes(serialization.Encoding.PEM) + self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _issue(
    subject: str,
    *,
    signer: Issued | None,
    ca: bool,
    names: Sequence[str],
    not_before: datetime,
    not_after: datetime,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signing_key = signer.key if signer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer.cert.subject if signer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return Issued(builder.sign(signing_key, hashes.SHA256()), key)


class CA:
    """
    A certificate authority made on the fly (P-256, valid for a day around now).

    Args:
        name: The CA's common name.
    """

    def __init__(self, name: str = "smtpsts lab CA") -> None:
        now = datetime.now(UTC)
        self.root = _issue(
            name,
            signer=None,
            ca=True,
            names=(),
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=2),
        )

    def issue(self, *names: str, expired: bool = False) -> Issued:
        """
        Issue a server certificate for ``names`` (DNS-IDs).

        Args:
            names: The DNS names.
            expired: Make it expired (valid until yesterday).

        Returns:
            The certificate and key.
        """
        now = datetime.now(UTC)
        end = now - timedelta(days=1) if expired else now + timedelta(days=1)
        return _issue(
            names[0],
            signer=self.root,
            ca=False,
            names=names,
            not_before=now - timedelta(days=10 if expired else 1),
            not_after=end,
        )

    @staticmethod
    def self_signed(*names: str) -> Issued:
        """
        A self-signed server certificate (no CA vouches for it; DANE-EE can).

        Args:
            names: The DNS names.

        Returns:
            The certificate and key.
        """
        now = datetime.now(UTC)
        return _issue(
            names[0],
            signer=None,
            ca=False,
            names=names,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=1),
        )

    def pem(self) -> bytes:
        """
        The root certificate, PEM.

        Returns:
            The PEM bytes.
        """
        return self.root.cert.public_bytes(serialization.Encoding.PEM)


def server_context(issued: Issued) -> ssl.SSLContext:
    """
    A TLS server context presenting ``issued``.

    Args:
        issued: The certificate and key.

    Returns:
        The context.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(issued.chain_pem())
        context.load_cert_chain(path)
    finally:
        Path(path).unlink()
    return context


# --------------------------------------------------------------------------- DNS


_MAX_CNAME_CHAIN = 8
_QUERY_LOG = 100_000


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text if text.endswith(".") else text + ".")


class DNSServer:
    """
    An authoritative DNS server on ``127.0.0.1:<port>`` (UDP and TCP).

    Answers from records set at run time, following CNAMEs it knows (like an
    authoritative server for in-zone targets); NODATA for a known name
    without the asked type and NXDOMAIN for an unknown one, both with an SOA
    whose minimum is ``negative_ttl``; SERVFAIL for names set with
    :meth:`servfail`; no reply at all for names set with :meth:`drop`.
    Answers for names under a :meth:`secure` suffix carry the AD bit: the
    lab's stand-in for a DNSSEC-validating resolver, which the lab trusts
    explicitly (the zones are not signed). Every query is logged in
    :attr:`queries` as ``(name, type)`` (the latest 100,000).

    Args:
        negative_ttl: The SOA TTL and minimum of negative answers.
    """

    def __init__(self, *, negative_ttl: int = 30) -> None:
        self.negative_ttl = negative_ttl
        self._lock = threading.Lock()
        self._records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._servfail: set[dns.name.Name] = set()
        self._drop: set[dns.name.Name] = set()
        self._secure: set[dns.name.Name] = set()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.queries: deque[tuple[str, str]] = deque(maxlen=_QUERY_LOG)
        """The latest queries, as ``(lower-case name with root dot, type)``."""
        self.port = 0

    def add(self, name: str, rdtype: str, *rdatas: str, ttl: int = 300) -> None:
        """
        Add records of one type at ``name`` (the RRset takes ``ttl``).

        Args:
            name: The owner name.
            rdtype: The type, e.g. ``"TXT"``.
            rdatas: Presentation-format rdata, e.g. ``'"v=STSv1; " "id=1;"'``.
            ttl: The TTL.
        """
        owner, kind = _name(name), dns.rdatatype.from_text(rdtype)
        with self._lock:
            rrset = self._records.get((owner, kind))
            if rrset is None:
                rrset = self._records[(owner, kind)] = dns.rrset.RRset(
                    owner, dns.rdataclass.IN, kind
                )
            for text in rdatas:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, kind, text), ttl)
            rrset.ttl = ttl

    def set(self, name: str, rdtype: str, *rdatas: str, ttl: int = 300) -> None:
        """
        Replace the records of one type at ``name`` (no rdatas: remove them).

        Args:
            name: The owner name.
            rdtype: The type, e.g. ``"TXT"``.
            rdatas: Presentation-format rdata.
            ttl: The TTL.
        """
        self.remove(name, rdtype)
        if rdatas:
            self.add(name, rdtype, *rdatas, ttl=ttl)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        """
        Remove the records of one type at ``name``, or all of its records.

        Args:
            name: The owner name.
            rdtype: The type, or ``None`` for every type.
        """
        owner = _name(name)
        kind = None if rdtype is None else dns.rdatatype.from_text(rdtype)
        with self._lock:
            for key in [k for k in self._records if k[0] == owner]:
                if kind is None or key[1] == kind:
                    del self._records[key]

    def cname(self, name: str, target: str, *, ttl: int = 300) -> None:
        """
        Make ``name`` an alias of ``target``.

        Args:
            name: The alias.
            target: The canonical name.
            ttl: The TTL.
        """
        self.set(name, "CNAME", _name(target).to_text(), ttl=ttl)

    def servfail(self, name: str, *, on: bool = True) -> None:
        """
        Answer SERVFAIL for ``name`` (or stop).

        Args:
            name: The owner name.
            on: Start (``True``) or stop.
        """
        with self._lock:
            (self._servfail.add if on else self._servfail.discard)(_name(name))

    def drop(self, name: str, *, on: bool = True) -> None:
        """
        Never answer queries for ``name`` (or answer them again): clients time out.

        Args:
            name: The owner name.
            on: Start (``True``) or stop.
        """
        with self._lock:
            (self._drop.add if on else self._drop.discard)(_name(name))

    def count(self, name: str, rdtype: str) -> int:
        """
        How many queries for ``name`` and ``rdtype`` arrived so far.

        Args:
            name: The owner name.
            rdtype: The type, e.g. ``"TXT"``.

        Returns:
            The count.
        """
        key = (_name(name).to_text().lower(), rdtype.upper())
        with self._lock:
            return self.queries.count(key)

    def secure(self, suffix: str) -> None:
        """
        Set the AD bit on answers for names at or under ``suffix``.

        Args:
            suffix: The zone.
        """
        with self._lock:
            self._secure.add(_name(suffix))

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as ``--nameserver`` takes it."""
        return f"127.0.0.1:{self.port}"

    def respond(self, wire: bytes, *, udp: bool = False) -> bytes | None:
        """
        The reply to one query, ``None`` for garbage.

        Args:
            wire: The query.
            udp: Truncate to the client's UDP size (TC bit).

        Returns:
            The reply in wire format.
        """
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        with self._lock:
            self.queries.append((qname.to_text().lower(), dns.rdatatype.to_text(qtype)))
            if qname in self._drop:
                return None
            if qname in self._servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            if any(qname.is_subdomain(s) for s in self._secure):
                response.flags |= dns.flags.AD
            self._answer(response, qname, qtype)
        if udp:
            limit = max(512, query.payload) if query.edns >= 0 else 512
            try:
                return response.to_wire(max_size=limit)
            except dns.exception.TooBig:
                response.answer.clear()
                response.authority.clear()
                response.flags |= dns.flags.TC
        return response.to_wire()

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        # The records, following known CNAMEs; else NXDOMAIN/NODATA with an SOA.
        owner = qname
        for _ in range(_MAX_CNAME_CHAIN):
            rrset = self._records.get((owner, qtype))
            if rrset is not None:
                response.answer.append(rrset)
                return
            alias = self._records.get((owner, dns.rdatatype.CNAME))
            if alias is None:
                break
            response.answer.append(alias)
            owner = alias[0].target
            if owner in self._servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                response.answer.clear()
                return
        if not any(key[0] == owner for key in self._records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        apex = owner.parent() if len(owner) > 2 else owner
        ttl = self.negative_ttl
        response.authority.append(
            dns.rrset.from_text(
                apex, ttl, "IN", "SOA", f"ns.{apex} hostmaster.{apex} 1 3600 600 86400 {ttl}"
            )
        )

    def handlers(
        self,
    ) -> tuple[type[socketserver.BaseRequestHandler], type[socketserver.BaseRequestHandler]]:
        """
        The UDP and TCP request handlers that answer with :meth:`respond`.

        Returns:
            ``(udp, tcp)``: TCP messages are length-prefixed (RFC 1035 §4.2.2).
        """
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
                sock.settimeout(_IDLE)
                with contextlib.suppress(OSError):
                    while (head := _recv_exact(sock, 2)) is not None:
                        data = _recv_exact(sock, struct.unpack("!H", head)[0])
                        reply = None if data is None else server.respond(data)
                        if reply is None:
                            return
                        sock.sendall(struct.pack("!H", len(reply)) + reply)

        return UDPHandler, TCPHandler

    def start(self) -> Self:
        """
        Bind UDP and TCP on one free port and serve.

        Returns:
            The server.

        Raises:
            OSError: No free port was found.
        """
        UDPHandler, TCPHandler = self.handlers()  # noqa: N806 -- classes
        for _ in range(50):  # pragma: no branch
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDPHandler)
            try:
                tcp = socketserver.ThreadingTCPServer(
                    ("127.0.0.1", udp.server_address[1]), TCPHandler
                )
            except OSError:  # pragma: no cover - port taken for TCP only
                udp.server_close()
                continue
            break
        else:  # pragma: no cover
            raise OSError("no free port for UDP and TCP")
        udp.daemon_threads = tcp.daemon_threads = True
        self.port = udp.server_address[1]
        self._servers = [udp, tcp]
        self._threads = _serve(udp, tcp)
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        _stop(self._servers, self._threads)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(*servers: socketserver.BaseServer) -> list[threading.Thread]:
    threads = []
    for srv in servers:
        thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


def _stop(servers: list[socketserver.BaseServer], threads: list[threading.Thread]) -> None:
    for srv in servers:
        srv.shutdown()
        srv.server_close()
    for thread in threads:
        thread.join(timeout=2)
    servers.clear()
    threads.clear()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --------------------------------------------------------------------------- HTTPS


@attrs.frozen
class Received:
    """
    One request an :class:`HTTPSServer` took.

    Attributes:
        host: The ``Host`` header (without port).
        method: ``GET`` or ``POST``.
        path: The request target.
        content_type: The ``Content-Type`` header.
        body: The body.
    """

    host: str
    method: str
    path: str
    content_type: str | None
    body: bytes


class _TLSServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HTTPSServer:
    """
    An HTTPS server on ``127.0.0.1:<port>`` that picks its certificate by SNI.

    ``GET`` of a routed host returns its body (the MTA-STS policy host);
    ``POST`` to any routed host is stored in ``received`` and answered
    201 (a TLS-RPT ``rua`` receiver, RFC 8460 §5.4).

    Args:
        ca: The CA that issues each host's certificate.
    """

    def __init__(self, ca: CA) -> None:
        self.ca = ca
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[int, str, bytes]] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.received: list[Received] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0

    def route(
        self, host: str, body: bytes, *, status: int = 200, content_type: str = "text/plain"
    ) -> None:
        """
        Serve ``body`` for every ``GET`` to ``host``.

        Args:
            host: The host name (SNI and ``Host``).
            body: The response body.
            status: The status code.
            content_type: The media type.
        """
        with self._lock:
            self._routes[host] = (status, content_type, body)
            if host not in self._contexts:
                self._contexts[host] = server_context(self.ca.issue(host))

    def _pick(self, sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self._lock:
            context = self._contexts.get(name or "")
        if context is not None:
            sock.context = context

    def _handle(self, conn: socket.socket) -> None:
        default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        default.sni_callback = self._pick
        conn.settimeout(_IDLE)
        with (
            contextlib.suppress(OSError, ValueError),
            default.wrap_socket(conn, server_side=True) as tls,
        ):
            data = b""
            while b"\r\n\r\n" not in data and len(data) < _MAX_LINE * 4:
                chunk = tls.recv(_MAX_LINE)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
            }
            host = headers.get("host", "").split(":")[0]
            length = min(int(headers.get("content-length", "0") or 0), _MAX_MESSAGE)
            while len(body) < length:
                chunk = tls.recv(_MAX_LINE)
                if not chunk:
                    break
                body += chunk
            with self._lock:
                route = self._routes.get(host)
                if method == "POST":
                    self.received.append(
                        Received(host, method, path, headers.get("content-type"), body)
                    )
            if method == "POST":
                status, content_type, payload = 201, "text/plain", b"stored\n"
            elif route is None:
                status, content_type, payload = 404, "text/plain", b"not found\n"
            else:
                status, content_type, payload = route
            tls.sendall(
                f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )

    def start(self) -> Self:
        """
        Bind a free loopback port and serve.

        Returns:
            The server.
        """
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        srv = _TLSServer(("127.0.0.1", 0), Handler)
        self.port = srv.server_address[1]
        self._servers = [srv]
        self._threads = _serve(srv)
        return self

    def close(self) -> None:
        """Stop serving."""
        _stop(self._servers, self._threads)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- SMTP


class SMTPServer:
    """
    A receiving SMTP server on ``127.0.0.1:<port>`` with STARTTLS (RFC 3207).

    It takes ``MAIL``/``RCPT``/``DATA`` and keeps each message in
    ``messages`` as ``(tls, mail_from, rcpt_to, data)``.

    Args:
        name: The name it greets with.
        certificate: Its certificate; ``None`` (or ``starttls=False``)
            means it does not offer STARTTLS.
        starttls: Whether EHLO lists STARTTLS.

    Attributes:
        greeting: The greeting line (set another to test refusals).
        behaviour: ``normal``; ``refuse-starttls`` (454), ``break-handshake``
            (220, then garbage instead of TLS), ``break-handshake-then-refuse``
            (the same, then greets later sessions with 554), ``pipelined`` (a plaintext
            line right after the 220, RFC 3207 §5), ``no-ehlo`` (502 to
            EHLO), ``stall-greeting`` (never greets).
    """

    def __init__(self, name: str, certificate: Issued | None, *, starttls: bool = True) -> None:
        self.name = name
        self.context = server_context(certificate) if certificate is not None else None
        self.starttls = starttls and certificate is not None
        self.greeting = f"220 {name} ESMTP smtpsts-lab"
        self.behaviour = "normal"
        self.messages: list[tuple[bool, str, tuple[str, ...], bytes]] = []
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0

    def _session(self, conn: socket.socket) -> None:
        opened: list[socket.socket] = []
        try:
            self._dialogue(conn, opened)
        finally:
            for sock in opened:
                sock.close()

    def _dialogue(self, conn: socket.socket, opened: list[socket.socket]) -> None:
        conn.settimeout(_IDLE)
        sock: socket.socket = conn
        reader = sock.makefile("rb")
        tls = False
        sender, rcpts = "", list[str]()

        def send(line: str) -> None:
            sock.sendall(line.encode() + b"\r\n")

        if self.behaviour != "stall-greeting":
            send(self.greeting)
        while True:
            line = reader.readline(_MAX_LINE)
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO" and self.behaviour == "no-ehlo":
                send("502 EHLO not implemented")
            elif verb in (b"EHLO", b"HELO"):
                extensions = ["PIPELINING", "8BITMIME"]
                if self.starttls and not tls:
                    extensions.append("STARTTLS")
                send(
                    "\r\n".join(
                        [
                            f"250-{self.name}",
                            *(f"250-{e}" for e in extensions[:-1]),
                            f"250 {extensions[-1]}",
                        ]
                    )
                )
            elif verb == b"STAR" and self.starttls and not tls:
                if self.behaviour == "refuse-starttls":
                    send("454 TLS not available")
                    continue
                if self.behaviour.startswith("break-handshake"):
                    send("220 go ahead")
                    sock.recv(_MAX_LINE)  # the ClientHello
                    sock.sendall(b"not TLS at all\r\n" * 4)
                    if self.behaviour == "break-handshake-then-refuse":
                        self.greeting = "554 no more"
                    return
                send("220 go ahead" + ("\r\n250 injected" if self.behaviour == "pipelined" else ""))
                assert self.context is not None
                sock = self.context.wrap_socket(conn, server_side=True)
                opened.append(sock)
                reader = sock.makefile("rb")
                tls = True
            elif verb == b"MAIL":
                sender, rcpts = line[10:].strip().decode(errors="replace"), []
                send("250 ok")
            elif verb == b"RCPT":
                rcpts.append(line[8:].strip().decode(errors="replace"))
                send("250 ok")
            elif verb == b"DATA":
                send("354 go ahead")
                data = b""
                while (chunk := reader.readline(_MAX_LINE)) not in (b".\r\n", b""):
                    data += chunk
                    if len(data) > _MAX_MESSAGE:
                        return
                with self._lock:
                    self.messages.append((tls, sender, tuple(rcpts), data))
                send("250 queued")
            elif verb == b"QUIT":
                send("221 bye")
                return
            elif verb in (b"RSET", b"NOOP"):
                send("250 ok")
            else:
                send("502 not implemented")

    def start(self) -> Self:
        """
        Bind a free loopback port and serve.

        Returns:
            The server.
        """
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError, ValueError):
                    outer._session(self.request)
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_RDWR)

        srv = _TLSServer(("127.0.0.1", 0), Handler)
        self.port = srv.server_address[1]
        self._servers = [srv]
        self._threads = _serve(srv)
        return self

    def close(self) -> None:
        """Stop serving."""
        _stop(self._servers, self._threads)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
