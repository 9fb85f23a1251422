"""
The whole MTA-STS/DANE delivery path for one recipient domain (sync and asyncio).

For a Python MTA: :func:`deliver_connection` (blocking) and
:func:`adeliver_connection` (asyncio) take a recipient domain and do, in
order:

1. the policy lookup through a :class:`~smtpsts.io.drivers.PolicyResolver`
   (RFC 8461 §3-§5);
2. the MX lookup: a null MX (RFC 7505) means the domain takes no mail, no MX
   RRset means the domain's own address records (implicit MX, RFC 5321 §5.1);
3. :func:`smtpsts.decision.plan`: the MX hosts to try, in order; under
   ``enforce`` the MX hosts the policy does not name are never contacted;
4. for each candidate and each of its addresses: the DNSSEC TLSA lookup when
   DANE is enabled (RFC 7672 §2.2), the SMTP greeting, EHLO, STARTTLS and the
   TLS handshake (with a deadline on each step and caps on every reply), the
   PKIX check of the chain against the MX name with the configured
   :class:`~smtpsts.certs.TrustStore` (RFC 8461 §4.2), the DANE match, and
   :func:`smtpsts.decision.decide`;
5. on :class:`~smtpsts.decision.Deliver` or
   :class:`~smtpsts.decision.DeliverAndReport`: hand back the open session,
   ready for ``EHLO``/``MAIL FROM`` (an :class:`smtplib.SMTP`, or an asyncio
   stream pair); otherwise the next MX, and in the end a defer reason.

Every session leaves its TLS-RPT :class:`~smtpsts.tlsrpt.session.SessionResult`
in the result, for :class:`smtpsts.tlsrpt.Aggregator`.

The chain goes to the core's checks (an opportunistic TLS context, then
:func:`smtpsts.certs.check_certificate`): one code path for MTA-STS, DANE and
opportunistic TLS, and the same verdicts as :func:`smtpsts.decision.decide`
documents. Python 3.11 exposes the full peer chain only through a private
``_ssl`` method, which :func:`smtpsts.io.tls.peer_chain` uses; where it is
missing only the leaf is seen, and a leaf whose issuer is an intermediate
then fails as ``certificate-not-trusted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.cache import PolicyOutcome
from smtpsts.certs import TrustStore, check_certificate
from smtpsts.dane import DANECheck, match_tlsa
from smtpsts.decision import (
    Candidate,
    Deliver,
    DeliverAndReport,
    MXHost,
    Precedence,
    SkipMX,
    TLSFailure,
    TLSObservation,
    Verdict,
    decide,
    defer_if_exhausted,
    plan,
)
from smtpsts.io.dns import AsyncDNSResolver, DNSFailure, DNSNotFound, DNSResolver
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSSECResolver, DNSStatus, TLSALookup
from smtpsts.io.drivers import PolicyResolver
from smtpsts.io.starttls import Reply, ReplyReader, SMTPReplyError
from smtpsts.io.tls import classify_tls_error, opportunistic_context, peer_chain
from smtpsts.tlsrpt.session import PolicyInfo, SessionResult

log = logging.getLogger(__name__)

__all__ = [
    "AsyncDelivery",
    "Attempt",
    "Delivery",
    "DeliveryStatus",
    "adeliver_connection",
    "deliver_connection",
]

SMTP_PORT: Final = 25
"""The port MX hosts listen on (RFC 5321 §4.5.4)."""

_CHUNK: Final = 4096


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
        address: The address connected to (or tried).
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


# --------------------------------------------------------------------------- shared logic


@attrs.frozen
class _Options:
    trust: TrustStore
    connect_to: Mapping[tuple[str, int], tuple[str, int]]
    port: int
    helo_name: str
    precedence: Precedence
    now: datetime
    deadline: float


class _SessionFailedError(Exception):
    def __init__(self, step: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.step = step
        self.reason = reason
        self.detail = detail


class _Session:
    """What one SMTP session showed so far (shared by both drivers, no I/O)."""

    def __init__(self, mx: MXHost, address: str, options: _Options) -> None:
        self.mx = mx
        self.address = address
        self.options = options
        self.reader = ReplyReader()
        self.helo: str | None = None
        self.starttls = False
        self.handshake_ok = False
        self.handshake_error: str | None = None
        self.local_ip: str | None = None
        self.chain: tuple[Any, ...] = ()

    def remaining(self) -> float:
        left = self.options.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def check_greeting(self, reply: Reply) -> None:
        if reply.code != 220:
            raise _SessionFailedError("greeting", f"smtp-greeting-{reply.code}", _said(reply))

    def check_ehlo(self, reply: Reply) -> None:
        if reply.code != 250:
            # No EHLO, no extensions, no STARTTLS (RFC 3207 §4).
            return
        first = reply.lines[0].split()
        self.helo = first[0] if first else None
        keywords = {line.split()[0].upper() for line in reply.lines[1:] if line.split()}
        self.starttls = "STARTTLS" in keywords

    def check_starttls(self, reply: Reply) -> None:
        # STS-APPLY-16: an error reply to STARTTLS counts as not offered.
        if reply.code != 220:
            self.starttls = False
            return
        if self.reader.pending:
            # RFC 3207 §5: plaintext after the 220 would be taken as protected.
            self.starttls = False
            raise _SessionFailedError(
                "starttls", "data-after-starttls-reply", "plaintext after the 220 to STARTTLS"
            )

    def tls_failed(self, exc: BaseException) -> None:
        _, reason = classify_tls_error(exc)
        self.handshake_error = reason

    def tls_done(self, tls: ssl.SSLSocket | ssl.SSLObject) -> None:
        self.handshake_ok = True
        self.chain = peer_chain(tls)

    def observation(self, tlsa: TLSALookup | None) -> TLSObservation:
        opts = self.options
        pkix = None
        if self.handshake_ok:
            # RFC 8461 §4.2 (STS-APPLY-13): the chain must be valid for the MX name.
            pkix = check_certificate(self.chain, self.mx.host, trust=opts.trust, now=opts.now)
        dane, info = _dane(tlsa, self.chain if self.handshake_ok else (), opts.now)
        return TLSObservation(
            starttls_offered=self.starttls,
            handshake_ok=self.handshake_ok,
            handshake_error=self.handshake_error,
            pkix=pkix,
            dane=dane,
            sending_mta_ip=self.local_ip,
            receiving_ip=self.address,
            receiving_mx_helo=self.helo,
            tlsa=info,
        )


def _said(reply: Reply) -> str:
    return f"{reply.code} {' '.join(reply.lines)}"[:300]


def _dane(
    tlsa: TLSALookup | None, chain: tuple[Any, ...], now: datetime
) -> tuple[DANECheck | None, PolicyInfo | None]:
    if tlsa is None or tlsa.status is not DNSStatus.SECURE:
        # DANE-14: no secure TLSA RRset, no DANE (failed lookups never get here: DANE-08).
        return None, None
    base = tlsa.base_domain or tlsa.host
    info = PolicyInfo.for_tlsa(base, tuple(r.to_text() for r in tlsa.records))
    if not chain:
        # TLS is mandatory with usable TLSA records: decide() reports the missing TLS.
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


def _tlsa_failed(tlsa: TLSALookup | None) -> bool:
    return tlsa is not None and tlsa.status in (DNSStatus.BOGUS, DNSStatus.TEMPFAIL)


def _unreachable(domain: str, mx: MXHost, tlsa: TLSALookup) -> SkipMX:
    # RFC 7672 §2.1.2, §2.2 (DANE-08, SEC-13): a failed TLSA lookup makes the
    # server unreachable: no connection, reported under the host's tlsa policy.
    result_type = tlsa.result_type or ResultType.VALIDATION_FAILURE
    reason = "dnssec-bogus" if tlsa.status is DNSStatus.BOGUS else "tlsa-lookup-failed"
    session = SessionResult.failed(
        PolicyInfo.for_tlsa(mx.host, ()),
        result_type,
        failure_reason_code=reason,
        receiving_mx_hostname=mx.host,
        report_domain=domain,  # AMB-19: in the recipient domain's report
    )
    failure = TLSFailure(result_type, reason, f"TLSA lookup of {mx.host}: {tlsa.detail}")
    return SkipMX(mx, failure, session)


def _server_name(mx: MXHost, tlsa: TLSALookup | None) -> str:
    # DANE-30: SNI is the TLSA base domain; otherwise the MX name (STS-CERT-14).
    if tlsa is not None and tlsa.status is DNSStatus.SECURE and tlsa.base_domain:
        return tlsa.base_domain
    return mx.host


def _log_connected(
    route: _Route,
    mx: MXHost,
    endpoint: tuple[str, int],
    observation: TLSObservation,
    *,
    plaintext: bool,
) -> None:
    if plaintext or not observation.handshake_ok:
        how = "without TLS"
    elif observation.dane is not None and observation.dane.authenticated:
        how = "over TLS authenticated by DANE (the MX host's TLSA records)"
    elif route.outcome.policy is not None and observation.pkix is not None and observation.pkix.ok:
        how = "over TLS authenticated by MTA-STS (PKIX, MX name)"
    else:
        how = "over unauthenticated TLS"
    # RFC 7672 §2.2.1 (DANE-20): the MX RRset here is not DNSSEC-validated, so the
    # MX host is logged as the MX record names it (before any CNAME expansion), and
    # the delivery is never logged as secure delivery to the next-hop domain.
    log.info(
        "%s: connected to MX %s [%s]:%d %s; MX lookup not DNSSEC-validated, "
        "so this is not secure delivery to %s",
        route.domain,
        mx.host,
        *endpoint,
        how,
        route.domain,
    )


class _Route:
    """Collects what happened across MX hosts (shared by both drivers)."""

    def __init__(self, domain: str, outcome: PolicyOutcome) -> None:
        self.domain = domain
        self.outcome = outcome
        self.attempts: list[Attempt] = []
        self.sessions: list[SessionResult] = []
        self.verdicts: list[Verdict] = []

    def record(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self.sessions.append(verdict.session)
        if verdict.dane_session is not None:
            self.sessions.append(verdict.dane_session)

    def fields(
        self, status: DeliveryStatus, reason: str, verdict: Verdict | None = None
    ) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": status,
            "reason": reason,
            "outcome": self.outcome,
            "verdict": verdict if isinstance(verdict, Deliver | DeliverAndReport) else None,
            "attempts": tuple(self.attempts),
            "sessions": tuple(self.sessions),
        }

    def plan(self, answer: Any) -> tuple[tuple[Candidate, ...], dict[str, Any] | None]:
        # The MX hosts to try, or the fields of a final result (MX lookup
        # failure, null MX, nothing usable under the policy).
        if isinstance(answer, DNSFailure):
            return (), self.fields(DeliveryStatus.DEFER, f"MX lookup failed: {answer.reason}")
        hosts = [] if isinstance(answer, DNSNotFound) else _mx_hosts(answer)
        the_plan = plan(self.outcome, hosts)
        for skipped in the_plan.skipped:
            self.record(skipped)
        if the_plan.null_mx:
            reason = f"{self.domain} publishes a null MX (RFC 7505)"
            return (), self.fields(DeliveryStatus.NO_MAIL, reason)
        if the_plan.defer is not None:
            return (), self.fields(DeliveryStatus.DEFER, the_plan.defer.reason)
        return the_plan.candidates, None

    def no_addresses(self, mx: MXHost, port: int) -> dict[str, Any] | None:
        # An MX host without address records: the next MX, or (RFC 5321 §5.1)
        # undeliverable when the domain itself was the implicit MX.
        if mx.implicit:
            reason = f"{self.domain} has no MX and no address records"
            return self.fields(DeliveryStatus.NO_MAIL, reason)
        self.attempts.append(
            Attempt(mx.host, "", port, connected=False, error="no address records")
        )
        return None

    def exhausted(self) -> dict[str, Any]:
        defer = defer_if_exhausted(self.verdicts)
        if defer is not None:
            details = "; ".join(
                f"{f.result_type.value}" + (f" ({f.reason})" if f.reason else "")
                for f in defer.failures
            )
            return self.fields(DeliveryStatus.DEFER, f"{defer.reason}: {details}")
        return self.fields(DeliveryStatus.DEFER, "no MX host could be reached")


def _mx_hosts(answer: Any) -> list[MXHost]:
    return [
        MXHost(to_alabel(r.exchange) if r.exchange else "", r.preference) for r in answer.records
    ]


def _options(
    *,
    trust: TrustStore | None,
    connect_to: Mapping[tuple[str, int], tuple[str, int]] | None,
    port: int,
    helo_name: str | None,
    precedence: Precedence,
    now: datetime | None,
    timeout: float,
) -> _Options:
    if trust is None:
        from smtpsts.io.truststore import load_system_trust_store  # noqa: PLC0415

        trust = load_system_trust_store()
    helo = helo_name or socket.gethostname() or "localhost"
    if any(c in helo for c in " \r\n"):
        # RFC 5321 §4.1.1.1: EHLO takes one domain or address literal.
        raise ValueError(f"invalid EHLO name {helo!r}")
    return _Options(
        trust,
        {(h.lower().rstrip("."), p): a for (h, p), a in (connect_to or {}).items()},
        port,
        helo,
        precedence,
        now or datetime.now(UTC),
        time.monotonic() + timeout,
    )


# --------------------------------------------------------------------------- blocking


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

    Returns:
        The result; network failures are part of it, never raised.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: ``helo_name`` contains white space.
    """
    name = to_alabel(domain)
    options = _options(
        trust=trust if trust is not None else policies.trust,
        connect_to=connect_to if connect_to is not None else policies.connect_to,
        port=port,
        helo_name=helo_name,
        precedence=precedence,
        now=now,
        timeout=timeout,
    )
    resolver = dns or DNSResolver(policies.nameservers)
    outcome = policies.resolve(name, options.now)
    route = _Route(name, outcome)
    candidates, final = route.plan(resolver.lookup_mx(name))
    if final is not None:
        return Delivery(**final)
    for candidate in candidates:
        mx = candidate.mx
        override = options.connect_to.get((mx.host, port))
        addresses = (
            [override]
            if override is not None
            else _addresses(resolver.lookup_addresses(mx.host), port)
        )
        if addresses is None:
            final = route.no_addresses(mx, port)
            if final is not None:
                return Delivery(**final)
            continue
        tlsa = None
        if dnssec is not None and dnssec.trusted:
            tlsa = dnssec.lookup_tlsa(mx.host, port=port)
            if _tlsa_failed(tlsa):
                route.record(_unreachable(name, mx, tlsa))
                continue
        for address, target_port in addresses:
            delivered = _try_sync(route, mx, (address, target_port), tlsa, options, session_timeout)
            if delivered is not None:
                return delivered
            if route.attempts[-1].connected:
                break  # a verdict for this MX; do not retry its other addresses
    return Delivery(**route.exhausted())


def _addresses(found: Any, port: int) -> list[tuple[str, int]] | None:
    # The (address, port) pairs of an address lookup; None when there are none.
    if isinstance(found, DNSNotFound | DNSFailure):
        return None
    return [(a, port) for a in found.addresses]


def _try_sync(  # noqa: PLR0917 -- internal
    route: _Route,
    mx: MXHost,
    endpoint: tuple[str, int],
    tlsa: TLSALookup | None,
    options: _Options,
    session_timeout: float,
) -> Delivery | None:
    address, port = endpoint
    session = _Session(mx, address, options)
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((address, port), timeout=session.remaining())
    except OSError as exc:
        route.attempts.append(Attempt(mx.host, address, port, connected=False, error=str(exc)))
        return None
    session.local_ip = sock.getsockname()[0]
    error = None
    try:
        session.check_greeting(_read_reply(sock, session))
        _send(sock, session, f"EHLO {options.helo_name}\r\n".encode())
        session.check_ehlo(_read_reply(sock, session))
        if session.starttls:
            _send(sock, session, b"STARTTLS\r\n")
            session.check_starttls(_read_reply(sock, session))
        if session.starttls:
            context = opportunistic_context()
            sock = context.wrap_socket(
                sock, server_hostname=_server_name(mx, tlsa), do_handshake_on_connect=False
            )
            try:
                sock.settimeout(session.remaining())
                sock.do_handshake()
            except (OSError, TimeoutError) as exc:
                session.tls_failed(exc)
                raise _SessionFailedError(
                    "handshake", session.handshake_error or "", str(exc)
                ) from exc
            session.tls_done(sock)
    except (OSError, EOFError, SMTPReplyError, _SessionFailedError) as exc:
        error = exc
    if error is not None and not (
        isinstance(error, _SessionFailedError) and error.step in ("handshake", "starttls")
    ):
        # Greeting or EHLO failed: no TLS verdict to make; try the next MX (RFC 5321 §5.1).
        sock.close()
        route.attempts.append(Attempt(mx.host, address, port, connected=True, error=str(error)))
        return None
    observation = session.observation(tlsa)
    verdict = decide(route.outcome, mx, observation, precedence=options.precedence)
    route.record(verdict)
    route.attempts.append(
        Attempt(
            mx.host,
            address,
            port,
            connected=True,
            tls=session.handshake_ok,
            verdict=verdict,
            error=None if error is None else str(error),
        )
    )
    if isinstance(verdict, SkipMX):
        _quit_sync(sock)
        return None
    if error is not None:
        # The TLS attempt broke the connection; deliver as without TLS (RFC 8461 §5: testing/none).
        sock.close()
        sock = _plain_sync(address, port, session)
        if sock is None:
            return None
    # RFC 5321 §4.5.3.2: the rest of the transaction has its own, longer timeouts.
    sock.settimeout(session_timeout)
    smtp = smtplib.SMTP(local_hostname=options.helo_name, timeout=session_timeout)
    smtp.sock = sock
    smtp._host = mx.host  # type: ignore[attr-defined]  # noqa: SLF001 -- smtplib's server name
    _log_connected(route, mx, (address, port), observation, plaintext=error is not None)
    return Delivery(
        **route.fields(DeliveryStatus.CONNECTED, f"connected to {mx.host} ({address})", verdict),
        smtp=smtp,
    )


def _plain_sync(address: str, port: int, session: _Session) -> socket.socket | None:
    try:
        sock = socket.create_connection((address, port), timeout=session.remaining())
    except OSError:
        return None
    try:
        session.reader = ReplyReader()
        session.check_greeting(_read_reply(sock, session))
    except (OSError, EOFError, SMTPReplyError, _SessionFailedError):
        sock.close()
        return None
    return sock


def _send(sock: socket.socket, session: _Session, data: bytes) -> None:
    sock.settimeout(session.remaining())
    sock.sendall(data)


def _read_reply(sock: socket.socket, session: _Session) -> Reply:
    while True:
        reply = session.reader.next_reply()
        if reply is not None:
            return reply
        sock.settimeout(session.remaining())
        data = sock.recv(_CHUNK)
        if not data:
            raise EOFError
        session.reader.feed(data)


def _quit_sync(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(b"QUIT\r\n")
    sock.close()


# --------------------------------------------------------------------------- asyncio


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

    Returns:
        The result; network failures are part of it, never raised.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        ValueError: ``helo_name`` contains white space.
    """
    name = to_alabel(domain)
    options = _options(
        trust=trust if trust is not None else policies.trust,
        connect_to=connect_to if connect_to is not None else policies.connect_to,
        port=port,
        helo_name=helo_name,
        precedence=precedence,
        now=now,
        timeout=timeout,
    )
    resolver = dns or AsyncDNSResolver(policies.nameservers)
    outcome = await policies.aresolve(name, options.now)
    route = _Route(name, outcome)
    candidates, final = route.plan(await resolver.lookup_mx(name))
    if final is not None:
        return AsyncDelivery(**final)
    for candidate in candidates:
        mx = candidate.mx
        override = options.connect_to.get((mx.host, port))
        addresses = (
            [override]
            if override is not None
            else _addresses(await resolver.lookup_addresses(mx.host), port)
        )
        if addresses is None:
            final = route.no_addresses(mx, port)
            if final is not None:
                return AsyncDelivery(**final)
            continue
        tlsa = None
        if dnssec is not None and dnssec.trusted:
            tlsa = await dnssec.lookup_tlsa(mx.host, port=port)
            if _tlsa_failed(tlsa):
                route.record(_unreachable(name, mx, tlsa))
                continue
        for address, target_port in addresses:
            delivered = await _try_async(route, mx, address, target_port, tlsa, options)
            if delivered is not None:
                return delivered
            if route.attempts[-1].connected:
                break
    return AsyncDelivery(**route.exhausted())


async def _try_async(  # noqa: PLR0917 -- internal
    route: _Route,
    mx: MXHost,
    address: str,
    port: int,
    tlsa: TLSALookup | None,
    options: _Options,
) -> AsyncDelivery | None:
    session = _Session(mx, address, options)
    try:
        async with asyncio.timeout(session.remaining()):
            reader, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError) as exc:
        route.attempts.append(
            Attempt(mx.host, address, port, connected=False, error=str(exc) or "timeout")
        )
        return None
    session.local_ip = writer.get_extra_info("sockname")[0]
    error: BaseException | None = None
    try:
        async with asyncio.timeout(session.remaining()):
            session.check_greeting(await _aread_reply(reader, session))
            writer.write(f"EHLO {options.helo_name}\r\n".encode())
            await writer.drain()
            session.check_ehlo(await _aread_reply(reader, session))
            if session.starttls:
                writer.write(b"STARTTLS\r\n")
                await writer.drain()
                session.check_starttls(await _aread_reply(reader, session))
            if session.starttls:
                try:
                    await writer.start_tls(
                        opportunistic_context(), server_hostname=_server_name(mx, tlsa)
                    )
                except (OSError, TimeoutError) as exc:
                    session.tls_failed(exc)
                    raise _SessionFailedError(
                        "handshake", session.handshake_error or "", str(exc)
                    ) from exc
                session.tls_done(writer.get_extra_info("ssl_object"))
    except _SessionFailedError as exc:
        error = exc
    except (OSError, EOFError, SMTPReplyError, TimeoutError) as exc:
        error = exc
    if error is not None and not (
        isinstance(error, _SessionFailedError) and error.step in ("handshake", "starttls")
    ):
        await _aclose(writer)
        route.attempts.append(
            Attempt(mx.host, address, port, connected=True, error=str(error) or "timeout")
        )
        return None
    observation = session.observation(tlsa)
    verdict = decide(route.outcome, mx, observation, precedence=options.precedence)
    route.record(verdict)
    route.attempts.append(
        Attempt(
            mx.host,
            address,
            port,
            connected=True,
            tls=session.handshake_ok,
            verdict=verdict,
            error=None if error is None else str(error),
        )
    )
    if isinstance(verdict, SkipMX):
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(b"QUIT\r\n")
        await _aclose(writer)
        return None
    if error is not None:
        await _aclose(writer)
        plain = await _aplain(address, port, session)
        if plain is None:
            return None
        reader, writer = plain
    _log_connected(route, mx, (address, port), observation, plaintext=error is not None)
    return AsyncDelivery(
        **route.fields(DeliveryStatus.CONNECTED, f"connected to {mx.host} ({address})", verdict),
        reader=reader,
        writer=writer,
    )


async def _aplain(
    address: str, port: int, session: _Session
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    # The TLS attempt broke the connection; deliver as without TLS (RFC 8461 §5: testing/none).
    try:
        async with asyncio.timeout(session.remaining()):
            reader, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError):
        return None
    try:
        async with asyncio.timeout(session.remaining()):
            session.reader = ReplyReader()
            session.check_greeting(await _aread_reply(reader, session))
    except (OSError, EOFError, SMTPReplyError, TimeoutError, _SessionFailedError):
        await _aclose(writer)
        return None
    return reader, writer


async def _aread_reply(reader: asyncio.StreamReader, session: _Session) -> Reply:
    while True:
        reply = session.reader.next_reply()
        if reply is not None:
            return reply
        data = await reader.read(_CHUNK)
        if not data:
            raise EOFError
        session.reader.feed(data)


async def _aclose(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
