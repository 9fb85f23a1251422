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
from smtpsts.vectors._txt_record_cases import check as check_record_case
from smtpsts.vectors._txt_record_cases import compare

__all__ = ["check"]


def _endpoint_json(endpoint: Endpoint) -> dict[str, str]:
    if isinstance(endpoint, MailtoEndpoint):
        return {"kind": "mailto", "address": endpoint.address}
    if isinstance(endpoint, HTTPSEndpoint):
        return {"kind": "https", "url": endpoint.url}
    return {"kind": "unusable", "uri": endpoint.uri}


def _check_record(expect: Mapping[str, Any], record: TLSRPTRecord) -> None:
    compare("rua", expect["rua"], list(record.rua))
    compare(
        "extensions", [list(p) for p in expect["extensions"]], [list(p) for p in record.extensions]
    )
    compare("to_text", expect["to_text"], record.to_text())
    compare("lenient", expect.get("lenient", False), record.lenient)
    compare("endpoints", expect["endpoints"], [_endpoint_json(e) for e in record.endpoints])
    # What the serializer writes parses back to the same URIs.
    compare("re-parsed to_text", record.rua, TLSRPTRecord.from_text(record.to_text()).rua)


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-record`` case against :mod:`smtpsts.tlsrpt.record`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    check_record_case(case, TLSRPTRecord.from_text, select_tlsrpt_record, _check_record)
