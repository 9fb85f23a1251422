"""
PolicyResolver answers from a live cached policy at once, and local faults never weaken it.

Issue 10 (downgrade resistance): while a cached policy is live, no DNS or
HTTPS silence, no deadline, no store error and no local fault may produce an
outcome weaker than that policy (RFC 8461 §5.1, §10; STS-CACHE-06,
STS-CACHE-07, SEC-02), and the answer must not wait on the network. These
tests drive the resolver with scripted adapters that can hold an answer back,
so "did not wait" is shown by the network still being blocked when the
answer arrives, not by a timer.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections import deque
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest

from fakes import ENFORCE, T0, ok, txt
from smtpsts import LocalResourceError, LookupTimeoutError, StoreError
from smtpsts.actions import FetchFailed, FetchFailure, FetchPolicy, TXTFailure
from smtpsts.cache import CacheEntry, PolicyOutcome, PolicySource
from smtpsts.io.deliver import AsyncDelivery, DeliveryStatus, adeliver_connection
from smtpsts.io.dns import AsyncDNSResolver
from smtpsts.io.drivers import PolicyResolver, resolve_policy
from smtpsts.lab.scenarios import HELO, Lab
from smtpsts.policy import Mode, Policy
from smtpsts.stores import SyncAsAsyncStore
from smtpsts.stores.memory import MemoryPolicyStore

DOMAIN = "example.com"
NEW_ENFORCE = ENFORCE.replace(b"mail.example.com", b"mx2.example.com")


def learnt(store: MemoryPolicyStore | None = None, *, record_id: str = "1") -> MemoryPolicyStore:
    """A store holding a live enforce policy for DOMAIN fetched at T0."""
    store = store if store is not None else MemoryPolicyStore()
    store.put(
        CacheEntry(
            DOMAIN,
            record_id=record_id,
            policy=Policy.from_text(ENFORCE),
            fetched_at=T0,
            expires_at=T0 + timedelta(days=1),
            last_checked=T0,
        )
    )
    return store


def scripted(script: deque[Any]) -> Any:
    """The next scripted result; an exception in the script is raised instead."""
    result = script.popleft()
    if isinstance(result, BaseException):
        raise result
    return result


@attrs.define
class GatedDNS:
    """Answers TXT lookups from a script, each only once ``gate`` is set (sync and asyncio)."""

    script: deque[Any] = attrs.field(converter=deque)
    gate: threading.Event = attrs.field(factory=threading.Event)
    asked: list[str] = attrs.field(factory=list)

    def lookup_txt(self, qname: str) -> Any:
        """Wait for the gate, then answer (or raise) the next scripted result."""
        self.asked.append(qname)
        assert self.gate.wait(10), "the test never opened the DNS gate"
        return scripted(self.script)


@attrs.define
class AsyncGatedDNS:
    """The asyncio form of :class:`GatedDNS`."""

    script: deque[Any] = attrs.field(converter=deque)
    gate: asyncio.Event = attrs.field(factory=asyncio.Event)
    asked: list[str] = attrs.field(factory=list)

    async def lookup_txt(self, qname: str) -> Any:
        """Wait for the gate, then answer (or raise) the next scripted result."""
        self.asked.append(qname)
        await self.gate.wait()
        return scripted(self.script)


@attrs.define
class Fetcher:
    """Answers fetches from a script (sync and asyncio); an exception in the script is raised."""

    script: deque[Any] = attrs.field(converter=deque)
    asked: list[FetchPolicy] = attrs.field(factory=list)

    def fetch(self, request: FetchPolicy) -> Any:
        """Answer the next scripted result."""
        self.asked.append(request)
        return scripted(self.script)


@attrs.define
class AsyncFetcher(Fetcher):
    """The asyncio form of :class:`Fetcher`."""

    async def fetch(self, request: FetchPolicy) -> Any:  # type: ignore[override]
        """Answer the next scripted result."""
        return Fetcher.fetch(self, request)


class BrokenStore(MemoryPolicyStore):
    """A memory store whose reads and writes can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: BaseException | None = None
        self.write_failing: BaseException | None = None

    def get(self, domain: str) -> CacheEntry | None:
        """Fail when told to, else read."""
        if self.failing is not None:
            raise self.failing
        return super().get(domain)

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """Fail when told to, else compare-and-set."""
        if self.write_failing is not None:
            raise self.write_failing
        return super().replace(domain, previous, entry)


EMFILE = LocalResourceError("connect: [Errno 24] Too many open files", errno=errno.EMFILE)


class TestSyncCacheFirst:
    def test_live_policy_answers_while_dns_hangs(self) -> None:
        """SEC-51, SEC-50: the cached enforce policy is the answer while the TXT check still waits."""
        dns = GatedDNS([TXTFailure("timeout")])
        resolver = PolicyResolver(store=learnt(), dns=dns, fetcher=Fetcher([]))

        outcome = resolver.resolve(DOMAIN, now=T0 + timedelta(hours=1))

        assert (Mode.ENFORCE, PolicySource.CACHED) == (outcome.mode, outcome.source)
        assert not dns.gate.is_set()  # answered before the network did anything
        dns.gate.set()
        assert resolver.join_background(5)
        assert ["_mta-sts.example.com."] == dns.asked
        assert 1 == resolver.stats["background_checks"]
        assert 1 == resolver.stats["cache_answers"]

    def test_failed_check_is_reported_on_later_answers(self) -> None:
        """STS-CACHE-07: after a failed check, answers carry the fallback failure until one succeeds."""
        dns = GatedDNS([TXTFailure("SERVFAIL"), txt("v=STSv1; id=1;")])
        dns.gate.set()
        resolver = PolicyResolver(store=learnt(), dns=dns, fetcher=Fetcher([]))
        now = T0 + timedelta(hours=1)

        first = resolver.resolve(DOMAIN, now=now)
        resolver.join_background(5)
        second = resolver.resolve(DOMAIN, now=now)
        resolver.join_background(5)
        third = resolver.resolve(DOMAIN, now=now)

        assert first.failure is None
        assert second.used_cache_after_failure
        assert second.failure is not None
        assert "txt-lookup-failed+fallback-to-cached-policy" == second.failure.reason
        assert Mode.ENFORCE == second.mode
        assert third.failure is None
        resolver.join_background(5)

    def test_new_id_replaces_policy_only_after_fetch(self) -> None:
        """STS-CACHE-05, STS-CACHE-13: a new id is fetched behind the answer; the next answer uses it."""
        dns = GatedDNS([txt("v=STSv1; id=2;")])
        dns.gate.set()
        fetcher = Fetcher([ok(NEW_ENFORCE)])
        resolver = PolicyResolver(store=learnt(), dns=dns, fetcher=fetcher)
        now = T0 + timedelta(hours=1)

        old = resolver.resolve(DOMAIN, now=now)
        resolver.join_background(5)
        new = resolver.resolve(DOMAIN, now=now)

        assert "1" == old.record_id
        assert ("2", PolicySource.CACHED) == (new.record_id, new.source)
        assert new.policy is not None
        assert new.policy.matches("mx2.example.com")
        resolver.join_background(5)

    def test_inline_check_when_configured(self) -> None:
        """check_in_background=False checks first, and still keeps the cached policy on failure."""
        dns = GatedDNS([TXTFailure("timeout")])
        dns.gate.set()
        resolver = PolicyResolver(
            store=learnt(), dns=dns, fetcher=Fetcher([]), check_in_background=False
        )

        outcome = resolver.resolve(DOMAIN, now=T0 + timedelta(hours=1))

        assert Mode.ENFORCE == outcome.mode
        assert outcome.used_cache_after_failure
        assert 0 == resolver.stats["background_checks"]

    def test_background_checks_are_bounded(self) -> None:
        """Issue 10 item 6: no more than max_background checks run at once; the rest are skipped."""
        dns = GatedDNS([txt("v=STSv1; id=1;")])
        store = MemoryPolicyStore()
        for name in ("a.example", "b.example"):
            store.put(
                CacheEntry(
                    name,
                    record_id="1",
                    policy=Policy.from_text(ENFORCE),
                    fetched_at=T0,
                    expires_at=T0 + timedelta(days=1),
                )
            )
        resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([]), max_background=1)
        now = T0 + timedelta(hours=1)

        resolver.resolve("a.example", now=now)
        resolver.resolve("b.example", now=now)
        resolver.resolve("a.example", now=now)  # already being checked: nothing new

        assert 1 == resolver.stats["background_skipped"]
        assert not resolver.wait_for_check("a.example", 0.01)
        dns.gate.set()
        assert resolver.wait_for_check("a.example", 5)
        assert resolver.wait_for_check("b.example", 0)
        assert resolver.join_background(5)
        assert ["_mta-sts.a.example."] == dns.asked
        resolver.close()

    def test_join_background_times_out(self) -> None:
        """join_background reports a check that is still running when its time is up."""
        dns = GatedDNS([txt("v=STSv1; id=1;")])
        resolver = PolicyResolver(store=learnt(), dns=dns, fetcher=Fetcher([]))
        resolver.resolve(DOMAIN, now=T0 + timedelta(hours=1))

        assert not resolver.join_background(0.05)
        dns.gate.set()
        assert resolver.join_background(5)
        resolver.close()
        resolver.close()  # idempotent


class TestSyncLocalFaults:
    def test_local_fault_leaves_no_backoff(self) -> None:
        """SEC-52: EMFILE on the fetch is no fetch failure: no backoff, the next lookup fetches."""
        dns = GatedDNS([txt("v=STSv1; id=1;"), txt("v=STSv1; id=1;")])
        dns.gate.set()
        fetcher = Fetcher([EMFILE, ok()])
        store = MemoryPolicyStore()
        resolver = PolicyResolver(store=store, dns=dns, fetcher=fetcher)

        with pytest.raises(LocalResourceError):
            resolver.resolve(DOMAIN, now=T0)
        assert store.get(DOMAIN) is None  # nothing written: no backoff, no negative entry
        outcome = resolver.resolve(DOMAIN, now=T0 + timedelta(seconds=2))

        assert (Mode.ENFORCE, PolicySource.FRESH) == (outcome.mode, outcome.source)
        assert 1 == resolver.stats["local_faults"]

    def test_local_fault_in_check_keeps_policy(self) -> None:
        """A background check that hits EMFILE leaves the cached policy and writes nothing."""
        dns = GatedDNS([txt("v=STSv1; id=2;")])
        dns.gate.set()
        store = learnt()
        before = store.get(DOMAIN)
        resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([EMFILE]))
        now = T0 + timedelta(hours=1)

        resolver.resolve(DOMAIN, now=now)
        resolver.join_background(5)
        after = resolver.resolve(DOMAIN, now=now)

        assert before == store.get(DOMAIN)
        assert (Mode.ENFORCE, "1", None) == (after.mode, after.record_id, after.failure)
        assert 1 == resolver.stats["local_faults"]
        resolver.join_background(5)

    def test_internal_error_with_live_policy_answers_from_it(self) -> None:
        """An unexpected exception with check_in_background=False still applies the cached policy."""
        dns = GatedDNS([RuntimeError("adapter bug")])
        dns.gate.set()
        resolver = PolicyResolver(
            store=learnt(), dns=dns, fetcher=Fetcher([]), check_in_background=False
        )

        outcome = resolver.resolve(DOMAIN, now=T0 + timedelta(hours=1))

        assert (Mode.ENFORCE, None) == (outcome.mode, outcome.failure)
        assert 1 == resolver.stats["internal_errors"]

    def test_internal_error_without_policy_raises(self) -> None:
        """An unexpected exception with nothing cached reaches the caller (the server answers TEMP)."""
        dns = GatedDNS([RuntimeError("adapter bug")])
        dns.gate.set()
        resolver = PolicyResolver(dns=dns, fetcher=Fetcher([]))

        with pytest.raises(RuntimeError, match="adapter bug"):
            resolver.resolve(DOMAIN, now=T0)

    def test_store_error_answers_from_known_policy(self) -> None:
        """SEC-50, SEC-52: a store that fails later still gets the policy this process read."""
        dns = GatedDNS([txt("v=STSv1; id=1;")] * 2)
        dns.gate.set()
        store = BrokenStore()
        learnt(store)
        resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([]))
        now = T0 + timedelta(hours=1)
        resolver.resolve(DOMAIN, now=now)
        resolver.join_background(5)

        store.failing = StoreError("database is locked", domain=DOMAIN)
        outcome = resolver.resolve(DOMAIN, now=now)

        assert (Mode.ENFORCE, PolicySource.CACHED) == (outcome.mode, outcome.source)
        assert 1 == resolver.stats["store_errors"]
        store.failing = None
        resolver.join_background(5)

    def test_store_error_without_known_policy_raises(self) -> None:
        """Issue 10 item 4: an unknown policy state is a StoreError (TEMP), never 'no policy'."""
        store = BrokenStore()
        store.failing = OSError(errno.EIO, "disk I/O error")
        resolver = PolicyResolver(store=store, dns=GatedDNS([]), fetcher=Fetcher([]))

        with pytest.raises(StoreError, match="cannot be read") as caught:
            resolver.resolve(DOMAIN, now=T0)
        assert DOMAIN == caught.value.domain

    def test_store_write_failure_keeps_outcome(self) -> None:
        """A store that cannot take a fetched policy does not change the outcome; it is remembered."""
        dns = GatedDNS([txt("v=STSv1; id=1;")])
        dns.gate.set()
        store = BrokenStore()
        store.write_failing = StoreError("read-only database", domain=DOMAIN)
        resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([ok()]))

        fresh = resolver.resolve(DOMAIN, now=T0)
        store.failing = StoreError("read-only database", domain=DOMAIN)
        again = resolver.resolve(DOMAIN, now=T0 + timedelta(minutes=1))

        assert (Mode.ENFORCE, PolicySource.FRESH) == (fresh.mode, fresh.source)
        assert Mode.ENFORCE == again.mode
        store.failing = None
        resolver.join_background(5)

    def test_plain_driver_propagates_local_fault(self) -> None:
        """resolve_policy ends with the local fault and writes nothing (issue 17 item 2)."""
        store = MemoryPolicyStore()
        dns = GatedDNS([txt("v=STSv1; id=1;")])
        dns.gate.set()

        with pytest.raises(LocalResourceError):
            resolve_policy(DOMAIN, resolver=dns, fetcher=Fetcher([EMFILE]), store=store, now=T0)
        assert store.get(DOMAIN) is None


@pytest.mark.asyncio
class TestAsyncCacheFirst:
    async def test_live_policy_answers_while_dns_hangs(self) -> None:
        """Issue 10 item 2 (asyncio): the cached policy answers while the TXT check waits."""
        dns = AsyncGatedDNS([TXTFailure("timeout")])
        resolver = PolicyResolver(store=learnt(), adns=dns, afetcher=AsyncFetcher([]))

        outcome = await resolver.aresolve(DOMAIN, now=T0 + timedelta(hours=1), timeout=0.5)
        await asyncio.sleep(0)

        assert (Mode.ENFORCE, PolicySource.CACHED) == (outcome.mode, outcome.source)
        assert ["_mta-sts.example.com."] == dns.asked  # the check started, and waits
        assert not await resolver.await_check(DOMAIN, 0.01)
        dns.gate.set()
        assert await resolver.await_check(DOMAIN, 5)
        await resolver.ajoin_background()
        again = await resolver.aresolve(DOMAIN, now=T0 + timedelta(hours=1))
        assert again.used_cache_after_failure
        await resolver.aclose()

    async def test_uncached_lookup_times_out_and_goes_on(self) -> None:
        """SEC-53: a deadline with nothing cached is LookupTimeoutError; the shared flight finishes."""
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")])
        resolver = PolicyResolver(adns=dns, afetcher=AsyncFetcher([ok()]))

        with pytest.raises(LookupTimeoutError) as caught:
            await resolver.aresolve(DOMAIN, now=T0, timeout=0.05)
        dns.gate.set()
        outcome = await resolver.aresolve(DOMAIN, now=T0, timeout=5)

        assert DOMAIN == caught.value.domain
        assert 1 == resolver.stats["lookup_timeouts"]
        assert Mode.ENFORCE == outcome.mode
        assert ["_mta-sts.example.com."] == dns.asked  # one flight, joined

    async def test_uncached_lookups_bounded_cached_never_wait(self) -> None:
        """
        SEC-56, issue 10: at most ``max_lookups`` uncached lookups run at once.

        Five uncached domains whose DNS hangs: two lookups reach the network
        and end in LookupTimeoutError at their deadline; three wait for a slot
        and end in LocalResourceError (this host's limit: Postfix gets TEMP);
        a live cached domain answers at once while every slot is taken.
        """
        dns = AsyncGatedDNS([TXTFailure("timeout")] * 6)
        resolver = PolicyResolver(
            store=learnt(), adns=dns, afetcher=AsyncFetcher([]), max_lookups=2
        )
        names = [f"d{i}.example.net" for i in range(5)]

        waits = [resolver.aresolve(name, now=T0, timeout=0.2) for name in names]
        results = await asyncio.gather(*waits, return_exceptions=True)
        cached = await resolver.aresolve(DOMAIN, now=T0 + timedelta(hours=1), timeout=0.2)

        # Two ran past their deadline; three never got a slot: a local fault.
        expected = [LookupTimeoutError] * 2 + [LocalResourceError] * 3
        assert expected == [type(r) for r in results]
        assert ["_mta-sts.d0.example.net.", "_mta-sts.d1.example.net."] == dns.asked[:2]
        assert {"_mta-sts.d2.example.net.", "_mta-sts.d3.example.net."}.isdisjoint(dns.asked)
        assert 3 == resolver.stats["lookups_queued"]
        assert (Mode.ENFORCE, PolicySource.CACHED) == (cached.mode, cached.source)
        dns.gate.set()
        await resolver.aclose()

    async def test_zero_deadline_left(self) -> None:
        """A deadline used up by the store read gives LookupTimeoutError without waiting at all."""
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")])
        resolver = PolicyResolver(adns=dns, afetcher=AsyncFetcher([ok()]))

        with pytest.raises(LookupTimeoutError):
            await resolver.aresolve(DOMAIN, now=T0, timeout=0)
        dns.gate.set()
        await resolver.aclose()

    async def test_slow_store_is_store_error(self) -> None:
        """SEC-53, SEC-52: a stalled store is StoreError (TEMP) when nothing live is known."""
        release = threading.Event()

        class Slow(MemoryPolicyStore):
            def get(self, domain: str) -> CacheEntry | None:
                release.wait(5)
                return super().get(domain)

        store = Slow()
        learnt(store)
        resolver = PolicyResolver(
            store=SyncAsAsyncStore(store, blocking=True),  # in a thread, as for sqlite
            adns=AsyncGatedDNS([]),
            afetcher=AsyncFetcher([]),
            store_timeout=0.05,
        )

        with pytest.raises(StoreError, match="did not answer"):
            await resolver.aresolve(DOMAIN, now=T0 + timedelta(hours=1), timeout=5)
        release.set()

    async def test_slow_store_answers_from_known_policy(self) -> None:
        """Issue 10: a stalled store after the policy was read once still gives the policy."""
        release = threading.Event()
        release.set()

        class Slow(MemoryPolicyStore):
            def get(self, domain: str) -> CacheEntry | None:
                release.wait(5)
                return super().get(domain)

        store = Slow()
        learnt(store)
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")] * 2)
        dns.gate.set()
        resolver = PolicyResolver(
            store=SyncAsAsyncStore(store, blocking=True),
            adns=dns,
            afetcher=AsyncFetcher([]),
            store_timeout=0.05,
        )
        now = T0 + timedelta(hours=1)
        await resolver.aresolve(DOMAIN, now=now)
        await resolver.ajoin_background()

        release.clear()
        outcome = await resolver.aresolve(DOMAIN, now=now)
        release.set()

        assert Mode.ENFORCE == outcome.mode
        assert 1 == resolver.stats["store_errors"]
        await resolver.aclose()

    async def test_async_local_fault_leaves_no_backoff(self) -> None:
        """Issue 17 item 2 (asyncio): EMFILE ends the lookup, nothing stored, the next one fetches."""
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")] * 2)
        dns.gate.set()
        store = MemoryPolicyStore()
        resolver = PolicyResolver(store=store, adns=dns, afetcher=AsyncFetcher([EMFILE, ok()]))

        with pytest.raises(LocalResourceError):
            await resolver.aresolve(DOMAIN, now=T0)
        assert store.get(DOMAIN) is None
        outcome = await resolver.aresolve(DOMAIN, now=T0 + timedelta(seconds=2))

        assert (Mode.ENFORCE, PolicySource.FRESH) == (outcome.mode, outcome.source)

    async def test_background_checks_are_bounded(self) -> None:
        """At most max_background asyncio checks run; more are skipped."""
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")])
        store = learnt()
        store.put(attrs.evolve(store.get(DOMAIN), domain="other.example"))  # type: ignore[arg-type]
        resolver = PolicyResolver(
            store=store, adns=dns, afetcher=AsyncFetcher([]), max_background=1
        )
        now = T0 + timedelta(hours=1)

        await resolver.aresolve(DOMAIN, now=now)
        await resolver.aresolve("other.example", now=now)

        assert 1 == resolver.stats["background_skipped"]
        assert await resolver.await_check("other.example", 0)
        dns.gate.set()
        await resolver.ajoin_background()

    async def test_refresh_survives_local_fault(self) -> None:
        """Issue 10 item 6: refreshes are bounded and a local fault only fails that domain."""
        store = learnt()
        dns = AsyncGatedDNS([txt("v=STSv1; id=1;")])
        dns.gate.set()
        resolver = PolicyResolver(
            store=store, adns=dns, afetcher=AsyncFetcher([EMFILE]), max_background=1
        )

        report = await resolver.arefresh_due(now=T0 + timedelta(days=1) - timedelta(hours=1))

        assert (DOMAIN,) == report.failed
        assert Mode.ENFORCE == store.get(DOMAIN).mode  # type: ignore[union-attr]


def test_sync_refresh_survives_local_fault() -> None:
    """A sync refresh that hits EMFILE fails that domain only; the cached policy stays."""
    store = learnt()
    dns = GatedDNS([txt("v=STSv1; id=1;")])
    dns.gate.set()
    resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([EMFILE]))

    report = resolver.refresh_due(now=T0 + timedelta(days=1) - timedelta(hours=1))

    assert (DOMAIN,) == report.failed
    assert Mode.ENFORCE == store.get(DOMAIN).mode  # type: ignore[union-attr]


def test_fetch_failure_is_still_a_remote_verdict() -> None:
    """A real fetch failure (the host answered 500) still backs off (STS-FETCH-14): only local faults don't."""
    dns = GatedDNS([txt("v=STSv1; id=1;")])
    dns.gate.set()
    store = MemoryPolicyStore()
    failed = FetchFailed(FetchFailure.HTTP_STATUS, "HTTP 500")
    resolver = PolicyResolver(store=store, dns=dns, fetcher=Fetcher([failed]))

    outcome: PolicyOutcome = resolver.resolve(DOMAIN, now=T0)

    assert outcome.policy is None
    entry = store.get(DOMAIN)
    assert entry is not None
    assert "1" == entry.backoff_id


def test_bad_arguments() -> None:
    """The new knobs are checked."""
    with pytest.raises(ValueError, match="at least 1"):
        PolicyResolver(max_background=0)
    with pytest.raises(ValueError, match="at least 1"):
        PolicyResolver(max_lookups=0)
    with pytest.raises(ValueError, match="positive"):
        PolicyResolver(store_timeout=0)


class TestDeliverySurface:
    """io.deliver on the lab: a cached policy is applied, and a real policy change still delivers."""

    @pytest.fixture(scope="class")
    @classmethod
    def lab(cls) -> Iterator[Lab]:
        """A running lab with one domain that moves its mail, for each driver."""
        with Lab() as running:
            for name in ("move-sync.example", "move-async.example"):
                running.dns.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=1;"')
                running.https.route(f"mta-sts.{name}", _policy_for("mx.enforce.example"))
                running.connect_to[(f"mta-sts.{name}", 443)] = ("127.0.0.1", running.https.port)
                running.dns.set(name, "MX", "10 mx.enforce.example.")
            yield running

    @staticmethod
    def _move(lab: Lab, name: str) -> None:
        # The domain moves its mail (RFC 8461 §3.1): new MX, new policy, new id.
        lab.dns.set(name, "MX", "10 new.update.example.")
        lab.https.route(f"mta-sts.{name}", _policy_for("new.update.example"))
        lab.dns.set(f"_mta-sts.{name}", "TXT", '"v=STSv1; id=2;"')

    def test_policy_change_delivers_sync(self, lab: Lab) -> None:
        """The first delivery after a policy change uses the new policy once the check brought it."""
        policies = lab.resolver()
        assert "1" == policies.resolve("move-sync.example").record_id
        self._move(lab, "move-sync.example")

        delivery = lab.deliver("move-sync.example", policies)

        assert DeliveryStatus.CONNECTED == delivery.status
        assert delivery.outcome is not None
        assert "2" == delivery.outcome.record_id
        assert delivery.smtp is not None
        delivery.smtp.close()

    def test_policy_change_delivers_async(self, lab: Lab) -> None:
        """The asyncio delivery helper does the same."""

        async def go() -> AsyncDelivery:
            policies = lab.resolver()
            assert "1" == (await policies.aresolve("move-async.example")).record_id
            self._move(lab, "move-async.example")
            result = await adeliver_connection(
                "move-async.example",
                policies=policies,
                dns=AsyncDNSResolver([lab.dns.address]),
                helo_name=HELO,
                timeout=10.0,
            )
            if result.writer is not None:
                result.writer.close()
            return result

        delivery = asyncio.run(go())

        assert DeliveryStatus.CONNECTED == delivery.status
        assert delivery.outcome is not None
        assert "2" == delivery.outcome.record_id

    def test_local_fault_defers(self, lab: Lab) -> None:
        """Issue 10 item 4: a store that fails with nothing known defers the message, never delivers."""
        store = BrokenStore()
        store.failing = StoreError("database disk image is malformed", domain="enforce.example")
        policies = PolicyResolver(
            store=store, trust=lab.trust, nameservers=[lab.dns.address], connect_to=lab.connect_to
        )

        sync = lab.deliver("enforce.example", policies)

        async def go() -> AsyncDelivery:
            return await adeliver_connection(
                "enforce.example",
                policies=policies,
                dns=AsyncDNSResolver([lab.dns.address]),
                helo_name=HELO,
            )

        asynchronous = asyncio.run(go())
        for delivery in (sync, asynchronous):
            assert DeliveryStatus.DEFER == delivery.status
            assert delivery.reason.startswith("local fault, policy state unknown")
            assert delivery.outcome is None


def _policy_for(mx: str) -> bytes:
    return f"version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n".encode()
