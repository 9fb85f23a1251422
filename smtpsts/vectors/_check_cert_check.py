"""
Checker for the ``cert-check`` vector group (RFC 8461 §4.2, RFC 9525 §6).

See ``docs/vectors/cert-check.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509

from smtpsts.certs import check_certificate
from smtpsts.vectors import Answer, Comparison, answer_from, case_input, error_of

__all__ = ["check", "compute", "judge"]


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Check the case's PEM chain for its host at its time.

    Args:
        case: One ``cert-check`` case.

    Returns:
        ``{"ok", "result_type", "reason", "identity", "chain_length"}``, and
        ``detail`` (words, never compared).
    """
    data = case_input(case)
    trust = [x509.load_pem_x509_certificate(p.encode()) for p in data["trust"]]
    result = check_certificate(
        [p.encode() for p in data["chain"]],
        data["host"],
        trust=trust,
        now=datetime.fromisoformat(data["now"]),
    )
    return {
        "ok": result.ok,
        "result_type": None if result.result_type is None else result.result_type.value,
        "reason": result.reason,
        "identity": result.identity,
        "chain_length": len(result.chain),
        "detail": result.detail,
    }


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the members the case's ``expect`` gives.

    Args:
        case: One ``cert-check`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    error_of(case, answer, "a verdict")
    got = answer.result
    detail = str(got.get("detail", "")) if isinstance(got, Mapping) else ""
    comparison.members(case["expect"], got, detail=detail)


def check(case: Mapping[str, Any]) -> None:
    """
    Check a PEM chain for a host at a time and compare the verdict with the case.

    Args:
        case: One ``cert-check`` case.

    Raises:
        smtpsts.vectors.VectorMismatch: The outcome differs from the case.
    """
    judge(case, answer_from(compute, case), Comparison())
