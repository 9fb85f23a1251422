"""
Delivering TLS-RPT reports: mail and HTTPS POST, with retries and a persistent outbox.

How reports are sent
--------------------
:func:`send_due_reports` does one round of work:

1. **Build.** For every (UTC day, report domain) of the collection store that
   is over and not yet reported, it builds the report (RPT-AGG-01,
   RPT-AGG-03), puts it in the ``Outbox`` (an SQLite table; adding the
   same report twice is a no-op) and only then marks the pair reported in the
   store. A crash between the two steps rebuilds the same report, with the
   same ``report-id``, and the outbox ignores it: nothing is lost or doubled.
2. **Deliver.** For every outbox item that is due, it looks up
   ``_smtp._tls.<policy-domain>`` at send time (RPT-REC-14). No record, several
   records or an invalid one mean the domain does not want reports: the item
   is dropped and logged (RPT-REC-06, RPT-AGG-19); a DNS failure is retried.
   Each usable ``rua`` (RPT-SEND-15, RPT-SEND-23) gets the report: ``mailto:``
   as the RFC 8460 §5.3 message from :func:`smtpsts.tlsrpt.report_message`,
   DKIM-signed by a :class:`DKIMSigner` and handed to a submit function;
   ``https:`` as a POST of the gzip body (RPT-SEND-17). One accepting endpoint
   delivers the report (RPT-SEND-16).
3. **Retry.** A failed item is tried again after 5 minutes, then 10, 20, ...
   (doubling), and given up with a logged reason once the next try would be
   more than 24 hours after the first (RPT-SEND-20; both are settings).

:func:`run_daily` runs this in a loop: the build after 00:00 UTC plus a random
delay of up to 4 hours (RPT-AGG-15), deliveries whenever a retry is due.
The clock, the sleep and the random source are parameters.

Where the decisions are
-----------------------
This module is an adapter (issue 11). Every decision above is pure code in
:mod:`smtpsts.tlsrpt.outbox`: which items are due (``due_items``), which
endpoints are capped for the day (``capped_endpoints``), the delivery
conversation (``delivery``, run here by ``smtpsts.io._drive.drive`` or
``adrive``), what an attempt does to its item (``settle``, with
``retry_at``), and when the scheduler builds and wakes (``next_build``,
``wake_at``). What is left here performs the conversation's requests: the
TXT lookup, the mail (:class:`SMTPSubmitter` from :mod:`smtpsts.io.submit`),
and the HTTPS POST (:func:`post_report`: the address checks, the one
deadline, the exchange of :mod:`smtpsts.io._http11`). The outbox's table is
:class:`smtpsts.stores.tlsrpt_outbox.SQLiteOutbox`, importable here as
``Outbox``. :func:`asend_due_reports` runs the same round on asyncio.
The names this module has always exported (``retry_at``, ``OutboxItem``,
``DeliveryResult``, the defaults) are the core's objects.

The module is over 600 lines because of :class:`ReportSender`'s settings,
each documented, and the round's blocking and asyncio drivers; the decisions
are in :mod:`smtpsts.tlsrpt.outbox` and the POST in ``io/_rua_post.py``.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import ipaddress
import logging
import random
import ssl
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import attrs

from smtpsts._names import to_alabel
from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.exceptions import LocalResourceError, UsageError
from smtpsts.io._addresses import IPNetwork
from smtpsts.io._drive import adrive, drive
from smtpsts.io._rua_post import (
    DEFAULT_HTTPS_TIMEOUT,
    AddressLookup,
    local_fault,
    post_report,
)
from smtpsts.io.submit import SMTPSubmitter
from smtpsts.stores.tlsrpt_outbox import SQLiteOutbox as Outbox
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.outbox import (
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_RETRY_PERIOD,
    MAX_JITTER,
    Delivery,
    DeliveryAnswer,
    DeliveryRequest,
    DeliveryResult,
    LookupTLSRPT,
    MailReport,
    OutboxItem,
    PostReport,
    Settlement,
    Verdict,
    capped_endpoints,
    delivery,
    due_items,
    next_build,
    retry_at,
    settle,
    wake_at,
)
from smtpsts.tlsrpt.record import HTTPSEndpoint, MailtoEndpoint
from smtpsts.tlsrpt.serialize import (
    CONTENT_TYPE_GZIP,
    CONTENT_TYPE_JSON,
    gzip_report,
    report_message,
    submitter_domain,
)

__all__ = [
    "DEFAULT_HTTPS_TIMEOUT",
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_RETRY_PERIOD",
    "MAX_JITTER",
    "SIZE_WARNING",
    "AddressLookup",
    "CollectionStore",
    "DKIMSigner",
    "DeliveryResult",
    "Outbox",
    "OutboxItem",
    "ReportSender",
    "SMTPSubmitter",
    "SendSummary",
    "asend_due_reports",
    "is_report_message",
    "post_report",
    "retry_at",
    "run_daily",
    "send_due_reports",
]

log = logging.getLogger(__name__)

SIZE_WARNING = 10 * 1024 * 1024
"""A compressed report above this size is logged as likely too big (RPT-SEND-22)."""

TXTLookup = Callable[[str], TXTAnswer | TXTNotFound | TXTFailure]
"""Looks up a TXT RRset, e.g. :meth:`smtpsts.io.dns.DNSResolver.lookup_txt`."""

Submit = Callable[[bytes, str, str], None]
"""Submits a message: ``(message bytes, envelope sender, recipient)``; raises on failure."""

AsyncTXTLookup = Callable[[str], Awaitable[TXTAnswer | TXTNotFound | TXTFailure]]
"""Looks up a TXT RRset with asyncio, e.g. :meth:`smtpsts.io.dns.AsyncDNSResolver.lookup_txt`."""

AsyncSubmit = Callable[[bytes, str, str], Awaitable[None]]
"""Submits a message with asyncio, e.g. :meth:`SMTPSubmitter.asubmit`; raises on failure."""


class DKIMSigner(Protocol):
    """Signs a report mail with DKIM (RFC 8460 §3, RPT-SEND-10..12)."""

    def sign(self, message: bytes) -> bytes:
        """
        Sign a message.

        Args:
            message: The message, CRLF line endings.

        Returns:
            The message with its ``DKIM-Signature`` header.
        """
        ...


class CollectionStore(Protocol):
    """What :func:`send_due_reports` needs of a collection store (sqlite or Redis)."""

    def pending(self, before: date) -> list[tuple[date, str]]:
        """The (day, domain) pairs before ``before`` not yet reported."""
        ...

    def aggregator(
        self, day: date, domain: str | None = None, *, max_failure_details: int = 1000
    ) -> Aggregator:
        """The counts of a day as an aggregator."""
        ...

    def mark_reported(self, day: date, domain: str, now: datetime) -> bool:
        """Record that a (day, domain) was reported."""
        ...

    def purge(self, now: datetime, keep_days: int = 7) -> int:
        """Delete what was reported more than ``keep_days`` ago."""
        ...


def is_report_message(headers: Mapping[str, str] | object) -> bool:
    """
    Whether a message is a TLS-RPT report, so its delivery must not be counted.

    An MTA that relays the reports marks the session results of such a message
    with ``report_delivery=True`` (RFC 8460 §3, RPT-AGG-10), and delivers it
    despite TLS failures (RPT-SEND-14; the message carries ``TLS-Required: No``).

    Args:
        headers: The message (an :class:`email.message.Message`) or any
            mapping of its headers.

    Returns:
        ``True`` when it has a ``TLS-Report-Domain`` header.
    """
    get = getattr(headers, "get", None)
    return callable(get) and get("TLS-Report-Domain") is not None


# --------------------------------------------------------------------------- sender


@attrs.frozen
class SendSummary:
    """
    What one :func:`send_due_reports` round did.

    Attributes:
        built: Reports built and queued.
        delivered: Report ids delivered.
        dropped: Report ids dropped (no usable TLSRPT record or endpoint,
            or every endpoint refused by the address policy).
        retrying: Report ids that failed and will be tried again.
        failed: Report ids given up.
        deferred: Report ids not delivered because of a local fault; kept,
            the attempt not counted.
    """

    built: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    retrying: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()


def _mailbox_domain(address: str) -> str:
    return address.rpartition("@")[2]


def _networks(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value) for value in values)


@attrs.define
class ReportSender:
    """
    Who we are and how reports leave: the settings of :func:`send_due_reports`.

    Args:
        organization_name: ``organization-name`` of the reports.
        contact_info: ``contact-info``, an address at the submitter domain
            (RPT-SEND-07).
        lookup_txt: Looks up ``_smtp._tls.<domain>`` (for example
            ``DNSResolver().lookup_txt``).
        from_address: ``From`` and envelope sender of report mails; a
            mailbox at the submitter domain (RPT-SEND-21); ``contact_info``
            by default.
        submit: Hands a mail on; :class:`SMTPSubmitter` to localhost by default.
        signer: The DKIM signer (RPT-SEND-10). Without one, mailing is
            refused unless ``allow_unsigned`` is set: receivers ignore
            unsigned reports (RFC 8460 §3).
        allow_unsigned: Mail reports without a DKIM signature anyway.
        send_to_all: Send to every usable ``rua`` (default) or just the
            first that accepts (RPT-SEND-15).
        unique_id: This MTA's id when several report separately (RPT-AGG-17).
        compressed: gzip the reports (RPT-SEND-01).
        include_success_only: Also report days without failures (AMB-22).
        max_failure_details: Cap on distinct failure details per policy.
        https_timeout: Seconds for one whole POST, redirects included.
        https_verify: Refuse ``https:`` endpoints whose certificate does not
            verify (default: log and ignore, AMB-26).
        https_context: TLS context for verifying them.
        https_max_redirects: Follow up to this many ``307``/``308``
            redirects of ``https:`` endpoints (default none, AMB-26).
        connect_to: ``{(host, port): (address, port)}`` overrides (tests).
        initial_backoff: The first retry wait (RPT-SEND-20), and the wait
            after a local fault.
        retry_period: How long to retry after the first attempt.
        max_reports_per_destination: At most this many reports go to one
            ``rua`` endpoint per UTC day (SEC-11); the others wait as
            retries. ``None`` (the default): no cap. Each (day, policy
            domain) gives one report whatever the setting.
        https_allow: Networks (or their text) that ``https:`` endpoints may
            be at although the address policy refuses them, for internal
            report collectors; empty by default: only public unicast
            addresses are contacted (issue 10).
        lookup_addresses: Resolves the hosts of ``https:`` endpoints (e.g.
            ``DNSResolver().lookup_addresses``); :func:`socket.getaddrinfo`
            by default.
        alookup_txt: The asyncio TXT lookup of :func:`asend_due_reports`
            (e.g. ``AsyncDNSResolver().lookup_txt``); ``lookup_txt`` in a
            worker thread by default.
        asubmit: The asyncio submit of :func:`asend_due_reports`; by default
            ``submit.asubmit`` when it has one (:class:`SMTPSubmitter` has),
            else ``submit`` in a worker thread.

    Raises:
        smtpsts.UsageError: ``contact_info`` or ``from_address`` is not an
            address at a domain, or they are at different domains.
    """

    organization_name: str
    contact_info: str
    lookup_txt: TXTLookup
    from_address: str | None = None
    submit: Submit = attrs.field(factory=SMTPSubmitter)
    signer: DKIMSigner | None = None
    allow_unsigned: bool = False
    send_to_all: bool = True
    unique_id: str | None = None
    compressed: bool = True
    include_success_only: bool = True
    max_failure_details: int = 1000
    https_timeout: float = DEFAULT_HTTPS_TIMEOUT
    https_verify: bool = False
    https_context: ssl.SSLContext | None = None
    https_max_redirects: int = 0
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None
    initial_backoff: timedelta = DEFAULT_INITIAL_BACKOFF
    retry_period: timedelta = DEFAULT_RETRY_PERIOD
    max_reports_per_destination: int | None = None
    https_allow: tuple[IPNetwork, ...] = attrs.field(default=(), converter=_networks)
    lookup_addresses: AddressLookup | None = None
    alookup_txt: AsyncTXTLookup | None = None
    asubmit: AsyncSubmit | None = None

    def __attrs_post_init__(self) -> None:
        submitter = to_alabel(_mailbox_domain(self.contact_info) or "-")
        sender = self.from_address or self.contact_info
        if "@" not in self.contact_info or to_alabel(_mailbox_domain(sender) or "-") != submitter:
            raise UsageError(
                "contact_info and from_address must be addresses at the submitter domain"
                " (RPT-SEND-07, RPT-SEND-21)"
            )

    def build(self, store: CollectionStore, day: date, domain: str) -> Report | None:
        """
        Build the report of one (day, domain) from a store.

        Args:
            store: The collection store.
            day: The UTC day.
            domain: The report domain.

        Returns:
            The report, or ``None`` when there is nothing to report (no
            session, or only successes with ``include_success_only`` off).
        """
        agg = store.aggregator(day, domain, max_failure_details=self.max_failure_details)
        report = agg.report(
            domain,
            day,
            organization_name=self.organization_name,
            contact_info=self.contact_info,
            unique_id=self.unique_id,
        )
        if report is None:
            return None
        if not self.include_success_only and not any(
            p.summary.total_failure_session_count for p in report.policies
        ):
            return None  # AMB-22 off: no heartbeat reports
        return report

    def attempt(self, item: OutboxItem, now: datetime, *, capped: Collection[str] = ()) -> Delivery:
        """
        Try to deliver one report once: :func:`smtpsts.tlsrpt.outbox.delivery`, performed here.

        The core decides (the record, the endpoints, the cap, the outcome);
        this sender performs its requests: the TXT lookup with
        ``lookup_txt``, the mail with ``submit``, the POST with
        :func:`post_report`.

        Args:
            item: The outbox item.
            now: The current time (the mail's ``Date``).
            capped: Endpoint URIs that reached
                ``max_reports_per_destination`` today: not contacted (SEC-11).

        Returns:
            The outcome and the per-endpoint results.
        """
        return drive(
            delivery(item, capped=capped, send_to_all=self.send_to_all), self._performer(now)
        )

    def deliver(
        self, item: OutboxItem, now: datetime, *, capped: Collection[str] = ()
    ) -> tuple[str, list[DeliveryResult]]:
        """
        Try to deliver one report once (:meth:`attempt`, as a pair).

        Args:
            item: The outbox item.
            now: The current time (the mail's ``Date``).
            capped: Endpoint URIs that reached
                ``max_reports_per_destination`` today: not contacted
                (SEC-11).

        Returns:
            ``(outcome, results)``: the outcome is a
            :class:`~smtpsts.tlsrpt.outbox.DeliveryOutcome` (a string:
            ``"delivered"``, ``"dropped"``, ``"retry"`` or ``"deferred"``);
            for a DNS ``retry`` and a ``dropped`` without record the single
            result says why. ``dropped`` also when every endpoint is
            refused by the address policy; ``deferred`` when none accepted
            and one hit a local fault.
        """
        done = self.attempt(item, now, capped=capped)
        return done.outcome, list(done.results)

    async def aattempt(
        self, item: OutboxItem, now: datetime, *, capped: Collection[str] = ()
    ) -> Delivery:
        """
        Try to deliver one report once, with asyncio: :meth:`attempt`'s conversation.

        The TXT lookup is ``alookup_txt`` when set (``lookup_txt`` in a worker
        thread otherwise); mail goes to ``asubmit``, or the submitter's own
        ``asubmit`` (:meth:`SMTPSubmitter.asubmit`), or ``submit`` in a worker
        thread; the POST is :func:`post_report` in a worker thread.

        Args:
            item: The outbox item.
            now: The current time (the mail's ``Date``).
            capped: Endpoint URIs that reached the day's cap (SEC-11).

        Returns:
            The outcome and the per-endpoint results.
        """
        return await adrive(
            delivery(item, capped=capped, send_to_all=self.send_to_all), self._aperformer(now)
        )

    def _aperformer(self, now: datetime) -> Callable[[DeliveryRequest], Awaitable[DeliveryAnswer]]:
        async def perform(request: DeliveryRequest) -> DeliveryAnswer:
            if isinstance(request, LookupTLSRPT):
                if self.alookup_txt is not None:
                    return await self.alookup_txt(request.qname)
                return await asyncio.to_thread(self.lookup_txt, request.qname)
            try:
                if isinstance(request, MailReport):
                    return await self._amail(request.item, request.endpoint, now)
                return await asyncio.to_thread(self._post, request.item, request.endpoint)
            except LocalResourceError as exc:
                _log_local(request, exc)
                raise

        return perform

    def _performer(self, now: datetime) -> Callable[[DeliveryRequest], DeliveryAnswer]:
        # A local fault is raised into the conversation, which keeps the
        # report without a verdict on the endpoint (issue 10).
        def perform(request: DeliveryRequest) -> DeliveryAnswer:
            if isinstance(request, LookupTLSRPT):
                return self.lookup_txt(request.qname)
            try:
                if isinstance(request, MailReport):
                    return self._mail(request.item, request.endpoint, now)
                return self._post(request.item, request.endpoint)
            except LocalResourceError as exc:
                _log_local(request, exc)
                raise

        return perform

    def _payload(self, report: Report) -> bytes:
        if self.compressed:
            body = gzip_report(report)
            if len(body) > SIZE_WARNING:
                log.warning(
                    "TLS-RPT: report %s is %d bytes compressed; receivers may refuse"
                    " reports over 10 MB (RPT-SEND-22)",
                    report.report_id,
                    len(body),
                )
            return body
        return report.to_json().encode("utf-8")

    def _mail(self, item: OutboxItem, endpoint: MailtoEndpoint, now: datetime) -> DeliveryResult:
        if (refused := self._unsigned(endpoint)) is not None:
            return refused
        try:
            data, sender = self._mail_message(item, endpoint, now)
            self.submit(data, sender, endpoint.address)
        except Exception as exc:  # noqa: BLE001 - any failure of a pluggable part is a retry
            return _mail_failure(endpoint, exc)
        return DeliveryResult(endpoint.uri, ok=True, detail="submitted")

    async def _amail(
        self, item: OutboxItem, endpoint: MailtoEndpoint, now: datetime
    ) -> DeliveryResult:
        if (refused := self._unsigned(endpoint)) is not None:
            return refused
        try:
            data, sender = self._mail_message(item, endpoint, now)
            await self._asubmit(data, sender, endpoint.address)
        except Exception as exc:  # noqa: BLE001 - any failure of a pluggable part is a retry
            return _mail_failure(endpoint, exc)
        return DeliveryResult(endpoint.uri, ok=True, detail="submitted")

    async def _asubmit(self, data: bytes, sender: str, recipient: str) -> None:
        # The explicit coroutine, else the submitter's own (SMTPSubmitter.asubmit),
        # else the blocking submit in a worker thread.
        asubmit = self.asubmit or getattr(self.submit, "asubmit", None)
        if asubmit is not None:
            await asubmit(data, sender, recipient)
        else:
            await asyncio.to_thread(self.submit, data, sender, recipient)

    def _unsigned(self, endpoint: MailtoEndpoint) -> DeliveryResult | None:
        if self.signer is None and not self.allow_unsigned:
            # RFC 8460 §3: receivers ignore reports without a valid DKIM signature.
            return DeliveryResult(
                endpoint.uri, ok=False, detail="refused: no DKIM signer (allow_unsigned is off)"
            )
        return None

    def _mail_message(
        self, item: OutboxItem, endpoint: MailtoEndpoint, now: datetime
    ) -> tuple[bytes, str]:
        # The RFC 8460 §5.3 message, signed: (bytes, envelope sender).
        sender = self.from_address or self.contact_info
        submitter = submitter_domain(item.report)
        token = hashlib.sha256(f"{item.report_id}\0{endpoint.address}".encode()).hexdigest()[:16]
        message = report_message(
            item.report,
            item.domain,
            from_address=sender,
            to_address=endpoint.address,
            date=now,
            message_id=f"<{token}.{item.report_id}@{submitter}>",
            unique_id=self.unique_id,
            compressed=self.compressed,
        )
        data = message.as_bytes(policy=email.policy.SMTP)
        if len(data) > SIZE_WARNING:
            log.warning("TLS-RPT: report mail %s is large (RPT-SEND-22)", item.report_id)
        if self.signer is not None:
            data = self.signer.sign(data)
        return data, sender

    def _post(self, item: OutboxItem, endpoint: HTTPSEndpoint) -> DeliveryResult:
        result = post_report(
            endpoint.url,
            self._payload(item.report),
            content_type=CONTENT_TYPE_GZIP if self.compressed else CONTENT_TYPE_JSON,
            timeout=self.https_timeout,
            verify=self.https_verify,
            context=self.https_context,
            connect_to=self.connect_to,
            max_redirects=self.https_max_redirects,
            allow=self.https_allow,
            lookup_addresses=self.lookup_addresses,
        )
        if result.permanent:
            log.warning(
                "TLS-RPT: %s: %s; not retried (internal endpoints need https_allow)",
                endpoint.url,
                result.detail,
            )
        return result


def _log_local(request: MailReport | PostReport, fault: LocalResourceError) -> None:
    log.warning("TLS-RPT: %s: local fault, will try again: %s", request.endpoint.uri, fault)


def _mail_failure(endpoint: MailtoEndpoint, exc: Exception) -> DeliveryResult:
    # Issue 10: a local fault is raised into the conversation; anything else
    # is this endpoint's failure, retried.
    fault = local_fault(exc)
    if fault is not None:
        raise fault from exc
    return DeliveryResult(endpoint.uri, ok=False, detail=f"{type(exc).__name__}: {exc}")


def _build(
    store: CollectionStore, outbox: Outbox, sender: ReportSender, now: datetime
) -> list[str]:
    # RPT-AGG-15: only days that are over.
    built: list[str] = []
    for day, domain in store.pending(before=now.astimezone(UTC).date()):
        report = sender.build(store, day, domain)
        if report is not None and outbox.enqueue(report, domain, day, now):
            built.append(str(report.report_id))
        # Only after the report is safely queued (a crash re-queues the same id).
        store.mark_reported(day, domain, now)
    return built


@attrs.define
class _Round:
    # One round's deliveries: the due items, the day's counts per endpoint
    # (SEC-11) and the verdicts; the sync and asyncio loops share it.
    outbox: Outbox
    sender: ReportSender
    now: datetime
    items: list[OutboxItem]
    counts: dict[str, int]
    verdicts: dict[Verdict, list[str]] = attrs.Factory(lambda: {v: [] for v in Verdict})

    @classmethod
    def start(cls, outbox: Outbox, sender: ReportSender, now: datetime) -> _Round:
        cap = sender.max_reports_per_destination
        counts = outbox.delivered_counts(now) if cap is not None else {}
        # The outbox's query narrows the items; the core decides which are due.
        return cls(outbox, sender, now, due_items(outbox.due(now), now), counts)

    def capped(self) -> frozenset[str]:
        # SEC-11: a cap on reports per destination and day limits report floods.
        return capped_endpoints(self.counts, self.sender.max_reports_per_destination)

    def settle(self, item: OutboxItem, attempt: Delivery) -> None:
        sender = self.sender
        settled = settle(
            item, attempt, self.now, initial=sender.initial_backoff, period=sender.retry_period
        )
        for uri in settled.delivered_to:
            self.counts[uri] = self.counts.get(uri, 0) + 1
        _log_settlement(item, settled)
        self.outbox.record(
            item.report_id,
            state=settled.state,
            attempts=settled.attempts,
            next_attempt=settled.next_attempt,
            error=settled.error,
            delivered_to=settled.delivered_to,
            now=self.now,
        )
        self.verdicts[settled.verdict].append(item.report_id)

    def summary(self, built: Sequence[str]) -> SendSummary:
        return SendSummary(
            tuple(built), **{verdict.value: tuple(ids) for verdict, ids in self.verdicts.items()}
        )


def _aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise UsageError("now must be an aware datetime")


def send_due_reports(
    store: CollectionStore | None,
    outbox: Outbox,
    sender: ReportSender,
    *,
    now: datetime,
    build: bool = True,
) -> SendSummary:
    """
    Build the reports of finished days and deliver every report that is due.

    Each item's delivery is :meth:`ReportSender.attempt` (the core's
    conversation); what it does to the item is
    :func:`smtpsts.tlsrpt.outbox.settle` (RFC 8460 §5.5).

    Args:
        store: The collection store to build from (``None``: deliver only).
        outbox: The persistent outbox.
        sender: Identity and transports.
        now: The current time (aware).
        build: Build new reports (the daily step); ``False`` only retries.

    Returns:
        What was done.

    Raises:
        smtpsts.UsageError: ``now`` is naive.
    """
    _aware(now)
    built = _build(store, outbox, sender, now) if build and store is not None else []
    run = _Round.start(outbox, sender, now)
    for item in run.items:
        run.settle(item, sender.attempt(item, now, capped=run.capped()))
    return run.summary(built)


async def asend_due_reports(
    store: CollectionStore | None,
    outbox: Outbox,
    sender: ReportSender,
    *,
    now: datetime,
    build: bool = True,
) -> SendSummary:
    """
    :func:`send_due_reports` for asyncio: the same round, the same conversation.

    Deliveries run :meth:`ReportSender.aattempt`: the TXT lookup with
    ``alookup_txt`` when set, mail with ``asubmit`` (or the submitter's own
    ``asubmit``, as :class:`SMTPSubmitter` has). The store and outbox calls,
    a blocking ``lookup_txt`` or ``submit``, and the HTTPS POST (its address
    checks and deadline are :func:`post_report`'s) run in worker threads, so
    the event loop never blocks on them. Items are delivered one after the
    other, as in the blocking round, so the daily cap (SEC-11) counts each
    delivery before the next. A cancelled round leaves the item being
    delivered pending as it was (a POST already under way runs to its
    deadline in its thread).

    Args:
        store: The collection store to build from (``None``: deliver only).
        outbox: The persistent outbox.
        sender: Identity and transports.
        now: The current time (aware).
        build: Build new reports (the daily step); ``False`` only retries.

    Returns:
        What was done.

    Raises:
        smtpsts.UsageError: ``now`` is naive.
    """
    _aware(now)
    built = (
        await asyncio.to_thread(_build, store, outbox, sender, now)
        if build and store is not None
        else []
    )
    run = await asyncio.to_thread(_Round.start, outbox, sender, now)
    for item in run.items:
        attempt = await sender.aattempt(item, now, capped=run.capped())
        await asyncio.to_thread(run.settle, item, attempt)
    return run.summary(built)


def _log_settlement(item: OutboxItem, settled: Settlement) -> None:
    rid, error = item.report_id, settled.error
    again = settled.next_attempt.isoformat() if settled.next_attempt is not None else None
    if settled.verdict is Verdict.DELIVERED:
        log.info("TLS-RPT: delivered %s to %s", rid, ", ".join(settled.delivered_to))
    elif settled.verdict is Verdict.DROPPED:
        log.info("TLS-RPT: not sending %s: %s", rid, error)
    elif settled.verdict is Verdict.DEFERRED:
        # Issue 10: a local fault says nothing about the endpoints: the
        # attempt is not counted and the report waits the first backoff.
        log.warning(
            "TLS-RPT: delivery of %s deferred by a local fault (%s); next try at %s",
            rid,
            error,
            again,
        )
    elif settled.verdict is Verdict.FAILED:
        log.error("TLS-RPT: giving up on %s after %d attempts: %s", rid, settled.attempts, error)
    else:
        log.warning("TLS-RPT: delivery of %s failed (%s); next try at %s", rid, error, again)


def run_daily(
    store: CollectionStore | None,
    outbox: Outbox,
    sender: ReportSender,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    wait: Callable[[float], bool] | None = None,
    rng: random.Random | None = None,
    max_jitter: timedelta = MAX_JITTER,
    poll: timedelta = timedelta(minutes=5),
    build_now: bool = True,
    keep_days: int = 7,
    rounds: int | None = None,
) -> None:
    """
    Send reports forever: build after 00:00 UTC plus jitter, retry whenever due.

    Args:
        store: The collection store.
        outbox: The persistent outbox.
        sender: Identity and transports.
        clock: The current time.
        wait: Sleeps for the given seconds; returns ``True`` to stop
            (``threading.Event().wait`` of a stop event). Never stops by default.
        rng: Random source of the jitter.
        max_jitter: Upper bound of the delay after midnight (RPT-AGG-15).
        poll: How often to look for due retries at most.
        build_now: Build the reports of finished days at start-up, too.
        keep_days: After each daily build, purge counts and finished
            outbox items reported more than this many days ago.
        rounds: Stop after this many rounds (tests).
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not security
    wait = wait or threading.Event().wait
    now = clock()
    # RPT-AGG-15: the core's schedule, the adapter's random draw.
    build_at = now if build_now else next_build(now, rng.random(), max_jitter)
    done = 0
    while True:
        now = clock()
        building = now >= build_at
        try:
            send_due_reports(store, outbox, sender, now=now, build=building)
            if building:
                if store is not None:
                    store.purge(now, keep_days)
                outbox.purge(now, keep_days)
        except Exception:
            log.exception("TLS-RPT: sending round failed; trying again later")
        if building:
            build_at = next_build(now, rng.random(), max_jitter)
        done += 1
        if rounds is not None and done >= rounds:
            return
        wake = wake_at(now, build_at, poll, outbox.next_due())
        if wait(max(0.0, (wake - clock()).total_seconds())):
            return
