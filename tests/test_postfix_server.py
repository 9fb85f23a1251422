"""Tests for smtpsts.postfix.server and the ``smtpsts postfix`` CLI, on loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio

from dnsserver import DNSServer
from httpsservers import ENFORCE, HTTPSServer, policy, slow_drip, stall
from smtpsts._cli import main
from smtpsts.cache import PolicyConfig
from smtpsts.dane import TLSARecord
from smtpsts.io.dnssec import DNSSECAnswer, DNSStatus, MXRecord, TLSALookup
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix.config import ServerConfig
from smtpsts.postfix.netstring import NetstringDecoder, encode
from smtpsts.postfix.protocol import DaneVerdict, Zone
from smtpsts.postfix.server import (
    DaneChecker,
    PolicyServer,
    build_dane,
    build_resolver,
    build_store,
    parse_listen,
    run,
    sd_notify,
    verdict_from,
)
from smtpsts.stores.memory import MemoryPolicyStore
from smtpsts.stores.sqlite import SQLitePolicyStore

# The server asks PolicyResolver.aresolve with its zone deadline (issue 10).
Resolver = PolicyResolver


TESTING = ENFORCE.replace(b"enforce", b"testing")
SECURE = b"OK secure match=mail.example.com:.example.net servername=hostname"
DOMAINS = {
    "enforce.test": policy(ENFORCE),
    "testing.test": policy(TESTING),
    "slow.test": slow_drip(0.005),
    "stall.test": stall(30),
}


@pytest.fixture(scope="module")
def https() -> Iterator[HTTPSServer]:
    with HTTPSServer() as server:
        for domain, handler in DOMAINS.items():
            server.route(f"mta-sts.{domain}", handler)
        yield server


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSServer]:
    with DNSServer() as server:
        for domain in DOMAINS:
            server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
        yield server


def make_config(**changes: Any) -> ServerConfig:
    return attrs.evolve(
        ServerConfig(
            listen=("127.0.0.1:0",),
            cache_backend="memory",
            refresh=False,
            default_zone=Zone(timeout=5, dane="off"),
            zones=(
                Zone("strict", strict=True, dane="off"),
                Zone("quick", timeout=0.3, dane="off"),
                Zone("quicktemp", timeout=0.3, temp_on_timeout=True, dane="off"),
            ),
            policy=PolicyConfig(timeout=5),
        ),
        **changes,
    )


def make_resolver(https: HTTPSServer, dns_server: DNSServer) -> PolicyResolver:
    return Resolver(
        store=MemoryPolicyStore(),
        trust=https.trust,
        nameservers=[dns_server.address],
        connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
        config=PolicyConfig(timeout=5),
    )


@contextlib.asynccontextmanager
async def serving(
    config: ServerConfig, resolver: PolicyResolver, *, dane: DaneChecker | None = None
) -> AsyncIterator[PolicyServer]:
    """A started PolicyServer, closed on the way out."""
    running = PolicyServer(config, resolver, dane=dane)
    await running.start()
    try:
        yield running
    finally:
        await running.close()


@pytest_asyncio.fixture
async def server(https: HTTPSServer, dns_server: DNSServer) -> AsyncIterator[PolicyServer]:
    async with serving(make_config(), make_resolver(https, dns_server)) as running:
        yield running


class Client:
    """A raw socketmap client: sends netstrings, reads answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = NetstringDecoder(100_000)
        self.answers: list[bytes] = []

    @classmethod
    async def connect(cls, server: PolicyServer) -> Client:
        host, port = server.addresses[0][:2]
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, *requests: str) -> list[bytes]:
        await self.send(b"".join(encode(r.encode()) for r in requests))
        return await self.read(len(requests))

    async def read(self, count: int) -> list[bytes]:
        async with asyncio.timeout(10):
            while len(self.answers) < count:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.answers += self.decoder.feed(data)
        got, self.answers = self.answers[:count], self.answers[count:]
        return got

    async def closed(self) -> bool:
        async with asyncio.timeout(5):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.writer.close()
                    return True
                self.answers += self.decoder.feed(data)

    def close(self) -> None:
        self.writer.close()


class TestAnswers:
    @pytest.mark.asyncio
    async def test_enforce_testing_and_keys(self, server: PolicyServer) -> None:
        """STS-APPLY-04, STS-APPLY-06, STS-APPLY-02, STS-APPLY-03: answers per mode and key form."""
        client = await Client.connect(server)
        answers = await client.ask(
            "postfix Enforce.TEST.",
            "postfix [enforce.test]:25",
            "postfix testing.test",
            "strict testing.test",
            "postfix nopolicy.test",
            "postfix .enforce.test",
            "postfix [192.0.2.1]",
            "postfix a..b",
            "postfix-without-key",
        )
        assert [
            SECURE,
            SECURE,
            b"NOTFOUND ",
            SECURE,
            b"NOTFOUND ",
            b"NOTFOUND ",
            b"NOTFOUND ",
            b"NOTFOUND ",
            b"PERM bad request: bad-request",
        ] == answers
        client.close()

    @pytest.mark.asyncio
    async def test_pipelined_answers_in_order(self, server: PolicyServer) -> None:
        """A slow lookup pipelined before fast ones still gets the first answer."""
        client = await Client.connect(server)
        answers = await client.ask("postfix slow.test", *["postfix enforce.test"] * 20)
        assert [SECURE] * 21 == answers
        client.close()

    @pytest.mark.asyncio
    async def test_timeouts(self, server: PolicyServer) -> None:
        """A lookup over the zone timeout gives NOTFOUND, or TEMP where the zone asks for it."""
        client = await Client.connect(server)
        answers = await client.ask("quick stall.test", "quicktemp stall.test")
        assert [b"NOTFOUND ", b"TEMP MTA-STS lookup for stall.test timed out"] == answers
        client.close()

    @pytest.mark.asyncio
    async def test_internal_error_is_temp(
        self, server: PolicyServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing store is answered TEMP (Postfix defers), never weaker (issue 10: a local fault)."""

        class BrokenStore(MemoryPolicyStore):
            def get(self, domain: str) -> Any:
                raise OSError("disk on fire")

        server.resolver = Resolver(store=BrokenStore())
        client = await Client.connect(server)
        assert [b"TEMP MTA-STS lookup for enforce.test failed"] == await client.ask(
            "postfix enforce.test"
        )
        assert 1 == server.stats["local_faults"]
        assert "disk on fire" in caplog.text
        client.close()


class CountingResolver(PolicyResolver):
    """A policy resolver that counts its lookups."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lookups: list[str] = []

    async def aresolve(self, domain: str, now: Any = None, **kwargs: Any) -> Any:
        self.lookups.append(domain)
        return await super().aresolve(domain, now, **kwargs)


def counting_resolver(https: HTTPSServer, dns_server: DNSServer) -> CountingResolver:
    return CountingResolver(
        store=MemoryPolicyStore(),
        trust=https.trust,
        nameservers=[dns_server.address],
        connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
        config=PolicyConfig(timeout=5),
    )


class TestAnswerCache:
    @pytest.mark.asyncio
    async def test_repeats_answered_from_cache(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """A repeated request is answered without a lookup; a new key form is looked up once."""
        resolver = counting_resolver(https, dns_server)
        async with serving(make_config(), resolver) as running:
            client = await Client.connect(running)
            repeats = ["postfix enforce.test", "postfix nopolicy.test", "strict testing.test"]
            first = await client.ask(*repeats)
            assert [SECURE, b"NOTFOUND ", SECURE] == first
            assert 3 == len(resolver.lookups)
            for _ in range(3):
                assert first == await client.ask(*repeats)
            assert 3 == len(resolver.lookups)
            assert 9 == running.stats["cached"]
            assert 12 == running.stats["requests"]
            # Another zone or key form is another request: one more lookup each.
            assert [SECURE, b"NOTFOUND "] == await client.ask(
                "postfix [enforce.test]:25", "postfix testing.test"
            )
            assert 5 == len(resolver.lookups)
            client.close()

    @pytest.mark.asyncio
    async def test_expiry_and_off(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """Answers are reused for answer_ttl only; answer_ttl 0 looks up every request."""
        for ttl, lookups in ((0.3, 2), (0.0, 4)):
            resolver = counting_resolver(https, dns_server)
            async with serving(make_config(answer_ttl=ttl), resolver) as running:
                client = await Client.connect(running)
                for pause in (0, 0.4, 0, 0):
                    await asyncio.sleep(pause)
                    assert [SECURE] == await client.ask("postfix enforce.test")
                assert lookups == len(resolver.lookups)
                client.close()

    @pytest.mark.asyncio
    async def test_never_past_policy_expiry(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """STS-CACHE-03: an answer is not reused after the policy it came from expires."""
        resolver = counting_resolver(https, dns_server)
        async with serving(make_config(answer_ttl=3600), resolver) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            entry = resolver.store.get("enforce.test")  # type: ignore[union-attr]
            assert entry is not None
            # The policy has 0.3 s left; the answer cache must not outlive it.
            expires = resolver.clock() + timedelta(seconds=0.3)
            resolver.store.put(attrs.evolve(entry, expires_at=expires))  # type: ignore[union-attr]
            running._answers.clear()
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert 2 == len(resolver.lookups)
            await asyncio.sleep(0.4)
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert 3 == len(resolver.lookups)
            client.close()

    @pytest.mark.asyncio
    async def test_failures_not_cached(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """Timeouts and failed discoveries are looked up again on the next request."""
        resolver = counting_resolver(https, dns_server)
        async with serving(make_config(), resolver) as running:
            client = await Client.connect(running)
            assert [b"NOTFOUND "] * 2 == await client.ask("quick stall.test", "quick stall.test")
            dns_server.servfail("_mta-sts.broken.test")
            dns_server.add("_mta-sts.nohost.test", "TXT", '"v=STSv1; id=1;"')
            try:
                for _ in range(2):
                    assert [b"NOTFOUND ", b"NOTFOUND "] == await client.ask(
                        "postfix broken.test", "postfix nohost.test"
                    )
            finally:
                dns_server.servfail("_mta-sts.broken.test", on=False)
                dns_server.remove("_mta-sts.nohost.test")
            assert not running._answers.entries
            assert 0 == running.stats["cached"]
            assert 3 == resolver.lookups.count("stall.test") + resolver.lookups.count("broken.test")
            client.close()

    @pytest.mark.asyncio
    async def test_pipelined_hits_then_misses(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """Cached requests at the head of a pipelined read are answered at once; the rest keep their order."""
        resolver = counting_resolver(https, dns_server)
        async with serving(make_config(), resolver) as running:
            client = await Client.connect(running)
            assert [SECURE, b"NOTFOUND "] == await client.ask(
                "postfix enforce.test", "postfix nopolicy.test"
            )
            requests = [
                *["postfix enforce.test", "postfix nopolicy.test"] * 3,
                "postfix slow.test",
                "postfix enforce.test",
                "postfix [192.0.2.1]",
                "postfix other.test",
                "postfix nopolicy.test",
            ]
            expected = [SECURE, b"NOTFOUND "] * 3 + [SECURE, SECURE] + [b"NOTFOUND "] * 3
            assert expected == await client.ask(*requests)
            assert ["enforce.test", "nopolicy.test", "slow.test", "other.test"] == resolver.lookups
            # Cached requests, then a malformed netstring: answers, then the close.
            await client.send(encode(b"postfix enforce.test") * 2 + b"xx:")
            assert await client.closed()
            assert [SECURE, SECURE] == client.answers

    @pytest.mark.asyncio
    async def test_identical_requests_share_a_lookup(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """Identical requests that arrive while their lookup runs wait for that lookup."""
        resolver = counting_resolver(https, dns_server)
        async with serving(make_config(answer_ttl=0), resolver) as running:
            clients = [await Client.connect(running) for _ in range(3)]
            answers = await asyncio.gather(*(c.ask(*["postfix slow.test"] * 5) for c in clients))
            assert [[SECURE] * 5] * 3 == answers
            assert ["slow.test"] == resolver.lookups
            assert not running._inflight
            for client in clients:
                client.close()

    @pytest.mark.asyncio
    async def test_bounded(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """The answer cache keeps at most answer_entries answers, dropping the oldest."""
        async with serving(
            make_config(answer_entries=2), counting_resolver(https, dns_server)
        ) as running:
            client = await Client.connect(running)
            for domain in ("a", "b", "c"):
                assert [b"NOTFOUND "] == await client.ask(f"postfix {domain}.test")
            assert [b"postfix b.test", b"postfix c.test"] == list(running._answers.entries)
            assert [encode(b"postfix b.test"), encode(b"postfix c.test")] == list(
                running._answers.framed
            )
            client.close()

    @pytest.mark.asyncio
    async def test_cached_answers_wait_for_earlier_lookups(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """Cached answers pipelined behind a slow lookup are sent after it, in request order."""
        async with serving(
            make_config(max_pending=4), counting_resolver(https, dns_server)
        ) as running:
            client = await Client.connect(running)
            assert [SECURE, b"NOTFOUND "] == await client.ask(
                "postfix enforce.test", "postfix nopolicy.test"
            )
            requests = ["postfix slow.test"] + [
                "postfix enforce.test",
                "postfix nopolicy.test",
            ] * 20
            assert [SECURE] + [SECURE, b"NOTFOUND "] * 20 == await client.ask(*requests)
            client.close()

    @pytest.mark.asyncio
    async def test_client_that_does_not_read(self, server: PolicyServer) -> None:
        """A client that pipelines without reading is not read further; its answers all arrive."""
        client = await Client.connect(server)
        assert [SECURE] == await client.ask("postfix enforce.test")
        count = 200_000
        request = encode(b"postfix enforce.test")
        writer = asyncio.create_task(client.send(request * count))
        (connection,) = server._connections
        # Wait (bounded) until the server has stopped reading: on a loaded machine that
        # takes longer than any fixed sleep.
        for _ in range(200):
            if not connection.reading:
                break
            await asyncio.sleep(0.05)
        assert connection.transport is not None
        # The server stopped reading once its write buffer filled: bounded memory.
        assert connection.transport.get_write_buffer_size() < 4 * 1024 * 1024
        assert not connection.reading
        answers = await client.read(count)
        await writer
        assert [SECURE] * count == answers
        client.close()

    @pytest.mark.asyncio
    async def test_client_that_never_reads_is_dropped(
        self, https: HTTPSServer, dns_server: DNSServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client that never reads its answers is closed when idle, then dropped."""
        caplog.set_level(logging.INFO, logger="smtpsts.postfix.server")
        async with serving(
            make_config(idle_timeout=0.3), make_resolver(https, dns_server)
        ) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            client.writer.write(encode(b"postfix enforce.test") * 200_000)
            async with asyncio.timeout(5):
                while running._connections:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert "answers not read; dropped" in caplog.text
            client.writer.transport.abort()

    @pytest.mark.asyncio
    async def test_dane_verdict_bounds_reuse(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """An answer that depended on a DANE verdict is not reused past the verdict's reuse time."""
        mx = DNSSECAnswer(DNSStatus.SECURE, "x", "MX", records=(MXRecord(10, "m"),), secure=True)
        now = [1000.0]
        fake = FakeDNSSEC(mx, {"m": TLSALookup(DNSStatus.INSECURE, "m", 25)})
        checker = DaneChecker(fake, clock=lambda: now[0])  # type: ignore[arg-type]
        config = make_config(default_zone=Zone(timeout=5), answer_ttl=3600)
        async with serving(config, make_resolver(https, dns_server), dane=checker) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            (until, _answer) = running._answers.entries[b"postfix enforce.test"]
            left = until - asyncio.get_running_loop().time()
            # DEFAULT_VERDICT_TTL (no record TTL known), not the hour of answer_ttl.
            assert 295 < left <= 300
            assert 300 == checker.reusable_for("enforce.test")
            assert checker.reusable_for("other.test") is None
            fake.trusted = False
            assert math.inf == checker.reusable_for("enforce.test")
            client.close()


class TestConnections:
    @pytest.mark.asyncio
    async def test_malformed_netstring_closes(self, server: PolicyServer) -> None:
        """Requests before a malformed netstring are answered, then the connection closes."""
        client = await Client.connect(server)
        await client.send(encode(b"postfix enforce.test") + b"xx:")
        assert await client.closed()
        assert [SECURE] == client.answers

    @pytest.mark.asyncio
    async def test_oversized_netstring_closes(self, server: PolicyServer) -> None:
        """A netstring longer than the key cap closes the connection before it is read."""
        client = await Client.connect(server)
        await client.send(b"5000:")
        assert await client.closed()

    @pytest.mark.asyncio
    async def test_idle_and_stalled_clients(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """Idle connections and clients stuck inside a netstring (one byte at a time) are closed."""
        config = make_config(idle_timeout=0.4, frame_timeout=0.4)
        async with serving(config, make_resolver(https, dns_server)) as running:
            idle = await Client.connect(running)
            drip = await Client.connect(running)
            started = time.monotonic()
            for byte in b"20:postfix enforce.":
                await drip.send(bytes([byte]))
                await asyncio.sleep(0.05)
                if drip.reader.at_eof():
                    break
            assert await idle.closed()
            assert await drip.closed()
            assert time.monotonic() - started < 3

    @pytest.mark.asyncio
    async def test_connection_limit(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """Issue 17: when full, a new connection evicts the one idle longest; one in work is kept."""
        async with serving(
            make_config(max_connections=2, shutdown_timeout=0.2), make_resolver(https, dns_server)
        ) as running:
            first = await Client.connect(running)
            second = await Client.connect(running)
            assert [SECURE] == await first.ask("postfix enforce.test")
            assert [SECURE] == await second.ask("postfix enforce.test")
            third = await Client.connect(running)
            assert await first.closed()  # idle longest
            assert [SECURE] == await third.ask("postfix enforce.test")
            assert 1 == running.stats["evicted_idle"]
            # With both slots in work, a new connection is refused.
            await second.send(encode(b"postfix stall.test"))
            await third.send(encode(b"postfix stall.test"))
            await asyncio.sleep(0.1)
            fourth = await Client.connect(running)
            assert await fourth.closed()
            assert 1 == running.stats["refused"] == running.stats["refused_full"]
            second.close()
            third.close()

    @pytest.mark.asyncio
    async def test_vanishing_clients(self, server: PolicyServer) -> None:
        """Clients that disappear mid-request or before their answer do not disturb others."""
        for data in (b"20:postfix enf", encode(b"postfix slow.test")):
            gone = await Client.connect(server)
            await gone.send(data)
            gone.writer.transport.abort()
        client = await Client.connect(server)
        assert [SECURE] == await client.ask("postfix enforce.test")
        client.close()

    @pytest.mark.asyncio
    async def test_many_concurrent_connections(self, server: PolicyServer) -> None:
        """Hundreds of concurrent connections each get their answers."""
        clients = await asyncio.gather(*(Client.connect(server) for _ in range(300)))
        answers = await asyncio.gather(
            *(c.ask("postfix enforce.test", "postfix .x.test") for c in clients)
        )
        assert [[SECURE, b"NOTFOUND "]] * 300 == answers
        for client in clients:
            client.close()

    @pytest.mark.asyncio
    async def test_reset_while_answer_pending(
        self, server: PolicyServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client that resets (RST) while its lookup runs is logged and forgotten."""
        caplog.set_level(logging.INFO, logger="smtpsts.postfix.server")
        client = await Client.connect(server)
        await client.send(encode(b"postfix slow.test") * 2)
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()
        async with asyncio.timeout(10):
            while server._connections:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert "read error" in caplog.text or "went away" in caplog.text

    @pytest.mark.asyncio
    async def test_shutdown_cancels_late_requests(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """Requests still running after shutdown_timeout are cancelled; the connection closes."""
        config = make_config(shutdown_timeout=0.2)
        running = PolicyServer(config, make_resolver(https, dns_server))
        await running.start()
        client = await Client.connect(running)
        await client.send(encode(b"postfix stall.test"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await running.close()
        assert time.monotonic() - started < 2
        assert await client.closed()
        assert [] == client.answers

    @pytest.mark.asyncio
    async def test_max_pending_backpressure(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """With max_pending 2, a deep pipeline of slow lookups is still answered fully and in order."""
        async with serving(make_config(max_pending=2), make_resolver(https, dns_server)) as running:
            client = await Client.connect(running)
            requests = ["postfix slow.test", "postfix .x.test"] * 10
            assert [SECURE, b"NOTFOUND "] * 10 == await client.ask(*requests)
            client.close()

    @pytest.mark.asyncio
    async def test_graceful_close(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """On shutdown, requests already received are answered before the connection closes."""
        running = PolicyServer(make_config(), make_resolver(https, dns_server))
        await running.start()
        client = await Client.connect(running)
        await client.send(encode(b"postfix slow.test"))
        await asyncio.sleep(0.1)
        host, port = running.addresses[0][:2]
        await running.close()
        assert await client.closed()
        assert [SECURE] == client.answers
        with pytest.raises(OSError):
            await asyncio.open_connection(host, port)

    @pytest.mark.asyncio
    async def test_unix_socket(
        self, https: HTTPSServer, dns_server: DNSServer, tmp_path: Path
    ) -> None:
        """A unix socket listener gets the configured mode and answers like TCP."""
        path = tmp_path / "policy.sock"
        config = make_config(listen=(f"unix:{path}",), unix_mode=0o600)
        async with serving(config, make_resolver(https, dns_server)) as running:
            assert 0o600 == stat.S_IMODE(path.stat().st_mode)
            reader, writer = await asyncio.open_unix_connection(path)
            client = Client(reader, writer)
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert [str(path)] == running.addresses
            client.close()


class FakeDNSSEC:
    """Scripted DNSSEC answers for DaneChecker (the NSD+Unbound lab covers real validation)."""

    def __init__(
        self, mx: DNSSECAnswer[MXRecord], tlsa: dict[str, TLSALookup], delay: float = 0
    ) -> None:
        self.trusted = True
        self.mx = mx
        self.tlsa = tlsa
        self.delay = delay
        self.asked: list[str] = []

    async def lookup_mx(self, domain: str) -> DNSSECAnswer[MXRecord]:
        self.asked.append(f"MX {domain}")
        await asyncio.sleep(self.delay)
        return self.mx

    async def lookup_tlsa(self, host: str, **_: Any) -> TLSALookup:
        self.asked.append(f"TLSA {host}")
        return self.tlsa[host]


USABLE = TLSARecord.from_text("3 1 1 " + "ab" * 32)
UNUSABLE = TLSARecord.from_text("1 1 1 " + "ab" * 32)


def secure(host: str, *records: TLSARecord) -> TLSALookup:
    return TLSALookup(DNSStatus.SECURE, host, 25, records=records)


class TestDane:
    @pytest.mark.parametrize(
        ("lookups", "verdict"),
        [
            ([secure("a", USABLE)], DaneVerdict.USABLE),
            ([secure("a", UNUSABLE)], DaneVerdict.NONE),
            ([TLSALookup(DNSStatus.BOGUS, "a", 25), secure("b", USABLE)], DaneVerdict.USABLE),
            ([TLSALookup(DNSStatus.BOGUS, "a", 25)], DaneVerdict.FAILED),
            ([TLSALookup(DNSStatus.TEMPFAIL, "a", 25)], DaneVerdict.FAILED),
            ([TLSALookup(DNSStatus.INSECURE, "a", 25)], DaneVerdict.NONE),
            ([], DaneVerdict.NONE),
        ],
    )
    def test_verdict_from(self, lookups: list[TLSALookup], verdict: DaneVerdict) -> None:
        """DANE-12, DANE-08, DANE-13: usable secure TLSA -> DANE; failures -> DANE decides."""
        assert verdict == verdict_from(lookups)

    @pytest.mark.asyncio
    async def test_checker(self) -> None:
        """DANE-21, DANE-19: only a secure MX RRset (or a secure denial) leads to TLSA lookups."""
        mx = DNSSECAnswer(
            DNSStatus.SECURE, "d.test", "MX", records=(MXRecord(10, "mx.d.test"),), secure=True
        )
        tlsa = {"mx.d.test": secure("mx.d.test", USABLE), "d.test": secure("d.test", USABLE)}
        cases = [
            (mx, True, DaneVerdict.USABLE),
            (
                DNSSECAnswer(DNSStatus.NOT_FOUND, "d.test", "MX", secure=True),
                True,
                DaneVerdict.USABLE,
            ),
            (DNSSECAnswer(DNSStatus.NOT_FOUND, "d.test", "MX"), True, DaneVerdict.NONE),
            (DNSSECAnswer(DNSStatus.INSECURE, "d.test", "MX"), True, DaneVerdict.NONE),
            (mx, False, DaneVerdict.NONE),
        ]
        for answer, trusted, verdict in cases:
            fake = FakeDNSSEC(answer, tlsa)
            fake.trusted = trusted
            checker = DaneChecker(fake)  # type: ignore[arg-type]
            assert verdict == await checker.verdict("d.test")

    @pytest.mark.asyncio
    async def test_dane_answer_through_server(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """DANE-49: an enforce domain with usable TLSA records is answered dane-only."""
        mx = DNSSECAnswer(
            DNSStatus.SECURE, "x", "MX", records=(MXRecord(10, "mx.enforce.test"),), secure=True
        )
        checker = DaneChecker(FakeDNSSEC(mx, {"mx.enforce.test": secure("m", USABLE)}))  # type: ignore[arg-type]
        config = make_config(default_zone=Zone(timeout=5))
        async with serving(config, make_resolver(https, dns_server), dane=checker) as running:
            client = await Client.connect(running)
            assert [b"OK dane-only", b"NOTFOUND "] == await client.ask(
                "postfix enforce.test", "postfix testing.test"
            )
            client.close()

    @pytest.mark.asyncio
    async def test_checker_cache_and_single_flight(self) -> None:
        """Verdicts are reused for the record TTL (failures 30 s) and concurrent checks share lookups."""
        mx = DNSSECAnswer(
            DNSStatus.SECURE, "d.test", "MX", records=(MXRecord(10, "mx.d.test"),), secure=True,
            ttl=120,
        )  # fmt: skip
        answer = DNSSECAnswer(DNSStatus.SECURE, "_25._tcp.mx.d.test", "TLSA", ttl=600)
        lookup = attrs.evolve(secure("mx.d.test", USABLE), answers=(answer,))
        fake = FakeDNSSEC(mx, {"mx.d.test": lookup}, delay=0.05)
        now = [1000.0]
        checker = DaneChecker(fake, clock=lambda: now[0], max_entries=1)  # type: ignore[arg-type]
        verdicts = await asyncio.gather(*(checker.verdict("d.test") for _ in range(5)))
        assert [DaneVerdict.USABLE] * 5 == verdicts
        assert ["MX d.test", "TLSA mx.d.test"] == fake.asked
        now[0] += 119
        assert DaneVerdict.USABLE == await checker.verdict("d.test")
        assert 2 == len(fake.asked)
        now[0] += 2
        # Stale: answered at once, re-checked in the background (once).
        assert [DaneVerdict.USABLE] * 3 == [await checker.verdict("d.test") for _ in range(3)]
        assert 2 == len(fake.asked)
        await asyncio.sleep(0.1)
        assert 4 == len(fake.asked)
        assert 3 == checker.stats["stale"]
        fake.tlsa["mx.d.test"] = TLSALookup(DNSStatus.BOGUS, "mx.d.test", 25)
        fake.mx = attrs.evolve(mx, qname="e.test")
        assert DaneVerdict.FAILED == await checker.verdict("e.test")
        assert 1 == len(checker._cache)  # bounded at max_entries
        now[0] += 31
        fake.mx = DNSSECAnswer(DNSStatus.INSECURE, "e.test", "MX")
        assert DaneVerdict.FAILED == await checker.verdict("e.test")  # stale, re-checking
        await asyncio.sleep(0.1)
        assert DaneVerdict.NONE == await checker.verdict("e.test")

    @pytest.mark.asyncio
    async def test_slow_dane_keeps_mts_sts(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """TLSA lookups slower than the DNS timeout leave the MTA-STS secure answer in place."""
        mx = DNSSECAnswer(DNSStatus.SECURE, "x", "MX", records=(MXRecord(10, "m"),), secure=True)
        checker = DaneChecker(FakeDNSSEC(mx, {"m": secure("m", USABLE)}, delay=5))  # type: ignore[arg-type]
        config = make_config(default_zone=Zone(timeout=5), dns_timeout=0.2)
        async with serving(config, make_resolver(https, dns_server), dane=checker) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            client.close()

    def test_build_dane(self) -> None:
        """No checker when every zone has dane off; an untrusted resolver is logged."""
        assert build_dane(make_config()) is None
        checker = build_dane(make_config(default_zone=Zone(), nameservers=("127.0.0.1:53",)))
        assert checker is not None
        assert checker.resolver.trusted
        untrusted = build_dane(make_config(default_zone=Zone(), nameservers=("192.0.2.1",)))
        assert untrusted is not None
        assert not untrusted.resolver.trusted


class TestHelpers:
    @pytest.mark.parametrize(
        ("spec", "where"),
        [
            ("127.0.0.1:8461", ("127.0.0.1", 8461)),
            ("[::1]:25", ("::1", 25)),
            ("localhost:1", ("localhost", 1)),
            ("unix:/run/x.sock", "/run/x.sock"),
        ],
    )
    def test_parse_listen(self, spec: str, where: object) -> None:
        """Listen addresses are HOST:PORT, [IPv6]:PORT or unix:PATH."""
        assert where == parse_listen(spec)

    @pytest.mark.parametrize("spec", ["8461", "host:", ":25", "h:70000", "unix:", "h:x"])
    def test_parse_listen_errors(self, spec: str) -> None:
        """Malformed listen addresses raise ValueError."""
        with pytest.raises(ValueError, match="listen address"):
            parse_listen(spec)

    @pytest.mark.parametrize("abstract", [False, True])
    def test_sd_notify(self, tmp_path: Path, abstract: bool) -> None:
        """sd_notify sends the state to $NOTIFY_SOCKET (path or abstract) and is a no-op without it."""
        name = f"smtpsts-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name if abstract else name)
            env = {"NOTIFY_SOCKET": "@" + name if abstract else name}
            assert sd_notify("READY=1", environ=env)
            assert b"READY=1" == sock.recv(100)
        assert not sd_notify("READY=1", environ={})
        assert not sd_notify("READY=1", environ={"NOTIFY_SOCKET": "relative"})
        assert not sd_notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "missing")})

    def test_build_store(self, tmp_path: Path) -> None:
        """The cache backend setting picks the store class."""
        assert isinstance(build_store(make_config(cache_backend="memory")), MemoryPolicyStore)
        assert isinstance(
            build_store(make_config(cache_backend="sqlite", cache_path=":memory:")),
            SQLitePolicyStore,
        )
        path = str(tmp_path / "sub" / "c.sqlite")
        assert isinstance(
            build_store(make_config(cache_backend="sqlite", cache_path=path)), SQLitePolicyStore
        )

        store = build_store(make_config(cache_backend="redis", redis_url="redis://127.0.0.1:1/0"))
        assert "AsyncRedisPolicyStore" == type(store).__name__

    def test_build_resolver(self, https: HTTPSServer, tmp_path: Path) -> None:
        """build_resolver wires the trust store, nameservers and connect-to overrides."""
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(https.root.pem)
        config = make_config(
            cafile=str(cafile),
            nameservers=("127.0.0.1:5353",),
            connect_to=("mta-sts.a.test:443:127.0.0.1:8443",),
        )
        resolver = build_resolver(config)
        assert resolver.adns.resolver.cache is not None  # type: ignore[attr-defined]
        assert build_resolver(attrs.evolve(config, dns_cache=False))._adns is None
        assert ("127.0.0.1:5353",) == resolver.nameservers
        assert {("mta-sts.a.test", 443): ("127.0.0.1", 8443)} == resolver.connect_to
        assert resolver.trust is not None
        assert 1 == len(resolver.trust)


class TestRun:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("refresh", [True, False])
    async def test_run_until_stopped(
        self,
        https: HTTPSServer,
        dns_server: DNSServer,
        tmp_path: Path,
        refresh: bool,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """run() serves from a configuration, sends READY/STOPPING, logs stats on SIGUSR1, stops on its event."""
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(https.root.pem)
        path = tmp_path / "run.sock"
        config = make_config(
            listen=(f"unix:{path}",),
            cafile=str(cafile),
            nameservers=(dns_server.address,),
            connect_to=tuple(f"mta-sts.{d}:443:127.0.0.1:{https.port}" for d in DOMAINS),
            refresh=refresh,
        )
        notify = tmp_path / "notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(notify))
            sock.setblocking(False)
            os.environ["NOTIFY_SOCKET"] = str(notify)
            try:
                stop = asyncio.Event()
                task = asyncio.create_task(run(config, stop=stop))
                async with asyncio.timeout(5):
                    while not path.exists():  # noqa: ASYNC110 -- polling a file
                        await asyncio.sleep(0.02)
                client = Client(*await asyncio.open_unix_connection(path))
                assert [SECURE] == await client.ask("postfix enforce.test")
                assert [SECURE] == await client.ask("postfix enforce.test")
                client.close()
                with caplog.at_level(logging.INFO, logger="smtpsts.postfix.server"):
                    os.kill(os.getpid(), signal.SIGUSR1)
                    await asyncio.sleep(0.1)
                assert "stats: connections=1 refused=0 " in caplog.text
                assert " requests=2 cached=1 " in caplog.text
                assert " errors=0 open=" in caplog.text
                stop.set()
                await task
                assert [b"READY=1", b"STOPPING=1"] == [sock.recv(100), sock.recv(100)]
            finally:
                del os.environ["NOTIFY_SOCKET"]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpsts", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestCLI:
    def test_serve_and_sigterm(
        self, https: HTTPSServer, dns_server: DNSServer, tmp_path: Path
    ) -> None:
        """`smtpsts postfix serve` with options only answers lookups and exits 0 on SIGTERM."""
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(https.root.pem)
        path = tmp_path / "cli.sock"
        args = [
            sys.executable, "-m", "smtpsts", "postfix", "serve",
            "--listen", f"unix:{path}", "--cache", "memory",
            "--nameserver", dns_server.address, "--cafile", str(cafile), "--timeout", "5",
            "--log-level", "debug",
        ]  # fmt: skip
        for domain in DOMAINS:
            args += ["--connect-to", f"mta-sts.{domain}:443:127.0.0.1:{https.port}"]
        process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
                sock.settimeout(10)
                sock.sendall(encode(b"postfix enforce.test"))
                decoder = NetstringDecoder(1000)
                got: list[bytes] = []
                while not got:
                    got = decoder.feed(sock.recv(1000))
            assert [SECURE] == got
        finally:
            process.terminate()
            _out, err = process.communicate(timeout=20)
        assert 0 == process.returncode
        assert "shutting down" in err

    def test_query(
        self, https: HTTPSServer, dns_server: DNSServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`smtpsts postfix query` asks a running server as Postfix would and prints the answers."""
        loop = asyncio.new_event_loop()
        running = PolicyServer(make_config(), make_resolver(https, dns_server))
        loop.run_until_complete(running.start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            host, port = running.addresses[0][:2]
            server = f"{host}:{port}"
            assert 0 == main(["postfix", "query", "--server", server, "enforce.test", "[1.2.3.4]"])
            out = capsys.readouterr().out
            assert f"enforce.test\t{SECURE.decode()}\n[1.2.3.4]\tNOTFOUND \n" == out
            assert 0 == main(
                ["postfix", "query", "--server", server, "--name", "strict", "testing.test"]
            )
            assert f"testing.test\t{SECURE.decode()}\n" == capsys.readouterr().out
            # A key the server refuses to read closes the connection: reported, exit 1.
            long_key = "a" * 2000
            assert 1 == main(["postfix", "query", "--server", server, long_key])
            assert "closed the connection after 0 of 1 answers" in capsys.readouterr().err
        finally:
            asyncio.run_coroutine_threadsafe(running.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        assert 1 == main(["postfix", "query", "--server", f"127.0.0.1:{free}", "x.test"])
        assert "Connection refused" in capsys.readouterr().err
        assert 1 == main(["postfix", "query", "--server", "unix:/nonexistent/sock", "x.test"])
        assert 2 == main(["postfix", "query", "--server", "nope", "x.test"])
        assert 2 == main(["postfix", "query", "--timeout", "0", "x.test"])

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--listen", "nope"], "listen address"),
            (["--nameserver", "x"], ""),
            (["--cafile", "/nonexistent.pem"], "no such file"),
            (["--cache", "mongo"], "expected memory"),
            (["--timeout", "0"], "positive"),
            (["--config", "/nonexistent.toml"], "No such file"),
        ],
    )
    def test_serve_usage_errors(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bad options exit 2 with a message, before anything listens."""
        assert 2 == main(["postfix", "serve", *argv])
        assert message in capsys.readouterr().err

    def test_build_config_merges(self, tmp_path: Path) -> None:
        """Options override the configuration file; --timeout applies to every zone."""
        from smtpsts._cli import build_parser
        from smtpsts._cli.postfix import build_config

        file = tmp_path / "c.toml"
        file.write_text('[cache]\nbackend = "memory"\n[zones.strict]\nstrict = true\n')
        args = build_parser().parse_args(
            [
                "postfix",
                "serve",
                "--config",
                str(file),
                "--listen",
                "127.0.0.1:1",
                "--timeout",
                "3",
                "--cache",
                "sqlite:/tmp/x.db",
                "--connect-to",
                "a:443:127.0.0.1:1",
            ]
        )
        config = build_config(args)
        assert ("127.0.0.1:1",) == config.listen
        assert (3.0, 3.0, 3.0) == (
            config.default_zone.timeout,
            config.zone("strict").timeout,
            config.policy.timeout,
        )
        assert ("sqlite", "/tmp/x.db") == (config.cache_backend, config.cache_path)
        args = build_parser().parse_args(["postfix", "serve", "--cache", "redis:redis://h/0"])
        assert "redis://h/0" == build_config(args).redis_url

    def test_serve_bind_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A listener that cannot be opened exits 2 with the reason."""
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            status = main(
                ["postfix", "serve", "--cache", "memory", "--listen", f"127.0.0.1:{port}"]
            )
        assert 2 == status
        assert "cannot serve" in capsys.readouterr().err
        logging.getLogger().handlers.clear()

    def test_config_from_pmsr(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`smtpsts postfix config-from-pmsr FILE` prints TOML; a missing file exits 2."""
        import yaml  # noqa: F401 -- PyYAML is in the tests group; the converter needs it

        file = tmp_path / "mta-sts-daemon.yml"
        file.write_text("port: 9000\nzones:\n  strict:\n    strict_testing: true\n")
        assert 0 == main(["postfix", "config-from-pmsr", str(file)])
        out = capsys.readouterr().out
        assert 'listen = ["127.0.0.1:9000"]' in out
        assert '[zones."strict"]\nstrict = true' in out
        assert 2 == main(["postfix", "config-from-pmsr", str(tmp_path / "missing.yml")])


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # pragma: no cover -- Linux has VmRSS


class TestRobustness:
    @pytest.mark.asyncio
    async def test_thousand_concurrent_connections(self, server: PolicyServer) -> None:
        """1000 concurrent connections, pipelining two requests each, all get their answers."""
        clients = await asyncio.gather(*(Client.connect(server) for _ in range(1000)))
        answers = await asyncio.gather(
            *(c.ask("postfix enforce.test", "postfix [192.0.2.7]") for c in clients)
        )
        assert [[SECURE, b"NOTFOUND "]] * 1000 == answers
        assert 1000 == server.stats["connections"]
        for client in clients:
            client.close()

    @pytest.mark.asyncio
    async def test_hostile_clients_do_not_disturb_others(self, server: PolicyServer) -> None:
        """Garbage, oversized, slow and vanishing clients are dropped; a good client is unaffected."""
        good = await Client.connect(server)
        hostile = []
        for data in (
            b"\x00\xff garbage \r\n" * 10,
            b"99999999999:",
            b"2000:" + b"x" * 100,
            b"3:abc;",
            encode(b"\xff\xfe \xff"),
        ):
            client = await Client.connect(server)
            await client.send(data)
            hostile.append(client)
        slow = await Client.connect(server)
        await slow.send(b"2")
        started = time.monotonic()
        for _ in range(5):
            assert [SECURE] == await good.ask("postfix enforce.test")
        assert time.monotonic() - started < 2
        for client in hostile[:4]:
            assert await client.closed()
        assert [b"PERM bad request: not-utf8"] == await hostile[4].read(1)
        vanished = await Client.connect(server)
        await vanished.send(b"30:postfix enf")
        vanished.writer.transport.abort()
        assert [SECURE] == await good.ask("postfix enforce.test")
        for client in (good, slow, hostile[4]):
            client.close()

    @pytest.mark.asyncio
    async def test_memory_stays_bounded(self, server: PolicyServer) -> None:
        """Connections that come and go leave nothing behind (no per-connection state, bounded RSS)."""

        async def round_trip() -> None:
            clients = await asyncio.gather(*(Client.connect(server) for _ in range(200)))
            await asyncio.gather(*(c.ask("postfix enforce.test") for c in clients))
            for client in clients:
                client.close()
            await asyncio.sleep(0.05)

        await round_trip()
        before = rss_kib()
        for _ in range(5):
            await round_trip()
        async with asyncio.timeout(5):
            while server._connections:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert rss_kib() - before < 20_000

    @pytest.mark.asyncio
    async def test_redis_goes_away_and_comes_back(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """SEC-54: a Redis store stops and restarts; the cached domain is answered throughout.

        A domain with nothing in the local layer while Redis is down has an
        unknown policy state: TEMP, never NOTFOUND (issue 10 item 6).
        """
        from redisserver import redis_server
        from smtpsts.stores.redis import AsyncRedisPolicyStore

        with redis_server() as redis:
            store = AsyncRedisPolicyStore.from_url(redis.url, timeout=0.5)
            resolver = Resolver(
                store=store,
                trust=https.trust,
                nameservers=[dns_server.address],
                connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
                config=PolicyConfig(timeout=5),
            )
            running = PolicyServer(make_config(), resolver)
            await running.start()
            try:
                client = await Client.connect(running)
                assert [SECURE] == await client.ask("postfix enforce.test")
                redis.stop()
                assert [
                    SECURE,
                    b"TEMP MTA-STS lookup for nopolicy.test failed",
                ] == await client.ask("postfix enforce.test", "postfix nopolicy.test")
                process = subprocess.Popen(  # noqa: ASYNC220 -- a test server
                    [
                        redis.binary,
                        "--port",
                        str(redis.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                )
                try:
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        with socket.socket() as probe:
                            if probe.connect_ex(("127.0.0.1", redis.port)) == 0:
                                break
                        await asyncio.sleep(0.05)
                    assert [SECURE] == await client.ask("postfix enforce.test")
                    assert [b"NOTFOUND "] == await client.ask("postfix testing.test")
                finally:
                    process.terminate()
                    process.wait(timeout=10)
                client.close()
            finally:
                await running.close()
                await store.client.aclose()


UVLOOP_CASES = [
    ("TestAnswers", "test_enforce_testing_and_keys"),
    ("TestAnswers", "test_pipelined_answers_in_order"),
    ("TestAnswers", "test_timeouts"),
    ("TestAnswerCache", "test_repeats_answered_from_cache"),
    ("TestAnswerCache", "test_pipelined_hits_then_misses"),
    ("TestAnswerCache", "test_cached_answers_wait_for_earlier_lookups"),
    ("TestAnswerCache", "test_identical_requests_share_a_lookup"),
    ("TestAnswerCache", "test_client_that_does_not_read"),
    ("TestConnections", "test_malformed_netstring_closes"),
    ("TestConnections", "test_oversized_netstring_closes"),
    ("TestConnections", "test_idle_and_stalled_clients"),
    ("TestConnections", "test_connection_limit"),
    ("TestConnections", "test_vanishing_clients"),
    ("TestConnections", "test_shutdown_cancels_late_requests"),
    ("TestConnections", "test_max_pending_backpressure"),
    ("TestConnections", "test_graceful_close"),
    ("TestRobustness", "test_hostile_clients_do_not_disturb_others"),
    ("TestRobustness", "test_thousand_concurrent_connections"),
    ("TestDane", "test_dane_answer_through_server"),
]


@pytest.mark.parametrize(("owner", "name"), UVLOOP_CASES)
def test_under_uvloop(owner: str, name: str, https: HTTPSServer, dns_server: DNSServer) -> None:
    """The server behaves the same on uvloop, which ``smtpsts postfix serve`` uses when installed."""
    import uvloop

    method = getattr(globals()[owner](), name)
    wanted = inspect.signature(method).parameters

    async def scenario() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        given: dict[str, Any] = {"https": https, "dns_server": dns_server}
        running = None
        if "server" in wanted:
            running = PolicyServer(make_config(), make_resolver(https, dns_server))
            await running.start()
            given["server"] = running
        try:
            await method(**{key: given[key] for key in wanted})
        finally:
            if running is not None:
                await running.close()

    uvloop.run(scenario())


@pytest.fixture(scope="module")
def dane_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, HTTPSServer]]:
    """NSD + Unbound with signed, unsigned and bogus zones, and their policy hosts."""
    from dnslab import DNSLab
    from dnslab import Zone as LabZone

    digest = "ab" * 32
    sts = '_mta-sts TXT "v=STSv1; id=1;"\n@ MX 10 mx\nmx A 127.0.0.1\n'
    zones = [
        LabZone("dane.test", sts + f"_25._tcp.mx TLSA 3 1 1 {digest}\n"),
        LabZone("sts.test", sts),
        LabZone("unusable.test", sts + f"_25._tcp.mx TLSA 1 1 1 {digest}\n"),
        LabZone("plain.test", sts + f"_25._tcp.mx TLSA 3 1 1 {digest}\n", signed=False),
        LabZone("failing.test", sts),
        LabZone("_tcp.mx.failing.test", f"_25 TLSA 3 1 1 {digest}\n", expired=True),
    ]
    body = b"version: STSv1\nmode: enforce\nmx: mx.{d}\nmax_age: 86400\n"
    with HTTPSServer() as https, DNSLab(zones, tmp_path_factory.mktemp("danelab")) as lab:
        for name in ("dane", "sts", "unusable", "plain", "failing"):
            https.route(
                f"mta-sts.{name}.test", policy(body.replace(b"{d}", f"{name}.test".encode()))
            )
        yield lab, https


class TestDaneLab:
    """DANE-aware answers against a real validating resolver (NSD + Unbound, signed zones)."""

    @pytest.mark.asyncio
    async def test_dane_answers(self, dane_lab: tuple[Any, HTTPSServer]) -> None:
        """DANE-49, DANE-12, DANE-08, DANE-14, DANE-32: usable secure TLSA -> dane-only, else secure."""
        dns_lab, https = dane_lab
        names = ("dane", "sts", "unusable", "plain", "failing")
        config = make_config(default_zone=Zone(timeout=10), nameservers=(dns_lab.nameserver,))
        resolver = Resolver(
            store=MemoryPolicyStore(),
            trust=https.trust,
            nameservers=[dns_lab.nameserver],
            connect_to=https.connect_to(*(f"mta-sts.{n}.test" for n in names)),
            config=PolicyConfig(timeout=5),
        )
        checker = build_dane(config)
        assert checker is not None
        async with serving(config, resolver, dane=checker) as running:
            client = await Client.connect(running)
            answers = await client.ask(*(f"postfix {n}.test" for n in names))
            secure = [f"OK secure match=mx.{n}.test servername=hostname".encode() for n in names]
            assert [b"OK dane-only", secure[1], secure[2], secure[3], b"OK dane-only"] == answers
            client.close()
