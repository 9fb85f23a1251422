"""
TLS-RPT benchmark: folding session results in memory, and building a big report.

Measures, with ``time.perf_counter`` (best and median of several repeats):

- ``Aggregator.add`` over 200,000 session results of a realistic mix (three
  policies, 85% successes, failures spread over 40 distinct detail tuples),
  against the floor: a plain ``collections.Counter`` fold of the same results as
  field tuples keyed by UTC day (``counter[(at.date(), fields)] += 1``);
- the same with every failure distinct (20,000 distinct failures, the slow path);
- (for reference) a ``Counter`` fold of the result objects themselves, whose
  hash is cached: the cost of any one-dict-lookup fold;
- building, serialising and gzipping one report with 10,000 failure details
  (``Aggregator.report`` + ``gzip_report``), and the whole report mail.

Targets (issue 5): at least 100,000 results/s folded in memory; the 10k-detail
report built and gzipped in under 1 s. ``--check`` makes a missed target exit 1.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import smtpsts
from smtpsts import Policy, ResultType
from smtpsts.tlsrpt import (
    Aggregator,
    PolicyInfo,
    SessionResult,
    gzip_report,
    report_message,
)

REPEAT = 5
N = 200_000
DETAILS = 10_000
TARGET_RATE = 100_000
TARGET_BUILD_S = 1.0
DAY = date(2024, 3, 5)
ORG_NAME = "Sender Example Ltd"
CONTACT = "tlsrpt@sender.example"

STS = PolicyInfo.for_sts(
    "recipient.example",
    Policy.from_text(
        "version: STSv1\nmode: enforce\nmx: mx1.recipient.example\nmx: *.mx.recipient.example\n"
        "max_age: 604800\n"
    ),
)
NONE = PolicyInfo.no_policy_found("other.example")
TLSA = PolicyInfo.for_tlsa("mx1.recipient.example", ["3 1 1 " + "AB" * 32])
FAILURES = (
    ResultType.CERTIFICATE_EXPIRED,
    ResultType.STARTTLS_NOT_SUPPORTED,
    ResultType.VALIDATION_FAILURE,
    ResultType.CERTIFICATE_HOST_MISMATCH,
)


def fields(r: SessionResult) -> tuple[object, ...]:
    """The result as the plain tuple the Counter floor folds."""
    p = r.policy
    return (
        r.domain,
        p.policy_type,
        p.policy_domain,
        p.policy_strings,
        p.mx_host_patterns,
        r.success,
        r.result_type,
        r.sending_mta_ip,
        r.receiving_mx_hostname,
        r.receiving_mx_helo,
        r.receiving_ip,
        r.failure_reason_code,
        r.additional_information,
    )


def workload(distinct: bool) -> list[tuple[SessionResult, datetime]]:
    """N (result, time) pairs over one UTC day; results are built before timing."""
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    successes = [
        SessionResult.succeeded(STS, receiving_mx_hostname="mx1.recipient.example"),
        SessionResult.succeeded(NONE),
        SessionResult.succeeded(TLSA, report_domain="recipient.example"),
    ]
    pool = [
        SessionResult.failed(
            STS,
            FAILURES[i % 4],
            sending_mta_ip=f"192.0.2.{i % 5 + 1}",
            receiving_mx_hostname=f"mx{i % 2 + 1}.recipient.example",
            receiving_ip=f"198.51.100.{i % 8 + 1}",
        )
        for i in range(40)
    ]
    items = []
    for i in range(N):
        at = start + timedelta(seconds=i * 86400 // N)
        if i % 20 < 17:
            items.append((successes[i % 3], at))
        elif distinct:
            items.append(
                (
                    SessionResult.failed(
                        STS,
                        FAILURES[i % 4],
                        receiving_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    ),
                    at,
                )
            )
        else:
            items.append((pool[i % 40], at))
    return items


def timed(func: Callable[[], object]) -> tuple[float, float]:
    """Return (best, median) seconds of ``func`` over REPEAT runs."""
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main(argv: list[str]) -> int:
    """Run the benchmark and print the figures; with ``--check``, exit 1 if a target is missed."""
    failed = False
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"smtpsts {getattr(smtpsts, '__version__', '?')}; best / median of {REPEAT} repeats"
    )
    for label, distinct in (
        ("mixed, 40 distinct failures", False),
        ("20k distinct failures", True),
    ):
        items = workload(distinct)
        tuples = [(fields(r), at) for r, at in items]

        def ours(items: list[tuple[SessionResult, datetime]] = items) -> Aggregator:
            agg = Aggregator(max_failure_details=50_000)
            add = agg.add
            for result, at in items:
                add(result, at)
            return agg

        def floor(tuples: list[tuple[tuple[object, ...], datetime]] = tuples) -> Counter[object]:
            counter: Counter[object] = Counter()
            for key, at in tuples:
                counter[(at.date(), key)] += 1
            return counter

        def floor_objects(items: list[tuple[SessionResult, datetime]] = items) -> Counter[object]:
            counter: Counter[object] = Counter()
            for result, at in items:
                counter[(at.date(), result)] += 1
            return counter

        # Sanity: both folds saw every session.
        agg = ours()
        total = sum(
            p.summary.total_successful_session_count + p.summary.total_failure_session_count
            for r in agg.reports(DAY, organization_name=ORG_NAME, contact_info=CONTACT)
            for p in r.policies
        )
        assert total == N == sum(floor().values())
        best, median = timed(ours)
        fbest, fmedian = timed(floor)
        obest, _ = timed(floor_objects)
        ok = N / best >= TARGET_RATE
        failed |= not ok
        print(
            f"fold {N:,} results ({label}): {N / best:,.0f}/s best, {N / median:,.0f}/s median; "
            f"Counter floor {N / fbest:,.0f}/s best, {N / fmedian:,.0f}/s median; "
            f"ours/floor time {best / fbest:.2f}x; Counter of the result objects "
            f"{N / obest:,.0f}/s (ours/that {best / obest:.2f}x); "
            f"target >= {TARGET_RATE:,}/s {'ok' if ok else 'MISSED'}"
        )

    agg = Aggregator(max_failure_details=DETAILS)
    at = datetime(2024, 3, 5, 12, tzinfo=UTC)
    for i in range(DETAILS):
        agg.add(
            SessionResult.failed(
                STS,
                FAILURES[i % 4],
                sending_mta_ip="192.0.2.1",
                receiving_mx_hostname="mx1.recipient.example",
                receiving_ip=f"10.0.{i >> 8}.{i & 255}",
                failure_reason_code="tls-remote-alert-70" if i % 4 == 2 else None,
            ),
            at,
        )

    def build() -> bytes:
        report = agg.report(
            "recipient.example", DAY, organization_name=ORG_NAME, contact_info=CONTACT
        )
        assert report is not None
        return gzip_report(report)

    def mail() -> bytes:
        report = agg.report(
            "recipient.example", DAY, organization_name=ORG_NAME, contact_info=CONTACT
        )
        assert report is not None
        return report_message(
            report,
            "recipient.example",
            from_address="tlsrpt@sender.example",
            to_address="tlsrpt@recipient.example",
            date=at,
            message_id="bench@sender.example",
        ).as_bytes()

    size = len(build())
    best, median = timed(build)
    mbest, _ = timed(mail)
    ok = best < TARGET_BUILD_S
    failed |= not ok
    print(
        f"report with {DETAILS:,} failure details, build + JSON + gzip: "
        f"{best * 1000:.0f} ms best, {median * 1000:.0f} ms median ({size:,} bytes gzipped); "
        f"whole mail {mbest * 1000:.0f} ms; "
        f"target < {TARGET_BUILD_S:g} s {'ok' if ok else 'MISSED'}"
    )
    if failed:
        print("targets missed" + ("" if "--check" in argv else " (exit status 0 without --check)"))
    return 1 if failed and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
