"""
TLS-RPT session counts shared through Redis, for a fleet of MTAs (extra ``redis``).

How the fleet store works
-------------------------
Every MTA of a fleet counts its sessions in memory (a
:class:`~smtpsts.tlsrpt.collect.Batch`) and adds each full batch to Redis
with one Lua script, which Redis runs atomically: the script first sets the
batch's marker key with ``SET NX`` and, only if it was new, adds every
counter with ``HINCRBY``. Several MTAs therefore add to the same day's
counts without losing an update, and a replayed batch (same id) is never
counted twice. Keys, with the default prefix ``smtpsts:tlsrpt:``:

* ``...c:<day>:<domain>``: hash, :func:`~smtpsts.tlsrpt.collect.result_key`
  -> count;
* ``...d:<day>``: set of the report domains of a day; ``...days``: set of days;
* ``...r:<day>``: hash, domain -> Unix time the report was handed on;
* ``...b:<batch id>``: batch marker, expiring after ``batch_ttl``.

The counts of a (day, domain) expire ``keep_days`` after
:meth:`RedisTLSRPTStore.mark_reported`, so Redis purges them itself;
:meth:`RedisTLSRPTStore.purge` tidies the indexes. The script builds key names from its arguments,
so this store needs a single Redis (or Valkey) server, not a cluster.

:class:`AsyncRedisTLSRPTStore` is the writer side for asyncio MTAs (it
counts in memory and awaits Redis only to write a batch); the sender reads
with the sync store.

``redis`` is imported when a store is created; ``import smtpsts`` never does.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Generator, Iterable
from datetime import date, datetime
from typing import Any, ClassVar, Final, Self

import attrs

from smtpsts._names import to_alabel
from smtpsts.exceptions import UsageError
from smtpsts.io._drive import adrive, drive
from smtpsts.stores._tlsrpt_rows import aggregate_rows
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.collect import Batch, CountRow
from smtpsts.tlsrpt.session import SessionResult

__all__ = ["DEFAULT_PREFIX", "AsyncRedisTLSRPTStore", "RedisTLSRPTStore"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "smtpsts:tlsrpt:"
"""Key prefix of the store."""

_DAY_SECONDS: Final = 86400

# KEYS[1] = batch marker. ARGV = prefix, marker ttl, then (day, domain, key, count)*.
_ADD_BATCH: Final = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  return 0
end
local p = ARGV[1]
for i = 3, #ARGV, 4 do
  local day, domain = ARGV[i], ARGV[i + 1]
  redis.call('HINCRBY', p .. 'c:' .. day .. ':' .. domain, ARGV[i + 2], tonumber(ARGV[i + 3]))
  redis.call('SADD', p .. 'd:' .. day, domain)
  redis.call('SADD', p .. 'days', day)
end
return 1
"""

# ARGV = prefix, day, domain, now (Unix seconds), keep (seconds).
_MARK: Final = """
local p, day, domain = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HSETNX', p .. 'r:' .. day, domain, ARGV[4]) == 0 then
  return 0
end
local keep = tonumber(ARGV[5])
redis.call('EXPIRE', p .. 'c:' .. day .. ':' .. domain, keep)
redis.call('EXPIRE', p .. 'r:' .. day, keep + 86400)
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@attrs.frozen
class _AddBatch:
    # Run the batch script once: its keys and arguments.
    keys: list[str]
    args: list[str | int]


class _BatchWriter:
    # The writing side both stores share: count in memory, then write the
    # batch with one script run (a conversation yielding _AddBatch, run by
    # drive() or adrive() with the client's registered script).

    _client_module: ClassVar[str]

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        batch_size: int = 1000,
        batch_ttl: int = 8 * _DAY_SECONDS,
        keep_days: int = 7,
    ) -> None:
        if batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        if isinstance(client, str):  # redis-py is optional: imported when a store is made
            client = importlib.import_module(self._client_module).Redis.from_url(client)
        self.client: Any = client
        self.prefix = prefix
        self.batch_size = batch_size
        self.batch_ttl = batch_ttl
        self.keep_days = keep_days
        self._batch = Batch()
        self._batch_id: str | None = None
        self._add_script = self.client.register_script(_ADD_BATCH)
        self._mark_script = self.client.register_script(_MARK)  # used by the reader

    def _count(self, result: SessionResult, at: datetime, count: int) -> bool:
        # Count a session; whether the batch is now full.
        self._batch.add(result, at, count)
        return self._batch.sessions >= self.batch_size

    def _writing(self, rows: Iterable[CountRow], batch_id: str) -> Generator[_AddBatch, Any, bool]:
        args: list[str | int] = [self.prefix, self.batch_ttl]
        for row in rows:
            args += [row.day.isoformat(), row.domain, row.key, row.count]
        done = yield _AddBatch([f"{self.prefix}b:{batch_id}"], args)
        if not done:
            log.info("TLS-RPT store: batch %s was written before; skipped", batch_id)
        return bool(done)

    def _flushing(self, batch_id: str | None) -> Generator[_AddBatch, Any, bool]:
        if not self._batch:
            return False
        # A failed flush keeps its id: if Redis did run the script but the
        # reply was lost, the retry is recognised as a replay, not counted twice.
        if batch_id is None:
            batch_id = self._batch_id = self._batch_id or uuid.uuid4().hex
        written = yield from self._writing(self._batch.rows(), batch_id)
        self._batch.clear()
        self._batch_id = None
        return written

    def _perform(self, command: _AddBatch) -> Any:
        # The reply (sync client) or an awaitable of it (asyncio client).
        return self._add_script(keys=command.keys, args=command.args)


class RedisTLSRPTStore(_BatchWriter):
    """
    Per-day TLS-RPT session counts in Redis, added to atomically by many MTAs.

    Args:
        client: A ``redis.Redis`` client, or a ``redis://`` URL to connect to.
        prefix: Key prefix.
        batch_size: Sessions counted in memory before they are written.
        batch_ttl: Seconds a batch id is remembered (replays within this
            time are skipped).
        keep_days: Days counts are kept after their day was reported.

    Raises:
        ImportError: redis-py is not installed (``pip install smtpsts[redis]``).
    """

    _client_module: ClassVar[str] = "redis"

    # ------------------------------------------------------------------ writing

    def add(self, result: SessionResult, at: datetime, count: int = 1) -> None:
        """
        Count a session result; writes the batch once it is full.

        Args:
            result: What the session showed for one policy.
            at: When; an aware datetime (its UTC day files it, RPT-AGG-02).
            count: How many identical sessions it stands for.

        Raises:
            smtpsts.UsageError: ``at`` is naive.
            redis.exceptions.RedisError: Redis failed while writing a full
                batch (the batch is kept; the next write retries it).
        """
        if self._count(result, at, count):
            self.flush()

    def flush(self, batch_id: str | None = None) -> bool:
        """
        Write the counted sessions now, atomically.

        Args:
            batch_id: The batch's id; a random one by default.

        Returns:
            Whether the batch was written (``False`` when empty or a replay).

        Raises:
            redis.exceptions.RedisError: Redis failed; the batch is kept, with
                its id, and written by the next flush.
        """
        return drive(self._flushing(batch_id), self._perform)

    def write_batch(self, rows: Iterable[CountRow], batch_id: str) -> bool:
        """
        Add counter rows atomically, once per batch id.

        Args:
            rows: The rows.
            batch_id: The batch's id.

        Returns:
            ``True`` if written; ``False`` for a batch id seen before.
        """
        return drive(self._writing(rows, batch_id), self._perform)

    def has_batch(self, batch_id: str) -> bool:
        """
        Whether a batch with this id was written (within ``batch_ttl``).

        Args:
            batch_id: The id.

        Returns:
            ``True`` if it was.
        """
        return bool(self.client.exists(f"{self.prefix}b:{batch_id}"))

    # ------------------------------------------------------------------ reading

    def days(self) -> list[date]:
        """
        The UTC days with counts, oldest first.

        Returns:
            The days.
        """
        return sorted(
            date.fromisoformat(_text(d)) for d in self.client.smembers(f"{self.prefix}days")
        )

    def domains(self, day: date) -> list[str]:
        """
        The report domains with counts on a day, sorted.

        Args:
            day: The UTC day.

        Returns:
            The domains.
        """
        return sorted(_text(d) for d in self.client.smembers(f"{self.prefix}d:{day.isoformat()}"))

    def rows(self, day: date, domain: str | None = None) -> list[CountRow]:
        """
        The counter rows of a day.

        Args:
            day: The UTC day.
            domain: Only this report domain; all by default.

        Returns:
            The rows, ordered by domain and key.
        """
        domains = [to_alabel(domain)] if domain is not None else self.domains(day)
        out: list[CountRow] = []
        for name in domains:
            found = self.client.hgetall(f"{self.prefix}c:{day.isoformat()}:{name}")
            out.extend(
                CountRow(day, name, _text(k), int(v))
                for k, v in sorted(found.items(), key=lambda kv: _text(kv[0]))
            )
        return out

    def aggregator(
        self, day: date, domain: str | None = None, *, max_failure_details: int = 1000
    ) -> Aggregator:
        """
        The counts of a day folded into an aggregator; unreadable rows are logged and skipped.

        Args:
            day: The UTC day.
            domain: Only this report domain; all by default.
            max_failure_details: The aggregator's cap on distinct failure details.

        Returns:
            The aggregator.
        """
        return aggregate_rows(
            self.rows(day, domain), max_failure_details=max_failure_details, logger=log
        )

    def pending(self, before: date) -> list[tuple[date, str]]:
        """
        The (day, domain) pairs with counts, before a day, not yet reported.

        Args:
            before: The first day not to list (normally today, UTC).

        Returns:
            The pairs, oldest first.
        """
        out: list[tuple[date, str]] = []
        for day in self.days():
            if day >= before:
                continue
            reported = {_text(d) for d in self.client.hkeys(f"{self.prefix}r:{day.isoformat()}")}
            out.extend((day, d) for d in self.domains(day) if d not in reported)
        return out

    def mark_reported(self, day: date, domain: str, now: datetime) -> bool:
        """
        Record that the report of a (day, domain) was handed on; its counts then expire.

        Args:
            day: The UTC day.
            domain: The report domain.
            now: The current time.

        Returns:
            ``True`` for the first call for that pair in the whole fleet.
        """
        done = self._mark_script(
            args=[
                self.prefix,
                day.isoformat(),
                to_alabel(domain),
                int(now.timestamp()),
                self.keep_days * _DAY_SECONDS,
            ]
        )
        return bool(done)

    def purge(self, now: datetime, keep_days: int | None = None) -> int:
        """
        Tidy the day and domain indexes once Redis has expired the counts.

        Redis expires a (day, domain)'s counts itself, ``keep_days`` after
        :meth:`mark_reported`; this drops index entries whose counts are gone.

        Args:
            now: The current time (unused; the sqlite store's signature).
            keep_days: Unused, as ``now``.

        Returns:
            How many (day, domain) index entries were dropped.
        """
        del now, keep_days
        dropped = 0
        for day in self.days():
            key = day.isoformat()
            for domain in self.domains(day):
                if not self.client.exists(f"{self.prefix}c:{key}:{domain}"):
                    self.client.srem(f"{self.prefix}d:{key}", domain)
                    dropped += 1
            if not self.client.exists(f"{self.prefix}d:{key}"):
                self.client.srem(f"{self.prefix}days", key)
        return dropped

    def close(self) -> None:
        """Write what is counted (the client stays open; its owner closes it)."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRedisTLSRPTStore(_BatchWriter):
    """
    The writing side of :class:`RedisTLSRPTStore` for asyncio MTAs (``redis.asyncio``).

    Counting is in memory; only writing a full batch awaits Redis. Same keys,
    same script, so it shares a store with sync writers and the sync reader.

    Args:
        client: A ``redis.asyncio.Redis`` client, or a ``redis://`` URL.
        prefix: Key prefix.
        batch_size: Sessions counted in memory before they are written.
        batch_ttl: Seconds a batch id is remembered.
        keep_days: Accepted for the same settings as the sync store (its
            reader expires the counts).

    Raises:
        ImportError: redis-py is not installed (``pip install smtpsts[redis]``).
    """

    _client_module: ClassVar[str] = "redis.asyncio"

    async def add(self, result: SessionResult, at: datetime, count: int = 1) -> None:
        """
        Count a session result; writes the batch once it is full (:meth:`RedisTLSRPTStore.add`).

        Args:
            result: What the session showed for one policy.
            at: When; an aware datetime (its UTC day files it, RPT-AGG-02).
            count: How many identical sessions it stands for.
        """
        if self._count(result, at, count):
            await self.flush()

    async def flush(self, batch_id: str | None = None) -> bool:
        """
        Write the counted sessions now, atomically (see :meth:`RedisTLSRPTStore.flush`).

        Args:
            batch_id: The batch's id; a random one by default.

        Returns:
            Whether the batch was written.
        """
        return await adrive(self._flushing(batch_id), self._perform)

    async def aclose(self) -> None:
        """Write what is counted (the client stays open; its owner closes it)."""
        await self.flush()
