"""
SMTP TLS Reporting (RFC 8460).

The ``_smtp._tls`` record, the report model, aggregation, serialisation and
parsing of received reports.

Pure like the rest of the core; delivery of reports lives in :mod:`smtpsts.io`.
"""

from __future__ import annotations

from .._vocab import PolicyType, ResultType
from ..exceptions import ReportSyntaxError, TLSRPTRecordSyntaxError
from .record import (
    HTTPSEndpoint,
    MailtoEndpoint,
    SelectionStatus,
    TLSRPTRecord,
    TLSRPTRecordSelection,
    UnsupportedEndpoint,
    select_tlsrpt_record,
)

__all__ = [
    "HTTPSEndpoint",
    "MailtoEndpoint",
    "PolicyType",
    "ReportSyntaxError",
    "ResultType",
    "SelectionStatus",
    "TLSRPTRecord",
    "TLSRPTRecordSelection",
    "TLSRPTRecordSyntaxError",
    "UnsupportedEndpoint",
    "select_tlsrpt_record",
]
