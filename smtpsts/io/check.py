"""
Diagnose a domain's MTA-STS, TLS-RPT and DANE setup (``smtpsts check``).

:func:`acheck_domain` (asyncio) and :func:`check_domain` (blocking) look up,
all at once and within one overall deadline:

- the ``_mta-sts`` TXT record, then the policy at
  ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, judged by the same
  core rules the policy machine applies (RFC 8461 §3.1-§3.3);
- the ``_smtp._tls`` TXT record (RFC 8460 §3);
- the MX hosts, and for each one (unless told not to): a STARTTLS probe on
  port 25, the PKIX check of its certificate against the MX name
  (RFC 8461 §4.2), the DANE TLSA records when the resolver is trusted to
  validate DNSSEC (RFC 7672 §2.2), and the verdict
  :func:`smtpsts.decision.decide` gives for that session.

The result is a frozen :class:`CheckReport` whose :class:`Finding` values
each carry a :class:`FindingSeverity`: a *problem* (something is broken for
senders), a *warning* (it works, but will break or is probably not what was
meant: a certificate that expires soon, policy ``mx`` patterns and MX records
that do not meet, what :mod:`smtpsts.lint` warns about) or *advice*.
:attr:`CheckReport.status` tells the three outcomes a monitor needs apart:
no problems, problems, and "could not check" (DNS silent, unreachable or
SERVFAIL, the deadline passed, a local fault), which is never blamed on the
domain; the DNS server is then named once, in
:attr:`CheckReport.unchecked`. :meth:`CheckReport.to_json` is the ``--json``
output. Nothing here raises for what the network does: timeouts, refusals
and garbage become values in the report.

The module is over 600 lines: it is the whole diagnosis of one domain
(records, policy, MX probes, DANE, findings and their words). Splitting it by
section is the next step of issue 11; until then its sections follow the
order of the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
from cryptography import x509

from smtpsts._names import to_alabel
from smtpsts._txt import SelectionStatus
from smtpsts._vocab import ResultType
from smtpsts.actions import (
    FetchFailed,
    FetchFailure,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
    policy_request,
)
from smtpsts.cache import CacheEntry, PolicyOutcome, PolicyResolution, PolicySource
from smtpsts.certs import CertificateCheck, TrustStore, check_certificate, describe_certificate
from smtpsts.dane import DANECheck, match_tlsa
from smtpsts.decision import (
    DeliverAndReport,
    MXHost,
    SkipMX,
    TLSObservation,
    Verdict,
    decide,
)
from smtpsts.exceptions import LocalFaultError, ParseError
from smtpsts.io._check_dns import WatchedResolver
from smtpsts.io.dns import AsyncDNSResolver, DNSFailure, DNSNotFound
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSStatus, TLSALookup
from smtpsts.io.http import AsyncHTTPSFetcher
from smtpsts.io.starttls import STARTTLSProbe, aprobe_starttls
from smtpsts.lint import Problem, Severity, lint_policy, lint_record
from smtpsts.mx import MXPatternSet
from smtpsts.policy import Mode, Policy
from smtpsts.record import STSRecord, select_sts_record
from smtpsts.tlsrpt.record import TLSRPTRecord, select_tlsrpt_record
from smtpsts.tlsrpt.session import PolicyInfo

__all__ = [
    "DEFAULT_EXPIRY_WARNING_DAYS",
    "DEFAULT_TIMEOUT",
    "CheckError",
    "CheckReport",
    "CheckStatus",
    "DANEStatus",
    "Finding",
    "FindingSeverity",
    "MXCheck",
    "STSCheck",
    "TLSRPTCheck",
    "acheck_domain",
    "check_domain",
]

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds the whole check may take by default."""

SMTP_PORT: Final = 25
"""The port MX hosts are probed on (RFC 5321 §4.5.4)."""

DEFAULT_EXPIRY_WARNING_DAYS: Final = 21
"""A certificate that expires within this many days draws a warning."""

_TXT_REASONS: Final = {
    SelectionStatus.MULTIPLE_RECORDS: "txt-multiple-records",
    SelectionStatus.SYNTAX_ERROR: "txt-syntax-error",
}

_TIMED_OUT = "the check ran out of time before this step finished"

# CheckError reasons that mean "not checked" (DNS failed, out of time), never a
# verdict on the domain.
_UNCHECKED: Final = frozenset({"timeout", "txt-lookup-failed", "mx-lookup-failed"})


class FindingSeverity(enum.StrEnum):
    """
    How much a :class:`Finding` matters; ``.value`` is the word printed.

    Only problems change :attr:`CheckReport.status` (and the exit status of
    ``smtpsts check``).
    """

    PROBLEM = "problem"
    """Something is broken: senders fail, skip an MX or see no policy."""

    WARNING = "warning"
    """It works today, but will break soon or is probably not what was meant."""

    ADVICE = "advice"
    """A suggestion: what to publish or change to be better protected."""


_ORDER: Final = {FindingSeverity.PROBLEM: 0, FindingSeverity.WARNING: 1, FindingSeverity.ADVICE: 2}


@attrs.frozen
class Finding:
    """
    One thing the check has to say about the domain.

    Attributes:
        severity: Problem, warning or advice.
        code: A short machine-readable code, e.g. ``no-sts-record``,
            ``cert-expires-soon``, ``mx-pattern-unused``, or the code of the
            :mod:`smtpsts.lint` rule it comes from (``short-max-age``).
        message: What was found, in words.
    """

    severity: FindingSeverity = attrs.field(converter=FindingSeverity)
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """
        The JSON form.

        Returns:
            ``{"severity", "code", "message"}``.
        """
        return {"severity": self.severity.value, "code": self.code, "message": self.message}


class CheckStatus(enum.StrEnum):
    """The outcome of a check as a whole, worst first where it matters to a monitor."""

    OK = "ok"
    """Everything was checked and no problem was found (warnings and advice allowed)."""

    PROBLEMS = "problems"
    """The domain has at least one problem."""

    UNCHECKED = "could-not-check"
    """The check could not finish (DNS silent, unreachable or failing, the
    deadline, a local fault): nothing it missed is blamed on the domain."""


@attrs.frozen
class CheckError:
    """
    Why one part of the check found nothing usable.

    Attributes:
        result_type: The TLS-RPT result type the failure would be reported
            as, if it has one (RFC 8460 §4.3).
        reason: A short code, e.g. ``txt-multiple-records``, ``http-404``,
            ``timeout``.
        detail: What happened, in words.
    """

    result_type: ResultType | None
    reason: str
    detail: str

    @property
    def not_checked(self) -> bool:
        """Whether the step was not checked (DNS failed, out of time): no verdict on the domain."""
        return self.reason in _UNCHECKED

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"result_type", "reason", "detail"}``.
        """
        return {
            "result_type": None if self.result_type is None else self.result_type.value,
            "reason": self.reason,
            "detail": self.detail,
        }


@attrs.frozen
class STSCheck:
    """
    The MTA-STS part of the check (RFC 8461 §3).

    Attributes:
        record: The ``_mta-sts`` record, if exactly one valid record exists.
        policy: The fetched and parsed policy.
        policy_url: Where the policy was (or would be) fetched from.
        error: Why there is no record or no policy; ``None`` when both
            were found, and also when there simply is no record (then
            ``record`` is ``None``).
    """

    record: STSRecord | None = None
    policy: Policy | None = None
    policy_url: str = ""
    error: CheckError | None = None

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"record": {"id", "text"} | null, "policy": {"mode", "mx",
            "max_age", "text"} | null, "policy_url", "error"}``.
        """
        record = self.record
        policy = self.policy
        return {
            "record": None if record is None else {"id": record.id, "text": record.to_text()},
            "policy": None
            if policy is None
            else {
                "mode": policy.mode.value,
                "mx": [str(p) for p in policy.mx],
                "max_age": policy.max_age,
                "text": policy.text,
            },
            "policy_url": self.policy_url,
            "error": None if self.error is None else self.error.to_dict(),
        }


@attrs.frozen
class TLSRPTCheck:
    """
    The TLS-RPT part of the check (RFC 8460 §3).

    Attributes:
        record: The ``_smtp._tls`` record, if exactly one valid record exists.
        error: Why there is no usable record (``None`` when there simply is
            none, or when it was found).
    """

    record: TLSRPTRecord | None = None
    error: CheckError | None = None

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"record": {"rua": [...], "text"} | null, "error"}``.
        """
        record = self.record
        return {
            "record": None
            if record is None
            else {"rua": list(record.rua), "text": record.to_text()},
            "error": None if self.error is None else self.error.to_dict(),
        }


@attrs.frozen
class DANEStatus:
    """
    The DANE part of one MX check (RFC 7672 §2.2).

    Attributes:
        status: ``not-checked`` (the resolver is not trusted to validate
            DNSSEC, DANE-02), or the TLSA lookup's
            :class:`~smtpsts.io.dnssec.DNSStatus` value: ``secure`` (DANE
            applies), ``insecure`` / ``not-found`` (it does not),
            ``bogus`` / ``tempfail`` (the MX must not be used, DANE-08).
        records: The secure TLSA records as ``"u s m HEX"``.
        base_domain: The TLSA base domain, when secure.
        check: The match against the MX's chain, when DANE applies and the
            chain was seen.
        detail: What happened, in words.
    """

    status: str
    records: tuple[str, ...] = ()
    base_domain: str | None = None
    check: DANECheck | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Whether DANE makes this MX unusable or reports a broken RRset."""
        if self.status in (DNSStatus.BOGUS, DNSStatus.TEMPFAIL):
            return True
        check = self.check
        return check is not None and (not check.ok or check.result_type is not None)

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"status", "records", "base_domain", "authenticated", "ok",
            "result_type", "reason", "detail"}``.
        """
        check = self.check
        return {
            "status": self.status,
            "records": list(self.records),
            "base_domain": self.base_domain,
            "ok": None if check is None else check.ok,
            "authenticated": None if check is None else check.authenticated,
            "result_type": None
            if check is None or check.result_type is None
            else check.result_type.value,
            "reason": None if check is None else check.reason,
            "detail": self.detail if check is None else check.detail,
        }


@attrs.frozen
class MXCheck:
    """
    What the check found for one MX host.

    Attributes:
        host: The MX host name (A-label, no trailing dot).
        preference: Its MX preference.
        implicit: ``True`` when the domain has no MX records and mail goes to
            the domain itself (RFC 5321 §5.1).
        matches_policy: Whether the MTA-STS policy names this MX
            (RFC 8461 §4.1); ``None`` without a policy.
        address: The address probed.
        probe: The STARTTLS probe, when one was made.
        certificate: The PKIX check of the MX certificate against the MX
            name (RFC 8461 §4.2), when a chain was seen.
        dane: The DANE status, when probes were made.
        verdict: What :func:`smtpsts.decision.decide` says about delivering
            through this MX after that session.
        error: Why the MX could not be probed (address lookup failed, the
            check ran out of time).
        could_not_check: The MX was not probed for a reason that says
            nothing about it (its address lookup failed, the deadline).
    """

    host: str
    preference: int = 0
    implicit: bool = False
    matches_policy: bool | None = None
    address: str | None = None
    probe: STARTTLSProbe | None = None
    certificate: CertificateCheck | None = None
    dane: DANEStatus | None = None
    verdict: Verdict | None = None
    error: str | None = None
    could_not_check: bool = False

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"host", "preference", "implicit", "matches_policy", "address",
            "tls": {...}, "dane": {...} | null, "verdict": {...} | null}``.
        """
        return {
            "host": self.host,
            "preference": self.preference,
            "implicit": self.implicit,
            "matches_policy": self.matches_policy,
            "address": self.address,
            "could_not_check": self.could_not_check,
            "tls": self._tls_dict(),
            "dane": None if self.dane is None else self.dane.to_dict(),
            "verdict": _verdict_dict(self.verdict),
        }

    def _tls_dict(self) -> dict[str, Any]:
        probe = self.probe
        if probe is None:
            return {"probed": False, "error": self.error}
        cert = self.certificate
        return {
            "probed": True,
            "connected": probe.connected,
            "starttls": probe.starttls_offered,
            "handshake": probe.handshake_ok,
            "version": probe.tls_version,
            "cipher": probe.cipher,
            "failed_step": probe.step,
            "result_type": None if probe.result_type is None else probe.result_type.value,
            "reason": probe.reason,
            "error": probe.error,
            "certificate": None
            if cert is None
            else {
                "ok": cert.ok,
                "result_type": None if cert.result_type is None else cert.result_type.value,
                "reason": cert.reason,
                "detail": cert.detail,
                "identity": cert.identity,
                **_leaf_facts(probe.chain),
            },
        }


def _verdict_dict(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    failure = verdict.failure if isinstance(verdict, SkipMX | DeliverAndReport) else None
    return {
        "action": _ACTIONS[type(verdict).__name__],
        "result_type": None if failure is None else failure.result_type.value,
        "reason": None if failure is None else failure.reason,
    }


_ACTIONS: Final = {
    "Deliver": "deliver",
    "DeliverAndReport": "deliver-and-report",
    "SkipMX": "skip-mx",
}


def _leaf_facts(chain: Sequence[x509.Certificate]) -> dict[str, Any]:
    if not chain:
        return {"names": [], "not_after": None}
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        names = []
    return {"names": names, "not_after": leaf.not_valid_after_utc.isoformat()}


@attrs.frozen
class CheckReport:
    """
    The result of checking one domain.

    Attributes:
        domain: The domain checked (A-label).
        sts: The MTA-STS record and policy.
        tlsrpt: The TLS-RPT record.
        mx: The MX hosts in preference order (the domain itself when it has
            no MX records).
        mx_error: Why the MX hosts are unknown (lookup failure, timeout).
        null_mx: The domain publishes a null MX (RFC 7505): it takes no mail.
        dane_checked: Whether the resolver was trusted to validate DNSSEC,
            so that DANE was checked (DANE-02).
        findings: Problems, warnings and advice, in that order.
        unchecked: Why the check could not finish, in one sentence naming
            the DNS server once (``the DNS server 127.0.0.1:53 did not
            answer (3 queries)``), or that it ran out of time; ``None`` when
            everything was checked.
        nxdomain: The domain does not exist (its MX lookup said NXDOMAIN).
        timed_out: The deadline passed before everything was checked.
        elapsed: Seconds the check took.
        applied: With ``as_sender`` (``smtpsts check --cache``): the
            outcome a sender holding that cache applies now (its verdicts
            are the MX verdicts), else ``None``.
        local_fault: A fault of the checking host (descriptors or memory
            exhausted) that cut the check short, else ``None``; never a
            verdict on the domain (issue 10).
    """

    domain: str
    sts: STSCheck
    tlsrpt: TLSRPTCheck
    mx: tuple[MXCheck, ...] = ()
    mx_error: CheckError | None = None
    null_mx: bool = False
    dane_checked: bool = False
    findings: tuple[Finding, ...] = ()
    unchecked: str | None = None
    nxdomain: bool = False
    timed_out: bool = False
    elapsed: float = 0.0
    applied: PolicyOutcome | None = None
    local_fault: str | None = None

    def _messages(self, severity: FindingSeverity) -> tuple[str, ...]:
        return tuple(f.message for f in self.findings if f.severity is severity)

    @property
    def problems(self) -> tuple[str, ...]:
        """The messages of the problems."""
        return self._messages(FindingSeverity.PROBLEM)

    @property
    def warnings(self) -> tuple[str, ...]:
        """The messages of the warnings."""
        return self._messages(FindingSeverity.WARNING)

    @property
    def advice(self) -> tuple[str, ...]:
        """The messages of the advice."""
        return self._messages(FindingSeverity.ADVICE)

    @property
    def status(self) -> CheckStatus:
        """Could not check, problems, or OK (in that order of precedence)."""
        if self.unchecked is not None:
            return CheckStatus.UNCHECKED
        return CheckStatus.PROBLEMS if self.problems else CheckStatus.OK

    @property
    def ok(self) -> bool:
        """Whether everything was checked and no problem was found."""
        return self.status is CheckStatus.OK

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form (see :meth:`to_json`).

        Returns:
            A dictionary of JSON values.
        """
        return {
            "domain": self.domain,
            "status": self.status.value,
            "ok": self.ok,
            "unchecked": self.unchecked,
            "nxdomain": self.nxdomain,
            "sts": self.sts.to_dict(),
            "tlsrpt": self.tlsrpt.to_dict(),
            "mx": [m.to_dict() for m in self.mx],
            "mx_error": None if self.mx_error is None else self.mx_error.to_dict(),
            "null_mx": self.null_mx,
            "dane_checked": self.dane_checked,
            "findings": [f.to_dict() for f in self.findings],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "advice": list(self.advice),
            "timed_out": self.timed_out,
            "elapsed": round(self.elapsed, 3),
            "applied": None if self.applied is None else _applied_dict(self.applied),
            "local_fault": self.local_fault,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """
        The report as JSON (the ``smtpsts check --json`` output).

        Args:
            indent: Indentation; ``None`` for one line.

        Returns:
            ``{"domain", "status" ("ok" | "problems" | "could-not-check"),
            "ok", "unchecked", "nxdomain", "sts": {"record", "policy",
            "error", ...}, "tlsrpt": {"record", "error"}, "mx": [{"host",
            "preference", "matches_policy", "tls", "dane", "verdict", ...}],
            "mx_error", "null_mx", "dane_checked", "findings": [{"severity",
            "code", "message"}], "problems", "warnings", "advice" (the
            messages of each severity), "timed_out",
            "elapsed", "applied": null | {"mode", "source", "record_id",
            "expires_at", "failure"}, "local_fault": null | str}``.
        """
        return json.dumps(self.to_dict(), indent=indent)


def _applied_dict(outcome: PolicyOutcome) -> dict[str, Any]:
    return {
        "mode": None if outcome.mode is None else outcome.mode.value,
        "source": outcome.source.value,
        "record_id": outcome.record_id,
        "expires_at": None if outcome.expires_at is None else outcome.expires_at.isoformat(),
        "failure": None if outcome.failure is None else outcome.failure.reason,
    }


# --------------------------------------------------------------------------- the steps


@attrs.define
class _State:
    """What the concurrent steps found so far (kept when the deadline cuts them off)."""

    sts: STSCheck | None = None
    tlsrpt: TLSRPTCheck | None = None
    mx: list[MXCheck] | None = None
    mx_error: CheckError | None = None
    null_mx: bool = False
    # The raw discovery results, replayed into the policy machine for a cached entry.
    txt_result: TXTAnswer | TXTNotFound | TXTFailure | None = None
    fetch_result: HTTPResponse | FetchFailed | None = None
    local_fault: str | None = None
    nxdomain: bool = False
    # The raw texts of the records found, for the lint rules.
    sts_text: str | None = None
    tlsrpt_text: str | None = None
    # The policy host's certificate (DER), seen during the fetch.
    policy_cert: bytes | None = None


def _raw(records: Sequence[bytes | str], found: STSRecord | TLSRPTRecord) -> str | None:
    # The TXT text the selected record was parsed from.
    prefix = "v=STSv1" if isinstance(found, STSRecord) else "v=TLSRPTv1"
    for record in records:
        text = record.decode("utf-8", "replace") if isinstance(record, bytes) else record
        if text.startswith(prefix):
            return text
    return None  # pragma: no cover -- the selection found one with that prefix


def _txt_error(result: TXTFailure, qname: str) -> CheckError:
    return CheckError(
        ResultType.STS_POLICY_FETCH_ERROR,
        "txt-lookup-failed",
        f"the TXT lookup of {qname} failed: {result.reason}",
    )


async def _check_sts(
    domain: str,
    resolver: AsyncDNSResolver,
    fetcher: AsyncHTTPSFetcher,
    state: _State,
    deadline: float,
) -> None:
    request = policy_request(domain, timeout=max(deadline - time.monotonic(), 0.001))
    qname = f"_mta-sts.{domain}."
    state.sts = STSCheck(policy_url=request.url, error=CheckError(None, "timeout", _TIMED_OUT))
    answer = await resolver.lookup_txt(qname)
    state.txt_result = answer
    if isinstance(answer, TXTNotFound):
        state.sts = STSCheck(policy_url=request.url)
        return
    if isinstance(answer, TXTFailure):
        state.sts = STSCheck(policy_url=request.url, error=_txt_error(answer, qname))
        return
    selection = select_sts_record(answer.records)
    record = selection.record
    if record is None:
        if selection.status is SelectionStatus.NO_RECORD:
            state.sts = STSCheck(policy_url=request.url)
            return
        # RFC 8461 §3.1 (STS-REC-13, STS-REC-14): several records or a bad one
        # means no policy at all.
        detail = (
            f"{selection.candidates} records start with v=STSv1; exactly one is allowed"
            if selection.status is SelectionStatus.MULTIPLE_RECORDS
            else f"the record does not parse: {selection.error}"
        )
        state.sts = STSCheck(
            policy_url=request.url,
            error=CheckError(
                ResultType.STS_POLICY_FETCH_ERROR, _TXT_REASONS[selection.status], detail
            ),
        )
        return
    state.sts_text = _raw(answer.records, record)
    state.sts = STSCheck(
        record, policy_url=request.url, error=CheckError(None, "timeout", _TIMED_OUT)
    )
    response = await fetcher.fetch(request)
    state.fetch_result = response
    body = request.validate(response) if isinstance(response, HTTPResponse) else response
    if isinstance(body, FetchFailed):
        error = CheckError(body.result_type, body.reason, body.detail)
        state.sts = STSCheck(record, policy_url=request.url, error=error)
        return
    try:
        policy = Policy.from_text(body)
    except ParseError as exc:
        # RFC 8460 §4.3.2.2: a policy that does not parse is sts-policy-invalid.
        error = CheckError(ResultType.STS_POLICY_INVALID, exc.reason, str(exc))
        state.sts = STSCheck(record, policy_url=request.url, error=error)
        return
    state.sts = STSCheck(record, policy, request.url)


async def _check_tlsrpt(domain: str, resolver: AsyncDNSResolver, state: _State) -> None:
    qname = f"_smtp._tls.{domain}."
    state.tlsrpt = TLSRPTCheck(error=CheckError(None, "timeout", _TIMED_OUT))
    answer = await resolver.lookup_txt(qname)
    if isinstance(answer, TXTNotFound):
        state.tlsrpt = TLSRPTCheck()
        return
    if isinstance(answer, TXTFailure):
        error = CheckError(
            None, "txt-lookup-failed", f"the TXT lookup of {qname} failed: {answer.reason}"
        )
        state.tlsrpt = TLSRPTCheck(error=error)
        return
    selection = select_tlsrpt_record(answer.records)
    if selection.status is SelectionStatus.FOUND or selection.status is SelectionStatus.NO_RECORD:
        if selection.record is not None:
            state.tlsrpt_text = _raw(answer.records, selection.record)
        state.tlsrpt = TLSRPTCheck(selection.record)
        return
    detail = (
        f"{selection.candidates} records start with v=TLSRPTv1; exactly one is allowed"
        if selection.status is SelectionStatus.MULTIPLE_RECORDS
        else f"the record does not parse: {selection.error}"
    )
    state.tlsrpt = TLSRPTCheck(error=CheckError(None, _TXT_REASONS[selection.status], detail))


@attrs.frozen
class _Settings:
    resolver: WatchedResolver
    dnssec: AsyncDNSSECResolver
    trust: TrustStore
    connect_to: Mapping[tuple[str, int], tuple[str, int]]
    probe: bool
    helo_name: str | None
    now: datetime
    deadline: float
    timeout: float = DEFAULT_TIMEOUT
    expiry_days: float = DEFAULT_EXPIRY_WARNING_DAYS


async def _check_mxs(domain: str, settings: _Settings, state: _State) -> None:
    answer = await settings.resolver.lookup_mx(domain)
    if isinstance(answer, DNSFailure):
        state.mx_error = CheckError(
            None, "mx-lookup-failed", f"the MX lookup failed: {answer.reason}"
        )
        return
    if isinstance(answer, DNSNotFound) and answer.nxdomain:
        # The domain does not exist: nothing to probe (there is no implicit MX).
        state.nxdomain = True
        state.mx = []
        return
    if isinstance(answer, DNSNotFound):
        # RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
        hosts = [MXCheck(domain, 0, implicit=True)]
    else:
        real = [r for r in answer.records if r.exchange]
        if not real:
            # RFC 7505: a null MX: the domain accepts no mail.
            state.null_mx = True
            state.mx = []
            return
        hosts = [MXCheck(to_alabel(r.exchange), r.preference) for r in real]
    state.mx = [
        attrs.evolve(m, error=_TIMED_OUT, could_not_check=True) if settings.probe else m
        for m in hosts
    ]
    if not settings.probe:
        return

    async def one(index: int) -> None:
        state.mx[index] = await _check_mx(hosts[index], settings)  # type: ignore[index]

    await asyncio.gather(*(one(i) for i in range(len(hosts))))


async def _check_mx(mx: MXCheck, settings: _Settings) -> MXCheck:
    override = settings.connect_to.get((mx.host, SMTP_PORT))
    if override is not None:
        endpoints = [override]
    else:
        found = await settings.resolver.lookup_addresses(mx.host)
        if isinstance(found, DNSNotFound | DNSFailure):
            what = (
                "has no address records"
                if isinstance(found, DNSNotFound)
                else (f"address lookup failed: {found.reason}")
            )
            return attrs.evolve(
                mx, error=f"{mx.host} {what}", could_not_check=isinstance(found, DNSFailure)
            )
        endpoints = [(address, SMTP_PORT) for address in found.addresses]
    tlsa_task = asyncio.ensure_future(_tlsa(mx.host, settings))
    try:
        for address, port in endpoints:
            # RFC 5321 §5.1: try the MX's addresses in turn until one answers.
            probe = await aprobe_starttls(
                mx.host,
                port,
                connect_to=address,
                deadline=settings.deadline,
                helo_name=settings.helo_name,
            )
            if probe.connected:
                break
        tlsa = await tlsa_task
    finally:
        tlsa_task.cancel()
    certificate = None
    if probe.handshake_ok:
        # RFC 8461 §4.2: the MX certificate must be valid for the MX name.
        certificate = check_certificate(
            probe.chain, mx.host, trust=settings.trust, now=settings.now
        )
    dane = _dane(tlsa, probe, settings.now)
    return attrs.evolve(
        mx, address=address, probe=probe, certificate=certificate, dane=dane, error=None
    )


async def _tlsa(host: str, settings: _Settings) -> TLSALookup | None:
    if not settings.dnssec.trusted:
        return None
    return await settings.dnssec.lookup_tlsa(host, port=SMTP_PORT)


def _dane(tlsa: TLSALookup | None, probe: STARTTLSProbe, now: datetime) -> DANEStatus:
    if tlsa is None:
        return DANEStatus("not-checked", detail="the resolver is not trusted to validate DNSSEC")
    records = tuple(r.to_text() for r in tlsa.records)
    check = None
    if tlsa.status is DNSStatus.SECURE and probe.chain:
        # RFC 7672 §3: authenticate the chain the server sent with the TLSA RRset.
        check = match_tlsa(tlsa.records, probe.chain, names=tlsa.names, now=now)
    return DANEStatus(tlsa.status.value, records, tlsa.base_domain, check, tlsa.detail)


# --------------------------------------------------------------------------- assessment


def _outcome(domain: str, policy: Policy | None) -> PolicyOutcome:
    mode = None if policy is None else policy.mode
    applied = policy if mode in (Mode.ENFORCE, Mode.TESTING) else None
    return PolicyOutcome(
        domain=domain,
        policy=applied,
        mode=mode,
        source=PolicySource.FRESH if policy is not None else PolicySource.NONE,
        policy_info=PolicyInfo.for_sts(domain, policy)
        if policy is not None
        else PolicyInfo.no_policy_found(domain),
    )


def _judge_mx(mx: MXCheck, policy: Policy | None, outcome: PolicyOutcome) -> MXCheck:
    matches = None if policy is None or policy.mode is Mode.NONE else policy.matches(mx.host)
    probe = mx.probe
    verdict = None
    if probe is not None and probe.connected:
        status = mx.dane
        dane = status.check if status is not None else None
        tlsa = None
        if status is not None and status.base_domain and status.records:
            # RFC 8460 §4.4: the DANE part is reported under the TLSA RRset.
            tlsa = PolicyInfo.for_tlsa(status.base_domain, status.records)
        observation = TLSObservation(
            starttls_offered=probe.starttls_offered,
            handshake_ok=probe.handshake_ok,
            handshake_error=probe.reason if probe.step == "handshake" else None,
            pkix=mx.certificate,
            dane=dane,
            receiving_ip=probe.address,
            receiving_mx_helo=probe.ehlo_name or None,
            tlsa=tlsa,
        )
        verdict = decide(outcome, MXHost(mx.host, mx.preference, mx.implicit), observation)
    return attrs.evolve(mx, matches_policy=matches, verdict=verdict)


_P = FindingSeverity.PROBLEM
_W = FindingSeverity.WARNING
_A = FindingSeverity.ADVICE


def _lint_findings(what: str, problems: Sequence[Problem]) -> list[Finding]:
    # The lint rules, so that lint and check say the same (issue 12 item 4).
    out = []
    for p in problems:
        where = f"line {p.line}: " if what.endswith("policy") and p.line is not None else ""
        severity = _P if p.severity is Severity.ERROR else _W
        out.append(Finding(severity, p.code, f"{what}: {where}{p.message}."))
    return out


def _assess(domain: str, state: _State, settings: _Settings) -> list[Finding]:
    if state.nxdomain:
        # Nothing else matters: there is no domain to publish records for.
        return [
            Finding(
                _P,
                "nxdomain",
                f"{domain} does not exist (NXDOMAIN): no sender can deliver mail to it.",
            )
        ]
    probed = settings.probe
    out: list[Finding] = []
    sts = state.sts
    assert sts is not None  # filled in before the report is built
    policy = sts.policy
    if sts.error is not None and not sts.error.not_checked:
        line = f"MTA-STS: {sts.error.detail} ({sts.error.reason})"
        out.append(Finding(_P, sts.error.reason, line))
        if sts.error.result_type is ResultType.STS_WEBPKI_INVALID:
            out.append(
                Finding(
                    _A,
                    "serve-policy-certificate",
                    f"Serve the policy host mta-sts.{domain} with a certificate that is valid "
                    "for that name and chains to a public CA (RFC 8461 §3.3).",
                )
            )
        elif sts.record is not None:
            out.append(
                Finding(
                    _A,
                    "serve-policy",
                    f"Serve the policy as text/plain with status 200 at {sts.policy_url}, "
                    "without redirects (RFC 8461 §3.3).",
                )
            )
    elif sts.record is None and sts.error is None:
        publish = (
            f'Publish a TXT record "v=STSv1; id=<date>;" at _mta-sts.{domain} and a policy '
            f"at {sts.policy_url} (RFC 8461 §3)."
        )
        if probed and state.mx and all(_dane_authenticated(mx) for mx in state.mx):
            # DANE protects this domain from senders that validate DNSSEC
            # (RFC 7672); MTA-STS would add the senders that do not.
            out.append(
                Finding(
                    _A,
                    "no-sts-record",
                    f"No MTA-STS record at _mta-sts.{domain}: every MX is authenticated by "
                    "DANE, which protects mail from senders that validate DNSSEC; MTA-STS "
                    f"would also protect it from those that do not. {publish}",
                )
            )
        elif not state.null_mx:
            out.append(
                Finding(
                    _P,
                    "no-sts-record",
                    f"MTA-STS: no record at _mta-sts.{domain}; the domain has no policy.",
                )
            )
            out.append(Finding(_A, "publish-sts", publish))
    if state.sts_text is not None:
        out += _lint_findings("MTA-STS record", lint_record(state.sts_text))
    if policy is not None:
        out += _lint_findings("MTA-STS policy", lint_policy(policy.text))
    out += _expiry(f"the policy host mta-sts.{domain}", state.policy_cert, settings)
    tlsrpt = state.tlsrpt
    assert tlsrpt is not None
    if tlsrpt.error is not None and not tlsrpt.error.not_checked:
        line = f"TLS-RPT: {tlsrpt.error.detail} ({tlsrpt.error.reason})"
        out.append(Finding(_P, tlsrpt.error.reason, line))
    elif tlsrpt.record is None and tlsrpt.error is None:
        out.append(
            Finding(
                _A,
                "publish-tlsrpt",
                f'Publish a TXT record "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}" at '
                f"_smtp._tls.{domain} to receive TLS failure reports (RFC 8460 §3).",
            )
        )
    if state.tlsrpt_text is not None:
        out += _lint_findings("TLS-RPT record", lint_record(state.tlsrpt_text))
    if state.null_mx:
        out.append(
            Finding(_A, "null-mx", f"{domain} publishes a null MX (RFC 7505): it accepts no mail.")
        )
    sts_applies = policy is not None and policy.mode is not Mode.NONE
    enforce = policy is not None and policy.mode is Mode.ENFORCE
    for mx in state.mx or ():
        out += _mx_problems(mx, probed=probed, sts_applies=sts_applies, enforce=enforce)
        if mx.probe is not None and mx.probe.handshake_ok and mx.probe.chain:
            out += _expiry(f"MX {mx.host}", mx.probe.chain[0], settings)
    if sts_applies and policy is not None and state.mx:
        hosts = [mx.host for mx in state.mx]
        for pattern in policy.mx:
            if not any(MXPatternSet((pattern,)).matches(h) for h in hosts):
                out.append(
                    Finding(
                        _W,
                        "mx-pattern-unused",
                        f"The policy's mx pattern '{pattern.text}' matches no MX record of "
                        f"{domain} ({', '.join(hosts)}); remove it, or publish the MX it was "
                        "meant for (RFC 8461 §4.1).",
                    )
                )
    out.sort(key=lambda f: _ORDER[f.severity])
    return out


def _expiry(what: str, cert: x509.Certificate | bytes | None, settings: _Settings) -> list[Finding]:
    # A certificate that is valid now but expires within the warning window.
    if cert is None or not settings.expiry_days > 0:
        return []
    if isinstance(cert, bytes):
        try:
            cert = x509.load_der_x509_certificate(cert)
        except ValueError:
            return []
    end = cert.not_valid_after_utc
    left = end - settings.now
    if not timedelta(0) <= left < timedelta(days=settings.expiry_days):
        return []
    days = left.days
    when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
    return [
        Finding(
            _W,
            "cert-expires-soon",
            f"The certificate of {what} expires {when}, on {end:%Y-%m-%d %H:%M} UTC; renew "
            f"it ({describe_certificate(cert)}).",
        )
    ]


def _dane_authenticated(mx: MXCheck) -> bool:
    # A secure TLSA RRset that matched the MX's chain (RFC 7672 §2.2, §3).
    dane = mx.dane
    return (
        dane is not None
        and dane.status == DNSStatus.SECURE
        and dane.check is not None
        and dane.check.ok
        and dane.check.authenticated
    )


def _mx_problems(mx: MXCheck, *, probed: bool, sts_applies: bool, enforce: bool) -> list[Finding]:
    out: list[Finding] = []
    if mx.matches_policy is False:
        # Under enforce the MX is skipped (STS-MX-11); under testing it is
        # still used and only reported.
        out.append(
            Finding(
                _P if enforce else _W,
                "mx-not-in-policy",
                f"MX {mx.host}: matches no mx pattern of the policy (RFC 8461 §4.1).",
            )
        )
        out.append(
            Finding(
                _A,
                "add-mx-pattern",
                f"Add 'mx: {mx.host}' (or a wildcard covering it) to the policy.",
            )
        )
    probe = mx.probe
    if not probed or mx.could_not_check:
        return out
    if probe is None:
        out.append(Finding(_P, "mx-not-probed", f"MX {mx.host}: not probed: {mx.error}."))
        return out
    if not probe.handshake_ok:
        out.append(Finding(_P, "mx-starttls", f"MX {mx.host}: {_probe_failure(probe)}."))
    cert = mx.certificate
    if cert is not None and not cert.ok:
        result_type = cert.result_type.value if cert.result_type is not None else "failure"
        line = f"MX {mx.host}: certificate {result_type}: {cert.detail}."
        if sts_applies or not _dane_authenticated(mx):
            out.append(Finding(_P, "mx-certificate", line))
        else:
            # No MTA-STS policy asks for WebPKI here and DANE authenticates
            # the MX (RFC 7672 §3.1: DANE-EE ignores the chain and names).
            out.append(
                Finding(
                    _A,
                    "mx-certificate-dane",
                    f"{line} Senders authenticate this MX by DANE; an MTA-STS policy would "
                    "need a certificate from a public CA for its name (RFC 8461 §4.2).",
                )
            )
    dane = mx.dane
    if dane is not None and dane.failed:
        check = dane.check
        detail = dane.detail if check is None else f"{check.reason}: {check.detail}"
        out.append(Finding(_P, "dane-failure", f"MX {mx.host}: DANE {dane.status}: {detail}."))
    return out


def _probe_failure(probe: STARTTLSProbe) -> str:
    if not probe.connected:
        return f"could not connect to {probe.address or probe.host}: {probe.error}"
    if not probe.starttls_offered:
        return f"STARTTLS not offered ({probe.reason})"
    return f"STARTTLS failed at the {probe.step} step: {probe.error} ({probe.reason})"


# --------------------------------------------------------------------------- entry points


async def acheck_domain(
    domain: str,
    *,
    nameservers: Sequence[str] = (),
    trust: TrustStore | None = None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 -- one deadline for many steps
    probe_mx: bool = True,
    helo_name: str | None = None,
    now: datetime | None = None,
    trust_ad: bool | None = None,
    cached: CacheEntry | None = None,
    as_sender: bool = False,
    expiry_warning_days: float = DEFAULT_EXPIRY_WARNING_DAYS,
) -> CheckReport:
    """
    Check a domain's MTA-STS, TLS-RPT and DANE setup (asyncio).

    Args:
        domain: The domain, any form :func:`smtpsts.to_alabel` accepts.
        nameservers: ``IP[:PORT]`` DNS servers (default: the system's). A
            resolver on loopback is trusted to validate DNSSEC, so DANE is
            checked only then (DANE-02).
        trust: Trust anchors for the policy host and MX certificates
            (default: the system's).
        connect_to: ``{(host, port): (address, port)}``: connect there
            instead (curl's ``--connect-to``); TLS and SNI still use the
            host. MX hosts are looked up as ``(mx, 25)``.
        timeout: Seconds for the whole check; it returns by then.
        probe_mx: Probe each MX with STARTTLS (port 25).
        helo_name: The EHLO name of the probes (default: this host's name).
        now: The time certificates are checked at (default: now).
        trust_ad: Whether to trust the resolver's DNSSEC validation (the
            AD bit) and so check DANE; ``None``: exactly when every
            nameserver is on loopback (DANE-02).
        cached: A policy store entry for the domain (``smtpsts check
            --cache``): the MX verdicts are then those of a sender holding
            it, which keeps a live cached policy whatever discovery saw
            (:attr:`CheckReport.applied`). Implies ``as_sender``.
        as_sender: Judge the MX hosts as a sender would that holds
            ``cached`` (``None``: a sender with nothing cached for the
            domain), and report what it applies in
            :attr:`CheckReport.applied`.
        expiry_warning_days: Warn when an MX certificate or the policy
            host's certificate expires within this many days (``0``: never).

    Returns:
        The report; network failures are part of it, never raised, and so
        are local faults (:attr:`CheckReport.local_fault`).

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: A nameserver setting is malformed.
        dns.resolver.NoResolverConfiguration: No nameservers were given and
            the system has none.
    """
    name = to_alabel(domain)
    started = time.monotonic()
    # The steps end a little before the overall deadline, so that a slow
    # server is reported with its own failure; the overall timeout is the
    # safety net that makes the check return on time whatever happens.
    step_time = timeout - min(0.25, timeout / 10)
    deadline = started + step_time
    if trust is None:
        from smtpsts.io.truststore import load_system_trust_store  # noqa: PLC0415

        trust = load_system_trust_store()
    resolver = WatchedResolver(nameservers, timeout=min(2.0, step_time), lifetime=step_time)
    dnssec = AsyncDNSSECResolver(
        nameservers, timeout=min(2.0, step_time), lifetime=step_time, trust_ad=trust_ad
    )
    state = _State()

    def keep_policy_cert(_host: str, der: bytes) -> None:
        # Not a revocation check: the hook is where the fetch shows the
        # policy host's certificate, for the expiry warning.
        state.policy_cert = der

    fetcher = AsyncHTTPSFetcher(
        trust=trust if len(trust) else None,
        resolver=resolver,
        connect_to=connect_to,
        revocation_check=keep_policy_cert,
    )
    settings = _Settings(
        resolver,
        dnssec,
        trust,
        dict(connect_to or {}),
        probe_mx,
        helo_name,
        now or datetime.now(UTC),
        deadline,
        timeout,
        expiry_warning_days,
    )
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                _check_sts(name, resolver, fetcher, state, deadline),
                _check_tlsrpt(name, resolver, state),
                _check_mxs(name, settings, state),
            )
    except TimeoutError:
        timed_out = True
    except LocalFaultError as exc:
        # This host ran out of descriptors or memory: the check is partial,
        # and nothing it missed is blamed on the domain (issue 10).
        state.local_fault = str(exc)
    if cached is not None and cached.domain != name:
        cached = None
    sender = _Sender(cached) if as_sender or cached is not None else None
    return _report(name, state, settings, timed_out, time.monotonic() - started, sender)


def _unfinished(state: _State) -> list[str]:
    # A lookup failure the watch did not see (it always does; a safety net).
    errors = (
        None if state.sts is None else state.sts.error,
        None if state.tlsrpt is None else state.tlsrpt.error,
        state.mx_error,
    )
    return [e.detail for e in errors if e is not None and e.not_checked][:1]


def _plain_dns_errors(name: str, state: _State, resolver: WatchedResolver) -> None:
    # The JSON details of DNS failures: what the server did, in words, not the
    # resolver library's text.
    def plain(query: str, error: CheckError | None, what: str) -> CheckError | None:
        trouble = resolver.trouble_for(query)
        if error is None or trouble is None or error.reason == "timeout":
            return error
        return attrs.evolve(error, detail=f"the {what} lookup of {query} failed: {trouble.words()}")

    if state.sts is not None:
        error = plain(f"_mta-sts.{name} TXT", state.sts.error, "TXT")
        state.sts = attrs.evolve(state.sts, error=error)
    if state.tlsrpt is not None:
        error = plain(f"_smtp._tls.{name} TXT", state.tlsrpt.error, "TXT")
        state.tlsrpt = attrs.evolve(state.tlsrpt, error=error)
    state.mx_error = plain(f"{name} MX", state.mx_error, "MX")
    for index, mx in enumerate(state.mx or ()):
        trouble = resolver.trouble_for(f"{mx.host} AAAA") or resolver.trouble_for(f"{mx.host} A")
        if mx.could_not_check and mx.probe is None and trouble is not None:
            words = f"the address lookup of {mx.host} failed: {trouble.words()}"
            state.mx[index] = attrs.evolve(mx, error=words)  # type: ignore[index]


@attrs.frozen
class _Sender:
    cached: CacheEntry | None


def _replay(name: str, cached: CacheEntry | None, state: _State, now: datetime) -> PolicyOutcome:
    # What the policy machine makes of the cached entry and what discovery saw;
    # a step discovery did not finish counts as failed (never as "no policy").
    machine = PolicyResolution(name, cached=cached, now=now)
    unfinished = state.local_fault or "the check did not finish"
    while True:
        action = machine.next_action()
        if isinstance(action, LookupTXT):
            machine.receive(state.txt_result or TXTFailure(unfinished))
        elif isinstance(action, FetchPolicy):
            machine.receive(state.fetch_result or FetchFailed(FetchFailure.TIMEOUT, unfinished))
        else:
            return action.outcome


def _report(  # noqa: PLR0917 -- internal
    name: str,
    state: _State,
    settings: _Settings,
    timed_out: bool,
    elapsed: float,
    sender: _Sender | None = None,
) -> CheckReport:
    timeout_error = CheckError(None, "timeout", _TIMED_OUT)
    if state.sts is None:
        state.sts = STSCheck(error=timeout_error)
    if state.tlsrpt is None:
        state.tlsrpt = TLSRPTCheck(error=timeout_error)
    if state.mx is None and state.mx_error is None:
        state.mx_error = timeout_error
    policy = state.sts.policy
    outcome = _outcome(name, policy)
    applied = None
    if sender is not None:
        # SEC-50: a sender holding this cache applies what the machine makes of
        # the cached entry and what discovery just saw, never less.
        applied = outcome = _replay(name, sender.cached, state, settings.now)
        policy = outcome.policy
    state.mx = [_judge_mx(mx, policy, outcome) for mx in state.mx or ()]
    _plain_dns_errors(name, state, settings.resolver)
    findings = _assess(name, state, settings)
    reasons = []
    if state.local_fault is not None:
        reasons.append(
            f"this host could not finish the check ({state.local_fault}); what is missing "
            "says nothing about the domain"
        )
    dns_trouble = settings.resolver.trouble()
    if dns_trouble is not None:
        reasons.append(dns_trouble)
    elif timed_out or any(m.could_not_check for m in state.mx):
        # Said once here; the sections only say "not checked".
        reasons.append(f"the check ran out of time ({settings.timeout:g} s)")
    else:
        reasons += _unfinished(state)
    return CheckReport(
        domain=name,
        sts=state.sts,
        tlsrpt=state.tlsrpt,
        mx=tuple(state.mx),
        mx_error=state.mx_error,
        null_mx=state.null_mx,
        dane_checked=settings.probe and settings.dnssec.trusted,
        findings=tuple(findings),
        unchecked="; ".join(reasons) or None,
        nxdomain=state.nxdomain,
        timed_out=timed_out,
        elapsed=elapsed,
        applied=applied,
        local_fault=state.local_fault,
    )


def check_domain(
    domain: str,
    *,
    nameservers: Sequence[str] = (),
    trust: TrustStore | None = None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    probe_mx: bool = True,
    helo_name: str | None = None,
    now: datetime | None = None,
    trust_ad: bool | None = None,
    cached: CacheEntry | None = None,
    as_sender: bool = False,
    expiry_warning_days: float = DEFAULT_EXPIRY_WARNING_DAYS,
) -> CheckReport:
    """
    Check a domain (blocking); see :func:`acheck_domain`.

    Runs its own event loop, and does not wait for stray worker threads when
    it ends, so the deadline holds.

    Args:
        domain: The domain.
        nameservers: ``IP[:PORT]`` DNS servers (default: the system's).
        trust: Trust anchors (default: the system's).
        connect_to: ``{(host, port): (address, port)}`` overrides.
        timeout: Seconds for the whole check.
        probe_mx: Probe each MX with STARTTLS.
        helo_name: The EHLO name of the probes.
        now: The time certificates are checked at.
        trust_ad: Whether to trust the resolver's DNSSEC validation.
        cached: A policy store entry for the domain (see :func:`acheck_domain`).
        as_sender: Report what a sender holding ``cached`` applies.
        expiry_warning_days: Warn about certificates expiring within this
            many days.

    Returns:
        The report.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: A nameserver setting is malformed.
        dns.resolver.NoResolverConfiguration: No nameservers were given and
            the system has none.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            acheck_domain(
                domain,
                nameservers=nameservers,
                trust=trust,
                connect_to=connect_to,
                timeout=timeout,
                probe_mx=probe_mx,
                helo_name=helo_name,
                now=now,
                trust_ad=trust_ad,
                cached=cached,
                as_sender=as_sender,
                expiry_warning_days=expiry_warning_days,
            )
        )
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
