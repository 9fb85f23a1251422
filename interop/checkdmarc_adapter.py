#!/usr/bin/env python3
"""
checkdmarc (PyPI, Apache-2.0) behind the vectors protocol (docs/vectors.md).

What it runs, with no network: ``checkdmarc.mta_sts.parse_mta_sts_record``
(sts-record), ``parse_mta_sts_policy`` (sts-policy; also mx-match pattern
cases, as the ``mx`` line of a minimal policy), ``mx_in_mta_sts_patterns``
(mx-match matching) and ``checkdmarc.smtp_tls_reporting.
parse_smtp_tls_reporting_record`` (tlsrpt-record). Record selection from an
RRset needs DNS in checkdmarc, lenient mode does not exist there, and the
other groups are not what checkdmarc does: those cases are unsupported.

Result members given (the rest of ``expect`` is not modelled): sts-record
``id``; sts-policy ``mode``, ``max_age``, ``mx_text``; mx-match ``text`` or
``match``; tlsrpt-record ``rua``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from _serve import Unsupported, serve, strict_only, text_of
from checkdmarc import mta_sts, smtp_tls_reporting


def _record_text(request: Mapping[str, Any]) -> str:
    strict_only(request)
    if isinstance(request.get("input"), dict):  # an RRset to select from: needs DNS here
        raise Unsupported
    return text_of(request)


def sts_record(request: Mapping[str, Any]) -> dict[str, Any]:
    """Parse one _mta-sts record."""
    try:
        parsed = mta_sts.parse_mta_sts_record(_record_text(request))
    except mta_sts.MTASTSError as e:
        return {"error": "RecordSyntaxError", "detail": str(e)}
    return {"result": {"id": parsed["tags"]["id"]}}


def _policy(text: str) -> dict[str, Any]:
    return dict(mta_sts.parse_mta_sts_policy(text)["policy"])


def sts_policy(request: Mapping[str, Any]) -> dict[str, Any]:
    """Parse one policy body."""
    strict_only(request)
    try:
        policy = _policy(text_of(request))
    except mta_sts.MTASTSError as e:
        return {"error": "PolicySyntaxError", "detail": str(e)}
    return {
        "result": {"mode": policy["mode"], "max_age": policy["max_age"], "mx_text": policy["mx"]}
    }


def mx_match(request: Mapping[str, Any]) -> dict[str, Any]:
    """Match a host against patterns, or parse one pattern as a policy's mx line."""
    strict_only(request)
    data = request["input"]
    if "pattern" not in data:
        return {"result": {"match": mta_sts.mx_in_mta_sts_patterns(data["host"], data["patterns"])}}
    body = f"version: STSv1\nmode: enforce\nmx: {data['pattern']}\nmax_age: 86400\n"
    try:
        policy = _policy(body)
    except mta_sts.MTASTSError as e:
        return {"error": "PolicySyntaxError", "detail": str(e)}
    return {"result": {"text": policy["mx"][0]}}


def tlsrpt_record(request: Mapping[str, Any]) -> dict[str, Any]:
    """Parse one _smtp._tls record."""
    try:
        parsed = smtp_tls_reporting.parse_smtp_tls_reporting_record(_record_text(request))
    except smtp_tls_reporting.SMTPTLSReportingError as e:
        return {"error": "TLSRPTRecordSyntaxError", "detail": str(e)}
    return {"result": {"rua": list(parsed["tags"]["rua"]["value"])}}


if __name__ == "__main__":
    sys.exit(
        serve(
            {
                "sts-record": sts_record,
                "sts-policy": sts_policy,
                "mx-match": mx_match,
                "tlsrpt-record": tlsrpt_record,
            }
        )
    )
