"""
Checker for the ``tlsrpt-report`` vector group (RFC 8460 §4, §5).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/tlsrpt-report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from smtpsts.exceptions import ParseError
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.parse import parse_report_message
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check"]


def _parse(value: Any) -> Report:
    if isinstance(value, bytes):
        return parse_report_message(value)
    if isinstance(value, str):
        return Report.from_json(value)
    return Report.from_json(json.dumps(value))


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-report`` case against :mod:`smtpsts.tlsrpt`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    try:
        report = _parse(case_input(case))
    except ParseError as e:
        if "error" in case and case["error"] == type(e).__name__:
            return
        wanted = case.get("error", "a report")
        raise VectorMismatch(f"expected {wanted}, got {type(e).__name__}: {e}") from None
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got a report: {report.to_json()}")
    got = json.loads(report.to_json())
    if case["expect"] != got:
        raise VectorMismatch(f"expected {case['expect']!r}, got {got!r}")
    again = Report.from_json(report.to_json())
    if again != report:  # pragma: no cover - only a model bug gets here
        raise VectorMismatch(f"round trip changed the report: {report!r} -> {again!r}")
