"""
The delivery walk: MX hosts, their addresses, TLSA records and SMTP sessions, in order.

RFC 8461 §4-§5, RFC 7672 §2.1-§2.2, RFC 5321 §5.1, RFC 7505.

Pure: :func:`walk` is a generator over one policy outcome. It yields each
step it needs performed and is sent that step's result; its return value is
the :class:`WalkResult` (how the attempt ended, the verdicts, the attempts
and the TLS-RPT session results). The adapters
(:mod:`smtpsts.io.deliver`) perform the steps, blocking or with asyncio,
through the one pair of loops in :mod:`smtpsts.io._drive`::

    result = drive(walk(domain, outcome, dane=True), perform)

The steps and their results:

=============================  ===================================================
request                        result sent back
=============================  ===================================================
:class:`LookupMX`              :class:`MXFound`, :class:`NoRecords`, :class:`LookupFailed`
:class:`LookupAddresses`       :class:`AddressesFound`, :class:`NoRecords`, :class:`LookupFailed`
:class:`LookupTLSA`            :class:`TLSAFound`, :class:`NoTLSA`, :class:`TLSAFailed`
:class:`OpenSession`           :class:`SessionOpened`, :class:`SessionFailed`,
                               :class:`ConnectFailed`
:class:`CloseSession`          ``None``
:class:`FallBackToPlaintext`   ``True`` when the new session greeted with 220, else ``False``
=============================  ===================================================

The rules (each cited where it is applied): a failed MX lookup defers
(DANE-06), a null MX means no mail (RFC 7505), no MX RRset means the implicit
MX (STS-MX-08); :func:`smtpsts.decision.plan` orders the MX hosts and leaves
out, under ``enforce``, those the policy does not name (STS-MX-11); no address
records pass over the MX (no mail for the implicit MX), a failed address
lookup never means no mail (DANE-07, issue 10); a failed TLSA lookup makes the
MX unreachable (DANE-08, SEC-13); a connect failure tries the next address
(STS-APPLY-11); a greeting or EHLO failure, or a
:class:`~smtpsts.decision.SkipMX` (then with QUIT), the next MX: once an MX
gave a verdict its other addresses are not tried (STS-APPLY-08); a broken TLS
attempt the verdict still allows is retried in plaintext (STS-APPLY-15,
DANE-14); nothing delivered: :func:`smtpsts.decision.defer_if_exhausted`, a
temporary failure, never a bounce (STS-APPLY-09).

A little over 600 lines, most of them the documented values of the walk's
six requests and ten results: one vocabulary, kept together.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from . import decision
from ._vocab import ResultType
from .cache import PolicyOutcome
from .dane import DANECheck, TLSARecord, match_tlsa
from .decision import (
    Deliver,
    DeliverAndReport,
    MXHost,
    Precedence,
    SkipMX,
    TLSFailure,
    TLSObservation,
    Verdict,
)
from .tlsrpt.session import PolicyInfo, SessionResult

__all__ = [
    "SMTP_PORT",
    "AddressesFound",
    "Attempt",
    "CloseSession",
    "ConnectFailed",
    "DeliveryStatus",
    "FallBackToPlaintext",
    "LookupAddresses",
    "LookupFailed",
    "LookupMX",
    "LookupTLSA",
    "MXFound",
    "NoRecords",
    "NoTLSA",
    "OpenSession",
    "Request",
    "SessionFailed",
    "SessionOpened",
    "TLSAFailed",
    "TLSAFound",
    "WalkResult",
    "dane_check",
    "walk",
]

SMTP_PORT = 25
"""The port MX hosts listen on (RFC 5321 §4.5.4)."""


class DeliveryStatus(enum.StrEnum):
    """
    How a delivery attempt for one domain ended.
    """

    CONNECTED = "connected"
    """An MX accepted the session: the connection is handed back."""

    DEFER = "defer"
    """Nothing may be delivered now: requeue (a temporary failure, never a bounce)."""

    NO_MAIL = "no-mail"
    """The domain accepts no mail (null MX, RFC 7505, or no MX and no address): bounce."""


@attrs.frozen
class Attempt:
    """
    One MX address tried.

    Attributes:
        mx: The MX host.
        address: The address connected to (or tried); ``""`` when the MX
            had no usable address.
        port: The port.
        connected: Whether TCP connected (a connect failure is not an
            MTA-STS matter and has no verdict, STS-APPLY-11).
        tls: Whether the session is protected by TLS.
        verdict: What :func:`smtpsts.decision.decide` said, when connected.
        error: What failed, in words.
    """

    mx: str
    address: str
    port: int
    connected: bool
    tls: bool = False
    verdict: Verdict | None = None
    error: str | None = None


# --------------------------------------------------------------------------- requests


@attrs.frozen
class LookupMX:
    """
    Look up the MX RRset of the recipient domain (RFC 5321 §5.1).

    Attributes:
        domain: The domain (A-label).
    """

    domain: str


@attrs.frozen
class LookupAddresses:
    """
    Look up the address records of an MX host (AAAA, then A).

    Attributes:
        host: The MX host (A-label).
    """

    host: str


@attrs.frozen
class LookupTLSA:
    """
    Find the DNSSEC-validated TLSA records of an MX host (RFC 7672 §2.2.2, §2.2.3).

    Attributes:
        host: The MX host.
        port: The destination port (the ``_<port>._tcp`` label, DANE-26).
        next_hop_names: Extra DANE-TA reference identifiers; empty, since the
            MX lookup is not DNSSEC-validated (DANE-19, DANE-31).
    """

    host: str
    port: int
    next_hop_names: tuple[str, ...] = ()


@attrs.frozen
class OpenSession:
    """
    Connect to one MX address and attempt STARTTLS (RFC 3207, RFC 8461 §4).

    The performer connects, reads the greeting, sends EHLO, STARTTLS when it
    is offered, and makes the TLS handshake with :attr:`server_name` as SNI;
    it keeps the connection open until :class:`CloseSession`,
    :class:`FallBackToPlaintext` or the end of the walk.

    Attributes:
        mx: The MX host.
        address: The address to connect to.
        port: The port.
        tlsa: The MX host's secure TLSA RRset when DANE applies, else ``None``.
    """

    mx: MXHost
    address: str
    port: int
    tlsa: TLSAFound | None = None

    @property
    def server_name(self) -> str:
        """
        The SNI: the TLSA base domain with DANE (DANE-30), else the MX name (STS-CERT-14).
        """
        return self.mx.host if self.tlsa is None else self.tlsa.base_domain


@attrs.frozen
class CloseSession:
    """
    End the open session; the result is ``None``.

    Attributes:
        send_quit: Send ``QUIT`` first (the session works, but its MX was
            skipped); otherwise just close (it broke).
    """

    send_quit: bool


@attrs.frozen
class FallBackToPlaintext:
    """
    Close the session whose TLS attempt broke it, and connect again without STARTTLS.

    RFC 8461 §5 (STS-APPLY-06, STS-APPLY-15), RFC 7672 §2.2 (DANE-14): only
    when the verdict allows delivery without TLS. The result is ``True``
    when the new session greeted with 220, else ``False``.

    Attributes:
        mx: The MX host.
        address: The address.
        port: The port.
    """

    mx: MXHost
    address: str
    port: int


Request = LookupMX | LookupAddresses | LookupTLSA | OpenSession | CloseSession | FallBackToPlaintext
"""What :func:`walk` yields."""


# --------------------------------------------------------------------------- results


@attrs.frozen
class MXFound:
    """
    The MX RRset (RFC 5321 §5.1).

    Attributes:
        hosts: The MX hosts as the records name them (A-labels; ``""`` or
            ``"."`` for a null MX, RFC 7505), in any order.
    """

    hosts: tuple[MXHost, ...]


@attrs.frozen
class AddressesFound:
    """
    The addresses of an MX host, in the order to try them.

    Attributes:
        addresses: IP addresses in text form.
    """

    addresses: tuple[str, ...]


@attrs.frozen
class NoRecords:
    """
    A definite "no such records": NXDOMAIN or NODATA (never a failure, STS-REC-17).
    """


@attrs.frozen
class LookupFailed:
    """
    The lookup gave no answer: SERVFAIL, REFUSED, a timeout (DANE-06).

    Attributes:
        reason: What went wrong, in words.
    """

    reason: str


@attrs.frozen
class TLSAFound:
    """
    A secure TLSA RRset: DANE applies to the MX host (RFC 7672 §2.2).

    Attributes:
        records: The records (possibly all unusable, DANE-13).
        base_domain: The TLSA base domain, also the SNI (DANE-30).
        names: The DANE-TA reference identifiers, base domain first (DANE-31).
    """

    records: tuple[TLSARecord, ...]
    base_domain: str
    names: tuple[str, ...]


@attrs.frozen
class NoTLSA:
    """
    No secure TLSA RRset (insecure, or proven absent): DANE does not apply (DANE-14).
    """


@attrs.frozen
class TLSAFailed:
    """
    A query needed to find the TLSA records failed (DANE-03, DANE-08).

    Attributes:
        bogus: The validating resolver said bogus or indeterminate
            (``dnssec-invalid``, DANE-55); otherwise the lookup failed
            (timeout, network error).
        detail: What happened, in words.
    """

    bogus: bool
    detail: str


@attrs.frozen
class ConnectFailed:
    """
    TCP did not connect (STS-APPLY-11: no verdict, no report).

    Attributes:
        error: What failed, in words.
    """

    error: str


@attrs.frozen
class SessionFailed:
    """
    TCP connected, but the greeting or EHLO failed: no TLS verdict to make.

    Attributes:
        error: What failed, in words.
    """

    error: str


@attrs.frozen
class SessionOpened:
    """
    What the session showed, through the STARTTLS attempt.

    Attributes:
        observation: What :func:`smtpsts.decision.decide` is given.
        tls_error: Set when STARTTLS or the TLS handshake failed in a way
            that broke the connection (the session cannot go on in the
            clear; a fallback reconnects).
    """

    observation: TLSObservation
    tls_error: str | None = None


# --------------------------------------------------------------------------- the result


@attrs.frozen
class WalkResult:
    """
    How the walk over the MX hosts ended.

    Attributes:
        status: Connected, defer or no mail.
        reason: Why, in words (the defer or bounce reason; the MX when connected).
        verdict: The verdict of the MX the session is open with.
        attempts: Every MX address tried, in order.
        sessions: The TLS-RPT session results for
            :class:`smtpsts.tlsrpt.Aggregator` (MTA-STS and DANE ``tlsa``
            results, including those of MX hosts skipped before connecting).
        observation: What the connected session showed (``None`` unless
            connected).
        plaintext: The connected session is the plaintext fallback.
    """

    status: DeliveryStatus
    reason: str
    verdict: Deliver | DeliverAndReport | None = None
    attempts: tuple[Attempt, ...] = ()
    sessions: tuple[SessionResult, ...] = ()
    observation: TLSObservation | None = None
    plaintext: bool = False


class _Route:
    # What happened across the MX hosts of one walk.

    def __init__(self, domain: str, outcome: PolicyOutcome, precedence: Precedence) -> None:
        self.domain = domain
        self.outcome = outcome
        self.precedence = precedence
        self.attempts: list[Attempt] = []
        self.sessions: list[SessionResult] = []
        self.verdicts: list[Verdict] = []

    def record(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self.sessions.append(verdict.session)
        if verdict.dane_session is not None:
            self.sessions.append(verdict.dane_session)

    def passed_over(self, mx: MXHost, port: int, error: str) -> None:
        self.attempts.append(Attempt(mx.host, "", port, connected=False, error=error))

    def end(self, status: DeliveryStatus, reason: str, **found: Any) -> WalkResult:
        # The result so far; ``found``: the verdict, observation, plaintext.
        attempts, sessions = tuple(self.attempts), tuple(self.sessions)
        return WalkResult(status, reason, attempts=attempts, sessions=sessions, **found)

    def exhausted(self) -> WalkResult:
        # RFC 8461 §5 (STS-APPLY-09): every MX skipped: defer with the failures.
        defer = decision.defer_if_exhausted(self.verdicts)
        if defer is None:
            return self.end(DeliveryStatus.DEFER, "no MX host could be reached")
        details = "; ".join(
            f.result_type.value + (f" ({f.reason})" if f.reason else "") for f in defer.failures
        )
        return self.end(DeliveryStatus.DEFER, f"{defer.reason}: {details}")


def _unreachable(domain: str, mx: MXHost, tlsa: TLSAFailed) -> SkipMX:
    # RFC 7672 §2.1.2, §2.2 (DANE-08, SEC-13): a failed TLSA lookup makes the
    # server unreachable: no connection, reported under the host's tlsa policy.
    if tlsa.bogus:
        result_type, reason = ResultType.DNSSEC_INVALID, "dnssec-bogus"
    else:
        result_type, reason = ResultType.VALIDATION_FAILURE, "tlsa-lookup-failed"
    session = SessionResult.failed(
        PolicyInfo.for_tlsa(mx.host, ()),
        result_type,
        failure_reason_code=reason,
        receiving_mx_hostname=mx.host,
        report_domain=domain,  # AMB-19: in the recipient domain's report
    )
    failure = TLSFailure(result_type, reason, f"TLSA lookup of {mx.host}: {tlsa.detail}")
    return SkipMX(mx, failure, session)


def walk(
    domain: str,
    outcome: PolicyOutcome,
    *,
    port: int = SMTP_PORT,
    precedence: Precedence = Precedence.BOTH,
    dane: bool = False,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
) -> Generator[Request, Any, WalkResult]:
    """
    Walk the MX hosts of ``domain`` under one policy outcome (RFC 8461 §5, RFC 7672 §2.2).

    A generator: it yields each :data:`Request` and must be sent its result
    (see the module documentation); its return value is the
    :class:`WalkResult`.

    Args:
        domain: The recipient (next-hop) domain, an A-label.
        outcome: The policy lookup's outcome for ``domain``.
        port: The SMTP port.
        precedence: How DANE and MTA-STS combine (AMB-11).
        dane: Whether DANE is on (a trusted validating resolver, DANE-01,
            DANE-02): only then is :class:`LookupTLSA` yielded.
        connect_to: ``{(mx host, port): (address, port)}`` overrides; an MX
            host listed here is not looked up.

    Returns:
        The result (as the generator's return value).
    """
    overrides = connect_to or {}
    route = _Route(domain, outcome, precedence)
    answer = yield LookupMX(domain)
    if isinstance(answer, LookupFailed):
        # RFC 7672 §2.1.2 (DANE-06): no servers to choose from: delay.
        return route.end(DeliveryStatus.DEFER, f"MX lookup failed: {answer.reason}")
    the_plan = decision.plan(outcome, answer.hosts if isinstance(answer, MXFound) else ())
    for skipped in the_plan.skipped:
        route.record(skipped)
    if the_plan.null_mx:
        return route.end(DeliveryStatus.NO_MAIL, f"{domain} publishes a null MX (RFC 7505)")
    if the_plan.defer is not None:
        return route.end(DeliveryStatus.DEFER, the_plan.defer.reason)
    for candidate in the_plan.candidates:
        mx = candidate.mx
        endpoints = overrides.get((mx.host, port))
        if endpoints is None:
            found = yield LookupAddresses(mx.host)
            if isinstance(found, LookupFailed):
                # Issue 10, DANE-07: temporary, never "no address records": the next MX.
                route.passed_over(mx, port, f"address lookup failed: {found.reason}")
                continue
            if isinstance(found, NoRecords):
                if mx.implicit:
                    # RFC 5321 §5.1: no MX and no address: the domain takes no mail.
                    reason = f"{domain} has no MX and no address records"
                    return route.end(DeliveryStatus.NO_MAIL, reason)
                route.passed_over(mx, port, "no address records")
                continue
            addresses = [(address, port) for address in found.addresses]
        else:
            addresses = [endpoints]
        tlsa = None
        if dane:
            looked = yield LookupTLSA(mx.host, port)
            if isinstance(looked, TLSAFailed):
                route.record(_unreachable(domain, mx, looked))
                continue
            tlsa = looked if isinstance(looked, TLSAFound) else None
        for address, target_port in addresses:
            connected = yield from _session(route, OpenSession(mx, address, target_port, tlsa))
            if connected is not None:
                return connected
            if route.attempts[-1].connected:
                break  # a verdict for this MX: its other addresses are not tried
    return route.exhausted()


def _session(route: _Route, request: OpenSession) -> Generator[Request, Any, WalkResult | None]:
    # One session with one MX address: the connected result, or None for the next.
    mx, address, port = request.mx, request.address, request.port
    seen = yield request
    if isinstance(seen, ConnectFailed):
        # STS-APPLY-11: no verdict, nothing reported; the next address.
        route.attempts.append(Attempt(mx.host, address, port, connected=False, error=seen.error))
        return None
    if isinstance(seen, SessionFailed):
        # Greeting or EHLO failed: no TLS verdict to make; the next MX (RFC 5321 §5.1).
        yield CloseSession(send_quit=False)
        route.attempts.append(Attempt(mx.host, address, port, connected=True, error=seen.error))
        return None
    observation: TLSObservation = seen.observation
    verdict = decision.decide(route.outcome, mx, observation, precedence=route.precedence)
    route.record(verdict)
    route.attempts.append(
        Attempt(
            mx.host,
            address,
            port,
            connected=True,
            tls=observation.handshake_ok,
            verdict=verdict,
            error=seen.tls_error,
        )
    )
    if isinstance(verdict, SkipMX):
        # RFC 8461 §5 (STS-APPLY-08): treated as unreachable; the next MX.
        yield CloseSession(send_quit=True)
        return None
    plaintext = seen.tls_error is not None
    if plaintext:
        # RFC 8461 §5 (STS-APPLY-15): deliver as without TLS, after a reconnect.
        reopened = yield FallBackToPlaintext(mx, address, port)
        if not reopened:
            return None
    reason = f"connected to {mx.host} ({address})"
    found = {"verdict": verdict, "observation": observation, "plaintext": plaintext}
    return route.end(DeliveryStatus.CONNECTED, reason, **found)


def dane_check(
    tlsa: TLSAFound | None, chain: Sequence[Any], now: datetime
) -> tuple[DANECheck | None, PolicyInfo | None]:
    """
    The DANE part of a session's observation (RFC 7672 §2.2, §3).

    Args:
        tlsa: The MX host's secure TLSA RRset, or ``None`` when DANE does
            not apply (DANE-14).
        chain: The peer chain (``cryptography`` certificates, leaf first);
            empty when the session has no TLS.
        now: The time the chain is checked at.

    Returns:
        The :class:`~smtpsts.dane.DANECheck` for
        :attr:`TLSObservation.dane <smtpsts.decision.TLSObservation.dane>`
        and the ``tlsa`` policy the DANE part is reported under (AMB-19);
        ``(None, None)`` without a secure TLSA RRset.
    """
    if tlsa is None:
        return None, None
    info = PolicyInfo.for_tlsa(tlsa.base_domain, tuple(r.to_text() for r in tlsa.records))
    if not chain:
        # RFC 7672 §2.2 (DANE-12, DANE-29): TLS is mandatory with a secure
        # TLSA RRset; decide() reports the missing TLS.
        check = DANECheck(
            ok=False,
            result_type=ResultType.VALIDATION_FAILURE,
            detail="no TLS session",
            reason="no-tls",
            usable=True,
            matched=None,
        )
        return check, info
    # RFC 7672 §3: authenticate the chain with the TLSA RRset.
    return match_tlsa(tlsa.records, chain, names=tlsa.names, now=now), info
