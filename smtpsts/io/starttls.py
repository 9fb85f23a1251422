"""
Probing an SMTP server's STARTTLS (RFC 3207), sync and asyncio.

:func:`probe_starttls` and :func:`aprobe_starttls` connect, read the
greeting, say EHLO, send STARTTLS, complete the TLS handshake, say QUIT and
report what the core needs as a :class:`STARTTLSProbe`: was STARTTLS offered,
did the handshake succeed, the peer chain, the TLS version and cipher, or
the failure with its TLS-RPT result type (RFC 8460 §4.3.1).

Every step (connect, greeting, EHLO, STARTTLS, handshake) waits at most until
one overall deadline; a server that stalls anywhere, even mid-handshake,
costs at most ``timeout`` seconds. Replies are read by :class:`ReplyReader`,
a small sans-I/O parser with caps on the line length and the number of lines
(RFC 5321 §4.5.3.1.5), shared by both drivers. :mod:`smtplib` is not used:
its reply reader has no cap on the number of lines and its timeouts apply per
socket call, not per exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any

import attrs
from cryptography import x509

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.io._resolver import is_address
from smtpsts.io.tls import classify_tls_error, opportunistic_context, peer_chain

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

MAX_LINE_LENGTH = 2048
"""Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5: 512; some servers exceed it)."""

MAX_LINES = 100
"""Most lines one reply may have (an EHLO reply has a line per extension)."""

_CHUNK = 4096


class SMTPReplyError(Exception):
    """
    A server reply that does not fit RFC 5321 §4.2 (or exceeds a cap).

    Attributes:
        detail: What was wrong.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


class ReplyReader:
    """
    Sans-I/O reader of SMTP replies: feed bytes, take complete replies.

    Args:
        max_line: Longest line accepted, line ending included.
        max_lines: Most lines per reply.
    """

    def __init__(self, *, max_line: int = MAX_LINE_LENGTH, max_lines: int = MAX_LINES) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._max_line = max_line
        self._max_lines = max_lines

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
                multi-line reply differ, or the reply has too many lines.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_line:
                    raise SMTPReplyError(f"reply line longer than {self._max_line} octets")
                return None
            if end + 1 > self._max_line:
                raise SMTPReplyError(f"reply line longer than {self._max_line} octets")
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
            self._lines, self._code = [], None
            return reply


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


class _ProbeFailedError(Exception):
    """Ends a probe early with a failure (internal)."""

    def __init__(
        self, step: str, reason: str, error: str, result_type: ResultType | None = None
    ) -> None:
        super().__init__(error)
        self.step = step
        self.reason = reason
        self.error = error
        self.result_type = result_type


class _Probe:
    """The state and SMTP logic shared by the sync and asyncio drivers (no I/O)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        connect_to: str | None,
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
        self.target = connect_to or self.host
        # RFC 8461 §7.1 (STS-CERT-14): SNI is the MX host name, unless the
        # caller names another (DANE-30: the TLSA base domain).
        sni = server_name or self.host
        self.server_name = sni if is_address(sni) else to_alabel(sni)
        self.helo_name = helo_name or socket.gethostname() or "localhost"
        if any(c in self.helo_name for c in " \r\n"):
            # RFC 5321 §4.1.1.1: EHLO takes one domain or address literal.
            raise ValueError(f"invalid EHLO name {self.helo_name!r}")
        self.context = context if context is not None else opportunistic_context()
        self.reader = ReplyReader()
        self.fields: dict[str, Any] = {}
        self.step = "connect"

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def check_greeting(self, reply: Reply) -> None:
        if reply.code != 220:
            raise _ProbeFailedError("greeting", f"smtp-greeting-{reply.code}", _said(reply))
        self.fields["greeting"] = " ".join(reply.lines)

    def ehlo_command(self) -> bytes:
        self.step = "ehlo"
        return f"EHLO {self.helo_name}\r\n".encode("ascii", "replace")

    def check_ehlo(self, reply: Reply) -> None:
        if reply.code != 250:
            # Without EHLO there are no extensions, so no STARTTLS (RFC 3207 §4).
            raise _ProbeFailedError(
                "ehlo",
                f"ehlo-rejected-{reply.code}",
                _said(reply),
                ResultType.STARTTLS_NOT_SUPPORTED,
            )
        first = reply.lines[0].split()
        self.fields["ehlo_name"] = first[0] if first else ""
        keywords = tuple(line.split()[0].upper() for line in reply.lines[1:] if line.split())
        self.fields["extensions"] = keywords
        offered = "STARTTLS" in keywords
        self.fields["starttls_offered"] = offered
        if not offered:
            raise _ProbeFailedError(
                "ehlo",
                "starttls-not-offered",
                "the EHLO reply does not list STARTTLS",
                ResultType.STARTTLS_NOT_SUPPORTED,
            )
        self.step = "starttls"

    def check_starttls(self, reply: Reply) -> None:
        if reply.code != 220:
            raise _ProbeFailedError(
                "starttls",
                f"starttls-refused-{reply.code}",
                _said(reply),
                ResultType.STARTTLS_NOT_SUPPORTED,
            )
        if self.reader.pending:
            # RFC 3207 §5: nothing may follow the 220 in plaintext; data that
            # does would be mistaken for TLS-protected (command injection).
            raise _ProbeFailedError(
                "starttls",
                "data-after-starttls-reply",
                "the server sent plaintext after its 220 reply to STARTTLS",
                ResultType.VALIDATION_FAILURE,
            )
        self.step = "handshake"

    def tls_done(self, tls: ssl.SSLSocket | ssl.SSLObject) -> None:
        self.fields.update(
            handshake_ok=True,
            verified=self.context.verify_mode == ssl.CERT_REQUIRED,
            tls_version=tls.version(),
            cipher=(tls.cipher() or (None,))[0],
            chain=peer_chain(tls),
        )
        self.step = "quit"

    def failure(self, exc: BaseException) -> _ProbeFailedError:
        step = self.step
        if isinstance(exc, _ProbeFailedError):
            return exc
        if step == "handshake":
            result_type, reason = classify_tls_error(exc)
            error = f"timed out during {step}" if isinstance(exc, TimeoutError) else _describe(exc)
            return _ProbeFailedError(step, reason, error, result_type)
        if isinstance(exc, SMTPReplyError):
            return _ProbeFailedError(step, "smtp-protocol-error", exc.detail)
        if isinstance(exc, TimeoutError):
            return _ProbeFailedError(step, f"io-timeout-during-{step}", f"timed out during {step}")
        if isinstance(exc, EOFError):
            return _ProbeFailedError(
                step, f"connection-closed-during-{step}", f"connection closed during {step}"
            )
        return _ProbeFailedError(
            step, f"{'connect' if step == 'connect' else 'io'}-error", _describe(exc)
        )

    def result(self, failed: _ProbeFailedError | None) -> STARTTLSProbe:
        fields = dict(self.fields)
        if failed is not None:
            fields.update(
                step=failed.step,
                reason=failed.reason,
                error=failed.error,
                result_type=failed.result_type,
            )
        return STARTTLSProbe(
            host=self.host,
            port=self.port,
            server_name=self.server_name,
            elapsed=time.monotonic() - self.started,
            **fields,
        )


def _said(reply: Reply) -> str:
    return f"{reply.code} {' '.join(reply.lines)}"[:300]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


def probe_starttls(
    host: str,
    port: int = 25,
    *,
    connect_to: str | None = None,
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
        connect_to: The address to connect to instead of resolving ``host``
            (give one: resolving ``host`` uses the system resolver, whose
            wait the deadline cannot bound).
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
    """
    probe = _Probe(
        host=host,
        port=port,
        connect_to=connect_to,
        timeout=timeout,
        deadline=deadline,
        helo_name=helo_name,
        context=context,
        server_name=server_name,
    )
    sock: socket.socket | None = None
    failed: _ProbeFailedError | None = None
    try:
        sock = socket.create_connection((probe.target, port), timeout=probe.remaining())
        probe.fields.update(connected=True, address=sock.getpeername()[0])
        probe.step = "greeting"
        probe.check_greeting(_read_reply(sock, probe))
        sock.settimeout(probe.remaining())
        sock.sendall(probe.ehlo_command())
        probe.check_ehlo(_read_reply(sock, probe))
        sock.settimeout(probe.remaining())
        sock.sendall(b"STARTTLS\r\n")
        probe.check_starttls(_read_reply(sock, probe))
        sock.settimeout(probe.remaining())
        # CPython bounds the whole handshake by the socket timeout (one
        # deadline across its reads), so a stalling server cannot hold it.
        tls = probe.context.wrap_socket(
            sock, server_hostname=probe.server_name, do_handshake_on_connect=False
        )
        sock = tls
        tls.do_handshake()
        probe.tls_done(tls)
        with contextlib.suppress(OSError):
            tls.settimeout(min(probe.remaining(), 1.0))
            tls.sendall(b"QUIT\r\n")
    except (OSError, EOFError, SMTPReplyError, _ProbeFailedError) as e:
        failed = probe.failure(e)
    finally:
        if sock is not None:
            sock.close()
    return probe.result(failed)


def _read_reply(sock: socket.socket, probe: _Probe) -> Reply:
    while True:
        reply = probe.reader.next_reply()
        if reply is not None:
            return reply
        sock.settimeout(probe.remaining())
        data = sock.recv(_CHUNK)
        if not data:
            raise EOFError
        probe.reader.feed(data)


async def aprobe_starttls(
    host: str,
    port: int = 25,
    *,
    connect_to: str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 -- the same signature as probe_starttls
    deadline: float | None = None,
    helo_name: str | None = None,
    context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> STARTTLSProbe:
    """
    Probe one SMTP server's STARTTLS (asyncio).

    The arguments and the result are those of :func:`probe_starttls`.

    Args:
        host: The server's host name (and SNI unless ``server_name``).
        port: The TCP port.
        connect_to: The address to connect to instead of resolving ``host``.
        timeout: Seconds for the whole probe.
        deadline: An absolute :func:`time.monotonic` end time, if earlier.
        helo_name: The name to send with EHLO.
        context: The TLS context (default: no verification by OpenSSL).
        server_name: The SNI to send instead of ``host``.

    Returns:
        The probe result; never raises for network or protocol problems.

    Raises:
        smtpsts.DomainNameError: ``host`` or ``server_name`` is not a valid
            host name.
        ValueError: ``helo_name`` contains white space or a line break.
    """
    probe = _Probe(
        host=host,
        port=port,
        connect_to=connect_to,
        timeout=timeout,
        deadline=deadline,
        helo_name=helo_name,
        context=context,
        server_name=server_name,
    )
    writer: asyncio.StreamWriter | None = None
    failed: _ProbeFailedError | None = None
    try:
        async with asyncio.timeout(probe.deadline - time.monotonic()):
            reader, writer = await asyncio.open_connection(probe.target, port)
            probe.fields.update(connected=True, address=writer.get_extra_info("peername")[0])
            probe.step = "greeting"
            probe.check_greeting(await _aread_reply(reader, probe))
            writer.write(probe.ehlo_command())
            await writer.drain()
            probe.check_ehlo(await _aread_reply(reader, probe))
            writer.write(b"STARTTLS\r\n")
            await writer.drain()
            probe.check_starttls(await _aread_reply(reader, probe))
            await writer.start_tls(probe.context, server_hostname=probe.server_name)
            probe.tls_done(writer.get_extra_info("ssl_object"))
            writer.write(b"QUIT\r\n")
    except (OSError, EOFError, SMTPReplyError, _ProbeFailedError) as e:
        failed = probe.failure(e)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(min(max(probe.deadline - time.monotonic(), 0), 1.0)):
                    await writer.wait_closed()
    return probe.result(failed)


async def _aread_reply(reader: asyncio.StreamReader, probe: _Probe) -> Reply:
    while True:
        reply = probe.reader.next_reply()
        if reply is not None:
            return reply
        data = await reader.read(_CHUNK)
        if not data:
            raise EOFError
        probe.reader.feed(data)
