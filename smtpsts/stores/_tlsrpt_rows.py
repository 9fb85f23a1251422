"""
What both TLS-RPT count stores do with their rows once read (issue 11).

The SQLite and Redis stores keep the same :class:`~smtpsts.tlsrpt.collect.CountRow`
values; building a day's aggregator from them is written here once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.collect import CountRow, RowFormatError, fold

__all__ = ["aggregate_rows"]

log = logging.getLogger(__name__)


def aggregate_rows(
    rows: Iterable[CountRow], *, max_failure_details: int = 1000, logger: logging.Logger = log
) -> Aggregator:
    """
    Fold a day's counter rows into an aggregator, skipping unreadable rows with a warning.

    A row this smtpsts cannot read (written by a newer version sharing the
    store) costs that row, never the day's report (RFC 8460 §4: a report
    covers what the sender can account for).

    Args:
        rows: The rows of one UTC day.
        max_failure_details: The aggregator's cap on distinct failure
            details per policy.
        logger: Where the warnings go (the calling store's logger).

    Returns:
        The aggregator.
    """
    agg = Aggregator(max_failure_details=max_failure_details)
    for row in rows:
        try:
            fold([(row.day, row.key, row.count)], agg)
        except RowFormatError as exc:
            logger.warning("TLS-RPT store: skipping a row of %s %s: %s", row.day, row.domain, exc)
    return agg
