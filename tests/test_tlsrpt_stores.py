"""Persistent TLS-RPT collection: the row model, the sqlite store and a real redis-server."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisserver import RedisServer, redis_server
from smtpsts.exceptions import UsageError
from smtpsts.stores.sqlite import StoreVersionError
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore
from smtpsts.tlsrpt import Aggregator, PolicyInfo, ResultType, SessionResult
from smtpsts.tlsrpt.collect import (
    Batch,
    CountRow,
    RowFormatError,
    fold,
    result_from_key,
    result_key,
    utc_day,
)
from smtpsts.tlsrpt.session import SessionFailure

DAY = date(2024, 3, 5)
AT = datetime(2024, 3, 5, 12, tzinfo=UTC)
ORG = {"organization_name": "Sender Inc", "contact_info": "tlsrpt@sender.example"}

STS = PolicyInfo(
    "sts",
    "recipient.example",
    ("version: STSv1", "mode: enforce"),
    ("mx.recipient.example", "*.recipient.example"),
)
NONE = PolicyInfo.no_policy_found("other.example")
TLSA = PolicyInfo("tlsa", "mx.recipient.example", ("3 1 1 ABCD",))

OK = SessionResult.succeeded(STS, receiving_mx_hostname="mx.recipient.example")
EXPIRED = SessionResult.failed(
    STS,
    ResultType.CERTIFICATE_EXPIRED,
    sending_mta_ip="192.0.2.1",
    receiving_mx_hostname="mx.recipient.example",
    receiving_mx_helo="mx.recipient.example",
    receiving_ip="2001:db8::25",
    failure_reason_code="expired",
    additional_information="https://sender.example/why",
    extra_failures=(SessionFailure(ResultType.CERTIFICATE_HOST_MISMATCH, "name"),),
)
NO_TLS = SessionResult.failed(NONE, ResultType.STARTTLS_NOT_SUPPORTED, receiving_ip="198.51.100.1")
DANE = SessionResult.failed(TLSA, "tlsa-invalid", report_domain="recipient.example")
REPORT_MAIL = SessionResult.succeeded(NONE, report_delivery=True)
SAMPLES = [OK, EXPIRED, NO_TLS, DANE]


def reports(agg: Aggregator, day: date = DAY) -> list[str]:
    return [r.to_json() for r in agg.reports(day, **ORG)]


# --------------------------------------------------------------------------- row model

domains = st.sampled_from(["a.example", "xn--bcher-kva.example", "mx.b.example"])
text = st.none() | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
).filter(str.strip)
ips = st.none() | st.sampled_from(["192.0.2.1", "2001:db8::1"])
policies = st.one_of(
    domains.map(PolicyInfo.no_policy_found),
    st.builds(
        PolicyInfo,
        st.just("sts"),
        domains,
        st.lists(st.text(max_size=5), max_size=2).map(tuple),
        st.lists(domains, max_size=2).map(tuple),
    ),
    st.builds(
        PolicyInfo, st.just("tlsa"), domains, st.lists(st.text(max_size=5), max_size=2).map(tuple)
    ),
)


@st.composite
def results(draw: st.DrawFn) -> SessionResult:
    policy = draw(policies)
    common: dict[str, Any] = {
        "sending_mta_ip": draw(ips),
        "receiving_mx_hostname": draw(st.none() | domains),
        "receiving_mx_helo": draw(text),
        "receiving_ip": draw(ips),
        "additional_information": draw(
            st.none() | st.sampled_from(["https://s.example/why", "urn:x:y"])
        ),
        "report_domain": draw(st.none() | domains),
    }
    if draw(st.booleans()):
        return SessionResult.succeeded(policy, **common)
    extras = draw(
        st.lists(st.builds(SessionFailure, st.sampled_from(list(ResultType)), text), max_size=2)
    )
    return SessionResult.failed(
        policy,
        draw(st.sampled_from(list(ResultType))),
        failure_reason_code=draw(text),
        extra_failures=extras,
        **common,
    )


class TestResultKey:
    @settings(max_examples=200)
    @given(results())
    def test_round_trip(self, result: SessionResult) -> None:
        """RPT-AGG-11: a stored key gives back the very same result, and equal results give equal keys."""
        key = result_key(result)
        assert result == result_from_key(key)
        assert key == result_key(result_from_key(key))

    @pytest.mark.parametrize("result", SAMPLES)
    def test_samples(self, result: SessionResult) -> None:
        """The sample results survive the key round-trip."""
        assert result == result_from_key(result_key(result))

    @pytest.mark.parametrize(
        ("key", "why"),
        [
            ("{", "not JSON"),
            ("[]", "not a format-1 key"),
            ('{"a": 1}', "not a format-1 key"),
            (json.dumps([2, *json.loads(result_key(OK))[1:]]), "not a format-1 key"),
            (
                json.dumps(
                    [
                        1,
                        "bogus",
                        "a.example",
                        [],
                        [],
                        1,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        [],
                        None,
                    ]
                ),
                "bogus",
            ),
            (
                json.dumps(
                    [
                        1,
                        "sts",
                        "a.example",
                        [],
                        [],
                        1,
                        None,
                        "not-an-ip",
                        None,
                        None,
                        None,
                        None,
                        None,
                        [],
                        None,
                    ]
                ),
                "not an IP",
            ),
            (
                json.dumps(
                    [
                        1,
                        "sts",
                        "a.example",
                        [],
                        [],
                        0,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        [],
                        None,
                    ]
                ),
                "needs a result_type",
            ),
            (
                json.dumps(
                    [
                        1,
                        "sts",
                        "a.example",
                        5,
                        [],
                        1,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        [],
                        None,
                    ]
                ),
                "arrays of strings",
            ),
        ],
    )
    def test_unreadable(self, key: str, why: str) -> None:
        """A damaged or foreign key raises RowFormatError naming the problem."""
        with pytest.raises(RowFormatError) as info:
            result_from_key(key)
        assert why in str(info.value)
        assert "bad-row" == info.value.reason


class TestUTCDay:
    def test_utc_day(self) -> None:
        """RPT-AGG-02: the UTC day counts, not the local one."""
        east = timezone(timedelta(hours=5))
        assert date(2024, 3, 4) == utc_day(datetime(2024, 3, 5, 4, 59, tzinfo=east))
        assert date(2024, 3, 5) == utc_day(datetime(2024, 3, 5, 23, 59, 59, 900000, tzinfo=UTC))

    def test_naive(self) -> None:
        """A naive time is a usage error."""
        with pytest.raises(UsageError):
            utc_day(datetime(2024, 3, 5))


class TestBatch:
    def test_counts_per_day_and_result(self) -> None:
        """RPT-AGG-02: a batch counts per UTC day and distinct result."""
        batch = Batch()
        batch.add(OK, AT)
        batch.add(OK, AT + timedelta(hours=1), 2)
        batch.add(OK, datetime(2024, 3, 6, 0, 30, tzinfo=timezone(timedelta(hours=1))))
        batch.add(EXPIRED, AT)
        assert 2 == len(batch)  # 00:30+01:00 on the 6th is the 5th in UTC
        assert 5 == batch.sessions
        assert [
            CountRow(DAY, "recipient.example", result_key(OK), 4),
            CountRow(DAY, "recipient.example", result_key(EXPIRED), 1),
        ] == list(batch.rows())

    def test_report_delivery_not_counted(self) -> None:
        """RPT-AGG-10: the session that delivered a report is not counted."""
        batch = Batch()
        batch.add(REPORT_MAIL, AT)
        assert not batch
        assert 0 == batch.sessions

    def test_bad_count(self) -> None:
        """A count below one is a usage error."""
        with pytest.raises(UsageError):
            Batch().add(OK, AT, 0)

    def test_clear_bounds_key_cache(self) -> None:
        """Clearing keeps cached keys until the cache bound is passed."""

        class Small(Batch):
            key_cache_size = 1

        batch = Small()
        batch.add(OK, AT)
        list(batch.rows())
        batch.clear()
        assert not batch
        assert 1 == len(batch._keys)
        batch.add(OK, AT)
        batch.add(EXPIRED, AT)
        list(batch.rows())
        batch.clear()
        assert 0 == len(batch._keys)

    def test_fold_matches_memory(self) -> None:
        """RPT-AGG-03, RPT-AGG-06, RPT-AGG-07: folding stored rows builds the reports the in-memory aggregator builds."""
        batch, agg = Batch(), Aggregator()
        for i, r in enumerate(SAMPLES * 3):
            batch.add(r, AT, i + 1)
            agg.add(r, AT, i + 1)
        folded = fold((row.day, row.key, row.count) for row in batch.rows())
        assert reports(agg) == reports(folded)
        assert reports(agg) == reports(
            fold([(r.day, r.key, r.count) for r in batch.rows()], Aggregator())
        )


# --------------------------------------------------------------------------- stores


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Any] = []
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def make(**options: Any) -> Any:
        if backend == "sqlite":
            store: Any = SQLiteTLSRPTStore(tmp_path / "tlsrpt.db", **options)
        else:
            from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

            server: RedisServer = request.getfixturevalue("redis_srv")
            store = RedisTLSRPTStore(server.url, prefix=prefix, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


class TestStoreContract:
    def test_add_flush_read(self, make_store: Any) -> None:
        """RPT-AGG-03, RPT-AGG-02: written counts come back per day and domain and build the in-memory reports."""
        store, agg = make_store(), Aggregator()
        for i, r in enumerate(SAMPLES):
            store.add(r, AT, i + 1)
            agg.add(r, AT, i + 1)
        store.add(OK, AT + timedelta(days=1))
        assert store.flush()
        assert not store.flush()  # nothing left
        assert [DAY, DAY + timedelta(days=1)] == store.days()
        assert ["other.example", "recipient.example"] == store.domains(DAY)
        assert reports(agg) == reports(store.aggregator(DAY))
        assert 3 == sum(r.count for r in store.rows(DAY, "Other.Example."))

    def test_batch_size_autoflush(self, make_store: Any) -> None:
        """Issue 5 item 4: a full batch is written without an explicit flush."""
        store = make_store(batch_size=3)
        reader = make_store()
        store.add(OK, AT)
        store.add(OK, AT)
        assert [] == reader.rows(DAY)
        store.add(EXPIRED, AT)
        assert 3 == sum(r.count for r in reader.rows(DAY))

    def test_replayed_batch_not_counted(self, make_store: Any) -> None:
        """Issue 5 item 4: a batch id written before is skipped, so a replay never double-counts."""
        store = make_store()
        store.add(OK, AT, 5)
        assert store.flush("feed:0")
        store.add(OK, AT, 5)
        assert not store.flush("feed:0")
        assert store.has_batch("feed:0")
        assert not store.has_batch("feed:1")
        assert [5] == [r.count for r in store.rows(DAY)]
        rows = [CountRow(DAY, "recipient.example", result_key(OK), 2)]
        assert store.write_batch(rows, "feed:1")
        assert not store.write_batch(rows, "feed:1")
        assert [7] == [r.count for r in store.rows(DAY)]

    def test_report_delivery_not_counted(self, make_store: Any) -> None:
        """RPT-AGG-10: sessions that delivered a report are not stored."""
        store = make_store()
        store.add(REPORT_MAIL, AT)
        assert not store.flush()
        assert [] == store.days()

    def test_pending_and_mark(self, make_store: Any) -> None:
        """RPT-AGG-15: only finished days are pending; a (day, domain) is reported once in the whole fleet."""
        store, other = make_store(), make_store()
        store.add(OK, AT)
        store.add(NO_TLS, AT)
        store.add(OK, AT + timedelta(days=1))
        store.flush()
        today = DAY + timedelta(days=1)
        assert [(DAY, "other.example"), (DAY, "recipient.example")] == store.pending(today)
        assert store.mark_reported(DAY, "other.example", AT + timedelta(days=1))
        assert not other.mark_reported(DAY, "other.example", AT + timedelta(days=1))
        assert [(DAY, "recipient.example")] == other.pending(today)
        assert [(DAY, "recipient.example"), (today, "recipient.example")] == store.pending(
            today + timedelta(days=1)
        )

    def test_unreadable_row_skipped(
        self, make_store: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A row written by a newer version is skipped with a warning, the rest is reported."""
        store = make_store()
        store.write_batch([CountRow(DAY, "recipient.example", "[9]", 1)], "x")
        store.add(OK, AT)
        store.flush()
        with caplog.at_level(logging.WARNING):
            agg = store.aggregator(DAY)
        assert "skipping a row" in caplog.text
        assert (
            1
            == agg.report("recipient.example", DAY, **ORG)
            .policies[0]
            .summary.total_successful_session_count
        )  # type: ignore[union-attr]

    def test_naive_time(self, make_store: Any) -> None:
        """A naive session time is a usage error."""
        with pytest.raises(UsageError):
            make_store().add(OK, datetime(2024, 3, 5))

    def test_bad_batch_size(self, make_store: Any) -> None:
        """batch_size must be positive."""
        with pytest.raises(UsageError):
            make_store(batch_size=0)

    def test_close_flushes(self, make_store: Any) -> None:
        """Closing writes what is counted."""
        store = make_store()
        with store:
            store.add(OK, AT)
        assert 1 == sum(r.count for r in make_store().rows(DAY))


class TestSQLiteStore:
    def test_purge(self, tmp_path: Path) -> None:
        """Issue 5 item 4: counts and batch ids are purged keep_days after the day was reported."""
        with SQLiteTLSRPTStore(tmp_path / "t.db") as store:
            store.add(OK, AT)
            store.add(NO_TLS, AT)
            store.flush("b1")
            now = datetime.now(UTC)
            store.mark_reported(DAY, "recipient.example", now)
            assert 0 == store.purge(now + timedelta(days=6), keep_days=7)
            assert 1 == store.purge(now + timedelta(days=8), keep_days=7)
            assert ["other.example"] == store.domains(DAY)
            assert not store.has_batch("b1")
            assert [(DAY, "other.example")] == store.pending(DAY + timedelta(days=1))

    def test_newer_schema_refused(self, tmp_path: Path) -> None:
        """A file written by a newer smtpsts is refused, not misread."""
        SQLiteTLSRPTStore(tmp_path / "t.db").close()
        with sqlite3.connect(tmp_path / "t.db") as conn:
            conn.execute("UPDATE tlsrpt_schema SET version = 99")
        conn.close()
        with pytest.raises(StoreVersionError):
            SQLiteTLSRPTStore(tmp_path / "t.db")

    def test_shares_file_with_policy_store(self, tmp_path: Path) -> None:
        """The collection store and the policy store can live in one file."""
        from smtpsts.stores.sqlite import SQLitePolicyStore

        SQLitePolicyStore(tmp_path / "t.db").close()
        with SQLiteTLSRPTStore(tmp_path / "t.db") as store:
            store.add(OK, AT)
        SQLitePolicyStore(tmp_path / "t.db").close()
        with SQLiteTLSRPTStore(tmp_path / "t.db") as store:
            assert "ok" == store.integrity_check()
            assert [DAY] == store.days()

    def test_bad_batch_id(self, tmp_path: Path) -> None:
        """A batch id must be 1-200 characters."""
        with SQLiteTLSRPTStore(tmp_path / "t.db") as store, pytest.raises(UsageError):
            store.write_batch([], "")

    def test_failed_write_rolls_back(self, tmp_path: Path) -> None:
        """A write that fails half-way leaves nothing behind, not even its batch id."""

        def rows() -> Iterator[CountRow]:
            yield CountRow(DAY, "recipient.example", result_key(OK), 1)
            raise RuntimeError("boom")

        with SQLiteTLSRPTStore(tmp_path / "t.db") as store:
            with pytest.raises(RuntimeError):
                store.write_batch(rows(), "b")
            assert not store.has_batch("b")
            assert [] == store.days()

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not a database raises sqlite3.Error and closes the connection."""
        (tmp_path / "junk.db").write_bytes(b"not sqlite" * 100)
        with pytest.raises(sqlite3.DatabaseError):
            SQLiteTLSRPTStore(tmp_path / "junk.db")

    def test_threads(self, tmp_path: Path) -> None:
        """Several threads adding through one store lose no count."""
        store = SQLiteTLSRPTStore(tmp_path / "t.db", batch_size=7)

        def work() -> None:
            for _ in range(500):
                store.add(OK, AT)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.close()
        with SQLiteTLSRPTStore(tmp_path / "t.db") as again:
            assert [2000] == [r.count for r in again.rows(DAY)]


class TestRedisStore:
    def test_fleet_adds_atomically(self, redis_srv: RedisServer) -> None:
        """Issue 5 item 4: several MTAs add to the same day's counts at once without losing updates."""
        from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

        prefix = f"fleet{uuid.uuid4().hex[:6]}:"

        def mta(n: int) -> None:
            with RedisTLSRPTStore(redis_srv.url, prefix=prefix, batch_size=10) as store:
                for i in range(300):
                    store.add(OK if i % 3 else EXPIRED, AT)
                    store.add(NO_TLS, AT, n)

        threads = [threading.Thread(target=mta, args=(n,)) for n in (1, 2, 3, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reader = RedisTLSRPTStore(redis_srv.url, prefix=prefix)
        counts = {(r.domain, r.key): r.count for r in reader.rows(DAY)}
        assert 4 * 200 == counts["recipient.example", result_key(OK)]
        assert 4 * 100 == counts["recipient.example", result_key(EXPIRED)]
        assert 300 * (1 + 2 + 3 + 4) == counts["other.example", result_key(NO_TLS)]

    def test_expiry_and_purge(self, redis_srv: RedisServer) -> None:
        """Issue 5 item 4: counts expire keep_days after reporting; purge tidies the indexes."""
        from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

        store = RedisTLSRPTStore(redis_srv.url, prefix=f"exp{uuid.uuid4().hex[:6]}:", keep_days=0)
        store.add(OK, AT)
        store.add(NO_TLS, AT)
        store.flush()
        assert store.mark_reported(DAY, "recipient.example", AT)
        assert 1 == store.purge(AT)
        assert ["other.example"] == store.domains(DAY)
        assert store.mark_reported(DAY, "other.example", AT)
        assert 1 == store.purge(AT)
        assert [] == store.days()

    def test_failed_write_keeps_batch(self, redis_srv: RedisServer) -> None:
        """A flush that Redis refuses keeps the batch for the next flush."""
        import redis

        from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

        server = RedisServer(redis_srv.binary)
        server.start()
        store = RedisTLSRPTStore(server.url, prefix="down:")
        store.add(OK, AT, 4)
        server.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            store.flush()
        server.start()
        store.client = redis.Redis.from_url(server.url)
        store._add_script = store.client.register_script(store._add_script.script)
        assert store.flush()
        assert [4] == [r.count for r in store.rows(DAY)]
        server.close()

    def test_lost_reply_not_counted_twice(self, redis_srv: RedisServer) -> None:
        """Issue 5 item 4: a flush whose reply is lost is retried under the same batch id, so it counts once."""
        from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore

        store = RedisTLSRPTStore(redis_srv.url, prefix=f"lost{uuid.uuid4().hex[:6]}:")
        real = store._add_script
        calls: list[str] = []

        def flaky(*, keys: list[str], args: list[Any]) -> Any:
            calls.append(keys[0])
            done = real(keys=keys, args=args)
            if len(calls) == 1:
                raise ConnectionError("reply lost")  # the script did run
            return done

        store._add_script = flaky
        store.add(OK, AT, 3)
        with pytest.raises(ConnectionError):
            store.flush()
        assert not store.flush()  # recognised as a replay
        assert calls[0] == calls[1]
        assert [3] == [r.count for r in store.rows(DAY)]


def test_async_writer_shares_the_store(redis_srv: RedisServer) -> None:
    """Issue 5 item 4: an asyncio MTA adds batches to the same day's counts as sync writers; the sync reader sees both."""
    import asyncio

    import redis.asyncio

    from smtpsts.stores.tlsrpt_redis import AsyncRedisTLSRPTStore, RedisTLSRPTStore

    prefix = f"async{uuid.uuid4().hex[:6]}:"

    async def mta() -> None:
        client = redis.asyncio.Redis.from_url(redis_srv.url)
        writer = AsyncRedisTLSRPTStore(client, prefix=prefix, batch_size=4)
        for _ in range(10):
            await writer.add(OK, AT)
        await writer.add(OK, AT)
        assert await writer.flush("mta1:0")
        await writer.add(OK, AT)
        assert not await writer.flush("mta1:0")  # a replay
        empty = AsyncRedisTLSRPTStore(redis_srv.url, prefix=prefix)
        assert not await empty.flush()
        await empty.client.aclose()
        await writer.aclose()
        await client.aclose()

    asyncio.run(mta())
    with RedisTLSRPTStore(redis_srv.url, prefix=prefix) as sync:
        sync.add(OK, AT, 5)
    reader = RedisTLSRPTStore(redis_srv.url, prefix=prefix)
    assert [16] == [r.count for r in reader.rows(DAY)]
    with pytest.raises(UsageError):
        AsyncRedisTLSRPTStore(redis_srv.url, batch_size=0)
