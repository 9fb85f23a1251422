"""
DNSSEC-aware lookups against a real validating resolver (Unbound) and NSD.

The zones are signed in the test (tests/dnslab.py). Every lookup runs through
both drivers, sync and asyncio (the ``lookup`` fixture).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.resolver
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from certfactory import make
from dnslab import DNSLab, Zone
from smtpsts import DomainNameError
from smtpsts._vocab import ResultType
from smtpsts.dane import TLSARecord, match_tlsa
from smtpsts.io._resolver import is_loopback, make_async_resolver, make_resolver, parse_nameserver
from smtpsts.io.dnssec import (
    AsyncDNSSECResolver,
    DNSSECResolver,
    DNSStatus,
    MXRecord,
    Query,
    TLSALookup,
    convert_rdata,
    interpret,
    tlsa_procedure,
)
from smtpsts.io.starttls import aprobe_starttls, probe_starttls
from tlsservers import SMTPServer, server_context

# Certificates the TLSA records point at (shared with the DANE tests below).
ROOT = make("DANE Test Root", ca=True)
INTER = make("DANE Test Intermediate", issuer=ROOT, ca=True)
LEAF = make("mx3.secure.test", issuer=INTER)
OTHER = make("someone-else.test", issuer=INTER)


def spki_sha256(cert: Any) -> str:
    """Hex SHA2-256 of a certificate's SubjectPublicKeyInfo (selector 1, mtype 1)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(cert: Any) -> str:
    """Hex SHA2-256 of a certificate's DER (selector 0, mtype 1)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


EE = spki_sha256(LEAF.cert)
EE_WRONG = spki_sha256(OTHER.cert)
TA = cert_sha256(INTER.cert)
NOW = datetime.now(UTC)
CHAIN = "\n".join(f"c{i} CNAME c{i + 1}" for i in range(10)) + "\nc10 A 127.0.0.1\n"

SECURE = f"""\
@ MX 10 mx1
@ MX 20 mx3
mx1 A 127.0.0.1
_25._tcp.mx1 TLSA 3 1 1 {EE}
_2525._tcp.mx1 TLSA 3 0 1 {cert_sha256(LEAF.cert)}
mx2 A 127.0.0.1
_25._tcp.mx2 TLSA 3 1 1 {EE_WRONG}
mx3 A 127.0.0.1
_25._tcp.mx3 TLSA 2 0 1 {TA}
mx4 A 127.0.0.1
_25._tcp.mx4 TLSA 2 0 1 {TA}
mx5 A 127.0.0.1
_25._tcp.mx5 TLSA 1 1 1 {EE}
_25._tcp.mx5 TLSA 0 0 1 {TA}
mx6 A 127.0.0.1
v6only AAAA ::1
_25._tcp.v6only TLSA 3 1 1 {EE}
alias CNAME host
host A 127.0.0.1
_25._tcp.host TLSA 3 1 1 {EE}
alias2 CNAME host2
host2 A 127.0.0.1
_25._tcp.alias2 TLSA 3 1 1 {EE}
out CNAME mx.insecure.test.
_25._tcp.out TLSA 3 1 1 {EE}
shared A 127.0.0.1
_25._tcp.shared CNAME tlsa201._dane
tlsa201._dane TLSA 2 0 1 {TA}
mxb A 127.0.0.1
nexthop CNAME @
{CHAIN}"""

ZONES = [
    Zone("secure.test", SECURE),
    Zone("_tcp.mxb.secure.test", f"_25 TLSA 3 1 1 {EE}\n", expired=True),
    Zone(
        "insecure.test",
        f"@ MX 10 mx\nmx A 127.0.0.1\n_25._tcp.mx TLSA 3 1 1 {EE}\nback CNAME mx1.secure.test.\n",
        signed=False,
    ),
    Zone("bogus.test", f"mx A 127.0.0.1\n_25._tcp.mx TLSA 3 1 1 {EE}\n", expired=True),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DNSLab]:
    """NSD + Unbound with the zones above, for the whole module."""
    with DNSLab(ZONES, tmp_path_factory.mktemp("dnslab")) as running:
        yield running


Lookup = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def resolver(request: pytest.FixtureRequest, lab: DNSLab) -> Callable[..., Any]:
    """A caller running one resolver method through the sync or the asyncio driver."""

    def call(method: str, *args: Any, trust_ad: bool | None = None, **kw: Any) -> Any:
        if request.param == "sync":
            r = DNSSECResolver([lab.nameserver], timeout=2, lifetime=4, trust_ad=trust_ad)
            return getattr(r, method)(*args, **kw)
        ar = AsyncDNSSECResolver([lab.nameserver], timeout=2, lifetime=4, trust_ad=trust_ad)
        return asyncio.run(getattr(ar, method)(*args, **kw))

    return call


@pytest.mark.services
class TestLab:
    def test_lab_starts_fast_and_validates(self, lab: DNSLab):
        """The NSD + Unbound lab answers within a few seconds, with AD for signed data."""
        assert lab.startup < 10
        reply = make_resolver([lab.nameserver], dnssec=True).resolve("mx1.secure.test.", "A")
        assert bool(reply.response.flags & dns.flags.AD)


@pytest.mark.services
class TestTLSALookup:
    def test_secure_tlsa(self, resolver):
        """DANE-22, DANE-26, DANE-27, DANE-31: address first, then TLSA; base first."""
        result = resolver("lookup_tlsa", "MX1.secure.test.", next_hop_names=["secure.test"])
        assert DNSStatus.SECURE == result.status
        assert (TLSARecord(3, 1, 1, bytes.fromhex(EE)),) == result.records
        assert "mx1.secure.test" == result.base_domain
        assert ("mx1.secure.test", "secure.test") == result.names
        assert ("A", "TLSA") == tuple(a.rdtype for a in result.answers)
        assert "_25._tcp.mx1.secure.test" == result.answers[-1].qname
        assert result.result_type is None

    def test_port_in_owner_name(self, resolver):
        """DANE-26: the TLSA owner name uses the destination port (_2525._tcp)."""
        result = resolver("lookup_tlsa", "mx1.secure.test", port=2525)
        assert DNSStatus.SECURE == result.status
        assert (TLSARecord(3, 0, 1, bytes.fromhex(cert_sha256(LEAF.cert))),) == result.records
        assert 2525 == result.port

    def test_insecure_zone_no_tlsa_query(self, resolver):
        """DANE-23, DANE-14, DANE-04: an insecure address answer ends it: no TLSA query, no DANE."""
        result = resolver("lookup_tlsa", "mx.insecure.test")
        assert DNSStatus.INSECURE == result.status
        assert () == result.records
        assert ("A",) == tuple(a.rdtype for a in result.answers)

    def test_bogus_zone(self, resolver):
        """DANE-03, DANE-54, DANE-55: expired signatures: bogus, dnssec-invalid, EDE."""
        result = resolver("lookup_tlsa", "mx.bogus.test")
        assert DNSStatus.BOGUS == result.status
        assert ResultType.DNSSEC_INVALID == result.result_type
        assert "EDE 7 (Signature Expired)" in result.detail
        assert "SERVFAIL" in result.detail

    def test_bogus_tlsa_behind_secure_address(self, resolver):
        """DANE-08, DANE-06: bogus TLSA fails the lookup though the address is secure."""
        result = resolver("lookup_tlsa", "mxb.secure.test")
        assert DNSStatus.BOGUS == result.status
        assert DNSStatus.SECURE == result.answers[0].status
        assert ResultType.DNSSEC_INVALID == result.result_type
        assert "EDE 7 (Signature Expired)" in result.answers[-1].detail

    def test_tlsa_behind_secure_cname(self, resolver):
        """DANE-25, DANE-30, DANE-52: all-secure CNAME: the expanded name wins."""
        result = resolver("lookup_tlsa", "alias.secure.test", next_hop_names=["secure.test"])
        assert DNSStatus.SECURE == result.status
        assert ("host.secure.test", "alias.secure.test") == result.candidates
        assert "host.secure.test" == result.base_domain
        assert ("host.secure.test", "secure.test") == result.names
        assert ("alias.secure.test",) == result.answers[0].cnames

    def test_cname_falls_back_to_original_name(self, resolver):
        """DANE-25, DANE-27: no TLSA at the expanded name: the original name is the base domain."""
        result = resolver("lookup_tlsa", "alias2.secure.test")
        assert DNSStatus.SECURE == result.status
        assert "alias2.secure.test" == result.base_domain
        assert DNSStatus.NOT_FOUND == result.answers[1].status
        assert result.answers[1].secure

    def test_secure_cname_to_insecure_target(self, resolver):
        """DANE-10, DANE-25: secure CNAME to insecure target: only the original name."""
        result = resolver("lookup_tlsa", "out.secure.test")
        assert DNSStatus.SECURE == result.status
        assert ("out.secure.test",) == result.candidates
        assert ("A", "CNAME", "TLSA") == tuple(a.rdtype for a in result.answers)
        assert DNSStatus.INSECURE == result.answers[0].status

    def test_insecure_cname(self, resolver):
        """DANE-10, DANE-25: an insecure initial CNAME means no candidates: DANE does not apply."""
        result = resolver("lookup_tlsa", "back.insecure.test")
        assert DNSStatus.INSECURE == result.status
        assert () == result.candidates

    def test_cname_at_tlsa_owner_keeps_base_domain(self, resolver):
        """DANE-28: a CNAME at _25._tcp.<host> is followed; the base domain stays the host."""
        result = resolver("lookup_tlsa", "shared.secure.test")
        assert DNSStatus.SECURE == result.status
        assert "shared.secure.test" == result.base_domain
        assert (TLSARecord(2, 0, 1, bytes.fromhex(TA)),) == result.records
        assert ("_25._tcp.shared.secure.test",) == result.answers[-1].cnames

    def test_all_unusable_records_are_still_secure(self, resolver):
        """DANE-13, DANE-29, DANE-32: a secure RRset of only PKIX-TA/PKIX-EE records is SECURE."""
        result = resolver("lookup_tlsa", "mx5.secure.test")
        assert DNSStatus.SECURE == result.status
        assert {1, 0} == {r.usage for r in result.records}

    def test_secure_nodata(self, resolver):
        """DANE-05, DANE-27: a secure denial of TLSA is "no records", not an error."""
        result = resolver("lookup_tlsa", "mx6.secure.test")
        assert DNSStatus.NOT_FOUND == result.status
        assert result.secure
        assert result.result_type is None

    def test_no_address_records(self, resolver):
        """DANE-24: no address records: unreachable, no TLSA query."""
        result = resolver("lookup_tlsa", "nothere.secure.test")
        assert DNSStatus.NOT_FOUND == result.status
        assert result.answers[0].nxdomain
        assert ("A",) == tuple(a.rdtype for a in result.answers)

    def test_aaaa_only_host(self, resolver):
        """DANE-22: A has no data, AAAA is used as the address lookup."""
        result = resolver("lookup_tlsa", "v6only.secure.test")
        assert DNSStatus.SECURE == result.status
        assert ("A", "AAAA", "TLSA") == tuple(a.rdtype for a in result.answers)
        assert ("::1",) == result.answers[1].records

    def test_untrusted_resolver_is_insecure(self, resolver):
        """DANE-01, DANE-02: the AD bit of a resolver that is not trusted counts for nothing."""
        result = resolver("lookup_tlsa", "mx1.secure.test", trust_ad=False)
        assert DNSStatus.INSECURE == result.status

    def test_untrusted_resolver_servfail_is_tempfail(self, resolver):
        """DANE-02, DANE-06: SERVFAIL from an untrusted resolver is a failure, not a verdict."""
        result = resolver("lookup_tlsa", "mx.bogus.test", trust_ad=False)
        assert DNSStatus.TEMPFAIL == result.status
        assert result.result_type is None

    def test_cname_chain_limit(self, resolver):
        """DANE-11, DANE-09: a CNAME chain longer than 8 fails the lookup."""
        result = resolver("lookup_tlsa", "c0.secure.test")
        assert DNSStatus.TEMPFAIL == result.status
        assert "CNAME chain" in result.detail

    def test_address_literal_through_driver(self, resolver):
        """DANE-15: an address literal ends the lookup without a query, through either driver."""
        result = resolver("lookup_tlsa", "[127.0.0.1]")
        assert (DNSStatus.INSECURE, ()) == (result.status, result.answers)

    def test_bad_host_name(self, resolver):
        """DANE lookups take only valid host names."""
        with pytest.raises(DomainNameError):
            resolver("lookup_tlsa", "bad..name")


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    """A STARTTLS server presenting LEAF (mx3.secure.test) and INTER."""
    with SMTPServer(server_context(LEAF, INTER)) as server:
        yield server


@pytest.mark.services
class TestDANEEndToEnd:
    """Fetched TLSA records and a real server's chain, fed to smtpsts.dane.match_tlsa."""

    def _check(self, lab: DNSLab, server: SMTPServer, host: str, driver: str) -> Any:
        if driver == "sync":
            found = DNSSECResolver([lab.nameserver]).lookup_tlsa(host)
            probe = probe_starttls(
                host, server.port, connect_to="127.0.0.1", timeout=5, server_name=found.base_domain
            )
        else:

            async def both() -> tuple[TLSALookup, Any]:
                found = await AsyncDNSSECResolver([lab.nameserver]).lookup_tlsa(host)
                probe = await aprobe_starttls(
                    host,
                    server.port,
                    connect_to="127.0.0.1",
                    timeout=5,
                    server_name=found.base_domain,
                )
                return found, probe

            found, probe = asyncio.run(both())
        assert DNSStatus.SECURE == found.status
        assert probe.handshake_ok
        assert found.base_domain in server.snis
        return match_tlsa(found.records, probe.chain, names=found.names, now=NOW)

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_dane_ee_match(self, lab, smtp_server, driver):
        """DANE-37, DANE-38, DANE-30: a 3 1 1 record matches the server key; no name check (leaf is mx3)."""
        check = self._check(lab, smtp_server, "mx1.secure.test", driver)
        assert (True, True, None) == (check.ok, check.authenticated, check.result_type)

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_dane_ee_mismatch(self, lab, smtp_server, driver):
        """DANE-36, DANE-46, DANE-55: a 3 1 1 record for another key: validation-failure, dane-no-match."""
        check = self._check(lab, smtp_server, "mx2.secure.test", driver)
        assert not check.ok
        assert (ResultType.VALIDATION_FAILURE, "dane-no-match") == (check.result_type, check.reason)

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_dane_ta_match(self, lab, smtp_server, driver):
        """DANE-40, DANE-44: a 2 0 1 record for the intermediate, leaf named like the base domain."""
        check = self._check(lab, smtp_server, "mx3.secure.test", driver)
        assert (True, True) == (check.ok, check.authenticated)
        assert "mx3.secure.test" == check.identity

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_dane_ta_wrong_name(self, lab, smtp_server, driver):
        """DANE-44, DANE-55: the trust anchor matches but the leaf does not name mx4: host mismatch."""
        check = self._check(lab, smtp_server, "mx4.secure.test", driver)
        assert not check.ok
        assert ResultType.CERTIFICATE_HOST_MISMATCH == check.result_type

    def test_all_unusable(self, lab, smtp_server):
        """DANE-13, DANE-32, DANE-55: only unusable records: TLS without authentication, tlsa-invalid."""
        check = self._check(lab, smtp_server, "mx5.secure.test", "sync")
        assert (True, False) == (check.ok, check.authenticated)
        assert ResultType.TLSA_INVALID == check.result_type


@pytest.mark.services
class TestRecordLookups:
    def test_secure_mx(self, resolver):
        """DANE-21: the MX RRset comes back with its security status."""
        result = resolver("lookup_mx", "secure.test")
        assert DNSStatus.SECURE == result.status
        assert [MXRecord(10, "mx1.secure.test"), MXRecord(20, "mx3.secure.test")] == sorted(
            result.records, key=lambda m: m.preference
        )

    def test_next_hop_cname(self, resolver):
        """DANE-53, DANE-31: a CNAME'd next hop is expanded; both names become DANE-TA references."""
        mx = resolver("lookup_mx", "nexthop.secure.test")
        assert DNSStatus.SECURE == mx.status
        assert ("secure.test", ("nexthop.secure.test",)) == (mx.canonical_name, mx.cnames)
        names = ["nexthop.secure.test", mx.canonical_name]
        tlsa = resolver("lookup_tlsa", "mx3.secure.test", next_hop_names=names)
        assert ("mx3.secure.test", "nexthop.secure.test", "secure.test") == tlsa.names

    def test_insecure_mx(self, resolver):
        """DANE-18, DANE-19: an MX RRset from an unsigned zone is INSECURE."""
        result = resolver("lookup_mx", "insecure.test")
        assert DNSStatus.INSECURE == result.status
        assert (MXRecord(10, "mx.insecure.test"),) == result.records

    def test_secure_address(self, resolver):
        """DANE-22: A records with their status and TTL."""
        result = resolver("lookup_address", "mx1.secure.test")
        assert DNSStatus.SECURE == result.status
        assert ("127.0.0.1",) == result.records
        assert result.ttl is not None
        assert 0 < result.ttl <= 300

    def test_secure_nxdomain(self, resolver):
        """DANE-05: a validated NXDOMAIN is NOT_FOUND with the secure flag."""
        result = resolver("lookup_address", "missing.secure.test", "AAAA")
        assert DNSStatus.NOT_FOUND == result.status
        assert result.secure
        assert result.nxdomain
        assert not result.failed

    def test_bogus_mx(self, resolver):
        """DANE-06, DANE-03: a bogus MX answer is BOGUS (delivery must wait)."""
        result = resolver("lookup_mx", "bogus.test")
        assert DNSStatus.BOGUS == result.status
        assert result.failed


class TestFailures:
    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_timeout_is_tempfail(self, driver):
        """DANE-06: a resolver that never answers gives TEMPFAIL within the lifetime."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            ns = f"127.0.0.1:{silent.getsockname()[1]}"
            started = time.monotonic()
            if driver == "sync":
                result = DNSSECResolver([ns], timeout=0.2, lifetime=0.4).lookup_tlsa("a.test")
            else:
                r = AsyncDNSSECResolver([ns], timeout=0.2, lifetime=0.4)
                result = asyncio.run(r.lookup_tlsa("a.test"))
            assert time.monotonic() - started < 3
        assert DNSStatus.TEMPFAIL == result.status
        assert "timeout" == result.answers[0].detail

    def test_refused_port_is_tempfail(self):
        """DANE-06: an unreachable resolver (ICMP port unreachable) gives TEMPFAIL."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = DNSSECResolver([f"127.0.0.1:{port}"], timeout=0.2, lifetime=0.3).lookup_address(
            "a.test"
        )
        assert DNSStatus.TEMPFAIL == result.status

    def test_name_too_long_is_tempfail(self):
        """An owner name that dnspython cannot build is a value, not an exception."""
        result = DNSSECResolver(["127.0.0.1:9"]).lookup("a" * 64 + ".test", "TLSA")
        assert DNSStatus.TEMPFAIL == result.status
        assert "LabelTooLong" in result.detail


def _response(
    qname: str, rdtype: str, *answers: str, rcode: int = dns.rcode.NOERROR, ad: bool = False
) -> dns.message.Message:
    query = dns.message.make_query(qname + ".", rdtype)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if ad:
        response.flags |= dns.flags.AD
    for text in answers:
        name, ttl, rdtype_text, data = text.split(maxsplit=3)
        response.answer.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype_text, data))
    return response


class TestInterpret:
    def test_cname_loop(self):
        """DANE-09, DANE-11: a CNAME loop in a reply fails the lookup."""
        reply = _response(
            "a.test", "A", "a.test. 300 CNAME b.test.", "b.test. 300 CNAME a.test.", ad=True
        )
        assert DNSStatus.TEMPFAIL == interpret(reply, "a.test", "A", trusted=True).status

    def test_servfail_with_ede(self):
        """DANE-03, DANE-55: SERVFAIL from a trusted resolver is BOGUS and keeps the EDE text."""
        reply = _response("a.test", "TLSA", rcode=dns.rcode.SERVFAIL)
        reply.use_edns(
            0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS, "sig expired")]
        )
        result = interpret(reply, "a.test", "TLSA", trusted=True)
        assert DNSStatus.BOGUS == result.status
        assert "SERVFAIL (EDE 6 (DNSSEC Bogus): sig expired)" == result.detail

    def test_refused_is_tempfail(self):
        """DANE-06: REFUSED is a failure even from a trusted resolver."""
        reply = _response("a.test", "A", rcode=dns.rcode.REFUSED)
        result = interpret(reply, "a.test", "A", trusted=True)
        assert DNSStatus.TEMPFAIL == result.status
        assert "REFUSED" == result.detail

    def test_nxdomain_exception_without_response(self):
        """An NXDOMAIN exception that carries no reply is a TEMPFAIL value."""
        result = interpret(
            dns.resolver.NXDOMAIN(qnames=[dns.name.from_text("a.test")], responses={}),
            "a.test",
            "A",
            trusted=True,
        )
        assert DNSStatus.TEMPFAIL == result.status

    def test_nxdomain_exception_with_response(self):
        """DANE-05: an NXDOMAIN exception is read from its reply."""
        reply = _response("a.test", "A", rcode=dns.rcode.NXDOMAIN, ad=True)
        exc = dns.resolver.NXDOMAIN(
            qnames=[reply.question[0].name], responses={reply.question[0].name: reply}
        )
        result = interpret(exc, "a.test", "A", trusted=True)
        assert (result.status, result.secure, result.nxdomain) == (DNSStatus.NOT_FOUND, True, True)

    def test_no_nameservers_without_replies(self):
        """DANE-06: NoNameservers with only network errors is TEMPFAIL naming them."""
        exc = dns.resolver.NoNameservers(
            request=dns.message.make_query("a.test.", "A"),
            errors=[("Do53:127.0.0.1@53", False, 53, OSError("boom"), None)],
        )
        result = interpret(exc, "a.test", "A", trusted=True)
        assert DNSStatus.TEMPFAIL == result.status
        assert "Do53:127.0.0.1@53: boom" == result.detail

    def test_no_nameservers_with_rejected_noerror_reply(self):
        """DANE-06: a NOERROR reply dnspython rejected (malformed) stays a failure."""
        reply = _response("a.test", "A", "a.test. 300 A 192.0.2.1", ad=True)
        exc = dns.resolver.NoNameservers(
            request=dns.message.make_query("a.test.", "A"),
            errors=[("Do53:127.0.0.1@53", False, 53, ValueError("bad"), reply)],
        )
        result = interpret(exc, "a.test", "A", trusted=True)
        assert DNSStatus.TEMPFAIL == result.status
        assert "Do53:127.0.0.1@53: bad" == result.detail

    def test_other_exception(self):
        """Any other lookup exception is a TEMPFAIL value naming it."""
        result = interpret(OSError("network down"), "a.test", "A", trusted=True)
        assert "OSError: network down" == result.detail

    def test_convert_other_types(self):
        """Record types without a model are carried as their text."""
        rrset = dns.rrset.from_text("a.test.", 300, "IN", "TXT", '"v=x"')  # type: ignore[attr-defined]
        assert '"v=x"' == convert_rdata(rrset[0])

    @pytest.mark.parametrize("host", ["192.0.2.25", "[2001:db8::25]"])
    def test_address_literal(self, host):
        """DANE-15: DANE does not apply to address literals: no query at all."""
        with pytest.raises(StopIteration) as stop:
            next(tlsa_procedure(host))
        result = stop.value.value
        assert (DNSStatus.INSECURE, host.strip("[]"), ()) == (
            result.status,
            result.host,
            result.answers,
        )

    def test_procedure_yields_queries(self):
        """DANE-22, DANE-23: the procedure asks for A first, and stops after an insecure answer."""
        procedure = tlsa_procedure("MX.Example.", port=25)
        assert Query("mx.example", "A") == next(procedure)
        reply = _response("mx.example", "A", "mx.example. 300 A 192.0.2.1")
        with pytest.raises(StopIteration) as stop:
            procedure.send(interpret(reply, "mx.example", "A", trusted=True))
        result = stop.value.value
        assert isinstance(result, TLSALookup)
        assert DNSStatus.INSECURE == result.status

    @pytest.mark.parametrize(
        ("failing", "status"), [("A", DNSStatus.TEMPFAIL), ("CNAME", DNSStatus.BOGUS)]
    )
    def test_procedure_failure_on_the_way(self, failing, status):
        """DANE-09: a failure at the CNAME step (or the address step) fails the whole lookup."""
        procedure = tlsa_procedure("alias.example")
        query = next(procedure)
        if failing == "A":
            answer = interpret(OSError("x"), query.qname, "A", trusted=True)
        else:
            reply = _response(
                "alias.example",
                "A",
                "alias.example. 300 CNAME t.example.",
                "t.example. 300 A 192.0.2.1",
            )
            query = procedure.send(interpret(reply, "alias.example", "A", trusted=True))
            assert Query("alias.example", "CNAME") == query
            answer = interpret(
                _response("alias.example", "CNAME", rcode=dns.rcode.SERVFAIL),
                query.qname,
                "CNAME",
                trusted=True,
            )
        with pytest.raises(StopIteration) as stop:
            procedure.send(answer)
        assert status == stop.value.value.status


_NAMES = ["a.test.", "b.test.", "c.test."]
_RECORDS = st.lists(
    st.tuples(
        st.sampled_from(_NAMES), st.sampled_from(["A", "CNAME", "TLSA"]), st.sampled_from(_NAMES)
    ),
    max_size=6,
)


class TestInterpretProperties:
    @settings(max_examples=300)
    @given(
        records=_RECORDS,
        rcode=st.sampled_from(
            [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED]
        ),
        ad=st.booleans(),
        trusted=st.booleans(),
        rdtype=st.sampled_from(["A", "TLSA", "CNAME"]),
    )
    def test_any_reply_is_a_value(self, records, rcode, ad, trusted, rdtype):
        """DANE-02, DANE-03, SEC-16: any reply gives a value; SECURE needs AD from a trusted resolver."""
        data = {"A": "192.0.2.1", "TLSA": f"3 1 1 {EE}"}
        answers = [f"{n} 300 {t} {data.get(t, target)}" for n, t, target in records]
        reply = _response("a.test", rdtype, *answers, rcode=rcode, ad=ad)
        result = interpret(reply, "a.test", rdtype, trusted=trusted)
        if result.secure:
            assert ad
            assert trusted
        if result.status is DNSStatus.SECURE:
            assert result.records
        if result.status is DNSStatus.BOGUS:
            assert (dns.rcode.SERVFAIL, True) == (rcode, trusted)


class TestResolverSettings:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("127.0.0.1", ("127.0.0.1", 53)),
            ("127.0.0.1:5353", ("127.0.0.1", 5353)),
            ("::1", ("::1", 53)),
            ("[::1]:5353", ("::1", 5353)),
            ("[::1]", ("::1", 53)),
            (" 10.0.0.1 ", ("10.0.0.1", 53)),
        ],
    )
    def test_parse_nameserver(self, spec, expected):
        """`--nameserver IP[:PORT]` settings parse to (address, port)."""
        assert expected == parse_nameserver(spec)

    @pytest.mark.parametrize(
        "spec", ["host.example", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x", "1.2.3.4:70000"]
    )
    def test_parse_nameserver_rejects(self, spec):
        """Malformed nameserver settings raise ValueError."""
        with pytest.raises(ValueError, match="invalid nameserver"):
            parse_nameserver(spec)

    def test_resolvers_use_settings(self):
        """With nameservers, resolv.conf is unread; DNSSEC asks for AD with EDNS; no cache."""
        sync = make_resolver(["127.0.0.1:5353", "[::1]"], timeout=1.5, lifetime=3, dnssec=True)
        plain = make_async_resolver(["192.0.2.1"])
        assert ["127.0.0.1", "::1"] == [ns.address for ns in sync.nameservers]  # type: ignore[union-attr]
        assert [5353, 53] == [ns.port for ns in sync.nameservers]  # type: ignore[union-attr]
        assert (sync.timeout, sync.lifetime, sync.cache) == (1.5, 3, None)
        assert dns.flags.RD | dns.flags.AD == sync.flags
        assert 0 == sync.edns
        assert plain.flags is None
        assert plain.cache is None

    def test_system_resolver_when_no_nameservers(self):
        """Without nameservers the system configuration is read."""
        assert make_resolver().nameservers

    def test_default_trust_is_loopback_only(self):
        """DANE-02: only a loopback resolver is trusted by default; trust_ad overrides."""
        assert DNSSECResolver(["127.0.0.1:53", "[::1]:53"]).trusted
        assert not DNSSECResolver(["127.0.0.1", "192.0.2.53"]).trusted
        assert not AsyncDNSSECResolver(["192.0.2.53"]).trusted
        assert DNSSECResolver(["192.0.2.53"], trust_ad=True).trusted
        assert not is_loopback("not-an-ip")
