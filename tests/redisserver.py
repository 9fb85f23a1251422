"""
A real ``redis-server`` on a free loopback port, for the Redis store tests.

Started with no persistence (``--save '' --appendonly no``); the binary is
found with :func:`conftest.require_binary`, so a missing server skips the
test locally and fails it in CI (``SMTPSTS_REQUIRE_SERVICES``).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import require_binary

__all__ = ["RedisServer", "redis_server"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A running ``redis-server`` process on ``127.0.0.1:<port>``."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="smtpsts-redis-")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, port: int | None = None) -> None:
        """Start the server and wait until it accepts connections (at most 10 s)."""
        for _ in range(5):
            self.port = port or _free_port()
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir.name,
                    "--daemonize",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop the server and start it again, empty (no persistence), on the same port."""
        port = self.port
        self.stop()
        self.start(port=port)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._dir.cleanup()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Run a fresh ``redis-server`` for the duration of the block."""
    server = RedisServer(require_binary("redis-server"))
    server.start()
    try:
        yield server
    finally:
        server.close()
