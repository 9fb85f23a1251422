"""
The scripted authoritative DNS server of the tests: the lab's, with a 60 s negative TTL.

:class:`smtpsts.lab.servers.DNSServer` answers over UDP and TCP on one free
loopback port from records a test adds at run time (CNAMEs followed,
multi-string TXT), NODATA/NXDOMAIN with an SOA, SERVFAIL or silence per name,
and logs every query so tests can count them (single-flight, negative
caching).

Typical use::

    with DNSServer() as dns_server:
        dns_server.add("_mta-sts.example.com", "TXT", '"v=STSv1; " "id=1;"')
        resolver = make_resolver([dns_server.address])
"""

from __future__ import annotations

from collections.abc import Iterator

from smtpsts.lab import servers

__all__ = ["DNSServer", "dns_server_fixture"]


class DNSServer(servers.DNSServer):
    """The lab's DNS server with the negative TTL the tests were written for."""

    def __init__(self, *, negative_ttl: int = 60) -> None:
        super().__init__(negative_ttl=negative_ttl)


def dns_server_fixture() -> Iterator[DNSServer]:
    """Generator body for a pytest fixture that yields a running server."""
    with DNSServer() as server:
        yield server
