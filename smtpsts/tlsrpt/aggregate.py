"""
Folding session results into daily TLS-RPT reports (RFC 8460 §4).

How the fold works
------------------
An MTA calls :meth:`Aggregator.add` once per session and policy, possibly
hundreds of thousands of times a second, so the common case must be one
dictionary lookup. Results are immutable values with a cached hash, and
identical outcomes (same policy, same MX, same failure) are equal, so the
aggregator keeps one counter cell per distinct result and day: a repeated
result finds its cell and increments it.

A new result takes the slow path once: it is filed under its report domain
(RPT-AGG-03), UTC day (RPT-AGG-02) and policy (RPT-AGG-11). All successes of
a policy share one cell. A failure gets a cell of its own, provided its
failure details fit under the cap on distinct details per policy; otherwise
it is counted in an overflow cell for its result types, reported with the
``failure-reason-code`` :data:`OVERFLOW_REASON` and no connection fields, so
nothing is ever dropped silently. Failure details are grouped only when a
report is built (RPT-AGG-07).

Memory is bounded: at most ``max_failure_details`` distinct details per
policy and at most ``max_index`` indexed results in all; results beyond the
index bound are still counted, through the slow path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

import attrs

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.exceptions import UsageError
from smtpsts.tlsrpt.model import (
    DateRange,
    FailureDetails,
    PolicyResult,
    Report,
    ReportPolicy,
    Summary,
)
from smtpsts.tlsrpt.session import PolicyInfo, SessionResult

__all__ = ["OVERFLOW_REASON", "Aggregator", "report_id"]

OVERFLOW_REASON = "failure-details-overflow"
"""``failure-reason-code`` of the entry counting failures beyond the detail cap."""

_UNIQUE_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")

# (result-type, sending-mta-ip, receiving-mx-hostname, receiving-mx-helo,
#  receiving-ip, additional-information, failure-reason-code): RPT-AGG-07.
_DetailKey = tuple[
    ResultType, str | None, str | None, str | None, str | None, str | None, str | None
]


def _detail_keys(result: SessionResult) -> tuple[_DetailKey, ...]:
    rt = result.result_type
    assert rt is not None
    conn = (
        result.sending_mta_ip,
        result.receiving_mx_hostname,
        result.receiving_mx_helo,
        result.receiving_ip,
        result.additional_information,
    )
    keys = [(rt, *conn, result.failure_reason_code)]
    # RPT-AGG-06: one session may add to several failure-details entries.
    keys.extend(
        (extra.result_type, *conn, extra.failure_reason_code) for extra in result.extra_failures
    )
    return tuple(dict.fromkeys(keys))


class _PolicyCounts:
    """The counters of one (domain, day, policy)."""

    __slots__ = ("details", "failures", "overflow", "success")

    def __init__(self) -> None:
        self.success = [0]
        # Distinct failing results -> cell; their details are grouped at build time.
        self.failures: dict[SessionResult, list[int]] = {}
        # Distinct detail keys admitted so far (bounded by the cap).
        self.details: set[_DetailKey] = set()
        # Result types of an overflowing session -> cell.
        self.overflow: dict[tuple[ResultType, ...], list[int]] = {}


class _Day:
    """Everything recorded for one UTC day."""

    __slots__ = ("index", "policies")

    def __init__(self) -> None:
        self.index: dict[SessionResult, list[int]] = {}
        self.policies: dict[str, dict[PolicyInfo, _PolicyCounts]] = {}


def _utc_day(at: datetime) -> date:
    # RPT-AGG-02: the UTC day in which the outcome was recorded.
    if at.tzinfo is UTC:
        return at.date()
    if at.tzinfo is None:
        raise UsageError("session time must be an aware datetime (UTC), not naive")
    return at.astimezone(UTC).date()


def report_id(
    domain: str,
    day: date,
    *,
    organization_name: str,
    contact_info: str,
    unique_id: str | None = None,
) -> str:
    """
    The ``report-id`` of the report for a domain and day.

    Unique per (domain, day, organisation, contact, unique id) and stable:
    rebuilding or re-sending the report gives the same id (RPT-JSON-05,
    RPT-SEND-09). Only dot-atom-text characters, so it also fits the
    Subject's ``Report-ID`` (RFC 8460 §5.3).

    Args:
        domain: The report's policy domain (A-label).
        day: The UTC day.
        organization_name: ``organization-name``.
        contact_info: ``contact-info``.
        unique_id: The sending MTA's own id when several report separately
            (RPT-AGG-17).

    Returns:
        For example ``2024-03-05.recipient.example.3f1c0a9be27d4c58``.
    """
    material = "\0".join(
        (domain, day.isoformat(), organization_name, contact_info, unique_id or "")
    ).encode()
    digest = hashlib.sha256(material).hexdigest()[:16]
    middle = f".{unique_id}" if unique_id else ""
    return f"{day.isoformat()}.{domain}{middle}.{digest}"


@attrs.define(eq=False)
class Aggregator:
    """
    Counts session results per report domain, UTC day and policy (RFC 8460 §4).

    Not thread-safe: give each thread its own and :meth:`merge` them, or
    lock around :meth:`add`.

    Args:
        max_failure_details: The cap on distinct ``failure-details`` entries
            per policy and day. Failures beyond it are counted in one entry
            per result type with ``failure-reason-code``
            :data:`OVERFLOW_REASON`.
        max_index: How many distinct results to remember for the fast path.

    Example:
        >>> from datetime import datetime, UTC
        >>> from smtpsts.tlsrpt import Aggregator, PolicyInfo, SessionResult
        >>> agg = Aggregator()
        >>> policy = PolicyInfo.no_policy_found("recipient.example")
        >>> agg.add(SessionResult.succeeded(policy), datetime(2024, 3, 5, 12, tzinfo=UTC))
        >>> [r.policies[0].summary.total_successful_session_count
        ...  for r in agg.reports(datetime(2024, 3, 5).date(),
        ...                       organization_name="Sender", contact_info="tlsrpt@sender.example")]
        [1]
    """

    max_failure_details: int = attrs.field(default=1000, kw_only=True)
    max_index: int = attrs.field(default=200_000, kw_only=True)
    _days: dict[date, _Day] = attrs.field(init=False, factory=dict)
    _indexed: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.max_failure_details < 1:
            raise UsageError("max_failure_details must be at least 1")

    def add(self, result: SessionResult, at: datetime, count: int = 1) -> None:
        """
        Record a session result.

        Sessions that delivered a TLS-RPT report are ignored (RFC 8460 §3,
        RPT-AGG-10).

        Args:
            result: What the session showed for one policy.
            at: When; an aware datetime. Its UTC day picks the report
                (RPT-AGG-02).
            count: How many identical sessions this stands for.

        Raises:
            smtpsts.UsageError: ``at`` is naive, or ``count`` is below 1.
        """
        if result.report_delivery:
            return
        if count < 1:
            raise UsageError(f"count must be at least 1, got {count}")
        day_key = _utc_day(at)
        day = self._days.get(day_key)
        if day is not None:
            cell = day.index.get(result)
            if cell is not None:
                cell[0] += count
                return
        self._add_slow(result, day_key, count)

    def add_many(self, results: Iterable[SessionResult], at: datetime) -> None:
        """
        Record several results of the same moment (for example one per policy of a session).

        Args:
            results: The results.
            at: When; an aware datetime.
        """
        for result in results:
            self.add(result, at)

    def _add_slow(self, result: SessionResult, day_key: date, count: int) -> None:
        day = self._days.get(day_key)
        if day is None:
            day = self._days[day_key] = _Day()
        counts = self._counts(day, result.domain, result.policy)
        cell = counts.success if result.success else self._failure_cell(counts, result)
        cell[0] += count
        if self._indexed < self.max_index:
            day.index[result] = cell
            self._indexed += 1

    @staticmethod
    def _counts(day: _Day, domain: str, policy: PolicyInfo) -> _PolicyCounts:
        per_policy = day.policies.setdefault(domain, {})
        counts = per_policy.get(policy)
        if counts is None:
            counts = per_policy[policy] = _PolicyCounts()
        return counts

    def _failure_cell(self, counts: _PolicyCounts, result: SessionResult) -> list[int]:
        cell = counts.failures.get(result)
        if cell is not None:
            return cell
        keys = _detail_keys(result)
        new = [k for k in keys if k not in counts.details]
        if len(counts.details) + len(new) <= self.max_failure_details:
            counts.details.update(new)
            cell = counts.failures[result] = [0]
            return cell
        # The cap is reached: count the session, keep only its result types.
        return counts.overflow.setdefault(tuple(k[0] for k in keys), [0])

    def merge(self, other: Aggregator) -> None:
        """
        Add everything another aggregator recorded to this one.

        The cap on failure details applies to the merged counts.

        Args:
            other: The aggregator to fold in; left unchanged.
        """
        for day_key, theirs in other._days.items():
            day = self._days.get(day_key)
            if day is None:
                day = self._days[day_key] = _Day()
            for domain, per_policy in theirs.policies.items():
                for policy, counts in per_policy.items():
                    own = self._counts(day, domain, policy)
                    own.success[0] += counts.success[0]
                    for result, cell in counts.failures.items():
                        self._failure_cell(own, result)[0] += cell[0]
                    for kinds, cell in counts.overflow.items():
                        own.overflow.setdefault(kinds, [0])[0] += cell[0]

    def days(self) -> list[date]:
        """
        The UTC days with recorded sessions, oldest first.

        Returns:
            The days.
        """
        return sorted(self._days)

    def domains(self, day: date) -> list[str]:
        """
        The report domains with sessions on a day, sorted.

        Args:
            day: The UTC day.

        Returns:
            The domains (A-labels).
        """
        found = self._days.get(day)
        return sorted(found.policies) if found is not None else []

    def discard(self, day: date) -> None:
        """
        Forget a day, for example once its reports are built (RPT-AGG-19).

        Args:
            day: The UTC day.
        """
        found = self._days.pop(day, None)
        if found is not None:
            self._indexed -= len(found.index)

    def report(
        self,
        domain: str,
        day: date,
        *,
        organization_name: str,
        contact_info: str,
        unique_id: str | None = None,
    ) -> Report | None:
        """
        Build the report of one domain for one UTC day.

        Args:
            domain: The report domain (the recipient domain; any form).
            day: The UTC day.
            organization_name: ``organization-name``.
            contact_info: ``contact-info``, an addr-spec at the submitter domain.
            unique_id: This MTA's id when several report separately
                (RPT-AGG-17): letters and digits (RFC 8460 §5.1).

        Returns:
            The report, or ``None`` if no session of that domain was recorded
            that day.

        Raises:
            smtpsts.UsageError: ``unique_id`` is not 1-64 letters and digits,
                or a required text is empty.
        """
        if unique_id is not None and not _UNIQUE_ID.match(unique_id):
            raise UsageError(f"unique_id must be 1-64 letters and digits: {unique_id!r}")
        if not organization_name or not contact_info:
            raise UsageError("organization_name and contact_info are required (RPT-JSON-02)")
        domain = to_alabel(domain)
        found = self._days.get(day)
        per_policy = found.policies.get(domain) if found is not None else None
        if not per_policy:
            return None
        entries = [
            _entry(policy, per_policy[policy]) for policy in sorted(per_policy, key=_policy_order)
        ]
        return Report(
            organization_name=organization_name,
            date_range=DateRange.for_day(day),
            contact_info=contact_info,
            report_id=report_id(
                domain,
                day,
                organization_name=organization_name,
                contact_info=contact_info,
                unique_id=unique_id,
            ),
            policies=tuple(entries),
        )

    def reports(
        self,
        day: date,
        *,
        organization_name: str,
        contact_info: str,
        unique_id: str | None = None,
        include_success_only: bool = True,
    ) -> list[Report]:
        """
        Build the reports of every domain for one UTC day, in domain order.

        Args:
            day: The UTC day (a report covers ``T00:00:00Z`` to
                ``T23:59:59Z``, RPT-AGG-01).
            organization_name: ``organization-name``.
            contact_info: ``contact-info``.
            unique_id: As for :meth:`report`.
            include_success_only: Also build reports for domains with no
                failure that day (the heartbeat of AMB-22, RPT-AGG-16).

        Returns:
            One report per domain with sessions that day.
        """
        out = []
        for domain in self.domains(day):
            built = self.report(
                domain,
                day,
                organization_name=organization_name,
                contact_info=contact_info,
                unique_id=unique_id,
            )
            assert built is not None
            if include_success_only or any(
                p.summary.total_failure_session_count for p in built.policies
            ):
                out.append(built)
        return out


def _policy_order(policy: PolicyInfo) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    return (
        policy.policy_type.value,
        policy.policy_domain,
        policy.policy_strings,
        policy.mx_host_patterns,
    )


def _detail_order(key: _DetailKey) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in key)


def _entry(policy: PolicyInfo, counts: _PolicyCounts) -> PolicyResult:
    grouped: dict[_DetailKey, int] = {}
    failures = 0
    for result, cell in counts.failures.items():
        n = cell[0]
        failures += n
        for key in _detail_keys(result):
            grouped[key] = grouped.get(key, 0) + n
    details = [
        FailureDetails(k[0], grouped[k], k[1], k[2], k[3], k[4], k[5], k[6])
        for k in sorted(grouped, key=_detail_order)
    ]
    overflow: dict[ResultType, int] = {}
    for kinds, cell in counts.overflow.items():
        failures += cell[0]
        for kind in kinds:
            overflow[kind] = overflow.get(kind, 0) + cell[0]
    details.extend(
        FailureDetails(kind, overflow[kind], failure_reason_code=OVERFLOW_REASON)
        for kind in sorted(overflow)
    )
    return PolicyResult(
        ReportPolicy.from_info(policy),
        Summary(counts.success[0], failures),
        tuple(details),
    )
