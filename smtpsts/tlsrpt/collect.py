"""
The row model shared by the persistent TLS-RPT collection stores.

How collection works
--------------------
A store persists counts, not sessions: one row per (UTC day, report domain,
distinct :class:`~smtpsts.tlsrpt.session.SessionResult`) holding how many
sessions ended that way. The result is kept as a canonical text key
(:func:`result_key`), so equal results always give the same bytes and a
database or Redis hash can add to the same row from many writers at once;
:func:`result_from_key` turns a key back into the value.

Writers collect results in a :class:`Batch` (a plain counter, as fast as the
in-memory aggregator's hot path) and hand the batch to a store, which adds it
in one transaction together with the batch's id. A batch id seen before is
skipped, so replaying batches after a crash never counts twice
(issue #5 item 4). Reading folds the rows of a day back into an
:class:`~smtpsts.tlsrpt.aggregate.Aggregator` (:func:`fold`), so reports built
from a store are exactly the reports the in-memory aggregator builds.

Pure: no clock, file or socket; times are parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import attrs

from smtpsts._vocab import ResultType
from smtpsts.exceptions import RowFormatError, UsageError
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.session import PolicyInfo, SessionFailure, SessionResult

__all__ = [
    "KEY_FORMAT",
    "Batch",
    "CountRow",
    "RowFormatError",
    "fold",
    "result_from_key",
    "result_key",
    "utc_day",
]

KEY_FORMAT = 1
"""Version of the :func:`result_key` encoding; the first item of every key."""


def utc_day(at: datetime) -> date:
    """
    The UTC day of a moment (RPT-AGG-02).

    Args:
        at: An aware datetime.

    Returns:
        Its UTC date.

    Raises:
        smtpsts.UsageError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise UsageError("session time must be an aware datetime (UTC), not naive")
    return at.astimezone(UTC).date()


def result_key(result: SessionResult) -> str:
    """
    The canonical text of a session result: equal results give equal keys.

    A compact JSON array in a fixed field order, starting with
    :data:`KEY_FORMAT`.

    Args:
        result: The result.

    Returns:
        The key.
    """
    policy = result.policy
    fields: list[Any] = [
        KEY_FORMAT,
        policy.policy_type.value,
        policy.policy_domain,
        list(policy.policy_strings),
        list(policy.mx_host_patterns),
        1 if result.success else 0,
        None if result.result_type is None else result.result_type.value,
        result.sending_mta_ip,
        result.receiving_mx_hostname,
        result.receiving_mx_helo,
        result.receiving_ip,
        result.failure_reason_code,
        result.additional_information,
        [[f.result_type.value, f.failure_reason_code] for f in result.extra_failures],
        result.report_domain,
    ]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _error(key: str, why: str) -> RowFormatError:
    return RowFormatError(f"unreadable stored result {key[:200]!r}: {why}", reason="bad-row")


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def result_from_key(key: str) -> SessionResult:
    """
    The session result a :func:`result_key` stands for.

    Args:
        key: The key.

    Returns:
        The result; ``result_key(result_from_key(k)) == k`` for every key
        this version writes.

    Raises:
        RowFormatError: The key is not one this version writes.
    """
    try:
        fields = json.loads(key)
    except (ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's limit (issue 10 item 7).
        raise _error(key, f"not JSON ({type(exc).__name__})") from None
    if not isinstance(fields, list) or len(fields) != 15 or fields[0] != KEY_FORMAT:
        raise _error(key, f"not a format-{KEY_FORMAT} key")
    (
        _,
        ptype,
        pdomain,
        strings,
        mx,
        success,
        rtype,
        sip,
        mxname,
        helo,
        rip,
        reason,
        info,
        extras,
        rdomain,
    ) = fields
    if not (_str_list(strings) and _str_list(mx)):
        # result_key writes both as arrays of strings (issue 10 item 7: a null
        # pattern used to escape as AttributeError).
        raise _error(key, "policy strings and mx patterns must be arrays of strings")
    texts = (rtype, sip, mxname, helo, rip, reason, info, rdomain)
    if (
        not _str_list([ptype, pdomain])
        or not all(map(_optional_str, texts))
        or not (
            isinstance(extras, list)
            and all(
                isinstance(e, list) and len(e) == 2 and all(map(_optional_str, e)) for e in extras
            )
        )
    ):
        # Issue 10 item 7: a number for report_domain (or a null policy
        # domain) escaped as AttributeError.
        raise _error(key, "text fields must be strings (or null where optional)")
    try:
        policy = PolicyInfo(ptype, pdomain, tuple(strings), tuple(mx))
        return SessionResult(
            policy,
            bool(success),
            None if rtype is None else ResultType(rtype),
            sending_mta_ip=sip,
            receiving_mx_hostname=mxname,
            receiving_mx_helo=helo,
            receiving_ip=rip,
            failure_reason_code=reason,
            additional_information=info,
            extra_failures=tuple(SessionFailure(t, c) for t, c in extras),
            report_domain=rdomain,
        )
    except (ValueError, TypeError, UsageError) as exc:
        raise _error(key, str(exc)) from None


@attrs.frozen
class CountRow:
    """
    One persisted counter: how many sessions of a day ended as ``key``.

    Attributes:
        day: The UTC day.
        domain: The report domain (:attr:`SessionResult.domain`).
        key: The :func:`result_key` of the result.
        count: How many sessions.
    """

    day: date
    domain: str
    key: str
    count: int


class Batch:
    """
    Session results counted in memory until a store writes them at once.

    Results that delivered a TLS-RPT report are not counted (RFC 8460 §3,
    RPT-AGG-10). Not thread-safe.

    Example:
        >>> from datetime import datetime, UTC
        >>> from smtpsts.tlsrpt import PolicyInfo, SessionResult
        >>> from smtpsts.tlsrpt.collect import Batch
        >>> batch = Batch()
        >>> ok = SessionResult.succeeded(PolicyInfo.no_policy_found("example.com"))
        >>> batch.add(ok, datetime(2024, 3, 5, 12, tzinfo=UTC))
        >>> batch.add(ok, datetime(2024, 3, 5, 13, tzinfo=UTC))
        >>> [(r.domain, r.count) for r in batch.rows()]
        [('example.com', 2)]
    """

    __slots__ = ("_counts", "_keys", "sessions")

    key_cache_size: int = 100_000
    """How many result keys to remember between batches."""

    def __init__(self) -> None:
        self._counts: dict[tuple[date, SessionResult], int] = {}
        self._keys: dict[SessionResult, str] = {}
        self.sessions = 0
        """How many session results were added (and counted)."""

    def add(self, result: SessionResult, at: datetime, count: int = 1) -> None:
        """
        Count a session result.

        Args:
            result: What the session showed for one policy.
            at: When (an aware datetime); its UTC day files it.
            count: How many identical sessions it stands for.

        Raises:
            smtpsts.UsageError: ``at`` is naive or ``count`` is below 1.
        """
        if count < 1:
            raise UsageError(f"count must be at least 1, not {count}")
        if result.report_delivery:
            return
        cell = (at.date() if at.tzinfo is UTC else utc_day(at), result)
        self._counts[cell] = self._counts.get(cell, 0) + count
        self.sessions += count

    def __len__(self) -> int:
        """The number of distinct (day, result) counters."""
        return len(self._counts)

    def __bool__(self) -> bool:
        return bool(self._counts)

    def rows(self) -> Iterator[CountRow]:
        """
        The counters as rows, in insertion order.

        Returns:
            An iterator over the rows.
        """
        keys = self._keys
        for (day, result), count in self._counts.items():
            key = keys.get(result)
            if key is None:
                key = keys[result] = result_key(result)
            yield CountRow(day, result.domain, key, count)

    def clear(self) -> None:
        """Forget the counts (keys stay cached for the next batch)."""
        self._counts.clear()
        self.sessions = 0
        if len(self._keys) > self.key_cache_size:
            self._keys.clear()


def fold(rows: Iterable[tuple[date, str, int]], aggregator: Aggregator | None = None) -> Aggregator:
    """
    Rebuild an aggregator from stored ``(day, key, count)`` rows.

    Args:
        rows: The rows.
        aggregator: The aggregator to add to; a new one by default.

    Returns:
        The aggregator, holding the counts of the rows.

    Raises:
        RowFormatError: A key cannot be read.
    """
    agg = Aggregator() if aggregator is None else aggregator
    for day, key, count in rows:
        agg.add(result_from_key(key), datetime.combine(day, time(12), UTC), count)
    return agg
