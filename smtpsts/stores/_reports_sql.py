"""
The SQL the report stores share (issue 13 item 3): schema, migrations, queries.

Both dialects (SQLite, PostgreSQL) run the same statements; the differences
are spelled by :class:`Dialect` (the key column, the blob type, the
parameter mark, how a migration is serialised). Times are stored as
integer microseconds since the epoch (UTC), days as ``YYYY-MM-DD`` text,
so ordering and comparison mean the same in both.

Tables (all prefixed ``rpt_`` so the file can be shared with other stores):

- ``rpt_report``: one row per report, unique on (organisation, report-id)
  (the duplicate key of :func:`smtpsts.tlsrpt.inbox.report_key`), with the
  stored JSON (:meth:`Report.to_json`);
- ``rpt_policy``: one row per policy entry, indexed by (domain, start);
- ``rpt_failure``: one row per failure detail, indexed by (domain, start);
- ``rpt_quarantine``: refused bodies;
- ``rpt_schema_version``: the schema version (item ``n`` of
  :data:`MIGRATIONS` brings a store from version ``n`` to ``n + 1``).

:class:`SQLReportStore` implements every :class:`~smtpsts.tlsrpt.inbox.ReportStore`
method on a DB-API connection; each method is one transaction.

The module is over 600 lines because :class:`SQLReportStore` is every
:class:`~smtpsts.tlsrpt.inbox.ReportStore` method for both dialects in one
class (each method one transaction), kept next to the schema and
migrations whose tables its queries name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol, Self, TypeVar

import attrs

from smtpsts.exceptions import StoreVersionError
from smtpsts.tlsrpt.inbox import (
    BY,
    QUARANTINE_BYTES,
    AddResult,
    Breakdown,
    DayCount,
    Quarantined,
    Received,
    Source,
    StoredReport,
    report_key,
)
from smtpsts.tlsrpt.model import ReportPolicy

__all__ = [
    "CSV_COLUMNS",
    "MIGRATIONS",
    "Dialect",
    "SQLReportStore",
]

T = TypeVar("T")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PAGE: Final = 500

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE rpt_report (
            id {serial},
            organization TEXT NOT NULL,
            report_id TEXT NOT NULL,
            start_at BIGINT NOT NULL,
            end_at BIGINT NOT NULL,
            domains TEXT NOT NULL,
            successful BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            source TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            client TEXT NOT NULL,
            dkim TEXT,
            contact_info TEXT,
            raw TEXT NOT NULL,
            UNIQUE (organization, report_id)
        )
        """,
        "CREATE INDEX rpt_report_start ON rpt_report (start_at, id)",
        "CREATE INDEX rpt_report_end ON rpt_report (end_at)",
        """
        CREATE TABLE rpt_policy (
            report BIGINT NOT NULL REFERENCES rpt_report (id),
            entry INTEGER NOT NULL,
            domain TEXT,
            start_at BIGINT NOT NULL,
            start_day TEXT NOT NULL,
            policy_type TEXT NOT NULL,
            policy_label TEXT NOT NULL,
            policy_strings TEXT NOT NULL,
            mx_host TEXT NOT NULL,
            successful BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            PRIMARY KEY (report, entry)
        )
        """,
        "CREATE INDEX rpt_policy_domain ON rpt_policy (domain, start_at)",
        """
        CREATE TABLE rpt_failure (
            report BIGINT NOT NULL,
            entry INTEGER NOT NULL,
            detail INTEGER NOT NULL,
            domain TEXT,
            start_at BIGINT NOT NULL,
            result_type TEXT NOT NULL,
            failed BIGINT NOT NULL,
            sending_mta_ip TEXT,
            receiving_mx_hostname TEXT,
            receiving_mx_helo TEXT,
            receiving_ip TEXT,
            additional_information TEXT,
            failure_reason_code TEXT,
            PRIMARY KEY (report, entry, detail),
            FOREIGN KEY (report, entry) REFERENCES rpt_policy (report, entry)
        )
        """,
        "CREATE INDEX rpt_failure_domain ON rpt_failure (domain, start_at)",
        """
        CREATE TABLE rpt_quarantine (
            id {serial},
            received_at BIGINT NOT NULL,
            source TEXT NOT NULL,
            client TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            body {blob} NOT NULL,
            truncated INTEGER NOT NULL
        )
        """,
        "CREATE INDEX rpt_quarantine_received ON rpt_quarantine (received_at)",
    ),
    (
        # The dashboard's daily counts read only the index (issue 13 item 8:
        # the overview over 1,000,000 policy results); its prefix serves
        # every query the index it replaces served.
        (
            "CREATE INDEX rpt_policy_daily ON rpt_policy"
            " (domain, start_at, start_day, successful, failed)"
        ),
        "DROP INDEX rpt_policy_domain",
    ),
)
"""Item ``n`` brings a store from schema version ``n`` to ``n + 1``."""

CSV_COLUMNS: Final = (
    "report",
    "organization",
    "report_id",
    "start",
    "end",
    "policy_domain",
    "policy_type",
    "policy_string",
    "mx_host",
    "successful",
    "failed",
    "result_type",
    "detail_failed",
    "sending_mta_ip",
    "receiving_mx_hostname",
    "receiving_mx_helo",
    "receiving_ip",
    "failure_reason_code",
    "additional_information",
)
"""The columns of :meth:`SQLReportStore.export_results` rows."""


@attrs.frozen
class Dialect:
    """
    How one database spells what the shared SQL leaves open.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        serial: The type of an auto-numbered primary key.
        blob: The type of a byte string.
        mark: The parameter placeholder.
        lock: A statement serialising migrations (run first in their
            transaction), or ``""``.
    """

    name: str
    serial: str
    blob: str
    mark: str
    lock: str = ""

    def sql(self, statement: str) -> str:
        """
        Spell a shared statement for this dialect.

        Args:
            statement: SQL with ``?`` marks and ``{serial}``/``{blob}``.

        Returns:
            The statement to run.
        """
        return statement.replace("?", self.mark).format(serial=self.serial, blob=self.blob)


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement."""

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any:
        """Run one statement for many parameter rows."""

    def fetchone(self) -> Any:
        """One row, or ``None``."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""


def to_micros(value: datetime) -> int:
    """
    An aware datetime as integer microseconds since the epoch.

    Args:
        value: The time (aware).

    Returns:
        Microseconds since 1970-01-01T00:00:00Z.
    """
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """
    The inverse of :func:`to_micros`.

    Args:
        value: Microseconds since the epoch.

    Returns:
        An aware UTC datetime.
    """
    return _EPOCH + timedelta(microseconds=int(value))


def policy_label(policy: ReportPolicy) -> str:
    """
    The ``policy`` breakdown key of an entry (as :func:`smtpsts.tlsrpt.inbox.breakdown`).

    Args:
        policy: The entry's policy.

    Returns:
        ``type: string | string``, or the type alone when there are no strings.
    """
    strings = policy.policy_strings
    return f"{policy.policy_type}: {' | '.join(strings)}" if strings else str(policy.policy_type)


def _schema_version(cur: Cursor, dialect: Dialect) -> int | None:
    if dialect.name == "sqlite":
        cur.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rpt_schema_version'"
        )
    else:
        cur.execute("SELECT 1 FROM pg_tables WHERE tablename = 'rpt_schema_version'")
    if cur.fetchone() is None:
        return None
    cur.execute("SELECT max(version) FROM rpt_schema_version")
    row = cur.fetchone()
    return int(row[0] or 0)


def migrate(cur: Cursor, dialect: Dialect, where: str, migrations: Sequence[Sequence[str]]) -> int:
    """
    Bring a store to the current schema; the caller runs it in one transaction.

    Args:
        cur: A cursor inside the transaction.
        dialect: The database's dialect.
        where: The store, for messages.
        migrations: :data:`MIGRATIONS` (a parameter for tests).

    Returns:
        The version found before migrating (``0`` for a new store).

    Raises:
        StoreVersionError: The store's version is newer than ``len(migrations)``
            (it is left as it is).
    """
    if dialect.lock:
        cur.execute(dialect.lock)
    found = _schema_version(cur, dialect)
    version = found or 0
    current = len(migrations)
    if version > current:
        raise StoreVersionError(
            f"{where}: report store schema version {version} is newer than this"
            f" smtpsts ({current}); upgrade smtpsts or use another store"
        )
    if version == current:
        return version
    for steps in migrations[version:]:
        for statement in steps:
            cur.execute(dialect.sql(statement))
    if found is None:
        cur.execute("CREATE TABLE rpt_schema_version (version INTEGER NOT NULL)")
    cur.execute("DELETE FROM rpt_schema_version")
    cur.execute(dialect.sql("INSERT INTO rpt_schema_version (version) VALUES (?)"), (current,))
    return version


_REPORT_COLUMNS: Final = (
    "id, organization, report_id, start_at, end_at, domains, successful, failed,"
    " source, received_at, dkim"
)


def _stored(row: Sequence[Any]) -> StoredReport:
    return StoredReport(
        id=int(row[0]),
        organization=row[1],
        report_id=row[2],
        start=from_micros(row[3]),
        end=from_micros(row[4]),
        domains=tuple(json.loads(row[5])),
        successful=int(row[6]),
        failed=int(row[7]),
        source=Source(row[8]),
        received_at=from_micros(row[9]),
        dkim=row[10],
    )


class SQLReportStore:
    """
    The :class:`~smtpsts.tlsrpt.inbox.ReportStore` methods in shared SQL.

    A subclass supplies the connection (:meth:`_run` runs one transaction
    and turns the driver's errors into :class:`smtpsts.StoreError`).
    """

    dialect: Dialect

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _run(  # pragma: no cover - every store class defines it
        self, operation: str, body: Callable[[Cursor], T], *, write: bool = True
    ) -> T:
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every store class defines it
        """Release the connection (a second call does nothing)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """
        Use the store in a ``with`` block.

        Returns:
            The store.
        """
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()

    # ----------------------------------------------------------------- writes

    def add(self, received: Received) -> AddResult:
        """
        Store a report once, in one transaction (policy entries and failure details with it).

        A second copy (same organisation and ``report-id``), even from another
        connection at the same moment, is :attr:`AddResult.DUPLICATE` and
        changes nothing (the unique key decides, RFC 8460 §4.4).

        Args:
            received: The report and how it came.

        Returns:
            :attr:`AddResult.ADDED` or :attr:`AddResult.DUPLICATE`.

        Raises:
            smtpsts.StoreError: The store cannot be written.
        """
        report = received.report
        organization, report_id = report_key(report)
        start = to_micros(report.date_range.start)
        day = report.date_range.start.date().isoformat()
        head = (
            organization,
            report_id,
            start,
            to_micros(report.date_range.end),
            json.dumps(list(report.policy_domains)),
            sum(p.summary.total_successful_session_count for p in report.policies),
            sum(p.summary.total_failure_session_count for p in report.policies),
            str(received.source),
            to_micros(received.received_at),
            received.client,
            received.dkim,
            report.contact_info,
            report.to_json(),
        )
        sql = self.dialect.sql

        def body(cur: Cursor) -> AddResult:
            # Looked up first, so a duplicate uses no id; the unique key still
            # decides between two connections adding the same report at once.
            cur.execute(
                sql("SELECT 1 FROM rpt_report WHERE organization = ? AND report_id = ?"),
                (organization, report_id),
            )
            if cur.fetchone() is not None:
                return AddResult.DUPLICATE
            cur.execute(
                sql(
                    "INSERT INTO rpt_report (organization, report_id, start_at, end_at, domains,"
                    " successful, failed, source, received_at, client, dkim, contact_info, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (organization, report_id) DO NOTHING RETURNING id"
                ),
                head,
            )
            row = cur.fetchone()
            if row is None:
                return AddResult.DUPLICATE
            new_id = int(row[0])
            policies: list[tuple[Any, ...]] = []
            failures: list[tuple[Any, ...]] = []
            for n, entry in enumerate(report.policies):
                policy, summary = entry.policy, entry.summary
                domain = policy.policy_domain
                policies.append(
                    (
                        new_id,
                        n,
                        domain,
                        start,
                        day,
                        str(policy.policy_type),
                        policy_label(policy),
                        json.dumps(list(policy.policy_strings)),
                        json.dumps(list(policy.mx_host)),
                        summary.total_successful_session_count,
                        summary.total_failure_session_count,
                    )
                )
                failures.extend(
                    (
                        new_id,
                        n,
                        k,
                        domain,
                        start,
                        str(d.result_type),
                        d.failed_session_count,
                        d.sending_mta_ip,
                        d.receiving_mx_hostname,
                        d.receiving_mx_helo,
                        d.receiving_ip,
                        d.additional_information,
                        d.failure_reason_code,
                    )
                    for k, d in enumerate(entry.failure_details)
                )
            if policies:
                cur.executemany(
                    sql(
                        "INSERT INTO rpt_policy (report, entry, domain, start_at, start_day,"
                        " policy_type, policy_label, policy_strings, mx_host, successful, failed)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    policies,
                )
            if failures:
                cur.executemany(
                    sql(
                        "INSERT INTO rpt_failure (report, entry, detail, domain, start_at,"
                        " result_type, failed, sending_mta_ip, receiving_mx_hostname,"
                        " receiving_mx_helo, receiving_ip, additional_information,"
                        " failure_reason_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    failures,
                )
            return AddResult.ADDED

        return self._run("add a report", body)

    def quarantine(
        self,
        body: bytes,
        *,
        source: Source,
        received_at: datetime,
        client: str,
        reason: str,
        detail: str,
    ) -> None:
        """
        Keep a refused body aside (at most :data:`~smtpsts.tlsrpt.inbox.QUARANTINE_BYTES`).

        Args:
            body: What was received.
            source: How it came.
            received_at: When.
            client: Who sent it.
            reason: The reason code.
            detail: What was wrong.

        Raises:
            smtpsts.StoreError: The store cannot be written.
        """
        row = (
            to_micros(received_at),
            str(source),
            client,
            reason,
            detail,
            bytes(body[:QUARANTINE_BYTES]),
            int(len(body) > QUARANTINE_BYTES),
        )

        def run(cur: Cursor) -> None:
            cur.execute(
                self.dialect.sql(
                    "INSERT INTO rpt_quarantine (received_at, source, client, reason, detail,"
                    " body, truncated) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                row,
            )

        self._run("quarantine a body", run)

    def purge(self, before: datetime) -> int:
        """
        Delete reports whose range ends before ``before``, and quarantine received before it.

        Args:
            before: The retention limit.

        Returns:
            How many reports were deleted.

        Raises:
            smtpsts.StoreError: The store cannot be written.
        """
        limit = to_micros(before)
        sql = self.dialect.sql
        old = "SELECT id FROM rpt_report WHERE end_at < ?"

        def body(cur: Cursor) -> int:
            cur.execute(sql(f"DELETE FROM rpt_failure WHERE report IN ({old})"), (limit,))  # noqa: S608 - fixed text
            cur.execute(sql(f"DELETE FROM rpt_policy WHERE report IN ({old})"), (limit,))  # noqa: S608
            cur.execute(sql("DELETE FROM rpt_report WHERE end_at < ?"), (limit,))
            count = int(cur.rowcount)
            cur.execute(sql("DELETE FROM rpt_quarantine WHERE received_at < ?"), (limit,))
            return count

        return self._run("purge", body)

    # ----------------------------------------------------------------- reads

    def domains(self) -> list[str]:
        """
        The policy domains of the stored reports.

        Returns:
            Sorted, each once.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """

        def body(cur: Cursor) -> list[str]:
            # A loose index scan: one index seek per domain, where DISTINCT
            # reads every policy row's index entry (issue 13 item 8).
            cur.execute(
                "WITH RECURSIVE d (domain) AS ("
                " SELECT min(domain) FROM rpt_policy"
                " UNION ALL"
                " SELECT (SELECT min(domain) FROM rpt_policy WHERE domain > d.domain) FROM d"
                " WHERE d.domain IS NOT NULL"
                ") SELECT domain FROM d WHERE domain IS NOT NULL"
            )
            return sorted(row[0] for row in cur.fetchall())

        return self._run("list domains", body, write=False)

    def daily(self, domain: str, since: datetime, until: datetime) -> list[DayCount]:
        """
        Sessions per day of the range's start (as :func:`~smtpsts.tlsrpt.inbox.daily_counts`).

        Args:
            domain: The policy domain.
            since: First instant counted.
            until: First instant not counted.

        Returns:
            One entry per day with reports, oldest first.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """
        params = (domain, to_micros(since), to_micros(until))

        def body(cur: Cursor) -> list[DayCount]:
            cur.execute(
                self.dialect.sql(
                    "SELECT start_day, sum(successful), sum(failed) FROM rpt_policy"
                    " WHERE domain = ? AND start_at >= ? AND start_at < ? GROUP BY start_day"
                ),
                params,
            )
            rows = [DayCount(date.fromisoformat(d), int(o), int(f)) for d, o, f in cur.fetchall()]
            return sorted(rows, key=lambda r: r.day)

        return self._run("count sessions", body, write=False)

    def breakdown(self, domain: str, since: datetime, until: datetime, by: str) -> list[Breakdown]:
        """
        Sessions grouped (the same as :func:`~smtpsts.tlsrpt.inbox.breakdown`).

        Args:
            domain: The policy domain.
            since: First instant counted.
            until: First instant not counted.
            by: One of :data:`~smtpsts.tlsrpt.inbox.BY`.

        Returns:
            The groups, most failed first, then by key.

        Raises:
            ValueError: ``by`` is not one of ``BY``.
            smtpsts.StoreError: The store cannot be read.
        """
        if by not in BY:
            raise ValueError(f"breakdown by {by!r}: not one of {', '.join(BY)}")
        window = "domain = ? AND start_at >= ? AND start_at < ?"
        if by == "organization":
            query = (
                "SELECT r.organization, sum(p.successful), sum(p.failed) FROM rpt_policy p"
                " JOIN rpt_report r ON r.id = p.report"
                " WHERE p.domain = ? AND p.start_at >= ? AND p.start_at < ?"
                " GROUP BY r.organization"
            )
        elif by == "policy":
            query = (
                "SELECT policy_label, sum(successful), sum(failed) FROM rpt_policy"  # noqa: S608 - fixed text
                f" WHERE {window} GROUP BY policy_label"
            )
        else:
            column = {
                "mx": "coalesce(receiving_mx_hostname, '')",
                "result_type": "result_type",
                "reason": "coalesce(failure_reason_code, '')",
            }[by]
            query = (
                f"SELECT {column}, 0, sum(failed) FROM rpt_failure"  # noqa: S608 - fixed text
                f" WHERE {window} GROUP BY {column}"
            )
        params = (domain, to_micros(since), to_micros(until))

        def body(cur: Cursor) -> list[Breakdown]:
            cur.execute(self.dialect.sql(query), params)
            rows = [Breakdown(k, int(o), int(f)) for k, o, f in cur.fetchall()]
            return sorted(rows, key=lambda r: (-r.failed, r.key))

        return self._run("group sessions", body, write=False)

    def reports(
        self, domain: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[StoredReport]:
        """
        Stored reports (of ``domain``), newest range first, then newest id first.

        Args:
            domain: Only those with a policy entry for this domain.
            limit: At most this many.
            offset: After skipping this many.

        Returns:
            The summaries.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """
        where = ""
        params: tuple[Any, ...] = (limit, offset)
        if domain is not None:
            where = (
                " WHERE EXISTS (SELECT 1 FROM rpt_policy p WHERE p.report = rpt_report.id"
                " AND p.domain = ?)"
            )
            params = (domain, *params)
        query = (
            f"SELECT {_REPORT_COLUMNS} FROM rpt_report{where}"  # noqa: S608 - fixed text
            " ORDER BY start_at DESC, id DESC LIMIT ? OFFSET ?"
        )

        def body(cur: Cursor) -> list[StoredReport]:
            cur.execute(self.dialect.sql(query), params)
            return [_stored(row) for row in cur.fetchall()]

        return self._run("list reports", body, write=False)

    def raw(self, report: int) -> str | None:
        """
        The stored JSON of a report (:meth:`Report.to_json <smtpsts.tlsrpt.model.Report.to_json>`).

        Args:
            report: Its id.

        Returns:
            The JSON, or ``None`` when there is no such report.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """

        def body(cur: Cursor) -> str | None:
            cur.execute(self.dialect.sql("SELECT raw FROM rpt_report WHERE id = ?"), (report,))
            row = cur.fetchone()
            return None if row is None else str(row[0])

        return self._run("read a report", body, write=False)

    def quarantined(self, *, limit: int = 100) -> list[Quarantined]:
        """
        Quarantined bodies, newest first.

        Args:
            limit: At most this many.

        Returns:
            The entries.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """

        def body(cur: Cursor) -> list[Quarantined]:
            cur.execute(
                self.dialect.sql(
                    "SELECT id, received_at, source, client, reason, detail, body, truncated"
                    " FROM rpt_quarantine ORDER BY id DESC LIMIT ?"
                ),
                (limit,),
            )
            return [
                Quarantined(int(i), from_micros(at), Source(src), cl, rs, dt, bytes(b), bool(tr))
                for i, at, src, cl, rs, dt, b, tr in cur.fetchall()
            ]

        return self._run("list quarantine", body, write=False)

    # ----------------------------------------------------------------- export (added)

    def export_reports(self, domain: str | None = None) -> Iterator[str]:
        """
        The stored JSON of every report (of ``domain``), oldest id first, one page at a time.

        Args:
            domain: Only those with a policy entry for this domain.

        Yields:
            Each report's JSON text (one line: :meth:`Report.to_json` is compact).

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """
        where = ""
        if domain is not None:
            where = (
                " AND EXISTS (SELECT 1 FROM rpt_policy p WHERE p.report = rpt_report.id"
                " AND p.domain = ?)"
            )
        query = self.dialect.sql(
            f"SELECT id, raw FROM rpt_report WHERE id > ?{where}"  # noqa: S608 - fixed text
            f" ORDER BY id LIMIT {_PAGE}"
        )
        last = 0
        while True:
            params: tuple[Any, ...] = (last,) if domain is None else (last, domain)

            def body(cur: Cursor, params: tuple[Any, ...] = params) -> list[Any]:
                cur.execute(query, params)
                return cur.fetchall()

            rows = self._run("export reports", body, write=False)
            for id_, raw in rows:
                yield str(raw)
                last = int(id_)
            if len(rows) < _PAGE:
                return

    def export_results(self, domain: str | None = None) -> Iterator[tuple[Any, ...]]:
        """
        One row per policy entry and failure detail, in :data:`CSV_COLUMNS` order.

        A policy entry without failure details is one row whose detail
        columns are ``None``; an entry with details is one row per detail,
        the entry's columns repeated (so ``successful``/``failed`` are the
        entry's, and ``detail_failed`` the detail's count).

        Args:
            domain: Only entries for this policy domain.

        Yields:
            The rows, by report id, entry and detail.

        Raises:
            smtpsts.StoreError: The store cannot be read.
        """
        where = "" if domain is None else " AND p.domain = ?"
        query = self.dialect.sql(
            "SELECT r.id, r.organization, r.report_id, r.start_at, r.end_at, p.domain,"  # noqa: S608 - fixed text
            " p.policy_type, p.policy_strings, p.mx_host, p.successful, p.failed,"
            " f.result_type, f.failed, f.sending_mta_ip, f.receiving_mx_hostname,"
            " f.receiving_mx_helo, f.receiving_ip, f.failure_reason_code,"
            " f.additional_information"
            " FROM rpt_report r JOIN rpt_policy p ON p.report = r.id"
            " LEFT JOIN rpt_failure f ON f.report = p.report AND f.entry = p.entry"
            f" WHERE r.id > ? AND r.id <= ?{where}"
            " ORDER BY r.id, p.entry, f.detail"
        )
        last = 0
        while True:

            def ids(cur: Cursor, last: int = last) -> list[Any]:
                cur.execute(
                    self.dialect.sql(
                        f"SELECT id FROM rpt_report WHERE id > ? ORDER BY id LIMIT {_PAGE}"  # noqa: S608
                    ),
                    (last,),
                )
                return cur.fetchall()

            page = self._run("export results", ids, write=False)
            if not page:
                return
            top = int(page[-1][0])
            params: tuple[Any, ...] = (last, top) if domain is None else (last, top, domain)

            def body(cur: Cursor, params: tuple[Any, ...] = params) -> list[Any]:
                cur.execute(query, params)
                return cur.fetchall()

            for row in self._run("export results", body, write=False):
                yield (
                    int(row[0]),
                    row[1],
                    row[2],
                    from_micros(row[3]).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    from_micros(row[4]).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    row[5],
                    row[6],
                    " | ".join(json.loads(row[7])),
                    " ".join(json.loads(row[8])),
                    int(row[9]),
                    int(row[10]),
                    *row[11:],
                )
            last = top
            if len(page) < _PAGE:
                return
