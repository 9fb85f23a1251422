"""
Tests for smtpsts.delivery: the delivery walk, pure (issue 11).

The walk is played against scripted answers, the way the adapters perform
it; tests/test_io_deliver.py runs the same walk against real loopback
servers, and the delivery-walk vectors trace it case by case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certfactory import NOW, make
from smtpsts import ResultType
from smtpsts.cache import PolicyOutcome, PolicySource
from smtpsts.dane import TLSARecord
from smtpsts.decision import Deliver, DeliverAndReport, MXHost, SkipMX, TLSObservation
from smtpsts.delivery import (
    AddressesFound,
    Attempt,
    CloseSession,
    ConnectFailed,
    DeliveryStatus,
    FallBackToPlaintext,
    LookupAddresses,
    LookupFailed,
    LookupMX,
    LookupTLSA,
    MXFound,
    NoRecords,
    NoTLSA,
    OpenSession,
    Request,
    SessionFailed,
    SessionOpened,
    TLSAFailed,
    TLSAFound,
    WalkResult,
    dane_check,
    walk,
)
from smtpsts.policy import Mode, Policy
from smtpsts.tlsrpt.session import PolicyInfo

DOMAIN = "example.com"
MX1 = MXHost("mx1.example.com", 10)
MX2 = MXHost("mx2.example.com", 20)
VALID = TLSObservation(starttls_offered=True, handshake_ok=True, pkix=None)
NO_STARTTLS = TLSObservation(starttls_offered=False, receiving_ip="192.0.2.1")


def _outcome(mode: Mode | None = None, *mx: str) -> PolicyOutcome:
    if mode is None:
        return PolicyOutcome(
            DOMAIN, None, None, PolicySource.NONE, PolicyInfo.no_policy_found(DOMAIN)
        )
    lines = "".join(f"mx: {m}\r\n" for m in mx or (MX1.host, MX2.host))
    policy = Policy.from_text(f"version: STSv1\r\nmode: {mode.value}\r\n{lines}max_age: 86400\r\n")
    applied = None if mode is Mode.NONE else policy
    return PolicyOutcome(
        DOMAIN, applied, mode, PolicySource.FRESH, PolicyInfo.for_sts(DOMAIN, policy)
    )


def _play(
    conversation: Generator[Request, Any, WalkResult], *answers: Any
) -> tuple[list[Request], WalkResult]:
    """Perform the walk's requests from ``answers`` (a CloseSession takes none)."""
    left = list(answers)
    asked: list[Request] = []
    try:
        request = next(conversation)
        while True:
            asked.append(request)
            request = conversation.send(None if isinstance(request, CloseSession) else left.pop(0))
    except StopIteration as stop:
        assert [] == left
        return asked, stop.value


class TestRequests:
    def test_server_name_is_the_mx_without_dane(self):
        """STS-CERT-14: without DANE the SNI is the MX host name."""
        assert "mx1.example.com" == OpenSession(MX1, "192.0.2.1", 25).server_name

    def test_server_name_is_the_tlsa_base_domain(self):
        """DANE-30: with a secure TLSA RRset the SNI is the TLSA base domain."""
        tlsa = TLSAFound((), "host.provider.example", ("host.provider.example",))
        assert "host.provider.example" == OpenSession(MX1, "192.0.2.1", 25, tlsa).server_name


class TestMXStep:
    def test_lookup_failure_defers(self):
        """DANE-06: a failed MX lookup delays delivery; nothing else is asked."""
        asked, result = _play(walk(DOMAIN, _outcome()), LookupFailed("SERVFAIL"))
        assert [LookupMX(DOMAIN)] == asked
        assert (DeliveryStatus.DEFER, "MX lookup failed: SERVFAIL") == (
            result.status,
            result.reason,
        )

    def test_null_mx_is_no_mail(self):
        """RFC 7505: a null MX means the domain takes no mail, whatever its policy."""
        _, result = _play(walk(DOMAIN, _outcome(Mode.ENFORCE)), MXFound((MXHost("", 0),)))
        assert (DeliveryStatus.NO_MAIL, "example.com publishes a null MX (RFC 7505)") == (
            result.status,
            result.reason,
        )

    def test_plan_defer(self):
        """STS-MX-11, STS-APPLY-09: enforce and no MX named: defer, never contacted, reported."""
        asked, result = _play(
            walk(DOMAIN, _outcome(Mode.ENFORCE)), MXFound((MXHost("evil.example", 10),))
        )
        assert [LookupMX(DOMAIN)] == asked
        assert DeliveryStatus.DEFER == result.status
        assert "no MX host matches the enforced MTA-STS policy" == result.reason
        assert ["mtasts-policy-mx-mismatch"] == [s.failure_reason_code for s in result.sessions]

    def test_implicit_mx_without_address_is_no_mail(self):
        """STS-MX-08, RFC 5321 §5.1: no MX and no address records: no mail."""
        asked, result = _play(walk(DOMAIN, _outcome()), NoRecords(), NoRecords())
        assert [LookupMX(DOMAIN), LookupAddresses(DOMAIN)] == asked
        assert (DeliveryStatus.NO_MAIL, "example.com has no MX and no address records") == (
            result.status,
            result.reason,
        )


class TestAddressStep:
    def test_failed_lookup_is_recorded_and_passed_over(self):
        """Issue 10, DANE-07: a failed address lookup is never "no mail": recorded, next MX."""
        asked, result = _play(
            walk(DOMAIN, _outcome()),
            MXFound((MX1, MX2)),
            LookupFailed("timeout"),
            NoRecords(),
        )
        assert [LookupMX(DOMAIN), LookupAddresses(MX1.host), LookupAddresses(MX2.host)] == asked
        assert [
            Attempt(MX1.host, "", 25, connected=False, error="address lookup failed: timeout"),
            Attempt(MX2.host, "", 25, connected=False, error="no address records"),
        ] == list(result.attempts)
        assert (DeliveryStatus.DEFER, "no MX host could be reached") == (
            result.status,
            result.reason,
        )

    def test_override_skips_the_lookup(self):
        """A connect_to override replaces the address lookup; the MX name is kept (STS-APPLY-13)."""
        conversation = walk(DOMAIN, _outcome(), connect_to={(MX1.host, 25): ("127.0.0.1", 2525)})
        asked, result = _play(conversation, MXFound((MX1,)), SessionOpened(VALID))
        assert OpenSession(MX1, "127.0.0.1", 2525) == asked[1]
        assert DeliveryStatus.CONNECTED == result.status

    def test_empty_address_answer_tries_nothing(self):
        """An answer without addresses connects nowhere and records nothing for the MX."""
        _, result = _play(walk(DOMAIN, _outcome()), MXFound((MX1,)), AddressesFound(()))
        assert () == result.attempts


class TestTLSAStep:
    def test_not_asked_without_dane(self):
        """DANE-01: with DANE off, no TLSA lookup is made."""
        asked, _ = _play(
            walk(DOMAIN, _outcome()),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            SessionOpened(VALID),
        )
        assert not any(isinstance(r, LookupTLSA) for r in asked)

    @pytest.mark.parametrize(
        ("bogus", "result_type", "reason"),
        [
            (True, ResultType.DNSSEC_INVALID, "dnssec-bogus"),
            (False, ResultType.VALIDATION_FAILURE, "tlsa-lookup-failed"),
        ],
    )
    def test_failure_makes_the_mx_unreachable(self, bogus, result_type, reason):
        """DANE-08, SEC-13, DANE-55: a failed TLSA lookup: no connection, reported under tlsa."""
        asked, result = _play(
            walk(DOMAIN, _outcome(), dane=True, port=2525),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            TLSAFailed(bogus, "SERVFAIL"),
        )
        assert LookupTLSA(MX1.host, 2525) == asked[-1]
        assert not any(isinstance(r, OpenSession) for r in asked)
        (session,) = result.sessions
        assert ("tlsa", result_type, reason, DOMAIN) == (
            session.policy.policy_type.value,
            session.result_type,
            session.failure_reason_code,
            session.report_domain,
        )
        assert (
            f"every MX host failed MTA-STS or DANE validation: {result_type.value} ({reason})"
            == (result.reason)
        )

    def test_found_goes_to_the_session(self):
        """DANE-12: a secure TLSA RRset travels with the session request."""
        tlsa = TLSAFound((), "mx1.example.com", ("mx1.example.com",))
        asked, _ = _play(
            walk(DOMAIN, _outcome(), dane=True),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            tlsa,
            SessionOpened(VALID),
        )
        assert OpenSession(MX1, "192.0.2.1", 25, tlsa) == asked[-1]

    def test_none_means_no_dane(self):
        """DANE-14: no secure TLSA RRset: the session goes on without DANE."""
        asked, _ = _play(
            walk(DOMAIN, _outcome(), dane=True),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            NoTLSA(),
            SessionOpened(VALID),
        )
        assert OpenSession(MX1, "192.0.2.1", 25) == asked[-1]


class TestSessionStep:
    def test_connect_failure_tries_the_next_address(self):
        """STS-APPLY-11: a connect failure has no verdict; the next address of the same MX."""
        asked, result = _play(
            walk(DOMAIN, _outcome()),
            MXFound((MX1,)),
            AddressesFound(("2001:db8::1", "192.0.2.1")),
            ConnectFailed("refused"),
            SessionOpened(VALID),
        )
        assert OpenSession(MX1, "192.0.2.1", 25) == asked[-1]
        assert (
            Attempt(MX1.host, "2001:db8::1", 25, connected=False, error="refused")
            == (result.attempts[0])
        )
        assert (DeliveryStatus.CONNECTED, "connected to mx1.example.com (192.0.2.1)") == (
            result.status,
            result.reason,
        )

    def test_session_failure_closes_and_moves_on(self):
        """A greeting or EHLO failure: no verdict, closed without QUIT, the next MX (not the next address)."""
        asked, result = _play(
            walk(DOMAIN, _outcome()),
            MXFound((MX1, MX2)),
            AddressesFound(("192.0.2.1", "192.0.2.11")),
            SessionFailed("554 go away"),
            AddressesFound(("192.0.2.2",)),
            SessionOpened(VALID),
        )
        assert [CloseSession(send_quit=False), LookupAddresses(MX2.host)] == asked[3:5]
        assert (
            Attempt(MX1.host, "192.0.2.1", 25, connected=True, error="554 go away")
            == (result.attempts[0])
        )
        assert [MX2.host] == [s.receiving_mx_hostname for s in result.sessions]

    def test_skip_quits_and_leaves_the_other_addresses(self):
        """STS-APPLY-05, STS-APPLY-08: a skipped MX gets QUIT; its other addresses are not tried."""
        asked, result = _play(
            walk(DOMAIN, _outcome(Mode.ENFORCE)),
            MXFound((MX1, MX2)),
            AddressesFound(("192.0.2.1", "192.0.2.11")),
            SessionOpened(NO_STARTTLS),
            AddressesFound(("192.0.2.2",)),
            SessionOpened(NO_STARTTLS),
        )
        assert [
            LookupMX(DOMAIN),
            LookupAddresses(MX1.host),
            OpenSession(MX1, "192.0.2.1", 25),
            CloseSession(send_quit=True),
            LookupAddresses(MX2.host),
            OpenSession(MX2, "192.0.2.2", 25),
            CloseSession(send_quit=True),
        ] == asked
        assert isinstance(result.attempts[0].verdict, SkipMX)
        assert (
            "every MX host failed MTA-STS or DANE validation: "
            "starttls-not-supported; starttls-not-supported"
        ) == result.reason
        assert (DeliveryStatus.DEFER, None) == (result.status, result.verdict)

    def test_connected_result(self):
        """STS-APPLY-06: testing delivers and reports; the result carries what the session showed."""
        _, result = _play(
            walk(DOMAIN, _outcome(Mode.TESTING)),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            SessionOpened(VALID),
        )
        assert isinstance(result.verdict, DeliverAndReport)
        assert (VALID, False, True) == (
            result.observation,
            result.plaintext,
            result.attempts[0].tls,
        )


class TestPlaintextFallback:
    BROKEN = TLSObservation(
        starttls_offered=True, handshake_ok=False, handshake_error="tls-remote-alert-40"
    )

    def test_fallback_delivers(self):
        """STS-APPLY-15, STS-APPLY-07: a broken TLS attempt without a policy: reconnect in plaintext."""
        asked, result = _play(
            walk(DOMAIN, _outcome()),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            SessionOpened(self.BROKEN, "handshake failure"),
            True,
        )
        assert FallBackToPlaintext(MX1, "192.0.2.1", 25) == asked[-1]
        assert isinstance(result.verdict, Deliver)
        assert (DeliveryStatus.CONNECTED, True) == (result.status, result.plaintext)
        assert "handshake failure" == result.attempts[0].error

    def test_fallback_not_greeted_moves_on(self):
        """STS-APPLY-15: a fallback that is not greeted passes over the MX (no verdict is Skip)."""
        asked, result = _play(
            walk(DOMAIN, _outcome(Mode.TESTING)),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1", "192.0.2.11")),
            SessionOpened(self.BROKEN, "handshake failure"),
            False,
        )
        assert isinstance(asked[-1], FallBackToPlaintext)
        assert (DeliveryStatus.DEFER, "no MX host could be reached") == (
            result.status,
            result.reason,
        )

    def test_no_fallback_under_enforce(self):
        """STS-APPLY-05: under enforce a broken handshake skips the MX: QUIT, no plaintext."""
        asked, result = _play(
            walk(DOMAIN, _outcome(Mode.ENFORCE)),
            MXFound((MX1,)),
            AddressesFound(("192.0.2.1",)),
            SessionOpened(self.BROKEN, "handshake failure"),
        )
        assert CloseSession(send_quit=True) == asked[-1]
        assert DeliveryStatus.DEFER == result.status


class TestDANECheck:
    def test_no_tlsa(self):
        """DANE-14: without a secure TLSA RRset there is no DANE part."""
        assert (None, None) == dane_check(None, (), NOW)

    def test_no_tls_with_tlsa(self):
        """DANE-12, DANE-29: a secure TLSA RRset and no TLS session: a failed check, no-tls."""
        record = TLSARecord.from_text("3 1 1 " + "ab" * 32)
        check, info = dane_check(
            TLSAFound((record,), "mx1.example.com", ("mx1.example.com",)), (), NOW
        )
        assert check is not None
        assert info is not None
        assert (False, "no-tls", True) == (check.ok, check.reason, check.usable)
        assert ("tlsa", "mx1.example.com") == (info.policy_type.value, info.policy_domain)

    def test_matching_chain(self):
        """DANE-37: a leaf whose SPKI matches a 3 1 1 record authenticates the server."""
        leaf = make("mx1.example.com")
        spki = leaf.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = TLSARecord(3, 1, 1, hashlib.sha256(spki).digest())
        tlsa = TLSAFound((record,), "mx1.example.com", ("mx1.example.com",))
        check, _ = dane_check(tlsa, (leaf.cert,), NOW)
        assert check is not None
        assert (True, True) == (check.ok, check.authenticated)
