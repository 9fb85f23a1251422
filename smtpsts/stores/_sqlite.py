"""
The SQLite setup every smtpsts store shares (issue 11).

Each store file is opened the same way: ``isolation_level=None`` (the stores
run their own transactions), usable from any thread (each store serialises
its connection with a lock), a busy timeout for other processes' write locks,
WAL mode with ``synchronous = NORMAL`` so readers never wait for writers and
several processes can share one file. Writes run in ``BEGIN IMMEDIATE``.

The schema version lives in ``PRAGMA user_version`` (the policy store) or in a
one-row table of the store's own (the TLS-RPT stores, which may share a file
with the policy store). :func:`migrate` applies the migrations a file lacks
and refuses a file written by a newer smtpsts; a file already at the current
version is opened without a write, so a read-only file can still be read.

:func:`faults` turns :mod:`sqlite3` failures of the file or its locks into
:class:`smtpsts.StoreError` (the original exception as ``__cause__``); a
``sqlite3.ProgrammingError`` (a closed store, say) is the caller's bug and
is left alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from smtpsts.exceptions import StoreError, StoreVersionError

__all__ = ["StoreVersionError", "connect", "faults", "migrate", "open_database", "transaction"]

T = TypeVar("T")


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """
    Open one connection to a store file.

    Args:
        path: The database file, or ``":memory:"``.
        busy_timeout: Seconds to wait for another process's write lock.

    Returns:
        The connection (autocommit, any thread, busy timeout set).
    """
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return conn


def open_database(path: str, busy_timeout: float) -> sqlite3.Connection:
    """
    Open a store file's writing connection: :func:`connect` plus WAL mode.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds to wait for another process's write lock.

    Returns:
        The connection.

    Raises:
        sqlite3.Error: The file cannot be opened or is not a database
            (the connection is closed).
    """
    conn = connect(path, busy_timeout)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """
    Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; roll back if it raises.

    Args:
        conn: The connection (autocommit mode).
        body: The work.

    Returns:
        What ``body`` returned.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result


def _version(conn: sqlite3.Connection, table: str | None) -> int:
    if table is None:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if found is None:
        return 0
    return int(conn.execute(f"SELECT max(version) FROM {table}").fetchone()[0] or 0)  # noqa: S608 - a fixed name


def migrate(
    conn: sqlite3.Connection,
    path: str,
    migrations: Sequence[Sequence[str]],
    *,
    version_table: str | None = None,
    label: str = "schema version",
) -> None:
    """
    Bring a store file to the current schema (``len(migrations)``).

    Args:
        conn: The writing connection.
        path: The file (for messages).
        migrations: Item ``n`` brings a file from version ``n`` to ``n + 1``.
        version_table: Keep the version in this one-column table (created
            on the first migration) instead of ``PRAGMA user_version``.
        label: What the version is called in the error message.

    Raises:
        StoreVersionError: The file's schema is newer than this smtpsts.
        sqlite3.Error: The file cannot be read or written.
    """
    current = len(migrations)
    if _version(conn, version_table) == current:
        return

    def apply() -> None:
        version = _version(conn, version_table)
        if version > current:
            raise StoreVersionError(
                f"{path}: {label} {version} is newer than this smtpsts"
                f" ({current}); upgrade smtpsts or use another file"
            )
        for steps in migrations[version:]:
            for statement in steps:
                conn.execute(statement)
        if version_table is None:
            conn.execute(f"PRAGMA user_version = {current}")
        else:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {version_table} (version INTEGER NOT NULL)")
            conn.execute(f"DELETE FROM {version_table}")  # noqa: S608 - a fixed name
            conn.execute(f"INSERT INTO {version_table} (version) VALUES (?)", (current,))  # noqa: S608

    transaction(conn, apply)


@contextlib.contextmanager
def faults(store: str, operation: str, domain: str | None = None) -> Iterator[None]:
    """
    Turn :mod:`sqlite3` failures of the file or its locks into :class:`smtpsts.StoreError`.

    A locked, read-only, damaged or unreadable file, or a disk I/O error, is a
    local fault (issue 10), never "nothing stored".

    Args:
        store: The store and its file, e.g. ``"sqlite policy store /var/db/x"``.
        operation: What was tried, e.g. ``"read"``.
        domain: The domain it was for, if any.

    Yields:
        Nothing; the body runs inside.

    Raises:
        smtpsts.StoreError: For a ``sqlite3.DatabaseError``.
    """
    try:
        yield
    except sqlite3.ProgrammingError:
        raise
    except sqlite3.DatabaseError as exc:
        where = f" for {domain}" if domain is not None else ""
        raise StoreError(f"{store}: cannot {operation}{where}: {exc}", domain=domain) from exc
