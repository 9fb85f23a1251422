"""
Unit tests of the TLS-RPT outbox's decisions, ``smtpsts.tlsrpt.outbox`` (issue 11).

The core is pure: the time and the random draw are passed in, and the
delivery conversation is run here with a scripted ``perform``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.exceptions import LocalResourceError, UsageError
from smtpsts.io._drive import drive
from smtpsts.tlsrpt.model import DateRange, Report
from smtpsts.tlsrpt.outbox import (
    DEFAULT_INITIAL_BACKOFF,
    MAX_JITTER,
    Delivery,
    DeliveryOutcome,
    DeliveryResult,
    ItemState,
    LookupTLSRPT,
    MailReport,
    OutboxItem,
    PostReport,
    Settlement,
    Verdict,
    capped_endpoints,
    delivery,
    due_items,
    is_due,
    next_build,
    retry_at,
    settle,
    wake_at,
)

T0 = datetime(2024, 3, 6, 1, 0, tzinfo=UTC)
QNAME = "_smtp._tls.recipient.example."
MAILTO = "mailto:tlsrpt@recipient.example"
HTTPS = "https://reports.recipient.example/v1"
RECORD = f"v=TLSRPTv1; rua={MAILTO},{HTTPS}"


def item(
    report_id: str = "r1",
    *,
    attempts: int = 0,
    next_attempt: datetime | None = T0,
    state: str = ItemState.PENDING,
) -> OutboxItem:
    """An outbox item for recipient.example, created at ``T0``."""
    report = Report(
        organization_name="Sender",
        date_range=DateRange.for_day(date(2024, 3, 5)),
        contact_info="tlsrpt@sender.example",
        report_id=report_id,
        policies=(),
    )
    return OutboxItem(
        report_id, "recipient.example", date(2024, 3, 5), report, T0, attempts,
        next_attempt, state, None, (),
    )  # fmt: skip


def run(
    conversation: Generator[Any, Any, Delivery],
    txt: object,
    endpoint: Callable[[MailReport | PostReport], DeliveryResult] | None = None,
) -> tuple[Delivery, list[object]]:
    """Drive a delivery: ``txt`` answers the lookup (raised if an exception)."""
    asked: list[object] = []

    def perform(request: object) -> object:
        asked.append(request)
        if isinstance(request, LookupTLSRPT):
            if isinstance(txt, BaseException):
                raise txt
            return txt
        assert endpoint is not None
        assert isinstance(request, MailReport | PostReport)
        return endpoint(request)

    return drive(conversation, perform), asked


def accept(request: MailReport | PostReport) -> DeliveryResult:
    """Every endpoint accepts."""
    return DeliveryResult(request.endpoint.uri, ok=True, detail="ok")


def refuse(request: MailReport | PostReport) -> DeliveryResult:
    """Every endpoint refuses, temporarily."""
    return DeliveryResult(request.endpoint.uri, ok=False, detail="no")


class TestSchedule:
    def test_retry_at_doubles_then_gives_up(self) -> None:
        """RPT-SEND-20 / RFC 8460 §5.5: waits 5, 10, 20 ... minutes; none after 24 h."""
        assert T0 + timedelta(minutes=5) == retry_at(T0, 1)
        assert T0 + timedelta(minutes=15) == retry_at(T0, 2)
        assert T0 + timedelta(minutes=35) == retry_at(T0, 3)
        assert retry_at(T0, 9) is None  # 5 * 511 min > 24 h
        assert T0 + timedelta(hours=1) == retry_at(
            T0, 1, initial=timedelta(hours=1), period=timedelta(hours=1)
        )

    def test_next_build_after_midnight_plus_draw(self) -> None:
        """RPT-AGG-15 / RFC 8460 §4.1: the next UTC midnight plus draw * max jitter."""
        midnight = datetime(2024, 3, 7, tzinfo=UTC)
        assert midnight == next_build(T0, 0.0)
        assert midnight + MAX_JITTER == next_build(T0, 1.0)
        assert midnight + timedelta(hours=1) == next_build(T0, 0.5, timedelta(hours=2))

    @pytest.mark.parametrize("draw", [-0.1, 1.5])
    def test_next_build_rejects_bad_draw(self, draw: float) -> None:
        """RPT-AGG-15: the draw is a fraction; anything else is a usage error."""
        with pytest.raises(UsageError):
            next_build(T0, draw)

    def test_is_due_and_due_items(self) -> None:
        """RPT-SEND-20: only pending items whose time has come, longest waiting first."""
        late = item("b", next_attempt=T0 - timedelta(minutes=1))
        tie = item("a", next_attempt=T0 - timedelta(minutes=1))
        now = item("c", next_attempt=T0)
        future = item("d", next_attempt=T0 + timedelta(seconds=1))
        finished = item("e", next_attempt=None)
        delivered = item("f", state=ItemState.DELIVERED)
        assert is_due(now, T0)
        assert not is_due(future, T0)
        assert not is_due(finished, T0)
        assert not is_due(delivered, T0)
        assert [tie, late, now] == due_items([now, future, late, finished, delivered, tie], T0)

    def test_capped_endpoints(self) -> None:
        """SEC-11 / RFC 8460 §7: endpoints at the day's cap are skipped; no cap, none."""
        counts = {MAILTO: 2, HTTPS: 1}
        assert frozenset() == capped_endpoints(counts, None)
        assert frozenset({MAILTO}) == capped_endpoints(counts, 2)
        assert frozenset({MAILTO, HTTPS}) == capped_endpoints(counts, 1)

    def test_wake_at(self) -> None:
        """The scheduler wakes at the earliest of build, poll and due retry (never in the past)."""
        poll = timedelta(minutes=5)
        build = T0 + timedelta(hours=1)
        assert T0 + poll == wake_at(T0, build, poll, None)
        assert T0 + timedelta(minutes=1) == wake_at(T0, build, poll, T0 + timedelta(minutes=1))
        assert T0 == wake_at(T0, build, poll, T0 - timedelta(hours=1))
        assert T0 + poll == wake_at(T0, build, poll, T0 + timedelta(hours=2))
        assert T0 + timedelta(seconds=1) == wake_at(T0, T0 + timedelta(seconds=1), poll, None)


class TestDelivery:
    def test_lookup_first_then_each_endpoint(self) -> None:
        """RPT-REC-14, RPT-SEND-16: looked up at send time, mailed and POSTed, delivered."""
        result, asked = run(delivery(item()), TXTAnswer((RECORD,)), accept)
        assert DeliveryOutcome.DELIVERED == result.outcome
        assert [QNAME, MAILTO, HTTPS] == [
            r.qname if isinstance(r, LookupTLSRPT) else r.endpoint.uri  # type: ignore[attr-defined]
            for r in asked
        ]
        assert isinstance(asked[1], MailReport)
        assert isinstance(asked[2], PostReport)
        assert (MAILTO, HTTPS) == tuple(r.uri for r in result.results)

    def test_first_acceptance_stops_unless_send_to_all(self) -> None:
        """RPT-SEND-15: with send_to_all off, the first accepting endpoint ends the round."""
        result, asked = run(delivery(item(), send_to_all=False), TXTAnswer((RECORD,)), accept)
        assert DeliveryOutcome.DELIVERED == result.outcome
        assert 2 == len(asked)

    def test_dns_failure_is_retried(self) -> None:
        """RPT-REC-14: a DNS failure at send time is retried."""
        result, _ = run(delivery(item()), TXTFailure("SERVFAIL"))
        assert (
            Delivery(
                DeliveryOutcome.RETRY, (DeliveryResult(QNAME, ok=False, detail="DNS: SERVFAIL"),)
            )
            == result
        )

    def test_no_record_drops(self) -> None:
        """RPT-AGG-19: no TLSRPT record means the domain wants no reports."""
        result, _ = run(delivery(item()), TXTNotFound())
        assert (
            Delivery(
                DeliveryOutcome.DROPPED,
                (DeliveryResult(QNAME, ok=False, detail="no TLSRPT record"),),
            )
            == result
        )

    @pytest.mark.parametrize(
        ("records", "detail"),
        [
            ((), "TLSRPT record: no-record"),
            ((RECORD, RECORD), "TLSRPT record: multiple-records"),
            (("v=TLSRPTv1; rua=ftp://x.example/",), "no usable rua endpoint"),
        ],
    )
    def test_unusable_record_drops(self, records: tuple[str, ...], detail: str) -> None:
        """RPT-REC-06, RPT-SEND-23: no single valid record, or no usable rua: dropped."""
        result, _ = run(delivery(item()), TXTAnswer(records))
        assert DeliveryOutcome.DROPPED == result.outcome
        assert detail == result.results[0].detail

    def test_local_fault_of_lookup_defers(self) -> None:
        """Issue 10: a local fault during the lookup defers the item, no verdict."""
        result, _ = run(delivery(item()), LocalResourceError("out of descriptors"))
        assert DeliveryOutcome.DEFERRED == result.outcome
        assert result.results[0].local_fault
        assert "local fault: out of descriptors" == result.results[0].detail

    def test_local_fault_of_endpoint_defers(self) -> None:
        """Issue 10: a local fault on an endpoint is no verdict on the endpoints."""

        def fault(request: MailReport | PostReport) -> DeliveryResult:
            if isinstance(request, MailReport):
                raise LocalResourceError("no memory")
            return refuse(request)

        result, _ = run(delivery(item()), TXTAnswer((RECORD,)), fault)
        assert DeliveryOutcome.DEFERRED == result.outcome
        assert (True, False) == tuple(r.local_fault for r in result.results)

    def test_capped_endpoint_not_contacted(self) -> None:
        """SEC-11: an endpoint at its daily cap is skipped; refusals elsewhere retry."""
        result, asked = run(delivery(item(), capped={MAILTO}), TXTAnswer((RECORD,)), refuse)
        assert DeliveryOutcome.RETRY == result.outcome
        assert 2 == len(asked)
        assert "daily report cap reached" == result.results[0].detail

    def test_all_permanent_refusals_drop(self) -> None:
        """RPT-SEND-23, issue 10: every endpoint refused for good leaves none usable."""

        def permanent(request: MailReport | PostReport) -> DeliveryResult:
            return DeliveryResult(request.endpoint.uri, ok=False, detail="refused", permanent=True)

        result, _ = run(delivery(item()), TXTAnswer((RECORD,)), permanent)
        assert DeliveryOutcome.DROPPED == result.outcome

    def test_wrong_answers_are_usage_errors(self) -> None:
        """A perform that answers the wrong type is a programming error, not a verdict."""
        with pytest.raises(UsageError):
            run(delivery(item()), DeliveryResult(QNAME, ok=True, detail=""))
        with pytest.raises(UsageError):
            run(delivery(item()), TXTAnswer((RECORD,)), lambda _r: TXTNotFound())  # type: ignore[arg-type,return-value]


class TestSettle:
    def _delivery(self, outcome: DeliveryOutcome, *results: DeliveryResult) -> Delivery:
        return Delivery(outcome, results)

    def test_delivered(self) -> None:
        """RPT-SEND-16: finished with the accepting endpoints; failures still named."""
        attempt = self._delivery(
            DeliveryOutcome.DELIVERED,
            DeliveryResult(MAILTO, ok=False, detail="no"),
            DeliveryResult(HTTPS, ok=True, detail="200"),
        )
        assert Settlement(
            ItemState.DELIVERED, 1, None, f"{MAILTO}: no", (HTTPS,), Verdict.DELIVERED
        ) == settle(item(attempts=1), attempt, T0)

    def test_dropped(self) -> None:
        """RPT-AGG-19: dropped is finished and counts no attempt."""
        attempt = self._delivery(
            DeliveryOutcome.DROPPED, DeliveryResult(QNAME, ok=False, detail="no TLSRPT record")
        )
        assert Settlement(
            ItemState.DROPPED, 0, None, f"{QNAME}: no TLSRPT record", (), Verdict.DROPPED
        ) == settle(item(), attempt, T0)

    def test_deferred(self) -> None:
        """Issue 10: a local fault keeps the item pending, counts no attempt, waits ``initial``."""
        attempt = self._delivery(
            DeliveryOutcome.DEFERRED,
            DeliveryResult(QNAME, ok=False, detail="local fault: x", local_fault=True),
        )
        later = T0 + timedelta(hours=3)
        assert Settlement(
            ItemState.PENDING,
            2,
            later + DEFAULT_INITIAL_BACKOFF,
            f"{QNAME}: local fault: x",
            (),
            Verdict.DEFERRED,
        ) == settle(item(attempts=2), attempt, later)

    def test_retry_then_give_up(self) -> None:
        """RPT-SEND-20 / RFC 8460 §5.5: retried with backoff, given up after the period."""
        attempt = self._delivery(
            DeliveryOutcome.RETRY, DeliveryResult(HTTPS, ok=False, detail="500")
        )
        assert Settlement(
            ItemState.PENDING, 1, T0 + timedelta(minutes=5), f"{HTTPS}: 500", (), Verdict.RETRYING
        ) == settle(item(), attempt, T0)
        assert Settlement(ItemState.FAILED, 9, None, f"{HTTPS}: 500", (), Verdict.FAILED) == settle(
            item(attempts=8), attempt, T0
        )
        assert (
            Verdict.FAILED
            == settle(
                item(), attempt, T0, initial=timedelta(hours=2), period=timedelta(hours=1)
            ).verdict
        )

    def test_no_error_when_none_failed(self) -> None:
        """A clean delivery records no error."""
        attempt = self._delivery(
            DeliveryOutcome.DELIVERED, DeliveryResult(HTTPS, ok=True, detail="200")
        )
        assert settle(item(), attempt, T0).error is None
