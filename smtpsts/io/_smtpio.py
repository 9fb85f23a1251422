"""
Performing the SMTP client's requests (:mod:`smtpsts.smtp`): blocking sockets, asyncio streams.

:class:`BlockingSMTPConnection` and :class:`AsyncSMTPConnection` hold one
connection each and have a ``perform`` for :func:`smtpsts.io._drive.drive`
/ ``adrive``: connect, send, receive and the TLS handshake, each bounded by
the time left before :attr:`deadline` (an absolute :func:`time.monotonic`
time; an adapter may move it between requests). A handshake that fails
comes back as a :class:`~smtpsts.smtp.TLSFailed` with its TLS-RPT result
type; every other failure is raised into the conversation, which turns it
into an :class:`~smtpsts.smtp.SMTPFailure`. :func:`raise_local_fault` then
tells this host's faults (out of descriptors, buffers, memory) from the
server's (issue 17).

:func:`open_delivery_session` / :func:`aopen_delivery_session` run
:func:`smtpsts.smtp.starttls_session` for a delivery: they hand back the
open connection (after STARTTLS when it worked; the server expects EHLO)
with a :class:`DeliverySession` saying what the session showed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Generator
from typing import Any, TypeVar

import attrs
from cryptography import x509

from smtpsts._vocab import ResultType
from smtpsts.io._drive import adrive, drive
from smtpsts.io._faults import local_fault, lookup_fault
from smtpsts.io.tls import classify_tls_error, opportunistic_context, peer_chain
from smtpsts.smtp import (
    Connect,
    Connected,
    Request,
    Send,
    SessionReport,
    SMTPFailure,
    StartTLS,
    TLSFailed,
    TLSUpgraded,
    greeting_only,
    starttls_session,
)

__all__ = [
    "AnyConnection",
    "AsyncSMTPConnection",
    "BlockingSMTPConnection",
    "DeliverySession",
    "SessionTarget",
    "aopen_delivery_session",
    "open_delivery_session",
    "raise_local_fault",
]

_CLOSE_WAIT = 1.0
"""Most seconds spent closing a connection politely."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _tls_failed(exc: BaseException) -> TLSFailed:
    result_type, reason = classify_tls_error(exc)
    if isinstance(exc, TimeoutError):
        error = "timed out during handshake"
    else:
        error = f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__
    return TLSFailed(result_type, reason, error, exc)


def _upgraded(context: ssl.SSLContext, tls: ssl.SSLSocket | ssl.SSLObject) -> TLSUpgraded:
    return TLSUpgraded(
        version=tls.version(),
        cipher=(tls.cipher() or (None,))[0],
        chain=peer_chain(tls),
        verified=context.verify_mode == ssl.CERT_REQUIRED,
    )


_HANDSHAKE_ERRORS = (OSError, ValueError, MemoryError)
"""What a handshake may raise (``ssl.SSLError`` and timeouts are ``OSError``)."""


class _Connection:
    """
    Where to connect, the deadline and the TLS context (shared by both connection kinds).

    Args:
        host: The address (or name) to connect to.
        port: The port.
        deadline: The :func:`time.monotonic` time every wait ends by.
        context: The TLS context for :class:`~smtpsts.smtp.StartTLS`.

    Attributes:
        deadline: As given; the caller may move it between requests.
    """

    def __init__(self, host: str, port: int, *, deadline: float, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.deadline = deadline
        self.context = context


class BlockingSMTPConnection(_Connection):
    """
    One SMTP client connection over a blocking socket (arguments: see :class:`_Connection`).

    Attributes:
        sock: The socket (a TLS socket after the handshake), if connected.
    """

    sock: socket.socket | None = None

    def perform(self, request: Request) -> Any:
        """
        Perform one request of an :mod:`smtpsts.smtp` conversation.

        Args:
            request: The request.

        Returns:
            Its result (see the request's class).

        Raises:
            OSError: The connection failed or timed out (``TimeoutError``).
        """
        if isinstance(request, Connect):
            self.close()
            opened = socket.create_connection(
                (self.host, self.port), timeout=_remaining(self.deadline)
            )
            self.sock = opened
            return Connected(opened.getpeername()[0], opened.getsockname()[0])
        sock = self.sock
        assert sock is not None  # every conversation connects first
        if isinstance(request, StartTLS):
            try:
                sock.settimeout(_remaining(self.deadline))
                # CPython bounds the whole handshake by the socket timeout
                # (one deadline across its reads): a stalling server cannot hold it.
                tls = self.context.wrap_socket(
                    sock, server_hostname=request.server_name, do_handshake_on_connect=False
                )
                self.sock = tls
                tls.do_handshake()
            except _HANDSHAKE_ERRORS as exc:
                return _tls_failed(exc)
            return _upgraded(self.context, tls)
        sock.settimeout(_remaining(self.deadline))
        if isinstance(request, Send):
            sock.sendall(request.data)
            return None
        return sock.recv(request.max_bytes)

    def detach(self) -> socket.socket | None:
        """
        Hand the socket over: this object forgets it.

        Returns:
            The socket, ``None`` if not connected.
        """
        sock, self.sock = self.sock, None
        return sock

    def close(self) -> None:
        """Close the connection, if open."""
        sock = self.detach()
        if sock is not None:
            sock.close()


class AsyncSMTPConnection(_Connection):
    """
    One SMTP client connection over asyncio streams (arguments: see :class:`_Connection`).

    Attributes:
        streams: The reader and writer, if connected.
    """

    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def perform(self, request: Request) -> Any:
        """
        Perform one request (as :meth:`BlockingSMTPConnection.perform`).

        Args:
            request: The request.

        Returns:
            Its result.
        """
        if isinstance(request, Connect):
            await self.close()
            async with asyncio.timeout(_remaining(self.deadline)):
                self.streams = await asyncio.open_connection(self.host, self.port)
            writer = self.streams[1]
            return Connected(
                writer.get_extra_info("peername")[0], writer.get_extra_info("sockname")[0]
            )
        assert self.streams is not None  # every conversation connects first
        reader, writer = self.streams
        if isinstance(request, StartTLS):
            try:
                async with asyncio.timeout(_remaining(self.deadline)):
                    await writer.start_tls(self.context, server_hostname=request.server_name)
            except _HANDSHAKE_ERRORS as exc:
                return _tls_failed(exc)
            return _upgraded(self.context, writer.get_extra_info("ssl_object"))
        async with asyncio.timeout(_remaining(self.deadline)):
            if isinstance(request, Send):
                writer.write(request.data)
                await writer.drain()
                return None
            return await reader.read(request.max_bytes)

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """
        Hand the streams over (``None`` if not connected): this object forgets them.

        Returns:
            The reader and writer.
        """
        streams, self.streams = self.streams, None
        return streams

    async def close(self) -> None:
        """Close the connection, if open (waiting at most a second, and never past the deadline)."""
        streams = self.detach()
        if streams is None:
            return
        writer = streams[1]
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(min(max(self.deadline - time.monotonic(), 0), _CLOSE_WAIT)):
                await writer.wait_closed()


def raise_local_fault(failure: SMTPFailure | None, *, operation: str, host: str) -> None:
    """
    Raise the local fault behind a failed conversation, if it was one (issue 17).

    Args:
        failure: How the conversation ended.
        operation: What was being done (``"STARTTLS probe"``); the failed
            step is added.
        host: The server, for the message.

    Raises:
        smtpsts.LocalResourceError: This host ran out of descriptors,
            buffers or memory: no verdict on the server. A failed name
            lookup is checked for a hidden descriptor shortage.
    """
    if failure is None or failure.exception is None:
        return
    exc = failure.exception
    check = lookup_fault if isinstance(exc, socket.gaierror) else local_fault
    fault = check(exc, operation=f"{operation} ({failure.step})", host=host)
    if fault is not None:
        raise fault from exc


# --------------------------------------------------------------------------- delivery sessions


@attrs.frozen
class DeliverySession:
    """
    What opening a delivery session to one MX address showed.

    Attributes:
        address: The address tried.
        port: The port.
        report: The conversation's :class:`~smtpsts.smtp.SessionReport`.
    """

    address: str
    port: int
    report: SessionReport

    @property
    def connected(self) -> bool:
        """Whether TCP connected (a connect failure has no verdict, STS-APPLY-11)."""
        return self.report.connected is not None

    @property
    def local_address(self) -> str | None:
        """This side's address (``sending-mta-ip``)."""
        return None if self.report.connected is None else self.report.connected.local_address

    @property
    def helo(self) -> str | None:
        """The name in the server's EHLO reply (``receiving-mx-helo``)."""
        return self.report.ehlo_name or None

    @property
    def starttls_offered(self) -> bool:
        """STARTTLS offered and answered 220 with nothing after it (STS-APPLY-16, RFC 3207 §5)."""
        return self.report.tls_attempted

    @property
    def handshake_ok(self) -> bool:
        """Whether TLS is up."""
        return isinstance(self.report.tls, TLSUpgraded)

    @property
    def handshake_error(self) -> str | None:
        """The failed handshake's ``failure-reason-code``."""
        return self.report.tls.reason if isinstance(self.report.tls, TLSFailed) else None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The certificates the server sent, leaf first (when TLS is up)."""
        return self.report.tls.chain if isinstance(self.report.tls, TLSUpgraded) else ()

    @property
    def tls_decided(self) -> bool:
        """
        Whether there is a TLS verdict to make (:attr:`SessionReport.tls_decided`).

        ``False``: the connect, the greeting or EHLO failed; try the next
        MX (RFC 5321 §5.1).
        """
        return self.report.tls_decided

    @property
    def broken(self) -> bool:
        """Whether the STARTTLS attempt broke the connection (a cleartext retry needs a new one)."""
        failure = self.report.failure
        return failure is not None and failure.result_type not in (
            None,
            ResultType.STARTTLS_NOT_SUPPORTED,
        )

    @property
    def error(self) -> str | None:
        """What failed, in words; ``None`` when the session is fine (TLS or no STARTTLS)."""
        failure = self.report.failure
        if failure is None or failure.result_type is ResultType.STARTTLS_NOT_SUPPORTED:
            return None
        return (str(failure.exception) if failure.exception is not None else "") or failure.error


def _usable(session: DeliverySession) -> bool:
    # Greeted, and TLS is up or was never tried: the caller goes on with EHLO.
    return session.tls_decided and not session.broken


AnyConnection = TypeVar("AnyConnection", BlockingSMTPConnection, AsyncSMTPConnection)
"""Either kind of connection (for helpers that build one of the caller's choosing)."""


@attrs.frozen
class SessionTarget:
    """
    One delivery session to open: where, how, and by when.

    Attributes:
        address: The MX address.
        port: The port.
        helo_name: The EHLO name.
        server_name: The SNI (the MX name, or the TLSA base domain, DANE-30).
        deadline: The :func:`time.monotonic` time the session must be open by.
        starttls: ``False``: only connect and read the greeting (the
            cleartext retry after a broken STARTTLS).
        context: The TLS context (default: no verification by OpenSSL; the
            core checks :attr:`DeliverySession.chain`).
    """

    address: str
    port: int
    helo_name: str
    server_name: str
    deadline: float
    starttls: bool = True
    context: ssl.SSLContext | None = attrs.field(default=None, eq=False)

    def conversation(self) -> Generator[Request, Any, SessionReport]:
        """
        The core's conversation for this session.

        Returns:
            :func:`~smtpsts.smtp.starttls_session` (no QUIT), or
            :func:`~smtpsts.smtp.greeting_only` without ``starttls``.

        Raises:
            ValueError: ``helo_name`` contains white space.
        """
        if not self.starttls:
            return greeting_only()
        return starttls_session(self.helo_name, self.server_name, say_quit=False)

    def connection(self, kind: type[AnyConnection]) -> AnyConnection:
        """
        A connection of ``kind`` to the address, with the deadline and context.

        Args:
            kind: :class:`BlockingSMTPConnection` or :class:`AsyncSMTPConnection`.

        Returns:
            The (not yet connected) connection.
        """
        context = self.context or opportunistic_context()
        return kind(self.address, self.port, deadline=self.deadline, context=context)

    def opened(self, report: SessionReport) -> DeliverySession:
        """
        What the session showed, or the local fault behind its failure.

        Args:
            report: The conversation's report.

        Returns:
            The :class:`DeliverySession`.

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
        """
        host = f"[{self.address}]:{self.port}"
        raise_local_fault(report.failure, operation="SMTP session", host=host)
        return DeliverySession(self.address, self.port, report)


def open_delivery_session(target: SessionTarget) -> tuple[socket.socket | None, DeliverySession]:
    """
    Connect to one MX address and go as far as TLS (blocking).

    Greeting, EHLO, STARTTLS when offered, the handshake (RFC 3207 §4), each
    bounded by the target's deadline.

    Args:
        target: What to open.

    Returns:
        The open socket -- a TLS socket when :attr:`DeliverySession.handshake_ok`;
        the server expects EHLO (RFC 3207 §4.2) -- or ``None`` when the
        session cannot go on (it is closed); and what the session showed.

    Raises:
        ValueError: ``helo_name`` contains white space.
        smtpsts.LocalResourceError: This host ran out of descriptors,
            buffers or memory (issue 17).
    """
    conversation, connection = target.conversation(), target.connection(BlockingSMTPConnection)
    session: DeliverySession | None = None
    try:
        session = target.opened(drive(conversation, connection.perform))
    finally:
        if session is None or not _usable(session):
            connection.close()
    return connection.detach(), session


async def aopen_delivery_session(
    target: SessionTarget,
) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, DeliverySession]:
    """
    Connect to one MX address and go as far as TLS (asyncio; as :func:`open_delivery_session`).

    Args:
        target: What to open.

    Returns:
        The open reader and writer, or ``None``; and what the session showed.
    """
    conversation, connection = target.conversation(), target.connection(AsyncSMTPConnection)
    session: DeliverySession | None = None
    try:
        session = target.opened(await adrive(conversation, connection.perform))
    finally:
        if session is None or not _usable(session):
            await connection.close()
    return connection.detach(), session
