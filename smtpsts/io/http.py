"""
HTTPS policy fetchers, sync and asyncio, on one path: h11 over TLS (issue 11).

One fetch is one conversation (``_fetch``: address lookup, connect, proxy
``CONNECT``, TLS, the h11 exchange of :mod:`smtpsts.io._http11`, judging the
body), run by :func:`~smtpsts.io._drive.drive` over a blocking socket or by
:func:`~smtpsts.io._drive.adrive` over asyncio streams. Both fetchers answer
the machine's :class:`~smtpsts.actions.FetchPolicy` with an
:class:`~smtpsts.actions.HTTPResponse` or a
:class:`~smtpsts.actions.FetchFailed`, and both keep the fetch rules of
RFC 8461 §3.3 that only an adapter can keep (docs/conformance.md, STS-FETCH):

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
and turn exceptions into :class:`~smtpsts.actions.FetchFailed` values -- but
never a local fault: out of descriptors, buffers or memory (``EMFILE``,
``ENFILE``, ``ENOBUFS``, ``ENOMEM``, :class:`MemoryError`), a fetch raises
:class:`~smtpsts.LocalResourceError`, which is no verdict on the policy host
and must start no fetch backoff (issue 17; RFC 8461 §10).

The module is over 600 lines because it holds two public fetchers with
their documented settings, the TLS context and ``connect_to`` parsing, and
the one fetch conversation they share; the HTTP/1.1 exchange itself is in
:mod:`smtpsts.io._http11`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import suppress
from typing import Any, Final, Generic, TypeVar
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
from smtpsts.io._drive import adrive, drive
from smtpsts.io._faults import lookup_fault, raise_local_fault
from smtpsts.io._http11 import (
    MAX_HEADER_BYTES,
    NO_RESPONSE,
    Deadline,
    Receive,
    Response,
    Send,
    exchange,
    perform_on_socket,
    perform_on_stream,
)
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

_READ_SIZE: Final = 16384

_Resolver = TypeVar("_Resolver", DNSResolver, AsyncDNSResolver)

# OpenSSL X509_V_ERR_* codes -> failure-reason-code (RFC 8460 §4.3; docs/tlsrpt-results.md).
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


def _domain(target: _Target) -> str | None:
    # STS-FETCH-02: the policy host is mta-sts.<domain>.
    return target.host.removeprefix("mta-sts.") if target.host.startswith("mta-sts.") else None


def _local(exc: BaseException, target: _Target, stage: str, where: str | None = None) -> None:
    # Issue 17: a local fault (EMFILE, ENOBUFS, MemoryError...) is raised as
    # LocalResourceError, never returned as a FetchFailed the machine would
    # store with a fetch backoff.
    host = target.host if where is None else f"{target.host} ({where})"
    raise_local_fault(exc, operation=f"policy fetch ({stage})", host=host, domain=_domain(target))


def _lookup_failed(exc: OSError, target: _Target) -> FetchFailed:
    # getaddrinfo() out of descriptors says "Name or service not known":
    # check before calling it a DNS error of the policy host.
    fault = lookup_fault(
        exc, operation="policy fetch (address lookup)", host=target.host, domain=_domain(target)
    )
    if fault is not None:
        raise fault from exc
    return FetchFailed(FetchFailure.DNS_ERROR, f"{target.host}: {exc}")


# --------------------------------------------------------------------------- the fetch


@attrs.frozen
class _LookupAddresses:
    """Step: the policy host's addresses (a resolver answer or ``getaddrinfo``'s list)."""

    host: str
    port: int


@attrs.frozen
class _Connect:
    """Step: open a TCP connection to one address (the result is ``None``)."""

    address: str
    port: int


@attrs.frozen
class _StartTLS:
    """Step: TLS on the connection, SNI ``host``; the result is the peer's DER certificate."""

    host: str


_Step = _LookupAddresses | _Connect | _StartTLS | Send | Receive


def _fetch(
    request: FetchPolicy, settings: _Settings, stage: list[str]
) -> Generator[_Step, Any, HTTPResponse | FetchFailed]:
    # One policy fetch, for both fetchers: every failure becomes a
    # FetchFailed here, except a local fault (issue 17).
    target = _target(request)
    try:
        return (yield from _fetch_steps(request, target, settings, stage))
    except TimeoutError:
        return _timeout(request, stage[-1])
    except ssl.SSLError as exc:
        return _tls_failure(exc)
    except (h11.ProtocolError, ValueError) as exc:
        return _protocol_error(exc, stage)
    except (OSError, MemoryError) as exc:
        if isinstance(exc, ConnectionError) and exc.args == (NO_RESPONSE,):
            # A close before any response head is broken HTTP (STS-FETCH-18).
            return _protocol_error(exc, stage)
        _local(exc, target, stage[-1])
        return FetchFailed(FetchFailure.CONNECT_ERROR, f"{stage[-1]}: {exc}")


def _protocol_error(exc: Exception, stage: list[str]) -> FetchFailed:
    return FetchFailed(FetchFailure.PROTOCOL_ERROR, f"{stage[-1]}: {type(exc).__name__}: {exc}")


def _fetch_steps(
    request: FetchPolicy, target: _Target, settings: _Settings, stage: list[str]
) -> Generator[_Step, Any, HTTPResponse | FetchFailed]:
    proxy = settings.proxy
    endpoints = [proxy] if proxy else (yield from _endpoints(target, settings))
    if isinstance(endpoints, FetchFailed):
        return endpoints
    errors: list[str] = []
    for address, port in endpoints:
        try:
            yield _Connect(address, port)
            break
        except TimeoutError:
            raise
        except OSError as exc:
            # Out of descriptors: no other address would fare better.
            _local(exc, target, "connect", f"{address}:{port}")
            errors.append(f"{address}:{port}: {exc}")
    else:
        return FetchFailed(FetchFailure.CONNECT_ERROR, "; ".join(errors))
    if proxy:
        stage.append("proxy CONNECT")
        refused = yield from _tunnel(target, settings)
        if refused is not None:
            return refused
    stage.append("TLS handshake")
    revoked = _revoked(settings, target.host, (yield _StartTLS(target.host)))
    if revoked is not None:
        return revoked
    stage.append("request")

    def wanted(head: Response) -> bool:
        if not _body_wanted(request, head.status, head.header("content-type")):
            return False
        stage.append("body")
        # An announced body that is already too large is not read.
        length = head.header("content-length")
        return not (length is not None and length.isdigit() and int(length) > request.max_bytes)

    response = yield from exchange(
        "GET",
        target.path,
        _request_headers(request, target),
        # The wire cap of _BodySink: decoded max_bytes + 1, wire 1 KiB more.
        max_body=request.max_bytes + 1025,
        read_body=wanted,
        max_header_bytes=MAX_HEADER_BYTES,
    )
    return _policy_response(request, response)


def _endpoints(
    target: _Target, settings: _Settings
) -> Generator[_Step, Any, list[tuple[str, int]] | FetchFailed]:
    override = settings.connect_to.get((target.host, target.port))
    if override is not None:
        return [override]
    try:
        answer = yield _LookupAddresses(target.host, target.port)
    except TimeoutError:
        raise
    except OSError as exc:
        # In asyncio's executor thread glibc reports EMFILE as EAI_SYSTEM,
        # which arrives as a plain OSError rather than a gaierror.
        return _lookup_failed(exc, target)
    found = answer if isinstance(answer, list) else _addresses_from(answer, target.host)
    if isinstance(found, FetchFailed):
        return found
    blocked = _check_private(settings, target.host, found)
    if blocked is not None:
        return blocked
    return [(address, target.port) for address in dict.fromkeys(found)]


def _tunnel(target: _Target, settings: _Settings) -> Generator[_Step, Any, FetchFailed | None]:
    authority, request = _connect_request(target, settings)
    yield Send(request)
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_HEADER_BYTES:
            raise ValueError("proxy reply head too large")
        data = yield Receive(4096)
        if not data:
            raise ValueError("proxy closed the connection")
        head += data
    reply, _, rest = head.partition(b"\r\n\r\n")
    if rest:
        raise ValueError("proxy sent data before the tunnel was used")
    return _connect_reply(reply, authority)


def _policy_response(request: FetchPolicy, response: Response) -> HTTPResponse | FetchFailed:
    content_type = response.header("content-type")
    if not _body_wanted(request, response.status, content_type):
        return HTTPResponse(response.status, content_type, b"", response.headers)
    if response.truncated or not response.body_read:
        return _too_large(request)
    sink = _BodySink(request.max_bytes, response.header("content-encoding"))
    try:
        sink.feed(response.body)
    except _TooLargeError:
        return _too_large(request)
    return HTTPResponse(response.status, content_type, sink.result(), response.headers)


# --------------------------------------------------------------------------- sync


class _Fetcher(Generic[_Resolver]):
    # The settings both fetchers take (documented on each).

    def __init__(
        self,
        *,
        trust: TrustStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        resolver: _Resolver | None = None,
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
        self.resolver: _Resolver | None = resolver


_POOL: list[concurrent.futures.ThreadPoolExecutor] = []


def _lookup_pool() -> concurrent.futures.ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(
            concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtpsts-dns")
        )
    return _POOL[0]


class HTTPSFetcher(_Fetcher[DNSResolver]):
    """
    Synchronous policy fetcher on h11 over a blocking :mod:`ssl` socket.

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

    def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        """
        Perform one policy request.

        Args:
            request: The machine's action.

        Returns:
            The final response (the body only for a 200 with an acceptable
            media type), or why there is none.

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17): no verdict on the policy host.
        """
        connection = _BlockingConnection(self._settings, self.resolver, Deadline(request.timeout))
        try:
            return drive(_fetch(request, self._settings, ["connect"]), connection.perform)
        finally:
            connection.close()


@attrs.define
class _BlockingConnection:
    """Performs the steps of one fetch on a blocking socket, each bounded by the deadline."""

    settings: _Settings
    resolver: DNSResolver | None
    deadline: Deadline
    sock: socket.socket | None = None

    def perform(self, step: _Step) -> object:
        if isinstance(step, _LookupAddresses):
            if self.resolver is not None:
                return self.resolver.lookup_addresses(step.host, lifetime=self.deadline.left())
            # getaddrinfo() has no timeout of its own: wait for it in a
            # worker thread for no longer than the deadline allows.
            lookup = _lookup_pool().submit(
                socket.getaddrinfo, step.host, step.port, type=socket.SOCK_STREAM
            )
            return [str(info[4][0]) for info in lookup.result(timeout=self.deadline.left())]
        if isinstance(step, _Connect):
            self.sock = socket.create_connection(
                (step.address, step.port), timeout=self.deadline.left()
            )
            return None
        assert self.sock is not None  # _fetch connects first
        if isinstance(step, _StartTLS):
            self.sock.settimeout(self.deadline.left())
            tls = self.settings.ssl_context.wrap_socket(self.sock, server_hostname=step.host)
            self.sock = tls
            return tls.getpeercert(binary_form=True)
        return perform_on_socket(self.sock, self.deadline)(step)

    def close(self) -> None:
        if self.sock is not None:
            with suppress(OSError):
                self.sock.close()


# --------------------------------------------------------------------------- asyncio


class AsyncHTTPSFetcher(_Fetcher[AsyncDNSResolver]):
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

    async def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        """
        Perform one policy request; see :meth:`HTTPSFetcher.fetch`.

        Args:
            request: The machine's action.

        Returns:
            The final response, or why there is none.

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
        """
        stage = ["connect"]
        connection = _StreamConnection(self._settings, self.resolver, Deadline(request.timeout))
        try:
            # Each step waits at most for the time left; the whole fetch too.
            async with asyncio.timeout(request.timeout):
                return await adrive(_fetch(request, self._settings, stage), connection.perform)
        except TimeoutError:
            return _timeout(request, stage[-1])
        finally:
            connection.close()


@attrs.define
class _StreamConnection:
    """Performs the steps of one fetch on asyncio streams, each bounded by the deadline."""

    settings: _Settings
    resolver: AsyncDNSResolver | None
    deadline: Deadline
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def perform(self, step: _Step) -> object:
        if isinstance(step, _LookupAddresses):
            if self.resolver is not None:
                return await self.resolver.lookup_addresses(
                    step.host, lifetime=self.deadline.left()
                )
            infos = await asyncio.get_running_loop().getaddrinfo(
                step.host, step.port, type=socket.SOCK_STREAM
            )
            return [str(info[4][0]) for info in infos]
        if isinstance(step, _Connect):
            self.streams = await asyncio.wait_for(
                asyncio.open_connection(step.address, step.port, limit=_READ_SIZE),
                self.deadline.left(),
            )
            return None
        assert self.streams is not None  # _fetch connects first
        reader, writer = self.streams
        if isinstance(step, _StartTLS):
            await writer.start_tls(
                self.settings.ssl_context,
                server_hostname=step.host,  # STS-FETCH-04: SNI is the policy host
                ssl_handshake_timeout=self.deadline.left(),
            )
            return writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return await perform_on_stream(reader, writer, self.deadline)(step)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].transport.abort()
