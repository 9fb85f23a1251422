"""
Checker for the ``delivery-walk`` vector group (RFC 8461 §4-§5; RFC 7672 §2.1-§2.2).

Each case is a trace of :func:`smtpsts.delivery.walk`: a policy outcome and
options, and the answers to the walk's requests in order (MX records,
addresses, TLSA records, what each session showed, whether the plaintext
fallback greeted). The walk must make exactly the listed requests and end
with the listed status, reason, verdict, attempts and TLS-RPT sessions. The
shapes of ``input`` and ``expect`` are specified in
``docs/vectors/delivery-walk.md``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from smtpsts import delivery
from smtpsts.dane import TLSARecord
from smtpsts.decision import MXHost, Precedence
from smtpsts.delivery import Request, WalkResult
from smtpsts.tlsrpt.session import SessionResult
from smtpsts.vectors import (
    Answer,
    Comparison,
    VectorMismatch,
    answer_from,
    case_input,
    error_of,
)
from smtpsts.vectors._check_decision import observation_from_json, outcome_from_json

__all__ = ["answer_from_json", "check", "compute", "judge", "request_to_json", "run_case"]

_COMPARED = ("requests", "status", "reason", "verdict", "attempts", "sessions")
_VERDICTS = {"Deliver": "deliver", "DeliverAndReport": "deliver-and-report", "SkipMX": "skip"}


def answer_from_json(item: Mapping[str, Any]) -> Any:
    """
    Build the result an ``answers`` item describes.

    Args:
        item: ``{"type": ...}``: ``mx``, ``addresses``, ``not-found``,
            ``lookup-failed``, ``tlsa``, ``no-tlsa``, ``tlsa-failed``,
            ``connect-failed``, ``session-failed``, ``session`` or
            ``plaintext``.

    Returns:
        The result value to send to the walk.

    Raises:
        VectorMismatch: The type is unknown.
    """
    kind = item.get("type")
    if kind == "mx":
        return delivery.MXFound(
            tuple(MXHost(m["host"], m.get("preference", 0)) for m in item["records"])
        )
    if kind == "addresses":
        return delivery.AddressesFound(tuple(item["addresses"]))
    if kind == "not-found":
        return delivery.NoRecords()
    if kind == "lookup-failed":
        return delivery.LookupFailed(item["reason"])
    if kind == "tlsa":
        base = item["base_domain"]
        records = tuple(TLSARecord.from_text(r) for r in item["records"])
        return delivery.TLSAFound(records, base, tuple(item.get("names", [base])))
    if kind == "no-tlsa":
        return delivery.NoTLSA()
    if kind == "tlsa-failed":
        return delivery.TLSAFailed(item["bogus"], item.get("detail", ""))
    if kind == "connect-failed":
        return delivery.ConnectFailed(item["error"])
    if kind == "session-failed":
        return delivery.SessionFailed(item["error"])
    if kind == "session":
        return delivery.SessionOpened(observation_from_json(item), item.get("tls_error"))
    if kind == "plaintext":
        return bool(item["ok"])
    raise VectorMismatch(f"unknown answer type {kind!r}")


def request_to_json(request: Request) -> dict[str, Any]:
    """
    Describe a request as an ``expect.requests`` item.

    Args:
        request: What the walk yielded.

    Returns:
        ``{"type", ...}`` with the request's fields.
    """
    if isinstance(request, delivery.LookupMX):
        return {"type": "lookup-mx", "domain": request.domain}
    if isinstance(request, delivery.LookupAddresses):
        return {"type": "lookup-addresses", "host": request.host}
    if isinstance(request, delivery.LookupTLSA):
        return {"type": "lookup-tlsa", "host": request.host, "port": request.port}
    if isinstance(request, delivery.OpenSession):
        return {
            "type": "open-session",
            "mx": request.mx.host,
            "address": request.address,
            "port": request.port,
            "sni": request.server_name,
        }
    if isinstance(request, delivery.CloseSession):
        return {"type": "close-session", "quit": request.send_quit}
    assert isinstance(request, delivery.FallBackToPlaintext)
    return {
        "type": "fall-back-to-plaintext",
        "mx": request.mx.host,
        "address": request.address,
        "port": request.port,
    }


def _attempt_to_json(attempt: delivery.Attempt) -> dict[str, Any]:
    return {
        "mx": attempt.mx,
        "address": attempt.address,
        "port": attempt.port,
        "connected": attempt.connected,
        "tls": attempt.tls,
        "verdict": None if attempt.verdict is None else _VERDICTS[type(attempt.verdict).__name__],
        "error": attempt.error,
    }


def _session_to_json(session: SessionResult) -> dict[str, Any]:
    return {
        "policy_type": session.policy.policy_type.value,
        "result_type": None if session.result_type is None else session.result_type.value,
        "failure_reason_code": session.failure_reason_code,
    }


def _play(
    conversation: Generator[Request, Any, WalkResult], answers: list[Any]
) -> tuple[list[dict[str, Any]], WalkResult]:
    # Perform the walk's requests from the scripted answers (a close needs none).
    requests: list[dict[str, Any]] = []
    left = list(answers)
    try:
        request = next(conversation)
        while True:
            requests.append(request_to_json(request))
            if isinstance(request, delivery.CloseSession):
                request = conversation.send(None)
                continue
            if not left:
                raise VectorMismatch(
                    f"the walk asked for {requests[-1]!r} beyond the scripted answers"
                )
            request = conversation.send(answer_from_json(left.pop(0)))
    except StopIteration as stop:
        result: WalkResult = stop.value
    if left:
        raise VectorMismatch(f"{len(left)} scripted answers unused: {left!r}")
    return requests, result


def run_case(data: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run a case's input through the walk and describe what happened.

    Args:
        data: The case input.

    Returns:
        ``{"requests", "status", "reason", "verdict", "attempts",
        "sessions"}`` as ``expect`` holds them.
    """
    outcome = outcome_from_json(data)
    overrides = {
        (o["host"], o["port"]): (o["address"], o["to_port"]) for o in data.get("connect_to", [])
    }
    conversation = delivery.walk(
        data["domain"],
        outcome,
        port=data.get("port", 25),
        precedence=Precedence(data.get("precedence", "both")),
        dane=data.get("dane", False),
        connect_to=overrides,
    )
    requests, result = _play(conversation, data["answers"])
    return {
        "requests": requests,
        "status": result.status.value,
        "reason": result.reason,
        "verdict": None if result.verdict is None else _VERDICTS[type(result.verdict).__name__],
        "attempts": [_attempt_to_json(a) for a in result.attempts],
        "sessions": [_session_to_json(s) for s in result.sessions],
    }


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Play one ``delivery-walk`` trace (:func:`run_case` on its input).

    Args:
        case: The vector case.

    Returns:
        ``{"requests", "status", "reason", "verdict", "attempts", "sessions"}``.

    Raises:
        VectorMismatch: The walk asked for more than the scripted answers,
            or left some unused.
    """
    return run_case(case_input(case))


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer's trace with the case's ``expect``.

    Args:
        case: The vector case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        VectorMismatch: A request, the status, reason, verdict, an attempt or
            a session differs.
    """
    error_of(case, answer, "a walk")
    expect, got = case["expect"], answer.result
    for key in _COMPARED:
        if comparison.present(key, got, key):
            comparison.value(key, expect[key], got[key])


def check(case: Mapping[str, Any]) -> None:
    """
    Play one ``delivery-walk`` trace and compare it with the case's ``expect``.

    Args:
        case: The vector case.

    Raises:
        VectorMismatch: A request, the status, reason, verdict, an attempt or
            a session differs.
    """
    judge(case, answer_from(compute, case), Comparison())
