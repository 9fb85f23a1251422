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
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check"]


def check(case: Mapping[str, Any]) -> None:
    """
    Check a PEM chain for a host at a time and compare the verdict with the case.

    Args:
        case: One ``cert-check`` case.

    Raises:
        VectorMismatch: The outcome differs from the case.
    """
    data = case_input(case)
    trust = [x509.load_pem_x509_certificate(p.encode()) for p in data["trust"]]
    result = check_certificate(
        [p.encode() for p in data["chain"]],
        data["host"],
        trust=trust,
        now=datetime.fromisoformat(data["now"]),
    )
    got = {
        "ok": result.ok,
        "result_type": None if result.result_type is None else result.result_type.value,
        "reason": result.reason,
        "identity": result.identity,
        "chain_length": len(result.chain),
    }
    for key, want in case["expect"].items():
        if got.get(key) != want:
            raise VectorMismatch(f"expected {key} {want!r}, got {got.get(key)!r} ({result.detail})")
