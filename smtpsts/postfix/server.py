"""
The asyncio socketmap server behind ``smtpsts postfix serve``.

One :class:`PolicyServer` listens on TCP and unix sockets and answers
Postfix's ``smtp_tls_policy_maps`` lookups with
:mod:`smtpsts.postfix.protocol`. The guarantees:

- every request gets an answer, in request order even when Postfix
  pipelines, or the connection is closed with a logged reason (malformed
  netstring, oversized key, idle or stalled client, shutdown);
- a connection has at most ``max_pending`` requests in work (it is not read
  further meanwhile), and the server at most ``max_connections``
  connections, fewer if the descriptor limit needs it (issue 10, 17). When
  full, a new connection evicts the one stalled inside a netstring longest,
  or idle longest (one never answered before one answered already), never
  one with a request in work; on a unix socket some
  slots are kept for Postfix's user and root, on TCP one non-loopback peer
  holds at most ``max_connections_per_peer``;
- a started netstring must arrive whole within ``frame_timeout``; between
  requests a connection may stay silent ``idle_timeout``;
- a lookup that fails locally (a store error, descriptors exhausted, an
  unexpected exception) is answered ``TEMP`` (Postfix defers), never with a
  weaker policy; a domain with no live cached policy whose lookup passes the
  zone timeout gets ``NOTFOUND`` (or ``TEMP``, per zone); a domain with a
  live cached policy is answered from it at once (RFC 8461 §5.1, §10);
- ``accept()`` failing for lack of descriptors pauses accepting briefly,
  logged once per burst;
- SIGTERM/SIGINT stop accepting, answer what was asked, then close;
  ``sd_notify`` ``READY=1`` and ``STOPPING=1`` go to ``$NOTIFY_SOCKET``.

DANE first (RFC 8461 §2): when an answer would be MTA-STS ``secure``,
:class:`DaneChecker` asks a validating resolver whether the domain's MX hosts
have DNSSEC-validated usable TLSA records, and if so the zone's DANE answer
is given instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import os
import signal
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, cast

from smtpsts.cache import PolicyOutcome, PolicySource
from smtpsts.exceptions import LocalFaultError, LookupTimeoutError
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSStatus, TLSALookup
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix.config import ConfigError, ServerConfig, split_address
from smtpsts.postfix.metrics import LookupMetrics
from smtpsts.postfix.netstring import DEFAULT_MAX_LENGTH, NetstringDecoder, NetstringError, encode
from smtpsts.postfix.protocol import (
    Answer,
    AnswerKind,
    DaneVerdict,
    KeyIgnored,
    RequestSyntaxError,
    Zone,
    build_answer,
    needs_dane_check,
    normalize_key,
    parse_request,
)

__all__ = [
    "ACCEPT_PAUSE",
    "BACKSTOP_MARGIN",
    "DANE_BUDGET",
    "DEFAULT_VERDICT_TTL",
    "DNS_CACHE_SIZE",
    "LOOKUP_DESCRIPTOR_RESERVE",
    "MAX_MX_HOSTS",
    "MIN_VERDICT_TTL",
    "BurstLog",
    "DaneChecker",
    "PolicyServer",
    "build_resolver",
    "connection_capacity",
    "lookup_capacity",
    "parse_listen",
    "raise_nofile_limit",
    "run",
    "sd_notify",
    "verdict_from",
]

log = logging.getLogger(__name__)

MAX_MX_HOSTS: Final = 10
"""TLSA records are looked up for at most this many MX hosts of one domain."""

DNS_CACHE_SIZE: Final = 100_000
"""DNS answers kept by the server's resolver cache."""

MIN_VERDICT_TTL: Final = 30.0
"""DANE verdicts are reused at least this long (and failures exactly this long)."""

DEFAULT_VERDICT_TTL: Final = 300.0
"""The reuse time of a DANE verdict when no record TTL is known."""

MAX_STALE_VERDICT: Final = 86400.0
"""A DANE verdict past its reuse time is still answered (and re-checked) this long."""

MAX_BACKGROUND_CHECKS: Final = 64
"""DANE re-checks running in the background at once."""

DANE_BUDGET: Final = 0.5
"""Seconds a lookup with a live cached MTA-STS policy waits for a first DANE verdict."""

BACKSTOP_MARGIN: Final = 2.0
"""Seconds past the zone timeout after which the server gives up on a lookup (``TEMP``)."""

LOOKUP_DESCRIPTOR_RESERVE: Final = 64
"""Descriptors kept for DNS, HTTPS and store sockets at least (or a quarter of the limit)."""

ACCEPT_PAUSE: Final = 0.5
"""Seconds accepting pauses after ``accept()`` failed for lack of descriptors or memory."""

BURST_INTERVAL: Final = 10.0
"""Repeats of one logged fault are summed up at most this often."""

_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_PEERCRED: Final = struct.Struct("3i")


class BurstLog:
    """
    Log a repeating fault once, then a summary at most every ``interval`` seconds.

    The first occurrence is logged at once; repeats within ``interval`` are
    counted and summed up in one line when the interval ends (issue 10: a
    flood of one local fault must not flood the log).

    Args:
        logger: Where to log.
        what: What the summary counts (``"local faults"``).
        interval: Seconds between summaries.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = BURST_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self.last: str = ""
        self._logged_at = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, message: str, *args: object) -> None:
        """
        Log ``message % args`` at WARNING now, or count it for the next summary.

        Args:
            message: A %-format string.
            args: Its arguments.
        """
        now = self.clock()
        if self.suppressed and self._timer is None and now - self._logged_at >= self.interval:
            self.flush()  # no running loop summed the last burst up: do it now
        if now - self._logged_at >= self.interval and not self.suppressed:
            self._logged_at = now
            self.logger.warning(message, *args)
            return
        self.suppressed += 1
        self.last = message % args
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: summed up on the next call
                self._timer = asyncio.get_running_loop().call_later(
                    max(self._logged_at + self.interval - now, 0.0), self.flush
                )

    def flush(self) -> None:
        """Log the summary of the repeats counted since the last line, if any."""
        self._timer = None
        if self.suppressed:
            self.logger.warning(
                "%d more %s in the last %gs (last: %s)",
                self.suppressed,
                self.what,
                self.interval,
                self.last,
            )
            self.suppressed = 0
            self._logged_at = self.clock()

    def cancel(self) -> None:
        """Drop the pending summary timer (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def raise_nofile_limit() -> tuple[int, int]:
    """
    Raise the soft ``RLIMIT_NOFILE`` to the hard limit (issue 10, issue 17).

    Returns:
        The soft and hard limits now in force (``resource.RLIM_INFINITY``
        stays as it is when the kernel refuses it).
    """
    import resource  # noqa: PLC0415 -- POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, e)
        else:
            log.info("descriptor limit raised from %d to the hard limit %d", soft, hard)
            soft = hard
    return soft, hard


def connection_capacity(nofile: int, max_connections: int, in_use: int) -> int:
    """
    How many connections the descriptor limit allows, keeping some for lookups.

    Args:
        nofile: The soft ``RLIMIT_NOFILE``.
        max_connections: The configured bound.
        in_use: Descriptors open now (listeners, stores, logs).

    Returns:
        ``min(max_connections, nofile - in_use - reserve)`` with ``reserve``
        = max(:data:`LOOKUP_DESCRIPTOR_RESERVE`, a quarter of ``nofile``) for
        DNS, HTTPS and store sockets, and at least 1.
    """
    reserve = max(LOOKUP_DESCRIPTOR_RESERVE, nofile // 4)
    return max(1, min(max_connections, nofile - in_use - reserve))


def lookup_capacity(nofile: int, max_background: int) -> int:
    """
    How many uncached lookups may run at once within the descriptor reserve.

    Each holds up to two descriptors (a DNS socket and the policy host's
    connection, which a hanging host keeps until the fetch deadline); the
    background checks of cached domains (``max_background``) come first.
    Without this bound, a flood of uncached domains whose policy hosts hang
    used up the descriptors and new Postfix connections were not accepted
    (issue 10, SEC-56).

    Args:
        nofile: The soft ``RLIMIT_NOFILE``.
        max_background: The resolver's bound on background checks.

    Returns:
        ``(reserve - 2 * max_background) // 2`` with the reserve of
        :func:`connection_capacity`, at least 8.
    """
    reserve = max(LOOKUP_DESCRIPTOR_RESERVE, nofile // 4)
    return max(8, (reserve - 2 * max_background) // 2)


def _open_descriptors() -> int:
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:  # pragma: no cover -- Linux has /proc
        return 32


def sd_notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """
    Tell systemd about the service state (``sd_notify(3)``), without libsystemd.

    Args:
        state: For example ``"READY=1"`` or ``"STOPPING=1"``.
        environ: The environment to read ``NOTIFY_SOCKET`` from (default
            :data:`os.environ`).

    Returns:
        Whether a notification was sent.
    """
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", path, e)
        return False
    return True


def parse_listen(spec: str) -> tuple[str, int] | str:
    """
    Parse a listen address.

    Args:
        spec: ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH``.

    Returns:
        ``(host, port)`` for TCP, the path for a unix socket.

    Raises:
        ValueError: The address is malformed.
    """
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError(f"listen address {spec!r}: empty unix socket path")
        return path
    host, sep, port = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {spec!r}: expected HOST:PORT, [IPv6]:PORT or unix:PATH")
    return host, int(port)


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


class _AnswerCache:
    """
    Encoded answers by raw request payload, each with its monotonic expiry.

    The hot path of the server: a repeated request is answered from here
    without parsing, normalising or a task. Bounded: at ``max_entries`` the
    oldest entry goes.
    """

    __slots__ = ("entries", "framed", "max_entries", "ttl")

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: dict[bytes, tuple[float, bytes]] = {}
        # The same entries keyed by the whole request netstring: a read that
        # holds exactly one request is answered without decoding it.
        self.framed: dict[bytes, tuple[float, bytes]] = {}

    def put(self, payload: bytes, until: float, encoded: bytes) -> None:
        entries = self.entries
        if entries.pop(payload, None) is None and len(entries) >= self.max_entries:
            oldest = next(iter(entries))
            del entries[oldest]
            del self.framed[encode(oldest)]
        entries[payload] = self.framed[encode(payload)] = (until, encoded)

    def clear(self) -> None:
        self.entries.clear()
        self.framed.clear()


class PolicyServer:
    """
    The socketmap server.

    Repeated requests are answered from an answer cache (the encoded reply
    per request payload) for at most :attr:`ServerConfig.answer_ttl`
    seconds, and never past the policy's expiry or the DANE verdict's reuse
    time; lookups that failed in any way (timeouts, fetch errors, DNS
    failures) are never cached. A cache miss runs the full lookup: TXT check
    (through the DNS cache), the policy store, the DANE check.

    Args:
        config: The server configuration (listeners, limits, zones).
        resolver: The policy resolver (store, adapters, single-flight).
        dane: The TLSA checker (``None``: no DANE checks).
    """

    def __init__(
        self,
        config: ServerConfig,
        resolver: PolicyResolver,
        *,
        dane: DaneChecker | None = None,
    ) -> None:
        self.config = config
        self.resolver = resolver
        self.dane = dane
        self.listeners: list[_Listener] = []
        self._connections: dict[_Connection, None] = {}
        self._closing = False
        self._answers = _AnswerCache(config.answer_ttl, config.answer_entries)
        self._inflight: dict[bytes, asyncio.Task[bytes]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.capacity = config.max_connections
        self.reserved = 0
        self.per_peer = config.max_connections_per_peer or max(1, config.max_connections // 2)
        self.privileged_uids: frozenset[int] = frozenset({0})
        self._unprivileged = 0
        self._per_peer: dict[str, int] = {}
        self._fault_log = BurstLog(log, "local faults")
        self._accept_log = BurstLog(log, "accept() failures")
        self._admit_log = BurstLog(log, "refused or evicted connections")
        self.metrics = LookupMetrics()
        """The lookup path's counters (see :mod:`smtpsts.postfix.metrics`)."""
        self.metrics_address: tuple[str, int] | None = None
        """Where ``/metrics`` is served, once the metrics listener runs."""
        self.stats: dict[str, int] = {
            "connections": 0,
            "refused": 0,
            "refused_full": 0,
            "refused_peer": 0,
            "refused_closing": 0,
            "evicted_stalled": 0,
            "evicted_idle": 0,
            "frame_timeouts": 0,
            "idle_timeouts": 0,
            "accept_faults": 0,
            "requests": 0,
            "cached": 0,
            "timeouts": 0,
            "local_faults": 0,
            "backstop_timeouts": 0,
            "dane_timeouts": 0,
            "errors": 0,
        }

    # ------------------------------------------------------------------ answers

    async def answer(self, payload: bytes) -> Answer:
        """
        Answer one request payload; never raises (an internal error is ``TEMP``).

        Args:
            payload: One netstring payload from Postfix.

        Returns:
            The answer.
        """
        self.stats["requests"] += 1
        immediate = self._immediate(payload)
        if isinstance(immediate, Answer):
            return immediate
        zone, key = immediate
        answer, _until = await self._lookup(zone, key)
        return answer

    def _immediate(self, payload: bytes) -> Answer | tuple[Zone, str]:
        # The answers that need no lookup, or the zone and domain to look up.
        try:
            request = parse_request(payload)
        except RequestSyntaxError as e:
            log.warning("bad socketmap request: %s", e)
            return Answer(AnswerKind.PERM, f"bad request: {e.reason}", why=str(e))
        zone = self.config.zone(request.name)
        key = normalize_key(request.key)
        if isinstance(key, KeyIgnored):
            log.debug("%s %r: NOTFOUND (%s)", zone.name, request.key, key.reason)
            return Answer(AnswerKind.NOTFOUND, why=key.reason)
        return zone, key

    async def _lookup(self, zone: Zone, key: str) -> tuple[Answer, float | None]:
        # The answer, and until when (loop time) it may be reused (None: never);
        # counted for the metrics.
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer, until, outcome = await self._lookup_answer(zone, key)
        failure = None if outcome is None or outcome.failure is None else outcome.failure
        self.metrics.observe(
            zone.name,
            answer,
            loop.time() - started,
            None if failure is None else str(failure.result_type),
            outcome is not None and outcome.used_cache_after_failure,
        )
        return answer, until

    async def _lookup_answer(
        self, zone: Zone, key: str
    ) -> tuple[Answer, float | None, PolicyOutcome | None]:
        # No failure below is ever cached, and none is weaker than a live
        # cached policy: the resolver answers from one at once (RFC 8461 §5.1,
        # §10); the outer deadline is a backstop only and answers TEMP.
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(zone.timeout + BACKSTOP_MARGIN):
                outcome = await self.resolver.aresolve(key, timeout=zone.timeout)
            until: float | None = None
            if outcome.failure is None and not outcome.temporary_error:
                until = loop.time() + self._answers.ttl
                if outcome.expires_at is not None:
                    left = (outcome.expires_at - self.resolver.clock()).total_seconds()
                    until = min(until, loop.time() + left)
            verdict = DaneVerdict.NONE
            if self.dane is not None and needs_dane_check(outcome, zone):
                # With a live cached policy the answer does not wait on DNS for
                # long: DANE gets DANE_BUDGET, then the policy applies (issue 10
                # item 2) and the verdict lands for later requests.
                live = outcome.source is PolicySource.CACHED and outcome.policy is not None
                budget = min(DANE_BUDGET, self.config.dns_timeout) if live else None
                verdict, dane_until = await self._dane_verdict(key, budget)
                until = None if until is None or dane_until is None else min(until, dane_until)
            answer = build_answer(outcome, zone, dane=verdict)
        except LookupTimeoutError:
            self.stats["timeouts"] += 1
            log.warning(
                "%s %s: no cached policy and the lookup took longer than %gs; answering %s",
                zone.name,
                key,
                zone.timeout,
                "TEMP" if zone.temp_on_timeout else "NOTFOUND",
            )
            if zone.temp_on_timeout:
                return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} timed out"), None, None
            return Answer(AnswerKind.NOTFOUND, why="timeout"), None, None
        except LocalFaultError as e:
            # A store that cannot be read, descriptors or memory exhausted:
            # this host's fault, never a verdict on the domain. Postfix defers.
            self.stats["local_faults"] += 1
            self._fault_log("%s %s: local fault, answering TEMP: %s", zone.name, key, e)
            return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} failed"), None, None
        except TimeoutError:
            self.stats["backstop_timeouts"] += 1
            log.warning(
                "%s %s: the resolver did not answer within %gs; answering TEMP",
                zone.name,
                key,
                zone.timeout + BACKSTOP_MARGIN,
            )
            return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} timed out"), None, None
        except Exception:
            # Fail safe: a store or adapter bug must not weaken an enforce policy.
            self.stats["errors"] += 1
            log.exception("%s %s: lookup failed", zone.name, key)
            return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} failed"), None, None
        log.debug("%s %s: %s %s (%s)", zone.name, key, answer.kind, answer.data, answer.why)
        return answer, until, outcome

    async def _dane_verdict(
        self, domain: str, budget: float | None = None
    ) -> tuple[DaneVerdict, float | None]:
        assert self.dane is not None  # checked by the caller
        wait = self.config.dns_timeout if budget is None else budget
        try:
            async with asyncio.timeout(wait):
                verdict = await self.dane.verdict(domain)
        except TimeoutError:
            # The MTA-STS policy still applies: never answer weaker than it.
            # The lookups go on; their verdict serves later requests.
            self.stats["dane_timeouts"] += 1
            log.warning("%s: DANE lookups took longer than %gs", domain, wait)
            return DaneVerdict.NONE, None
        left = self.dane.reusable_for(domain)
        return verdict, None if left is None else asyncio.get_running_loop().time() + left

    def _request(self, payload: bytes) -> bytes | asyncio.Task[bytes]:
        # Called by a connection for a payload not answered from the cache.
        self.stats["requests"] += 1
        immediate = self._immediate(payload)
        if isinstance(immediate, Answer):
            return encode(immediate.to_bytes())
        job = self._inflight.get(payload)
        if job is None:
            job = asyncio.get_running_loop().create_task(self._cached_lookup(payload, *immediate))
            self._inflight[payload] = job
            job.add_done_callback(lambda _job: self._inflight.pop(payload, None))
        return job

    async def _cached_lookup(self, payload: bytes, zone: Zone, key: str) -> bytes:
        answer, until = await self._lookup(zone, key)
        encoded = encode(answer.to_bytes())
        if until is not None and self._answers.ttl > 0:
            self._answers.put(payload, until, encoded)
        return encoded

    # ------------------------------------------------------------------ connections

    def log_stats(self) -> None:
        """Log the request counters at INFO level (``smtpsts postfix serve`` does on SIGUSR1)."""
        counters = " ".join(f"{name}={value}" for name, value in self.stats.items())
        log.info(
            "stats: %s open=%d answers_cached=%d lookups_running=%d",
            counters,
            len(self._connections),
            len(self._answers.entries),
            len(self._inflight),
        )

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (new connections are refused)."""
        return self._closing

    # ------------------------------------------------------------------ admission

    def accepted(self, sock: socket.socket, peer: Any, listener: _Listener) -> None:
        """
        Admit a connection just accepted (evicting a stalled or idle one when full), or close it.

        Runs before any transport exists, so a refused connection costs one
        ``close()``. On a unix socket the peer's uid (``SO_PEERCRED``)
        decides whether it may use the reserved slots.

        Args:
            sock: The accepted, non-blocking socket.
            peer: Its address from ``accept()``.
            listener: The listener that accepted it.
        """
        privileged = False
        peer_key: str | None = None
        if listener.unix:
            try:
                _pid, uid, _gid = _PEERCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )
            except OSError:  # pragma: no cover -- Linux always has SO_PEERCRED
                uid = -1
            privileged = uid in self.privileged_uids
            peer = f"unix uid {uid}"
        elif not _is_loopback(peer[0]):
            peer_key = peer[0]
        reason = self._admit(privileged, peer_key)
        if reason is not None:
            self.stats["refused"] += 1
            self.stats[reason] += 1
            self._admit_log(
                "connection from %s refused (%s): %d connections open",
                peer,
                reason,
                len(self._connections),
            )
            sock.close()
            return
        connection = _Connection(self, self._answers, self._connections, self._request)
        connection.peer = peer
        connection.privileged = privileged
        connection.peer_key = peer_key
        self.register(connection)
        task = asyncio.get_running_loop().create_task(listener.connect(connection, sock))
        connection.starting = task

    def _admit(self, privileged: bool, peer_key: str | None) -> str | None:
        # None (admitted, perhaps by evicting one) or the refusal counter.
        if self._closing:
            return "refused_closing"
        if peer_key is not None and self._per_peer.get(peer_key, 0) >= self.per_peer:
            return "refused_peer"
        total = len(self._connections)
        if privileged:
            full = total >= self.capacity
        else:
            full = total >= self.capacity or self._unprivileged >= self.capacity - self.reserved
        if not full:
            return None
        victim = self._victim(unprivileged_only=not privileged)
        if victim is None:
            return "refused_full"
        stalled = victim.stopping is None and victim.decoder.pending
        self.stats["evicted_stalled" if stalled else "evicted_idle"] += 1
        self._admit_log(
            "connection from %s evicted (%s) for a new one: %d connections open",
            victim.peer,
            "stalled inside a request" if stalled else "idle",
            total,
        )
        victim.abort()
        self.unregister(victim)
        return None

    def _victim(self, *, unprivileged_only: bool) -> _Connection | None:
        # The connection to evict: never one with a request in work; first one
        # already closing, then the one stalled inside a netstring longest,
        # then the one idle longest that was never answered (a flood's fresh
        # connection whose bytes are not read yet looks like that), then the
        # one idle longest; unprivileged ones before privileged ones.
        best: _Connection | None = None
        best_key: tuple[int, int, float] = (9, 9, 0.0)
        for connection in self._connections:
            # A connection still being set up (no transport yet) may go too: in
            # a flood, most are (it closes once its transport arrives).
            if connection.queue or connection.backlog:
                continue
            if unprivileged_only and connection.privileged:
                continue
            if connection.stopping is not None:
                key = (int(connection.privileged), 0, connection.stopped_at)
            elif connection.decoder.pending:
                key = (int(connection.privileged), 1, connection.request_started)
            else:
                key = (int(connection.privileged), 2 + connection.served, connection.last_active)
            if key < best_key:
                best, best_key = connection, key
        return best

    def register(self, connection: _Connection) -> None:
        """Count a connection in (its slot, its class, its peer)."""
        self.stats["connections"] += 1
        self._connections[connection] = None
        if not connection.privileged:
            self._unprivileged += 1
        if connection.peer_key is not None:
            self._per_peer[connection.peer_key] = self._per_peer.get(connection.peer_key, 0) + 1

    def unregister(self, connection: _Connection) -> None:
        """Count a connection out (closed or evicted; a second call does nothing)."""
        if connection not in self._connections:
            return
        del self._connections[connection]
        if not connection.privileged:
            self._unprivileged -= 1
        if connection.peer_key is not None:
            left = self._per_peer[connection.peer_key] - 1
            if left:
                self._per_peer[connection.peer_key] = left
            else:
                del self._per_peer[connection.peer_key]

    def accept_fault(self, spec: str, e: OSError) -> None:
        """Count and log (once per burst) an ``accept()`` that failed for lack of resources."""
        self.stats["accept_faults"] += 1
        self._accept_log("accept() on %s failed: %s; pausing %gs", spec, e, ACCEPT_PAUSE)

    def _sweep(self) -> None:
        # Close idle connections and clients stuck inside one netstring.
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self.config.idle_timeout
        frame = self.config.frame_timeout
        for connection in list(self._connections):
            connection.check_idle(now, idle, frame)
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    @property
    def _sweep_every(self) -> float:
        # Often enough that a timeout is late by at most a quarter (or a second).
        return min(self.config.idle_timeout / 4, self.config.frame_timeout / 4, 1.0)

    # ------------------------------------------------------------------ lifecycle

    def _plan_capacity(self) -> None:
        # Issue 10 item 4, issue 17 item 2: as many connections as the
        # descriptors allow with a reserve kept for lookups.
        soft, hard = raise_nofile_limit()
        in_use = _open_descriptors()
        self.capacity = connection_capacity(soft, self.config.max_connections, in_use)
        if self.config.max_connections_per_peer is None:
            self.per_peer = max(1, self.capacity // 2)
        resolver = self.resolver
        if isinstance(resolver, PolicyResolver):
            resolver.max_lookups = min(
                resolver.max_lookups, lookup_capacity(soft, resolver.max_background)
            )
            log.info("at most %d uncached lookups at once", resolver.max_lookups)
        log.info(
            "descriptors: soft limit %d, hard limit %d, %d open; serving at most %d connections "
            "(max_connections %d), %d per non-loopback peer",
            soft,
            hard,
            in_use,
            self.capacity,
            self.config.max_connections,
            self.per_peer,
        )
        if self.capacity < self.config.max_connections:
            log.warning(
                "the descriptor limit allows only %d of max_connections %d "
                "(raise LimitNOFILE / ulimit -n)",
                self.capacity,
                self.config.max_connections,
            )

    def _plan_privileged(self) -> None:
        # The uids whose unix-socket connections may use the reserved slots.
        uids = {0}
        name = self.config.postfix_user
        try:
            import pwd  # noqa: PLC0415 -- POSIX only

            uids.add(pwd.getpwnam(name or "postfix").pw_uid)
        except KeyError:
            if name is not None:
                raise ConfigError(f"server.postfix_user: no user {name!r}") from None
            log.info("no user postfix: only root's connections use the reserved slots")
        self.privileged_uids = frozenset(uids)
        self.reserved = max(1, min(100, self.capacity // 10)) if self.capacity > 1 else 0

    async def start(self) -> None:
        """
        Open every listener of the configuration.

        Raises the soft descriptor limit to the hard one and sizes the
        connection slots from it first.

        Raises:
            ValueError: A listen address is malformed.
            ConfigError: The configured Postfix user or socket group does
                not exist.
            OSError: A listener cannot be opened.
        """
        loop = asyncio.get_running_loop()
        self._plan_capacity()
        try:
            for spec in self.config.listen:
                where = parse_listen(spec)
                if isinstance(where, str):
                    if not any(listener.unix for listener in self.listeners):
                        self._plan_privileged()
                    sockets = [self._bind_unix(where)]
                else:
                    sockets = _bind_tcp(*where)
                for sock in sockets:
                    listener = _Listener(self, sock, spec, unix=isinstance(where, str))
                    self.listeners.append(listener)
                    listener.start()
                log.info("listening on %s", spec)
        except BaseException:
            self._close_listeners()
            raise
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _bind_unix(self, path: str) -> socket.socket:
        # E (issue 10 item 6): the socket is never more open than unix_mode,
        # not even between bind() and chmod(), and belongs to Postfix's group.
        mode = self.config.unix_mode
        gid = _socket_group(self.config.unix_group)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):  # noqa: PTH116 -- a stale socket
                os.unlink(path)  # noqa: PTH108
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            umask = os.umask(0o777 & ~mode)
            try:
                sock.bind(path)
            finally:
                os.umask(umask)
            os.chmod(path, mode)  # noqa: PTH101
            if gid is not None:
                try:
                    os.chown(path, -1, gid)
                except PermissionError as e:
                    if self.config.unix_group is not None:
                        raise
                    log.warning(
                        "cannot give %s to group postfix (%s): Postfix may not connect to it",
                        path,
                        e,
                    )
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)  # noqa: FBT003
        except BaseException:
            sock.close()
            raise
        return sock

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (``(host, port, ...)`` tuples or unix paths)."""
        return [listener.address for listener in self.listeners]

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    async def close(self) -> None:
        """Stop accepting, answer what was asked, then close every connection."""
        self._closing = True
        self._close_listeners()
        connections = list(self._connections)
        for connection in connections:
            # Nothing more is read; requests already received are still answered.
            connection.stop("shutdown")
        waiting = [c.closed for c in connections if not c.closed.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=self.config.shutdown_timeout)
            for connection in connections:
                if not connection.closed.done():
                    log.info("connection from %s: requests cancelled at shutdown", connection.peer)
                    connection.abort()
            for job in list(self._inflight.values()):
                job.cancel()
        if self.dane is not None:
            await self.dane.aclose()
        for burst in (self._fault_log, self._accept_log, self._admit_log):
            burst.flush()
            burst.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


LISTEN_BACKLOG: Final = 1024
"""The listen() backlog of every listener."""


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:  # pragma: no cover -- accept() gives numeric addresses
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _socket_group(name: str | None) -> int | None:
    # The gid unix sockets get: the configured group, else postfix's if it exists.
    import grp  # noqa: PLC0415 -- POSIX only

    try:
        return grp.getgrnam(name or "postfix").gr_gid
    except KeyError:
        if name is not None:
            raise ConfigError(f"server.unix_group: no group {name!r}") from None
        log.info("no group postfix: unix sockets keep the server's group")
        return None


def _bind_tcp(host: str, port: int) -> list[socket.socket]:
    # One listening socket per address the host name gives (as asyncio does).
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)  # noqa: FBT003
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener:
    """
    One listening socket, accepted by hand rather than by ``loop.create_server``.

    asyncio's own accept loop reports every ``EMFILE`` of a burst (up to its
    backlog per wake-up) with a traceback and schedules as many retries;
    uvloop's drops the pending connections. Here ``accept()`` failing for
    lack of descriptors or memory pauses this listener for
    :data:`ACCEPT_PAUSE` and is logged once per burst; an admitted socket
    gets its transport from ``loop.connect_accepted_socket``.
    """

    def __init__(self, server: PolicyServer, sock: socket.socket, spec: str, *, unix: bool) -> None:
        self.server = server
        self.sock = sock
        self.spec = spec
        self.unix = unix
        self.address: Any = sock.getsockname()
        self.loop = asyncio.get_running_loop()
        self.inode = os.stat(self.address).st_ino if unix else 0  # noqa: PTH116
        self.paused: asyncio.TimerHandle | None = None
        self.closed = False

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        sock = self.sock
        for _ in range(LISTEN_BACKLOG):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno in _RESOURCE_ERRNOS:
                    self.loop.remove_reader(sock.fileno())
                    self.paused = self.loop.call_later(ACCEPT_PAUSE, self._resume)
                    self.server.accept_fault(self.spec, e)
                    return
                log.warning("accept() on %s failed: %s", self.spec, e)  # pragma: no cover
                return  # pragma: no cover
            conn.setblocking(False)  # noqa: FBT003
            self.server.accepted(conn, peer, self)

    def _resume(self) -> None:
        self.paused = None
        if not self.closed:
            self.start()

    async def connect(self, connection: _Connection, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: connection, conn)
        except Exception as e:  # noqa: BLE001 -- the socket is gone; nothing to answer
            log.info("connection from %s lost while set up: %s", connection.peer, e)
            conn.close()
            self.server.unregister(connection)
            connection.connection_lost(None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.paused is not None:
            self.paused.cancel()
        else:
            self.loop.remove_reader(self.sock.fileno())
        if self.unix:
            with contextlib.suppress(OSError):
                if os.stat(self.address).st_ino == self.inode:  # noqa: PTH116
                    os.unlink(self.address)  # noqa: PTH108
        self.sock.close()


class _Connection(asyncio.Protocol):
    """
    One client connection: netstrings in, answers out, in request order.

    Answers from the cache are written at once when nothing is pending
    before them; otherwise they queue behind the pending lookups. At most
    ``max_pending`` answers wait per connection: beyond that, and while the
    client does not read its answers (the transport's write buffer is above
    its high-water mark), the connection is not read.
    """

    def __init__(
        self,
        server: PolicyServer,
        answers: _AnswerCache,
        connections: dict[_Connection, None],
        request: Callable[[bytes], bytes | asyncio.Task[bytes]],
    ) -> None:
        self.server = server
        self.answers = answers.entries
        self.framed = answers.framed
        self.stats = server.stats
        self.connections = connections
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = "unix"
        self.privileged = False
        self.peer_key: str | None = None
        self.starting: asyncio.Task[None] | None = None
        self.decoder = NetstringDecoder(DEFAULT_MAX_LENGTH)
        self.queue: deque[bytes | asyncio.Task[bytes]] = deque()
        self.backlog: deque[bytes] = deque()
        self.max_pending = server.config.max_pending
        self.last_active = self.request_started = self.loop.time()
        self.served = False  # answered at least once: a proven client, evicted last
        self.reading = True
        self.write_paused = False
        self.stopping: str | None = None
        self.stopped_at = 0.0
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        # Admission happened at accept(), before the transport existed.
        self.transport = cast("asyncio.Transport", transport)
        self.last_active = self.request_started = self.loop.time()
        if self.stopping is not None:
            transport.close()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.last_active = now
        decoder = self.decoder
        if not self.queue and self.stopping is None and not decoder.pending:
            # The hot path: cached requests at the head of the read.
            done = self._answer_cached(data, now)
            if done == len(data):
                return
            data = data[done:]
        was_pending = decoder.pending
        try:
            payloads = decoder.feed(data)
        except NetstringError as e:
            self.stop(f"malformed netstring: {e}")
            return
        if decoder.pending and (payloads or not was_pending):
            # A netstring must arrive whole within the frame timeout of its first byte.
            self.request_started = now
        if self.stopping is None:
            if self.backlog:
                self.backlog.extend(payloads)
            else:
                self._take(payloads, now)
            if decoder.error is not None:
                self.stop(f"malformed netstring: {decoder.error}")
            elif self.queue or not self.reading:
                # (With nothing queued and reading on, there is nothing to change.)
                self._update_reading()

    def _answer_cached(self, data: bytes, now: float) -> int:
        # Answer the requests at the head of ``data`` that are in the answer
        # cache, each found by its whole netstring (a hit is well-formed by
        # construction: the keys are encoded requests); return how many bytes
        # they took. The decoder takes over from the first miss.
        framed = self.framed
        end = len(data)
        hit = framed.get(data)  # the usual read: exactly one request
        if hit is not None and hit[0] > now:
            out, start = [hit[1]], end
        else:
            out, start = [], 0
        while start < end:
            colon = data.find(b":", start, start + 11)
            if colon < 0:
                break
            try:
                stop = colon + 2 + int(data[start:colon])
            except ValueError:
                break
            hit = framed.get(data[start:stop])
            if hit is None or hit[0] <= now:
                break
            out.append(hit[1])
            start = stop
        if out:
            self.decoder.offset += start
            self.stats["requests"] += len(out)
            self.stats["cached"] += len(out)
            self._write(out)
        return start

    def eof_received(self) -> bool:
        if self.decoder.pending:
            self.stop("client went away inside a request")
        else:
            self.stop("")
        # Keep the write side open until the answers are out.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.stopping is None:
            log.info("connection from %s: read error: %s", self.peer, exc)
        elif self.queue and self.stopping is None:
            log.info("connection from %s: client went away before its answers", self.peer)
        # Lookups still running are not cancelled: other connections may wait
        # for the same one, and its answer is cached for the next request.
        self.queue.clear()
        self.backlog.clear()
        self.server.unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    # ------------------------------------------------------------------ the work

    def _take(self, payloads: list[bytes], now: float) -> None:
        # Answer or queue each payload; what does not fit waits in the backlog.
        answers = self.answers
        stats = self.stats
        queue = self.queue
        out: list[bytes] = []
        hits = 0
        for index, payload in enumerate(payloads):
            hit = answers.get(payload)
            if hit is not None and hit[0] > now:
                hits += 1
                if queue:
                    queue.append(hit[1])
                else:
                    out.append(hit[1])
                continue
            if len(queue) >= self.max_pending:
                self.backlog.extend(payloads[index:])
                break
            job = self.request(payload)
            if isinstance(job, bytes) and not queue:
                out.append(job)
            else:
                queue.append(job)
                if not isinstance(job, bytes):
                    job.add_done_callback(self._answered)
        if hits:
            stats["requests"] += hits
            stats["cached"] += hits
        if out:
            self._write(out)

    def _answered(self, _job: asyncio.Task[bytes]) -> None:
        # A lookup finished: send every answer that is now at the head of the line.
        queue = self.queue
        out: list[bytes] = []
        while queue:
            head = queue[0]
            if isinstance(head, bytes):
                out.append(head)
            elif not head.done():
                break
            elif not head.cancelled():
                out.append(head.result())
            queue.popleft()
        if out:
            self._write(out)
        if self.backlog and len(queue) < self.max_pending:
            backlog = list(self.backlog)
            self.backlog.clear()
            self._take(backlog, self.loop.time())
        self._update_reading()

    def _write(self, out: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None  # set before any data arrives
        if transport.is_closing():
            return
        self.served = True
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.stopping is not None and not self.queue and not self.backlog:
            transport.close()
            return
        should = (
            self.stopping is None
            and not self.write_paused
            and not self.backlog
            and len(self.queue) < self.max_pending
        )
        if should != self.reading:
            self.reading = should
            if should:
                self.request_started = self.loop.time()
                transport.resume_reading()
            else:
                transport.pause_reading()

    # ------------------------------------------------------------------ closing

    def stop(self, reason: str) -> None:
        """Read nothing more; close once every request received is answered."""
        if self.stopping is None:
            self.stopping = reason
            self.stopped_at = self.loop.time()
            if reason:
                log.info("closing connection from %s: %s", self.peer, reason)
        if self.backlog:
            backlog = list(self.backlog)
            self.backlog.clear()
            self._take(backlog, self.loop.time())
        self._update_reading()

    def check_idle(self, now: float, idle: float, frame: float) -> None:
        """
        Stop a connection silent for ``idle`` seconds, or inside one netstring for ``frame``.

        A started netstring has its own deadline (issue 17 item 3): a client
        that sends ``2`` and waits is closed after ``frame`` seconds, while a
        connection silent between requests stays for ``idle``. A stopped
        connection still open ``idle`` seconds later (its client does not
        read its answers) is dropped.
        """
        if self.transport is None:
            return
        if self.stopping is not None:
            if now - self.stopped_at > idle:
                log.info("connection from %s: answers not read; dropped", self.peer)
                self.abort()
            return
        if self.decoder.pending and self.reading and not self.queue:
            # (While reading is paused by the server, the frame clock stops.)
            if now - self.request_started > frame:
                self.stats["frame_timeouts"] += 1
                self.stop(f"stalled inside a request for more than {frame:g}s")
        elif not self.queue and now - self.last_active > idle:
            self.stats["idle_timeouts"] += 1
            self.stop("idle")

    def abort(self) -> None:
        """Drop the connection without waiting for its answers (one being set up: once it is)."""
        if self.transport is not None:
            self.transport.abort()
        elif self.stopping is None:
            self.stopping = "evicted"
            self.stopped_at = self.loop.time()


def build_store(config: ServerConfig) -> Any:
    """
    The policy store the configuration asks for.

    Args:
        config: The server configuration.

    Returns:
        A memory, SQLite or (asyncio) Redis store.
    """
    if config.cache_backend == "memory":
        from smtpsts.stores.memory import MemoryPolicyStore  # noqa: PLC0415

        return MemoryPolicyStore(max_entries=config.max_entries)
    if config.cache_backend == "redis":
        from smtpsts.stores.redis import AsyncRedisPolicyStore  # noqa: PLC0415

        return AsyncRedisPolicyStore.from_url(config.redis_url)
    from smtpsts.stores.sqlite import SQLitePolicyStore  # noqa: PLC0415

    if config.cache_path != ":memory:":
        Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
    return SQLitePolicyStore(config.cache_path)


def build_resolver(config: ServerConfig) -> PolicyResolver:
    """
    The policy resolver for a configuration (store, trust, DNS, overrides).

    Args:
        config: The server configuration.

    Returns:
        The resolver.
    """
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415

    trust = None
    if config.cafile is not None:
        from smtpsts.io.truststore import load_trust_store  # noqa: PLC0415

        trust = load_trust_store(config.cafile)
    aresolver = None
    if config.dns_cache:
        import dns.resolver  # noqa: PLC0415

        from smtpsts.io._resolver import make_async_resolver  # noqa: PLC0415
        from smtpsts.io.dns import AsyncDNSResolver  # noqa: PLC0415

        # STS-CACHE-08: the TXT record is checked on every lookup (that the
        # answer cache does not answer), through a DNS cache that honours the
        # record's TTL.
        dnspython = make_async_resolver(config.nameservers, lifetime=config.dns_timeout)
        dnspython.cache = dns.resolver.LRUCache(DNS_CACHE_SIZE)
        aresolver = AsyncDNSResolver(resolver=dnspython)
    return PolicyResolver(
        store=build_store(config),
        adns=aresolver,
        trust=trust,
        nameservers=config.nameservers,
        connect_to=parse_connect_to(config.connect_to),
        config=config.policy,
        refresh_interval=timedelta(seconds=config.refresh_interval),
    )


def build_dane(config: ServerConfig) -> DaneChecker | None:
    """
    The TLSA checker, unless every zone has ``dane = "off"``.

    Args:
        config: The server configuration.

    Returns:
        The checker or ``None``.
    """
    zones = (config.default_zone, *config.zones)
    if all(zone.dane.value == "off" for zone in zones):
        return None
    resolver = AsyncDNSSECResolver(
        config.nameservers, lifetime=config.dns_timeout, trust_ad=config.trust_ad
    )
    if not resolver.trusted:
        log.warning(
            "DANE checks are off: the DNS resolver is not trusted to validate DNSSEC "
            "(use a validating resolver on loopback, or [resolver] trust_ad = true)"
        )
    # A re-check asks for the MX RRset, then the TLSA RRsets (each bounded by dns_timeout).
    return DaneChecker(resolver, timeout=2 * config.dns_timeout)


async def run(config: ServerConfig, *, stop: asyncio.Event | None = None) -> None:
    """
    Serve until SIGTERM/SIGINT (or until ``stop`` is set); SIGUSR1 logs the counters.

    Args:
        config: The server configuration.
        stop: An event that ends the server (tests); signals also set it.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    resolver = build_resolver(config)
    server = PolicyServer(config, resolver, dane=build_dane(config))
    await server.start()
    stop_metrics = None
    if config.metrics_listen is not None:
        from smtpsts.postfix.metrics import start_metrics  # noqa: PLC0415

        try:
            stop_metrics = start_metrics(*split_address(config.metrics_listen), server)
        except BaseException:
            await server.close()
            await resolver.aclose()
            raise
    installed = []
    handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGUSR1: server.log_stats}
    for signum, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handler)
            installed.append(signum)
    refresh = asyncio.create_task(resolver.arefresh_forever()) if config.refresh else None
    sd_notify("READY=1")
    try:
        await stop.wait()
    finally:
        sd_notify("STOPPING=1")
        log.info("shutting down")
        if refresh is not None:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
        if stop_metrics is not None:
            stop_metrics()
        await server.close()
        await resolver.aclose()
        for signum in installed:
            loop.remove_signal_handler(signum)


def serve(config: ServerConfig) -> None:
    """
    Run the server in a new event loop (uvloop when installed).

    Args:
        config: The server configuration.
    """
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        asyncio.run(run(config))
    else:  # pragma: no cover -- runs in the CLI tests' server subprocesses
        uvloop.run(run(config))
