"""
Downgrade attacks end to end: loopback DNS and HTTPS servers, an injected clock.

A domain publishes an ``enforce`` policy (``max_age: 86400``) that the
resolver fetches at T0. Then an attacker breaks DNS or the policy host. The
cached policy must stay applied for every lookup until ``max_age`` ends,
and not one second longer (RFC 8461 §3.3, §5.1, §10.2).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dnsserver import DNSServer
from httpsservers import ENFORCE, HTTPSServer, policy, stall
from smtpsts.cache import PolicyConfig, PolicyOutcome, PolicySource
from smtpsts.io.dns import AsyncDNSResolver, DNSResolver
from smtpsts.io.drivers import PolicyResolver
from smtpsts.io.http import AsyncHTTPSFetcher, HTTPSFetcher
from smtpsts.policy import Mode
from smtpsts.stores.sqlite import SQLitePolicyStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MAX_AGE = 86400
_counter = itertools.count()


@pytest.fixture(scope="module")
def https() -> Iterator[HTTPSServer]:
    with HTTPSServer() as server:
        yield server


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSServer]:
    with DNSServer(negative_ttl=300) as server:
        yield server


Attack = Callable[[str, DNSServer, HTTPSServer], None]


def dns_servfail(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.servfail(f"_mta-sts.{domain}")


def dns_silence(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.drop(f"_mta-sts.{domain}")


def txt_vanishes(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.remove(f"_mta-sts.{domain}")


def txt_garbled(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=bad-id;"')


def new_id_host_500(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=2;"')
    https.route(f"mta-sts.{domain}", policy(b"", status="500 Internal Server Error"))


def new_id_host_stalls(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=2;"')
    https.route(f"mta-sts.{domain}", stall(30))


def new_id_forged_cert(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=2;"')
    https.route(f"mta-sts.{domain}", policy(b"version: STSv1\r\nmode: none\r\nmax_age: 1\r\n"))
    https.certificate(f"mta-sts.{domain}", untrusted=True)


def new_id_policy_none_over_http_garbage(domain: str, dns: DNSServer, https: HTTPSServer) -> None:
    dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=2;"')
    https.route(f"mta-sts.{domain}", policy(b"version: STSv1\r\nmode: none\r\n", status="200 OK"))


ATTACKS: dict[str, tuple[Attack, str]] = {
    "dns-servfail": (dns_servfail, "STS-CACHE-07"),
    "dns-silence": (dns_silence, "STS-CACHE-07"),
    "txt-vanishes": (txt_vanishes, "SEC-02"),
    "txt-garbled": (txt_garbled, "STS-CACHE-07"),
    "host-500": (new_id_host_500, "STS-CACHE-06"),
    "host-stalls": (new_id_host_stalls, "STS-FETCH-16"),
    "host-untrusted-cert": (new_id_forged_cert, "STS-FETCH-16"),
    "host-invalid-policy": (new_id_policy_none_over_http_garbage, "STS-CACHE-06"),
}


class Lookup:
    """A PolicyResolver with an sqlite store, driven sync or asyncio."""

    def __init__(
        self, kind: str, domain: str, dns: DNSServer, https: HTTPSServer, path: Path
    ) -> None:
        self.kind = kind
        host = f"mta-sts.{domain}"
        connect_to = https.connect_to(host)
        self.store = SQLitePolicyStore(path)
        self.resolver = PolicyResolver(
            store=self.store,
            dns=DNSResolver([dns.address], timeout=0.3, lifetime=0.3),
            adns=AsyncDNSResolver([dns.address], timeout=0.3, lifetime=0.3),
            fetcher=HTTPSFetcher(trust=https.trust, connect_to=connect_to),
            afetcher=AsyncHTTPSFetcher(trust=https.trust, connect_to=connect_to),
            config=PolicyConfig(timeout=1.0),
        )

    def __call__(self, domain: str, seconds: float) -> PolicyOutcome:
        """The outcome at T0 + ``seconds``, after the background check it started ended."""
        now = T0 + timedelta(seconds=seconds)
        if self.kind == "sync":
            outcome = self.resolver.resolve(domain, now=now)
            self.resolver.join_background()
            return outcome

        async def resolve() -> PolicyOutcome:
            outcome = await self.resolver.aresolve(domain, now=now)
            await self.resolver.ajoin_background()
            return outcome

        return asyncio.run(resolve())


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_cached_enforce_survives_until_max_age(
    attack: str, kind: str, dns_server: DNSServer, https: HTTPSServer, tmp_path: Path
) -> None:
    """STS-FETCH-16, STS-CACHE-03, STS-CACHE-06, STS-CACHE-07, SEC-02: no early downgrade.

    The attacks, each with its own conformance item: SERVFAIL and silence for
    _mta-sts (STS-CACHE-07), the TXT record removed (SEC-02) or garbled
    (STS-CACHE-07), and a new id whose policy host answers 500, stalls, shows
    an untrusted certificate or serves an invalid policy (STS-CACHE-06,
    STS-FETCH-16). Until max_age ends the cached enforce policy applies; at
    fetched_at + max_age it does not (STS-CACHE-03).
    """
    domain = f"d{next(_counter)}.example"
    dns_server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
    https.route(f"mta-sts.{domain}", policy(ENFORCE))
    lookup = Lookup(kind, domain, dns_server, https, tmp_path / "cache.db")

    fresh = lookup(domain, 0)
    assert (Mode.ENFORCE, PolicySource.FRESH) == (fresh.mode, fresh.source)

    ATTACKS[attack][0](domain, dns_server, https)
    # The first lookup after the attack answers from the cache at once and
    # checks behind the answer (SEC-51); later ones carry what that check met.
    first = lookup(domain, 60)
    assert (Mode.ENFORCE, PolicySource.CACHED) == (first.mode, first.source)
    for seconds in (3600, MAX_AGE - 1):
        outcome = lookup(domain, seconds)
        assert (Mode.ENFORCE, PolicySource.CACHED) == (outcome.mode, outcome.source), seconds
        assert outcome.used_cache_after_failure
        assert outcome.failure is not None
        assert outcome.failure.reason.endswith("+fallback-to-cached-policy")

    # Not one second longer.
    expired = lookup(domain, MAX_AGE)
    assert expired.policy is None
    assert expired.mode is not Mode.ENFORCE
    lookup.store.close()


def test_restart_keeps_policy(dns_server: DNSServer, https: HTTPSServer, tmp_path: Path) -> None:
    """STS-CACHE-17, SEC-02: after a restart (new resolver, same sqlite file) the policy holds."""
    domain = f"d{next(_counter)}.example"
    dns_server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
    https.route(f"mta-sts.{domain}", policy(ENFORCE))
    path = tmp_path / "cache.db"
    first = Lookup("sync", domain, dns_server, https, path)
    assert Mode.ENFORCE == first(domain, 0).mode
    first.store.close()
    dns_server.servfail(f"_mta-sts.{domain}")
    second = Lookup("sync", domain, dns_server, https, path)
    assert Mode.ENFORCE == second(domain, 7200).mode
    second.store.close()
