"""Tests for smtpsts.postfix.protocol: requests, keys and answers (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts._entry import PolicyOutcome, PolicySource
from smtpsts.policy import Mode, Policy
from smtpsts.postfix.protocol import (
    MAX_KEY_LENGTH,
    Answer,
    AnswerKind,
    DaneAnswer,
    DaneVerdict,
    KeyIgnored,
    Request,
    RequestSyntaxError,
    Zone,
    build_answer,
    match_patterns,
    needs_dane_check,
    normalize_key,
    parse_request,
    tlsrpt_attributes,
    zone_for,
)
from smtpsts.tlsrpt.session import PolicyInfo

ENFORCE = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\n"
    "mx: mx1.example.com\r\nmax_age: 86400\r\n"
)


def outcome(text: str | None, domain: str = "example.com", **kw: object) -> PolicyOutcome:
    policy = Policy.from_text(text) if text is not None else None
    return PolicyOutcome(
        domain=domain,
        policy=policy if policy is None or policy.mode is not Mode.NONE else None,
        mode=policy.mode if policy is not None else None,
        source=PolicySource.FRESH if policy is not None else PolicySource.NONE,
        policy_info=PolicyInfo.for_sts(domain, policy)
        if policy is not None
        else PolicyInfo.no_policy_found(domain),
        **kw,  # type: ignore[arg-type]
    )


TESTING = ENFORCE.replace("enforce", "testing")


class TestParseRequest:
    def test_name_and_key(self) -> None:
        """A request is split at the first space; the key keeps the rest."""
        assert Request("postfix", "Example.COM") == parse_request(b"postfix Example.COM")
        assert Request("p", "a b") == parse_request(b"p a b")

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b"postfix", "bad-request"),
            (b" example.com", "bad-request"),
            (b"postfix ", "bad-request"),
            (b"postfix \xff.example", "not-utf8"),
            (b"postfix " + b"a" * (MAX_KEY_LENGTH + 1), "key-too-long"),
        ],
    )
    def test_malformed(self, payload: bytes, reason: str) -> None:
        """Requests a Postfix never sends raise RequestSyntaxError with a reason."""
        with pytest.raises(RequestSyntaxError) as info:
            parse_request(payload)
        assert reason == info.value.reason

    def test_key_at_cap(self) -> None:
        """A key of exactly MAX_KEY_LENGTH bytes is accepted."""
        assert MAX_KEY_LENGTH == len(parse_request(b"p " + b"a" * MAX_KEY_LENGTH).key)

    @given(st.binary(max_size=100))
    def test_only_request_error_escapes(self, data: bytes) -> None:
        """SEC-16: any payload parses or raises RequestSyntaxError, and any key normalises."""
        try:
            request = parse_request(data)
        except RequestSyntaxError:
            return
        result = normalize_key(request.key)
        assert isinstance(result, (str, KeyIgnored))


class TestNormalizeKey:
    @pytest.mark.parametrize(
        ("key", "domain"),
        [
            ("example.com", "example.com"),
            ("Example.COM.", "example.com"),
            ("  example.com ", "example.com"),
            ("[mx.example.com]", "mx.example.com"),
            ("[mx.example.com]:587", "mx.example.com"),
            ("example.com:25", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
        ],
    )
    def test_domains(self, key: str, domain: str) -> None:
        """STS-APPLY-01: the key becomes the lower-case A-label next-hop domain."""
        assert domain == normalize_key(key)

    @pytest.mark.parametrize(
        ("key", "reason"),
        [
            (".example.com", "parent-domain"),
            ("192.0.2.1", "ip-literal"),
            ("[192.0.2.1]", "ip-literal"),
            ("[192.0.2.1]:25", "ip-literal"),
            ("[IPv6:2001:db8::1]", "ip-literal"),
            ("2001:db8::1", "ip-literal"),
            ("a..b.test", "invalid-name"),
            ("x" * 64 + ".test", "invalid-name"),
            ("[mx.example.com", "invalid-name"),
            ("[mx.example.com]x", "invalid-name"),
            ("[mx.example.com]:x", "invalid-name"),
            ("example.com:smtp", "invalid-name"),
        ],
    )
    def test_ignored(self, key: str, reason: str) -> None:
        """STS-APPLY-02, STS-APPLY-03: parent-domain probes, IP literals and non-names need no lookup."""
        result = normalize_key(key)
        assert isinstance(result, KeyIgnored)
        assert reason == result.reason


class TestBuildAnswer:
    def test_enforce(self) -> None:
        """STS-APPLY-04, STS-APPLY-05: enforce -> secure, patterns in policy order, duplicates once."""
        answer = build_answer(outcome(ENFORCE), Zone())
        assert (
            b"OK secure match=mx1.example.com:.example.net servername=hostname" == answer.to_bytes()
        )

    def test_enforce_without_sni(self) -> None:
        """require_sni off leaves out servername= (Postfix < 3.4)."""
        answer = build_answer(outcome(ENFORCE), Zone(require_sni=False))
        assert "secure match=mx1.example.com:.example.net" == answer.data

    def test_testing(self) -> None:
        """STS-APPLY-06: testing delivers as without MTA-STS; a strict zone enforces it."""
        assert b"NOTFOUND " == build_answer(outcome(TESTING), Zone()).to_bytes()
        strict = build_answer(outcome(TESTING), Zone(strict=True))
        assert AnswerKind.OK == strict.kind

    def test_none_and_no_policy(self) -> None:
        """STS-APPLY-07: mode none and no policy both give NOTFOUND."""
        none = "version: STSv1\nmode: none\nmax_age: 86400\n"
        assert b"NOTFOUND " == build_answer(outcome(none), Zone()).to_bytes()
        assert b"NOTFOUND " == build_answer(outcome(None), Zone()).to_bytes()

    def test_defer(self) -> None:
        """STS-CACHE-09: TEMP only when the machine asks to defer (AMB-16 opt-in)."""
        answer = build_answer(outcome(None, defer=True, temporary_error=True), Zone())
        assert AnswerKind.TEMP == answer.kind
        assert answer.to_bytes().startswith(b"TEMP MTA-STS discovery for example.com")

    def test_tlsrpt_attributes(self) -> None:
        """RPT-JSON-12: TLSRPT attributes carry the domain, raw mx patterns and policy lines."""
        answer = build_answer(outcome(ENFORCE), Zone(tlsrpt=True, require_sni=False))
        assert (
            "secure match=mx1.example.com:.example.net policy_type=sts "
            "policy_domain=example.com mx_host_pattern=mx1.example.com "
            "mx_host_pattern=*.example.net mx_host_pattern=mx1.example.com "
            "{ policy_string = version: STSv1 } { policy_string = mode: enforce } "
            "{ policy_string = mx: mx1.example.com } { policy_string = mx: *.example.net } "
            "{ policy_string = mx: mx1.example.com } { policy_string = max_age: 86400 }"
        ) == answer.data

    def test_tlsrpt_skips_unsafe_lines(self) -> None:
        """Policy lines with braces cannot be carried in { policy_string = ... } and are left out."""
        text = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\nx-ext: {bad}\n"
        policy = Policy.from_text(text)
        attributes = tlsrpt_attributes("example.com", policy)
        assert "{ policy_string = max_age: 60 }" == attributes[-1]

    @pytest.mark.parametrize(
        ("dane", "data", "kind"),
        [
            (DaneAnswer.DANE_ONLY, "dane-only", AnswerKind.OK),
            (DaneAnswer.DANE, "dane", AnswerKind.OK),
            (DaneAnswer.NOTFOUND, "", AnswerKind.NOTFOUND),
        ],
    )
    @pytest.mark.parametrize("verdict", [DaneVerdict.USABLE, DaneVerdict.FAILED])
    def test_dane_wins(
        self, dane: DaneAnswer, data: str, kind: AnswerKind, verdict: DaneVerdict
    ) -> None:
        """DANE-49: with DNSSEC-validated TLSA records the answer is never MTA-STS secure."""
        answer = build_answer(outcome(ENFORCE), Zone(dane=dane), dane=verdict)
        assert Answer(kind, data) == answer
        assert "secure" not in answer.data

    def test_dane_off(self) -> None:
        """The dane = off setting ignores TLSA verdicts (postfix-mta-sts-resolver behaviour)."""
        answer = build_answer(outcome(ENFORCE), Zone(dane="off"), dane=DaneVerdict.USABLE)
        assert answer.data.startswith("secure ")

    def test_needs_dane_check(self) -> None:
        """TLSA records are looked up only when the answer would be secure and DANE is on."""
        assert needs_dane_check(outcome(ENFORCE), Zone())
        assert not needs_dane_check(outcome(ENFORCE), Zone(dane="off"))
        assert not needs_dane_check(outcome(TESTING), Zone())
        assert not needs_dane_check(outcome(None), Zone())


class TestZones:
    def test_zone_for(self) -> None:
        """The socketmap name selects the zone; unknown names get the default zone."""
        strict = Zone("strict", strict=True)
        default = Zone()
        assert strict is zone_for("strict", [strict], default)
        assert default is zone_for("other", [strict], default)

    def test_bad_timeout(self) -> None:
        """A zone timeout must be positive."""
        with pytest.raises(ValueError, match="timeout"):
            Zone(timeout=0)

    def test_match_patterns(self) -> None:
        """STS-MX-01: *.domain becomes Postfix's .domain, exact names stay."""
        policy = Policy.from_text(ENFORCE)
        assert ("mx1.example.com", ".example.net") == match_patterns(policy)
