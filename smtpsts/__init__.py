"""
MTA-STS (RFC 8461), SMTP TLS Reporting (RFC 8460) and DANE for SMTP (RFC 7672).

This package is the sans-I/O core: it contains no networking code at all, reads
no clock and draws no random numbers. Callers pass ``now`` and data in and get
data back. The adapters that talk to DNS, HTTPS, TLS and stores live in
:mod:`smtpsts.io` and :mod:`smtpsts.stores` and are imported explicitly.
"""

from __future__ import annotations

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
from .mx import MXPattern
from .policy import Mode, Policy
from .record import RecordSelection, SelectionStatus, STSRecord, select_sts_record

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
    "SelectionStatus",
    "UsageError",
    "ValidationError",
    "select_sts_record",
    "to_alabel",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("smtpsts")
    raise AttributeError(f"module 'smtpsts' has no attribute {name!r}")
