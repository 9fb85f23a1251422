"""
Checker for the ``sts-record`` vector group (RFC 8461 §3.1).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/sts-record.md``; what this group shares with ``tlsrpt-record``
is in :mod:`smtpsts.vectors._txt_record_cases`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.record import STSRecord, select_sts_record
from smtpsts.vectors import Answer, Comparison, answer_from
from smtpsts.vectors import _txt_record_cases as _cases
from smtpsts.vectors._txt_record_cases import compare, rrset_from_json

__all__ = ["check", "compute", "describe", "judge", "rrset_from_json"]

_MEMBERS = (("id", None), ("extensions", None), ("to_text", None), ("lenient", False))


def describe(record: STSRecord) -> dict[str, Any]:
    """
    Describe a record in the ``expect`` vocabulary.

    Args:
        record: The parsed record.

    Returns:
        ``{"id", "extensions", "to_text", "lenient"}``.

    Raises:
        smtpsts.vectors.VectorMismatch: What the serializer writes does not
            parse back to the same id (STS-REC-18).
    """
    compare("re-parsed to_text", record.id, STSRecord.from_text(record.to_text()).id)
    return {
        "id": record.id,
        "extensions": [list(p) for p in record.extensions],
        "to_text": record.to_text(),
        "lenient": record.lenient,
    }


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run one ``sts-record`` case on :mod:`smtpsts.record`.

    Args:
        case: The case.

    Returns:
        The record or the selection, described.

    Raises:
        smtpsts.exceptions.RecordSyntaxError: The record does not parse.
    """
    return _cases.compute(case, STSRecord.from_text, select_sts_record, describe)


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with an ``sts-record`` case.

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
    Check one ``sts-record`` case against :mod:`smtpsts.record`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    judge(case, answer_from(compute, case), Comparison())
