"""
A real DNSSEC lab for tests: NSD (authoritative) + Unbound (validating), on loopback.

Zones are signed at test time with ``dns.dnssec.sign_zone`` (ECDSA P-256,
NSEC), so nothing in the repository expires. A zone signed with signatures
that expired yesterday is the "bogus" case. Unbound trusts the DS of every
signed zone as a configured trust anchor and reaches NSD through stub zones;
zones without a trust anchor validate as insecure (DEPS.md §4).

Typical use::

    with DNSLab([Zone("secure.test", "mx1 A 127.0.0.1")], tmp_path) as lab:
        resolver = make_resolver([lab.nameserver], dnssec=True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import dns.dnssec
import dns.dnssectypes
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import require_binary

SOA_NS = """\
@ 300 IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300
@ 300 IN NS ns.{origin}.
ns 300 IN A 127.0.0.1
"""


@dataclasses.dataclass(frozen=True)
class Zone:
    """
    One zone the lab serves.

    Attributes:
        name: The origin, without the trailing dot (``secure.test``).
        body: Zone-file lines relative to the origin (SOA and NS are added).
        signed: Sign the zone and configure its DS as a trust anchor.
        expired: Sign with signatures that expired a day ago (bogus).
    """

    name: str
    body: str
    signed: bool = True
    expired: bool = False


def free_port() -> int:
    """A loopback port that is free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port")


def sign(zone: Zone, now: datetime) -> tuple[str, str | None]:
    """
    Build (and sign) one zone.

    Returns:
        The zone file text, and the DS record text of its key (``None`` when
        the zone is unsigned).
    """
    text = SOA_NS.format(origin=zone.name) + zone.body
    origin = dns.name.from_text(zone.name)
    z = dns.zone.from_text(text, origin, relativize=False)
    if not zone.signed:
        return z.to_text(relativize=False), None
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(
        key.public_key(), dns.dnssectypes.Algorithm.ECDSAP256SHA256, flags=257
    )
    if zone.expired:
        inception, expiration = now - timedelta(days=10), now - timedelta(days=1)
    else:
        inception, expiration = now - timedelta(hours=1), now + timedelta(days=2)
    with z.writer() as txn:
        dns.dnssec.sign_zone(
            z, txn, keys=[(key, dnskey)], inception=inception, expiration=expiration
        )
    ds = dns.dnssec.make_ds(origin, dnskey, "SHA256")
    return z.to_text(relativize=False), f"{origin} DS {ds}"


class DNSLab:
    """
    NSD + Unbound serving ``zones`` on free loopback ports.

    Attributes:
        nameserver: ``"127.0.0.1:PORT"`` of the validating resolver (Unbound).
        authoritative: ``"127.0.0.1:PORT"`` of NSD.
        startup: Seconds from process start until both answered.
    """

    def __init__(self, zones: Sequence[Zone], directory: Path) -> None:
        self.zones = tuple(zones)
        self.directory = directory
        self.nsd_port = free_port()
        self.unbound_port = free_port()
        while self.unbound_port == self.nsd_port:
            self.unbound_port = free_port()
        self.nameserver = f"127.0.0.1:{self.unbound_port}"
        self.authoritative = f"127.0.0.1:{self.nsd_port}"
        self.startup = 0.0
        self._procs: list[subprocess.Popen[bytes]] = []

    def _write_configs(self, now: datetime) -> None:
        d = self.directory
        nsd_zones = []
        stubs = []
        anchors = []
        for zone in self.zones:
            text, ds = sign(zone, now)
            (d / f"{zone.name}.zone").write_text(text)
            nsd_zones.append(f'zone:\n  name: "{zone.name}"\n  zonefile: "{d}/{zone.name}.zone"\n')
            stubs.append(
                f'stub-zone:\n  name: "{zone.name}."\n  stub-addr: 127.0.0.1@{self.nsd_port}\n'
            )
            if ds is not None:
                anchors.append(f'  trust-anchor: "{ds}"\n')
        (d / "nsd.conf").write_text(
            "server:\n"
            f"  ip-address: 127.0.0.1@{self.nsd_port}\n"
            f"  port: {self.nsd_port}\n"
            '  database: ""\n'
            '  username: ""\n'
            '  chroot: ""\n'
            f'  zonesdir: "{d}"\n'
            f'  pidfile: "{d}/nsd.pid"\n'
            f'  xfrdfile: "{d}/xfrd.state"\n'
            f'  zonelistfile: "{d}/zone.list"\n'
            f'  logfile: "{d}/nsd.log"\n'
            "  server-count: 1\n"
            "  do-ip6: no\n"
            "  verbosity: 0\n"
            "remote-control:\n"
            "  control-enable: no\n" + "".join(nsd_zones)
        )
        (d / "unbound.conf").write_text(
            "server:\n"
            f"  interface: 127.0.0.1@{self.unbound_port}\n"
            f"  port: {self.unbound_port}\n"
            "  do-daemonize: no\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  directory: "{d}"\n'
            '  pidfile: ""\n'
            "  use-syslog: no\n"
            f'  logfile: "{d}/unbound.log"\n'
            "  verbosity: 0\n"
            "  do-ip6: no\n"
            "  num-threads: 1\n"
            "  access-control: 127.0.0.0/8 allow\n"
            "  do-not-query-localhost: no\n"
            # Queries leave from loopback only: the lab can never reach the Internet.
            "  outgoing-interface: 127.0.0.1\n"
            '  module-config: "validator iterator"\n'
            # Unbound answers NXDOMAIN for every RFC 6761 .test name by default.
            '  local-zone: "test." nodefault\n'
            "  ede: yes\n"
            "  val-log-level: 2\n"
            # Bogus answers must not stay cached between tests of one lab.
            "  val-bogus-ttl: 0\n" + "".join(anchors) + "".join(stubs)
        )

    def start(self) -> None:
        """Write the zones and configs, start both servers, wait until they answer."""
        nsd = require_binary("nsd")
        unbound = require_binary("unbound")
        self._write_configs(datetime.now(UTC))
        started = time.monotonic()
        env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
        self._procs.append(
            subprocess.Popen(
                [nsd, "-d", "-c", str(self.directory / "nsd.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        self._wait(self.nsd_port, self.zones[0].name, started)
        self._procs.append(
            subprocess.Popen(
                [unbound, "-d", "-c", str(self.directory / "unbound.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        self._wait(self.unbound_port, self.zones[0].name, started)
        self.startup = time.monotonic() - started

    def _wait(self, port: int, zone: str, started: float) -> None:
        query = dns.message.make_query(f"{zone}.", dns.rdatatype.SOA, flags=dns.flags.RD)
        while time.monotonic() - started < 15:
            for proc in self._procs:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{proc.args!r} exited early: {self._logs()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                reply = dns.query.udp(query, "127.0.0.1", timeout=0.2, port=port)
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"DNS lab did not start: {self._logs()}")

    def _logs(self) -> str:
        return " | ".join(
            (self.directory / name).read_text(errors="replace")[-2000:]
            for name in ("nsd.log", "unbound.log")
            if (self.directory / name).exists()
        )

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 5 s) and reap them."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
