"""
Issue 10, report delivery: the https rua sender refuses non-public targets, keeps one deadline, tells local faults apart.

A ``rua`` is chosen by the recipient domain (RFC 8460 §3, §7), so the sender
resolves each host once, refuses every address that is not public unicast
(unless the operator allows it), connects only to a checked address, bounds
each whole POST by one deadline, and treats running out of descriptors as a
local fault, never as a verdict on the endpoint. Servers are real and on
loopback only; a connect guard fails any test that would reach further.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dnsserver import DNSServer
from httpsservers import HTTPSServer, policy, raw, redirect
from smtpsts.exceptions import LocalResourceError
from smtpsts.io import _rua_post, tlsrpt_send
from smtpsts.io._addresses import in_networks, is_refused
from smtpsts.io.dns import AddressAnswer, DNSFailure, DNSNotFound, DNSResolver
from smtpsts.io.tlsrpt_send import (
    DeliveryResult,
    Outbox,
    ReportSender,
    post_report,
    send_due_reports,
)
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
from smtpsts.tlsrpt import PolicyInfo, ResultType, SessionResult

HOST = "reports.example.net"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
RECORD = "_smtp._tls.recipient.example"
DAY = date(2024, 3, 5)
AT = datetime(2024, 3, 5, 12, tzinfo=UTC)
NEXT = datetime(2024, 3, 6, 1, tzinfo=UTC)
POLICY = PolicyInfo(
    "sts",
    "recipient.example",
    ("version: STSv1", "mode: enforce", "mx: mx.recipient.example", "max_age: 86400"),
    ("mx.recipient.example",),
)
EXPIRED = SessionResult.failed(
    POLICY, ResultType.CERTIFICATE_EXPIRED, receiving_mx_hostname="mx.recipient.example"
)
OK_201 = policy(b"", status="201 Created", content_type=None)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the sender connects to; anything but loopback fails the test."""
    seen: list[tuple[str, int]] = []
    real = _rua_post._open_connection

    def guarded(address: str, port: int, timeout: float) -> socket.socket:
        seen.append((address, port))
        if not ipaddress.ip_address(address).is_loopback:
            raise AssertionError(f"the test would contact {address}")
        return real(address, port, timeout)

    monkeypatch.setattr(_rua_post, "_open_connection", guarded)
    return seen


@pytest.fixture
def https() -> Iterator[HTTPSServer]:
    """A real TLS server on 127.0.0.1 answering by SNI."""
    with HTTPSServer() as server:
        yield server


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    """The tests' authoritative DNS server on loopback."""
    with DNSServer() as server:
        yield server


def resolver(dns_server: DNSServer) -> DNSResolver:
    return DNSResolver([dns_server.address], lifetime=2)


def trusting(server: HTTPSServer) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=certificate_pem(server))


def certificate_pem(server: HTTPSServer) -> str:
    return server.root.pem.decode()


def make_sender(dns_server: DNSServer, **options: Any) -> ReportSender:
    options.setdefault("allow_unsigned", True)
    options.setdefault("lookup_addresses", resolver(dns_server).lookup_addresses)
    options.setdefault("lookup_txt", resolver(dns_server).lookup_txt)
    return ReportSender(
        organization_name="Sender Inc", contact_info="tlsrpt@sender.example", **options
    )


def store_with_a_failure(tmp_path: Path) -> SQLiteTLSRPTStore:
    store = SQLiteTLSRPTStore(tmp_path / "tlsrpt.db")
    store.add(EXPIRED, AT, 2)
    store.flush()
    return store


# --------------------------------------------------------------------------- the address policy


REFUSED = [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("127.8.9.10", "127.8.9.10 is a loopback address"),
    ("::1", "::1 is a loopback address"),
    ("10.0.0.5", "10.0.0.5 is a private address"),
    ("172.16.0.1", "172.16.0.1 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("fd00::5", "fd00::5 is a private (unique local) address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("fe80::1", "fe80::1 is a link-local address"),
    ("fe80::1%lo", "fe80::1%lo is a link-local address"),
    ("224.0.0.251", "224.0.0.251 is a multicast address"),
    ("ff02::1", "ff02::1 is a multicast address"),
    ("ff0e::1", "ff0e::1 is a multicast address"),
    ("100.64.0.1", "100.64.0.1 is a shared (CGNAT) address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("::", ":: is an unspecified address"),
    ("0.1.2.3", "0.1.2.3 is a 'this network' address"),
    ("240.0.0.1", "240.0.0.1 is a reserved address"),
    ("255.255.255.255", "255.255.255.255 is the broadcast address"),
    ("4000::1", "4000::1 is a reserved address"),
    ("198.18.0.1", "198.18.0.1 is a benchmarking address"),
    ("2001:2::1", "2001:2::1 is a benchmarking address"),
    ("192.0.2.1", "192.0.2.1 is a documentation address"),
    ("198.51.100.1", "198.51.100.1 is a documentation address"),
    ("203.0.113.1", "203.0.113.1 is a documentation address"),
    ("2001:db8::1", "2001:db8::1 is a documentation address"),
    ("3fff::1", "3fff::1 is a documentation address"),
    ("192.0.0.8", "192.0.0.8 is an IETF protocol assignment"),
    ("192.88.99.1", "192.88.99.1 is a deprecated 6to4 relay address"),
    ("fec0::1", "fec0::1 is a deprecated site-local address"),
    ("100::1", "100::1 is a discard-only address"),
    ("64:ff9b:1::1", "64:ff9b:1::1 is a local-use NAT64 address"),
    ("5f00::1", "5f00::1 is an SRv6 SID address"),
    (
        "::ffff:127.0.0.1",
        "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address",
    ),
    ("::ffff:a00:5", "::ffff:a00:5 is an IPv4-mapped form of 10.0.0.5, a private address"),
    (
        "::ffff:169.254.169.254",
        "::ffff:169.254.169.254 is an IPv4-mapped form of 169.254.169.254, a link-local address",
    ),
    ("::7f00:1", "::7f00:1 is an IPv4-compatible form of 127.0.0.1, a loopback address"),
    ("::101:101", "::101:101 is a deprecated IPv4-compatible address"),
    ("64:ff9b::a00:5", "64:ff9b::a00:5 is a NAT64 form of 10.0.0.5, a private address"),
    ("2002:7f00:1::1", "2002:7f00:1::1 is a 6to4 form of 127.0.0.1, a loopback address"),
    (
        "2002:a9fe:a9fe::",
        "2002:a9fe:a9fe:: is a 6to4 form of 169.254.169.254, a link-local address",
    ),
    (
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:4136:e378:8000:63bf:80ff:fffe is a Teredo form of 127.0.0.1, a loopback address",
    ),
    (
        "2001:0:a00:5:8000:63bf:fefe:fefe",  # server 10.0.0.5, client 1.1.1.1
        "2001:0:a00:5:8000:63bf:fefe:fefe is a Teredo form of 10.0.0.5, a private address",
    ),
    (
        "2001:0:4136:e378:8000:63bf:fefe:fefe",
        "2001:0:4136:e378:8000:63bf:fefe:fefe is a Teredo address",
    ),
    ("2001:10::1", "2001:10::1 is not a global address"),
    ("not-an-address", "'not-an-address' is not an IP address"),
]


class TestPolicy:
    @pytest.mark.parametrize(("address", "why"), REFUSED)
    def test_refused(self, address: str, why: str) -> None:
        """SEC-55, issue 10: each non-public class, IPv4 and IPv6 and IPv6 forms of refused IPv4, is refused with its reason."""
        assert why == is_refused(address)

    @pytest.mark.parametrize(
        "address",
        [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:1.1.1.1",  # mapped public IPv4
            "64:ff9b::101:101",  # NAT64 of a public IPv4
            "2002:101:101::1",  # 6to4 of a public IPv4
            ipaddress.ip_address("9.9.9.9"),
        ],
    )
    def test_public_addresses_pass(self, address: str) -> None:
        """Issue 10: public unicast addresses, and IPv6 forms of public IPv4 that reach only it, are not refused."""
        assert None is is_refused(address)

    def test_allow_list(self) -> None:
        """SEC-55, issue 10: the allow-list matches by network and version; a mapped address matches its IPv4 network."""
        nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
        assert [True, True, True, False, False, False] == [
            in_networks(a, nets)
            for a in ("10.1.2.3", "fd00::1", "::ffff:10.0.0.1", "11.0.0.1", "::a00:1", "junk")
        ]


# --------------------------------------------------------------------------- refused targets


class TestRefused:
    @pytest.mark.parametrize(
        ("url", "detail"),
        [
            ("https://10.0.0.5/r", "refused: 10.0.0.5 is a private address"),
            ("https://[fd00::5]/r", "refused: fd00::5 is a private (unique local) address"),
            (
                "https://169.254.169.254/latest/meta-data",
                "refused: 169.254.169.254 is a link-local address",
            ),
            ("https://[fe80::1]:8443/r", "refused: fe80::1 is a link-local address"),
            ("https://100.64.1.1/r", "refused: 100.64.1.1 is a shared (CGNAT) address"),
            ("https://0.0.0.0/r", "refused: 0.0.0.0 is an unspecified address"),
            ("https://[::]/r", "refused: :: is an unspecified address"),
            ("https://224.0.0.1/r", "refused: 224.0.0.1 is a multicast address"),
            ("https://[ff02::1]/r", "refused: ff02::1 is a multicast address"),
            ("https://192.0.2.7/r", "refused: 192.0.2.7 is a documentation address"),
            (
                "https://[::ffff:127.0.0.1]/r",
                "refused: ::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address",
            ),
        ],
    )
    def test_ip_literal_refused_without_connecting(
        self, url: str, detail: str, connects: list[tuple[str, int]]
    ) -> None:
        """Issue 10: an IP-literal rua in a refused class fails permanently with the reason; nothing is contacted."""
        assert DeliveryResult(url, ok=False, detail=detail, permanent=True) == post_report(
            url, b"{}", timeout=5
        )
        assert [] == connects

    @pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
    def test_loopback_literal_refused_by_default(
        self, host: str, https: HTTPSServer, connects: list[tuple[str, int]]
    ) -> None:
        """SEC-55, issue 10: a listening loopback server is not contacted through a literal rua by default."""
        result = post_report(f"https://{host}:{https.port}/r", b"{}", timeout=5)
        assert (False, True) == (result.ok, result.permanent)
        assert result.detail.endswith("is a loopback address")
        assert ([], []) == (connects, https.requests)

    def test_name_resolving_to_refused_addresses(
        self, dns_server: DNSServer, connects: list[tuple[str, int]]
    ) -> None:
        """Issue 10: a host name whose A and AAAA records are private is refused, the detail naming host and addresses."""
        dns_server.add(HOST, "A", "10.0.0.5")
        dns_server.add(HOST, "AAAA", "fd00::5")
        result = post_report(
            f"https://{HOST}/r",
            b"{}",
            timeout=5,
            lookup_addresses=resolver(dns_server).lookup_addresses,
        )
        assert (
            DeliveryResult(
                f"https://{HOST}/r",
                ok=False,
                detail="refused: fd00::5 is a private (unique local) address;"
                f" 10.0.0.5 is a private address (addresses of {HOST})",
                permanent=True,
            )
            == result
        )
        assert [] == connects

    def test_name_resolving_to_mapped_loopback(
        self, dns_server: DNSServer, https: HTTPSServer, connects: list[tuple[str, int]]
    ) -> None:
        """SEC-55, issue 10: an AAAA record holding an IPv4-mapped loopback address is refused like the IPv4 one."""
        dns_server.add(HOST, "AAAA", "::ffff:127.0.0.1")
        result = post_report(
            f"https://{HOST}:{https.port}/r",
            b"{}",
            timeout=5,
            lookup_addresses=resolver(dns_server).lookup_addresses,
        )
        assert (
            "refused: ::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address"
            f" (addresses of {HOST})"
        ) == result.detail
        assert ([], []) == (connects, https.requests)

    def test_system_resolver_is_checked_too(
        self, https: HTTPSServer, connects: list[tuple[str, int]]
    ) -> None:
        """Issue 10: without a DNS adapter, getaddrinfo's answer (localhost) is checked the same way."""
        https.route("localhost", OK_201)
        result = post_report(f"https://localhost:{https.port}/r", b"{}", timeout=5)
        assert (False, True) == (result.ok, result.permanent)
        assert "is a loopback address (addresses of localhost)" in result.detail
        assert [] == connects
        allowed = post_report(f"https://localhost:{https.port}/r", b"{}", timeout=5, allow=LOOPBACK)
        assert "HTTP 201" == allowed.detail
        assert all(address in ("127.0.0.1", "::1") for address, _ in connects)

    def test_connect_to_override_is_checked(self, connects: list[tuple[str, int]]) -> None:
        """SEC-55, issue 10: a connect_to address is a target like any other and is refused when not public."""
        result = post_report(
            f"https://{HOST}/r", b"{}", connect_to={(HOST, 443): ("127.0.0.1", 9)}, timeout=5
        )
        assert "refused: 127.0.0.1 is a loopback address" == result.detail
        assert [] == connects

    def test_redirect_to_refused_address(
        self, https: HTTPSServer, dns_server: DNSServer, connects: list[tuple[str, int]]
    ) -> None:
        """SEC-55, issue 10, AMB-26: with redirects on, each target is resolved and checked; a private one is refused."""
        dns_server.add(HOST, "A", "127.0.0.1")
        dns_server.add("internal.example.net", "A", "10.0.0.5")
        https.route(
            HOST, redirect("https://internal.example.net/x", status="307 Temporary Redirect")
        )
        options: dict[str, Any] = {
            "timeout": 5,
            "context": trusting(https),
            "verify": True,
            "max_redirects": 2,
            "allow": LOOPBACK,
            "lookup_addresses": resolver(dns_server).lookup_addresses,
        }
        url = f"https://{HOST}:{https.port}/r"
        assert DeliveryResult(
            url,
            ok=False,
            detail="refused: 10.0.0.5 is a private address (addresses of internal.example.net)"
            " from https://internal.example.net/x",
            permanent=True,
        ) == post_report(url, b"{}", **options)
        https.route(HOST, redirect("https://169.254.169.254/meta", status="308 Permanent Redirect"))
        assert (
            "refused: 169.254.169.254 is a link-local address from https://169.254.169.254/meta"
            == post_report(url, b"{}", **options).detail
        )
        assert [("127.0.0.1", https.port)] * 2 == connects

    def test_refused_rua_is_dropped_once(
        self,
        tmp_path: Path,
        dns_server: DNSServer,
        connects: list[tuple[str, int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Issue 10, RPT-SEND-23: a report whose only rua is refused is dropped with the reason, logged, never retried."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HOST}/r"')
        dns_server.add(HOST, "A", "10.0.0.5")
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            summary = send_due_reports(
                store_with_a_failure(tmp_path), outbox, make_sender(dns_server), now=NEXT
            )
            [item] = outbox.items()
            later = send_due_reports(
                None, outbox, make_sender(dns_server), now=NEXT + timedelta(days=1)
            )
        assert (summary.built, ()) == (summary.dropped, summary.retrying)
        assert (
            "dropped",
            0,
            None,
            f"https://{HOST}/r: refused: 10.0.0.5 is a private address (addresses of {HOST})",
        ) == (item.state, item.attempts, item.next_attempt, item.last_error)
        assert "not retried" in caplog.text
        assert (tlsrpt_send.SendSummary(), []) == (later, connects)
        assert 1 == dns_server.count(HOST, "A")

    def test_refused_https_does_not_stop_mail(
        self, tmp_path: Path, dns_server: DNSServer, connects: list[tuple[str, int]]
    ) -> None:
        """Issue 10, RPT-SEND-16: with a refused https rua and a working mailto rua the report is delivered."""
        dns_server.add(
            RECORD, "TXT", '"v=TLSRPTv1; rua=https://10.1.1.1/r,mailto:r@recipient.example"'
        )
        mailed: list[str] = []
        sender = make_sender(dns_server, submit=lambda m, f, r: mailed.append(r))
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(store_with_a_failure(tmp_path), outbox, sender, now=NEXT)
            [item] = outbox.items()
        assert summary.built == summary.delivered
        assert ["r@recipient.example"] == mailed
        assert "https://10.1.1.1/r: refused: 10.1.1.1 is a private address" == item.last_error


# --------------------------------------------------------------------------- allowed targets


class TestAllowed:
    def test_allow_list_lets_loopback_in(
        self, https: HTTPSServer, dns_server: DNSServer, connects: list[tuple[str, int]]
    ) -> None:
        """SEC-55, issue 10, RPT-SEND-19: an allowed loopback endpoint gets the POST; SNI, certificate and Host use the name."""
        dns_server.add(HOST, "A", "127.0.0.1")
        https.route(HOST, OK_201)
        result = post_report(
            f"https://{HOST}:{https.port}/r",
            b"{}",
            timeout=5,
            verify=True,
            context=trusting(https),
            allow=[ipaddress.ip_network("127.0.0.0/8")],
            lookup_addresses=resolver(dns_server).lookup_addresses,
        )
        assert (True, "HTTP 201") == (result.ok, result.detail)
        [request] = https.requests
        assert (HOST, f"{HOST}:{https.port}") == (request.sni, request.header("Host"))
        assert [("127.0.0.1", https.port)] == connects

    def test_only_the_allowed_addresses_are_tried(
        self,
        https: HTTPSServer,
        dns_server: DNSServer,
        connects: list[tuple[str, int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Issue 10: of a host's addresses the refused ones are skipped (and logged); a refused connect moves on."""
        dns_server.add(HOST, "A", "10.0.0.5", "127.0.0.1")
        dns_server.add(HOST, "AAAA", "::1")  # nothing listens on [::1]:port: refused, next one
        https.route(HOST, OK_201)
        with caplog.at_level(logging.WARNING):
            result = post_report(
                f"https://{HOST}:{https.port}/r",
                b"{}",
                timeout=5,
                context=trusting(https),
                allow=LOOPBACK,
                lookup_addresses=resolver(dns_server).lookup_addresses,
            )
        assert result.ok
        assert [("::1", https.port), ("127.0.0.1", https.port)] == connects
        assert f"{HOST}: skipping refused addresses (10.0.0.5 is a private address)" in caplog.text

    def test_no_second_resolution(
        self, https: HTTPSServer, dns_server: DNSServer, connects: list[tuple[str, int]]
    ) -> None:
        """Issue 10: a rebinding DNS is asked once; the certificate retry and a same-host redirect reuse the checked address."""
        dns_server.add(HOST, "A", "127.0.0.1")
        https.route(
            HOST, redirect(f"https://{HOST}:{https.port}/again", status="307 Temporary Redirect")
        )
        https.certificate(
            HOST, untrusted=True
        )  # the verified try fails, the unverified one is made
        real = resolver(dns_server).lookup_addresses
        calls: list[str] = []

        def rebinding(
            host: str, *, lifetime: float | None = None
        ) -> AddressAnswer | DNSNotFound | DNSFailure:
            calls.append(host)
            answer = real(host, lifetime=lifetime)
            dns_server.set(HOST, "A", "10.0.0.5")  # every later answer points inside
            return answer

        result = post_report(
            f"https://{HOST}:{https.port}/r",
            b"{}",
            timeout=5,
            max_redirects=1,
            allow=LOOPBACK,
            lookup_addresses=rebinding,
        )
        assert (
            f"HTTP 307 from https://{HOST}:{https.port}/again (too many redirects)" == result.detail
        )
        assert [HOST] == calls
        assert 1 == dns_server.count(HOST, "A")
        assert [("127.0.0.1", https.port)] * 4 == connects  # 2 hops x (verified, unverified)
        assert 2 == https.hits(HOST)

    def test_sender_and_cli_take_the_allow_list(
        self,
        tmp_path: Path,
        https: HTTPSServer,
        dns_server: DNSServer,
        connects: list[tuple[str, int]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Issue 10: `smtpsts tlsrpt send` refuses a loopback rua by default and delivers with --https-allow."""
        dns_server.add(RECORD, "TXT", f'"v=TLSRPTv1; rua=https://{HOST}:{https.port}/r"')
        dns_server.add(HOST, "A", "127.0.0.1")
        https.route(HOST, OK_201)
        past = datetime.now(UTC) - timedelta(days=2)
        base = [
            "--organization-name",
            "Sender Inc",
            "--contact-info",
            "tlsrpt@sender.example",
            "--nameserver",
            dns_server.address,
            "--https-timeout",
            "5",
            "--json",
        ]
        for name in ("a.db", "b.db"):
            with SQLiteTLSRPTStore(tmp_path / name) as store:
                store.add(EXPIRED, past)
        assert 0 == run_cli("send", "--store", str(tmp_path / "a.db"), *base)
        assert 1 == len(json.loads(capsys.readouterr().out)["dropped"])
        assert ([], []) == (connects, https.requests)
        allow = ["--https-allow", "127.0.0.0/8", "--https-allow", "::1"]
        assert 0 == run_cli("send", "--store", str(tmp_path / "b.db"), *base, *allow)
        assert 1 == len(json.loads(capsys.readouterr().out)["delivered"])
        assert 1 == len(https.requests)

    @pytest.mark.parametrize(
        "bad",
        [
            ("--https-allow", "10.0.0.1/8"),
            ("--https-allow", "nope"),
            ("--https-timeout", "0"),
            ("--https-timeout", "soon"),
        ],
    )
    def test_cli_rejects_bad_values(self, tmp_path: Path, bad: tuple[str, str]) -> None:
        """Issue 10: a network with host bits, a non-address and a non-positive deadline are usage errors."""
        with pytest.raises(SystemExit):
            run_cli(
                "send",
                "--store",
                str(tmp_path / "t.db"),
                "--organization-name",
                "S",
                "--contact-info",
                "t@s.example",
                *bad,
            )


def run_cli(*argv: str) -> int:
    import argparse

    from smtpsts._cli.tlsrpt_send import register_send

    parser = argparse.ArgumentParser(prog="smtpsts tlsrpt")
    register_send(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(list(argv))
    status: int = args.handler(args)
    return status


# --------------------------------------------------------------------------- one deadline


def drip(data: bytes, interval: float) -> Callable[[ssl.SSLSocket, threading.Event], None]:
    """A handler sending ``data`` one byte per ``interval`` seconds."""

    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        for byte in data:
            if stop.wait(interval):
                return
            conn.sendall(bytes([byte]))

    return handler


class TestDeadline:
    def post(self, https: HTTPSServer, **options: Any) -> tuple[DeliveryResult, float]:
        options.setdefault("context", trusting(https))
        options.setdefault("verify", True)
        start = time.monotonic()
        result = post_report(
            f"https://{HOST}/r",
            b"{}",
            connect_to=https.connect_to(HOST),
            allow=LOOPBACK,
            **options,
        )
        return result, time.monotonic() - start

    def test_dripping_head(self, https: HTTPSServer) -> None:
        """SEC-55, issue 10, RPT-SEND-18: a server dripping its status line a byte per 0.25 s fails at the 1.5 s deadline."""
        https.route(HOST, drip(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0.25))
        result, took = self.post(https, timeout=1.5)
        assert (
            DeliveryResult(
                f"https://{HOST}/r", ok=False, detail="timeout: no answer within the 1.5 s deadline"
            )
            == result
        )
        assert 1.4 < took < 1.5 + 0.5

    def test_dripping_body_keeps_the_status(self, https: HTTPSServer) -> None:
        """SEC-55, issue 10, RFC 8460 §5.4: once a 2xx head is in, a dripping body ends at the deadline and the status stands."""
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        https.route(
            HOST, lambda conn, stop: (conn.sendall(head), drip(b"x" * 1000, 0.2)(conn, stop))
        )
        result, took = self.post(https, timeout=1.0)
        assert (True, "HTTP 200") == (result.ok, result.detail)
        assert took < 1.0 + 0.5

    def test_slow_lookup(self, connects: list[tuple[str, int]]) -> None:
        """SEC-55, issue 10: a resolver that never answers is abandoned at the deadline."""
        release = threading.Event()

        def hanging(host: str, *, lifetime: float | None = None) -> AddressAnswer:
            release.wait(10)
            return AddressAnswer(("127.0.0.1",))

        start = time.monotonic()
        result = post_report(f"https://{HOST}/r", b"{}", timeout=0.5, lookup_addresses=hanging)
        took = time.monotonic() - start
        release.set()
        assert "timeout: no answer within the 0.5 s deadline" == result.detail
        assert took < 0.5 + 0.5
        assert [] == connects

    def test_body_read_is_capped(self, https: HTTPSServer) -> None:
        """Issue 10: a 32 MiB response body is not read to its end (64 KiB cap); the status decides."""
        sent: list[int] = []
        body = b"y" * (32 << 20)

        def huge(conn: ssl.SSLSocket, stop: threading.Event) -> None:
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n" % len(body))
            conn.settimeout(1)
            for i in range(0, len(body), 16384):
                try:
                    conn.sendall(body[i : i + 16384])
                except OSError:
                    break
                sent.append(i)

        https.route(HOST, huge)
        result, took = self.post(https, timeout=5)
        assert (True, "HTTP 202") == (result.ok, result.detail)
        assert took < 3
        assert len(sent) * 16384 < len(body)

    @pytest.mark.parametrize(
        ("handler", "detail"),
        [
            (raw(b""), "ConnectionError: the server closed the connection without a response"),
            (raw(b"HELLO\r\n\r\n"), "RemoteProtocolError"),
        ],
    )
    def test_broken_answers_are_failures(
        self, https: HTTPSServer, handler: Any, detail: str
    ) -> None:
        """RPT-SEND-18: no answer, or no HTTP, is a failure that is retried (not permanent)."""
        https.route(HOST, handler)
        result, _ = self.post(https, timeout=5)
        assert (False, False) == (result.ok, result.permanent)
        assert result.detail.startswith(detail)

    def test_unverified_retry_fails_too(self, https: HTTPSServer) -> None:
        """RPT-SEND-19: after a certificate error the unverified retry's own failure is the result."""
        https.route(HOST, raw(b"HELLO\r\n\r\n"))
        https.certificate(HOST, untrusted=True)
        result, _ = self.post(https, timeout=5, verify=False)
        assert (False, False) == (result.ok, result.permanent)
        assert result.detail.startswith("RemoteProtocolError")
        assert 1 == https.hits(HOST)

    def test_spent_deadline(self, connects: list[tuple[str, int]]) -> None:
        """Issue 10: a deadline that is already spent fails before any connection."""
        result = post_report("https://127.0.0.1:9/r", b"{}", timeout=1e-9, allow=LOOPBACK)
        assert "timeout: no answer within the 1e-09 s deadline" == result.detail
        assert [] == connects

    def test_interim_and_truncated_answers(self, https: HTTPSServer) -> None:
        """RFC 8460 §5.4: a 100 before the final status is skipped; a body cut short keeps its 2xx."""
        https.route(
            HOST,
            raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nab"),
        )
        result, _ = self.post(https, timeout=5)
        assert (True, "HTTP 200") == (result.ok, result.detail)


# --------------------------------------------------------------------------- local faults


class TestLocalFaults:
    @pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
    def test_post_raises_local_fault(
        self, code: int, https: HTTPSServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Issue 10: out of descriptors, buffers or memory during a POST raises LocalResourceError, not a failure result."""

        def exhausted(address: str, port: int, timeout: float) -> socket.socket:
            raise OSError(code, "resource exhausted")

        monkeypatch.setattr(_rua_post, "_open_connection", exhausted)
        with pytest.raises(LocalResourceError) as info:
            post_report(
                f"https://{HOST}/r", b"{}", connect_to=https.connect_to(HOST), allow=LOOPBACK
            )
        assert code == info.value.errno
        assert [] == https.requests

    def test_local_fault_keeps_the_report(
        self,
        tmp_path: Path,
        dns_server: DNSServer,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Issue 10: an EMFILE during the POST defers the report: still pending, no attempt counted, WARNING logged."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=https://127.0.0.1:9/r"')

        def exhausted(address: str, port: int, timeout: float) -> socket.socket:
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(_rua_post, "_open_connection", exhausted)
        sender = make_sender(dns_server, https_allow=["127.0.0.1/32"])
        with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.WARNING):
            summary = send_due_reports(store_with_a_failure(tmp_path), outbox, sender, now=NEXT)
            [item] = outbox.items()
        assert (summary.built, (), (), ()) == (
            summary.deferred,
            summary.retrying,
            summary.failed,
            summary.dropped,
        )
        assert ("pending", 0, NEXT + timedelta(minutes=5)) == (
            item.state,
            item.attempts,
            item.next_attempt,
        )
        assert "local fault: EMFILE" in (item.last_error or "")
        assert any(
            r.levelno == logging.WARNING and "deferred by a local fault" in r.getMessage()
            for r in caplog.records
        )

    @pytest.mark.parametrize(
        "fault",
        [OSError(errno.ENOBUFS, "No buffer space available"), LocalResourceError("no memory")],
    )
    def test_local_fault_of_the_mail_path(
        self, tmp_path: Path, dns_server: DNSServer, fault: Exception
    ) -> None:
        """Issue 10: an ENOBUFS (or LocalResourceError) from the submit function is a local fault too, not a failed attempt."""
        dns_server.add(RECORD, "TXT", '"v=TLSRPTv1; rua=mailto:r@recipient.example"')

        def submit(message: bytes, sender: str, rcpt: str) -> None:
            raise fault

        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(
                store_with_a_failure(tmp_path),
                outbox,
                make_sender(dns_server, submit=submit),
                now=NEXT,
            )
            assert 0 == outbox.items()[0].attempts
        assert summary.built == summary.deferred

    def test_local_fault_of_the_txt_lookup(self, tmp_path: Path, dns_server: DNSServer) -> None:
        """Issue 10, RPT-REC-14: a LocalResourceError from the TLSRPT record lookup defers the report."""

        def exhausted(qname: str) -> Any:
            raise LocalResourceError("EMFILE: Too many open files", errno=errno.EMFILE)

        sender = make_sender(dns_server, lookup_txt=exhausted)
        with Outbox(tmp_path / "o.db") as outbox:
            summary = send_due_reports(store_with_a_failure(tmp_path), outbox, sender, now=NEXT)
            [item] = outbox.items()
        assert summary.built == summary.deferred
        assert ("pending", 0) == (item.state, item.attempts)
        assert (
            "_smtp._tls.recipient.example.: local fault: EMFILE: Too many open files"
            == item.last_error
        )

    def test_other_os_errors_are_endpoint_failures(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Issue 10: an unrelated OSError (unreachable) stays an ordinary, retried failure."""

        def unreachable(address: str, port: int, timeout: float) -> socket.socket:
            raise OSError(errno.EHOSTUNREACH, "No route to host")

        monkeypatch.setattr(_rua_post, "_open_connection", unreachable)
        result = post_report("https://127.0.0.1:9/r", b"{}", allow=LOOPBACK, timeout=5)
        assert (False, False, "OSError: [Errno 113] No route to host") == (
            result.ok,
            result.permanent,
            result.detail,
        )

    def test_getaddrinfo_faults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Issue 10: EAI_MEMORY from getaddrinfo is a local fault; EAI_NONAME an ordinary failure."""
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "nomem.example":
                raise socket.gaierror(socket.EAI_MEMORY, "Memory allocation failure")
            if host == "noname.example":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake)
        with pytest.raises(LocalResourceError):
            post_report("https://nomem.example/r", b"{}", timeout=5)
        result = post_report("https://noname.example/r", b"{}", timeout=5)
        assert (False, False) == (result.ok, result.permanent)
        assert "noname.example: [Errno -2] Name or service not known" == result.detail

    def test_no_thread_is_a_local_fault(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Issue 10: failing to start the lookup thread is a local fault."""

        class NoThread(threading.Thread):
            def start(self) -> None:
                raise RuntimeError("can't start new thread")

        monkeypatch.setattr(_rua_post.threading, "Thread", NoThread)
        with pytest.raises(LocalResourceError):
            post_report(f"https://{HOST}/r", b"{}", timeout=5)

    @pytest.mark.parametrize(
        ("answer", "detail"),
        [
            (DNSNotFound(nxdomain=True), f"{HOST}: no such host"),
            (DNSFailure("timeout: x"), f"{HOST}: address lookup failed: timeout: x"),
            (AddressAnswer(()), f"{HOST}: no addresses"),
        ],
    )
    def test_lookup_outcomes(self, answer: object, detail: str) -> None:
        """RPT-SEND-18, RPT-REC-14: a host without addresses is a retried failure, not a refusal."""
        result = post_report(
            f"https://{HOST}/r", b"{}", timeout=5, lookup_addresses=lambda h, **k: answer
        )
        assert DeliveryResult(f"https://{HOST}/r", ok=False, detail=detail) == result

    def test_lookup_raising_os_errors(self) -> None:
        """Issue 10: an injected lookup raising EMFILE is a local fault; another OSError a failure."""

        def emfile(host: str, **_: Any) -> AddressAnswer:
            raise OSError(errno.EMFILE, "Too many open files")

        def reset(host: str, **_: Any) -> AddressAnswer:
            raise ConnectionResetError("reset")

        with pytest.raises(LocalResourceError):
            post_report(f"https://{HOST}/r", b"{}", timeout=5, lookup_addresses=emfile)
        assert (
            "ConnectionResetError: reset"
            == post_report(f"https://{HOST}/r", b"{}", timeout=5, lookup_addresses=reset).detail
        )
