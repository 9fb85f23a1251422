"""
The parts of ``smtpsts postfix serve`` a :class:`~smtpsts.postfix.config.ServerConfig` asks for.

:func:`build_store` (memory, SQLite or Redis), :func:`build_resolver` (the
policy resolver with its trust store, DNS cache and overrides) and
:func:`build_dane` (the TLSA checker, unless DANE is off everywhere).
Re-exported by :mod:`smtpsts.postfix.server`; logs to the server's logger,
``smtpsts.postfix.server``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from smtpsts.io.dnssec import AsyncDNSSECResolver
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix.config import ServerConfig
from smtpsts.postfix.dane_checker import DaneChecker

__all__ = ["DNS_CACHE_SIZE", "build_dane", "build_resolver", "build_store"]

log = logging.getLogger("smtpsts.postfix.server")  # the server's one logger

DNS_CACHE_SIZE: Final = 100_000  # documented in smtpsts.postfix.server, which exports it


def build_store(config: ServerConfig) -> Any:
    """
    The policy store the configuration asks for.

    Args:
        config: The server configuration.

    Returns:
        A memory, SQLite or (asyncio) Redis store.
    """
    if config.cache_backend == "memory":
        from smtpsts.stores.memory import MemoryPolicyStore  # noqa: PLC0415

        return MemoryPolicyStore(max_entries=config.max_entries)
    if config.cache_backend == "redis":
        from smtpsts.stores.redis import AsyncRedisPolicyStore  # noqa: PLC0415

        return AsyncRedisPolicyStore.from_url(config.redis_url)
    from smtpsts.stores.sqlite import SQLitePolicyStore  # noqa: PLC0415

    if config.cache_path != ":memory:":
        Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
    return SQLitePolicyStore(config.cache_path)


def build_resolver(config: ServerConfig) -> PolicyResolver:
    """
    The policy resolver for a configuration (store, trust, DNS, overrides).

    Args:
        config: The server configuration.

    Returns:
        The resolver.
    """
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415

    trust = None
    if config.cafile is not None:
        from smtpsts.io.truststore import load_trust_store  # noqa: PLC0415

        trust = load_trust_store(config.cafile)
    aresolver = None
    if config.dns_cache:
        import dns.resolver  # noqa: PLC0415

        from smtpsts.io._resolver import make_async_resolver  # noqa: PLC0415
        from smtpsts.io.dns import AsyncDNSResolver  # noqa: PLC0415

        # STS-CACHE-08: the TXT record is checked on every lookup (that the
        # answer cache does not answer), through a DNS cache that honours the
        # record's TTL.
        dnspython = make_async_resolver(config.nameservers, lifetime=config.dns_timeout)
        dnspython.cache = dns.resolver.LRUCache(DNS_CACHE_SIZE)
        aresolver = AsyncDNSResolver(resolver=dnspython)
    return PolicyResolver(
        store=build_store(config),
        adns=aresolver,
        trust=trust,
        nameservers=config.nameservers,
        connect_to=parse_connect_to(config.connect_to),
        config=config.policy,
        refresh_interval=timedelta(seconds=config.refresh_interval),
    )


def build_dane(config: ServerConfig) -> DaneChecker | None:
    """
    The TLSA checker, unless every zone has ``dane = "off"``.

    Args:
        config: The server configuration.

    Returns:
        The checker or ``None``.
    """
    zones = (config.default_zone, *config.zones)
    if all(zone.dane.value == "off" for zone in zones):
        return None
    resolver = AsyncDNSSECResolver(
        config.nameservers, lifetime=config.dns_timeout, trust_ad=config.trust_ad
    )
    if not resolver.trusted:
        log.warning(
            "DANE checks are off: the DNS resolver is not trusted to validate DNSSEC "
            "(use a validating resolver on loopback, or [resolver] trust_ad = true)"
        )
    # A re-check asks for the MX RRset, then the TLSA RRsets (each bounded by dns_timeout).
    return DaneChecker(resolver, timeout=2 * config.dns_timeout)
