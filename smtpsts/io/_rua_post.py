"""
The report POST to an ``https:`` ``rua`` (RFC 8460 §5.4), with its address checks and one deadline.

:func:`post_report` is public as ``smtpsts.io.tlsrpt_send.post_report``; it
lives here so that the sender module holds only the round. The ``rua`` is
chosen by the recipient domain, so every host is resolved once and checked
(issue 10, SEC-55), the connection goes to the checked address, and the whole
exchange (lookups, connects, handshakes, request, response, redirects) has
one :class:`~smtpsts.io._http11.Deadline`; the HTTP/1.1 exchange itself is
:func:`smtpsts.io._http11.exchange`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import attrs
import h11

from smtpsts.exceptions import LocalResourceError
from smtpsts.io._addresses import IPNetwork, in_networks, is_refused
from smtpsts.io._http11 import Deadline, drive_on_socket, exchange
from smtpsts.io.dns import AddressAnswer, DNSFailure, DNSNotFound
from smtpsts.tlsrpt.outbox import DeliveryResult
from smtpsts.tlsrpt.serialize import CONTENT_TYPE_GZIP

__all__ = ["DEFAULT_HTTPS_TIMEOUT", "AddressLookup", "local_fault", "post_report"]

log = logging.getLogger("smtpsts.io.tlsrpt_send")  # the sender's log, as before the move

DEFAULT_HTTPS_TIMEOUT = 30.0
"""Seconds for one whole POST of a report, redirects included (issue 10)."""

_RESPONSE_CAP = 64 * 1024  # response body bytes read at most
_T = TypeVar("_T")
_LOCAL_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_KEEPS_POST: Final = (307, 308)  # the redirects that keep the method and body


class AddressLookup(Protocol):
    """Looks up a host's addresses, e.g. :meth:`smtpsts.io.dns.DNSResolver.lookup_addresses`."""

    def __call__(
        self, host: str, *, lifetime: float | None = None
    ) -> AddressAnswer | DNSNotFound | DNSFailure:
        """
        Look up the addresses of a host.

        Args:
            host: The host name.
            lifetime: Seconds the lookup may take.

        Returns:
            The addresses, or why there are none.
        """
        ...


@attrs.frozen
class _Failure:
    # Why one POST did not get a status; permanent: the target is refused.
    detail: str
    permanent: bool = False


def local_fault(exc: BaseException) -> LocalResourceError | None:
    """
    The local fault an exception stands for, if it is one (issue 10).

    Args:
        exc: What a lookup, connect, handshake or submit raised.

    Returns:
        A :class:`~smtpsts.LocalResourceError` (``EMFILE``, ``ENFILE``,
        ``ENOBUFS``, ``ENOMEM``, ``EAI_MEMORY``), or ``None`` for a failure
        of the peer or the network.
    """
    # Issue 10: running out of descriptors, buffers or memory is this host's
    # fault, never a verdict on the endpoint. TLS errors carry OpenSSL codes
    # in errno, and getaddrinfo its EAI_* codes, so both are told apart.
    if isinstance(exc, LocalResourceError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return None
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_MEMORY:
            return LocalResourceError(f"address lookup: {exc}", errno=errno.ENOMEM)
        return None
    if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
        return LocalResourceError(
            f"{errno.errorcode[exc.errno]}: {exc.strerror or exc}", errno=exc.errno
        )
    return None


def _in_thread(work: Callable[[], _T], deadline: Deadline) -> _T:
    # getaddrinfo() has no timeout, and a resolver's lifetime is per query:
    # wait for either in a daemon thread no longer than the deadline allows.
    box: list[_T] = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            box.append(work())
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name="smtpsts-rua-lookup", daemon=True)
    try:
        thread.start()
    except RuntimeError as exc:
        raise LocalResourceError(f"cannot start a lookup thread: {exc}") from exc
    thread.join(deadline.left())
    if errors:
        raise errors[0]
    if not box:
        raise TimeoutError(f"the {deadline.seconds:g} s deadline passed")
    return box[0]


def _lookup(
    host: str, port: int, lookup: AddressLookup | None, deadline: Deadline
) -> list[str] | _Failure:
    # The one resolution of a host in a POST: its answer is what is checked
    # and what is connected to, so a rebinding DNS gets no second say.
    if lookup is None:
        try:
            infos = _in_thread(
                lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), deadline
            )
        except socket.gaierror as exc:
            fault = local_fault(exc)
            if fault is not None:
                raise fault from exc
            return _Failure(f"{host}: {exc}")
        return [str(info[4][0]) for info in infos]
    answer = _in_thread(lambda: lookup(host, lifetime=deadline.left()), deadline)
    if isinstance(answer, AddressAnswer):
        return list(answer.addresses)
    if isinstance(answer, DNSNotFound):
        return _Failure(f"{host}: no such host")
    return _Failure(f"{host}: address lookup failed: {getattr(answer, 'reason', answer)}")


def _literal(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def _permitted(
    host: str, addresses: Sequence[str], allow: Sequence[IPNetwork]
) -> list[str] | _Failure:
    # Issue 10 (SSRF): the recipient domain chooses the rua, so only public
    # unicast addresses are contacted, plus what the operator allowed.
    ok: list[str] = []
    refused: list[str] = []
    for address in dict.fromkeys(addresses):
        why = None if in_networks(address, allow) else is_refused(address)
        if why is None:
            ok.append(address)
        else:
            refused.append(why)
    if refused and ok:
        log.warning("TLS-RPT: %s: skipping refused addresses (%s)", host, "; ".join(refused))
    if ok:
        return ok
    if not refused:
        return _Failure(f"{host}: no addresses")
    named = "" if _literal(host) is not None else f" (addresses of {host})"
    return _Failure("refused: " + "; ".join(refused) + named, permanent=True)


def _open_connection(address: str, port: int, timeout: float) -> socket.socket:
    # Only ever the checked address, as a numeric host: no lookup happens here.
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


@attrs.define
class _Route:
    # Where the hosts of one POST (redirects included) were found and checked.
    lookup: AddressLookup | None
    allow: tuple[IPNetwork, ...]
    connect_to: Mapping[tuple[str, int], tuple[str, int]]
    deadline: Deadline
    found: dict[tuple[str, int], list[tuple[str, int]] | _Failure] = attrs.Factory(dict)

    def endpoints(self, host: str, port: int) -> list[tuple[str, int]] | _Failure:
        key = (host, port)
        if key not in self.found:
            name, to_port = self.connect_to.get(key, key)
            literal = _literal(name)
            addresses = (
                [literal]
                if literal is not None
                else _lookup(name, to_port, self.lookup, self.deadline)
            )
            checked = (
                addresses
                if isinstance(addresses, _Failure)
                else _permitted(name, addresses, self.allow)
            )
            self.found[key] = (
                checked
                if isinstance(checked, _Failure)
                else [(address, to_port) for address in checked]
            )
        return self.found[key]

    def connect(self, endpoints: Sequence[tuple[str, int]]) -> socket.socket:
        error: OSError | None = None
        for address, port in endpoints:
            try:
                return _open_connection(address, port, self.deadline.left())
            except OSError as exc:
                if isinstance(exc, TimeoutError) or local_fault(exc) is not None:
                    raise
                error = exc  # refused or unreachable: the next checked address
        assert error is not None  # endpoints is never empty
        raise error


def post_report(
    url: str,
    body: bytes,
    *,
    content_type: str = CONTENT_TYPE_GZIP,
    timeout: float = DEFAULT_HTTPS_TIMEOUT,
    verify: bool = False,
    context: ssl.SSLContext | None = None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    max_redirects: int = 0,
    user_agent: str = "smtpsts",
    allow: Iterable[IPNetwork] = (),
    lookup_addresses: AddressLookup | None = None,
) -> DeliveryResult:
    """
    POST a report to an ``https:`` ``rua`` (RFC 8460 §5.4).

    The body is the report itself (gzip bytes with ``application/tlsrpt+gzip``,
    no ``Content-Encoding``, RPT-SEND-17). Only a 2xx status is success.
    Redirects are not followed by default (RPT-SEND-18, AMB-26); with
    ``max_redirects`` set, up to that many ``307`` and ``308`` redirects (the
    ones that keep the POST and its body) to ``https:`` URLs are followed,
    while ``301``, ``302`` and ``303`` stay failures. Certificate errors are
    logged and ignored unless ``verify`` is set (RPT-SEND-19, AMB-26): the
    POST is first tried with verification, and on a certificate error tried
    again without it.

    The ``rua`` is chosen by the recipient domain, so each host (the
    ``rua``'s and every redirect target's) is resolved once and only public
    unicast addresses are contacted: loopback, private, link-local, CGNAT,
    multicast, reserved and documentation addresses, and IPv6 forms of such
    IPv4 addresses, are refused unless ``allow`` holds them (see
    ``smtpsts.io._addresses.is_refused``; issue 10). The connection goes
    to an address that was checked, never through a second lookup; TLS
    (SNI, certificate) and ``Host`` keep the host name. When every address
    of a host is refused, the result is ``permanent``.

    The whole exchange (address lookups, connects, TLS handshakes, request,
    response head and body, redirects included) has one deadline of
    ``timeout`` seconds, however slowly the server sends. At most 64 KiB of
    the response body are read; its head is capped by :mod:`h11`.

    Args:
        url: The ``https:`` URI.
        body: The request body.
        content_type: Its media type.
        timeout: Seconds for the whole exchange.
        verify: Refuse endpoints whose certificate does not verify.
        context: The TLS context for verification (system trust by default).
        connect_to: ``{(host, port): (address, port)}``: connect elsewhere,
            keeping the host name for SNI, ``Host`` and verification (tests).
            The address is checked like any other.
        max_redirects: How many ``307``/``308`` redirects to follow.
        user_agent: The ``User-Agent`` header.
        allow: Networks that may be contacted although the address policy
            refuses them (internal report endpoints, tests on loopback).
        lookup_addresses: Resolves host names (e.g.
            :meth:`smtpsts.io.dns.DNSResolver.lookup_addresses`);
            :func:`socket.getaddrinfo` by default.

    Returns:
        The outcome (its ``uri`` is ``url``, also after redirects); never
        raises for network, TLS or HTTP errors.

    Raises:
        smtpsts.LocalResourceError: This host ran out of descriptors,
            buffers or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``,
            ``ENOMEM``): no verdict on the endpoint.
    """
    route = _Route(lookup_addresses, tuple(allow), dict(connect_to or {}), Deadline(timeout))
    current = url
    hops = 0
    while True:
        answer = _post_to(
            current,
            body,
            content_type=content_type,
            route=route,
            verify=verify,
            context=context,
            user_agent=user_agent,
        )
        where = "" if current == url else f" from {current}"
        if isinstance(answer, _Failure):
            return DeliveryResult(
                url, ok=False, detail=answer.detail + where, permanent=answer.permanent
            )
        status, location = answer
        if status in _KEEPS_POST and location and hops < max_redirects:
            target = urllib.parse.urljoin(current, location)
            if urllib.parse.urlsplit(target).scheme != "https":
                return DeliveryResult(
                    url, ok=False, detail=f"HTTP {status}{where}: redirect to {target} is not https"
                )
            current = target
            hops += 1
            continue
        detail = f"HTTP {status}{where}"
        if 300 <= status < 400 and max_redirects:
            detail += (
                " (too many redirects)"
                if status in _KEEPS_POST
                else " (redirect not followed: only 307 and 308 keep the POST)"
            )
        # RFC 8460 §5.4: any 2xx is success.
        return DeliveryResult(url, ok=200 <= status < 300, detail=detail)


def _describe(exc: Exception, deadline: Deadline) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer within the {deadline.seconds:g} s deadline"
    return f"{type(exc).__name__}: {exc}"


def _post_to(
    url: str,
    body: bytes,
    *,
    content_type: str,
    route: _Route,
    verify: bool,
    context: ssl.SSLContext | None,
    user_agent: str,
) -> tuple[int, str | None] | _Failure:
    # One POST: (status, Location) or what went wrong, in words.
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or 443
    except ValueError:
        return _Failure("invalid port")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    name = f"[{host}]" if ":" in host else host  # RFC 9110 §7.2: IPv6 literal in brackets
    request: dict[str, Any] = {
        "host": host,
        "authority": name if port == 443 else f"{name}:{port}",
        "target": target,
        "body": body,
        "content_type": content_type,
        "user_agent": user_agent,
    }
    try:
        endpoints = route.endpoints(host, port)
    except OSError as exc:  # the lookup timed out or failed
        fault = local_fault(exc)
        if fault is not None:
            raise fault from exc
        return _Failure(_describe(exc, route.deadline))
    if isinstance(endpoints, _Failure):
        return endpoints
    verified = context or ssl.create_default_context()
    try:
        return _post_once(route, endpoints, context=verified, **request)
    except ssl.SSLCertVerificationError as exc:
        if verify:
            return _Failure(f"certificate error: {exc.verify_message}")
        log.warning(
            "TLS-RPT: %s: certificate error ignored (RFC 8460 §3): %s", url, exc.verify_message
        )
    except (OSError, h11.ProtocolError) as exc:
        return _Failure(_describe(exc, route.deadline))
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        # The same checked addresses: no second lookup (issue 10).
        return _post_once(route, endpoints, context=unverified, **request)
    except (OSError, h11.ProtocolError) as exc:
        return _Failure(_describe(exc, route.deadline))


def _post_once(
    route: _Route,
    endpoints: Sequence[tuple[str, int]],
    *,
    host: str,
    authority: str,
    target: str,
    body: bytes,
    content_type: str,
    context: ssl.SSLContext,
    user_agent: str,
) -> tuple[int, str | None]:
    deadline = route.deadline
    try:
        raw = route.connect(endpoints)
        try:
            # The handshake as a whole waits at most for the time left.
            raw.settimeout(deadline.left())
            sock = context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        with sock:
            # The one HTTP/1.1 exchange (io/_http11.py): every send and read
            # waits at most for the time left, so a server that drips a byte
            # at a time cannot stretch the POST past its deadline; only the
            # status matters, so a failure after the head ends the body.
            response = drive_on_socket(
                exchange(
                    "POST",
                    target,
                    [
                        ("Host", authority),
                        ("Content-Type", content_type),
                        ("Content-Length", str(len(body))),
                        ("User-Agent", user_agent),
                        ("Connection", "close"),
                    ],
                    body,
                    max_body=_RESPONSE_CAP,
                    keep_partial_body=True,
                ),
                sock,
                deadline,
            )
        return response.status, response.header("location")
    except OSError as exc:
        fault = local_fault(exc)
        if fault is not None:
            raise fault from exc
        raise
