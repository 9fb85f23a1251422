"""
Real SMTP servers with STARTTLS (stdlib ``ssl``) on loopback, for the probe tests.

One :class:`SMTPServer` listens on a free 127.0.0.1 port and serves each
connection in a thread, behaving as told:

``normal``            220, EHLO lists STARTTLS, handshake, then EHLO/QUIT over TLS
``no-starttls``       EHLO does not list STARTTLS
``refuse-starttls``   STARTTLS answered 454
``stall-handshake``   220 to STARTTLS, then silence (reads the ClientHello, never answers)
``stall-greeting``    accepts the connection and never greets
``pipelined``         sends a plaintext line right after the 220 to STARTTLS
``long-line``         greets with a 5000-octet line
``no-ehlo``           answers EHLO with 502
``bad-greeting``      greets with 554

Certificates come from :mod:`certfactory` (cryptography, made at test time).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Self

from certfactory import Issued, chain_pem

BEHAVIOURS = (
    "normal",
    "no-starttls",
    "refuse-starttls",
    "stall-handshake",
    "stall-greeting",
    "pipelined",
    "long-line",
    "no-ehlo",
    "bad-greeting",
)


def server_context(
    leaf: Issued,
    *intermediates: Issued,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A TLS server context presenting ``leaf`` and ``intermediates``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if maximum_version is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = maximum_version
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain_pem(leaf, *intermediates))
        context.load_cert_chain(path)
    finally:
        Path(path).unlink()
    return context


class SMTPServer:
    """
    A threaded SMTP test server on ``127.0.0.1`` (use as a context manager).

    Attributes:
        port: The port it listens on.
        address: ``"127.0.0.1"``.
        handshakes: Number of TLS handshakes that completed.
        snis: The SNI names clients sent.
    """

    def __init__(self, context: ssl.SSLContext | None, behaviour: str = "normal") -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(behaviour)
        self.context = context
        self.behaviour = behaviour
        self.address = "127.0.0.1"
        self.handshakes = 0
        self.snis: list[str | None] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((self.address, 0))
        self.port = int(self._listener.getsockname()[1])
        self._listener.settimeout(0.05)
        if context is not None:
            context.sni_callback = self._record_sni

    def _record_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.snis.append(name)

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve_safely, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve_safely(self, conn: socket.socket) -> None:
        opened: list[socket.socket] = [conn]
        with contextlib.suppress(OSError, ssl.SSLError, EOFError):
            self._serve(conn, opened)
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.close()

    def _wait_for_stop(self) -> None:
        self._stop.wait(30)

    def _serve(self, conn: socket.socket, opened: list[socket.socket]) -> None:
        conn.settimeout(10)
        sock: socket.socket = conn
        buffer = bytearray()

        def readline() -> bytes:
            while b"\n" not in buffer:
                data = sock.recv(4096)
                if not data:
                    raise EOFError
                buffer.extend(data)
            end = buffer.index(b"\n") + 1
            line = bytes(buffer[:end])
            del buffer[:end]
            return line.strip()

        b = self.behaviour
        if b == "stall-greeting":
            self._wait_for_stop()
            return
        if b == "long-line":
            sock.sendall(b"220 " + b"x" * 5000 + b"\r\n")
            self._wait_for_stop()
            return
        if b == "bad-greeting":
            sock.sendall(b"554 no service here\r\n")
            readline()
            return
        sock.sendall(b"220 mx.test ESMTP test server\r\n")
        tls = False
        while True:
            command = readline().upper()
            if command.startswith((b"EHLO", b"HELO")):
                if b == "no-ehlo":
                    sock.sendall(b"502 5.5.1 EHLO not implemented\r\n")
                    continue
                offer = b"" if (b == "no-starttls" or tls) else b"250-STARTTLS\r\n"
                sock.sendall(
                    b"250-mx.test greets you\r\n250-SIZE 10240000\r\n" + offer + b"250 8BITMIME\r\n"
                )
            elif command == b"STARTTLS" and not tls:
                if b == "refuse-starttls":
                    sock.sendall(b"454 4.7.0 TLS not available\r\n")
                    continue
                if b == "pipelined":
                    sock.sendall(b"220 2.0.0 go ahead\r\n250 injected\r\n")
                    self._wait_for_stop()
                    return
                sock.sendall(b"220 2.0.0 go ahead\r\n")
                if b == "stall-handshake":
                    sock.recv(4096)  # the ClientHello
                    self._wait_for_stop()
                    return
                assert self.context is not None
                sock = self.context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                opened.append(sock)
                sock.do_handshake()
                with self._lock:
                    self.handshakes += 1
                tls = True
            elif command == b"QUIT":
                sock.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                sock.sendall(b"500 5.5.2 what?\r\n")
