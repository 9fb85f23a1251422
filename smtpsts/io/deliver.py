"""
The whole MTA-STS/DANE delivery path for one recipient domain (sync and asyncio).

For a Python MTA: :func:`deliver_connection` (blocking) and
:func:`adeliver_connection` (asyncio) take a recipient domain and do, in
order:

1. the policy lookup through a :class:`~smtpsts.io.drivers.PolicyResolver`
   (RFC 8461 §3-§5);
2. the delivery walk, :func:`smtpsts.delivery.walk`: the MX lookup (a null
   MX, RFC 7505, means the domain takes no mail; no MX RRset means the
   domain's own address records, RFC 5321 §5.1), :func:`smtpsts.decision.plan`
   (under ``enforce`` the MX hosts the policy does not name are never
   contacted), and for each candidate and each of its addresses the DNSSEC
   TLSA lookup when DANE is enabled (RFC 7672 §2.2), the SMTP greeting,
   EHLO, STARTTLS and the TLS handshake (with a deadline on each step and
   caps on every reply), the PKIX check of the chain against the MX name
   with the configured :class:`~smtpsts.certs.TrustStore` (RFC 8461 §4.2),
   the DANE match, and :func:`smtpsts.decision.decide`;
3. on :class:`~smtpsts.decision.Deliver` or
   :class:`~smtpsts.decision.DeliverAndReport`: hand back the open session,
   ready for ``EHLO``/``MAIL FROM`` (an :class:`smtplib.SMTP`, or an asyncio
   stream pair); otherwise the next MX, and in the end a defer reason.

Every session leaves its TLS-RPT :class:`~smtpsts.tlsrpt.session.SessionResult`
in the result, for :class:`smtpsts.tlsrpt.Aggregator`.

The rules live in the core (:mod:`smtpsts.delivery`); this module performs
its steps: one conversation (policy lookup, walk, re-walk after a policy
change) driven by :func:`smtpsts.io._drive.drive` or
:func:`~smtpsts.io._drive.adrive`, with the DNS adapters and the session
steps of :mod:`smtpsts.io._deliver_sessions`. Python 3.11 exposes the full
peer chain only through a private ``_ssl`` method, which
:func:`smtpsts.io.tls.peer_chain` uses; where it is missing only the leaf is
seen, and a leaf whose issuer is an intermediate then fails as
``certificate-not-trusted``.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from smtpsts import delivery
from smtpsts._names import to_alabel
from smtpsts.cache import PolicyOutcome, PolicySource
from smtpsts.certs import TrustStore
from smtpsts.decision import Deliver, DeliverAndReport, MXHost, Precedence
from smtpsts.delivery import SMTP_PORT, Attempt, DeliveryStatus
from smtpsts.exceptions import LocalFaultError
from smtpsts.io._deliver_sessions import AsyncioSessions, BlockingSessions, SessionSettings
from smtpsts.io._drive import adrive, drive
from smtpsts.io.dns import AsyncDNSResolver, DNSFailure, DNSNotFound, DNSResolver
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSSECResolver, DNSStatus, TLSALookup
from smtpsts.io.drivers import PolicyResolver
from smtpsts.policy import Mode
from smtpsts.tlsrpt.session import SessionResult

log = logging.getLogger(__name__)

__all__ = [
    "RECHECK_WAIT",
    "AsyncDelivery",
    "Attempt",
    "Delivery",
    "DeliveryStatus",
    "adeliver_connection",
    "deliver_connection",
]

RECHECK_WAIT: Final = 0.5
"""Seconds a deferral under a cached policy waits for its background check."""


@attrs.frozen
class _Common:
    domain: str
    status: DeliveryStatus
    reason: str
    outcome: PolicyOutcome | None
    verdict: Deliver | DeliverAndReport | None
    attempts: tuple[Attempt, ...]
    sessions: tuple[SessionResult, ...]


@attrs.frozen
class Delivery(_Common):
    """
    The result of :func:`deliver_connection`.

    Attributes:
        domain: The recipient domain (A-label).
        status: How it ended.
        reason: Why, in words (the defer or bounce reason; the MX when connected).
        outcome: The policy lookup's outcome (``None`` if it was not reached).
        verdict: The verdict of the MX the session is open with.
        attempts: Every MX address tried, in order.
        sessions: The TLS-RPT session results to hand to
            :class:`smtpsts.tlsrpt.Aggregator` (MTA-STS and DANE ``tlsa``
            results, including those of MX hosts skipped before connecting).
        smtp: The open session when :attr:`status` is ``connected``: an
            :class:`smtplib.SMTP` after STARTTLS (or in plaintext where the
            verdict allows it), ready for ``ehlo()`` / ``sendmail()``; the
            caller closes it.
    """

    smtp: smtplib.SMTP | None = attrs.field(default=None, eq=False)


@attrs.frozen
class AsyncDelivery(_Common):
    """
    The result of :func:`adeliver_connection`.

    The attributes are those of :class:`Delivery`, with the open session as
    an asyncio stream pair instead of :class:`smtplib.SMTP`.

    Attributes:
        domain: The recipient domain (A-label).
        status: How it ended.
        reason: Why, in words.
        outcome: The policy lookup's outcome.
        verdict: The verdict of the MX the session is open with.
        attempts: Every MX address tried.
        sessions: The TLS-RPT session results.
        reader: The session's reader, after STARTTLS; the server expects
            ``EHLO`` next (RFC 3207 §4.2).
        writer: The session's writer; the caller closes it.
    """

    reader: asyncio.StreamReader | None = attrs.field(default=None, eq=False)
    writer: asyncio.StreamWriter | None = attrs.field(default=None, eq=False)


# --------------------------------------------------------------------------- the conversation


@attrs.frozen
class _Options:
    session: SessionSettings
    connect_to: Mapping[tuple[str, int], tuple[str, int]]
    port: int
    precedence: Precedence
    dane: bool
    recheck_wait: float


@attrs.frozen
class _ResolvePolicy:
    # Look up the domain's policy (PolicyResolver.resolve / aresolve).
    pass


@attrs.frozen
class _AwaitCheck:
    # Wait up to ``seconds`` for the domain's background policy check.
    seconds: float


def _conversation(name: str, options: _Options) -> Generator[Any, Any, dict[str, Any]]:
    # The policy lookup, the walk, and the re-walk after a policy change: the
    # fields of the result (Delivery / AsyncDelivery without the session).
    try:
        outcome = yield _ResolvePolicy()
    except LocalFaultError as exc:
        return _local_fault(name, exc)
    try:
        fields = yield from _walk(name, outcome, options)
    except LocalFaultError as exc:
        return _local_fault(name, exc, outcome)  # no re-check: nothing was judged
    if _recheck_after(fields["status"], outcome):
        # The cached policy refused every MX: let this domain's background
        # check finish, and walk again if it brought a new policy (a real MX
        # change, RFC 8461 §3.1), never a weaker answer for the same one.
        remaining = options.session.deadline - time.monotonic()
        yield _AwaitCheck(min(options.recheck_wait, remaining))
        try:
            fresh = yield _ResolvePolicy()
        except LocalFaultError:
            return fields
        if fresh.record_id != outcome.record_id and _replaces(fresh):
            try:
                return (yield from _walk(name, fresh, options))
            except LocalFaultError as exc:
                return _local_fault(name, exc, fresh)
    return fields


def _walk(
    name: str, outcome: PolicyOutcome, options: _Options
) -> Generator[Any, Any, dict[str, Any]]:
    # One walk over the MX hosts under ``outcome`` (smtpsts.delivery.walk); a
    # local fault (LocalFaultError) comes out of it unchanged.
    result = yield from delivery.walk(
        name,
        outcome,
        port=options.port,
        precedence=options.precedence,
        dane=options.dane,
        connect_to=options.connect_to,
    )
    if result.status is DeliveryStatus.CONNECTED:
        _log_connected(name, outcome, result)
    return {
        "domain": name,
        "status": result.status,
        "reason": result.reason,
        "outcome": outcome,
        "verdict": result.verdict,
        "attempts": result.attempts,
        "sessions": result.sessions,
    }


def _local_fault(
    name: str, exc: LocalFaultError, outcome: PolicyOutcome | None = None
) -> dict[str, Any]:
    # This host failed (descriptors, memory, the store): defer, never deliver
    # unprotected and never blame the domain (issue 10 item 4).
    log.warning("delivery to %s deferred: %s", name, exc)
    what = "policy state unknown" if outcome is None else "delivery not attempted"
    return {
        "domain": name,
        "status": DeliveryStatus.DEFER,
        "reason": f"local fault, {what}: {exc}",
        "outcome": outcome,
        "verdict": None,
        "attempts": (),
        "sessions": (),
    }


def _recheck_after(status: DeliveryStatus, outcome: PolicyOutcome) -> bool:
    # A cached policy deferred the message: a background check may bring a new one.
    return (
        status is DeliveryStatus.DEFER
        and outcome.policy is not None
        and outcome.source is PolicySource.CACHED
    )


def _replaces(fresh: PolicyOutcome) -> bool:
    # A new policy, or a validated ``mode: none`` that withdraws the cached
    # one (RFC 8461 §8.3, STS-CACHE-06); never the absence of an answer.
    return fresh.policy is not None or fresh.mode is Mode.NONE


def _log_connected(name: str, outcome: PolicyOutcome, result: delivery.WalkResult) -> None:
    observation = result.observation
    attempt = result.attempts[-1]
    assert observation is not None  # connected
    assert result.verdict is not None
    if result.plaintext or not observation.handshake_ok:
        how = "without TLS"
    elif observation.dane is not None and observation.dane.authenticated:
        how = "over TLS authenticated by DANE (the MX host's TLSA records)"
    elif outcome.policy is not None and observation.pkix is not None and observation.pkix.ok:
        how = "over TLS authenticated by MTA-STS (PKIX, MX name)"
    else:
        how = "over unauthenticated TLS"
    # RFC 7672 §2.2.1 (DANE-20): the MX RRset here is not DNSSEC-validated, so the
    # MX host is logged as the MX record names it (before any CNAME expansion), and
    # the delivery is never logged as secure delivery to the next-hop domain.
    log.info(
        "%s: connected to MX %s [%s]:%d %s; MX lookup not DNSSEC-validated, "
        "so this is not secure delivery to %s",
        name,
        result.verdict.mx.host,
        attempt.address,
        attempt.port,
        how,
        name,
    )


# --------------------------------------------------------------------------- DNS steps


def _mx_result(answer: Any) -> delivery.MXFound | delivery.NoRecords | delivery.LookupFailed:
    if isinstance(answer, DNSFailure):
        return delivery.LookupFailed(answer.reason)
    if isinstance(answer, DNSNotFound):
        return delivery.NoRecords()
    return delivery.MXFound(
        tuple(
            MXHost(to_alabel(r.exchange) if r.exchange else "", r.preference)
            for r in answer.records
        )
    )


def _address_result(
    found: Any,
) -> delivery.AddressesFound | delivery.NoRecords | delivery.LookupFailed:
    if isinstance(found, DNSFailure):
        return delivery.LookupFailed(found.reason)
    if isinstance(found, DNSNotFound):
        return delivery.NoRecords()
    return delivery.AddressesFound(tuple(found.addresses))


def _tlsa_result(tlsa: TLSALookup) -> delivery.TLSAFound | delivery.NoTLSA | delivery.TLSAFailed:
    if tlsa.status is DNSStatus.SECURE:
        return delivery.TLSAFound(tlsa.records, tlsa.base_domain or tlsa.host, tlsa.names)
    if tlsa.status in (DNSStatus.BOGUS, DNSStatus.TEMPFAIL):
        return delivery.TLSAFailed(tlsa.status is DNSStatus.BOGUS, tlsa.detail)
    # DANE-14: no secure TLSA RRset, no DANE.
    return delivery.NoTLSA()


class _Run:
    # One delivery: the conversation and the performer of each of its steps,
    # blocking or asyncio (the adapter calls differ, not the steps).

    def __init__(
        self,
        *,
        asynchronous: bool,
        domain: str,
        policies: PolicyResolver,
        dns: Any,
        dnssec: Any,
        trust: TrustStore | None,
        connect_to: Mapping[tuple[str, int], tuple[str, int]] | None,
        port: int,
        helo_name: str | None,
        precedence: Precedence,
        timeout: float,
        now: datetime | None,
        recheck_wait: float,
        session_timeout: float = 0.0,
    ) -> None:
        self.name = name = to_alabel(domain)
        trust = trust if trust is not None else policies.trust
        if trust is None:
            from smtpsts.io.truststore import load_system_trust_store  # noqa: PLC0415

            trust = load_system_trust_store()
        helo = helo_name or socket.gethostname() or "localhost"
        if any(c in helo for c in " \r\n"):
            # RFC 5321 §4.1.1.1: EHLO takes one domain or address literal.
            raise ValueError(f"invalid EHLO name {helo!r}")
        settings = SessionSettings(
            trust, helo, now or datetime.now(UTC), time.monotonic() + timeout
        )
        overrides = connect_to if connect_to is not None else policies.connect_to
        options = _Options(
            settings,
            {(h.lower().rstrip("."), p): a for (h, p), a in (overrides or {}).items()},
            port,
            precedence,
            dnssec is not None and dnssec.trusted,
            recheck_wait,
        )
        self.conversation = _conversation(name, options)
        self.session_timeout = session_timeout
        self.now = settings.now
        self.policies = policies
        self.dnssec = dnssec
        if asynchronous:
            self.dns = dns or AsyncDNSResolver(policies.nameservers)
            self.sessions: Any = AsyncioSessions(settings)
            self._resolve: Callable[..., Any] = policies.aresolve
            self._wait: Callable[..., Any] = policies.await_check
        else:
            self.dns = dns or DNSResolver(policies.nameservers)
            self.sessions = BlockingSessions(settings)
            self._resolve = policies.resolve
            self._wait = policies.wait_for_check

    def perform(self, request: Any) -> Any:
        result, convert = self._call(request)
        return convert(result)

    async def aperform(self, request: Any) -> Any:
        call, convert = self._call(request)
        return convert(await call)

    def _call(self, request: Any) -> tuple[Any, Callable[[Any], Any]]:
        # The adapter call for a step (its result, or a coroutine for
        # asyncio) and the conversion of what it gives into the core's result.
        if isinstance(request, _ResolvePolicy):
            return self._resolve(self.name, self.now), _as_is
        if isinstance(request, _AwaitCheck):
            return self._wait(self.name, request.seconds), _as_is
        if isinstance(request, delivery.OpenSession):
            return self.sessions.open(request), _as_is
        if isinstance(request, delivery.CloseSession):
            return self.sessions.close(send_quit=request.send_quit), _as_is
        if isinstance(request, delivery.FallBackToPlaintext):
            return self.sessions.fall_back(request), _as_is
        if isinstance(request, delivery.LookupMX):
            return self.dns.lookup_mx(request.domain), _mx_result
        if isinstance(request, delivery.LookupAddresses):
            return self.dns.lookup_addresses(request.host), _address_result
        assert isinstance(request, delivery.LookupTLSA), request
        call = self.dnssec.lookup_tlsa(
            request.host, port=request.port, next_hop_names=request.next_hop_names
        )
        return call, _tlsa_result


def _as_is(result: Any) -> Any:
    return result


# --------------------------------------------------------------------------- the drivers


def deliver_connection(
    domain: str,
    *,
    policies: PolicyResolver,
    dns: DNSResolver | None = None,
    dnssec: DNSSECResolver | None = None,
    trust: TrustStore | None = None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    port: int = SMTP_PORT,
    helo_name: str | None = None,
    precedence: Precedence = Precedence.BOTH,
    timeout: float = 60.0,
    session_timeout: float = 300.0,
    now: datetime | None = None,
    recheck_wait: float = RECHECK_WAIT,
) -> Delivery:
    """
    Find an MX of ``domain`` that may take the message, and open the session (blocking).

    Args:
        domain: The recipient (next-hop) domain, any form
            :func:`smtpsts.to_alabel` accepts.
        policies: The policy resolver (keep one per process).
        dns: DNS adapter for MX and address lookups (default: one on
            ``policies.nameservers``).
        dnssec: A DNSSEC resolver for DANE; DANE is checked only when it is
            given and :attr:`~smtpsts.io.dnssec.DNSSECResolver.trusted`
            (DANE-02).
        trust: Trust anchors for MX certificates (default: ``policies.trust``,
            else the system's).
        connect_to: ``{(mx host, port): (address, port)}`` overrides (tests,
            labs); TLS and SNI still use the MX name.
        port: The SMTP port.
        helo_name: The EHLO name (default: this host's name).
        precedence: How DANE and MTA-STS combine (AMB-11).
        timeout: Seconds for the MX sessions together (each step waits at
            most until this deadline).
        session_timeout: The socket timeout of the :class:`smtplib.SMTP`
            handed back, for the rest of the transaction (RFC 5321 §4.5.3.2
            suggests minutes).
        now: The time certificates are checked at (default: now).
        recheck_wait: When a cached policy refuses every MX, the seconds to
            wait for the domain's background policy check before deferring:
            a new policy (an MX change, RFC 8461 §3.1) is then walked at
            once. Short, so that an attacker's slow policy host never
            holds a delivery (issue 10); ``0`` defers at once.

    Returns:
        The result; network failures are part of it, never raised, and
        so are local faults (a deferral).

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: ``helo_name`` contains white space.
    """
    run = _Run(asynchronous=False, **locals())  # the arguments, as given
    fields = drive(run.conversation, run.perform)
    smtp = None
    if fields["status"] is DeliveryStatus.CONNECTED:
        smtp = run.sessions.hand_over(session_timeout)
    return Delivery(**fields, smtp=smtp)


async def adeliver_connection(
    domain: str,
    *,
    policies: PolicyResolver,
    dns: AsyncDNSResolver | None = None,
    dnssec: AsyncDNSSECResolver | None = None,
    trust: TrustStore | None = None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    port: int = SMTP_PORT,
    helo_name: str | None = None,
    precedence: Precedence = Precedence.BOTH,
    timeout: float = 60.0,  # noqa: ASYNC109 -- one deadline for many steps
    now: datetime | None = None,
    recheck_wait: float = RECHECK_WAIT,
) -> AsyncDelivery:
    """
    Find an MX of ``domain`` that may take the message, and open the session (asyncio).

    The arguments and the steps are those of :func:`deliver_connection`; the
    open session comes back as :attr:`AsyncDelivery.reader` /
    :attr:`AsyncDelivery.writer`, after STARTTLS (the server expects EHLO).

    Args:
        domain: The recipient (next-hop) domain.
        policies: The policy resolver.
        dns: asyncio DNS adapter (default: one on ``policies.nameservers``).
        dnssec: asyncio DNSSEC resolver for DANE (checked only when trusted).
        trust: Trust anchors for MX certificates.
        connect_to: ``{(mx host, port): (address, port)}`` overrides.
        port: The SMTP port.
        helo_name: The EHLO name.
        precedence: How DANE and MTA-STS combine (AMB-11).
        timeout: Seconds for the MX sessions together.
        now: The time certificates are checked at.
        recheck_wait: See :func:`deliver_connection`.

    Returns:
        The result; network failures are part of it, never raised.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: ``helo_name`` contains white space.
    """
    run = _Run(asynchronous=True, **locals())  # the arguments, as given
    fields = await adrive(run.conversation, run.aperform)
    reader, writer = None, None
    if fields["status"] is DeliveryStatus.CONNECTED:
        reader, writer = run.sessions.hand_over()
    return AsyncDelivery(**fields, reader=reader, writer=writer)
