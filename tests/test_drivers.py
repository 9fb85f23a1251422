"""Tests for smtpsts.io.drivers: the driver loops and PolicyResolver, on loopback servers."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from dnsserver import DNSServer
from fakes import T0, ScriptedDNS, ScriptedFetcher, ok, txt
from httpsservers import ENFORCE, HTTPSServer, policy, slow_drip
from smtpsts.actions import FetchFailed, FetchFailure, FetchPolicy, LookupTXT, Resolved, TXTFailure
from smtpsts.cache import (
    CacheEntry,
    PolicyConfig,
    PolicyOutcome,
    PolicyResolution,
    PolicySource,
    cached_outcome,
)
from smtpsts.exceptions import UsageError
from smtpsts.io._known import STATS, Burst, KnownEntries
from smtpsts.io._policy_lookup import RefreshEach, aperform_with, perform_with
from smtpsts.io.dns import AsyncDNSResolver, DNSResolver
from smtpsts.io.drivers import PolicyResolver, RefreshReport, aresolve_policy, resolve_policy
from smtpsts.io.http import AsyncHTTPSFetcher, HTTPSFetcher
from smtpsts.policy import Mode, Policy
from smtpsts.stores import SyncAsAsyncStore
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.stores.sqlite import SQLitePolicyStore

NONE_POLICY = b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
DOMAINS = [
    "good.example",
    "user.example",
    "provider.example",
    "invalid.example",
    "webpki.example",
    "flight.example",
    "tflight.example",
    "refresh.example",
    "nonemode.example",
    "failing.example",
    "slow.example",
]


@pytest.fixture(scope="module")
def https() -> Iterator[HTTPSServer]:
    with HTTPSServer() as server:
        for domain in DOMAINS:
            server.route(f"mta-sts.{domain}", policy())
        server.route("mta-sts.invalid.example", policy(b"version: STSv1\r\nmode: \xff\r\n"))
        server.certificate("mta-sts.webpki.example", names=["www.webpki.example"])
        server.route("mta-sts.nonemode.example", policy(NONE_POLICY))
        server.route("mta-sts.failing.example", policy(b"", status="500 Oops"))
        server.route("mta-sts.slow.example", slow_drip(0.02))
        yield server


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSServer]:
    with DNSServer(negative_ttl=300) as server:
        for domain in DOMAINS:
            server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
        server.remove("_mta-sts.user.example")
        server.cname("_mta-sts.user.example", "_mta-sts.provider.example")
        yield server


def make_resolver(https: HTTPSServer, dns_server: DNSServer, **options: object) -> PolicyResolver:
    return PolicyResolver(
        trust=https.trust,
        nameservers=[dns_server.address],
        connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
        config=PolicyConfig(timeout=5),
        **options,  # type: ignore[arg-type]
    )


class TestLoops:
    def test_sync_exact_actions(self) -> None:
        """STS-FETCH-19, STS-CACHE-02: one TXT lookup, one fetch, entry written; then cached."""
        dns = ScriptedDNS([txt("v=STSv1; id=1;"), txt("v=STSv1; id=1;")])
        fetcher = ScriptedFetcher([ok()])
        store = MemoryPolicyStore()
        outcome = resolve_policy("Example.COM.", resolver=dns, fetcher=fetcher, store=store, now=T0)
        assert (Mode.ENFORCE, PolicySource.FRESH) == (outcome.mode, outcome.source)
        assert ["_mta-sts.example.com."] == dns.asked
        assert ["https://mta-sts.example.com/.well-known/mta-sts.txt"] == [
            r.url for r in fetcher.asked
        ]
        entry = store.get("example.com")
        assert entry is not None
        assert T0 + timedelta(seconds=86400) == entry.expires_at
        again = resolve_policy(
            "example.com", resolver=dns, fetcher=fetcher, store=store, now=T0 + timedelta(hours=1)
        )
        assert PolicySource.CACHED == again.source
        assert 1 == len(fetcher.asked)

    def test_async_loop_and_delete(self) -> None:
        """STS-CACHE-14: a mode none entry whose record is gone is replaced by the driver."""

        class DNS:
            async def lookup_txt(self, qname: str) -> object:
                return TXTFailure("x") if "fail" in qname else txt()

        class Fetcher:
            async def fetch(self, request: FetchPolicy) -> object:
                return ok(NONE_POLICY)

        store = SyncAsAsyncStore(MemoryPolicyStore())
        entry = CacheEntry(
            "example.com",
            record_id="1",
            fetched_at=T0,
            expires_at=T0 + timedelta(days=1),
        )

        async def run() -> None:
            await store.put(entry)
            outcome = await aresolve_policy(
                "example.com",
                resolver=DNS(),
                fetcher=Fetcher(),
                store=store,
                now=T0,  # type: ignore[arg-type]
            )
            assert outcome.policy is None
            stored = await store.get("example.com")
            assert stored is not None
            assert stored.mode is None  # only the negative answer is left
            assert stored.negative_until is not None

        asyncio.run(run())


class TestEndToEnd:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_fetch_then_cache(self, https: HTTPSServer, dns_server: DNSServer, kind: str) -> None:
        """STS-CACHE-04, STS-FETCH-01: first lookup fetches; the same id then needs no GET."""
        resolver = make_resolver(https, dns_server)
        before = https.hits("mta-sts.good.example")
        for _ in range(3):
            if kind == "sync":
                outcome = resolver.resolve("good.example", now=T0)
            else:
                outcome = asyncio.run(resolver.aresolve("good.example", now=T0))
            assert Mode.ENFORCE == outcome.mode
        assert before + 1 == https.hits("mta-sts.good.example")

    def test_cname_policy_host(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-02, STS-REC-02: through a CNAME the policy host stays mta-sts.<domain>."""
        resolver = make_resolver(https, dns_server)
        outcome = resolver.resolve("user.example", now=T0)
        assert Mode.ENFORCE == outcome.mode
        assert "mta-sts.user.example" == https.requests[-1].sni

    def test_invalid_policy(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-18, STS-FETCH-15: invalid UTF-8 gives sts-policy-invalid and no policy."""
        outcome = make_resolver(https, dns_server).resolve("invalid.example", now=T0)
        assert outcome.policy is None
        assert outcome.failure is not None
        assert "sts-policy-invalid" == outcome.failure.result_type.value

    def test_webpki(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-03, STS-FETCH-18: a wrong-host certificate gives sts-webpki-invalid."""
        outcome = make_resolver(https, dns_server).resolve("webpki.example", now=T0)
        assert outcome.failure is not None
        assert "sts-webpki-invalid" == outcome.failure.result_type.value

    def test_no_record_no_fetch_and_negative_cache(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """STS-FETCH-19: no TXT record, no HTTP request; the "no record" is cached for its TTL."""
        resolver = make_resolver(https, dns_server)
        requests = len(https.requests)
        queries = dns_server.count("_mta-sts.absent.example", "TXT")
        for seconds in (0, 10, 299):
            outcome = resolver.resolve("absent.example", now=T0 + timedelta(seconds=seconds))
            assert outcome.policy is None
        assert queries + 1 == dns_server.count("_mta-sts.absent.example", "TXT")
        resolver.resolve("absent.example", now=T0 + timedelta(seconds=300))
        assert queries + 2 == dns_server.count("_mta-sts.absent.example", "TXT")
        assert requests == len(https.requests)

    def test_negative_cache_asyncio(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-CACHE-18, STS-FETCH-19: asyncio lookups of a domain without a record ask DNS once per negative TTL."""
        resolver = make_resolver(https, dns_server)
        queries = dns_server.count("_mta-sts.absent-async.example", "TXT")

        async def run() -> list[PolicyOutcome]:
            first = await resolver.aresolve("absent-async.example", now=T0)
            later = [
                await resolver.aresolve("absent-async.example", now=T0 + timedelta(seconds=s))
                for s in (1, 150, 299)
            ]
            expired = await resolver.aresolve(
                "absent-async.example", now=T0 + timedelta(seconds=300)
            )
            return [first, *later, expired]

        outcomes = asyncio.run(run())
        assert [None] * 5 == [o.policy for o in outcomes]
        assert outcomes[1] is outcomes[2]  # the cached answer is built once and reused
        assert queries + 2 == dns_server.count("_mta-sts.absent-async.example", "TXT")

    def test_single_flight_asyncio(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-20: 1000 concurrent lookups of one domain: one TXT query, one GET."""
        resolver = make_resolver(https, dns_server)

        async def run() -> list[Mode | None]:
            results = await asyncio.gather(
                *(resolver.aresolve("flight.example", now=T0) for _ in range(1000))
            )
            return [r.mode for r in results]

        start = time.perf_counter()
        modes = asyncio.run(run())
        elapsed = time.perf_counter() - start
        assert [Mode.ENFORCE] * 1000 == modes
        assert 1 == dns_server.count("_mta-sts.flight.example", "TXT")
        assert 1 == https.hits("mta-sts.flight.example")
        assert elapsed < 5

    def test_single_flight_threads(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-20: threads looking up one domain at once share one fetch."""
        resolver = make_resolver(https, dns_server)
        modes: list[Mode | None] = []
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            modes.append(resolver.resolve("slow.example", now=T0).mode)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [Mode.ENFORCE] * 8 == modes
        assert 1 == https.hits("mta-sts.slow.example")

    def test_shared_flight_error_and_cancel(self) -> None:
        """STS-FETCH-20: a failing shared lookup raises for every waiter; cancelling one is safe."""

        class Boom:
            def lookup_txt(self, qname: str) -> object:
                time.sleep(0.2)
                raise RuntimeError("adapter bug")

        resolver = PolicyResolver(dns=Boom(), fetcher=ScriptedFetcher([]))  # type: ignore[arg-type]
        errors: list[str] = []

        def work() -> None:
            try:
                resolver.resolve("example.com", now=T0)
            except RuntimeError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ["adapter bug"] * 3 == errors

        class Slow:
            async def lookup_txt(self, qname: str) -> object:
                await asyncio.sleep(0.1)
                return txt()

        aresolver = PolicyResolver(adns=Slow(), afetcher=None)  # type: ignore[arg-type]

        async def run() -> None:
            first = asyncio.ensure_future(aresolver.aresolve("example.com", now=T0))
            second = asyncio.ensure_future(aresolver.aresolve("example.com", now=T0))
            await asyncio.sleep(0.01)
            first.cancel()
            outcome = await second
            assert outcome.policy is None

        asyncio.run(run())


class TestRefresh:
    def seeded(
        self, store: MemoryPolicyStore, domain: str, body: bytes, age: timedelta
    ) -> CacheEntry:
        policy = Policy.from_text(body)
        fetched = T0 - age
        entry = CacheEntry(
            domain,
            record_id="1",
            policy=policy if policy.mode is not Mode.NONE else None,
            fetched_at=fetched,
            expires_at=fetched + timedelta(days=7),
            last_checked=fetched,
        )
        store.put(entry)
        return entry

    def test_refresh_fetches_unchanged_id(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-CACHE-10, AMB-17: a policy fetched 25 h ago is fetched again, id unchanged."""
        store = MemoryPolicyStore()
        old = self.seeded(store, "refresh.example", ENFORCE, timedelta(hours=25))
        self.seeded(store, "good.example", ENFORCE, timedelta(hours=1))
        resolver = make_resolver(https, dns_server, store=store, rng=random.Random(1))
        before = https.hits("mta-sts.refresh.example")
        report = resolver.refresh_due(now=T0)
        assert ("refresh.example",) == report.refreshed
        assert before + 1 == https.hits("mta-sts.refresh.example")
        entry = store.get("refresh.example")
        assert entry is not None
        assert T0 == entry.fetched_at
        # STS-CACHE-18: a refresh is not a use.
        assert old.last_checked == entry.last_checked
        assert 0 < report.next_run <= timedelta(days=1).total_seconds() / 10

    def test_failed_refresh_warns_and_keeps(
        self, https: HTTPSServer, dns_server: DNSServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """STS-CACHE-11, STS-CACHE-12, SEC-01: failure warns, keeps the entry, alerts late."""
        store = MemoryPolicyStore()
        old = self.seeded(store, "failing.example", ENFORCE, timedelta(days=6))
        self.seeded(store, "nonemode.example", NONE_POLICY, timedelta(days=2))
        https.route("mta-sts.nonemode.example", policy(b"", status="500 Oops"))
        resolver = make_resolver(https, dns_server, store=store)
        with caplog.at_level(logging.WARNING, logger="smtpsts.io.drivers"):
            report = resolver.refresh_due(now=T0)
        assert ("failing.example", "nonemode.example") == tuple(sorted(report.failed))
        entry = store.get("failing.example")
        assert entry is not None
        assert old.expires_at == entry.expires_at
        warnings = [r.getMessage() for r in caplog.records]
        assert 1 == sum("refresh for failing.example failed" in m for m in warnings)
        assert not any("nonemode.example" in m for m in warnings)
        assert any(m.startswith("ALERT") for m in warnings)
        https.route("mta-sts.nonemode.example", policy(NONE_POLICY))

    def test_purge_unused(self) -> None:
        """STS-CACHE-18: entries unused for long, and dead negative entries, are purged."""
        store = MemoryPolicyStore()
        stale = CacheEntry(
            "stale.example",
            record_id="1",
            fetched_at=T0 - timedelta(days=200),
            expires_at=T0 + timedelta(days=1),
            last_checked=T0 - timedelta(days=200),
        )
        store.put(stale)
        store.put(CacheEntry("neg.example", negative_until=T0 - timedelta(seconds=1)))
        resolver = PolicyResolver(
            store=store,
            dns=ScriptedDNS([txt("v=STSv1; id=1;")]),
            fetcher=ScriptedFetcher([ok(NONE_POLICY)]),
        )
        report = resolver.refresh_due(now=T0)
        assert ("stale.example",) == report.refreshed
        # Refreshed, but unused for 200 days: purged.
        assert ["neg.example", "stale.example"] == sorted(report.purged)
        assert [] == list(store.entries())

    @pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
    def test_jitter(self, seed: int) -> None:
        """STS-CACHE-10: jitter brings a refresh forward by a random part of the window."""
        store = MemoryPolicyStore()
        fetched = T0 - timedelta(hours=0.95 * 24)
        store.put(
            CacheEntry(
                "example.com",
                record_id="1",
                fetched_at=fetched,
                expires_at=fetched + timedelta(days=30),
                last_checked=T0,
            )
        )
        fetcher = ScriptedFetcher([ok()])
        resolver = PolicyResolver(
            store=store,
            dns=ScriptedDNS([txt("v=STSv1; id=1;")]),
            fetcher=fetcher,
            rng=random.Random(seed),
            jitter=0.1,
        )
        expected = 0.95 >= 1 - 0.1 * random.Random(seed).random()
        report = resolver.refresh_due(now=T0)
        assert expected == (report.refreshed == ("example.com",))
        assert int(expected) == len(fetcher.asked)
        with pytest.raises(ValueError, match="jitter"):
            PolicyResolver(jitter=1)

    def test_async_refresh(self, https: HTTPSServer, dns_server: DNSServer, tmp_path: Path) -> None:
        """STS-CACHE-10, STS-CACHE-17: the asyncio refresh over an sqlite store."""
        store = SQLitePolicyStore(tmp_path / "p.db")
        self.seeded(store, "refresh.example", ENFORCE, timedelta(hours=30))  # type: ignore[arg-type]
        resolver = make_resolver(https, dns_server, store=store)
        report = asyncio.run(resolver.arefresh_due(now=T0))
        assert ("refresh.example",) == report.refreshed
        entry = store.get("refresh.example")
        assert entry is not None
        assert T0 == entry.fetched_at
        store.close()


class TestRefreshForever:
    def test_loop_runs_and_survives_errors(self, caplog: pytest.LogCaptureFixture) -> None:
        """STS-CACHE-10: the refresh loop runs, waits the jittered interval, survives a failure."""
        calls: list[float] = []

        class FlakyStore(MemoryPolicyStore):
            def due_for_refresh(self, now, interval=timedelta(days=1)):  # type: ignore[no-untyped-def]
                if len(calls) == 1:
                    raise OSError("disk on fire")
                return super().due_for_refresh(now, interval)

        resolver = PolicyResolver(store=FlakyStore(), rng=random.Random(3))

        class StopLoopError(Exception):
            pass

        async def sleep(seconds: float) -> None:
            calls.append(seconds)
            if len(calls) == 3:
                raise StopLoopError

        with caplog.at_level(logging.ERROR), pytest.raises(StopLoopError):
            asyncio.run(resolver.arefresh_forever(sleep=sleep))
        day = timedelta(days=1).total_seconds()
        assert all(0.9 * day / 10 <= c <= day / 10 for c in calls)
        assert "refresh run failed" in caplog.text


class TestFacade:
    def test_async_store_only(self) -> None:
        """STS-CACHE-17: an asyncio store serves aresolve; resolve says it cannot."""
        resolver = PolicyResolver(store=SyncAsAsyncStore(MemoryPolicyStore()))
        with pytest.raises(UsageError):
            resolver.resolve("example.com")
        with pytest.raises(UsageError):
            resolver.refresh_due()

    def test_default_adapters(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-FETCH-01: the facade builds DNS and HTTPS adapters from its settings."""
        resolver = make_resolver(https, dns_server)
        assert isinstance(resolver.dns, DNSResolver)
        assert isinstance(resolver.fetcher, HTTPSFetcher)
        assert isinstance(resolver.adns, AsyncDNSResolver)
        assert isinstance(resolver.afetcher, AsyncHTTPSFetcher)
        assert resolver.clock().utcoffset() is not None

    def test_temporary_error_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """STS-CACHE-09, AMB-16: a temporary DNS error with nothing cached is logged."""
        resolver = PolicyResolver(
            dns=ScriptedDNS([TXTFailure("SERVFAIL")]), fetcher=ScriptedFetcher([])
        )
        with caplog.at_level(logging.WARNING):
            outcome = resolver.resolve("example.com", now=T0)
        assert outcome.temporary_error
        assert "failed temporarily" in caplog.text

    def test_fetch_failure_backoff(self) -> None:
        """STS-FETCH-14: after a failed fetch the same id is not fetched again for 5 minutes."""
        fetcher = ScriptedFetcher([FetchFailed(FetchFailure.CONNECT_ERROR, "refused")])
        resolver = PolicyResolver(dns=ScriptedDNS([txt("v=STSv1; id=1;")] * 2), fetcher=fetcher)
        first = resolver.resolve("example.com", now=T0)
        second = resolver.resolve("example.com", now=T0 + timedelta(seconds=60))
        assert first.failure is not None
        assert second.failure is not None
        assert "backoff-after-recent-fetch-error" == second.failure.reason
        assert 1 == len(fetcher.asked)


class TestNonBlocking:
    def test_nowait(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-CACHE-16: no cache -> "no policy yet" at once; the fetch finishes in the background."""
        resolver = make_resolver(https, dns_server)

        async def run() -> None:
            first = await resolver.aresolve_nowait("nowait.example", now=T0)
            assert (None, PolicySource.NONE) == (first.policy, first.source)
            assert "no-policy-found" == first.policy_info.policy_type.value
            flight = resolver._aflights["nowait.example"]
            await flight
            second = await resolver.aresolve_nowait("nowait.example", now=T0)
            assert (Mode.ENFORCE, PolicySource.CACHED) == (second.mode, second.source)
            await asyncio.gather(*resolver._aflights.values())

        dns_server.add("_mta-sts.nowait.example", "TXT", '"v=STSv1; id=1;"')
        https.route("mta-sts.nowait.example", policy())
        resolver.connect_to.update(https.connect_to("mta-sts.nowait.example"))
        asyncio.run(run())

    def test_background_failure_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """STS-CACHE-16: a background lookup that crashes is logged, not lost silently."""

        class Broken:
            async def lookup_txt(self, qname: str) -> object:
                raise RuntimeError("adapter bug")

        resolver = PolicyResolver(adns=Broken())  # type: ignore[arg-type]

        async def run() -> None:
            outcome = await resolver.aresolve_nowait("example.com", now=T0)
            assert outcome.policy is None
            await asyncio.sleep(0.01)

        with caplog.at_level(logging.ERROR):
            asyncio.run(run())
        assert "lookup of example.com failed" in caplog.text

    def test_logs_use_a_labels(self, caplog: pytest.LogCaptureFixture) -> None:
        """SEC-15: log lines name domains as A-labels, even when asked with a U-label."""
        resolver = PolicyResolver(
            dns=ScriptedDNS([TXTFailure("SERVFAIL")]), fetcher=ScriptedFetcher([])
        )
        with caplog.at_level(logging.WARNING):
            resolver.resolve("Bücher.example", now=T0)
        assert "xn--bcher-kva.example" in caplog.text
        assert "ü" not in caplog.text


def test_measure_uncached_vs_cached(https: HTTPSServer, dns_server: DNSServer) -> None:
    """STS-CACHE-04: a cached lookup (TXT check only) is faster than an uncached one."""
    resolver = make_resolver(https, dns_server)
    start = time.perf_counter()
    resolver.resolve("good.example", now=T0)
    uncached = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(20):
        resolver.resolve("good.example", now=T0)
    cached = (time.perf_counter() - start) / 20
    print(f"uncached {uncached * 1000:.2f} ms, cached {cached * 1000:.2f} ms")
    assert cached < uncached
    assert attrs.has(RefreshReport)


class TestRecheckBeforeBounce:
    TESTING = b"version: STSv1\r\nmode: testing\r\nmx: *.example.net\r\nmax_age: 86400\r\n"

    def _resolver(self, https: HTTPSServer, dns_server: DNSServer, *domains: str) -> PolicyResolver:
        return PolicyResolver(
            trust=https.trust,
            nameservers=[dns_server.address],
            connect_to=https.connect_to(*(f"mta-sts.{d}" for d in domains)),
            config=PolicyConfig(timeout=5),
        )

    def test_new_id_found_despite_backoff(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-APPLY-10: before bouncing, _mta-sts is checked again past the fetch backoff; a new id whose policy is testing is applied."""
        name = "recheck.example"
        dns_server.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=1;"')
        https.route(f"mta-sts.{name}", policy())
        resolver = self._resolver(https, dns_server, name)
        assert Mode.ENFORCE == resolver.resolve(name, T0).mode
        # The domain publishes id 2, but its first fetch fails: backoff (STS-FETCH-14).
        dns_server.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=2;"')
        https.route(f"mta-sts.{name}", policy(b"", status="500 Oops"))
        assert Mode.ENFORCE == resolver.resolve(name, T0 + timedelta(minutes=1)).mode
        https.route(f"mta-sts.{name}", policy(self.TESTING))
        later = T0 + timedelta(minutes=2)
        assert Mode.ENFORCE == resolver.resolve(name, later).mode  # still in backoff

        final = resolver.recheck_before_bounce(name, later)

        entry = resolver.store.get(name)
        assert entry is not None
        assert (Mode.TESTING, PolicySource.FRESH, "2", None) == (
            final.mode,
            final.source,
            entry.record_id,
            entry.backoff_id,
        )
        assert (Mode.TESTING, PolicySource.CACHED) == (
            (again := resolver.resolve(name, later)).mode,
            again.source,
        )

    def test_negative_answer_not_trusted(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-APPLY-10: a cached "no record" answer is bypassed; nothing new means the same outcome."""
        name = "recheck-neg.example"
        dns_server.remove(f"_mta-sts.{name}")
        https.route(f"mta-sts.{name}", policy())
        resolver = self._resolver(https, dns_server, name)
        assert resolver.resolve(name, T0).policy is None  # negative entry stored
        dns_server.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=1;"')
        assert resolver.resolve(name, T0 + timedelta(seconds=10)).policy is None

        final = resolver.recheck_before_bounce(name, T0 + timedelta(seconds=10))
        same = resolver.recheck_before_bounce(name, T0 + timedelta(seconds=20))

        assert (Mode.ENFORCE, Mode.ENFORCE, PolicySource.CACHED) == (
            final.mode,
            same.mode,
            same.source,
        )
        fresh = self._resolver(https, dns_server, "absent.example")
        assert None is fresh.recheck_before_bounce("absent.example", T0).policy

    @pytest.mark.asyncio
    async def test_asyncio_form(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """STS-APPLY-10: arecheck_before_bounce finds a new id past the backoff, with an asyncio store."""
        name = "arecheck.example"
        dns_server.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=1;"')
        https.route(f"mta-sts.{name}", policy())
        resolver = PolicyResolver(
            store=SyncAsAsyncStore(MemoryPolicyStore()),
            trust=https.trust,
            nameservers=[dns_server.address],
            connect_to=https.connect_to(f"mta-sts.{name}"),
            config=PolicyConfig(timeout=5),
        )
        assert Mode.ENFORCE == (await resolver.aresolve(name, T0)).mode
        dns_server.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=2;"')
        https.route(f"mta-sts.{name}", policy(b"", status="500 Oops"))
        later = T0 + timedelta(minutes=1)
        assert Mode.ENFORCE == (await resolver.aresolve(name, later)).mode  # fetch failed
        https.route(f"mta-sts.{name}", policy(self.TESTING))
        assert Mode.ENFORCE == (await resolver.aresolve(name, later)).mode  # backoff

        final = await resolver.arecheck_before_bounce(name, later)

        entry = await resolver.astore.get(name)
        assert entry is not None
        assert (Mode.TESTING, PolicySource.FRESH, "2") == (
            final.mode,
            final.source,
            entry.record_id,
        )
        same = await resolver.arecheck_before_bounce(name, later + timedelta(seconds=5))
        assert (Mode.TESTING, PolicySource.CACHED) == (same.mode, same.source)
        with pytest.raises(UsageError, match="asyncio store"):
            resolver.recheck_before_bounce(name, later)


class TestConversations:
    """Issue 11: one generator per conversation, run by drive() and adrive() alike."""

    def test_machine_steps(self) -> None:
        """STYLE.md §3.5, STS-FETCH-19: PolicyResolution.steps() yields the machine's actions and returns Resolved."""
        steps = PolicyResolution("example.com", cached=None, now=T0).steps()
        assert LookupTXT("_mta-sts.example.com.") == next(steps)
        fetch = steps.send(txt("v=STSv1; id=1;"))
        assert isinstance(fetch, FetchPolicy)
        with pytest.raises(StopIteration) as stop:
            steps.send(ok(ENFORCE))
        resolved = stop.value.value
        assert isinstance(resolved, Resolved)
        assert (Mode.ENFORCE, "1") == (resolved.outcome.mode, resolved.store.record_id)

    def test_machine_steps_negative_cache(self) -> None:
        """STS-CACHE-15: a negative entry resolves without any action: steps() yields nothing."""
        cached = CacheEntry("example.com", negative_until=T0 + timedelta(minutes=5))
        steps = PolicyResolution("example.com", cached=cached, now=T0).steps()
        with pytest.raises(StopIteration) as stop:
            next(steps)
        assert PolicySource.NONE == stop.value.value.outcome.source

    def test_same_answers_sync_and_async(self) -> None:
        """Issue 11: the sync and asyncio loops run the same conversation to the same outcome and entry."""
        sync_store = MemoryPolicyStore()
        sync = resolve_policy(
            "example.com",
            resolver=ScriptedDNS([txt("v=STSv1; id=1;")]),
            fetcher=ScriptedFetcher([ok(ENFORCE)]),
            store=sync_store,
            now=T0,
        )
        async_store = SyncAsAsyncStore(MemoryPolicyStore())
        asynced = asyncio.run(
            aresolve_policy(
                "example.com",
                resolver=AsyncScripted(ScriptedDNS([txt("v=STSv1; id=1;")])),
                fetcher=AsyncScripted(ScriptedFetcher([ok(ENFORCE)])),
                store=async_store,
                now=T0,
            )
        )
        assert sync == asynced
        assert sync_store.get("example.com") == asyncio.run(async_store.get("example.com"))

    def test_unknown_request(self) -> None:
        """Issue 11: a perform function refuses a request it does not know (a bug, never a verdict)."""
        store = MemoryPolicyStore()
        perform = perform_with(ScriptedDNS([]).lookup_txt, ScriptedFetcher([]).fetch, store)
        with pytest.raises(TypeError, match="cannot perform"):
            perform(RefreshEach((), T0))
        aperform = aperform_with(
            AsyncScripted(ScriptedDNS([])).lookup_txt,
            AsyncScripted(ScriptedFetcher([])).fetch,
            SyncAsAsyncStore(store),
        )
        with pytest.raises(TypeError, match="cannot perform"):
            asyncio.run(aperform(RefreshEach((), T0)))


class AsyncScripted:
    """An asyncio face for a scripted DNS or fetcher fake."""

    def __init__(self, fake: ScriptedDNS | ScriptedFetcher) -> None:
        self.fake = fake

    async def lookup_txt(self, qname: str) -> object:
        return self.fake.lookup_txt(qname)  # type: ignore[union-attr]

    async def fetch(self, request: FetchPolicy) -> object:
        return self.fake.fetch(request)  # type: ignore[union-attr]


class TestAdapterNames:
    """Issue 11: the DNS adapter arguments are dns=/adns=; resolver=/aresolver= work for one release."""

    def test_old_keywords_warn(self) -> None:
        """Issue 11: resolver= and aresolver= still set the adapters, with a DeprecationWarning each."""
        dns, adns = ScriptedDNS([]), AsyncScripted(ScriptedDNS([]))
        with pytest.warns(DeprecationWarning, match=r"resolver=\.\.\.\) is deprecated; use dns="):
            sync = PolicyResolver(resolver=dns)
        with pytest.warns(DeprecationWarning, match=r"aresolver=\.\.\.\) is deprecated; use adns="):
            asynced = PolicyResolver(aresolver=adns)  # type: ignore[arg-type]
        assert (dns, adns) == (sync.dns, asynced.adns)

    def test_old_properties_warn(self) -> None:
        """Issue 11: the .resolver and .aresolver properties are deprecated names of .dns and .adns."""
        dns, adns = ScriptedDNS([]), AsyncScripted(ScriptedDNS([]))
        resolver = PolicyResolver(dns=dns, adns=adns)  # type: ignore[arg-type]
        with pytest.warns(DeprecationWarning, match="use .dns"):
            assert dns is resolver.resolver
        with pytest.warns(DeprecationWarning, match="use .adns"):
            assert adns is resolver.aresolver

    def test_both_names_refused(self) -> None:
        """Issue 11: giving the old and the new keyword at once is a TypeError."""
        with pytest.raises(TypeError, match="give dns= only"):
            PolicyResolver(dns=ScriptedDNS([]), resolver=ScriptedDNS([]))


class TestKnownEntries:
    """Issue 10: the process-local view a PolicyResolver answers from when the store fails."""

    def test_burst_summarises(self, caplog: pytest.LogCaptureFixture) -> None:
        """Issue 17: repeated fault warnings are logged once, then as one summary with a count."""
        burst = Burst(every=60)
        with caplog.at_level(logging.WARNING):
            burst.warn("fault %s", "a")
            burst.warn("fault %s", "b")
            burst.last -= 61
            burst.warn("fault %s", "c")
        assert ["fault a", "fault c (1 more like it since the last report)"] == [
            r.getMessage() for r in caplog.records
        ]

    def test_bounded(self) -> None:
        """Issue 10: at most `limit` live entries and failed-check outcomes are remembered."""
        view = KnownEntries(1, dict.fromkeys(STATS, 0))
        first, second = (
            CacheEntry(
                d,
                policy=Policy.from_text(ENFORCE),
                record_id="1",
                fetched_at=T0,
                expires_at=T0 + timedelta(days=1),
            )
            for d in ("a.example", "b.example")
        )
        view.remember(first)
        view.remember(second)
        assert ["b.example"] == list(view.entries)
        for entry in (first, second):
            outcome = attrs.evolve(
                cached_outcome(entry, T0),
                used_cache_after_failure=True,  # type: ignore[arg-type]
            )
            view.settle(entry.domain, outcome, Resolved(outcome))
        assert ["b.example"] == list(view.fallbacks)
