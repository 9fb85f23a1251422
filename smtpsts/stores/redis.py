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
store answers from it and logs a warning, rather than answering "nothing
cached". When Redis answers again, the newer of the two entries wins.

``redis`` is imported when this module is; ``import smtpsts`` never does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

import redis
import redis.asyncio

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry, CacheEntryFormatError
from smtpsts.stores import DEFAULT_REFRESH_INTERVAL, decide_replace, refresh_due
from smtpsts.stores.memory import MemoryPolicyStore

__all__ = ["DEFAULT_PREFIX", "AsyncRedisPolicyStore", "RedisPolicyStore"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "smtpsts:sts:"
"""Key prefix; the key of ``example.com`` is ``smtpsts:sts:example.com``."""

LOCAL_MAX_ENTRIES: Final = 100_000
"""Bound of the default local layer."""

_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_CAS_ATTEMPTS: Final = 10
_SCAN_BATCH: Final = 500


def _expire_at(entry: CacheEntry) -> int | None:
    # The key lives as long as anything in the entry is valid.
    times = [t for t in (entry.expires_at, entry.backoff_until, entry.negative_until) if t]
    if not times:
        return None
    return int(max(times).timestamp()) + 1


def _parse(key: str, raw: bytes | str | None) -> CacheEntry | None:
    if raw is None:
        return None
    try:
        return CacheEntry.from_json(raw)
    except CacheEntryFormatError as exc:
        log.warning("redis policy store: ignoring unreadable entry %s: %s", key, exc)
        return None


def _newer(remote: CacheEntry | None, local: CacheEntry | None) -> CacheEntry | None:
    # After an outage the local layer may know a policy fetched later than
    # Redis's copy (or one Redis never got): keep whichever was fetched last.
    if (
        local is not None
        and local.fetched_at is not None
        and (remote is None or remote.fetched_at is None or local.fetched_at > remote.fetched_at)
    ):
        return local
    return remote


class _Outage:
    """Logs once when Redis goes away and once when it is back."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, operation: str, exc: Exception) -> None:
        if not self.down:
            log.warning(
                "redis policy store unreachable (%s: %s); answering from the local layer",
                operation,
                exc,
            )
        self.down = True

    def ok(self) -> None:
        if self.down:
            log.warning("redis policy store reachable again")
        self.down = False


class RedisPolicyStore:
    """
    Policy entries in Redis with a local memory layer (sync client).

    Args:
        client: A ``redis.Redis`` client (give it short socket timeouts; see
            :meth:`from_url`).
        prefix: The key prefix.
        local: The local layer (an LRU-bounded memory store by default).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        local: MemoryPolicyStore | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.local = (
            local if local is not None else MemoryPolicyStore(max_entries=LOCAL_MAX_ENTRIES)
        )
        self._outage = _Outage()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, **options: Any) -> RedisPolicyStore:
        """
        Connect to ``redis://host:port/db``.

        Args:
            url: The Redis URL.
            timeout: Socket connect and read timeout in seconds.
            **options: More :class:`RedisPolicyStore` arguments.

        Returns:
            The store.
        """
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, **options)

    @property
    def available(self) -> bool:
        """Whether the last Redis operation succeeded."""
        return not self._outage.down

    def _key(self, domain: str) -> str:
        return self.prefix + to_alabel(domain)

    def get(self, domain: str) -> CacheEntry | None:
        """
        Return the entry for ``domain``: Redis's, or the local layer's newer one.

        Args:
            domain: The policy domain.

        Returns:
            The entry, or ``None``.
        """
        key = self._key(domain)
        local = self.local.get(domain)
        try:
            raw = self.client.get(key)
        except _OUTAGE as exc:
            self._outage.failed("get", exc)
            return local
        self._outage.ok()
        entry = _newer(_parse(key, raw), local)
        if entry is not None and entry is not local:
            self.local.put(entry)
        return entry

    def _set(self, target: redis.Redis | Any, entry: CacheEntry) -> None:
        target.set(self.prefix + entry.domain, entry.to_json(), exat=_expire_at(entry))

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry`` unconditionally (in Redis and the local layer).

        Args:
            entry: The entry.
        """
        self.local.put(entry)
        if (_expire_at(entry) or float("inf")) <= time.time():
            self.delete(entry.domain)
            return
        try:
            self._set(self.client, entry)
        except _OUTAGE as exc:
            self._outage.failed("put", exc)
        else:
            self._outage.ok()

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set with WATCH/MULTI (see :mod:`smtpsts.stores`).

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through (while Redis is down: into the
            local layer only).
        """
        key = self._key(domain)
        try:
            done = self._cas(key, previous, entry)
        except _OUTAGE as exc:
            self._outage.failed("replace", exc)
            return self.local.replace(domain, previous, entry)
        self._outage.ok()
        if done:
            if entry is None:
                self.local.delete(domain)
            else:
                self.local.put(entry)
        return done

    def _cas(self, key: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        with self.client.pipeline() as pipe:
            for _ in range(_CAS_ATTEMPTS):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    current = _parse(key, pipe.get(key))
                    if not decide_replace(current, previous, entry):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    if entry is None or (_expire_at(entry) or float("inf")) <= time.time():
                        pipe.delete(key)
                    else:
                        self._set(pipe, entry)
                    pipe.execute()
                except redis.WatchError:
                    continue
                else:
                    return True
        return False

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry from Redis and the local layer.

        Args:
            domain: The policy domain.
        """
        self.local.delete(domain)
        try:
            self.client.delete(self._key(domain))
        except _OUTAGE as exc:
            self._outage.failed("delete", exc)
        else:
            self._outage.ok()

    def entries(self) -> Iterator[CacheEntry]:
        """
        Iterate over every readable entry (the local layer's while Redis is down).

        Returns:
            An iterator over the entries.
        """
        try:
            found: list[CacheEntry] = []
            keys = list(self.client.scan_iter(match=self.prefix + "*", count=_SCAN_BATCH))
            for start in range(0, len(keys), _SCAN_BATCH):
                batch = keys[start : start + _SCAN_BATCH]
                for key, raw in zip(batch, self.client.mget(batch), strict=True):
                    entry = _parse(str(key), raw)
                    if entry is not None:
                        found.append(entry)
        except _OUTAGE as exc:
            self._outage.failed("scan", exc)
            return self.local.entries()
        self._outage.ok()
        return iter(found)

    def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again.

        Args:
            now: The current time.
            interval: The refresh interval.

        Returns:
            The due entries (see :func:`smtpsts.stores.refresh_due`).
        """
        return [e for e in self.entries() if refresh_due(e, now, interval)]

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class AsyncRedisPolicyStore:
    """
    Policy entries in Redis with a local memory layer (``redis.asyncio`` client).

    The behaviour is that of :class:`RedisPolicyStore`.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        prefix: The key prefix.
        local: The local layer (an LRU-bounded memory store by default).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        local: MemoryPolicyStore | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.local = (
            local if local is not None else MemoryPolicyStore(max_entries=LOCAL_MAX_ENTRIES)
        )
        self._outage = _Outage()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, **options: Any) -> AsyncRedisPolicyStore:
        """
        Connect to ``redis://host:port/db``.

        Args:
            url: The Redis URL.
            timeout: Socket connect and read timeout in seconds.
            **options: More :class:`AsyncRedisPolicyStore` arguments.

        Returns:
            The store.
        """
        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(client, **options)

    @property
    def available(self) -> bool:
        """Whether the last Redis operation succeeded."""
        return not self._outage.down

    def _key(self, domain: str) -> str:
        return self.prefix + to_alabel(domain)

    async def get(self, domain: str) -> CacheEntry | None:
        """
        Return the entry for ``domain``; see :meth:`RedisPolicyStore.get`.

        Args:
            domain: The policy domain.

        Returns:
            The entry, or ``None``.
        """
        key = self._key(domain)
        local = self.local.get(domain)
        try:
            raw = await self.client.get(key)
        except _OUTAGE as exc:
            self._outage.failed("get", exc)
            return local
        self._outage.ok()
        entry = _newer(_parse(key, raw), local)
        if entry is not None and entry is not local:
            self.local.put(entry)
        return entry

    async def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry`` unconditionally.

        Args:
            entry: The entry.
        """
        self.local.put(entry)
        if (_expire_at(entry) or float("inf")) <= time.time():
            await self.delete(entry.domain)
            return
        try:
            await self.client.set(
                self.prefix + entry.domain, entry.to_json(), exat=_expire_at(entry)
            )
        except _OUTAGE as exc:
            self._outage.failed("put", exc)
        else:
            self._outage.ok()

    async def replace(
        self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None
    ) -> bool:
        """
        Compare-and-set; see :meth:`RedisPolicyStore.replace`.

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through.
        """
        key = self._key(domain)
        try:
            done = await self._cas(key, previous, entry)
        except _OUTAGE as exc:
            self._outage.failed("replace", exc)
            return self.local.replace(domain, previous, entry)
        self._outage.ok()
        if done:
            if entry is None:
                self.local.delete(domain)
            else:
                self.local.put(entry)
        return done

    async def _cas(self, key: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        async with self.client.pipeline() as pipe:
            for _ in range(_CAS_ATTEMPTS):
                try:
                    await pipe.watch(key)
                    current = _parse(key, await pipe.get(key))
                    if not decide_replace(current, previous, entry):
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if entry is None or (_expire_at(entry) or float("inf")) <= time.time():
                        pipe.delete(key)
                    else:
                        pipe.set(key, entry.to_json(), exat=_expire_at(entry))
                    await pipe.execute()
                except redis.WatchError:
                    continue
                else:
                    return True
        return False

    async def delete(self, domain: str) -> None:
        """
        Remove the domain's entry from Redis and the local layer.

        Args:
            domain: The policy domain.
        """
        self.local.delete(domain)
        try:
            await self.client.delete(self._key(domain))
        except _OUTAGE as exc:
            self._outage.failed("delete", exc)
        else:
            self._outage.ok()

    async def entries(self) -> list[CacheEntry]:
        """
        Return every readable entry (the local layer's while Redis is down).

        Returns:
            The entries.
        """
        try:
            keys = [k async for k in self.client.scan_iter(match=self.prefix + "*")]
            found: list[CacheEntry] = []
            for start in range(0, len(keys), _SCAN_BATCH):
                batch = keys[start : start + _SCAN_BATCH]
                for key, raw in zip(batch, await self.client.mget(batch), strict=True):
                    entry = _parse(str(key), raw)
                    if entry is not None:
                        found.append(entry)
        except _OUTAGE as exc:
            self._outage.failed("scan", exc)
            return list(self.local.entries())
        self._outage.ok()
        return found

    async def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again.

        Args:
            now: The current time.
            interval: The refresh interval.

        Returns:
            The due entries.
        """
        return [e for e in await self.entries() if refresh_due(e, now, interval)]

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
