"""
The attacker's network of the scorecard: servers on their real ports, and the attacker's toolbox.

Only run inside the private network namespace the runner creates
(:mod:`smtpsts.lab.scorecard.runner`): the DNS server binds
``127.0.0.1:53``, the policy host ``127.0.0.1:443`` (SNI picks the
certificate) and every MX host its own ``127.0.1.N:25``, so that MX and A
records choose the server as in production. Each receiving server records
every message: arrived, over TLS or not, and which certificate it presented.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import socketserver
import ssl
import tempfile
from pathlib import Path
from typing import Self

import attrs
from cryptography.hazmat.primitives import serialization

from smtpsts.lab.servers import (
    CA,
    DNSServer,
    HTTPSServer,
    Issued,
    SMTPServer,
    _serve,
    _TLSServer,
    server_context,
)

__all__ = ["DOWN", "POLICY_HOST", "Arrival", "World"]

POLICY_HOST = "127.0.0.1"
"""The address of every policy host (and of the DNS server)."""

DOWN = "127.0.0.9"
"""An address nothing listens on: a policy host moved here is down (connection refused)."""

_IDLE = 10.0
_MAX_HOSTS = 250


@attrs.frozen
class Arrival:
    """
    One message a receiving MX took.

    Attributes:
        host: The MX host that took it.
        tls: Whether it came over TLS.
        certificate: The label of the certificate the MX presented (``-`` in plaintext).
        rcpts: The ``RCPT TO`` arguments.
    """

    host: str
    tls: bool
    certificate: str
    rcpts: tuple[str, ...]


class _Log(list[tuple[bool, str, tuple[str, ...], bytes]]):
    def __init__(self, owner: _MX) -> None:
        super().__init__()
        self.owner = owner

    def append(self, item: tuple[bool, str, tuple[str, ...], bytes]) -> None:
        super().append(item)
        tls, _sender, rcpts, _data = item
        self.owner.arrivals.append(
            Arrival(self.owner.name, tls, self.owner.label if tls else "-", rcpts)
        )


class _MX(SMTPServer):
    def __init__(self, name: str, address: str, certificate: Issued, label: str) -> None:
        super().__init__(name, certificate)
        self.address = address
        self.label = label
        self.arrivals: list[Arrival] = []
        self.messages = _Log(self)

    def start(self) -> Self:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError, ValueError):
                    outer._session(self.request)
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_RDWR)

        srv = _TLSServer((self.address, 25), Handler)
        self.port = 25
        self._servers = [srv]
        self._threads = _serve(srv)
        return self


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class _DNS(DNSServer):
    def start(self) -> Self:
        UDPHandler, TCPHandler = self.handlers()  # noqa: N806 -- classes
        udp = _UDPServer((POLICY_HOST, 53), UDPHandler)
        tcp = _TLSServer((POLICY_HOST, 53), TCPHandler)
        self.port = 53
        self._servers = [udp, tcp]
        self._threads = _serve(udp, tcp)
        return self


class _HTTPS(HTTPSServer):
    def start(self) -> Self:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        srv = _TLSServer((POLICY_HOST, 443), Handler)
        self.port = 443
        self._servers = [srv]
        self._threads = _serve(srv)
        return self


def _address(argument: str) -> str:
    # ``<a@b> ORCPT=...`` -> ``a@b``.
    words = argument.split()
    return words[0].strip("<>").lower() if words else ""


def _spki_sha256(issued: Issued) -> str:
    spki = issued.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


class World:
    """
    The DNS, policy host and MX hosts of one scorecard column, and the attacker's tools.

    Certificate labels: ``good`` (the run's CA, the host's name), ``wrong``
    (the run's CA, another name), ``expired``, ``self`` (self-signed),
    ``private-ca`` (a CA nobody trusts; DANE-TA can vouch for it).
    """

    def __init__(self) -> None:
        self.ca = CA("smtpsts scorecard CA")
        self.private_ca = CA("smtpsts scorecard private CA")
        self.dns = _DNS(negative_ttl=1)
        self.https = _HTTPS(self.ca)
        self.mx_hosts: dict[str, _MX] = {}
        self._certs: dict[tuple[str, str], Issued] = {}

    def start(self) -> Self:
        """
        Bind the DNS server and the policy host.

        Returns:
            The world.
        """
        self.dns.start()
        self.https.start()
        return self

    def close(self) -> None:
        """Stop every server."""
        for mx in self.mx_hosts.values():
            mx.close()
        self.https.close()
        self.dns.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ certificates

    def certificate(self, host: str, label: str) -> Issued:
        """
        The certificate ``label`` for ``host`` (made once).

        Args:
            host: The MX host.
            label: See the class docstring.

        Returns:
            The certificate and key.
        """
        key = (host, label)
        if key not in self._certs:
            self._certs[key] = {
                "good": lambda: self.ca.issue(host),
                "wrong": lambda: self.ca.issue("other." + host),
                "expired": lambda: self.ca.issue(host, expired=True),
                "self": lambda: CA.self_signed(host),
                "private-ca": lambda: self.private_ca.issue(host),
            }[label]()
        return self._certs[key]

    def context(self, host: str, label: str) -> ssl.SSLContext:
        """
        A server context presenting the certificate ``label`` of ``host``.

        ``private-ca`` certificates come with the private CA's root in the
        chain, as DANE-TA(2) requires (RFC 7672 §3.1.2: the trust anchor
        is in the server's chain unless the TLSA record holds it whole).

        Args:
            host: The MX host.
            label: The certificate.

        Returns:
            The context.
        """
        issued = self.certificate(host, label)
        if label != "private-ca":
            return server_context(issued)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pem = issued.cert.public_bytes(serialization.Encoding.PEM) + self.private_ca.pem()
        key = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with tempfile.TemporaryDirectory() as name:
            (Path(name) / "chain.pem").write_bytes(pem)
            (Path(name) / "key.pem").write_bytes(key)
            context.load_cert_chain(Path(name) / "chain.pem", Path(name) / "key.pem")
        return context

    def tlsa_ee(self, host: str, label: str) -> str:
        """
        A ``3 1 1`` TLSA record for the certificate ``label`` of ``host``.

        Args:
            host: The MX host.
            label: The certificate.

        Returns:
            The record text.
        """
        return f"3 1 1 {_spki_sha256(self.certificate(host, label))}"

    def tlsa_ta(self, ca: CA) -> str:
        """
        A ``2 1 1`` TLSA record for ``ca``'s root.

        Args:
            ca: The trust anchor.

        Returns:
            The record text.
        """
        return f"2 1 1 {_spki_sha256(ca.root)}"

    # ------------------------------------------------------------------ publishing

    def mx(self, host: str, label: str = "good") -> None:
        """
        Start a receiving MX ``host`` (A record, own loopback address, port 25).

        Args:
            host: Its name (A-label).
            label: The certificate it presents.
        """
        if len(self.mx_hosts) >= _MAX_HOSTS:
            raise ValueError(f"at most {_MAX_HOSTS} MX hosts in one world")
        address = f"127.0.1.{len(self.mx_hosts) + 1}"
        server = _MX(host, address, self.certificate(host, label), label)
        server.context = self.context(host, label)
        server.start()
        self.mx_hosts[host] = server
        self.dns.set(host, "A", address)

    def sts(self, domain: str, policy: str, record_id: str = "1") -> None:
        """
        Publish an MTA-STS TXT record and serve ``policy`` at the policy host.

        Args:
            domain: The policy domain (A-label).
            policy: The policy text (lines joined with CRLF).
            record_id: The TXT ``id``.
        """
        self.dns.set(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={record_id};"', ttl=1)
        host = f"mta-sts.{domain}"
        self.https.route(host, policy.encode())
        self.dns.set(host, "A", POLICY_HOST, ttl=1)

    # ------------------------------------------------------------------ the attacker

    def swap_mx(self, domain: str, *hosts: str) -> None:
        """
        Replace the MX RRset of ``domain`` (preferences 10, 20, ...).

        Args:
            domain: The domain.
            hosts: The new MX hosts.
        """
        self.dns.set(domain, "MX", *(f"{10 * i} {h}." for i, h in enumerate(hosts, 1)), ttl=1)

    def strip_starttls(self, host: str) -> None:
        """
        Make ``host``'s EHLO reply lose STARTTLS (what a relay in the path does).

        Args:
            host: The MX host.
        """
        self.mx_hosts[host].starttls = False

    def present(self, host: str, label: str) -> None:
        """
        Make ``host`` present another certificate.

        Args:
            host: The MX host.
            label: The certificate.
        """
        server = self.mx_hosts[host]
        server.context = self.context(host, label)
        server.label = label

    def block_txt(self, domain: str, how: str = "nxdomain") -> None:
        """
        Block ``_mta-sts.<domain>``: ``nxdomain`` (removed), ``servfail`` or ``drop`` (silence).

        Args:
            domain: The policy domain.
            how: How.
        """
        name = f"_mta-sts.{domain}"
        if how == "nxdomain":
            self.dns.remove(name)
        elif how == "servfail":
            self.dns.servfail(name)
        else:
            self.dns.drop(name)

    def policy_host_down(self, domain: str) -> None:
        """
        Take ``mta-sts.<domain>`` down (its A record points where nothing listens).

        Args:
            domain: The policy domain.
        """
        self.dns.set(f"mta-sts.{domain}", "A", DOWN, ttl=1)

    def arrivals(self, rcpt: str) -> list[Arrival]:
        """
        Every arrival for ``rcpt``, on every MX.

        Args:
            rcpt: The recipient address.

        Returns:
            The arrivals, in MX order.
        """
        return [
            a
            for mx in list(self.mx_hosts.values())
            for a in list(mx.arrivals)
            if any(_address(r) == rcpt.lower() for r in a.rcpts)
        ]
