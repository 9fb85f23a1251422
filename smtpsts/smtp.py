"""
The SMTP client, sans I/O: capped replies and three conversations (RFC 5321, 3207, 4954).

Pure: no socket, no TLS, no clock. A conversation is a generator that yields
requests -- :class:`Connect`, :class:`Send`, :class:`Receive`,
:class:`StartTLS` -- and is sent each result (:class:`Connected`, ``None``,
the bytes received, :class:`TLSUpgraded` or :class:`TLSFailed`); an
exception from the network (an :class:`OSError`, a :class:`TimeoutError`) is
thrown in where it was asked for. The adapters in :mod:`smtpsts.io` perform
the requests and run the conversation with ``smtpsts.io._drive``'s
``drive`` or ``adrive``. Three conversations share the steps:

- :func:`starttls_session` -- greeting, EHLO, STARTTLS, the handshake; then
  either QUIT (the STARTTLS probe) or stop with the connection open for the
  caller, who must say EHLO again (RFC 3207 §4.2; the delivery session).
- :func:`greeting_only` -- connect and read the greeting (a delivery's
  cleartext retry after a broken handshake).
- :func:`submission` -- one message to a submission server: STARTTLS
  required, opportunistic or never, or implicit TLS; AUTH PLAIN or LOGIN;
  MAIL, RCPT, DATA with dot-stuffing; QUIT.

Replies are read by :class:`ReplyReader`, with caps on the line length, the
lines per reply and the bytes per reply (RFC 5321 §4.5.3.1.5): a malformed or
endless reply is an :class:`SMTPReplyError`, which the conversations turn
into an :class:`SMTPFailure`.

:func:`submission` and its types live in :mod:`smtpsts.smtp_submission`
(re-exported here); they use this module's private step helpers. What
is left (a little over 600 lines, the house's limit) is kept together
on purpose: the reply reader, the requests and the step helpers are private
to the two STARTTLS conversations, and splitting them would make them API.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

import attrs
from cryptography import x509

from ._vocab import ResultType
from .exceptions import SMTPReplyError

__all__ = [
    "MAX_LINES",
    "MAX_LINE_LENGTH",
    "MAX_REPLY_BYTES",
    "RECEIVE_SIZE",
    "Connect",
    "Connected",
    "Receive",
    "Reply",
    "ReplyReader",
    "SMTPFailure",
    "SMTPReplyError",
    "STARTTLSMode",
    "Send",
    "SessionReport",
    "StartTLS",
    "Step",
    "SubmissionReport",
    "TLSFailed",
    "TLSUpgraded",
    "greeting_only",
    "starttls_session",
    "submission",
]

MAX_LINE_LENGTH: Final = 2048
"""Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5: 512; some servers exceed it)."""

MAX_LINES: Final = 100
"""Most lines one reply may have (an EHLO reply has a line per extension)."""

MAX_REPLY_BYTES: Final = 64 * 1024
"""Most octets one reply may have, all its lines together."""

RECEIVE_SIZE: Final = 4096
"""The most bytes one :class:`Receive` asks for."""


# --------------------------------------------------------------------------- replies


@attrs.frozen
class Reply:
    """
    One SMTP reply (RFC 5321 §4.2).

    Attributes:
        code: The three-digit reply code.
        lines: The text of each line, after the code and separator.
    """

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The code and the lines on one line, at most 300 characters (for messages)."""
        return f"{self.code} {' '.join(self.lines)}"[:300]


class ReplyReader:
    """
    Sans-I/O reader of SMTP replies: feed bytes, take complete replies.

    Args:
        max_line: Longest line accepted, line ending included.
        max_lines: Most lines per reply.
        max_bytes: Most octets per reply.
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE_LENGTH,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._size = 0
        self._max_line = max_line
        self._max_lines = max_lines
        self._max_bytes = max_bytes

    @property
    def pending(self) -> bytes:
        """Bytes received but not part of a complete reply yet."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> None:
        """
        Add received bytes.

        Args:
            data: What the socket returned.
        """
        self._buffer += data

    def next_reply(self) -> Reply | None:
        """
        Take the next complete reply, if the buffered bytes hold one.

        Returns:
            The reply, or ``None`` when more bytes are needed.

        Raises:
            SMTPReplyError: A line is too long or malformed, the codes of a
                multi-line reply differ, or the reply has too many lines or
                octets.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_line:
                    raise SMTPReplyError(f"reply line longer than {self._max_line} octets")
                return None
            if end + 1 > self._max_line:
                raise SMTPReplyError(f"reply line longer than {self._max_line} octets")
            self._size += end + 1
            if self._size > self._max_bytes:
                raise SMTPReplyError(f"reply longer than {self._max_bytes} octets")
            raw = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            # RFC 5321 §4.2: Reply-code [ ("-" / SP) textstring ] CRLF
            head, sep, text = raw[:3], raw[3:4], raw[4:]
            if not (len(head) == 3 and head.isdigit() and sep in (b"", b" ", b"-")):
                raise SMTPReplyError(f"malformed reply line {raw[:80]!r}")
            code = int(head)
            if self._code is not None and code != self._code:
                raise SMTPReplyError(f"reply code changed from {self._code} to {code}")
            self._code = code
            self._lines.append(text.decode("utf-8", "replace"))
            if sep == b"-":
                if len(self._lines) >= self._max_lines:
                    raise SMTPReplyError(f"reply longer than {self._max_lines} lines")
                continue
            reply = Reply(code, tuple(self._lines))
            self._lines, self._code, self._size = [], None, 0
            return reply


# --------------------------------------------------------------------------- requests and results


@attrs.frozen
class Connect:
    """
    Open the TCP connection (closing an earlier one first); the result is :class:`Connected`.
    """


@attrs.frozen
class Connected:
    """
    The result of :class:`Connect`.

    Attributes:
        address: The server address connected to.
        local_address: This side's address (the TLS-RPT ``sending-mta-ip``).
    """

    address: str
    local_address: str | None = None


@attrs.frozen
class Send:
    """
    Send these bytes (all of them); the result is ``None``.

    Attributes:
        data: The bytes.
    """

    data: bytes


@attrs.frozen
class Receive:
    """
    Receive what has arrived, at most ``max_bytes``; the result is the bytes, ``b""`` once closed.

    Attributes:
        max_bytes: The most bytes wanted.
    """

    max_bytes: int = RECEIVE_SIZE


@attrs.frozen
class StartTLS:
    """
    Run the TLS handshake over the connection (RFC 3207 §4; RFC 8314 §3 for implicit TLS).

    The result is :class:`TLSUpgraded` or :class:`TLSFailed`; afterwards
    :class:`Send` and :class:`Receive` go through TLS.

    Attributes:
        server_name: The SNI to send (STS-CERT-14, DANE-30).
    """

    server_name: str


@attrs.frozen
class TLSUpgraded:
    """
    The handshake completed.

    Attributes:
        version: For example ``"TLSv1.3"``.
        cipher: The cipher suite name.
        chain: The certificates the server sent, leaf first.
        verified: Whether the adapter's TLS library verified the chain and name.
    """

    version: str | None
    cipher: str | None
    chain: tuple[x509.Certificate, ...] = ()
    verified: bool = False


@attrs.frozen
class TLSFailed:
    """
    The handshake failed (RFC 8460 §4.3).

    Attributes:
        result_type: The TLS-RPT result type.
        reason: A short ``failure-reason-code`` (``tls-remote-alert-40``...).
        error: What went wrong, in words.
        exception: What the TLS library raised, if anything.
    """

    result_type: ResultType
    reason: str
    error: str
    exception: BaseException | None = attrs.field(default=None, eq=False)


Request = Connect | Send | Receive | StartTLS
"""What a conversation asks its adapter to do."""


class Step(enum.StrEnum):
    """
    The steps of an SMTP client session, in order; a :class:`SMTPFailure` names the one that failed.
    """

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    HANDSHAKE = "handshake"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    QUIT = "quit"


@attrs.frozen
class SMTPFailure:
    """
    Why a conversation ended early: one value for the probe, the delivery session and submission.

    Attributes:
        step: The step that failed.
        reason: A short ``failure-reason-code`` (``smtp-greeting-554``,
            ``starttls-not-offered``, ``io-timeout-during-ehlo``...).
        error: What went wrong, in words.
        result_type: The TLS-RPT result type (RFC 8460 §4.3.1): set when
            STARTTLS was not offered, refused or failed, ``None`` for
            failures TLS-RPT has no type for (connect, greeting, I/O).
        reply: The server's refusing reply, if there was one.
        exception: What the adapter raised, if anything (the adapters look
            at it for local faults).
    """

    step: Step
    reason: str
    error: str
    result_type: ResultType | None = None
    reply: Reply | None = None
    exception: BaseException | None = attrs.field(default=None, eq=False)


class _Stop(Exception):  # noqa: N818 -- internal control flow, not an error
    """Ends a conversation early with a failure."""

    def __init__(self, failure: SMTPFailure) -> None:
        super().__init__(failure.error)
        self.failure = failure


class _Closed(Exception):  # noqa: N818 -- internal control flow
    """The server closed the connection."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


def _io_failure(step: Step, exc: BaseException) -> SMTPFailure:
    # What a network or protocol exception at ``step`` means.
    if isinstance(exc, SMTPReplyError):
        return SMTPFailure(step, "smtp-protocol-error", exc.detail, exception=exc)
    if isinstance(exc, TimeoutError):
        return SMTPFailure(
            step, f"io-timeout-during-{step}", f"timed out during {step}", None, None, exc
        )
    if isinstance(exc, _Closed):
        return SMTPFailure(
            step, f"connection-closed-during-{step}", f"connection closed during {step}"
        )
    reason = "connect-error" if step is Step.CONNECT else "io-error"
    return SMTPFailure(step, reason, _describe(exc), exception=exc)


_IO_ERRORS: Final = (OSError, MemoryError, SMTPReplyError, _Closed)
"""What a step may end with besides :class:`_Stop` (MemoryError: a local fault, for the adapter)."""


class _Client:
    """One connection's reply buffer and current step, for the conversations below."""

    def __init__(self) -> None:
        self.reader = ReplyReader()
        self.step = Step.CONNECT

    def connect(self) -> Generator[Request, Any, Connected]:
        self.reader = ReplyReader()
        self.step = Step.CONNECT
        connected: Connected = yield Connect()
        return connected

    def reply(self) -> Generator[Request, Any, Reply]:
        while (reply := self.reader.next_reply()) is None:
            data: bytes = yield Receive(RECEIVE_SIZE)
            if not data:
                raise _Closed
            self.reader.feed(data)
        return reply

    def command(self, line: str | bytes) -> Generator[Request, Any, Reply]:
        # RFC 5321 §2.4: commands are ASCII (addresses are checked; an EHLO
        # name should be an A-label).
        yield Send(line if isinstance(line, bytes) else f"{line}\r\n".encode("ascii", "replace"))
        return (yield from self.reply())

    def tls(self, server_name: str) -> Generator[Request, Any, TLSUpgraded | TLSFailed]:
        self.step = Step.HANDSHAKE
        result: TLSUpgraded | TLSFailed = yield StartTLS(server_name)
        # RFC 3207 §4.2: the client discards what it knew from before TLS.
        self.reader = ReplyReader()
        return result

    def greeting(self) -> Generator[Request, Any, Reply]:
        self.step = Step.GREETING
        reply = yield from self.reply()
        if reply.code != 220:  # RFC 5321 §3.1, §4.3.2
            raise _Stop(
                SMTPFailure(self.step, f"smtp-greeting-{reply.code}", reply.text, None, reply)
            )
        return reply

    def quit(self, *, wait: bool) -> Generator[Request, Any, None]:
        # RFC 5321 §4.1.1.10; a failure here changes nothing.
        self.step = Step.QUIT
        try:
            yield Send(b"QUIT\r\n")
            if wait:
                yield from self.reply()
        except _IO_ERRORS:
            pass


def _check_name(name: str) -> str:
    if not name or any(c in name for c in " \t\r\n"):
        # RFC 5321 §4.1.1.1: EHLO takes one domain or address literal.
        raise ValueError(f"invalid EHLO name {name!r}")
    return name


def _keywords(ehlo: Reply) -> dict[str, tuple[str, ...]]:
    # RFC 5321 §4.1.1.1: the first line names the server; each further line
    # is an ehlo-keyword and its parameters.
    found: dict[str, tuple[str, ...]] = {}
    for line in ehlo.lines[1:]:
        words = line.split()
        if words:
            found[words[0].upper()] = tuple(words[1:])
    return found


# --------------------------------------------------------------------------- STARTTLS session


@attrs.frozen
class SessionReport:
    """
    What :func:`starttls_session` saw, up to the TLS handshake.

    Attributes:
        connected: The connection, ``None`` if it was not made.
        greeting: The greeting.
        ehlo: The reply to the first EHLO.
        extensions: Its EHLO keywords, upper case, in order.
        starttls_offered: Whether the EHLO reply listed STARTTLS.
        starttls: The reply to STARTTLS, if it was sent.
        tls: The handshake's outcome, if it was tried.
        failure: Why the session ended before TLS was up, or ``None``.
    """

    connected: Connected | None = None
    greeting: Reply | None = None
    ehlo: Reply | None = None
    extensions: tuple[str, ...] = ()
    starttls_offered: bool = False
    starttls: Reply | None = None
    tls: TLSUpgraded | TLSFailed | None = None
    failure: SMTPFailure | None = None

    @property
    def ehlo_name(self) -> str | None:
        """The name the server gave in its EHLO reply (the TLS-RPT ``receiving-mx-helo``)."""
        if self.ehlo is None or self.ehlo.code != 250:
            return None
        first = self.ehlo.lines[0].split()
        return first[0] if first else ""

    @property
    def tls_attempted(self) -> bool:
        """
        Whether the client went for TLS: STARTTLS offered and accepted with a clean 220.

        STS-APPLY-16: an error reply to STARTTLS (or plaintext after the
        220, RFC 3207 §5) counts as STARTTLS not offered.
        """
        return self.tls is not None

    @property
    def tls_decided(self) -> bool:
        """
        Whether the session got far enough for a TLS verdict.

        It did when it ended with TLS up or with a TLS-RPT result type
        (STARTTLS not offered, refused, or a failed handshake); a connect,
        greeting or I/O failure before that is no verdict on TLS (RFC 5321
        §5.1: try the next address).
        """
        return self.failure is None or self.failure.result_type is not None


def starttls_session(
    helo_name: str, server_name: str, *, say_quit: bool
) -> Generator[Request, Any, SessionReport]:
    """
    Connect, read the greeting, say EHLO, send STARTTLS, shake hands (RFC 3207 §4).

    With ``say_quit`` (the probe) the conversation then says QUIT and ends;
    without it, it ends with TLS up and the connection open, and the server
    expects EHLO next (RFC 3207 §4.2). Every way it can end without TLS is a
    :attr:`SessionReport.failure`:

    - the greeting is not 220: ``smtp-greeting-NNN`` (no result type);
    - EHLO is refused: ``ehlo-rejected-NNN``, ``starttls-not-supported``
      (without EHLO no extensions, RFC 3207 §4);
    - STARTTLS not listed: ``starttls-not-offered`` (RFC 8460 §4.3.1);
    - STARTTLS answered 454 or 5xx: ``starttls-refused-NNN`` (RFC 3207 §4;
      STS-APPLY-16);
    - plaintext right after the 220 to STARTTLS: ``data-after-starttls-reply``,
      ``validation-failure`` (RFC 3207 §5: it would pass as protected);
    - the handshake failed: the adapter's :class:`TLSFailed`;
    - a timeout, a close, an I/O error or a malformed reply at any step:
      ``io-timeout-during-STEP``, ``connection-closed-during-STEP``,
      ``io-error`` (``connect-error``), ``smtp-protocol-error``.

    Args:
        helo_name: The EHLO name.
        server_name: The SNI for the handshake.
        say_quit: Say QUIT after the handshake (the probe).

    Returns:
        A generator; its return value is the :class:`SessionReport`.

    Raises:
        ValueError: ``helo_name`` is empty or contains white space (raised
            at once, before anything is sent).
    """
    return _starttls_session(_check_name(helo_name), server_name, say_quit=say_quit)


def _starttls_session(
    helo_name: str, server_name: str, *, say_quit: bool, greeting_only: bool = False
) -> Generator[Request, Any, SessionReport]:
    client = _Client()
    seen: dict[str, Any] = {}
    try:
        seen["connected"] = yield from client.connect()
        seen["greeting"] = yield from client.greeting()
        if greeting_only:
            return SessionReport(**seen)
        client.step = Step.EHLO
        ehlo = seen["ehlo"] = yield from client.command(f"EHLO {helo_name}")
        if ehlo.code != 250:
            _no_tls(Step.EHLO, f"ehlo-rejected-{ehlo.code}", ehlo.text, ehlo)
        keywords = _keywords(ehlo)
        seen["extensions"] = tuple(keywords)
        offered = seen["starttls_offered"] = "STARTTLS" in keywords
        if not offered:
            _no_tls(Step.EHLO, "starttls-not-offered", "the EHLO reply does not list STARTTLS")
        client.step = Step.STARTTLS
        reply = seen["starttls"] = yield from client.command("STARTTLS")
        if reply.code != 220:
            _no_tls(Step.STARTTLS, f"starttls-refused-{reply.code}", reply.text, reply)
        _no_plaintext_after_220(client)
        tls = seen["tls"] = yield from client.tls(server_name)
        _check_tls(tls)
        if say_quit:
            yield from client.quit(wait=False)
    except _Stop as stop:
        seen["failure"] = stop.failure
    except _IO_ERRORS as exc:
        seen["failure"] = _io_failure(client.step, exc)
    return SessionReport(**seen)


def _no_plaintext_after_220(client: _Client) -> None:
    if client.reader.pending:
        # RFC 3207 §5: nothing may follow the 220 in plaintext; data that
        # does would be mistaken for TLS-protected (command injection).
        raise _Stop(
            SMTPFailure(
                Step.STARTTLS,
                "data-after-starttls-reply",
                "the server sent plaintext after its 220 reply to STARTTLS",
                ResultType.VALIDATION_FAILURE,
            )
        )


def _check_tls(tls: TLSUpgraded | TLSFailed) -> None:
    if isinstance(tls, TLSFailed):
        failure = SMTPFailure(
            Step.HANDSHAKE, tls.reason, tls.error, tls.result_type, exception=tls.exception
        )
        raise _Stop(failure)


def _no_tls(step: Step, reason: str, error: str, reply: Reply | None = None) -> None:
    # RFC 8460 §4.3.1: no STARTTLS, whatever the reason, is starttls-not-supported.
    raise _Stop(SMTPFailure(step, reason, error, ResultType.STARTTLS_NOT_SUPPORTED, reply))


def greeting_only() -> Generator[Request, Any, SessionReport]:
    """
    Connect and read the greeting; the server expects EHLO next.

    A delivery retries in cleartext this way when a STARTTLS attempt broke
    the connection and the verdict allows delivery without TLS (RFC 8461 §5,
    ``testing``/``none``).

    Returns:
        A generator; its return value is the :class:`SessionReport` (with
        only :attr:`~SessionReport.connected` and
        :attr:`~SessionReport.greeting`, or a failure).
    """
    return _starttls_session("", "", say_quit=False, greeting_only=True)


# The submission conversation lives in smtpsts.smtp_submission (it imports
# this module's step helpers); its names stay importable from here.
_MOVED: Final = frozenset({"STARTTLSMode", "SubmissionReport", "submission"})

if TYPE_CHECKING:
    from .smtp_submission import STARTTLSMode, SubmissionReport, submission


def __getattr__(name: str) -> Any:
    """
    The submission names, from their module :mod:`smtpsts.smtp_submission`.

    Args:
        name: The attribute asked for.

    Returns:
        The object.

    Raises:
        AttributeError: ``name`` is not one of them.
    """
    if name in _MOVED:
        from . import smtp_submission  # noqa: PLC0415 -- a cycle: it imports this module

        return getattr(smtp_submission, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
