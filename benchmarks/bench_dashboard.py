"""
The TLS-RPT dashboard's overview page over 1,000,000 stored policy results (issue 13 item 8).

Run: .venv/bin/python benchmarks/bench_dashboard.py [ROWS [DOMAINS [DAYS]]]

Fills a fresh SQLite report store (smtpsts.stores.reports_sqlite, its real
schema) with ROWS reports of one policy result each (default 1,000,000),
spread over DOMAINS policy domains (200) and DAYS days (365), one in twenty
with a failure detail, by bulk SQL (the store's own ``add`` would take
minutes for a million). Then serves the dashboard under uvicorn on
127.0.0.1 and fetches the overview (the default 30-day window, every
domain with its daily counts) with urllib: 5 warm-up requests, then 50
timed ones. Prints p50/p95/max in ms against the issue's 200 ms p95 target,
and the same for a 365-day window and a domain page, for information.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn

from smtpsts.io.tlsrpt_dashboard import build_dashboard
from smtpsts.stores._reports_sql import to_micros
from smtpsts.stores.reports_sqlite import SQLiteReportStore

TARGET_MS = 200.0
NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
ORGS = ("Google Inc.", "Microsoft Corporation", "Yahoo", "Comcast", "Mail.ru", "GMX", "Zoho")


def fill(path: Path, rows: int, domains: int, days: int) -> None:
    """Write ``rows`` one-policy reports straight into the store's schema."""
    SQLiteReportStore(str(path)).close()  # the schema, by the store's own migrations
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    first = datetime.combine((NOW - timedelta(days=days - 1)).date(), datetime.min.time(), UTC)
    strings = json.dumps(["version: STSv1", "mode: testing", "mx: *.example", "max_age: 86400"])
    label = "sts: " + " | ".join(json.loads(strings))

    def reports() -> object:
        for i in range(rows):
            domain = f"d{i % domains}.example"
            start = first + timedelta(days=(i // domains) % days)
            failed = 3 if i % 20 == 0 else 0
            at = to_micros(start)
            yield (
                i + 1, ORGS[i % len(ORGS)], f"r{i}", at, at + 86_400_000_000,
                json.dumps([domain]), 1000 + i % 97, failed, "https", at + 90_000_000_000,
                "192.0.2.1", None, None, '{"policies":[]}',
            )  # fmt: skip

    def policies() -> object:
        for i in range(rows):
            start = first + timedelta(days=(i // domains) % days)
            yield (
                i + 1, 0, f"d{i % domains}.example", to_micros(start), start.date().isoformat(),
                "sts", label, strings, '["*.example"]', 1000 + i % 97, 3 if i % 20 == 0 else 0,
            )  # fmt: skip

    def failures() -> object:
        for i in range(0, rows, 20):
            start = first + timedelta(days=(i // domains) % days)
            yield (
                i + 1, 0, 0, f"d{i % domains}.example", to_micros(start), "certificate-expired",
                3, "192.0.2.1", f"mx{i % 3}.d{i % domains}.example", None, None, None,
                "X509_V_ERR_CERT_HAS_EXPIRED",
            )  # fmt: skip

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO rpt_report (id, organization, report_id, start_at, end_at, domains,"
        " successful, failed, source, received_at, client, dkim, contact_info, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        reports(),  # type: ignore[arg-type]
    )
    conn.executemany(
        "INSERT INTO rpt_policy (report, entry, domain, start_at, start_day, policy_type,"
        " policy_label, policy_strings, mx_host, successful, failed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        policies(),  # type: ignore[arg-type]
    )
    conn.executemany(
        "INSERT INTO rpt_failure (report, entry, detail, domain, start_at, result_type, failed,"
        " sending_mta_ip, receiving_mx_hostname, receiving_mx_helo, receiving_ip,"
        " additional_information, failure_reason_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?)",
        failures(),  # type: ignore[arg-type]
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def timed(url: str, n: int) -> list[float]:
    """Fetch ``url`` ``n`` times; the times in ms."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            assert response.status == 200
        out.append((time.perf_counter() - start) * 1000)
    return out


def p95(values: list[float]) -> float:
    """The 95th percentile (inclusive method)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    """Fill, serve, measure, print."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    domains = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    days = int(sys.argv[3]) if len(sys.argv) > 3 else 365
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reports.sqlite"
        started = time.perf_counter()
        fill(path, rows, domains, days)
        print(
            f"filled {rows:,} policy results ({domains} domains, {days} days) in"
            f" {time.perf_counter() - started:.1f} s; {path.stat().st_size / 1e6:.0f} MB"
        )
        store = SQLiteReportStore(str(path))
        app = build_dashboard(store, now=lambda: NOW)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        try:
            for name, path_q, n in (
                ("overview, 30 days", "/", 50),
                ("overview, 365 days", "/?days=365", 20),
                ("domain page, 30 days", "/domain/d7.example", 20),
            ):
                timed(base + path_q, 5)
                ms = timed(base + path_q, n)
                verdict = ""
                if path_q == "/":
                    verdict = " (target p95 <= 200 ms: " + (
                        "met)" if p95(ms) <= TARGET_MS else "MISSED)"
                    )
                print(
                    f"{name:22} p50 {statistics.median(ms):7.1f} ms  p95 {p95(ms):7.1f} ms"
                    f"  max {max(ms):7.1f} ms  ({n} requests){verdict}"
                )
        finally:
            server.should_exit = True
            thread.join(10)
            store.close()
            sock.close()


if __name__ == "__main__":
    main()
