"""
What a :class:`~smtpsts.io.drivers.PolicyResolver` knows without asking the store (issue 10).

The live entries this process last saw (bounded, least recently used
first out), the outcomes of failed background checks (reported until a
check succeeds, STS-CACHE-07), the counters, and the rules that turn a
store failure or a local fault into "the cached policy" or an exception:
while a cached policy is live, no local fault may give a weaker outcome
(RFC 8461 §5.1, §10).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from datetime import datetime
from typing import Final

from smtpsts.actions import Resolved
from smtpsts.cache import CacheEntry, PolicyOutcome, cached_outcome, negative_outcome
from smtpsts.exceptions import LocalFaultError, StoreError

__all__ = ["STATS", "Burst", "KnownEntries"]

log = logging.getLogger("smtpsts.io.drivers")

STATS: Final = (
    "lookups",
    "cache_answers",
    "background_checks",
    "background_skipped",
    "lookup_timeouts",
    "lookups_queued",
    "store_errors",
    "local_faults",
    "internal_errors",
)
"""The counters of :attr:`PolicyResolver.stats <smtpsts.io.drivers.PolicyResolver.stats>`."""


class Burst:
    """
    Logs a warning once per burst: the first at once, then one summary every ``every`` seconds.

    Args:
        every: Seconds between two warnings; the ones held back are counted.
    """

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = -math.inf
        self.held = 0

    def warn(self, message: str, *args: object) -> None:
        """
        Log ``message`` now, or count it for the next summary.

        Args:
            message: The ``logging`` format string.
            args: Its arguments.
        """
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return
        if self.held:
            message += " (%d more like it since the last report)"
            args = (*args, self.held)
        self.last, self.held = now, 0
        log.warning(message, *args)


class KnownEntries:
    """
    The process-local view of the policy cache, and the answers it gives on faults.

    Args:
        limit: Live entries (and failed-check outcomes) remembered at most.
        stats: The resolver's counters (updated here).
    """

    def __init__(self, limit: int, stats: dict[str, int]) -> None:
        self.limit = limit
        self.stats = stats
        self.entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self.fallbacks: dict[str, PolicyOutcome] = {}
        self.faults = Burst()

    def remember(self, entry: CacheEntry) -> None:
        """
        Remember a live entry (the most recently used).

        Args:
            entry: The entry.
        """
        known = self.entries
        if known.get(entry.domain) is not entry:
            known[entry.domain] = entry
            known.move_to_end(entry.domain)
            while len(known) > self.limit:
                known.popitem(last=False)

    def from_cache(
        self, name: str, entry: CacheEntry | None, now: datetime
    ) -> tuple[PolicyOutcome | None, bool]:
        """
        The answer the cache gives without any network I/O.

        Args:
            name: The policy domain.
            entry: Its stored entry.
            now: The current time.

        Returns:
            The outcome (``None`` when the network must be asked), and whether
            it came from a live policy (then a background check follows).
        """
        if entry is None:
            return None, False
        if entry.is_live(now):
            self.remember(entry)
            fallback = self.fallbacks.get(name)
            if (
                fallback is not None
                and fallback.record_id == entry.record_id
                and fallback.expires_at == entry.expires_at
            ):
                # The last check failed: report it (STS-CACHE-07, RPT-AGG) until one succeeds.
                return fallback, True
            return cached_outcome(entry, now), True
        return negative_outcome(entry, now), False

    def live(self, name: str, now: datetime) -> CacheEntry | None:
        """
        The entry of ``name`` this process last saw, if it is live.

        Args:
            name: The policy domain.
            now: The current time.

        Returns:
            The entry, or ``None``.
        """
        known = self.entries.get(name)
        return known if known is not None and known.is_live(now) else None

    def store_failed(self, name: str, now: datetime, exc: BaseException) -> CacheEntry:
        """
        The store could not be read: the entry last seen while it is live (RFC 8461 §10).

        Args:
            name: The policy domain.
            now: The current time.
            exc: What the store raised.

        Returns:
            The live entry this process last saw.

        Raises:
            StoreError: No live entry is known: the policy state is unknown.
        """
        self.stats["store_errors"] += 1
        known = self.live(name, now)
        if known is not None:
            self.faults.warn(
                "policy store cannot be read for %s (%s); applying the cached policy"
                " this process last read",
                name,
                exc or type(exc).__name__,
            )
            return known
        self.faults.warn(
            "policy store cannot be read for %s (%s); its policy state is unknown",
            name,
            exc or type(exc).__name__,
        )
        if isinstance(exc, StoreError):
            raise exc
        raise StoreError(
            f"the policy store cannot be read for {name}: {exc!r}", domain=name
        ) from exc

    def settle(self, name: str, outcome: PolicyOutcome, resolved: Resolved) -> None:
        """
        Keep the view in step with what a lookup resolved to.

        Args:
            name: The policy domain.
            outcome: The lookup's outcome.
            resolved: What the machine resolved to.
        """
        if outcome.used_cache_after_failure:
            self.fallbacks[name] = outcome
            if len(self.fallbacks) > self.limit:
                self.fallbacks.pop(next(iter(self.fallbacks)))
        else:
            self.fallbacks.pop(name, None)
        entry = resolved.store
        if entry is not None and entry.expires_at is not None:
            self.remember(entry)
        elif resolved.delete or entry is not None:
            self.entries.pop(name, None)

    def faulted(self, name: str, now: datetime, exc: Exception) -> PolicyOutcome:
        """
        A lookup failed on this host: the cached policy if live (issue 10, 17).

        Args:
            name: The policy domain.
            now: The current time.
            exc: A :class:`~smtpsts.LocalFaultError`, or a bug.

        Returns:
            The outcome of the live entry this process last saw.

        Raises:
            Exception: ``exc``, when no live entry is known.
        """
        if isinstance(exc, LocalFaultError):
            self.stats["local_faults"] += 1
            self.faults.warn("MTA-STS lookup of %s hit a local fault: %s", name, exc)
        else:
            self.stats["internal_errors"] += 1
            log.error("MTA-STS lookup of %s failed", name, exc_info=exc)
        known = self.live(name, now)
        if known is None:
            raise exc
        outcome = cached_outcome(known, now)
        assert outcome is not None  # live
        return outcome
