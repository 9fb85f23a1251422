"""Tests for smtpsts.certs: PKIX checks of MX and policy-host certificates."""

from __future__ import annotations

import base64
import ipaddress
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given, settings
from hypothesis import strategies as st

from certfactory import (
    CLIENT_AUTH,
    NOW,
    PKI,
    Issued,
    make,
    new_key,
    pki,
    with_serial_zero,
)
from smtpsts import DomainNameError, ResultType, UsageError, vectors
from smtpsts.certs import (
    FAILURE_TABLE,
    MAX_CHAIN_LENGTH,
    CertificateCheck,
    TrustStore,
    check_certificate,
    classify_verification_error,
    describe_certificate,
    describe_failure,
    load_chain,
)

MX_HOST = "mx1.example.com"
PAST = datetime(2001, 1, 1, tzinfo=UTC)
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> PKI:
    return pki()


@pytest.fixture(scope="module")
def trust(ca: PKI) -> TrustStore:
    return TrustStore([ca.root.cert])


def leaf(ca: PKI, cn: str | None = "mx1.example.com", **options: object) -> Issued:
    return make(cn, issuer=ca.intermediate, **options)  # type: ignore[arg-type]


def check(ca: PKI, trust: TrustStore, lf: Issued, host: str = "mx1.example.com", **kw: object):
    return check_certificate([lf.cert, ca.intermediate.cert], host, trust=trust, now=NOW, **kw)  # type: ignore[arg-type]


def verifier_message(
    chain: list[x509.Certificate], host: str, roots: list[x509.Certificate]
) -> str:
    """Run cryptography's verifier directly and return its error text."""
    builder = PolicyBuilder().store(Store(roots)).time(NOW)
    with pytest.raises(VerificationError) as info:
        builder.build_server_verifier(x509.DNSName(host)).verify(chain[0], chain[1:])
    return str(info.value)


class TestIdentity:
    def test_exact_san(self, ca, trust):
        """STS-CERT-03, STS-CERT-11: a SAN equal to the MX host verifies; identity = host."""
        result = check(ca, trust, ca.leaf)
        assert (
            CertificateCheck(
                ok=True,
                result_type=None,
                detail="chain of 3 verified for mx1.example.com",
                chain=(ca.leaf.cert, ca.intermediate.cert, ca.root.cert),
                identity="mx1.example.com",
            )
            == result
        )

    def test_cname_target_is_no_reference_identifier(self, ca, trust):
        """SEC-14: MX mx1.example.com CNAME evil.example, certificate for evil.example -> mismatch.

        The reference identifier is the MX name the (policy-approved) MX RRset
        gives; the unauthenticated CNAME target never stands in for it.
        """
        evil = leaf(ca, "evil.example")
        result = check(ca, trust, evil, host=MX_HOST)
        assert (False, ResultType.CERTIFICATE_HOST_MISMATCH) == (result.ok, result.result_type)
        # The same chain is fine for the name it was issued to: only the
        # choice of reference identifier makes the difference.
        assert check(ca, trust, evil, host="evil.example").ok

    def test_case_insensitive(self, ca, trust):
        """STS-CERT-06: SAN in upper case vs the host in mixed case match."""
        lf = leaf(ca, san=["MX1.EXAMPLE.COM"])
        assert check(ca, trust, lf, "Mx1.Example.COM").ok

    def test_u_label_reference(self, ca, trust):
        """STS-CERT-07: a U-label reference identifier matches the A-label SAN."""
        lf = leaf(ca, san=["XN--MX-LKA.example"])
        result = check(ca, trust, lf, "møx.example")
        assert (True, "xn--mx-lka.example") == (result.ok, result.identity)

    def test_trailing_dot(self, ca, trust):
        """STS-CERT-18: the root dot of the reference identifier is removed."""
        assert check(ca, trust, ca.leaf, "mx1.example.com.").ok

    @pytest.mark.parametrize(
        ("san", "host", "ok"),
        [
            ("*.example.com", "mx1.example.com", True),
            ("*.example.com", "example.com", False),
            ("*.example.com", "a.mx1.example.com", False),
        ],
    )
    def test_wildcard_one_label(self, ca, trust, san, host, ok):
        """STS-CERT-09: a wildcard matches exactly one label."""
        result = check(ca, trust, leaf(ca, "wild", san=[san]), host)
        assert ok == result.ok
        if not ok:
            assert ResultType.CERTIFICATE_HOST_MISMATCH == result.result_type

    @pytest.mark.parametrize("san", ["m*.example.com", "*x1.example.com", "mx1.*.com", "*.*.com"])
    def test_bad_wildcards_ignored(self, ca, trust, san):
        """STS-CERT-08: wildcards that are not the whole left-most label are ignored."""
        result = check(ca, trust, leaf(ca, "wild", san=[san]))
        assert (ResultType.CERTIFICATE_HOST_MISMATCH, "no-matching-dns-id") == (
            result.result_type,
            result.reason,
        )

    def test_policy_host_wildcard(self, ca, trust):
        """STS-CERT-17: the policy host mta-sts.<domain> matches a *.<domain> SAN."""
        lf = leaf(ca, "wild", san=["*.example.com"])
        assert check(ca, trust, lf, "mta-sts.example.com").ok

    def test_cn_only_is_mismatch(self, ca, trust):
        """STS-CERT-04: a CN equal to the host but no SAN -> certificate-host-mismatch."""
        result = check(ca, trust, leaf(ca, san=()))
        assert (False, ResultType.CERTIFICATE_HOST_MISMATCH, "no-dns-id") == (
            result.ok,
            result.result_type,
            result.reason,
        )

    @pytest.mark.parametrize(
        "general",
        [
            x509.UniformResourceIdentifier("smtp://mx1.example.com"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        ],
    )
    def test_only_dns_ids(self, ca, trust, general):
        """STS-CERT-05: URI-IDs and iPAddress SANs are ignored -> certificate-host-mismatch."""
        result = check(ca, trust, leaf(ca, san=[general]))
        assert ResultType.CERTIFICATE_HOST_MISMATCH == result.result_type

    def test_other_name(self, ca, trust):
        """STS-CERT-10, STS-CERT-12: the reference is the host given, never taken from the chain."""
        result = check(ca, trust, ca.leaf, "mx2.example.com")
        assert (False, ResultType.CERTIFICATE_HOST_MISMATCH) == (result.ok, result.result_type)

    def test_bad_host(self, ca, trust):
        """A host that is not a host name is the caller's error: DomainNameError."""
        with pytest.raises(DomainNameError):
            check(ca, trust, ca.leaf, "mx1..example.com")


class TestValidity:
    def test_expired_leaf(self, ca, trust):
        """STS-CERT-01: notAfter in the past -> certificate-expired, reason expired."""
        result = check(ca, trust, leaf(ca, not_before=PAST, not_after=NOW - timedelta(days=1)))
        assert (False, ResultType.CERTIFICATE_EXPIRED, "expired") == (
            result.ok,
            result.result_type,
            result.reason,
        )

    def test_not_yet_valid_leaf(self, ca, trust):
        """STS-CERT-01: future notBefore -> reason not-yet-valid, never "expired"."""
        result = check(ca, trust, leaf(ca, not_before=FUTURE))
        assert (ResultType.CERTIFICATE_EXPIRED, "not-yet-valid") == (
            result.result_type,
            result.reason,
        )
        assert result.detail.startswith("the certificate is not yet valid: only from 2030-01-01")

    def test_expired_and_mismatch_reports_expired(self, ca, trust):
        """STS-CERT-01, STS-CERT-16: leaf dates are checked before the name."""
        lf = leaf(ca, "other.example", not_before=PAST, not_after=PAST + timedelta(days=1))
        assert "expired" == check(ca, trust, lf).reason

    @pytest.mark.parametrize(
        ("not_before", "not_after", "reason"),
        [
            (PAST, PAST + timedelta(days=1), "expired"),
            (FUTURE, FUTURE + timedelta(days=1), "not-yet-valid"),
        ],
    )
    def test_intermediate_dates(self, ca, trust, not_before, not_after, reason):
        """STS-CERT-01, STS-CERT-02: an intermediate out of its period fails the path."""
        inter = make(
            "Dated CA", issuer=ca.root, ca=True, not_before=not_before, not_after=not_after
        )
        lf = make("mx1.example.com", issuer=inter)
        result = check_certificate([lf.cert, inter.cert], "mx1.example.com", trust=trust, now=NOW)
        assert (ResultType.CERTIFICATE_EXPIRED, reason) == (result.result_type, result.reason)

    def test_expired_anchor(self, ca):
        """STS-CERT-01: an expired root in the trust store -> certificate-expired."""
        root = make("Old Root", ca=True, not_before=PAST, not_after=PAST + timedelta(days=1))
        lf = make("mx1.example.com", issuer=root)
        result = check_certificate([lf.cert], "mx1.example.com", trust=[root.cert], now=NOW)
        assert (ResultType.CERTIFICATE_EXPIRED, "expired") == (result.result_type, result.reason)

    def test_aware_non_utc_now(self, ca, trust):
        """STS-CERT-01: an aware time in another zone is converted, not misread."""
        lf = leaf(ca, not_before=datetime(2026, 1, 1, 12, tzinfo=UTC))
        plus2 = timezone(timedelta(hours=2))
        before = check_certificate(
            [lf.cert, ca.intermediate.cert],
            "mx1.example.com",
            trust=trust,
            now=datetime(2026, 1, 1, 13, tzinfo=plus2),
        )
        after = check_certificate(
            [lf.cert, ca.intermediate.cert],
            "mx1.example.com",
            trust=trust,
            now=datetime(2026, 1, 1, 15, tzinfo=plus2),
        )
        assert ("not-yet-valid", True) == (before.reason, after.ok)

    def test_naive_now(self, ca, trust):
        """A naive `now` is a usage error."""
        with pytest.raises(UsageError):
            check_certificate(ca.chain, "mx1.example.com", trust=trust, now=datetime(2026, 1, 1))


class TestPath:
    def test_untrusted_root(self, ca):
        """STS-CERT-02, STS-CERT-16: unknown CA -> certificate-not-trusted."""
        other = pki(ca_name="Other")
        result = check_certificate(other.chain, "mx1.example.com", trust=[ca.root.cert], now=NOW)
        assert (ResultType.CERTIFICATE_NOT_TRUSTED, "unknown-ca") == (
            result.result_type,
            result.reason,
        )

    def test_self_signed(self, trust):
        """STS-CERT-02: self-signed leaf -> certificate-not-trusted."""
        result = check_certificate(
            [make("mx1.example.com").cert], "mx1.example.com", trust=trust, now=NOW
        )
        assert ResultType.CERTIFICATE_NOT_TRUSTED == result.result_type

    def test_missing_intermediate(self, ca, trust):
        """STS-CERT-02: the server left out the intermediate -> certificate-not-trusted."""
        result = check_certificate([ca.leaf.cert], "mx1.example.com", trust=trust, now=NOW)
        assert ResultType.CERTIFICATE_NOT_TRUSTED == result.result_type

    def test_name_constraints(self, ca, trust):
        """STS-CERT-02, STS-CERT-16: a name-constraint violation -> certificate-not-trusted."""
        permitted = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("other.example")], excluded_subtrees=None
        )
        inter = make("NC CA", issuer=ca.root, ca=True, extra=[(permitted, True)])
        lf = make("mx1.example.com", issuer=inter)
        result = check_certificate([lf.cert, inter.cert], "mx1.example.com", trust=trust, now=NOW)
        assert (ResultType.CERTIFICATE_NOT_TRUSTED, "name-constraints") == (
            result.result_type,
            result.reason,
        )

    def test_wrong_eku(self, ca, trust):
        """STS-CERT-16: a clientAuth-only leaf -> validation-failure, reason bad-eku."""
        result = check(ca, trust, leaf(ca, eku=[CLIENT_AUTH]))
        assert (ResultType.VALIDATION_FAILURE, "bad-eku") == (result.result_type, result.reason)

    def test_no_eku_is_fine(self, ca, trust):
        """STS-CERT-02: a leaf without any EKU verifies."""
        assert check(ca, trust, leaf(ca, eku=None)).ok

    def test_weak_intermediate(self, ca, trust):
        """STS-CERT-16: an RSA-1024 intermediate -> validation-failure, reason weak-key."""
        inter = make("Weak CA", issuer=ca.root, ca=True, key=new_key(rsa_bits=1024))
        lf = make("mx1.example.com", issuer=inter)
        result = check_certificate([lf.cert, inter.cert], "mx1.example.com", trust=trust, now=NOW)
        assert (ResultType.VALIDATION_FAILURE, "weak-key") == (result.result_type, result.reason)

    def test_revocation_hook(self, ca, trust):
        """STS-CERT-13: the hook sees the verified path; a revoked answer -> not-trusted, revoked."""
        seen = []

        def hook(path):
            seen.append(path)
            return ca.intermediate.cert in path

        result = check_certificate(ca.chain, MX_HOST, trust=trust, now=NOW, revoked=hook)
        assert (False, ResultType.CERTIFICATE_NOT_TRUSTED, "revoked") == (
            result.ok,
            result.result_type,
            result.reason,
        )
        assert [(ca.leaf.cert, ca.intermediate.cert, ca.root.cert)] == seen
        assert check_certificate(
            ca.chain, MX_HOST, trust=trust, now=NOW, revoked=lambda p: False
        ).ok

    def test_empty_trust_store(self, ca):
        """STS-CERT-19: with no anchors nothing is trusted (and nothing crashes)."""
        result = check_certificate(ca.chain, "mx1.example.com", trust=TrustStore([]), now=NOW)
        assert (ResultType.CERTIFICATE_NOT_TRUSTED, "empty-trust-store") == (
            result.result_type,
            result.reason,
        )


def _failure_samples(
    ca: PKI,
) -> dict[str, tuple[list[x509.Certificate], str, list[x509.Certificate]]]:
    """One (chain, host, roots) per FAILURE_TABLE reason, built with the factory."""
    root = [ca.root.cert]
    inter = ca.intermediate
    other_key = make("Test Intermediate CA", ca=True).key
    forged = make("mx1.example.com", issuer=Issued(inter.cert, other_key))
    permitted = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("other.example")], excluded_subtrees=None
    )
    nc = make("NC CA", issuer=ca.root, ca=True, extra=[(permitted, True)])
    pl0 = make("PL0", issuer=ca.root, ca=True, pathlen=0)
    pl1 = make("PL1", issuer=pl0, ca=True)
    deep: list[Issued] = [ca.root]
    for depth in range(9):
        deep.append(make(f"Deep {depth}", issuer=deep[-1], ca=True))
    deep_leaf = make("mx1.example.com", issuer=deep[-1])
    non_ca = make("Not a CA", issuer=ca.root)
    weak = make("Weak CA", issuer=ca.root, ca=True, key=new_key(rsa_bits=1024))

    def under(issuer: Issued, **options: object) -> list[x509.Certificate]:
        return [make("mx1.example.com", issuer=issuer, **options).cert, issuer.cert]  # type: ignore[arg-type]

    return {
        "expired": (
            under(inter, not_before=PAST, not_after=PAST + timedelta(days=1)),
            "mx1.example.com",
            root,
        ),
        "no-matching-dns-id": ([ca.leaf.cert, inter.cert], "mx2.example.com", root),
        "no-dns-id": (under(inter, san=()), "mx1.example.com", root),
        "unknown-ca": ([ca.leaf.cert], "mx1.example.com", root),
        "bad-signature": ([forged.cert, inter.cert], "mx1.example.com", root),
        "name-constraints": (under(nc), "mx1.example.com", root),
        "path-length": ([*under(pl1), pl0.cert], "mx1.example.com", root),
        "chain-too-deep": (
            [deep_leaf.cert, *(i.cert for i in reversed(deep[1:]))],
            "mx1.example.com",
            root,
        ),
        "not-a-ca": (under(non_ca), "mx1.example.com", root),
        "bad-eku": (under(inter, eku=[CLIENT_AUTH]), "mx1.example.com", root),
        "weak-key": (under(weak), "mx1.example.com", root),
    }


class TestFailureTable:
    def test_canary_messages(self, ca):
        """STS-CERT-16: every row of the mapping table still matches cryptography's real message."""
        samples = _failure_samples(ca)
        assert sorted(row.reason for row in FAILURE_TABLE) == sorted(samples)
        for row in FAILURE_TABLE:
            chain, host, roots = samples[row.reason]
            message = verifier_message(chain, host, roots)
            assert row.pattern.search(message), (row.reason, message)
            assert (row.result_type, row.reason) == classify_verification_error(message, chain, NOW)

    def test_fallback(self, ca):
        """STS-CERT-16: an unknown verifier message -> validation-failure, reason x509-error."""
        assert (ResultType.VALIDATION_FAILURE, "x509-error") == classify_verification_error(
            "validation failed: something new", ca.chain, NOW
        )

    def test_not_yet_valid_classification(self, ca):
        """STS-CERT-01: above the leaf, expired wins over not-yet-valid; anchors: expired."""
        exhausted = "validation failed: candidates exhausted: cert is not valid at validation time"
        old = make("Old", ca=True, not_before=PAST, not_after=PAST + timedelta(days=1)).cert
        young = make("Young", ca=True, not_before=FUTURE).cert
        leaf_cert = ca.leaf.cert
        assert "expired" == classify_verification_error(exhausted, [leaf_cert, young, old], NOW)[1]
        assert "not-yet-valid" == classify_verification_error(exhausted, [leaf_cert, young], NOW)[1]
        assert "expired" == classify_verification_error(exhausted, [leaf_cert], NOW)[1]


class TestInputs:
    def test_der_and_pem_elements(self, ca, trust):
        """A chain of DER and PEM blobs verifies like certificate objects."""
        der = ca.leaf.cert.public_bytes(serialization.Encoding.DER)
        result = check_certificate(
            [der, ca.intermediate.pem], "mx1.example.com", trust=trust, now=NOW
        )
        assert result.ok

    @pytest.mark.parametrize("as_text", [False, True])
    def test_pem_bundle(self, ca, trust, as_text):
        """One PEM bundle (bytes or str) is split into certificates."""
        bundle = ca.leaf.pem + ca.intermediate.pem
        chain = bundle.decode() if as_text else bundle
        assert check_certificate(chain, "mx1.example.com", trust=trust, now=NOW).ok

    @pytest.mark.parametrize(
        "chain",
        [
            [b"\x30\x03\x02\x01\x00"],
            [b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"],
            "-----BEGIN NOTHING",
        ],
    )
    def test_garbage(self, trust, chain):
        """Unparsable certificates -> validation-failure, reason bad-certificate, no exception."""
        result = check_certificate(chain, "mx1.example.com", trust=trust, now=NOW)
        assert (False, ResultType.VALIDATION_FAILURE, "bad-certificate") == (
            result.ok,
            result.result_type,
            result.reason,
        )

    def test_empty_chain(self, trust):
        """No certificate from the peer -> validation-failure, reason no-certificate."""
        result = check_certificate([], "mx1.example.com", trust=trust, now=NOW)
        assert "no-certificate" == result.reason

    def test_chain_cap(self, ca, trust):
        """A peer chain longer than MAX_CHAIN_LENGTH is refused without verifying."""
        chain = [ca.leaf.cert] + [ca.intermediate.cert] * MAX_CHAIN_LENGTH
        assert (
            "chain-too-long"
            == check_certificate(chain, "mx1.example.com", trust=trust, now=NOW).reason
        )

    def test_wrong_type(self, trust):
        """A chain element of the wrong type is a usage error."""
        with pytest.raises(UsageError):
            load_chain([42])  # type: ignore[list-item]

    def test_trust_as_list(self, ca):
        """Trust may be a plain sequence of root certificates."""
        assert check_certificate(ca.chain, "mx1.example.com", trust=[ca.root.cert], now=NOW).ok

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data):
        """Arbitrary bytes as a peer certificate never raise; they fail validation."""
        result = check_certificate([data], "mx1.example.com", trust=_ROOTS, now=NOW)
        assert not result.ok


_ROOTS = [make("Hypothesis Root", ca=True).cert]


class TestTrustStore:
    def test_dedup_and_len(self, ca):
        """Duplicates are dropped; the store is built once."""
        store = TrustStore([ca.root.cert, ca.root.cert, ca.intermediate.cert])
        assert (2, "<TrustStore with 2 certificates>") == (len(store), repr(store))
        assert store.store is not None

    def test_type_check(self):
        """Only certificate objects are accepted."""
        with pytest.raises(TypeError):
            TrustStore([b"pem"])  # type: ignore[list-item]

    def test_from_pem_tolerant(self, ca, caplog):
        """STS-CERT-19: a bad block is skipped with a warning; the others load."""
        bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        with caplog.at_level(logging.WARNING, logger="smtpsts.certs"):
            store = TrustStore.from_pem(
                b"junk\n" + ca.root.pem + bad + ca.intermediate.pem, source="t.pem"
            )
        assert (ca.root.cert, ca.intermediate.cert) == store.certificates
        assert "t.pem: skipping certificate 1" in caplog.text

    def test_from_pem_text(self, ca):
        """PEM given as str loads too."""
        assert (ca.root.cert,) == TrustStore.from_pem(ca.root.pem.decode()).certificates

    def test_deprecated_root_kept_and_works(self, caplog):
        """STS-CERT-19: a serial-0 root (deprecated in cryptography) is kept and anchors chains."""
        root = make("Zero Root", ca=True, serial=1)
        zero = with_serial_zero(root.cert)
        pem = b"-----BEGIN CERTIFICATE-----\n%s-----END CERTIFICATE-----\n" % base64.encodebytes(
            zero
        )
        store = TrustStore.from_pem(pem)
        inter = make("Zero Inter", issuer=root, ca=True)
        lf = make("mx1.example.com", issuer=inter)
        assert 1 == len(store)
        assert check_certificate([lf.cert, inter.cert], "mx1.example.com", trust=store, now=NOW).ok
        with caplog.at_level(logging.WARNING, logger="smtpsts.certs"):
            skipped = TrustStore.from_pem(pem, skip_deprecated=True)
        assert 0 == len(skipped)
        assert "skipping deprecated certificate 0" in caplog.text


@pytest.mark.parametrize("case", vectors.load("cert-check"), ids=lambda c: c["id"])
def test_vectors(case):
    """STS-CERT-01: each shipped cert-check vector agrees with this implementation."""
    assert vectors.CaseResult("cert-check", case["id"], ok=True) == vectors.check_case(
        "cert-check", case
    )


def test_vector_counts():
    """The cert-check and dane-match groups hold at least 60 cases together."""
    assert 60 <= len(vectors.load("cert-check")) + len(vectors.load("dane-match"))


def test_generator_runs(tmp_path):
    """The vector generator runs, checks itself, and writes both groups."""
    script = Path(__file__).resolve().parent.parent / "tools" / "make_cert_vectors.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr
    for group in ("cert-check", "dane-match"):
        written = vectors.load_document(tmp_path / f"{group}.json")
        shipped = [c["id"] for c in vectors.load(group)]
        assert shipped == [c["id"] for c in written["cases"]]


class TestPlainWords:
    """
    Issue 12 item 3: certificate failures in plain words, no library reprs.

    Each detail names the certificate concerned (subject, DNS names, issuer,
    validity dates) and the name that was expected.
    """

    def test_expired_leaf(self, ca, trust):
        """STS-CERT-01: the date it expired and the certificate."""
        lf = leaf(ca, not_before=PAST, not_after=datetime(2020, 5, 1, 12, 0, tzinfo=UTC))
        detail = check(ca, trust, lf).detail
        assert detail.startswith("the certificate expired on 2020-05-01 12:00 UTC (subject CN=mx1")
        assert "names mx1.example.com;" in detail
        assert "issued by CN=" in detail
        assert "valid 2001-01-01 00:00 to 2020-05-01 12:00 (UTC)" in detail
        assert "Certificate(" not in detail
        assert "<" not in detail

    def test_expired_and_future_ca(self, trust):
        """STS-CERT-01: a CA certificate of the chain out of its period is said to be one."""
        root = make("old root", ca=True, not_before=PAST, not_after=NOW - timedelta(days=1))
        lf = make(MX_HOST, issuer=root)
        detail = describe_failure("expired", [lf.cert, root.cert], MX_HOST, NOW)
        assert detail.startswith("a CA certificate of the chain expired on")
        young = make("young root", ca=True, not_before=FUTURE)
        lf = make(MX_HOST, issuer=young)
        detail = describe_failure("not-yet-valid", [lf.cert, young.cert], MX_HOST, NOW)
        assert detail.startswith("a CA certificate of the chain is not yet valid: only from 2030")
        # Dates in period (a classification from the verifier alone): the leaf is named.
        detail = describe_failure("expired", [lf.cert], MX_HOST, NOW)
        assert detail.startswith("the certificate expired on")

    def test_wrong_name(self, ca, trust):
        """STS-CERT-03: the names it has and the name expected."""
        lf = leaf(ca, "mx9.example.org", san=["mx9.example.org", "*.example.org"])
        detail = check(ca, trust, lf).detail
        assert detail.startswith("the certificate is not valid for mx1.example.com (subject CN=mx9")
        assert "names mx9.example.org, *.example.org;" in detail

    def test_no_san(self, ca, trust):
        """STS-CERT-04: no subjectAltName: the CN is never used."""
        detail = check(ca, trust, leaf(ca, san=())).detail
        assert "has no subjectAltName" in detail
        assert "expected mx1.example.com" in detail
        assert "names no subjectAltName;" in detail

    def test_self_signed_and_unknown_ca(self, ca):
        """STS-CERT-02: a self-signed certificate, a chain ending at an unknown CA or issuer."""
        other = TrustStore([make("other root", ca=True).cert])
        alone = make(MX_HOST)
        detail = check_certificate([alone.cert], MX_HOST, trust=other, now=NOW).detail
        assert detail.startswith("the certificate is self-signed that is not trusted")
        root = make("private root", ca=True)
        chain = [make(MX_HOST, issuer=root).cert, root.cert]
        detail = check_certificate(chain, MX_HOST, trust=other, now=NOW).detail
        assert detail.startswith("the chain ends at a CA that is not trusted (subject CN=private")
        # The verifier says "exceeds max depth" for an untrusted root in the chain.
        result = check_certificate(chain, MX_HOST, trust=other, now=NOW)
        assert (ResultType.CERTIFICATE_NOT_TRUSTED, "unknown-ca") == (
            result.result_type,
            result.reason,
        )
        detail = check(ca, other, leaf(ca)).detail
        assert detail.startswith("the chain does not lead to a trusted CA: its last certificate")
        assert f"issued by {ca.root.cert.subject.rfc4514_string()}" in detail

    @pytest.mark.parametrize(
        ("reason", "words"),
        [
            ("bad-signature", "a signature in the chain does not verify"),
            ("name-constraints", "name constraints"),
            ("path-length", "longer than a CA allows"),
            ("chain-too-deep", "the chain is too long"),
            ("not-a-ca", "is not a CA"),
            ("bad-eku", "not for TLS servers"),
            ("weak-key", "too weak"),
            ("x509-error", "the chain does not verify"),
        ],
    )
    def test_other_reasons(self, ca, reason, words):
        """STS-CERT-16: every reason code has words, and the certificate and name."""
        detail = describe_failure(reason, [leaf(ca).cert], MX_HOST, NOW)
        assert detail.startswith(words) or words in detail
        assert "expected mx1.example.com (subject CN=mx1.example.com" in detail

    def test_wrong_eku_end_to_end(self, ca, trust):
        """STS-CERT-16: a client-only certificate, checked for real."""
        detail = check(ca, trust, leaf(ca, eku=[CLIENT_AUTH])).detail
        assert detail.startswith("the certificate is not for TLS servers")

    def test_names_listed_and_cut(self, ca):
        """Peer text is bounded: 8 names then "and N more", 200 characters, escapes."""
        names = [f"h{i}.example.com" for i in range(11)]
        text = describe_certificate(leaf(ca, san=names).cert)
        assert "h7.example.com and 3 more;" in text
        text = describe_certificate(make("x", san=["a" * 300]).cert)
        assert "names " + "a" * 200 + "...;" in text
        ip_only = make("ip", san=[x509.IPAddress(ipaddress.ip_address("192.0.2.1"))])
        assert "names no DNS names;" in describe_certificate(ip_only.cert)
        odd = make("bell\x07", san=["x.example"])
        assert "CN=bell\\x07" in describe_certificate(odd.cert)
        assert "subject (empty);" in describe_certificate(make(None, san=["x.example"]).cert)

    def test_malformed_san(self, ca):
        """A subjectAltName the library cannot parse is "no DNS names", not an exception."""
        garbage = x509.UnrecognizedExtension(
            x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05x"
        )
        broken = make(MX_HOST, issuer=ca.intermediate, san=(), extra=[(garbage, False)])
        assert "names no DNS names;" in describe_certificate(broken.cert)
