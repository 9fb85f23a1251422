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
  connections (more are closed at once, logged);
- a lookup that fails unexpectedly (a store error, say) is answered
  ``TEMP`` (Postfix defers), never with a weaker policy; a lookup that takes
  longer than the zone timeout gets ``NOTFOUND`` (or ``TEMP``, per zone);
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
import logging
import math
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, cast

from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSStatus, TLSALookup
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix.config import ServerConfig
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
    "DEFAULT_VERDICT_TTL",
    "DNS_CACHE_SIZE",
    "MAX_MX_HOSTS",
    "MIN_VERDICT_TTL",
    "DaneChecker",
    "PolicyServer",
    "build_resolver",
    "parse_listen",
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

    Verdicts are cached per domain for the smallest TTL of the records used
    (between :data:`MIN_VERDICT_TTL` and ``max_ttl``; failures for
    :data:`MIN_VERDICT_TTL`), and concurrent checks of one domain share one
    set of lookups.

    Args:
        resolver: A DNSSEC-aware resolver; one that is not trusted to
            validate (not on loopback, DANE-02) makes every verdict ``NONE``.
        max_ttl: The longest a verdict is reused, in seconds.
        max_entries: The most verdicts kept (oldest dropped first).
        clock: Monotonic seconds (tests inject their own).
    """

    def __init__(
        self,
        resolver: AsyncDNSSECResolver,
        *,
        max_ttl: float = 3600.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: dict[str, tuple[float, DaneVerdict]] = {}
        self._flights: dict[str, asyncio.Future[tuple[DaneVerdict, float]]] = {}

    async def verdict(self, domain: str) -> DaneVerdict:
        """
        The DANE verdict for a next-hop domain (cached).

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
        flight = self._flights.get(domain)
        if flight is None:
            flight = self._flights[domain] = asyncio.ensure_future(self._check(domain))
            flight.add_done_callback(lambda _f: self._flights.pop(domain, None))
        verdict, ttl = await asyncio.shield(flight)
        if len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]
        self._cache[domain] = (self.clock() + ttl, verdict)
        return verdict

    def reusable_for(self, domain: str) -> float | None:
        """
        How many more seconds the cached verdict for ``domain`` is reused.

        Args:
            domain: The next-hop domain (A-label).

        Returns:
            The seconds left (unbounded when the resolver cannot validate,
            so every verdict is ``NONE``), or ``None`` when no verdict is
            cached.
        """
        if not self.resolver.trusted:
            return math.inf
        cached = self._cache.get(domain)
        return None if cached is None else cached[0] - self.clock()

    async def _check(self, domain: str) -> tuple[DaneVerdict, float]:
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
        self.servers: list[asyncio.Server] = []
        self._connections: dict[_Connection, None] = {}
        self._closing = False
        self._answers = _AnswerCache(config.answer_ttl, config.answer_entries)
        self._inflight: dict[bytes, asyncio.Task[bytes]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.stats: dict[str, int] = {
            "connections": 0,
            "refused": 0,
            "requests": 0,
            "cached": 0,
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
        # The answer, and until when (loop time) it may be reused (None: never).
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(zone.timeout):
                outcome = await self.resolver.aresolve(key)
            until: float | None = None
            if outcome.failure is None and not outcome.temporary_error:
                until = loop.time() + self._answers.ttl
                if outcome.expires_at is not None:
                    left = (outcome.expires_at - self.resolver.clock()).total_seconds()
                    until = min(until, loop.time() + left)
            verdict = DaneVerdict.NONE
            if self.dane is not None and needs_dane_check(outcome, zone):
                verdict, dane_until = await self._dane_verdict(key)
                until = None if until is None or dane_until is None else min(until, dane_until)
            answer = build_answer(outcome, zone, dane=verdict)
        except TimeoutError:
            log.warning("%s %s: lookup took longer than %gs", zone.name, key, zone.timeout)
            if zone.temp_on_timeout:
                return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} timed out"), None
            return Answer(AnswerKind.NOTFOUND, why="timeout"), None
        except Exception:
            # Fail safe: a store or adapter bug must not weaken an enforce policy.
            self.stats["errors"] += 1
            log.exception("%s %s: lookup failed", zone.name, key)
            return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} failed"), None
        log.debug("%s %s: %s %s (%s)", zone.name, key, answer.kind, answer.data, answer.why)
        return answer, until

    async def _dane_verdict(self, domain: str) -> tuple[DaneVerdict, float | None]:
        assert self.dane is not None  # checked by the caller
        try:
            async with asyncio.timeout(self.config.dns_timeout):
                verdict = await self.dane.verdict(domain)
        except TimeoutError:
            # The MTA-STS policy still applies: never answer weaker than it.
            log.warning("%s: TLSA lookups took longer than %gs", domain, self.config.dns_timeout)
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

    def _connection(self) -> _Connection:
        return _Connection(self, self._answers, self._connections, self._request)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (new connections are refused)."""
        return self._closing

    def _sweep(self) -> None:
        # Close idle connections and clients stuck inside one netstring.
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self.config.idle_timeout
        for connection in list(self._connections):
            connection.check_idle(now, idle)
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    @property
    def _sweep_every(self) -> float:
        # Often enough that a timeout is late by at most a quarter (or a second).
        return min(self.config.idle_timeout / 4, 1.0)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """
        Open every listener of the configuration.

        Raises:
            ValueError: A listen address is malformed.
            OSError: A listener cannot be opened.
        """
        loop = asyncio.get_running_loop()
        for spec in self.config.listen:
            where = parse_listen(spec)
            if isinstance(where, str):
                server = await loop.create_unix_server(self._connection, path=where)
                os.chmod(where, self.config.unix_mode)  # noqa: PTH101
            else:
                server = await loop.create_server(self._connection, where[0], where[1])
            self.servers.append(server)
            log.info("listening on %s", spec)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (``(host, port, ...)`` tuples or unix paths)."""
        return [s.getsockname() for server in self.servers for s in server.sockets]

    async def close(self) -> None:
        """Stop accepting, answer what was asked, then close every connection."""
        self._closing = True
        for server in self.servers:
            server.close()
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
        for server in self.servers:
            await server.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


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
        self.decoder = NetstringDecoder(DEFAULT_MAX_LENGTH)
        self.queue: deque[bytes | asyncio.Task[bytes]] = deque()
        self.backlog: deque[bytes] = deque()
        self.max_pending = server.config.max_pending
        self.last_active = self.request_started = self.loop.time()
        self.reading = True
        self.write_paused = False
        self.stopping: str | None = None
        self.stopped_at = 0.0
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self.transport = cast("asyncio.Transport", transport)
        server = self.server
        self.peer = transport.get_extra_info("peername") or "unix"
        if server.closing or len(self.connections) >= server.config.max_connections:
            server.stats["refused"] += 1
            log.warning(
                "connection from %s refused: %d connections open",
                self.peer,
                len(self.connections),
            )
            transport.close()
            return
        server.stats["connections"] += 1
        self.connections[self] = None

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
            # A netstring must arrive whole within the idle timeout of its first byte.
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
        self.connections.pop(self, None)
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

    def check_idle(self, now: float, idle: float) -> None:
        """
        Stop a connection that is silent, or stuck inside a netstring, for ``idle`` seconds.

        A stopped connection still open ``idle`` seconds later (its client
        does not read its answers) is dropped.
        """
        if self.stopping is not None:
            if now - self.stopped_at > idle:
                log.info("connection from %s: answers not read; dropped", self.peer)
                self.abort()
            return
        if self.decoder.pending:
            if now - self.request_started > idle:
                self.stop("stalled inside a request")
        elif not self.queue and now - self.last_active > idle:
            self.stop("idle")

    def abort(self) -> None:
        """Drop the connection without waiting for its answers."""
        if self.transport is not None:
            self.transport.abort()


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
        aresolver=aresolver,
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
    return DaneChecker(resolver)


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
        await server.close()
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
