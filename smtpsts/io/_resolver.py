"""
Building dnspython resolvers (sync and asyncio) from smtpsts settings.

Every DNS adapter in :mod:`smtpsts.io` builds its resolver here, so that the
command line's ``--nameserver IP[:PORT]``, the timeouts and the "no cache, no
``resolv.conf`` when nameservers are given" rule mean the same everywhere
(dnspython would otherwise cache answers and read ``/etc/resolv.conf`` for
search domains). A system configuration that cannot be read because this host
is out of descriptors or memory raises :class:`~smtpsts.LocalResourceError`,
not "no configuration" (issue 17).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.nameserver
import dns.resolver

from smtpsts.io._faults import raise_local_fault

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_TIMEOUT",
    "EDNS_PAYLOAD",
    "is_address",
    "is_loopback",
    "make_async_resolver",
    "make_resolver",
    "parse_nameserver",
]

DEFAULT_TIMEOUT = 2.0
"""Seconds to wait for one nameserver to answer one query."""

DEFAULT_LIFETIME = 5.0
"""Seconds a whole lookup (all retries, all nameservers) may take."""

EDNS_PAYLOAD = 1232
"""The EDNS UDP payload size advertised (the DNS flag day 2020 value)."""


def parse_nameserver(spec: str) -> tuple[str, int]:
    """
    Parse one nameserver setting: ``IP``, ``IP:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``.

    Args:
        spec: The setting, for example ``"127.0.0.1:5353"``, ``"::1"`` or
            ``"[::1]:5353"``.

    Returns:
        The address (normalised text form) and the port (53 by default).

    Raises:
        ValueError: ``spec`` is not an IP address with an optional port in
            1-65535.
    """
    text = spec.strip()
    port = 53
    if text.startswith("["):
        address, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid nameserver {spec!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        address, _, port_text = text.partition(":")
    else:
        address, port_text = text, None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid nameserver {spec!r}: bad port {port_text!r}")
        port = int(port_text)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"invalid nameserver {spec!r}: not an IP address") from None
    return str(ip), port


def is_address(text: str) -> bool:
    """
    Tell whether ``text`` is an IPv4 or IPv6 address.

    Args:
        text: Any text.

    Returns:
        ``True`` when :func:`ipaddress.ip_address` accepts it.
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_loopback(address: str) -> bool:
    """
    Tell whether ``address`` is a loopback address (127.0.0.0/8 or ::1).

    Args:
        address: An IP address in text form.

    Returns:
        ``True`` for loopback addresses, ``False`` otherwise (also for text
        that is not an IP address).
    """
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_R = TypeVar("_R", dns.resolver.Resolver, dns.asyncresolver.Resolver)


def _build(kind: type[_R], nameservers: Sequence[str]) -> _R:
    if isinstance(nameservers, str | bytes):
        # A bare string is a sequence of characters: "127.0.0.1:53" would be
        # read as the nameservers "1", "2", "7", ... (issue 12 item 7).
        raise TypeError(
            f"nameservers is a list of 'IP[:PORT]' strings, not one string: [{nameservers!r}]"
        )
    try:
        # Without nameservers, /etc/resolv.conf is read here.
        return kind(configure=not nameservers)
    except (dns.exception.DNSException, OSError, MemoryError) as exc:
        # dnspython raises NoResolverConfiguration when it cannot open the
        # file, with the OSError as context: EMFILE is no missing file.
        raise_local_fault(exc, operation="reading the resolver configuration")
        raise


def _configure(
    resolver: dns.resolver.BaseResolver,
    nameservers: Sequence[str],
    timeout: float,
    lifetime: float,
    dnssec: bool,
) -> None:
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port)
            for address, port in map(parse_nameserver, nameservers)
        ]
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    resolver.cache = None
    if dnssec:
        # Measured with Unbound: without AD (or DO) in the query a validating resolver
        # never sets AD in the answer. RFC 6840 §5.7: AD in a query asks for
        # the AD bit in the response. EDNS (without DO, to avoid RRSIG bloat)
        # lets the resolver attach Extended DNS Errors (RFC 8914).
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.use_edns(0, 0, EDNS_PAYLOAD)


def make_resolver(
    nameservers: Sequence[str] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
    lifetime: float = DEFAULT_LIFETIME,
    dnssec: bool = False,
) -> dns.resolver.Resolver:
    """
    Build a synchronous dnspython resolver.

    Args:
        nameservers: ``IP[:PORT]`` settings (see :func:`parse_nameserver`).
            When given, ``/etc/resolv.conf`` is not read at all; when empty,
            the system configuration is used.
        timeout: Seconds per query to one nameserver.
        lifetime: Seconds for the whole lookup.
        dnssec: Ask for the AD bit (``RD|AD``) and send EDNS, as the
            DNSSEC-aware lookups need.

    Returns:
        A resolver with caching off (the callers cache what they need).

    Raises:
        TypeError: ``nameservers`` is one string instead of a list of them.
        ValueError: A nameserver setting is malformed.
        dns.resolver.NoResolverConfiguration: ``nameservers`` is empty and
            the system has no usable configuration.
        smtpsts.LocalResourceError: The configuration could not be read
            because this host ran out of descriptors or memory.
    """
    resolver = _build(dns.resolver.Resolver, nameservers)
    _configure(resolver, nameservers, timeout, lifetime, dnssec)
    return resolver


def make_async_resolver(
    nameservers: Sequence[str] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
    lifetime: float = DEFAULT_LIFETIME,
    dnssec: bool = False,
) -> dns.asyncresolver.Resolver:
    """
    Build an asyncio dnspython resolver; the arguments are those of :func:`make_resolver`.

    Args:
        nameservers: ``IP[:PORT]`` settings; empty means the system configuration.
        timeout: Seconds per query to one nameserver.
        lifetime: Seconds for the whole lookup.
        dnssec: Ask for the AD bit and send EDNS.

    Returns:
        An asyncio resolver with caching off.

    Raises:
        TypeError: ``nameservers`` is one string instead of a list of them.
        ValueError: A nameserver setting is malformed.
        dns.resolver.NoResolverConfiguration: ``nameservers`` is empty and
            the system has no usable configuration.
        smtpsts.LocalResourceError: The configuration could not be read
            because this host ran out of descriptors or memory.
    """
    resolver = _build(dns.asyncresolver.Resolver, nameservers)
    _configure(resolver, nameservers, timeout, lifetime, dnssec)
    return resolver
