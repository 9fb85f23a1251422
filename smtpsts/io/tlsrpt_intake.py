"""
The HTTPS intake of TLS-RPT reports: an ASGI application (Starlette) for ``smtpsts tlsrpt serve``.

RFC 8460 §5.3.2: a sending MTA POSTs a report to the ``https:`` ``rua`` of
the policy domain, with ``Content-Type: application/tlsrpt+json`` or
``application/tlsrpt+gzip``. :func:`build_app` answers such POSTs on its
paths (``/`` and ``/v1/tlsrpt`` by default):

========  ============================================================
``201``   stored
``200``   already stored (same organisation and ``report-id``): a
          sender that retries a report it delivered is told it arrived
``400``   not a report (malformed JSON or gzip, no ``report-id`` ...)
``405``   not a POST (``Allow: POST``)
``408``   the body did not arrive within the request deadline
``413``   over the body cap, a gzip bomb, too many policies or details
``415``   not a TLS-RPT media type
``429``   the client is over its rate (``Retry-After`` in seconds)
``503``   the report store failed (:class:`~smtpsts.StoreError`): retry
``500``   an unexpected fault (logged; the body says nothing more)
========  ============================================================

Every answer is one line of plain text. The decisions on a body are those
of the sans-I/O core (:func:`smtpsts.tlsrpt.inbox.accept_report_body`);
this module reads the body (never more than the cap plus one chunk: past
``max_body`` it stops reading and answers ``413``), calls the store, keeps
the counters and enforces the rate and the deadline. A body refused with
``400``, ``408``, ``413`` or ``415`` is kept in the store's quarantine with
its reason; ``405`` and ``429`` are only counted.

Store calls run in worker threads, one at a time (a store need not be
thread-safe, but it must be usable from a thread other than the one that
made it, e.g. sqlite3 with ``check_same_thread=False``).

Needs the ``server`` extra (Starlette and uvicorn); :mod:`smtpsts` and the
core never import this module.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from smtpsts.exceptions import StoreError
from smtpsts.tlsrpt.inbox import (
    AddResult,
    IntakeError,
    IntakeLimits,
    Received,
    ReportStore,
    Source,
    accept_report_body,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_HEAD_DEADLINE",
    "DEFAULT_PATHS",
    "IntakeCollector",
    "IntakeCounters",
    "RateLimit",
    "TokenBuckets",
    "build_app",
    "client_address",
    "head_deadline_protocol",
]

log = logging.getLogger(__name__)

DEFAULT_PATHS: Final = ("/", "/v1/tlsrpt")
"""The paths that take reports unless told otherwise."""

DEFAULT_DEADLINE: Final = 30.0
"""Seconds for a client to send its whole body (slow senders are cut off)."""

DEFAULT_HEAD_DEADLINE: Final = 10.0
"""Seconds for a connection to send a complete request head (uvicorn has no such limit)."""

_MAX_BUCKETS: Final = 10_000  # clients remembered by the rate limiter at most


@attrs.frozen
class RateLimit:
    """
    Reports a client may POST: a token bucket per client address.

    Attributes:
        per_minute: Tokens added per minute (the sustained rate).
        burst: Bucket size (POSTs in a row after a quiet spell); the
            ``per_minute`` value when ``0``.
    """

    per_minute: float = 60.0
    burst: int = 0

    @property
    def capacity(self) -> float:
        """The bucket size."""
        return float(self.burst or max(1.0, self.per_minute))


class TokenBuckets:
    """
    One token bucket per client; a client with an empty bucket is told when to come back.

    Args:
        rate: The rate.
        clock: Monotonic seconds.
    """

    def __init__(self, rate: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """
        Take a token for ``client``.

        Args:
            client: The client address.

        Returns:
            ``0`` when a token was taken, else the seconds until one is there.
        """
        now = self._clock()
        per_second = self.rate.per_minute / 60.0
        capacity = self.rate.capacity
        tokens, then = self._buckets.get(client, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * per_second)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            self._forget(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / per_second if per_second > 0 else math.inf

    def _forget(self, now: float) -> None:
        # Bounded memory: past _MAX_BUCKETS clients, drop the buckets that are
        # full again (forgetting them changes nothing), then the oldest.
        if len(self._buckets) <= _MAX_BUCKETS:
            return
        per_second = self.rate.per_minute / 60.0
        capacity = self.rate.capacity
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * per_second >= capacity:
                del self._buckets[key]
        while len(self._buckets) > _MAX_BUCKETS:
            del self._buckets[next(iter(self._buckets))]


@attrs.define
class IntakeCounters:
    """
    What the intake did, in plain integers (read by a metrics exporter at scrape time).

    In Prometheus: ``smtpsts_intake_reports_total{result="accepted"|"duplicate"}``,
    ``smtpsts_intake_refused_total{reason}`` (the :class:`~smtpsts.exceptions.IntakeError` reason
    codes, ``timeout``), ``smtpsts_intake_rate_limited_total``,
    ``smtpsts_intake_method_not_allowed_total``,
    ``smtpsts_intake_store_errors_total`` and ``smtpsts_intake_errors_total``.

    Attributes:
        accepted: Reports stored.
        duplicate: Reports already stored.
        refused: Refused bodies by reason code (quarantined).
        rate_limited: ``429`` answers.
        method_not_allowed: ``405`` answers.
        store_errors: ``503`` answers.
        errors: ``500`` answers.
    """

    accepted: int = 0
    duplicate: int = 0
    refused: Counter[str] = attrs.Factory(Counter)
    rate_limited: int = 0
    method_not_allowed: int = 0
    store_errors: int = 0
    errors: int = 0


class IntakeCollector:
    """
    A ``prometheus_client`` collector of :class:`IntakeCounters`, read at scrape time.

    Args:
        counters: The intake's counters (``app.state.counters``).
    """

    def __init__(self, counters: IntakeCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Any]:
        """
        The counters as metric families (the names in :class:`IntakeCounters`).

        Yields:
            ``CounterMetricFamily`` values.
        """
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415 -- the extra

        c = self.counters
        reports = CounterMetricFamily(
            "smtpsts_intake_reports", "Reports received, by result.", labels=("result",)
        )
        reports.add_metric(("accepted",), c.accepted)
        reports.add_metric(("duplicate",), c.duplicate)
        yield reports
        refused = CounterMetricFamily(
            "smtpsts_intake_refused", "Bodies refused (quarantined), by reason.", labels=("reason",)
        )
        for reason, count in sorted(c.refused.items()):
            refused.add_metric((reason,), count)
        yield refused
        for name, text, value in (
            ("rate_limited", "Requests answered 429.", c.rate_limited),
            ("method_not_allowed", "Requests answered 405.", c.method_not_allowed),
            ("store_errors", "Requests answered 503: the store failed.", c.store_errors),
            ("errors", "Requests answered 500.", c.errors),
        ):
            yield CounterMetricFamily(f"smtpsts_intake_{name}", text, value=value)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Iterable[IPNetwork]) -> str:
    """
    The client's address: the peer, or, when the peer is a trusted proxy, what it forwarded.

    ``X-Forwarded-For`` is read right to left: each trusted proxy appends the
    address it got the request from, so the first address from the right that
    is not a trusted proxy is the client. A malformed entry ends the walk at
    the last trusted hop (what a client wrote is never believed).

    Args:
        peer: The TCP peer address.
        forwarded_for: The ``X-Forwarded-For`` header values, in order.
        trusted: The networks of trusted proxies.

    Returns:
        The address, as text.
    """
    networks = tuple(trusted)
    current = peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    while hops:
        address = _address(current)
        if address is None or not any(address in n for n in networks):
            break
        hop = _address(hops.pop())
        if hop is None:
            break
        current = str(hop)
    return current


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(text.replace("\n", " ") + "\n", status, headers=headers)


class _Intake:
    # The request handler and its state (one per app).

    def __init__(
        self,
        store: ReportStore,
        *,
        limits: IntakeLimits,
        rate: RateLimit | None,
        trusted: Sequence[IPNetwork],
        deadline: float,
        now: Callable[[], datetime],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.limits = limits
        self.buckets = None if rate is None else TokenBuckets(rate, clock)
        self.trusted = tuple(trusted)
        self.deadline = deadline
        self.now = now
        self.counters = IntakeCounters()
        self.store_slot = anyio.CapacityLimiter(1)

    async def _read(self, request: Request, body: bytearray) -> IntakeError | None:
        # Read into body at most max_body + one chunk; past the cap stop reading
        # (RFC 8460 §5.3.2, issue 13: caps on body size). A declared length over
        # the cap is refused before a byte is read. What was read stays in body
        # when the deadline cuts the read off.
        cap = self.limits.max_body
        too_large = IntakeError(f"the body is over {cap} bytes", status=413, reason="too-large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return too_large
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return too_large
        return None

    async def _in_store(self, call: Callable[[], object]) -> object:
        return await anyio.to_thread.run_sync(call, limiter=self.store_slot)

    async def _refuse(self, body: bytes, client: str, error: IntakeError, at: datetime) -> Response:
        self.counters.refused[error.reason] += 1
        log.info("refused a report from %s: %s (%s)", client, error.detail, error.reason)
        await self._in_store(
            lambda: self.store.quarantine(
                body,
                source=Source.HTTPS,
                received_at=at,
                client=client,
                reason=error.reason,
                detail=error.detail,
            )
        )
        # The rest of an unread body is not read: the connection closes.
        return _plain(error.status, error.detail, {"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A raw ASGI endpoint, so that every method reaches it (and gets 405 here).
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except StoreError as e:
            self.counters.store_errors += 1
            log.error("report store failed: %s", e)  # noqa: TRY400 -- a known fault, no traceback
            return _plain(503, "the report store is not available; try again later")
        except Exception:
            self.counters.errors += 1
            log.exception("internal error on %s %s", request.method, request.url.path)
            return _plain(500, "internal error")

    async def _handle(self, request: Request) -> Response:
        if request.method != "POST":
            self.counters.method_not_allowed += 1
            return _plain(405, "POST a TLS-RPT report here (RFC 8460 §5.3.2)", {"Allow": "POST"})
        peer = request.client.host if request.client is not None else ""
        client = client_address(peer, request.headers.getlist("x-forwarded-for"), self.trusted)
        if self.buckets is not None:
            wait = self.buckets.take(client)
            if wait:
                self.counters.rate_limited += 1
                retry = str(min(86_400, math.ceil(wait)))
                return _plain(429, "too many reports; slow down", {"Retry-After": retry})
        at = self.now()
        buffer = bytearray()
        refused: IntakeError | None
        try:
            with anyio.fail_after(self.deadline):
                refused = await self._read(request, buffer)
        except TimeoutError:
            refused = IntakeError(
                f"the body did not arrive within {self.deadline:g} s", status=408, reason="timeout"
            )
        body = bytes(buffer)
        if refused is not None:
            return await self._refuse(body, client, refused, at)
        content_type = request.headers.get("content-type", "")
        try:
            report = await anyio.to_thread.run_sync(
                accept_report_body, body, content_type, self.limits
            )
        except IntakeError as e:
            return await self._refuse(body, client, e, at)
        received = Received(report, Source.HTTPS, at, client)
        result = await self._in_store(lambda: self.store.add(received))
        if result is AddResult.DUPLICATE:
            self.counters.duplicate += 1
            return _plain(200, "already received")
        self.counters.accepted += 1
        log.info(
            "stored report %s from %s (%s)", report.report_id, report.organization_name, client
        )
        return _plain(201, "stored")


_LIMITS: Final = IntakeLimits()
_RATE: Final = RateLimit()


def build_app(
    store: ReportStore,
    *,
    limits: IntakeLimits = _LIMITS,
    rate: RateLimit | None = _RATE,
    dashboard: ASGIApp | None = None,
    paths: Sequence[str] = DEFAULT_PATHS,
    trusted_proxies: Iterable[IPNetwork] = (),
    deadline: float = DEFAULT_DEADLINE,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """
    The intake as an ASGI application.

    Args:
        store: Where reports (and refused bodies) go.
        limits: The caps on a body (:class:`~smtpsts.tlsrpt.inbox.IntakeLimits`).
        rate: The rate per client, or ``None`` for no limit.
        dashboard: An ASGI app mounted at ``/dashboard``.
        paths: The paths that take POSTs.
        trusted_proxies: Networks of reverse proxies whose
            ``X-Forwarded-For`` names the client (see :func:`client_address`).
        deadline: Seconds for the whole body to arrive (``408`` after).
        now: The wall clock (aware UTC), for ``received_at``.
        clock: A monotonic clock, for the rate.

    Returns:
        The app; ``app.state.counters`` is its :class:`IntakeCounters`.
    """
    intake = _Intake(
        store,
        limits=limits,
        rate=rate,
        trusted=tuple(trusted_proxies),
        deadline=deadline,
        now=now,
        clock=clock,
    )
    routes: list[BaseRoute] = [Route(path, intake, methods=None) for path in paths]
    if dashboard is not None:
        routes.insert(0, Mount("/dashboard", app=dashboard))
    app = Starlette(routes=routes)
    app.state.counters = intake.counters
    app.state.store = store
    return app


def head_deadline_protocol(seconds: float = DEFAULT_HEAD_DEADLINE) -> type[Any]:
    """
    A uvicorn h11 protocol class that closes connections slow to send a request head.

    uvicorn bounds the idle time between requests (``timeout_keep_alive``)
    but not a head sent a byte at a time (slowloris). With this class a
    connection that completes no new request head within ``seconds`` while no
    request is being answered is closed; the body has the app's own deadline
    (:func:`build_app`'s ``deadline``). Pass it as ``uvicorn.Config(http=...)``.

    Args:
        seconds: The deadline for a request head.

    Returns:
        The protocol class (needs uvicorn, imported here).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415 -- the extra

    class HeadDeadlineH11(H11Protocol):
        """uvicorn's h11 protocol with a deadline on request heads."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._seen: object = self.cycle
            self._head_timer = self.loop.call_later(seconds, self._check_head)

        def _check_head(self) -> None:
            cycle = self.cycle
            idle = cycle is None or cycle.response_complete
            if cycle is self._seen and idle:
                # No new request head since the last check and none in progress.
                log.info("closing a connection that sent no request head in %g s", seconds)
                self.transport.close()
                return
            self._seen = cycle
            self._head_timer = self.loop.call_later(seconds, self._check_head)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return HeadDeadlineH11
