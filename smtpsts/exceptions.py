"""
The exceptions smtpsts raises, all of them (issue 11).

Every public exception class is defined here, under :class:`SMTPSTSError`,
and imported back into the module that raises it, so both
``smtpsts.exceptions.TLSASyntaxError`` and ``smtpsts.dane.TLSASyntaxError``
name the same class. Each keeps the builtin base it had, so ``except
ValueError`` and ``except RuntimeError`` callers keep working. Import them
from here, from :mod:`smtpsts` or from the module that raises them.

The hierarchy::

    SMTPSTSError                         abstract
    ├── ParseError (ValueError)          abstract: text did not fit its grammar
    │   ├── DomainNameError              a domain name is not a valid host name
    │   ├── RecordSyntaxError            _mta-sts TXT record (RFC 8461 §3.1)
    │   ├── PolicySyntaxError            policy file (RFC 8461 §3.2)
    │   ├── TLSRPTRecordSyntaxError      _smtp._tls TXT record (RFC 8460 §3)
    │   ├── ReportSyntaxError            a TLS-RPT aggregate report (RFC 8460 §4)
    │   │   ├── ReportNotAuthenticatedError  a mailed report without its DKIM signature
    │   │   └── IntakeError              a received body refused, with its HTTP status
    │   ├── TLSASyntaxError              a TLSA record (RFC 6698 §2.2)
    │   ├── CacheEntryFormatError        a stored cache document
    │   ├── RowFormatError               a stored TLS-RPT result key
    │   ├── NetstringError               socketmap framing (Postfix)
    │   └── RequestSyntaxError           a socketmap request (Postfix)
    ├── SMTPReplyError                   an SMTP reply broke RFC 5321 §4.2
    ├── ConfigError (ValueError)         a configuration value or file (server, trust store)
    ├── VectorFormatError (ValueError)   a test-vector file
    ├── VectorMismatch (AssertionError)  an implementation disagrees with a vector case
    ├── LabStateError (ValueError)       a lab state file
    ├── ValidationError                  deprecated: never raised
    ├── LocalFaultError (RuntimeError)   this host failed, not the remote side
    │   ├── LocalResourceError           out of descriptors, buffers or memory
    │   ├── StoreError                   a policy store cannot be read or written
    │   └── LookupTimeoutError           a lookup with nothing cached ran past its deadline
    ├── StoreVersionError (RuntimeError) a store file written by a newer smtpsts
    ├── MailboxError (RuntimeError)      a report mailbox (IMAP, Maildir) cannot be read or changed
    └── UsageError (RuntimeError)        the caller misused an API

One exception lives elsewhere because of its second base:
``smtpsts.io.submit.CleartextLoginRefusedError`` is also an
:class:`smtplib.SMTPNotSupportedError`, and :mod:`smtplib` imports
:mod:`ssl`, which the sans-I/O core never imports.

Parsers raise; the policy machine turns :class:`ParseError` into outcomes
carrying a ``result_type`` and a ``failure-reason-code``
(:mod:`smtpsts.reasons`).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from ._vocab import ResultType

__all__ = [
    "CacheEntryFormatError",
    "ConfigError",
    "DomainNameError",
    "IntakeError",
    "LabStateError",
    "LocalFaultError",
    "LocalResourceError",
    "LookupTimeoutError",
    "MailboxError",
    "NetstringError",
    "ParseError",
    "PolicySyntaxError",
    "RecordSyntaxError",
    "ReportNotAuthenticatedError",
    "ReportSyntaxError",
    "RequestSyntaxError",
    "RowFormatError",
    "SMTPReplyError",
    "SMTPSTSError",
    "StoreError",
    "StoreVersionError",
    "TLSASyntaxError",
    "TLSRPTRecordSyntaxError",
    "UsageError",
    "VectorFormatError",
    "VectorMismatch",
]
# ValidationError is left out: it is deprecated and reached through __getattr__.


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
        conformance: The conformance IDs of the rules that were broken
            (docs/conformance.md).
        reason: A short machine-readable code for TLS-RPT
            ``failure-reason-code`` (for example ``missing-mode``).

    Attributes:
        detail: What was wrong.
        line: 1-based line number or ``None``.
        offset: 0-based offset or ``None``.
        conformance: Tuple of conformance IDs (docs/conformance.md).
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


class _ValidationError(SMTPSTSError):
    """
    A TLS session with an MX or policy host failed a check.

    Deprecated: never raised (the certificate and DANE checks return result
    values). Reached as ``smtpsts.exceptions.ValidationError`` with a
    :class:`DeprecationWarning`, for one release.
    """

    result_type: ClassVar[ResultType | None] = ResultType.VALIDATION_FAILURE


_ValidationError.__name__ = _ValidationError.__qualname__ = "ValidationError"


def __getattr__(name: str) -> Any:
    # PEP 562: the deprecated name warns each time it is looked up (issue 11).
    if name == "ValidationError":
        warnings.warn(
            "smtpsts.exceptions.ValidationError is deprecated and will be removed in"
            " smtpsts 0.2 (it is never raised); catch smtpsts.ParseError instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return _ValidationError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LocalFaultError(SMTPSTSError, RuntimeError):
    """
    Something on this host failed; it says nothing about the remote domain.

    A local fault is never recorded as a verdict on the remote side: it
    starts no fetch backoff, writes no negative entry and replaces no cached
    policy (RFC 8461 §10: a local failure must not weaken a cached policy).
    Callers answer from a live cached policy when there is one, and defer
    (Postfix ``TEMP``) when the policy state is unknown.

    Deliberately not an :class:`OSError`, so that the adapters' handlers of
    network errors can never mistake it for a remote failure.

    Args:
        detail: What failed, in words.
        domain: The policy domain concerned, if any.
    """

    def __init__(self, detail: str, *, domain: str | None = None) -> None:
        super().__init__(detail)
        self.domain = domain


class LocalResourceError(LocalFaultError):
    """
    The host ran out of a resource during I/O: descriptors, buffers, memory.

    Raised by the adapters for ``EMFILE``, ``ENFILE``, ``ENOBUFS`` and
    ``ENOMEM`` instead of the failure result they would give for a remote
    fault.

    Args:
        detail: What failed, in words.
        errno: The OS error number.
        domain: The policy domain concerned, if any.
    """

    def __init__(self, detail: str, *, errno: int | None = None, domain: str | None = None) -> None:
        super().__init__(detail, domain=domain)
        self.errno = errno


class StoreError(LocalFaultError):
    """
    A policy store could not be read or written, so what it holds is unknown.

    Raised for a backend that fails or stalls (a locked, read-only or
    corrupt sqlite file; Redis unreachable with nothing in the local
    layer) and for a stored entry that cannot be read (another cache
    format, damage): such an entry is neither "absent" nor overwritten.
    """


class LookupTimeoutError(LocalFaultError):
    """
    A policy lookup for a domain with no live cached policy ran past its deadline.

    Only raised when the store was read and held no live policy, so the
    caller may give its configured "no policy yet" answer; the lookup goes
    on in the background and its result serves the next request.
    """


class UsageError(SMTPSTSError, RuntimeError):
    """
    The caller misused an API.

    For example, it fed the policy machine a result it did not ask for.
    Never caused by data from the network.
    """


class StoreVersionError(SMTPSTSError, RuntimeError):
    """
    A store file was written by a newer smtpsts: its schema is unknown here.

    Raised when a store is opened, before any lookup; upgrade smtpsts or use
    another file. Not a :class:`StoreError`: nothing is being looked up, and
    the fix is the operator's.
    """


class MailboxError(SMTPSTSError, RuntimeError):
    """
    A mailbox of TLS-RPT reports could not be read or changed (issue 13 item 2).

    Raised by :mod:`smtpsts.io.tlsrpt_mailbox`: the IMAP server cannot be
    reached, does not answer in time, refuses the login or a command, does
    not offer STARTTLS when it is required, or the login would go in
    cleartext without an explicit permission; a Maildir is missing or cannot
    be changed. Mails already handled stay handled; the rest wait for the
    next run.
    """


# --------------------------------------------------------------------------- formats


class TLSASyntaxError(ParseError):
    """
    A TLSA record in presentation form does not fit RFC 6698 §2.2.
    """


class CacheEntryFormatError(ParseError):
    """
    A stored cache document is not a valid :class:`~smtpsts.cache.CacheEntry`.

    Its version ``"v"`` is unknown, or a member is missing or malformed.
    """


class RowFormatError(ParseError):
    """
    A stored TLS-RPT result key cannot be read (written by a newer smtpsts, or damaged).
    """


class ReportNotAuthenticatedError(ReportSyntaxError):
    """
    A mailed report without a valid DKIM signature of its submitter (RFC 8460 §3).
    """


class IntakeError(ReportSyntaxError):
    """
    A received body that is not stored as a report, with the HTTP status to answer.

    Args:
        message: What is wrong, in words.
        status: ``400`` (not a report), ``413`` (too large, a bomb, too many
            entries) or ``415`` (not a TLS-RPT media type).
        reason: A short code for logs, metrics and the quarantine
            (``not-json``, ``not-a-report``, ``too-large``, ``gzip-bomb``,
            ``bad-gzip``, ``media-type``, ``too-many-policies``,
            ``too-many-details``, ``no-report-id``).
    """

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message, reason=reason, conformance=("RPT-SEND-26",))
        self.status = status


class NetstringError(ParseError):
    """
    A byte stream is not a sequence of well-formed netstrings.

    ``reason`` is one of ``bad-length`` (not a decimal number before ``:``),
    ``too-long`` (over the decoder's cap), ``missing-comma`` (no ``,`` after
    the payload), ``truncated`` (the stream ended inside a netstring).
    """


class RequestSyntaxError(ParseError):
    """
    A socketmap request is not ``NAME KEY`` (not from a well-behaved Postfix).
    """


class SMTPReplyError(SMTPSTSError):
    """
    A server reply that does not fit RFC 5321 §4.2 (or exceeds a cap, §4.5.3.1).

    Attributes:
        detail: What was wrong.
    """


class ConfigError(SMTPSTSError, ValueError):
    """
    A configuration value or file is not valid; the message names it.

    Raised for the Postfix server's configuration (naming the key) and for a
    trust store file that cannot be used
    (:func:`smtpsts.io.truststore.load_trust_store`).
    """


class VectorFormatError(SMTPSTSError, ValueError):
    """
    A vector file does not follow the ``smtpsts-vectors/1`` format.
    """


class VectorMismatch(SMTPSTSError, AssertionError):  # noqa: N818 -- an assertion, not an error condition
    """
    This implementation disagrees with a vector case.

    Raised by the group checkers of :mod:`smtpsts.vectors`; the message says
    what was expected and what came out.
    """


class LabStateError(SMTPSTSError, ValueError):
    """
    A lab state file is missing, unreadable or not one this version wrote.
    """
