"""
Drivers: the loops that run the policy machine against real adapters and stores.

:func:`resolve_policy` and :func:`aresolve_policy` are the whole I/O side of
one lookup (STYLE.md §3.5): they read the store, feed the
:class:`~smtpsts.cache.PolicyResolution` what the adapters answer, and write
back the entry it asks for. They decide nothing themselves.

:class:`PolicyResolver` is the object an MTA keeps: it holds the adapters,
the store, the trust anchors and the configuration, reads the clock (the core
never does), lets concurrent lookups of one domain share one flight
(STS-FETCH-20), and runs the proactive refresh (STS-CACHE-10, AMB-17) and the
purge of unused entries (STS-CACHE-18).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import attrs

from smtpsts._names import to_alabel
from smtpsts._vocab import PolicyType
from smtpsts.actions import (
    FetchFailed,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    Resolved,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
)
from smtpsts.cache import (
    DEFAULT_CONFIG,
    CacheEntry,
    PolicyConfig,
    PolicyOutcome,
    PolicyResolution,
    PolicySource,
    cached_outcome,
    negative_outcome,
)
from smtpsts.certs import TrustStore
from smtpsts.exceptions import UsageError
from smtpsts.policy import Mode
from smtpsts.stores import (
    DEFAULT_REFRESH_INTERVAL,
    AsyncPolicyStore,
    PolicyStore,
    SyncAsAsyncStore,
    is_unused,
)
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.tlsrpt.session import PolicyInfo

__all__ = [
    "AsyncDNSLookup",
    "AsyncPolicyFetcher",
    "DNSLookup",
    "PolicyFetcher",
    "PolicyResolver",
    "RefreshReport",
    "aresolve_policy",
    "resolve_policy",
]

log = logging.getLogger(__name__)

DEFAULT_UNUSED_AFTER: Final = timedelta(days=180)
"""STS-CACHE-18: entries unused this long may be purged."""

DEFAULT_JITTER: Final = 0.1
"""Refreshes are spread over the last tenth of the refresh interval."""

TXTResult = TXTAnswer | TXTNotFound | TXTFailure
FetchResult = HTTPResponse | FetchFailed


class DNSLookup(Protocol):
    """What the sync driver needs from a DNS adapter (:class:`smtpsts.io.dns.DNSResolver`)."""

    def lookup_txt(self, qname: str) -> TXTResult:
        """Answer :class:`~smtpsts.actions.LookupTXT`."""


class AsyncDNSLookup(Protocol):
    """What the asyncio driver needs from a DNS adapter."""

    async def lookup_txt(self, qname: str) -> TXTResult:
        """Answer :class:`~smtpsts.actions.LookupTXT`."""


class PolicyFetcher(Protocol):
    """What the sync driver needs from an HTTPS adapter (:class:`smtpsts.io.http.HTTPSFetcher`)."""

    def fetch(self, request: FetchPolicy) -> FetchResult:
        """Answer :class:`~smtpsts.actions.FetchPolicy`."""


class AsyncPolicyFetcher(Protocol):
    """What the asyncio driver needs from an HTTPS adapter."""

    async def fetch(self, request: FetchPolicy) -> FetchResult:
        """Answer :class:`~smtpsts.actions.FetchPolicy`."""


def _to_write(
    cached: CacheEntry | None, resolved: Resolved, *, refresh: bool
) -> tuple[bool, CacheEntry | None]:
    # What to write back: (anything?, entry or None for delete).
    entry = resolved.store
    if entry is not None:
        if refresh and cached is not None and entry.last_checked != cached.last_checked:
            # A refresh is not a use: keep the last lookup time for the purge
            # of unused entries (STS-CACHE-18).
            entry = attrs.evolve(entry, last_checked=cached.last_checked)
        return True, entry
    return resolved.delete, None


def resolve_policy(
    domain: str,
    *,
    resolver: DNSLookup,
    fetcher: PolicyFetcher,
    store: PolicyStore,
    now: datetime,
    config: PolicyConfig = DEFAULT_CONFIG,
    refresh: bool = False,
) -> PolicyOutcome:
    """
    Run one policy lookup (RFC 8461 §3.3, §5.1) with sync adapters.

    Args:
        domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
        resolver: Answers TXT lookups.
        fetcher: Answers policy fetches.
        store: Where entries live; the result is written back with
            :meth:`~smtpsts.stores.PolicyStore.replace`.
        now: The current time (timezone-aware).
        config: The machine's knobs.
        refresh: Fetch even for an unchanged ``id`` (STS-CACHE-10).

    Returns:
        The outcome to apply.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
    """
    name = to_alabel(domain)
    cached = store.get(name)
    machine = PolicyResolution(name, cached=cached, now=now, config=config, refresh=refresh)
    while True:
        action = machine.next_action()
        if isinstance(action, LookupTXT):
            machine.receive(resolver.lookup_txt(action.qname))
        elif isinstance(action, FetchPolicy):
            machine.receive(fetcher.fetch(action))
        else:
            write, entry = _to_write(cached, action, refresh=refresh)
            if write:
                store.replace(name, cached, entry)
            return action.outcome


async def aresolve_policy(
    domain: str,
    *,
    resolver: AsyncDNSLookup,
    fetcher: AsyncPolicyFetcher,
    store: AsyncPolicyStore,
    now: datetime,
    config: PolicyConfig = DEFAULT_CONFIG,
    refresh: bool = False,
) -> PolicyOutcome:
    """
    Run one policy lookup with asyncio adapters; see :func:`resolve_policy`.

    Args:
        domain: The policy domain.
        resolver: Answers TXT lookups.
        fetcher: Answers policy fetches.
        store: Where entries live.
        now: The current time (timezone-aware).
        config: The machine's knobs.
        refresh: Fetch even for an unchanged ``id``.

    Returns:
        The outcome to apply.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
    """
    name = to_alabel(domain)
    cached = await store.get(name)
    machine = PolicyResolution(name, cached=cached, now=now, config=config, refresh=refresh)
    while True:
        action = machine.next_action()
        if isinstance(action, LookupTXT):
            machine.receive(await resolver.lookup_txt(action.qname))
        elif isinstance(action, FetchPolicy):
            machine.receive(await fetcher.fetch(action))
        else:
            write, entry = _to_write(cached, action, refresh=refresh)
            if write:
                await store.replace(name, cached, entry)
            return action.outcome


@attrs.frozen
class RefreshReport:
    """
    What one run of the refresh routine did.

    Attributes:
        refreshed: Domains whose policy was fetched again successfully.
        failed: Domains whose refresh fetch failed (the cached policy stays).
        purged: Domains whose entries were removed as unused (STS-CACHE-18).
        next_run: Seconds until the routine should run again (jittered).
    """

    refreshed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    purged: tuple[str, ...] = ()
    next_run: float = 0.0


class _Flight:
    # One in-progress synchronous lookup that other threads wait for.
    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: PolicyOutcome | None = None
        self.error: BaseException | None = None


class PolicyResolver:
    """
    The MTA-facing policy resolver: adapters, store, trust, config and a clock.

    Build it once and keep it. With no adapters given it builds the default
    ones (:mod:`smtpsts.io.dns`, :mod:`smtpsts.io.http`) from ``nameservers``,
    ``trust`` and ``connect_to``.

    Args:
        store: The store: sync (used directly by :meth:`resolve`, and in a
            worker thread by :meth:`aresolve` unless it is a memory store), or
            asyncio (then only the ``a*`` methods work). In-memory by default.
        resolver: Sync DNS adapter.
        fetcher: Sync HTTPS adapter.
        aresolver: asyncio DNS adapter.
        afetcher: asyncio HTTPS adapter.
        trust: Trust anchors for policy hosts (default: the system's).
        nameservers: ``IP[:PORT]`` DNS servers for the default adapters
            (default: the system's); also used for the policy host's address.
        connect_to: ``{(host, port): (address, port)}`` overrides for the
            default fetchers.
        config: The machine's knobs.
        clock: Returns the current time (timezone-aware).
        rng: The random source for refresh jitter.
        refresh_interval: Refresh policies this long after their fetch
            (daily by default, STS-CACHE-10).
        jitter: Fraction of ``refresh_interval`` over which refreshes and
            refresh runs are spread.
        unused_after: Purge entries unused this long (STS-CACHE-18).
    """

    def __init__(
        self,
        *,
        store: PolicyStore | AsyncPolicyStore | None = None,
        resolver: DNSLookup | None = None,
        fetcher: PolicyFetcher | None = None,
        aresolver: AsyncDNSLookup | None = None,
        afetcher: AsyncPolicyFetcher | None = None,
        trust: TrustStore | None = None,
        nameservers: Sequence[str] = (),
        connect_to: dict[tuple[str, int], tuple[str, int]] | None = None,
        config: PolicyConfig = DEFAULT_CONFIG,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL,
        jitter: float = DEFAULT_JITTER,
        unused_after: timedelta = DEFAULT_UNUSED_AFTER,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        store = store if store is not None else MemoryPolicyStore()
        if inspect.iscoroutinefunction(store.get):
            self.store: PolicyStore | None = None
            self.astore: AsyncPolicyStore = store  # type: ignore[assignment]
        else:
            self.store = store  # type: ignore[assignment]
            self.astore = SyncAsAsyncStore(self.store)  # type: ignore[arg-type]
        self._resolver = resolver
        self._fetcher = fetcher
        self._aresolver = aresolver
        self._afetcher = afetcher
        self.trust = trust
        self.nameservers = tuple(nameservers)
        self.connect_to = dict(connect_to or {})
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()  # noqa: S311 -- jitter, not security
        self.refresh_interval = refresh_interval
        self.jitter = jitter
        self.unused_after = unused_after
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._aflights: dict[str, asyncio.Future[PolicyOutcome]] = {}

    # ------------------------------------------------------------------ adapters

    @property
    def resolver(self) -> DNSLookup:
        """The sync DNS adapter (built on first use)."""
        if self._resolver is None:
            from smtpsts.io.dns import DNSResolver  # noqa: PLC0415

            self._resolver = DNSResolver(self.nameservers)
        return self._resolver

    @property
    def fetcher(self) -> PolicyFetcher:
        """The sync HTTPS adapter (built on first use)."""
        if self._fetcher is None:
            from smtpsts.io.dns import DNSResolver  # noqa: PLC0415
            from smtpsts.io.http import HTTPSFetcher  # noqa: PLC0415

            self._fetcher = HTTPSFetcher(
                trust=self.trust,
                resolver=DNSResolver(self.nameservers) if self.nameservers else None,
                connect_to=self.connect_to,
            )
        return self._fetcher

    @property
    def aresolver(self) -> AsyncDNSLookup:
        """The asyncio DNS adapter (built on first use)."""
        if self._aresolver is None:
            from smtpsts.io.dns import AsyncDNSResolver  # noqa: PLC0415

            self._aresolver = AsyncDNSResolver(self.nameservers)
        return self._aresolver

    @property
    def afetcher(self) -> AsyncPolicyFetcher:
        """The asyncio HTTPS adapter (built on first use)."""
        if self._afetcher is None:
            from smtpsts.io.dns import AsyncDNSResolver  # noqa: PLC0415
            from smtpsts.io.http import AsyncHTTPSFetcher  # noqa: PLC0415

            self._afetcher = AsyncHTTPSFetcher(
                trust=self.trust,
                resolver=AsyncDNSResolver(self.nameservers) if self.nameservers else None,
                connect_to=self.connect_to,
            )
        return self._afetcher

    def _sync_store(self) -> PolicyStore:
        if self.store is None:
            raise UsageError("this resolver has an asyncio store; use the a* methods")
        return self.store

    # ------------------------------------------------------------------ lookups

    def resolve(self, domain: str, now: datetime | None = None) -> PolicyOutcome:
        """
        Look up the policy of ``domain``; threads asking for one domain share one flight.

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The outcome to apply.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
            UsageError: The store is asyncio-only.
        """
        name = to_alabel(domain)
        store = self._sync_store()
        with self._lock:
            flight = self._flights.get(name)
            leader = flight is None
            if flight is None:
                flight = self._flights[name] = _Flight()
        if not leader:
            # STS-FETCH-20: one TXT query and one fetch per domain at a time.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.outcome is not None  # set before done
            return flight.outcome
        try:
            flight.outcome = resolve_policy(
                name,
                resolver=self.resolver,
                fetcher=self.fetcher,
                store=store,
                now=now or self.clock(),
                config=self.config,
            )
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[name]
            flight.done.set()
        return _logged(flight.outcome)

    def recheck_before_bounce(self, domain: str, now: datetime | None = None) -> PolicyOutcome:
        """
        Check ``_mta-sts`` once more before a message is failed for good.

        RFC 8461 §5, §5.1 (STS-APPLY-10): when ``enforce`` failures would
        make the message bounce, the TXT record is queried again, bypassing
        smtpsts's own shortcuts (a cached "no record" answer and the fetch
        backoff of STS-FETCH-14), and a new ``id`` is fetched, stored and
        applied. Retry delivery with the outcome; bounce only when it gives
        the same policy and delivery still fails (RFC 5321 §4.5.4.1).

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The outcome to apply for the last attempt.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
            UsageError: The store is asyncio-only.
        """
        name = to_alabel(domain)
        store = self._sync_store()
        now = now or self.clock()
        stored = store.get(name)
        machine, cached = self._recheck_machine(name, stored, now)
        while True:
            action = machine.next_action()
            if isinstance(action, LookupTXT):
                machine.receive(self.resolver.lookup_txt(action.qname))
            elif isinstance(action, FetchPolicy):
                machine.receive(self.fetcher.fetch(action))
            else:
                write, entry = _to_write(cached, action, refresh=False)
                if write:
                    store.replace(name, stored, entry)
                return _logged(action.outcome)

    async def arecheck_before_bounce(
        self, domain: str, now: datetime | None = None
    ) -> PolicyOutcome:
        """
        The asyncio form of :meth:`recheck_before_bounce` (works with any store).

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The outcome to apply for the last attempt.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        stored = await self.astore.get(name)
        machine, cached = self._recheck_machine(name, stored, now)
        while True:
            action = machine.next_action()
            if isinstance(action, LookupTXT):
                machine.receive(await self.aresolver.lookup_txt(action.qname))
            elif isinstance(action, FetchPolicy):
                machine.receive(await self.afetcher.fetch(action))
            else:
                write, entry = _to_write(cached, action, refresh=False)
                if write:
                    await self.astore.replace(name, stored, entry)
                return _logged(action.outcome)

    def _recheck_machine(
        self, name: str, stored: CacheEntry | None, now: datetime
    ) -> tuple[PolicyResolution, CacheEntry | None]:
        # STS-APPLY-10: the stored entry without the shortcuts that would skip
        # the TXT check or the fetch (a negative answer, the fetch backoff).
        cached = None
        if stored is not None and stored.record_id is not None:
            cached = attrs.evolve(stored, negative_until=None, backoff_until=None, backoff_id=None)
        return PolicyResolution(name, cached=cached, now=now, config=self.config), cached

    async def aresolve(self, domain: str, now: datetime | None = None) -> PolicyOutcome:
        """
        Look up the policy of ``domain``; concurrent calls share one flight.

        All tasks asking for a domain while a lookup of it runs get that
        lookup's outcome: one TXT query and at most one fetch (STS-FETCH-20).
        Cancelling one waiting task does not cancel the shared lookup.

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The outcome to apply.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
        """
        name = to_alabel(domain)
        flight = self._aflights.get(name)
        if flight is None:
            now = now or self.clock()
            # A live negative entry (the domain had no STS record) needs no I/O at
            # all, so it skips the flight machinery (negative caching, STS-CACHE-18).
            negative = negative_outcome(await self.astore.get(name), now)
            if negative is not None:
                return negative
            flight = self._aflights.get(name) or self._start_flight(name, now)
        return await asyncio.shield(flight)

    def _start_flight(self, name: str, now: datetime) -> asyncio.Future[PolicyOutcome]:
        flight = asyncio.ensure_future(self._aresolve(name, now, refresh=False))
        self._aflights[name] = flight

        def finished(done: asyncio.Future[PolicyOutcome]) -> None:
            self._aflights.pop(name, None)
            if not done.cancelled() and done.exception() is not None:
                log.error("MTA-STS lookup of %s failed", name, exc_info=done.exception())

        flight.add_done_callback(finished)
        return flight

    async def aresolve_nowait(self, domain: str, now: datetime | None = None) -> PolicyOutcome:
        """
        Answer at once; look the policy up in the background (STS-CACHE-16).

        RFC 8461 §5.1 lets a sender deliver while the policy is fetched. This
        returns the live cached outcome if there is one, else "no policy
        yet" (as if the domain had no MTA-STS), and starts (or joins) the
        shared lookup, whose result the next call will see.

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The cached outcome, or a no-policy outcome while the lookup runs.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        if name not in self._aflights:
            self._start_flight(name, now)
        cached = cached_outcome(await self.astore.get(name), now)
        if cached is not None:
            return cached
        return PolicyOutcome(
            domain=name,
            policy=None,
            mode=None,
            source=PolicySource.NONE,
            policy_info=PolicyInfo(PolicyType.NO_POLICY_FOUND, name),
        )

    async def _aresolve(self, name: str, now: datetime, *, refresh: bool) -> PolicyOutcome:
        outcome = await aresolve_policy(
            name,
            resolver=self.aresolver,
            fetcher=self.afetcher,
            store=self.astore,
            now=now,
            config=self.config,
            refresh=refresh,
        )
        return _logged(outcome)

    # ------------------------------------------------------------------ refresh

    def _jittered(self, base: timedelta) -> timedelta:
        return base * (1 - self.jitter * self.rng.random())

    def _candidates(self, entries: list[CacheEntry], now: datetime) -> list[CacheEntry]:
        due = []
        for entry in entries:
            assert entry.fetched_at is not None  # refresh_due checked it
            assert entry.expires_at is not None
            lifetime = entry.expires_at - entry.fetched_at
            if now >= entry.fetched_at + min(self._jittered(self.refresh_interval), lifetime / 2):
                due.append(entry)
        return due

    def _report_refresh(self, entry: CacheEntry, outcome: PolicyOutcome, now: datetime) -> bool:
        if outcome.failure is None:
            return True
        mode = entry.mode
        if mode is not Mode.NONE:
            # RFC 8461 §10.2 (STS-CACHE-11): a failed refresh is a warning,
            # except for mode none.
            log.warning(
                "policy refresh for %s failed: %s (%s)",
                entry.domain,
                outcome.failure.reason,
                outcome.failure.detail,
            )
            assert entry.expires_at is not None  # due entries have one
            assert entry.fetched_at is not None
            if entry.expires_at - now < (entry.expires_at - entry.fetched_at) / 4:
                # SEC-01: alert well before the policy expires.
                log.error(
                    "ALERT: the cached MTA-STS policy of %s expires at %s and cannot be"
                    " refreshed; mail to it will lose MTA-STS protection",
                    entry.domain,
                    entry.expires_at.isoformat(),
                )
        return False

    def _next_run(self) -> float:
        # Run again within a tenth of the interval, jittered so a fleet spreads out.
        return self._jittered(self.refresh_interval / 10).total_seconds()

    def refresh_due(self, now: datetime | None = None) -> RefreshReport:
        """
        Refresh the policies that are due and purge unused entries.

        A refresh always fetches the policy, even when the TXT ``id`` is
        unchanged or cannot be resolved (STS-CACHE-10, AMB-17); only a
        successful fetch extends the entry (STS-CACHE-12). Entries are due
        ``refresh_interval`` after their fetch (or at half their lifetime),
        brought forward by a random part of ``jitter``.

        Args:
            now: The time to use (default: the clock).

        Returns:
            What was done, and when to run again.

        Raises:
            UsageError: The store is asyncio-only.
        """
        store = self._sync_store()
        now = now or self.clock()
        early = self.refresh_interval * (1 - self.jitter)
        refreshed: list[str] = []
        failed: list[str] = []
        for entry in self._candidates(store.due_for_refresh(now, early), now):
            outcome = resolve_policy(
                entry.domain,
                resolver=self.resolver,
                fetcher=self.fetcher,
                store=store,
                now=now,
                config=self.config,
                refresh=True,
            )
            (refreshed if self._report_refresh(entry, outcome, now) else failed).append(
                entry.domain
            )
        purged = [
            entry.domain
            for entry in list(store.entries())
            if is_unused(entry, now, self.unused_after) and store.replace(entry.domain, entry, None)
        ]
        return RefreshReport(tuple(refreshed), tuple(failed), tuple(purged), self._next_run())

    async def arefresh_due(self, now: datetime | None = None) -> RefreshReport:
        """
        Refresh due policies and purge unused entries; see :meth:`refresh_due`.

        Refreshes run concurrently and share flights with :meth:`aresolve`.

        Args:
            now: The time to use (default: the clock).

        Returns:
            What was done, and when to run again.
        """
        now = now or self.clock()
        early = self.refresh_interval * (1 - self.jitter)
        due = self._candidates(await self.astore.due_for_refresh(now, early), now)
        outcomes = await asyncio.gather(*(self._arefresh_one(e.domain, now) for e in due))
        refreshed: list[str] = []
        failed: list[str] = []
        for entry, outcome in zip(due, outcomes, strict=True):
            (refreshed if self._report_refresh(entry, outcome, now) else failed).append(
                entry.domain
            )
        purged = [
            entry.domain
            for entry in await self.astore.entries()
            if is_unused(entry, now, self.unused_after)
            and await self.astore.replace(entry.domain, entry, None)
        ]
        return RefreshReport(tuple(refreshed), tuple(failed), tuple(purged), self._next_run())

    async def arefresh_forever(
        self,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """
        Run :meth:`arefresh_due` for ever, waiting the jittered ``next_run`` between runs.

        Start it as a task next to the MTA and cancel it on shutdown. A run
        that fails (a store error, say) is logged and retried after the next
        interval.

        Args:
            sleep: Waits the given seconds (tests inject their own).
        """
        while True:
            try:
                report = await self.arefresh_due()
                delay = report.next_run
            except Exception:
                log.exception("MTA-STS policy refresh run failed")
                delay = self._next_run()
            await sleep(delay)

    async def _arefresh_one(self, name: str, now: datetime) -> PolicyOutcome:
        flight = self._aflights.get(name)
        if flight is not None:
            await asyncio.shield(flight)
        return await self._aresolve(name, now, refresh=True)


def _logged(outcome: PolicyOutcome) -> PolicyOutcome:
    if outcome.temporary_error:
        # AMB-16 (STS-CACHE-09): TEMPERROR with nothing cached is logged.
        log.warning(
            "MTA-STS TXT lookup for %s failed temporarily; %s",
            outcome.domain,
            "deferring" if outcome.defer else "delivering as if there were no policy",
        )
    return outcome
