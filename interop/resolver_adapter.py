#!/usr/bin/env python3
"""
postfix-mta-sts-resolver 1.5.1 (PyPI, MIT) behind the vectors protocol (docs/vectors.md).

The resolver is a daemon, not a library: its record and policy parsing are
the functions ``postfix_mta_sts_resolver.utils.parse_mta_sts_record``,
``parse_mta_sts_policy`` and ``filter_text``, and the checks around them sit
inline in ``STSResolver.resolve`` (docs PEERS.md, part A §1.2-§1.3). This
adapter calls those functions and applies the same acceptance rules, stated
here from their documented behaviour:

- a TXT string is a candidate when it is ASCII and starts with ``v=STSv1``;
  exactly one candidate must exist, and its parsed ``v`` must be ``STSv1``
  with an ``id`` present (anything else: no policy, reported as
  ``RecordSyntaxError`` for a single record);
- a policy needs ``version: STSv1``, an integer ``max_age`` in 0..31557600,
  a ``mode``; ``none`` is then valid, otherwise ``mode`` must be
  ``testing``/``enforce`` with at least one ``mx`` (anything else: a fetch
  error, reported as ``PolicySyntaxError``). A body is decoded as ASCII
  (the resolver's choice when the response names no charset).

MX matching is Postfix's job there, not the resolver's, and the daemon does
no TLS-RPT or DANE: those groups are unsupported.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from _serve import Unsupported, serve, strict_only
from postfix_mta_sts_resolver.utils import filter_text, parse_mta_sts_policy, parse_mta_sts_record


def _valid_record(text: str) -> dict[str, str] | None:
    record = parse_mta_sts_record(text)
    if record.get("v") != "STSv1" or "id" not in record:
        return None
    return record


def sts_record(request: Mapping[str, Any]) -> dict[str, Any]:
    """Parse one record, or select from an RRset, the way the resolver's DNS step does."""
    strict_only(request)
    value = request.get("input")
    if isinstance(value, dict) and "text" in value:
        raise Unsupported
    if isinstance(value, dict):
        rrs = [
            rr if isinstance(rr, str) else b"".join(s.encode() for s in rr) for rr in value["rrset"]
        ]
        candidates = [t for t in filter_text(rrs) if t.startswith("v=STSv1")]
        if len(candidates) != 1:
            status = "no-record" if not candidates else "multiple-records"
            return {"result": {"status": status, "candidates": len(candidates), "record": None}}
        record = _valid_record(candidates[0])
        return {
            "result": {
                "status": "syntax-error" if record is None else "found",
                "candidates": 1,
                "record": None if record is None else {"id": record["id"]},
            }
        }
    raw = bytes.fromhex(request["input_hex"]) if "input_hex" in request else value
    kept = [t for t in filter_text([raw]) if t.startswith("v=STSv1")]
    record = _valid_record(kept[0]) if kept else None
    if record is None:
        return {"error": "RecordSyntaxError", "detail": "no policy (NONE)"}
    return {"result": {"id": record["id"]}}


def sts_policy(request: Mapping[str, Any]) -> dict[str, Any]:
    """Parse and validate one policy body."""
    strict_only(request)
    if "input_hex" in request:
        try:
            text = bytes.fromhex(request["input_hex"]).decode("ascii")
        except UnicodeDecodeError:
            return {"error": "PolicySyntaxError", "detail": "not ASCII (FETCH_ERROR)"}
    else:
        text = request["input"]
    policy = parse_mta_sts_policy(text)
    failed = {"error": "PolicySyntaxError", "detail": f"FETCH_ERROR: {policy!r}"[:300]}
    if policy.get("version") != "STSv1":
        return failed
    try:
        max_age = int(policy.get("max_age", "-1"))
    except ValueError:
        return failed
    if not 0 <= max_age <= 31557600 or "mode" not in policy:
        return failed
    if policy["mode"] != "none" and (
        policy["mode"] not in ("testing", "enforce") or not policy["mx"]
    ):
        return failed
    return {"result": {"mode": policy["mode"], "max_age": max_age, "mx_text": policy["mx"]}}


if __name__ == "__main__":
    sys.exit(serve({"sts-record": sts_record, "sts-policy": sts_policy}))
