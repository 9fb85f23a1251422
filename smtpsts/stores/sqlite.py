"""
A policy store in an SQLite file (stdlib :mod:`sqlite3`).

One row per policy domain holds the entry's JSON document
(:meth:`CacheEntry.to_json <smtpsts.cache.CacheEntry.to_json>`) plus a few
columns copied out of it for queries. The file is opened in WAL mode with a
busy timeout, and every write runs in ``BEGIN IMMEDIATE``, so several
processes (for example several Postfix policy servers) can share one file.
The schema version is kept in ``PRAGMA user_version``; opening a file applies
the migrations it lacks and refuses a file from a newer smtpsts.

Readers are never slowed by writers (issue 10): lookups read through a
connection of their own, and in WAL mode a reader does not wait for another
process's write lock, so :meth:`SQLitePolicyStore.get` answers in
milliseconds even while a writer waits out the busy timeout.

Faults are :class:`smtpsts.StoreError` (with the original
:mod:`sqlite3` exception as ``__cause__``), never "nothing cached": a write
lock held past the busy timeout, a read-only file, a disk I/O error, a
corrupt file, and a row whose document this smtpsts cannot read (another
cache format during a rolling upgrade, damage). An unreadable row is never
overwritten by :meth:`~SQLitePolicyStore.put` or
:meth:`~SQLitePolicyStore.replace`; :meth:`~SQLitePolicyStore.delete`
removes it. Scans (:meth:`~SQLitePolicyStore.entries`,
:meth:`~SQLitePolicyStore.due_for_refresh`) skip unreadable rows with a
warning each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Final, TypeVar

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry, CacheEntryFormatError
from smtpsts.exceptions import StoreError
from smtpsts.stores import DEFAULT_REFRESH_INTERVAL, decide_replace, refresh_due
from smtpsts.stores._sqlite import (
    StoreVersionError,
    connect,
    faults,
    migrate,
    open_database,
    transaction,
)

__all__ = ["SCHEMA_VERSION", "SQLitePolicyStore", "StoreVersionError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # Version 1.
    (
        """
        CREATE TABLE sts_policy (
            domain TEXT PRIMARY KEY NOT NULL,
            doc TEXT NOT NULL,
            fetched_at REAL,
            expires_at REAL,
            updated_at REAL NOT NULL DEFAULT (((julianday('now') - 2440587.5) * 86400.0))
        ) WITHOUT ROWID
        """,
        "CREATE INDEX sts_policy_expires ON sts_policy (expires_at)",
    ),
)
"""Schema migrations: item ``n`` brings a file from version ``n`` to ``n + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this smtpsts writes."""


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class SQLitePolicyStore:
    """
    Policy entries in an SQLite file, safe for several threads and processes.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds a write waits for another process's write lock
            before it fails with :class:`~smtpsts.StoreError`.

    Raises:
        StoreVersionError: The file's schema is newer than this smtpsts.
        sqlite3.Error: The file cannot be opened or is not a database.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = open_database(self.path, busy_timeout)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise
        # Lookups read through a connection of their own, so they never queue
        # behind a write waiting for another process's lock (issue 10). An
        # in-memory database exists once per connection: it has just one.
        self._rlock = self._lock
        self._rconn = self._conn
        if self.path != ":memory:":
            self._rlock = threading.Lock()
            try:
                self._rconn = self._connect(busy_timeout)
                self._rconn.execute("PRAGMA query_only = ON")
            except BaseException:
                self._conn.close()
                raise

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        return connect(self.path, busy_timeout)

    def _migrate(self) -> None:
        with self._lock:
            migrate(self._conn, self.path, MIGRATIONS)

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """The file's schema version."""
        with self._lock, self._faults("read the schema version"):
            return self._version()

    def _faults(
        self, operation: str, domain: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        # sqlite3 failures of the file or its locks become StoreError; a
        # ProgrammingError (a closed store, say) is the caller's bug and stays.
        return faults(f"sqlite policy store {self.path}", operation, domain)

    def _write(self, operation: str, domain: str | None, body: Callable[[], T]) -> T:
        with self._lock, self._faults(operation, domain):
            return transaction(self._conn, body)

    def _read(self, conn: sqlite3.Connection, key: str) -> CacheEntry | None:
        row = conn.execute("SELECT doc FROM sts_policy WHERE domain = ?", (key,)).fetchone()
        return None if row is None else self._parse(key, row[0])

    def _parse(self, domain: str, doc: str) -> CacheEntry:
        try:
            return CacheEntry.from_json(doc)
        except CacheEntryFormatError as exc:
            raise StoreError(
                f"sqlite policy store {self.path}: the entry for {domain} cannot be read"
                f" (another cache format or damage; it is left untouched): {exc}",
                domain=domain,
            ) from exc

    def _upsert(self, entry: CacheEntry) -> None:
        self._conn.execute(
            "INSERT INTO sts_policy (domain, doc, fetched_at, expires_at, updated_at)"
            " VALUES (?, ?, ?, ?, ((julianday('now') - 2440587.5) * 86400.0))"
            " ON CONFLICT (domain) DO UPDATE SET doc = excluded.doc,"
            " fetched_at = excluded.fetched_at, expires_at = excluded.expires_at,"
            " updated_at = excluded.updated_at",
            (entry.domain, entry.to_json(), _epoch(entry.fetched_at), _epoch(entry.expires_at)),
        )

    def get(self, domain: str) -> CacheEntry | None:
        """
        Return the entry for ``domain``, or ``None``.

        Never waits for another process's write lock.

        Args:
            domain: The policy domain.

        Returns:
            The entry, or ``None`` when there is none.

        Raises:
            StoreError: The file cannot be read (I/O error, corruption), or
                the stored entry cannot be read.
        """
        key = to_alabel(domain)
        with self._rlock, self._faults("read", key):
            return self._read(self._rconn, key)

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry``, replacing the domain's entry.

        Args:
            entry: The entry.

        Raises:
            StoreError: The write failed (lock held past the busy timeout,
                read-only file, I/O error, corruption), or the stored entry
                cannot be read: it may be newer than this smtpsts knows (a
                rolling upgrade), so it is not overwritten.
        """

        def body() -> None:
            self._read(self._conn, entry.domain)  # raises for an unreadable entry
            self._upsert(entry)

        self._write("write", entry.domain, body)

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set (see :mod:`smtpsts.stores`), atomic across processes.

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through.

        Raises:
            StoreError: As for :meth:`put`; an unreadable stored entry is
                left untouched.
        """
        key = to_alabel(domain)

        def body() -> bool:
            if not decide_replace(self._read(self._conn, key), previous, entry):
                return False
            if entry is None:
                self._conn.execute("DELETE FROM sts_policy WHERE domain = ?", (key,))
            else:
                self._upsert(entry)
            return True

        return self._write("replace", key, body)

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry, if any, readable or not.

        Args:
            domain: The policy domain.

        Raises:
            StoreError: The write failed.
        """
        key = to_alabel(domain)
        self._write(
            "delete",
            key,
            lambda: self._conn.execute("DELETE FROM sts_policy WHERE domain = ?", (key,)),
        )

    def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again.

        Args:
            now: The current time.
            interval: The refresh interval.

        Returns:
            The due entries (see :func:`smtpsts.stores.refresh_due`);
            unreadable rows are skipped with a warning each.

        Raises:
            StoreError: The file cannot be read.
        """
        with self._rlock, self._faults("scan"):
            rows = self._rconn.execute(
                "SELECT domain, doc FROM sts_policy WHERE expires_at > ? ORDER BY expires_at",
                (now.timestamp(),),
            ).fetchall()
        return [e for e in self._readable(rows) if refresh_due(e, now, interval)]

    def entries(self) -> Iterator[CacheEntry]:
        """
        Iterate over every readable entry.

        Returns:
            An iterator over a snapshot of the entries; unreadable rows are
            skipped with a warning each.

        Raises:
            StoreError: The file cannot be read.
        """
        with self._rlock, self._faults("scan"):
            rows = self._rconn.execute("SELECT domain, doc FROM sts_policy").fetchall()
        return iter(self._readable(rows))

    def _readable(self, rows: list[tuple[str, str]]) -> list[CacheEntry]:
        found = []
        for domain, doc in rows:
            try:
                found.append(self._parse(domain, doc))
            except StoreError as exc:
                log.warning("%s; skipped", exc)
        return found

    def close(self) -> None:
        """Close the database connections."""
        with self._rlock:
            self._rconn.close()
        with self._lock:
            self._conn.close()
