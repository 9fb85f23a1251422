"""
The Redis policy store written once: its decisions and its conversations (issue 11).

:mod:`smtpsts.stores.redis` documents the behaviour (local layer, repair,
tombstones). This module holds all of it, for both clients: the decisions
are pure functions of Redis's document and the local copy (``_plan_*``,
:func:`_merge`), and each store operation is a generator (a conversation, as
in :mod:`smtpsts.io._drive`) that yields one Redis command at a time
(``_Command`` values) and is sent its reply. The sync store runs the
conversations with :func:`~smtpsts.io._drive.drive`, the asyncio store with
:func:`~smtpsts.io._drive.adrive`; a command's ``call`` is the
same for both redis-py clients (the asyncio client returns awaitables, which
the async loop awaits). A Redis failure raised by a command is thrown into
the conversation where it asked, which turns it into the outage handling
(RFC 8461 §10.2: Redis going away never costs a live policy).
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Self, TypeVar

import attrs
import redis

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry, CacheEntryFormatError
from smtpsts.exceptions import StoreError
from smtpsts.stores import decide_replace
from smtpsts.stores.memory import MemoryPolicyStore

# The operator-facing logger stays that of the public module.
log = logging.getLogger("smtpsts.stores.redis")

T = TypeVar("T")

DEFAULT_PREFIX: Final = "smtpsts:sts:"
"""Key prefix; the key of ``example.com`` is ``smtpsts:sts:example.com``."""

LOCAL_MAX_ENTRIES: Final = 100_000
"""Bound of the default local layer."""

REPAIR_BATCH: Final = 50
"""Local policies written back after each successful operation following an outage."""

TOMBSTONE_MIN_TTL: Final = timedelta(days=1)
"""The shortest life of a tombstone left by a deletion."""

# Every Redis failure but a lost WATCH race means "Redis cannot answer now".
_OUTAGE = (redis.exceptions.RedisError, OSError)
_CAS_ATTEMPTS: Final = 10
_SCAN_BATCH: Final = 500
_TOMBSTONE_TAG: Final = '{"tombstone":'


def _now() -> datetime:
    return datetime.now(UTC)


def _expire_at(entry: CacheEntry) -> int | None:
    # The key lives as long as anything in the entry is valid.
    times = [t for t in (entry.expires_at, entry.backoff_until, entry.negative_until) if t]
    if not times:
        return None
    return int(max(times).timestamp()) + 1


def _usable(entry: CacheEntry | None) -> bool:
    # Whether the entry still holds anything valid (its key would exist).
    return entry is not None and (_expire_at(entry) or 0) > time.time()


def _writes_back(entry: CacheEntry | None) -> bool:
    # Only live enforce and testing policies are written back (see above).
    return entry is not None and entry.policy is not None and entry.is_live(_now())


@attrs.frozen
class _Tombstone:
    # "Entries fetched at or before upto were deleted on purpose."
    upto: datetime

    def covers(self, entry: CacheEntry) -> bool:
        return entry.fetched_at is None or entry.fetched_at <= self.upto

    def to_json(self) -> str:
        return f'{_TOMBSTONE_TAG}1,"upto":{json.dumps(self.upto.isoformat())}}}'


_Doc = CacheEntry | _Tombstone | None


def _decode(domain: str, raw: bytes | str | None) -> _Doc:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        if text.startswith(_TOMBSTONE_TAG):
            return _Tombstone(_aware(datetime.fromisoformat(json.loads(text)["upto"])))
        return CacheEntry.from_json(raw)
    except (CacheEntryFormatError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"redis policy store: the entry for {domain} cannot be read (another cache format"
            f" or damage; it is left untouched): {exc}",
            domain=domain,
        ) from exc


def _aware(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError("tombstone time lacks a UTC offset")
    return value


def _entry_of(doc: _Doc) -> CacheEntry | None:
    return doc if isinstance(doc, CacheEntry) else None


def _newer(remote: CacheEntry | None, local: CacheEntry | None) -> CacheEntry | None:
    # After an outage the local layer may know a policy fetched later than
    # Redis's copy (or one Redis never got): keep whichever was fetched last.
    if (
        local is not None
        and local.fetched_at is not None
        and (remote is None or remote.fetched_at is None or local.fetched_at > remote.fetched_at)
    ):
        return local
    return remote


def _tombstone_for(
    deleted: CacheEntry | None, previous: CacheEntry | None, *, upto: datetime | None = None
) -> tuple[str, int] | None:
    # The tombstone (document, EXAT) a deletion of ``deleted`` leaves, or
    # None when it removed no live policy answer (nothing could be resurrected).
    now = _now()
    if deleted is None or not deleted.is_live(now) or deleted.expires_at is None:
        return None
    if upto is None:
        fetched = [e.fetched_at for e in (deleted, previous) if e is not None and e.fetched_at]
        upto = max(fetched)
    until = max(deleted.expires_at, now + TOMBSTONE_MIN_TTL)
    return _Tombstone(upto).to_json(), int(until.timestamp()) + 1


@attrs.frozen
class _Op:
    # One planned write: SET doc (EXAT exat) or DEL, or nothing.
    kind: str  # "set", "del" or "none"
    doc: str = ""
    exat: int | None = None

    def queue(self, pipe: Any, key: str) -> None:
        if self.kind == "set":
            pipe.set(key, self.doc, exat=self.exat)
        elif self.kind == "del":
            pipe.delete(key)


_NOTHING: Final = _Op("none")


def _plan_cas(
    domain: str, raw: bytes | str | None, previous: CacheEntry | None, entry: CacheEntry | None
) -> _Op | None:
    # The compare-and-set decision: the write to make, or None to drop it.
    # Raises StoreError for an unreadable current document.
    doc = _decode(domain, raw)
    current = _entry_of(doc)
    if not decide_replace(current, previous, entry):
        return None
    if entry is not None and (_expire_at(entry) or float("inf")) > time.time():
        return _Op("set", entry.to_json(), _expire_at(entry))
    if isinstance(doc, _Tombstone):
        return _NOTHING  # already deleted on purpose
    tombstone = _tombstone_for(current, previous)
    return _Op("del") if tombstone is None else _Op("set", *tombstone)


def _plan_put(domain: str, raw: bytes | str | None, entry: CacheEntry) -> _Op:
    # put(): unconditional, but never over an unreadable document.
    _decode(domain, raw)
    if (_expire_at(entry) or float("inf")) <= time.time():
        return _Op("del")
    return _Op("set", entry.to_json(), _expire_at(entry))


def _plan_delete(domain: str, raw: bytes | str | None) -> _Op:
    # delete(): removes even an unreadable document; a live policy answer
    # leaves a tombstone covering everything fetched until now.
    try:
        current = _entry_of(_decode(domain, raw))
    except StoreError:
        return _Op("del")
    tombstone = _tombstone_for(current, None, upto=_now())
    return _Op("del") if tombstone is None else _Op("set", *tombstone)


def _plan_write_back(domain: str, raw: bytes | str | None, local: CacheEntry) -> str:
    # "write", "keep" (Redis holds as new or newer, or an unreadable
    # document) or "drop" (a tombstone covers the local copy).
    try:
        doc = _decode(domain, raw)
    except StoreError:
        return "keep"
    if isinstance(doc, _Tombstone):
        return "drop" if doc.covers(local) else "write"
    if doc is None or doc.fetched_at is None:
        return "write"
    return "keep" if local.fetched_at is None or doc.fetched_at >= local.fetched_at else "write"


def _merge(
    local: list[CacheEntry], remote: dict[str, _Doc]
) -> tuple[list[CacheEntry], list[CacheEntry], list[CacheEntry]]:
    # entries(): (the union, local copies to write back, local copies to drop).
    now = _now()
    found = {d: e for d, e in remote.items() if isinstance(e, CacheEntry)}
    missing: list[CacheEntry] = []
    covered: list[CacheEntry] = []
    for entry in local:
        doc = remote.get(entry.domain)
        if isinstance(doc, _Tombstone) and doc.covers(entry):
            covered.append(entry)
            continue
        if not entry.is_live(now):
            continue
        if _newer(_entry_of(doc), entry) is entry:
            found[entry.domain] = entry
            if _writes_back(entry):
                missing.append(entry)
    return list(found.values()), missing, covered


class _Outage:
    """Logs once when Redis goes away and once when it is back."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, operation: str, exc: Exception) -> None:
        if not self.down:
            log.warning(
                "redis policy store unreachable (%s: %s); answering from the local layer",
                operation,
                exc,
            )
        self.down = True

    def ok(self) -> bool:
        # True when Redis has just come back.
        if self.down:
            log.warning("redis policy store reachable again; repairing from the local layer")
            self.down = False
            return True
        return False


def _unknown(domain: str, exc: Exception) -> StoreError:
    return StoreError(
        f"redis policy store unreachable and nothing valid for {domain} in the local layer: {exc}",
        domain=domain,
    )


def _collect(
    remote: dict[str, _Doc], prefix: str, key: bytes | str, raw: bytes | str | None
) -> None:
    # entries(): add one scanned key's document, skipping an unreadable one.
    name = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
    try:
        doc = _decode(name, raw)
    except StoreError as exc:
        log.warning("%s; skipped", exc)
        return
    if doc is not None:
        remote[name] = doc


# ----------------------------------------------------------------- commands


# Each Redis command of a conversation is a _Call or a _Commit. Its
# call(target) returns the reply (sync client) or an awaitable of it
# (asyncio); the target is the operation's pipeline for the commands of a
# compare-and-set (on_pipeline: WATCH, the GET after it, which runs at once
# outside MULTI, UNWATCH, and the commit), the client for the others.


@attrs.frozen
class _Call:
    # target.<method>(*args, **options).
    method: str
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = attrs.field(factory=dict)
    on_pipeline: bool = False

    def call(self, target: Any) -> Any:
        return getattr(target, self.method)(*self.args, **self.options)


@attrs.frozen
class _Commit:
    # MULTI, the planned write, EXEC; redis.WatchError: the race was lost.
    on_pipeline: ClassVar[bool] = True
    key: str
    op: _Op

    def call(self, target: Any) -> Any:
        target.multi()
        self.op.queue(target, self.key)
        return target.execute()


_Command = _Call | _Commit
_Conversation = Generator[_Command, Any, T]


# ------------------------------------------------------------ conversations


class _RedisStoreCore:
    # State and conversations shared by RedisPolicyStore and
    # AsyncRedisPolicyStore (they differ only in how they run a conversation).

    _client_type: ClassVar[Any]

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        local: MemoryPolicyStore | None = None,
        repair_batch: int = REPAIR_BATCH,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.local = (
            local if local is not None else MemoryPolicyStore(max_entries=LOCAL_MAX_ENTRIES)
        )
        self.repair_batch = repair_batch
        self._outage = _Outage()
        self._repair: collections.deque[str] = collections.deque()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, **options: Any) -> Self:
        """
        Connect to ``redis://host:port/db``.

        Args:
            url: The Redis URL.
            timeout: Socket connect and read timeout in seconds.
            **options: More arguments of the store's constructor.

        Returns:
            The store.
        """
        client = cls._client_type.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(client, **options)

    @property
    def available(self) -> bool:
        """Whether the last Redis operation succeeded."""
        return not self._outage.down

    @property
    def repair_pending(self) -> int:
        """How many local policies still wait to be written back after an outage."""
        return len(self._repair)

    def _keep_local(self, entry: CacheEntry) -> None:
        if (_expire_at(entry) or float("inf")) > time.time():
            self.local.put(entry)
        else:
            self.local.delete(entry.domain)

    def _failed(self, operation: str, exc: Exception) -> None:
        self._outage.failed(operation, exc)
        self._repair.clear()  # the next recovery starts over

    def _succeeded(self) -> _Conversation[None]:
        # After a successful operation: start or continue the repair.
        if self._outage.ok():
            self._repair = collections.deque(
                e.domain for e in self.local.entries() if _writes_back(e)
            )
        try:
            for _ in range(min(self.repair_batch, len(self._repair))):
                domain = self._repair.popleft()
                local = self.local.get(domain)
                if local is not None and _writes_back(local):
                    yield from self._write_back(domain, local)
        except _OUTAGE as exc:
            self._failed("repair", exc)

    def _cas(self, domain: str, plan: Callable[[Any], _Op | None]) -> _Conversation[bool]:
        # WATCH/MULTI around plan(raw) -> _Op | None (None: no write);
        # whether a write went through (or nothing was needed).
        key = self.prefix + domain
        for _ in range(_CAS_ATTEMPTS):
            yield _Call("watch", (key,), on_pipeline=True)
            op = plan((yield _Call("get", (key,), on_pipeline=True)))
            if op is None or op.kind == "none":
                yield _Call("unwatch", on_pipeline=True)
                return op is not None
            try:
                yield _Commit(key, op)
            except redis.WatchError:
                continue
            return True
        return False

    def _write_back(self, domain: str, local: CacheEntry) -> _Conversation[None]:
        verdict: list[str] = []

        def plan(raw: bytes | None) -> _Op | None:
            verdict[:] = [_plan_write_back(domain, raw, local)]
            if verdict[0] != "write":
                return None
            return _Op("set", local.to_json(), _expire_at(local))

        if not (yield from self._cas(domain, plan)) and verdict == ["drop"]:
            self.local.replace(domain, local, None)
        elif verdict == ["write"]:
            log.info("redis policy store: wrote the local policy of %s back", domain)

    def _get(self, domain: str) -> _Conversation[CacheEntry | None]:
        name = to_alabel(domain)
        local = self.local.get(name)
        try:
            raw = yield _Call("get", (self.prefix + name,))
        except _OUTAGE as exc:
            self._failed("get", exc)
            if _usable(local):
                return local
            raise _unknown(name, exc) from exc
        entry = self._resolve(name, raw, local)
        if entry is not None and entry is local and _writes_back(local):
            try:
                yield from self._write_back(name, entry)
            except _OUTAGE as exc:
                self._failed("write back", exc)
                return entry
        yield from self._succeeded()
        return entry

    def _resolve(
        self, name: str, raw: bytes | str | None, local: CacheEntry | None
    ) -> CacheEntry | None:
        # What get() answers from Redis's document and the local copy.
        try:
            doc = _decode(name, raw)
        except StoreError as exc:
            if _usable(local):
                log.warning("%s; answering from the local layer", exc)
                return local
            raise
        if isinstance(doc, _Tombstone):
            if local is not None and doc.covers(local):
                self.local.replace(name, local, None)
                return None
            doc = None
        entry = _newer(doc, local)
        if entry is not None and entry is not local:
            self.local.put(entry)
        return entry

    def _put(self, entry: CacheEntry) -> _Conversation[None]:
        try:
            yield from self._cas(entry.domain, lambda raw: _plan_put(entry.domain, raw, entry))
        except _OUTAGE as exc:
            self._failed("put", exc)
        else:
            yield from self._succeeded()
        self._keep_local(entry)

    def _replace(
        self, domain: str, previous: CacheEntry | None, entry: CacheEntry | None
    ) -> _Conversation[bool]:
        name = to_alabel(domain)
        try:
            done = yield from self._cas(name, lambda raw: _plan_cas(name, raw, previous, entry))
        except _OUTAGE as exc:
            self._failed("replace", exc)
            return self.local.replace(name, previous, entry)
        if done:
            if entry is None:
                self.local.delete(name)
            else:
                self.local.put(entry)
        yield from self._succeeded()
        return done

    def _delete(self, domain: str) -> _Conversation[None]:
        name = to_alabel(domain)
        self.local.delete(name)
        try:
            yield from self._cas(name, lambda raw: _plan_delete(name, raw))
        except _OUTAGE as exc:
            self._failed("delete", exc)
        else:
            yield from self._succeeded()

    def _entries(self) -> _Conversation[list[CacheEntry]]:
        try:
            remote: dict[str, _Doc] = {}
            keys: list[bytes | str] = []
            cursor: int | None = None
            while cursor != 0:
                cursor, found_keys = yield _Call(
                    "scan", (cursor or 0,), {"match": self.prefix + "*", "count": _SCAN_BATCH}
                )
                keys += found_keys
            for start in range(0, len(keys), _SCAN_BATCH):
                batch = keys[start : start + _SCAN_BATCH]
                for key, raw in zip(batch, (yield _Call("mget", (batch,))), strict=True):
                    _collect(remote, self.prefix, key, raw)
        except _OUTAGE as exc:
            self._failed("scan", exc)
            return list(self.local.entries())
        found, back, covered = _merge(list(self.local.entries()), remote)
        for entry in covered:
            self.local.replace(entry.domain, entry, None)
        try:
            for entry in back:
                yield from self._write_back(entry.domain, entry)
        except _OUTAGE as exc:
            self._failed("write back", exc)
        else:
            yield from self._succeeded()
        return found
