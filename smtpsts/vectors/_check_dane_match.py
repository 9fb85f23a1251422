"""
Checker for the ``dane-match`` vector group (RFC 7672 §3, RFC 7671 §5, §9).

See ``docs/vectors/dane-match.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from smtpsts.dane import TLSARecord, match_tlsa
from smtpsts.vectors import Answer, Comparison, answer_from, case_input, error_of

__all__ = ["check", "compute", "judge"]


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Parse one TLSA record, or match a TLSA RRset against a PEM chain.

    Args:
        case: One ``dane-match`` case.

    Returns:
        ``{"usable", "to_text"}`` for a record; ``{"ok", "authenticated",
        "usable", "result_type", "reason", "matched", "identity",
        "chain_length"}`` for a match; both with ``detail`` (words, never
        compared).

    Raises:
        smtpsts.exceptions.TLSASyntaxError: The record does not parse.
    """
    data = case_input(case)
    if "record" in data:
        record = TLSARecord.from_text(data["record"])
        return {
            "usable": record.usable,
            "to_text": record.to_text(),
            "detail": record.unusable_reason or "usable",
        }
    options = case.get("options", {})
    result = match_tlsa(
        data["records"],
        [p.encode() for p in data["chain"]],
        names=data["names"],
        now=datetime.fromisoformat(data["now"]),
        dane_ta_cn_fallback=bool(options.get("dane_ta_cn_fallback", True)),
    )
    return {
        "ok": result.ok,
        "authenticated": result.authenticated,
        "usable": result.usable,
        "result_type": None if result.result_type is None else result.result_type.value,
        "reason": result.reason,
        "matched": None if result.matched is None else result.matched.to_text(),
        "identity": result.identity,
        "chain_length": len(result.chain),
        "detail": result.detail,
    }


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the case's ``error`` or the members ``expect`` gives.

    Args:
        case: One ``dane-match`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if error_of(case, answer, "a record"):
        return
    got = answer.result
    detail = str(got.get("detail", "")) if isinstance(got, Mapping) else ""
    comparison.members(case["expect"], got, detail=detail)


def check(case: Mapping[str, Any]) -> None:
    """
    Parse one TLSA record, or match a TLSA RRset against a PEM chain.

    Args:
        case: One ``dane-match`` case.

    Raises:
        smtpsts.vectors.VectorMismatch: The outcome differs from the case.
    """
    judge(case, answer_from(compute, case), Comparison())
