"""
The listening sockets of ``smtpsts postfix serve``.

- :func:`parse_listen`: ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH``;
- :func:`_bind_tcp` and :func:`_bind_unix`: the listening sockets, a unix
  one never more open than its mode and given to Postfix's group (SEC-56,
  issue 10 item 6);
- :class:`_Listener`: ``accept()`` by hand, pausing on descriptor
  exhaustion instead of flooding the log (issue 10 item 4);
- :func:`_is_loopback` and :func:`_peer_uid`: what admission needs to know
  about a peer.

The admission decisions themselves are :class:`~smtpsts.postfix.server.PolicyServer`'s.
Everything here is re-exported by :mod:`smtpsts.postfix.server`, and logs
to the server's logger, ``smtpsts.postfix.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Any, Final

from smtpsts.postfix.config import ConfigError

if TYPE_CHECKING:
    from smtpsts.postfix._connection import _Connection
    from smtpsts.postfix.server import PolicyServer

__all__ = ["ACCEPT_PAUSE", "LISTEN_BACKLOG", "parse_listen"]

log = logging.getLogger("smtpsts.postfix.server")  # the server's one logger

LISTEN_BACKLOG: Final = 1024
"""The listen() backlog of every listener."""

ACCEPT_PAUSE: Final = 0.5  # documented in smtpsts.postfix.server, which exports it

_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_PEERCRED: Final = struct.Struct("3i")


def parse_listen(spec: str) -> tuple[str, int] | str:
    """
    Parse a listen address.

    Args:
        spec: ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH``.

    Returns:
        ``(host, port)`` for TCP, the path for a unix socket.

    Raises:
        ValueError: The address is malformed.
    """
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError(f"listen address {spec!r}: empty unix socket path")
        return path
    host, sep, port = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {spec!r}: expected HOST:PORT, [IPv6]:PORT or unix:PATH")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:  # pragma: no cover -- accept() gives numeric addresses
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _socket_group(name: str | None) -> int | None:
    # The gid unix sockets get: the configured group, else postfix's if it exists.
    import grp  # noqa: PLC0415 -- POSIX only

    try:
        return grp.getgrnam(name or "postfix").gr_gid
    except KeyError:
        if name is not None:
            raise ConfigError(f"server.unix_group: no group {name!r}") from None
        log.info("no group postfix: unix sockets keep the server's group")
        return None


def _bind_tcp(host: str, port: int) -> list[socket.socket]:
    # One listening socket per address the host name gives (as asyncio does).
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)  # noqa: FBT003
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_unix(path: str, mode: int, group: str | None) -> socket.socket:
    # E (issue 10 item 6): the socket is never more open than ``mode``, not
    # even between bind() and chmod(), and belongs to Postfix's group (or the
    # configured ``group``, which must exist and be given).
    gid = _socket_group(group)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):  # noqa: PTH116 -- a stale socket
            os.unlink(path)  # noqa: PTH108
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(umask)
        os.chmod(path, mode)  # noqa: PTH101
        if gid is not None:
            try:
                os.chown(path, -1, gid)
            except PermissionError as e:
                if group is not None:
                    raise
                log.warning(
                    "cannot give %s to group postfix (%s): Postfix may not connect to it",
                    path,
                    e,
                )
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)  # noqa: FBT003
    except BaseException:
        sock.close()
        raise
    return sock


def _peer_uid(sock: socket.socket) -> int:
    # The uid of a unix socket's peer (SO_PEERCRED), -1 when unknown.
    try:
        _pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except OSError:  # pragma: no cover -- Linux always has SO_PEERCRED
        return -1
    return int(uid)


class _Listener:
    """
    One listening socket, accepted by hand rather than by ``loop.create_server``.

    asyncio's own accept loop reports every ``EMFILE`` of a burst (up to its
    backlog per wake-up) with a traceback and schedules as many retries;
    uvloop's drops the pending connections. Here ``accept()`` failing for
    lack of descriptors or memory pauses this listener for
    :data:`ACCEPT_PAUSE` and is logged once per burst; an admitted socket
    gets its transport from ``loop.connect_accepted_socket``.
    """

    def __init__(self, server: PolicyServer, sock: socket.socket, spec: str, *, unix: bool) -> None:
        self.server = server
        self.sock = sock
        self.spec = spec
        self.unix = unix
        self.address: Any = sock.getsockname()
        self.loop = asyncio.get_running_loop()
        self.inode = os.stat(self.address).st_ino if unix else 0  # noqa: PTH116
        self.paused: asyncio.TimerHandle | None = None
        self.closed = False

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        sock = self.sock
        for _ in range(LISTEN_BACKLOG):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno in _RESOURCE_ERRNOS:
                    self.loop.remove_reader(sock.fileno())
                    self.paused = self.loop.call_later(ACCEPT_PAUSE, self._resume)
                    self.server.accept_fault(self.spec, e, ACCEPT_PAUSE)
                    return
                log.warning("accept() on %s failed: %s", self.spec, e)  # pragma: no cover
                return  # pragma: no cover
            conn.setblocking(False)  # noqa: FBT003
            self.server.accepted(conn, peer, self)

    def _resume(self) -> None:
        self.paused = None
        if not self.closed:
            self.start()

    async def connect(self, connection: _Connection, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: connection, conn)
        except Exception as e:  # noqa: BLE001 -- the socket is gone; nothing to answer
            log.info("connection from %s lost while set up: %s", connection.peer, e)
            conn.close()
            self.server.unregister(connection)
            connection.connection_lost(None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.paused is not None:
            self.paused.cancel()
        else:
            self.loop.remove_reader(self.sock.fileno())
        if self.unix:
            with contextlib.suppress(OSError):
                if os.stat(self.address).st_ino == self.inode:  # noqa: PTH116
                    os.unlink(self.address)  # noqa: PTH108
        self.sock.close()
