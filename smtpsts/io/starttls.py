"""
Probing an SMTP server's STARTTLS (RFC 3207), sync and asyncio.

:func:`probe_starttls` and :func:`aprobe_starttls` connect, read the
greeting, say EHLO, send STARTTLS, complete the TLS handshake, say QUIT and
report what the core needs as a :class:`STARTTLSProbe`: was STARTTLS offered,
did the handshake succeed, the peer chain, the TLS version and cipher, or
the failure with its TLS-RPT result type (RFC 8460 §4.3.1).

The conversation is :func:`smtpsts.smtp.starttls_session` (sans I/O, with
the reply caps of RFC 5321 §4.5.3.1.5); the two functions here run it over
a blocking socket or asyncio streams (:mod:`smtpsts.io._smtpio`). Every step
(connect, greeting, EHLO, STARTTLS, handshake) waits at most until one
overall deadline; a server that stalls anywhere, even mid-handshake, costs
at most ``timeout`` seconds. :mod:`smtplib` is not used: its reply reader
has no cap on the number of lines and its timeouts apply per socket call,
not per exchange.

A probe that fails because this host ran out of descriptors, buffers or
memory raises :class:`~smtpsts.LocalResourceError` instead of returning a
failed probe: that is no verdict on the server (issue 17).

:class:`~smtpsts.smtp.Reply`, :class:`~smtpsts.smtp.ReplyReader` and
:class:`~smtpsts.exceptions.SMTPReplyError` live in :mod:`smtpsts.smtp` and are
re-exported here.
"""

from __future__ import annotations

import socket
import ssl
import time

import attrs
from cryptography import x509

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.io._drive import adrive, drive
from smtpsts.io._resolver import is_address
from smtpsts.io._smtpio import (
    AnyConnection,
    AsyncSMTPConnection,
    BlockingSMTPConnection,
    raise_local_fault,
)
from smtpsts.io.http import ConnectTo
from smtpsts.io.tls import opportunistic_context
from smtpsts.smtp import (
    MAX_LINE_LENGTH,
    MAX_LINES,
    Reply,
    ReplyReader,
    SessionReport,
    SMTPReplyError,
    TLSUpgraded,
    starttls_session,
)

__all__ = [
    "MAX_LINES",
    "MAX_LINE_LENGTH",
    "Reply",
    "ReplyReader",
    "SMTPReplyError",
    "STARTTLSProbe",
    "aprobe_starttls",
    "probe_starttls",
]


@attrs.frozen
class STARTTLSProbe:
    """
    What a STARTTLS probe of one SMTP server found.

    Attributes:
        host: The server's host name (used for SNI unless ``server_name``
            was given).
        port: The TCP port.
        address: The address connected to (``None`` if not connected).
        server_name: The SNI sent (STS-CERT-14, DANE-30).
        connected: Whether the TCP connection was made.
        greeting: The text of the 220 greeting.
        ehlo_name: The domain the server named in its EHLO reply.
        extensions: The EHLO keywords, upper case (``STARTTLS``, ``SIZE``...).
        starttls_offered: Whether EHLO listed STARTTLS.
        handshake_ok: Whether the TLS handshake completed (and, with a
            verifying context, the certificate was accepted).
        verified: Whether OpenSSL verified the chain and the name (a
            ``CERT_REQUIRED`` context); ``False`` when the core must check
            :attr:`chain`.
        tls_version: For example ``"TLSv1.3"``.
        cipher: The cipher suite name.
        chain: The certificates the server sent, leaf first (see
            :func:`smtpsts.io.tls.peer_chain`).
        step: The step that failed: ``connect``, ``greeting``, ``ehlo``,
            ``starttls``, ``handshake``; ``None`` on success.
        result_type: The TLS-RPT result type of the failure:
            ``starttls-not-supported``, a certificate type (verifying
            context), or ``validation-failure`` for handshake failures;
            ``None`` on success and for failures before STARTTLS that TLS-RPT
            has no type for (connect, greeting).
        reason: A short ``failure-reason-code`` (``io-timeout-during-handshake``,
            ``tls-remote-alert-40``, ``connect-error``...).
        error: What went wrong, in words.
        elapsed: Seconds the probe took.
    """

    host: str
    port: int
    server_name: str
    address: str | None = None
    connected: bool = False
    greeting: str | None = None
    ehlo_name: str | None = None
    extensions: tuple[str, ...] = ()
    starttls_offered: bool = False
    handshake_ok: bool = False
    verified: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    step: str | None = None
    result_type: ResultType | None = None
    reason: str | None = None
    error: str | None = None
    elapsed: float = 0.0


class _Probe:
    """One probe's settings and clock (the conversation is in :mod:`smtpsts.smtp`)."""

    def __init__(  # noqa: PLR0917 -- the probe functions' arguments, in their order
        self,
        host: str,
        port: int,
        connect_to: str | ConnectTo | None,
        timeout: float,
        deadline: float | None,
        helo_name: str | None,
        context: ssl.SSLContext | None,
        server_name: str | None,
    ) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        if deadline is not None:
            self.deadline = min(self.deadline, deadline)
        self.host = host.rstrip(".")
        self.port = port
        self.target, self.connect_port = self.host, port
        if isinstance(connect_to, str):
            self.target = connect_to
        elif connect_to is not None:
            # The mapping shape every other adapter takes (smtpsts.io.http.ConnectTo).
            self.target, self.connect_port = connect_to.get(
                (self.host.lower(), port), (self.host, port)
            )
        # RFC 8461 §7.1 (STS-CERT-14): SNI is the MX host name, unless the
        # caller names another (DANE-30: the TLSA base domain).
        sni = server_name or self.host
        self.server_name = sni if is_address(sni) else to_alabel(sni)
        self.context = context if context is not None else opportunistic_context()
        # Raises ValueError for a name with white space (RFC 5321 §4.1.1.1).
        self.conversation = starttls_session(
            helo_name or socket.gethostname() or "localhost", self.server_name, say_quit=True
        )

    def connection(self, kind: type[AnyConnection]) -> AnyConnection:
        """A connection of ``kind`` to the target, with the probe's deadline and context."""
        return kind(self.target, self.connect_port, deadline=self.deadline, context=self.context)

    def result(self, report: SessionReport) -> STARTTLSProbe:
        where = f"{self.host}:{self.port}"
        if self.connect_port != self.port:
            where += f" ({self.target}:{self.connect_port})"
        elif self.target != self.host:
            where += f" ({self.target})"
        raise_local_fault(report.failure, operation="STARTTLS probe", host=where)
        fields: dict[str, object] = {}
        if report.connected is not None:
            fields.update(connected=True, address=report.connected.address)
        if report.greeting is not None:
            fields["greeting"] = " ".join(report.greeting.lines)
        if isinstance(report.tls, TLSUpgraded):
            tls = report.tls
            fields.update(
                handshake_ok=True,
                verified=tls.verified,
                tls_version=tls.version,
                cipher=tls.cipher,
                chain=tls.chain,
            )
        failure = report.failure
        if failure is not None:
            fields.update(
                step=failure.step.value,
                reason=failure.reason,
                error=failure.error,
                result_type=failure.result_type,
            )
        return STARTTLSProbe(
            host=self.host,
            port=self.port,
            server_name=self.server_name,
            ehlo_name=report.ehlo_name,
            extensions=report.extensions,
            starttls_offered=report.starttls_offered,
            elapsed=time.monotonic() - self.started,
            **fields,  # type: ignore[arg-type]
        )


def probe_starttls(
    host: str,
    port: int = 25,
    *,
    connect_to: str | ConnectTo | None = None,
    timeout: float = 30.0,
    deadline: float | None = None,
    helo_name: str | None = None,
    context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> STARTTLSProbe:
    """
    Probe one SMTP server's STARTTLS (blocking).

    Args:
        host: The server's host name (the MX host); the SNI unless
            ``server_name`` is given.
        port: The TCP port.
        connect_to: Where to connect instead of resolving ``host``: an
            address (same port), or the ``{(host, port): (address, port)}``
            mapping the other adapters take (:data:`smtpsts.io.http.ConnectTo`;
            :func:`smtpsts.io.http.parse_connect_to` reads the command line's
            ``HOST:PORT:ADDR:PORT``). Give one: resolving ``host`` uses the
            system resolver, whose wait the deadline cannot bound.
        timeout: Seconds for the whole probe; every step waits at most until
            this deadline.
        deadline: An absolute :func:`time.monotonic` time the probe must
            end by, when earlier than ``timeout`` allows (a deadline shared
            with the caller's other steps).
        helo_name: The name to send with EHLO (default: this host's name).
        context: The TLS context; default :func:`smtpsts.io.tls.opportunistic_context`
            (no verification: the core checks :attr:`STARTTLSProbe.chain`).
            With :func:`smtpsts.io.tls.pkix_context`, certificate failures come
            back as certificate result types.
        server_name: The SNI to send instead of ``host`` (DANE-30).

    Returns:
        The probe result; never raises for network or protocol problems.

    Raises:
        smtpsts.DomainNameError: ``host`` or ``server_name`` is not a valid
            host name.
        ValueError: ``helo_name`` contains white space or a line break.
        smtpsts.LocalResourceError: This host ran out of descriptors,
            buffers or memory (issue 17): no verdict on the server.
    """
    probe = _Probe(host, port, connect_to, timeout, deadline, helo_name, context, server_name)
    connection = probe.connection(BlockingSMTPConnection)
    try:
        report = drive(probe.conversation, connection.perform)
    finally:
        connection.close()
    return probe.result(report)


async def aprobe_starttls(
    host: str,
    port: int = 25,
    *,
    connect_to: str | ConnectTo | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 -- the same signature as probe_starttls
    deadline: float | None = None,
    helo_name: str | None = None,
    context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> STARTTLSProbe:
    """
    Probe one SMTP server's STARTTLS (asyncio).

    The arguments, the result and the errors are those of :func:`probe_starttls`.

    Args:
        host: The server's host name.
        port: The TCP port.
        connect_to: As for :func:`probe_starttls`: an address or a ``ConnectTo`` mapping.
        timeout: Seconds for the whole probe.
        deadline: An absolute end time, if earlier.
        helo_name: The EHLO name.
        context: The TLS context.
        server_name: The SNI.

    Returns:
        The probe result.
    """
    probe = _Probe(host, port, connect_to, timeout, deadline, helo_name, context, server_name)
    connection = probe.connection(AsyncSMTPConnection)
    try:
        report = await adrive(probe.conversation, connection.perform)
    finally:
        await connection.close()
    return probe.result(report)
