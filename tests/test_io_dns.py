"""Tests for smtpsts.io.dns against the scripted loopback DNS server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.exception
import dns.resolver
import pytest

from dnsserver import DNSServer
from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.io.dns import (
    AddressAnswer,
    AsyncDNSResolver,
    DNSFailure,
    DNSNotFound,
    DNSResolver,
    MXAnswer,
    MXRecord,
    address_result,
    txt_result,
)


@pytest.fixture(scope="module")
def server() -> Iterator[DNSServer]:
    with DNSServer(negative_ttl=42) as srv:
        srv.add("_mta-sts.example.com", "TXT", '"v=STSv1; id=2016" "0831085700Z;"', ttl=600)
        srv.add("_mta-sts.two.example", "TXT", '"v=STSv1; id=1;"', '"v=spf1 -all"', ttl=300)
        srv.add("nodata.example", "A", "192.0.2.1")
        srv.add("_mta-sts.provider.example", "TXT", '"v=STSv1; id=prov;"', ttl=900)
        srv.cname("_mta-sts.user.example", "_mta-sts.provider.example", ttl=120)
        srv.cname("_mta-sts.dangling.example", "_mta-sts.nowhere.example", ttl=120)
        srv.add("_mta-sts.servfail.example", "TXT", '"v=STSv1; id=1;"')
        srv.servfail("_mta-sts.servfail.example")
        srv.drop("_mta-sts.silent.example")
        srv.add(
            "_mta-sts.big.example", "TXT", *(f'"v=STSv1; id={i}; {"x" * 200}"' for i in range(6))
        )
        srv.add("mta-sts.example.com", "A", "127.0.0.1", ttl=100)
        srv.add("mta-sts.example.com", "AAAA", "::1", ttl=50)
        srv.add("mta-sts.v4only.example", "A", "127.0.0.2")
        srv.add("example.com", "MX", "20 MX2.Example.com.", "10 mx1.example.com.", ttl=3600)
        srv.add("null.example", "MX", "0 .")
        srv.add("partial.example", "A", "127.0.0.3")
        srv.servfail("broken.example")
        yield srv


class Both:
    """Runs one lookup through the sync or the asyncio adapter."""

    def __init__(self, kind: str, server: DNSServer, lifetime: float = 2.0) -> None:
        self.kind = kind
        nameservers = [server.address]
        if kind == "sync":
            self.sync = DNSResolver(nameservers, timeout=lifetime, lifetime=lifetime)
        else:
            self.aio = AsyncDNSResolver(nameservers, timeout=lifetime, lifetime=lifetime)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if self.kind == "sync":
            return getattr(self.sync, method)  # type: ignore[no-any-return]

        def run(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(getattr(self.aio, method)(*args, **kwargs))

        return run


@pytest.fixture(params=["sync", "async"])
def dns_client(request: pytest.FixtureRequest, server: DNSServer) -> Both:
    return Both(request.param, server)


class TestTXT:
    def test_strings_joined_per_rr(self, dns_client: Both) -> None:
        """STS-REC-03: the character-strings of one TXT RR are joined with no separator."""
        assert TXTAnswer((b"v=STSv1; id=20160831085700Z;",), ttl=600) == dns_client.lookup_txt(
            "_mta-sts.example.com."
        )

    def test_one_item_per_rr(self, dns_client: Both) -> None:
        """STS-REC-12: each TXT RR is one item; selection is left to the core."""
        result = dns_client.lookup_txt("_mta-sts.two.example.")
        assert isinstance(result, TXTAnswer)
        assert [b"v=STSv1; id=1;", b"v=spf1 -all"] == sorted(result.records)
        assert 300 == result.ttl

    def test_nxdomain_is_not_found_with_negative_ttl(self, dns_client: Both) -> None:
        """STS-REC-17: NXDOMAIN is "no record", carrying the SOA minimum as TTL."""
        assert TXTNotFound(ttl=42) == dns_client.lookup_txt("_mta-sts.absent.example.")

    def test_nodata_is_not_found(self, dns_client: Both) -> None:
        """STS-REC-17: NODATA (the name exists, no TXT) is "no record" too."""
        assert TXTNotFound(ttl=42) == dns_client.lookup_txt("nodata.example.")

    def test_servfail_is_failure(self, dns_client: Both) -> None:
        """STS-REC-17: SERVFAIL is a temporary error, never "no record"."""
        result = dns_client.lookup_txt("_mta-sts.servfail.example.")
        assert isinstance(result, TXTFailure)
        assert "SERVFAIL" in result.reason

    def test_cname_followed(self, dns_client: Both) -> None:
        """STS-REC-02: a CNAME at _mta-sts is followed; the TTL is the chain's minimum."""
        assert TXTAnswer((b"v=STSv1; id=prov;",), ttl=120) == dns_client.lookup_txt(
            "_mta-sts.user.example."
        )

    def test_dangling_cname_is_not_found(self, dns_client: Both) -> None:
        """STS-REC-02, STS-REC-17: a CNAME to a name that does not exist means no record."""
        assert TXTNotFound(ttl=42) == dns_client.lookup_txt("_mta-sts.dangling.example.")

    def test_large_rrset_over_tcp(self, dns_client: Both) -> None:
        """STS-REC-12: a truncated UDP answer is retried over TCP and read whole."""
        result = dns_client.lookup_txt("_mta-sts.big.example.")
        assert isinstance(result, TXTAnswer)
        assert 6 == len(result.records)

    def test_bad_name_is_failure(self, dns_client: Both) -> None:
        """STS-REC-17: a name dnspython cannot even encode is a failure value, not an exception."""
        result = dns_client.lookup_txt("a" * 64 + ".example.")
        assert isinstance(result, TXTFailure)
        assert "LabelTooLong" in result.reason


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_silence_times_out_within_lifetime(kind: str, server: DNSServer) -> None:
    """STS-REC-17: a server that never answers gives TXTFailure, within the lifetime."""
    client = Both(kind, server, lifetime=0.5)
    start = time.monotonic()
    result = client.lookup_txt("_mta-sts.silent.example.")
    elapsed = time.monotonic() - start
    assert isinstance(result, TXTFailure)
    assert result.reason.startswith("timeout")
    assert elapsed < 2.0


class TestAddresses:
    def test_aaaa_then_a(self, dns_client: Both) -> None:
        """STS-FETCH-21: AAAA and A are both looked up; the smallest TTL is kept."""
        assert AddressAnswer(("::1", "127.0.0.1"), ttl=50) == dns_client.lookup_addresses(
            "mta-sts.example.com"
        )

    def test_a_only(self, dns_client: Both) -> None:
        """STS-FETCH-21: NODATA for AAAA does not hide the A records."""
        assert AddressAnswer(("127.0.0.2",), ttl=300) == dns_client.lookup_addresses(
            "mta-sts.v4only.example"
        )

    def test_nxdomain(self, dns_client: Both) -> None:
        """STS-FETCH-21: NXDOMAIN for the policy host is a definite not-found."""
        assert DNSNotFound(ttl=42, nxdomain=True) == dns_client.lookup_addresses(
            "mta-sts.absent.example"
        )

    def test_servfail(self, dns_client: Both) -> None:
        """STS-FETCH-21: SERVFAIL for the policy host is a failure."""
        assert isinstance(dns_client.lookup_addresses("broken.example"), DNSFailure)


class TestMX:
    def test_sorted_lowercase_without_dot(self, dns_client: Both) -> None:
        """STS-MX-05: MX names come back lower-case without the root dot, by preference."""
        assert MXAnswer(
            (MXRecord(10, "mx1.example.com"), MXRecord(20, "mx2.example.com")), ttl=3600
        ) == dns_client.lookup_mx("example.com")

    def test_null_mx(self, dns_client: Both) -> None:
        """A null MX (RFC 7505) has the empty exchange."""
        assert MXAnswer((MXRecord(0, ""),), ttl=300) == dns_client.lookup_mx("null.example")

    def test_no_mx(self, dns_client: Both) -> None:
        """STS-MX-08: no MX records is a not-found value (the caller uses the implicit MX)."""
        assert DNSNotFound(ttl=42, nxdomain=True) == dns_client.lookup_mx("absent.example")


class TestTranslation:
    def test_failure_wins_over_not_found(self) -> None:
        """STS-FETCH-21: one failed and one empty address query is a failure, not "no host"."""
        failure = dns.resolver.NoNameservers()
        nx = dns.resolver.NXDOMAIN()
        assert isinstance(address_result([nx, failure]), DNSFailure)
        assert DNSNotFound(ttl=None, nxdomain=True) == address_result([nx, nx])
        assert DNSNotFound() == address_result([])

    def test_network_error_is_failure(self) -> None:
        """STS-REC-17: an OS-level network error is a temporary failure."""
        result = txt_result(OSError("network unreachable"))
        assert TXTFailure("OSError: network unreachable") == result

    def test_timeout_reason(self) -> None:
        """STS-REC-17: a timeout is reported as such."""
        result = txt_result(dns.exception.Timeout())
        assert isinstance(result, TXTFailure)
        assert result.reason.startswith("timeout")

    def test_nxdomain_with_unusable_response(self, server: DNSServer) -> None:
        """STS-REC-17: NXDOMAIN whose response cannot be chained still means "no record"."""
        import dns.message

        bogus = dns.message.make_query("x.example.", "TXT")  # not a response: QR clear
        exc = dns.resolver.NXDOMAIN(
            qnames=[bogus.question[0].name], responses={bogus.question[0].name: bogus}
        )
        assert TXTNotFound(ttl=None) == txt_result(exc)


def test_resolver_instance_is_used(server: DNSServer) -> None:
    """STS-REC-01: a caller-built dnspython resolver can be passed in and is used as is."""
    from smtpsts.io._resolver import make_async_resolver, make_resolver

    sync = DNSResolver(resolver=make_resolver([server.address]))
    assert isinstance(sync.lookup_txt("_mta-sts.example.com."), TXTAnswer)
    aio = AsyncDNSResolver(resolver=make_async_resolver([server.address]))
    assert isinstance(asyncio.run(aio.lookup_txt("_mta-sts.example.com.")), TXTAnswer)
