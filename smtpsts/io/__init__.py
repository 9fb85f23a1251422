"""
Adapters: the parts of smtpsts that touch files, DNS, HTTPS and TLS.

Nothing here is imported by ``import smtpsts``. The names an MTA needs are
importable from this package directly (``from smtpsts.io import
PolicyResolver, deliver_connection``); each is loaded on first use, so
importing one does not pull in the others (the Redis client, asyncio, ...).
They are documented in the module that defines them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from smtpsts.io.check import CheckReport, acheck_domain, check_domain
    from smtpsts.io.deliver import (
        AsyncDelivery,
        Delivery,
        DeliveryStatus,
        adeliver_connection,
        deliver_connection,
    )
    from smtpsts.io.dns import AsyncDNSResolver, DNSResolver
    from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSSECResolver
    from smtpsts.io.drivers import PolicyResolver
    from smtpsts.io.starttls import aprobe_starttls, probe_starttls
    from smtpsts.io.tls import peer_chain
    from smtpsts.io.tlsrpt_send import ReportSender, post_report, send_due_reports
    from smtpsts.io.truststore import load_system_trust_store, load_trust_store

__all__ = [
    "AsyncDNSResolver",
    "AsyncDNSSECResolver",
    "AsyncDelivery",
    "CheckReport",
    "DNSResolver",
    "DNSSECResolver",
    "Delivery",
    "DeliveryStatus",
    "PolicyResolver",
    "ReportSender",
    "acheck_domain",
    "adeliver_connection",
    "aprobe_starttls",
    "check_domain",
    "deliver_connection",
    "load_system_trust_store",
    "load_trust_store",
    "peer_chain",
    "post_report",
    "probe_starttls",
    "send_due_reports",
]

_HOMES: Final = {
    "AsyncDNSResolver": "dns",
    "AsyncDNSSECResolver": "dnssec",
    "AsyncDelivery": "deliver",
    "CheckReport": "check",
    "DNSResolver": "dns",
    "DNSSECResolver": "dnssec",
    "Delivery": "deliver",
    "DeliveryStatus": "deliver",
    "PolicyResolver": "drivers",
    "ReportSender": "tlsrpt_send",
    "acheck_domain": "check",
    "adeliver_connection": "deliver",
    "aprobe_starttls": "starttls",
    "check_domain": "check",
    "deliver_connection": "deliver",
    "load_system_trust_store": "truststore",
    "load_trust_store": "truststore",
    "peer_chain": "tls",
    "post_report": "tlsrpt_send",
    "probe_starttls": "starttls",
    "send_due_reports": "tlsrpt_send",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'smtpsts.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"smtpsts.io.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
