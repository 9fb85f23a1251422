"""
Received TLS-RPT reports in one SQLite file (issue 13 item 3; stdlib :mod:`sqlite3`).

The default store of the intakes and the dashboard. The file is in WAL mode
(readers never wait for the writer; several intake processes may share it)
with ``synchronous = FULL`` by default: in WAL mode ``NORMAL`` already keeps
the file consistent through ``kill -9``, but may lose the last commits on a
power cut or an OS crash, and a report the intake acknowledged (HTTP 200, a
mail moved out of the inbox) is never sent again; reports arrive a few per
sender per day, so one fsync per report costs nothing that matters. Pass
``synchronous="NORMAL"`` for bulk imports.

Every method is one transaction: a write is ``BEGIN IMMEDIATE`` (a report,
its policy entries and its failure details are all stored or none is; a lock
held by another process is waited for at most ``busy_timeout`` seconds), a
read is a WAL snapshot that does not wait for writers. Failures of
the file are :class:`smtpsts.StoreError`. The schema is versioned
(:data:`smtpsts.stores._reports_sql.MIGRATIONS`); a file written by a newer
smtpsts is refused, never changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Final, Literal, TypeVar

from smtpsts.exceptions import StoreError, StoreVersionError
from smtpsts.stores import _reports_sql
from smtpsts.stores._reports_sql import Cursor, Dialect, SQLReportStore

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SQLITE", "SQLiteReportStore"]

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT: Final = 5.0
"""Seconds to wait for another process's write lock."""

SQLITE: Final = Dialect(
    name="sqlite", serial="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB", mark="?"
)
"""The SQLite spelling of the shared SQL (ids are never reused: AUTOINCREMENT)."""


class SQLiteReportStore(SQLReportStore):
    """
    A :class:`~smtpsts.tlsrpt.inbox.ReportStore` in one SQLite file.

    Args:
        path: The database file (created if missing).
        busy_timeout: Seconds to wait for another process's lock (bounded).
        synchronous: ``FULL`` (default: a commit survives a power cut) or
            ``NORMAL`` (survives a crash of the process, not of the host).

    Raises:
        smtpsts.StoreError: The file cannot be opened or migrated, or its
            schema is newer than this smtpsts.
    """

    dialect = SQLITE

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        super().__init__()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self._where = f"sqlite report store {path}"
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self._where}: cannot open: {exc}") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._run(
                "migrate",
                lambda cur: _reports_sql.migrate(cur, SQLITE, self._where, _reports_sql.MIGRATIONS),
            )
        except StoreVersionError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self._where}: cannot open: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    def _run(self, operation: str, body: Callable[[Cursor], T], *, write: bool = True) -> T:
        # A write takes the write lock up front (BEGIN IMMEDIATE: the busy
        # timeout applies, no deadlock upgrading a read); a read is a WAL
        # snapshot that never waits for a writer.
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = body(conn.cursor())
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")  # none may be open: suppressed
                    raise
            except sqlite3.ProgrammingError:
                raise
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self._where}: cannot {operation}: {exc}") from exc
            return result

    def close(self) -> None:
        """Close the file (a second call does nothing)."""
        with self._lock:
            self._conn.close()
