# ruff: noqa: D103, FBT003 -- a stand-alone generator script
"""
Generate the ``cert-check`` and ``dane-match`` reference vectors.

Run once from the repository root; the JSON files are committed::

    .venv/bin/python tools/make_cert_vectors.py

Keys are fixed (P-256 keys derived from fixed integers; the one RSA-1024 key
needed for the weak-key case is drawn afresh), validity periods are long
(2000-01-01 .. 2099-12-31) except where a case is about dates, and every case
names its verification time. ECDSA signatures are randomised, so a new run
gives different bytes with the same meaning: the expectations below are
written by hand and the script checks each against this implementation
before writing anything.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from certfactory import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    CLIENT_AUTH,
    Issued,
    make,
    new_key,
)
from smtpsts.vectors import FORMAT, check_case  # noqa: E402

NOW = "2026-01-01T00:00:00Z"
D2001 = datetime(2001, 1, 1, tzinfo=UTC)
D2002 = datetime(2002, 1, 1, tzinfo=UTC)
D2030 = datetime(2030, 1, 1, tzinfo=UTC)
D2031 = datetime(2031, 1, 1, tzinfo=UTC)
MX = "mx1.example.com"

_seed = 1000


def issue(cn: str | None, issuer: Issued | None = None, **options: Any) -> Issued:
    """A certificate with the next fixed key and serial."""
    global _seed  # noqa: PLW0603 -- a counter for fixed keys, script-local
    _seed += 1
    options.setdefault("key", new_key(_seed))
    return make(cn, issuer, serial=_seed, **options)


def pem(issued: Issued | x509.Certificate) -> str:
    cert = issued.cert if isinstance(issued, Issued) else issued
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def tlsa(usage: int, selector: int, mtype: int, issued: Issued) -> str:
    """The presentation form of the TLSA record for ``issued``."""
    if selector == 0:
        data = issued.cert.public_bytes(serialization.Encoding.DER)
    else:
        data = issued.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return f"{usage} {selector} {mtype} {data.hex().upper()}"


# The PKI.
root = issue("Vector Root CA", ca=True)
inter = issue("Vector Intermediate CA", root, ca=True)
leaf = issue(MX, inter)
other_root = issue("Other Root CA", ca=True)
other_inter = issue("Other Intermediate CA", other_root, ca=True)
other_leaf = issue(MX, other_inter)
old_root = issue("Old Root CA", ca=True, not_before=D2001, not_after=D2002)
old_root_leaf = issue(MX, old_root)
old_inter = issue("Old Intermediate CA", root, ca=True, not_before=D2001, not_after=D2002)
old_inter_leaf = issue(MX, old_inter)
young_inter = issue("Young Intermediate CA", root, ca=True, not_before=D2030, not_after=D2031)
young_inter_leaf = issue(MX, young_inter)
weak_inter = issue("Weak Intermediate CA", root, ca=True, key=new_key(rsa_bits=1024))
weak_leaf = issue(MX, weak_inter)
nc_inter = issue(
    "Constrained Intermediate CA",
    root,
    ca=True,
    extra=[
        (
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("other.example")], excluded_subtrees=None
            ),
            True,
        )
    ],
)
nc_leaf = issue(MX, nc_inter)
pl0_inter = issue("Pathlen0 CA", root, ca=True, pathlen=0)
pl_sub = issue("Below Pathlen0 CA", pl0_inter, ca=True)
pl_leaf = issue(MX, pl_sub)
not_ca = issue("Not A CA", root)
not_ca_leaf = issue(MX, not_ca)
forged = issue(MX, Issued(inter.cert, new_key(9999)))
self_signed = issue(MX)


def under(cn: str | None, **options: Any) -> Issued:
    return issue(cn, inter, **options)


def chain(*certs: Issued) -> list[str]:
    return [pem(c) for c in certs]


def cert_case(
    cid: str,
    conformance: list[str],
    leaf_: Issued | None,
    host: str,
    expect: dict[str, Any],
    *,
    rest: tuple[Issued, ...] = (inter,),
    trust: tuple[Issued, ...] = (root,),
    now: str = NOW,
    raw_chain: list[str] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": cid,
        "input": {
            "chain": (raw_chain or []) if leaf_ is None else chain(leaf_, *rest),
            "host": host,
            "trust": chain(*trust),
            "now": now,
        },
        "expect": expect,
        "conformance": conformance,
    }
    if note:
        case["note"] = note
    return case


def ok(identity: str, length: int = 3) -> dict[str, Any]:
    return {
        "ok": True,
        "result_type": None,
        "reason": None,
        "identity": identity,
        "chain_length": length,
    }


def fail(result_type: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "result_type": result_type, "reason": reason}


MISMATCH = fail("certificate-host-mismatch", "no-matching-dns-id")
GARBAGE = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"

CERT_CASES = [
    cert_case("exact-san", ["STS-CERT-03", "STS-CERT-11"], leaf, MX, ok(MX)),
    cert_case("host-mixed-case", ["STS-CERT-06"], leaf, "MX1.Example.COM", ok(MX)),
    cert_case("san-upper-case", ["STS-CERT-06"], under("a", san=["MX1.EXAMPLE.COM"]), MX, ok(MX)),
    cert_case("host-trailing-dot", ["STS-CERT-18"], leaf, MX + ".", ok(MX)),
    cert_case(
        "host-u-label",
        ["STS-CERT-07"],
        under("idn", san=["XN--MX-LKA.example"]),
        "møx.example",
        ok("xn--mx-lka.example"),
    ),
    cert_case(
        "second-san-matches",
        ["STS-CERT-03", "STS-CERT-11"],
        under("multi", san=["mail.example.org", MX]),
        MX,
        ok(MX),
    ),
    cert_case("wildcard-one-label", ["STS-CERT-09"], under("w", san=["*.example.com"]), MX, ok(MX)),
    cert_case(
        "wildcard-not-apex",
        ["STS-CERT-09"],
        under("w", san=["*.example.com"]),
        "example.com",
        MISMATCH,
    ),
    cert_case(
        "wildcard-not-two-labels",
        ["STS-CERT-09"],
        under("w", san=["*.example.com"]),
        "a.mx1.example.com",
        MISMATCH,
    ),
    cert_case(
        "wildcard-partial-prefix", ["STS-CERT-08"], under("w", san=["m*.example.com"]), MX, MISMATCH
    ),
    cert_case(
        "wildcard-partial-suffix",
        ["STS-CERT-08"],
        under("w", san=["*x1.example.com"]),
        MX,
        MISMATCH,
    ),
    cert_case(
        "wildcard-not-leftmost", ["STS-CERT-08"], under("w", san=["mx1.*.com"]), MX, MISMATCH
    ),
    cert_case("wildcard-double", ["STS-CERT-08"], under("w", san=["*.*.com"]), MX, MISMATCH),
    cert_case(
        "san-empty-label-ignored",
        ["STS-CERT-18"],
        under("e", san=["mx1..example.com"]),
        MX,
        MISMATCH,
    ),
    cert_case("san-other-host", ["STS-CERT-03"], leaf, "mx2.example.com", MISMATCH),
    cert_case(
        "cn-only-never-used",
        ["STS-CERT-04"],
        under(MX, san=()),
        MX,
        fail("certificate-host-mismatch", "no-dns-id"),
    ),
    cert_case(
        "cn-matches-san-does-not",
        ["STS-CERT-04"],
        under(MX, san=["other.example"]),
        MX,
        MISMATCH,
    ),
    cert_case(
        "uri-id-ignored",
        ["STS-CERT-05"],
        under(MX, san=[x509.UniformResourceIdentifier("smtp://mx1.example.com")]),
        MX,
        MISMATCH,
    ),
    cert_case(
        "ip-san-ignored",
        ["STS-CERT-05"],
        under(MX, san=[x509.IPAddress(ipaddress.ip_address("192.0.2.25"))]),
        MX,
        MISMATCH,
    ),
    cert_case(
        "policy-host-wildcard",
        ["STS-CERT-17"],
        under("w", san=["*.example.com"]),
        "mta-sts.example.com",
        ok("mta-sts.example.com"),
    ),
    cert_case(
        "policy-host-other-domain",
        ["STS-CERT-17"],
        under("w", san=["*.example.com"]),
        "mta-sts.example.net",
        MISMATCH,
    ),
    cert_case(
        "expired-leaf",
        ["STS-CERT-01", "STS-CERT-16"],
        under(MX, not_before=D2001, not_after=D2002),
        MX,
        fail("certificate-expired", "expired"),
    ),
    cert_case(
        "not-yet-valid-leaf",
        ["STS-CERT-01", "STS-CERT-16"],
        under(MX, not_before=D2030, not_after=D2031),
        MX,
        fail("certificate-expired", "not-yet-valid"),
        note="CONFORMANCE 4.4: certificate-expired with reason not-yet-valid, never 'expired'",
    ),
    cert_case(
        "leaf-valid-before-expiry",
        ["STS-CERT-01"],
        under(MX, not_before=D2001, not_after=D2002),
        MX,
        ok(MX),
        now="2001-06-01T00:00:00Z",
    ),
    cert_case(
        "now-with-offset",
        ["STS-CERT-01"],
        under(MX, not_before=datetime(2026, 1, 1, 12, tzinfo=UTC)),
        MX,
        fail("certificate-expired", "not-yet-valid"),
        now="2026-01-01T13:00:00+02:00",
        note="13:00+02:00 is 11:00Z, before notBefore 12:00Z",
    ),
    cert_case(
        "expired-and-mismatch",
        ["STS-CERT-01", "STS-CERT-16"],
        under("other.example", not_before=D2001, not_after=D2002),
        MX,
        fail("certificate-expired", "expired"),
        note="dates are checked before names",
    ),
    cert_case(
        "expired-intermediate",
        ["STS-CERT-01", "STS-CERT-02"],
        old_inter_leaf,
        MX,
        fail("certificate-expired", "expired"),
        rest=(old_inter,),
    ),
    cert_case(
        "not-yet-valid-intermediate",
        ["STS-CERT-01", "STS-CERT-02"],
        young_inter_leaf,
        MX,
        fail("certificate-expired", "not-yet-valid"),
        rest=(young_inter,),
    ),
    cert_case(
        "expired-root",
        ["STS-CERT-01", "STS-CERT-02"],
        old_root_leaf,
        MX,
        fail("certificate-expired", "expired"),
        rest=(),
        trust=(old_root,),
    ),
    cert_case(
        "untrusted-root",
        ["STS-CERT-02", "STS-CERT-16"],
        other_leaf,
        MX,
        fail("certificate-not-trusted", "unknown-ca"),
        rest=(other_inter,),
    ),
    cert_case(
        "untrusted-root-sent",
        ["STS-CERT-02"],
        other_leaf,
        MX,
        {"ok": False, "result_type": "certificate-not-trusted"},
        rest=(other_inter, other_root),
        note="cryptography 45-50 report 'exceeds max depth' here; the reason code is not pinned",
    ),
    cert_case(
        "self-signed-leaf",
        ["STS-CERT-02"],
        self_signed,
        MX,
        fail("certificate-not-trusted", "unknown-ca"),
        rest=(),
    ),
    cert_case(
        "missing-intermediate",
        ["STS-CERT-02"],
        leaf,
        MX,
        fail("certificate-not-trusted", "unknown-ca"),
        rest=(),
    ),
    cert_case("root-sent-too", ["STS-CERT-02"], leaf, MX, ok(MX), rest=(inter, root)),
    cert_case("unrelated-extra-cert", ["STS-CERT-02"], leaf, MX, ok(MX), rest=(other_inter, inter)),
    cert_case(
        "bad-signature",
        ["STS-CERT-02", "STS-CERT-16"],
        forged,
        MX,
        fail("certificate-not-trusted", "bad-signature"),
    ),
    cert_case(
        "name-constraints-violated",
        ["STS-CERT-02", "STS-CERT-16"],
        nc_leaf,
        MX,
        fail("certificate-not-trusted", "name-constraints"),
        rest=(nc_inter,),
    ),
    cert_case(
        "path-length-violated",
        ["STS-CERT-02", "STS-CERT-16"],
        pl_leaf,
        MX,
        fail("certificate-not-trusted", "path-length"),
        rest=(pl_sub, pl0_inter),
    ),
    cert_case(
        "intermediate-not-ca",
        ["STS-CERT-02", "STS-CERT-16"],
        not_ca_leaf,
        MX,
        fail("certificate-not-trusted", "not-a-ca"),
        rest=(not_ca,),
    ),
    cert_case(
        "client-auth-eku",
        ["STS-CERT-16"],
        under(MX, eku=[CLIENT_AUTH]),
        MX,
        fail("validation-failure", "bad-eku"),
    ),
    cert_case("no-eku", ["STS-CERT-02"], under(MX, eku=None), MX, ok(MX)),
    cert_case(
        "weak-rsa-intermediate",
        ["STS-CERT-16"],
        weak_leaf,
        MX,
        fail("validation-failure", "weak-key"),
        rest=(weak_inter,),
    ),
    cert_case(
        "garbage-certificate",
        ["STS-CERT-16"],
        None,
        MX,
        fail("validation-failure", "bad-certificate"),
        raw_chain=[GARBAGE],
    ),
    cert_case(
        "empty-chain",
        ["STS-CERT-16"],
        None,
        MX,
        fail("validation-failure", "no-certificate"),
        raw_chain=[],
    ),
]

# DANE.
ta_root = issue("DANE Root CA", ca=True)
ta_inter = issue("DANE Intermediate CA", ta_root, ca=True)
ta_leaf = issue(MX, ta_inter)
stray = issue("Stray CA", ca=True)


def ta_under(cn: str | None, **options: Any) -> Issued:
    return issue(cn, ta_inter, **options)


def dane_case(
    cid: str,
    conformance: list[str],
    records: list[str],
    certs: list[Issued],
    expect: dict[str, Any],
    *,
    names: list[str] | None = None,
    now: str = NOW,
    options: dict[str, Any] | None = None,
    raw_chain: list[str] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": cid,
        "input": {
            "records": records,
            "chain": raw_chain if raw_chain is not None else chain(*certs),
            "names": names if names is not None else [MX],
            "now": now,
        },
        "expect": expect,
        "conformance": conformance,
    }
    if options:
        case["options"] = options
    if note:
        case["note"] = note
    return case


def authenticated(matched: str, identity: str | None = None) -> dict[str, Any]:
    return {
        "ok": True,
        "authenticated": True,
        "usable": True,
        "result_type": None,
        "reason": None,
        "matched": matched,
        "identity": identity,
    }


def dane_fail(result_type: str, reason: str) -> dict[str, Any]:
    return {
        "ok": False,
        "authenticated": False,
        "usable": True,
        "result_type": result_type,
        "reason": reason,
        "matched": None,
    }


NO_MATCH = dane_fail("validation-failure", "dane-no-match")
TA_MISMATCH = dane_fail("certificate-host-mismatch", "no-matching-dns-id")
SHA256_0 = "00" * 32


def record_case(
    cid: str, conformance: list[str], text: str, usable: bool | None, canonical: str | None = None
) -> dict[str, Any]:
    case: dict[str, Any] = {"id": cid, "input": {"record": text}, "conformance": conformance}
    if usable is None:
        case["error"] = "TLSASyntaxError"
    else:
        case["expect"] = {"usable": usable, "to_text": canonical or text}
    return case


EE = tlsa(3, 1, 1, ta_leaf)
TA = tlsa(2, 0, 1, ta_inter)
expired_ss = issue(MX, not_before=D2001, not_after=D2002)
young_ss = issue(MX, not_before=D2030, not_after=D2031)
other_ss = issue("other.example")
cn_only = ta_under(MX, san=())
cn_wild = ta_under("*.example.com", san=())
cn_dnsid = ta_under(MX, san=["other.example"])
ta_old_leaf = ta_under(MX, not_before=D2001, not_after=D2002)
ta_young_leaf = ta_under(MX, not_before=D2030, not_after=D2031)
ta_client = ta_under(MX, eku=[CLIENT_AUTH])
ta_wild = ta_under("w", san=["*.example.com"])
ta_nexthop = ta_under("n", san=["example.com"])
ta_old_inter = issue("Old DANE Intermediate", ta_root, ca=True, not_before=D2001, not_after=D2002)
ta_old_inter_leaf = issue(MX, ta_old_inter)
ta_nc = issue(
    "Constrained DANE Anchor",
    ca=True,
    extra=[
        (
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("other.example")], excluded_subtrees=None
            ),
            True,
        )
    ],
)
ta_nc_leaf = issue(MX, ta_nc)
unusable_256 = "3 1 1 " + "00" * 31

DANE_CASES = [
    record_case("record-dane-ee-spki-sha256", ["DANE-34"], "3 1 1 " + SHA256_0, True),
    record_case("record-dane-ta-cert-sha512", ["DANE-34"], "2 0 2 " + "11" * 64, True),
    record_case("record-pkix-ta-unusable", ["DANE-32"], "0 0 1 " + SHA256_0, False),
    record_case("record-pkix-ee-unusable", ["DANE-32"], "1 1 1 " + SHA256_0, False),
    record_case("record-private-usage-unusable", ["DANE-33"], "255 1 1 " + SHA256_0, False),
    record_case("record-unknown-selector", ["DANE-33"], "3 2 1 " + SHA256_0, False),
    record_case("record-unknown-mtype", ["DANE-33"], "3 1 7 " + SHA256_0, False),
    record_case("record-short-digest", ["DANE-33"], unusable_256, False),
    record_case("record-sha512-wrong-length", ["DANE-33"], "3 1 2 " + SHA256_0, False),
    record_case(
        "record-full-cert-garbage", ["DANE-33"], "3 0 0 3003020100", False, "3 0 0 3003020100"
    ),
    record_case("record-full-spki", ["DANE-33", "DANE-34"], tlsa(3, 1, 0, ta_leaf), True),
    record_case(
        "record-acronyms",
        ["DANE-34"],
        "DANE-EE SPKI SHA2-256 " + SHA256_0,
        True,
        "3 1 1 " + SHA256_0,
    ),
    record_case(
        "record-hex-split-lower",
        ["DANE-34"],
        "3 1 1 " + "ab" * 16 + " " + "cd" * 16,
        True,
        "3 1 1 " + "AB" * 16 + "CD" * 16,
    ),
    record_case("record-bad-hex", ["DANE-33"], "3 1 1 zz", None),
    record_case("record-too-few-fields", ["DANE-33"], "3 1", None),
    record_case("record-usage-too-big", ["DANE-33"], "256 1 1 00", None),
    dane_case("ee-spki-sha256", ["DANE-37"], [EE], [ta_leaf, ta_inter], authenticated(EE)),
    dane_case(
        "ee-cert-sha256",
        ["DANE-37"],
        [tlsa(3, 0, 1, ta_leaf)],
        [ta_leaf, ta_inter],
        authenticated(tlsa(3, 0, 1, ta_leaf)),
    ),
    dane_case(
        "ee-spki-sha512",
        ["DANE-37"],
        [tlsa(3, 1, 2, ta_leaf)],
        [ta_leaf],
        authenticated(tlsa(3, 1, 2, ta_leaf)),
    ),
    dane_case(
        "ee-cert-full",
        ["DANE-37"],
        [tlsa(3, 0, 0, ta_leaf)],
        [ta_leaf],
        authenticated(tlsa(3, 0, 0, ta_leaf)),
    ),
    dane_case(
        "ee-no-name-check",
        ["DANE-38"],
        [tlsa(3, 1, 1, other_ss)],
        [other_ss],
        authenticated(tlsa(3, 1, 1, other_ss)),
    ),
    dane_case(
        "ee-expired-leaf",
        ["DANE-39"],
        [tlsa(3, 0, 1, expired_ss)],
        [expired_ss],
        authenticated(tlsa(3, 0, 1, expired_ss)),
    ),
    dane_case(
        "ee-not-yet-valid-leaf",
        ["DANE-39"],
        [tlsa(3, 1, 1, young_ss)],
        [young_ss],
        authenticated(tlsa(3, 1, 1, young_ss)),
    ),
    dane_case(
        "ee-no-match",
        ["DANE-46", "DANE-55", "AMB-25"],
        [tlsa(3, 1, 1, other_ss)],
        [ta_leaf, ta_inter],
        NO_MATCH,
    ),
    dane_case(
        "ee-second-record-matches",
        ["DANE-36"],
        [tlsa(3, 1, 1, other_ss), EE],
        [ta_leaf, ta_inter],
        authenticated(EE),
    ),
    dane_case(
        "ee-digest-agility",
        ["DANE-35"],
        [EE, tlsa(3, 1, 2, other_ss), tlsa(3, 1, 0, other_ss)],
        [ta_leaf, ta_inter],
        NO_MATCH,
        note="only the strongest digest (SHA2-512) and Full(0) of 3 1 x count",
    ),
    dane_case(
        "all-unusable",
        ["DANE-13", "DANE-32", "DANE-55"],
        [tlsa(1, 1, 1, ta_leaf), unusable_256],
        [ta_leaf, ta_inter],
        {
            "ok": True,
            "authenticated": False,
            "usable": False,
            "result_type": "tlsa-invalid",
            "reason": "all-unusable-records",
            "matched": None,
        },
        note="TLS is mandatory but unauthenticated (RFC 7672 §2.2)",
    ),
    dane_case(
        "unusable-and-usable",
        ["DANE-32", "DANE-36"],
        [tlsa(0, 0, 1, ta_root), EE],
        [ta_leaf, ta_inter],
        authenticated(EE),
    ),
    dane_case(
        "ee-bad-chain",
        ["DANE-46"],
        [EE],
        [],
        dane_fail("validation-failure", "bad-certificate"),
        raw_chain=[GARBAGE],
    ),
    dane_case(
        "ta-intermediate-cert-sha256", ["DANE-40"], [TA], [ta_leaf, ta_inter], authenticated(TA, MX)
    ),
    dane_case(
        "ta-intermediate-spki-sha256",
        ["DANE-40"],
        [tlsa(2, 1, 1, ta_inter)],
        [ta_leaf, ta_inter],
        authenticated(tlsa(2, 1, 1, ta_inter), MX),
    ),
    dane_case(
        "ta-root-in-chain",
        ["DANE-40"],
        [tlsa(2, 0, 2, ta_root)],
        [ta_leaf, ta_inter, ta_root],
        authenticated(tlsa(2, 0, 2, ta_root), MX),
    ),
    dane_case(
        "ta-full-cert-not-sent",
        ["DANE-41"],
        [tlsa(2, 0, 0, ta_root)],
        [ta_leaf, ta_inter],
        authenticated(tlsa(2, 0, 0, ta_root), MX),
    ),
    dane_case(
        "ta-full-key-signs-top",
        ["DANE-42"],
        [tlsa(2, 1, 0, ta_root)],
        [ta_leaf, ta_inter],
        authenticated(tlsa(2, 1, 0, ta_root), MX),
    ),
    dane_case(
        "ta-full-key-other-signer",
        ["DANE-42"],
        [tlsa(2, 1, 0, stray)],
        [ta_leaf, ta_inter],
        NO_MATCH,
    ),
    dane_case(
        "ta-digest-of-absent-anchor",
        ["DANE-40"],
        [tlsa(2, 0, 1, ta_root)],
        [ta_leaf, ta_inter],
        NO_MATCH,
    ),
    dane_case(
        "ta-matches-leaf-only",
        ["DANE-40"],
        [tlsa(2, 0, 1, ta_leaf)],
        [ta_leaf, ta_inter],
        NO_MATCH,
        note="a DANE-TA record is matched against certificates above the leaf",
    ),
    dane_case(
        "ta-stray-cert-in-chain",
        ["DANE-40"],
        [tlsa(2, 0, 1, stray)],
        [ta_leaf, ta_inter, stray],
        NO_MATCH,
    ),
    dane_case(
        "ta-next-hop-reference",
        ["DANE-31", "DANE-44"],
        [TA],
        [ta_nexthop, ta_inter],
        authenticated(TA, "example.com"),
        names=["mx10.example.com", "example.com"],
    ),
    dane_case(
        "ta-reference-u-label-dot",
        ["DANE-31", "DANE-44"],
        [TA],
        [ta_leaf, ta_inter],
        authenticated(TA, MX),
        names=["MX1.example.com."],
    ),
    dane_case(
        "ta-wildcard-one-label", ["DANE-45"], [TA], [ta_wild, ta_inter], authenticated(TA, MX)
    ),
    dane_case(
        "ta-wildcard-two-labels",
        ["DANE-45"],
        [TA],
        [ta_wild, ta_inter],
        TA_MISMATCH,
        names=["a.mx1.example.com"],
    ),
    dane_case(
        "ta-name-mismatch",
        ["DANE-44", "DANE-55"],
        [TA],
        [ta_leaf, ta_inter],
        TA_MISMATCH,
        names=["mx2.example.com", "example.com"],
    ),
    dane_case(
        "ta-expired-leaf",
        ["DANE-40", "DANE-55"],
        [TA],
        [ta_old_leaf, ta_inter],
        dane_fail("certificate-expired", "expired"),
    ),
    dane_case(
        "ta-not-yet-valid-leaf",
        ["DANE-40", "DANE-55"],
        [TA],
        [ta_young_leaf, ta_inter],
        dane_fail("certificate-expired", "not-yet-valid"),
    ),
    dane_case(
        "ta-expired-intermediate",
        ["DANE-40", "DANE-55"],
        [tlsa(2, 0, 1, ta_root)],
        [ta_old_inter_leaf, ta_old_inter, ta_root],
        dane_fail("certificate-expired", "expired"),
    ),
    dane_case(
        "ta-client-auth-leaf",
        ["DANE-40"],
        [TA],
        [ta_client, ta_inter],
        authenticated(TA, MX),
        note="RFC 7672 has no EKU requirement",
    ),
    dane_case(
        "ta-anchor-name-constraints",
        ["DANE-43"],
        [tlsa(2, 0, 1, ta_nc)],
        [ta_nc_leaf, ta_nc],
        NO_MATCH,
        note="the anchor's name constraints exclude the leaf's name",
    ),
    dane_case(
        "ta-cn-id-fallback",
        ["DANE-44", "AMB-20"],
        [TA],
        [cn_only, ta_inter],
        authenticated(TA, MX),
    ),
    dane_case(
        "ta-cn-id-wildcard",
        ["DANE-45", "AMB-20"],
        [TA],
        [cn_wild, ta_inter],
        authenticated(TA, MX),
    ),
    dane_case(
        "ta-cn-id-fallback-off",
        ["AMB-20"],
        [TA],
        [cn_only, ta_inter],
        dane_fail("certificate-host-mismatch", "no-dns-id"),
        options={"dane_ta_cn_fallback": False},
    ),
    dane_case(
        "ta-cn-ignored-with-dns-id",
        ["DANE-44", "AMB-20"],
        [TA],
        [cn_dnsid, ta_inter],
        TA_MISMATCH,
    ),
    dane_case(
        "ee-and-ta-records",
        ["DANE-36", "DANE-37", "DANE-40"],
        [tlsa(3, 1, 1, other_ss), TA],
        [ta_leaf, ta_inter],
        authenticated(TA, MX),
    ),
]


def document(group: str, spec: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "group": group, "spec": spec, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    """
    Check every case against this implementation, then write both files.

    Args:
        argv: ``[--out DIR]``; the default is ``smtpsts/vectors``.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=ROOT / "smtpsts" / "vectors")
    out = parser.parse_args(argv).out
    docs = [
        document("cert-check", "RFC 8461 §4.2, RFC 9525 §6, RFC 8460 §4.3", CERT_CASES),
        document("dane-match", "RFC 7672 §2.2, §3; RFC 7671 §5, §9; RFC 8460 §4.3", DANE_CASES),
    ]
    failures = 0
    for doc in docs:
        for case in doc["cases"]:
            result = check_case(doc["group"], case)
            if not result.ok:
                failures += 1
                print(f"{doc['group']}/{case['id']}: {result.message}", file=sys.stderr)
    if failures:
        print(
            f"{failures} cases disagree with this implementation; nothing written", file=sys.stderr
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        path = out / f"{doc['group']}.json"
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}: {len(doc['cases'])} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
