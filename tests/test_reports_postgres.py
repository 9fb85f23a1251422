"""
The PostgreSQL report store (issue 13 item 3) against a real PostgreSQL from Debian.

RFC 8460 §4.4 (the duplicate key); issue 10 (server failures are smtpsts.StoreError).
The server is started in a temporary directory by tests/pgserver.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REQUIRE_SERVICES

if not REQUIRE_SERVICES:  # in CI a missing psycopg fails the import below instead of skipping
    pytest.importorskip("psycopg")

import psycopg

from pgserver import PostgresServer, postgres_server
from smtpsts import StoreError
from smtpsts.exceptions import StoreVersionError
from smtpsts.stores import _reports_sql
from smtpsts.stores.reports_postgres import PostgresReportStore
from smtpsts.tlsrpt.inbox import AddResult, ReportStore
from test_reports_store import check_same_answers, report_docs
from test_tlsrpt_inbox import received, report_doc

__all__ = ["postgres_server"]


@pytest.fixture
def dsn(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """An empty database of its own for each test."""
    return postgres_server.fresh_database(f"t_{request.node.name[:40]}".lower().replace("-", "_"))


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresReportStore]:
    """A store on the test's database."""
    made = PostgresReportStore(dsn)
    yield made
    made.close()


def _empty(dsn: str) -> Callable[[], PostgresReportStore]:
    """Makes a store on ``dsn`` emptied of every row, ids restarting at 1."""

    def make() -> PostgresReportStore:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE rpt_failure, rpt_policy, rpt_report, rpt_quarantine RESTART IDENTITY"
            )
        return PostgresReportStore(dsn)

    return make


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(report_docs(), max_size=10))
def test_same_answers_as_memory(store: PostgresReportStore, dsn: str, docs: list[Any]) -> None:
    """Issue 13 item 3: every query of the PostgreSQL store equals MemoryReportStore's."""
    fresh = _empty(dsn)()
    try:
        check_same_answers(fresh, docs)
    finally:
        fresh.close()


def test_is_a_report_store(store: PostgresReportStore) -> None:
    """The PostgreSQL store implements the ReportStore protocol."""
    assert isinstance(store, ReportStore)


def test_concurrent_duplicate_stored_once(dsn: str) -> None:
    """RFC 8460 §4.4: the same report added from 6 connections at once is stored once."""
    stores = [PostgresReportStore(dsn) for _ in range(6)]
    barrier = threading.Barrier(len(stores), timeout=30)
    results: list[AddResult] = []
    doc = report_doc("twice", details=[{"result-type": "x", "failed-session-count": 1}] * 500)

    def add(store: PostgresReportStore) -> None:
        barrier.wait()
        results.append(store.add(received(doc)))

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted([AddResult.ADDED] + [AddResult.DUPLICATE] * 5) == sorted(results)
    assert 1 == len(stores[0].reports())
    with psycopg.connect(dsn) as conn:
        assert (500,) == conn.execute("SELECT count(*) FROM rpt_failure").fetchone()
    for s in stores:
        s.close()


def test_concurrent_first_open_migrates_once(dsn: str) -> None:
    """Issue 13 item 3: several processes opening a new database at once migrate it once."""
    errors: list[BaseException] = []
    opened: list[PostgresReportStore] = []
    barrier = threading.Barrier(4, timeout=30)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(PostgresReportStore(dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert ([], 4) == (errors, len(opened))
    with psycopg.connect(dsn) as conn:
        assert [(len(_reports_sql.MIGRATIONS),)] == conn.execute(
            "SELECT version FROM rpt_schema_version"
        ).fetchall()
    for s in opened:
        s.close()


def test_migration_n_opens_under_n_plus_1(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 3: a database at schema N opens (and is migrated) under N + 1."""
    with PostgresReportStore(dsn) as store:
        store.add(received(report_doc("old")))
    later = (*_reports_sql.MIGRATIONS, ("ALTER TABLE rpt_report ADD COLUMN note TEXT",))
    monkeypatch.setattr(_reports_sql, "MIGRATIONS", later)
    with PostgresReportStore(dsn) as store:
        assert ["old"] == [r.report_id for r in store.reports()]
    with psycopg.connect(dsn) as conn:
        assert [(len(later),)] == conn.execute("SELECT version FROM rpt_schema_version").fetchall()
        assert [(None,)] == conn.execute("SELECT note FROM rpt_report").fetchall()


def test_newer_schema_refused_untouched(dsn: str) -> None:
    """Issue 13 item 3: a database from a newer smtpsts is a StoreVersionError, left as it was."""
    PostgresReportStore(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE rpt_schema_version SET version = 99")
    with pytest.raises(StoreVersionError, match="schema version 99 is newer"):
        PostgresReportStore(dsn)
    with psycopg.connect(dsn) as conn:
        assert [(99,)] == conn.execute("SELECT version FROM rpt_schema_version").fetchall()


def test_unreachable_is_store_error() -> None:
    """Issue 10: a server that does not answer is StoreError within the connect timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="cannot migrate"):
        PostgresReportStore(f"host=127.0.0.1 port={port} dbname=x", connect_timeout=2)


def test_lost_connection_then_reconnects(store: PostgresReportStore, dsn: str) -> None:
    """Issue 10: a connection the server dropped is one StoreError; the next call reconnects."""
    store.add(received(report_doc("1")))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreError, match="cannot list reports"):
        store.reports()
    assert ["1"] == [r.report_id for r in store.reports()]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.domains()


def test_export_and_bytes(store: PostgresReportStore) -> None:
    """Exports read the same rows as SQLite; quarantined bytes (NUL included) come back as sent."""
    from datetime import UTC, datetime

    from smtpsts.tlsrpt.inbox import Source

    store.add(received(report_doc("1")))
    assert [store.raw(1)] == list(store.export_reports())
    assert [1] == [r[0] for r in store.export_results("example.com")]
    store.quarantine(
        b"\x00\xff\x1f\x8b",
        source=Source.HTTPS,
        received_at=datetime(2026, 12, 1, tzinfo=UTC),
        client="192.0.2.1",
        reason="bad-gzip",
        detail="x",
    )
    assert [b"\x00\xff\x1f\x8b"] == [q.body for q in store.quarantined()]
