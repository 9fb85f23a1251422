"""
Policy stores: where :class:`~smtpsts.cache.CacheEntry` values live between lookups.

Three backends share one contract and one serialisation (the versioned JSON
document of :meth:`CacheEntry.to_json <smtpsts.cache.CacheEntry.to_json>`):

- :class:`smtpsts.stores.memory.MemoryPolicyStore`: a dict, optionally
  bounded (a bound never evicts a live policy for other entries); for
  libraries and tests.
- :class:`smtpsts.stores.sqlite.SQLitePolicyStore`: stdlib :mod:`sqlite3`,
  WAL, safe for several processes; the embedded default for daemons, so the
  cache survives restarts (STS-CACHE-17).
- :class:`smtpsts.stores.redis.RedisPolicyStore` (extra ``redis``): shared by
  a fleet, key TTL from the entry's expiry, compare-and-set writes, and a
  local memory layer that keeps answering while Redis is down and writes
  live policies back when Redis has lost them.

Writes that follow a lookup use :meth:`PolicyStore.replace`, a
compare-and-set: the write goes through if the stored entry is still the one
the lookup started from; if another writer changed it meanwhile, the write is
dropped when the stored entry holds a policy fetched later than the one being
written (so a slower writer never replaces a newer policy), and goes through
otherwise.

Faults (issue 10): a store that cannot be read or written raises
:class:`smtpsts.StoreError` (a :class:`~smtpsts.LocalFaultError`, with the
backend's exception as ``__cause__``); so does a stored entry this smtpsts
cannot read (another cache format during a rolling upgrade of a shared
store, damage). Neither ever reads as "nothing cached", and an unreadable
entry is never overwritten by :meth:`PolicyStore.put` or
:meth:`PolicyStore.replace`; :meth:`PolicyStore.delete` removes it. Scans
(:meth:`PolicyStore.entries`, :meth:`PolicyStore.due_for_refresh`) skip
unreadable entries with one warning each rather than fail as a whole.

Nothing here is imported by ``import smtpsts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Final, Protocol, TypeVar, runtime_checkable

from smtpsts.cache import CacheEntry

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "AsyncPolicyStore",
    "PolicyStore",
    "SyncAsAsyncStore",
    "decide_replace",
    "is_unused",
    "keeps_newer_policy",
    "refresh_due",
]

T = TypeVar("T")

DEFAULT_REFRESH_INTERVAL: Final = timedelta(days=1)
"""RFC 8461 §10.2: refresh policies about once a day (STS-CACHE-10)."""


def refresh_due(
    entry: CacheEntry, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
) -> bool:
    """
    Whether an entry's policy should be fetched again now (STS-CACHE-10, AMB-17).

    An entry holding a live policy answer (a policy or mode ``none``) is due
    once ``interval`` has passed since its fetch, or half of its lifetime,
    whichever comes first, so short-lived policies are renewed before they
    expire too.

    Args:
        entry: The stored entry.
        now: The current time.
        interval: The refresh interval.

    Returns:
        ``True`` when a refresh fetch is due.
    """
    if entry.expires_at is None or entry.fetched_at is None or not entry.is_live(now):
        return False
    lifetime = entry.expires_at - entry.fetched_at
    return now >= entry.fetched_at + min(interval, lifetime / 2)


def is_unused(entry: CacheEntry, now: datetime, unused_for: timedelta) -> bool:
    """
    Whether an entry may be purged (STS-CACHE-18).

    Args:
        entry: The stored entry.
        now: The current time.
        unused_for: How long an entry may go unused.

    Returns:
        ``True`` when the entry holds no live policy answer, backoff or
        negative answer at all, or when it was last used by a lookup
        (``last_checked``, else ``fetched_at``) more than ``unused_for`` ago.
    """
    live = (
        entry.is_live(now)
        or entry.is_negative(now)
        or (entry.backoff_until is not None and now < entry.backoff_until)
    )
    if not live:
        return True
    # last_checked moves on lookups (a refresh keeps it); fetched_at stands in
    # for entries that never had one.
    used = entry.last_checked if entry.last_checked is not None else entry.fetched_at
    if used is None:
        return False
    return now - used > unused_for


def keeps_newer_policy(current: CacheEntry | None, entry: CacheEntry | None) -> bool:
    """
    Whether ``current`` holds a policy fetched later than ``entry``'s.

    The compare-and-set rule of :meth:`PolicyStore.replace`: a writer whose
    view is outdated must not replace such an entry.

    Args:
        current: What the store holds now.
        entry: What a writer wants to store (``None``: delete).

    Returns:
        ``True`` when ``current`` must be kept.
    """
    if current is None or current.fetched_at is None:
        return False
    return entry is None or entry.fetched_at is None or current.fetched_at > entry.fetched_at


def decide_replace(
    current: CacheEntry | None, previous: CacheEntry | None, entry: CacheEntry | None
) -> bool:
    """
    The compare-and-set decision shared by every store.

    Args:
        current: What the store holds now.
        previous: What the writer read before deciding.
        entry: What the writer wants to store (``None``: delete).

    Returns:
        ``True`` when the write goes through.
    """
    return current == previous or not keeps_newer_policy(current, entry)


@runtime_checkable
class PolicyStore(Protocol):
    """
    The synchronous store contract.

    Domains are lower-case A-labels without the trailing dot (STS-CACHE-01);
    stores normalise what they are given.
    """

    def get(self, domain: str) -> CacheEntry | None:
        """
        Return the stored entry for ``domain``, or ``None`` when there is none.

        Raises:
            StoreError: The store cannot be read, or the stored entry cannot
                be read (another cache format, damage): the domain's state is
                unknown, which is not "absent".
        """

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry`` unconditionally, replacing the domain's entry.

        Raises:
            StoreError: The store cannot be written, or holds an entry for the
                domain that cannot be read (maybe a newer format); that entry
                is not overwritten.
        """

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set: store ``entry`` (or delete, for ``None``).

        Returns:
            Whether the write went through (see the module documentation).

        Raises:
            StoreError: As for :meth:`put`; an unreadable stored entry is left
                untouched.
        """

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry, if any, readable or not.

        Raises:
            StoreError: The store cannot be written.
        """

    def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again (:func:`refresh_due`).

        Unreadable entries are skipped with a warning each.

        Raises:
            StoreError: The store cannot be read at all.
        """

    def entries(self) -> Iterable[CacheEntry]:
        """
        Iterate over every readable entry (unreadable ones: a warning each).

        Raises:
            StoreError: The store cannot be read at all.
        """

    def close(self) -> None:
        """Release connections and files."""


class _HasEntries(Protocol):
    def entries(self) -> Iterable[CacheEntry]:
        """Iterate over the store's readable entries."""


class _RefreshFromEntries:
    # A store whose due_for_refresh is a filter over its entries() (memory,
    # Redis): the one place that filter is written.

    def due_for_refresh(
        self: _HasEntries, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again (STS-CACHE-10).

        Args:
            now: The current time.
            interval: The refresh interval.

        Returns:
            The due entries of ``entries()`` (see :func:`refresh_due`).
        """
        return [e for e in self.entries() if refresh_due(e, now, interval)]


@runtime_checkable
class AsyncPolicyStore(Protocol):
    """
    The asyncio store contract: :class:`PolicyStore` with coroutines.
    """

    async def get(self, domain: str) -> CacheEntry | None:
        """Return the stored entry for ``domain``, or ``None``; see :meth:`PolicyStore.get`."""

    async def put(self, entry: CacheEntry) -> None:
        """Store ``entry`` unconditionally; see :meth:`PolicyStore.put`."""

    async def replace(
        self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None
    ) -> bool:
        """Compare-and-set; see :meth:`PolicyStore.replace`."""

    async def delete(self, domain: str) -> None:
        """Remove the domain's entry, if any."""

    async def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """Return the entries whose policy should be fetched again."""

    async def entries(self) -> list[CacheEntry]:
        """Return every readable entry."""

    async def close(self) -> None:
        """Release connections and files."""


class SyncAsAsyncStore:
    """
    Give a synchronous store the asyncio contract.

    Memory stores are called directly (they never block); stores that do
    blocking I/O (sqlite) run in a worker thread.

    Args:
        store: The synchronous store.
        blocking: Run calls in :func:`asyncio.to_thread`; by default true
            for everything except the memory store.
    """

    def __init__(self, store: PolicyStore, *, blocking: bool | None = None) -> None:
        from smtpsts.stores.memory import MemoryPolicyStore  # noqa: PLC0415

        self.store = store
        self.blocking = not isinstance(store, MemoryPolicyStore) if blocking is None else blocking

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        if self.blocking:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    async def get(self, domain: str) -> CacheEntry | None:
        """Return the stored entry for ``domain``, or ``None``."""
        return await self._call(self.store.get, domain)

    async def put(self, entry: CacheEntry) -> None:
        """Store ``entry`` unconditionally."""
        await self._call(self.store.put, entry)

    async def replace(
        self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None
    ) -> bool:
        """Compare-and-set; see :meth:`PolicyStore.replace`."""
        return bool(await self._call(self.store.replace, domain, previous, entry))

    async def delete(self, domain: str) -> None:
        """Remove the domain's entry, if any."""
        await self._call(self.store.delete, domain)

    async def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """Return the entries whose policy should be fetched again."""
        return await self._call(self.store.due_for_refresh, now, interval)

    async def entries(self) -> list[CacheEntry]:
        """Return every readable entry."""
        return await self._call(lambda: list(self.store.entries()))

    async def close(self) -> None:
        """Release connections and files."""
        await self._call(self.store.close)
