"""
The sans-I/O SMTP client (smtpsts.smtp): replies with caps and the three conversations (issue 11).

The conversations run against :class:`FakeServer`, a scripted server that
answers each request the way a network adapter would (results, or the
exception a socket would raise); no socket is involved.
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsts._vocab import ResultType
from smtpsts.io._drive import drive
from smtpsts.smtp import (
    Connect,
    Connected,
    Receive,
    Reply,
    ReplyReader,
    Request,
    Send,
    SessionReport,
    SMTPFailure,
    SMTPReplyError,
    StartTLS,
    Step,
    SubmissionReport,
    TLSFailed,
    TLSUpgraded,
    greeting_only,
    starttls_session,
    submission,
)

UP = TLSUpgraded("TLSv1.3", "TLS_AES_256_GCM_SHA384", (), verified=False)
BROKEN = TLSFailed(ResultType.VALIDATION_FAILURE, "tls-remote-alert-40", "alert", OSError("alert"))
EHLO_TLS = b"250-mx.test hello\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"
EHLO_PLAIN = b"250-mx.test hello\r\n250 8BITMIME\r\n"
MESSAGE = b"Subject: x\r\n\r\nhi\r\n"


class FakeServer:
    """
    A scripted SMTP server seen through the requests of a conversation.

    ``answers`` maps a command verb (``EHLO``, ``MAIL``...; ``BODY`` for the
    message, ``*`` for anything else) to the bytes sent back, or to a list of
    them used in turn (the last repeats), or to an exception the send
    raises. ``tls`` are the handshake results, in turn.
    """

    def __init__(
        self,
        answers: dict[str, Any] | None = None,
        *,
        greeting: bytes = b"220 mx.test ESMTP\r\n",
        tls: list[TLSUpgraded | TLSFailed] | None = None,
        connect: BaseException | None = None,
        receive: BaseException | None = None,
    ) -> None:
        self.answers = {"EHLO": EHLO_TLS, "STARTTLS": b"220 go ahead\r\n", "QUIT": b"221 bye\r\n"}
        self.answers.update(
            {"MAIL": b"250 ok\r\n", "RCPT": b"250 ok\r\n", "DATA": b"354 go\r\n"},
            BODY=b"250 queued\r\n",
        )
        self.answers.update(answers or {})
        self.greeting = greeting
        self.tls = list(tls or [UP])
        self.connect = connect
        self.receive = receive
        self.sent: list[bytes] = []
        self.connections = 0
        self.inbox = bytearray()

    def _answer(self, data: bytes) -> Any:
        if data.endswith(b".\r\n") and (data == b".\r\n" or data.endswith(b"\r\n.\r\n")):
            key = "BODY"
        else:
            word = data.split(b" ", 1)[0].strip().decode().upper()
            key = word if word in self.answers else "*"
        answer = self.answers.get(key, b"500 what\r\n")
        if isinstance(answer, list):
            return answer.pop(0) if len(answer) > 1 else answer[0]
        return answer

    def perform(self, request: Request) -> Any:
        if isinstance(request, Connect):
            if self.connect is not None:
                raise self.connect
            self.connections += 1
            self.inbox = bytearray(self.greeting)
            return Connected("192.0.2.25", "192.0.2.1")
        if isinstance(request, Send):
            self.sent.append(request.data)
            answer = self._answer(request.data)
            if isinstance(answer, BaseException):
                raise answer
            self.inbox += answer
            return None
        if isinstance(request, Receive):
            if not self.inbox and self.receive is not None:
                raise self.receive
            data = bytes(self.inbox[: request.max_bytes])
            del self.inbox[: request.max_bytes]
            return data
        assert isinstance(request, StartTLS)
        self.sent.append(b"<TLS " + request.server_name.encode() + b">")
        return self.tls.pop(0) if len(self.tls) > 1 else self.tls[0]

    @property
    def verbs(self) -> list[str]:
        """The commands sent, by their first word (``BODY`` for the message)."""
        return [
            "BODY"
            if d.endswith(b"\r\n.\r\n") or d == b".\r\n"
            else d.split(b" ", 1)[0].strip().decode()
            for d in self.sent
        ]


def run(conversation: Generator[Request, Any, Any], server: FakeServer) -> Any:
    """Run a conversation against the fake server."""
    return drive(conversation, server.perform)


def probe(server: FakeServer) -> SessionReport:
    """The probe's conversation."""
    report: SessionReport = run(starttls_session("client.test", "mx.test", say_quit=True), server)
    return report


def submit(server: FakeServer, **kw: Any) -> SubmissionReport:
    """The submission conversation, with test defaults."""
    kw.setdefault("helo_name", "client.test")
    kw.setdefault("server_name", "smtp.test")
    message = kw.pop("message", MESSAGE)
    report: SubmissionReport = run(
        submission(message, kw.pop("mail_from", "a@s.test"), kw.pop("rcpt_to", "b@r.test"), **kw),
        server,
    )
    return report


def failure_of(report: SessionReport | SubmissionReport) -> tuple[str, str, ResultType | None]:
    """The failed step, reason and result type."""
    assert report.failure is not None
    return (report.failure.step, report.failure.reason, report.failure.result_type)


# --------------------------------------------------------------------------- replies


class TestReplyReader:
    def test_multiline_in_pieces(self):
        """Replies are assembled from arbitrary pieces; bare LF is accepted; code-only lines too."""
        reader = ReplyReader()
        data = b"250-mx.test hi\r\n250-SIZE 10\n250 STARTTLS\r\n220\r\n"
        replies = []
        for i in range(len(data)):
            reader.feed(data[i : i + 1])
            while (reply := reader.next_reply()) is not None:
                replies.append(reply)
        assert [Reply(250, ("mx.test hi", "SIZE 10", "STARTTLS")), Reply(220, ("",))] == replies
        assert b"" == reader.pending

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"25x hello\r\n", "malformed"),
            (b"250+hello\r\n", "malformed"),
            (b"250-a\r\n251 b\r\n", "code changed"),
            (b"250-" + b"x" * 3000, "longer than"),
            (b"250-" + b"x" * 3000 + b"\r\n", "longer than"),
            (b"250-a\r\n" * 101, "lines"),
        ],
    )
    def test_rejects(self, data, message):
        """Malformed, inconsistent, overlong or endless replies raise SMTPReplyError."""
        reader = ReplyReader()
        reader.feed(data)
        with pytest.raises(SMTPReplyError, match=message):
            reader.next_reply()

    def test_needs_more(self):
        """An incomplete reply asks for more bytes."""
        reader = ReplyReader()
        reader.feed(b"250-a\r\n250 b")
        assert reader.next_reply() is None
        assert b"250 b" == reader.pending

    @settings(max_examples=300)
    @given(st.lists(st.binary(max_size=300), max_size=20))
    def test_only_reply_errors_escape(self, chunks):
        """SEC-16: on any bytes, the reader gives replies, asks for more, or raises SMTPReplyError."""
        reader = ReplyReader(max_line=200, max_lines=5)
        try:
            for chunk in chunks:
                reader.feed(chunk)
                while (reply := reader.next_reply()) is not None:
                    assert 0 <= reply.code <= 999
                    assert 1 <= len(reply.lines) <= 5
        except SMTPReplyError:
            pass

    # caps added with the core (issue 11)

    def test_reply_octet_cap(self) -> None:
        """RFC 5321 §4.5.3.1: a reply of many short lines still has a cap on its octets."""
        reader = ReplyReader(max_bytes=20)
        reader.feed(b"250-aaaaaa\r\n250-bbbbbb\r\n250 c\r\n")
        with pytest.raises(SMTPReplyError, match="longer than 20 octets"):
            reader.next_reply()

    def test_octet_count_starts_again_per_reply(self) -> None:
        """The octet cap is per reply: two replies under it pass."""
        reader = ReplyReader(max_bytes=16)
        reader.feed(b"250 aaaaaaaaaa\r\n250 bbbbbbbbbb\r\n")
        assert [Reply(250, ("aaaaaaaaaa",)), Reply(250, ("bbbbbbbbbb",))] == [
            reader.next_reply(),
            reader.next_reply(),
        ]

    def test_error_is_in_the_hierarchy(self) -> None:
        """Issue 11: a malformed reply is a typed smtpsts error carrying its detail."""
        reader = ReplyReader()
        reader.feed(b"xyz\r\n")
        with pytest.raises(SMTPReplyError) as info:
            reader.next_reply()
        assert "malformed reply line b'xyz'" == info.value.detail == str(info.value)

    def test_text(self) -> None:
        """A reply in words: the code and its lines on one line, at most 300 characters."""
        assert "250 a b" == Reply(250, ("a", "b")).text
        assert 300 == len(Reply(250, ("x" * 400,)).text)


# --------------------------------------------------------------------------- STARTTLS session


class TestSession:
    def test_probe_success(self) -> None:
        """RFC 3207 §4: greeting, EHLO, STARTTLS, the handshake with the SNI, then QUIT."""
        server = FakeServer()
        report = probe(server)
        assert ["EHLO", "STARTTLS", "<TLS", "QUIT"] == server.verbs
        assert b"EHLO client.test\r\n" == server.sent[0]
        assert b"<TLS mx.test>" == server.sent[2]
        assert (Connected("192.0.2.25", "192.0.2.1"), UP, None) == (
            report.connected,
            report.tls,
            report.failure,
        )
        assert Reply(220, ("mx.test ESMTP",)) == report.greeting
        assert ("SIZE", "STARTTLS") == report.extensions
        assert ("mx.test", True, True, True) == (
            report.ehlo_name,
            report.starttls_offered,
            report.tls_attempted,
            report.tls_decided,
        )

    def test_session_stops_after_tls(self) -> None:
        """RFC 3207 §4.2: the delivery session ends with TLS up; the caller says EHLO next."""
        server = FakeServer()
        report = run(starttls_session("client.test", "mx.test", say_quit=False), server)
        assert (["EHLO", "STARTTLS", "<TLS"], UP) == (server.verbs, report.tls)

    def test_quit_failure_changes_nothing(self) -> None:
        """RFC 5321 §4.1.1.10: a QUIT that cannot be sent does not fail a good probe."""
        server = FakeServer({"QUIT": ConnectionResetError()})
        assert (UP, None) == (probe(server).tls, probe(server).failure)

    @pytest.mark.parametrize(
        ("answers", "expected", "tls_decided"),
        [
            ({}, ("greeting", "smtp-greeting-554", None), False),
            ({"EHLO": b"502 no\r\n"}, ("ehlo", "ehlo-rejected-502", "sns"), True),
            ({"EHLO": EHLO_PLAIN}, ("ehlo", "starttls-not-offered", "sns"), True),
            (
                {"STARTTLS": b"454 4.7.0 later\r\n"},
                ("starttls", "starttls-refused-454", "sns"),
                True,
            ),
            (
                {"STARTTLS": b"220 go\r\nMAIL\r\n"},
                ("starttls", "data-after-starttls-reply", "vf"),
                True,
            ),
        ],
    )
    def test_no_tls(
        self, answers: dict[str, bytes], expected: tuple[str, str, str | None], tls_decided: bool
    ) -> None:
        """RFC 3207 §4, §5, RFC 8460 §4.3.1, STS-APPLY-16: every way to end without TLS, with its result type."""
        greeting = b"554 go away\r\n" if not answers else b"220 mx.test\r\n"
        server = FakeServer(answers, greeting=greeting)
        report = probe(server)
        types = {
            "sns": ResultType.STARTTLS_NOT_SUPPORTED,
            "vf": ResultType.VALIDATION_FAILURE,
            None: None,
        }
        assert (expected[0], expected[1], types[expected[2]]) == failure_of(report)
        assert (tls_decided, False, None) == (report.tls_decided, report.tls_attempted, report.tls)
        assert "QUIT" not in server.verbs

    def test_refusal_reply_kept(self) -> None:
        """The refusing reply and its text are in the failure."""
        report = probe(FakeServer({"STARTTLS": b"454 4.7.0 TLS not available\r\n"}))
        assert report.failure is not None
        assert (Reply(454, ("4.7.0 TLS not available",)), "454 4.7.0 TLS not available") == (
            report.failure.reply,
            report.failure.error,
        )
        assert report.starttls_offered  # it was offered; the refusal is STS-APPLY-16's business

    def test_handshake_failure(self) -> None:
        """RFC 8460 §4.3: a failed handshake is the adapter's TLSFailed, with its exception."""
        report = probe(FakeServer(tls=[BROKEN]))
        assert ("handshake", "tls-remote-alert-40", ResultType.VALIDATION_FAILURE) == failure_of(
            report
        )
        assert report.failure is not None
        assert report.failure.exception is BROKEN.exception
        assert (True, True, BROKEN) == (report.tls_attempted, report.tls_decided, report.tls)

    @pytest.mark.parametrize(
        ("server", "expected"),
        [
            (FakeServer(connect=ConnectionRefusedError("refused")), ("connect", "connect-error")),
            (FakeServer(connect=TimeoutError()), ("connect", "io-timeout-during-connect")),
            (FakeServer(greeting=b""), ("greeting", "connection-closed-during-greeting")),
            (
                FakeServer(greeting=b"", receive=TimeoutError()),
                ("greeting", "io-timeout-during-greeting"),
            ),
            (FakeServer({"EHLO": BrokenPipeError("pipe")}), ("ehlo", "io-error")),
            (FakeServer({"EHLO": b"250-a\r\n251 b\r\n"}), ("ehlo", "smtp-protocol-error")),
            (FakeServer({"EHLO": MemoryError()}), ("ehlo", "io-error")),
        ],
    )
    def test_io_failures(self, server: FakeServer, expected: tuple[str, str]) -> None:
        """A timeout, a close, an I/O error or a malformed reply at a step: no result type, no TLS verdict."""
        report = probe(server)
        assert (*expected, None) == failure_of(report)
        assert not report.tls_decided

    def test_io_failure_texts(self) -> None:
        """The failure says what happened; the exception is kept for the adapter's local-fault check."""
        refused = ConnectionRefusedError("refused")
        report = probe(FakeServer(connect=refused))
        assert report.failure is not None
        assert ("ConnectionRefusedError: refused", refused) == (
            report.failure.error,
            report.failure.exception,
        )
        assert "timed out during connect" == probe(FakeServer(connect=TimeoutError())).failure.error  # type: ignore[union-attr]
        assert "BrokenPipeError" == probe(FakeServer({"EHLO": BrokenPipeError()})).failure.error  # type: ignore[union-attr]
        closed = probe(FakeServer(greeting=b""))
        assert ("connection closed during greeting", None) == (
            closed.failure.error,
            closed.failure.exception,
        )  # type: ignore[union-attr]

    def test_ehlo_name(self) -> None:
        """RFC 5321 §4.1.1.1: the EHLO reply's first word names the server; empty stays empty."""
        assert "" == probe(FakeServer({"EHLO": b"250\r\n"})).ehlo_name
        assert probe(FakeServer({"EHLO": b"502 no\r\n"})).ehlo_name is None
        assert probe(FakeServer(greeting=b"554 no\r\n")).ehlo_name is None

    def test_blank_extension_lines_skipped(self) -> None:
        """An EHLO reply line without a keyword adds no extension."""
        report = probe(FakeServer({"EHLO": b"250-mx\r\n250-\r\n250 STARTTLS\r\n"}))
        assert ("STARTTLS",) == report.extensions

    @pytest.mark.parametrize("name", ["", "a b", "x\r\nRCPT TO:<a@b>", "tab\there"])
    def test_bad_helo_name(self, name: str) -> None:
        """RFC 5321 §4.1.1.1: an EHLO name that is empty or would inject a command is refused at once."""
        with pytest.raises(ValueError, match="invalid EHLO name"):
            starttls_session(name, "mx.test", say_quit=True)

    def test_greeting_only(self) -> None:
        """The cleartext retry: connect, read the greeting, nothing sent; the server expects EHLO."""
        server = FakeServer()
        report = run(greeting_only(), server)
        assert ([], Reply(220, ("mx.test ESMTP",)), None) == (
            server.verbs,
            report.greeting,
            report.failure,
        )
        assert (True, False) == (report.tls_decided, report.tls_attempted)

    def test_greeting_only_refused(self) -> None:
        """A refused greeting on the retry is a failure without a verdict."""
        report = run(greeting_only(), FakeServer(greeting=b"421 busy\r\n"))
        assert ("greeting", "smtp-greeting-421", None) == failure_of(report)
        assert not report.tls_decided


# --------------------------------------------------------------------------- submission


class TestSubmission:
    def test_opportunistic_upgrades_and_says_ehlo_again(self) -> None:
        """RFC 3207 §4.2: after the handshake the client forgets the extensions and says EHLO again."""
        server = FakeServer({"EHLO": [EHLO_TLS, EHLO_PLAIN]})
        report = submit(server)
        assert [
            "EHLO",
            "STARTTLS",
            "<TLS",
            "EHLO",
            "MAIL",
            "RCPT",
            "DATA",
            "BODY",
            "QUIT",
        ] == server.verbs
        assert (Reply(250, ("queued",)), UP, None, None) == (
            report.accepted,
            report.tls,
            report.tls_fallback,
            report.failure,
        )
        # The second EHLO offered no SIZE: the first one's extensions are forgotten.
        assert b"MAIL FROM:<a@s.test>\r\n" == server.sent[4]
        assert b"<TLS smtp.test>" == server.sent[2]

    def test_size_when_offered(self) -> None:
        """RFC 1870 §6: MAIL FROM carries SIZE when the server offers it."""
        server = FakeServer()
        submit(server, starttls="never")
        assert ["EHLO", "MAIL", "RCPT", "DATA", "BODY", "QUIT"] == server.verbs
        assert f"MAIL FROM:<a@s.test> SIZE={len(MESSAGE)}\r\n".encode() == server.sent[1]
        assert b"RCPT TO:<b@r.test>\r\n" == server.sent[2]

    def test_no_starttls_offered(self) -> None:
        """RPT-SEND-14: opportunistic mode goes on in cleartext; required mode fails."""
        server = FakeServer({"EHLO": EHLO_PLAIN})
        report = submit(server)
        assert (None, None) == (report.tls, report.failure)
        assert "STARTTLS" not in server.verbs
        required = submit(FakeServer({"EHLO": EHLO_PLAIN}), starttls="required")
        assert (
            "starttls",
            "starttls-not-offered",
            ResultType.STARTTLS_NOT_SUPPORTED,
        ) == failure_of(required)
        assert "server offers no STARTTLS" == required.failure.error  # type: ignore[union-attr]

    def test_starttls_refused(self) -> None:
        """RFC 3207 §4: after a 454 the opportunistic client goes on in cleartext; required fails and QUITs."""
        server = FakeServer({"STARTTLS": b"454 later\r\n"})
        report = submit(server)
        assert (None, None) == (report.tls, report.failure)
        assert ["EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "BODY", "QUIT"] == server.verbs
        server = FakeServer({"STARTTLS": b"454 later\r\n"})
        required = submit(server, starttls="required")
        assert (
            "starttls",
            "starttls-refused-454",
            ResultType.STARTTLS_NOT_SUPPORTED,
        ) == failure_of(required)
        assert ["EHLO", "STARTTLS", "QUIT"] == server.verbs

    @pytest.mark.parametrize(
        "server",
        [
            lambda: FakeServer(tls=[BROKEN, UP]),
            lambda: FakeServer({"STARTTLS": b"220 go\r\nMAIL\r\n"}),
        ],
        ids=["handshake", "plaintext-after-220"],
    )
    def test_broken_tls_retried_in_cleartext(self, server: Any) -> None:
        """RPT-SEND-14, RFC 3207 §5: a broken STARTTLS is retried on a new connection without it."""
        fake = server()
        report = submit(fake)
        assert (2, None, None) == (fake.connections, report.tls, report.failure)
        assert report.tls_fallback is not None
        assert ["EHLO", "STARTTLS"] == fake.verbs[:2]
        assert ["EHLO", "MAIL", "RCPT", "DATA", "BODY", "QUIT"] == [
            v for v in fake.verbs[2:] if v != "<TLS"
        ]

    def test_broken_tls_required(self) -> None:
        """Required STARTTLS: a failed handshake is the failure (its exception for the adapter)."""
        fake = FakeServer(tls=[BROKEN])
        report = submit(fake, starttls="required")
        assert ("handshake", "tls-remote-alert-40", ResultType.VALIDATION_FAILURE) == failure_of(
            report
        )
        assert (1, None) == (fake.connections, report.tls_fallback)
        plain = submit(FakeServer({"STARTTLS": b"220 go\r\nMAIL\r\n"}), starttls="required")
        assert (
            "starttls",
            "data-after-starttls-reply",
            ResultType.VALIDATION_FAILURE,
        ) == failure_of(plain)

    def test_never(self) -> None:
        """starttls="never": no STARTTLS even when offered."""
        server = FakeServer()
        assert submit(server, starttls="never").failure is None
        assert "STARTTLS" not in server.verbs

    def test_implicit_tls(self) -> None:
        """RFC 8314 §3: implicit TLS shakes hands before the greeting and never sends STARTTLS."""
        server = FakeServer()
        report = submit(server, implicit_tls=True)
        assert (UP, None) == (report.tls, report.failure)
        assert ["<TLS", "EHLO", "MAIL", "RCPT", "DATA", "BODY", "QUIT"] == server.verbs
        failed = submit(FakeServer(tls=[BROKEN]), implicit_tls=True)
        assert ("handshake", "tls-remote-alert-40", ResultType.VALIDATION_FAILURE) == failure_of(
            failed
        )

    def test_helo_fallback(self) -> None:
        """RFC 5321 §4.1.4: a server refusing EHLO gets HELO (and then no extensions)."""
        server = FakeServer({"EHLO": b"502 no\r\n", "HELO": b"250 mx.test\r\n"})
        report = submit(server)
        assert report.failure is None
        assert ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "BODY", "QUIT"] == server.verbs
        refused = submit(FakeServer({"EHLO": b"502 no\r\n", "HELO": b"501 no\r\n"}))
        assert ("ehlo", "helo-rejected-501", None) == failure_of(refused)

    @pytest.mark.parametrize(
        ("answers", "expected"),
        [
            ({"MAIL": b"451 later\r\n"}, ("mail", "mail-refused-451")),
            ({"RCPT": b"550 no such user\r\n"}, ("rcpt", "rcpt-refused-550")),
            ({"DATA": b"554 no\r\n"}, ("data", "data-refused-554")),
            ({"BODY": b"451 try later\r\n"}, ("data", "data-refused-451")),
            ({"BODY": b""}, ("data", "connection-closed-during-data")),
            ({"BODY": TimeoutError()}, ("data", "io-timeout-during-data")),
        ],
    )
    def test_refusals(self, answers: dict[str, Any], expected: tuple[str, str]) -> None:
        """RFC 5321 §4.2.5, RPT-SEND-20: each refusal names its step and keeps the reply."""
        server = FakeServer(answers)
        report = submit(server, starttls="never")
        assert (*expected, None) == failure_of(report)
        assert report.accepted is None
        # A refusal is followed by QUIT; a broken connection is not.
        assert (report.failure.reply is not None) == ("QUIT" in server.verbs)  # type: ignore[union-attr]

    def test_rcpt_251(self) -> None:
        """RFC 5321 §4.2.2: 251 (will forward) accepts the recipient."""
        assert submit(FakeServer({"RCPT": b"251 forwarded\r\n"})).failure is None

    def test_dot_stuffing(self) -> None:
        """RFC 5321 §4.5.2, §2.3.8: leading dots doubled, every line ended by CRLF, a lone dot at the end."""
        cases = {
            b"a\r\n.b\r\n..c\r\n": b"a\r\n..b\r\n...c\r\n.\r\n",
            b"a\nb": b"a\r\nb\r\n.\r\n",
            b".\r\n": b"..\r\n.\r\n",
            b"": b".\r\n",
            b"x\r": b"x\r\n.\r\n",
        }
        for message, expected in cases.items():
            server = FakeServer()
            submit(server, message=message, starttls="never")
            assert expected == server.sent[4], message

    def test_null_sender(self) -> None:
        """RFC 5321 §4.5.5: the null reverse path is "<>"."""
        server = FakeServer()
        submit(server, mail_from="", starttls="never")
        assert server.sent[1].startswith(b"MAIL FROM:<> ")

    @pytest.mark.parametrize("address", ["a@b>\r\nRCPT TO:<x@y", "a\nb@c", "é@x.test", "<a@b>"])
    def test_bad_addresses(self, address: str) -> None:
        """RFC 5321 §4.1.2: an address that would end the command or is not ASCII is refused at once."""
        for where in ("mail_from", "rcpt_to"):
            with pytest.raises(ValueError, match="invalid address"):
                submit(FakeServer(), **{where: address})

    def test_bad_helo_name(self) -> None:
        """The EHLO name is checked before anything is sent."""
        with pytest.raises(ValueError, match="invalid EHLO name"):
            submission(MESSAGE, "a@b", "c@d", helo_name="a b", server_name="x")


class TestAuth:
    def test_plain(self) -> None:
        """RFC 4954 §4, RFC 4616 §2: AUTH PLAIN with the initial response, after TLS."""
        server = FakeServer(
            {"EHLO": b"250-mx\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n", "AUTH": b"235 ok\r\n"}
        )
        report = submit(server, username="u", password="p\u00e9")
        assert report.failure is None
        token = base64.b64encode("\0u\0p\u00e9".encode()).decode()
        assert f"AUTH PLAIN {token}\r\n".encode() in server.sent
        assert server.verbs.index("AUTH") > server.verbs.index("<TLS")

    @pytest.mark.parametrize(
        "answers",
        [
            {"EHLO": b"250-mx\r\n250 AUTH PLAIN\r\n"},
            {"EHLO": b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", "STARTTLS": b"454 no\r\n"},
        ],
        ids=["not-offered", "refused"],
    )
    def test_no_login_in_cleartext(self, answers: dict[str, bytes]) -> None:
        """Issue 11, RFC 4954 §4/§14: opportunistic without TLS stops before AUTH (auth-needs-tls)."""
        server = FakeServer(answers)
        report = submit(server, username="u", password="p")
        assert (Step.AUTH, "auth-needs-tls", None) == failure_of(report)
        assert [] == [v for v in server.verbs if v in ("AUTH", "MAIL")]

    def test_login(self) -> None:
        """RFC 4954: AUTH LOGIN answers two 334 challenges with the name and the password."""
        server = FakeServer(
            {
                "EHLO": b"250-mx\r\n250 AUTH=LOGIN\r\n",
                "AUTH": b"334 VXNlcm5hbWU6\r\n",
                "*": [b"334 UGFzc3dvcmQ6\r\n", b"235 ok\r\n"],
            }
        )
        report = submit(server, starttls="never", username="user")
        assert report.failure is None
        assert [b"AUTH LOGIN\r\n", b"dXNlcg==\r\n", b"\r\n"] == server.sent[1:4]

    def test_login_refused_at_once(self) -> None:
        """A refusal of AUTH LOGIN itself sends no credentials."""
        server = FakeServer({"EHLO": b"250-mx\r\n250 AUTH LOGIN\r\n", "AUTH": b"504 no\r\n"})
        report = submit(server, starttls="never", username="u", password="p")
        assert ("auth", "auth-refused-504", None) == failure_of(report)
        assert ["EHLO", "AUTH", "QUIT"] == server.verbs

    def test_already_authenticated(self) -> None:
        """RFC 4954 §6: 503 (already authenticated) is not a failure."""
        server = FakeServer({"EHLO": b"250-mx\r\n250 AUTH PLAIN\r\n", "AUTH": b"503 already\r\n"})
        assert submit(server, starttls="never", username="u", password="p").failure is None

    @pytest.mark.parametrize(
        ("ehlo", "auth", "expected"),
        [
            (b"250 mx\r\n", b"", ("auth", "auth-not-offered")),
            (b"250-mx\r\n250 AUTH CRAM-MD5\r\n", b"", ("auth", "auth-no-mechanism")),
            (
                b"250-mx\r\n250 AUTH PLAIN\r\n",
                b"535 5.7.8 bad credentials\r\n",
                ("auth", "auth-refused-535"),
            ),
        ],
    )
    def test_failures(self, ehlo: bytes, auth: bytes, expected: tuple[str, str]) -> None:
        """RFC 4954: no AUTH, no mechanism we speak, or refused credentials; the password is never in the failure."""
        server = FakeServer({"EHLO": ehlo, "AUTH": auth})
        report = submit(server, starttls="never", username="u", password="secret")
        assert (*expected, None) == failure_of(report)
        assert "secret" not in repr(report)
        assert "MAIL" not in server.verbs


def test_failure_value() -> None:
    """Issue 11: one failure value; the exception does not take part in equality."""
    a = SMTPFailure(Step.EHLO, "io-error", "x", exception=OSError())
    b = SMTPFailure(Step.EHLO, "io-error", "x", exception=OSError())
    assert a == b
    assert "ehlo" == a.step
