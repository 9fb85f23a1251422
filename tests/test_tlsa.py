"""
Tests for smtpsts.tlsa: the RFC 7672 §2.2.2-§2.2.3 TLSA procedure as a pure conversation (issue 11).

Each test answers the procedure's queries from a table of
:class:`DNSSECAnswer` values and checks the queries asked and the result;
the same procedure against a real validating resolver is in
tests/test_io_dnssec.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpsts._vocab import ResultType
from smtpsts.dane import TLSARecord
from smtpsts.io._drive import drive
from smtpsts.tlsa import DNSSECAnswer, DNSStatus, Query, TLSALookup, tlsa_procedure

RECORD = TLSARecord(3, 1, 1, b"\x01" * 32)
S, INS, NF, BOGUS, TEMP = (
    DNSStatus.SECURE,
    DNSStatus.INSECURE,
    DNSStatus.NOT_FOUND,
    DNSStatus.BOGUS,
    DNSStatus.TEMPFAIL,
)


def answer(qname: str, rdtype: str, status: DNSStatus, **kw: Any) -> DNSSECAnswer[Any]:
    """One answer; SECURE and INSECURE address answers carry one address."""
    if status in (S, INS) and "records" not in kw:
        kw["records"] = (RECORD,) if rdtype == "TLSA" else ("192.0.2.1",)
    kw.setdefault("secure", status is S)
    return DNSSECAnswer(status, qname, rdtype, **kw)


def run(host: str, *answers: DNSSECAnswer[Any], **options: Any) -> tuple[TLSALookup, list[Query]]:
    """Run the procedure, answering its queries in order; return the result and the queries."""
    table = list(answers)
    asked: list[Query] = []

    def lookup(query: Query) -> DNSSECAnswer[Any]:
        asked.append(query)
        reply = table.pop(0)
        assert (reply.qname, reply.rdtype) == (query.qname, query.rdtype)
        return reply

    result = drive(tlsa_procedure(host, **options), lookup)
    assert [] == table
    return result, asked


def test_address_literal() -> None:
    """DANE-15: an address literal (also in brackets) is INSECURE without any query."""
    result, asked = run("[192.0.2.25]")
    assert (DNSStatus.INSECURE, "192.0.2.25", []) == (result.status, result.host, asked)


def test_secure_host() -> None:
    """DANE-22, DANE-26, DANE-31: A first, then _25._tcp TLSA; base domain first among the names."""
    result, asked = run(
        "MX.Example.",
        answer("mx.example", "A", S),
        answer("_25._tcp.mx.example", "TLSA", S),
        next_hop_names=["Example"],
    )
    assert [Query("mx.example", "A"), Query("_25._tcp.mx.example", "TLSA")] == asked
    assert (S, (RECORD,), "mx.example", ("mx.example", "example"), True, None) == (
        result.status,
        result.records,
        result.base_domain,
        result.names,
        result.secure,
        result.result_type,
    )
    assert ("mx.example",) == result.candidates
    assert 2 == len(result.answers)


def test_port_label() -> None:
    """DANE-26: the TLSA owner name carries the destination port."""
    result, _asked = run(
        "mx.example",
        answer("mx.example", "A", S),
        answer("_2525._tcp.mx.example", "TLSA", S),
        port=2525,
    )
    assert (S, 2525) == (result.status, result.port)


def test_aaaa_after_nodata() -> None:
    """DANE-22: A NODATA is followed by AAAA; the AAAA answer decides."""
    result, asked = run(
        "mx.example",
        answer("mx.example", "A", NF, secure=True),
        answer("mx.example", "AAAA", S),
        answer("_25._tcp.mx.example", "TLSA", S),
    )
    assert ["A", "AAAA", "TLSA"] == [q.rdtype for q in asked]
    assert S == result.status


@pytest.mark.parametrize("secure", [True, False])
def test_no_address(secure: bool) -> None:
    """DANE-24: NXDOMAIN (no AAAA query after it) means unreachable: NOT_FOUND, no TLSA."""
    result, asked = run("mx.example", answer("mx.example", "A", NF, nxdomain=True, secure=secure))
    assert (NF, secure, 1) == (result.status, result.secure, len(asked))


@pytest.mark.parametrize(
    ("status", "result_type"), [(BOGUS, ResultType.DNSSEC_INVALID), (TEMP, None)]
)
def test_address_failure(status: DNSStatus, result_type: ResultType | None) -> None:
    """DANE-08, DANE-55: a failed address lookup fails the lookup; bogus is dnssec-invalid."""
    result, _ = run("mx.example", answer("mx.example", "A", status, detail="SERVFAIL"))
    assert (status, result_type) == (result.status, result.result_type)
    assert "address lookup of mx.example failed: SERVFAIL" == result.detail


def test_insecure_host() -> None:
    """DANE-23: an insecure address answer without CNAME ends it: no TLSA query."""
    result, asked = run("mx.example", answer("mx.example", "A", INS))
    assert (INS, ["A"]) == (result.status, [q.rdtype for q in asked])


def test_secure_cname_expanded_then_original() -> None:
    """DANE-25, DANE-27: a secure chain: the expanded name first, then the original name."""
    result, _asked = run(
        "alias.example",
        answer("alias.example", "A", S, cnames=("alias.example",), canonical_name="host.example"),
        answer("_25._tcp.host.example", "TLSA", NF, secure=True),
        answer("_25._tcp.alias.example", "TLSA", S),
    )
    assert ("host.example", "alias.example") == result.candidates
    assert (S, "alias.example") == (result.status, result.base_domain)


def test_candidates_deduplicated() -> None:
    """DANE-25: a chain that leads back to the name itself gives one candidate."""
    result, _asked = run(
        "a.example",
        answer("a.example", "A", S, cnames=("a.example",), canonical_name="a.example"),
        answer("_25._tcp.a.example", "TLSA", S),
    )
    assert ("a.example",) == result.candidates


@pytest.mark.parametrize(
    ("initial", "status", "candidates"),
    [(BOGUS, BOGUS, ()), (INS, INS, ()), (S, S, ("alias.example",))],
)
def test_insecure_chain(initial: DNSStatus, status: DNSStatus, candidates: tuple[str, ...]) -> None:
    """DANE-09, DANE-10, DANE-25: an insecure chain asks about the initial CNAME; only a secure one leaves the original name."""
    answers = [
        answer("alias.example", "A", INS, cnames=("alias.example",), canonical_name="t.example"),
        answer("alias.example", "CNAME", initial, records=("t.example",)),
    ]
    if initial is S:
        answers.append(answer("_25._tcp.alias.example", "TLSA", S))
    result, _ = run("alias.example", *answers)
    assert (status, candidates) == (result.status, result.candidates)


def test_tlsa_failure() -> None:
    """DANE-08: a failed TLSA query makes the server unusable."""
    result, _ = run(
        "mx.example",
        answer("mx.example", "A", S),
        answer("_25._tcp.mx.example", "TLSA", TEMP, detail="timeout"),
    )
    assert (TEMP, ("mx.example",)) == (result.status, result.candidates)
    assert "TLSA lookup of _25._tcp.mx.example failed: timeout" == result.detail


@pytest.mark.parametrize(("tlsa", "status"), [(NF, NF), (INS, INS)])
def test_no_secure_tlsa(tlsa: DNSStatus, status: DNSStatus) -> None:
    """DANE-27, DANE-14: no secure TLSA RRset: NOT_FOUND when every denial validated, else INSECURE."""
    result, _ = run(
        "mx.example",
        answer("mx.example", "A", S),
        answer("_25._tcp.mx.example", "TLSA", tlsa, secure=tlsa is NF),
    )
    assert (status, status is NF) == (result.status, result.secure)
    assert "no secure TLSA records for mx.example (tried mx.example)" == result.detail


@pytest.mark.parametrize(
    ("status", "failed"), [(S, False), (INS, False), (NF, False), (BOGUS, True), (TEMP, True)]
)
def test_answer_failed(status: DNSStatus, failed: bool) -> None:
    """DANE-06: only BOGUS and TEMPFAIL answers are failures (delivery must wait)."""
    assert failed == DNSSECAnswer(status, "x.example", "A").failed
