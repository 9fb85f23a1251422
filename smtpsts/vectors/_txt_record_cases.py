"""
What the ``sts-record`` and ``tlsrpt-record`` checkers share (RFC 8461 §3.1, RFC 8460 §3).

Both groups have the same ``input`` shapes (a record text, its bytes, a lenient
``{"text"}`` or an ``{"rrset"}`` to select from, docs/vectors/sts-record.md) and the
same ``expect`` shape for a selection; only the record's own members differ, so each
checker passes its parser, selection function and record description to
:func:`compute`, and its record members to :func:`judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from smtpsts._txt import Selection
from smtpsts.vectors import Answer, Comparison, VectorMismatch, case_input

__all__ = ["compare", "compute", "judge", "rrset_from_json"]

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


def compute(
    case: Mapping[str, Any],
    parse: Callable[..., R],
    select: Callable[..., Selection[R, Any]],
    describe: Callable[[R], dict[str, Any]],
) -> dict[str, Any]:
    """
    Run one record case: a parse (strict or lenient) or an RRset selection.

    Args:
        case: The case.
        parse: The record class's ``from_text`` (takes ``lenient=``).
        select: The selection function (takes the RRset and ``lenient=``).
        describe: Describes a parsed record in the ``expect`` vocabulary.

    Returns:
        The record described, or ``{"status", "candidates", "record"}`` for a
        selection (``record`` described, or ``None``).

    Raises:
        smtpsts.exceptions.ParseError: The record does not parse.
    """
    value = case_input(case)
    if not isinstance(value, dict):
        return describe(parse(value, lenient=False))
    lenient = value.get("lenient", False)
    if "rrset" not in value:
        return describe(parse(value["text"], lenient=lenient))
    selection = select(rrset_from_json(value["rrset"]), lenient=lenient)
    return {
        "status": selection.status.value,
        "candidates": selection.candidates,
        "record": None if selection.record is None else describe(selection.record),
    }


def _record(
    expect: Mapping[str, Any],
    got: Any,
    members: Sequence[tuple[str, Any]],
    comparison: Comparison,
    prefix: str,
) -> None:
    for key, default in members:
        want = expect[key] if default is None else expect.get(key, default)
        if comparison.present(prefix + key, got, key):
            comparison.value(prefix + key, want, got[key])


def judge(
    case: Mapping[str, Any],
    answer: Answer,
    comparison: Comparison,
    members: Sequence[tuple[str, Any]],
) -> None:
    """
    Compare an answer with a record case's ``expect`` or ``error``.

    Args:
        case: The case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.
        members: The record's ``expect`` members in comparison order, each
            with its default when the case leaves it out (``None``: required).

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if answer.error is not None:
        if "error" not in case:
            raise VectorMismatch(f"error: expected a record, got {answer.error}: {answer.detail}")
        compare("error", case["error"], answer.error)
        return
    if "error" in case:
        raise VectorMismatch(f"error: expected {case['error']}, got {answer.result!r}")
    value, expect, got = case_input(case), case["expect"], answer.result
    if not (isinstance(value, dict) and "rrset" in value):
        _record(expect, got, members, comparison, "")
        return
    for key in ("status", "candidates"):
        if comparison.present(key, got, key):
            comparison.value(key, expect[key], got[key])
    if not comparison.present("record", got, "record"):
        return
    if expect["record"] is None or got["record"] is None:
        comparison.value("record", expect["record"], got["record"])
    else:
        _record(expect["record"], got["record"], members, comparison, "record.")
