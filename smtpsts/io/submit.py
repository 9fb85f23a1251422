"""
Handing report mail to a submission server: :class:`SMTPSubmitter` (RFC 8460 §3).

The conversation is :func:`smtpsts.smtp.submission` (sans I/O), run over a
blocking socket (calling the ``SMTPSubmitter``) or asyncio streams
(:meth:`SMTPSubmitter.asubmit`); :mod:`smtplib` is not used for the
conversation. A refusal is raised as the :mod:`smtplib` exception class
:mod:`smtplib` itself would raise (``SMTPDataError``,
``SMTPRecipientsRefused``...), so code that catches those keeps working; a
network failure is the :class:`OSError` (or :class:`ssl.SSLError`) itself.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Generator
from typing import Any, Literal

import attrs

from smtpsts.exceptions import SMTPSTSError
from smtpsts.io._drive import adrive, drive
from smtpsts.io._smtpio import AsyncSMTPConnection, BlockingSMTPConnection
from smtpsts.io.tls import opportunistic_context
from smtpsts.smtp import Receive, Reply, Request, SMTPFailure, SMTPReplyError, Step
from smtpsts.smtp_submission import STARTTLSMode, SubmissionReport, submission

log = logging.getLogger(__name__)

__all__ = ["CleartextLoginRefusedError", "SMTPSubmitter"]


class CleartextLoginRefusedError(SMTPSTSError, smtplib.SMTPNotSupportedError):
    """
    Credentials were not sent: the opportunistic STARTTLS session had no TLS.

    Raised by :class:`SMTPSubmitter` with ``starttls="opportunistic"`` and a
    user name when the server offered no STARTTLS, refused it, or the
    handshake failed and the message would go on in cleartext (RFC 4954
    §4, §14: AUTH PLAIN/LOGIN over cleartext gives the password away). Use
    ``starttls="required"`` or implicit TLS for a server that needs a login.
    Being an :class:`smtplib.SMTPNotSupportedError`, code that catches
    smtplib's errors keeps working.
    """


def _local_hostname() -> str:
    # What smtplib says by default: the FQDN, or this host's address as a literal.
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


def _text(reply: Reply) -> bytes:
    return "\n".join(reply.lines).encode("utf-8", "replace")


def _refusal(failure: SMTPFailure, mail_from: str, rcpt_to: str) -> Exception:
    # The smtplib exception for a refusal or a missing extension.
    reply = failure.reply
    if reply is None:
        if failure.reason == "auth-needs-tls":
            return CleartextLoginRefusedError(failure.error)
        if failure.reason.startswith("connection-closed"):
            return smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if failure.reason.endswith("-not-offered"):
            return smtplib.SMTPNotSupportedError(failure.error)
        return smtplib.SMTPException(failure.error)
    code, text = reply.code, _text(reply)
    by_step: dict[Step, Callable[[], Exception]] = {
        Step.GREETING: lambda: smtplib.SMTPConnectError(code, text),
        Step.EHLO: lambda: smtplib.SMTPHeloError(code, text),
        Step.AUTH: lambda: smtplib.SMTPAuthenticationError(code, text),
        Step.MAIL: lambda: smtplib.SMTPSenderRefused(code, text, mail_from),
        Step.RCPT: lambda: smtplib.SMTPRecipientsRefused({rcpt_to: (code, text)}),
        Step.DATA: lambda: smtplib.SMTPDataError(code, text),
    }
    return by_step.get(failure.step, lambda: smtplib.SMTPResponseException(code, text))()


@attrs.define
class SMTPSubmitter:
    """
    The default submit function: hand a report mail to an SMTP server.

    The report must arrive even when TLS fails (RFC 8460 §3, RPT-SEND-14):
    with ``starttls="opportunistic"`` (the default) STARTTLS is used when
    offered, without certificate checks; a refusal of STARTTLS goes on in
    cleartext and a failed handshake is retried in cleartext. Use
    ``"required"`` (with verification) for a submission server across an
    untrusted network.

    Args:
        host: The submission server.
        port: Its port.
        starttls: ``"opportunistic"``, ``"required"`` or ``"never"``.
        implicit_tls: Connect with TLS at once (port 465).
        context: TLS context for ``"required"``/``implicit_tls``
            (system trust by default).
        username: Log in with this name (after TLS, if any), AUTH PLAIN or
            LOGIN (RFC 4954).
        password: And this password.
        timeout: Seconds for each network operation: the connect, the
            handshake, and each command with its whole reply (a server
            dripping its reply cannot stretch it).
        local_hostname: The EHLO name (the host's FQDN by default).
    """

    host: str = "localhost"
    port: int = 25
    starttls: Literal["opportunistic", "required", "never"] = "opportunistic"
    implicit_tls: bool = False
    context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 60.0
    local_hostname: str | None = None

    def __call__(self, message: bytes, mail_from: str, rcpt_to: str) -> None:
        """
        Submit one message (blocking).

        Args:
            message: The message (CRLF line endings).
            mail_from: The envelope sender.
            rcpt_to: The recipient.

        Raises:
            smtplib.SMTPException: The server refused it (the subclass
                :mod:`smtplib` uses for that step).
            OSError: The connection failed or timed out.
            ValueError: An address cannot be sent (a line break, ``<``,
                ``>``, non-ASCII).
        """
        connection = BlockingSMTPConnection(
            self.host, self.port, deadline=0.0, context=self._context()
        )

        def perform(request: Request) -> Any:
            self._renew(connection, request)
            return connection.perform(request)

        try:
            report = drive(self._conversation(message, mail_from, rcpt_to), perform)
        finally:
            connection.close()
        self._outcome(report, mail_from, rcpt_to)

    async def asubmit(self, message: bytes, mail_from: str, rcpt_to: str) -> None:
        """
        Submit one message (asyncio).

        Args:
            message: The message (CRLF line endings).
            mail_from: The envelope sender.
            rcpt_to: The recipient.

        Raises:
            smtplib.SMTPException: The server refused it.
            OSError: The connection failed or timed out.
            ValueError: An address cannot be sent.
        """
        connection = AsyncSMTPConnection(
            self.host, self.port, deadline=0.0, context=self._context()
        )

        async def perform(request: Request) -> Any:
            self._renew(connection, request)
            return await connection.perform(request)

        try:
            report = await adrive(self._conversation(message, mail_from, rcpt_to), perform)
        finally:
            await connection.close()
        self._outcome(report, mail_from, rcpt_to)

    def _conversation(
        self, message: bytes, mail_from: str, rcpt_to: str
    ) -> Generator[Request, Any, SubmissionReport]:
        return submission(
            message,
            mail_from,
            rcpt_to,
            helo_name=self.local_hostname or _local_hostname(),
            server_name=self.host,
            starttls=STARTTLSMode(self.starttls),
            implicit_tls=self.implicit_tls,
            username=self.username,
            password=self.password,
        )

    def _context(self) -> ssl.SSLContext:
        if self.implicit_tls or self.starttls == "required":
            return self.context or ssl.create_default_context()
        return opportunistic_context()

    def _renew(
        self, connection: BlockingSMTPConnection | AsyncSMTPConnection, request: Request
    ) -> None:
        # Each connect, handshake and command (with its reply) has ``timeout``.
        if not isinstance(request, Receive):
            connection.deadline = time.monotonic() + self.timeout

    def _outcome(self, report: SubmissionReport, mail_from: str, rcpt_to: str) -> None:
        if report.tls_fallback is not None:
            # RFC 8460 §3: the report is delivered despite TLS failures (RPT-SEND-14).
            log.warning(
                "TLS-RPT: STARTTLS to %s failed (%s); sent in cleartext",
                self.host,
                report.tls_fallback.error,
            )
        failure = report.failure
        if failure is None:
            return
        exc = failure.exception
        if isinstance(exc, SMTPReplyError):
            raise smtplib.SMTPException(f"bad reply during {failure.step}: {exc}") from exc
        if exc is not None:
            raise exc
        raise _refusal(failure, mail_from, rcpt_to)
