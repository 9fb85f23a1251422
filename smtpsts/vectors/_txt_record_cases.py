"""
What the ``sts-record`` and ``tlsrpt-record`` checkers share (RFC 8461 §3.1, RFC 8460 §3).

Both groups have the same ``input`` shapes (a record text, its bytes, a lenient
``{"text"}`` or an ``{"rrset"}`` to select from, docs/vectors/sts-record.md) and the
same ``expect`` shape for a selection; only the record's own members differ, so each
checker passes its parser, selection function and record comparison to :func:`check`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from smtpsts import exceptions
from smtpsts._txt import Selection
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check", "compare", "rrset_from_json"]

R = TypeVar("R")


def compare(what: str, expected: Any, actual: Any) -> None:
    """
    Fail a case when a value differs.

    Args:
        what: The member compared, for the message.
        expected: The vector's value.
        actual: This implementation's value.

    Raises:
        smtpsts.vectors.VectorMismatch: They differ.
    """
    if expected != actual:
        raise VectorMismatch(f"{what}: expected {expected!r}, got {actual!r}")


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


def _parse(
    text: str | bytes,
    case: Mapping[str, Any],
    parse: Callable[..., R],
    check_record: Callable[[Mapping[str, Any], R], None],
    *,
    lenient: bool,
) -> None:
    if "error" in case:
        try:
            record = parse(text, lenient=lenient)
        except exceptions.ParseError as e:
            compare("error", case["error"], type(e).__name__)
            return
        raise VectorMismatch(f"error: expected {case['error']}, got {record!r}")
    check_record(case["expect"], parse(text, lenient=lenient))


def check(
    case: Mapping[str, Any],
    parse: Callable[..., R],
    select: Callable[..., Selection[R, Any]],
    check_record: Callable[[Mapping[str, Any], R], None],
) -> None:
    """
    Check one record case: a parse (strict or lenient) or an RRset selection.

    Args:
        case: The case.
        parse: The record class's ``from_text`` (takes ``lenient=``).
        select: The selection function (takes the RRset and ``lenient=``).
        check_record: Compares an ``expect`` record with a parsed record.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    value = case_input(case)
    if not isinstance(value, dict):
        _parse(value, case, parse, check_record, lenient=False)
        return
    lenient = value.get("lenient", False)
    if "rrset" not in value:
        _parse(value["text"], case, parse, check_record, lenient=lenient)
        return
    selection = select(rrset_from_json(value["rrset"]), lenient=lenient)
    expect = case["expect"]
    compare("status", expect["status"], selection.status.value)
    compare("candidates", expect["candidates"], selection.candidates)
    if expect["record"] is None:
        compare("record", None, selection.record)
    elif selection.record is None:
        raise VectorMismatch(f"record: expected {expect['record']!r}, got None")
    else:
        check_record(expect["record"], selection.record)
