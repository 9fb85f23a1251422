"""
A real Dovecot IMAP server from Debian, in a temporary directory (issue 13 item 2).

``/usr/sbin/dovecot -F -c CONF`` runs in the foreground with a configuration
written here: one user from a passwd-file (``{PLAIN}`` password), mail in a
Maildir under the temporary directory, TLS with a certificate from a CA made
for the test, and two listeners on free loopback ports: ``imap`` (cleartext,
STARTTLS offered) and ``imaps`` (implicit TLS). The tests run as root, so
Dovecot still never opens mail as root: the mail user is ``nobody``, who owns
the Maildir (:meth:`DovecotServer.deliver` hands new files over); the login
processes run as Debian's ``dovenull`` and ``dovecot`` users, so the
directories they enter are world-readable.

A missing binary skips the tests locally and fails them under
``SMTPSTS_REQUIRE_SERVICES`` (:func:`conftest.require_binary`). Every wait is
bounded; the server is stopped (SIGTERM, then SIGKILL) on teardown.

Typical use::

    with DovecotServer(ca) as server:
        server.deliver(b"From: ...")           # straight into the Maildir
        imaps://tlsrpt@127.0.0.1:{server.imaps_port}/INBOX
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509

import certfactory
from conftest import require_binary

__all__ = ["PASSWORD", "USER", "DovecotServer", "dovecot_server", "make_ca"]

USER = "tlsrpt"
"""The mail user's name."""
PASSWORD = "s3cret-for-tests"
"""The mail user's password."""

_START_DEADLINE = 20.0


def make_ca() -> certfactory.Issued:
    """A fresh CA for a Dovecot's certificate."""
    return certfactory.make("smtpsts Dovecot test CA", ca=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class DovecotServer:
    """
    A running Dovecot: its ports, its Maildir and its CA.

    Args:
        ca: The CA that issues the server's certificate (for ``127.0.0.1``
            and ``localhost``).
        capabilities: Replaces the capabilities announced after login
            (``imap_capability``), e.g. without ``MOVE`` to test the
            COPY fallback; ``None`` keeps Dovecot's own.
        plaintext_auth: Allow a login without TLS (``disable_plaintext_auth = no``).
    """

    def __init__(
        self,
        ca: certfactory.Issued,
        *,
        capabilities: str | None = None,
        plaintext_auth: bool = True,
    ) -> None:
        self.binary = require_binary("dovecot")
        self.ca = ca
        # Not under pytest's basetemp (0700): the login processes run as other users.
        self.root = Path(tempfile.mkdtemp(prefix="smtpsts-dovecot-"))
        self.root.chmod(0o755)
        self.imap_port = _free_port()
        self.imaps_port = _free_port()
        self.capabilities = capabilities
        self.plaintext_auth = plaintext_auth
        self.maildir = self.root / "mail" / USER
        self.cafile = self.root / "ca.pem"
        self._process: subprocess.Popen[bytes] | None = None
        # Dovecot never opens mail as root: the mail user is Debian's nobody.
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid

    def _chown(self, *paths: Path) -> None:
        for top in paths:
            for path in (top, *top.rglob("*")):
                os.chown(path, self.uid, self.gid)

    def _write_config(self) -> Path:
        leaf = certfactory.make(
            "localhost",
            issuer=self.ca,
            san=["localhost", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        (self.root / "cert.pem").write_bytes(leaf.pem)
        key = self.root / "key.pem"
        key.write_bytes(leaf.key_pem)
        key.chmod(0o600)
        self.cafile.write_bytes(self.ca.pem)
        home = self.root / "home"
        home.mkdir()
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::::{home}::\n")
        for name in ("run", "state"):
            (self.root / name).mkdir(mode=0o755)
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        self._chown(self.root / "mail", home)
        extra = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        conf = self.root / "dovecot.conf"
        conf.write_text(
            f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.root}/cert.pem
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = {"no" if self.plaintext_auth else "yes"}
auth_mechanisms = plain login
first_valid_uid = 1
first_valid_gid = 1
mail_uid = {self.uid}
mail_gid = {self.gid}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{self.root}/mail/%u
mail_fsync = never
login_greeting = smtpsts test Dovecot ready
{extra}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )
        return conf

    def start(self) -> None:
        """
        Start Dovecot and wait (at most 20 s) until both listeners accept.

        Raises:
            RuntimeError: It did not start; the message holds its log.
        """
        conf = self._write_config()
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + _START_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _accepting(self.imap_port) and _accepting(self.imaps_port):
                return
            time.sleep(0.05)
        detail = self.log()
        self.stop()
        raise RuntimeError(f"Dovecot did not start: {detail}")

    def log(self) -> str:
        """The server's log so far (and its stderr once it exited)."""
        path = self.root / "dovecot.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self._process is not None and self._process.poll() is not None:
            assert self._process.stderr is not None
            text += self._process.stderr.read().decode(errors="replace")
        return text

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM, then SIGKILL after 10 s) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def folder(self, name: str) -> Path:
        """
        The Maildir++ directory of an IMAP folder (``INBOX`` or ``a/b``, separator ``.``).

        Args:
            name: The folder's IMAP name.

        Returns:
            The path (it may not exist).
        """
        if name.upper() == "INBOX":
            return self.maildir
        return self.maildir / ("." + name.replace("/", "."))

    def deliver(self, message: bytes, folder: str = "INBOX") -> str:
        """
        Put a message into a folder's ``new/`` the way an MDA would (tmp, then rename).

        Args:
            message: The message.
            folder: The IMAP folder.

        Returns:
            The file name.
        """
        base = self.folder(folder)
        for sub in ("cur", "new", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.smtpsts-test"
        tmp = base / "tmp" / name
        tmp.write_bytes(message)
        tmp.rename(base / "new" / name)
        self._chown(self.maildir)
        return name

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """
        The messages in a folder on disk (``new/`` and ``cur/``), sorted by content.

        Args:
            folder: The IMAP folder.

        Returns:
            The messages' bytes.
        """
        base = self.folder(folder)
        found = [
            path.read_bytes()
            for sub in ("new", "cur")
            if (base / sub).is_dir()
            for path in (base / sub).iterdir()
        ]
        return sorted(found)


def dovecot_server(
    ca: certfactory.Issued | None = None, **options: object
) -> Iterator[DovecotServer]:
    """
    Generator body for a pytest fixture: a running Dovecot, stopped at the end.

    Args:
        ca: The CA (a fresh one by default).
        options: More :class:`DovecotServer` arguments.

    Yields:
        The server.
    """
    with DovecotServer(ca or make_ca(), **options) as server:  # type: ignore[arg-type]
        yield server
