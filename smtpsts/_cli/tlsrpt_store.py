"""
``smtpsts tlsrpt export`` and ``smtpsts tlsrpt purge``: the report store's retention and export.

``--store`` names an SQLite file, or a PostgreSQL database by URI
(``postgresql://...`` or ``postgres://...``; needs the ``postgres`` extra).
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from smtpsts.exceptions import StoreError, StoreVersionError

__all__ = ["open_report_store", "register_store"]


def open_report_store(spec: str) -> Any:
    """
    Open the report store ``spec`` names.

    Args:
        spec: An SQLite file path, or a ``postgresql://`` / ``postgres://`` URI.

    Returns:
        The store (an :class:`~smtpsts.tlsrpt.inbox.ReportStore` with the export methods).

    Raises:
        smtpsts.StoreError: The store cannot be opened.
        smtpsts.exceptions.StoreVersionError: A newer smtpsts wrote the store.
        ImportError: A PostgreSQL URI without psycopg installed.
    """
    if spec.startswith(("postgresql://", "postgres://")):
        from smtpsts.stores.reports_postgres import PostgresReportStore  # noqa: PLC0415

        return PostgresReportStore(spec)
    from smtpsts.stores.reports_sqlite import SQLiteReportStore  # noqa: PLC0415

    return SQLiteReportStore(spec)


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 0, got {value!r}")
    return days


def register_store(tsub: Any) -> None:
    """
    Add the ``export`` and ``purge`` actions to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    store_help = "the report store: an SQLite file, or postgresql://... "
    export = tsub.add_parser(
        "export",
        help="export stored TLS-RPT reports as JSON lines or CSV",
        description="Write the stored reports (issue 13): --format jsonl gives one report's "
        "JSON per line, as it was stored; --format csv gives one row per policy entry "
        "without failure details and one per failure detail, with a header. Exits 0, or 1 "
        "when the store cannot be read.",
    )
    export.add_argument("--store", required=True, metavar="STORE", help=store_help)
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--domain", help="only reports on this policy domain")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(handler=_export)
    purge = tsub.add_parser(
        "purge",
        help="delete stored TLS-RPT reports older than a number of days",
        description="Delete the reports whose date range ended more than DAYS days ago, "
        "and quarantined bodies received before then; print how many reports went.",
    )
    purge.add_argument("--store", required=True, metavar="STORE", help=store_help)
    purge.add_argument(
        "--older-than", required=True, type=_days, metavar="DAYS", help="retention in days"
    )
    purge.set_defaults(handler=_purge)


def _write(store: Any, args: argparse.Namespace, out: IO[str]) -> None:
    if args.format == "jsonl":
        for line in store.export_reports(args.domain):
            out.write(line + "\n")
        return
    from smtpsts.stores._reports_sql import CSV_COLUMNS  # noqa: PLC0415

    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(store.export_results(args.domain))


def _export(args: argparse.Namespace) -> int:
    try:
        store = open_report_store(args.store)
    except (StoreError, StoreVersionError) as e:
        print(f"smtpsts tlsrpt export: {e}", file=sys.stderr)
        return 1
    try:
        if args.output is None:
            _write(store, args, sys.stdout)
        else:
            with Path(args.output).open("w", encoding="utf-8", newline="") as out:
                _write(store, args, out)
    except (StoreError, StoreVersionError) as e:
        print(f"smtpsts tlsrpt export: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"smtpsts tlsrpt export: {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _purge(args: argparse.Namespace) -> int:
    before = datetime.now(UTC) - timedelta(days=args.older_than)
    try:
        store = open_report_store(args.store)
        try:
            count = store.purge(before)
        finally:
            store.close()
    except (StoreError, StoreVersionError) as e:
        print(f"smtpsts tlsrpt purge: {e}", file=sys.stderr)
        return 1
    print(f"deleted {count} reports that ended before {before:%Y-%m-%dT%H:%M:%SZ}")
    return 0
