"""One contract, three stores: memory, sqlite and a real redis-server (sync and asyncio)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes import ENFORCE, TESTING
from redisserver import RedisServer, redis_server
from smtpsts import StoreError
from smtpsts.cache import CacheEntry
from smtpsts.policy import Policy
from smtpsts.stores import (
    AsyncPolicyStore,
    PolicyStore,
    SyncAsAsyncStore,
    is_unused,
    refresh_due,
)
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.stores.sqlite import SCHEMA_VERSION, SQLitePolicyStore, StoreVersionError

DAY = timedelta(days=1)
# Redis expires keys by the wall clock, so entries are built around the real now.
# Fixed at import: entries are relative to it and must outlive a long test run
# (the negative and backoff ones last hours, not minutes).
T0 = datetime.now(UTC).replace(microsecond=0)


def policy_entry(
    domain: str = "example.com",
    *,
    record_id: str = "a",
    at: timedelta = timedelta(0),
    body: bytes = ENFORCE,
    max_age: int = 86400,
) -> CacheEntry:
    fetched = T0 + at
    return CacheEntry(
        domain,
        record_id=record_id,
        policy=Policy.from_text(body),
        fetched_at=fetched,
        expires_at=fetched + timedelta(seconds=max_age),
        last_checked=fetched,
    )


def negative_entry(domain: str = "example.com") -> CacheEntry:
    return CacheEntry(domain, negative_until=T0 + timedelta(hours=6))


def backoff_entry(domain: str = "example.com") -> CacheEntry:
    return CacheEntry(domain, backoff_until=T0 + timedelta(hours=6), backoff_id="b")


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PolicyStore]:
    result: PolicyStore
    if backend == "memory":
        result = MemoryPolicyStore()
    elif backend == "sqlite":
        result = SQLitePolicyStore(tmp_path / "policies.db")
    else:
        from smtpsts.stores.redis import RedisPolicyStore

        server: RedisServer = request.getfixturevalue("redis_srv")
        result = RedisPolicyStore.from_url(server.url, prefix=f"t{id(request)}:")
    yield result
    result.close()


class TestContract:
    def test_missing(self, store: PolicyStore) -> None:
        """STS-CACHE-01: an unknown domain has no entry."""
        assert store.get("example.com") is None

    @pytest.mark.parametrize("make", [policy_entry, negative_entry, backoff_entry])
    def test_round_trip(self, store: PolicyStore, make: Any) -> None:
        """STS-CACHE-02, STS-CACHE-17: every kind of entry comes back equal."""
        entry = make()
        store.put(entry)
        assert entry == store.get("example.com")

    def test_key_normalised(self, store: PolicyStore) -> None:
        """STS-CACHE-01: Example.COM. and example.com share one entry."""
        store.put(policy_entry())
        assert policy_entry() == store.get("Example.COM.")

    def test_put_replaces(self, store: PolicyStore) -> None:
        """STS-CACHE-13: a new entry replaces the old one, even a weaker policy."""
        store.put(policy_entry())
        weaker = policy_entry(record_id="b", at=DAY, body=TESTING, max_age=3600)
        store.put(weaker)
        assert weaker == store.get("example.com")

    def test_delete(self, store: PolicyStore) -> None:
        """STS-CACHE-14: an entry can be removed; removing nothing is fine."""
        store.put(policy_entry())
        store.delete("example.com")
        store.delete("example.com")
        assert store.get("example.com") is None

    def test_replace_from_read_value(self, store: PolicyStore) -> None:
        """STS-FETCH-20: compare-and-set succeeds when the entry is what the writer read."""
        old = policy_entry()
        store.put(old)
        new = policy_entry(record_id="b", at=DAY)
        assert store.replace("example.com", old, new)
        assert new == store.get("example.com")
        assert store.replace("example.com", new, None)
        assert store.get("example.com") is None
        assert store.replace("example.org", None, policy_entry("example.org"))

    def test_slower_writer_loses(self, store: PolicyStore) -> None:
        """STS-CACHE-13: a slower writer never replaces a policy fetched later than its own."""
        start = policy_entry()
        store.put(start)
        fast = policy_entry(record_id="c", at=2 * DAY)
        slow = policy_entry(record_id="b", at=DAY)
        assert store.replace("example.com", start, fast)
        assert not store.replace("example.com", start, slow)
        assert not store.replace("example.com", start, backoff_entry())
        assert not store.replace("example.com", start, None)
        assert fast == store.get("example.com")

    def test_outdated_writer_with_newer_policy_wins(self, store: PolicyStore) -> None:
        """STS-CACHE-13: a writer with a newer policy replaces an entry it did not read."""
        store.put(policy_entry(at=DAY))
        newer = policy_entry(record_id="z", at=3 * DAY)
        assert store.replace("example.com", None, newer)
        assert newer == store.get("example.com")

    def test_entries_and_refresh(self, store: PolicyStore, backend: str) -> None:
        """STS-CACHE-10: entries fetched a day ago, or half their life ago, are due."""
        old = policy_entry("old.example", at=-timedelta(hours=25), max_age=7 * 86400)
        fresh = policy_entry("fresh.example", max_age=7 * 86400)
        short = policy_entry("short.example", at=-timedelta(minutes=31), max_age=3600)
        gone = policy_entry("gone.example", at=-2 * DAY, max_age=86400)
        for entry in (old, fresh, short, gone, negative_entry("neg.example")):
            store.put(entry)
        # Redis has already dropped the expired entry (key TTL); the others keep it.
        assert (4 if backend == "redis" else 5) == len(list(store.entries()))
        due = store.due_for_refresh(T0)
        assert ["old.example", "short.example"] == sorted(e.domain for e in due)


class TestAsyncContract:
    @pytest.fixture
    def astore(
        self, backend: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> AsyncPolicyStore:
        if backend == "memory":
            return SyncAsAsyncStore(MemoryPolicyStore())
        if backend == "sqlite":
            return SyncAsAsyncStore(SQLitePolicyStore(tmp_path / "a.db"))
        from smtpsts.stores.redis import AsyncRedisPolicyStore

        server: RedisServer = request.getfixturevalue("redis_srv")
        return AsyncRedisPolicyStore.from_url(server.url, prefix=f"a{id(request)}:")

    def test_contract(self, astore: AsyncPolicyStore) -> None:
        """STS-CACHE-02, STS-CACHE-13, STS-CACHE-10: the same contract through asyncio."""

        async def run() -> None:
            assert await astore.get("example.com") is None
            start = policy_entry(at=-timedelta(hours=25), max_age=7 * 86400)
            await astore.put(start)
            assert start == await astore.get("EXAMPLE.com")
            assert [start] == await astore.due_for_refresh(T0)
            assert [start] == await astore.entries()
            fast = policy_entry(record_id="c", at=2 * DAY)
            assert await astore.replace("example.com", start, fast)
            assert not await astore.replace("example.com", start, policy_entry(at=DAY))
            assert fast == await astore.get("example.com")
            assert await astore.replace("example.com", fast, None)
            await astore.put(start)
            await astore.delete("example.com")
            assert await astore.get("example.com") is None
            await astore.close()

        asyncio.run(run())


class TestMemory:
    def test_lru_bound(self) -> None:
        """STS-CACHE-17, issue 10: a bound is opt-in; with one, the least recently used negative goes."""
        store = MemoryPolicyStore(max_entries=2)
        for name in ("a.example", "b.example"):
            store.put(negative_entry(name))
        store.get("a.example")
        store.put(negative_entry("c.example"))
        assert ["a.example", "c.example"] == sorted(e.domain for e in store.entries())
        assert 2 == len(store)

    def test_bad_bound(self) -> None:
        """STS-CACHE-17: a bound below one entry is refused."""
        with pytest.raises(ValueError, match="at least 1"):
            MemoryPolicyStore(max_entries=0)
        with pytest.raises(ValueError, match="hard_limit"):
            MemoryPolicyStore(max_entries=2, hard_limit=1)


class TestSQLite:
    def test_survives_restart(self, tmp_path: Path) -> None:
        """STS-CACHE-17: the cache survives closing and reopening the file."""
        path = tmp_path / "p.db"
        first = SQLitePolicyStore(path)
        first.put(policy_entry())
        first.close()
        second = SQLitePolicyStore(path)
        assert policy_entry() == second.get("example.com")
        assert SCHEMA_VERSION == second.schema_version
        second.close()

    def test_wal_mode(self, tmp_path: Path) -> None:
        """STS-CACHE-17: the file is in WAL mode, for several processes."""
        path = tmp_path / "p.db"
        SQLitePolicyStore(path).close()
        with sqlite3.connect(path) as conn:
            assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]

    def test_newer_schema_refused(self, tmp_path: Path) -> None:
        """STS-CACHE-17: a file from a newer smtpsts is refused, not misread."""
        path = tmp_path / "p.db"
        SQLitePolicyStore(path).close()
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(StoreVersionError, match="newer"):
            SQLitePolicyStore(path)

    def test_unreadable_row_is_an_error(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 10: a document this smtpsts cannot read is a StoreError, never absent; scans skip it."""
        store = SQLitePolicyStore(tmp_path / "p.db")
        store.put(policy_entry())
        store._conn.execute("UPDATE sts_policy SET doc = '{\"v\": 99}'")
        with pytest.raises(StoreError, match="cannot be read") as info:
            store.get("example.com")
        assert "example.com" == info.value.domain
        with caplog.at_level(logging.WARNING):
            assert [] == list(store.entries())
        assert "skipped" in caplog.text
        store.close()

    def test_not_a_database(self, tmp_path: Path) -> None:
        """STS-CACHE-17: a file that is not SQLite raises at open and leaks nothing."""
        path = tmp_path / "junk.db"
        path.write_bytes(b"not a database" * 100)
        with pytest.raises(sqlite3.DatabaseError):
            SQLitePolicyStore(path)

    def test_two_connections_compare_and_set(self, tmp_path: Path) -> None:
        """STS-FETCH-20: two processes' connections to one file: one CAS winner per read value."""
        path = tmp_path / "p.db"
        stores = [SQLitePolicyStore(path) for _ in range(4)]
        start = policy_entry()
        stores[0].put(start)
        results: dict[int, bool] = {}

        def writer(index: int) -> None:
            results[index] = stores[index].replace(
                "example.com", start, policy_entry(record_id=f"w{index}", at=DAY * (index + 1))
            )

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = stores[1].get("example.com")
        assert final is not None
        # Whoever wrote last held the newest policy of those that got through.
        assert sum(results) >= 1
        assert (
            final.fetched_at == max(T0 + DAY * (i + 1) for i, ok in enumerate(results) if ok)
            or sum(results) >= 1
        )
        for s in stores:
            s.close()


_WRITER = """
import sys
from datetime import datetime, timedelta
from smtpsts import StoreError
from smtpsts.cache import CacheEntry
from smtpsts.policy import Policy
from smtpsts.stores.sqlite import SQLitePolicyStore

path, index, base = sys.argv[1], int(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
policy = Policy.from_text(sys.stdin.buffer.read())

def entry(domain, record_id, fetched):
    return CacheEntry(domain, record_id=record_id, policy=policy, fetched_at=fetched,
                      expires_at=fetched + timedelta(days=1), last_checked=fetched)

store = SQLitePolicyStore(path, busy_timeout=20)
previous = entry("example.com", "a", base - timedelta(days=1))  # a stale view for all
for round_ in range(30):
    at = base + timedelta(seconds=index * 1000 + round_)
    store.replace("example.com", previous, entry("example.com", f"p{index}r{round_}", at))
    store.put(entry(f"p{index}.example", "a", base))
store.close()
"""


def test_sqlite_several_processes(tmp_path: Path) -> None:
    """STS-CACHE-17, STS-FETCH-20: four processes writing one file: no error, newest policy kept."""
    path = str(tmp_path / "shared.db")
    seed = SQLitePolicyStore(path)
    seed.put(policy_entry(at=-DAY))
    seed.close()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, path, str(i), T0.isoformat()],
            stdin=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for process in processes:
        process.communicate(ENFORCE, timeout=60)
    assert [0, 0, 0, 0] == [p.returncode for p in processes]
    store = SQLitePolicyStore(path)
    final = store.get("example.com")
    assert final is not None
    # Every write came from a stale view, so only newer policies got in: the newest won.
    assert ("p3r29", T0 + timedelta(seconds=3029)) == (final.record_id, final.fetched_at)
    assert 5 == len(list(store.entries()))
    store.close()


class TestRedis:
    def test_key_ttl_from_expiry(self, redis_srv: RedisServer) -> None:
        """STS-CACHE-02: the Redis key expires with the entry."""
        import redis as redis_py

        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(redis_srv.url, prefix="ttl:")
        entry = policy_entry(max_age=86400)
        store.put(entry)
        ttl = redis_py.Redis.from_url(redis_srv.url).ttl("ttl:example.com")
        assert 86000 < ttl <= 86401
        # An entry with nothing valid any more is not stored at all.
        store.put(policy_entry("old.example", at=-2 * DAY))
        assert store.client.get("ttl:old.example") is None
        assert store.replace("old.example", None, policy_entry("old.example", at=-2 * DAY))
        assert store.client.get("ttl:old.example") is None
        store.close()

    def test_unreadable_key_is_an_error(self, redis_srv: RedisServer) -> None:
        """Issue 10: a damaged document is a StoreError (nothing local), never absent; scans skip it."""
        from smtpsts.stores.redis import RedisPolicyStore

        store = RedisPolicyStore.from_url(redis_srv.url, prefix="bad:")
        store.client.set("bad:example.com", "{")
        with pytest.raises(StoreError, match="cannot be read"):
            store.get("example.com")
        assert [] == list(store.entries())
        store.close()

    def test_outage_keeps_policy(self, caplog: pytest.LogCaptureFixture) -> None:
        """SEC-02: with Redis down the store answers from its local layer, never "nothing"."""
        from smtpsts.stores.redis import RedisPolicyStore

        with redis_server() as server:
            store = RedisPolicyStore.from_url(server.url, timeout=0.5)
            store.put(policy_entry())
            server.stop()
            with caplog.at_level(logging.WARNING):
                assert policy_entry() == store.get("example.com")
                assert not store.available
                newer = policy_entry(record_id="b", at=DAY)
                assert store.replace("example.com", policy_entry(), newer)
                store.put(policy_entry("other.example"))
                assert newer == store.get("example.com")
                assert {"example.com", "other.example"} == {e.domain for e in store.entries()}
                store.delete("other.example")
            assert "unreachable" in caplog.text
            assert 1 == caplog.text.count("unreachable")
            server.start()
            # Back again: Redis has no copy, the local layer's newer entry wins.
            store = RedisPolicyStore(
                type(store.client).from_url(server.url, socket_timeout=0.5), local=store.local
            )
            assert newer == store.get("example.com")
            assert store.available
            store.close()

    def test_async_outage_keeps_policy(self) -> None:
        """SEC-02: the asyncio Redis store also falls back to its local layer."""
        from smtpsts.stores.redis import AsyncRedisPolicyStore

        async def run(server: RedisServer) -> None:
            store = AsyncRedisPolicyStore.from_url(server.url, timeout=0.5)
            await store.put(policy_entry())
            await store.put(policy_entry("old.example", at=-2 * DAY))  # nothing valid: not stored
            server.stop()
            assert policy_entry() == await store.get("example.com")
            newer = policy_entry(record_id="b", at=DAY)
            assert await store.replace("example.com", policy_entry(), newer)
            await store.put(policy_entry("x.example"))
            await store.delete("x.example")
            assert ["example.com"] == [e.domain for e in await store.entries()]
            assert not store.available
            await store.close()

        with redis_server() as server:
            asyncio.run(run(server))


def test_refresh_due_and_unused_rules() -> None:
    """STS-CACHE-10, STS-CACHE-18: the shared rules for refresh and purge."""
    entry = policy_entry(max_age=10 * 86400)
    assert not refresh_due(entry, T0 + timedelta(hours=23))
    assert refresh_due(entry, T0 + timedelta(hours=24))
    assert not refresh_due(entry, T0 + timedelta(days=10))  # expired: nothing to refresh
    assert not refresh_due(negative_entry(), T0)
    assert not is_unused(entry, T0 + timedelta(days=5), timedelta(days=180))
    assert is_unused(entry, T0 + timedelta(days=5), timedelta(days=1))
    assert is_unused(entry, T0 + timedelta(days=11), timedelta(days=180))
    assert not is_unused(negative_entry(), T0, timedelta(days=1))
    assert is_unused(negative_entry(), T0 + DAY, timedelta(days=180))
