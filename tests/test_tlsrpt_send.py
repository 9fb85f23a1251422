"""Delivering TLS-RPT reports to real servers: aiosmtpd, an HTTPS endpoint, a DNS server, dkimpy."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import gzip
import http.server
import ipaddress
import itertools
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import certfactory
from dnsserver import DNSServer
from smtpsts.exceptions import UsageError
from smtpsts.io.dns import DNSResolver
from smtpsts.io.tlsrpt_send import (
    DeliveryResult,
    Outbox,
    ReportSender,
    SendSummary,
    SMTPSubmitter,
    is_report_message,
    post_report,
    retry_at,
    run_daily,
    send_due_reports,
)
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
from smtpsts.tlsrpt import (
    PolicyInfo,
    Report,
    ReportNotAuthenticatedError,
    ReportSyntaxError,
    ResultType,
    SessionResult,
    accept_report_message,
    parse_report_message,
    report_message,
)

DAY = date(2024, 3, 5)
AT = datetime(2024, 3, 5, 12, tzinfo=UTC)
NEXT = datetime(2024, 3, 6, 1, tzinfo=UTC)
POLICY = PolicyInfo(
    "sts",
    "recipient.example",
    ("version: STSv1", "mode: enforce", "mx: mx.recipient.example", "max_age: 86400"),
    ("mx.recipient.example",),
)
OK = SessionResult.succeeded(POLICY, receiving_mx_hostname="mx.recipient.example")
EXPIRED = SessionResult.failed(
    POLICY,
    ResultType.CERTIFICATE_EXPIRED,
    sending_mta_ip="192.0.2.1",
    receiving_mx_hostname="mx.recipient.example",
    receiving_ip="198.51.100.25",
)
RECORD = "_smtp._tls.recipient.example"
HTTPS_HOST = "reports.example.net"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
"""The allow-list the loopback tests need: the sender refuses these by default (issue 10)."""


# --------------------------------------------------------------------------- real servers


class Mailbox:
    """An aiosmtpd handler keeping what it received; ``reply`` refuses when set."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.reply: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        if self.reply is not None:
            return self.reply
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


class Endpoint:
    """A real HTTPS report endpoint on loopback; ``statuses`` are answered in turn (last repeats)."""

    def __init__(self, tmp: Path) -> None:
        self.root = certfactory.make("report test root", ca=True)
        leaf = certfactory.make(HTTPS_HOST, issuer=self.root, san=[HTTPS_HOST])
        (tmp / "leaf.pem").write_bytes(certfactory.chain_pem(leaf))
        (tmp / "leaf.key").write_bytes(leaf.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "leaf.pem", tmp / "leaf.key")
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.statuses = [200]
        self.location = f"https://{HTTPS_HOST}/elsewhere"
        self.stall = 0.0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(length, 1 << 24))
                endpoint.requests.append(
                    (self.command, self.path, dict(self.headers.items()), body)
                )
                if endpoint.stall:
                    time.sleep(endpoint.stall)
                status = endpoint.statuses[min(len(endpoint.requests), len(endpoint.statuses)) - 1]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", endpoint.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def connect_to(self) -> dict[tuple[str, int], tuple[str, int]]:
        return {(HTTPS_HOST, 443): ("127.0.0.1", self.port)}

    @property
    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.root.pem.decode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def https(tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = Endpoint(tmp_path)
    yield endpoint
    endpoint.close()


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    with DNSServer() as server:
        yield server


@pytest.fixture
def key() -> tuple[bytes, str]:
    """An RSA DKIM key: (private PEM, public key record with s=tlsrpt)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(der).decode()


def store_with_sessions(tmp_path: Path) -> SQLiteTLSRPTStore:
    store = SQLiteTLSRPTStore(tmp_path / "tlsrpt.db")
    store.add(OK, AT, 12)
    store.add(EXPIRED, AT, 3)
    store.flush()
    return store


def make_sender(dns_server: DNSServer, **options: Any) -> ReportSender:
    options.setdefault("allow_unsigned", True)
    # Issue 10: the test endpoints are on loopback, which the sender refuses by default.
    options.setdefault("https_allow", LOOPBACK)
    return ReportSender(
        organization_name="Sender Inc",
        contact_info="tlsrpt@sender.example",
        lookup_txt=DNSResolver([dns_server.address], lifetime=2).lookup_txt,
        **options,
    )


def expected_report(store: SQLiteTLSRPTStore) -> Report:
    report = store.aggregator(DAY).report(
        "recipient.example",
        DAY,
        organization_name="Sender Inc",
        contact_info="tlsrpt@sender.example",
    )
    assert report is not None
    return report


# --------------------------------------------------------------------------- mail


class TestMail:
    def test_mailed_report_signed_and_parsed_back(
        self,
        tmp_path: Path,
        smtp: tuple[Mailbox, int],
        dns_server: DNSServer,
        key: tuple[bytes, str],
    ) -> None:
        """RPT-SEND-04, RPT-SEND-05, RPT-SEND-06, RPT-SEND-07, RPT-SEND-08, RPT-SEND-10, RPT-SEND-11, RPT-SEND-12, RPT-SEND-14, RPT-SEND-21: the mailed report arrives DKIM-signed and parses back to the stored counts."""
        import dkim

        from smtpsts.io.dkim import DKIMPySigner

        box, port = smtp
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:tls-reports@recipient.example"')
        store = store_with_sessions(tmp_path)
        signer = DKIMPySigner("rpt", "sender.example", key[0])
        sender = make_sender(
            dns_server,
            submit=SMTPSubmitter("127.0.0.1", port, timeout=10),
            signer=signer,
            allow_unsigned=False,
        )
        with Outbox(tmp_path / "tlsrpt.db") as outbox:
            summary = send_due_reports(store, outbox, sender, now=NEXT)
        assert 1 == len(summary.built)
        assert summary.built == summary.delivered
        [(mail_from, rcpts, data)] = box.received
        assert "tlsrpt@sender.example" == mail_from
        assert ["tls-reports@recipient.example"] == rcpts
        msg = email.message_from_bytes(data, policy=email.policy.default)
        report = expected_report(store)
        assert report == parse_report_message(data)
        assert (
            'multipart/report; report-type="tlsrpt"'
            == msg["Content-Type"].split(";", 1)[0]
            + ";"
            + msg["Content-Type"].split(";", 1)[1].split(";")[0]
        )
        assert "recipient.example" == msg["TLS-Report-Domain"]
        assert "sender.example" == msg["TLS-Report-Submitter"]
        assert "No" == msg["TLS-Required"]
        assert (
            f"Report Domain: recipient.example Submitter: sender.example Report-ID: <{report.report_id}@sender.example>"
            == msg["Subject"]
        )
        assert "tls-reports@recipient.example" == msg["To"]
        assert msg["Date"] is not None
        assert msg["Message-ID"] is not None
        sig = msg["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
        tags = dict(t.split("=", 1) for t in sig.split(";") if "=" in t)
        assert "sender.example" == tags["d"]
        assert "l" not in tags
        signed = set(tags["h"].lower().split(":"))
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "tls-report-domain",
            "tls-report-submitter",
        } <= signed

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            assert b"rpt._domainkey.sender.example." == name
            return key[1].encode()

        assert dkim.verify(data, dnsfunc=dnsfunc, tlsrpt="strict")

    @pytest.mark.interop
    def test_parsedmarc_reads_our_mail(
        self, tmp_path: Path, smtp: tuple[Mailbox, int], dns_server: DNSServer
    ) -> None:
        """RPT-SEND-04, RPT-SEND-05: parsedmarc's SMTP TLS parser reads the mailed report with our counts."""
        import parsedmarc  # an interop oracle (dependency group "interop"), never a runtime dependency

        box, port = smtp
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox:
            send_due_reports(
                store,
                outbox,
                make_sender(dns_server, submit=SMTPSubmitter("127.0.0.1", port)),
                now=NEXT,
            )
        parsed = parsedmarc.parse_report_email(box.received[0][2], offline=True)
        assert "smtp_tls" == parsed["report_type"]
        tls = parsed["report"]
        assert "Sender Inc" == tls["organization_name"]
        [policy] = tls["policies"]
        assert 12 == policy["successful_session_count"]
        assert 3 == policy["failed_session_count"]
        assert "recipient.example" == policy["policy_domain"]
        # Known quirk (DEPS.md §6): parsedmarc reads mx-host-pattern only, so our
        # RFC 8460 "mx-host" does not show up in its output.
        assert "certificate-expired" == policy["failure_details"][0]["result_type"]

    def test_unsigned_mail_refused_by_default(
        self, tmp_path: Path, smtp: tuple[Mailbox, int], dns_server: DNSServer
    ) -> None:
        """RPT-SEND-10: without a DKIM signer a report is not mailed unless allow_unsigned is set."""
        box, port = smtp
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store,
                outbox,
                make_sender(
                    dns_server, allow_unsigned=False, submit=SMTPSubmitter("127.0.0.1", port)
                ),
                now=NEXT,
            )
            assert summary.built == summary.retrying
            assert [] == box.received
            [item] = outbox.items("pending")
            assert "no DKIM signer" in (item.last_error or "")

    def test_smtp_refusal_is_retried(
        self, tmp_path: Path, smtp: tuple[Mailbox, int], dns_server: DNSServer
    ) -> None:
        """RPT-SEND-20: a submission server refusing the mail means a retry later."""
        box, port = smtp
        box.reply = "451 try later"
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server, submit=SMTPSubmitter("127.0.0.1", port)),
                now=NEXT,
            )
            assert summary.built == summary.retrying
            assert "451" in (outbox.items()[0].last_error or "")

    def test_starttls_opportunistic_and_required(self, tmp_path: Path) -> None:
        """RPT-SEND-14: report mail goes through a STARTTLS server with an untrusted certificate; "required" refuses it."""
        import smtplib

        from aiosmtpd.controller import Controller

        issued = certfactory.make("localhost")
        (tmp_path / "c.pem").write_bytes(issued.pem)
        (tmp_path / "k.pem").write_bytes(issued.key_pem)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        box = Mailbox()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_ctx)
        controller.start()
        try:
            SMTPSubmitter("127.0.0.1", port)(
                b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example"
            )
            assert 1 == len(box.received)
            with pytest.raises(ssl.SSLError):
                SMTPSubmitter("127.0.0.1", port, starttls="required")(
                    b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example"
                )
            SMTPSubmitter("127.0.0.1", port, starttls="never")(
                b"Subject: y\r\n\r\nhi\r\n", "a@s.example", "b@r.example"
            )
            assert 2 == len(box.received)
        finally:
            controller.stop()
        with pytest.raises(OSError):
            SMTPSubmitter("127.0.0.1", port, timeout=2)(b"x", "a@s.example", "b@r.example")
        assert smtplib  # the submitter raises smtplib/OSError errors, never swallows them

    def test_starttls_missing_falls_back_to_cleartext(self, smtp: tuple[Mailbox, int]) -> None:
        """RPT-SEND-14: cleartext is allowed for report mail; "required" insists on STARTTLS."""
        import smtplib

        box, port = smtp
        SMTPSubmitter("127.0.0.1", port)(b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example")
        assert 1 == len(box.received)
        with pytest.raises(smtplib.SMTPNotSupportedError):
            SMTPSubmitter("127.0.0.1", port, starttls="required")(
                b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example"
            )


class TestSubmitterModes:
    def _server(self, tmp_path: Path, box: Mailbox, **options: Any) -> Any:
        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(box, hostname="127.0.0.1", port=port, **options)
        controller.start()
        return controller

    def _context(self, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        root = certfactory.make("smtp root", ca=True)
        leaf = certfactory.make("localhost", issuer=root, san=["localhost"])
        (tmp_path / "c.pem").write_bytes(certfactory.chain_pem(leaf))
        (tmp_path / "k.pem").write_bytes(leaf.key_pem)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        return server, ssl.create_default_context(cadata=root.pem.decode())

    def test_failed_handshake_falls_back(self, tmp_path: Path) -> None:
        """RPT-SEND-14: a STARTTLS handshake that fails is retried in cleartext."""
        import warnings

        server_ctx, _ = self._context(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server_ctx.minimum_version = ssl.TLSVersion.TLSv1
            server_ctx.maximum_version = ssl.TLSVersion.TLSv1  # the client insists on 1.2+
        box = Mailbox()
        controller = self._server(tmp_path, box, tls_context=server_ctx)
        try:
            SMTPSubmitter("127.0.0.1", controller.port, timeout=5)(
                b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example"
            )
        finally:
            controller.stop()
        assert 1 == len(box.received)

    def test_implicit_tls_and_login(self, tmp_path: Path) -> None:
        """The submitter speaks implicit TLS (port 465 style) and logs in."""
        from aiosmtpd.smtp import AuthResult

        server_ctx, client_ctx = self._context(tmp_path)
        logins: list[tuple[bytes, bytes]] = []

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            logins.append((data.login, data.password))
            return AuthResult(success=True)

        box = Mailbox()
        controller = self._server(
            tmp_path,
            box,
            ssl_context=server_ctx,
            authenticator=authenticator,
            auth_require_tls=False,
            server_hostname="localhost",
        )
        try:
            SMTPSubmitter(
                "localhost",
                controller.port,
                implicit_tls=True,
                context=client_ctx,
                username="u",
                password="p",
                timeout=5,
            )(b"Subject: x\r\n\r\nhi\r\n", "a@s.example", "b@r.example")
        finally:
            controller.stop()
        assert [(b"u", b"p")] == logins
        assert 1 == len(box.received)


def test_is_report_message(tmp_path: Path) -> None:
    """RPT-AGG-10, RPT-SEND-14: an MTA can tell a report mail by its TLS-Report-Domain header."""
    assert is_report_message(email.message_from_string("TLS-Report-Domain: a.example\n\nx"))
    assert not is_report_message(email.message_from_string("Subject: hi\n\nx"))
    assert is_report_message({"TLS-Report-Domain": "a.example"})
    assert not is_report_message(object())


# --------------------------------------------------------------------------- https


class TestHTTPS:
    def test_post_received(
        self,
        tmp_path: Path,
        https: Endpoint,
        dns_server: DNSServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """RPT-SEND-01, RPT-SEND-17, RPT-SEND-19: the gzip report is POSTed as application/tlsrpt+gzip; an untrusted certificate is logged and ignored by default."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/v1/tlsrpt?x=1"')
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            summary = send_due_reports(
                store, outbox, make_sender(dns_server, connect_to=https.connect_to), now=NEXT
            )
        assert summary.built == summary.delivered
        assert "certificate error ignored" in caplog.text
        [(method, path, headers, body)] = https.requests
        assert ("POST", "/v1/tlsrpt?x=1") == (method, path)
        assert "application/tlsrpt+gzip" == headers["Content-Type"]
        assert "Content-Encoding" not in headers
        assert HTTPS_HOST == headers["Host"]
        assert expected_report(store) == Report.from_json(gzip.decompress(body))
        assert expected_report(store) == parse_report_message(body)

    @pytest.mark.interop
    def test_parsedmarc_reads_our_json(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-17: parsedmarc's SMTP TLS JSON parser reads the POSTed report."""
        import parsedmarc  # an interop oracle (dependency group "interop"), never a runtime dependency

        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        with Outbox(tmp_path / "o.db") as outbox:
            send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server, connect_to=https.connect_to),
                now=NEXT,
            )
        parsed = parsedmarc.parse_smtp_tls_report_json(gzip.decompress(https.requests[0][3]))
        assert [(12, 3)] == [
            (p["successful_session_count"], p["failed_session_count"]) for p in parsed["policies"]
        ]

    def test_uncompressed_post(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-17: with compression off the body is application/tlsrpt+json."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox:
            send_due_reports(
                store,
                outbox,
                make_sender(dns_server, connect_to=https.connect_to, compressed=False),
                now=NEXT,
            )
        headers, body = https.requests[0][2], https.requests[0][3]
        assert "application/tlsrpt+json" == headers["Content-Type"]
        assert expected_report(store) == Report.from_json(body)

    @pytest.mark.parametrize(
        ("status", "ok"),
        [(200, True), (201, True), (204, True), (302, False), (404, False), (500, False)],
    )
    def test_only_2xx_is_success(self, https: Endpoint, status: int, ok: bool) -> None:
        """RPT-SEND-18: any 2xx delivers; 3xx (not followed), 4xx and 5xx fail."""
        https.statuses = [status]
        result = post_report(
            f"https://{HTTPS_HOST}/r",
            b"{}",
            connect_to=https.connect_to,
            context=https.trusting,
            verify=True,
            allow=LOOPBACK,
        )
        assert DeliveryResult(f"https://{HTTPS_HOST}/r", ok=ok, detail=f"HTTP {status}") == result
        assert 1 == len(https.requests)  # a redirect is not followed

    def test_redirects_when_asked(self, https: Endpoint) -> None:
        """AMB-26: with max_redirects, 307/308 to https are followed with the same POST; others are not."""
        url = f"https://{HTTPS_HOST}/r"

        def post(max_redirects: int) -> DeliveryResult:
            return post_report(
                url,
                b"report",
                connect_to=https.connect_to,
                context=https.trusting,
                verify=True,
                max_redirects=max_redirects,
                allow=LOOPBACK,
            )

        https.statuses = [307, 200]
        assert DeliveryResult(url, ok=True, detail=f"HTTP 200 from {https.location}") == post(1)
        assert [("POST", "/r", b"report"), ("POST", "/elsewhere", b"report")] == [
            (method, path, body) for method, path, _, body in https.requests
        ]
        https.requests.clear()
        https.statuses = [308]
        assert "HTTP 308 from " + https.location + " (too many redirects)" == post(2).detail
        assert 3 == len(https.requests)
        for status in (301, 302, 303):
            https.requests.clear()
            https.statuses = [status]
            result = post(3)
            assert (
                False,
                f"HTTP {status} (redirect not followed: only 307 and 308 keep the POST)",
            ) == (
                result.ok,
                result.detail,
            )
            assert 1 == len(https.requests)
        https.requests.clear()
        https.statuses = [307]
        https.location = "http://reports.example.net/plain"
        assert f"HTTP 307: redirect to {https.location} is not https" == post(3).detail
        https.location = "/relative?q=1"
        https.requests.clear()
        https.statuses = [307, 503]
        assert f"HTTP 503 from https://{HTTPS_HOST}/relative?q=1" == post(1).detail
        assert "/relative?q=1" == https.requests[1][1]

    def test_sender_follows_redirects(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """AMB-26: ReportSender(https_max_redirects=N) passes the setting on."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        https.statuses = [307, 201]
        sender = attrs.evolve(
            make_sender(dns_server, connect_to=https.connect_to), https_max_redirects=1
        )
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(store_with_sessions(tmp_path), outbox, sender, now=NEXT)
        assert summary.built == summary.delivered
        assert ["/r", "/elsewhere"] == [path for _, path, _, _ in https.requests]

    def test_verify_on(self, https: Endpoint) -> None:
        """RPT-SEND-19, AMB-26: with verification on, an untrusted certificate fails the POST."""
        result = post_report(
            f"https://{HTTPS_HOST}/r",
            b"{}",
            connect_to=https.connect_to,
            verify=True,
            allow=LOOPBACK,
        )
        assert not result.ok
        assert "certificate" in result.detail
        assert [] == https.requests

    def test_deadline(self, https: Endpoint) -> None:
        """RPT-SEND-18: a stalled endpoint fails within the deadline."""
        https.stall = 3
        start = time.monotonic()
        result = post_report(
            f"https://{HTTPS_HOST}/r",
            b"{}",
            connect_to=https.connect_to,
            context=https.trusting,
            timeout=0.5,
            allow=LOOPBACK,
        )
        assert not result.ok
        assert time.monotonic() - start < 2.5

    def test_network_errors(self) -> None:
        """RPT-SEND-18: refused connections and bad ports are failures, never exceptions."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        refused = post_report(
            "https://x.example/r",
            b"",
            connect_to={("x.example", 443): ("127.0.0.1", port)},
            timeout=2,
            allow=LOOPBACK,
        )
        assert not refused.ok
        assert not post_report("https://x.example:99999/r", b"").ok

    def test_plain_http_server_is_failure(self) -> None:
        """A server that does not speak TLS is a failure (the unverified retry fails too)."""
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        result = post_report(
            "https://x.example/r",
            b"",
            connect_to={("x.example", 443): ("127.0.0.1", port)},
            timeout=3,
            allow=LOOPBACK,
        )
        listener.close()
        assert not result.ok


# --------------------------------------------------------------------------- policy of the sender


class TestDelivery:
    @pytest.mark.parametrize(
        ("records", "why"),
        [
            ((), "no TLSRPT record"),
            (
                (
                    '"v=TLSRPTv1; rua=mailto:a@recipient.example"',
                    '"v=TLSRPTv1; rua=mailto:b@recipient.example"',
                ),
                "multiple",
            ),
            (('"v=TLSRPTv1; rua=bogus"',), "syntax"),
            (('"v=TLSRPTv1; rua=http://insecure.example/r"',), "no usable rua endpoint"),
        ],
    )
    def test_dropped_without_usable_record(
        self,
        tmp_path: Path,
        dns_server: DNSServer,
        records: tuple[str, ...],
        why: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """RPT-REC-06, RPT-REC-14, RPT-AGG-19, RPT-SEND-23: no record, several, an invalid one or no usable rua: the report is dropped and logged."""
        if records:
            dns_server.add(RECORD, "TXT", *records)
        else:
            dns_server.add(
                "recipient.example", "A", "192.0.2.1"
            )  # the name exists, the record does not
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.INFO):
            summary = send_due_reports(store, outbox, make_sender(dns_server), now=NEXT)
            assert summary.built == summary.dropped
            [item] = outbox.items("dropped")
        assert why in (item.last_error or "")
        assert "not sending" in caplog.text
        assert [] == store.pending(DAY + timedelta(days=2))

    def test_dns_failure_retried(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-REC-14: a temporary DNS failure is retried, not treated as "no record"."""
        dns_server.servfail(RECORD)
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store_with_sessions(tmp_path), outbox, make_sender(dns_server), now=NEXT
            )
            assert summary.built == summary.retrying
            assert "DNS" in (outbox.items()[0].last_error or "")

    def test_one_endpoint_enough(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-16, RPT-SEND-15: a refused mailto plus an accepting https delivers; all endpoints are tried by default."""
        dns_server.add(
            RECORD, "TXT", f'"v=TLSRPTv1; rua=mailto:r@recipient.example,https://{HTTPS_HOST}/r"'
        )

        def refuse(message: bytes, mail_from: str, rcpt: str) -> None:
            raise OSError("connection refused")

        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server, submit=refuse, connect_to=https.connect_to),
                now=NEXT,
            )
            assert summary.built == summary.delivered
            [item] = outbox.items("delivered")
        assert (f"https://{HTTPS_HOST}/r",) == item.delivered_to
        assert "connection refused" in (item.last_error or "")

    def test_send_to_first_only(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-15: with send_to_all off, the first accepting endpoint ends the attempt."""
        dns_server.add(
            RECORD, "TXT", f'"v=TLSRPTv1; rua=mailto:r@recipient.example,https://{HTTPS_HOST}/r"'
        )
        sent: list[str] = []
        with Outbox(tmp_path / "o.db") as outbox:
            send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(
                    dns_server,
                    submit=lambda m, f, r: sent.append(r),
                    send_to_all=False,
                    connect_to=https.connect_to,
                ),
                now=NEXT,
            )
        assert ["r@recipient.example"] == sent
        assert [] == https.requests
        again = tmp_path / "all"
        again.mkdir()
        with Outbox(again / "o.db") as outbox:
            send_due_reports(
                store_with_sessions(again),
                outbox,
                make_sender(
                    dns_server, submit=lambda m, f, r: sent.append(r), connect_to=https.connect_to
                ),
                now=NEXT,
            )
        assert 1 == len(https.requests)

    def test_unreadable_day_marked(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """A (day, domain) whose rows cannot be read builds no report and is not tried again."""
        from smtpsts.tlsrpt.collect import CountRow

        store = SQLiteTLSRPTStore(tmp_path / "t.db")
        store.write_batch([CountRow(DAY, "recipient.example", "[9]", 1)], "b")
        with Outbox(tmp_path / "o.db") as outbox:
            assert () == send_due_reports(store, outbox, make_sender(dns_server), now=NEXT).built
        assert [] == store.pending(NEXT.date())

    def test_today_not_built(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-AGG-15: a day is reported only once it is over."""
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox:
            assert (
                ()
                == send_due_reports(
                    store, outbox, make_sender(dns_server), now=AT + timedelta(hours=11)
                ).built
            )
        assert [(DAY, "recipient.example")] == store.pending(DAY + timedelta(days=1))

    def test_heartbeat_option(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-AGG-16, AMB-22: success-only days are reported by default, and not when switched off."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        sent: list[bytes] = []
        for flag, count in ((False, 0), (True, 1)):
            store = SQLiteTLSRPTStore(tmp_path / f"{flag}.db")
            store.add(OK, AT)
            store.flush()
            with Outbox(tmp_path / f"o{flag}.db") as outbox:
                send_due_reports(
                    store,
                    outbox,
                    make_sender(
                        dns_server, include_success_only=flag, submit=lambda m, f, r: sent.append(m)
                    ),
                    now=NEXT,
                )
            assert count == len(sent)
            assert [] == store.pending(NEXT.date() + timedelta(days=1))

    def test_crash_after_enqueue_does_not_duplicate(
        self, tmp_path: Path, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-09: a report queued but not marked (a crash in between) is queued once, with the same id."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        store = store_with_sessions(tmp_path)
        sender = make_sender(dns_server, submit=lambda m, f, r: None)
        with Outbox(tmp_path / "o.db") as outbox:
            report = sender.build(store, DAY, "recipient.example")
            assert report is not None
            assert outbox.enqueue(report, "recipient.example", DAY, NEXT)
            summary = send_due_reports(store, outbox, sender, now=NEXT)
            assert () == summary.built
            assert (report.report_id,) == summary.delivered
            assert [] == store.pending(NEXT.date())

    def test_bad_settings(self, dns_server: DNSServer, tmp_path: Path) -> None:
        """RPT-SEND-07, RPT-SEND-21: contact-info and From must be at the submitter domain; now must be aware."""
        with pytest.raises(UsageError):
            make_sender(dns_server, from_address="x@elsewhere.example")
        with pytest.raises(UsageError):
            ReportSender(organization_name="x", contact_info="nobody", lookup_txt=lambda q: None)  # type: ignore[arg-type,return-value]
        with Outbox(tmp_path / "o.db") as outbox, pytest.raises(UsageError):
            send_due_reports(None, outbox, make_sender(dns_server), now=datetime(2024, 3, 6))
        no_id = attrs.evolve(expected_report(store_with_sessions(tmp_path)), report_id=None)
        with Outbox(tmp_path / "o.db") as outbox, pytest.raises(UsageError):
            outbox.enqueue(no_id, "a.example", DAY, NEXT)

    def test_size_warning(
        self,
        tmp_path: Path,
        dns_server: DNSServer,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """RPT-SEND-22: a report over the size threshold is logged."""
        from smtpsts.io import tlsrpt_send

        monkeypatch.setattr(tlsrpt_send, "SIZE_WARNING", 10)
        dns_server.add(
            RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example,https://127.0.0.1:1/r"'
        )
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server, submit=lambda m, f, r: None, https_timeout=1),
                now=NEXT,
            )
        assert "RPT-SEND-22" in caplog.text


# --------------------------------------------------------------------------- retries


class TestRetries:
    def test_retry_schedule(self) -> None:
        """RPT-SEND-20: tries at +0, +5, +15, +35 min ..., none after +24 h."""
        t0 = NEXT
        times = [retry_at(t0, n) for n in range(1, 12)]
        assert [t0 + timedelta(minutes=m) for m in (5, 15, 35, 75)] == times[:4]
        assert times[-1] is None
        last = [t for t in times if t is not None][-1]
        assert last - t0 <= timedelta(hours=24)
        assert retry_at(t0, 1, initial=timedelta(hours=1), period=timedelta(minutes=30)) is None

    def test_backoff_until_given_up(
        self,
        tmp_path: Path,
        https: Endpoint,
        dns_server: DNSServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """RPT-SEND-20: a failing endpoint is retried with doubling waits for 24 h, then given up with a logged reason."""
        https.statuses = [503]
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        sender = make_sender(dns_server, connect_to=https.connect_to)
        store = store_with_sessions(tmp_path)
        times = []
        now = NEXT
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            send_due_reports(store, outbox, sender, now=now)
            times.append(now)
            while (due := outbox.next_due()) is not None:
                assert (
                    ()
                    == send_due_reports(
                        store, outbox, sender, now=due - timedelta(seconds=1)
                    ).retrying
                )  # not due yet
                now = due
                send_due_reports(store, outbox, sender, now=now)
                times.append(now)
            [item] = outbox.items("failed")
        assert len(times) == len(https.requests)
        waits = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
        assert [5, 10, 20, 40, 80, 160, 320, 640] == waits
        assert times[-1] - times[0] <= timedelta(hours=24)
        assert "giving up" in caplog.text
        assert "HTTP 503" in (item.last_error or "")
        assert len(times) == item.attempts

    def test_nothing_lost_on_restart(
        self, tmp_path: Path, https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-20, RPT-SEND-09: a report that failed survives a restart (new objects, same file) and is delivered with the same id."""
        https.statuses = [500, 200]
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        store = store_with_sessions(tmp_path)
        sender = make_sender(dns_server, connect_to=https.connect_to)
        outbox = Outbox(tmp_path / "tlsrpt.db")
        first = send_due_reports(store, outbox, sender, now=NEXT)
        outbox.close()
        store.close()
        store = SQLiteTLSRPTStore(tmp_path / "tlsrpt.db")
        with Outbox(tmp_path / "tlsrpt.db") as outbox:
            due = outbox.next_due()
            assert NEXT + timedelta(minutes=5) == due
            second = send_due_reports(store, outbox, sender, now=due)
            assert () == second.built
            assert first.built == second.delivered
        assert https.requests[0][3] == https.requests[1][3]  # byte-identical retry
        store.close()

    def test_outbox_purge(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """Finished outbox items are purged after the retention period; pending ones stay."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        with Outbox(tmp_path / "o.db") as outbox:
            send_due_reports(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server, submit=lambda m, f, r: None),
                now=NEXT,
            )
            assert 0 == outbox.purge(NEXT + timedelta(days=6))
            assert 1 == outbox.purge(NEXT + timedelta(days=8))
            assert [] == outbox.items()
            assert outbox.next_due() is None

    def test_outbox_not_a_database(self, tmp_path: Path) -> None:
        """An outbox file that is not a database raises sqlite3.Error."""
        import sqlite3

        (tmp_path / "junk").write_bytes(b"junk" * 1000)
        with pytest.raises(sqlite3.DatabaseError):
            Outbox(tmp_path / "junk")


# --------------------------------------------------------------------------- daemon helper


class TestRunDaily:
    def test_schedule_with_jitter(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-AGG-15: the daily build runs after 00:00 UTC plus 0-4 h of jitter; retries run whenever due."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        clock = [datetime(2024, 3, 5, 18, tzinfo=UTC)]
        sleeps: list[float] = []
        sent: list[str] = []

        def wait(seconds: float) -> bool:
            sleeps.append(seconds)
            clock[0] += timedelta(seconds=seconds)
            return False

        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "o.db") as outbox:
            run_daily(
                store,
                outbox,
                make_sender(dns_server, submit=lambda m, f, r: sent.append(r)),
                clock=lambda: clock[0],
                wait=wait,
                rng=random.Random(7),
                build_now=False,
                poll=timedelta(hours=1),
                rounds=12,
            )
        jitter = random.Random(7).uniform(0, 4 * 3600)
        assert ["r@recipient.example"] == sent
        # Hourly polls until midnight + jitter, then the build.
        assert all(s <= 3600 for s in sleeps)
        assert datetime(2024, 3, 6, tzinfo=UTC) + timedelta(seconds=jitter) <= clock[0]

    def test_stops_and_survives_errors(
        self, tmp_path: Path, dns_server: DNSServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing round is logged and the loop goes on; wait returning True stops it."""

        class Broken:
            def pending(self, before: date) -> list[tuple[date, str]]:
                raise RuntimeError("disk gone")

        calls: list[float] = []
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.ERROR):
            run_daily(
                Broken(),
                outbox,
                make_sender(dns_server),
                wait=lambda s: calls.append(s) or len(calls) >= 2,
            )  # type: ignore[arg-type]
        assert 2 == len(calls)
        assert "sending round failed" in caplog.text

    def test_delivery_only_and_purge(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """Without a store the daemon only delivers; each daily round purges finished outbox items."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        with Outbox(tmp_path / "o.db") as outbox:
            report = expected_report(store_with_sessions(tmp_path))
            outbox.enqueue(report, "recipient.example", DAY, NEXT)
            sender = make_sender(dns_server, submit=lambda m, f, r: None)
            run_daily(None, outbox, sender, clock=lambda: NEXT, rounds=1)
            assert 1 == len(outbox.items("delivered"))
            run_daily(None, outbox, sender, clock=lambda: NEXT + timedelta(days=9), rounds=1)
            assert [] == outbox.items()

    def test_wakes_for_due_retry(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-SEND-20: the daemon sleeps only until the next retry is due."""
        dns_server.servfail(RECORD)
        clock = [NEXT]
        sleeps: list[float] = []

        def wait(seconds: float) -> bool:
            sleeps.append(seconds)
            clock[0] += timedelta(seconds=seconds)
            return False

        with Outbox(tmp_path / "o.db") as outbox:
            run_daily(
                store_with_sessions(tmp_path),
                outbox,
                make_sender(dns_server),
                clock=lambda: clock[0],
                wait=wait,
                poll=timedelta(hours=2),
                rounds=3,
            )
            assert 300 == pytest.approx(sleeps[0])
            assert 600 == pytest.approx(sleeps[1])
            assert 3 == outbox.items()[0].attempts


# --------------------------------------------------------------------------- CLI


def run_cli(*argv: str) -> int:
    import argparse

    from smtpsts._cli.tlsrpt_send import register_send

    parser = argparse.ArgumentParser(prog="smtpsts tlsrpt")
    register_send(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(list(argv))
    status: int = args.handler(args)
    return status


class TestCLI:
    def past_store(self, path: Path) -> datetime:
        at = datetime.now(UTC) - timedelta(days=2)
        with SQLiteTLSRPTStore(path) as store:
            store.add(OK, at, 5)
            store.add(EXPIRED, at)
        return at

    def test_send_by_mail_signed(
        self,
        tmp_path: Path,
        smtp: tuple[Mailbox, int],
        dns_server: DNSServer,
        key: tuple[bytes, str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """RPT-SEND-10: `smtpsts tlsrpt send` builds the due report and mails it DKIM-signed."""
        import dkim

        box, port = smtp
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        self.past_store(tmp_path / "t.db")
        (tmp_path / "dkim.pem").write_bytes(key[0])
        status = run_cli(
            "send",
            "--store",
            str(tmp_path / "t.db"),
            "--organization-name",
            "Sender Inc",
            "--contact-info",
            "tlsrpt@sender.example",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--nameserver",
            dns_server.address,
            "--dkim-selector",
            "rpt",
            "--dkim-key",
            str(tmp_path / "dkim.pem"),
            "--json",
        )
        assert 0 == status
        summary = json.loads(capsys.readouterr().out)
        assert 1 == len(summary["delivered"])
        data = box.received[0][2]
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: key[1].encode(), tlsrpt="strict")
        report = parse_report_message(data)
        assert (5, 1) == (
            report.policies[0].summary.total_successful_session_count,
            report.policies[0].summary.total_failure_session_count,
        )

    def test_send_https_text_output(
        self,
        tmp_path: Path,
        https: Endpoint,
        dns_server: DNSServer,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """RPT-SEND-17, RPT-SEND-19: the CLI POSTs with --connect-to; --https-verify with --cafile trusts the test CA."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HTTPS_HOST}/r"')
        self.past_store(tmp_path / "t.db")
        (tmp_path / "ca.pem").write_bytes(https.root.pem)
        status = run_cli(
            "send",
            "--store",
            str(tmp_path / "t.db"),
            "--organization-name",
            "Sender Inc",
            "--contact-info",
            "tlsrpt@sender.example",
            "--nameserver",
            dns_server.address,
            "--connect-to",
            f"{HTTPS_HOST}:443:127.0.0.1:{https.port}",
            "--https-allow",
            "127.0.0.1",
            "--https-verify",
            "--cafile",
            str(tmp_path / "ca.pem"),
        )
        assert 0 == status
        out = capsys.readouterr().out
        assert "built: 1 (" in out
        assert "delivered: 1 (" in out
        assert "failed: 0" in out
        assert 1 == len(https.requests)

    def test_given_up_exit_status(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-SEND-20: a report given up in the run makes the exit status 1."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        self.past_store(tmp_path / "t.db")
        with Outbox(tmp_path / "t.db") as outbox:
            store = SQLiteTLSRPTStore(tmp_path / "t.db")
            sender = make_sender(dns_server, retry_period=timedelta(0))
            send_due_reports(store, outbox, sender, now=datetime.now(UTC) - timedelta(hours=1))
            store.close()
            assert 1 == len(outbox.items("failed"))
        self.past_store(tmp_path / "u.db")
        status = run_cli(
            "send",
            "--store",
            str(tmp_path / "u.db"),
            "--organization-name",
            "S",
            "--contact-info",
            "t@sender.example",
            "--nameserver",
            dns_server.address,
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            "1",
            "--allow-unsigned",
            "--retry-only",
        )
        assert 0 == status  # retry-only: nothing was built, nothing due

    def test_redis_store(
        self, tmp_path: Path, dns_server: DNSServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CLI reads a Redis collection store with a separate outbox."""
        from redisserver import redis_server
        from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

        dns_server.add("recipient.example", "A", "192.0.2.1")
        with redis_server() as server:
            with RedisTLSRPTStore(server.url) as store:
                store.add(OK, datetime.now(UTC) - timedelta(days=2))
            assert 2 == run_cli(
                "send",
                "--redis",
                server.url,
                "--organization-name",
                "S",
                "--contact-info",
                "t@sender.example",
            )
            assert 0 == run_cli(
                "send",
                "--redis",
                server.url,
                "--outbox",
                str(tmp_path / "o.db"),
                "--organization-name",
                "S",
                "--contact-info",
                "t@sender.example",
                "--nameserver",
                dns_server.address,
                "--json",
            )
        assert 1 == len(json.loads(capsys.readouterr().out)["dropped"])

    def test_usage_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Bad settings give exit status 2 with a message."""
        SQLiteTLSRPTStore(tmp_path / "t.db").close()  # the MTA's collection store exists
        base = ("send", "--store", str(tmp_path / "t.db"), "--organization-name", "S")
        assert 2 == run_cli(*base, "--contact-info", "nobody")
        with pytest.raises(SystemExit):
            run_cli(*base, "--contact-info", "t@s.example", "--dkim-selector", "x")
        with pytest.raises(SystemExit):
            run_cli(*base, "--contact-info", "t@s.example", "--connect-to", "bogus")
        (tmp_path / "pw").write_text("secret\n")
        assert 0 == run_cli(
            *base,
            "--contact-info",
            "t@s.example",
            "--smtp-user",
            "u",
            "--smtp-password-file",
            str(tmp_path / "pw"),
        )
        assert "contact_info" in capsys.readouterr().err


def test_ipv6_literal_host(tmp_path: Path) -> None:
    """RPT-SEND-17: an IPv6-literal rua gets a bracketed Host header."""
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = listener.getsockname()[1]
    heads: list[bytes] = []
    issued = certfactory.make("v6", san=[])
    (tmp_path / "c.pem").write_bytes(issued.pem)
    (tmp_path / "k.pem").write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    def serve() -> None:
        # The verified try fails on the client side, the unverified one gets through.
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    data = b""
                    # Read the whole request (closing with unread data would reset the connection).
                    while b"\r\n\r\n" not in data or not data.endswith(b"\r\n\r\nx"):
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data:
                        heads.append(data)
                        tls.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            except (ssl.SSLError, OSError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    result = post_report(f"https://[::1]:{port}/r", b"x", timeout=5, allow=LOOPBACK)
    listener.close()
    assert result.ok
    assert f"Host: [::1]:{port}".encode() in heads[-1]


class TestDKIMKeyRecord:
    @pytest.mark.parametrize(
        ("record", "services"),
        [
            ("v=DKIM1; k=rsa; p=AAAA", ("*",)),
            ("v=DKIM1; s=tlsrpt; p=AAAA", ("tlsrpt",)),
            (b"v=DKIM1; s = Email : TLSRPT ; p=AAAA", ("email", "tlsrpt")),
        ],
    )
    def test_services(self, record: str | bytes, services: tuple[str, ...]) -> None:
        """RPT-SEND-13: the s= tag of a DKIM key record lists its service types; absent means *."""
        from smtpsts.io.dkim import key_record_services

        assert services == key_record_services(record)

    @pytest.mark.parametrize(
        ("published", "verdict", "warned"),
        [
            ('"v=DKIM1; k=rsa; s=tlsrpt; p=AAAA"', True, False),
            ('"v=DKIM1; k=rsa; p=AAAA"', True, False),
            ('"v=DKIM1; k=rsa; s=email; p=AAAA"', False, True),
            (None, None, True),
        ],
    )
    def test_check_key_record(
        self,
        *,
        dns_server: DNSServer,
        key: tuple[bytes, str],
        published: str | None,
        verdict: bool | None,
        warned: bool,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """RPT-SEND-13: a key record restricted to other services than tlsrpt is warned about."""
        from smtpsts.io.dkim import DKIMPySigner

        if published is not None:
            dns_server.add("rpt._domainkey.sender.example", "TXT", published)
        signer = DKIMPySigner("rpt", "Sender.Example.", key[0])
        with caplog.at_level(logging.WARNING):
            assert verdict == signer.check_key_record(
                DNSResolver([dns_server.address], lifetime=2).lookup_txt
            )
        assert warned == ("DKIM:" in caplog.text)


class TestRecordLookup:
    def test_lookup_name_is_alabel(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-REC-01: the record is the TXT RRset at _smtp._tls.<policy domain>, as an A-label."""
        dns_server.add(
            "_smtp._tls.xn--bcher-kva.example", "TXT", '"v=TLSRPTv1; rua=mailto:r@x.example"'
        )
        resolver = DNSResolver([dns_server.address], lifetime=2)
        asked: list[str] = []
        sent: list[str] = []

        def lookup(name: str) -> Any:
            asked.append(name)
            return resolver.lookup_txt(name)

        sender = make_sender(dns_server, submit=lambda m, f, r: sent.append(r))
        sender = attrs.evolve(sender, lookup_txt=lookup)
        report = expected_report(store_with_sessions(tmp_path))
        with Outbox(tmp_path / "o.db") as outbox:
            assert outbox.enqueue(report, "Bücher.Example", DAY, NEXT)
            [item] = outbox.due(NEXT)
            status, _ = sender.deliver(item, NEXT)
        assert ("delivered", ["_smtp._tls.xn--bcher-kva.example."], ["r@x.example"]) == (
            status,
            asked,
            sent,
        )

    def test_results_go_to_the_policy_domain(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-REC-13: sts and no-policy results go to the TLSRPT record of their own policy domain."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        dns_server.add(
            "_smtp._tls.other.example", "TXT", '"v=TLSRPTv1; rua=mailto:o@other.example"'
        )
        store = store_with_sessions(tmp_path)
        store.add(SessionResult.succeeded(PolicyInfo.no_policy_found("other.example")), AT, 4)
        store.flush()
        received: dict[str, Report] = {}

        def submit(message: bytes, mail_from: str, rcpt: str) -> None:
            received[rcpt] = parse_report_message(message)

        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store, outbox, make_sender(dns_server, submit=submit), now=NEXT
            )
        assert (2, 2) == (len(summary.built), len(summary.delivered))
        assert {
            "r@recipient.example": ("recipient.example",),
            "o@other.example": ("other.example",),
        } == {rcpt: report.policy_domains for rcpt, report in received.items()}
        assert ["no-policy-found"] == [
            str(p.policy.policy_type) for p in received["o@other.example"].policies
        ]


class TestRateLimit:
    def test_daily_cap_per_destination(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """SEC-11: one report per destination, domain and day; a cap on reports per destination per day."""
        for name in (RECORD, "_smtp._tls.other.example"):
            dns_server.add(name, "TXT", '"v=TLSRPTv1; rua=mailto:r@collector.example"')
        store = store_with_sessions(tmp_path)
        store.add(SessionResult.succeeded(PolicyInfo.no_policy_found("other.example")), AT, 4)
        store.flush()
        sent: list[str] = []

        def submit(message: bytes, mail_from: str, rcpt: str) -> None:
            sent.append(str(parse_report_message(message).policy_domains))

        sender = make_sender(dns_server, submit=submit, max_reports_per_destination=1)
        with Outbox(tmp_path / "o.db") as outbox:
            first = send_due_reports(store, outbox, sender, now=NEXT)
            # Same day, later: neither a second report for the domain nor a second one for the cap.
            again = send_due_reports(store, outbox, sender, now=NEXT + timedelta(hours=2))
            [waiting] = outbox.items("pending")
            tomorrow = send_due_reports(store, outbox, sender, now=NEXT + timedelta(days=1))
            assert {"mailto:r@collector.example": 1} == outbox.delivered_counts(
                NEXT + timedelta(days=1)
            )

        assert (2, 1, 1) == (len(first.built), len(first.delivered), len(first.retrying))
        assert ((), (), first.retrying) == (again.built, again.delivered, again.retrying)
        assert "daily report cap reached" in (waiting.last_error or "")
        assert first.retrying == tomorrow.delivered
        assert 2 == len(sent) == len(set(sent))

    def test_no_cap_by_default(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """SEC-11: without max_reports_per_destination every domain's report goes out."""
        for name in (RECORD, "_smtp._tls.other.example"):
            dns_server.add(name, "TXT", '"v=TLSRPTv1; rua=mailto:r@collector.example"')
        store = store_with_sessions(tmp_path)
        store.add(SessionResult.succeeded(PolicyInfo.no_policy_found("other.example")), AT, 4)
        store.flush()
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store, outbox, make_sender(dns_server, submit=lambda m, f, r: None), now=NEXT
            )
            assert {"mailto:r@collector.example": 2} == outbox.delivered_counts(NEXT)
        assert 2 == len(summary.delivered)


class TestAcceptReport:
    """Receiving mailed reports: DKIM decides (RFC 8460 §3)."""

    def _mail(self, contact: str = "tlsrpt@sender.example") -> tuple[Report, bytes]:
        agg_store = SQLiteTLSRPTStore(":memory:")
        agg_store.add(EXPIRED, AT, 3)
        agg_store.flush()
        report = agg_store.aggregator(DAY).report(
            "recipient.example", DAY, organization_name="Sender Inc", contact_info=contact
        )
        assert report is not None
        message = report_message(
            report,
            "recipient.example",
            from_address=contact,
            to_address="r@recipient.example",
            date=NEXT,
            message_id="<1@x>",
        )
        return report, message.as_bytes(policy=email.policy.SMTP)

    @staticmethod
    def _publish(dns_server: DNSServer, name: str, record: str) -> None:
        chunks = [record[i : i + 200] for i in range(0, len(record), 200)]
        dns_server.add(name, "TXT", " ".join(f'"{c}"' for c in chunks))

    def test_signed_accepted_unsigned_rejected(
        self, dns_server: DNSServer, key: tuple[bytes, str]
    ) -> None:
        """RPT-SEND-25: a valid signature of the submitter (or a parent) is accepted; unsigned, foreign or broken ones are not."""
        from smtpsts.io.dkim import DKIMPySigner, accept_report, verified_dkim_domains

        lookup = DNSResolver([dns_server.address], lifetime=2).lookup_txt
        # s= absent: every service; smtpsts does not insist on s=tlsrpt (a MAY).
        self._publish(dns_server, "rpt._domainkey.sender.example", key[1].replace(" s=tlsrpt;", ""))
        self._publish(dns_server, "rpt._domainkey.other.example", key[1])
        report, data = self._mail()
        child_report, child = self._mail("tlsrpt@mail.sender.example")
        own = DKIMPySigner("rpt", "sender.example", key[0]).sign(data)
        parent = DKIMPySigner("rpt", "sender.example", key[0]).sign(child)
        foreign = DKIMPySigner("rpt", "other.example", key[0]).sign(data)
        broken = own.replace(b"Report Domain: recipient", b"Report Domain: recipiant", 1)
        assert broken != own

        assert (report, child_report) == (
            accept_report(own, lookup_txt=lookup),
            accept_report(parent, lookup_txt=lookup),
        )
        assert (("sender.example",), (), ()) == (
            verified_dkim_domains(own, lookup_txt=lookup),
            verified_dkim_domains(broken, lookup_txt=lookup),
            verified_dkim_domains(b"DKIM-Signature: v=1; junk\r\n" + data, lookup_txt=lookup),
        )
        no_key = DKIMPySigner("gone", "sender.example", key[0]).sign(data)
        for bad in (data, foreign, broken, no_key):
            with pytest.raises(ReportNotAuthenticatedError, match="no valid DKIM signature"):
                accept_report(bad, lookup_txt=lookup)

    def test_verdict_rules(self) -> None:
        """RPT-SEND-25: d= must equal or be a parent of TLS-Report-Submitter; a child, look-alike or bare TLD does not count."""
        report, data = self._mail()
        assert [report, report] == [
            accept_report_message(data, dkim_domains=["Sender.Example."]),
            accept_report_message(data, dkim_domains=["bad..name", "sender.example"]),
        ]
        for domains in (
            [],
            ["mail.sender.example"],
            ["xsender.example"],
            ["bad..name"],
            ["example"],  # a bare TLD is nobody's parent domain
        ):
            with pytest.raises(ReportNotAuthenticatedError) as info:
                accept_report_message(data, dkim_domains=domains)
            assert "no-valid-dkim" == info.value.reason
        for header in (b"TLS-Report-Submitter: sender.example\r\n", b"sender.example\r\n"):
            stripped = data.replace(
                b"TLS-Report-Submitter: sender.example\r\n",
                b"" if header.startswith(b"TLS") else b"TLS-Report-Submitter: bad..name\r\n",
            )
            with pytest.raises(ReportNotAuthenticatedError) as info:
                accept_report_message(stripped, dkim_domains=["sender.example"])
            assert "no-submitter" == info.value.reason
        with pytest.raises(ReportSyntaxError, match="at most"):
            accept_report_message(b" " * (16 * 1024 * 1024), dkim_domains=["sender.example"])


# --------------------------------------------------------------------------- the core underneath (issue 11)


def test_old_names_are_the_core_objects() -> None:
    """Issue 11: the sender's decision names are the outbox core's objects; the outbox is the store's."""
    from smtpsts.io import submit, tlsrpt_send
    from smtpsts.stores.tlsrpt_outbox import SQLiteOutbox
    from smtpsts.tlsrpt import outbox as core

    for name in (
        "DEFAULT_INITIAL_BACKOFF",
        "DEFAULT_RETRY_PERIOD",
        "MAX_JITTER",
        "DeliveryResult",
        "OutboxItem",
        "retry_at",
    ):
        assert getattr(core, name) is getattr(tlsrpt_send, name), name
        assert name in tlsrpt_send.__all__
    assert tlsrpt_send.Outbox is SQLiteOutbox
    assert tlsrpt_send.SMTPSubmitter is submit.SMTPSubmitter


def test_deliver_gives_the_core_outcome(tmp_path: Path, dns_server: DNSServer) -> None:
    """RPT-AGG-19: deliver() returns the conversation's outcome (a DeliveryOutcome, equal to its string)."""
    from smtpsts.tlsrpt.outbox import DeliveryOutcome

    with Outbox(tmp_path / "o.db") as outbox:
        outbox.enqueue(
            expected_report(store_with_sessions(tmp_path)), "recipient.example", DAY, NEXT
        )
        [item] = outbox.items()
    outcome, results = make_sender(dns_server).deliver(item, NEXT)
    assert (DeliveryOutcome.DROPPED, "dropped") == (outcome, outcome)
    assert [f"{RECORD}.: no TLSRPT record"] == [f"{r.uri}: {r.detail}" for r in results]


def test_run_daily_jitter_is_the_core_schedule(tmp_path: Path, dns_server: DNSServer) -> None:
    """RPT-AGG-15: run_daily's first build is next_build() with one draw of the rng it was given."""
    from smtpsts.tlsrpt.outbox import next_build

    start = datetime(2024, 3, 5, 18, tzinfo=UTC)
    clock = [start]
    sleeps: list[float] = []

    def wait(seconds: float) -> bool:
        sleeps.append(seconds)
        clock[0] += timedelta(seconds=seconds)
        return False

    with Outbox(tmp_path / "o.db") as outbox:
        run_daily(None, outbox, make_sender(dns_server), clock=lambda: clock[0], wait=wait,
                  rng=random.Random(3), build_now=False, poll=timedelta(days=2), rounds=2)  # fmt: skip
    assert next_build(start, random.Random(3).random()) == start + timedelta(seconds=sleeps[0])


class TestAsyncRound:
    """Issue 11: asend_due_reports runs the same round on asyncio, against the same real servers."""

    def test_mail_and_post(
        self, tmp_path: Path, smtp: tuple[Mailbox, int], https: Endpoint, dns_server: DNSServer
    ) -> None:
        """RPT-SEND-15, RPT-SEND-16: an asyncio round mails (SMTPSubmitter.asubmit) and POSTs each report."""
        from smtpsts.io.dns import AsyncDNSResolver
        from smtpsts.io.tlsrpt_send import asend_due_reports

        box, port = smtp
        dns_server.add(
            RECORD, "TXT", f'"v=TLSRPTv1; rua=mailto:r@recipient.example,https://{HTTPS_HOST}/r"'
        )
        sender = make_sender(
            dns_server,
            submit=SMTPSubmitter("127.0.0.1", port, timeout=10),
            connect_to=https.connect_to,
            alookup_txt=AsyncDNSResolver([dns_server.address], lifetime=2).lookup_txt,
        )
        store = store_with_sessions(tmp_path)
        with Outbox(tmp_path / "tlsrpt.db") as outbox:
            summary = asyncio.run(asend_due_reports(store, outbox, sender, now=NEXT))
            [item] = outbox.items("delivered")
        store.close()
        assert (summary.built, 1, 1) == (summary.delivered, len(box.received), len(https.requests))
        assert ("mailto:r@recipient.example", f"https://{HTTPS_HOST}/r") == item.delivered_to
        report = parse_report_message(box.received[0][2])
        assert report == Report.from_json(gzip.decompress(https.requests[0][3]))

    def test_same_rows_as_the_blocking_round(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """RPT-SEND-20, RPT-REC-14: a DNS failure gives the same summary and outbox rows on both loops."""
        from smtpsts.io.tlsrpt_send import asend_due_reports

        dns_server.servfail(RECORD)
        rows = []
        for name, run in (
            ("sync", send_due_reports),
            ("async", lambda *a, **k: asyncio.run(asend_due_reports(*a, **k))),
        ):
            (tmp_path / name).mkdir()
            store = store_with_sessions(tmp_path / name)
            with Outbox(tmp_path / name / "o.db") as outbox:
                summary = run(store, outbox, make_sender(dns_server), now=NEXT)
                [item] = outbox.items()
            store.close()
            rows.append((summary, attrs.evolve(item, report=None)))
        assert rows[0] == rows[1]
        summary, item = rows[0]
        assert (summary.built, 1, NEXT + timedelta(minutes=5)) == (
            summary.retrying,
            item.attempts,
            item.next_attempt,
        )
        assert "DNS: " in (item.last_error or "")

    def test_blocking_parts_run_in_threads(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """A blocking lookup_txt and a submit without asubmit run in worker threads, never on the loop."""
        from smtpsts.io.tlsrpt_send import asend_due_reports

        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        threads: list[int] = []

        def submit(message: bytes, mail_from: str, rcpt_to: str) -> None:
            threads.append(threading.get_ident())

        async def main() -> tuple[SendSummary, int]:
            with Outbox(tmp_path / "o.db") as outbox:
                summary = await asend_due_reports(
                    store_with_sessions(tmp_path), outbox, make_sender(dns_server, submit=submit),
                    now=NEXT,
                )  # fmt: skip
            return summary, threading.get_ident()

        summary, loop_thread = asyncio.run(main())
        assert summary.built == summary.delivered
        assert 1 == len(threads)
        assert loop_thread != threads[0]

    def test_explicit_asubmit_and_local_fault(
        self, tmp_path: Path, dns_server: DNSServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 10: an EMFILE from asubmit defers the report (no attempt counted); no DKIM signer refuses mail."""
        import errno

        from smtpsts.io.tlsrpt_send import asend_due_reports

        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')
        calls: list[str] = []

        async def asubmit(message: bytes, mail_from: str, rcpt_to: str) -> None:
            calls.append(rcpt_to)
            raise OSError(errno.EMFILE, "Too many open files")

        sender = make_sender(dns_server, asubmit=asubmit)
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            summary = asyncio.run(
                asend_due_reports(store_with_sessions(tmp_path), outbox, sender, now=NEXT)
            )
            [item] = outbox.items()
            unsigned = make_sender(dns_server, allow_unsigned=False, asubmit=asubmit)
            later = asyncio.run(
                asend_due_reports(None, outbox, unsigned, now=NEXT + timedelta(minutes=5))
            )
            [again] = outbox.items()
        assert (summary.built, ["r@recipient.example"]) == (summary.deferred, calls)
        assert ("pending", 0) == (item.state, item.attempts)
        assert "local fault, will try again" in caplog.text
        assert (summary.built, 1) == (later.retrying, again.attempts)
        assert "no DKIM signer" in (again.last_error or "")
        with pytest.raises(UsageError):
            asyncio.run(asend_due_reports(None, outbox, sender, now=datetime(2024, 3, 6)))
