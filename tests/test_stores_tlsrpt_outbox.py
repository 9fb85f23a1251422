"""
The TLS-RPT outbox's SQLite table, ``smtpsts.stores.tlsrpt_outbox`` (issue 11).

The store keeps rows; the decisions are ``smtpsts.tlsrpt.outbox``'s, so the
store's own query for due items is checked against the core's
:func:`~smtpsts.tlsrpt.outbox.due_items`. Files written before the outbox had
a schema version must open unchanged (RFC 8460 §5.5: no report is lost to an
upgrade).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsts.exceptions import StoreVersionError
from smtpsts.stores.sqlite import SQLitePolicyStore
from smtpsts.stores.tlsrpt_outbox import SCHEMA_VERSION, SQLiteOutbox
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
from smtpsts.tlsrpt import PolicyInfo, SessionResult
from smtpsts.tlsrpt.model import DateRange, Report
from smtpsts.tlsrpt.outbox import ItemState, due_items

DAY = date(2024, 3, 5)
T0 = datetime(2024, 3, 6, 1, 0, tzinfo=UTC)

# The table exactly as smtpsts 0.x created it inside io/tlsrpt_send.py, unversioned.
OLD_TABLE = (
    "CREATE TABLE IF NOT EXISTS tlsrpt_outbox ("
    " report_id TEXT PRIMARY KEY NOT NULL, domain TEXT NOT NULL, day TEXT NOT NULL,"
    " report TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL,"
    " next_attempt REAL, state TEXT NOT NULL, last_error TEXT,"
    " delivered_to TEXT NOT NULL DEFAULT '', finished_at REAL)"
)


def report(report_id: str) -> Report:
    """A report of ``DAY`` with no policies."""
    return Report(
        organization_name="Sender",
        date_range=DateRange.for_day(DAY),
        contact_info="tlsrpt@sender.example",
        report_id=report_id,
        policies=(),
    )


def test_unversioned_file_of_an_earlier_release_opens(tmp_path: Path) -> None:
    """A file with the old, unversioned outbox table keeps its items and is brought to version 1."""
    path = tmp_path / "tlsrpt.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE)
        conn.execute(
            "INSERT INTO tlsrpt_outbox (report_id, domain, day, report, created_at, attempts,"
            " next_attempt, state, last_error, delivered_to, finished_at)"
            " VALUES (?, ?, ?, ?, ?, 2, ?, 'pending', 'HTTP 503', '', NULL)",
            ("old-1", "recipient.example", DAY.isoformat(), report("old-1").to_json(),
             T0.timestamp(), (T0 + timedelta(minutes=15)).timestamp()),
        )  # fmt: skip
    conn.close()
    with SQLiteOutbox(path) as outbox:
        [item] = outbox.items()
        assert ("old-1", 2, "HTTP 503", T0 + timedelta(minutes=15)) == (
            item.report_id,
            item.attempts,
            item.last_error,
            item.next_attempt,
        )
        assert report("old-1") == item.report
        assert [] == outbox.due(T0)
        assert ["old-1"] == [i.report_id for i in outbox.due(T0 + timedelta(minutes=15))]
    conn = sqlite3.connect(path)
    try:
        assert [(SCHEMA_VERSION,)] == conn.execute(
            "SELECT version FROM tlsrpt_outbox_schema"
        ).fetchall()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(tlsrpt_outbox)")}
        assert "tlsrpt_outbox_due" in indexes
    finally:
        conn.close()
    with SQLiteOutbox(path) as outbox:  # a second open at the current version
        assert 1 == len(outbox.items(ItemState.PENDING))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer smtpsts is refused, not misread (StoreVersionError)."""
    path = tmp_path / "o.db"
    SQLiteOutbox(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE tlsrpt_outbox_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreVersionError, match="outbox schema version 2 is newer"):
        SQLiteOutbox(path)


def test_not_a_database(tmp_path: Path) -> None:
    """A file that is not a database raises the sqlite3 error, and the connection is closed."""
    (tmp_path / "junk").write_bytes(b"junk" * 1000)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteOutbox(tmp_path / "junk")


def test_shares_a_file_with_the_other_stores(tmp_path: Path) -> None:
    """One file holds the policy store, the collection store and the outbox; each keeps its version."""
    path = tmp_path / "smtpsts.db"
    policies = SQLitePolicyStore(path)
    counts = SQLiteTLSRPTStore(path)
    with SQLiteOutbox(path) as outbox:
        counts.add(SessionResult.succeeded(PolicyInfo.no_policy_found("a.example")), T0)
        counts.flush()
        assert outbox.enqueue(report("r1"), "a.example", DAY, T0)
        assert not outbox.enqueue(report("r1"), "a.example", DAY, T0)  # same id: a no-op
        assert ["a.example"] == counts.domains(T0.date())
        assert ["r1"] == [item.report_id for item in outbox.items()]
    counts.close()
    policies.close()
    with SQLiteOutbox(path) as again, SQLiteTLSRPTStore(path) as counts_again:
        assert ["r1"] == [item.report_id for item in again.items()]
        assert ["a.example"] == counts_again.domains(T0.date())


def test_record_finishes_and_counts(tmp_path: Path) -> None:
    """SEC-11: delivered items count per endpoint on their UTC day; purge removes finished ones only."""
    with SQLiteOutbox(tmp_path / "o.db") as outbox:
        for rid in ("a", "b", "c"):
            outbox.enqueue(report(rid), "Bücher.example", DAY, T0)
        outbox.record("a", state=ItemState.DELIVERED, attempts=0, next_attempt=None,
                      error=None, delivered_to=("mailto:x@y.example", "https://y.example/r"),
                      now=T0)  # fmt: skip
        outbox.record("b", state=ItemState.FAILED, attempts=9, next_attempt=None,
                      error="HTTP 503", now=T0)  # fmt: skip
        assert {"mailto:x@y.example": 1, "https://y.example/r": 1} == outbox.delivered_counts(
            T0 + timedelta(hours=3)
        )
        assert {} == outbox.delivered_counts(T0 + timedelta(days=1))
        [delivered] = outbox.items(ItemState.DELIVERED)
        assert ("xn--bcher-kva.example", None) == (delivered.domain, delivered.next_attempt)
        assert T0 == outbox.next_due()
        assert 0 == outbox.purge(T0 + timedelta(days=7))
        assert 2 == outbox.purge(T0 + timedelta(days=7, seconds=1))
        assert ["c"] == [item.report_id for item in outbox.items()]


_states = st.sampled_from(list(ItemState))
_offsets = st.none() | st.integers(min_value=-3600, max_value=3600)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(_states, _offsets), max_size=8),
    st.integers(min_value=-3600, max_value=3600),
)
def test_due_query_agrees_with_the_core(
    rows: list[tuple[ItemState, int | None]], now_offset: int
) -> None:
    """RPT-SEND-20: the store's due query picks the items due_items picks, in the same order."""
    now = T0 + timedelta(seconds=now_offset)
    with SQLiteOutbox(":memory:") as outbox:
        for n, (state, offset) in enumerate(rows):
            rid = f"r{n}"
            outbox.enqueue(report(rid), "a.example", DAY, T0)
            nxt = None if offset is None else T0 + timedelta(seconds=offset)
            outbox.record(rid, state=state, attempts=1, next_attempt=nxt, error=None, now=T0)
        stored = [item.report_id for item in outbox.due(now)]
        decided = [item.report_id for item in due_items(outbox.items(), now)]
    assert decided == stored
