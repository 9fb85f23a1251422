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
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

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

READ_SIZE: Final = 16384

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


class PolicyServer:
    """
    The socketmap server.

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
        self._connections: dict[asyncio.Task[Any], asyncio.StreamReader] = {}
        self._closing = False
        self.stats: dict[str, int] = {
            "connections": 0,
            "refused": 0,
            "requests": 0,
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
        try:
            async with asyncio.timeout(zone.timeout):
                outcome = await self.resolver.aresolve(key)
            verdict = DaneVerdict.NONE
            if self.dane is not None and needs_dane_check(outcome, zone):
                verdict = await self._dane_verdict(key)
            answer = build_answer(outcome, zone, dane=verdict)
        except TimeoutError:
            log.warning("%s %s: lookup took longer than %gs", zone.name, key, zone.timeout)
            if zone.temp_on_timeout:
                return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} timed out")
            return Answer(AnswerKind.NOTFOUND, why="timeout")
        except Exception:
            # Fail safe: a store or adapter bug must not weaken an enforce policy.
            self.stats["errors"] += 1
            log.exception("%s %s: lookup failed", zone.name, key)
            return Answer(AnswerKind.TEMP, f"MTA-STS lookup for {key} failed")
        log.debug("%s %s: %s %s (%s)", zone.name, key, answer.kind, answer.data, answer.why)
        return answer

    async def _dane_verdict(self, domain: str) -> DaneVerdict:
        assert self.dane is not None  # checked by the caller
        try:
            async with asyncio.timeout(self.config.dns_timeout):
                return await self.dane.verdict(domain)
        except TimeoutError:
            # The MTA-STS policy still applies: never answer weaker than it.
            log.warning("%s: TLSA lookups took longer than %gs", domain, self.config.dns_timeout)
            return DaneVerdict.NONE

    # ------------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # called as a task by asyncio.start_server
        peer = writer.get_extra_info("peername") or "unix"
        if self._closing or len(self._connections) >= self.config.max_connections:
            self.stats["refused"] += 1
            log.warning(
                "connection from %s refused: %d connections open", peer, len(self._connections)
            )
            writer.close()
            return
        self.stats["connections"] += 1
        self._connections[task] = reader
        queue: asyncio.Queue[asyncio.Task[Answer] | None] = asyncio.Queue(self.config.max_pending)
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            reason = await self._receive(reader, queue)
            if reason:
                log.info("closing connection from %s: %s", peer, reason)
            # Answer what was asked before closing (also at shutdown).
            await queue.put(None)
            await sender
            writer.close()
            await writer.wait_closed()
        except asyncio.CancelledError:
            log.info("connection from %s: requests cancelled at shutdown", peer)
            raise
        except OSError as e:
            log.info("connection from %s: %s", peer, e)
        finally:
            sender.cancel()
            while not queue.empty():
                job = queue.get_nowait()
                if job is not None:
                    job.cancel()
            del self._connections[task]
            writer.close()

    async def _receive(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[asyncio.Task[Answer] | None]
    ) -> str:
        decoder = NetstringDecoder(DEFAULT_MAX_LENGTH)
        idle = self.config.idle_timeout
        started = time.monotonic()
        while True:
            # A netstring must arrive whole within the idle timeout of its
            # first byte: a one-byte-a-second client does not hold a slot.
            left = idle - (time.monotonic() - started) if decoder.pending else idle
            try:
                async with asyncio.timeout(max(left, 0)):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                return "stalled inside a request" if decoder.pending else "idle"
            except OSError as e:
                return f"read error: {e}"
            if not data:
                if decoder.pending:
                    return "client went away inside a request"
                return ""
            if not decoder.pending:
                started = time.monotonic()
            try:
                payloads = decoder.feed(data)
            except NetstringError as e:
                return f"malformed netstring: {e}"
            for payload in payloads:
                await queue.put(asyncio.create_task(self.answer(payload)))
            if decoder.error is not None:
                return f"malformed netstring: {decoder.error}"

    async def _send(
        self, queue: asyncio.Queue[asyncio.Task[Answer] | None], writer: asyncio.StreamWriter
    ) -> None:
        broken = False
        while (job := await queue.get()) is not None:
            answer = await job
            if broken:
                continue
            try:
                writer.write(encode(answer.to_bytes()))
                await writer.drain()
            except OSError as e:
                # Keep draining the queue so the reader never blocks on it.
                log.info("client went away before its answer: %s", e)
                broken = True

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """
        Open every listener of the configuration.

        Raises:
            ValueError: A listen address is malformed.
            OSError: A listener cannot be opened.
        """
        for spec in self.config.listen:
            where = parse_listen(spec)
            if isinstance(where, str):
                server = await asyncio.start_unix_server(self._handle, path=where)
                os.chmod(where, self.config.unix_mode)  # noqa: PTH101
            else:
                server = await asyncio.start_server(self._handle, where[0], where[1])
            self.servers.append(server)
            log.info("listening on %s", spec)

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (``(host, port, ...)`` tuples or unix paths)."""
        return [s.getsockname() for server in self.servers for s in server.sockets]

    async def close(self) -> None:
        """Stop accepting, answer what was asked, then close every connection."""
        self._closing = True
        for server in self.servers:
            server.close()
        for reader in self._connections.values():
            # The read loop sees end-of-stream; queued requests are still answered.
            reader.feed_eof()
        tasks = list(self._connections)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
            for task in late:
                task.cancel()
        for server in self.servers:
            await server.wait_closed()


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

        # STS-CACHE-08: the TXT record is checked on every lookup, through a
        # DNS cache that honours the record's TTL.
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
    Serve until SIGTERM/SIGINT (or until ``stop`` is set).

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
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
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
        import uvloop  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        asyncio.run(run(config))
    else:  # pragma: no cover -- uvloop is optional and not installed in the test venv
        uvloop.run(run(config))
