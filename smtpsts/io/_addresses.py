"""
Which IP addresses an outgoing connection chosen by a remote party may reach.

A TLS-RPT ``rua`` is chosen by the recipient domain, so a POST to it must not
become a request forgery against this host or its networks (RFC 8460 §7;
issue 10): :func:`is_refused` names the reason an address is not a public
unicast address, and :func:`in_networks` lets an operator's allow-list
override it. Both are pure functions over :mod:`ipaddress`, for any adapter
that connects where the network tells it to.

The tables below are explicit rather than left to ``is_global`` alone:
``ipaddress`` changed its answers between Python versions (mapped addresses,
multicast and documentation prefixes), and a refusal should name its reason.
Anything the tables let through is still refused when ``ipaddress`` says it
is not global.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

__all__ = ["IPAddress", "IPNetwork", "in_networks", "is_refused"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""An IPv4 or IPv6 address."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
"""An IPv4 or IPv6 network."""


def _v4(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(net), why) for net, why in rows)


def _v6(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(net), why) for net, why in rows)


# First match wins, so the narrower prefix comes first. The IANA special-purpose
# registries (RFC 6890) and the RFC of each block give the reasons.
_V4_REFUSED: Final = _v4(
    ("0.0.0.0/32", "an unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),  # RFC 791
    ("127.0.0.0/8", "a loopback address"),  # RFC 1122
    ("10.0.0.0/8", "a private address"),  # RFC 1918
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (CGNAT) address"),  # RFC 6598
    ("169.254.0.0/16", "a link-local address"),  # RFC 3927
    ("192.0.0.0/24", "an IETF protocol assignment"),  # RFC 6890
    ("192.0.2.0/24", "a documentation address"),  # RFC 5737
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("192.88.99.0/24", "a deprecated 6to4 relay address"),  # RFC 7526
    ("198.18.0.0/15", "a benchmarking address"),  # RFC 2544
    ("224.0.0.0/4", "a multicast address"),  # RFC 5771
    ("255.255.255.255/32", "the broadcast address"),  # RFC 919
    ("240.0.0.0/4", "a reserved address"),  # RFC 1112
)

_V6_REFUSED: Final = _v6(
    ("64:ff9b:1::/48", "a local-use NAT64 address"),  # RFC 8215
    ("100::/64", "a discard-only address"),  # RFC 6666
    ("2001::/32", "a Teredo address"),  # RFC 4380
    ("2001:2::/48", "a benchmarking address"),  # RFC 5180
    ("2001:db8::/32", "a documentation address"),  # RFC 3849
    ("3fff::/20", "a documentation address"),  # RFC 9637
    ("5f00::/16", "an SRv6 SID address"),  # RFC 9602
    ("fc00::/7", "a private (unique local) address"),  # RFC 4193
    ("fe80::/10", "a link-local address"),  # RFC 4291 §2.5.6
    ("fec0::/10", "a deprecated site-local address"),  # RFC 3879
    ("ff00::/8", "a multicast address"),  # RFC 4291 §2.7
)

_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")  # RFC 4291 §2.5.5.2
_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")  # RFC 4291 §2.4


def _embedded(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    # The IPv4 address an IPv6 form leads to, and the form's name.
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return "an IPv4-mapped form", low
    if ip in _COMPATIBLE:
        return "an IPv4-compatible form", low
    if ip in _NAT64:
        return "a NAT64 form", low
    if ip.sixtofour is not None:
        return "a 6to4 form", ip.sixtofour  # RFC 3056 §2
    if ip.teredo is not None:
        server, client = ip.teredo  # RFC 4380 §4: the client is the host reached
        return "a Teredo form", server if _reason(client) is None else client
    return None


def _reason(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address):
        for net, why in _V4_REFUSED:
            if ip in net:
                return why
        return None if ip.is_global else "not a global address"
    plain = ipaddress.IPv6Address(int(ip))  # without a zone index
    if int(plain) <= 1:  # RFC 4291 §2.5.2 (::) and §2.5.3 (::1)
        return "a loopback address" if int(plain) else "an unspecified address"
    embedded = _embedded(plain)
    if embedded is not None:
        form, inner = embedded
        inner_reason = _reason(inner)
        if inner_reason is not None:
            return f"{form} of {inner}, {inner_reason}"
        if plain in _COMPATIBLE:
            return "a deprecated IPv4-compatible address"
        if plain in _MAPPED or plain in _NAT64 or plain.sixtofour is not None:
            return None  # it reaches that public IPv4 address and nothing else
    for net6, why6 in _V6_REFUSED:
        if plain in net6:
            return why6
    if plain not in _GLOBAL_UNICAST:
        return "a reserved address"  # RFC 4291 §2.4: only 2000::/3 is global unicast
    return None if plain.is_global else "not a global address"


def is_refused(address: str | IPAddress) -> str | None:
    """
    Why a connection to an address is refused, if it is.

    Refused: loopback, private (RFC 1918, ``fc00::/7``), shared (CGNAT,
    ``100.64.0.0/10``), link-local, multicast, broadcast, unspecified,
    reserved, benchmarking and documentation addresses; IPv4-mapped,
    IPv4-compatible, NAT64 (``64:ff9b::/96``), 6to4 and Teredo forms of a
    refused IPv4 address (IPv4-compatible and Teredo ones always); and
    anything else :mod:`ipaddress` does not call global.

    Args:
        address: The address (text, with or without an IPv6 zone index).

    Returns:
        ``None`` when the address is a public unicast one; otherwise the
        reason, e.g. ``"10.0.0.5 is a private address"``. Text that is no
        IP address is refused too.

    .. versionadded:: 0.1
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    why = _reason(ip)
    return None if why is None else f"{address} is {why}"


def in_networks(address: str | IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """
    Whether an address is in one of some networks (an operator's allow-list).

    An IPv4-mapped IPv6 address also matches the IPv4 networks that hold its
    IPv4 address.

    Args:
        address: The address (text, with or without an IPv6 zone index).
        networks: The networks.

    Returns:
        ``True`` when one of them holds the address; ``False`` also for text
        that is no IP address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates = [ipaddress.IPv6Address(int(ip))]
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
    return any(c.version == n.version and c in n for c in candidates for n in networks)
