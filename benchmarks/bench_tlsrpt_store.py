"""
Persisted TLS-RPT collection: session results written to SQLite in batches.

Run: .venv/bin/python benchmarks/bench_tlsrpt_store.py [N [REDIS_URL]]
Prints sessions per second for a realistic mix (mostly successes, a few
hundred distinct failures) and for the worst case (every result distinct);
with a redis:// URL also for the Redis fleet store.
The issue's target is >= 20k session results/s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
from smtpsts.tlsrpt import PolicyInfo, ResultType, SessionResult


def results(n: int, *, distinct: bool) -> list[SessionResult]:
    out = []
    for i in range(n):
        domain = f"d{i % 500}.example"
        policy = PolicyInfo.for_sts(domain) if i % 3 else PolicyInfo.no_policy_found(domain)
        if distinct or i % 20 == 0:
            out.append(
                SessionResult.failed(
                    policy,
                    ResultType.CERTIFICATE_EXPIRED,
                    sending_mta_ip="192.0.2.1",
                    receiving_mx_hostname=f"mx{i if distinct else i % 7}.{domain}",
                    receiving_ip="198.51.100.7",
                )
            )
        else:
            out.append(SessionResult.succeeded(policy))
    return out


def run(n: int, *, distinct: bool, batch_size: int) -> float:
    data = results(n, distinct=distinct)
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteTLSRPTStore(Path(tmp) / "t.db", batch_size=batch_size)
        start = time.perf_counter()
        for r in data:
            store.add(r, at)
        store.close()
        elapsed = time.perf_counter() - start
        check = SQLiteTLSRPTStore(Path(tmp) / "t.db")
        total = sum(row.count for row in check.rows(at.date()))
        check.close()
        assert total == n, (total, n)
    return n / elapsed


def run_redis(url: str, n: int, *, distinct: bool, batch_size: int) -> float:
    data = results(n, distinct=distinct)
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    prefix = f"bench{time.monotonic_ns()}:"
    store = RedisTLSRPTStore(url, prefix=prefix, batch_size=batch_size)
    start = time.perf_counter()
    for r in data:
        store.add(r, at)
    store.close()
    elapsed = time.perf_counter() - start
    assert n == sum(row.count for row in store.rows(at.date()))
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for distinct, batch in ((False, 1000), (False, 10_000), (True, 1000)):
        rate = run(n if not distinct else n // 4, distinct=distinct, batch_size=batch)
        kind = "every result distinct" if distinct else "realistic mix"
        print(f"sqlite, batch {batch:>6}, {kind:<22}: {rate:>10,.0f} session results/s")
    if len(sys.argv) > 2:
        for distinct in (False, True):
            rate = run_redis(
                sys.argv[2], n if not distinct else n // 4, distinct=distinct, batch_size=1000
            )
            kind = "every result distinct" if distinct else "realistic mix"
            print(f"redis,  batch   1000, {kind:<22}: {rate:>10,.0f} session results/s")


if __name__ == "__main__":
    main()
