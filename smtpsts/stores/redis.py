"""
A policy store shared through Redis (extra ``redis``: redis-py, sync and asyncio).

Each domain is one string key, ``<prefix><domain>``, holding the entry's
JSON document; the key expires when nothing in the entry is valid any more
(the policy's expiry, or a backoff or negative answer's end). Lookups write
with a WATCH/MULTI compare-and-set, so a slower writer never replaces a
policy that another process fetched later (see :mod:`smtpsts.stores`).

Redis being down must never cost a policy (RFC 8461 §10.2: an attacker who
can cut the store off must not be able to downgrade delivery). Both stores
keep a local :class:`~smtpsts.stores.memory.MemoryPolicyStore` layer: every
entry read or written goes there too, and while Redis cannot be reached the
store answers from it and logs a warning. With nothing valid in the local
layer, :meth:`~RedisPolicyStore.get` raises :class:`smtpsts.StoreError`:
what the fleet knows is unknown, which is not "nothing cached" (issue 10).
A document this smtpsts cannot read (another cache format during a rolling
upgrade, damage) is handled the same way, and is never overwritten by
:meth:`~RedisPolicyStore.put` or :meth:`~RedisPolicyStore.replace` (they
raise :class:`~smtpsts.StoreError`); :meth:`~RedisPolicyStore.delete`
removes it. Scans skip it with a warning.

Repair (issue 17): Redis may come back empty (a restart without
persistence, ``FLUSHDB``, a failover to a replica that lost writes). Live
enforce and testing policies of the local layer are then written back,
with compare-and-set, never over an entry fetched later:

- :meth:`~RedisPolicyStore.get` writes the local policy back when Redis has
  no entry for the domain or an older one;
- after an outage the store writes back every live local policy, a
  bounded batch (``REPAIR_BATCH``) after each successful operation;
- :meth:`~RedisPolicyStore.entries` (so the refresh loop) lists the local
  layer's live entries together with Redis's (the later fetch wins) and
  writes back the local policies Redis lacks.

Only enforce and testing policies are written back: they are what a lost
entry would weaken. Losing a negative entry, a backoff marker or a mode
``none`` entry costs one more DNS query or fetch, so they are not, and a
retired mode ``none`` entry can never come back that way.

Deletions on purpose (retiring a mode ``none`` policy, STS-CACHE-14; purging
an unused entry, STS-CACHE-18; :meth:`~RedisPolicyStore.delete`) leave a
tombstone in the key when they remove a live policy answer: a small
document saying "entries fetched up to this time were deleted". It lives
until the deleted entry would have expired, and at least
``TOMBSTONE_MIN_TTL``. A process that meets it (on a lookup or a scan)
drops its covered local copy instead of writing it back, so a peer that
still holds the policy a domain went on to retire cannot resurrect it for
the fleet. A policy fetched after the deletion is not covered and wins;
real writes (:meth:`~RedisPolicyStore.put`, :meth:`~RedisPolicyStore.replace`)
replace a tombstone like an absent entry. Older smtpsts versions read a
tombstone as an unreadable document, which they treat as absent.

What a fleet sharing one Redis can and cannot survive:

- It survives Redis restarting empty, being flushed or failing over to a
  replica that lost writes, as long as some running process still holds
  the policy in its local layer: the first lookup, scan or post-outage
  repair in that process puts it back, and the others read it from there.
- It cannot recover a policy no running process holds: a process that
  never learnt a domain, or that restarts after Redis lost it, knows
  nothing, and the domain is looked up afresh (as on first contact). Run
  Redis with persistence (AOF) and replicas that acknowledge writes if that
  matters.
- A peer whose local copy outlives a tombstone (one that neither looked
  the domain up nor scanned while the tombstone lived) can still write the
  deleted policy back; the deleting peers then delete it again on their
  next refresh or purge.
- While Redis is unreachable each process answers from its own local layer
  (bounded: ``LOCAL_MAX_ENTRIES``, live policies kept first) and raises
  :class:`~smtpsts.StoreError` for domains it does not know.

``redis`` is imported when this module is; ``import smtpsts`` never does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import redis
import redis.asyncio

from smtpsts.cache import CacheEntry
from smtpsts.io._drive import adrive, drive
from smtpsts.stores import DEFAULT_REFRESH_INTERVAL, _RefreshFromEntries, refresh_due
from smtpsts.stores._redis_core import (
    DEFAULT_PREFIX,
    LOCAL_MAX_ENTRIES,
    REPAIR_BATCH,
    TOMBSTONE_MIN_TTL,
    _Command,
    _Conversation,
    _plan_put,  # noqa: F401 -- importable from here for the compare-and-set tests
    _RedisStoreCore,
)
from smtpsts.stores.memory import MemoryPolicyStore  # noqa: F401 -- the local layer, documented here

__all__ = [
    "DEFAULT_PREFIX",
    "LOCAL_MAX_ENTRIES",
    "REPAIR_BATCH",
    "TOMBSTONE_MIN_TTL",
    "AsyncRedisPolicyStore",
    "RedisPolicyStore",
]

T = TypeVar("T")


class RedisPolicyStore(_RefreshFromEntries, _RedisStoreCore):
    """
    Policy entries in Redis with a local memory layer (sync client).

    Args:
        client: A ``redis.Redis`` client (give it short socket timeouts; see
            ``from_url``).
        prefix: The key prefix.
        local: The local layer (a bounded memory store by default, which
            keeps live policies first).
        repair_batch: Local policies written back per operation after an
            outage.
    """

    _client_type: ClassVar[Any] = redis.Redis
    client: redis.Redis

    def _drive(self, conversation: _Conversation[T]) -> T:
        # One pipeline per operation, for its WATCH/MULTI.
        with self.client.pipeline() as pipe:

            def perform(command: _Command) -> Any:
                return command.call(pipe if command.on_pipeline else self.client)

            return drive(conversation, perform)

    def _run(self, domain: str, plan: Any) -> bool:
        # The compare-and-set alone (tests race it).
        return self._drive(self._cas(domain, plan))

    def get(self, domain: str) -> CacheEntry | None:
        """
        Return the entry for ``domain``: Redis's, or the local layer's newer one.

        A live local policy that Redis lacks (or holds an older fetch of) is
        written back.

        Args:
            domain: The policy domain.

        Returns:
            The entry, or ``None``.

        Raises:
            StoreError: Redis is unreachable, or holds a document this
                smtpsts cannot read, and the local layer has nothing valid
                for the domain.
        """
        return self._drive(self._get(domain))

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry`` unconditionally (in Redis and the local layer).

        While Redis is unreachable the entry goes to the local layer only
        (and is written back after the outage if it is a live policy).

        Args:
            entry: The entry.

        Raises:
            StoreError: Redis holds a document for the domain that this
                smtpsts cannot read (maybe a newer format); it is not
                overwritten.
        """
        self._drive(self._put(entry))

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set with WATCH/MULTI (see :mod:`smtpsts.stores`).

        Removing a live policy answer leaves a tombstone (see the module
        documentation).

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through (while Redis is down: into the
            local layer only).

        Raises:
            StoreError: Redis holds a document for the domain that this
                smtpsts cannot read; it is left untouched.
        """
        return self._drive(self._replace(domain, previous, entry))

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry, readable or not, from Redis and the local layer.

        Args:
            domain: The policy domain.
        """
        self._drive(self._delete(domain))

    def entries(self) -> Iterator[CacheEntry]:
        """
        Iterate over every readable entry of Redis and the local layer.

        Redis's entries and the local layer's live ones, the later fetch
        winning; local policies Redis lacks are written back, local copies
        a tombstone covers are dropped. Unreadable documents are skipped
        with a warning each. While Redis is down: the local layer's.

        Returns:
            An iterator over the entries.
        """
        return iter(self._drive(self._entries()))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class AsyncRedisPolicyStore(_RedisStoreCore):
    """
    Policy entries in Redis with a local memory layer (``redis.asyncio`` client).

    The behaviour, and each method's, is that of :class:`RedisPolicyStore`;
    both run the same conversations.

    Args:
        client: A ``redis.asyncio.Redis`` client (short socket timeouts).
        prefix: The key prefix.
        local: The local layer (a bounded memory store by default, which
            keeps live policies first).
        repair_batch: Local policies written back per operation after an
            outage.
    """

    _client_type: ClassVar[Any] = redis.asyncio.Redis
    client: redis.asyncio.Redis

    async def _drive(self, conversation: _Conversation[T]) -> T:
        async with self.client.pipeline() as pipe:

            async def perform(command: _Command) -> Any:
                return await command.call(pipe if command.on_pipeline else self.client)

            return await adrive(conversation, perform)

    async def _run(self, domain: str, plan: Any) -> bool:
        return await self._drive(self._cas(domain, plan))

    async def get(self, domain: str) -> CacheEntry | None:
        """Return the entry for ``domain`` (:meth:`RedisPolicyStore.get`)."""
        return await self._drive(self._get(domain))

    async def put(self, entry: CacheEntry) -> None:
        """Store ``entry`` unconditionally (:meth:`RedisPolicyStore.put`)."""
        await self._drive(self._put(entry))

    async def replace(
        self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None
    ) -> bool:
        """Compare-and-set (:meth:`RedisPolicyStore.replace`)."""
        return await self._drive(self._replace(domain, previous, entry))

    async def delete(self, domain: str) -> None:
        """Remove the domain's entry (:meth:`RedisPolicyStore.delete`)."""
        await self._drive(self._delete(domain))

    async def entries(self) -> list[CacheEntry]:
        """Every readable entry of Redis and the local layer (:meth:`RedisPolicyStore.entries`)."""
        return await self._drive(self._entries())

    async def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """The entries whose policy should be fetched again (:func:`smtpsts.stores.refresh_due`)."""
        return [e for e in await self.entries() if refresh_due(e, now, interval)]

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
