"""
HTTPS policy fetchers: sync on :mod:`http.client` + :mod:`ssl`, asyncio on h11.

Both answer the machine's :class:`~smtpsts.actions.FetchPolicy` with an
:class:`~smtpsts.actions.HTTPResponse` or a
:class:`~smtpsts.actions.FetchFailed`, and both keep the fetch rules of
RFC 8461 §3.3 that only an adapter can keep (CONFORMANCE.md §2.3):

- one wall-clock deadline (``FetchPolicy.timeout``) for address lookup,
  connect, TLS, headers and body; every socket read waits at most for the
  time left (STS-FETCH-11);
- TLS 1.2 or later, the certificate verified by OpenSSL against the
  configured trust anchors for the policy host name, and SNI set to it, even
  when ``connect_to`` sends the connection elsewhere (STS-FETCH-03,
  STS-FETCH-04, STS-FETCH-05);
- exactly one request: a 3xx is returned as is, never followed
  (STS-FETCH-07); no cookies, no credentials, no Referer, no proxy taken
  from the environment (SEC-06), no cache validators (STS-FETCH-08);
- the body is read only for a 200 with an acceptable media type, and never
  more than ``max_bytes + 1`` decoded bytes are kept; a larger body stops the
  read (STS-FETCH-12, STS-FETCH-13).

Status, media type and size are then judged by the core
(:meth:`~smtpsts.actions.FetchPolicy.validate`); the adapters only move bytes
and turn exceptions into :class:`~smtpsts.actions.FetchFailed` values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import io
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Final
from urllib.parse import urlsplit

import attrs
import h11

from smtpsts.actions import (
    FetchFailed,
    FetchFailure,
    FetchPolicy,
    HTTPResponse,
    content_type_is_text_plain,
)
from smtpsts.certs import TrustStore
from smtpsts.io.dns import AddressAnswer, AsyncDNSResolver, DNSNotFound, DNSResolver

__all__ = [
    "AsyncHTTPSFetcher",
    "ConnectTo",
    "HTTPSFetcher",
    "RevocationCheck",
    "make_ssl_context",
    "parse_connect_to",
]

ConnectTo = Mapping[tuple[str, int], tuple[str, int]]
"""``{(host, port): (address, port)}``: where to connect instead (curl's ``--connect-to``)."""

RevocationCheck = Callable[[str, bytes], str | None]
"""``check(policy_host, leaf_der)``: ``None`` if fine, else why the certificate is rejected."""

USER_AGENT: Final = "smtpsts"
"""The ``User-Agent`` of policy requests."""

MAX_HEADER_BYTES: Final = 16384
"""The most bytes of status line plus headers read (h11's default event cap)."""

_READ_SIZE: Final = 16384

# OpenSSL X509_V_ERR_* codes -> failure-reason-code (CONFORMANCE.md §4.4).
_X509_CODES: Final = {
    9: "not-yet-valid",  # X509_V_ERR_CERT_NOT_YET_VALID
    10: "certificate-expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    2: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: "certificate-not-trusted",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate-not-trusted",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: "certificate-host-mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
}


def make_ssl_context(trust: TrustStore | None = None) -> ssl.SSLContext:
    """
    Build the TLS client context for policy fetches.

    Args:
        trust: The trust anchors; ``None`` means OpenSSL's default paths (the
            system bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``).

    Returns:
        A context that requires TLS >= 1.2 (STS-FETCH-05), a certificate
        chaining to ``trust`` and valid now, and the host name checked by
        OpenSSL (STS-FETCH-03); ALPN offers ``http/1.1`` only.

    Raises:
        ValueError: ``trust`` holds no certificates.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if trust is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        if not trust.certificates:
            raise ValueError("the trust store is empty")
        from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

        pem = "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in trust.certificates)
        context.load_verify_locations(cadata=pem)
    context.set_alpn_protocols(["http/1.1"])
    return context


def parse_connect_to(specs: Iterable[str]) -> dict[tuple[str, int], tuple[str, int]]:
    """
    Parse ``HOST:PORT:ADDR:PORT`` settings (curl's ``--connect-to``).

    IPv6 addresses are written in brackets: ``mta-sts.example.com:443:[::1]:8443``.

    Args:
        specs: The settings.

    Returns:
        The ``connect_to`` mapping for the fetchers.

    Raises:
        ValueError: A setting is malformed.
    """
    result: dict[tuple[str, int], tuple[str, int]] = {}
    for spec in specs:
        host, sep1, rest = spec.partition(":")
        port, sep2, rest = rest.partition(":")
        if rest.startswith("["):
            address, sep3, tail = rest[1:].partition("]")
            target_port = tail[1:] if tail.startswith(":") else ""
        else:
            address, sep3, target_port = rest.rpartition(":")
        if not (sep1 and sep2 and sep3 and host and address):
            raise ValueError(f"invalid connect-to {spec!r}: expected HOST:PORT:ADDR:PORT")
        if not (port.isdigit() and target_port.isdigit()):
            raise ValueError(f"invalid connect-to {spec!r}: ports must be numbers")
        result[(host.lower().rstrip("."), int(port))] = (address, int(target_port))
    return result


# --------------------------------------------------------------------------- shared


@attrs.define
class _Target:
    host: str
    port: int
    path: str


def _target(request: FetchPolicy) -> _Target:
    parts = urlsplit(request.url)
    # STS-FETCH-01: https, fixed path, no query string, no userinfo.
    return _Target(request.host.lower(), parts.port or 443, parts.path or "/")


def _request_headers(request: FetchPolicy, target: _Target) -> list[tuple[str, str]]:
    host = target.host if target.port == 443 else f"{target.host}:{target.port}"
    # SEC-06: no Cookie, Authorization or Referer; STS-FETCH-08: no validators.
    return [
        ("Host", host),
        ("User-Agent", USER_AGENT),
        *request.headers,
        ("Connection", "close"),
    ]


class _Deadline:
    """One wall-clock deadline for a whole fetch (STS-FETCH-11)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"policy fetch deadline of {self.seconds:g} s passed")
        return remaining


class _TooLargeError(Exception):
    pass


class _BodySink:
    """Collects at most ``max_bytes + 1`` decoded body bytes (STS-FETCH-12, -13)."""

    def __init__(self, max_bytes: int, encoding: str | None) -> None:
        self.limit = max_bytes + 1
        self.body = bytearray()
        self.wire = 0
        coding = (encoding or "identity").strip().lower()
        self.decoder: zlib._Decompress | None
        if coding in ("identity", ""):
            self.decoder = None
        elif coding in ("gzip", "x-gzip", "deflate"):
            # STS-FETCH-13: we asked for identity; a server that compresses
            # anyway gets its body decoded under the same cap (no bombs).
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)
        else:
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def feed(self, data: bytes) -> None:
        self.wire += len(data)
        if self.decoder is None:
            self.body += data[: self.limit - len(self.body)]
        else:
            try:
                self.body += self.decoder.decompress(data, self.limit - len(self.body))
            except zlib.error as exc:
                raise ValueError(f"bad compressed body: {exc}") from None
            if self.decoder.unconsumed_tail:
                self.body += b"\0"  # more output exists: the cap is crossed
        if len(self.body) >= self.limit or self.wire > self.limit + 1024:
            raise _TooLargeError

    def result(self) -> bytes:
        return bytes(self.body)


def _too_large(request: FetchPolicy) -> FetchFailed:
    return FetchFailed(
        FetchFailure.POLICY_TOO_LARGE, f"policy body exceeds {request.max_bytes} bytes"
    )


def _timeout(request: FetchPolicy, during: str) -> FetchFailed:
    return FetchFailed(
        FetchFailure.TIMEOUT, f"no complete response within {request.timeout:g} s ({during})"
    )


def _tls_failure(exc: ssl.SSLError) -> FetchFailed:
    if isinstance(exc, ssl.SSLCertVerificationError):
        # RFC 8461 §3.3 / RFC 8460 §4.3.2.2: sts-webpki-invalid (STS-FETCH-03).
        code = exc.verify_code
        return FetchFailed(
            FetchFailure.WEBPKI,
            f"certificate verification failed: {exc.verify_message} ({code})",
            code=_X509_CODES.get(code, f"x509-error-{code}"),
        )
    reason = (exc.reason or type(exc).__name__).lower().replace("_", "-")
    return FetchFailed(FetchFailure.TLS_ERROR, f"TLS handshake failed: {exc}", code=f"tls-{reason}")


def _body_wanted(request: FetchPolicy, status: int, content_type: str | None) -> bool:
    # Only a 200 with an acceptable media type can yield a policy: nothing
    # else is worth reading (STS-FETCH-06, STS-FETCH-09).
    return status == 200 and (
        not request.require_text_plain or content_type_is_text_plain(content_type)
    )


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


@attrs.define
class _Settings:
    ssl_context: ssl.SSLContext
    connect_to: dict[tuple[str, int], tuple[str, int]]
    block_private_addresses: bool
    proxy: tuple[str, int] | None
    revocation_check: RevocationCheck | None


def _settings(
    *,
    trust: TrustStore | None,
    ssl_context: ssl.SSLContext | None,
    connect_to: ConnectTo | None,
    block_private_addresses: bool,
    proxy: tuple[str, int] | None,
    revocation_check: RevocationCheck | None,
) -> _Settings:
    return _Settings(
        ssl_context if ssl_context is not None else make_ssl_context(trust),
        {(h.lower().rstrip("."), p): a for (h, p), a in (connect_to or {}).items()},
        block_private_addresses,
        proxy,
        revocation_check,
    )


def _revoked(settings: _Settings, host: str, der: bytes | None) -> FetchFailed | None:
    # RFC 8461 §3.3 (STS-FETCH-17, SEC-05): optional revocation check of the
    # policy host certificate; a revoked certificate is a PKIX failure.
    if settings.revocation_check is None or der is None:
        return None
    problem = settings.revocation_check(host, der)
    if problem is None:
        return None
    return FetchFailed(
        FetchFailure.WEBPKI,
        f"policy host certificate rejected: {problem}",
        code="certificate-revoked",
    )


def _connect_request(target: _Target, settings: _Settings) -> tuple[str, bytes]:
    # With a proxy, connect_to rewrites the CONNECT authority (curl does the same).
    address, port = settings.connect_to.get((target.host, target.port), (target.host, target.port))
    authority = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return authority, f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii")


def _connect_reply(head: bytes, authority: str) -> FetchFailed | None:
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"proxy sent a malformed reply: {status_line[:80]!r}")
    if not 200 <= int(parts[1]) < 300:
        return FetchFailed(
            FetchFailure.CONNECT_ERROR,
            f"proxy refused CONNECT {authority}: {status_line[:80]}",
            code=f"proxy-http-{parts[1]}",
        )
    return None


def _addresses_from(
    result: AddressAnswer | DNSNotFound | object, host: str
) -> list[str] | FetchFailed:
    if isinstance(result, AddressAnswer):
        return list(result.addresses)
    if isinstance(result, DNSNotFound):
        # STS-FETCH-21: the policy host does not resolve.
        return FetchFailed(FetchFailure.DNS_ERROR, f"{host}: no such host")
    return FetchFailed(FetchFailure.DNS_ERROR, f"{host}: address lookup failed: {result}")


def _check_private(settings: _Settings, host: str, addresses: list[str]) -> FetchFailed | None:
    if settings.block_private_addresses and any(_private(a) for a in addresses):
        # SEC-07: optional SSRF guard.
        return FetchFailed(
            FetchFailure.CONNECT_ERROR,
            f"{host} resolves to a loopback, private or link-local address",
            code="private-address",
        )
    return None


# --------------------------------------------------------------------------- sync


_POOL: list[concurrent.futures.ThreadPoolExecutor] = []


def _lookup_pool() -> concurrent.futures.ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(
            concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtpsts-dns")
        )
    return _POOL[0]


class _DeadlineReader(io.RawIOBase):
    # Each recv waits at most for the time left, so a slow drip cannot
    # stretch the fetch past its deadline (STS-FETCH-11).
    def __init__(self, sock: ssl.SSLSocket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer)


class _SocketShim:
    # http.client.HTTPResponse reads through sock.makefile("rb").
    def __init__(self, reader: _DeadlineReader) -> None:
        self._reader = reader

    def makefile(self, *_args: object, **_kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(self._reader, _READ_SIZE)


class HTTPSFetcher:
    """
    Synchronous policy fetcher on :mod:`http.client` and :mod:`ssl`.

    Args:
        trust: Trust anchors for the policy host certificate; ``None`` means
            the system's (see :func:`make_ssl_context`).
        ssl_context: A ready context to use instead of building one.
        resolver: Resolve the policy host with this adapter (bounded by the
            deadline); ``None`` uses :func:`socket.getaddrinfo`.
        connect_to: Connect elsewhere for some ``(host, port)``; TLS, SNI
            and ``Host`` still use the policy host.
        block_private_addresses: Refuse policy hosts that resolve to
            loopback, private or link-local addresses (SEC-07); not checked
            when a proxy resolves the name.
        proxy: ``(host, port)`` of an HTTP proxy to tunnel through with
            ``CONNECT``; only ever this explicit setting, never the
            environment (SEC-06).
        revocation_check: Called with the policy host and the DER of its
            verified certificate; returning a reason rejects the
            certificate as ``sts-webpki-invalid`` (STS-FETCH-17). Off by default.
    """

    def __init__(
        self,
        *,
        trust: TrustStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        resolver: DNSResolver | None = None,
        connect_to: ConnectTo | None = None,
        block_private_addresses: bool = False,
        proxy: tuple[str, int] | None = None,
        revocation_check: RevocationCheck | None = None,
    ) -> None:
        self._settings = _settings(
            trust=trust,
            ssl_context=ssl_context,
            connect_to=connect_to,
            block_private_addresses=block_private_addresses,
            proxy=proxy,
            revocation_check=revocation_check,
        )
        self.resolver = resolver

    def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        """
        Perform one policy request.

        Args:
            request: The machine's action.

        Returns:
            The final response (the body only for a 200 with an acceptable
            media type), or why there is none.
        """
        deadline = _Deadline(request.timeout)
        target = _target(request)
        stage = "connect"
        sock: socket.socket | None = None
        try:
            proxy = self._settings.proxy
            endpoints = [proxy] if proxy else self._endpoints(target, deadline)
            if isinstance(endpoints, FetchFailed):
                return endpoints
            connected = self._connect(endpoints, deadline)
            if isinstance(connected, FetchFailed):
                return connected
            sock = connected
            if proxy:
                stage = "proxy CONNECT"
                refused = self._tunnel(sock, target, deadline)
                if refused is not None:
                    return refused
            stage = "TLS handshake"
            sock.settimeout(deadline.left())
            tls = self._settings.ssl_context.wrap_socket(sock, server_hostname=target.host)
            sock = tls
            revoked = _revoked(self._settings, target.host, tls.getpeercert(binary_form=True))
            if revoked is not None:
                return revoked
            stage = "request"
            tls.sendall(_encode_request(request, target))
            stage = "response headers"
            response = http.client.HTTPResponse(
                _SocketShim(_DeadlineReader(tls, deadline)),  # type: ignore[arg-type]
                method="GET",
            )
            response.begin()
            stage = "body"
            return _read_sync(request, response)
        except TimeoutError:
            return _timeout(request, stage)
        except ssl.SSLError as exc:
            return _tls_failure(exc)
        except (http.client.HTTPException, ValueError) as exc:
            return FetchFailed(FetchFailure.PROTOCOL_ERROR, f"{stage}: {type(exc).__name__}: {exc}")
        except OSError as exc:
            return FetchFailed(FetchFailure.CONNECT_ERROR, f"{stage}: {exc}")
        finally:
            if sock is not None:
                with suppress(OSError):
                    sock.close()

    def _endpoints(
        self, target: _Target, deadline: _Deadline
    ) -> list[tuple[str, int]] | FetchFailed:
        override = self._settings.connect_to.get((target.host, target.port))
        if override is not None:
            return [override]
        if self.resolver is not None:
            found = _addresses_from(
                self.resolver.lookup_addresses(target.host, lifetime=deadline.left()), target.host
            )
        else:
            try:
                # getaddrinfo() has no timeout of its own: wait for it in a
                # worker thread for no longer than the deadline allows.
                infos = (
                    _lookup_pool()
                    .submit(socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM)
                    .result(timeout=deadline.left())
                )
            except socket.gaierror as exc:
                return FetchFailed(FetchFailure.DNS_ERROR, f"{target.host}: {exc}")
            found = [str(info[4][0]) for info in infos]
        if isinstance(found, FetchFailed):
            return found
        blocked = _check_private(self._settings, target.host, found)
        if blocked is not None:
            return blocked
        return [(address, target.port) for address in dict.fromkeys(found)]

    def _tunnel(
        self, sock: socket.socket, target: _Target, deadline: _Deadline
    ) -> FetchFailed | None:
        authority, request = _connect_request(target, self._settings)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEADER_BYTES:
                raise ValueError("proxy reply head too large")
            sock.settimeout(deadline.left())
            data = sock.recv(4096)
            if not data:
                raise ValueError("proxy closed the connection")
            head += data
        reply, _, rest = head.partition(b"\r\n\r\n")
        if rest:
            raise ValueError("proxy sent data before the tunnel was used")
        return _connect_reply(reply, authority)

    @staticmethod
    def _connect(
        endpoints: list[tuple[str, int]], deadline: _Deadline
    ) -> socket.socket | FetchFailed:
        errors: list[str] = []
        for address, port in endpoints:
            try:
                return socket.create_connection((address, port), timeout=deadline.left())
            except TimeoutError:
                raise
            except OSError as exc:
                errors.append(f"{address}:{port}: {exc}")
        return FetchFailed(FetchFailure.CONNECT_ERROR, "; ".join(errors))


def _encode_request(request: FetchPolicy, target: _Target) -> bytes:
    lines = [f"GET {target.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in _request_headers(request, target)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _read_sync(
    request: FetchPolicy, response: http.client.HTTPResponse
) -> HTTPResponse | FetchFailed:
    status = response.status
    content_type = response.getheader("Content-Type")
    headers = tuple(response.getheaders())
    if not _body_wanted(request, status, content_type):
        return HTTPResponse(status, content_type, b"", headers)
    length = response.length
    if length is not None and length > request.max_bytes and not response.chunked:
        # The announced body is already too large: do not read it.
        return _too_large(request)
    sink = _BodySink(request.max_bytes, response.getheader("Content-Encoding"))
    try:
        while chunk := response.read1(_READ_SIZE):
            sink.feed(chunk)
    except _TooLargeError:
        return _too_large(request)
    if response.length:
        # read1() reports a premature close as the end; the length says otherwise.
        raise http.client.IncompleteRead(sink.result(), response.length)
    return HTTPResponse(status, content_type, sink.result(), headers)


# --------------------------------------------------------------------------- asyncio


class AsyncHTTPSFetcher:
    """
    asyncio policy fetcher on h11 over asyncio streams.

    The arguments are those of :class:`HTTPSFetcher`, with an
    :class:`~smtpsts.io.dns.AsyncDNSResolver` (``None`` uses the event
    loop's ``getaddrinfo``, bounded by the deadline too).

    Args:
        trust: Trust anchors for the policy host certificate.
        ssl_context: A ready context to use instead of building one.
        resolver: Resolve the policy host with this adapter.
        connect_to: Connect elsewhere for some ``(host, port)``.
        block_private_addresses: Refuse private policy host addresses (SEC-07).
        proxy: ``(host, port)`` of an HTTP ``CONNECT`` proxy (SEC-06).
        revocation_check: Revocation hook for the policy host certificate
            (STS-FETCH-17).
    """

    def __init__(
        self,
        *,
        trust: TrustStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AsyncDNSResolver | None = None,
        connect_to: ConnectTo | None = None,
        block_private_addresses: bool = False,
        proxy: tuple[str, int] | None = None,
        revocation_check: RevocationCheck | None = None,
    ) -> None:
        self._settings = _settings(
            trust=trust,
            ssl_context=ssl_context,
            connect_to=connect_to,
            block_private_addresses=block_private_addresses,
            proxy=proxy,
            revocation_check=revocation_check,
        )
        self.resolver = resolver

    async def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        """
        Perform one policy request; see :meth:`HTTPSFetcher.fetch`.

        Args:
            request: The machine's action.

        Returns:
            The final response, or why there is none.
        """
        progress = ["connect"]
        try:
            async with asyncio.timeout(request.timeout):
                return await self._fetch(request, progress)
        except TimeoutError:
            return _timeout(request, progress[-1])

    async def _endpoints(
        self, target: _Target, deadline: _Deadline
    ) -> list[tuple[str, int]] | FetchFailed:
        override = self._settings.connect_to.get((target.host, target.port))
        if override is not None:
            return [override]
        if self.resolver is not None:
            found = _addresses_from(
                await self.resolver.lookup_addresses(target.host, lifetime=deadline.left()),
                target.host,
            )
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                return FetchFailed(FetchFailure.DNS_ERROR, f"{target.host}: {exc}")
            found = [str(info[4][0]) for info in infos]
        if isinstance(found, FetchFailed):
            return found
        blocked = _check_private(self._settings, target.host, found)
        if blocked is not None:
            return blocked
        return [(address, target.port) for address in dict.fromkeys(found)]

    async def _fetch(self, request: FetchPolicy, progress: list[str]) -> HTTPResponse | FetchFailed:
        deadline = _Deadline(request.timeout)
        target = _target(request)
        proxy = self._settings.proxy
        endpoints = [proxy] if proxy else await self._endpoints(target, deadline)
        if isinstance(endpoints, FetchFailed):
            return endpoints
        errors: list[str] = []
        for address, port in endpoints:
            try:
                if proxy:
                    reader, writer = await asyncio.open_connection(address, port, limit=_READ_SIZE)
                else:
                    reader, writer = await asyncio.open_connection(
                        address,
                        port,
                        ssl=self._settings.ssl_context,
                        server_hostname=target.host,  # STS-FETCH-04: SNI is the policy host
                        ssl_handshake_timeout=deadline.left(),
                        limit=_READ_SIZE,
                    )
            except ssl.SSLError as exc:
                return _tls_failure(exc)
            except TimeoutError:
                raise
            except OSError as exc:
                errors.append(f"{address}:{port}: {exc}")
                continue
            try:
                if proxy:
                    progress.append("proxy CONNECT")
                    refused = await self._tunnel(reader, writer, target, deadline)
                    if refused is not None:
                        return refused
                transport_ssl = writer.get_extra_info("ssl_object")
                revoked = _revoked(
                    self._settings, target.host, transport_ssl.getpeercert(binary_form=True)
                )
                if revoked is not None:
                    return revoked
                progress.append("request")
                return await _exchange(request, target, reader, writer, progress)
            except ssl.SSLError as exc:
                return _tls_failure(exc)
            except (h11.ProtocolError, ValueError, asyncio.LimitOverrunError) as exc:
                return FetchFailed(
                    FetchFailure.PROTOCOL_ERROR, f"{progress[-1]}: {type(exc).__name__}: {exc}"
                )
            except TimeoutError:
                raise
            except OSError as exc:
                return FetchFailed(FetchFailure.CONNECT_ERROR, f"{progress[-1]}: {exc}")
            finally:
                writer.transport.abort()
        return FetchFailed(FetchFailure.CONNECT_ERROR, "; ".join(errors))

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: _Target,
        deadline: _Deadline,
    ) -> FetchFailed | None:
        authority, request = _connect_request(target, self._settings)
        writer.write(request)
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise ValueError("proxy closed the connection") from None
        refused = _connect_reply(head, authority)
        if refused is None:
            await writer.start_tls(
                self._settings.ssl_context,
                server_hostname=target.host,
                ssl_handshake_timeout=deadline.left(),
            )
        return refused


async def _exchange(
    request: FetchPolicy,
    target: _Target,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    progress: list[str],
) -> HTTPResponse | FetchFailed:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
    writer.write(
        conn.send(
            h11.Request(method="GET", target=target.path, headers=_request_headers(request, target))
        )
        + conn.send(h11.EndOfMessage())
    )
    await writer.drain()
    progress.append("response headers")
    response: h11.Response | None = None
    sink: _BodySink | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            response = event
            content_type = _header(event.headers, b"content-type")
            headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers)
            if not _body_wanted(request, event.status_code, content_type):
                return HTTPResponse(event.status_code, content_type, b"", headers)
            length = _header(event.headers, b"content-length")
            if length is not None and length.isdigit() and int(length) > request.max_bytes:
                return _too_large(request)
            sink = _BodySink(request.max_bytes, _header(event.headers, b"content-encoding"))
            progress.append("body")
            continue
        if isinstance(event, h11.Data):
            assert sink is not None  # h11 sends Response first
            try:
                sink.feed(bytes(event.data))
            except _TooLargeError:
                return _too_large(request)
            continue
        if isinstance(event, h11.EndOfMessage):
            assert response is not None
            assert sink is not None
            return HTTPResponse(
                response.status_code,
                _header(response.headers, b"content-type"),
                sink.result(),
                tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers),
            )
        # ConnectionClosed before the end of the message.
        raise ValueError("connection closed before the response was complete")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
