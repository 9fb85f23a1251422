"""
Checker for the ``sts-policy`` vector group (RFC 8461 §3.2).

See ``docs/vectors/sts-policy.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.exceptions import ParseError
from smtpsts.policy import Policy
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check", "describe"]


def describe(policy: Policy) -> dict[str, Any]:
    """
    Describe a policy in the vocabulary of the ``expect`` member.

    Args:
        policy: The parsed policy.

    Returns:
        Every key an ``expect`` object may hold.
    """
    return {
        "mode": policy.mode.value,
        "mx": [str(p) for p in policy.mx],
        "mx_text": [p.text for p in policy.mx],
        "max_age": policy.max_age,
        "effective_max_age": policy.effective_max_age,
        "extensions": [list(pair) for pair in policy.extensions],
        "lines": list(policy.lines),
        "to_text": policy.to_text(),
        "lenient": policy.lenient,
    }


def check(case: Mapping[str, Any]) -> None:
    """
    Parse the case's body and compare with ``expect`` or ``error``.

    Args:
        case: One ``sts-policy`` case.

    Raises:
        VectorMismatch: The outcome differs from the case.
    """
    lenient = bool(case.get("options", {}).get("lenient", False))
    try:
        policy = Policy.from_text(case_input(case), lenient=lenient)
    except ParseError as e:
        if "error" not in case:
            raise VectorMismatch(f"expected a policy, got {e!r}") from None
        if type(e).__name__ != case["error"]:
            raise VectorMismatch(f"expected {case['error']}, got {e!r}") from None
        if "reason" in case and e.reason != case["reason"]:
            raise VectorMismatch(f"expected reason {case['reason']!r}, got {e!r}") from None
        return
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got {policy!r}")
    got = describe(policy)
    for key, want in case["expect"].items():
        if key not in got:
            raise VectorMismatch(f"unknown expect key {key!r}")
        if got[key] != want:
            raise VectorMismatch(f"expected {key} {want!r}, got {got[key]!r}")
