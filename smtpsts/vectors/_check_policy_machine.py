"""
Checker for the ``policy-machine`` vector group (RFC 8461 §3.3, §5.1).

Each case is a scenario trace: a cached entry, a time and the results the
I/O layer returns; the machine must ask for exactly the listed actions and
end in the listed outcome and store operation. The shapes of ``input`` and
``expect`` are specified in ``docs/vectors/policy-machine.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from smtpsts.actions import (
    FetchFailed,
    FetchFailure,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    Resolved,
    Result,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
)
from smtpsts.cache import CacheEntry, PolicyConfig, PolicyOutcome, PolicyResolution
from smtpsts.vectors import (
    Answer,
    Comparison,
    VectorMismatch,
    answer_from,
    case_input,
    error_of,
)

__all__ = [
    "action_to_json",
    "check",
    "compute",
    "judge",
    "outcome_to_json",
    "result_from_json",
    "store_to_json",
]


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def result_from_json(item: Mapping[str, Any]) -> Result:
    """
    Build the result value a vector's ``results`` item describes.

    Args:
        item: ``{"type": "txt-answer" | "txt-not-found" | "txt-failure" |
            "http-response" | "fetch-failed", ...}``.

    Returns:
        The result value.
    """
    kind = item["type"]
    if kind == "txt-answer":
        return TXTAnswer(tuple(item["records"]), item.get("ttl"))
    if kind == "txt-not-found":
        return TXTNotFound(item.get("ttl"))
    if kind == "txt-failure":
        return TXTFailure(item.get("reason", ""))
    if kind == "http-response":
        body = (
            bytes.fromhex(item["body_hex"]) if "body_hex" in item else item["body"].encode("utf-8")
        )
        return HTTPResponse(item["status"], item.get("content_type"), body)
    if kind == "fetch-failed":
        return FetchFailed(FetchFailure(item["kind"]), "", item.get("status"), item.get("code"))
    raise VectorMismatch(f"unknown result type {kind!r}")


def action_to_json(action: LookupTXT | FetchPolicy) -> dict[str, Any]:
    """
    Describe an action as a vector's ``expect.actions`` item.

    Args:
        action: What the machine asked for.

    Returns:
        ``{"type": "lookup-txt", "qname"}`` or ``{"type": "fetch-policy",
        "url", "host", "max_bytes", "timeout", "require_text_plain"}``.
    """
    if isinstance(action, LookupTXT):
        return {"type": "lookup-txt", "qname": action.qname}
    return {
        "type": "fetch-policy",
        "url": action.url,
        "host": action.host,
        "max_bytes": action.max_bytes,
        "timeout": action.timeout,
        "require_text_plain": action.require_text_plain,
    }


def outcome_to_json(outcome: PolicyOutcome) -> dict[str, Any]:
    """
    Describe an outcome as a vector's ``expect.outcome``.

    Args:
        outcome: The machine's outcome.

    Returns:
        The summary documented in ``docs/vectors/policy-machine.md``.
    """
    info = outcome.policy_info
    failure = outcome.failure
    return {
        "mode": None if outcome.mode is None else outcome.mode.value,
        "applies": outcome.policy is not None,
        "source": outcome.source.value,
        "record_id": outcome.record_id,
        "expires_at": _time(outcome.expires_at),
        "policy_type": info.policy_type.value,
        "policy_strings": list(info.policy_strings),
        "mx_host": list(info.mx_host_patterns),
        "failure": None
        if failure is None
        else {"result_type": failure.result_type.value, "reason": failure.reason},
        "used_cache_after_failure": outcome.used_cache_after_failure,
        "temporary_error": outcome.temporary_error,
        "defer": outcome.defer,
    }


def store_to_json(resolved: Resolved) -> Any:
    """
    Describe the store operation of a :class:`Resolved`.

    Args:
        resolved: The terminal action.

    Returns:
        ``null`` (write nothing), ``"delete"``, or the entry as its
        ``to_json()`` document.
    """
    if resolved.delete:
        return "delete"
    if resolved.store is None:
        return None
    return json.loads(resolved.store.to_json())


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run one ``policy-machine`` scenario, answering the machine from the script.

    Args:
        case: The vector case.

    Returns:
        ``{"actions", "outcome", "store"}``.

    Raises:
        VectorMismatch: The machine asked for more than the scripted
            results, or left some unused.
    """
    data = case_input(case)
    cached = data.get("cached")
    entry = None if cached is None else CacheEntry.from_json(json.dumps(cached))
    machine = PolicyResolution(
        data["domain"],
        cached=entry,
        now=datetime.fromisoformat(data["now"]),
        config=PolicyConfig(**data.get("config", {})),
        refresh=data.get("refresh", False),
    )
    results = [result_from_json(item) for item in data["results"]]
    actions: list[dict[str, Any]] = []
    while True:
        action = machine.next_action()
        if isinstance(action, Resolved):
            break
        actions.append(action_to_json(action))
        if not results:
            raise VectorMismatch(f"machine asked for {actions[-1]} beyond the scripted results")
        machine.receive(results.pop(0))
    if results:
        raise VectorMismatch(f"machine finished with {len(results)} result(s) unused")
    return {
        "actions": actions,
        "outcome": outcome_to_json(action.outcome),
        "store": store_to_json(action),
    }


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer's actions, outcome and store operation with the case's.

    Args:
        case: The vector case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        VectorMismatch: The answer disagrees with the case.
    """
    error_of(case, answer, "an outcome")
    expect, got = case["expect"], answer.result
    for key in ("actions", "outcome", "store"):
        if comparison.present(key, got, key):
            comparison.value(key, expect[key], got[key])


def check(case: Mapping[str, Any]) -> None:
    """
    Run one ``policy-machine`` case.

    Args:
        case: The vector case.

    Raises:
        VectorMismatch: This implementation disagrees with the case.
    """
    judge(case, answer_from(compute, case), Comparison())
