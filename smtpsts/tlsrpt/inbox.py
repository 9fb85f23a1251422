"""
The domain owner's side of TLS-RPT: received reports, their intake rules and their store (issue 13).

Pure code: what an intake (HTTPS, IMAP, Maildir) makes of the bytes it got,
the record kept of each report, the interface every report store offers,
and the aggregations the dashboard and the rollout advisor read. The
adapters (``smtpsts.io.tlsrpt_intake``, ``smtpsts.stores.reports_*``) do the
I/O; a store computes the same aggregations in SQL, and
:class:`MemoryReportStore` is their executable specification (the SQL stores
are tested against it).

Intake (RFC 8460 §5.3, §6.5):

- ``application/tlsrpt+json`` or ``application/tlsrpt+gzip`` (gzip is also
  recognised by its magic number whatever the label, §6.5); anything else is
  ``415``;
- at most :attr:`IntakeLimits.max_body` bytes as sent, and
  :attr:`IntakeLimits.max_report` decompressed, at a ratio of at most
  :attr:`IntakeLimits.max_ratio` (a gzip bomb is ``413`` before it is
  inflated past the cap);
- at most :attr:`IntakeLimits.max_policies` policies and
  :attr:`IntakeLimits.max_failure_details` failure details in all;
- the JSON must be a report (:meth:`Report.from_json
  <smtpsts.tlsrpt.model.Report.from_json>`: I-JSON, depth, structure), with
  an ``organization-name`` and a ``report-id`` (the duplicate key);
- a report already stored (same organisation and ``report-id``) is not
  stored again, and the sender is told it was received.

A refused report is never stored as a report; the intake keeps it aside
(:meth:`ReportStore.quarantine`) with the reason, bounded in size.

The module is over 600 lines because it holds the intake rules, the stored
records, the :class:`ReportStore` protocol and :class:`MemoryReportStore`,
the executable specification the SQL stores are tested against.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Final, Protocol, runtime_checkable

import attrs

from smtpsts.exceptions import IntakeError, ReportSyntaxError
from smtpsts.tlsrpt._gzip import GZIP_MAGIC, GzipProblem, inflate
from smtpsts.tlsrpt.model import Report

__all__ = [
    "BY",
    "QUARANTINE_BYTES",
    "AddResult",
    "Breakdown",
    "DayCount",
    "IntakeError",
    "IntakeLimits",
    "MemoryReportStore",
    "Quarantined",
    "Received",
    "ReportStore",
    "Source",
    "StoredReport",
    "accept_report_body",
    "breakdown",
    "check_report",
    "daily_counts",
    "report_key",
    "window",
]

QUARANTINE_BYTES: Final = 256 * 1024
"""The most bytes of a refused body kept in quarantine (the rest is cut, and says so)."""

_JSON_TYPES: Final = ("application/tlsrpt+json", "application/json")
_GZIP_TYPES: Final = ("application/tlsrpt+gzip", "application/gzip", "application/x-gzip")


class Source(enum.StrEnum):
    """How a report arrived."""

    HTTPS = "https"
    """POSTed to the HTTPS intake (RFC 8460 §5.3.2)."""
    IMAP = "imap"
    """Fetched from an IMAP mailbox (RFC 8460 §5.3.1)."""
    MAILDIR = "maildir"
    """Read from a Maildir (RFC 8460 §5.3.1)."""
    FILE = "file"
    """Imported from a file."""


class AddResult(enum.StrEnum):
    """What :meth:`ReportStore.add` did."""

    ADDED = "added"
    """Stored."""
    DUPLICATE = "duplicate"
    """Already stored (same organisation and ``report-id``); nothing changed."""


@attrs.frozen
class IntakeLimits:
    """
    Caps on one received report (every read from the network is bounded).

    Attributes:
        max_body: Bytes as sent (compressed or not).
        max_report: Bytes of JSON after decompression.
        max_ratio: Decompressed / compressed size, at most.
        max_policies: Entries of ``policies``.
        max_failure_details: ``failure-details`` entries over all policies.
    """

    max_body: int = 5 * 1024 * 1024
    max_report: int = 20 * 1024 * 1024
    max_ratio: int = 200
    max_policies: int = 1_000
    max_failure_details: int = 100_000


def _inflate(body: bytes, limits: IntakeLimits) -> bytes:
    # RFC 8460 §6.5: gzip, bounded in size and ratio before it is inflated.
    cap = min(limits.max_report, max(len(body), 1) * limits.max_ratio)
    try:
        return inflate(body, cap)
    except GzipProblem as e:
        if e.kind == "too-large" and cap < limits.max_report:
            raise IntakeError(
                f"gzip expands more than {limits.max_ratio} times (a gzip bomb?)",
                status=413,
                reason="gzip-bomb",
            ) from None
        if e.kind == "too-large":
            raise IntakeError(
                f"the report decompresses to more than {limits.max_report} bytes",
                status=413,
                reason="too-large",
            ) from None
        words = {
            "invalid": f"not valid gzip: {e.detail}",
            "truncated": "the gzip data is truncated",
            "trailing": "data after the gzip stream",
        }
        raise IntakeError(words[e.kind], status=400, reason="bad-gzip") from None


def accept_report_body(
    body: bytes, content_type: str | None, limits: IntakeLimits = IntakeLimits()
) -> Report:
    """
    Decide what a received body is: a report to store, or an :class:`IntakeError`.

    Args:
        body: The bytes as received (at most ``limits.max_body``: an intake
            stops reading past it and passes what it read, so the check
            here fails).
        content_type: The ``Content-Type`` (parameters ignored); ``None``
            for a file or a mail part already chosen by its type.
        limits: The caps.

    Returns:
        The report, with ``organization-name`` and ``report-id`` present.

    Raises:
        IntakeError: The body is refused; ``status`` says how to answer.
    """
    if len(body) > limits.max_body:
        raise IntakeError(
            f"the body is over {limits.max_body} bytes", status=413, reason="too-large"
        )
    media = None if content_type is None else content_type.split(";")[0].strip().lower()
    if media is not None and media not in _JSON_TYPES + _GZIP_TYPES:
        raise IntakeError(
            f"media type {media!r} is not application/tlsrpt+json or application/tlsrpt+gzip"
            " (RFC 8460 §5.3.2)",
            status=415,
            reason="media-type",
        )
    data = _inflate(body, limits) if body.startswith(GZIP_MAGIC) else body
    if len(data) > limits.max_report:
        raise IntakeError(
            f"the report is over {limits.max_report} bytes", status=413, reason="too-large"
        )
    try:
        report = Report.from_json(data)
    except ReportSyntaxError as e:
        raise IntakeError(f"not a TLS-RPT report: {e}", status=400, reason="not-a-report") from None
    return check_report(report, limits)


def check_report(report: Report, limits: IntakeLimits = IntakeLimits()) -> Report:
    """
    Apply the intake's rules on a parsed report: its counts, and the duplicate key.

    :func:`accept_report_body` ends with this check; a mailbox intake,
    which finds the report in a mail (:func:`~smtpsts.tlsrpt.parse_report_message`),
    calls it directly.

    Args:
        report: The report.
        limits: The caps (``max_policies`` and ``max_failure_details``).

    Returns:
        The report, with ``organization-name`` and ``report-id`` present.

    Raises:
        IntakeError: Too many entries (``413``), or no duplicate key (``400``).
    """
    if len(report.policies) > limits.max_policies:
        raise IntakeError(
            f"{len(report.policies)} policies (at most {limits.max_policies})",
            status=413,
            reason="too-many-policies",
        )
    details = sum(len(p.failure_details) for p in report.policies)
    if details > limits.max_failure_details:
        raise IntakeError(
            f"{details} failure details (at most {limits.max_failure_details})",
            status=413,
            reason="too-many-details",
        )
    if report.organization_name is None or report.report_id is None:
        raise IntakeError(
            "a report needs organization-name and report-id (RFC 8460 §4.4)",
            status=400,
            reason="no-report-id",
        )
    return report


def report_key(report: Report) -> tuple[str, str]:
    """
    The duplicate key of a report: its organisation and ``report-id``.

    Args:
        report: A report :func:`accept_report_body` returned.

    Returns:
        ``(organization_name, report_id)``.
    """
    assert report.organization_name is not None  # checked by accept_report_body
    assert report.report_id is not None
    return report.organization_name, report.report_id


@attrs.frozen
class Received:
    """
    A report as the intake got it, ready for :meth:`ReportStore.add`.

    Attributes:
        report: The report.
        source: How it arrived.
        received_at: When (aware UTC).
        client: The sender: the client address for HTTPS, the mailbox and
            message for mail, the path for a file.
        dkim: For mail: the ``d=`` domain of the DKIM signature that vouched
            for the submitter, ``""`` when none did (accepted only when the
            intake does not require DKIM); ``None`` for HTTPS and files.
    """

    report: Report
    source: Source
    received_at: datetime
    client: str = ""
    dkim: str | None = None


@attrs.frozen
class StoredReport:
    """
    One stored report, as lists show it.

    Attributes:
        id: The store's key for it.
        organization: ``organization-name``.
        report_id: ``report-id``.
        start: Start of the date range.
        end: End of the date range.
        domains: The policy domains it reports on.
        successful: Successful sessions, all policies.
        failed: Failed sessions, all policies.
        source: How it arrived.
        received_at: When.
        dkim: The DKIM verdict (see :class:`Received`).
    """

    id: int
    organization: str
    report_id: str
    start: datetime
    end: datetime
    domains: tuple[str, ...]
    successful: int
    failed: int
    source: Source
    received_at: datetime
    dkim: str | None


@attrs.frozen
class Quarantined:
    """
    A refused body, kept for the owner to look at.

    Attributes:
        id: The store's key for it.
        received_at: When.
        source: How it arrived.
        client: Who sent it.
        reason: The :class:`IntakeError` reason code (or ``no-valid-dkim``).
        detail: What was wrong, in words.
        body: Up to :data:`QUARANTINE_BYTES` of what was received.
        truncated: Whether ``body`` was cut.
    """

    id: int
    received_at: datetime
    source: Source
    client: str
    reason: str
    detail: str
    body: bytes
    truncated: bool


@attrs.frozen
class DayCount:
    """
    Sessions on one UTC day for one policy domain (the day a report's range starts).

    Attributes:
        day: The day.
        successful: Successful sessions.
        failed: Failed sessions.
    """

    day: date
    successful: int
    failed: int


@attrs.frozen
class Breakdown:
    """
    Sessions grouped by one dimension.

    Attributes:
        key: The value: an organisation, an MX host, a result type, a
            reason code or a policy (``type: string | string``); ``""`` when
            a report left it out.
        successful: Successful sessions (counted only for ``organization``
            and ``policy``; result types, MX hosts and reasons exist only
            in failure details, so they have ``0`` here).
        failed: Failed sessions.
    """

    key: str
    successful: int
    failed: int


BY: Final = ("organization", "mx", "result_type", "reason", "policy")
"""The dimensions of :func:`breakdown`."""


def _in_window(received: Received, domain: str, since: datetime, until: datetime) -> bool:
    start = received.report.date_range.start
    return since <= start < until and domain in received.report.policy_domains


def daily_counts(
    reports: Iterable[Received], domain: str, since: datetime, until: datetime
) -> list[DayCount]:
    """
    Sessions per day for ``domain``: the specification of :meth:`ReportStore.daily`.

    Args:
        reports: The stored reports.
        domain: The policy domain (A-label).
        since: First instant counted (a report counts by its range's start).
        until: First instant not counted.

    Returns:
        One entry per day that has reports, oldest first.
    """
    days: dict[date, list[int]] = {}
    for received in reports:
        if not _in_window(received, domain, since, until):
            continue
        counts = days.setdefault(received.report.date_range.start.date(), [0, 0])
        for entry in received.report.policies:
            if entry.policy.policy_domain == domain:
                counts[0] += entry.summary.total_successful_session_count
                counts[1] += entry.summary.total_failure_session_count
    return [DayCount(day, ok, failed) for day, (ok, failed) in sorted(days.items())]


def _policy_label(entry_policy: object) -> str:
    policy_type = getattr(entry_policy, "policy_type", "")
    strings = getattr(entry_policy, "policy_strings", ())
    return f"{policy_type}: {' | '.join(strings)}" if strings else str(policy_type)


def breakdown(
    reports: Iterable[Received], domain: str, since: datetime, until: datetime, by: str
) -> list[Breakdown]:
    """
    Sessions of ``domain`` grouped ``by`` one dimension (:meth:`ReportStore.breakdown`).

    Args:
        reports: The stored reports.
        domain: The policy domain.
        since: First instant counted.
        until: First instant not counted.
        by: ``organization``, ``mx``, ``result_type``, ``reason`` or ``policy``.

    Returns:
        The groups, most failed sessions first, then by key.

    Raises:
        ValueError: ``by`` is not one of :data:`BY`.
    """
    if by not in BY:
        raise ValueError(f"breakdown by {by!r}: not one of {', '.join(BY)}")
    groups: dict[str, list[int]] = {}
    for received in reports:
        if not _in_window(received, domain, since, until):
            continue
        for entry in received.report.policies:
            if entry.policy.policy_domain != domain:
                continue
            summary = entry.summary
            if by in ("organization", "policy"):
                key = (
                    received.report.organization_name or ""
                    if by == "organization"
                    else _policy_label(entry.policy)
                )
                counts = groups.setdefault(key, [0, 0])
                counts[0] += summary.total_successful_session_count
                counts[1] += summary.total_failure_session_count
                continue
            for detail in entry.failure_details:
                if by == "mx":
                    key = detail.receiving_mx_hostname or ""
                elif by == "result_type":
                    key = str(detail.result_type)
                else:
                    key = detail.failure_reason_code or ""
                groups.setdefault(key, [0, 0])[1] += detail.failed_session_count
    rows = [Breakdown(key, ok, failed) for key, (ok, failed) in groups.items()]
    return sorted(rows, key=lambda r: (-r.failed, r.key))


@runtime_checkable
class ReportStore(Protocol):
    """
    Where received reports are kept (sqlite, PostgreSQL, memory).

    Every method may raise :class:`~smtpsts.StoreError` when the backend
    cannot be read or written; nothing is half-written (one transaction per
    call). Times are aware UTC datetimes.
    """

    def add(self, received: Received) -> AddResult:
        """Store a report once (the key is :func:`report_key`)."""
        ...

    def quarantine(
        self,
        body: bytes,
        *,
        source: Source,
        received_at: datetime,
        client: str,
        reason: str,
        detail: str,
    ) -> None:
        """Keep a refused body aside (at most :data:`QUARANTINE_BYTES` of it)."""
        ...

    def domains(self) -> list[str]:
        """The policy domains of the stored reports, sorted."""
        ...

    def daily(self, domain: str, since: datetime, until: datetime) -> list[DayCount]:
        """Sessions per day; the same as :func:`daily_counts` over the stored reports."""
        ...

    def breakdown(self, domain: str, since: datetime, until: datetime, by: str) -> list[Breakdown]:
        """Sessions grouped; the same as :func:`breakdown` over the stored reports."""
        ...

    def reports(
        self, domain: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[StoredReport]:
        """Stored reports (of ``domain``), newest range first, then newest id first."""
        ...

    def raw(self, report: int) -> str | None:
        """The stored JSON of a report (:meth:`Report.to_json`), or ``None``."""
        ...

    def quarantined(self, *, limit: int = 100) -> list[Quarantined]:
        """Quarantined bodies, newest first."""
        ...

    def purge(self, before: datetime) -> int:
        """Delete reports whose range ends before ``before`` and older quarantine; count reports."""
        ...

    def close(self) -> None:
        """Release the backend."""
        ...


def _summary(id_: int, received: Received) -> StoredReport:
    report = received.report
    organization, report_id = report_key(report)
    return StoredReport(
        id=id_,
        organization=organization,
        report_id=report_id,
        start=report.date_range.start,
        end=report.date_range.end,
        domains=report.policy_domains,
        successful=sum(p.summary.total_successful_session_count for p in report.policies),
        failed=sum(p.summary.total_failure_session_count for p in report.policies),
        source=received.source,
        received_at=received.received_at,
        dkim=received.dkim,
    )


class MemoryReportStore:
    """
    A :class:`ReportStore` in a dict: for tests, and the specification the SQL stores meet.
    """

    def __init__(self) -> None:
        self._reports: dict[int, Received] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self._quarantine: list[Quarantined] = []

    def add(self, received: Received) -> AddResult:
        """
        Store a report once.

        Args:
            received: The report and how it came.

        Returns:
            :attr:`AddResult.ADDED`, or :attr:`AddResult.DUPLICATE` when its key is stored.
        """
        key = report_key(received.report)
        if key in self._keys:
            return AddResult.DUPLICATE
        new_id = len(self._reports) + 1
        while new_id in self._reports:
            new_id += 1
        self._reports[new_id] = received
        self._keys[key] = new_id
        return AddResult.ADDED

    def quarantine(
        self,
        body: bytes,
        *,
        source: Source,
        received_at: datetime,
        client: str,
        reason: str,
        detail: str,
    ) -> None:
        """
        Keep a refused body aside.

        Args:
            body: What was received.
            source: How it came.
            received_at: When.
            client: Who sent it.
            reason: The reason code.
            detail: What was wrong.
        """
        self._quarantine.append(
            Quarantined(
                len(self._quarantine) + 1,
                received_at,
                source,
                client,
                reason,
                detail,
                body[:QUARANTINE_BYTES],
                len(body) > QUARANTINE_BYTES,
            )
        )

    def domains(self) -> list[str]:
        """
        The policy domains of the stored reports.

        Returns:
            Sorted, each once.
        """
        return sorted({d for r in self._reports.values() for d in r.report.policy_domains})

    def daily(self, domain: str, since: datetime, until: datetime) -> list[DayCount]:
        """
        Sessions per day (:func:`daily_counts`).

        Args:
            domain: The policy domain.
            since: First instant counted.
            until: First instant not counted.

        Returns:
            The days.
        """
        return daily_counts(self._reports.values(), domain, since, until)

    def breakdown(self, domain: str, since: datetime, until: datetime, by: str) -> list[Breakdown]:
        """
        Sessions grouped (:func:`breakdown`).

        Args:
            domain: The policy domain.
            since: First instant counted.
            until: First instant not counted.
            by: One of :data:`BY`.

        Returns:
            The groups.
        """
        return breakdown(self._reports.values(), domain, since, until, by)

    def reports(
        self, domain: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[StoredReport]:
        """
        Stored reports, newest range first.

        Args:
            domain: Only those reporting on this policy domain.
            limit: At most this many.
            offset: After skipping this many.

        Returns:
            The summaries.
        """
        rows = [
            _summary(id_, r)
            for id_, r in self._reports.items()
            if domain is None or domain in r.report.policy_domains
        ]
        rows.sort(key=lambda s: (s.start, s.id), reverse=True)
        return rows[offset : offset + limit]

    def raw(self, report: int) -> str | None:
        """
        The stored JSON of a report.

        Args:
            report: Its id.

        Returns:
            The JSON, or ``None``.
        """
        received = self._reports.get(report)
        return None if received is None else received.report.to_json()

    def quarantined(self, *, limit: int = 100) -> list[Quarantined]:
        """
        Quarantined bodies, newest first.

        Args:
            limit: At most this many.

        Returns:
            The entries.
        """
        return list(reversed(self._quarantine))[:limit]

    def purge(self, before: datetime) -> int:
        """
        Delete what is older than ``before``.

        Args:
            before: Reports whose range ends before it, and quarantine
                entries received before it, go.

        Returns:
            How many reports were deleted.
        """
        old = [i for i, r in self._reports.items() if r.report.date_range.end < before]
        for id_ in old:
            del self._keys[report_key(self._reports.pop(id_).report)]
        self._quarantine = [q for q in self._quarantine if q.received_at >= before]
        return len(old)

    def close(self) -> None:
        """Nothing to release."""


def window(days: int, now: datetime) -> tuple[datetime, datetime]:
    """
    The last ``days`` whole UTC days up to ``now``, as ``(since, until)``.

    Args:
        days: How many days.
        now: The time (aware).

    Returns:
        ``since`` at midnight ``days - 1`` days before today, ``until`` at
        tomorrow's midnight.
    """
    today = datetime.combine(now.date(), datetime.min.time(), now.tzinfo)
    return today - timedelta(days=days - 1), today + timedelta(days=1)
