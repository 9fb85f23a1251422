"""
Checker for the ``tlsrpt-aggregate`` vector group (RFC 8460 §4).

The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/tlsrpt-aggregate.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from smtpsts.policy import Policy
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.session import PolicyInfo, SessionFailure, SessionResult
from smtpsts.vectors import (
    Answer,
    Comparison,
    VectorMismatch,
    answer_from,
    case_input,
    error_of,
)

__all__ = ["check", "compute", "judge"]

# RFC 5322 §3.2.3 dot-atom-text (RPT-JSON-05).
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_FIELDS = {
    "sending-mta-ip": "sending_mta_ip",
    "receiving-mx-hostname": "receiving_mx_hostname",
    "receiving-mx-helo": "receiving_mx_helo",
    "receiving-ip": "receiving_ip",
    "failure-reason-code": "failure_reason_code",
    "additional-information": "additional_information",
    "report-domain": "report_domain",
    "report-delivery": "report_delivery",
}


def _policy(value: Mapping[str, Any]) -> PolicyInfo:
    domain = value["policy-domain"]
    if "policy-text" in value:
        return PolicyInfo.for_sts(domain, Policy.from_text(value["policy-text"]))
    if "tlsa-records" in value:
        return PolicyInfo.for_tlsa(domain, value["tlsa-records"])
    return PolicyInfo(
        value["policy-type"],
        domain,
        tuple(value.get("policy-string", ())),
        tuple(value.get("mx-host", ())),
    )


def _session(value: Mapping[str, Any]) -> SessionResult:
    fields = {attr: value[key] for key, attr in _FIELDS.items() if key in value}
    extras = tuple(
        SessionFailure(e["result-type"], e.get("failure-reason-code"))
        for e in value.get("extra-failures", ())
    )
    return SessionResult(
        _policy(value["policy"]),
        value["success"],
        value.get("result-type"),
        extra_failures=extras,
        **fields,
    )


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Aggregate the case's sessions into the day's reports.

    Args:
        case: One ``tlsrpt-aggregate`` case.

    Returns:
        ``{"reports": [...]}``: each report's JSON, decoded, with its
        ``report-id``.

    Raises:
        smtpsts.exceptions.SMTPSTSError: The aggregator refused the input
            (``UsageError``).
    """
    value = case_input(case)
    agg = Aggregator(max_failure_details=value.get("max-failure-details", 1000))
    for session in value["sessions"]:
        agg.add(_session(session), datetime.fromisoformat(session["at"]), session.get("count", 1))
    reports = agg.reports(
        date.fromisoformat(value["day"]),
        organization_name=value["organization-name"],
        contact_info=value["contact-info"],
        unique_id=value.get("unique-id"),
        include_success_only=value.get("include-success-only", True),
    )
    return {"reports": [json.loads(report.to_json()) for report in reports]}


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer with the case's reports or ``error``.

    A ``report-id`` is not compared (it is the sender's choice) but must be
    RFC 5322 dot-atom-text (RPT-JSON-05).

    Args:
        case: One ``tlsrpt-aggregate`` case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        smtpsts.vectors.VectorMismatch: The answer differs from the case.
    """
    if error_of(case, answer, "reports"):
        return
    if not comparison.present("reports", answer.result, "reports"):
        return
    got = []
    for report in answer.result["reports"]:
        doc = dict(report)
        rid = doc.pop("report-id", None)
        if rid is not None and not (isinstance(rid, str) and _DOT_ATOM.match(rid)):
            raise VectorMismatch(f"report-id {rid!r} is not dot-atom-text")
        got.append(doc)
    if case["expect"]["reports"] != got:
        raise VectorMismatch(f"expected {case['expect']['reports']!r}, got {got!r}")


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-aggregate`` case against :class:`smtpsts.tlsrpt.Aggregator`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    judge(case, answer_from(compute, case), Comparison())
