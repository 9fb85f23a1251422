"""
Checker for the ``mx-match`` vector group (RFC 8461 §3.2 ``mx`` values, §4.1 matching).

See ``docs/vectors/mx-match.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.exceptions import ParseError
from smtpsts.mx import MXPattern, MXPatternSet
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check"]


def _check_parse(case: Mapping[str, Any], text: str, lenient: bool) -> None:
    try:
        pattern = MXPattern.from_text(text, lenient=lenient)
    except ParseError as e:
        if "error" not in case:
            raise VectorMismatch(f"expected a pattern, got {e!r}") from None
        if type(e).__name__ != case["error"]:
            raise VectorMismatch(f"expected {case['error']}, got {e!r}") from None
        return
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got {pattern!r}")
    got = {
        "host": pattern.host,
        "wildcard": pattern.wildcard,
        "text": pattern.text,
        "str": str(pattern),
    }
    for key, want in case["expect"].items():
        if got.get(key) != want:
            raise VectorMismatch(f"expected {key} {want!r}, got {got.get(key)!r}")


def _check_match(case: Mapping[str, Any], patterns: list[str], host: str, lenient: bool) -> None:
    parsed = [MXPattern.from_text(p, lenient=lenient) for p in patterns]
    together = MXPatternSet(parsed).matches(host)
    one_by_one = any(p.matches(host) for p in parsed)
    if together != one_by_one:
        raise VectorMismatch(
            f"MXPatternSet says {together}, the patterns one by one say {one_by_one}"
        )
    want = case["expect"]["match"]
    if together != want:
        raise VectorMismatch(f"expected match {want!r}, got {together!r}")


def check(case: Mapping[str, Any]) -> None:
    """
    Parse a pattern, or match a host against patterns, and compare with the case.

    Args:
        case: One ``mx-match`` case.

    Raises:
        VectorMismatch: The outcome differs from the case.
    """
    data = case_input(case)
    lenient = bool(case.get("options", {}).get("lenient", False))
    if "pattern" in data:
        _check_parse(case, data["pattern"], lenient)
    else:
        _check_match(case, data["patterns"], data["host"], lenient)
