"""
The Redis policy store's conversations under injected Redis failures (issue 11).

Both Redis stores run one set of conversations (smtpsts.stores._redis_core);
these tests run them against a real redis-server and make one chosen command
fail, to pin that a failure anywhere in a multi-command operation is an
outage handled as issues 10 and 17 say: the live local policy still answers
(RFC 8461 §10.2, SEC-54), the store reports itself unavailable, and the
interrupted repair starts over after the next recovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import redis

from fakes import ENFORCE
from redisserver import RedisServer, redis_server
from smtpsts.cache import CacheEntry
from smtpsts.io._drive import adrive, drive
from smtpsts.policy import Policy
from smtpsts.stores._redis_core import _Call, _Command, _Commit, _Conversation
from smtpsts.stores.redis import AsyncRedisPolicyStore, RedisPolicyStore

T = TypeVar("T")
T0 = datetime.now(UTC).replace(microsecond=0)
Fails = Callable[[_Command], bool]


def policy(domain: str = "example.com") -> CacheEntry:
    return CacheEntry(
        domain,
        record_id="a",
        policy=Policy.from_text(ENFORCE),
        fetched_at=T0,
        expires_at=T0 + timedelta(days=1),
        last_checked=T0,
    )


def negative(domain: str) -> CacheEntry:
    return CacheEntry(domain, negative_until=T0 + timedelta(seconds=300))


def never(command: _Command) -> bool:
    return False


def watch(command: _Command) -> bool:
    return isinstance(command, _Call) and "watch" == command.method


def _injected(fails: Fails, command: _Command) -> None:
    if fails(command):
        raise redis.ConnectionError(f"injected failure of {command!r}")


class FlakyStore(RedisPolicyStore):
    """A sync store whose commands fail when ``fails`` says so."""

    fails: Fails = staticmethod(never)

    def _drive(self, conversation: _Conversation[T]) -> T:
        with self.client.pipeline() as pipe:

            def perform(command: _Command) -> Any:
                _injected(self.fails, command)
                return command.call(pipe if command.on_pipeline else self.client)

            return drive(conversation, perform)


class AsyncFlakyStore(AsyncRedisPolicyStore):
    """An asyncio store whose commands fail when ``fails`` says so."""

    fails: Fails = staticmethod(never)

    async def _drive(self, conversation: _Conversation[T]) -> T:
        async with self.client.pipeline() as pipe:

            async def perform(command: _Command) -> Any:
                _injected(self.fails, command)
                return await command.call(pipe if command.on_pipeline else self.client)

            return await adrive(conversation, perform)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


def test_get_write_back_failure_answers_local(server: RedisServer) -> None:
    """Issue 17, SEC-54: a get whose write-back fails still answers the live local policy; Redis is marked down."""
    store = FlakyStore.from_url(server.url, timeout=0.5)
    store.put(policy())
    store.client.flushdb()  # Redis restarted empty
    store.fails = watch
    assert policy() == store.get("example.com")
    assert False is store.available
    assert None is store.client.get("smtpsts:sts:example.com")
    store.close()


def test_entries_write_back_failure_lists_local(server: RedisServer) -> None:
    """Issue 17: a scan whose write-back fails still lists the live local policy; Redis is marked down."""
    store = FlakyStore.from_url(server.url, timeout=0.5)
    store.put(policy())
    store.client.flushdb()
    store.fails = watch
    assert [policy()] == list(store.entries())
    assert False is store.available
    store.close()


def test_repair_failure_starts_over(server: RedisServer) -> None:
    """Issue 17: a repair that fails midway marks Redis down and drops its queue; the next recovery repairs."""
    store = FlakyStore.from_url(server.url, timeout=0.5)
    store.put(policy("a.example"))
    store.fails = lambda command: True
    store.put(negative("n.example"))  # an outage
    assert False is store.available
    store.client.flushdb()  # ... after which Redis is back, empty
    store.fails = lambda command: isinstance(command, _Commit) and command.key.endswith("a.example")
    store.put(negative("m.example"))  # succeeds; the repair's write of a.example fails
    assert False is store.available
    assert 0 == store.repair_pending
    assert None is store.client.get("smtpsts:sts:a.example")
    store.fails = never
    store.put(negative("o.example"))  # recovered again: the repair writes a.example back
    assert (True, 0) == (store.available, store.repair_pending)
    assert policy("a.example").to_json().encode() == store.client.get("smtpsts:sts:a.example")
    store.close()


def test_async_get_write_back_failure_answers_local(server: RedisServer) -> None:
    """Issue 17, SEC-54 (asyncio): the same conversation; a failed write-back still answers the local policy."""

    async def run() -> None:
        store = AsyncFlakyStore.from_url(server.url, timeout=0.5)
        await store.put(policy())
        await store.client.flushdb()
        store.fails = watch
        assert policy() == await store.get("example.com")
        assert False is store.available
        store.fails = never
        assert [policy()] == await store.entries()  # back: written again
        assert (True, 0) == (store.available, store.repair_pending)
        assert None is not await store.client.get("smtpsts:sts:example.com")
        await store.close()

    asyncio.run(run())
