"""
Checker for the ``sts-record`` vector group (RFC 8461 §3.1).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/sts-record.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts import exceptions
from smtpsts.record import STSRecord, select_sts_record
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check", "rrset_from_json"]


def rrset_from_json(items: list[Any]) -> list[str | tuple[bytes, ...]]:
    """
    Turn a vector's ``rrset`` into what the selection functions take.

    Args:
        items: Each RR as a string (its joined text) or as a list of strings
            (its character-strings).

    Returns:
        Strings as they are; lists as tuples of UTF-8 ``bytes``, the way DNS
        libraries hand character-strings over.
    """
    return [
        item if isinstance(item, str) else tuple(s.encode("utf-8") for s in item) for item in items
    ]


def _compare(what: str, expected: Any, actual: Any) -> None:
    if expected != actual:
        raise VectorMismatch(f"{what}: expected {expected!r}, got {actual!r}")


def _check_record(expect: Mapping[str, Any], record: STSRecord) -> None:
    _compare("id", expect["id"], record.id)
    _compare(
        "extensions", [list(p) for p in expect["extensions"]], [list(p) for p in record.extensions]
    )
    _compare("to_text", expect["to_text"], record.to_text())
    _compare("lenient", expect.get("lenient", False), record.lenient)
    # STS-REC-18: what the serializer writes parses back to the same record.
    _compare("re-parsed to_text", record.id, STSRecord.from_text(record.to_text()).id)


def _parse(text: str | bytes, case: Mapping[str, Any], *, lenient: bool) -> None:
    if "error" in case:
        try:
            record = STSRecord.from_text(text, lenient=lenient)
        except exceptions.ParseError as e:
            _compare("error", case["error"], type(e).__name__)
            return
        raise VectorMismatch(f"error: expected {case['error']}, got {record!r}")
    _check_record(case["expect"], STSRecord.from_text(text, lenient=lenient))


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``sts-record`` case against :mod:`smtpsts.record`.

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
    selection = select_sts_record(
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
