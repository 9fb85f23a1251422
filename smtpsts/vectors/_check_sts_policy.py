"""
Checker for the ``sts-policy`` vector group (RFC 8461 §3.2).

See ``docs/vectors/sts-policy.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts.policy import Policy
from smtpsts.vectors import Answer, Comparison, answer_from, case_input, error_of

__all__ = ["check", "compute", "describe", "judge"]


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


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Parse the case's body with :meth:`smtpsts.policy.Policy.from_text`.

    Args:
        case: One ``sts-policy`` case.

    Returns:
        The policy, described (:func:`describe`).

    Raises:
        smtpsts.exceptions.PolicySyntaxError: The body is not a valid policy.
    """
    lenient = bool(case.get("options", {}).get("lenient", False))
    return describe(Policy.from_text(case_input(case), lenient=lenient))


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the case's ``expect`` or ``error`` (and ``reason``).

    Args:
        case: One ``sts-policy`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if error_of(case, answer, "a policy"):
        return
    comparison.members(case["expect"], answer.result)


def check(case: Mapping[str, Any]) -> None:
    """
    Parse the case's body and compare with ``expect`` or ``error``.

    Args:
        case: One ``sts-policy`` case.

    Raises:
        smtpsts.vectors.VectorMismatch: The outcome differs from the case.
    """
    judge(case, answer_from(compute, case), Comparison())
