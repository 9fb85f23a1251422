"""
The TLS-RPT outbox in an SQLite file: reports waiting for delivery (RFC 8460 §5.5).

The sender (``smtpsts.io.tlsrpt_send``, where this class is also importable
as ``Outbox``) puts each built report here before it marks its (day, domain)
reported, so a restart loses none and a crash between the two steps queues
the same ``report-id`` once (adding it again is a no-op). What happens to an
item is decided by :mod:`smtpsts.tlsrpt.outbox` (the states are its
:class:`~smtpsts.tlsrpt.outbox.ItemState` values); this module only stores
the rows and runs the queries.

The file is opened like every smtpsts store (:mod:`smtpsts.stores._sqlite`:
WAL, a busy timeout, usable from any thread) and may be the file of the
collection store (:class:`~smtpsts.stores.tlsrpt_sqlite.SQLiteTLSRPTStore`)
and the policy store. The schema version lives in a table of its own,
``tlsrpt_outbox_schema``; a file written before the outbox had a version
(the same table, without the index) is brought to version 1 in place. Like
the collection store, a file that cannot be opened or read raises the
:mod:`sqlite3` error itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final, Self

from smtpsts._names import to_alabel
from smtpsts.exceptions import UsageError
from smtpsts.stores._sqlite import migrate, open_database
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.outbox import ItemState, OutboxItem

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteOutbox"]

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # IF NOT EXISTS: files of earlier smtpsts have this table, unversioned.
        """
        CREATE TABLE IF NOT EXISTS tlsrpt_outbox (
            report_id TEXT PRIMARY KEY NOT NULL,
            domain TEXT NOT NULL,
            day TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt REAL,
            state TEXT NOT NULL,
            last_error TEXT,
            delivered_to TEXT NOT NULL DEFAULT '',
            finished_at REAL
        )
        """,
        "CREATE INDEX IF NOT EXISTS tlsrpt_outbox_due ON tlsrpt_outbox (state, next_attempt)",
    ),
)
"""Schema migrations: item ``n`` brings a file from version ``n`` to ``n + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The outbox schema version this smtpsts writes."""

_SELECT: Final = (
    "SELECT report_id, domain, day, report, created_at, attempts, next_attempt,"
    " state, last_error, delivered_to FROM tlsrpt_outbox "
)

_Row = tuple[str, str, str, str, float, int, float | None, str, str | None, str]


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _item(row: _Row) -> OutboxItem:
    rid, domain, day, doc, created, attempts, nxt, state, error, to = row
    return OutboxItem(
        rid,
        domain,
        date.fromisoformat(day),
        Report.from_json(doc),
        datetime.fromtimestamp(created, UTC),
        attempts,
        _dt(nxt),
        state,
        error,
        tuple(to.split()),
    )


class SQLiteOutbox:
    """
    Reports to deliver, in an SQLite file, so a restart loses none.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds to wait for another process's write lock.

    Raises:
        smtpsts.stores.sqlite.StoreVersionError: The file's outbox schema is newer than
            this smtpsts.
        sqlite3.Error: The file cannot be opened or is not a database.

    Example:
        >>> from datetime import date, datetime, UTC
        >>> from smtpsts.stores.tlsrpt_outbox import SQLiteOutbox
        >>> from smtpsts.tlsrpt.model import DateRange, Report
        >>> report = Report(
        ...     organization_name="Sender",
        ...     date_range=DateRange.for_day(date(2024, 3, 5)),
        ...     contact_info="tlsrpt@sender.example",
        ...     report_id="r1",
        ...     policies=(),
        ... )
        >>> now = datetime(2024, 3, 6, 1, tzinfo=UTC)
        >>> with SQLiteOutbox(":memory:") as outbox:
        ...     outbox.enqueue(report, "recipient.example", date(2024, 3, 5), now)
        ...     [item.report_id for item in outbox.due(now)]
        True
        ['r1']
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = open_database(self.path, busy_timeout)
        try:
            migrate(
                self._conn,
                self.path,
                MIGRATIONS,
                version_table="tlsrpt_outbox_schema",
                label="TLS-RPT outbox schema version",
            )
        except BaseException:
            self._conn.close()
            raise

    def enqueue(self, report: Report, domain: str, day: date, now: datetime) -> bool:
        """
        Add a report, due at once; a report already there (same id) is left alone.

        Args:
            report: The report (it must have a ``report-id``).
            domain: Its policy domain.
            day: The UTC day it covers.
            now: The current time (the item's first attempt).

        Returns:
            Whether it was added.

        Raises:
            smtpsts.UsageError: The report has no ``report-id``.
        """
        if not report.report_id:
            raise UsageError("a report needs a report-id to be queued")
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO tlsrpt_outbox (report_id, domain, day, report, created_at,"
                " attempts, next_attempt, state) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    report.report_id,
                    to_alabel(domain),
                    day.isoformat(),
                    report.to_json(),
                    now.timestamp(),
                    now.timestamp(),
                    ItemState.PENDING.value,
                ),
            )
        return cur.rowcount == 1

    def _items(self, where: str, params: tuple[object, ...]) -> list[OutboxItem]:
        # ``where`` is one of the fixed clauses of the methods below.
        with self._lock:
            rows: list[_Row] = self._conn.execute(_SELECT + where, params).fetchall()
        return [_item(row) for row in rows]

    def due(self, now: datetime) -> list[OutboxItem]:
        """
        The pending items whose next attempt has come.

        The same items, in the same order, as
        :func:`smtpsts.tlsrpt.outbox.due_items` picks.

        Args:
            now: The current time.

        Returns:
            The items, the longest waiting first.
        """
        return self._items(
            "WHERE state = ? AND next_attempt <= ? ORDER BY next_attempt, report_id",
            (ItemState.PENDING.value, now.timestamp()),
        )

    def items(self, state: str | None = None) -> list[OutboxItem]:
        """
        Every item, or those in one state.

        Args:
            state: An :class:`~smtpsts.tlsrpt.outbox.ItemState` (``pending``,
                ``delivered``, ``dropped`` or ``failed``).

        Returns:
            The items, oldest first.
        """
        if state is None:
            return self._items("ORDER BY created_at, report_id", ())
        return self._items("WHERE state = ? ORDER BY created_at, report_id", (str(state),))

    def next_due(self) -> datetime | None:
        """
        When the next pending item is due.

        Returns:
            The time, or ``None`` when nothing is pending.
        """
        with self._lock:
            (value,) = self._conn.execute(
                "SELECT min(next_attempt) FROM tlsrpt_outbox WHERE state = ?",
                (ItemState.PENDING.value,),
            ).fetchone()
        return _dt(value)

    def record(
        self,
        report_id: str,
        *,
        state: str,
        attempts: int,
        next_attempt: datetime | None,
        error: str | None,
        delivered_to: Sequence[str] = (),
        now: datetime,
    ) -> None:
        """
        Store the outcome of an attempt (a :class:`~smtpsts.tlsrpt.outbox.Settlement`'s fields).

        Args:
            report_id: The item.
            state: Its new state.
            attempts: Failed attempts so far.
            next_attempt: When to try again (``None`` once finished).
            error: Why the attempt failed, or why the item was dropped.
            delivered_to: The endpoints that accepted it.
            now: The current time (when a finished item finished).
        """
        finished = None if state == ItemState.PENDING else now.timestamp()
        with self._lock:
            self._conn.execute(
                "UPDATE tlsrpt_outbox SET state = ?, attempts = ?, next_attempt = ?,"
                " last_error = ?, delivered_to = ?, finished_at = ? WHERE report_id = ?",
                (
                    str(state),
                    attempts,
                    None if next_attempt is None else next_attempt.timestamp(),
                    error,
                    " ".join(delivered_to),
                    finished,
                    report_id,
                ),
            )

    def delivered_counts(self, now: datetime) -> dict[str, int]:
        """
        How many reports each endpoint accepted on the UTC day of ``now`` (SEC-11).

        Args:
            now: The current time (aware).

        Returns:
            ``{endpoint URI: reports delivered to it that day}``.
        """
        day = now.astimezone(UTC).date()
        start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        with self._lock:
            rows = self._conn.execute(
                "SELECT delivered_to FROM tlsrpt_outbox WHERE state = ?"
                " AND finished_at >= ? AND finished_at < ?",
                (ItemState.DELIVERED.value, start, start + 86400),
            ).fetchall()
        counts: dict[str, int] = {}
        for (to,) in rows:
            for uri in to.split():
                counts[uri] = counts.get(uri, 0) + 1
        return counts

    def purge(self, now: datetime, keep_days: int = 7) -> int:
        """
        Delete finished items that finished more than ``keep_days`` ago.

        Args:
            now: The current time.
            keep_days: The retention period.

        Returns:
            How many items were deleted.
        """
        cutoff = (now - timedelta(days=keep_days)).timestamp()

        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM tlsrpt_outbox WHERE state != ? AND finished_at < ?",
                (ItemState.PENDING.value, cutoff),
            )
        return cur.rowcount

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        """
        Return the outbox itself, to close it at the end of a ``with`` block.

        Returns:
            The outbox.
        """
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the outbox."""
        self.close()
