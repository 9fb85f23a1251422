"""Tests for smtpsts.decision: plan() and decide()."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsts import DomainNameError, PolicyType, ResultType, vectors
from smtpsts.actions import FetchFailed, FetchFailure, TXTFailure
from smtpsts.cache import PolicyConfig, PolicyOutcome, PolicyResolution
from smtpsts.certs import CertificateCheck
from smtpsts.dane import DANECheck
from smtpsts.decision import (
    MX_MISMATCH,
    Candidate,
    Defer,
    Deliver,
    DeliverAndReport,
    MXHost,
    MXVerdict,
    Precedence,
    SkipMX,
    TLSFailure,
    TLSObservation,
    decide,
    defer_if_exhausted,
    next_hop_domain,
    plan,
)
from smtpsts.tlsrpt.session import PolicyInfo, SessionFailure
from smtpsts.vectors import _check_decision
from tests.fakes import ENFORCE, NONE, T0, TESTING, ok, run, txt

PKIX_OK = CertificateCheck(True, None, "ok", identity="mail.example.com")
EXPIRED = CertificateCheck(False, ResultType.CERTIFICATE_EXPIRED, "expired")
MISMATCH = CertificateCheck(False, ResultType.CERTIFICATE_HOST_MISMATCH, "no DNS-ID")
DANE_OK = DANECheck(True, None, "matched", None, usable=True, matched=None, authenticated=True)
DANE_FAIL = DANECheck(
    False, ResultType.VALIDATION_FAILURE, "no match", "dane-no-match", usable=True, matched=None
)
GOOD = TLSObservation(True, True, pkix=PKIX_OK, receiving_ip="192.0.2.25", sending_mta_ip="::1")
MX = MXHost("mail.example.com", 10)
EVIL = MXHost("evil.example", 5)


def outcome(body: bytes | None = ENFORCE, *results) -> PolicyOutcome:
    """The outcome of a fresh lookup that fetched ``body`` (None: no record)."""
    m = PolicyResolution("example.com", cached=None, now=T0)
    if body is None:
        results = results or (txt("v=spf1 -all"),)
    else:
        results = (txt("v=STSv1; id=a;"), ok(body))
    return run(m, results)[1].outcome


ENF = outcome(ENFORCE)
TEST = outcome(TESTING)
NO_POLICY = outcome(None)
MODE_NONE = outcome(NONE)


class TestPlan:
    def test_preference_order(self):
        """STS-APPLY-08: candidates in preference order, stable for equal preferences."""
        mxs = [
            MXHost("c.example.net", 20),
            MXHost("a.example.net", 10),
            MXHost("b.example.net", 10),
        ]
        got = plan(TEST, mxs)
        assert [
            "a.example.net",
            "b.example.net",
            "c.example.net",
        ] == [c.mx.host for c in got.candidates]
        assert {MXVerdict.OPPORTUNISTIC_REPORT} == {c.verdict for c in got.candidates}

    @pytest.mark.parametrize("out", [ENF, TEST, NO_POLICY])
    def test_tlsa_never_reorders(self, out):
        """DANE-17: MX 10 (no TLSA) and MX 20 (TLSA) -> MX 10 is tried first.

        plan() orders by preference alone; TLSA records are looked up per
        candidate afterwards and cannot move a worse MX ahead.
        """
        mxs = [MXHost("tlsa.example.com", 20), MXHost("plain.example.com", 10)]
        policy = outcome(ENFORCE.replace(b"mx: mail.example.com", b"mx: *.example.com"))
        got = plan(policy if out is ENF else out, mxs)
        assert ["plain.example.com", "tlsa.example.com"] == [c.mx.host for c in got.candidates]

    def test_enforce_skips_before_connecting(self):
        """STS-MX-11, STS-MX-01, AMB-18: enforce leaves out non-matching MX, with a failure."""
        got = plan(ENF, [MX, EVIL])
        assert (Candidate(MX, MXVerdict.REQUIRE_VERIFIED_TLS),) == got.candidates
        (skip,) = got.skipped
        assert (EVIL, ResultType.VALIDATION_FAILURE, MX_MISMATCH) == (
            skip.mx,
            skip.failure.result_type,
            skip.failure.reason,
        )
        assert (False, "evil.example", PolicyType.STS) == (
            skip.session.success,
            skip.session.receiving_mx_hostname,
            skip.session.policy.policy_type,
        )
        assert None is got.defer

    def test_enforce_nothing_left_defers(self):
        """STS-APPLY-09: no MX matches under enforce -> Defer (temporary), never a bounce."""
        got = plan(ENF, [EVIL, MXHost("other.example", 1)])
        assert () == got.candidates
        assert isinstance(got.defer, Defer)
        assert 2 == len(got.defer.failures)

    def test_testing_keeps_non_matching(self):
        """STS-MX-10: testing keeps a non-matching MX; the mismatch is reported later."""
        got = plan(TEST, [EVIL])
        assert (Candidate(EVIL, MXVerdict.OPPORTUNISTIC_REPORT),) == got.candidates

    @pytest.mark.parametrize("out", [NO_POLICY, MODE_NONE])
    def test_opportunistic(self, out):
        """STS-APPLY-07, STS-APPLY-14: none or no policy -> every MX, opportunistic."""
        got = plan(out, [EVIL, MX])
        assert [MXVerdict.OPPORTUNISTIC] * 2 == [c.verdict for c in got.candidates]

    def test_implicit_mx(self):
        """STS-MX-08: no MX RRset -> the domain itself, matched by its own name."""
        body = b"version: STSv1\r\nmode: enforce\r\nmx: example.com\r\nmax_age: 60\r\n"
        got = plan(outcome(body), [])
        assert (
            Candidate(MXHost("example.com", 0, implicit=True), MXVerdict.REQUIRE_VERIFIED_TLS),
        ) == (got.candidates)
        assert isinstance(plan(ENF, []).defer, Defer)

    def test_null_mx(self):
        """STS-APPLY-09: a null MX (RFC 7505) is reported as such, with no candidate."""
        got = plan(ENF, [MXHost(".", 0)])
        assert (True, (), None) == (got.null_mx, got.candidates, got.defer)

    def test_null_mx_among_others_ignored(self):
        """STS-APPLY-08: a stray null MX next to real ones is ignored."""
        got = plan(ENF, [MXHost("", 0), MX])
        assert (MX,) == tuple(c.mx for c in got.candidates)

    def test_defer_on_dns_error(self):
        """AMB-16, STS-CACHE-09: the defer_on_dns_error outcome defers the whole message."""
        m = PolicyResolution(
            "example.com", cached=None, now=T0, config=PolicyConfig(defer_on_dns_error=True)
        )
        out = run(m, [TXTFailure()])[1].outcome
        got = plan(out, [MX])
        assert ((), True) == (got.candidates, isinstance(got.defer, Defer))


class TestEnforce:
    def test_all_good(self):
        """STS-APPLY-04, RPT-AGG-04, RPT-AGG-14: match + STARTTLS + PKIX -> Deliver, success."""
        got = decide(ENF, MX, GOOD)
        assert isinstance(got, Deliver)
        s = got.session
        assert (True, "mail.example.com", "192.0.2.25", "::1", PolicyType.STS) == (
            s.success,
            s.receiving_mx_hostname,
            s.receiving_ip,
            s.sending_mta_ip,
            s.policy.policy_type,
        )

    def test_mx_mismatch(self):
        """STS-APPLY-05, AMB-18, STS-MX-10: a non-matching MX is skipped with mx-mismatch."""
        got = decide(ENF, EVIL, GOOD)
        assert isinstance(got, SkipMX)
        assert (
            TLSFailure(
                ResultType.VALIDATION_FAILURE,
                MX_MISMATCH,
                "MX evil.example matches no mx pattern of the policy",
            )
            == got.failure
        )

    def test_no_starttls(self):
        """STS-APPLY-05, STS-APPLY-16: no STARTTLS under enforce -> skip, starttls-not-supported."""
        got = decide(ENF, MX, TLSObservation(False))
        assert isinstance(got, SkipMX)
        assert (ResultType.STARTTLS_NOT_SUPPORTED, None) == (
            got.failure.result_type,
            got.session.failure_reason_code,
        )

    def test_handshake_failed(self):
        """STS-APPLY-16: a failed handshake is validation-failure with the reason code."""
        got = decide(ENF, MX, TLSObservation(True, False, "tls-remote-alert-70"))
        assert isinstance(got, SkipMX)
        assert (ResultType.VALIDATION_FAILURE, "tls-remote-alert-70") == (
            got.session.result_type,
            got.session.failure_reason_code,
        )
        got = decide(ENF, MX, TLSObservation(True, False))
        assert "tls-handshake-failed" == got.failure.reason

    @pytest.mark.parametrize(
        ("check", "result_type"),
        [
            (EXPIRED, ResultType.CERTIFICATE_EXPIRED),
            (MISMATCH, ResultType.CERTIFICATE_HOST_MISMATCH),
            (CertificateCheck(False, None, "?"), ResultType.VALIDATION_FAILURE),
        ],
    )
    def test_certificate_failures(self, check, result_type):
        """STS-APPLY-05, STS-CERT-16, STS-CERT-12: a bad certificate under enforce skips the MX."""
        got = decide(ENF, MX, TLSObservation(True, True, pkix=check))
        assert isinstance(got, SkipMX)
        assert result_type == got.failure.result_type

    def test_unchecked_certificate_fails(self):
        """STS-APPLY-04: enforce without a PKIX verdict cannot deliver."""
        got = decide(ENF, MX, TLSObservation(True, True))
        assert isinstance(got, SkipMX)
        assert "certificate-not-checked" == got.failure.reason

    def test_several_failures_one_session(self):
        """RPT-AGG-06: mismatch and expired certificate -> one failed session, two types."""
        got = decide(ENF, EVIL, TLSObservation(True, True, pkix=EXPIRED))
        assert (
            ResultType.VALIDATION_FAILURE,
            (SessionFailure(ResultType.CERTIFICATE_EXPIRED),),
        ) == (
            got.session.result_type,
            got.session.extra_failures,
        )

    def test_fallback_failure_recorded(self):
        """STS-APPLY-12, RPT-AGG-18: cached policy after a failed fetch -> failure recorded."""
        cached = run(
            PolicyResolution("example.com", cached=None, now=T0), [txt("v=STSv1; id=a;"), ok()]
        )[1]
        again = PolicyResolution("example.com", cached=cached.store, now=T0)
        out = run(again, [txt("v=STSv1; id=b;"), FetchFailed(FetchFailure.TIMEOUT)])[1].outcome
        got = decide(out, MX, GOOD)
        assert isinstance(got, Deliver)
        assert (False, ResultType.STS_POLICY_FETCH_ERROR, "timeout+fallback-to-cached-policy") == (
            got.session.success,
            got.session.result_type,
            got.session.failure_reason_code,
        )


class TestTesting:
    def test_failure_delivered_and_reported(self):
        """STS-APPLY-06, STS-APPLY-15: testing, expired certificate -> delivered, reported."""
        got = decide(TEST, MXHost("a.example.net"), TLSObservation(True, True, pkix=EXPIRED))
        assert isinstance(got, DeliverAndReport)
        assert (ResultType.CERTIFICATE_EXPIRED, False) == (
            got.failure.result_type,
            got.session.success,
        )

    def test_mismatch_reported(self):
        """STS-MX-10: testing, MX other.example -> failure detail recorded, delivery continues."""
        got = decide(TEST, MXHost("other.example"), GOOD)
        assert isinstance(got, DeliverAndReport)
        assert MX_MISMATCH == got.failure.reason

    def test_ok(self):
        """STS-APPLY-06: testing and all checks pass -> Deliver, success."""
        got = decide(TEST, MXHost("a.example.net"), GOOD)
        assert (Deliver, True) == (type(got), got.session.success)


class TestNoPolicy:
    @pytest.mark.parametrize("out", [NO_POLICY, MODE_NONE])
    def test_bad_certificate_is_success(self, out):
        """STS-APPLY-07, AMB-21, AMB-24, RPT-AGG-12, RPT-AGG-13: TLS up -> success."""
        got = decide(out, EVIL, TLSObservation(True, True, pkix=EXPIRED))
        assert (Deliver, True, PolicyType.NO_POLICY_FOUND) == (
            type(got),
            got.session.success,
            got.session.policy.policy_type,
        )

    def test_cleartext_counts_as_failure(self):
        """AMB-21, RPT-AGG-13: cleartext-only MX -> delivered, failure starttls-not-supported."""
        got = decide(NO_POLICY, MX, TLSObservation(False))
        assert (Deliver, ResultType.STARTTLS_NOT_SUPPORTED) == (type(got), got.session.result_type)

    def test_handshake_failure(self):
        """AMB-21: a failed handshake with no policy -> validation-failure, still delivered."""
        got = decide(MODE_NONE, MX, TLSObservation(True, False, "io-timeout-during-handshake"))
        assert (Deliver, "io-timeout-during-handshake") == (
            type(got),
            got.session.failure_reason_code,
        )

    def test_retrieval_failure_reported_under_sts(self):
        """STS-FETCH-15, RPT-AGG-18: no cache, 404 -> delivered; bare sts entry, failure."""
        out = outcome(
            None, txt("v=STSv1; id=a;"), FetchFailed(FetchFailure.HTTP_STATUS, status=404)
        )
        got = decide(out, MX, GOOD)
        assert isinstance(got, Deliver)
        s = got.session
        assert (PolicyType.STS, (), ResultType.STS_POLICY_FETCH_ERROR, "http-404") == (
            s.policy.policy_type,
            s.policy.policy_strings,
            s.result_type,
            s.failure_reason_code,
        )

    def test_malformed_mx_name(self):
        """RPT-AGG-14: an MX name that is not a host name is left out of the report."""
        got = decide(NO_POLICY, MXHost("bad_name..example"), GOOD)
        assert None is got.session.receiving_mx_hostname


class TestDANE:
    def test_dane_failure_not_rescued(self):
        """DANE-49, AMB-11, DANE-46: DANE fails, PKIX valid, MX in policy -> MX rejected."""
        obs = TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_FAIL)
        got = decide(ENF, MX, obs)
        assert isinstance(got, SkipMX)
        assert ("dane-no-match", True) == (got.failure.reason, got.session.success)

    @pytest.mark.parametrize("out", [TEST, NO_POLICY, MODE_NONE])
    def test_dane_failure_without_enforce(self, out):
        """DANE-36, DANE-46: a DANE failure makes the MX unusable whatever the STS mode."""
        got = decide(
            out, MXHost("a.example.net"), TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_FAIL)
        )
        assert isinstance(got, SkipMX)

    def test_dane_requires_tls(self):
        """SEC-13, DANE-08: usable TLSA and no STARTTLS -> no delivery through that MX."""
        got = decide(NO_POLICY, MX, TLSObservation(False, dane=DANE_OK))
        assert (SkipMX, ResultType.STARTTLS_NOT_SUPPORTED) == (type(got), got.failure.result_type)

    def test_dane_and_enforce_both_must_pass(self):
        """DANE-50, AMB-11: DANE-EE passes, self-signed certificate, enforce -> default: MX fails.

        With ``dane_overrides_sts`` (Precedence.DANE_OVERRIDES_PKIX) DANE
        replaces the PKIX check, but the MX-pattern check stays.
        """
        self_signed = CertificateCheck(
            False, ResultType.CERTIFICATE_NOT_TRUSTED, "self-signed", "self-signed"
        )
        obs = TLSObservation(True, True, pkix=self_signed, dane=DANE_OK)
        default = decide(ENF, MX, obs)
        override = decide(ENF, MX, obs, precedence=Precedence.DANE_OVERRIDES_PKIX)
        outside = decide(ENF, EVIL, obs, precedence=Precedence.DANE_OVERRIDES_PKIX)

        assert (SkipMX, ResultType.CERTIFICATE_NOT_TRUSTED) == (
            type(default),
            default.failure.result_type,
        )
        assert Precedence.BOTH == decide.__kwdefaults__["precedence"]
        assert Deliver is type(override)
        assert (SkipMX, MX_MISMATCH) == (type(outside), outside.failure.reason)

    @pytest.mark.parametrize("out", [ENF, TEST, NO_POLICY])
    def test_mandatory_dane(self, out):
        """DANE-16: mandatory destination, no or unusable TLSA -> skipped with dane-required, message deferred."""
        unusable = DANECheck(
            True,
            ResultType.TLSA_INVALID,
            "unusable",
            "all-unusable-records",
            usable=False,
            matched=None,
        )
        mx = MXHost("a.example.net") if out is TEST else MX  # in each policy
        good = TLSObservation(True, True, pkix=PKIX_OK)
        for obs in (good, TLSObservation(True, True, pkix=PKIX_OK, dane=unusable)):
            got = decide(out, mx, obs, dane_required=True)
            assert isinstance(got, SkipMX)
            assert (ResultType.DANE_REQUIRED, False, ResultType.DANE_REQUIRED) == (
                got.failure.result_type,
                got.session.success,
                got.session.result_type,
            )
            defer = defer_if_exhausted([got])
            assert defer is not None
            assert [ResultType.DANE_REQUIRED] == [f.result_type for f in defer.failures]
        # Authenticated by DANE: delivered; a DANE failure keeps its own result type.
        authed = decide(
            out, mx, TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_OK), dane_required=True
        )
        failed = decide(
            out, mx, TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_FAIL), dane_required=True
        )
        assert (Deliver, "dane-no-match") == (type(authed), failed.failure.reason)
        # Not mandatory (the default): opportunistic DANE, delivered.
        assert isinstance(decide(out, mx, good), Deliver)

    def test_both_needs_pkix(self):
        """AMB-11: precedence both -> DANE ok but PKIX fails under enforce -> skip."""
        got = decide(ENF, MX, TLSObservation(True, True, pkix=EXPIRED, dane=DANE_OK))
        assert isinstance(got, SkipMX)

    def test_dane_overrides_pkix(self):
        """AMB-11: dane-overrides-pkix -> DANE authentication replaces the PKIX check."""
        obs = TLSObservation(True, True, pkix=EXPIRED, dane=DANE_OK)
        got = decide(ENF, MX, obs, precedence=Precedence.DANE_OVERRIDES_PKIX)
        assert (Deliver, True) == (type(got), got.session.success)
        got = decide(
            ENF,
            MX,
            TLSObservation(True, True, dane=DANE_OK),
            precedence=Precedence.DANE_OVERRIDES_PKIX,
        )
        assert isinstance(got, Deliver)

    def test_override_keeps_mx_check(self):
        """AMB-11: dane-overrides-pkix keeps the MX-pattern check."""
        obs = TLSObservation(True, True, dane=DANE_OK)
        got = decide(ENF, EVIL, obs, precedence=Precedence.DANE_OVERRIDES_PKIX)
        assert (SkipMX, MX_MISMATCH) == (type(got), got.failure.reason)

    def test_unusable_tlsa_does_not_stand_in(self):
        """AMB-11, DANE-46: all-unusable TLSA authenticates nothing; PKIX still needed."""
        unusable = DANECheck(
            True,
            ResultType.TLSA_INVALID,
            "unusable",
            "all-unusable-records",
            usable=False,
            matched=None,
        )
        obs = TLSObservation(True, True, pkix=EXPIRED, dane=unusable)
        got = decide(ENF, MX, obs, precedence=Precedence.DANE_OVERRIDES_PKIX)
        assert (SkipMX, ResultType.CERTIFICATE_EXPIRED) == (type(got), got.failure.result_type)

    def test_dane_failure_check_default_type(self):
        """DANE-46: a failed DANE check without a result type reports validation-failure."""
        odd = DANECheck(False, None, "?", None, usable=True, matched=None)
        got = decide(ENF, MX, TLSObservation(True, True, pkix=PKIX_OK, dane=odd))
        assert ResultType.VALIDATION_FAILURE == got.failure.result_type


class TestExhausted:
    def test_all_skipped_defers(self):
        """STS-APPLY-09, STS-APPLY-08: every MX failed under enforce -> Defer, never a bounce."""
        verdicts = [decide(ENF, MX, TLSObservation(False)), decide(ENF, EVIL, GOOD)]
        got = defer_if_exhausted(verdicts)
        assert isinstance(got, Defer)
        assert [v.failure for v in verdicts] == list(got.failures)

    def test_delivered_or_nothing(self):
        """STS-APPLY-11, STS-APPLY-08: MX 10 invalid, MX 20 valid -> delivered; none tried."""
        verdicts = [decide(ENF, EVIL, GOOD), decide(ENF, MX, GOOD)]
        assert (None, None) == (defer_if_exhausted(verdicts), defer_if_exhausted([]))


class TestDecisionVectorChecker:
    def test_mismatch_reported(self):
        """STS-APPLY-05: the decision checker reports a disagreeing expectation."""
        case = copy.deepcopy(vectors.load("decision")[0])
        case["expect"]["defer"] = not case["expect"]["defer"]
        with pytest.raises(vectors.VectorMismatch, match="defer"):
            _check_decision.check(case)


class TestNextHop:
    @pytest.mark.parametrize(
        ("recipient", "smart_host", "expected"),
        [
            ("alice@Example.COM", None, "example.com"),
            ("alice@Example.COM.", None, "example.com"),
            ("bob@bücher.example", None, "xn--bcher-kva.example"),
            ("user@mail.example.com", None, "mail.example.com"),
            ('"odd@name"@example.org', None, "example.org"),
            ("example.net", None, "example.net"),
            ("alice@example.com", "relay.isp.example", "relay.isp.example"),
        ],
    )
    def test_domain(self, recipient, smart_host, expected):
        """STS-APPLY-01, STS-APPLY-02: recipient domain (A-label) or smart host; no parent."""
        assert expected == next_hop_domain(recipient, smart_host=smart_host)

    @pytest.mark.parametrize(
        ("recipient", "smart_host"),
        [
            ("user@[192.0.2.1]", None),
            ("user@[IPv6:2001:db8::1]", None),
            ("user@example.com", "192.0.2.7"),
            ("user@example.com", "[192.0.2.7]"),
            ("user@192.0.2.1", None),
        ],
    )
    def test_address_literal(self, recipient, smart_host):
        """STS-APPLY-03: an address-literal next hop has no MTA-STS policy."""
        assert None is next_hop_domain(recipient, smart_host=smart_host)

    def test_bad_domain(self):
        """STS-APPLY-01: a next hop that is not a host name is an error."""
        with pytest.raises(DomainNameError):
            next_hop_domain("user@exa mple.com")


PKIX_CHECKS = st.sampled_from([None, PKIX_OK, EXPIRED, MISMATCH])
DANE_CHECKS = st.sampled_from(
    [
        None,
        DANE_OK,
        DANE_FAIL,
        DANECheck(True, ResultType.TLSA_INVALID, "", "all-unusable-records", False, None),
    ]
)
OBSERVATIONS = st.builds(
    TLSObservation,
    starttls_offered=st.booleans(),
    handshake_ok=st.booleans(),
    handshake_error=st.sampled_from([None, "tls-remote-alert-40"]),
    pkix=PKIX_CHECKS,
    dane=DANE_CHECKS,
)


@given(
    out=st.sampled_from([ENF, TEST, NO_POLICY, MODE_NONE]),
    mx=st.sampled_from([MX, EVIL, MXHost("x.mx.example.net", 1), MXHost("a.example.net", 2)]),
    obs=OBSERVATIONS,
    precedence=st.sampled_from(list(Precedence)),
)
@settings(max_examples=300)
def test_decide_property(out, mx, obs, precedence):
    """STS-APPLY-05, STS-APPLY-06, STS-APPLY-07, DANE-49: verdicts follow the mode's rules."""
    got = decide(out, mx, obs, precedence=precedence)
    tls_up = obs.starttls_offered and obs.handshake_ok
    dane_failed = obs.dane is not None and (not tls_up or not obs.dane.ok)
    if dane_failed:
        # DANE-49: nothing rescues a failed DANE check.
        assert isinstance(got, SkipMX)
    if out.policy is None:
        # STS-APPLY-07, AMB-21: opportunistic; the session fails only without TLS.
        assert not isinstance(got, DeliverAndReport)
        assert got.session.success is tls_up
    elif out.policy.mode.value == "testing":
        # STS-APPLY-06: testing never refuses an MX on MTA-STS grounds.
        assert isinstance(got, DeliverAndReport | Deliver) or dane_failed
    elif isinstance(got, Deliver):
        # STS-APPLY-05: enforce delivers only through a valid MX over verified TLS.
        dane_stands_in = (
            precedence is Precedence.DANE_OVERRIDES_PKIX
            and obs.dane is not None
            and obs.dane.authenticated
        )
        assert out.policy.matches(mx.host)
        assert tls_up
        assert (obs.pkix is not None and obs.pkix.ok) or dane_stands_in
        assert got.session.success


UNUSABLE = DANECheck(
    True,
    ResultType.TLSA_INVALID,
    "every TLSA record is unusable",
    "all-unusable-records",
    usable=False,
    matched=None,
)
TLSA_POLICY = PolicyInfo.for_tlsa("mail.example.com", ["0 0 1 " + "ab" * 32])


class TestDANESession:
    @pytest.mark.parametrize("out", [ENF, TEST, NO_POLICY])
    def test_all_unusable_reported_as_tlsa_invalid(self, out):
        """DANE-55, DANE-13: all-unusable TLSA: delivery goes on, tlsa-invalid is recorded."""
        obs = TLSObservation(True, True, pkix=PKIX_OK, dane=UNUSABLE, tlsa=TLSA_POLICY)
        got = decide(out, MX, obs)
        assert not isinstance(got, SkipMX)
        dane = got.dane_session
        assert (PolicyType.TLSA, "mail.example.com", False) == (
            dane.policy.policy_type,
            dane.policy.policy_domain,
            dane.success,
        )
        assert (ResultType.TLSA_INVALID, "all-unusable-records") == (
            dane.result_type,
            dane.failure_reason_code,
        )
        # AMB-19: the tlsa result goes in the recipient domain's report.
        assert "example.com" == dane.domain
        assert TLSA_POLICY.policy_strings == dane.policy.policy_strings

    def test_all_unusable_default_reason(self):
        """DANE-55: an all-unusable check without a reason code reports all-unusable-records."""
        odd = DANECheck(True, ResultType.TLSA_INVALID, "", None, usable=False, matched=None)
        got = decide(NO_POLICY, MX, TLSObservation(True, True, dane=odd))
        assert "all-unusable-records" == got.dane_session.failure_reason_code

    def test_authenticated_is_tlsa_success(self):
        """DANE-12: an authenticated session is a tlsa success; the base domain defaults to the MX."""
        got = decide(ENF, MX, TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_OK))
        assert (True, PolicyType.TLSA, "mail.example.com", ()) == (
            got.dane_session.success,
            got.dane_session.policy.policy_type,
            got.dane_session.policy.policy_domain,
            got.dane_session.policy.policy_strings,
        )

    def test_dane_failure_in_tlsa_session(self):
        """DANE-55, AMB-25: no match is validation-failure / dane-no-match under tlsa."""
        got = decide(ENF, MX, TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_FAIL))
        assert isinstance(got, SkipMX)
        assert (ResultType.VALIDATION_FAILURE, "dane-no-match") == (
            got.dane_session.result_type,
            got.dane_session.failure_reason_code,
        )

    @pytest.mark.parametrize("out", [ENF, TEST, NO_POLICY])
    def test_tls_failure_with_dane(self, out):
        """DANE-13, SEC-13: TLSA present and no STARTTLS: the tlsa session fails too."""
        got = decide(out, MX, TLSObservation(False, dane=UNUSABLE))
        assert isinstance(got, SkipMX)
        assert ResultType.STARTTLS_NOT_SUPPORTED == got.dane_session.result_type

    def test_testing_mismatch_with_dane(self):
        """STS-APPLY-06: testing reports the STS failure; DANE success stays a tlsa success."""
        got = decide(TEST, EVIL, TLSObservation(True, True, pkix=PKIX_OK, dane=DANE_OK))
        assert isinstance(got, DeliverAndReport)
        assert got.dane_session.success

    def test_no_dane_no_tlsa_session(self):
        """DANE-14: without DANE there is no tlsa session result."""
        assert None is decide(ENF, MX, GOOD).dane_session

    def test_unreportable_host(self):
        """RPT-AGG-14: an MX name that is not a host name gives no tlsa session without a policy."""
        got = decide(
            NO_POLICY, MXHost("bad_name..example"), TLSObservation(True, True, dane=DANE_OK)
        )
        assert None is got.dane_session
