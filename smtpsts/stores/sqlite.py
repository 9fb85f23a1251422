"""
A policy store in an SQLite file (stdlib :mod:`sqlite3`).

One row per policy domain holds the entry's JSON document
(:meth:`CacheEntry.to_json <smtpsts.cache.CacheEntry.to_json>`) plus a few
columns copied out of it for queries. The file is opened in WAL mode with a
busy timeout, and every write runs in ``BEGIN IMMEDIATE``, so several
processes (for example several Postfix policy servers) can share one file.
The schema version is kept in ``PRAGMA user_version``; opening a file applies
the migrations it lacks and refuses a file from a newer smtpsts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Final, TypeVar

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry, CacheEntryFormatError
from smtpsts.stores import DEFAULT_REFRESH_INTERVAL, decide_replace, refresh_due

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


class StoreVersionError(RuntimeError):
    """The store file was written by a newer smtpsts (its schema is unknown here)."""


def _check_version(path: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{path}: schema version {version} is newer than this smtpsts"
            f" ({SCHEMA_VERSION}); upgrade smtpsts or use another file"
        )


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class SQLitePolicyStore:
    """
    Policy entries in an SQLite file, safe for several threads and processes.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds to wait for another process's write lock.

    Raises:
        StoreVersionError: The file's schema is newer than this smtpsts.
        sqlite3.Error: The file cannot be opened or is not a database.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                (version,) = self._conn.execute("PRAGMA user_version").fetchone()
                _check_version(self.path, version)
                for steps in MIGRATIONS[version:]:
                    for statement in steps:
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The file's schema version."""
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _write(self, body: Callable[[], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = body()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _read(self, key: str) -> CacheEntry | None:
        row = self._conn.execute("SELECT doc FROM sts_policy WHERE domain = ?", (key,)).fetchone()
        return None if row is None else _parse(key, row[0])

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

        Args:
            domain: The policy domain.

        Returns:
            The entry; ``None`` also for a document that cannot be read (logged).
        """
        key = to_alabel(domain)
        with self._lock:
            return self._read(key)

    def put(self, entry: CacheEntry) -> None:
        """
        Store ``entry``, replacing the domain's entry.

        Args:
            entry: The entry.
        """
        self._write(lambda: self._upsert(entry))

    def replace(self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None) -> bool:
        """
        Compare-and-set (see :mod:`smtpsts.stores`), atomic across processes.

        Args:
            domain: The policy domain.
            previous: The entry the writer read.
            entry: The entry to store, ``None`` to delete.

        Returns:
            Whether the write went through.
        """
        key = to_alabel(domain)

        def body() -> bool:
            if not decide_replace(self._read(key), previous, entry):
                return False
            if entry is None:
                self._conn.execute("DELETE FROM sts_policy WHERE domain = ?", (key,))
            else:
                self._upsert(entry)
            return True

        return self._write(body)

    def delete(self, domain: str) -> None:
        """
        Remove the domain's entry, if any.

        Args:
            domain: The policy domain.
        """
        key = to_alabel(domain)
        self._write(lambda: self._conn.execute("DELETE FROM sts_policy WHERE domain = ?", (key,)))

    def due_for_refresh(
        self, now: datetime, interval: timedelta = DEFAULT_REFRESH_INTERVAL
    ) -> list[CacheEntry]:
        """
        Return the entries whose policy should be fetched again.

        Args:
            now: The current time.
            interval: The refresh interval.

        Returns:
            The due entries (see :func:`smtpsts.stores.refresh_due`).
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT domain, doc FROM sts_policy WHERE expires_at > ? ORDER BY expires_at",
                (now.timestamp(),),
            ).fetchall()
        entries = (_parse(domain, doc) for domain, doc in rows)
        return [e for e in entries if e is not None and refresh_due(e, now, interval)]

    def entries(self) -> Iterator[CacheEntry]:
        """
        Iterate over every readable entry.

        Returns:
            An iterator over a snapshot of the entries.
        """
        with self._lock:
            rows = self._conn.execute("SELECT domain, doc FROM sts_policy").fetchall()
        return (e for e in (_parse(d, doc) for d, doc in rows) if e is not None)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()


def _parse(domain: str, doc: str) -> CacheEntry | None:
    try:
        return CacheEntry.from_json(doc)
    except CacheEntryFormatError as exc:
        log.warning("policy store: ignoring unreadable entry for %s: %s", domain, exc)
        return None
