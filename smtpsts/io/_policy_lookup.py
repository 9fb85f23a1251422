"""
The policy lookup's conversations and their two ``perform`` functions (issue 11).

Every multi-step thing :mod:`smtpsts.io.drivers` does -- one lookup with its
store read and write-back, the re-check before a bounce (STS-APPLY-10), a
refresh run with its purge (STS-CACHE-10, STS-CACHE-18) -- is written once
here as a generator conversation: it yields a request (the machine's
:class:`~smtpsts.actions.LookupTXT` / :class:`~smtpsts.actions.FetchPolicy`,
or a store request below), is sent the result, and returns its result. The
sync side runs it with :func:`~smtpsts.io._drive.drive` and
:func:`perform_with`, the asyncio side with :func:`~smtpsts.io._drive.adrive`
and :func:`aperform_with`; the rules (what to write back, what a failed write
means, what a refresh reports) are in one place. No I/O and no clock here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from smtpsts import actions
from smtpsts._names import to_alabel
from smtpsts.actions import FetchPolicy, LookupTXT, Resolved
from smtpsts.cache import DEFAULT_CONFIG, CacheEntry, PolicyConfig, PolicyOutcome, PolicyResolution
from smtpsts.exceptions import LocalFaultError
from smtpsts.io._drive import adrive, drive
from smtpsts.policy import Mode
from smtpsts.stores import AsyncPolicyStore, PolicyStore, is_unused

__all__ = [
    "AsyncDNSLookup",
    "AsyncPolicyFetcher",
    "DNSLookup",
    "DueForRefresh",
    "ListEntries",
    "PolicyFetcher",
    "ReadEntry",
    "RefreshEach",
    "RefreshReport",
    "RefreshSchedule",
    "ReplaceEntry",
    "aperform_with",
    "aresolve_policy",
    "logged",
    "lookup_entry",
    "perform_with",
    "recheck",
    "refresh_run",
    "resolve_policy",
]

log = logging.getLogger("smtpsts.io.drivers")

TXTResult = actions.TXTAnswer | actions.TXTNotFound | actions.TXTFailure
"""What answers :class:`~smtpsts.actions.LookupTXT`."""

FetchResult = actions.HTTPResponse | actions.FetchFailed
"""What answers :class:`~smtpsts.actions.FetchPolicy`."""


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


@attrs.frozen
class ReadEntry:
    """Request: the stored entry of ``domain`` (``store.get``); the result is it or ``None``."""

    domain: str


@attrs.frozen
class ReplaceEntry:
    """Request: ``store.replace(domain, expected, entry)``; the result is whether it was done."""

    domain: str
    expected: CacheEntry | None
    entry: CacheEntry | None


@attrs.frozen
class ListEntries:
    """Request: every stored entry (``store.entries()``), for the purge (STS-CACHE-18)."""


@attrs.frozen
class DueForRefresh:
    """Request: ``store.due_for_refresh(now, early)`` (STS-CACHE-10)."""

    now: datetime
    early: timedelta


@attrs.frozen
class RefreshEach:
    """Request: refresh these domains at ``now``; the result per domain: an outcome or the error."""

    domains: tuple[str, ...]
    now: datetime


StoreRequest = ReadEntry | ReplaceEntry | ListEntries | DueForRefresh
Step = LookupTXT | FetchPolicy | StoreRequest | RefreshEach


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


# --------------------------------------------------------------------------- conversations


def _write_back(
    name: str,
    expected: CacheEntry | None,
    cached: CacheEntry | None,
    resolved: Resolved,
    *,
    refresh: bool,
) -> Generator[Step, Any, None]:
    # What to write back: the entry the machine asks for, or a delete.
    entry = resolved.store
    if entry is None and not resolved.delete:
        return
    if (
        entry is not None
        and refresh
        and cached is not None
        and entry.last_checked != cached.last_checked
    ):
        # A refresh is not a use: keep the last lookup time for the purge of
        # unused entries (STS-CACHE-18).
        entry = attrs.evolve(entry, last_checked=cached.last_checked)
    try:
        yield ReplaceEntry(name, expected, entry)
    except LocalFaultError as exc:
        # The outcome stands: a store that cannot take the result is a local
        # fault, and the lookup's answer is still the right one to apply.
        log.warning(
            "policy store: cannot write the entry of %s (%s); the outcome still applies", name, exc
        )


def lookup_entry(
    name: str, *, now: datetime, config: PolicyConfig, refresh: bool
) -> Generator[Step, Any, tuple[PolicyOutcome, Resolved]]:
    """
    One policy lookup: read the store, run the machine, write back (RFC 8461 §5.1).

    Args:
        name: The policy domain (A-label).
        now: The current time.
        config: The machine's knobs.
        refresh: Fetch even for an unchanged ``id`` (STS-CACHE-10).

    Yields:
        The requests to perform.

    Returns:
        The outcome and what the machine resolved to.
    """
    cached = yield ReadEntry(name)
    machine = PolicyResolution(name, cached=cached, now=now, config=config, refresh=refresh)
    resolved = yield from machine.steps()
    yield from _write_back(name, cached, cached, resolved, refresh=refresh)
    return resolved.outcome, resolved


def recheck(
    name: str, stored: CacheEntry | None, *, now: datetime, config: PolicyConfig
) -> Generator[Step, Any, Resolved]:
    """
    The TXT check before a bounce, without smtpsts's own shortcuts (STS-APPLY-10).

    A negative answer and the fetch backoff (STS-FETCH-14) of the stored
    entry are dropped, so the TXT record is queried and a new ``id`` fetched.

    Args:
        name: The policy domain (A-label).
        stored: The stored entry (already read).
        now: The current time.
        config: The machine's knobs.

    Yields:
        The requests to perform.

    Returns:
        What the machine resolved to.
    """
    cached = None
    if stored is not None and stored.record_id is not None:
        cached = attrs.evolve(stored, negative_until=None, backoff_until=None, backoff_id=None)
    resolved = yield from PolicyResolution(name, cached=cached, now=now, config=config).steps()
    yield from _write_back(name, stored, cached, resolved, refresh=False)
    return resolved


@attrs.frozen
class RefreshSchedule:
    """
    When entries are refreshed (STS-CACHE-10): ``interval`` after their fetch, jittered.

    Attributes:
        interval: The refresh interval.
        jitter: The fraction of ``interval`` by which refreshes are brought forward.
        unused_after: Entries unused this long are purged (STS-CACHE-18).
        rng: The random source of the jitter.
    """

    interval: timedelta
    jitter: float
    unused_after: timedelta
    rng: random.Random

    def jittered(self, base: timedelta) -> timedelta:
        """
        ``base`` brought forward by a random part of ``jitter``.

        Args:
            base: The time span.

        Returns:
            The jittered span.
        """
        return base * (1 - self.jitter * self.rng.random())

    def next_run(self) -> float:
        """
        Seconds until the next run: a tenth of the interval, jittered so a fleet spreads out.

        Returns:
            The delay.
        """
        return self.jittered(self.interval / 10).total_seconds()

    def due(self, entries: Sequence[CacheEntry], now: datetime) -> list[CacheEntry]:
        """
        The entries due now: ``interval`` (jittered) after the fetch, or at half the lifetime.

        Args:
            entries: The store's candidates.
            now: The current time.

        Returns:
            The entries to refresh.
        """
        due = []
        for entry in entries:
            assert entry.fetched_at is not None  # due_for_refresh checked it
            assert entry.expires_at is not None
            lifetime = entry.expires_at - entry.fetched_at
            if now >= entry.fetched_at + min(self.jittered(self.interval), lifetime / 2):
                due.append(entry)
        return due


def _refreshed(entry: CacheEntry, outcome: PolicyOutcome | BaseException, now: datetime) -> bool:
    if isinstance(outcome, BaseException):
        # A local fault or a bug: the cached policy stays; it has been logged.
        return False
    if outcome.failure is None:
        return True
    if entry.mode is not Mode.NONE:
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


def refresh_run(now: datetime, schedule: RefreshSchedule) -> Generator[Step, Any, RefreshReport]:
    """
    One run of the refresh routine: refresh the due entries, purge unused ones.

    STS-CACHE-10, AMB-17: a refresh fetches even for an unchanged ``id``;
    STS-CACHE-11: a failed one is logged (an alert near expiry, SEC-01);
    STS-CACHE-18: entries unused for ``unused_after`` are removed.

    Args:
        now: The current time.
        schedule: The refresh settings.

    Yields:
        The requests to perform (one :class:`RefreshEach` for all due domains).

    Returns:
        What was done, and when to run again.
    """
    early = schedule.interval * (1 - schedule.jitter)
    due = schedule.due((yield DueForRefresh(now, early)), now)
    outcomes = yield RefreshEach(tuple(entry.domain for entry in due), now)
    refreshed: list[str] = []
    failed: list[str] = []
    for entry, outcome in zip(due, outcomes, strict=True):
        (refreshed if _refreshed(entry, outcome, now) else failed).append(entry.domain)
    purged = []
    for entry in (yield ListEntries()):
        if is_unused(entry, now, schedule.unused_after) and (
            yield ReplaceEntry(entry.domain, entry, None)
        ):
            purged.append(entry.domain)  # noqa: PERF401 -- no yield in a comprehension
    return RefreshReport(tuple(refreshed), tuple(failed), tuple(purged), schedule.next_run())


def logged(outcome: PolicyOutcome) -> PolicyOutcome:
    """
    Log a temporary TXT failure with nothing cached (AMB-16, STS-CACHE-09), and pass the outcome on.

    Args:
        outcome: A lookup's outcome.

    Returns:
        ``outcome``.
    """
    if outcome.temporary_error:
        log.warning(
            "MTA-STS TXT lookup for %s failed temporarily; %s",
            outcome.domain,
            "deferring" if outcome.defer else "delivering as if there were no policy",
        )
    return outcome


# --------------------------------------------------------------------------- the driver loops


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

    Local faults are not remote verdicts: an adapter that raises
    :class:`~smtpsts.LocalFaultError` (say, out of descriptors) ends the
    lookup with nothing written, so no fetch backoff or negative entry
    outlives the fault. A store that cannot take the result does not change
    the outcome (the failed write is logged).

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
        LocalFaultError: An adapter or the store failed locally (nothing was
            written).
    """
    conversation = lookup_entry(to_alabel(domain), now=now, config=config, refresh=refresh)
    outcome, _resolved = drive(
        conversation, perform_with(resolver.lookup_txt, fetcher.fetch, store)
    )
    return outcome


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

    The same conversation as :func:`resolve_policy`, run by
    :func:`~smtpsts.io._drive.adrive`: same outcomes, same writes, and a
    local fault ends it with nothing written.

    Args:
        domain: The policy domain.
        resolver: Answers TXT lookups (asyncio).
        fetcher: Answers policy fetches (asyncio).
        store: Where entries live (asyncio).
        now: The current time (timezone-aware).
        config: The machine's knobs.
        refresh: Fetch even for an unchanged ``id``.

    Returns:
        What :func:`resolve_policy` returns.

    Raises:
        DomainNameError: Invalid ``domain``.
        LocalFaultError: A local fault of an adapter or the store.
    """
    conversation = lookup_entry(to_alabel(domain), now=now, config=config, refresh=refresh)
    perform = aperform_with(resolver.lookup_txt, fetcher.fetch, store)
    outcome, _resolved = await adrive(conversation, perform)
    return outcome


# --------------------------------------------------------------------------- perform


def perform_with(
    lookup_txt: Callable[[str], TXTResult],
    fetch: Callable[[FetchPolicy], FetchResult],
    store: PolicyStore,
) -> Callable[[Step], Any]:
    """
    The blocking ``perform`` of the conversations (all but :class:`RefreshEach`).

    Args:
        lookup_txt: Answers TXT lookups (:meth:`DNSLookup.lookup_txt`).
        fetch: Answers policy fetches (:meth:`PolicyFetcher.fetch`).
        store: Answers the store requests.

    Returns:
        The function for :func:`~smtpsts.io._drive.drive`.
    """

    def perform(step: Step) -> Any:
        match step:
            case LookupTXT(qname=qname):
                return lookup_txt(qname)
            case FetchPolicy():
                return fetch(step)
            case ReadEntry(domain=domain):
                return store.get(domain)
            case ReplaceEntry(domain=domain, expected=expected, entry=entry):
                return store.replace(domain, expected, entry)
            case ListEntries():
                return list(store.entries())
            case DueForRefresh(now=now, early=early):
                return store.due_for_refresh(now, early)
        raise TypeError(f"cannot perform {step!r} here")

    return perform


def aperform_with(
    lookup_txt: Callable[[str], Awaitable[TXTResult]],
    fetch: Callable[[FetchPolicy], Awaitable[FetchResult]],
    astore: AsyncPolicyStore,
) -> Callable[[Step], Awaitable[Any]]:
    """
    The asyncio ``perform`` of the conversations; see :func:`perform_with`.

    Args:
        lookup_txt: Answers TXT lookups (:meth:`AsyncDNSLookup.lookup_txt`).
        fetch: Answers policy fetches (:meth:`AsyncPolicyFetcher.fetch`).
        astore: Answers the store requests.

    Returns:
        The coroutine function for :func:`~smtpsts.io._drive.adrive`.
    """

    async def aperform(step: Step) -> Any:
        if isinstance(step, LookupTXT):
            return await lookup_txt(step.qname)
        if isinstance(step, FetchPolicy):
            return await fetch(step)
        if isinstance(step, ReadEntry):
            return await astore.get(step.domain)
        if isinstance(step, ReplaceEntry):
            return await astore.replace(step.domain, step.expected, step.entry)
        if isinstance(step, ListEntries):
            return list(await astore.entries())
        if isinstance(step, DueForRefresh):
            return await astore.due_for_refresh(step.now, step.early)
        raise TypeError(f"cannot perform {step!r} here")

    return aperform
