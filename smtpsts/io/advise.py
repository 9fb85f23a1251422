"""
The rollout advisor's inputs, read from a report store and a live check (issue 13 item 5).

:mod:`smtpsts.tlsrpt.advisor` decides from numbers; these two functions get
them: :func:`read_numbers` asks a :class:`~smtpsts.tlsrpt.inbox.ReportStore`,
:func:`live_check` condenses what :func:`smtpsts.io.check.check_domain` found.
Used by ``smtpsts tlsrpt advise``, ``smtpsts tlsrpt alert`` and the lab.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from smtpsts.io.check import CheckReport
from smtpsts.tlsrpt.advisor import LiveCheck, ReportNumbers

__all__ = ["live_check", "read_numbers"]


def read_numbers(store: Any, domain: str, since: datetime, until: datetime) -> ReportNumbers:
    """
    Read the advisor's numbers for one domain and window from a report store.

    Args:
        store: A :class:`~smtpsts.tlsrpt.inbox.ReportStore`.
        domain: The policy domain (A-label).
        since: First instant counted.
        until: First instant not counted.

    Returns:
        The numbers; ``latest`` is the end of the domain's newest report,
        whatever the window.

    Raises:
        smtpsts.StoreError: The store cannot be read.
    """
    newest = store.reports(domain, limit=1)
    return ReportNumbers(
        domain,
        days=store.daily(domain, since, until),
        by_organization=store.breakdown(domain, since, until, "organization"),
        by_mx=store.breakdown(domain, since, until, "mx"),
        by_result_type=store.breakdown(domain, since, until, "result_type"),
        by_policy=store.breakdown(domain, since, until, "policy"),
        latest=newest[0].end if newest else None,
    )


def live_check(report: CheckReport) -> LiveCheck:
    """
    Condense a :class:`smtpsts.io.check.CheckReport` into what the advisor needs.

    Args:
        report: The check's result.

    Returns:
        The policy mode and ``mx`` patterns, the MX hosts, and one sentence
        per MX whose STARTTLS or certificate fails (RFC 8461 §4.2).
    """
    policy = report.sts.policy
    problems: list[str] = []
    for mx in report.mx:
        probe = mx.probe
        if probe is None or not probe.connected:
            continue
        if not probe.starttls_offered:
            problems.append(f"{mx.host}: STARTTLS not offered")
        elif not probe.handshake_ok:
            problems.append(f"{mx.host}: the TLS handshake failed ({probe.reason})")
        elif mx.certificate is not None and not mx.certificate.ok:
            result_type = mx.certificate.result_type
            kind = result_type.value if result_type is not None else "invalid"
            problems.append(f"{mx.host}: {kind}: {mx.certificate.detail}")
    error = report.sts.error
    return LiveCheck(
        mode=None if policy is None else policy.mode,
        mx_patterns=() if policy is None else policy.mx,
        mx_hosts=tuple(m.host for m in report.mx),
        certificate_problems=tuple(problems),
        error="" if error is None or report.sts.record is None else error.detail,
    )
