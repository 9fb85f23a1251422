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

from smtpsts.exceptions import SMTPSTSError
from smtpsts.policy import Policy
from smtpsts.tlsrpt.aggregate import Aggregator
from smtpsts.tlsrpt.session import PolicyInfo, SessionFailure, SessionResult
from smtpsts.vectors import VectorMismatch, case_input

__all__ = ["check"]

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


def _run(value: Mapping[str, Any]) -> list[dict[str, Any]]:
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
    out = []
    for report in reports:
        doc = json.loads(report.to_json())
        rid = doc.pop("report-id")
        if not _DOT_ATOM.match(rid):
            raise VectorMismatch(f"report-id {rid!r} is not dot-atom-text")
        out.append(doc)
    return out


def check(case: Mapping[str, Any]) -> None:
    """
    Check one ``tlsrpt-aggregate`` case against :class:`smtpsts.tlsrpt.Aggregator`.

    Args:
        case: The case.

    Raises:
        smtpsts.vectors.VectorMismatch: This implementation disagrees.
    """
    try:
        got = _run(case_input(case))
    except SMTPSTSError as e:
        if "error" in case and case["error"] == type(e).__name__:
            return
        wanted = case.get("error", "reports")
        raise VectorMismatch(f"expected {wanted}, got {type(e).__name__}: {e}") from None
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got reports: {got!r}")
    if case["expect"]["reports"] != got:
        raise VectorMismatch(f"expected {case['expect']['reports']!r}, got {got!r}")
