"""
Real HTTPS policy hosts for tests: stdlib ``ssl`` on loopback, a CA made in the test.

One :class:`HTTPSServer` listens on ``127.0.0.1:<free port>`` and serves many
policy hosts at once: it picks the behaviour by the SNI name of the
connection (the policy host), so one server plays a well-behaved host and
every hostile one. Each behaviour is a *handler* that writes raw bytes to the
TLS socket, which gives full control over the wire (chunking, HTTP/1.0,
drips, stalls, lies in ``Content-Length``). Certificates come from
:mod:`certfactory`; :meth:`HTTPSServer.certificate` swaps in a wrong-host,
expired or untrusted one for a given name.

Typical use::

    with HTTPSServer() as server:
        server.route("mta-sts.example.com", policy(ENFORCE))
        fetcher = HTTPSFetcher(
            trust=server.trust, connect_to=server.connect_to("mta-sts.example.com")
        )
"""

from __future__ import annotations

import gzip
import selectors
import socket
import ssl
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import attrs

import certfactory
from smtpsts.certs import TrustStore

__all__ = [
    "ENFORCE",
    "ConnectProxy",
    "HTTPSServer",
    "Handler",
    "Request",
    "chunked",
    "close_delimited",
    "gzip_body",
    "oversized",
    "policy",
    "raw",
    "redirect",
    "reset",
    "slow_drip",
    "stall",
]

Handler = Callable[[ssl.SSLSocket, threading.Event], None]
"""Writes one response to the socket; the event is set when the server stops."""

ENFORCE = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    b"max_age: 86400\r\n"
)


@attrs.frozen
class Request:
    """What a client sent: the SNI name and the request head."""

    sni: str | None
    head: bytes

    @property
    def lines(self) -> list[str]:
        """The request line and header lines."""
        return self.head.decode("latin-1").split("\r\n")

    def header(self, name: str) -> str | None:
        """The first value of a header, or ``None``."""
        prefix = name.lower() + ":"
        for line in self.lines[1:]:
            if line.lower().startswith(prefix):
                return line[len(prefix) :].strip()
        return None


# --------------------------------------------------------------------------- handlers


def raw(data: bytes) -> Handler:
    """Send ``data`` as is, then close."""

    def handler(conn: ssl.SSLSocket, _stop: threading.Event) -> None:
        conn.sendall(data)

    return handler


def policy(
    body: bytes = ENFORCE,
    *,
    status: str = "200 OK",
    content_type: str | None = "text/plain",
    headers: Iterable[str] = (),
    content_length: bool = True,
) -> Handler:
    """An HTTP/1.1 response with ``body`` (and a Content-Length unless told not to)."""
    head = [f"HTTP/1.1 {status}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if content_length:
        head.append(f"Content-Length: {len(body)}")
    head += [*headers, "Connection: close"]
    return raw(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def close_delimited(body: bytes, *, version: str = "HTTP/1.0") -> Handler:
    """A response without Content-Length whose body ends when the server closes."""
    return raw(f"{version} 200 OK\r\nContent-Type: text/plain\r\n\r\n".encode() + body)


def chunked(body: bytes, *, chunk: int = 4096) -> Handler:
    """A chunked HTTP/1.1 response."""
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    )


def gzip_body(body: bytes) -> Handler:
    """A gzip-compressed body (sent although the client asked for identity)."""
    data = gzip.compress(body)
    return raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
    )


def slow_drip(interval: float = 0.1, *, body: bytes = ENFORCE) -> Handler:
    """Headers at once, then the body one byte per ``interval`` seconds."""

    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for byte in body:
            if stop.wait(interval):
                return
            conn.sendall(bytes([byte]))

    return handler


def stall(seconds: float = 30.0, *, head: bytes = b"") -> Handler:
    """Send ``head`` (e.g. the response headers), then say nothing for ``seconds``."""

    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        if head:
            conn.sendall(head)
        stop.wait(seconds)

    return handler


def redirect(location: str, *, status: str = "301 Moved Permanently") -> Handler:
    """A 3xx answer sending the client to ``location`` (fetchers must not follow it)."""
    return policy(b"moved\n", status=status, headers=[f"Location: {location}"])


def oversized(size: int = 65536 + 1024, *, head: bytes = b"") -> Handler:
    """A 200 ``text/plain`` body of ``size`` bytes: ``head`` padded with comment-like filler."""
    filler = b"x" * max(0, size - len(head))
    return policy(head + filler)


def reset() -> Handler:
    """Read the request, then abort the connection with a TCP RST (no answer at all)."""

    def handler(conn: ssl.SSLSocket, _stop: threading.Event) -> None:
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return handler


# --------------------------------------------------------------------------- server


def _cap_version(context: ssl.SSLContext, max_tls: ssl.TLSVersion) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = max_tls
    with suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")


class HTTPSServer:
    """
    A TLS server on loopback serving policy hosts by SNI name.

    Args:
        max_tls: Offer no TLS version above this one (e.g. TLS 1.1).
        backlog: The listen backlog (raise it for hundreds of concurrent clients).

    Attributes:
        root: The test CA (trust it with :attr:`trust`).
        requests: Every request received, in order.
    """

    def __init__(self, *, max_tls: ssl.TLSVersion | None = None, backlog: int = 128) -> None:
        self.root = certfactory.make("smtpsts test root", ca=True)
        self.trust = TrustStore([self.root.cert])
        self._tmp = tempfile.TemporaryDirectory(prefix="smtpsts-https-")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.requests: list[Request] = []
        self._counter = 0
        self._default = self._context(self.root, "localhost")
        self._default.sni_callback = self._pick
        if max_tls is not None:
            # The version is settled by the context the handshake starts with.
            _cap_version(self._default, max_tls)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.backlog = backlog
        self.port = 0

    # ------------------------------------------------------------------ setup

    def _context(
        self, issuer: certfactory.Issued, *names: str, **options: object
    ) -> ssl.SSLContext:
        leaf = certfactory.make(names[0], issuer=issuer, san=list(names), **options)  # type: ignore[arg-type]
        self._counter += 1
        path = Path(self._tmp.name) / f"cert{self._counter}.pem"
        path.write_bytes(certfactory.chain_pem(leaf))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context

    def _pick(self, sock: ssl.SSLObject, name: str, _ctx: ssl.SSLContext) -> None:
        sock.sni = name  # type: ignore[attr-defined]  # what the client sent (STS-FETCH-04)
        with self._lock:
            context = self._contexts.get((name or "").lower())
        if context is not None:
            sock.context = context

    def route(self, host: str, handler: Handler) -> None:
        """Serve ``handler`` for connections whose SNI is ``host`` (a valid cert by default)."""
        host = host.lower()
        with self._lock:
            self._routes[host] = handler
            known = host in self._contexts
        if not known:
            self.certificate(host)

    def certificate(
        self,
        host: str,
        *,
        names: Iterable[str] | None = None,
        not_after: datetime | None = None,
        untrusted: bool = False,
    ) -> None:
        """
        Choose the certificate served for SNI ``host``.

        Args:
            host: The SNI name.
            names: The SAN names (default: ``host``), e.g. another host's name.
            not_after: End of validity (a past time makes it expired).
            untrusted: Issue it from a CA the client does not trust.
        """
        issuer = certfactory.make("some other CA", ca=True) if untrusted else self.root
        options: dict[str, object] = {}
        if not_after is not None:
            options["not_after"] = not_after
            options["not_before"] = datetime(2000, 1, 1, tzinfo=UTC)
        context = self._context(issuer, *(list(names) if names else [host]), **options)
        with self._lock:
            self._contexts[host.lower()] = context

    def hits(self, host: str) -> int:
        """How many requests arrived for SNI ``host``."""
        with self._lock:
            return sum(1 for r in self.requests if r.sni == host.lower())

    def connect_to(self, *hosts: str) -> dict[tuple[str, int], tuple[str, int]]:
        """The fetchers' ``connect_to`` mapping sending ``hosts`` port 443 here."""
        return {(h.lower(), 443): ("127.0.0.1", self.port) for h in hosts}

    # ------------------------------------------------------------------ serving

    def start(self) -> Self:
        """Listen on a free loopback port and accept in a thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(self.backlog)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)

    def _serve(self, plain: socket.socket) -> None:
        plain.settimeout(5)
        try:
            conn = self._default.wrap_socket(plain, server_side=True)
        except (OSError, ssl.SSLError):
            plain.close()
            return
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            sni: str | None = getattr(conn, "sni", None)
            request = Request(sni.lower() if sni else None, head.partition(b"\r\n\r\n")[0])
            with self._lock:
                self.requests.append(request)
                handler = self._routes.get(request.sni or "")
            if handler is None:
                handler = policy(b"no such host\n", status="404 Not Found")
            with suppress(OSError):
                handler(conn, self._stop)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Stop serving; handlers that stall are woken up."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConnectProxy:
    """
    A tiny HTTP ``CONNECT`` proxy on loopback, for the explicit-proxy setting.

    It tunnels ``CONNECT host:port`` to ``routes[(host, port)]`` and records
    each authority asked for. ``reply`` replaces the ``200`` answer (e.g. a
    ``403``, or garbage); ``stall`` makes it say nothing at all.

    Args:
        routes: Where each ``(host, port)`` really is.
    """

    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]]) -> None:
        self.routes = routes
        self.asked: list[str] = []
        self.reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
        self.stall = False
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The ``proxy`` setting of the fetchers."""
        return ("127.0.0.1", self.port)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, suppress(OSError):
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            authority = head.split(b" ", 2)[1].decode("ascii")
            self.asked.append(authority)
            if self.stall:
                self._stop.wait(30)
                return
            conn.sendall(self.reply)
            host, _, port = authority.rpartition(":")
            route = self.routes.get((host, int(port)))
            if not self.reply.startswith(b"HTTP/1.1 200") or route is None:
                return
            with socket.create_connection(route, timeout=5) as upstream:
                self._pipe(conn, upstream)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)
