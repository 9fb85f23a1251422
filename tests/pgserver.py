"""
A real PostgreSQL server from Debian, in a temporary directory (issue 13 item 3).

``initdb`` and ``pg_ctl`` come from ``/usr/lib/postgresql/*/bin`` (Debian package
``postgresql``). PostgreSQL refuses to run as root, so when the tests run as
root the data directory is owned by the ``postgres`` user and the commands
run through ``runuser -u postgres --``. The server listens on a unix socket
in the temporary directory and on 127.0.0.1 at a free port; every wait is
bounded, and the server is stopped (fast, then immediate) on teardown.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_binary

__all__ = ["PostgresServer", "postgres_server"]


def _bindir() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        require_binary("pg_ctl")  # skips, or fails under SMTPSTS_REQUIRE_SERVICES
    return str(Path(found[-1]).parent) if found else str(Path(require_binary("pg_ctl")).parent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """
    A running server: its DSN over TCP (127.0.0.1) and over the unix socket.

    Args:
        root: An empty temporary directory.
    """

    def __init__(self, root: Path) -> None:
        self.bindir = _bindir()
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        self.user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            self.prefix = [require_binary("runuser"), "-u", "postgres", "--"]
            self.user = "postgres"
            shutil.chown(root, "postgres", "postgres")
        root.chmod(0o755)
        self.dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        self.socket_dsn = f"host={root} port={self.port} user={self.user} dbname=postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self.prefix, *args], check=True, timeout=timeout, capture_output=True, cwd=self.root
        )

    def start(self) -> None:
        """Create the cluster and start the server (bounded waits)."""
        self._run(
            f"{self.bindir}/initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "-U",
            self.user,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root} -c fsync=off"
            " -c max_connections=20 -c shared_buffers=16MB"
        )
        self._run(
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self) -> None:
        """Stop the server: fast, then immediate."""
        for mode in ("fast", "immediate"):
            try:
                self._run(
                    f"{self.bindir}/pg_ctl",
                    "-D",
                    str(self.data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "15",
                    "stop",
                    timeout=30,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                continue
            return

    def fresh_database(self, name: str) -> str:
        """
        Create an empty database.

        Args:
            name: Its name (an identifier).

        Returns:
            Its DSN over TCP.
        """
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn.replace("dbname=postgres", f"dbname={name}")


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the module's tests, stopped and removed at the end."""
    # Not under pytest's basetemp: that is 0700 to its owner, and the server
    # may run as another user; a short path also keeps the socket name short.
    root = Path(tempfile.mkdtemp(prefix="smtpsts-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.root / "log"
        detail = log.read_text() if log.exists() else ""
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr!r} {detail}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
