"""
The harness of the downgrade matrix (issues 10 and 17): attacks, server processes, clients.

- :data:`ATTACKS`: what an attacker does to a domain whose ``enforce`` policy
  is cached (DNS: NXDOMAIN, SERVFAIL, silence; a new ``id`` with a hostile
  policy host; the same ``id`` with a hanging host; everything dead). Every
  body an attacker serves is a ``mode: none`` policy, so a fetcher that
  wrongly accepted it would visibly downgrade the domain.
- :class:`Wiring`: the loopback DNS and HTTPS servers, and how one domain is
  published (``publish``) and attacked (``attack``).
- :class:`ServerProcess`: ``python -m smtpsts postfix serve --config FILE``
  as a black box on a unix socket, optionally with a descriptor limit.
- :func:`ask`: a netstring (socketmap) client that times each answer.
- :class:`Gate`: a TCP relay in front of the HTTPS server that can be shut,
  leaving a closed port (connection refused).
- :class:`CountingSMTP`: a plaintext SMTP server that counts who connects
  (the attacker's MX).
- :class:`RestartableRedis`: a ``redis-server`` that can restart empty on its port.

Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from dnsserver import DNSServer
from httpsservers import (
    ENFORCE,
    HTTPSServer,
    oversized,
    policy,
    redirect,
    reset,
    slow_drip,
    stall,
)
from redisserver import RedisServer
from smtpsts.postfix.netstring import NetstringDecoder, encode

__all__ = [
    "ATTACKS",
    "MATCH",
    "Attack",
    "CountingSMTP",
    "Gate",
    "RestartableRedis",
    "ServerProcess",
    "Timed",
    "Wiring",
    "ask",
    "ask_many",
    "enforce_body",
    "free_port",
]

MATCH = b"OK secure match=mail.example.com:.example.net"
"""The start of the server's answer for the policy of :func:`enforce_body`."""

NONE_BODY = b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
"""What an attacker serves: a valid ``mode: none`` policy (a downgrade if accepted)."""

ATTACKER_HOST = "policy.attacker.test"
"""Where the redirects point: a trusted certificate, serving :data:`NONE_BODY`."""

NEW_ID = '"v=STSv1; id=20990101;"'
"""The ``_mta-sts`` record an attacker publishes to force a new fetch."""


def enforce_body(max_age: int) -> bytes:
    """The ``enforce`` policy of :data:`httpsservers.ENFORCE` with another ``max_age``."""
    return ENFORCE.replace(b"max_age: 86400", b"max_age: %d" % max_age)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- TCP gate


class Gate:
    """
    A TCP relay on 127.0.0.1 to ``target``; :meth:`shut` leaves a closed port.

    Args:
        target: Where connections are relayed to.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with (
            conn,
            contextlib.suppress(OSError),
            socket.create_connection(self.target, 5) as up,
            selectors.DefaultSelector() as selector,
        ):
            selector.register(conn, selectors.EVENT_READ, up)
            selector.register(up, selectors.EVENT_READ, conn)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)

    def shut(self) -> None:
        """Stop relaying and close the listening port (new connections are refused)."""
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------- the attacker's MX


class CountingSMTP:
    """A plaintext SMTP server (no STARTTLS) on 127.0.0.1 that counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError), conn.makefile("rb") as lines:
            conn.sendall(b"220 evil.attacker.test ESMTP\r\n")
            while line := lines.readline(4096):
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-evil.attacker.test\r\n250 8BITMIME\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        """Stop serving."""
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------- attacks


@attrs.frozen
class Attack:
    """
    One attack on a domain whose ``enforce`` policy is cached.

    Attributes:
        name: The test id.
        cites: Conformance IDs and issue items it exercises.
        result_types: The TLS-RPT result types the lookup's ``failure`` may
            carry once the resolver has run its checks (besides the
            ``backoff-after-recent-fetch-error`` of a refetch held back);
            empty: no failure at all (nothing changed that needs a fetch).
        kills_mx_dns: The attack also silences the domain's own name (MX).
    """

    name: str
    cites: str
    result_types: tuple[str, ...]
    kills_mx_dns: bool = False


FETCH_ERROR = ("sts-policy-fetch-error",)
WEBPKI = ("sts-webpki-invalid",)

ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack("txt-nxdomain", "SEC-02, STS-CACHE-07", FETCH_ERROR),
        Attack("txt-servfail", "STS-CACHE-07", FETCH_ERROR),
        Attack("txt-dropped", "STS-CACHE-07", FETCH_ERROR),
        Attack("txt-garbled", "STS-CACHE-07", FETCH_ERROR),
        Attack("new-id-port-closed", "STS-CACHE-06, STS-FETCH-16", FETCH_ERROR),
        Attack("new-id-reset", "STS-CACHE-06, STS-FETCH-16", FETCH_ERROR),
        Attack("new-id-hang", "STS-CACHE-06, STS-FETCH-11", FETCH_ERROR),
        Attack("new-id-drip", "STS-CACHE-06, STS-FETCH-11", FETCH_ERROR),
        Attack("new-id-404", "STS-CACHE-06, STS-FETCH-06", FETCH_ERROR),
        Attack("new-id-500", "STS-CACHE-06, STS-FETCH-06", FETCH_ERROR),
        Attack("new-id-redirect-301", "STS-CACHE-06, STS-FETCH-07", FETCH_ERROR),
        Attack("new-id-redirect-302", "STS-CACHE-06, STS-FETCH-07", FETCH_ERROR),
        Attack("new-id-text-html", "STS-CACHE-06, STS-FETCH-09", FETCH_ERROR),
        Attack("new-id-oversized", "STS-CACHE-06, STS-FETCH-12", FETCH_ERROR),
        Attack("new-id-cert-other-name", "STS-CACHE-06, STS-FETCH-03", WEBPKI),
        Attack("new-id-cert-expired", "STS-CACHE-06, STS-FETCH-03", WEBPKI),
        Attack("new-id-cert-untrusted", "STS-CACHE-06, STS-FETCH-03", WEBPKI),
        Attack("new-id-invalid-body", "STS-CACHE-06", ("sts-policy-invalid",)),
        Attack("same-id-hang", "STS-CACHE-04", ()),
        Attack("dns-and-https-dead", "STS-CACHE-07, STS-FETCH-16", FETCH_ERROR, kills_mx_dns=True),
    )
}


class Wiring:
    """
    The loopback DNS and HTTPS servers every case shares, and what the attacker does to them.

    Args:
        dns: The DNS server.
        https: The HTTPS policy host.
    """

    def __init__(self, dns: DNSServer, https: HTTPSServer) -> None:
        self.dns = dns
        self.https = https
        self.gates: dict[str, Gate] = {}
        https.route(ATTACKER_HOST, policy(NONE_BODY))

    def publish(self, domain: str, attack: str, *, max_age: int, ttl: int = 1) -> None:
        """
        Publish an ``enforce`` policy for ``domain`` (TXT ``id=1``, TTL ``ttl``).

        The policy host of the ``new-id-port-closed`` case is reached through
        its own :class:`Gate`.
        """
        self.dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"', ttl=ttl)
        self.https.route(f"mta-sts.{domain}", policy(enforce_body(max_age)))
        if attack == "new-id-port-closed":
            self.gates[domain] = Gate(("127.0.0.1", self.https.port))

    def connect_to(self, domain: str) -> dict[tuple[str, int], tuple[str, int]]:
        """Where the fetchers reach ``mta-sts.<domain>`` (and the attacker's host) on 443."""
        mapping = self.https.connect_to(f"mta-sts.{domain}", ATTACKER_HOST)
        gate = self.gates.get(domain)
        if gate is not None:
            mapping[(f"mta-sts.{domain}", 443)] = ("127.0.0.1", gate.port)
        return mapping

    def connect_to_specs(self, domains: Iterable[str]) -> list[str]:
        """The server's ``connect_to`` settings (``HOST:PORT:ADDR:PORT``) for ``domains``."""
        mapping: dict[tuple[str, int], tuple[str, int]] = {}
        for domain in domains:
            mapping |= self.connect_to(domain)
        return [f"{h}:{p}:{a}:{ap}" for (h, p), (a, ap) in sorted(mapping.items())]

    def attack(self, domain: str, attack: str) -> None:
        """Apply ``attack`` to ``domain`` (DNS and HTTPS changes take effect at once)."""
        dns, https, host, txt = self.dns, self.https, f"mta-sts.{domain}", f"_mta-sts.{domain}"
        if attack == "txt-nxdomain":
            dns.remove(txt)
        elif attack == "txt-servfail":
            dns.servfail(txt)
        elif attack == "txt-dropped":
            dns.drop(txt)
        elif attack == "txt-garbled":
            dns.set(txt, "TXT", '"v=STSv1; id=bad-id;"', ttl=1)
        elif attack == "same-id-hang":
            https.route(host, stall(60))
        elif attack == "dns-and-https-dead":
            for name in (txt, domain, host):
                dns.drop(name)
            https.route(host, stall(60))
        else:
            dns.set(txt, "TXT", NEW_ID, ttl=1)
            self._host_attack(domain, attack)

    def _host_attack(self, domain: str, attack: str) -> None:
        https, host = self.https, f"mta-sts.{domain}"
        location = f"https://{ATTACKER_HOST}/.well-known/mta-sts.txt"
        handlers: dict[str, Callable[[], Any]] = {
            "new-id-reset": reset,
            "new-id-hang": lambda: stall(60),
            "new-id-drip": lambda: slow_drip(0.5, body=NONE_BODY),
            "new-id-404": lambda: policy(b"not found\n", status="404 Not Found"),
            "new-id-500": lambda: policy(NONE_BODY, status="500 Internal Server Error"),
            "new-id-redirect-301": lambda: redirect(location),
            "new-id-redirect-302": lambda: redirect(location, status="302 Found"),
            "new-id-text-html": lambda: policy(NONE_BODY, content_type="text/html"),
            "new-id-oversized": lambda: oversized(head=NONE_BODY + b"# "),
            "new-id-invalid-body": lambda: policy(b"version: STSv1\r\nmode: none\r\n"),
        }
        if attack == "new-id-port-closed":
            self.gates[domain].shut()
        elif attack in handlers:
            https.route(host, handlers[attack]())
        else:
            https.route(host, policy(NONE_BODY))
            if attack == "new-id-cert-other-name":
                https.certificate(host, names=["mta-sts.other.example.org"])
            elif attack == "new-id-cert-expired":
                from datetime import UTC, datetime

                https.certificate(host, not_after=datetime(2001, 1, 1, tzinfo=UTC))
            else:
                assert attack == "new-id-cert-untrusted", attack
                https.certificate(host, untrusted=True)

    def close(self) -> None:
        """Shut every gate still open."""
        for gate in self.gates.values():
            with contextlib.suppress(OSError):
                gate.shut()


# --------------------------------------------------------------------------- socketmap client


@attrs.frozen
class Timed:
    """
    One answer and how long it took.

    Attributes:
        value: The answer (netstring payload, outcome, delivery), or ``None``.
        elapsed: Seconds from the request to the answer.
        error: What went wrong instead (``repr`` of the exception), or ``None``.
    """

    value: Any
    elapsed: float
    error: str | None = None

    def __str__(self) -> str:
        what = self.error if self.error is not None else repr(self.value)
        return f"{what} after {self.elapsed:.2f}s"


Address = str | tuple[str, int]


def _connect(address: Address, timeout: float) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def read_answers(sock: socket.socket, count: int, deadline: float) -> list[bytes]:
    """Read ``count`` netstring answers from ``sock`` by ``deadline`` (monotonic)."""
    decoder = NetstringDecoder(100_000)
    got: list[bytes] = []
    while len(got) < count:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {len(got)} of {count} answers")
        got += decoder.feed(data)
    return got


def ask(address: Address, request: str, *, timeout: float = 20.0) -> Timed:
    """
    Send one socketmap request on a new connection and time the answer.

    Args:
        address: A unix socket path or ``(host, port)``.
        request: ``NAME KEY``.
        timeout: The most to wait, in seconds (the answer then is an error).

    Returns:
        The answer payload (bytes), or the error.
    """
    started = time.monotonic()
    try:
        with _connect(address, timeout) as sock:
            sock.sendall(encode(request.encode()))
            answer = read_answers(sock, 1, started + timeout)[0]
    except (OSError, ConnectionError) as exc:
        return Timed(None, time.monotonic() - started, repr(exc))
    return Timed(answer, time.monotonic() - started)


def ask_many(address: Address, requests: Sequence[str], *, timeout: float = 20.0) -> list[Timed]:
    """:func:`ask` every request at once, each on its own connection and thread."""
    results: list[Timed | None] = [None] * len(requests)

    def one(index: int) -> None:
        results[index] = ask(address, requests[index], timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return [r if r is not None else Timed(None, timeout, "no answer") for r in results]


# --------------------------------------------------------------------------- server process


class ServerProcess:
    """
    ``python -m smtpsts postfix serve --config FILE`` on a unix socket, as a black box.

    Args:
        directory: Where the config, socket and log go.
        toml: The configuration without ``[server] listen`` (this adds it).
        server: More ``[server]`` lines (``max_connections = 4000``).
        nofile: Soft and hard ``RLIMIT_NOFILE`` of the process, if given.
        name: Distinguishes several processes in one directory.
    """

    def __init__(
        self,
        directory: Path,
        toml: str,
        *,
        server: Sequence[str] = (),
        nofile: int | None = None,
        name: str = "server",
    ) -> None:
        self.socket = str(directory / f"{name}.sock")
        self.config = directory / f"{name}.toml"
        self.log = directory / f"{name}.log"
        lines = ["[server]", f'listen = ["unix:{self.socket}"]', *server, ""]
        self.config.write_text("\n".join(lines) + toml)
        self.nofile = nofile
        self.process: subprocess.Popen[bytes] | None = None

    def _limits(self) -> None:  # pragma: no cover -- runs in the child
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self, *, timeout: float = 20.0) -> ServerProcess:
        """Start the process and wait until its socket answers a request."""
        Path(self.socket).unlink(missing_ok=True)
        command = [sys.executable, "-m", "smtpsts", "postfix", "serve", "--config"]
        command += [str(self.config), "--log-level", "info"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=self._limits if self.nofile is not None else None,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.logs()}")
            probe = ask(self.socket, "postfix [192.0.2.1]", timeout=1.0)
            if probe.error is None:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer within {timeout}s: {self.logs()}")

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def descriptors(self) -> int:
        """How many file descriptors the process has open (Linux ``/proc``)."""
        return sum(1 for _ in Path(f"/proc/{self.pid}/fd").iterdir())

    def stop(self) -> int | None:
        """SIGTERM, wait up to 15 s (then SIGKILL); the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def logs(self) -> str:
        """The process's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def server_toml(
    wiring: Wiring,
    domains: Iterable[str],
    cafile: Path,
    cache: str,
    *,
    extra: str = "",
) -> str:
    """
    The configuration of a matrix server: the test's DNS, CA and connect_to, 5 s timeouts.

    Args:
        wiring: The DNS and HTTPS servers.
        domains: The policy domains it must reach.
        cafile: The test CA's PEM file.
        cache: The ``[cache]`` lines.
        extra: More sections.
    """
    specs = ", ".join(f'"{s}"' for s in wiring.connect_to_specs(domains))
    return (
        f"[cache]\n{cache}\n"
        f'[resolver]\nnameservers = ["{wiring.dns.address}"]\ntimeout = 5\n'
        f'cafile = "{cafile}"\nconnect_to = [{specs}]\n'
        "[policy]\nfetch_timeout = 5\n" + extra
    )


# --------------------------------------------------------------------------- Redis


class RestartableRedis(RedisServer):
    """A ``redis-server`` without persistence that can restart, empty, on the same port."""

    def restart(self) -> None:
        """Stop the server and start a new, empty one on the same port (at most 10 s)."""
        port = self.port
        self.stop()
        self._process = subprocess.Popen(
            [
                *(self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not restart")

    def command(self, *args: str) -> bytes:
        """Send one command (inline protocol) and return the first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(" ".join(args).encode() + b"\r\n")
            return s.recv(4096).split(b"\r\n")[0]
