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
from smtpsts.vectors._txt_record_cases import check as check_record_case
from smtpsts.vectors._txt_record_cases import compare, rrset_from_json

__all__ = ["check", "rrset_from_json"]


def _check_record(expect: Mapping[str, Any], record: STSRecord) -> None:
    compare("id", expect["id"], record.id)
    compare(
        "extensions", [list(p) for p in expect["extensions"]], [list(p) for p in record.extensions]
    )
    compare("to_text", expect["to_text"], record.to_text())
    compare("lenient", expect.get("lenient", False), record.lenient)
    # STS-REC-18: what the serializer writes parses back to the same record.
    compare("re-parsed to_text", record.id, STSRecord.from_text(record.to_text()).id)


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``sts-record`` case against :mod:`smtpsts.record`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    check_record_case(case, STSRecord.from_text, select_sts_record, _check_record)
