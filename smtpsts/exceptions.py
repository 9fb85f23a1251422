"""
The exceptions smtpsts raises.

Separated into a module of their own for tidy tracebacks; import them from
:mod:`smtpsts` (and the TLS-RPT ones from :mod:`smtpsts.tlsrpt`).

The hierarchy (STYLE.md §3.4)::

    SMTPSTSError                       abstract
    ├── ParseError (ValueError)        text from the network did not fit its grammar
    │   ├── DomainNameError            a domain name is not a valid host name
    │   ├── RecordSyntaxError          _mta-sts TXT record (RFC 8461 §3.1)
    │   ├── PolicySyntaxError          policy file (RFC 8461 §3.2)
    │   ├── TLSRPTRecordSyntaxError    _smtp._tls TXT record (RFC 8460 §3)
    │   └── ReportSyntaxError          a TLS-RPT aggregate report (RFC 8460 §4)
    ├── ValidationError                a TLS session failed a check
    └── UsageError (RuntimeError)      the caller misused an API

Parsers raise; the policy machine turns :class:`ParseError` and
:class:`ValidationError` into outcomes carrying ``result_type``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._vocab import ResultType

__all__ = [
    "DomainNameError",
    "ParseError",
    "PolicySyntaxError",
    "RecordSyntaxError",
    "ReportSyntaxError",
    "SMTPSTSError",
    "TLSRPTRecordSyntaxError",
    "UsageError",
    "ValidationError",
]


class SMTPSTSError(Exception):
    """
    Base class of every exception smtpsts raises.

    Abstract: raise one of its subclasses.

    Attributes:
        detail: What was wrong, in words.
    """

    result_type: ClassVar[ResultType | None] = None
    """The TLS-RPT result type this failure is reported as, if any."""

    def __init__(self, detail: str, *args: Any) -> None:
        if type(self) is SMTPSTSError:
            raise TypeError("SMTPSTSError is abstract; raise one of its subclasses")
        super().__init__(detail, *args)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class ParseError(SMTPSTSError, ValueError):
    """
    Text from the network (a record, a policy, a report) does not fit its grammar.

    Also a :class:`ValueError`, so ``except ValueError`` keeps working.

    Args:
        detail: What was wrong, in words.
        line: The 1-based line of the input where the problem is, if the
            input has lines.
        offset: The 0-based character offset of the problem within the line
            (or within the whole input when it has no lines).
        conformance: The CONFORMANCE.md IDs of the rules that were broken.
        reason: A short machine-readable code for TLS-RPT
            ``failure-reason-code`` (for example ``missing-mode``).

    Attributes:
        detail: What was wrong.
        line: 1-based line number or ``None``.
        offset: 0-based offset or ``None``.
        conformance: Tuple of CONFORMANCE.md IDs.
        reason: Short reason code.
    """

    def __init__(
        self,
        detail: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        conformance: tuple[str, ...] = (),
        reason: str = "syntax-error",
    ) -> None:
        if type(self) is ParseError:
            raise TypeError("ParseError is abstract; raise one of its subclasses")
        super().__init__(detail)
        self.line = line
        self.offset = offset
        self.conformance = conformance
        self.reason = reason

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.detail} ({', '.join(where)})" if where else self.detail

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.detail!r}, line={self.line!r}, "
            f"offset={self.offset!r}, conformance={self.conformance!r}, reason={self.reason!r})"
        )


class DomainNameError(ParseError):
    """
    A domain name is not a valid host name.

    For example an empty label, a label over 63 octets, a name over 253
    octets, a character outside letters, digits and hyphen, or invalid IDNA.
    """


class RecordSyntaxError(ParseError):
    """
    An ``_mta-sts`` TXT record does not fit RFC 8461 §3.1.

    The consequence is "no policy" (STS-REC-14), so there is no TLS-RPT
    result type of its own.
    """


class PolicySyntaxError(ParseError):
    """
    A policy file does not fit RFC 8461 §3.2 (or is over 64 KiB, or not UTF-8).
    """

    result_type = ResultType.STS_POLICY_INVALID


class TLSRPTRecordSyntaxError(ParseError):
    """
    An ``_smtp._tls`` TXT record does not fit RFC 8460 §3.
    """


class ReportSyntaxError(ParseError):
    """
    A received TLS-RPT aggregate report (JSON or message) is malformed.
    """


class ValidationError(SMTPSTSError):
    """
    A TLS session with an MX or policy host failed a check.

    Subclasses set :attr:`result_type`; the certificate and DANE checks
    return result values rather than raise, so these are for adapters and
    MTAs that prefer exceptions.
    """

    result_type: ClassVar[ResultType | None] = ResultType.VALIDATION_FAILURE


class UsageError(SMTPSTSError, RuntimeError):
    """
    The caller misused an API.

    For example, it fed the policy machine a result it did not ask for.
    Never caused by data from the network.
    """
