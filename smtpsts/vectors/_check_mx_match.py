"""
Checker for the ``mx-match`` vector group (RFC 8461 §3.2 ``mx`` values, §4.1 matching).

See ``docs/vectors/mx-match.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.mx import MXPattern, MXPatternSet
from smtpsts.vectors import (
    Answer,
    Comparison,
    VectorMismatch,
    answer_from,
    case_input,
    error_of,
)

__all__ = ["check", "compute", "judge"]


def _match(patterns: list[str], host: str, lenient: bool) -> dict[str, Any]:
    parsed = [MXPattern.from_text(p, lenient=lenient) for p in patterns]
    together = MXPatternSet(parsed).matches(host)
    one_by_one = any(p.matches(host) for p in parsed)
    if together != one_by_one:
        raise VectorMismatch(
            f"MXPatternSet says {together}, the patterns one by one say {one_by_one}"
        )
    return {"match": together}


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Parse a pattern, or match a host against patterns (set and one by one).

    Args:
        case: One ``mx-match`` case.

    Returns:
        ``{"host", "wildcard", "text", "str"}`` for a pattern, ``{"match"}``
        for a match.

    Raises:
        smtpsts.exceptions.PolicySyntaxError: The pattern does not parse.
        smtpsts.vectors.VectorMismatch: The pattern set and the single
            patterns disagree (STS-MX-09).
    """
    data = case_input(case)
    lenient = bool(case.get("options", {}).get("lenient", False))
    if "pattern" not in data:
        return _match(data["patterns"], data["host"], lenient)
    pattern = MXPattern.from_text(data["pattern"], lenient=lenient)
    return {
        "host": pattern.host,
        "wildcard": pattern.wildcard,
        "text": pattern.text,
        "str": str(pattern),
    }


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the case's ``expect`` or ``error``.

    Args:
        case: One ``mx-match`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if error_of(case, answer, "a pattern"):
        return
    comparison.members(case["expect"], answer.result)


def check(case: Mapping[str, Any]) -> None:
    """
    Parse a pattern, or match a host against patterns, and compare with the case.

    Args:
        case: One ``mx-match`` case.

    Raises:
        smtpsts.vectors.VectorMismatch: The outcome differs from the case.
    """
    judge(case, answer_from(compute, case), Comparison())
