"""
An in-memory policy store: a dict, optionally bounded as an LRU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timedelta

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry
from smtpsts.stores import DEFAULT_REFRESH_INTERVAL, decide_replace, refresh_due

__all__ = ["MemoryPolicyStore"]


class MemoryPolicyStore:
    """
    Entries in a dict; for libraries, tests and as Redis's local layer.

    Unbounded by default: STS-CACHE-17 says entries are never evicted early
    because the cache is full. A bound turns it into an LRU for callers who
    prefer bounded memory to that guarantee.

    Args:
        max_entries: Keep at most this many entries, dropping the least
            recently used; ``None`` for no bound.

    Raises:
        ValueError: ``max_entries`` is below 1.
    """

    def __init__(self, *, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, domain: str) -> CacheEntry | None:
        """
        Return the entry for ``domain``, or ``None``.

        Args:
            domain: The policy domain.

        Returns:
            The entry (marked as recently used).
        """
        key = to_alabel(domain)
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and self.max_entries is not None:
                self._data.move_to_end(key)
            return entry

    def _store(self, entry: CacheEntry) -> None:
        self._data[entry.domain] = entry
        self._data.move_to_end(entry.domain)
        if self.max_entries is not None:
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry``, replacing the domain's entry.

        Args:
            entry: The entry.
        """
        with self._lock:
            self._store(entry)

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set (see :mod:`smtpsts.stores`).

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through.
        """
        key = to_alabel(domain)
        with self._lock:
            if not decide_replace(self._data.get(key), previous, entry):
                return False
            if entry is None:
                self._data.pop(key, None)
            else:
                self._store(entry)
            return True

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry, if any.

        Args:
            domain: The policy domain.
        """
        with self._lock:
            self._data.pop(to_alabel(domain), None)

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

    def entries(self) -> Iterator[CacheEntry]:
        """
        Iterate over a snapshot of the entries.

        Returns:
            An iterator over the entries.
        """
        with self._lock:
            return iter(list(self._data.values()))

    def close(self) -> None:
        """Nothing to release."""
