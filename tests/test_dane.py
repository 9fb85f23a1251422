"""Tests for smtpsts.dane: TLSA records and DANE-EE/DANE-TA matching (RFC 7672, RFC 7671)."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from certfactory import CLIENT_AUTH, NOW, PKI, make, new_key, pki
from smtpsts import DomainNameError, ResultType, UsageError, vectors
from smtpsts.certs import MAX_CHAIN_LENGTH
from smtpsts.dane import (
    DANECheck,
    TLSARecord,
    TLSASyntaxError,
    _signed_by,
    match_tlsa,
    tlsa_policy_strings,
)

MX = "mx1.example.com"
PAST = datetime(2001, 1, 1, tzinfo=UTC)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def record(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> TLSARecord:
    """The TLSA record of `cert` with the given parameters."""
    data = der(cert) if selector == 0 else spki(cert)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return TLSARecord(usage, selector, mtype, data)


@pytest.fixture(scope="module")
def ca() -> PKI:
    return pki(ca_name="DANE")


def summary(result: DANECheck) -> tuple[bool, bool, ResultType | None, str | None]:
    return (result.ok, result.authenticated, result.result_type, result.reason)


AUTHENTICATED = (True, True, None, None)
NO_MATCH = (False, False, ResultType.VALIDATION_FAILURE, "dane-no-match")


class TestTLSARecord:
    def test_from_text(self):
        """DANE-34: the presentation form parses; hex may be split and in any case."""
        expected = TLSARecord(3, 1, 1, bytes(range(32)))
        text = "3 1 1 " + bytes(range(16)).hex() + " " + bytes(range(16, 32)).hex().upper()
        assert expected == TLSARecord.from_text(text)

    def test_acronyms(self):
        """DANE-34: RFC 7218 acronyms stand for the numbers."""
        assert TLSARecord(2, 0, 2, b"\x01") == TLSARecord.from_text("dane-ta Cert SHA2-512 01")

    @pytest.mark.parametrize(
        "text",
        [
            "3 1 1",
            "3 1 x 00",
            "3 1 256 00",
            "3 1 1 0",
            "3 1 1 zz",
            "-1 1 1 00",
            "3 1 \u00b2 00",
            "3 1 \u0663 00",
            "3 1 0001 00",
        ],
    )
    def test_bad_text(self, text):
        """DANE-33: text that is not a TLSA RDATA raises TLSASyntaxError."""
        with pytest.raises(TLSASyntaxError) as info:
            TLSARecord.from_text(text)
        assert ("DANE-33",) == info.value.conformance

    def test_from_rdata(self):
        """DANE-34: dnspython TLSA rdata converts field by field."""
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, "3 1 1 " + "ab" * 32)
        assert TLSARecord(3, 1, 1, b"\xab" * 32) == TLSARecord.from_rdata(rdata)  # type: ignore[arg-type]

    def test_to_text_and_policy_strings(self):
        """RPT-JSON: the TLSA policy-string holds one presentation string per RR."""
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, "2 0 1 " + "cd" * 32)
        records = [TLSARecord(3, 1, 1, b"\xab" * 32), rdata]
        assert ("3 1 1 " + "AB" * 32, "2 0 1 " + "CD" * 32) == tlsa_policy_strings(records)  # type: ignore[arg-type]

    def test_field_range(self):
        """Fields are octets."""
        with pytest.raises(ValueError):
            TLSARecord(256, 1, 1, b"")

    @settings(max_examples=200)
    @given(
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=80),
    )
    def test_round_trip(self, usage, selector, mtype, data):
        """DANE-34: from_text(to_text(r)) == r."""
        r = TLSARecord(usage, selector, mtype, data)
        assert r == TLSARecord.from_text(r.to_text())

    @settings(max_examples=300)
    @given(st.text(max_size=60))
    def test_only_syntax_error_escapes(self, text):
        """DANE-33: arbitrary text either parses or raises TLSASyntaxError."""
        with contextlib.suppress(TLSASyntaxError):
            TLSARecord.from_text(text)

    @pytest.mark.parametrize(
        ("text", "usable"),
        [
            ("0 1 1 " + "00" * 32, False),
            ("1 1 1 " + "00" * 32, False),
            ("255 1 1 " + "00" * 32, False),
            ("3 2 1 " + "00" * 32, False),
            ("3 1 3 " + "00" * 32, False),
            ("3 1 255 " + "00" * 32, False),
            ("3 1 1 " + "00" * 31, False),
            ("3 1 2 " + "00" * 32, False),
            ("3 0 0 " + "00" * 8, False),
            ("3 1 0 " + "00" * 8, False),
            ("3 1 1 " + "00" * 32, True),
            ("2 0 2 " + "00" * 64, True),
        ],
    )
    def test_usable(self, text, usable):
        """DANE-32, DANE-33: only DANE-TA/EE with known selector, matching type and sound data."""
        r = TLSARecord.from_text(text)
        assert usable == r.usable
        assert usable == (r.unusable_reason is None)

    def test_full_data_usable(self, ca):
        """DANE-33: Full(0) data that parses as a certificate or SPKI is usable."""
        assert record(3, 0, 0, ca.leaf.cert).usable
        assert record(3, 1, 0, ca.leaf.cert).usable


class TestDANEEE:
    @pytest.mark.parametrize(
        ("selector", "mtype"), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    )
    def test_match(self, ca, selector, mtype):
        """DANE-37: the leaf certificate or its SPKI matches, with every matching type."""
        r = record(3, selector, mtype, ca.leaf.cert)
        result = match_tlsa([r], ca.chain, names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)
        assert (r, (ca.leaf.cert,), None) == (result.matched, result.chain, result.identity)

    def test_no_name_check(self, ca):
        """DANE-38: DANE-EE ignores names: a leaf for another name is authenticated."""
        leaf = make("other.example", issuer=ca.intermediate)
        result = match_tlsa([record(3, 1, 1, leaf.cert)], [leaf.cert], names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)

    @pytest.mark.parametrize(
        ("not_before", "not_after"),
        [(PAST, PAST + timedelta(days=1)), (NOW + timedelta(days=1), NOW + timedelta(days=2))],
    )
    def test_dates_ignored(self, not_before, not_after):
        """DANE-39: an expired or not-yet-valid self-signed leaf still authenticates by DANE-EE."""
        leaf = make(MX, not_before=not_before, not_after=not_after)
        result = match_tlsa([record(3, 0, 1, leaf.cert)], [leaf.cert], names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)

    def test_mismatch(self, ca):
        """DANE-46, DANE-55, AMB-25: no usable record matches -> dane-no-match."""
        other = make(MX)
        result = match_tlsa([record(3, 1, 1, other.cert)], ca.chain, names=[MX], now=NOW)
        assert NO_MATCH == summary(result)
        assert (True, None) == (result.usable, result.matched)

    def test_digest_agility(self, ca):
        """DANE-35: only the strongest digest per usage/selector counts."""
        other = make(MX)
        records = [
            record(3, 1, 1, ca.leaf.cert),
            record(3, 1, 2, other.cert),
            record(3, 1, 0, other.cert),
        ]
        assert NO_MATCH == summary(match_tlsa(records, ca.chain, names=[MX], now=NOW))

    def test_full_record_with_digest(self, ca):
        """DANE-35: Full(0) records stay usable next to digests."""
        other = make(MX)
        records = [record(3, 1, 2, other.cert), record(3, 1, 0, ca.leaf.cert)]
        assert AUTHENTICATED == summary(match_tlsa(records, ca.chain, names=[MX], now=NOW))

    def test_second_record_matches(self, ca):
        """DANE-36: every usable record is tried; the second one authenticates."""
        other = make(MX)
        records = [record(3, 1, 1, other.cert), record(3, 1, 1, ca.leaf.cert)]
        result = match_tlsa(records, ca.chain, names=[MX], now=NOW)
        assert records[1] == result.matched

    def test_text_and_rdata_records(self, ca):
        """Records may be given as presentation text or dnspython rdata."""
        text = record(3, 1, 1, ca.leaf.cert).to_text()
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, text)
        assert match_tlsa([text], ca.chain, names=[MX], now=NOW).authenticated
        assert match_tlsa([rdata], ca.chain, names=[MX], now=NOW).authenticated  # type: ignore[list-item]


class TestUnusable:
    def test_all_unusable(self, ca):
        """DANE-13, DANE-32, DANE-55: all unusable -> TLS, unauthenticated, tlsa-invalid."""
        records = [record(1, 1, 1, ca.leaf.cert), TLSARecord(3, 1, 1, b"\x00" * 31)]
        result = match_tlsa(records, ca.chain, names=[MX], now=NOW)
        assert (True, False, ResultType.TLSA_INVALID, "all-unusable-records") == summary(result)
        assert (False, None) == (result.usable, result.matched)

    def test_all_unusable_ignores_chain(self):
        """DANE-13: with every record unusable the chain is not examined."""
        result = match_tlsa(["0 0 1 " + "00" * 32], [b"garbage"], names=[MX], now=NOW)
        assert ResultType.TLSA_INVALID == result.result_type

    def test_unusable_records_skipped(self, ca):
        """DANE-32, DANE-36: a usable matching record wins next to unusable ones."""
        records = [record(0, 0, 1, ca.root.cert), record(3, 1, 1, ca.leaf.cert)]
        assert AUTHENTICATED == summary(match_tlsa(records, ca.chain, names=[MX], now=NOW))


class TestDANETA:
    @pytest.mark.parametrize(("selector", "mtype"), [(0, 1), (1, 1), (0, 2), (1, 0)])
    def test_intermediate_anchor(self, ca, selector, mtype):
        """DANE-40: an intermediate in the chain that matches is the trust anchor."""
        r = record(2, selector, mtype, ca.intermediate.cert)
        result = match_tlsa([r], ca.chain, names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)
        assert ((ca.leaf.cert, ca.intermediate.cert), MX) == (result.chain, result.identity)

    def test_root_in_chain(self, ca):
        """DANE-40: a root the server sends can be the anchor."""
        chain = [*ca.chain, ca.root.cert]
        result = match_tlsa([record(2, 1, 1, ca.root.cert)], chain, names=[MX], now=NOW)
        assert 3 == len(result.chain)

    def test_full_cert_not_in_chain(self, ca):
        """DANE-41: a "2 0 0" anchor validates although the server did not send it."""
        result = match_tlsa([record(2, 0, 0, ca.root.cert)], ca.chain, names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)
        assert ca.root.cert == result.chain[-1]

    def test_digest_of_absent_anchor(self, ca):
        """DANE-40: a digest of a certificate the server did not send matches nothing."""
        result = match_tlsa([record(2, 0, 1, ca.root.cert)], ca.chain, names=[MX], now=NOW)
        assert NO_MATCH == summary(result)

    @pytest.mark.parametrize("rsa", [False, True])
    def test_spki_full_key_signs_top(self, rsa):
        """DANE-42: "2 1 0": the top certificate signed by the published key is accepted."""
        root = make("Key Root", ca=True, key=new_key(rsa_bits=2048) if rsa else None)
        inter = make("Key Inter", issuer=root, ca=True)
        leaf = make(MX, issuer=inter)
        result = match_tlsa(
            [record(2, 1, 0, root.cert)], [leaf.cert, inter.cert], names=[MX], now=NOW
        )
        assert AUTHENTICATED == summary(result)
        assert (leaf.cert, inter.cert) == result.chain

    def test_spki_full_key_ed25519(self):
        """DANE-42: the same with an Ed25519 key."""
        root = make("Ed Root", ca=True, key=new_key(ed25519_key=True))
        inter = make("Ed Inter", issuer=root, ca=True)
        leaf = make(MX, issuer=inter)
        result = match_tlsa(
            [record(2, 1, 0, root.cert)], [leaf.cert, inter.cert], names=[MX], now=NOW
        )
        assert AUTHENTICATED == summary(result)

    def test_spki_full_key_other_signer(self, ca):
        """DANE-42: a published key that did not sign the top certificate matches nothing."""
        other = make("Other Root", ca=True)
        result = match_tlsa([record(2, 1, 0, other.cert)], ca.chain, names=[MX], now=NOW)
        assert NO_MATCH == summary(result)

    def test_spki_full_key_leaf_only(self, ca):
        """DANE-42: a lone leaf is never its own DANE-TA anchor."""
        result = match_tlsa(
            [record(2, 1, 0, ca.intermediate.cert)], [ca.leaf.cert], names=[MX], now=NOW
        )
        assert NO_MATCH == summary(result)

    def test_leaf_is_not_an_anchor(self, ca):
        """DANE-40: a DANE-TA record matching only the leaf does not authenticate."""
        result = match_tlsa([record(2, 0, 1, ca.leaf.cert)], ca.chain, names=[MX], now=NOW)
        assert NO_MATCH == summary(result)

    def test_full_record_also_in_chain(self, ca):
        """DANE-41: a "2 0 0" anchor that is also in the chain is tried once."""
        result = match_tlsa([record(2, 0, 0, ca.intermediate.cert)], ca.chain, names=[MX], now=NOW)
        assert AUTHENTICATED == summary(result)

    def test_unrelated_cert_in_chain(self, ca):
        """DANE-40: a matching certificate that does not issue the chain is no anchor."""
        stray = make("Stray CA", ca=True)
        chain = [*ca.chain, stray.cert]
        result = match_tlsa([record(2, 0, 1, stray.cert)], chain, names=[MX], now=NOW)
        assert NO_MATCH == summary(result)

    def test_second_reference_identifier(self, ca):
        """DANE-31, DANE-44: any reference identifier may match; it is returned."""
        leaf = make("mail", issuer=ca.intermediate, san=["example.com"])
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=["mx10.example.com", "Example.COM."],
            now=NOW,
        )
        assert (True, "example.com") == (result.authenticated, result.identity)

    @pytest.mark.parametrize(("name", "ok"), [(MX, True), ("a.mx1.example.com", False)])
    def test_wildcard(self, ca, name, ok):
        """DANE-45: a wildcard matches exactly one label."""
        leaf = make("wild", issuer=ca.intermediate, san=["*.example.com"])
        chain = [leaf.cert, ca.intermediate.cert]
        result = match_tlsa([record(2, 0, 1, ca.intermediate.cert)], chain, names=[name], now=NOW)
        assert ok == result.authenticated

    def test_name_mismatch(self, ca):
        """DANE-44, DANE-55: a DANE-TA name mismatch -> certificate-host-mismatch."""
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)], ca.chain, names=["mx2.example.com"], now=NOW
        )
        assert (
            False,
            False,
            ResultType.CERTIFICATE_HOST_MISMATCH,
            "no-matching-dns-id",
        ) == summary(result)

    def test_expired_leaf(self, ca):
        """DANE-40, DANE-55: an expired leaf under DANE-TA -> certificate-expired."""
        leaf = make(MX, issuer=ca.intermediate, not_before=PAST, not_after=PAST + timedelta(days=1))
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=[MX],
            now=NOW,
        )
        assert (False, False, ResultType.CERTIFICATE_EXPIRED, "expired") == summary(result)

    def test_expired_intermediate(self, ca):
        """DANE-40, DANE-55: an expired intermediate -> certificate-expired."""
        inter = make(
            "Old Inter",
            issuer=ca.root,
            ca=True,
            not_before=PAST,
            not_after=PAST + timedelta(days=1),
        )
        leaf = make(MX, issuer=inter)
        result = match_tlsa(
            [record(2, 0, 1, ca.root.cert)],
            [leaf.cert, inter.cert, ca.root.cert],
            names=[MX],
            now=NOW,
        )
        assert ResultType.CERTIFICATE_EXPIRED == result.result_type

    def test_not_yet_valid_leaf(self, ca):
        """DANE-40, DANE-55: a not-yet-valid leaf -> reason not-yet-valid."""
        leaf = make(MX, issuer=ca.intermediate, not_before=NOW + timedelta(days=1))
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=[MX],
            now=NOW,
        )
        assert (ResultType.CERTIFICATE_EXPIRED, "not-yet-valid") == (
            result.result_type,
            result.reason,
        )

    def test_weak_intermediate(self, ca):
        """DANE-40: a weak key between leaf and anchor -> validation-failure, weak-key."""
        weak = make("Weak", issuer=ca.root, ca=True, key=new_key(rsa_bits=1024))
        leaf = make(MX, issuer=weak)
        result = match_tlsa(
            [record(2, 0, 1, ca.root.cert)],
            [leaf.cert, weak.cert, ca.root.cert],
            names=[MX],
            now=NOW,
        )
        assert (ResultType.VALIDATION_FAILURE, "weak-key") == (result.result_type, result.reason)

    def test_client_auth_leaf(self, ca):
        """DANE-40: DANE-TA has no EKU requirement; a clientAuth-only leaf is authenticated."""
        leaf = make(MX, issuer=ca.intermediate, eku=[CLIENT_AUTH])
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=[MX],
            now=NOW,
        )
        assert AUTHENTICATED == summary(result)

    def test_leaf_profile_error_not_a_mismatch(self, ca):
        """DANE-40, DANE-55: a leaf breaking the EE profile is not reported as a name mismatch."""
        critical = x509.SubjectAlternativeName([x509.DNSName(MX)])
        leaf = make(MX, issuer=ca.intermediate, san=(), extra=[(critical, True)])
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=[MX],
            now=NOW,
        )
        assert (False, ResultType.VALIDATION_FAILURE, "x509-error") == (
            result.ok,
            result.result_type,
            result.reason,
        )

    def test_name_constraints_of_anchor(self, ca):
        """DANE-43: a Cert(0) anchor's name constraints apply."""
        permitted = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("other.example")], excluded_subtrees=None
        )
        nc = make("NC Anchor", ca=True, extra=[(permitted, True)])
        leaf = make(MX, issuer=nc)
        result = match_tlsa([record(2, 0, 1, nc.cert)], [leaf.cert, nc.cert], names=[MX], now=NOW)
        assert not result.authenticated

    def test_first_failure_kept(self, ca):
        """DANE-55: with several failing anchors the first definite failure is reported."""
        records = [record(2, 0, 1, ca.intermediate.cert), record(2, 1, 1, ca.intermediate.cert)]
        result = match_tlsa(records, ca.chain, names=["mx2.example.com"], now=NOW)
        single = match_tlsa(records[:1], ca.chain, names=["mx2.example.com"], now=NOW)
        assert single == result

    def test_ee_and_ta_records(self, ca):
        """DANE-36: a non-matching DANE-EE record does not stop a matching DANE-TA record."""
        other = make(MX)
        records = [record(3, 1, 1, other.cert), record(2, 0, 1, ca.intermediate.cert)]
        assert AUTHENTICATED == summary(match_tlsa(records, ca.chain, names=[MX], now=NOW))


class TestCNFallback:
    def cn_only(self, ca: PKI, cn: str) -> list[x509.Certificate]:
        return [make(cn, issuer=ca.intermediate, san=()).cert, ca.intermediate.cert]

    def test_cn_used_without_dns_id(self, ca):
        """DANE-44, AMB-20: without any DNS-ID the CN-ID is matched."""
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            self.cn_only(ca, "MX1.example.com"),
            names=[MX],
            now=NOW,
        )
        assert (True, MX) == (result.authenticated, result.identity)

    def test_cn_wildcard(self, ca):
        """DANE-45, AMB-20: a CN-ID wildcard matches one label."""
        chain = self.cn_only(ca, "*.example.com")
        r = [record(2, 0, 1, ca.intermediate.cert)]
        assert match_tlsa(r, chain, names=[MX], now=NOW).authenticated
        assert not match_tlsa(r, chain, names=["a.mx1.example.com"], now=NOW).authenticated

    def test_cn_off(self, ca):
        """AMB-20: dane_ta_cn_fallback=False -> certificate-host-mismatch, reason no-dns-id."""
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            self.cn_only(ca, MX),
            names=[MX],
            now=NOW,
            dane_ta_cn_fallback=False,
        )
        assert (ResultType.CERTIFICATE_HOST_MISMATCH, "no-dns-id") == (
            result.result_type,
            result.reason,
        )

    @pytest.mark.parametrize("cn", ["mx2.example.com", "Mail Server"])
    def test_cn_mismatch(self, ca, cn):
        """DANE-44, AMB-20: a CN-ID not matching (or no host name) -> host mismatch."""
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)], self.cn_only(ca, cn), names=[MX], now=NOW
        )
        assert ResultType.CERTIFICATE_HOST_MISMATCH == result.result_type

    def test_dns_id_present_cn_ignored(self, ca):
        """DANE-44: when a DNS-ID exists, the CN is not used even if it matches."""
        leaf = make(MX, issuer=ca.intermediate, san=["other.example"])
        result = match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)],
            [leaf.cert, ca.intermediate.cert],
            names=[MX],
            now=NOW,
        )
        assert ResultType.CERTIFICATE_HOST_MISMATCH == result.result_type


class TestInputs:
    def test_bad_chain(self, ca):
        """A peer certificate that does not parse -> validation-failure, bad-certificate."""
        result = match_tlsa([record(3, 1, 1, ca.leaf.cert)], [b"\x00junk"], names=[MX], now=NOW)
        assert (False, ResultType.VALIDATION_FAILURE, "bad-certificate") == (
            result.ok,
            result.result_type,
            result.reason,
        )

    def test_empty_chain(self, ca):
        """No peer certificate -> validation-failure, no-certificate."""
        assert (
            "no-certificate"
            == match_tlsa([record(3, 1, 1, ca.leaf.cert)], [], names=[MX], now=NOW).reason
        )

    def test_long_chain(self, ca):
        """A peer chain over the cap is refused."""
        chain = [ca.leaf.cert] * (MAX_CHAIN_LENGTH + 1)
        result = match_tlsa([record(3, 1, 1, ca.leaf.cert)], chain, names=[MX], now=NOW)
        assert "chain-too-long" == result.reason

    def test_pem_chain(self, ca):
        """The chain may be a PEM bundle."""
        pem = ca.leaf.pem + ca.intermediate.pem
        assert match_tlsa(
            [record(2, 0, 1, ca.intermediate.cert)], pem, names=[MX], now=NOW
        ).authenticated

    @pytest.mark.parametrize(
        ("records", "names", "now"),
        [
            ([], [MX], NOW),
            (["3 1 1 " + "00" * 32], [], NOW),
            (["3 1 1 " + "00" * 32], [MX], datetime(2026, 1, 1)),
        ],
    )
    def test_usage_errors(self, ca, records, names, now):
        """DANE-05: an empty RRset is not DANE; names and an aware time are required."""
        with pytest.raises(UsageError):
            match_tlsa(records, ca.chain, names=names, now=now)

    def test_bad_name(self, ca):
        """A reference identifier that is not a host name is the caller's error."""
        with pytest.raises(DomainNameError):
            match_tlsa(["3 1 1 " + "00" * 32], ca.chain, names=["a..b"], now=NOW)

    def test_u_label_name(self):
        """DANE-44: reference identifiers may be U-labels."""
        root = make("IDN Root", ca=True)
        leaf = make("idn", issuer=root, san=["xn--mx-lka.example"])
        result = match_tlsa(
            [record(2, 0, 0, root.cert)], [leaf.cert], names=["møx.example"], now=NOW
        )
        assert "xn--mx-lka.example" == result.identity


def test_signed_by_branches(ca):
    """DANE-42: signature checks fail closed for wrong or unsupported keys."""
    ed_root = make("Ed", ca=True, key=new_key(ed25519_key=True))
    rsa_key = new_key(rsa_bits=2048).public_key()
    assert _signed_by(ca.intermediate.cert, ca.root.key.public_key())
    assert not _signed_by(ca.intermediate.cert, ed25519.Ed25519PrivateKey.generate().public_key())
    assert not _signed_by(ca.intermediate.cert, x25519.X25519PrivateKey.generate().public_key())
    assert not _signed_by(ed_root.cert, rsa_key)
    assert not _signed_by(ed_root.cert, ca.root.key.public_key())
    assert not _signed_by(ca.intermediate.cert, rsa_key)


@pytest.mark.parametrize("case", vectors.load("dane-match"), ids=lambda c: c["id"])
def test_vectors(case):
    """DANE-37: each shipped dane-match vector agrees with this implementation (IDs per case)."""
    assert vectors.CaseResult("dane-match", case["id"], ok=True) == vectors.check_case(
        "dane-match", case
    )


_FIXED_EE = TLSARecord(3, 1, 1, b"\x5a" * 32)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=200), max_size=3))
def test_arbitrary_chain_bytes(chain):
    """DANE-46: arbitrary bytes as the peer chain never raise; they authenticate nothing."""
    result = match_tlsa([_FIXED_EE], chain, names=[MX], now=NOW)
    assert (False, False) == (result.ok, result.authenticated)


class TestPolicy:
    @pytest.mark.parametrize("matching", [False, True])
    def test_usable_means_authenticated(self, ca, matching):
        """DANE-12, DANE-36: with a usable record, delivery may go ahead only if authenticated."""
        target = ca.leaf if matching else make(MX)
        result = match_tlsa([record(3, 1, 1, target.cert)], ca.chain, names=[MX], now=NOW)
        assert (matching, matching, True) == (result.ok, result.authenticated, result.usable)

    def test_no_certificate_transparency(self, ca):
        """DANE-47: no CT check: leaves without embedded SCTs authenticate by DANE-EE and DANE-TA."""
        extensions = {e.oid for e in ca.leaf.cert.extensions}
        assert x509.oid.ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS not in extensions
        records = [record(3, 1, 1, ca.leaf.cert), record(2, 0, 1, ca.intermediate.cert)]
        for r in records:
            assert match_tlsa([r], ca.chain, names=[MX], now=NOW).authenticated


class TestResultTypeTable:
    """CONFORMANCE.md §4.4: DANE events reach TLS-RPT with the listed result types."""

    def _tlsa_failure(self, check: DANECheck) -> tuple[ResultType | None, str | None]:
        from smtpsts.cache import PolicyResolution
        from smtpsts.decision import MXHost, SkipMX, TLSObservation, decide
        from tests.fakes import T0, run, txt

        none = run(PolicyResolution("example.com", cached=None, now=T0), (txt("v=spf1 -all"),))
        got = decide(none[1].outcome, MXHost(MX, 10), TLSObservation(True, True, dane=check))
        assert isinstance(got, SkipMX)
        assert got.dane_session is not None
        assert not got.dane_session.success
        return got.dane_session.result_type, got.dane_session.failure_reason_code

    def test_dane_events(self, ca):
        """RPT-JSON-22, AMB-25: DANE-TA name mismatch -> certificate-host-mismatch; no match -> validation-failure, dane-no-match; expired DANE-TA chain -> certificate-expired."""
        ta = [record(2, 0, 1, ca.intermediate.cert)]
        other = make("other.example", issuer=None)
        mismatch = match_tlsa(ta, ca.chain, names=["mx2.example.com"], now=NOW)
        no_match = match_tlsa([record(3, 1, 1, other.cert)], ca.chain, names=[MX], now=NOW)
        old = make(MX, issuer=ca.intermediate, not_before=PAST, not_after=PAST + timedelta(days=1))
        expired = match_tlsa(ta, [old.cert, ca.intermediate.cert], names=[MX], now=NOW)

        got = [self._tlsa_failure(c) for c in (mismatch, no_match, expired)]

        assert [
            ResultType.CERTIFICATE_HOST_MISMATCH,
            ResultType.VALIDATION_FAILURE,
            ResultType.CERTIFICATE_EXPIRED,
        ] == [result_type for result_type, _ in got]
        assert "dane-no-match" == got[1][1]
