"""
Drivers: the loops that run the policy machine against real adapters and stores.

:func:`resolve_policy` and :func:`aresolve_policy` are the whole I/O side of
one lookup (the sans-I/O split, docs/architecture.md): they read the store, feed the
:class:`~smtpsts.cache.PolicyResolution` what the adapters answer, and write
back the entry it asks for. They decide nothing themselves.

:class:`PolicyResolver` is the object an MTA keeps: it holds the adapters,
the store, the trust anchors and the configuration, reads the clock (the core
never does), lets concurrent lookups of one domain share one flight
(STS-FETCH-20), and runs the proactive refresh (STS-CACHE-10, AMB-17) and the
purge of unused entries (STS-CACHE-18).

Every conversation (a lookup with its store read and write-back, the
re-check before a bounce, a refresh run) is written once, as a generator in
:mod:`smtpsts.io._policy_lookup`, and run here by
:func:`~smtpsts.io._drive.drive` or :func:`~smtpsts.io._drive.adrive` (issue
11). The process-local view used on faults is :mod:`smtpsts.io._known`; the
checks behind cache-first answers are :mod:`smtpsts.io._background`.
This module stays over 600 lines because :class:`PolicyResolver` is one
public class whose sync and asyncio methods are all documented API; the
logic it runs lives in those private modules.

The DNS adapter arguments are ``dns=`` and ``adns=`` (issue 11); the old
``resolver=`` / ``aresolver=`` keywords and the ``.resolver`` /
``.aresolver`` properties still work for one release, with a
:class:`DeprecationWarning`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import warnings
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Self, TypeVar, overload

from smtpsts._names import to_alabel
from smtpsts._vocab import PolicyType
from smtpsts.cache import (
    DEFAULT_CONFIG,
    CacheEntry,
    PolicyConfig,
    PolicyOutcome,
    PolicySource,
    cached_outcome,
)
from smtpsts.certs import TrustStore
from smtpsts.exceptions import LocalResourceError, LookupTimeoutError, StoreError, UsageError
from smtpsts.io._background import BackgroundChecks
from smtpsts.io._drive import adrive, drive
from smtpsts.io._known import STATS, KnownEntries
from smtpsts.io._policy_lookup import (
    AsyncDNSLookup,
    AsyncPolicyFetcher,
    DNSLookup,
    FetchResult,
    PolicyFetcher,
    RefreshEach,
    RefreshReport,
    RefreshSchedule,
    Step,
    TXTResult,
    aperform_with,
    aresolve_policy,
    logged,
    lookup_entry,
    perform_with,
    recheck,
    refresh_run,
    resolve_policy,
)
from smtpsts.stores import (
    DEFAULT_REFRESH_INTERVAL,
    AsyncPolicyStore,
    PolicyStore,
    SyncAsAsyncStore,
)
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.tlsrpt.session import PolicyInfo

__all__ = [
    "DEFAULT_KNOWN_ENTRIES",
    "DEFAULT_MAX_BACKGROUND",
    "DEFAULT_MAX_LOOKUPS",
    "DEFAULT_STORE_TIMEOUT",
    "STATS",
    "AsyncDNSLookup",
    "AsyncPolicyFetcher",
    "DNSLookup",
    "FetchResult",
    "PolicyFetcher",
    "PolicyResolver",
    "RefreshReport",
    "TXTResult",
    "aresolve_policy",
    "resolve_policy",
]

log = logging.getLogger(__name__)

DEFAULT_UNUSED_AFTER: Final = timedelta(days=180)
"""STS-CACHE-18: entries unused this long may be purged."""

DEFAULT_JITTER: Final = 0.1
"""Refreshes are spread over the last tenth of the refresh interval."""

DEFAULT_STORE_TIMEOUT: Final = 2.0
"""Seconds an asyncio lookup waits for the store before the policy state counts as unknown."""

DEFAULT_MAX_BACKGROUND: Final = 64
"""Background checks and refreshes running at once, at most."""

DEFAULT_MAX_LOOKUPS: Final = 256
"""Uncached asyncio lookups (DNS and fetch for a domain with no live policy) running at once."""

DEFAULT_KNOWN_ENTRIES: Final = 50_000
"""Live entries the resolver remembers, to answer from when the store fails."""


_A = TypeVar("_A")


class _Adapter(Generic[_A]):
    # A PolicyResolver adapter attribute: the one given, else the default
    # PolicyResolver._default() builds on first use (kept in "_<name>").

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, resolver: None, owner: type) -> Self: ...

    @overload
    def __get__(self, resolver: PolicyResolver, owner: type) -> _A: ...

    def __get__(self, resolver: PolicyResolver | None, owner: type) -> _A | Self:
        if resolver is None:
            return self
        adapter: _A | None = getattr(resolver, f"_{self.name}")
        if adapter is None:
            adapter = resolver._default(self.name)  # noqa: SLF001
            setattr(resolver, f"_{self.name}", adapter)
        return adapter


class _Flight:
    # One in-progress synchronous lookup that other threads wait for.
    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: PolicyOutcome | None = None
        self.error: BaseException | None = None


def _renamed(old: str, new: str, given: Any, value: Any) -> Any:
    # Issue 11: the DNS adapter keywords are dns=/adns=; the old ones work
    # for one release.
    if given is None:
        return value
    if value is not None:
        raise TypeError(f"give {new}= only ({old}= is its deprecated name)")
    warnings.warn(
        f"PolicyResolver({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=3
    )
    return given


class PolicyResolver:
    """
    The MTA-facing policy resolver: adapters, store, trust, config and a clock.

    Build it once and keep it. With no adapters given it builds the default
    ones (:mod:`smtpsts.io.dns`, :mod:`smtpsts.io.http`) from ``nameservers``,
    ``trust`` and ``connect_to``.

    **A live cached policy always wins, at once** (RFC 8461 §5.1, §10). A
    lookup of a domain whose cached policy is live answers from that policy
    without waiting for any I/O but the store read, and checks the TXT
    record (and fetches a new ``id``) in the background, one check per
    domain at a time; only a fetched and validated policy replaces the
    cached one (STS-CACHE-06, STS-CACHE-13). When such a check fails, later
    lookups carry its failure (``sts-policy-fetch-error`` with
    ``+fallback-to-cached-policy``) for TLS-RPT until a check succeeds.
    Local faults (:class:`~smtpsts.LocalFaultError`: a store that fails, a
    host out of descriptors) are answered from the cached policy when one is
    live, and raised when the policy state is unknown, so the caller can
    defer; they never leave a fetch backoff or a negative entry behind.

    Args:
        store: The store: sync (used directly by :meth:`resolve`, and in a
            worker thread by :meth:`aresolve` unless it is a memory store), or
            asyncio (then only the ``a*`` methods work). In-memory by default.
        dns: Sync DNS adapter (answers TXT lookups).
        fetcher: Sync HTTPS adapter.
        adns: asyncio DNS adapter.
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
        check_in_background: Answer live cached policies at once and check
            the TXT record behind the answer (the default); ``False`` checks
            before answering, as a plain driver loop does (still never
            weaker than the cached policy, but as slow as the network).
        store_timeout: Seconds :meth:`aresolve` waits for a blocking store
            before the policy state counts as unknown.
        max_background: Background checks (and refreshes) running at once;
            more are skipped until one ends (and refreshes wait).
        known_entries: Live entries remembered in this process, to answer
            from when the store cannot be read.
        max_lookups: Uncached lookups of :meth:`aresolve` running at once
            (each holds sockets: a policy host that hangs holds its
            connection until the fetch deadline); more wait for a slot,
            and one still waiting when its ``timeout`` passes is a
            :class:`~smtpsts.LocalResourceError` (this host's limit, so
            Postfix is answered ``TEMP``), not a
            :class:`~smtpsts.LookupTimeoutError`. Live cached policies never
            wait for a slot (issue 10: a flood of uncached domains whose policy hosts
            hang must not exhaust the descriptors a server needs).
        resolver: Deprecated name of ``dns`` (a :class:`DeprecationWarning`).
        aresolver: Deprecated name of ``adns`` (a :class:`DeprecationWarning`).
    """

    def __init__(
        self,
        *,
        store: PolicyStore | AsyncPolicyStore | None = None,
        dns: DNSLookup | None = None,
        fetcher: PolicyFetcher | None = None,
        adns: AsyncDNSLookup | None = None,
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
        check_in_background: bool = True,
        store_timeout: float = DEFAULT_STORE_TIMEOUT,
        max_background: int = DEFAULT_MAX_BACKGROUND,
        known_entries: int = DEFAULT_KNOWN_ENTRIES,
        max_lookups: int = DEFAULT_MAX_LOOKUPS,
        resolver: DNSLookup | None = None,
        aresolver: AsyncDNSLookup | None = None,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if max_background < 1 or known_entries < 1 or max_lookups < 1:
            raise ValueError("max_background, known_entries and max_lookups must be at least 1")
        if store_timeout <= 0:
            raise ValueError("store_timeout must be positive")
        store = store if store is not None else MemoryPolicyStore()
        if inspect.iscoroutinefunction(store.get):
            self.store: PolicyStore | None = None
            self.astore: AsyncPolicyStore = store  # type: ignore[assignment]
        else:
            self.store = store  # type: ignore[assignment]
            self.astore = SyncAsAsyncStore(self.store)  # type: ignore[arg-type]
        # A store that never blocks is read without a deadline (the hot path).
        self._store_blocks = not (
            isinstance(self.astore, SyncAsAsyncStore) and not self.astore.blocking
        )
        self._dns: DNSLookup | None = _renamed("resolver", "dns", resolver, dns)
        self._fetcher = fetcher
        self._adns: AsyncDNSLookup | None = _renamed("aresolver", "adns", aresolver, adns)
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
        self.check_in_background = check_in_background
        self.store_timeout = store_timeout
        self.max_background = max_background
        self.known_entries = known_entries
        self.max_lookups = max_lookups
        """Uncached asyncio lookups running at once (a server may lower it before serving)."""
        self._lookup_slots: asyncio.Semaphore | None = None
        self._queued: set[str] = set()  # uncached lookups waiting for a slot
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        """Counters: lookups, answers from the cache, background checks, faults."""
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._aflights: dict[str, asyncio.Future[PolicyOutcome]] = {}
        self._view = KnownEntries(known_entries, self.stats)
        self._background = BackgroundChecks(
            limit=max_background,
            stats=self.stats,
            lock=self._lock,
            flights=self._flights,
            aflights=self._aflights,
        )

    # ------------------------------------------------------------------ adapters

    def _default(self, adapter: str) -> Any:
        # The default adapters (built on first use) from nameservers, trust and connect_to.
        from smtpsts.io import dns, http  # noqa: PLC0415

        on_asyncio = adapter.startswith("a")
        dns_type = dns.AsyncDNSResolver if on_asyncio else dns.DNSResolver
        if adapter.endswith("dns"):
            return dns_type(self.nameservers)
        fetcher_type = http.AsyncHTTPSFetcher if on_asyncio else http.HTTPSFetcher
        return fetcher_type(
            trust=self.trust,
            resolver=dns_type(self.nameservers) if self.nameservers else None,  # type: ignore[arg-type]
            connect_to=self.connect_to,
        )

    dns = _Adapter[DNSLookup]("The sync DNS adapter (the default one is built on first use).")
    fetcher = _Adapter[PolicyFetcher]("The sync HTTPS adapter (default: built on first use).")
    adns = _Adapter[AsyncDNSLookup]("The asyncio DNS adapter (default: built on first use).")
    afetcher = _Adapter[AsyncPolicyFetcher](
        "The asyncio HTTPS adapter (default: built on first use)."
    )

    @property
    def resolver(self) -> DNSLookup:
        """Deprecated name of :attr:`dns`."""
        warnings.warn(
            "PolicyResolver.resolver is deprecated; use .dns", DeprecationWarning, stacklevel=2
        )
        return self.dns

    @property
    def aresolver(self) -> AsyncDNSLookup:
        """Deprecated name of :attr:`adns`."""
        warnings.warn(
            "PolicyResolver.aresolver is deprecated; use .adns", DeprecationWarning, stacklevel=2
        )
        return self.adns

    def _sync_store(self) -> PolicyStore:
        if self.store is None:
            raise UsageError("this resolver has an asyncio store; use the a* methods")
        return self.store

    def _perform(self, step: Step) -> Any:
        # The blocking perform of the conversations (STS-FETCH-20: refreshes one after the other).
        if isinstance(step, RefreshEach):
            outcomes: list[PolicyOutcome | Exception] = []
            for name in step.domains:
                try:
                    outcomes.append(self._run(name, step.now, refresh=True))
                except Exception as exc:  # noqa: BLE001 -- one domain's fault ends only its refresh
                    outcomes.append(exc)
            return outcomes
        return perform_with(
            lambda qname: self.dns.lookup_txt(qname),  # noqa: PLW0108 -- built on first use
            lambda request: self.fetcher.fetch(request),  # noqa: PLW0108
            self._sync_store(),
        )(step)

    async def _aperform(self, step: Step) -> Any:
        # The asyncio perform: refreshes run concurrently, max_background at a time.
        if isinstance(step, RefreshEach):
            slots = asyncio.Semaphore(self.max_background)

            async def one(name: str) -> PolicyOutcome:
                async with slots:
                    return await self._arefresh_one(name, step.now)

            return await asyncio.gather(*map(one, step.domains), return_exceptions=True)
        return await aperform_with(
            lambda qname: self.adns.lookup_txt(qname),  # noqa: PLW0108 -- built on first use
            lambda request: self.afetcher.fetch(request),  # noqa: PLW0108
            self.astore,
        )(step)

    # ------------------------------------------------------------------ the cache side

    def _read(self, store: PolicyStore, name: str, now: datetime) -> CacheEntry | None:
        try:
            return store.get(name)
        except Exception as exc:  # noqa: BLE001 -- any store failure is a local fault
            return self._view.store_failed(name, now, exc)

    async def _aread(self, name: str, now: datetime, deadline: float | None) -> CacheEntry | None:
        try:
            if not self._store_blocks:
                return await self.astore.get(name)
            limit = self.store_timeout
            if deadline is not None:
                limit = max(0.0, min(limit, deadline - asyncio.get_running_loop().time()))
            return await asyncio.wait_for(self.astore.get(name), limit)
        except TimeoutError as exc:
            timeout = StoreError(f"the policy store did not answer within {limit:g}s", domain=name)
            return self._view.store_failed(name, now, timeout.with_traceback(exc.__traceback__))
        except Exception as exc:  # noqa: BLE001 -- any store failure is a local fault
            return self._view.store_failed(name, now, exc)

    def _lookup(
        self, name: str, now: datetime, *, refresh: bool
    ) -> Generator[Step, Any, PolicyOutcome]:
        # One lookup as the resolver runs it: a fault answers from the live
        # policy this process knows, or is raised (issue 10, 17).
        try:
            outcome, resolved = yield from lookup_entry(
                name, now=now, config=self.config, refresh=refresh
            )
        except Exception as exc:  # noqa: BLE001 -- local faults and bugs alike
            return self._view.faulted(name, now, exc)
        self._view.settle(name, outcome, resolved)
        return logged(outcome)

    def _recheck(
        self, name: str, stored: CacheEntry | None, now: datetime
    ) -> Generator[Step, Any, PolicyOutcome]:
        resolved = yield from recheck(name, stored, now=now, config=self.config)
        self._view.settle(name, resolved.outcome, resolved)
        return logged(resolved.outcome)

    # ------------------------------------------------------------------ sync lookups

    def resolve(self, domain: str, now: datetime | None = None) -> PolicyOutcome:
        """
        Look up the policy of ``domain``; a live cached policy answers at once.

        The TXT check for a live cached policy runs in a background thread
        (see the class documentation); threads asking for an uncached domain
        share one flight (STS-FETCH-20).

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).

        Returns:
            The outcome to apply.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
            StoreError: The store cannot be read and no live policy is known.
            LocalFaultError: A local fault, with no live policy to answer from.
            UsageError: The store is asyncio-only.
        """
        name = to_alabel(domain)
        store = self._sync_store()
        now = now or self.clock()
        self.stats["lookups"] += 1
        outcome, live = self._view.from_cache(name, self._read(store, name, now), now)
        if outcome is not None and (not live or self.check_in_background):
            if live:
                self.stats["cache_answers"] += 1
                self._background.start(name, lambda: self._run(name, now, refresh=False))
            return outcome
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
            flight.outcome = self._run(name, now, refresh=False)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[name]
            flight.done.set()
        return flight.outcome

    def _run(self, name: str, now: datetime, *, refresh: bool) -> PolicyOutcome:
        return drive(self._lookup(name, now, refresh=refresh), self._perform)

    def join_background(self, timeout: float | None = None) -> bool:
        """
        Wait until the background checks started by :meth:`resolve` have ended.

        Args:
            timeout: Seconds to wait at most (default: no limit).

        Returns:
            Whether every check ended in time.
        """
        return self._background.join(timeout)

    def wait_for_check(self, domain: str, timeout: float) -> bool:
        """
        Wait for the running background check of ``domain``, if there is one.

        A caller whose delivery failed under a cached policy uses it to see
        whether the check brought a new policy (a legitimate MX change) before
        it defers the message.

        Args:
            domain: The policy domain.
            timeout: Seconds to wait at most.

        Returns:
            Whether no check of the domain is running any more.
        """
        return self._background.wait_for(to_alabel(domain), timeout)

    def close(self) -> None:
        """Stop the background checks of :meth:`resolve` (running ones finish on their own)."""
        self._background.close()

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
            LocalFaultError: A local fault (the caller defers, never bounces).
            UsageError: The store is asyncio-only.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        stored = self._read(self._sync_store(), name, now)
        return drive(self._recheck(name, stored, now), self._perform)

    async def arecheck_before_bounce(
        self, domain: str, now: datetime | None = None
    ) -> PolicyOutcome:
        """
        The asyncio form of :meth:`recheck_before_bounce` (works with any store).

        The same conversation (STS-APPLY-10), run by :func:`~smtpsts.io._drive.adrive`.

        Args:
            domain: The policy domain.
            now: The time to use (the clock's by default).

        Returns:
            The outcome for the last delivery attempt.

        Raises:
            DomainNameError: Invalid ``domain``.
            LocalFaultError: A local fault: defer, never bounce.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        stored = await self._aread(name, now, None)
        return await adrive(self._recheck(name, stored, now), self._aperform)

    # ------------------------------------------------------------------ asyncio lookups

    async def aresolve(
        self,
        domain: str,
        now: datetime | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- it bounds only the uncached path
    ) -> PolicyOutcome:
        """
        Look up the policy of ``domain``; a live cached policy answers at once.

        The TXT check for a live cached policy runs in a background task (see
        the class documentation). All tasks asking for an uncached domain
        while a lookup of it runs get that lookup's outcome: one TXT query
        and at most one fetch (STS-FETCH-20). Cancelling a waiting task, or
        its deadline passing, does not cancel the shared lookup, whose result
        serves the next call.

        Args:
            domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
            now: The time to use (default: the clock).
            timeout: Seconds to wait at most, store read included.

        Returns:
            The outcome to apply.

        Raises:
            DomainNameError: ``domain`` is not a valid host name.
            LookupTimeoutError: ``timeout`` passed; the store held no live policy.
            StoreError: The store cannot be read in time and no live policy
                is known.
            LocalResourceError: ``timeout`` passed while the lookup waited
                for one of the ``max_lookups`` slots.
            LocalFaultError: A local fault, with no live policy to answer from.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        self.stats["lookups"] += 1
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        flight = self._aflights.get(name)
        if flight is None:
            entry = await self._aread(name, now, deadline)
            outcome, live = self._view.from_cache(name, entry, now)
            if outcome is not None and (not live or self.check_in_background):
                if live:
                    self.stats["cache_answers"] += 1
                    self._background.astart(name, lambda: self._aresolve(name, now, refresh=False))
                return outcome
            flight = self._aflights.get(name) or self._start_flight(name, now)
        if deadline is None:
            return await asyncio.shield(flight)
        left = deadline - asyncio.get_running_loop().time()
        if left > 0:
            await asyncio.wait((flight,), timeout=left)
        if flight.done():
            return flight.result()
        if name in self._queued:
            # It never started: this host's bound on lookups, not the
            # domain's slowness (a local fault, SEC-52).
            self.stats["local_faults"] += 1
            raise LocalResourceError(
                f"the MTA-STS lookup of {name} (no live cached policy) waited {timeout:g}s for"
                f" one of the {self.max_lookups} lookup slots; it goes on in the background",
                domain=name,
            )
        self.stats["lookup_timeouts"] += 1
        raise LookupTimeoutError(
            f"the MTA-STS lookup of {name} (no live cached policy) took longer than {timeout:g}s;"
            " it goes on in the background",
            domain=name,
        )

    def _start_flight(self, name: str, now: datetime) -> asyncio.Future[PolicyOutcome]:
        flight = asyncio.ensure_future(self._aflight(name, now))
        self._aflights[name] = flight

        def finished(done: asyncio.Future[PolicyOutcome]) -> None:
            self._aflights.pop(name, None)
            if not done.cancelled():
                done.exception()  # retrieved: _faulted has logged it

        flight.add_done_callback(finished)
        return flight

    async def _aflight(self, name: str, now: datetime) -> PolicyOutcome:
        # An uncached lookup: at most max_lookups at once (issue 10, SEC-56).
        slots = self._lookup_slots
        if slots is None:
            slots = self._lookup_slots = asyncio.Semaphore(self.max_lookups)
        if slots.locked():
            self.stats["lookups_queued"] += 1
        self._queued.add(name)
        try:
            await slots.acquire()
        finally:
            self._queued.discard(name)
        try:
            return await self._aresolve(name, now, refresh=False)
        finally:
            slots.release()

    async def await_check(self, domain: str, timeout: float) -> bool:  # noqa: ASYNC109
        """
        Wait for the running background check of ``domain``; see :meth:`wait_for_check`.

        Args:
            domain: The policy domain.
            timeout: Seconds to wait at most.

        Returns:
            Whether no check of the domain is running any more.
        """
        return await self._background.await_check(to_alabel(domain), timeout)

    async def ajoin_background(self) -> None:
        """
        Wait until the background checks started by :meth:`aresolve` have ended.
        """
        await self._background.ajoin()

    async def aclose(self) -> None:
        """
        Cancel the background checks and shared lookups of the ``a*`` methods.
        """
        tasks: list[asyncio.Future[Any]] = [
            *self._background.tasks.values(),
            *self._aflights.values(),
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
            StoreError: The store cannot be read and no live policy is known.
        """
        name = to_alabel(domain)
        now = now or self.clock()
        if name not in self._aflights:
            self._start_flight(name, now)
        cached = cached_outcome(await self._aread(name, now, None), now)
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
        return await adrive(self._lookup(name, now, refresh=refresh), self._aperform)

    # ------------------------------------------------------------------ refresh

    def _schedule(self) -> RefreshSchedule:
        return RefreshSchedule(self.refresh_interval, self.jitter, self.unused_after, self.rng)

    def refresh_due(self, now: datetime | None = None) -> RefreshReport:
        """
        Refresh the policies that are due and purge unused entries.

        A refresh always fetches the policy, even when the TXT ``id`` is
        unchanged or cannot be resolved (STS-CACHE-10, AMB-17); only a
        successful fetch extends the entry (STS-CACHE-12). Entries are due
        ``refresh_interval`` after their fetch (or at half their lifetime),
        brought forward by a random part of ``jitter``. Refreshes run one
        after the other; one that hits a local fault counts as failed.

        Args:
            now: The time to use (default: the clock).

        Returns:
            What was done, and when to run again.

        Raises:
            UsageError: The store is asyncio-only.
        """
        self._sync_store()
        return drive(refresh_run(now or self.clock(), self._schedule()), self._perform)

    async def arefresh_due(self, now: datetime | None = None) -> RefreshReport:
        """
        Refresh due policies and purge unused entries; see :meth:`refresh_due`.

        Refreshes run concurrently, at most ``max_background`` at a time
        (each needs sockets), and share flights with :meth:`aresolve`.

        Args:
            now: The time to use (default: the clock).

        Returns:
            What was done, and when to run again.
        """
        return await adrive(refresh_run(now or self.clock(), self._schedule()), self._aperform)

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
                delay = self._schedule().next_run()
            await sleep(delay)

    async def _arefresh_one(self, name: str, now: datetime) -> PolicyOutcome:
        flight = self._aflights.get(name)
        if flight is not None:
            await asyncio.wait((flight,))
        return await self._aresolve(name, now, refresh=True)
