"""
The session steps of the delivery walk, on the package's one SMTP client.

The performers of :class:`~smtpsts.delivery.OpenSession`,
:class:`~smtpsts.delivery.CloseSession` and
:class:`~smtpsts.delivery.FallBackToPlaintext` for
:mod:`smtpsts.io.deliver`: :class:`BlockingSessions` over sockets,
:class:`AsyncioSessions` over asyncio streams. The SMTP conversation itself
(greeting, EHLO, STARTTLS, the handshake, RFC 3207 §4) is
:func:`smtpsts.smtp.starttls_session`, run by
:func:`smtpsts.io._smtpio.open_delivery_session` /
:func:`~smtpsts.io._smtpio.aopen_delivery_session`; this module only turns
what a session showed into the walk's results (:func:`observed`) and keeps
the one open connection, handing it over when the walk ends connected.

The chain goes to the core's checks (:func:`smtpsts.certs.check_certificate`
and :func:`smtpsts.delivery.dane_check`): one code path for MTA-STS, DANE
and opportunistic TLS. A local fault (out of descriptors, buffers, memory)
while opening a session is raised as :class:`smtpsts.LocalResourceError`,
never reported as a connect failure (issue 17): :mod:`smtpsts.io.deliver`
defers.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
from datetime import datetime

import attrs

from smtpsts.certs import TrustStore, check_certificate
from smtpsts.decision import TLSObservation
from smtpsts.delivery import (
    ConnectFailed,
    FallBackToPlaintext,
    OpenSession,
    SessionFailed,
    SessionOpened,
    TLSAFound,
    dane_check,
)
from smtpsts.io._smtpio import (
    DeliverySession,
    SessionTarget,
    aopen_delivery_session,
    open_delivery_session,
)

__all__ = ["AsyncioSessions", "BlockingSessions", "SessionSettings", "observed"]

_QUIT_WAIT = 1.0
"""Most seconds spent saying QUIT to a session that is closed."""


@attrs.frozen
class SessionSettings:
    """
    What every session of one delivery shares.

    Attributes:
        trust: Trust anchors for the PKIX check of MX certificates.
        helo_name: The EHLO name.
        now: The time certificates are checked at.
        deadline: ``time.monotonic()`` by which every session step is done.
    """

    trust: TrustStore
    helo_name: str
    now: datetime
    deadline: float

    def target(self, request: OpenSession | FallBackToPlaintext) -> SessionTarget:
        """
        The session to open for a request of the walk.

        Args:
            request: :class:`~smtpsts.delivery.OpenSession` (greeting
                through the handshake), or
                :class:`~smtpsts.delivery.FallBackToPlaintext` (the greeting
                only, RFC 8461 §5).

        Returns:
            The target, bounded by :attr:`deadline`.
        """
        if isinstance(request, OpenSession):
            return SessionTarget(
                request.address,
                request.port,
                self.helo_name,
                request.server_name,
                self.deadline,
            )
        return SessionTarget(
            request.address,
            request.port,
            self.helo_name,
            request.mx.host,
            self.deadline,
            starttls=False,
        )


def _error(session: DeliverySession, blank: str) -> str | None:
    # What failed, as the walk's attempts say it: an exception without a
    # message (a bare timeout) is ``blank``.
    failure = session.report.failure
    if failure is not None and failure.exception is not None and not str(failure.exception):
        return blank
    return session.error


def observed(
    session: DeliverySession,
    tlsa: TLSAFound | None,
    settings: SessionSettings,
    mx_host: str,
    blank: str = "",
) -> ConnectFailed | SessionFailed | SessionOpened:
    """
    The walk's result for what a session showed (pure).

    Args:
        session: What :func:`~smtpsts.io._smtpio.open_delivery_session` saw.
        tlsa: The MX host's secure TLSA RRset, if DANE applies.
        settings: The trust store and the time for the checks.
        mx_host: The MX name the chain must be valid for.
        blank: The error text for a failure without words (the blocking
            sessions say ``""``, the asyncio ones ``"timeout"``, as before).

    Returns:
        :class:`~smtpsts.delivery.ConnectFailed` (STS-APPLY-11),
        :class:`~smtpsts.delivery.SessionFailed` (greeting or EHLO failed:
        no TLS verdict), or :class:`~smtpsts.delivery.SessionOpened` with
        the observation for :func:`smtpsts.decision.decide`.
    """
    error = _error(session, blank)
    if not session.connected:
        return ConnectFailed(error or blank)
    if not session.tls_decided:
        return SessionFailed(error or blank)
    pkix = None
    if session.handshake_ok:
        # RFC 8461 §4.2 (STS-APPLY-13): the chain must be valid for the MX name.
        pkix = check_certificate(session.chain, mx_host, trust=settings.trust, now=settings.now)
    dane, info = dane_check(tlsa, session.chain, settings.now)
    observation = TLSObservation(
        starttls_offered=session.starttls_offered,
        handshake_ok=session.handshake_ok,
        handshake_error=session.handshake_error,
        pkix=pkix,
        dane=dane,
        sending_mta_ip=session.local_address,
        receiving_ip=session.address,
        receiving_mx_helo=session.helo,
        tlsa=info,
    )
    # error is set exactly when the STARTTLS attempt broke the connection.
    return SessionOpened(observation, error)


class BlockingSessions:
    """
    The session steps over blocking sockets.

    Args:
        settings: What the sessions share.
    """

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._sock: socket.socket | None = None
        self._mx_host = ""

    def open(self, request: OpenSession) -> ConnectFailed | SessionFailed | SessionOpened:
        """
        Connect, greet, EHLO, STARTTLS and handshake (RFC 3207, RFC 8461 §4).

        Args:
            request: The walk's request.

        Returns:
            What the session showed.

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
        """
        self._sock, session = open_delivery_session(self.settings.target(request))
        self._mx_host = request.mx.host
        return observed(session, request.tlsa, self.settings, request.mx.host)

    def close(self, *, send_quit: bool) -> None:
        """
        End the open session (if a broken one was not closed already), with ``QUIT`` first if asked.

        Args:
            send_quit: Send ``QUIT`` before closing (RFC 5321 §4.1.1.10).
        """
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if send_quit:
            with contextlib.suppress(OSError):
                sock.settimeout(_QUIT_WAIT)
                sock.sendall(b"QUIT\r\n")
        sock.close()

    def fall_back(self, request: FallBackToPlaintext) -> bool:
        """
        Close the broken session and connect again without STARTTLS (RFC 8461 §5).

        Args:
            request: The walk's request.

        Returns:
            Whether the new session greeted with 220.

        Raises:
            smtpsts.LocalResourceError: As for :meth:`open`.
        """
        self.close(send_quit=False)
        self._sock, _ = open_delivery_session(self.settings.target(request))
        return self._sock is not None

    def hand_over(self, session_timeout: float) -> smtplib.SMTP:
        """
        The open session as :class:`smtplib.SMTP`, ready for ``ehlo()`` (RFC 3207 §4.2).

        Args:
            session_timeout: Its socket timeout for the rest of the transaction.

        Returns:
            The session; the caller closes it.
        """
        sock, self._sock = self._sock, None
        assert sock is not None  # the walk ended connected
        # RFC 5321 §4.5.3.2: the rest of the transaction has its own, longer timeouts.
        sock.settimeout(session_timeout)
        smtp = smtplib.SMTP(local_hostname=self.settings.helo_name, timeout=session_timeout)
        smtp.sock = sock
        smtp._host = self._mx_host  # type: ignore[attr-defined]  # noqa: SLF001 -- smtplib's server name
        return smtp


class AsyncioSessions:
    """
    The session steps over asyncio streams (as :class:`BlockingSessions`).

    Args:
        settings: What the sessions share.
    """

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self, request: OpenSession) -> ConnectFailed | SessionFailed | SessionOpened:
        """
        The asyncio form of :meth:`BlockingSessions.open`: the same steps and result.
        """
        self._streams, session = await aopen_delivery_session(self.settings.target(request))
        return observed(session, request.tlsa, self.settings, request.mx.host, "timeout")

    async def close(self, *, send_quit: bool) -> None:
        """
        The asyncio form of :meth:`BlockingSessions.close` (``send_quit``: QUIT first).
        """
        streams, self._streams = self._streams, None
        if streams is None:
            return
        writer = streams[1]
        if send_quit:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(b"QUIT\r\n")
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(_QUIT_WAIT):
                await writer.wait_closed()

    async def fall_back(self, request: FallBackToPlaintext) -> bool:
        """
        The asyncio form of :meth:`BlockingSessions.fall_back`: the same result.
        """
        await self.close(send_quit=False)
        self._streams, _ = await aopen_delivery_session(self.settings.target(request))
        return self._streams is not None

    def hand_over(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """
        The open session's streams; the server expects ``EHLO`` next (RFC 3207 §4.2).

        Returns:
            The reader and writer; the caller closes the writer.
        """
        streams, self._streams = self._streams, None
        assert streams is not None  # the walk ended connected
        return streams
