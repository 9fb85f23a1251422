#!/usr/bin/env python3
"""
parsedmarc (PyPI, Apache-2.0) behind the vectors protocol (docs/vectors.md).

Runs parsedmarc's SMTP TLS report reading on the ``tlsrpt-report`` group,
offline: ``parsedmarc.parse_smtp_tls_report_json`` for JSON (an object is
serialised first, a string passed as is), ``parsedmarc.extract_report`` then
the same for gzip bytes, and ``parsedmarc.parse_report_email(offline=True)``
for a whole mail. parsedmarc's own report shape is mapped back onto RFC 8460
member names (its values are passed through unchanged; a missing
``failure-details`` becomes ``[]``, which the RFC treats the same). Any
``parsedmarc.ParserError`` is ``ReportSyntaxError``. Other groups are
unsupported.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import parsedmarc
from _serve import serve

_DETAIL = (
    ("result_type", "result-type"),
    ("sending_mta_ip", "sending-mta-ip"),
    ("receiving_mx_hostname", "receiving-mx-hostname"),
    ("receiving_mx_helo", "receiving-mx-helo"),
    ("receiving_ip", "receiving-ip"),
    ("failed_session_count", "failed-session-count"),
    ("additional_info_uri", "additional-information"),
    ("failure_reason_code", "failure-reason-code"),
)


def _policy(p: Mapping[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = {"policy-type": p["policy_type"]}
    if "policy_strings" in p:
        policy["policy-string"] = p["policy_strings"]
    policy["policy-domain"] = p["policy_domain"]
    if "mx_host_patterns" in p:
        policy["mx-host"] = p["mx_host_patterns"]
    return {
        "policy": policy,
        "summary": {
            "total-successful-session-count": p["successful_session_count"],
            "total-failure-session-count": p["failed_session_count"],
        },
        "failure-details": [
            {rfc: d[ours] for ours, rfc in _DETAIL if ours in d}
            for d in p.get("failure_details", [])
        ],
    }


def _rfc(report: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "organization-name": report["organization_name"],
        "date-range": {"start-datetime": report["begin_date"], "end-datetime": report["end_date"]},
        "contact-info": report["contact_info"],
        "report-id": report["report_id"],
        "policies": [_policy(p) for p in report["policies"]],
    }


def _read(request: Mapping[str, Any]) -> Mapping[str, Any]:
    if "input_hex" not in request:
        value = request["input"]
        return parsedmarc.parse_smtp_tls_report_json(
            value if isinstance(value, str) else json.dumps(value)
        )
    data = bytes.fromhex(request["input_hex"])
    if data[:2] == b"\x1f\x8b":
        return parsedmarc.parse_smtp_tls_report_json(parsedmarc.extract_report(data))
    if data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{":
        return parsedmarc.parse_smtp_tls_report_json(data)
    parsed = parsedmarc.parse_report_email(data, offline=True)
    if parsed.get("report_type") != "smtp_tls":
        raise parsedmarc.ParserError(f"not an SMTP TLS report: {parsed.get('report_type')}")
    return parsed["report"]


def tlsrpt_report(request: Mapping[str, Any]) -> dict[str, Any]:
    """Read one report."""
    try:
        report = _read(request)
    except parsedmarc.ParserError as e:
        return {"error": "ReportSyntaxError", "detail": str(e)[:300]}
    return {"result": _rfc(report)}


if __name__ == "__main__":
    sys.exit(serve({"tlsrpt-report": tlsrpt_report}))
