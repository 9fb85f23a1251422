"""
Store faults (issues 10 and 17): what each store does when its backend or an entry fails.

Locked, read-only and corrupt sqlite files, unreadable entries, Redis outages, restarts without
persistence, flushes and tombstones, bounded memory eviction.

A fault is a StoreError, never "nothing cached"; a live enforce policy is never lost to one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes import ENFORCE, TESTING
from redisserver import RedisServer, redis_server
from smtpsts import StoreError
from smtpsts.cache import CacheEntry
from smtpsts.policy import Policy
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.stores.sqlite import SQLitePolicyStore

# Redis expires keys by the wall clock, so entries are built around the real now.
T0 = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
NONE_POLICY = b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
NEWER_FORMAT = '{"v": 99, "domain": "example.com"}'


def policy(
    domain: str = "example.com",
    *,
    record_id: str = "a",
    at: timedelta = timedelta(0),
    body: bytes = ENFORCE,
    max_age: int = 86400,
) -> CacheEntry:
    fetched = T0 + at
    parsed = Policy.from_text(body)
    return CacheEntry(
        domain,
        record_id=record_id,
        policy=None if parsed.mode.value == "none" else parsed,
        fetched_at=fetched,
        expires_at=fetched + timedelta(seconds=max_age),
        last_checked=fetched,
    )


def negative(domain: str) -> CacheEntry:
    return CacheEntry(domain, negative_until=T0 + timedelta(seconds=300))


def backoff(domain: str) -> CacheEntry:
    return CacheEntry(domain, backoff_until=T0 + timedelta(seconds=300), backoff_id="b")


# --------------------------------------------------------------------------- sqlite

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # hold the write lock until the test closes stdin
conn.execute("ROLLBACK")
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "p.db"
    store = SQLitePolicyStore(path)
    store.put(policy())
    store.close()
    return path


class TestSQLiteFaults:
    def test_reader_fast_while_another_process_holds_the_write_lock(self, db: Path) -> None:
        """Issue 10: get() never waits for a writer; writes fail with StoreError after the busy timeout."""
        store = SQLitePolicyStore(db, busy_timeout=0.3)
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None
            assert "locked\n" == locker.stdout.readline()
            started = time.monotonic()
            assert policy() == store.get("example.com")
            assert [policy()] == list(store.entries())
            read_time = time.monotonic() - started
            assert read_time < 0.2
            for write in (
                lambda: store.replace("example.com", policy(), policy(record_id="b", at=DAY)),
                lambda: store.put(policy(record_id="c", at=DAY)),
                lambda: store.delete("example.com"),
            ):
                started = time.monotonic()
                with pytest.raises(StoreError, match="locked") as info:
                    write()
                assert 0.25 < time.monotonic() - started < 3
                assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            # Reads still answer while the writer waits in another thread.
            assert policy() == store.get("example.com")
        finally:
            locker.communicate("", timeout=10)
        # The lock is gone: writes work again, nothing was half-written.
        assert store.replace("example.com", policy(), policy(record_id="b", at=DAY))
        assert "b" == store.get("example.com").record_id  # type: ignore[union-attr]
        store.close()

    def test_read_only_file(self, db: Path) -> None:
        """Issue 10: a read-only file still answers reads; every write is a StoreError, nothing changes."""
        immutable = os.geteuid() == 0  # root ignores file modes: make the file immutable
        if immutable:
            subprocess.run(["chattr", "+i", str(db)], check=True)
        else:
            db.chmod(0o444)
        try:
            store = SQLitePolicyStore(db)
            assert policy() == store.get("example.com")
            for write in (
                lambda: store.put(policy("other.example")),
                lambda: store.replace("example.com", policy(), None),
                lambda: store.delete("example.com"),
            ):
                with pytest.raises(StoreError, match="readonly") as info:
                    write()
                assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert [policy()] == list(store.entries())
            store.close()
        finally:
            if immutable:
                subprocess.run(["chattr", "-i", str(db)], check=True)
            db.chmod(0o644)

    def test_corrupt_file(self, db: Path) -> None:
        """SEC-54, issue 10: a corrupt file is a StoreError on read and write, not a crash and not "absent"."""
        store = SQLitePolicyStore(db)
        with db.open("r+b") as f:  # page 1 (schema) stays; the table's page is garbage
            f.seek(4096)
            f.write(b"\xa5" * 4096)
        with pytest.raises(StoreError) as info:
            store.get("example.com")
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
        assert "example.com" == info.value.domain
        with pytest.raises(StoreError):
            store.replace("example.com", None, policy(at=DAY))
        with pytest.raises(StoreError):
            list(store.entries())
        store.close()

    def test_unreadable_entry_never_overwritten(
        self, db: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """SEC-54, issue 10: a newer-format row is a StoreError for get/put/replace, stays, is skipped by scans."""
        store = SQLitePolicyStore(db)
        store.put(policy("due.example", at=-timedelta(hours=25), max_age=7 * 86400))
        store.put(policy("bad2.example", at=-timedelta(hours=25), max_age=7 * 86400))
        store._conn.execute(
            "UPDATE sts_policy SET doc = ? WHERE domain != 'due.example'", (NEWER_FORMAT,)
        )
        for call in (
            lambda: store.get("example.com"),
            lambda: store.put(negative("example.com")),
            lambda: store.replace("example.com", None, policy(at=DAY)),
            lambda: store.replace("example.com", None, None),
        ):
            with pytest.raises(StoreError, match="cannot be read") as info:
                call()
            assert "example.com" == info.value.domain
        ((doc,),) = store._conn.execute(
            "SELECT doc FROM sts_policy WHERE domain = 'example.com'"
        ).fetchall()
        assert NEWER_FORMAT == doc
        with caplog.at_level(logging.WARNING):
            due = store.due_for_refresh(T0)
        assert ["due.example"] == [e.domain for e in due]
        assert 2 == caplog.text.count("skipped")  # one warning per unreadable entry in the scan
        store.delete("example.com")  # the way out: delete removes it
        assert store.get("example.com") is None
        store.close()

    def test_in_memory_database(self) -> None:
        """STS-CACHE-17: ":memory:" has one connection for reads and writes, so reads see writes."""
        store = SQLitePolicyStore(":memory:")
        store.put(policy())
        assert policy() == store.get("example.com")
        assert 1 == store.schema_version
        store.close()


# --------------------------------------------------------------------------- memory


class TestMemoryEviction:
    def test_flood_of_new_domains_never_evicts_live_policy(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 10, RFC 8461 §10: 10 000 new-domain negatives never push a live enforce policy out."""
        store = MemoryPolicyStore(max_entries=100)
        store.put(policy("target.example"))
        store.put(policy("testing.example", body=TESTING))
        with caplog.at_level(logging.WARNING):
            for i in range(10_000):
                store.put(negative(f"n{i}.example"))
                store.put(backoff(f"b{i}.example"))
        assert policy("target.example") == store.get("target.example")
        assert store.get("testing.example") is not None
        assert 100 == len(store)
        assert "" == caplog.text  # room for the flood: ordinary eviction, no warning

    def test_eviction_order(self) -> None:
        """Issue 10: expired, then negatives, backoff markers, mode none; live policies last."""
        store = MemoryPolicyStore(max_entries=5)
        store.put(policy("expired.example", at=-2 * DAY))
        store.put(policy("none.example", body=NONE_POLICY))
        store.put(backoff("backoff.example"))
        store.put(negative("neg.example"))
        store.put(policy("live.example"))
        order = []
        for i in range(4):
            store.put(policy(f"p{i}.example"))
            order.append(
                sorted(
                    {"expired.example", "none.example", "backoff.example", "neg.example"}
                    - {e.domain for e in store.entries()}
                )
            )
        assert [
            ["neg.example"],
            ["backoff.example", "neg.example"],
            ["backoff.example", "neg.example", "none.example"],
            ["backoff.example", "expired.example", "neg.example", "none.example"],
        ] == order
        assert store.get("live.example") is not None

    def test_full_of_live_policies(self, caplog: pytest.LogCaptureFixture) -> None:
        """Issue 10: live policies go beyond the bound up to hard_limit; other entries are not kept."""
        store = MemoryPolicyStore(max_entries=4)
        for i in range(4):
            store.put(policy(f"p{i}.example"))
        with caplog.at_level(logging.WARNING):
            for i in range(50):
                store.put(negative(f"n{i}.example"))
        assert 4 == len(store)
        assert store.get("n49.example") is None
        assert 1 == caplog.text.count("other entries are not kept")  # once per burst
        for i in range(4, 8):
            store.put(policy(f"p{i}.example"))
        assert 8 == len(store)  # hard_limit: twice max_entries
        store.get("p0.example")  # recently used
        with caplog.at_level(logging.WARNING):
            store.put(policy("p8.example"))
            store.put(policy("p9.example"))
        assert 8 == len(store)
        assert store.get("p0.example") is not None
        assert store.get("p1.example") is None  # the least recently used live policy went
        assert store.get("p2.example") is None
        assert 1 == caplog.text.count("hard_limit")

    def test_expired_policy_found_among_live_ones(self) -> None:
        """Issue 10: a policy that expired since it was stored is evicted before live ones go over."""
        now = [T0]
        store = MemoryPolicyStore(max_entries=16, clock=lambda: now[0])
        store.put(policy("p0.example"))
        store.put(policy("short.example", max_age=60))
        for i in range(1, 15):
            store.put(policy(f"p{i}.example"))
        now[0] = T0 + timedelta(seconds=61)
        store.put(policy("new.example"))
        assert 16 == len(store)
        assert store.get("short.example") is None
        assert store.get("p0.example") is not None

    def test_replace_and_delete_in_bounded_store(self) -> None:
        """STS-CACHE-13: CAS and delete keep the eviction bookkeeping right (kind changes)."""
        store = MemoryPolicyStore(max_entries=2)
        store.put(negative("example.com"))
        assert store.replace("example.com", negative("example.com"), policy())
        store.put(negative("a.example"))
        store.put(negative("b.example"))  # evicts a.example, not the policy
        assert policy() == store.get("example.com")
        store.delete("example.com")
        store.delete("example.com")
        assert ["b.example"] == [e.domain for e in store.entries()]


# --------------------------------------------------------------------------- redis


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


def _dead_url() -> str:
    from redisserver import _free_port

    return f"redis://127.0.0.1:{_free_port()}/0"


_PEER = """
import sys
from datetime import datetime, timedelta
from smtpsts.cache import CacheEntry
from smtpsts.policy import Policy
from smtpsts.stores.redis import RedisPolicyStore

store = RedisPolicyStore.from_url(sys.argv[1], timeout=0.5)
fetched = datetime.fromisoformat(sys.argv[2])
for line in sys.stdin:
    command = line.split()
    if command[0] == "learn":
        store.put(CacheEntry("example.com", record_id="peer", policy=Policy.from_text(
            b"version: STSv1\\r\\nmode: enforce\\r\\nmx: mx.example.com\\r\\nmax_age: 86400\\r\\n"),
            fetched_at=fetched, expires_at=fetched + timedelta(days=1), last_checked=fetched))
    elif command[0] == "get":
        try:
            entry = store.get("example.com")
            print(None if entry is None else entry.record_id, flush=True)
        except Exception as exc:
            print(type(exc).__name__, flush=True)
        continue
    print("ok", flush=True)
"""


class TestRedisFaults:
    def test_unreachable_with_nothing_local_is_an_error(self) -> None:
        """SEC-54, issue 10: Redis down and nothing local: StoreError (unknown), never "nothing cached"."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(_dead_url(), timeout=0.5)
        with pytest.raises(StoreError, match="unreachable") as info:
            store.get("Example.COM")
        assert "example.com" == info.value.domain
        assert isinstance(info.value.__cause__, Exception)
        store.local.put(policy())  # a live local entry answers instead
        assert policy() == store.get("example.com")
        store.local.put(policy(at=-2 * DAY))  # an expired one does not
        with pytest.raises(StoreError):
            store.get("example.com")
        store.close()

    def test_restart_without_persistence_two_processes(self, server: RedisServer) -> None:
        """SEC-54, issue 17: after Redis restarts empty, a peer process's live local policy is written back."""
        from smtpsts.stores.redis import RedisPolicyStore

        peer = subprocess.Popen(
            [sys.executable, "-c", _PEER, server.url, T0.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peer.stdin is not None
        assert peer.stdout is not None
        try:
            peer.stdin.write("learn\n")
            peer.stdin.flush()
            assert "ok\n" == peer.stdout.readline()
            server.restart()
            store = RedisPolicyStore.from_url(server.url, timeout=0.5)
            # A process that never learnt the domain cannot know it.
            assert store.get("example.com") is None
            peer.stdin.write("get\n")
            peer.stdin.flush()
            assert "peer\n" == peer.stdout.readline()
            # The peer wrote it back: the key is in Redis again, and this process reads it.
            assert store.client.get("smtpsts:sts:example.com") is not None
            assert "peer" == store.get("example.com").record_id  # type: ignore[union-attr]
            store.close()
        finally:
            peer.communicate("", timeout=10)
        assert 0 == peer.returncode

    def test_write_back_never_overwrites_newer(self, server: RedisServer) -> None:
        """SEC-54, issue 17, STS-CACHE-13: a write-back is a CAS: a policy another store fetched later stays."""
        from smtpsts.stores.redis import RedisPolicyStore

        first = RedisPolicyStore.from_url(server.url, timeout=0.5)
        second = RedisPolicyStore.from_url(server.url, timeout=0.5)
        first.put(policy())
        server.restart()
        newer = policy(record_id="new", at=timedelta(hours=1), body=TESTING)
        assert second.replace("example.com", None, newer)
        assert newer == first.get("example.com")  # Redis's later fetch wins over the local copy
        assert newer == second.get("example.com")
        # Redis holds an older fetch than the local layer: the local one is written back.
        older = policy(record_id="old", at=-timedelta(hours=1))
        first.client.set("smtpsts:sts:example.com", older.to_json())
        first.local.put(newer)
        assert newer == first.get("example.com")
        assert newer == second.get("example.com")
        first.close()
        second.close()

    def test_flushed_db_repaired_by_scan(self, server: RedisServer) -> None:
        """Issue 17, STS-CACHE-10: after FLUSHDB, entries() lists local policies and writes them back."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5)
        due = policy("due.example", at=-timedelta(hours=25), max_age=7 * 86400)
        for entry in (due, policy(), negative("neg.example")):
            store.put(entry)
        store.client.flushdb()
        assert [due] == store.due_for_refresh(T0)
        other = RedisPolicyStore.from_url(server.url, timeout=0.5)
        assert {"due.example", "example.com"} == {e.domain for e in other.entries()}
        assert other.get("neg.example") is None  # negatives are not written back
        store.close()
        other.close()

    def test_repair_after_outage_in_batches(self, server: RedisServer) -> None:
        """Issue 17: when Redis is back after an outage, live local policies are written back in batches."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5, repair_batch=2)
        for i in range(3):
            store.put(policy(f"p{i}.example"))
        store.put(policy("none.example", body=NONE_POLICY))
        server.restart()
        store.client.connection_pool.disconnect()
        server.stop()
        assert policy("p0.example") == store.get("p0.example")  # from the local layer
        assert not store.available
        server.start(port=server.port)
        store.put(negative("neg.example"))  # Redis is back: first batch
        assert store.available
        assert 1 == store.repair_pending
        store.delete("neg.example")  # second batch
        assert 0 == store.repair_pending
        keys = {k.decode() for k in store.client.keys("*")}
        assert {f"smtpsts:sts:p{i}.example" for i in range(3)} == keys  # mode none: not repaired
        store.close()

    def test_tombstone_stops_resurrection_of_a_retired_policy(self, server: RedisServer) -> None:
        """STS-CACHE-14, STS-CACHE-18, issue 17: a peer's old local copy never brings back a deletion."""
        from smtpsts.stores.redis import RedisPolicyStore

        retiring = RedisPolicyStore.from_url(server.url, timeout=0.5)
        peer = RedisPolicyStore.from_url(server.url, timeout=0.5)
        old = policy(at=-timedelta(hours=2))
        retiring.put(old)
        assert old == peer.get("example.com")  # the peer holds enforce locally
        none = policy(record_id="n", at=-timedelta(hours=1), body=NONE_POLICY)
        assert retiring.replace("example.com", old, none)  # STS-CACHE-13: mode none replaces it
        assert retiring.replace("example.com", none, None)  # STS-CACHE-14: retired
        assert b"tombstone" in retiring.client.get("smtpsts:sts:example.com")
        assert retiring.client.ttl("smtpsts:sts:example.com") > 86000
        assert peer.get("example.com") is None  # covered: dropped, not written back
        assert peer.local.get("example.com") is None
        assert [] == list(retiring.entries())
        # A policy fetched after the deletion is newer than the tombstone and wins.
        assert peer.replace("example.com", None, policy(record_id="back"))
        assert "back" == retiring.get("example.com").record_id  # type: ignore[union-attr]
        # Purge (STS-CACHE-18): the peer's copy of the purged entry stays deleted, also by scan.
        purged = policy("old.example", at=-timedelta(hours=3))
        retiring.put(purged)
        peer.get("old.example")
        assert retiring.replace("old.example", purged, None)
        assert "old.example" not in {e.domain for e in peer.entries()}
        assert peer.local.get("old.example") is None
        retiring.delete("example.com")
        assert peer.get("example.com") is None
        retiring.close()
        peer.close()

    def test_unreadable_document(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """SEC-54, issue 10: a newer-format document is never overwritten; a live local entry still answers."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5)
        store.put(policy())
        store.put(policy("good.example"))
        store.client.set("smtpsts:sts:example.com", NEWER_FORMAT)
        with caplog.at_level(logging.WARNING):
            assert policy() == store.get("example.com")  # the local layer answers
        assert "cannot be read" in caplog.text
        for write in (
            lambda: store.replace("example.com", policy(), policy(record_id="b", at=DAY)),
            lambda: store.put(policy(record_id="c", at=DAY)),
        ):
            with pytest.raises(StoreError, match="cannot be read"):
                write()
        assert NEWER_FORMAT.encode() == store.client.get("smtpsts:sts:example.com")
        fresh = RedisPolicyStore.from_url(server.url, timeout=0.5)
        with pytest.raises(StoreError):
            fresh.get("example.com")
        assert ["good.example"] == [e.domain for e in fresh.entries()]
        fresh.delete("example.com")  # the way out
        assert fresh.get("example.com") is None
        store.close()
        fresh.close()

    def test_async(self, server: RedisServer) -> None:
        """Issues 10, 17: the asyncio store: StoreError when down, write-back, tombstones, repair."""
        from smtpsts.stores.redis import AsyncRedisPolicyStore

        async def run() -> None:
            dead = AsyncRedisPolicyStore.from_url(_dead_url(), timeout=0.5)
            with pytest.raises(StoreError, match="unreachable"):
                await dead.get("example.com")
            await dead.close()
            store = AsyncRedisPolicyStore.from_url(server.url, timeout=0.5, repair_batch=1)
            other = AsyncRedisPolicyStore.from_url(server.url, timeout=0.5)
            await store.put(policy())
            await store.put(policy("p1.example"))
            server.restart()
            assert await other.get("example.com") is None
            assert policy() == await store.get("example.com")  # written back
            assert policy() == await other.get("example.com")
            assert {"example.com", "p1.example"} == {e.domain for e in await store.entries()}
            assert policy("p1.example") == await other.get("p1.example")
            # Outage, then repair after the first successful operation.
            await store.client.connection_pool.disconnect()
            server.stop()
            assert policy() == await store.get("example.com")
            await store.put(policy("p2.example"))
            assert not store.available
            server.start(port=server.port)
            await store.delete("gone.example")
            assert store.available
            assert 2 == store.repair_pending
            await store.get("p2.example")
            await store.get("p2.example")
            assert 0 == store.repair_pending
            assert policy("p2.example") == await other.get("p2.example")
            # Tombstone: the other's local copy is not written back.
            assert await store.replace("example.com", policy(), None)
            assert await other.get("example.com") is None
            await store.client.set("smtpsts:sts:bad.example", NEWER_FORMAT)
            with pytest.raises(StoreError):
                await store.get("bad.example")
            with pytest.raises(StoreError):
                await store.replace("bad.example", None, policy("bad.example"))
            await store.close()
            await other.close()

        asyncio.run(run())


class TestEdges:
    def test_closed_sqlite_store_is_a_usage_error(self, tmp_path: Path) -> None:
        """Issue 10: using a closed store is the caller's bug (ProgrammingError), not a StoreError."""
        store = SQLitePolicyStore(tmp_path / "p.db")
        store.close()
        with pytest.raises(sqlite3.ProgrammingError):
            store.get("example.com")

    def test_empty_entry_evicted_first(self) -> None:
        """Issue 10: an entry with nothing valid in it goes before a negative one."""
        store = MemoryPolicyStore(max_entries=2)
        store.put(negative("neg.example"))
        store.put(CacheEntry("empty.example"))
        store.put(negative("neg2.example"))
        assert ["neg.example", "neg2.example"] == sorted(e.domain for e in store.entries())

    def test_repair_meets_tombstones(self, server: RedisServer) -> None:
        """Issue 17, STS-CACHE-14: a repair drops a copy a peer's deletion covers, writes back a newer one."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5)
        peer = RedisPolicyStore.from_url(server.url, timeout=0.5)
        store.put(policy("gone.example", at=-timedelta(hours=1)))
        store.put(policy("kept.example"))
        store.client.connection_pool.disconnect()
        server.stop()
        assert store.get("gone.example") is not None  # down: the local layer answers
        server.start(port=server.port)  # back, empty
        # While the store was away a peer deleted both on purpose.
        older = policy("kept.example", at=-timedelta(hours=2))
        peer.put(policy("gone.example", at=-timedelta(hours=1)))
        peer.delete("gone.example")
        peer.put(older)
        assert peer.replace("kept.example", older, None)
        assert peer.replace("kept.example", None, None)  # keeps the (older) tombstone
        store.put(negative("neg.example"))  # back: the repair runs
        assert store.local.get("gone.example") is None
        assert b"tombstone" in peer.client.get("smtpsts:sts:gone.example")
        assert policy("kept.example") == peer.get("kept.example")  # newer than the tombstone
        store.close()
        peer.close()

    def test_lost_watch_race_retried(self, server: RedisServer) -> None:
        """STS-FETCH-20: a compare-and-set that loses a WATCH race reads again; it gives up after 10."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5)
        other = RedisPolicyStore.from_url(server.url, timeout=0.5)
        calls: list[bytes | None] = []

        def racing(raw: bytes | None) -> object:
            calls.append(raw)
            if len(calls) == 1:
                other.client.set("smtpsts:sts:example.com", policy().to_json())
            from smtpsts.stores.redis import _plan_put

            return _plan_put("example.com", raw, policy(record_id="b"))

        assert store._run("example.com", racing)
        assert [None, policy().to_json().encode()] == calls

        def always(raw: bytes | None) -> object:
            other.client.set("smtpsts:sts:example.com", policy().to_json())
            from smtpsts.stores.redis import _plan_put

            return _plan_put("example.com", raw, policy(record_id="c"))

        assert not store._run("example.com", always)
        store.close()
        other.close()

    def test_damaged_tombstone_and_local_mode_none(self, server: RedisServer) -> None:
        """Issues 10, 17: a damaged tombstone is unreadable; a newer local mode none is listed, not written back."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(server.url, timeout=0.5)
        store.client.set("smtpsts:sts:example.com", '{"tombstone":1,"upto":"2026-01-01T00:00:00"}')
        with pytest.raises(StoreError, match="cannot be read"):
            store.get("example.com")
        none = policy("none.example", body=NONE_POLICY)
        store.put(none)
        store.client.flushdb()
        assert [none] == list(store.entries())
        assert store.client.get("smtpsts:sts:none.example") is None
        store.close()

    def test_async_edges(self, server: RedisServer) -> None:
        """Issues 10, 17 (asyncio): unreadable document with a live local copy; scans drop covered copies."""
        from smtpsts.stores.redis import AsyncRedisPolicyStore

        async def run() -> None:
            store = AsyncRedisPolicyStore.from_url(server.url, timeout=0.5)
            peer = AsyncRedisPolicyStore.from_url(server.url, timeout=0.5)
            await store.put(policy())
            await store.client.set("smtpsts:sts:example.com", NEWER_FORMAT)
            assert policy() == await store.get("example.com")
            with pytest.raises(StoreError):
                await store.put(policy(at=DAY))
            await store.delete("example.com")
            await store.put(policy("x.example"))
            assert policy("x.example") == await peer.get("x.example")
            assert await store.replace("x.example", policy("x.example"), None)
            assert [] == await peer.entries()
            assert peer.local.get("x.example") is None
            assert await peer.replace("x.example", None, None)
            import redis as redis_py

            sync = redis_py.Redis.from_url(server.url)
            calls: list[object] = []

            def racing(raw: bytes | None) -> object:  # a lost WATCH race is retried
                calls.append(raw)
                if len(calls) == 1:
                    sync.set("smtpsts:sts:y.example", policy("y.example").to_json())
                from smtpsts.stores.redis import _plan_put

                return _plan_put("y.example", raw, policy("y.example", record_id="b"))

            assert await store._run("y.example", racing)
            assert 2 == len(calls)
            sync.close()
            await store.close()
            await peer.close()

        asyncio.run(run())
