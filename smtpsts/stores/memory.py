"""
An in-memory policy store: a dict, optionally bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry
from smtpsts.stores import _RefreshFromEntries, decide_replace

__all__ = ["MemoryPolicyStore"]

log = logging.getLogger(__name__)

# Eviction classes, cheapest to lose first (issue 10). An entry's class
# comes from its kind, not its clock: a policy entry stays in _POLICY after
# it expires, and the eviction path checks liveness where it matters.
_EMPTY: Final = 0  # nothing valid at all
_NEGATIVE: Final = 1  # "no STS record" (negative_until)
_BACKOFF: Final = 2  # a backoff marker without a policy answer
_NONE: Final = 3  # a mode none answer (no policy, AMB-24)
_POLICY: Final = 4  # an enforce or testing policy
_CLASSES: Final = 5

# Look for expired policies among the live-policy class at most once per
# this fraction of max_entries writes (keeps eviction amortised O(1)).
_SWEEP_FRACTION: Final = 16


def _kind(entry: CacheEntry) -> int:
    if entry.policy is not None:
        return _POLICY
    if entry.expires_at is not None:
        return _NONE
    if entry.backoff_until is not None:
        return _BACKOFF
    if entry.negative_until is not None:
        return _NEGATIVE
    return _EMPTY


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryPolicyStore(_RefreshFromEntries):
    """
    Entries in a dict; for libraries, tests and as Redis's local layer.

    Unbounded by default: STS-CACHE-17 says entries are never evicted early
    because the cache is full. A bound is for callers who prefer bounded
    memory; it never costs a live enforce or testing policy to make room for
    lookups of new domains (issue 10, RFC 8461 §10: a flood of lookups for
    domains without MTA-STS must not push a target's policy out).

    Over ``max_entries``, the least recently used entry of the cheapest
    class goes, in this order: entries with nothing in them, negative
    entries, backoff markers without a policy, mode ``none`` entries, then
    expired enforce and testing policies. Losing any of these costs at most
    a repeated DNS query or policy fetch, never protection.

    When live enforce and testing policies alone fill ``max_entries``:

    - Any other entry is not kept (it is dropped as soon as it is written;
      the lookup that wrote it still got its answer, the next one asks
      again). A warning is logged once per such burst.
    - A new live policy is kept beyond the bound, up to ``hard_limit``
      entries (twice ``max_entries`` by default).
    - At ``hard_limit``, which is the hard memory bound, a new live policy
      replaces the least recently used live policy, with a warning once per
      burst. That domain's next lookup fetches its policy again and, until
      then, is delivered as if it had none: size the bound above the number
      of live policies you expect, or leave the store unbounded. For
      Redis's local layer that loss is only local: Redis keeps the entry.

    Reads, writes and evictions take amortised constant time; expired
    policies hidden among live ones are looked for at most once every
    ``max_entries / 16`` writes.

    Args:
        max_entries: The soft bound; ``None`` for no bound.
        hard_limit: The hard bound, only ever reached by live policies;
            default ``2 * max_entries``.
        clock: The current time, to tell live policies from expired ones
            when evicting.

    Raises:
        ValueError: ``max_entries`` is below 1, or ``hard_limit`` below
            ``max_entries``.
    """

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        hard_limit: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if hard_limit is not None and (max_entries is None or hard_limit < max_entries):
            raise ValueError("hard_limit needs max_entries and must be at least max_entries")
        self.max_entries = max_entries
        self.hard_limit = (
            hard_limit if hard_limit is not None or max_entries is None else 2 * max_entries
        )
        self._ceiling = self.hard_limit or 0
        self.clock = clock
        self._data: dict[str, CacheEntry] = {}
        # One LRU order per eviction class (bounded stores only).
        self._lru: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(_CLASSES)]
        self._where: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()
        self._next_expiry: datetime | None = None
        self._since_sweep = 0
        self._warned_full = False
        self._warned_ceiling = False

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
                self._where[key].move_to_end(key)
            return entry

    def _remove(self, key: str) -> None:
        if self._data.pop(key, None) is not None and self.max_entries is not None:
            del self._where.pop(key)[key]

    def _store(self, entry: CacheEntry) -> None:
        key = entry.domain
        if self.max_entries is None:
            self._data[key] = entry
            return
        kind = _kind(entry)
        lru = self._lru[kind]
        if (
            kind == _POLICY
            and entry.expires_at is not None
            and (self._next_expiry is None or entry.expires_at < self._next_expiry)
        ):
            self._next_expiry = entry.expires_at
        self._since_sweep += 1
        was = self._where.get(key)
        self._data[key] = entry
        if was is lru:
            lru.move_to_end(key)
            return
        if was is not None:
            del was[key]
        self._where[key] = lru
        lru[key] = None
        if len(self._data) > self.max_entries:
            self._evict(key, self.max_entries)
        else:
            self._warned_full = self._warned_ceiling = False

    def _evict(self, key: str, bound: int) -> None:
        # Called with one entry over the bound, just after writing ``key``.
        for lru in self._lru[:_POLICY]:
            if lru:
                evicted = lru.popitem(last=False)[0]
                del self._data[evicted]
                del self._where[evicted]
                if evicted == key and not self._warned_full and not any(self._lru[:_POLICY]):
                    log.warning(
                        "memory policy store: live policies fill max_entries=%d;"
                        " other entries are not kept",
                        bound,
                    )
                    self._warned_full = True
                return
        # Only enforce and testing policies left: drop an expired one if any.
        now = self.clock()
        oldest = next(iter(self._lru[_POLICY]))
        if not self._data[oldest].is_live(now):
            self._remove(oldest)
            return
        if self._sweep_due(now, bound) and self._sweep(now):
            return
        if len(self._data) <= self._ceiling:
            return  # a live policy beyond the soft bound
        if not self._warned_ceiling:
            log.warning(
                "memory policy store: live policies reach hard_limit=%d; dropping"
                " the least recently used live policy",
                self._ceiling,
            )
            self._warned_ceiling = True
        self._remove(oldest)

    def _sweep_due(self, now: datetime, bound: int) -> bool:
        return (
            self._next_expiry is not None
            and now >= self._next_expiry
            and self._since_sweep >= bound // _SWEEP_FRACTION
        )

    def _sweep(self, now: datetime) -> bool:
        # Drop every expired policy; O(n), rate-limited by _sweep_due.
        self._since_sweep = 0
        policies = self._lru[_POLICY]
        expired = [k for k in policies if not self._data[k].is_live(now)]
        for key in expired:
            self._remove(key)
        ends = [e.expires_at for k in policies if (e := self._data[k]).expires_at is not None]
        self._next_expiry = min(ends, default=None)
        return bool(expired)

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry``, replacing the domain's entry.

        Args:
            entry: The entry (in a bounded store, maybe dropped at once; see
                the class documentation).
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
            Whether the write went through (an entry that a full bounded
            store does not keep counts as written, then evicted).
        """
        key = to_alabel(domain)
        with self._lock:
            if not decide_replace(self._data.get(key), previous, entry):
                return False
            if entry is None:
                self._remove(key)
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
            self._remove(to_alabel(domain))

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
