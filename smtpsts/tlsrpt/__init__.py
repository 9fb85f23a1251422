"""
SMTP TLS Reporting (RFC 8460): the ``_smtp._tls`` record, the report model,
aggregation, serialisation and parsing of received reports.

Pure like the rest of the core; delivery of reports lives in :mod:`smtpsts.io`.
"""

from __future__ import annotations

from .._vocab import PolicyType, ResultType
from ..exceptions import ReportSyntaxError, TLSRPTRecordSyntaxError

__all__ = [
    "PolicyType",
    "ReportSyntaxError",
    "ResultType",
    "TLSRPTRecordSyntaxError",
]
