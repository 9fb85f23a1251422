"""
Checker for the ``dane-match`` vector group (RFC 7672 §3, RFC 7671 §5, §9).

See ``docs/vectors/dane-match.md`` for what ``input`` and ``expect`` hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from smtpsts.dane import TLSARecord, TLSASyntaxError, match_tlsa
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check"]


def _compare(case: Mapping[str, Any], got: Mapping[str, Any], detail: str) -> None:
    for key, want in case["expect"].items():
        if got.get(key) != want:
            raise VectorMismatch(f"expected {key} {want!r}, got {got.get(key)!r} ({detail})")


def _check_record(case: Mapping[str, Any], text: str) -> None:
    try:
        record = TLSARecord.from_text(text)
    except TLSASyntaxError as e:
        if case.get("error") != "TLSASyntaxError":
            raise VectorMismatch(f"expected a record, got {e!r}") from None
        return
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got {record!r}")
    got = {"usable": record.usable, "to_text": record.to_text()}
    _compare(case, got, record.unusable_reason or "usable")


def check(case: Mapping[str, Any]) -> None:
    """
    Parse one TLSA record, or match a TLSA RRset against a PEM chain.

    Args:
        case: One ``dane-match`` case.

    Raises:
        VectorMismatch: The outcome differs from the case.
    """
    data = case_input(case)
    if "record" in data:
        _check_record(case, data["record"])
        return
    options = case.get("options", {})
    result = match_tlsa(
        data["records"],
        [p.encode() for p in data["chain"]],
        names=data["names"],
        now=datetime.fromisoformat(data["now"]),
        dane_ta_cn_fallback=bool(options.get("dane_ta_cn_fallback", True)),
    )
    got = {
        "ok": result.ok,
        "authenticated": result.authenticated,
        "usable": result.usable,
        "result_type": None if result.result_type is None else result.result_type.value,
        "reason": result.reason,
        "matched": None if result.matched is None else result.matched.to_text(),
        "identity": result.identity,
        "chain_length": len(result.chain),
    }
    _compare(case, got, result.detail)
