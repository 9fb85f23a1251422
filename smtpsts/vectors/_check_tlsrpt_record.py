"""
Checker for the ``tlsrpt-record`` vector group (RFC 8460 §3).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/tlsrpt-record.md``; what this group shares with ``sts-record``
is in :mod:`smtpsts.vectors._txt_record_cases`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.tlsrpt.record import (
    Endpoint,
    HTTPSEndpoint,
    MailtoEndpoint,
    TLSRPTRecord,
    select_tlsrpt_record,
)
from smtpsts.vectors import Answer, Comparison, answer_from
from smtpsts.vectors import _txt_record_cases as _cases
from smtpsts.vectors._txt_record_cases import compare

__all__ = ["check", "compute", "describe", "judge"]

_MEMBERS = (
    ("rua", None),
    ("extensions", None),
    ("to_text", None),
    ("lenient", False),
    ("endpoints", None),
)


def _endpoint_json(endpoint: Endpoint) -> dict[str, str]:
    if isinstance(endpoint, MailtoEndpoint):
        return {"kind": "mailto", "address": endpoint.address}
    if isinstance(endpoint, HTTPSEndpoint):
        return {"kind": "https", "url": endpoint.url}
    return {"kind": "unusable", "uri": endpoint.uri}


def describe(record: TLSRPTRecord) -> dict[str, Any]:
    """
    Describe a record in the ``expect`` vocabulary.

    Args:
        record: The parsed record.

    Returns:
        ``{"rua", "extensions", "to_text", "lenient", "endpoints"}``.

    Raises:
        smtpsts.vectors.VectorMismatch: What the serializer writes does not
            parse back to the same URIs.
    """
    compare("re-parsed to_text", record.rua, TLSRPTRecord.from_text(record.to_text()).rua)
    return {
        "rua": list(record.rua),
        "extensions": [list(p) for p in record.extensions],
        "to_text": record.to_text(),
        "lenient": record.lenient,
        "endpoints": [_endpoint_json(e) for e in record.endpoints],
    }


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run one ``tlsrpt-record`` case on :mod:`smtpsts.tlsrpt.record`.

    Args:
        case: The case.

    Returns:
        The record or the selection, described.

    Raises:
        smtpsts.exceptions.TLSRPTRecordSyntaxError: The record does not parse.
    """
    return _cases.compute(case, TLSRPTRecord.from_text, select_tlsrpt_record, describe)


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with a ``tlsrpt-record`` case.

    Args:
        case: The case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    _cases.judge(case, answer, comparison, _MEMBERS)


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-record`` case against :mod:`smtpsts.tlsrpt.record`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    judge(case, answer_from(compute, case), Comparison())
