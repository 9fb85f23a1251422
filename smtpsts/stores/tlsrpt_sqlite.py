"""
TLS-RPT session counts in an SQLite file (stdlib :mod:`sqlite3`), for daemons.

How the sqlite collection store works
-------------------------------------
An MTA calls :meth:`SQLiteTLSRPTStore.add` once per session and policy; the
store counts in memory (a :class:`~smtpsts.tlsrpt.collect.Batch`) and writes
the batch when it holds ``batch_size`` sessions, on :meth:`~SQLiteTLSRPTStore.flush`
and on :meth:`~SQLiteTLSRPTStore.close`. A batch is written in one
``BEGIN IMMEDIATE`` transaction: every counter row is added with an upsert,
and the batch id goes into a journal table in the same transaction. So:

* a crash (even ``kill -9``) loses at most the batch not yet written; a
  transaction is all there or not there, and WAL mode keeps the file
  consistent (SQLite's atomic commit);
* a batch id already in the journal is skipped, so a writer that replays its
  input after a restart (giving each batch an id derived from its input
  position, e.g. ``"maillog:1834000"``) never counts a session twice.

Reports are built from the counts of a finished day (:meth:`SQLiteTLSRPTStore.aggregator`); the
sender marks each (day, domain) reported once the report is safely in its
outbox (:meth:`SQLiteTLSRPTStore.mark_reported`), and
:meth:`SQLiteTLSRPTStore.purge` removes counts and journal
entries older than the retention period after that.

The file is opened in WAL mode with a busy timeout, so several processes
(several MTAs on one host, and the sender) can share it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Final, Self

from smtpsts._names import to_alabel
from smtpsts.exceptions import UsageError
from smtpsts.stores._sqlite import migrate, open_database
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.collect import Batch, CountRow, RowFormatError, fold
from smtpsts.tlsrpt.session import SessionResult

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_KEEP_DAYS", "SCHEMA_VERSION", "SQLiteTLSRPTStore"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE: Final = 1000
"""Sessions counted in memory before the store writes them."""

DEFAULT_KEEP_DAYS: Final = 7
"""Days counts and batch ids are kept after their day was reported."""

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE tlsrpt_count (
            day TEXT NOT NULL,
            domain TEXT NOT NULL,
            key TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (day, domain, key)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE tlsrpt_batch (
            batch_id TEXT PRIMARY KEY NOT NULL,
            written_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE tlsrpt_reported (
            day TEXT NOT NULL,
            domain TEXT NOT NULL,
            reported_at REAL NOT NULL,
            PRIMARY KEY (day, domain)
        ) WITHOUT ROWID
        """,
    ),
)
"""Schema migrations: item ``n`` brings a file from version ``n`` to ``n + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this smtpsts writes."""


class SQLiteTLSRPTStore:
    """
    Per-day TLS-RPT session counts in an SQLite file, shared by threads and processes.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        batch_size: Sessions counted in memory before they are written.
        busy_timeout: Seconds to wait for another process's write lock.

    Raises:
        smtpsts.stores.sqlite.StoreVersionError: The file's schema is newer
            than this smtpsts.
        sqlite3.Error: The file cannot be opened or is not a database.

    Example:
        >>> from datetime import datetime, UTC
        >>> from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
        >>> from smtpsts.tlsrpt import PolicyInfo, SessionResult
        >>> store = SQLiteTLSRPTStore(":memory:")
        >>> ok = SessionResult.succeeded(PolicyInfo.no_policy_found("example.com"))
        >>> store.add(ok, datetime(2024, 3, 5, 12, tzinfo=UTC))
        >>> store.flush()
        True
        >>> store.domains(datetime(2024, 3, 5).date())
        ['example.com']
        >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        busy_timeout: float = 5.0,
    ) -> None:
        if batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        self.path = os.fspath(path)
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self._batch = Batch()
        self._conn = open_database(self.path, busy_timeout)
        try:
            # Own version table, not PRAGMA user_version: the file may also
            # hold the policy store (smtpsts.stores.sqlite).
            migrate(
                self._conn,
                self.path,
                MIGRATIONS,
                version_table="tlsrpt_schema",
                label="TLS-RPT schema version",
            )
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ writing

    def add(self, result: SessionResult, at: datetime, count: int = 1) -> None:
        """
        Count a session result; writes the batch once it is full.

        Sessions that delivered a TLS-RPT report are not counted (RFC 8460 §3,
        RPT-AGG-10).

        Args:
            result: What the session showed for one policy.
            at: When; an aware datetime. Its UTC day files it (RPT-AGG-02).
            count: How many identical sessions it stands for.

        Raises:
            smtpsts.UsageError: ``at`` is naive.
        """
        with self._lock:
            self._batch.add(result, at, count)
            if self._batch.sessions >= self.batch_size:
                self._flush(None)

    def flush(self, batch_id: str | None = None) -> bool:
        """
        Write the counted sessions now, in one transaction.

        Args:
            batch_id: The batch's id; a random one by default. A batch whose
                id was written before is dropped, not counted again.

        Returns:
            Whether the batch was written (``False`` when it was empty or a
            replay).
        """
        with self._lock:
            return self._flush(batch_id)

    def _flush(self, batch_id: str | None) -> bool:
        if not self._batch:
            return False
        try:
            return self.write_batch(self._batch.rows(), batch_id or uuid.uuid4().hex)
        finally:
            self._batch.clear()

    def write_batch(self, rows: Iterable[CountRow], batch_id: str) -> bool:
        """
        Add counter rows in one transaction, once per batch id.

        Args:
            rows: The rows (for example :meth:`Batch.rows`).
            batch_id: The batch's id (1-200 characters).

        Returns:
            ``True`` if written; ``False`` if a batch with this id was written
            before (nothing is added).

        Raises:
            smtpsts.UsageError: The batch id is empty or too long.
        """
        if not 0 < len(batch_id) <= 200:
            raise UsageError("batch_id must be 1-200 characters")
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO tlsrpt_batch (batch_id, written_at)"
                    " VALUES (?, ((julianday('now') - 2440587.5) * 86400.0))",
                    (batch_id,),
                )
                if cur.rowcount == 0:
                    conn.execute("ROLLBACK")
                    log.info("TLS-RPT store: batch %s was written before; skipped", batch_id)
                    return False
                conn.executemany(
                    "INSERT INTO tlsrpt_count (day, domain, key, count) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (day, domain, key) DO UPDATE SET count = count + excluded.count",
                    ((r.day.isoformat(), r.domain, r.key, r.count) for r in rows),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return True

    def has_batch(self, batch_id: str) -> bool:
        """
        Whether a batch with this id was written (and not yet purged).

        Args:
            batch_id: The id.

        Returns:
            ``True`` if it was written.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM tlsrpt_batch WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ reading

    def days(self) -> list[date]:
        """
        The UTC days with written counts, oldest first.

        Returns:
            The days.
        """
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT day FROM tlsrpt_count ORDER BY day")
            return [date.fromisoformat(d) for (d,) in rows.fetchall()]

    def domains(self, day: date) -> list[str]:
        """
        The report domains with written counts on a day, sorted.

        Args:
            day: The UTC day.

        Returns:
            The domains (A-labels).
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT domain FROM tlsrpt_count WHERE day = ? ORDER BY domain",
                (day.isoformat(),),
            )
            return [d for (d,) in rows.fetchall()]

    def rows(self, day: date, domain: str | None = None) -> list[CountRow]:
        """
        The written counter rows of a day.

        Args:
            day: The UTC day.
            domain: Only this report domain; all by default.

        Returns:
            The rows, ordered by domain and key.
        """
        sql = "SELECT domain, key, count FROM tlsrpt_count WHERE day = ?"
        params: tuple[str, ...] = (day.isoformat(),)
        if domain is not None:
            sql += " AND domain = ?"
            params += (to_alabel(domain),)
        with self._lock:
            found = self._conn.execute(sql + " ORDER BY domain, key", params).fetchall()
        return [CountRow(day, d, k, c) for d, k, c in found]

    def aggregator(
        self, day: date, domain: str | None = None, *, max_failure_details: int = 1000
    ) -> Aggregator:
        """
        The written counts of a day folded into an aggregator, to build reports from.

        Rows that cannot be read (written by a newer smtpsts) are skipped and logged.

        Args:
            day: The UTC day.
            domain: Only this report domain; all by default.
            max_failure_details: The aggregator's cap on distinct failure
                details per policy.

        Returns:
            The aggregator.
        """
        agg = Aggregator(max_failure_details=max_failure_details)
        for row in self.rows(day, domain):
            try:
                fold([(row.day, row.key, row.count)], agg)
            except RowFormatError as exc:
                log.warning("TLS-RPT store: skipping a row of %s %s: %s", day, row.domain, exc)
        return agg

    def pending(self, before: date) -> list[tuple[date, str]]:
        """
        The (day, domain) pairs with counts, before a day, not yet reported.

        Args:
            before: The first day not to list (normally today, UTC: a report
                is built only once its day is over, RPT-AGG-15).

        Returns:
            The pairs, oldest day first.
        """
        with self._lock:
            found = self._conn.execute(
                "SELECT DISTINCT c.day, c.domain FROM tlsrpt_count c"
                " LEFT JOIN tlsrpt_reported r ON r.day = c.day AND r.domain = c.domain"
                " WHERE c.day < ? AND r.day IS NULL ORDER BY c.day, c.domain",
                (before.isoformat(),),
            ).fetchall()
        return [(date.fromisoformat(d), dom) for d, dom in found]

    def mark_reported(self, day: date, domain: str, now: datetime) -> bool:
        """
        Record that the report of a (day, domain) was built and handed on.

        Args:
            day: The UTC day.
            domain: The report domain.
            now: The current time (starts the retention period).

        Returns:
            ``True`` for the first call for that pair, ``False`` afterwards
            (another sender got there first).
        """
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO tlsrpt_reported (day, domain, reported_at) VALUES (?, ?, ?)",
                (day.isoformat(), to_alabel(domain), now.timestamp()),
            )
        return cur.rowcount == 1

    def purge(self, now: datetime, keep_days: int = DEFAULT_KEEP_DAYS) -> int:
        """
        Delete counts of days reported more than ``keep_days`` ago, and old batch ids.

        Args:
            now: The current time.
            keep_days: The retention period in days.

        Returns:
            How many counter rows were deleted.
        """
        cutoff = (now - timedelta(days=keep_days)).timestamp()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "DELETE FROM tlsrpt_count WHERE (day, domain) IN"
                    " (SELECT day, domain FROM tlsrpt_reported WHERE reported_at < ?)",
                    (cutoff,),
                )
                deleted = cur.rowcount
                conn.execute("DELETE FROM tlsrpt_reported WHERE reported_at < ?", (cutoff,))
                conn.execute("DELETE FROM tlsrpt_batch WHERE written_at < ?", (cutoff,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return deleted

    def integrity_check(self) -> str:
        """
        Run SQLite's ``PRAGMA integrity_check``.

        Returns:
            ``"ok"`` for a sound file, else SQLite's first complaint.
        """
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        """Write what is counted, then close the database."""
        with self._lock:
            try:
                self._flush(None)
            finally:
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
