"""
smtpsts: MTA-STS (RFC 8461), SMTP TLS Reporting (RFC 8460) and DANE for SMTP
(RFC 7672) as protocol primitives.

This package is the sans-I/O core: it contains no networking code at all, reads
no clock and draws no random numbers. Callers pass ``now`` and data in and get
data back. The adapters that talk to DNS, HTTPS, TLS and stores live in
:mod:`smtpsts.io` and :mod:`smtpsts.stores` and are imported explicitly.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._names import to_alabel
from ._vocab import PolicyType, ResultType
from .exceptions import (
    DomainNameError,
    ParseError,
    PolicySyntaxError,
    RecordSyntaxError,
    SMTPSTSError,
    UsageError,
    ValidationError,
)

__all__ = [
    "DomainNameError",
    "MXPattern",
    "Mode",
    "ParseError",
    "Policy",
    "PolicySyntaxError",
    "PolicyType",
    "RecordSelection",
    "RecordSyntaxError",
    "ResultType",
    "SMTPSTSError",
    "STSRecord",
    "UsageError",
    "ValidationError",
    "select_sts_record",
    "to_alabel",
]

# Names provided by modules that land in stages; resolved on first use.
_LAZY = {
    "STSRecord": "smtpsts.record",
    "RecordSelection": "smtpsts.record",
    "select_sts_record": "smtpsts.record",
    "Policy": "smtpsts.policy",
    "Mode": "smtpsts.policy",
    "MXPattern": "smtpsts.mx",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("smtpsts")
    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'smtpsts' has no attribute {name!r}")
