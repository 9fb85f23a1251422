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

This module holds :class:`PolicyServer` (lookups, answer cache, admission,
lifecycle), :func:`run` and ``serve``; the rest of the server lives in

- :mod:`smtpsts.postfix.dane_checker`: :class:`DaneChecker`, :func:`verdict_from`
  and the verdict reuse times;
- ``smtpsts.postfix._connection``: one client connection (the asyncio protocol);
- ``smtpsts.postfix._listeners``: :func:`parse_listen`, binding the TCP and
  unix sockets, and the hand-written ``accept()`` loop;
- ``smtpsts.postfix._process``: :class:`BurstLog`, the descriptor budget
  (:func:`raise_nofile_limit`, :func:`connection_capacity`,
  :func:`lookup_capacity`) and :func:`sd_notify`;
- ``smtpsts.postfix._build``: ``build_store``, :func:`build_resolver`,
  ``build_dane``.

Every name importable from here before that split still is (the same
objects), and every part logs to this module's logger,
``smtpsts.postfix.server``.

The module is still over 600 lines because :class:`PolicyServer` alone is
about 500: its lookup path, admission and eviction, and start and shutdown
all read and write the same counters, connection table, answer cache and
in-flight lookups, and splitting the class would make that state an
interface between modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from typing import Any, Final

from smtpsts.cache import PolicyOutcome, PolicySource
from smtpsts.exceptions import LocalFaultError, LookupTimeoutError
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix import _build, _listeners, _process

# The names marked F401 are not used here: they are importable from here as
# they were before the split (see the module docstring), as the same objects.
from smtpsts.postfix._build import (
    build_dane,
    build_resolver,
    build_store,  # noqa: F401
)
from smtpsts.postfix._connection import _Connection
from smtpsts.postfix._listeners import (
    _PEERCRED,  # noqa: F401
    _RESOURCE_ERRNOS,  # noqa: F401
    LISTEN_BACKLOG,  # noqa: F401
    _bind_tcp,
    _bind_unix,
    _is_loopback,
    _Listener,
    _peer_uid,
    _socket_group,  # noqa: F401
    parse_listen,
)
from smtpsts.postfix._process import (
    BURST_INTERVAL,  # noqa: F401
    BurstLog,
    _open_descriptors,
    connection_capacity,
    lookup_capacity,
    raise_nofile_limit,
    sd_notify,
)
from smtpsts.postfix.config import ConfigError, ServerConfig, split_address
from smtpsts.postfix.dane_checker import (
    DEFAULT_VERDICT_TTL,
    MAX_BACKGROUND_CHECKS,  # noqa: F401
    MAX_MX_HOSTS,
    MAX_STALE_VERDICT,  # noqa: F401
    MIN_VERDICT_TTL,
    DaneChecker,
    verdict_from,
)
from smtpsts.postfix.metrics import LookupMetrics
from smtpsts.postfix.netstring import encode
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

# Defined where they are used, documented here, where they are exported.
ACCEPT_PAUSE: Final = _listeners.ACCEPT_PAUSE
"""Seconds accepting pauses after ``accept()`` failed for lack of descriptors or memory."""

DNS_CACHE_SIZE: Final = _build.DNS_CACHE_SIZE
"""DNS answers kept by the server's resolver cache."""

LOOKUP_DESCRIPTOR_RESERVE: Final = _process.LOOKUP_DESCRIPTOR_RESERVE
"""Descriptors kept for DNS, HTTPS and store sockets at least (or a quarter of the limit)."""

DANE_BUDGET: Final = 0.5
"""Seconds a lookup with a live cached MTA-STS policy waits for a first DANE verdict."""

BACKSTOP_MARGIN: Final = 2.0
"""Seconds past the zone timeout after which the server gives up on a lookup (``TEMP``)."""


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
            uid = _peer_uid(sock)
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

    def accept_fault(self, spec: str, e: OSError, pause: float) -> None:
        """
        Count and log (once per burst) an ``accept()`` that failed for lack of resources.

        Args:
            spec: The listen address, as configured.
            e: The error of ``accept()``.
            pause: Seconds the listener pauses accepting (:data:`ACCEPT_PAUSE`).
        """
        self.stats["accept_faults"] += 1
        self._accept_log("accept() on %s failed: %s; pausing %gs", spec, e, pause)

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
                    sockets = [_bind_unix(where, self.config.unix_mode, self.config.unix_group)]
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
