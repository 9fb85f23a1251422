"""
Checker for the ``tlsrpt-report`` vector group (RFC 8460 §4, §5).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/tlsrpt-report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.parse import parse_report_message
from smtpsts.vectors import (
    Answer,
    Comparison,
    VectorMismatch,
    answer_from,
    case_input,
    error_of,
)

__all__ = ["check", "compute", "judge"]


def _parse(value: Any) -> Report:
    if isinstance(value, bytes):
        return parse_report_message(value)
    if isinstance(value, str):
        return Report.from_json(value)
    return Report.from_json(json.dumps(value))


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Read the case's report and write it back normalised.

    Args:
        case: One ``tlsrpt-report`` case.

    Returns:
        The normalised report JSON, decoded.

    Raises:
        smtpsts.exceptions.ReportSyntaxError: The input is rejected.
    """
    report = _parse(case_input(case))
    again = Report.from_json(report.to_json())
    if again != report:  # pragma: no cover - only a model bug gets here
        raise VectorMismatch(f"round trip changed the report: {report!r} -> {again!r}")
    result: dict[str, Any] = json.loads(report.to_json())
    return result


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the case's normalised report or ``error``.

    A complete comparison compares the whole report; a partial one compares
    each top-level member the result gives (a member only the result has,
    other than ``null`` or ``""``, differs: normalising drops it).

    Args:
        case: One ``tlsrpt-report`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if error_of(case, answer, "a report"):
        return
    expect, got = case["expect"], answer.result
    if comparison.complete:
        comparison.compared.append("report")
        if expect != got:
            raise VectorMismatch(f"expected {expect!r}, got {got!r}")
        return
    for key in sorted(set(expect) | set(got)):
        if key not in expect and got[key] in (None, ""):
            continue
        if comparison.present(key, got, key):
            comparison.value(key, expect.get(key), got[key])


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-report`` case against :mod:`smtpsts.tlsrpt`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    judge(case, answer_from(compute, case), Comparison())
