"""
Hardening of the Postfix socketmap server (issue 10 items 4 and 6, issue 17 item 3), black box.

Real :class:`~smtpsts.postfix.server.PolicyServer` instances on loopback and on
unix sockets, with the scripted DNS and HTTPS servers of the tests; clients
that do not belong to root run in subprocesses as ``nobody``. Where a fault
cannot be caused from outside (a resolver raising a local fault, a peer
address that is not loopback) the server's own entry points are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio

from conftest import require_binary
from dnsserver import DNSServer
from httpsservers import ENFORCE, HTTPSServer, policy, stall
from smtpsts.cache import PolicyConfig
from smtpsts.exceptions import LocalResourceError, StoreError
from smtpsts.io.dnssec import DNSSECAnswer, DNSStatus, MXRecord, TLSALookup
from smtpsts.io.drivers import DEFAULT_MAX_LOOKUPS, PolicyResolver
from smtpsts.postfix import server as server_module
from smtpsts.postfix.config import ConfigError, ServerConfig
from smtpsts.postfix.netstring import encode
from smtpsts.postfix.protocol import Zone
from smtpsts.postfix.server import (
    DANE_BUDGET,
    LOOKUP_DESCRIPTOR_RESERVE,
    BurstLog,
    DaneChecker,
    PolicyServer,
    connection_capacity,
    lookup_capacity,
)
from smtpsts.stores.memory import MemoryPolicyStore
from test_postfix_server import SECURE, USABLE, Client, FakeDNSSEC, make_config, secure, serving

DANE_ONLY = b"OK dane-only"
DOMAINS = ("enforce.test", "stall.test", "learn.test", "dane.test", "fresh-dane.test")
LOG = "smtpsts.postfix.server"


@pytest.fixture(scope="module")
def https() -> Iterator[HTTPSServer]:
    """Policy hosts: enforce everywhere, ``stall.test`` hangs (routes change per test)."""
    with HTTPSServer() as server:
        for domain in DOMAINS:
            server.route(f"mta-sts.{domain}", policy(ENFORCE))
        server.route("mta-sts.stall.test", stall(30))
        yield server


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSServer]:
    """``_mta-sts`` TXT records for every test domain."""
    with DNSServer() as server:
        for domain in DOMAINS:
            server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
        yield server


def make_resolver(https: HTTPSServer, dns_server: DNSServer) -> PolicyResolver:
    """A resolver with a memory store, talking to the module's DNS and HTTPS servers."""
    return PolicyResolver(
        store=MemoryPolicyStore(),
        trust=https.trust,
        nameservers=[dns_server.address],
        connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
        config=PolicyConfig(timeout=5),
    )


def config(**changes: Any) -> ServerConfig:
    """The shared test configuration plus a zone whose lookups may run 2 s."""
    base = make_config(**changes)
    return attrs.evolve(base, zones=(*base.zones, Zone("slow", timeout=2, dane="off")))


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (bounded) until ``predicate()`` holds (server state: no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def pending(running: PolicyServer) -> int:
    """How many of the server's connections are inside a netstring."""
    return sum(1 for c in running._connections if c.decoder.pending)


async def unix_client(path: Path) -> Client:
    """A root client on the unix socket ``path``."""
    return Client(*await asyncio.open_unix_connection(path))


async def stalled_client(running: PolicyServer) -> Client:
    """A TCP client that sent ``2`` (a netstring started, never finished), seen by the server."""
    before = pending(running)
    client = await Client.connect(running)
    await client.send(b"2")
    await until(lambda: pending(running) > before)
    return client


async def still_open(*clients: Client) -> bool:
    """Whether none of ``clients`` saw its connection end (checked after a short wait)."""
    await asyncio.sleep(0.05)
    return not any(c.reader.at_eof() for c in clients)


# --------------------------------------------------------------------------- frames


class TestFrameTimeout:
    @pytest.mark.asyncio
    async def test_stalled_frame_closed_idle_kept(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 3: a client that sends `2` and waits is closed after frame_timeout.

        A connection silent between requests (never started, or after an
        answer) stays open past frame_timeout: only idle_timeout applies to it.
        """
        async with serving(
            config(frame_timeout=0.3, idle_timeout=30), make_resolver(https, dns_server)
        ) as running:
            silent = await Client.connect(running)
            answered = await Client.connect(running)
            assert [SECURE] == await answered.ask("postfix enforce.test")
            stalled = await Client.connect(running)
            await stalled.send(b"2")
            sent = time.monotonic()
            assert await stalled.closed()
            elapsed = time.monotonic() - sent
            assert 0.25 <= elapsed < 1.0, elapsed
            assert 1 == running.stats["frame_timeouts"]
            await asyncio.sleep(0.3)  # both silent for more than twice frame_timeout now
            assert await still_open(silent, answered)
            assert [SECURE] == await silent.ask("postfix enforce.test")
            assert [SECURE] == await answered.ask("postfix enforce.test")
            assert 1 == running.stats["frame_timeouts"]
            assert 0 == running.stats["idle_timeouts"]
            silent.close()
            answered.close()

    @pytest.mark.asyncio
    async def test_dripping_frame_closed_although_active(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 3: bytes trickling in do not extend a frame's deadline.

        One byte every 50 ms keeps the connection far from idle_timeout, but
        the netstring is not whole after frame_timeout, so it is closed.
        """
        async with serving(
            config(frame_timeout=0.4, idle_timeout=30), make_resolver(https, dns_server)
        ) as running:
            drip = await Client.connect(running)
            started = time.monotonic()
            for byte in encode(b"postfix enforce.test"):  # 24 bytes: 1.2 s at this pace
                if drip.reader.at_eof():
                    break
                with contextlib.suppress(ConnectionError):
                    await drip.send(bytes([byte]))
                await asyncio.sleep(0.05)
            assert await drip.closed()
            assert [] == drip.answers
            assert time.monotonic() - started < 1.1
            assert 1 == running.stats["frame_timeouts"]
            assert 0 == running.stats["idle_timeouts"]

    @pytest.mark.asyncio
    async def test_idle_timeout_still_applies(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """SEC-56, issue 17 item 3: a connection silent between requests is closed after idle_timeout."""
        async with serving(
            config(frame_timeout=5, idle_timeout=0.3), make_resolver(https, dns_server)
        ) as running:
            idle = await Client.connect(running)
            started = time.monotonic()
            assert await idle.closed()
            assert 0.25 <= time.monotonic() - started < 1.0
            assert (1, 0) == (running.stats["idle_timeouts"], running.stats["frame_timeouts"])


class TestLengthPrefix:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("prefix", [b"1089", b"9999999999", b"99999999999999", b"108|9"])
    async def test_over_cap_refused_before_colon(
        self, https: HTTPSServer, dns_server: DNSServer, prefix: bytes
    ) -> None:
        """
        SEC-56, issue 17 item 3: a length prefix over the 1088-byte cap is refused before its colon.

        The connection is closed at once (long before frame_timeout), also
        when the digits arrive in two reads (``|`` marks the split).
        """
        async with serving(config(frame_timeout=10), make_resolver(https, dns_server)) as running:
            client = await Client.connect(running)
            for part in prefix.split(b"|"):
                await client.send(part)
                await asyncio.sleep(0.02)
            started = time.monotonic()
            assert await client.closed()
            assert time.monotonic() - started < 0.5
            assert 0 == running.stats["frame_timeouts"]

    @pytest.mark.asyncio
    async def test_at_cap_waits(self, https: HTTPSServer, dns_server: DNSServer) -> None:
        """SEC-56, issue 17 item 3: the prefix ``1088`` (the cap itself) is not refused early."""
        async with serving(config(frame_timeout=10), make_resolver(https, dns_server)) as running:
            client = await Client.connect(running)
            await client.send(b"1088")
            assert await still_open(client)
            await asyncio.sleep(0.1)
            assert await still_open(client)
            client.close()

    @pytest.mark.asyncio
    async def test_cached_answer_then_bad_prefix(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """SEC-56, issue 17 item 3: a request before an oversized prefix in one read is answered, then the close."""
        async with serving(config(), make_resolver(https, dns_server)) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            await client.send(encode(b"postfix enforce.test") + b"1089")
            assert await client.closed()
            assert [SECURE] == client.answers
            assert 1 == running.stats["cached"]


# --------------------------------------------------------------------------- admission


class TestEviction:
    @pytest.mark.asyncio
    async def test_stalled_evicted_first_then_idle(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 3: when full, a new connection evicts the one stalled longest.

        With every slot held, a newcomer is admitted and answered ``OK
        secure``; the stalled connections go first (longest first) even when
        an idle one is older, then the one idle longest.
        """
        async with serving(
            config(max_connections=3, frame_timeout=30), make_resolver(https, dns_server)
        ) as running:
            assert 3 == running.capacity
            old_idle = await Client.connect(running)
            assert [SECURE] == await old_idle.ask("postfix enforce.test")
            first = await stalled_client(running)
            second = await stalled_client(running)
            newcomer = await Client.connect(running)
            assert [SECURE] == await newcomer.ask("postfix enforce.test")
            assert await first.closed()
            assert await still_open(old_idle, second)
            assert (1, 0) == (running.stats["evicted_stalled"], running.stats["evicted_idle"])
            another = await Client.connect(running)
            assert [SECURE] == await another.ask("postfix enforce.test")
            assert await second.closed()
            assert await still_open(old_idle, newcomer)
            # No stalled connection is left: the one idle longest goes.
            last = await Client.connect(running)
            assert [SECURE] == await last.ask("postfix enforce.test")
            assert await old_idle.closed()
            assert await still_open(newcomer, another)
            assert (2, 1) == (running.stats["evicted_stalled"], running.stats["evicted_idle"])
            assert 0 == running.stats["refused"]
            for client in (newcomer, another, last):
                client.close()

    @pytest.mark.asyncio
    async def test_never_answered_idle_evicted_before_answered(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 4c: among idle connections, one never answered goes first.

        A flood's connection whose first bytes the server has not read yet is
        idle and was never answered; a Postfix client that was answered and
        has been idle for longer is kept.
        """
        async with serving(
            config(max_connections=2, frame_timeout=30), make_resolver(https, dns_server)
        ) as running:
            answered = await Client.connect(running)
            assert [SECURE] == await answered.ask("postfix enforce.test")
            silent = await Client.connect(running)
            await until(
                lambda: (
                    2 == len(running._connections)
                    and all(c.transport is not None for c in running._connections)
                )
            )
            newcomer = await Client.connect(running)
            assert [SECURE] == await newcomer.ask("postfix enforce.test")
            assert await silent.closed()
            assert await still_open(answered)
            assert (0, 1) == (running.stats["evicted_stalled"], running.stats["evicted_idle"])
            for client in (answered, newcomer):
                client.close()

    @pytest.mark.asyncio
    async def test_connection_being_set_up_evicted_first(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 4c: a flood's connection still being set up goes before a real client.

        In a flood most connections are accepted but have no transport yet;
        they may be evicted (closed once set up), so an answered client that
        is idle is kept.
        """
        async with serving(
            config(max_connections=2, frame_timeout=30), make_resolver(https, dns_server)
        ) as running:
            answered = await Client.connect(running)
            assert [SECURE] == await answered.ask("postfix enforce.test")
            listener = running.listeners[0]
            flood = [socket.socketpair() for _ in range(2)]
            for _ours, theirs in flood:
                theirs.setblocking(False)
                # Both admitted at once: the second evicts the first while it has no transport.
                running.accepted(theirs, ("127.0.0.1", 1), listener)
            assert 1 == running.stats["evicted_idle"]
            first = flood[0][0]
            first.settimeout(5)
            assert b"" == await asyncio.to_thread(first.recv, 1)  # closed once set up
            assert await still_open(answered)
            for ours, _theirs in flood:
                ours.close()
            answered.close()

    @pytest.mark.asyncio
    async def test_serving_bounds_uncached_lookups(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """SEC-56, issue 10: the server lowers the resolver's max_lookups to what descriptors allow."""
        resolver = make_resolver(https, dns_server)
        async with serving(config(), resolver) as running:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            expected = min(DEFAULT_MAX_LOOKUPS, lookup_capacity(soft, resolver.max_background))
            assert expected == running.resolver.max_lookups
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            client.close()

    @pytest.mark.asyncio
    async def test_request_in_work_never_evicted(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 3: a connection with a request in work is never evicted.

        The busy connection is the oldest and has been silent longest; a new
        connection evicts the stalled one instead, and when every slot is in
        work a new connection is refused (``refused_full``). The busy
        connection gets its answer.
        """
        async with serving(
            config(max_connections=2, frame_timeout=30, shutdown_timeout=0.2),
            make_resolver(https, dns_server),
        ) as running:
            busy = await Client.connect(running)
            await busy.send(encode(b"slow stall.test"))  # answered NOTFOUND after 2 s
            await until(lambda: bool(running._inflight))
            stalled = await stalled_client(running)
            newcomer = await Client.connect(running)
            assert await stalled.closed()
            assert 1 == running.stats["evicted_stalled"]
            await newcomer.send(encode(b"slow stall.test"))
            await until(lambda: any(c.queue for c in running._connections if c is not busy))
            refused = await Client.connect(running)
            started = time.monotonic()
            assert await refused.closed()
            assert time.monotonic() - started < 0.5
            assert (1, 1) == (running.stats["refused"], running.stats["refused_full"])
            assert 1 == running.stats["evicted_stalled"] + running.stats["evicted_idle"]
            assert [b"NOTFOUND "] == await busy.read(1)
            assert [b"NOTFOUND "] == await newcomer.read(1)
            busy.close()
            newcomer.close()


# --------------------------------------------------------------------------- unix sockets

NOBODY_CLIENT = r"""
import socket, sys

path = sys.argv[1]
socks = []
for line in sys.stdin:
    command = line.split()[0]
    if command in ("open", "busy"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendall(b"2" if command == "open" else b"15:slow stall.test,")
        except OSError as e:
            s.close()
            print("error", e.errno, flush=True)
            continue
        s.setblocking(False)
        socks.append(s)
        print("opened", len(socks) - 1, flush=True)
    elif command == "status":
        states = []
        for s in socks:
            try:
                states.append("closed" if not s.recv(1) else "data")
            except BlockingIOError:
                states.append("open")
            except ConnectionResetError:
                states.append("closed")
        print(" ".join(states), flush=True)
"""


class Unprivileged:
    """A subprocess running as ``nobody`` that opens stalled unix socket connections on command."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, path: Path) -> Unprivileged:
        process = await asyncio.create_subprocess_exec(
            "/usr/bin/python3", "-I", "-c", NOBODY_CLIENT, str(path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            user="nobody", group="nogroup", extra_groups=[],
        )  # fmt: skip
        return cls(process)

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(5):
            return (await self.process.stdout.readline()).decode().strip()

    async def open(self, running: PolicyServer, *, busy: bool = False) -> str:
        """
        Open one connection that sends ``2`` (or a 2 s lookup when ``busy``).

        Waits until the server holds it stalled (or in work).
        """
        connections = running.stats["connections"]
        answer = await self.command("busy" if busy else "open")

        def held() -> bool:
            if running.stats["connections"] == connections:
                return False
            newest = list(running._connections)[-1]
            return bool(newest.queue) if busy else newest.decoder.pending

        await until(held)
        return answer

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        async with asyncio.timeout(5):
            await self.process.wait()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory ``nobody`` may enter (tmp_path's parents are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="smtpsts-hardening-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def postfix_gid() -> int:
    """The gid of the ``postfix`` group (the postfix package creates it and the user)."""
    require_binary("postfix")
    return grp.getgrnam("postfix").gr_gid


def as_user(user: str, group: str, script: str, *args: str) -> str:
    """Run ``script`` with the system python as ``user``:``group``; its stripped output."""
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", script, *args],
        capture_output=True, text=True, timeout=10, check=True,
        user=user, group=group, extra_groups=[],
    )  # fmt: skip
    return done.stdout.strip()


CONNECT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(e.errno)
else:
    print("connected")
"""


class TestUnixSocket:
    @pytest.mark.asyncio
    async def test_default_mode_and_group(
        self,
        https: HTTPSServer,
        dns_server: DNSServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """
        SEC-56, issue 10 item 6: the unix socket defaults to mode 0660, group postfix.

        It is never more open than that, not even between bind() and chmod()
        (the mode seen when chmod() is called is already 0660).
        """
        gid = postfix_gid()
        path = tmp_path / "policy.sock"
        seen: list[int] = []
        chmod = os.chmod

        def spy(target: Any, mode: int, *args: Any, **kwargs: Any) -> None:
            if str(target) == str(path):
                seen.append(stat.S_IMODE(path.stat().st_mode))
            chmod(target, mode, *args, **kwargs)

        monkeypatch.setattr(os, "chmod", spy)
        cfg = config(listen=(f"unix:{path}",))
        assert 0o660 == cfg.unix_mode
        async with serving(cfg, make_resolver(https, dns_server)):
            info = path.stat()
            assert stat.S_ISSOCK(info.st_mode)
            assert 0o660 == stat.S_IMODE(info.st_mode)
            assert gid == info.st_gid
            assert [0o660] == seen
            client = await unix_client(path)
            assert [SECURE] == await client.ask("postfix enforce.test")
            client.close()
        assert not path.exists()

    @pytest.mark.asyncio
    async def test_configured_group_and_mode(
        self, https: HTTPSServer, dns_server: DNSServer, tmp_path: Path
    ) -> None:
        """SEC-56, issue 10 item 6: unix_group and unix_mode are applied as configured."""
        path = tmp_path / "policy.sock"
        cfg = config(listen=(f"unix:{path}",), unix_group="nogroup", unix_mode=0o600)
        async with serving(cfg, make_resolver(https, dns_server)):
            info = path.stat()
            assert (0o600, grp.getgrnam("nogroup").gr_gid) == (
                stat.S_IMODE(info.st_mode),
                info.st_gid,
            )

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ({"unix_group": "smtpsts-no-such-group"}, "server.unix_group: no group"),
            ({"postfix_user": "smtpsts-no-such-user"}, "server.postfix_user: no user"),
        ],
    )
    async def test_missing_group_or_user(
        self,
        https: HTTPSServer,
        dns_server: DNSServer,
        tmp_path: Path,
        setting: dict[str, str],
        message: str,
    ) -> None:
        """SEC-56, issue 10 item 6: a unix_group or postfix_user that does not exist is a ConfigError."""
        path = tmp_path / "policy.sock"
        running = PolicyServer(
            config(listen=(f"unix:{path}",), **setting), make_resolver(https, dns_server)
        )
        with pytest.raises(ConfigError, match=message):
            await running.start()
        assert not path.exists()
        await running.close()

    @pytest.mark.asyncio
    async def test_not_world_connectable(
        self, https: HTTPSServer, dns_server: DNSServer, open_dir: Path
    ) -> None:
        """
        SEC-56, issue 10 item 6: with the default mode only Postfix's group (and root) may connect.

        ``nobody`` gets EACCES from connect(); the ``postfix`` user (group
        postfix) connects.
        """
        postfix_gid()
        path = open_dir / "policy.sock"
        async with serving(config(listen=(f"unix:{path}",)), make_resolver(https, dns_server)):
            denied = await asyncio.to_thread(as_user, "nobody", "nogroup", CONNECT, str(path))
            allowed = await asyncio.to_thread(as_user, "postfix", "postfix", CONNECT, str(path))
            assert (str(errno.EACCES), "connected") == (denied, allowed)


class TestReservedSlots:
    @pytest.mark.asyncio
    async def test_unprivileged_share_and_root(
        self, https: HTTPSServer, dns_server: DNSServer, open_dir: Path
    ) -> None:
        """
        SEC-56, issue 17 item 3: unprivileged peers cannot take the slots kept for root and postfix.

        With 4 slots, 1 reserved: ``nobody`` holds at most 3 (a 4th evicts
        its own stalled connection although a slot is free); a root
        connection is admitted into the reserve without evicting anyone; more
        ``nobody`` connections evict ``nobody`` ones, never the root one,
        even when root's is the stalled connection that waited longest; a
        root connection with every slot full evicts a ``nobody`` one and is
        answered.
        """
        path = open_dir / "policy.sock"
        cfg = config(listen=(f"unix:{path}",), unix_mode=0o666, max_connections=4, frame_timeout=30)
        async with serving(cfg, make_resolver(https, dns_server)) as running:
            assert (4, 1) == (running.capacity, running.reserved)
            nobody = await Unprivileged.start(path)
            try:
                for index in range(3):
                    assert f"opened {index}" == await nobody.open(running)
                assert 0 == running.stats["evicted_stalled"]
                assert "opened 3" == await nobody.open(running)  # evicts n0, a slot stays free
                assert 1 == running.stats["evicted_stalled"]
                assert 3 == len(running._connections)
                assert "closed open open open" == await nobody.command("status")

                root = await unix_client(path)
                await root.send(b"2")  # root now holds the stalled connection that waited longest
                await until(lambda: 4 == pending(running))
                assert 1 == running.stats["evicted_stalled"]
                for index in range(4, 8):
                    assert f"opened {index}" == await nobody.open(running)
                assert 5 == running.stats["evicted_stalled"]
                states = "closed closed closed closed closed open open open"
                assert states == await nobody.command("status")
                assert await still_open(root)
                await root.send(b"0:postfix enforce.test,")
                assert [SECURE] == await root.read(1)

                other_root = await unix_client(path)  # every slot is full
                assert [SECURE] == await other_root.ask("postfix enforce.test")
                assert 6 == running.stats["evicted_stalled"]
                assert (
                    "closed closed closed closed closed closed open open"
                    == await nobody.command("status")
                )
                assert [SECURE] == await root.ask("postfix enforce.test")
                assert (0, 0) == (running.stats["refused"], running.stats["evicted_idle"])
                root.close()
                other_root.close()
            finally:
                await nobody.close()

    @pytest.mark.asyncio
    async def test_unprivileged_never_evicts_root(
        self, https: HTTPSServer, dns_server: DNSServer, open_dir: Path
    ) -> None:
        """
        SEC-56, issue 17 item 3: with its share in work, an unprivileged peer is refused.

        ``nobody`` holds its 3 slots with lookups in work and root holds the
        reserved one, idle: a 4th ``nobody`` connection is refused
        (``refused_full``) rather than evicting root's idle connection.
        """
        path = open_dir / "policy.sock"
        cfg = config(
            listen=(f"unix:{path}",), unix_mode=0o666, max_connections=4, shutdown_timeout=0.2
        )
        async with serving(cfg, make_resolver(https, dns_server)) as running:
            root = await unix_client(path)
            assert [SECURE] == await root.ask("postfix enforce.test")
            nobody = await Unprivileged.start(path)
            try:
                for index in range(3):
                    assert f"opened {index}" == await nobody.open(running, busy=True)
                connections = running.stats["connections"]
                assert "opened 3" == await nobody.command("open")
                await until(lambda: 1 == running.stats["refused"])
                assert connections == running.stats["connections"]
                assert 1 == running.stats["refused_full"]
                assert "open open open closed" == await nobody.command("status")
                assert [SECURE] == await root.ask("postfix enforce.test")
                assert 0 == running.stats["evicted_stalled"] + running.stats["evicted_idle"]
                root.close()
            finally:
                await nobody.close()


# --------------------------------------------------------------------------- TCP peers


class PeerAcceptor:
    """Hands one end of a socket pair to ``PolicyServer.accepted()`` as if accepted from ``host``."""

    def __init__(self, running: PolicyServer) -> None:
        self.running = running
        self.ends: list[socket.socket] = []

    def __call__(self, host: str) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.running.accepted(ours, (host, 40000 + len(self.ends)), self.running.listeners[0])
        theirs.settimeout(2)
        self.ends.append(theirs)
        return theirs

    def close(self) -> None:
        for end in self.ends:
            end.close()


@contextlib.asynccontextmanager
async def over(end: socket.socket) -> AsyncIterator[Client]:
    """A client on our end of an accepted socket pair, closed on the way out."""
    client = Client(*await asyncio.open_connection(sock=end))
    try:
        yield client
    finally:
        client.close()
        await client.writer.wait_closed()


async def ask_over(end: socket.socket, request: str) -> list[bytes]:
    """Ask ``request`` over our end of an accepted socket pair, then close it."""
    async with over(end) as client:
        return await client.ask(request)


class TestPerPeerLimit:
    @pytest.mark.asyncio
    async def test_non_loopback_peer_limited(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 17 item 3: one non-loopback TCP peer holds at most max_connections_per_peer.

        Beyond the limit a connection from that address is closed at once
        (``refused_peer``); other addresses and loopback peers (exempt, also
        IPv4-mapped) are admitted and answered; a slot the peer frees can be
        used by it again. Connections are handed to ``accepted()`` with the
        peer address a real accept() would give.
        """
        cfg = config(max_connections_per_peer=2)
        async with serving(cfg, make_resolver(https, dns_server)) as running:
            accept = PeerAcceptor(running)
            try:
                first, second = accept("192.0.2.7"), accept("192.0.2.7")
                refused = accept("192.0.2.7")
                assert b"" == refused.recv(1)
                assert (1, 1) == (running.stats["refused"], running.stats["refused_peer"])
                others = [accept("192.0.2.8"), accept("2001:db8::7"), accept("2001:db8::7")]
                hosts = ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1")
                loopback = [accept(host) for host in hosts for _ in range(3)]
                assert 1 == running.stats["refused_peer"]
                for end in (*others, *loopback):
                    assert [SECURE] == await ask_over(end, "postfix enforce.test")
                real = [await Client.connect(running) for _ in range(3)]  # from 127.0.0.1
                for client in real:
                    assert [SECURE] == await client.ask("postfix enforce.test")
                    client.close()
                async with over(first) as kept:
                    assert [SECURE] == await kept.ask("postfix enforce.test")
                    second.close()  # frees one of the peer's two slots
                    await until(lambda: 1 == running._per_peer.get("192.0.2.7"))
                    assert [SECURE] == await ask_over(accept("192.0.2.7"), "postfix enforce.test")
                    await until(lambda: 1 == running._per_peer.get("192.0.2.7"))
                    third = accept("192.0.2.7")
                    assert b"" == accept("192.0.2.7").recv(1)
                    assert 2 == running.stats["refused_peer"]
                    assert [SECURE] == await ask_over(third, "postfix enforce.test")
                assert 0 == running.stats["evicted_stalled"] + running.stats["evicted_idle"]
            finally:
                accept.close()

    @pytest.mark.asyncio
    async def test_default_is_half_the_slots(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """SEC-56, issue 17 item 3: without max_connections_per_peer one peer holds half the slots."""
        async with serving(config(max_connections=8), make_resolver(https, dns_server)) as running:
            accept = PeerAcceptor(running)
            try:
                admitted = [accept("2001:db8::9") for _ in range(4)]
                refused = accept("2001:db8::9")
                assert b"" == refused.recv(1)
                assert 1 == running.stats["refused_peer"]
                assert [SECURE] == await ask_over(admitted[-1], "postfix enforce.test")
            finally:
                accept.close()


# --------------------------------------------------------------------------- descriptors

RAISE = r"""
import json, resource
from smtpsts.postfix.server import raise_nofile_limit
print(json.dumps([raise_nofile_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)]))
"""

CAPACITY = r"""
import asyncio, json, logging, sys
from smtpsts.io.drivers import DEFAULT_MAX_LOOKUPS, PolicyResolver
from smtpsts.postfix.config import ServerConfig
from smtpsts.postfix.server import PolicyServer
from smtpsts.stores.memory import MemoryPolicyStore

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

async def main():
    config = ServerConfig(listen=("127.0.0.1:0",), cache_backend="memory", refresh=False)
    server = PolicyServer(config, PolicyResolver(store=MemoryPolicyStore()))
    await server.start()
    print(json.dumps([server.capacity, server.per_peer]))
    await server.close()

asyncio.run(main())
"""


def run_limited(script: str, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in the venv's python with RLIMIT_NOFILE (soft, hard)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=20, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )  # fmt: skip


class TestDescriptors:
    def test_raise_nofile_limit(self) -> None:
        """SEC-56, issue 10 item 4: raise_nofile_limit() lifts the soft RLIMIT_NOFILE to the hard one."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert hard > 256
        raised = json.loads(run_limited(RAISE, 256, hard).stdout)
        assert [[hard, hard], [hard, hard]] == raised
        unchanged = json.loads(run_limited(RAISE, 256, 256).stdout)
        assert [[256, 256], [256, 256]] == unchanged

    def test_server_sizes_slots_from_descriptors(self) -> None:
        """
        SEC-56, issue 10 item 4: at start the server serves only as many connections as descriptors allow.

        With soft and hard both 256, max_connections 1000 becomes 256 minus
        the descriptors open minus the 64 kept for lookups, with a warning;
        with the hard limit higher the soft one is raised and all 1000 fit.
        """
        done = run_limited(CAPACITY, 256, 256)
        found = re.search(
            r"soft limit 256, hard limit 256, (\d+) open; serving at most (\d+)", done.stderr
        )
        assert found is not None, done.stderr
        in_use, serving_at_most = int(found[1]), int(found[2])
        assert 256 - in_use - LOOKUP_DESCRIPTOR_RESERVE == serving_at_most
        assert [serving_at_most, serving_at_most // 2] == json.loads(done.stdout)
        assert "allows only" in done.stderr
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        done = run_limited(CAPACITY, 256, hard)
        assert [1000, 500] == json.loads(done.stdout)
        assert "allows only" not in done.stderr

    @pytest.mark.parametrize(
        ("nofile", "max_connections", "in_use", "expected"),
        [
            (1024, 1000, 10, 1024 - 10 - 256),  # reserve a quarter
            (256, 1000, 10, 256 - 10 - 64),  # a quarter is 64: the floor
            (200, 1000, 10, 200 - 10 - 64),  # the floor of 64 above a quarter
            (260, 1000, 0, 260 - 65),
            (1_048_576, 1000, 10, 1000),  # max_connections bounds
            (100, 1000, 50, 1),  # at least one
            (64, 5, 64, 1),
        ],
    )
    def test_connection_capacity(
        self, nofile: int, max_connections: int, in_use: int, expected: int
    ) -> None:
        """SEC-56, issue 10 item 4: capacity = min(max, nofile - in_use - max(64, nofile // 4)), at least 1."""
        assert expected == connection_capacity(nofile, max_connections, in_use)

    @pytest.mark.parametrize(
        ("nofile", "max_background", "expected"),
        [
            (1024, 64, (256 - 128) // 2),  # the default soft limit: 64 lookups
            (65_536, 64, (16_384 - 128) // 2),
            (256, 64, 8),  # the floor
        ],
    )
    def test_lookup_capacity(self, nofile: int, max_background: int, expected: int) -> None:
        """SEC-56, issue 10: uncached lookups at once = (reserve - 2 * background) // 2, at least 8."""
        assert expected == lookup_capacity(nofile, max_background)


EMFILE_SERVER = r"""
import asyncio, json, logging, os, resource, sys
from smtpsts.io.drivers import DEFAULT_MAX_LOOKUPS, PolicyResolver
from smtpsts.postfix import _listeners, server as srv
from smtpsts.postfix.config import ServerConfig
from smtpsts.postfix.protocol import Zone
from smtpsts.stores.memory import MemoryPolicyStore

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
_listeners.ACCEPT_PAUSE = 0.05  # where the listener reads it

async def main():
    config = ServerConfig(
        listen=("127.0.0.1:0",), cache_backend="memory", refresh=False,
        default_zone=Zone(dane="off"),
    )
    server = srv.PolicyServer(config, PolicyResolver(store=MemoryPolicyStore()))
    await server.start()
    loop = asyncio.get_running_loop()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    hog = []
    try:
        while True:
            hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    print(server.addresses[0][1], flush=True)
    async with asyncio.timeout(10):
        while server.stats["accept_faults"] < 3:
            await asyncio.sleep(0.01)
        for fd in hog:
            os.close(fd)
        while server.stats["requests"] < 1:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    await server.close()
    print(json.dumps(server.stats), flush=True)

asyncio.run(main())
"""


def test_accept_paused_on_emfile() -> None:
    """
    SEC-56, issue 10 item 4: accept() failing with EMFILE pauses accepting, logged once per burst.

    A server out of descriptors (a real EMFILE, in a subprocess) keeps the
    waiting connection in the backlog, retries after ACCEPT_PAUSE, logs the
    first failure at once and the repeats in one summary line, and answers
    the connection once descriptors are free again.
    """
    with subprocess.Popen(
        [sys.executable, "-c", EMFILE_SERVER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(encode(b"postfix [192.0.2.1]"))
                assert encode(b"NOTFOUND ") == sock.recv(100)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            process.kill()
    stats = json.loads(stdout)
    faults = stats["accept_faults"]
    assert faults >= 3
    assert 1 == stats["connections"]
    lines = [line for line in stderr.splitlines() if "accept()" in line]
    assert 2 == len(lines), stderr
    assert (
        "accept() on 127.0.0.1:0 failed: [Errno 24] Too many open files; pausing 0.05s" in lines[0]
    )
    assert f"{faults - 1} more accept() failures in the last 10s" in lines[1]


# --------------------------------------------------------------------------- local faults


class FaultyResolver(PolicyResolver):
    """A real resolver whose lookup of each domain raises ``fault`` the first time."""

    def __init__(self, fault: Callable[[str], Exception], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fault = fault
        self.faulted: set[str] = set()

    async def aresolve(self, domain: str, now: Any = None, **kwargs: Any) -> Any:
        if domain not in self.faulted:
            self.faulted.add(domain)
            raise self.fault(domain)
        return await super().aresolve(domain, now, **kwargs)


def faulty_resolver(
    https: HTTPSServer, dns_server: DNSServer, fault: Callable[[str], Exception]
) -> FaultyResolver:
    """A :class:`FaultyResolver` on the module's servers."""
    return FaultyResolver(
        fault,
        store=MemoryPolicyStore(),
        trust=https.trust,
        nameservers=[dns_server.address],
        connect_to=https.connect_to(*(f"mta-sts.{d}" for d in DOMAINS)),
        config=PolicyConfig(timeout=5),
    )


class TestLocalFaults:
    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "fault",
        [
            lambda d: LocalResourceError("Too many open files", errno=errno.EMFILE, domain=d),
            lambda d: StoreError("database is locked", domain=d),
        ],
        ids=["EMFILE", "store"],
    )
    async def test_temp_counted_logged_once(
        self,
        https: HTTPSServer,
        dns_server: DNSServer,
        caplog: pytest.LogCaptureFixture,
        fault: Callable[[str], Exception],
    ) -> None:
        """
        SEC-56, issue 10 item 4, issue 17 item 2: a local fault is TEMP, counted, logged once per burst.

        Five domains fault in a row: five ``TEMP MTA-STS lookup for X
        failed``, ``local_faults`` 5, one WARNING at once naming the first
        domain and the error, the other four summed up in one line. The next
        lookup after the fault tries again and gets the real answer.
        """
        caplog.set_level(logging.WARNING, logger=LOG)
        resolver = faulty_resolver(https, dns_server, fault)
        domains = ["enforce.test", *(f"d{i}.test" for i in range(1, 5))]
        async with serving(config(), resolver) as running:
            client = await Client.connect(running)
            answers = await client.ask(*(f"postfix {d}" for d in domains))
            assert [f"TEMP MTA-STS lookup for {d} failed".encode() for d in domains] == answers
            assert 5 == running.stats["local_faults"]
            first = [r.getMessage() for r in caplog.records if "local fault" in r.getMessage()]
            assert 1 == len(first)
            assert "default enforce.test: local fault, answering TEMP: " in first[0]
            assert str(fault("x")) in first[0]
            assert [SECURE] == await client.ask("postfix enforce.test")
            client.close()
        summary = [r.getMessage() for r in caplog.records if "more local faults" in r.getMessage()]
        assert 1 == len(summary)
        assert summary[0].startswith("4 more local faults in the last 10s (last: default d4.test")
        await resolver.aclose()

    def test_burst_log_without_loop(self, caplog: pytest.LogCaptureFixture) -> None:
        """
        SEC-56, issue 17 item 2: BurstLog logs the first line at once and sums the repeats.

        Without a running loop the summary comes with the first call after
        the interval (or flush()); a lone line after a quiet interval is
        logged at once.
        """
        caplog.set_level(logging.WARNING, logger="smtpsts.test.burst")
        now = [100.0]
        burst = BurstLog(logging.getLogger("smtpsts.test.burst"), "faults", clock=lambda: now[0])
        burst("fault %d", 1)
        burst("fault %d", 2)
        burst("fault %d", 3)
        assert ["fault 1"] == caplog.messages
        now[0] += 10.5
        burst("fault %d", 4)
        assert ["fault 1", "2 more faults in the last 10s (last: fault 3)"] == caplog.messages
        burst.flush()
        now[0] += 30
        burst("fault %d", 5)
        assert [
            "fault 1",
            "2 more faults in the last 10s (last: fault 3)",
            "1 more faults in the last 10s (last: fault 4)",
            "fault 5",
        ] == caplog.messages
        assert 0 == burst.suppressed

    @pytest.mark.asyncio
    async def test_burst_log_timer(self, caplog: pytest.LogCaptureFixture) -> None:
        """SEC-56, issue 17 item 2: with a running loop the summary is logged when the interval ends."""
        caplog.set_level(logging.WARNING, logger="smtpsts.test.burst")
        burst = BurstLog(logging.getLogger("smtpsts.test.burst"), "faults", interval=0.1)
        for i in range(4):
            burst("fault %d", i)
        assert ["fault 0"] == caplog.messages
        await until(lambda: len(caplog.messages) > 1, within=1)
        assert ["fault 0", "3 more faults in the last 0.1s (last: fault 3)"] == caplog.messages
        await asyncio.sleep(0.15)
        burst("fault %d", 9)
        assert "fault 9" == caplog.messages[-1]
        burst.cancel()


# --------------------------------------------------------------------------- deadlines


class TestDeadlines:
    @pytest.mark.asyncio
    async def test_uncached_timeout_answers_per_zone(
        self, https: HTTPSServer, dns_server: DNSServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        SEC-56, issue 10 item 3: a lookup past the zone timeout with no cached policy gets the zone's answer.

        NOTFOUND by default, TEMP with temp_on_timeout; counted in
        ``timeouts`` and logged with the domain.
        """
        caplog.set_level(logging.WARNING, logger=LOG)
        async with serving(config(), make_resolver(https, dns_server)) as running:
            client = await Client.connect(running)
            started = time.monotonic()
            answers = await client.ask("quick stall.test", "quicktemp stall.test")
            assert [b"NOTFOUND ", b"TEMP MTA-STS lookup for stall.test timed out"] == answers
            assert time.monotonic() - started < 1.5
            assert 2 == running.stats["timeouts"]
            assert 0 == running.stats["backstop_timeouts"]
            lines = [m for m in caplog.messages if "took longer than 0.3s" in m]
            why = "no cached policy and the lookup took longer than 0.3s; answering"
            assert [
                f"quick stall.test: {why} NOTFOUND",
                f"quicktemp stall.test: {why} TEMP",
            ] == lines
            client.close()

    @pytest.mark.asyncio
    async def test_live_policy_beats_hanging_host(
        self, https: HTTPSServer, dns_server: DNSServer
    ) -> None:
        """
        SEC-56, issue 10 items 1-3: a live cached policy answers OK secure at once under attack.

        After learning ``learn.test``, a new TXT id with a policy host that
        hangs, then TXT silence: every answer (also in the 0.3 s zone) is the
        cached policy within 1 s, never NOTFOUND.
        """
        resolver = make_resolver(https, dns_server)
        async with serving(config(answer_ttl=0), resolver) as running:
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix learn.test")
            dns_server.set("_mta-sts.learn.test", "TXT", '"v=STSv1; id=2;"')
            https.route("mta-sts.learn.test", stall(30))
            try:
                for zone in ("postfix", "quick", "postfix", "quick"):
                    started = time.monotonic()
                    assert [SECURE] == await client.ask(f"{zone} learn.test")
                    assert time.monotonic() - started < 1.0
                dns_server.drop("_mta-sts.learn.test")
                for zone in ("postfix", "quick"):
                    started = time.monotonic()
                    assert [SECURE] == await client.ask(f"{zone} learn.test")
                    assert time.monotonic() - started < 1.0
                assert 0 == running.stats["timeouts"] + running.stats["backstop_timeouts"]
            finally:
                dns_server.drop("_mta-sts.learn.test", on=False)
                dns_server.set("_mta-sts.learn.test", "TXT", '"v=STSv1; id=1;"')
                https.route("mta-sts.learn.test", policy(ENFORCE))
            client.close()
        await resolver.aclose()

    @pytest.mark.asyncio
    async def test_backstop_is_temp(
        self, https: HTTPSServer, dns_server: DNSServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SEC-56, issue 10 item 3: a resolver that ignores its deadline hits the backstop: TEMP."""

        class Hanging(PolicyResolver):
            async def aresolve(self, domain: str, now: Any = None, **kwargs: Any) -> Any:
                await asyncio.sleep(30)
                raise AssertionError("not reached")

        monkeypatch.setattr(server_module, "BACKSTOP_MARGIN", 0.2)
        async with serving(config(), Hanging(store=MemoryPolicyStore())) as running:
            client = await Client.connect(running)
            started = time.monotonic()
            assert [b"TEMP MTA-STS lookup for x.test timed out"] == await client.ask("quick x.test")
            assert 0.45 <= time.monotonic() - started < 1.5
            assert (1, 0) == (running.stats["backstop_timeouts"], running.stats["timeouts"])
            client.close()


# --------------------------------------------------------------------------- DANE


def dane_fake(delay: float) -> FakeDNSSEC:
    """DNSSEC answers: a secure MX ``mx.dane.test`` with a usable TLSA record, after ``delay``."""
    mx = DNSSECAnswer(
        DNSStatus.SECURE, "dane.test", "MX", records=(MXRecord(10, "mx.dane.test"),), secure=True
    )
    return FakeDNSSEC(mx, {"mx.dane.test": secure("mx.dane.test", USABLE)}, delay=delay)


@pytest_asyncio.fixture
async def dane_resolver(https: HTTPSServer, dns_server: DNSServer) -> AsyncIterator[PolicyResolver]:
    """A resolver that already holds a live policy for ``dane.test``."""
    resolver = make_resolver(https, dns_server)
    outcome = await resolver.aresolve("dane.test")
    assert outcome.policy is not None
    yield resolver
    await resolver.aclose()


class TestDaneBudget:
    @pytest.mark.asyncio
    async def test_slow_dane_with_live_policy(
        self, https: HTTPSServer, dns_server: DNSServer, dane_resolver: PolicyResolver
    ) -> None:
        """
        SEC-56, issue 10 item 2: with a live cached policy DANE gets DANE_BUDGET, then MTA-STS applies.

        TLSA lookups taking 1 s: the answer is ``OK secure`` after about
        0.5 s (``dane_timeouts``), the verdict lands behind it, and the next
        request is answered ``OK dane-only``. A domain without a cached
        policy waits for its first verdict (up to dns_timeout).
        """
        fake = dane_fake(1.0)
        checker = DaneChecker(fake)  # type: ignore[arg-type]
        cfg = config(default_zone=Zone(timeout=5), dns_timeout=5)
        async with serving(cfg, dane_resolver, dane=checker) as running:
            client = await Client.connect(running)
            started = time.monotonic()
            assert [SECURE] == await client.ask("postfix dane.test")
            assert DANE_BUDGET - 0.05 <= time.monotonic() - started < 1.0
            assert 1 == running.stats["dane_timeouts"]
            await until(lambda: checker.reusable_for("dane.test") is not None, within=3)
            started = time.monotonic()
            assert [DANE_ONLY] == await client.ask("postfix dane.test")
            assert time.monotonic() - started < 0.3
            # No cached policy: the first fetch waits for DANE (1 s < dns_timeout).
            assert [DANE_ONLY] == await client.ask("postfix fresh-dane.test")
            assert 1 == running.stats["dane_timeouts"]
            client.close()

    @pytest.mark.asyncio
    async def test_stale_verdict_answered_then_revalidated(
        self, https: HTTPSServer, dns_server: DNSServer, dane_resolver: PolicyResolver
    ) -> None:
        """
        SEC-56, issue 17: a stale DANE verdict is answered at once and re-checked behind it.

        Past its reuse time (300 s without TTLs) but within max_stale the
        old verdict answers without waiting; the re-check's new verdict
        serves the next request. Past max_stale the verdict is not used: the
        lookup waits DANE_BUDGET for a new one, then the cached policy applies.
        """
        now = [1000.0]
        fake = dane_fake(0.0)
        checker = DaneChecker(fake, clock=lambda: now[0], max_stale=100)  # type: ignore[arg-type]
        cfg = config(default_zone=Zone(timeout=5), dns_timeout=5, answer_ttl=0)
        async with serving(cfg, dane_resolver, dane=checker) as running:
            client = await Client.connect(running)
            assert [DANE_ONLY] == await client.ask("postfix dane.test")
            fake.delay = 1.0
            now[0] += 450  # past 300 s reuse + 100 s max_stale
            started = time.monotonic()
            assert [SECURE] == await client.ask("postfix dane.test")
            assert DANE_BUDGET - 0.05 <= time.monotonic() - started < 1.0
            assert (1, 0) == (running.stats["dane_timeouts"], checker.stats["stale"])
            await until(lambda: (checker.reusable_for("dane.test") or 0) > 0, within=3)
            assert [DANE_ONLY] == await client.ask("postfix dane.test")
            # Stale within max_stale: answered at once from the old verdict.
            fake.tlsa["mx.dane.test"] = TLSALookup(DNSStatus.INSECURE, "mx.dane.test", 25)
            now[0] += 350
            started = time.monotonic()
            assert [DANE_ONLY] == await client.ask("postfix dane.test")
            assert time.monotonic() - started < 0.3
            assert 1 == checker.stats["stale"]
            await until(lambda: (checker.reusable_for("dane.test") or 0) > 0, within=3)
            assert [SECURE] == await client.ask("postfix dane.test")
            assert 1 == running.stats["dane_timeouts"]
            client.close()
