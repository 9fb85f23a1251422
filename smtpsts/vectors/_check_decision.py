"""
Checker for the ``decision`` vector group (RFC 8461 §4, §5; RFC 7672 §2.2).

Each case gives a policy outcome, an MX RRset and what the session with
each MX showed; the checker plans the delivery, tries the candidates in
order as an MTA would (stopping at the first delivery), and compares the
plan, the per-MX verdicts with their TLS-RPT session results, and the final
defer. The shapes of ``input`` and ``expect`` are specified in
``docs/vectors/decision.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtpsts._vocab import ResultType
from smtpsts.cache import PolicyFailure, PolicyOutcome, PolicySource
from smtpsts.certs import CertificateCheck
from smtpsts.dane import DANECheck
from smtpsts.decision import (
    Deliver,
    DeliverAndReport,
    MXHost,
    Plan,
    Precedence,
    SkipMX,
    TLSObservation,
    Verdict,
    decide,
    defer_if_exhausted,
    plan,
)
from smtpsts.policy import Mode, Policy
from smtpsts.tlsrpt.session import PolicyInfo, SessionResult
from smtpsts.vectors import Answer, Comparison, answer_from, case_input, error_of

__all__ = [
    "check",
    "compute",
    "judge",
    "observation_from_json",
    "outcome_from_json",
    "plan_to_json",
    "run_case",
    "verdict_to_json",
]

_VERDICT_NAMES = {Deliver: "deliver", DeliverAndReport: "deliver-and-report", SkipMX: "skip"}


def outcome_from_json(data: Mapping[str, Any]) -> PolicyOutcome:
    """
    Build the policy outcome a case's input describes.

    Args:
        data: The case input: ``domain``, ``policy`` (policy text or
            ``null`` for no policy), optional ``discovery_failure`` and
            ``defer``.

    Returns:
        The outcome, as the policy machine would give it.
    """
    domain = data["domain"]
    text = data.get("policy")
    failure_data = data.get("discovery_failure")
    failure = None
    if failure_data is not None:
        failure = PolicyFailure(ResultType(failure_data["result_type"]), failure_data["reason"])
    policy = None if text is None else Policy.from_text(text)
    applied = policy if policy is not None and policy.mode is not Mode.NONE else None
    if applied is None and failure is not None:
        info = PolicyInfo.for_sts(domain, None)
    elif policy is None:
        info = PolicyInfo.no_policy_found(domain)
    else:
        info = PolicyInfo.for_sts(domain, policy)
    return PolicyOutcome(
        domain=domain,
        policy=applied,
        mode=None if policy is None else policy.mode,
        source=PolicySource.NONE if policy is None else PolicySource.FRESH,
        policy_info=info,
        failure=failure,
        defer=data.get("defer", False),
    )


def observation_from_json(data: Mapping[str, Any]) -> TLSObservation:
    """
    Build a session observation from a case's ``sessions`` item.

    Args:
        data: ``starttls``, ``handshake_ok``, optional ``handshake_error``,
            ``pkix`` and ``dane`` objects, and the report addresses.

    Returns:
        The observation.
    """
    pkix = data.get("pkix")
    dane = data.get("dane")
    return TLSObservation(
        starttls_offered=data["starttls"],
        handshake_ok=data.get("handshake_ok", False),
        handshake_error=data.get("handshake_error"),
        pkix=None
        if pkix is None
        else CertificateCheck(
            pkix["ok"], _result_type(pkix.get("result_type")), "", pkix.get("reason")
        ),
        dane=None
        if dane is None
        else DANECheck(
            dane["ok"],
            _result_type(dane.get("result_type")),
            "",
            dane.get("reason"),
            usable=dane.get("usable", True),
            matched=None,
            authenticated=dane.get("authenticated", False),
        ),
        sending_mta_ip=data.get("sending_mta_ip"),
        receiving_ip=data.get("receiving_ip"),
        receiving_mx_helo=data.get("receiving_mx_helo"),
    )


def _result_type(value: str | None) -> ResultType | None:
    return None if value is None else ResultType(value)


def _session_to_json(session: SessionResult) -> dict[str, Any]:
    return {
        "policy_type": session.policy.policy_type.value,
        "success": session.success,
        "result_type": None if session.result_type is None else session.result_type.value,
        "failure_reason_code": session.failure_reason_code,
        "extra_failures": [
            [f.result_type.value, f.failure_reason_code] for f in session.extra_failures
        ],
        "receiving_mx_hostname": session.receiving_mx_hostname,
    }


def verdict_to_json(verdict: Verdict) -> dict[str, Any]:
    """
    Describe a verdict as a ``expect.verdicts`` item.

    Args:
        verdict: What :func:`smtpsts.decision.decide` returned.

    Returns:
        ``{"mx", "verdict", "failure", "session"}``.
    """
    failure = None
    if isinstance(verdict, DeliverAndReport | SkipMX):
        failure = {
            "result_type": verdict.failure.result_type.value,
            "reason": verdict.failure.reason,
        }
    return {
        "mx": verdict.mx.host,
        "verdict": _VERDICT_NAMES[type(verdict)],
        "failure": failure,
        "session": _session_to_json(verdict.session),
    }


def plan_to_json(result: Plan) -> dict[str, Any]:
    """
    Describe a plan as ``expect.plan``.

    Args:
        result: What :func:`smtpsts.decision.plan` returned.

    Returns:
        ``{"candidates": [[host, verdict], ...], "skipped": [...], "defer",
        "null_mx"}``.
    """
    return {
        "candidates": [[c.mx.host, c.verdict.value] for c in result.candidates],
        "skipped": [verdict_to_json(s) for s in result.skipped],
        "defer": result.defer is not None,
        "null_mx": result.null_mx,
    }


def run_case(data: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run a case's input the way an MTA would and describe what happened.

    Args:
        data: The case input.

    Returns:
        ``{"plan", "verdicts", "defer"}`` as ``expect`` holds them.
    """
    outcome = outcome_from_json(data)
    mx_hosts = [MXHost(m["host"], m.get("preference", 0)) for m in data["mx"]]
    planned = plan(outcome, mx_hosts)
    precedence = Precedence(data.get("precedence", "both"))
    sessions = data.get("sessions", {})
    verdicts: list[Verdict] = list(planned.skipped)
    tried: list[dict[str, Any]] = []
    for candidate in planned.candidates:
        seen = sessions.get(candidate.mx.host)
        if seen is None:
            # STS-APPLY-11: no TCP connection; nothing decided or recorded.
            continue
        verdict = decide(outcome, candidate.mx, observation_from_json(seen), precedence=precedence)
        verdicts.append(verdict)
        tried.append(verdict_to_json(verdict))
        if not isinstance(verdict, SkipMX):
            break
    final = planned.defer or defer_if_exhausted(verdicts)
    return {"plan": plan_to_json(planned), "verdicts": tried, "defer": final is not None}


def compute(case: Mapping[str, Any]) -> dict[str, Any]:
    """
    Run one ``decision`` case (:func:`run_case` on its input).

    Args:
        case: The vector case.

    Returns:
        ``{"plan", "verdicts", "defer"}``.
    """
    return run_case(case_input(case))


def judge(case: Mapping[str, Any], answer: Answer, comparison: Comparison) -> None:
    """
    Compare an answer's plan, verdicts and defer with the case's.

    Args:
        case: The vector case.
        answer: An implementation's answer.
        comparison: Keeps count of the members compared.

    Raises:
        VectorMismatch: The answer disagrees with the case.
    """
    error_of(case, answer, "a delivery")
    expect, got = case["expect"], answer.result
    for key in ("plan", "verdicts", "defer"):
        if comparison.present(key, got, key):
            comparison.value(key, expect[key], got[key])


def check(case: Mapping[str, Any]) -> None:
    """
    Run one ``decision`` case.

    Args:
        case: The vector case.

    Raises:
        VectorMismatch: This implementation disagrees with the case.
    """
    judge(case, answer_from(compute, case), Comparison())
