"""
Handing one message to a submission server, sans I/O (RFC 5321 §3.3, RFC 6409, RFC 4954).

:func:`submission` is the third conversation of the SMTP client core; it
shares the reply reader, the step helpers and the one failure value of
:mod:`smtpsts.smtp` (which re-exports the names here, the old import path).
STARTTLS is required, opportunistic (RPT-SEND-14) or never, or the session
starts with implicit TLS (RFC 8314 §3); AUTH PLAIN (RFC 4616) or LOGIN is
never sent in cleartext in opportunistic mode.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Generator
from typing import Any

import attrs

from .smtp import (
    _IO_ERRORS,
    Reply,
    Request,
    SMTPFailure,
    Step,
    TLSFailed,
    TLSUpgraded,
    _check_name,
    _check_tls,
    _Client,
    _io_failure,
    _keywords,
    _no_plaintext_after_220,
    _no_tls,
    _Stop,
)

__all__ = ["STARTTLSMode", "SubmissionReport", "submission"]


class STARTTLSMode(enum.StrEnum):
    """
    How :func:`submission` uses STARTTLS.
    """

    OPPORTUNISTIC = "opportunistic"
    """STARTTLS when offered; refused or broken TLS means cleartext (RPT-SEND-14)."""

    REQUIRED = "required"
    """STARTTLS or nothing: no STARTTLS, a refusal or a failed handshake is a failure."""

    NEVER = "never"
    """Cleartext."""


@attrs.frozen
class SubmissionReport:
    """
    How :func:`submission` ended.

    Attributes:
        accepted: The server's reply accepting the message (the end of
            DATA), ``None`` when it was not accepted.
        tls: The TLS of the session that carried it, ``None`` for cleartext.
        tls_fallback: An opportunistic STARTTLS that failed and was retried
            in cleartext on a new connection.
        failure: Why the message was not accepted.
    """

    accepted: Reply | None = None
    tls: TLSUpgraded | None = None
    tls_fallback: SMTPFailure | None = None
    failure: SMTPFailure | None = None


class _Retry(Exception):  # noqa: N818 -- internal control flow
    """An opportunistic STARTTLS broke the connection: start again in cleartext."""

    def __init__(self, failure: SMTPFailure) -> None:
        super().__init__(failure.error)
        self.failure = failure


def _check_address(address: str) -> str:
    # RFC 5321 §4.1.2: a path is ASCII (no SMTPUTF8 here), and nothing in it
    # may end the command or the angle brackets around it.
    if not address.isascii() or any(c in address for c in "<>\r\n\0"):
        raise ValueError(f"invalid address {address!r}")
    return address


def submission(
    message: bytes,
    mail_from: str,
    rcpt_to: str,
    *,
    helo_name: str,
    server_name: str,
    starttls: STARTTLSMode | str = STARTTLSMode.OPPORTUNISTIC,
    implicit_tls: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Generator[Request, Any, SubmissionReport]:
    """
    Hand one message to a submission server (RFC 5321 §3.3, RFC 6409).

    The steps: connect; the handshake first with ``implicit_tls`` (RFC 8314
    §3); the greeting; EHLO, or HELO when EHLO is refused (RFC 5321
    §4.1.4); STARTTLS as ``starttls`` says, then EHLO again (RFC 3207 §4.2);
    AUTH PLAIN (RFC 4616) or LOGIN when a user name is given (RFC 4954);
    MAIL FROM (with SIZE when offered, RFC 1870), RCPT TO, DATA with the
    message dot-stuffed and its lines ended by CRLF (RFC 5321 §4.5.2,
    §2.3.8); QUIT.

    In opportunistic mode (report mail must arrive even when TLS fails, RFC
    8460 §3, RPT-SEND-14) a 454 or 5xx to STARTTLS continues in cleartext on
    the same connection (RFC 3207 §4), and a failed handshake (or plaintext
    after the 220, RFC 3207 §5) starts again on a new connection without
    STARTTLS.
    A login is never sent in cleartext in that mode: a session without TLS
    ends before AUTH with the failure ``auth-needs-tls`` (RFC 4954 §4, §14;
    nothing of the credentials is sent).

    Args:
        message: The message.
        mail_from: The envelope sender (``""`` for the null path).
        rcpt_to: The recipient.
        helo_name: The EHLO name.
        server_name: The SNI (and name to verify) for the handshake.
        starttls: A :class:`STARTTLSMode`.
        implicit_tls: Shake hands right after connecting (port 465).
        username: Log in with this name (after TLS, if any).
        password: And this password.

    Returns:
        A generator; its return value is the :class:`SubmissionReport`.

    Raises:
        ValueError: ``helo_name`` or an address cannot be sent (raised at
            once, before anything is sent).
    """
    _check_name(helo_name)
    _check_address(mail_from)
    _check_address(rcpt_to)
    return _submission(
        message,
        (mail_from, rcpt_to),
        helo_name=helo_name,
        server_name=server_name,
        mode=STARTTLSMode(starttls),
        implicit_tls=implicit_tls,
        login=None if username is None else (username, password or ""),
    )


def _submission(
    message: bytes,
    envelope: tuple[str, str],
    *,
    helo_name: str,
    server_name: str,
    mode: STARTTLSMode,
    implicit_tls: bool,
    login: tuple[str, str] | None,
) -> Generator[Request, Any, SubmissionReport]:
    client = _Client()
    fallback: SMTPFailure | None = None
    use_starttls = mode is not STARTTLSMode.NEVER and not implicit_tls
    while True:
        try:
            yield from client.connect()
            tls = None
            if implicit_tls:
                tls = yield from client.tls(server_name)
                _check_tls(tls)
            yield from client.greeting()
            keywords = yield from _hello(client, helo_name)
            if use_starttls:
                upgraded = yield from _starttls(client, keywords, server_name, mode)
                if upgraded is not None:
                    tls = upgraded
                    keywords = yield from _hello(client, helo_name)  # RFC 3207 §4.2
            if login is not None:
                _no_cleartext_login(tls, mode)
                yield from _auth(client, keywords, *login)
            accepted = yield from _transaction(client, keywords, message, envelope)
        except _Retry as retry:
            # RPT-SEND-14: a new connection, in cleartext.
            fallback, use_starttls = retry.failure, False
            continue
        except _Stop as stop:
            if stop.failure.reply is not None:
                yield from client.quit(wait=True)
            return SubmissionReport(tls_fallback=fallback, failure=stop.failure)
        except _IO_ERRORS as exc:
            return SubmissionReport(tls_fallback=fallback, failure=_io_failure(client.step, exc))
        yield from client.quit(wait=True)
        assert not isinstance(tls, TLSFailed)  # _check_tls raised otherwise
        return SubmissionReport(accepted, tls, fallback)


def _no_cleartext_login(tls: TLSUpgraded | TLSFailed | None, mode: STARTTLSMode) -> None:
    # RFC 4954 §4 and §14, RFC 8314 §3: credentials go only over TLS. An
    # opportunistic session that ended up in cleartext (no STARTTLS, a
    # refusal, a broken handshake) stops before AUTH; NEVER is the caller's
    # explicit choice of cleartext.
    if tls is None and mode is STARTTLSMode.OPPORTUNISTIC:
        raise _Stop(
            SMTPFailure(
                Step.AUTH,
                "auth-needs-tls",
                "no TLS for this session: credentials are not sent in cleartext",
            )
        )


def _hello(client: _Client, helo_name: str) -> Generator[Request, Any, dict[str, tuple[str, ...]]]:
    client.step = Step.EHLO
    reply = yield from client.command(f"EHLO {helo_name}")
    if reply.code == 250:
        return _keywords(reply)
    # RFC 5321 §4.1.4: a server that refuses EHLO stays where it was; HELO may do.
    reply = yield from client.command(f"HELO {helo_name}")
    if reply.code != 250:
        raise _Stop(SMTPFailure(Step.EHLO, f"helo-rejected-{reply.code}", reply.text, reply=reply))
    return {}


def _starttls(
    client: _Client, keywords: dict[str, tuple[str, ...]], server_name: str, mode: STARTTLSMode
) -> Generator[Request, Any, TLSUpgraded | None]:
    # The TLS now in force, or None to go on in cleartext on this connection.
    required = mode is STARTTLSMode.REQUIRED
    if "STARTTLS" not in keywords:
        if required:
            _no_tls(Step.STARTTLS, "starttls-not-offered", "server offers no STARTTLS")
        return None
    client.step = Step.STARTTLS
    reply = yield from client.command("STARTTLS")
    if reply.code != 220:
        if required:
            _no_tls(Step.STARTTLS, f"starttls-refused-{reply.code}", reply.text, reply)
        return None  # RFC 3207 §4: the session goes on without TLS
    try:
        _no_plaintext_after_220(client)
        tls = yield from client.tls(server_name)
        _check_tls(tls)
    except _Stop as stop:
        if required:
            raise
        raise _Retry(stop.failure) from None
    assert isinstance(tls, TLSUpgraded)  # _check_tls raised otherwise
    return tls


def _mechanisms(keywords: dict[str, tuple[str, ...]]) -> set[str] | None:
    # RFC 4954 §3: "AUTH mech..."; some servers still say "AUTH=mech...".
    found: set[str] | None = None
    for keyword, params in keywords.items():
        if keyword == "AUTH" or keyword.startswith("AUTH="):
            found = (found or set()) | {p.upper() for p in params}
            if keyword != "AUTH":
                found.add(keyword[5:])
    return found


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _auth(
    client: _Client, keywords: dict[str, tuple[str, ...]], username: str, password: str
) -> Generator[Request, Any, None]:
    client.step = Step.AUTH
    mechanisms = _mechanisms(keywords)
    if mechanisms is None:
        raise _Stop(
            SMTPFailure(
                Step.AUTH, "auth-not-offered", "SMTP AUTH extension not supported by server."
            )
        )
    if "PLAIN" in mechanisms:
        # RFC 4616 §2 (authzid NUL authcid NUL passwd) as the initial response (RFC 4954 §4).
        reply = yield from client.command("AUTH PLAIN " + _b64(f"\0{username}\0{password}"))
    elif "LOGIN" in mechanisms:
        reply = yield from client.command("AUTH LOGIN")
        for secret in (username, password):
            if reply.code == 334:
                reply = yield from client.command(_b64(secret))
    else:
        raise _Stop(
            SMTPFailure(Step.AUTH, "auth-no-mechanism", "No suitable authentication method found.")
        )
    # RFC 4954 §6: 235 is success; 503 says this session is authenticated already.
    if reply.code not in (235, 503):
        raise _Stop(SMTPFailure(Step.AUTH, f"auth-refused-{reply.code}", reply.text, reply=reply))


def _data(message: bytes) -> bytes:
    # RFC 5321 §4.5.2: a line starting with "." gets one more; §2.3.8: CRLF
    # ends every line; ".\r\n" ends the data (§4.1.1.4).
    lines = message.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    stuffed = b"".join(
        (b"." if line.startswith(b".") else b"") + line.removesuffix(b"\r") + b"\r\n"
        for line in lines
    )
    return stuffed + b".\r\n"


def _refused(client: _Client, reply: Reply, accept: tuple[int, ...]) -> None:
    if reply.code not in accept:
        raise _Stop(
            SMTPFailure(client.step, f"{client.step}-refused-{reply.code}", reply.text, reply=reply)
        )


def _transaction(
    client: _Client,
    keywords: dict[str, tuple[str, ...]],
    message: bytes,
    envelope: tuple[str, str],
) -> Generator[Request, Any, Reply]:
    mail_from, rcpt_to = envelope
    client.step = Step.MAIL
    size = f" SIZE={len(message)}" if "SIZE" in keywords else ""  # RFC 1870 §6
    _refused(client, (yield from client.command(f"MAIL FROM:<{mail_from}>{size}")), (250,))
    client.step = Step.RCPT
    _refused(client, (yield from client.command(f"RCPT TO:<{rcpt_to}>")), (250, 251))
    client.step = Step.DATA
    _refused(client, (yield from client.command("DATA")), (354,))
    accepted = yield from client.command(_data(message))
    _refused(client, accepted, (250,))
    return accepted
