"""
SMTP TLS Reporting (RFC 8460).

The ``_smtp._tls`` record, the report model, aggregation, serialisation and
parsing of received reports.

Pure like the rest of the core; delivery of reports lives in :mod:`smtpsts.io`.
"""

from __future__ import annotations

from .._vocab import PolicyType, ResultType
from ..exceptions import ReportSyntaxError, TLSRPTRecordSyntaxError
from .aggregate import OVERFLOW_REASON, Aggregator, report_id
from .model import DateRange, FailureDetails, PolicyResult, Report, ReportPolicy, Summary
from .parse import (
    ReportNotAuthenticatedError,
    accept_report_message,
    decompress_report,
    parse_report_message,
)
from .record import (
    HTTPSEndpoint,
    MailtoEndpoint,
    SelectionStatus,
    TLSRPTRecord,
    TLSRPTRecordSelection,
    UnsupportedEndpoint,
    select_tlsrpt_record,
)
from .serialize import (
    gzip_report,
    report_filename,
    report_message,
    report_subject,
    submitter_domain,
)
from .session import PolicyInfo, SessionFailure, SessionResult

__all__ = [
    "OVERFLOW_REASON",
    "Aggregator",
    "DateRange",
    "FailureDetails",
    "HTTPSEndpoint",
    "MailtoEndpoint",
    "PolicyInfo",
    "PolicyResult",
    "PolicyType",
    "Report",
    "ReportNotAuthenticatedError",
    "ReportPolicy",
    "ReportSyntaxError",
    "ResultType",
    "SelectionStatus",
    "SessionFailure",
    "SessionResult",
    "Summary",
    "TLSRPTRecord",
    "TLSRPTRecordSelection",
    "TLSRPTRecordSyntaxError",
    "UnsupportedEndpoint",
    "accept_report_message",
    "decompress_report",
    "gzip_report",
    "parse_report_message",
    "report_filename",
    "report_id",
    "report_message",
    "report_subject",
    "select_tlsrpt_record",
    "submitter_domain",
]
