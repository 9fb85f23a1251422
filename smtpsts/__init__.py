"""
MTA-STS (RFC 8461), SMTP TLS Reporting (RFC 8460) and DANE for SMTP (RFC 7672).

This package is the sans-I/O core: it contains no networking code at all, reads
no clock and draws no random numbers. Callers pass ``now`` and data in and get
data back. The adapters that talk to DNS, HTTPS, TLS and stores live in
:mod:`smtpsts.io` and :mod:`smtpsts.stores` and are imported explicitly.

Besides the parsers, this module re-exports the core names an MTA needs (the
"An MTA in 25 names" section of ``docs/api.md``): the per-MX decision, the
certificate and DANE checks, the TLS-RPT session results and their aggregate.
They are loaded on first use (PEP 562), so ``import smtpsts`` stays small.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import TYPE_CHECKING, Any, Final

from ._names import to_alabel
from ._vocab import PolicyType, ResultType
from .exceptions import (
    DomainNameError,
    LocalFaultError,
    LocalResourceError,
    LookupTimeoutError,
    ParseError,
    PolicySyntaxError,
    RecordSyntaxError,
    SMTPSTSError,
    StoreError,
    UsageError,
)
from .mx import MXPattern
from .policy import Mode, Policy
from .record import RecordSelection, SelectionStatus, STSRecord, select_sts_record

# A library logs, an application decides where it goes: without this, warnings of
# smtpsts's loggers reach the stderr of applications that never configured logging
# (Python's logging HOWTO, "Configuring Logging for a Library"; issue 12 item 7).
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .cache import PolicyOutcome
    from .certs import check_certificate
    from .dane import match_tlsa
    from .decision import (
        Defer,
        Deliver,
        DeliverAndReport,
        MXHost,
        SkipMX,
        TLSObservation,
        decide,
        defer_if_exhausted,
        plan,
    )
    from .tlsrpt.aggregate import Aggregator
    from .tlsrpt.session import SessionResult

#: Names loaded on first use, and the core module that defines each.
_LAZY: Final = {
    "Aggregator": "smtpsts.tlsrpt.aggregate",
    "Defer": "smtpsts.decision",
    "Deliver": "smtpsts.decision",
    "DeliverAndReport": "smtpsts.decision",
    "MXHost": "smtpsts.decision",
    "PolicyOutcome": "smtpsts.cache",
    "SessionResult": "smtpsts.tlsrpt.session",
    "SkipMX": "smtpsts.decision",
    "TLSObservation": "smtpsts.decision",
    "check_certificate": "smtpsts.certs",
    "decide": "smtpsts.decision",
    "defer_if_exhausted": "smtpsts.decision",
    "match_tlsa": "smtpsts.dane",
    "plan": "smtpsts.decision",
}

__all__ = [
    "Aggregator",
    "Defer",
    "Deliver",
    "DeliverAndReport",
    "DomainNameError",
    "LocalFaultError",
    "LocalResourceError",
    "LookupTimeoutError",
    "MXHost",
    "MXPattern",
    "Mode",
    "ParseError",
    "Policy",
    "PolicyOutcome",
    "PolicySyntaxError",
    "PolicyType",
    "RecordSelection",
    "RecordSyntaxError",
    "ResultType",
    "SMTPSTSError",
    "STSRecord",
    "SelectionStatus",
    "SessionResult",
    "SkipMX",
    "StoreError",
    "TLSObservation",
    "UsageError",
    "check_certificate",
    "decide",
    "defer_if_exhausted",
    "match_tlsa",
    "plan",
    "select_sts_record",
    "to_alabel",
]


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
    if name == "ValidationError":
        # Issue 11: exported but never raised; kept for one release.
        warnings.warn(
            "smtpsts.ValidationError is deprecated and will be removed in smtpsts 0.2"
            " (it is never raised); catch smtpsts.ParseError instead",
            DeprecationWarning,
            stacklevel=2,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from .exceptions import ValidationError  # noqa: PLC0415

        return ValidationError
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("smtpsts")
    raise AttributeError(f"module 'smtpsts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
