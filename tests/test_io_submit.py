"""
The report-mail submitter (smtpsts.io.submit) against real SMTP servers on loopback.

aiosmtpd serves the ordinary cases (STARTTLS, implicit TLS, AUTH,
refusals); a small scripted socket server serves what aiosmtpd will not do
(refuse STARTTLS, drip-feed a reply, send garbage). Every test runs through
the blocking call and the asyncio :meth:`SMTPSubmitter.asubmit` (the
``send`` fixture). Issue 11: the same conversation as the probe, no smtplib.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Self

import pytest

import certfactory
from smtpsts import SMTPSTSError
from smtpsts.io import submit as submit_module
from smtpsts.io.submit import CleartextLoginRefusedError, SMTPSubmitter
from tlsservers import server_context

MESSAGE = b"Subject: report\r\n\r\nhello\r\n.dot line\r\n"
FROM, TO = "tlsrpt@sender.test", "reports@receiver.test"


class Mailbox:
    """An aiosmtpd handler keeping what it received; ``data_reply`` / ``rcpt_reply`` refuse when set."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes, bool]] = []
        self.data_reply: str | None = None
        self.rcpt_reply: str | None = None
        self.mail_reply: str | None = None

    async def handle_MAIL(  # noqa: N802 -- aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 -- aiosmtpd hook name
        if self.data_reply is not None:
            return self.data_reply
        self.received.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                session.ssl is not None,
            )
        )
        return "250 OK"


@contextlib.contextmanager
def aiosmtpd_server(box: Mailbox, **options: Any) -> Iterator[int]:
    """A real aiosmtpd server on 127.0.0.1; yields its port."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def pki() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for "localhost" and a client context trusting its private root."""
    issued = certfactory.pki("localhost", ca_name="Submit")
    client = ssl.create_default_context(cadata=issued.root.pem.decode())
    return server_context(issued.leaf, issued.intermediate), client


@pytest.fixture(params=["sync", "async"])
def send(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Submit MESSAGE through the blocking call or asubmit."""

    def run(submitter: SMTPSubmitter, message: bytes = MESSAGE, rcpt_to: str = TO) -> None:
        if request.param == "sync":
            submitter(message, FROM, rcpt_to)
        else:
            asyncio.run(submitter.asubmit(message, FROM, rcpt_to))

    return run


class Scripted:
    """
    A scripted SMTP server on 127.0.0.1: ``answers`` maps a command verb to the reply bytes.

    ``drip`` sends the greeting one byte every ``drip`` seconds, without end.
    """

    def __init__(
        self, answers: dict[str, bytes], *, greeting: bytes = b"220 scripted\r\n", drip: float = 0.0
    ) -> None:
        self.answers = {"EHLO": b"250-scripted\r\n250 STARTTLS\r\n", "QUIT": b"221 bye\r\n"}
        self.answers.update(
            {
                "MAIL": b"250 ok\r\n",
                "RCPT": b"250 ok\r\n",
                "DATA": b"354 go\r\n",
                ".": b"250 queued\r\n",
            }
        )
        self.answers.update(answers)
        self.greeting = greeting
        self.drip = drip
        self.commands: list[str] = []
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(5)
                if self.drip:
                    while not self.stop.wait(self.drip):
                        conn.sendall(b"2")
                    return
                if not self.greeting:
                    return  # hang up at once
                conn.sendall(self.greeting)
                with conn.makefile("rb") as lines:
                    in_data = False
                    for raw in lines:
                        line = raw.decode().rstrip("\r\n")
                        if in_data:
                            in_data = line != "."
                            if in_data:
                                continue
                        verb = line.split(" ", 1)[0].upper()
                        self.commands.append(verb)
                        conn.sendall(self.answers.get(verb, b"500 what\r\n"))
                        in_data = verb == "DATA" and self.answers["DATA"].startswith(b"354")
                        if verb == "QUIT":
                            return


class TestDelivery:
    def test_cleartext(self, send: Callable[..., None]) -> None:
        """RFC 5321 §3.3: the message arrives as sent, dot-stuffing undone by the server (RFC 5321 §4.5.2)."""
        box = Mailbox()
        with aiosmtpd_server(box) as port:
            send(SMTPSubmitter("127.0.0.1", port, timeout=5, local_hostname="client.test"))
        assert [(FROM, [TO], MESSAGE, False)] == box.received

    def test_opportunistic_untrusted_certificate(self, send: Callable[..., None], pki: Any) -> None:
        """RPT-SEND-14: opportunistic STARTTLS goes through a server with an untrusted certificate."""
        server_ctx, _ = pki
        box = Mailbox()
        with aiosmtpd_server(box, tls_context=server_ctx) as port:
            send(SMTPSubmitter("127.0.0.1", port, timeout=5))
        assert [(FROM, [TO], MESSAGE, True)] == box.received

    def test_required_verifies(self, send: Callable[..., None], pki: Any) -> None:
        """Required STARTTLS verifies the certificate: the system roots refuse a private CA, its root passes."""
        server_ctx, client_ctx = pki
        box = Mailbox()
        with aiosmtpd_server(box, tls_context=server_ctx) as port:
            with pytest.raises(ssl.SSLError):
                send(SMTPSubmitter("localhost", port, starttls="required", timeout=5))
            send(
                SMTPSubmitter("localhost", port, starttls="required", context=client_ctx, timeout=5)
            )
        assert [(FROM, [TO], MESSAGE, True)] == box.received

    def test_never(self, send: Callable[..., None], pki: Any) -> None:
        """starttls="never": cleartext even when STARTTLS is offered."""
        server_ctx, _ = pki
        box = Mailbox()
        with aiosmtpd_server(box, tls_context=server_ctx) as port:
            send(SMTPSubmitter("127.0.0.1", port, starttls="never", timeout=5))
        assert [(FROM, [TO], MESSAGE, False)] == box.received

    def test_required_without_starttls(self, send: Callable[..., None]) -> None:
        """RPT-SEND-14: "required" insists on STARTTLS (smtplib's SMTPNotSupportedError)."""
        box = Mailbox()
        with (
            aiosmtpd_server(box) as port,
            pytest.raises(smtplib.SMTPNotSupportedError, match="no STARTTLS"),
        ):
            send(SMTPSubmitter("127.0.0.1", port, starttls="required", timeout=5))
        assert [] == box.received

    def test_failed_handshake_falls_back(
        self, send: Callable[..., None], caplog: pytest.LogCaptureFixture
    ) -> None:
        """RPT-SEND-14: a STARTTLS handshake that fails is retried in cleartext, with a warning."""
        old = server_context(certfactory.make("localhost"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1  # we insist on 1.2+
        box = Mailbox()
        with caplog.at_level(logging.WARNING), aiosmtpd_server(box, tls_context=old) as port:
            send(SMTPSubmitter("127.0.0.1", port, timeout=5))
        assert [(FROM, [TO], MESSAGE, False)] == box.received
        assert "sent in cleartext" in caplog.text

    def test_implicit_tls_and_login(self, send: Callable[..., None], pki: Any) -> None:
        """RFC 8314 §3, RFC 4954: implicit TLS, then AUTH (PLAIN, or LOGIN where PLAIN is not offered)."""
        from aiosmtpd.smtp import AuthResult

        server_ctx, client_ctx = pki
        logins: list[tuple[str, bytes, bytes]] = []

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            logins.append((mechanism, data.login, data.password))
            ok = data.password == b"p\xc3\xa9"
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535

        box = Mailbox()
        options = {
            "ssl_context": server_ctx,
            "authenticator": authenticator,
            "server_hostname": "localhost",
            "auth_require_tls": False,  # aiosmtpd sees only STARTTLS as TLS
        }
        submitter = SMTPSubmitter(
            "localhost",
            0,
            implicit_tls=True,
            context=client_ctx,
            username="u",
            password="p\u00e9",
            timeout=5,
        )
        with aiosmtpd_server(box, **options) as port:
            submitter.port = port
            send(submitter)
        with aiosmtpd_server(box, **options, auth_exclude_mechanism=["PLAIN"]) as port:
            submitter.port = port
            send(submitter)
            submitter.password = "wrong"
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                send(submitter)
        assert 535 == info.value.smtp_code
        assert [
            ("PLAIN", b"u", b"p\xc3\xa9"),
            ("LOGIN", b"u", b"p\xc3\xa9"),
            ("LOGIN", b"u", b"wrong"),
        ] == logins
        assert 2 == len(box.received)

    def test_auth_not_offered(self, send: Callable[..., None]) -> None:
        """RFC 4954: without an AUTH extension there is no login (SMTPNotSupportedError)."""
        with (
            aiosmtpd_server(Mailbox()) as port,
            pytest.raises(smtplib.SMTPNotSupportedError, match="AUTH"),
        ):
            # Cleartext by choice: opportunistic mode would stop before AUTH (issue 11).
            send(
                SMTPSubmitter(
                    "127.0.0.1", port, username="u", password="p", starttls="never", timeout=5
                )
            )


class TestNoCleartextLogin:
    """Issue 11, RFC 4954 §4 and §14: opportunistic STARTTLS never sends credentials without TLS."""

    @pytest.mark.parametrize(
        "answers",
        [
            {"EHLO": b"250-scripted\r\n250 AUTH PLAIN LOGIN\r\n"},
            {
                "EHLO": b"250-scripted\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
                "STARTTLS": b"454 4.7.0 TLS not available\r\n",
            },
        ],
        ids=["not-offered", "refused"],
    )
    def test_no_tls_no_auth(self, send: Callable[..., None], answers: dict[str, bytes]) -> None:
        """No STARTTLS offered, or refused: CleartextLoginRefusedError, no AUTH and no message sent."""
        with (
            Scripted(answers) as server,
            pytest.raises(CleartextLoginRefusedError, match="not sent in cleartext"),
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, username="u", password="p", timeout=5))
        assert [] == [c for c in server.commands if c in ("AUTH", "MAIL", "DATA")]

    def test_failed_handshake_no_auth(self, send: Callable[..., None]) -> None:
        """A failed handshake falls back to cleartext (RPT-SEND-14), but without the login: refused, nothing sent."""
        old = server_context(certfactory.make("localhost"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1  # we insist on 1.2+
        box = Mailbox()
        with (
            aiosmtpd_server(box, tls_context=old, auth_require_tls=False) as port,
            pytest.raises(CleartextLoginRefusedError),
        ):
            send(SMTPSubmitter("127.0.0.1", port, username="u", password="p", timeout=5))
        assert [] == box.received

    def test_is_an_smtplib_error(self) -> None:
        """Code catching smtplib's errors (and SMTPSTSError) still catches the refusal."""
        assert issubclass(CleartextLoginRefusedError, smtplib.SMTPNotSupportedError)
        assert issubclass(CleartextLoginRefusedError, SMTPSTSError)


class TestRefusals:
    @pytest.mark.parametrize(
        ("attribute", "reply", "error"),
        [
            ("mail_reply", "451 4.3.0 later", smtplib.SMTPSenderRefused),
            ("rcpt_reply", "550 5.1.1 no such user", smtplib.SMTPRecipientsRefused),
            ("data_reply", "554 5.6.0 rejected", smtplib.SMTPDataError),
        ],
    )
    def test_refusal(
        self, send: Callable[..., None], attribute: str, reply: str, error: type[Exception]
    ) -> None:
        """RPT-SEND-20: a 4xx/5xx refusal is raised as smtplib's exception for that step, with the code."""
        box = Mailbox()
        setattr(box, attribute, reply)
        with aiosmtpd_server(box) as port, pytest.raises(error) as info:
            send(SMTPSubmitter("127.0.0.1", port, timeout=5))
        assert reply.split(maxsplit=1)[0] in str(info.value)
        assert [] == box.received

    def test_greeting_refused(self, send: Callable[..., None]) -> None:
        """RFC 5321 §3.1: a 554 greeting is SMTPConnectError."""
        with (
            Scripted({}, greeting=b"554 go away\r\n") as server,
            pytest.raises(smtplib.SMTPConnectError) as info,
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, timeout=5))
        assert (554, b"go away") == (info.value.smtp_code, info.value.smtp_error)

    def test_starttls_refused_goes_on_in_cleartext(self, send: Callable[..., None]) -> None:
        """RFC 3207 §4, RPT-SEND-14: after a 454 to STARTTLS the report goes in cleartext on the same connection."""
        with Scripted({"STARTTLS": b"454 4.7.0 not now\r\n"}) as server:
            send(SMTPSubmitter("127.0.0.1", server.port, timeout=5))
        assert ["EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", ".", "QUIT"] == server.commands

    def test_starttls_refused_when_required(self, send: Callable[..., None]) -> None:
        """Required STARTTLS: a 454 is raised (smtplib's SMTPResponseException) and the session QUITs."""
        with (
            Scripted({"STARTTLS": b"454 4.7.0 not now\r\n"}) as server,
            pytest.raises(smtplib.SMTPResponseException) as info,
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, starttls="required", timeout=5))
        assert 454 == info.value.smtp_code
        assert ["EHLO", "STARTTLS", "QUIT"] == server.commands

    def test_helo_fallback_and_refusal(self, send: Callable[..., None]) -> None:
        """RFC 5321 §4.1.4: EHLO refused, HELO tried; HELO refused too is SMTPHeloError."""
        with Scripted({"EHLO": b"502 no\r\n", "HELO": b"250 ok\r\n"}) as server:
            send(SMTPSubmitter("127.0.0.1", server.port, timeout=5))
        assert ["EHLO", "HELO", "MAIL"] == server.commands[:3]
        with (
            Scripted({"EHLO": b"502 no\r\n", "HELO": b"501 no\r\n"}) as server,
            pytest.raises(smtplib.SMTPHeloError),
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, timeout=5))

    def test_closed_and_garbage(self, send: Callable[..., None]) -> None:
        """A server that hangs up is SMTPServerDisconnected; a malformed reply is an SMTPException, never a crash."""
        with (
            Scripted({}, greeting=b"") as server,
            pytest.raises(smtplib.SMTPServerDisconnected),
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, timeout=5))
        with (
            Scripted({"MAIL": b"hello there\r\n"}) as server,
            pytest.raises(smtplib.SMTPException, match="malformed"),
        ):
            send(SMTPSubmitter("127.0.0.1", server.port, starttls="never", timeout=5))

    def test_no_common_mechanism(self, send: Callable[..., None]) -> None:
        """RFC 4954: an AUTH offer without PLAIN or LOGIN is an SMTPException; no credentials are sent."""
        answers = {"EHLO": b"250-scripted\r\n250 AUTH CRAM-MD5\r\n"}
        with (
            Scripted(answers) as server,
            pytest.raises(smtplib.SMTPException, match="No suitable authentication"),
        ):
            send(
                SMTPSubmitter(
                    "127.0.0.1",
                    server.port,
                    username="u",
                    password="p",
                    starttls="never",
                    timeout=5,
                )
            )
        assert ["EHLO"] == server.commands[:1]
        assert "AUTH" not in server.commands

    def test_connection_refused(self, send: Callable[..., None]) -> None:
        """Nothing listening: the OSError itself (the outbox retries it)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            send(SMTPSubmitter("127.0.0.1", port, timeout=2))

    def test_drip_feed_hits_the_deadline(self, send: Callable[..., None]) -> None:
        """Deadlines everywhere: a greeting dripped a byte at a time still ends after ``timeout`` (smtplib never did)."""
        with Scripted({}, drip=0.05) as server:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                send(SMTPSubmitter("127.0.0.1", server.port, timeout=0.5))
            elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 2.5

    def test_bad_address(self, send: Callable[..., None]) -> None:
        """RFC 5321 §4.1.2: a recipient that would inject a command is refused before connecting."""
        with pytest.raises(ValueError, match="invalid address"):
            send(SMTPSubmitter("127.0.0.1", 9, timeout=1), rcpt_to="a@b>\r\nRCPT TO:<c@d")


def test_default_ehlo_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Like smtplib: the FQDN when it has a dot, else this host's address as a literal (RFC 5321 §4.1.3)."""
    monkeypatch.setattr(socket, "getfqdn", lambda: "host.example.test")
    assert "host.example.test" == submit_module._local_hostname()
    monkeypatch.setattr(socket, "getfqdn", lambda: "host")
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "192.0.2.7")
    assert "[192.0.2.7]" == submit_module._local_hostname()

    def fail(name: str) -> str:
        raise socket.gaierror("no")

    monkeypatch.setattr(socket, "gethostbyname", fail)
    assert "[127.0.0.1]" == submit_module._local_hostname()
