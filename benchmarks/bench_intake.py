"""
Report intake benchmark: received TLS-RPT bodies parsed, checked and stored (issue 13 item 8).

A realistic mix of gzipped report bodies, shaped like the reports that reach a
domain owner (the peer samples in ``../shared/vectors/peer-samples/``: one or
two policies, a handful of failure details) with one large report in every
hundred (10,000 failure details). Measured, best and median of several
repeats, with ``time.perf_counter``:

- **the limit**: bare ``gzip.decompress`` + ``json.loads`` of every body;
- **smtpsts**: :func:`smtpsts.tlsrpt.inbox.accept_report_body` (caps, gzip
  bomb check, the strict report reader) and ``SQLiteReportStore.add`` into a
  new file (WAL, ``synchronous=NORMAL`` as a busy intake would run it, and
  ``FULL``, the default, for reference);
- **parsedmarc** (when installed): ``parse_smtp_tls_report_json`` of the same
  decompressed bodies, parsing only, in the same table.

Then RSS: the peak resident size while ingesting REPORTS_RSS small reports into
one store, against the size after the first thousand (bounded means it does not
grow with the count).

Target: smtpsts (NORMAL) >= 0.5x the limit's rate. ``--check`` exits 1 on a miss.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import smtpsts
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt.inbox import IntakeLimits, Received, Source, accept_report_body

REPEAT = 5
MIX = 400  # bodies per run: 396 small, 4 with 10,000 failure details
BIG_EVERY = 100
BIG_DETAILS = 10_000
REPORTS_RSS = int(os.environ.get("BENCH_RSS_REPORTS", "100000"))
TARGET = 0.5
LIMITS = IntakeLimits()
START = datetime(2026, 11, 1, tzinfo=UTC)


def _report(n: int, details: int) -> dict[str, object]:
    day = START + timedelta(days=n % 30)
    failures = [
        {
            "result-type": "certificate-expired" if i % 3 else "starttls-not-supported",
            "sending-mta-ip": f"192.0.2.{i % 250 + 1}",
            "receiving-mx-hostname": f"mx{i % 7}.recipient.example",
            "receiving-ip": f"198.51.100.{i % 200 + 1}",
            "failed-session-count": 1 + i % 5,
            "additional-information": f"https://reporter.example/why/{i}",
            "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED" if i % 3 else "",
        }
        for i in range(details)
    ]
    return {
        "organization-name": f"Reporter {n % 12} Inc.",
        "date-range": {
            "start-datetime": day.strftime("%Y-%m-%dT00:00:00Z"),
            "end-datetime": day.strftime("%Y-%m-%dT23:59:59Z"),
        },
        "contact-info": "smtp-tls-reporting@reporter.example",
        "report-id": f"{day:%Y-%m-%d}T00:00:00Z_recipient.example_{n}",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: testing",
                        "mx: mx1.recipient.example",
                        "mx: *.mx.recipient.example",
                        "max_age: 604800",
                    ],
                    "policy-domain": "recipient.example",
                    "mx-host": ["mx1.recipient.example", "*.mx.recipient.example"],
                },
                "summary": {
                    "total-successful-session-count": 1000 + n,
                    "total-failure-session-count": sum(f["failed-session-count"] for f in failures),
                },
                "failure-details": failures,
            }
        ],
    }


def bodies(count: int, offset: int = 0, big: bool = True) -> list[bytes]:
    """Return *count* gzipped report bodies, one in BIG_EVERY with BIG_DETAILS failures."""
    out = []
    for n in range(offset, offset + count):
        details = BIG_DETAILS if big and n % BIG_EVERY == BIG_EVERY - 1 else n % 4
        out.append(gzip.compress(json.dumps(_report(n, details)).encode(), compresslevel=6))
    return out


def timed(func: Callable[[], object]) -> tuple[float, float]:
    """Return the best and median seconds of REPEAT runs of *func*."""
    runs = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        func()
        runs.append(time.perf_counter() - started)
    return min(runs), statistics.median(runs)


def ingest(mix: list[bytes], synchronous: Literal["FULL", "NORMAL"]) -> None:
    """accept_report_body + SQLiteReportStore.add of every body, into a new file."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteReportStore(str(Path(tmp) / "r.db"), synchronous=synchronous)
        try:
            for body in mix:
                report = accept_report_body(body, "application/tlsrpt+gzip", LIMITS)
                store.add(Received(report, Source.HTTPS, START, client="192.0.2.1"))
        finally:
            store.close()


def rss_kib() -> int:
    """The current resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss_run() -> tuple[int, int, int]:
    """Ingest REPORTS_RSS small reports; return (RSS after 1,000, peak RSS, final RSS) in KiB."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteReportStore(str(Path(tmp) / "r.db"), synchronous="NORMAL")
        early = peak = 0
        try:
            for chunk in range(0, REPORTS_RSS, 1000):
                for body in bodies(1000, offset=chunk, big=False):
                    report = accept_report_body(body, "application/tlsrpt+gzip", LIMITS)
                    store.add(Received(report, Source.HTTPS, START, client="192.0.2.1"))
                now = rss_kib()
                early = early or now
                peak = max(peak, now)
        finally:
            store.close()
        return early, peak, rss_kib()


def main(argv: list[str]) -> int:
    """Run the benchmark and print the figures; with ``--check``, exit 1 if a target is missed."""
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"smtpsts {getattr(smtpsts, '__version__', '?')}; best / median of {REPEAT} repeats"
    )
    mix = bodies(MIX)
    size = sum(len(b) for b in mix)
    print(
        f"{MIX} bodies, {size / 1e6:.1f} MB gzipped, one in {BIG_EVERY} with {BIG_DETAILS} details"
    )

    def limit() -> None:
        for body in mix:
            json.loads(gzip.decompress(body))

    rows: list[tuple[str, float, float]] = [("limit: gzip + json.loads", *timed(limit))]
    rows.append(("smtpsts: intake + sqlite (NORMAL)", *timed(lambda: ingest(mix, "NORMAL"))))
    rows.append(("smtpsts: intake + sqlite (FULL)", *timed(lambda: ingest(mix, "FULL"))))
    try:
        import parsedmarc  # noqa: PLC0415 -- the peer, optional (benchmarks environment)
    except ImportError:
        parsedmarc = None
    if parsedmarc is not None:
        plain = [gzip.decompress(b).decode() for b in mix]

        def peer() -> None:
            for text in plain:
                parsedmarc.parse_smtp_tls_report_json(text)

        rows.append(("parsedmarc: parse only (no gzip, no store)", *timed(peer)))
    base = rows[0][1]
    print(f"{'':44} {'best s':>8} {'median s':>9} {'reports/s':>10} {'x limit':>8}")
    for label, best, median in rows:
        print(f"{label:44} {best:8.3f} {median:9.3f} {MIX / best:10.0f} {base / best:8.2f}")
    ratio = base / rows[1][1]
    met = ratio >= TARGET
    print(
        f"target: smtpsts (NORMAL) >= {TARGET}x the limit: {ratio:.2f}x,"
        f" {'met' if met else 'MISSED'}"
    )

    early, peak, final = rss_run()
    print(
        f"RSS ingesting {REPORTS_RSS:,} small reports: {early / 1024:.0f} MiB after 1,000, "
        f"peak {peak / 1024:.0f} MiB, final {final / 1024:.0f} MiB "
        f"(maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )
    return 1 if "--check" in argv and not met else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
