"""
DANE first (RFC 8461 §2): whether a next hop's MX hosts have usable TLSA records.

When an answer of ``smtpsts postfix serve`` would be MTA-STS ``secure``,
:class:`DaneChecker` asks a validating resolver whether the domain's MX
hosts have DNSSEC-validated usable TLSA records (RFC 7672 §2.2), and if so
the zone's DANE answer is given instead. :func:`verdict_from` combines the
TLSA lookups of one destination into a :class:`~smtpsts.postfix.protocol.DaneVerdict`.

The checker is the server's: it logs to ``smtpsts.postfix.server``, and
:mod:`smtpsts.postfix.server` re-exports both names.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSStatus, TLSALookup
from smtpsts.postfix.protocol import DaneVerdict

__all__ = [
    "DEFAULT_VERDICT_TTL",
    "MAX_BACKGROUND_CHECKS",
    "MAX_MX_HOSTS",
    "MAX_STALE_VERDICT",
    "MIN_VERDICT_TTL",
    "DaneChecker",
    "verdict_from",
]

log = logging.getLogger("smtpsts.postfix.server")  # the server's one logger

MAX_MX_HOSTS: Final = 10
"""TLSA records are looked up for at most this many MX hosts of one domain."""

MIN_VERDICT_TTL: Final = 30.0
"""DANE verdicts are reused at least this long (and failures exactly this long)."""

DEFAULT_VERDICT_TTL: Final = 300.0
"""The reuse time of a DANE verdict when no record TTL is known."""

MAX_STALE_VERDICT: Final = 86400.0
"""A DANE verdict past its reuse time is still answered (and re-checked) this long."""

MAX_BACKGROUND_CHECKS: Final = 64
"""DANE re-checks running in the background at once."""


class DaneChecker:
    """
    Whether a destination's MX hosts have DNSSEC-validated usable TLSA records.

    Follows Postfix's own DANE rules, so that a ``dane-only`` answer means
    Postfix will find the same records: DANE only with a secure MX RRset
    (or, without MX records, a securely denied MX and the domain itself as
    the host, RFC 7672 §2.2.1), TLSA per MX host (RFC 7672 §2.2.2, §2.2.3).

    Verdicts are reused per domain for the smallest TTL of the records used
    (between :data:`MIN_VERDICT_TTL` and ``max_ttl``; failures for
    :data:`MIN_VERDICT_TTL`). Past that a verdict is *stale*: it is still
    answered at once (for up to ``max_stale`` seconds more) while one
    re-check per domain runs in the background (at most
    ``max_background`` at once, each bounded by ``timeout``); a re-check
    that fails or times out keeps the old verdict. Only a domain without a
    verdict waits for its lookups, and concurrent first checks of one domain
    share one set of lookups (issue 17: DANE never waits on the network when
    it can answer).

    Args:
        resolver: A DNSSEC-aware resolver; one that is not trusted to
            validate (not on loopback, DANE-02) makes every verdict ``NONE``.
        max_ttl: The longest a verdict is reused, in seconds.
        max_entries: The most verdicts kept (least recently checked dropped first).
        clock: Monotonic seconds (tests inject their own).
        timeout: Seconds a background re-check may take.
        max_stale: Seconds past its reuse time a verdict is still answered.
        max_background: Background re-checks running at once.
    """

    def __init__(
        self,
        resolver: AsyncDNSSECResolver,
        *,
        max_ttl: float = 3600.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 10.0,
        max_stale: float = MAX_STALE_VERDICT,
        max_background: int = MAX_BACKGROUND_CHECKS,
    ) -> None:
        self.resolver = resolver
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self.clock = clock
        self.timeout = timeout
        self.max_stale = max_stale
        self.max_background = max_background
        self.stats: dict[str, int] = {"checks": 0, "stale": 0, "recheck_failures": 0}
        # domain -> (reused until, verdict), in order of the last check.
        self._cache: dict[str, tuple[float, DaneVerdict]] = {}
        self._flights: dict[str, asyncio.Future[tuple[DaneVerdict, float]]] = {}
        self._background: dict[str, asyncio.Task[None]] = {}

    async def verdict(self, domain: str) -> DaneVerdict:
        """
        The DANE verdict for a next-hop domain (cached; stale verdicts answered at once).

        Args:
            domain: The next-hop domain (A-label).

        Returns:
            ``USABLE`` when a secure MX host has usable secure TLSA records,
            ``FAILED`` when such a lookup failed (DANE-08), else ``NONE``.
        """
        if not self.resolver.trusted:
            return DaneVerdict.NONE
        now = self.clock()
        cached = self._cache.get(domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        if cached is not None and now - cached[0] < self.max_stale:
            self.stats["stale"] += 1
            self._recheck(domain)
            return cached[1]
        flight = self._flights.get(domain)
        if flight is None:
            flight = self._flights[domain] = asyncio.ensure_future(self._check(domain))
            # Stored when the lookups end, even when every caller stopped waiting.
            flight.add_done_callback(lambda f: self._landed(domain, f))
        verdict, _ttl = await asyncio.shield(flight)
        return verdict

    def _landed(self, domain: str, flight: asyncio.Future[tuple[DaneVerdict, float]]) -> None:
        self._flights.pop(domain, None)
        if flight.cancelled():
            return
        if (e := flight.exception()) is not None:
            log.info("%s: DANE check failed: %s", domain, e or type(e))
            return
        self._store(domain, *flight.result())

    def _store(self, domain: str, verdict: DaneVerdict, ttl: float) -> None:
        cache = self._cache
        if cache.pop(domain, None) is None and len(cache) >= self.max_entries:
            del cache[next(iter(cache))]
        cache[domain] = (self.clock() + ttl, verdict)

    def _recheck(self, domain: str) -> None:
        # One background re-check per domain, at most max_background at once;
        # over that the stale verdict is answered and a later request retries.
        if domain in self._background or len(self._background) >= self.max_background:
            return
        task = asyncio.get_running_loop().create_task(self._background_check(domain))
        self._background[domain] = task
        task.add_done_callback(lambda _t: self._background.pop(domain, None))

    async def _background_check(self, domain: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                verdict, ttl = await self._check(domain)
        except Exception as e:  # noqa: BLE001 -- the stale verdict stays; logged
            self.stats["recheck_failures"] += 1
            log.info("%s: DANE re-check failed (%s); the last verdict stays", domain, e or type(e))
            return
        self._store(domain, verdict, ttl)

    def reusable_for(self, domain: str) -> float | None:
        """
        How many more seconds the cached verdict for ``domain`` is reused.

        Args:
            domain: The next-hop domain (A-label).

        Returns:
            The seconds left (unbounded when the resolver cannot validate,
            so every verdict is ``NONE``; negative when the verdict is
            stale), or ``None`` when no verdict is cached.
        """
        if not self.resolver.trusted:
            return math.inf
        cached = self._cache.get(domain)
        return None if cached is None else cached[0] - self.clock()

    async def aclose(self) -> None:
        """Cancel the background re-checks (at shutdown)."""
        tasks = list(self._background.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _check(self, domain: str) -> tuple[DaneVerdict, float]:
        self.stats["checks"] += 1
        mx = await self.resolver.lookup_mx(domain)
        if mx.status is DNSStatus.SECURE:
            hosts = [r.exchange for r in mx.records if r.exchange][:MAX_MX_HOSTS]
        elif mx.status is DNSStatus.NOT_FOUND and mx.secure and not mx.nxdomain:
            hosts = [domain]
        else:
            return DaneVerdict.NONE, self._ttl([mx.ttl])
        lookups = await asyncio.gather(
            *(self.resolver.lookup_tlsa(h, next_hop_names=(domain,)) for h in hosts)
        )
        verdict = verdict_from(lookups)
        if verdict is DaneVerdict.FAILED:
            return verdict, MIN_VERDICT_TTL
        ttls = [mx.ttl, *(a.ttl for lookup in lookups for a in lookup.answers)]
        return verdict, self._ttl(ttls)

    def _ttl(self, ttls: Iterable[int | None]) -> float:
        known = [t for t in ttls if t is not None]
        ttl = min(known) if known else DEFAULT_VERDICT_TTL
        return min(max(float(ttl), MIN_VERDICT_TTL), self.max_ttl)


def verdict_from(lookups: Sequence[TLSALookup]) -> DaneVerdict:
    """
    Combine the TLSA lookups of a destination's MX hosts.

    Args:
        lookups: One lookup per MX host.

    Returns:
        ``USABLE`` if any host has a secure RRset with a usable record
        (DANE-12); else ``FAILED`` if any lookup failed (DANE-08); else
        ``NONE`` (no TLSA, insecure, or only unusable records, where an
        MTA-STS ``secure`` answer gives more than DANE's "encrypt" would).
    """
    if any(
        lookup.status is DNSStatus.SECURE and any(r.usable for r in lookup.records)
        for lookup in lookups
    ):
        return DaneVerdict.USABLE
    if any(lookup.status in (DNSStatus.BOGUS, DNSStatus.TEMPFAIL) for lookup in lookups):
        return DaneVerdict.FAILED
    return DaneVerdict.NONE
