"""A real writer process killed with SIGKILL mid-stream: the sqlite TLS-RPT store survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore

TOTAL = 200_000
BATCH = 500
DAY = date(2024, 3, 5)

# The writer replays its whole input from the start each time it runs: each
# batch carries an id derived from its input position, so batches already
# written are skipped and nothing is counted twice.
WRITER = textwrap.dedent(
    f"""
    import sys
    from datetime import UTC, datetime
    from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
    from smtpsts.tlsrpt import PolicyInfo, ResultType, SessionResult

    store = SQLiteTLSRPTStore(sys.argv[1], batch_size=10**9)
    at = datetime(2024, 3, 5, 12, tzinfo=UTC)
    results = []
    for i in range(50):
        policy = PolicyInfo.no_policy_found(f"d{{i}}.example")
        results.append(SessionResult.succeeded(policy))
        results.append(SessionResult.failed(policy, ResultType.STARTTLS_NOT_SUPPORTED,
                                            receiving_ip=f"192.0.2.{{i}}"))
    for start in range(0, {TOTAL}, {BATCH}):
        for i in range(start, start + {BATCH}):
            store.add(results[i % len(results)], at)
        store.flush(f"feed:{{start}}")
        print(start + {BATCH}, flush=True)
    print("done", flush=True)
    """
)


def total(path: Path) -> int:
    with SQLiteTLSRPTStore(path) as store:
        assert "ok" == store.integrity_check()
        return sum(r.count for r in store.rows(DAY))


def run_until_killed(path: Path, lines: int) -> int:
    """Run the writer, SIGKILL it after it reported ``lines`` more batches; return the last reported count."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    last = 0
    seen = 0
    try:
        for line in proc.stdout:
            if line.strip() == "done":
                break
            value = int(line)
            if value > last:
                seen += 1
            last = value
            if seen >= lines:
                proc.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next batch
                break
        # The writer may have run ahead of what we read: take its last word.
        for line in proc.stdout:
            if line.strip() != "done":
                last = int(line)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    return last


@pytest.mark.parametrize("kills", [(3, 7, 11)])
def test_kill_9_loses_at_most_one_batch_and_never_double_counts(
    tmp_path: Path, kills: tuple[int, ...]
) -> None:
    """Issue 5 item 4: SIGKILL mid-stream never corrupts the store, loses at most the unflushed batch, and a restart that replays the input does not double-count."""
    path = tmp_path / "tlsrpt.db"
    for lines in kills:
        reported = run_until_killed(path, lines)
        stored = total(path)
        # Every reported batch is durable; at most the one being written when
        # the kill came may also have committed before it could say so.
        assert 0 == stored % BATCH
        assert stored in (reported, reported + BATCH)
        if lines == kills[0]:
            assert stored < TOTAL  # the first kill did come mid-stream
    # Restart and run to the end: replayed batches are skipped.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    assert done.stdout.endswith("done\n")
    assert TOTAL == total(path)
