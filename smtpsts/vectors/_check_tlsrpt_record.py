"""
Checker for the ``tlsrpt-record`` vector group (RFC 8460 §3).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/tlsrpt-record.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts import exceptions
from smtpsts.tlsrpt.record import (
    Endpoint,
    HTTPSEndpoint,
    MailtoEndpoint,
    TLSRPTRecord,
    select_tlsrpt_record,
)
from smtpsts.vectors import VectorMismatch, case_input
from smtpsts.vectors._check_sts_record import rrset_from_json

__all__ = ["check"]


def _compare(what: str, expected: Any, actual: Any) -> None:
    if expected != actual:
        raise VectorMismatch(f"{what}: expected {expected!r}, got {actual!r}")


def _endpoint_json(endpoint: Endpoint) -> dict[str, str]:
    if isinstance(endpoint, MailtoEndpoint):
        return {"kind": "mailto", "address": endpoint.address}
    if isinstance(endpoint, HTTPSEndpoint):
        return {"kind": "https", "url": endpoint.url}
    return {"kind": "unusable", "uri": endpoint.uri}


def _check_record(expect: Mapping[str, Any], record: TLSRPTRecord) -> None:
    _compare("rua", expect["rua"], list(record.rua))
    _compare(
        "extensions", [list(p) for p in expect["extensions"]], [list(p) for p in record.extensions]
    )
    _compare("to_text", expect["to_text"], record.to_text())
    _compare("lenient", expect.get("lenient", False), record.lenient)
    _compare("endpoints", expect["endpoints"], [_endpoint_json(e) for e in record.endpoints])
    # What the serializer writes parses back to the same URIs.
    _compare("re-parsed to_text", record.rua, TLSRPTRecord.from_text(record.to_text()).rua)


def _parse(text: str | bytes, case: Mapping[str, Any], *, lenient: bool) -> None:
    if "error" in case:
        try:
            record = TLSRPTRecord.from_text(text, lenient=lenient)
        except exceptions.ParseError as e:
            _compare("error", case["error"], type(e).__name__)
            return
        raise VectorMismatch(f"error: expected {case['error']}, got {record!r}")
    _check_record(case["expect"], TLSRPTRecord.from_text(text, lenient=lenient))


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-record`` case against :mod:`smtpsts.tlsrpt.record`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    value = case_input(case)
    if not isinstance(value, dict):
        _parse(value, case, lenient=False)
        return
    if "rrset" not in value:
        _parse(value["text"], case, lenient=value.get("lenient", False))
        return
    selection = select_tlsrpt_record(
        rrset_from_json(value["rrset"]), lenient=value.get("lenient", False)
    )
    expect = case["expect"]
    _compare("status", expect["status"], selection.status.value)
    _compare("candidates", expect["candidates"], selection.candidates)
    if expect["record"] is None:
        _compare("record", None, selection.record)
    elif selection.record is None:
        raise VectorMismatch(f"record: expected {expect['record']!r}, got None")
    else:
        _check_record(expect["record"], selection.record)
