"""
The SQLite report store (issue 13 item 3): the same answers as MemoryReportStore, durability.

RFC 8460 §4.4 (the duplicate key, organisation and report-id); issue 10 (a
store failure is a local fault: smtpsts.StoreError).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpsts import StoreError
from smtpsts.exceptions import StoreVersionError
from smtpsts.stores import _reports_sql
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt.inbox import (
    BY,
    QUARANTINE_BYTES,
    AddResult,
    MemoryReportStore,
    Received,
    ReportStore,
    Source,
)
from smtpsts.tlsrpt.model import Report
from test_tlsrpt_inbox import DAY, body, received, report_doc

# --------------------------------------------------------------------------- generated reports

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=8)
_DOMAINS = st.sampled_from(["example.com", "other.example", "xn--bcher-kva.example"])
_DETAIL = st.fixed_dictionaries(
    {
        "result-type": st.sampled_from(
            ["certificate-expired", "starttls-not-supported", "validation-failure", "x-new"]
        ),
        "failed-session-count": st.integers(0, 1_000),
    },
    optional={
        "receiving-mx-hostname": st.sampled_from(["mx1.example.com", "mx2.example.com"]),
        "failure-reason-code": _TEXT,
        "sending-mta-ip": st.just("192.0.2.7"),
    },
)


@st.composite
def report_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A report document shaped like test_tlsrpt_inbox.report_doc, with 0..3 policy entries."""
    doc = report_doc(
        draw(st.sampled_from(["r1", "r2", "r3", "r4", "r5", "r6"])),
        org=draw(st.sampled_from(["Google", "Microsoft", "Example Org", "Ünïcode"])),
        start=DAY + timedelta(hours=draw(st.integers(-72, 72))),
    )
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        entry = report_doc(
            domain=draw(_DOMAINS),
            ok=draw(st.integers(0, 10_000)),
            failed=draw(st.integers(0, 10_000)),
            details=draw(st.lists(_DETAIL, max_size=4)),
        )["policies"][0]
        if draw(st.booleans()):
            entry["policy"] = {"policy-type": "no-policy-found", "policy-domain": draw(_DOMAINS)}
        entries.append(entry)
    doc["policies"] = entries
    return doc


def check_same_answers(store: ReportStore, docs: list[dict[str, Any]]) -> None:
    """Feed the same reports to ``store`` and a MemoryReportStore; every query agrees."""
    memory = MemoryReportStore()
    for n, doc in enumerate(docs):
        item = Received(
            Report.from_json(body(doc)),
            list(Source)[n % len(Source)],
            DAY + timedelta(days=2, seconds=n),
            f"client {n}",
            None if n % 3 else f"d{n}.example",
        )
        assert memory.add(item) == store.add(item)
        if n % 4 == 0:
            for s in (memory, store):
                s.quarantine(
                    b"x" * (QUARANTINE_BYTES if n % 8 else QUARANTINE_BYTES + 1),
                    source=Source.IMAP,
                    received_at=DAY + timedelta(hours=(7 * n) % 30),  # not in id order
                    client="INBOX/1",
                    reason="not-a-report",
                    detail=f"case {n}",
                )
    assert memory.domains() == store.domains()
    windows = [(DAY - timedelta(days=4), DAY + timedelta(days=4)), (DAY, DAY + timedelta(hours=30))]
    for domain in [*memory.domains(), "nothing.example"]:
        for since, until in windows:
            assert memory.daily(domain, since, until) == store.daily(domain, since, until)
            for by in BY:
                assert memory.breakdown(domain, since, until, by) == store.breakdown(
                    domain, since, until, by
                )
        for limit, offset in [(100, 0), (2, 1), (1, 0), (3, 5)]:
            assert memory.reports(domain, limit=limit, offset=offset) == store.reports(
                domain, limit=limit, offset=offset
            )
    assert memory.reports(limit=3, offset=1) == store.reports(limit=3, offset=1)
    for report in [*memory.reports(limit=1000), None]:
        key = 999 if report is None else report.id
        assert memory.raw(key) == store.raw(key)
    assert memory.quarantined(limit=3) == store.quarantined(limit=3)
    before = DAY + timedelta(hours=12)
    assert memory.purge(before) == store.purge(before)
    assert [(r.organization, r.report_id) for r in memory.reports(limit=1000)] == [
        (r.organization, r.report_id) for r in store.reports(limit=1000)
    ]
    assert [q.detail for q in memory.quarantined()] == [q.detail for q in store.quarantined()]


@pytest.fixture
def new_store(tmp_path: Path) -> Iterator[Callable[[], SQLiteReportStore]]:
    """Makes SQLite stores in fresh files; closes them all."""
    made: list[SQLiteReportStore] = []

    def make() -> SQLiteReportStore:
        made.append(SQLiteReportStore(str(tmp_path / f"reports{len(made)}.db")))
        return made[-1]

    yield make
    for store in made:
        store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(report_docs(), max_size=12))
def test_same_answers_as_memory(
    new_store: Callable[[], SQLiteReportStore], docs: list[dict[str, Any]]
) -> None:
    """Issue 13 item 3: every query of the SQLite store equals MemoryReportStore's (the spec)."""
    check_same_answers(new_store(), docs)


def test_is_a_report_store(tmp_path: Path) -> None:
    """The SQLite store implements the ReportStore protocol; a with block closes it."""
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        assert isinstance(store, ReportStore)
        assert AddResult.ADDED == store.add(received(report_doc()))
    with pytest.raises(sqlite3.ProgrammingError):
        store.domains()  # closed: the caller's bug, not a store fault


def test_wal_and_synchronous(tmp_path: Path) -> None:
    """Issue 13 item 3: one file in WAL mode; synchronous FULL by default, NORMAL on request."""
    path = tmp_path / "r.db"
    for mode, level in (("FULL", 2), ("NORMAL", 1)):
        store = SQLiteReportStore(str(path), synchronous=mode)  # type: ignore[arg-type]
        conn = store._conn
        assert ("wal", level) == (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )
        store.close()
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        SQLiteReportStore(str(path), synchronous="OFF")  # type: ignore[arg-type]


def test_duplicate_key_unique(tmp_path: Path) -> None:
    """RFC 8460 §4.4: (organisation, report-id) is stored once, even from two store objects."""
    path = str(tmp_path / "r.db")
    one, two = SQLiteReportStore(path), SQLiteReportStore(path)
    doc = report_doc("same")
    assert AddResult.ADDED == one.add(received(doc))
    assert AddResult.DUPLICATE == two.add(received(doc))
    assert AddResult.ADDED == two.add(received(report_doc("same", org="Other")))
    assert 2 == len(one.reports())
    with pytest.raises(sqlite3.IntegrityError):
        one._conn.execute(
            "INSERT INTO rpt_report (organization, report_id, start_at, end_at, domains,"
            " successful, failed, source, received_at, client, raw)"
            " VALUES ('Other', 'same', 0, 0, '[]', 0, 0, 'file', 0, '', '{}')"
        )
    one.close()
    two.close()


_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_tlsrpt_inbox import received, report_doc
    from smtpsts.stores.reports_sqlite import SQLiteReportStore
    store = SQLiteReportStore(sys.argv[1])
    details = [{"result-type": "validation-failure", "failed-session-count": 1}] * 200
    n = 0
    while True:
        store.add(received(report_doc(f"r{n}", details=details)))
        print(n, flush=True)
        n += 1
    """
)


def test_survives_kill_9(tmp_path: Path) -> None:
    """Issue 13 item 3: SIGKILL mid-ingest; every committed report is there, none half-written."""
    path = tmp_path / "r.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 20 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert committed >= 20
    with SQLiteReportStore(str(path)) as store:
        stored = store.reports(limit=100_000)
        ids = {r.report_id for r in stored}
        assert {f"r{n}" for n in range(committed + 1)} <= ids  # printed only after COMMIT
        conn = store._conn
        assert "ok" == conn.execute("PRAGMA integrity_check").fetchone()[0]
        per_report = conn.execute("SELECT count(*) FROM rpt_failure GROUP BY report").fetchall()
        assert {(200,)} == set(per_report)  # no report with half its details
        assert len(stored) == len(per_report)


def test_migration_n_opens_under_n_plus_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 3: a file written at schema N opens (and is migrated) under N + 1."""
    path = str(tmp_path / "r.db")
    with SQLiteReportStore(path) as store:
        store.add(received(report_doc("old")))
    later = (*_reports_sql.MIGRATIONS, ("ALTER TABLE rpt_report ADD COLUMN note TEXT",))
    monkeypatch.setattr(_reports_sql, "MIGRATIONS", later)
    with SQLiteReportStore(path) as store:
        assert ["old"] == [r.report_id for r in store.reports()]
        conn = store._conn
        assert (len(later),) == conn.execute("SELECT version FROM rpt_schema_version").fetchone()
        assert conn.execute("SELECT note FROM rpt_report").fetchall() == [(None,)]


def test_newer_schema_refused_untouched(tmp_path: Path) -> None:
    """Issue 13 item 3: a file from a newer smtpsts is a StoreVersionError, and left as it was."""
    path = str(tmp_path / "r.db")
    SQLiteReportStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE rpt_schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreVersionError, match="schema version 99 is newer"):
        SQLiteReportStore(path)
    with sqlite3.connect(path) as conn:
        assert [(99,)] == conn.execute("SELECT version FROM rpt_schema_version").fetchall()
    conn.close()


def test_faults_are_store_errors(tmp_path: Path) -> None:
    """Issue 10: an unreadable file or a lock held past the bounded busy timeout is StoreError."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteReportStore(str(junk))
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteReportStore(str(tmp_path / "missing" / "dir" / "r.db"))
    path = str(tmp_path / "r.db")
    store = SQLiteReportStore(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot add a report"):
        store.add(received(report_doc()))
    assert time.monotonic() - started < 2
    other.execute("ROLLBACK")
    other.close()
    assert AddResult.ADDED == store.add(received(report_doc()))  # the next call tries again
    store.close()


def test_daily_uses_the_index(tmp_path: Path) -> None:
    """Issue 13 item 3: the dashboard's queries search an index by domain and day, no full scan."""
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        conn = store._conn
        queries = {
            "daily": "SELECT start_day, sum(successful), sum(failed) FROM rpt_policy"
            " WHERE domain = ? AND start_at >= ? AND start_at < ? GROUP BY start_day",
            "mx": "SELECT coalesce(receiving_mx_hostname, ''), 0, sum(failed) FROM rpt_failure"
            " WHERE domain = ? AND start_at >= ? AND start_at < ?"
            " GROUP BY coalesce(receiving_mx_hostname, '')",
        }
        for name, query in queries.items():
            plan = " ".join(
                row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", ("a", 0, 1))
            )
            assert "INDEX rpt_" in plan, (name, plan)  # daily: a covering index
            assert "SCAN rpt_" not in plan, (name, plan)


def test_domains_seek_the_index(tmp_path: Path) -> None:
    """Issue 13 item 8: domains() is one index seek per domain (loose index scan), not a scan."""
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        captured: list[str] = []
        store._conn.set_trace_callback(captured.append)
        assert [] == store.domains()
        query = next(q for q in captured if "rpt_policy" in q)
        plan = " ".join(row[3] for row in store._conn.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "SCAN rpt_policy" not in plan, plan
        assert "COVERING INDEX rpt_policy_daily" in plan, plan


def test_ten_thousand_details_one_transaction(tmp_path: Path) -> None:
    """Issue 13 item 3: 10,000 failure details are stored in one add (one transaction)."""
    details = [
        {"result-type": "validation-failure", "failed-session-count": 1, "receiving-ip": f"{n}"}
        for n in range(10_000)
    ]
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        assert AddResult.ADDED == store.add(received(report_doc(details=details, failed=10_000)))
        store._conn.set_trace_callback(None)
        assert 1 == statements.count("BEGIN IMMEDIATE")
        assert 1 == statements.count("COMMIT")
        rows = store.breakdown("example.com", DAY, DAY + timedelta(days=1), "result_type")
        assert [("validation-failure", 10_000)] == [(r.key, r.failed) for r in rows]


def test_export(tmp_path: Path) -> None:
    """Issue 13 item 3: export as JSON lines (the stored JSON) and one row per entry/detail."""
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        store.add(received(report_doc("1")))
        store.add(received(report_doc("2", domain="other.example", details=[])))
        lines = list(store.export_reports())
        assert [store.raw(1), store.raw(2)] == lines
        assert ["2"] == [json.loads(x)["report-id"] for x in store.export_reports("other.example")]
        rows = list(store.export_results())
        assert [len(_reports_sql.CSV_COLUMNS)] * 2 == [len(r) for r in rows]
        first = dict(zip(_reports_sql.CSV_COLUMNS, rows[0], strict=True))
        assert ("example.com", "certificate-expired", 2, "expired") == (
            first["policy_domain"],
            first["result_type"],
            first["detail_failed"],
            first["failure_reason_code"],
        )
        assert (None, 10) == (rows[1][11], rows[1][9])  # an entry without details: one row
        assert [2] == [r[0] for r in store.export_results("other.example")]


def test_export_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports read the store a page at a time (memory stays bounded) and miss nothing."""
    monkeypatch.setattr(_reports_sql, "_PAGE", 2)
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        for n in range(5):
            store.add(received(report_doc(f"{n}")))
        assert 5 == len(list(store.export_reports()))
        assert [1, 2, 3, 4, 5] == [r[0] for r in store.export_results()]


def test_received_at_keeps_its_instant(tmp_path: Path) -> None:
    """Times are stored as UTC instants: a received_at in another zone reads back equal."""
    from datetime import timezone

    zone = timezone(timedelta(hours=5))
    when = datetime(2026, 12, 1, 3, 4, 5, 678, tzinfo=zone)
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        store.add(Received(Report.from_json(body(report_doc())), Source.FILE, when, "f"))
        (stored,) = store.reports()
        assert (when, UTC) == (stored.received_at, stored.received_at.tzinfo)


# --------------------------------------------------------------------------- the CLI


def test_cli_export_and_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13 item 3: `tlsrpt export` (jsonl, csv) and `tlsrpt purge --older-than DAYS`."""
    import csv

    from smtpsts._cli import main

    path = str(tmp_path / "r.db")
    now = datetime.now(UTC)
    with SQLiteReportStore(path) as store:
        store.add(received(report_doc("old", start=now - timedelta(days=40))))
        store.add(received(report_doc("new", start=now - timedelta(days=2))))
    assert 0 == main(["tlsrpt", "export", "--store", path])
    lines = capsys.readouterr().out.splitlines()
    assert ["old", "new"] == [json.loads(x)["report-id"] for x in lines]
    out = tmp_path / "x.csv"
    assert 0 == main(["tlsrpt", "export", "--store", path, "--format", "csv", "-o", str(out)])
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [("old", "2"), ("new", "2")] == [(r["report_id"], r["detail_failed"]) for r in rows]
    assert list(_reports_sql.CSV_COLUMNS) == list(rows[0])
    assert 0 == main(["tlsrpt", "purge", "--store", path, "--older-than", "30"])
    assert capsys.readouterr().out.startswith("deleted 1 reports")
    with SQLiteReportStore(path) as store:
        assert ["new"] == [r.report_id for r in store.reports()]


def test_cli_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store that cannot be opened or an unwritable output is exit 1 with a message."""
    from smtpsts._cli import main

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    assert 1 == main(["tlsrpt", "export", "--store", str(junk)])
    assert 1 == main(["tlsrpt", "purge", "--store", str(junk), "--older-than", "1"])
    path = str(tmp_path / "r.db")
    SQLiteReportStore(path).close()
    bad = str(tmp_path / "no" / "such" / "x.csv")
    assert 1 == main(["tlsrpt", "export", "--store", path, "-o", bad])
    err = capsys.readouterr().err
    assert 3 == err.count("smtpsts tlsrpt")
    with pytest.raises(SystemExit):
        main(["tlsrpt", "purge", "--store", path, "--older-than", "-1"])


def test_open_report_store_postgres_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """A postgresql:// URI opens the PostgreSQL store (here: nothing listens, a StoreError)."""
    import socket

    from smtpsts._cli.tlsrpt_store import open_report_store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="postgresql report store"):
        open_report_store(f"postgresql://127.0.0.1:{port}/x?connect_timeout=2")


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Issue 13 item 3 (WAL): the dashboard reads while an intake holds the write lock."""
    path = str(tmp_path / "r.db")
    store = SQLiteReportStore(path, busy_timeout=0.05)
    store.add(received(report_doc("1")))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM rpt_quarantine")
    assert ["1"] == [r.report_id for r in store.reports()]
    assert [] == store.breakdown("example.com", DAY, DAY, "mx")
    with pytest.raises(ValueError, match="not one of"):
        store.breakdown("example.com", DAY, DAY, "colour")
    with pytest.raises(StoreError, match="cannot migrate"):
        SQLiteReportStore(path, busy_timeout=0.05)  # opening migrates: a write, it waits
    writer.execute("ROLLBACK")
    writer.close()
    store.close()


def test_export_empty_store(tmp_path: Path) -> None:
    """An empty store exports nothing (and no error)."""
    with SQLiteReportStore(str(tmp_path / "r.db")) as store:
        assert ([], []) == (list(store.export_reports()), list(store.export_results()))


def test_cli_export_store_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store that opens but cannot be read is exit 1 (StoreError), not a traceback."""
    from smtpsts._cli import main

    path = str(tmp_path / "r.db")
    SQLiteReportStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TABLE rpt_failure; DROP TABLE rpt_policy; DROP TABLE rpt_report")
    conn.close()
    assert 1 == main(["tlsrpt", "export", "--store", path])
    assert "no such table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tlsrpt", "purge", "--store", path, "--older-than", "many"])
