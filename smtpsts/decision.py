"""
The delivery decision: may this message go to this MX over this TLS session?

RFC 8461 §4 and §5, RFC 7672 §2.2, RFC 8460 §4.

Pure: the inputs are the :class:`~smtpsts.cache.PolicyOutcome` of the policy
lookup, the MX hosts, and what each TLS session showed; the outputs are
verdicts that each carry the TLS-RPT :class:`~smtpsts.tlsrpt.session.SessionResult`
for the MTA to hand to the aggregator.

Two steps:

1. :func:`plan` before connecting: order the MX hosts by preference
   (RFC 5321 §5.1), add the implicit MX (STS-MX-08), and under ``enforce``
   drop every MX the policy does not name, so that it is never contacted
   (STS-MX-11). With no candidate left under ``enforce`` the plan says
   :class:`Defer`: a temporary failure, never a bounce (STS-APPLY-09).
2. :func:`decide` after the STARTTLS attempt with one MX:
   :class:`Deliver`, :class:`DeliverAndReport` (``testing``: delivery goes on,
   the failure is reported) or :class:`SkipMX` (``enforce``, or DANE: try the
   next MX). When every attempted MX was skipped, :func:`defer_if_exhausted`
   gives the :class:`Defer`.

A TCP connect failure is not an MTA-STS matter (STS-APPLY-11): do not call
:func:`decide` for it, and record nothing.

DANE and MTA-STS combine by :class:`Precedence` (AMB-11): with
:attr:`Precedence.BOTH` (the default) a DANE failure always makes the MX
unusable and MTA-STS never rescues it, and under ``enforce`` the PKIX check
must pass as well; with :attr:`Precedence.DANE_OVERRIDES_PKIX` a successful
DANE authentication stands in for the PKIX check (the MX-pattern check is
kept).

The module is over 600 lines because the verdict types, :func:`plan` and
:func:`decide` are one decision table: each private helper maps one kind of
failure (TLS, PKIX, DANE, a missing policy) to its TLS-RPT result, and is
read next to the branch of :func:`decide` that uses it.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ._names import to_alabel
from ._vocab import ResultType
from .cache import PolicyOutcome
from .certs import CertificateCheck
from .dane import DANECheck
from .exceptions import DomainNameError
from .policy import Mode, Policy
from .reasons import Failure, Reason
from .tlsrpt.session import PolicyInfo, SessionFailure, SessionResult

__all__ = [
    "MX_MISMATCH",
    "Candidate",
    "Defer",
    "Deliver",
    "DeliverAndReport",
    "MXHost",
    "MXVerdict",
    "Plan",
    "Precedence",
    "SkipMX",
    "TLSFailure",
    "TLSObservation",
    "Verdict",
    "decide",
    "defer_if_exhausted",
    "next_hop_domain",
    "plan",
]

MX_MISMATCH = Reason.MX_MISMATCH
"""The reason code of an MX that matches no policy pattern (AMB-18)."""


class Precedence(enum.StrEnum):
    """
    How DANE and MTA-STS combine for one MX (AMB-11).
    """

    BOTH = "both"
    """Each mechanism that applies must pass; MTA-STS never rescues DANE (RFC 8461 §2)."""

    DANE_OVERRIDES_PKIX = "dane-overrides-pkix"
    """A successful DANE authentication replaces the PKIX check of MTA-STS."""


class MXVerdict(enum.StrEnum):
    """
    What an MX candidate requires before delivery (STS-APPLY-14).
    """

    REQUIRE_VERIFIED_TLS = "require-verified-tls"
    """``enforce``: STARTTLS with a valid certificate, or skip the MX."""

    OPPORTUNISTIC_REPORT = "opportunistic-report"
    """``testing``: deliver as without MTA-STS, report what failed."""

    OPPORTUNISTIC = "opportunistic"
    """``none`` or no policy: opportunistic TLS."""

    SKIP = "skip"
    """``enforce`` and the MX matches no pattern: never contacted."""


@attrs.frozen
class MXHost:
    """
    One MX host of the recipient domain.

    Attributes:
        host: The MX target name as the MX RRset gives it, not a CNAME
            target (STS-MX-06); for an implicit MX, the domain itself.
        preference: The MX preference; lower is tried first (RFC 5321 §5.1).
        implicit: ``True`` when the domain has no MX RRset and mail goes to
            the domain's own address records (STS-MX-08).
    """

    host: str
    preference: int = 0
    implicit: bool = False


@attrs.frozen
class TLSObservation:
    """
    What one SMTP session with an MX showed.

    Attributes:
        starttls_offered: The server advertised STARTTLS and accepted the
            command (STS-APPLY-16: an error reply counts as not offered).
        handshake_ok: The TLS handshake completed.
        handshake_error: A short reason code when it did not, for example
            ``tls-remote-alert-70`` (docs/tlsrpt-results.md).
        pkix: The PKIX check of the MX certificate against the MX name
            (STS-APPLY-13), if made.
        dane: The DANE check against the MX's DNSSEC-validated TLSA RRset,
            if the MX has one.
        sending_mta_ip: The local address of the session (RPT-AGG-14).
        receiving_ip: The server's address.
        receiving_mx_helo: The name in the server's greeting or EHLO reply.
        tlsa: The TLS-RPT ``tlsa`` policy of the MX's secure TLSA RRset
            (:meth:`PolicyInfo.for_tlsa` of the TLSA base domain and records),
            under which the DANE part of the session is reported. When
            :attr:`dane` is set without it, the MX host name is taken as the
            base domain, without policy strings (AMB-19).
    """

    starttls_offered: bool
    handshake_ok: bool = False
    handshake_error: str | None = None
    pkix: CertificateCheck | None = None
    dane: DANECheck | None = None
    sending_mta_ip: str | None = None
    receiving_ip: str | None = None
    receiving_mx_helo: str | None = None
    tlsa: PolicyInfo | None = None


TLSFailure = Failure
"""
One reason a session failed a check, ready for TLS-RPT.

The one failure value (:class:`smtpsts.reasons.Failure`): the RFC 8460 §4.3
``result_type``, the ``failure-reason-code`` if any (docs/reason-codes.md)
and a ``detail`` in words.
"""


@attrs.frozen
class Deliver:
    """
    Verdict: deliver through this MX.

    Attributes:
        mx: The MX.
        session: The TLS-RPT result of the session (it may still be a failure
            when no policy applies and TLS was not set up, AMB-21, or when
            policy discovery failed, RPT-AGG-18).
        dane_session: The TLS-RPT ``tlsa`` result of the session when DANE
            applied to the MX (:attr:`TLSObservation.dane`), else ``None``.
    """

    mx: MXHost
    session: SessionResult
    dane_session: SessionResult | None = None


@attrs.frozen
class DeliverAndReport:
    """
    Verdict (``testing``): deliver as without MTA-STS and report the failure.

    RFC 8461 §5, STS-APPLY-06.

    Attributes:
        mx: The MX.
        failure: The first policy failure of the session.
        session: The TLS-RPT result of the session.
        dane_session: The TLS-RPT ``tlsa`` result when DANE applied, else ``None``.
    """

    mx: MXHost
    failure: TLSFailure
    session: SessionResult
    dane_session: SessionResult | None = None


@attrs.frozen
class SkipMX:
    """
    Verdict: do not deliver through this MX; try the next one.

    RFC 8461 §5 (STS-APPLY-05, STS-APPLY-08), RFC 7672 §2.2.

    Attributes:
        mx: The MX.
        failure: Why.
        session: The TLS-RPT result of the session (or of the MX check made
            before connecting, STS-MX-11).
        dane_session: The TLS-RPT ``tlsa`` result when DANE applied, else ``None``.
    """

    mx: MXHost
    failure: TLSFailure
    session: SessionResult
    dane_session: SessionResult | None = None


Verdict = Deliver | DeliverAndReport | SkipMX
"""What :func:`decide` returns."""


@attrs.frozen
class Defer:
    """
    Whole-message verdict: no MX may be used now; requeue.

    A temporary failure, never a bounce (RFC 8461 §5, STS-APPLY-09).

    Attributes:
        reason: Why, in words.
        failures: The failures that led here, in MX order.
    """

    reason: str
    failures: tuple[TLSFailure, ...] = ()


@attrs.frozen
class Candidate:
    """
    An MX to try, in order.

    Attributes:
        mx: The MX.
        verdict: What it requires (STS-APPLY-14).
    """

    mx: MXHost
    verdict: MXVerdict


@attrs.frozen
class Plan:
    """
    The MX hosts to try for a message, before any connection.

    Attributes:
        candidates: The MX hosts to try, in preference order.
        skipped: The MX hosts left out under ``enforce`` (STS-MX-11), each
            with the TLS-RPT result to record.
        defer: Set when the message must wait: no candidate is left under
            ``enforce``, or the policy lookup asked to defer (AMB-16).
        null_mx: The domain publishes a null MX (RFC 7505): it accepts no
            mail, whatever its policy says.
    """

    candidates: tuple[Candidate, ...]
    skipped: tuple[SkipMX, ...] = ()
    defer: Defer | None = None
    null_mx: bool = False


def _mode(outcome: PolicyOutcome) -> Mode | None:
    # STS-APPLY-07: mode none (stored as policy=None) behaves as no policy.
    policy = outcome.policy
    return None if policy is None else policy.mode


def _session(
    info: PolicyInfo,
    mx: MXHost,
    obs: TLSObservation | None,
    failures: Sequence[TLSFailure],
    report_domain: str | None = None,
) -> SessionResult:
    if obs is None:
        return _session_result(info, mx.host, tuple(failures))
    return _session_result(
        info,
        mx.host,
        tuple(failures),
        obs.sending_mta_ip,
        obs.receiving_ip,
        obs.receiving_mx_helo,
        report_domain,
    )


@functools.lru_cache(maxsize=4096)
def _session_result(  # noqa: PLR0917 -- positional, for lru_cache keys
    info: PolicyInfo,
    host: str,
    failures: tuple[TLSFailure, ...],
    sending_mta_ip: str | None = None,
    receiving_ip: str | None = None,
    helo: str | None = None,
    report_domain: str | None = None,
) -> SessionResult:
    # Session results are immutable values and the same few recur for every
    # message to a domain, so they are built once (the hot path of an MTA).
    fields: dict[str, Any] = {
        "receiving_mx_hostname": _report_name(host),
        "sending_mta_ip": sending_mta_ip,
        "receiving_ip": receiving_ip,
        "receiving_mx_helo": helo,
        "report_domain": report_domain,
    }
    if not failures:
        return SessionResult.succeeded(info, **fields)
    first, *rest = failures
    # RPT-AGG-06: one session, several failure types; counted once.
    return SessionResult.failed(
        info,
        first.result_type,
        failure_reason_code=first.reason,
        extra_failures=tuple(SessionFailure(f.result_type, f.reason) for f in rest),
        **fields,
    )


def _report_name(host: str) -> str | None:
    # RPT-AGG-14: the MX name as an A-label; a name that is not a host name
    # is left out rather than failing the decision.
    try:
        return to_alabel(host)
    except DomainNameError:
        return None


def _mismatch(mx: MXHost) -> TLSFailure:
    # AMB-18: validation-failure / mtasts-policy-mx-mismatch, not a certificate error.
    return TLSFailure(
        ResultType.VALIDATION_FAILURE,
        MX_MISMATCH,
        f"MX {mx.host} matches no mx pattern of the policy",
    )


def _tls_failures(obs: TLSObservation) -> list[TLSFailure]:
    # RFC 8460 §4.3.1, STS-APPLY-16: no STARTTLS, or a failed handshake.
    if not obs.starttls_offered:
        return [TLSFailure(ResultType.STARTTLS_NOT_SUPPORTED, None, "STARTTLS not offered")]
    if not obs.handshake_ok:
        return [
            TLSFailure(
                ResultType.VALIDATION_FAILURE,
                obs.handshake_error or Reason.TLS_HANDSHAKE_FAILED,
                "TLS handshake failed",
            )
        ]
    return []


def _dane_failure(obs: TLSObservation) -> TLSFailure | None:
    dane = obs.dane
    if dane is None:
        return None
    # RFC 7672 §2.2: with usable TLSA records TLS is mandatory and no
    # connection goes on without it (SEC-13).
    tls = _tls_failures(obs)
    if tls:
        return tls[0]
    if not dane.ok:
        return TLSFailure(
            dane.result_type or ResultType.VALIDATION_FAILURE,
            dane.reason,
            dane.detail,
        )
    return None


def _dane_required_failure(obs: TLSObservation) -> TLSFailure | None:
    # RFC 7672 §2.2, §6 (DANE-16): mandatory DANE needs TLS authenticated by
    # secure TLSA records; anything less delays the message (dane-required).
    dane = obs.dane
    if dane is not None and dane.authenticated:
        return None
    return TLSFailure(
        ResultType.DANE_REQUIRED,
        None,
        "mandatory DANE: no secure TLSA record authenticated the server",
    )


def _dane_session(
    outcome: PolicyOutcome, mx: MXHost, obs: TLSObservation, dane_failure: TLSFailure | None
) -> SessionResult | None:
    # RFC 8460 §4.4: the DANE part of a session is reported under a "tlsa"
    # policy (the TLSA base domain and RRset), in the recipient domain's
    # report (AMB-19).
    dane = obs.dane
    if dane is None:
        return None
    failures: list[TLSFailure] = []
    if dane_failure is not None:
        failures.append(dane_failure)
    elif dane.result_type is not None:
        # RFC 7672 §2.2, RFC 8460 §4.3.2.1 (DANE-13, DANE-55): every record is
        # unusable. Delivery goes on over unauthenticated TLS (dane.ok), but
        # the publisher's broken RRset is reported as tlsa-invalid.
        failures.append(
            TLSFailure(dane.result_type, dane.reason or Reason.ALL_UNUSABLE_RECORDS, dane.detail)
        )
    info = obs.tlsa
    if info is None:
        # AMB-19: without a given TLSA policy, the base domain is the MX host.
        name = _report_name(mx.host)
        if name is None:
            return None  # no host name to report the TLSA policy under
        info = _tlsa_info(name)
    return _session(info, mx, obs, failures, outcome.domain)


@functools.lru_cache(maxsize=1024)
def _tlsa_info(base_domain: str) -> PolicyInfo:
    return PolicyInfo.for_tlsa(base_domain, ())


def _pkix_failure(obs: TLSObservation, *, dane_stands_in: bool) -> TLSFailure | None:
    if dane_stands_in:
        # AMB-11 dane-overrides-pkix: DANE authenticated the server instead.
        return None
    pkix = obs.pkix
    if pkix is None:
        return TLSFailure(
            ResultType.VALIDATION_FAILURE,
            Reason.CERTIFICATE_NOT_CHECKED,
            "no PKIX check of the MX certificate was made",
        )
    if pkix.ok:
        return None
    # RFC 8460 §4.3.1 (STS-CERT-16): the check names its own result type.
    return TLSFailure(
        pkix.result_type or ResultType.VALIDATION_FAILURE,
        pkix.reason,
        pkix.detail,
    )


def decide(
    outcome: PolicyOutcome,
    mx: MXHost,
    observation: TLSObservation,
    *,
    precedence: Precedence = Precedence.BOTH,
    dane_required: bool = False,
) -> Verdict:
    """
    Decide whether to deliver through one MX after the STARTTLS attempt.

    RFC 8461 §4 and §5.

    Args:
        outcome: The policy lookup's outcome for the recipient domain.
        mx: The MX that was contacted.
        observation: What the session showed.
        precedence: How DANE and MTA-STS combine (AMB-11).
        dane_required: DANE is mandatory for this destination (DANE-16):
            without TLS authenticated by a secure TLSA RRset the MX is
            skipped with ``dane-required``, so the message waits
            (:func:`defer_if_exhausted`).

    Returns:
        :class:`Deliver`, :class:`DeliverAndReport` (``testing``) or
        :class:`SkipMX` (``enforce`` failure, or a DANE failure). The
        verdict's session result is reported under ``outcome.policy_info``:
        ``sts`` with the policy, or ``no-policy-found``; when DANE applied,
        its ``dane_session`` is reported under the ``tlsa`` policy, and an
        RRset whose records are all unusable is recorded there as
        ``tlsa-invalid`` although delivery goes on (DANE-13, DANE-55).
    """
    mode = _mode(outcome)
    dane_failure = _dane_failure(observation)
    dane_session = _dane_session(outcome, mx, observation, dane_failure)
    discovery = _discovery_failure(outcome)
    if dane_required and dane_failure is None:
        dane_failure = _dane_required_failure(observation)
        if dane_failure is not None:
            discovery.insert(0, dane_failure)
    if mode is None:
        # STS-APPLY-07, AMB-21: no policy (or mode none): opportunistic. The
        # session fails only without TLS; certificates do not matter.
        failures = _tls_failures(observation) + discovery
        session = _session(outcome.policy_info, mx, observation, failures)
        if dane_failure is not None:
            # RFC 7672 §2.2: DANE alone still makes the MX unusable.
            return SkipMX(mx, dane_failure, session, dane_session)
        return Deliver(mx, session, dane_session)

    policy = outcome.policy
    assert policy is not None  # mode comes from the policy
    # RFC 8461 §4 (STS-APPLY-04): MX match, STARTTLS, valid certificate.
    checks: list[TLSFailure] = []
    if not policy.matches(mx.host):
        checks.append(_mismatch(mx))
    tls = _tls_failures(observation)
    checks += tls
    if not tls:
        dane = observation.dane
        stands_in = (
            precedence is Precedence.DANE_OVERRIDES_PKIX
            and dane is not None
            and dane.authenticated
            and dane_failure is None
        )
        pkix = _pkix_failure(observation, dane_stands_in=stands_in)
        if pkix is not None:
            checks.append(pkix)
    session = _session(outcome.policy_info, mx, observation, checks + discovery)
    if mode is Mode.ENFORCE:
        # RFC 8461 §5 (STS-APPLY-05): no delivery to an MX that fails; no fallback.
        if checks:
            return SkipMX(mx, checks[0], session, dane_session)
        if dane_failure is not None:
            # AMB-11: MTA-STS never rescues a DANE failure (DANE-49).
            return SkipMX(mx, dane_failure, session, dane_session)
        return Deliver(mx, session, dane_session)
    # RFC 8461 §5 (STS-APPLY-06, STS-APPLY-15): testing delivers and reports.
    if dane_failure is not None:
        return SkipMX(mx, dane_failure, session, dane_session)
    if checks:
        return DeliverAndReport(mx, checks[0], session, dane_session)
    return Deliver(mx, session, dane_session)


def _discovery_failure(outcome: PolicyOutcome) -> list[TLSFailure]:
    # RPT-AGG-18, STS-APPLY-12 (a, b): a retrieval failure is recorded for each
    # delivery attempt that needed the policy.
    failure = outcome.failure
    return [] if failure is None else [failure]


def _is_null_mx(host: str) -> bool:
    return host in ("", ".")


def plan(outcome: PolicyOutcome, mx_hosts: Iterable[MXHost]) -> Plan:
    """
    Choose and order the MX hosts to try, before connecting (RFC 8461 §4.1, §5).

    Args:
        outcome: The policy lookup's outcome for the recipient domain.
        mx_hosts: The MX RRset as :class:`MXHost` values; empty when the
            domain has no MX RRset (then the domain itself is the implicit
            MX, STS-MX-08).

    Returns:
        The plan: candidates in preference order (a stable sort, so equal
        preferences keep the given order), the MX hosts skipped under
        ``enforce`` (never contacted, STS-MX-11), and :class:`Defer` when none
        is left under ``enforce`` (STS-APPLY-09) or the outcome asks to defer
        (AMB-16).
    """
    if outcome.defer:
        return Plan((), defer=Defer("temporary DNS error while looking up the MTA-STS policy"))
    hosts = list(mx_hosts)
    real = [mx for mx in hosts if not _is_null_mx(mx.host)]
    if hosts and not real:
        # RFC 7505: a null MX means the domain accepts no mail.
        return Plan((), null_mx=True)
    if not hosts:
        # RFC 5321 §5.1 implicit MX; STS-MX-08 matches the domain name itself.
        real = [MXHost(outcome.domain, 0, implicit=True)]
    real.sort(key=lambda mx: mx.preference)
    mode = _mode(outcome)
    candidates: list[Candidate] = []
    skipped: list[SkipMX] = []
    for mx in real:
        if mode is None:
            candidates.append(Candidate(mx, MXVerdict.OPPORTUNISTIC))
            continue
        policy: Policy | None = outcome.policy
        assert policy is not None  # mode comes from the policy
        if policy.matches(mx.host):
            verdict = (
                MXVerdict.REQUIRE_VERIFIED_TLS
                if mode is Mode.ENFORCE
                else MXVerdict.OPPORTUNISTIC_REPORT
            )
            candidates.append(Candidate(mx, verdict))
        elif mode is Mode.ENFORCE:
            # RFC 8461 §8.4 (STS-MX-11): never contact an MX the policy does not name.
            failure = _mismatch(mx)
            session = _session(
                outcome.policy_info, mx, None, [failure, *_discovery_failure(outcome)]
            )
            skipped.append(SkipMX(mx, failure, session))
        else:
            # STS-MX-10: testing reports the mismatch after the session (decide()).
            candidates.append(Candidate(mx, MXVerdict.OPPORTUNISTIC_REPORT))
    defer = None
    if not candidates:
        defer = Defer(
            "no MX host matches the enforced MTA-STS policy",
            tuple(s.failure for s in skipped),
        )
    return Plan(tuple(candidates), tuple(skipped), defer)


def defer_if_exhausted(verdicts: Iterable[Verdict]) -> Defer | None:
    """
    The message verdict after trying MX hosts (RFC 8461 §5, STS-APPLY-09).

    Args:
        verdicts: The :func:`decide` verdicts of every MX tried, plus the
            :attr:`Plan.skipped` ones.

    Returns:
        :class:`Defer` when there was at least one verdict and every one was
        :class:`SkipMX` (temporary failure, never a bounce); ``None`` when
        something was delivered or nothing was decided (connect failures
        follow the normal RFC 5321 retry rules, STS-APPLY-11).
    """
    seen = list(verdicts)
    if seen and all(isinstance(v, SkipMX) for v in seen):
        return Defer(
            "every MX host failed MTA-STS or DANE validation",
            tuple(v.failure for v in seen if isinstance(v, SkipMX)),
        )
    return None


def next_hop_domain(recipient: str, *, smart_host: str | None = None) -> str | None:
    """
    The policy domain for a delivery (RFC 8461 §1.1, §3.4).

    Args:
        recipient: The recipient address (``alice@Example.COM``) or its domain.
        smart_host: The configured smart host the mail is relayed through, if
            any; it then is the next hop (STS-APPLY-01).

    Returns:
        The next-hop domain as a lower-case A-label without trailing dot, or
        ``None`` when the next hop is an address literal or an IP address,
        which has no MTA-STS policy (STS-APPLY-03). A recipient in a
        subdomain gives that subdomain, never its parent (STS-APPLY-02).

    Raises:
        DomainNameError: The domain is not a valid host name.
    """
    if smart_host is not None:
        host = smart_host
    else:
        # RFC 5321 §4.1.2: the domain follows the last "@" of the mailbox.
        host = recipient.rpartition("@")[2]
    if host.startswith("[") and host.endswith("]"):
        # RFC 5321 §4.1.3 address literal: no policy (STS-APPLY-03).
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return to_alabel(host)
    return None
