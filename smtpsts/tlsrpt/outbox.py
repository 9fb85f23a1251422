"""
The TLS-RPT outbox's decisions, as pure code (RFC 8460 §4.1, §5.5; issue 11).

A report waits in an outbox (``smtpsts.stores.tlsrpt_outbox``) until it is
delivered, dropped or given up; ``smtpsts.io.tlsrpt_send`` runs the rounds.
Every choice those adapters make is here, with the time passed in:

* when the next daily build runs: :func:`next_build` (RPT-AGG-15; the random
  draw is passed in, the core has no random source);
* when a failed item is tried again, and when it is given up:
  :func:`retry_at` (RFC 8460 §5.5, RPT-SEND-20);
* which items are due: :func:`is_due`, :func:`due_items`; which endpoints
  have had their reports for the day: :func:`capped_endpoints` (SEC-11);
  when the scheduler wakes: :func:`wake_at`;
* the delivery of one item: :func:`delivery`, a conversation (a generator run
  by ``smtpsts.io._drive``) that asks for the ``_smtp._tls`` record
  (:class:`LookupTLSRPT`, RPT-REC-14) and then for each usable ``rua``
  (:class:`MailReport`, :class:`PostReport`) and returns a :class:`Delivery`;
* what that delivery does to the item: :func:`settle` (delivered, dropped,
  retried, given up, or deferred by a local fault without counting the try).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Generator, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Final

import attrs

from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.exceptions import LocalResourceError, UsageError
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.record import (
    HTTPSEndpoint,
    MailtoEndpoint,
    SelectionStatus,
    select_tlsrpt_record,
)

__all__ = [
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_RETRY_PERIOD",
    "MAX_JITTER",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryResult",
    "ItemState",
    "LookupTLSRPT",
    "MailReport",
    "OutboxItem",
    "PostReport",
    "Settlement",
    "Verdict",
    "capped_endpoints",
    "delivery",
    "due_items",
    "is_due",
    "next_build",
    "retry_at",
    "settle",
    "wake_at",
]

DEFAULT_INITIAL_BACKOFF: Final = timedelta(minutes=5)
"""The wait after the first failed delivery; it doubles after each (RPT-SEND-20)."""

DEFAULT_RETRY_PERIOD: Final = timedelta(hours=24)
"""How long after the first attempt deliveries are retried (RFC 8460 §5.5, RPT-SEND-20)."""

MAX_JITTER: Final = timedelta(hours=4)
"""Upper bound of the random delay after 00:00 UTC (RFC 8460 §4.1, RPT-AGG-15)."""


class ItemState(enum.StrEnum):
    """
    Where an outbox item stands; the values are what the outbox file stores.
    """

    PENDING = "pending"
    """Waiting for its next attempt."""
    DELIVERED = "delivered"
    """At least one endpoint accepted it (RPT-SEND-16)."""
    DROPPED = "dropped"
    """The domain wants no reports, or no endpoint is usable (RPT-AGG-19, RPT-SEND-23)."""
    FAILED = "failed"
    """Given up after the retry period (RPT-SEND-20)."""


@attrs.frozen
class DeliveryResult:
    """
    What one endpoint did with a report.

    Attributes:
        uri: The ``rua`` URI.
        ok: Whether it accepted the report.
        detail: The HTTP status, the SMTP reply or the error, in words.
        permanent: The endpoint can never take it: every address of its
            host (or of a redirect target) is refused (issue 10).
        local_fault: This host failed (out of descriptors, buffers or
            memory): no verdict on the endpoint, the attempt is not counted.
    """

    uri: str
    ok: bool
    detail: str
    permanent: bool = False
    local_fault: bool = False


@attrs.frozen
class OutboxItem:
    """
    One report waiting for (or done with) delivery.

    Attributes:
        report_id: The report's ``report-id`` (the outbox key).
        domain: The policy (report) domain.
        day: The UTC day the report covers.
        report: The report.
        created_at: When it was put in the outbox (the first attempt).
        attempts: Failed attempts so far.
        next_attempt: When it is due; ``None`` once finished.
        state: ``pending``, ``delivered``, ``dropped`` (the domain wants no
            reports) or ``failed`` (given up); see :class:`ItemState`.
        last_error: Why the last attempt failed, or why it was dropped.
        delivered_to: The endpoints that accepted it.
    """

    report_id: str
    domain: str
    day: date
    report: Report
    created_at: datetime
    attempts: int
    next_attempt: datetime | None
    state: str
    last_error: str | None
    delivered_to: tuple[str, ...]


# --------------------------------------------------------------------------- schedule


def retry_at(
    first_attempt: datetime,
    attempts: int,
    *,
    initial: timedelta = DEFAULT_INITIAL_BACKOFF,
    period: timedelta = DEFAULT_RETRY_PERIOD,
) -> datetime | None:
    """
    When to try again after ``attempts`` failed deliveries (RFC 8460 §5.5, RPT-SEND-20).

    The waits are ``initial``, then doubling (exponential backoff): with the
    defaults the tries are at +0, +5, +15, +35 minutes and so on.

    Args:
        first_attempt: When the first delivery was tried.
        attempts: How many tries failed so far (at least 1).
        initial: The first wait.
        period: No try later than this after the first ("for up to 24 hours
            after the initial attempt").

    Returns:
        The time of the next try, or ``None`` to give up.
    """
    elapsed = initial * ((1 << attempts) - 1)
    if elapsed > period:
        return None
    return first_attempt + elapsed


def next_build(now: datetime, draw: float, max_jitter: timedelta = MAX_JITTER) -> datetime:
    """
    When the next daily build runs: after 00:00 UTC of the next day, plus a delay.

    RFC 8460 §4.1: a report covers a full UTC day and is delivered "after
    some delay, perhaps several hours", random so that senders do not all
    come at once (RPT-AGG-15).

    Args:
        now: The current time (aware).
        draw: A random number in ``[0, 1]`` (e.g. ``random.random()``): the
            fraction of ``max_jitter`` to wait after midnight.
        max_jitter: The longest delay after midnight.

    Returns:
        The time of the next build.

    Raises:
        smtpsts.UsageError: ``draw`` is outside ``[0, 1]``.
    """
    if not 0.0 <= draw <= 1.0:
        raise UsageError(f"the jitter draw must be in [0, 1], not {draw!r}")
    midnight = datetime.combine(
        now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    )
    return midnight + timedelta(seconds=max_jitter.total_seconds() * draw)


def is_due(item: OutboxItem, now: datetime) -> bool:
    """
    Whether an item is to be tried now: pending, and its next attempt has come (RPT-SEND-20).

    Args:
        item: The outbox item.
        now: The current time.

    Returns:
        ``True`` when it is due.
    """
    return (
        item.state == ItemState.PENDING
        and item.next_attempt is not None
        and item.next_attempt <= now
    )


def due_items(items: Iterable[OutboxItem], now: datetime) -> list[OutboxItem]:
    """
    The items due now, the longest waiting first (ties by ``report_id``).

    The outbox's SQL query selects the same items in the same order.

    Args:
        items: Outbox items.
        now: The current time.

    Returns:
        The due items.
    """
    due = [item for item in items if is_due(item, now)]
    return sorted(due, key=lambda item: (item.next_attempt, item.report_id))


def capped_endpoints(counts: Mapping[str, int], cap: int | None) -> frozenset[str]:
    """
    The endpoints that had their reports for today (RFC 8460 §7, SEC-11).

    Args:
        counts: ``{endpoint URI: reports it accepted today}``.
        cap: The most reports per endpoint and UTC day; ``None``: no cap.

    Returns:
        The endpoint URIs not to contact again today.
    """
    if cap is None:
        return frozenset()
    return frozenset(uri for uri, count in counts.items() if count >= cap)


def wake_at(
    now: datetime, build_at: datetime, poll: timedelta, next_due: datetime | None
) -> datetime:
    """
    When the scheduler looks again: the next build, a due retry, or ``poll`` from now.

    Args:
        now: The current time.
        build_at: The next daily build (:func:`next_build`).
        poll: The longest sleep.
        next_due: When the next pending item is due, if any (an overdue one
            wakes it at once).

    Returns:
        The time to wake up.
    """
    wake = min(build_at, now + poll)
    if next_due is not None:
        wake = min(wake, max(next_due, now))
    return wake


# --------------------------------------------------------------------------- delivery


@attrs.frozen
class LookupTLSRPT:
    """
    Request: look up the TXT RRset at ``qname`` (``_smtp._tls.<domain>.``).

    RPT-REC-14: the record is looked up when the report is sent. The result
    is a :class:`~smtpsts.actions.TXTAnswer`, :class:`~smtpsts.actions.TXTNotFound`
    or :class:`~smtpsts.actions.TXTFailure`; a
    :class:`~smtpsts.LocalResourceError` thrown in defers the item.
    """

    qname: str


@attrs.frozen
class MailReport:
    """
    Request: mail the report to a ``mailto:`` rua (RFC 8460 §5.3).

    The result is a :class:`DeliveryResult`.
    """

    item: OutboxItem
    endpoint: MailtoEndpoint


@attrs.frozen
class PostReport:
    """
    Request: POST the report to an ``https:`` rua (RFC 8460 §5.4).

    The result is a :class:`DeliveryResult`.
    """

    item: OutboxItem
    endpoint: HTTPSEndpoint


class DeliveryOutcome(enum.StrEnum):
    """
    What one delivery attempt of an item came to.
    """

    DELIVERED = "delivered"
    """At least one endpoint accepted the report (RPT-SEND-16)."""
    DROPPED = "dropped"
    """No record, no usable endpoint, or every endpoint refused (RPT-AGG-19, RPT-SEND-23)."""
    RETRY = "retry"
    """No endpoint accepted it; try again later (RPT-SEND-20, RPT-REC-14)."""
    DEFERRED = "deferred"
    """A local fault stopped it: no verdict on the endpoints (issue 10)."""


@attrs.frozen
class Delivery:
    """
    The result of :func:`delivery`.

    Attributes:
        outcome: What the attempt came to.
        results: One per endpoint tried or skipped; for a DNS retry, a
            dropped item without record, and a fault of the lookup, the single
            result (named by the query name) says why.
    """

    outcome: DeliveryOutcome
    results: tuple[DeliveryResult, ...]


DeliveryRequest = LookupTLSRPT | MailReport | PostReport
"""The requests :func:`delivery` yields."""

DeliveryAnswer = TXTAnswer | TXTNotFound | TXTFailure | DeliveryResult
"""The results it is sent."""


def _local(uri: str, fault: LocalResourceError) -> DeliveryResult:
    # Issue 10: a local fault keeps the report queued and counts no attempt.
    return DeliveryResult(uri, ok=False, detail=f"local fault: {fault}", local_fault=True)


def _only(qname: str, outcome: DeliveryOutcome, detail: str) -> Delivery:
    return Delivery(outcome, (DeliveryResult(qname, ok=False, detail=detail),))


def delivery(
    item: OutboxItem, *, capped: Collection[str] = (), send_to_all: bool = True
) -> Generator[DeliveryRequest, DeliveryAnswer, Delivery]:
    """
    Try to deliver one report once: the conversation (RFC 8460 §3, §5.3, §5.4).

    Args:
        item: The outbox item.
        capped: Endpoint URIs that reached the day's cap: not contacted (SEC-11).
        send_to_all: Send to every usable ``rua``, or stop at the first that
            accepts (RPT-SEND-15).

    Yields:
        :class:`LookupTLSRPT`, then a :class:`MailReport` or :class:`PostReport`
        per endpoint.

    Returns:
        The outcome and the per-endpoint results.

    Raises:
        smtpsts.UsageError: A result does not answer the request.
    """
    qname = f"_smtp._tls.{item.domain}."
    try:
        answer = yield LookupTLSRPT(qname)
    except LocalResourceError as exc:
        return Delivery(DeliveryOutcome.DEFERRED, (_local(qname, exc),))
    # RPT-REC-14: looked up at send time; a DNS failure is retried.
    if isinstance(answer, TXTFailure):
        return _only(qname, DeliveryOutcome.RETRY, f"DNS: {answer.reason}")
    if isinstance(answer, TXTNotFound):
        # RPT-AGG-19: no record means the domain wants no reports.
        return _only(qname, DeliveryOutcome.DROPPED, "no TLSRPT record")
    if not isinstance(answer, TXTAnswer):
        raise UsageError(f"a TXT lookup answered with {answer!r}")
    selection = select_tlsrpt_record(answer.records)
    if selection.status is not SelectionStatus.FOUND or selection.record is None:
        # RPT-REC-06: none, several or an invalid record: no reporting.
        return _only(qname, DeliveryOutcome.DROPPED, f"TLSRPT record: {selection.status.value}")
    endpoints = selection.record.usable_endpoints
    if not endpoints:
        # RPT-SEND-23: only unsupported rua URIs.
        return _only(qname, DeliveryOutcome.DROPPED, "no usable rua endpoint")
    results: list[DeliveryResult] = []
    for endpoint in endpoints:
        if endpoint.uri in capped:
            # SEC-11: this destination has had its reports for today.
            results.append(
                DeliveryResult(endpoint.uri, ok=False, detail="daily report cap reached")
            )
            continue
        request: MailReport | PostReport = (
            MailReport(item, endpoint)
            if isinstance(endpoint, MailtoEndpoint)
            else PostReport(item, endpoint)
        )
        try:
            result = yield request
        except LocalResourceError as exc:
            result = _local(endpoint.uri, exc)
        if not isinstance(result, DeliveryResult):
            raise UsageError(f"a report delivery answered with {result!r}")
        results.append(result)
        if result.ok and not send_to_all:
            break
    return Delivery(_outcome(results), tuple(results))


def _outcome(results: list[DeliveryResult]) -> DeliveryOutcome:
    if any(r.ok for r in results):
        # RPT-SEND-16: delivered once at least one endpoint accepted it.
        return DeliveryOutcome.DELIVERED
    if any(r.local_fault for r in results):
        # Issue 10: a local fault is no verdict on the endpoints.
        return DeliveryOutcome.DEFERRED
    if all(r.permanent for r in results):
        # RPT-SEND-23: no usable endpoint is left (all refused, issue 10).
        return DeliveryOutcome.DROPPED
    return DeliveryOutcome.RETRY


# --------------------------------------------------------------------------- settlement


class Verdict(enum.StrEnum):
    """
    How a round counts an item; the values name the fields of the round's summary.
    """

    DELIVERED = "delivered"
    DROPPED = "dropped"
    RETRYING = "retrying"
    FAILED = "failed"
    DEFERRED = "deferred"


@attrs.frozen
class Settlement:
    """
    What a delivery attempt does to its outbox item: the new row, and the verdict.

    Attributes:
        state: The item's new state.
        attempts: Failed attempts so far (a deferral does not count one).
        next_attempt: When to try again; ``None`` once finished.
        error: The failed endpoints and why, ``"; "``-joined; ``None`` if none failed.
        delivered_to: The endpoints that accepted the report.
        verdict: How the round counts the item.
    """

    state: ItemState
    attempts: int
    next_attempt: datetime | None
    error: str | None
    delivered_to: tuple[str, ...]
    verdict: Verdict


def settle(
    item: OutboxItem,
    attempt: Delivery,
    now: datetime,
    *,
    initial: timedelta = DEFAULT_INITIAL_BACKOFF,
    period: timedelta = DEFAULT_RETRY_PERIOD,
) -> Settlement:
    """
    Decide what a delivery attempt does to its item (RFC 8460 §5.5).

    * delivered: finished, with the accepting endpoints (RPT-SEND-16);
    * dropped: finished, the attempt not counted (RPT-AGG-19, RPT-SEND-23);
    * deferred by a local fault: still pending, the attempt not counted, due
      again after ``initial`` (issue 10);
    * retry: one more failed attempt; due again at :func:`retry_at`, or
      given up (``failed``) once that is past ``period`` (RPT-SEND-20).

    Args:
        item: The item as it was before the attempt.
        attempt: What :func:`delivery` returned.
        now: The current time.
        initial: The first retry wait, and the wait after a local fault.
        period: How long after the first attempt to retry.

    Returns:
        The item's new state and the round's verdict.
    """
    accepted = tuple(r.uri for r in attempt.results if r.ok)
    error = "; ".join(f"{r.uri}: {r.detail}" for r in attempt.results if not r.ok) or None
    if attempt.outcome is DeliveryOutcome.DELIVERED:
        return Settlement(
            ItemState.DELIVERED, item.attempts, None, error, accepted, Verdict.DELIVERED
        )
    if attempt.outcome is DeliveryOutcome.DROPPED:
        return Settlement(ItemState.DROPPED, item.attempts, None, error, (), Verdict.DROPPED)
    if attempt.outcome is DeliveryOutcome.DEFERRED:
        return Settlement(
            ItemState.PENDING, item.attempts, now + initial, error, (), Verdict.DEFERRED
        )
    attempts = item.attempts + 1
    again = retry_at(item.created_at, attempts, initial=initial, period=period)
    if again is None:
        return Settlement(ItemState.FAILED, attempts, None, error, (), Verdict.FAILED)
    return Settlement(ItemState.PENDING, attempts, again, error, (), Verdict.RETRYING)
