"""Tests for the exception hierarchy (STYLE.md §3.4)."""

from __future__ import annotations

import pytest

import smtpsts
from smtpsts import exceptions, tlsrpt
from smtpsts.exceptions import (
    DomainNameError,
    ParseError,
    PolicySyntaxError,
    RecordSyntaxError,
    ReportSyntaxError,
    SMTPSTSError,
    TLSRPTRecordSyntaxError,
    UsageError,
)


def test_base_classes_are_abstract():
    """SMTPSTSError and ParseError cannot be raised themselves."""
    with pytest.raises(TypeError):
        SMTPSTSError("x")
    with pytest.raises(TypeError):
        ParseError("x")


@pytest.mark.parametrize(
    "cls",
    [
        DomainNameError,
        RecordSyntaxError,
        PolicySyntaxError,
        TLSRPTRecordSyntaxError,
        ReportSyntaxError,
    ],
)
def test_parse_errors_are_value_errors(cls):
    """Every parse error is a ParseError, an SMTPSTSError and a ValueError."""
    e = cls("bad thing", line=3, offset=7, conformance=("STS-POL-01",), reason="bad-thing")
    assert isinstance(e, ParseError)
    assert isinstance(e, SMTPSTSError)
    assert isinstance(e, ValueError)
    assert "bad thing (line 3, offset 7)" == str(e)
    assert ("STS-POL-01",) == e.conformance
    assert "bad-thing" == e.reason
    assert (3, 7) == (e.line, e.offset)
    assert repr(e).startswith(f"{cls.__name__}('bad thing', line=3")


def test_parse_error_without_position():
    """A message without a position is just the detail."""
    e = RecordSyntaxError("nope")
    assert "nope" == str(e)
    assert "syntax-error" == e.reason
    assert (None, None) == (e.line, e.offset)
    assert "offset 2" in str(RecordSyntaxError("x", offset=2))


def test_result_types():
    """Failures TLS-RPT can report carry their result type."""
    assert smtpsts.ResultType.STS_POLICY_INVALID == PolicySyntaxError.result_type
    assert RecordSyntaxError.result_type is None
    with pytest.warns(DeprecationWarning, match="ValidationError is deprecated"):
        validation_error = exceptions.ValidationError
    assert smtpsts.ResultType.VALIDATION_FAILURE == validation_error.result_type


def test_usage_error_is_runtime_error():
    """UsageError is raised for API misuse and is a RuntimeError."""
    e = UsageError("fed the wrong result")
    assert isinstance(e, RuntimeError)
    assert "fed the wrong result" == e.detail


def test_exports():
    """Errors are importable from smtpsts and smtpsts.tlsrpt as DESIGN.md names them."""
    assert smtpsts.ParseError is exceptions.ParseError
    assert smtpsts.PolicySyntaxError is exceptions.PolicySyntaxError
    assert tlsrpt.TLSRPTRecordSyntaxError is exceptions.TLSRPTRecordSyntaxError
    assert tlsrpt.ReportSyntaxError is exceptions.ReportSyntaxError


def test_vocabulary():
    """RPT-JSON-08 RPT-JSON-15: the enums carry the exact RFC 8460 strings, all 11 result types."""
    assert {"sts", "tlsa", "no-policy-found"} == {p.value for p in tlsrpt.PolicyType}
    assert {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    } == {r.value for r in tlsrpt.ResultType}
    assert "sts-policy-invalid" == str(tlsrpt.ResultType.STS_POLICY_INVALID)


def test_version():
    """smtpsts.__version__ is the installed distribution's version; other names are AttributeErrors."""
    from importlib.metadata import version

    assert version("smtpsts") == smtpsts.__version__
    with pytest.raises(AttributeError):
        _ = smtpsts.no_such_name
