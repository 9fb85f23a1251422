"""
DNSSEC-aware lookups for DANE (RFC 7672 §2.1, §2.2), sync and asyncio.

smtpsts does not validate DNSSEC itself: like Postfix, it asks a validating
resolver and trusts the AD bit of the reply -- but only from a resolver the
operator trusts, by default one on a loopback address (RFC 4035 §4.9.3,
RFC 6698 §4.1; DANE-01, DANE-02). Every lookup ends in a value, never an
exception:

===========================  ===================================================
:attr:`DNSStatus.SECURE`     records, validated (AD from a trusted resolver)
:attr:`DNSStatus.INSECURE`   records, not validated (unsigned zone, or the AD
                             bit came from an untrusted resolver)
:attr:`DNSStatus.NOT_FOUND`  NXDOMAIN or NODATA; ``secure`` says whether the
                             denial was validated (DANE-05)
:attr:`DNSStatus.BOGUS`      SERVFAIL from the validating resolver (bogus or
                             indeterminate; DANE-03), with any Extended DNS
                             Error text in ``detail``
:attr:`DNSStatus.TEMPFAIL`   timeout, network error, refused, malformed
===========================  ===================================================

The logic lives in pure code: :func:`interpret` reads one reply (or the
exception dnspython raised), and :func:`tlsa_procedure` is a generator that
yields the :class:`Query` it needs next and is sent the answers, the way
dnspython's ``_Resolution`` separates logic from I/O. :class:`DNSSECResolver`
and :class:`AsyncDNSSECResolver` only drive it.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from typing import Any, Generic, TypeVar

import attrs
import dns.asyncresolver
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.dane import TLSARecord
from smtpsts.io._resolver import (
    DEFAULT_LIFETIME,
    DEFAULT_TIMEOUT,
    is_address,
    is_loopback,
    make_async_resolver,
)
from smtpsts.io._resolver import make_resolver as _make_resolver

__all__ = [
    "MAX_CNAME_CHAIN",
    "AsyncDNSSECResolver",
    "DNSSECAnswer",
    "DNSSECResolver",
    "DNSStatus",
    "MXRecord",
    "Query",
    "TLSALookup",
    "convert_rdata",
    "interpret",
    "tlsa_procedure",
]

MAX_CNAME_CHAIN = 8
"""DANE-11 (RFC 7672 §2.1.3): CNAME chains longer than this are a lookup failure."""

T = TypeVar("T")


class DNSStatus(enum.StrEnum):
    """The DNSSEC status of one lookup (RFC 7672 §2.1.1, RFC 4033 §5)."""

    SECURE = "secure"
    """Records exist and validated."""

    INSECURE = "insecure"
    """Records exist but did not validate as secure (unsigned, or untrusted AD)."""

    NOT_FOUND = "not-found"
    """NXDOMAIN or NODATA: a definite "no such records" (DANE-05)."""

    BOGUS = "bogus"
    """The validating resolver answered SERVFAIL: bogus or indeterminate (DANE-03)."""

    TEMPFAIL = "tempfail"
    """No usable answer: timeout, network error, REFUSED, malformed reply."""


@attrs.frozen
class MXRecord:
    """
    One MX record.

    Attributes:
        preference: The MX preference (lower is tried first).
        exchange: The MX host, A-label, lower case, no trailing dot (``""``
            for the RFC 7505 null MX ``.``).
    """

    preference: int
    exchange: str


@attrs.frozen
class DNSSECAnswer(Generic[T]):
    """
    The outcome of one DNS query, with its DNSSEC status.

    Attributes:
        status: See :class:`DNSStatus`.
        qname: The name asked for (A-label, no trailing dot).
        rdtype: The record type asked for (``"TLSA"``).
        records: The records (for ``SECURE`` and ``INSECURE``): addresses as
            text for A/AAAA, :class:`MXRecord`, :class:`smtpsts.dane.TLSARecord`,
            target names for CNAME.
        secure: Whether the answer (records or denial) validated: ``True``
            for ``SECURE`` and for a validated ``NOT_FOUND``.
        nxdomain: ``NOT_FOUND`` because the name does not exist (else NODATA).
        canonical_name: The name the records belong to after following
            CNAMEs (``qname`` when there was no alias).
        cnames: The alias names followed, in order (``qname`` first when it
            is an alias; empty when it is not).
        ttl: The TTL of the records, if any.
        detail: What happened, in words (for ``BOGUS`` this includes the
            Extended DNS Errors the resolver sent, e.g. ``EDE 6 (DNSSEC Bogus)``).
    """

    status: DNSStatus
    qname: str
    rdtype: str
    records: tuple[T, ...] = ()
    secure: bool = False
    nxdomain: bool = False
    canonical_name: str = ""
    cnames: tuple[str, ...] = ()
    ttl: int | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Whether the lookup failed (``BOGUS`` or ``TEMPFAIL``): delivery must wait (DANE-06)."""
        return self.status in (DNSStatus.BOGUS, DNSStatus.TEMPFAIL)


@attrs.frozen
class Query:
    """
    One query :func:`tlsa_procedure` needs answered.

    Attributes:
        qname: The name (A-label, no trailing dot).
        rdtype: ``"A"``, ``"AAAA"``, ``"CNAME"`` or ``"TLSA"``.
    """

    qname: str
    rdtype: str


@attrs.frozen
class TLSALookup:
    """
    The TLSA records of one SMTP server, found per RFC 7672 §2.2.2-§2.2.3.

    Attributes:
        status: ``SECURE``: a secure TLSA RRset was found (DANE applies;
            ``records`` may still all be unusable, DANE-13). ``INSECURE`` or
            ``NOT_FOUND``: DANE does not apply (opportunistic TLS, DANE-14;
            ``NOT_FOUND`` also when the host has no address records, DANE-24).
            ``BOGUS`` / ``TEMPFAIL``: a query failed; the server must not be
            used (DANE-08).
        host: The server host name asked about (A-label).
        port: The destination port (the ``_<port>`` label, DANE-26).
        records: The TLSA records when ``SECURE``.
        base_domain: The TLSA base domain when ``SECURE`` (also the SNI to
            send, DANE-30).
        names: The reference identifiers for DANE-TA(2) name checks: the
            base domain first, then the next-hop names the caller passed
            (DANE-31).
        candidates: The candidate base domains, in the order tried (DANE-25).
        secure: ``NOT_FOUND`` only: whether every denial validated.
        result_type: ``dnssec-invalid`` for ``BOGUS`` (DANE-55), else ``None``.
        detail: What happened, in words.
        answers: Every answer the procedure used, in order.
    """

    status: DNSStatus
    host: str
    port: int
    records: tuple[TLSARecord, ...] = ()
    base_domain: str | None = None
    names: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    secure: bool = False
    result_type: ResultType | None = None
    detail: str = ""
    answers: tuple[DNSSECAnswer[Any], ...] = ()


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _edes(response: dns.message.Message) -> str:
    # Message.extended_errors() arrived in dnspython 2.7; our floor is 2.6.1, so read
    # the EDE options (RFC 8914, option code 15) from the OPT record directly.
    options = [opt for opt in response.options if opt.otype == dns.edns.OptionType.EDE]
    return "; ".join(opt.to_text() for opt in options)


def convert_rdata(rdata: dns.rdata.Rdata) -> Any:
    """
    Turn one dnspython rdata into the value :class:`DNSSECAnswer` carries.

    Args:
        rdata: An A, AAAA, MX, TLSA or CNAME rdata (others give their text).

    Returns:
        An address string, :class:`MXRecord`, :class:`smtpsts.dane.TLSARecord`
        or a target name.
    """
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(rdata.address)  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.MX:
        return MXRecord(rdata.preference, _text(rdata.exchange))  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.TLSA:
        return TLSARecord.from_rdata(rdata)  # type: ignore[arg-type]
    if rdtype == dns.rdatatype.CNAME:
        return _text(rdata.target)  # type: ignore[attr-defined]
    return rdata.to_text()


def _find(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
            return rrset
    return None


def _from_response(
    response: dns.message.Message, qname: str, rdtype: str, trusted: bool
) -> DNSSECAnswer[Any]:
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        edes = _edes(response)
        detail = dns.rcode.to_text(rcode) + (f" ({edes})" if edes else "")
        # RFC 7672 §2.1.1: a validating resolver answers SERVFAIL for bogus
        # and indeterminate data; both count as bogus (DANE-03). From a
        # resolver we do not trust to validate, SERVFAIL is just a failure.
        if rcode == dns.rcode.SERVFAIL and trusted:
            return DNSSECAnswer(DNSStatus.BOGUS, qname, rdtype, canonical_name=qname, detail=detail)
        return DNSSECAnswer(DNSStatus.TEMPFAIL, qname, rdtype, canonical_name=qname, detail=detail)
    # DANE-02: the AD bit counts only from a trusted resolver.
    ad = trusted and bool(response.flags & dns.flags.AD)
    want = dns.rdatatype.from_text(rdtype)
    name = dns.name.from_text(qname)
    cnames: list[str] = []
    seen = {name}
    while True:
        rrset = _find(response, name, want)
        if rrset is not None or want == dns.rdatatype.CNAME:
            break
        alias = _find(response, name, dns.rdatatype.CNAME)
        if alias is None:
            break
        cnames.append(_text(name))
        # RFC 7672 §2.1.3 (DANE-11): bounded chains; a loop is a failure too.
        name = alias[0].target
        if len(cnames) > MAX_CNAME_CHAIN or name in seen:
            return DNSSECAnswer(
                DNSStatus.TEMPFAIL,
                qname,
                rdtype,
                canonical_name=qname,
                cnames=tuple(cnames),
                detail=f"CNAME chain longer than {MAX_CNAME_CHAIN} or looping",
            )
        seen.add(name)
    common = {"canonical_name": _text(name), "cnames": tuple(cnames)}
    if rrset is None or rcode == dns.rcode.NXDOMAIN:
        # RFC 7672 §2.1.1 (DANE-05): NXDOMAIN / NODATA is "no records", not an error.
        nx = rcode == dns.rcode.NXDOMAIN
        return DNSSECAnswer(
            DNSStatus.NOT_FOUND,
            qname,
            rdtype,
            secure=ad,
            nxdomain=nx,
            detail=("secure " if ad else "insecure ") + ("NXDOMAIN" if nx else "NODATA"),
            **common,  # type: ignore[arg-type]
        )
    return DNSSECAnswer(
        DNSStatus.SECURE if ad else DNSStatus.INSECURE,
        qname,
        rdtype,
        records=tuple(convert_rdata(rd) for rd in rrset),
        secure=ad,
        ttl=rrset.ttl,
        detail="AD set by a trusted resolver" if ad else "not validated",
        **common,  # type: ignore[arg-type]
    )


def interpret(
    outcome: dns.message.Message | Exception, qname: str, rdtype: str, *, trusted: bool
) -> DNSSECAnswer[Any]:
    """
    Read one reply, or the exception dnspython raised instead, as a :class:`DNSSECAnswer`.

    Pure: this is the whole of the sync and the asyncio lookups' logic.

    Args:
        outcome: The reply message, or the exception of the lookup
            (``dns.resolver.NXDOMAIN``, ``NoNameservers``, ``LifetimeTimeout``,
            any other ``DNSException`` or ``OSError``).
        qname: The name asked for (A-label, no trailing dot).
        rdtype: The type asked for, as text.
        trusted: Whether the resolver is trusted to validate (its AD bit
            and its SERVFAIL mean something).

    Returns:
        The answer; never raises for any reply or lookup exception.
    """
    if isinstance(outcome, dns.message.Message):
        return _from_response(outcome, qname, rdtype, trusted)
    if isinstance(outcome, dns.resolver.NXDOMAIN):
        responses = list(outcome.responses().values())  # type: ignore[no-untyped-call]
        if responses:
            return _from_response(responses[0], qname, rdtype, trusted)
    if isinstance(outcome, dns.resolver.NoNameservers):
        # Each entry: (nameserver, tcp, port, error, response or None).
        errors = outcome.kwargs.get("errors") or []
        for *_, response in errors:
            # A reply dnspython gave up on for its rcode (SERVFAIL, REFUSED...)
            # is read for its verdict and EDEs; a NOERROR/NXDOMAIN reply it
            # rejected as malformed stays a failure (DANE-06).
            if isinstance(response, dns.message.Message) and response.rcode() not in (
                dns.rcode.NOERROR,
                dns.rcode.NXDOMAIN,
            ):
                return _from_response(response, qname, rdtype, trusted)
        detail = "; ".join(f"{e[0]}: {e[3]}" for e in errors) or "no nameservers"
        return DNSSECAnswer(DNSStatus.TEMPFAIL, qname, rdtype, canonical_name=qname, detail=detail)
    if isinstance(outcome, dns.exception.Timeout):
        detail = "timeout"
    else:
        detail = f"{type(outcome).__name__}: {outcome}"
    return DNSSECAnswer(DNSStatus.TEMPFAIL, qname, rdtype, canonical_name=qname, detail=detail)


def _dedupe(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def tlsa_procedure(
    host: str, *, port: int = 25, next_hop_names: Sequence[str] = ()
) -> Generator[Query, DNSSECAnswer[Any], TLSALookup]:
    """
    Find the TLSA records and base domain of one SMTP server (RFC 7672 §2.2.2, §2.2.3).

    A generator: it yields each :class:`Query` it needs and must be sent the
    :class:`DNSSECAnswer` for it; its return value (``StopIteration.value``)
    is the :class:`TLSALookup`. The steps:

    1. A, then AAAA when A has no records: the address lookup comes before
       any TLSA query (DANE-22); none means unreachable (DANE-24).
    2. Without a CNAME, an insecure address answer ends it: no TLSA query
       (DANE-23). With a CNAME chain that is secure throughout, the
       candidates are the expanded name, then the original; if the chain is
       insecure somewhere, a CNAME query tells whether the *initial* CNAME
       is secure, which leaves the original name as the only candidate
       (DANE-10, DANE-25).
    3. ``_<port>._tcp.<candidate>`` TLSA for each candidate in turn; the
       first secure RRset wins (DANE-26, DANE-27). A CNAME at the owner
       name is followed by the resolver and does not change the base domain
       (DANE-28). Any failure on the way fails the whole lookup (DANE-08,
       DANE-09).

    Args:
        host: The server host name (the MX host), any form ``to_alabel``
            takes; an IP address (also ``[IP]``) ends it at once as
            ``INSECURE`` without any query (DANE-15).
        port: The destination TCP port.
        next_hop_names: Extra DANE-TA reference identifiers: the next-hop
            domain (and its CNAME-expanded form) when the MX lookup was
            secure; nothing when it was insecure (DANE-31).

    Returns:
        The lookup result (as the generator's return value).

    Raises:
        smtpsts.DomainNameError: ``host`` is not a valid host name (raised
            on the first ``next()``).
    """
    literal = host.strip().removeprefix("[").removesuffix("]")
    if is_address(literal):
        # RFC 7672 §2.2 (DANE-15): no DANE for address literals.
        return TLSALookup(
            DNSStatus.INSECURE,
            literal,
            port,
            detail="DANE does not apply to an address literal",
        )
    host = to_alabel(host)
    extra = [to_alabel(n) for n in next_hop_names]
    answers: list[DNSSECAnswer[Any]] = []

    def done(status: DNSStatus, detail: str, **kw: Any) -> TLSALookup:
        result_type = ResultType.DNSSEC_INVALID if status is DNSStatus.BOGUS else None
        return TLSALookup(
            status,
            host,
            port,
            result_type=result_type,
            detail=detail,
            answers=tuple(answers),
            **kw,
        )

    address = yield Query(host, "A")
    answers.append(address)
    if address.status is DNSStatus.NOT_FOUND and not address.nxdomain:
        address = yield Query(host, "AAAA")
        answers.append(address)
    if address.failed:
        return done(address.status, f"address lookup of {host} failed: {address.detail}")
    if address.status is DNSStatus.NOT_FOUND:
        # RFC 7672 §2.2.2 (DANE-24): no address records, the host is unreachable.
        return done(
            DNSStatus.NOT_FOUND,
            f"{host} has no address records",
            secure=address.secure,
        )
    if not address.cnames:
        if address.status is DNSStatus.INSECURE:
            # RFC 7672 §2.2.2 (DANE-23): insecure host, no TLSA query.
            return done(DNSStatus.INSECURE, f"address records of {host} are insecure")
        candidates = [host]
    elif address.status is DNSStatus.SECURE:
        # RFC 7672 §2.2.2 "Secure CNAME": expanded name first, then the original.
        candidates = [address.canonical_name, host]
    else:
        initial = yield Query(host, "CNAME")
        answers.append(initial)
        if initial.failed:
            return done(initial.status, f"CNAME lookup of {host} failed: {initial.detail}")
        if initial.status is not DNSStatus.SECURE:
            # RFC 7672 §2.2.2 "Insecure CNAME" with an insecure initial CNAME.
            return done(DNSStatus.INSECURE, f"the CNAME at {host} is insecure")
        # RFC 7672 §2.2.2: secure initial CNAME, insecure target: original name only.
        candidates = [host]
    candidates = list(_dedupe(candidates))
    all_secure = True
    for base in candidates:
        owner = f"_{port}._tcp.{base}"
        tlsa = yield Query(owner, "TLSA")
        answers.append(tlsa)
        if tlsa.failed:
            # RFC 7672 §2.2 (DANE-08): a failed TLSA query makes the server unusable.
            return done(
                tlsa.status,
                f"TLSA lookup of {owner} failed: {tlsa.detail}",
                candidates=tuple(candidates),
            )
        if tlsa.status is DNSStatus.SECURE:
            return done(
                DNSStatus.SECURE,
                f"secure TLSA RRset at {owner}",
                records=tlsa.records,
                base_domain=base,
                names=_dedupe([base, *extra]),
                candidates=tuple(candidates),
                secure=True,
            )
        all_secure = all_secure and tlsa.secure
    # RFC 7672 §2.2.3 (DANE-27): no secure TLSA RRset anywhere: no DANE.
    status = DNSStatus.NOT_FOUND if all_secure else DNSStatus.INSECURE
    return done(
        status,
        f"no secure TLSA records for {host} (tried {', '.join(candidates)})",
        candidates=tuple(candidates),
        secure=all_secure,
    )


def _trusted(resolver: dns.resolver.BaseResolver, trust_ad: bool | None) -> bool:
    if trust_ad is not None:
        return trust_ad
    # DANE-02: by default only a resolver on loopback is trusted to validate.
    return bool(resolver.nameservers) and all(
        is_loopback(ns if isinstance(ns, str) else getattr(ns, "address", ""))
        for ns in resolver.nameservers
    )


_DRIVE_ERRORS = (dns.exception.DNSException, OSError)


class DNSSECResolver:
    """
    DNSSEC-aware lookups over a validating resolver (synchronous).

    Args:
        nameservers: ``IP[:PORT]`` of the validating resolver(s); empty
            means the system configuration (``/etc/resolv.conf``).
        timeout: Seconds per query per nameserver.
        lifetime: Seconds per lookup, all retries included.
        trust_ad: Trust the resolver's AD bit. ``None`` (default): trusted
            exactly when every nameserver is a loopback address (DANE-02).

    Attributes:
        resolver: The dnspython resolver (``RD|AD`` flags, EDNS, no cache).
        trusted: Whether the AD bit and SERVFAIL are taken as DNSSEC verdicts.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        trust_ad: bool | None = None,
    ) -> None:
        self.resolver = _make_resolver(nameservers, timeout=timeout, lifetime=lifetime, dnssec=True)
        self.trusted = _trusted(self.resolver, trust_ad)

    def lookup(self, name: str, rdtype: str) -> DNSSECAnswer[Any]:
        """
        Look up one RRset and classify it.

        Args:
            name: The owner name (A-label, no trailing dot; underscores allowed).
            rdtype: ``"A"``, ``"AAAA"``, ``"MX"``, ``"TLSA"``, ``"CNAME"``, ...

        Returns:
            The answer; failures are values (``TEMPFAIL`` / ``BOGUS``).
        """
        outcome: dns.message.Message | Exception
        try:
            qname = dns.name.from_text(name)
            outcome = self.resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False
            ).response
        except _DRIVE_ERRORS as e:
            outcome = e
        return interpret(outcome, name, rdtype, trusted=self.trusted)

    def lookup_mx(self, domain: str) -> DNSSECAnswer[MXRecord]:
        """
        The MX RRset of ``domain`` with its security status (RFC 7672 §2.2.1).

        Args:
            domain: The next-hop domain.

        Returns:
            The answer; ``records`` are :class:`MXRecord` values.
        """
        return self.lookup(to_alabel(domain), "MX")

    def lookup_address(self, host: str, rdtype: str = "A") -> DNSSECAnswer[str]:
        """
        The A (or AAAA) RRset of ``host`` with its security status.

        Args:
            host: The host name.
            rdtype: ``"A"`` or ``"AAAA"``.

        Returns:
            The answer; ``records`` are addresses in text form.
        """
        return self.lookup(to_alabel(host), rdtype)

    def lookup_tlsa(
        self, host: str, *, port: int = 25, next_hop_names: Sequence[str] = ()
    ) -> TLSALookup:
        """
        Find the TLSA records of an SMTP server; see :func:`tlsa_procedure`.

        Args:
            host: The server (MX) host name.
            port: The destination port.
            next_hop_names: Next-hop names for DANE-TA checks (secure MX only).

        Returns:
            The lookup result.
        """
        procedure = tlsa_procedure(host, port=port, next_hop_names=next_hop_names)
        try:
            query = next(procedure)
            while True:
                query = procedure.send(self.lookup(query.qname, query.rdtype))
        except StopIteration as stop:
            result: TLSALookup = stop.value
            return result


class AsyncDNSSECResolver:
    """
    DNSSEC-aware lookups over a validating resolver (asyncio).

    The same arguments, attributes and results as :class:`DNSSECResolver`;
    the lookups are coroutines.

    Args:
        nameservers: ``IP[:PORT]`` of the validating resolver(s).
        timeout: Seconds per query per nameserver.
        lifetime: Seconds per lookup.
        trust_ad: Trust the resolver's AD bit (``None``: loopback only).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        trust_ad: bool | None = None,
    ) -> None:
        self.resolver = make_async_resolver(
            nameservers, timeout=timeout, lifetime=lifetime, dnssec=True
        )
        self.trusted = _trusted(self.resolver, trust_ad)

    async def lookup(self, name: str, rdtype: str) -> DNSSECAnswer[Any]:
        """
        Look up one RRset and classify it (see :meth:`DNSSECResolver.lookup`).

        Args:
            name: The owner name.
            rdtype: The record type.

        Returns:
            The answer.
        """
        outcome: dns.message.Message | Exception
        try:
            qname = dns.name.from_text(name)
            answer = await self.resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False
            )
            outcome = answer.response
        except _DRIVE_ERRORS as e:
            outcome = e
        return interpret(outcome, name, rdtype, trusted=self.trusted)

    async def lookup_mx(self, domain: str) -> DNSSECAnswer[MXRecord]:
        """
        The MX RRset of ``domain`` with its security status.

        Args:
            domain: The next-hop domain.

        Returns:
            The answer.
        """
        return await self.lookup(to_alabel(domain), "MX")

    async def lookup_address(self, host: str, rdtype: str = "A") -> DNSSECAnswer[str]:
        """
        The A (or AAAA) RRset of ``host`` with its security status.

        Args:
            host: The host name.
            rdtype: ``"A"`` or ``"AAAA"``.

        Returns:
            The answer.
        """
        return await self.lookup(to_alabel(host), rdtype)

    async def lookup_tlsa(
        self, host: str, *, port: int = 25, next_hop_names: Sequence[str] = ()
    ) -> TLSALookup:
        """
        Find the TLSA records of an SMTP server; see :func:`tlsa_procedure`.

        Args:
            host: The server (MX) host name.
            port: The destination port.
            next_hop_names: Next-hop names for DANE-TA checks (secure MX only).

        Returns:
            The lookup result.
        """
        procedure = tlsa_procedure(host, port=port, next_hop_names=next_hop_names)
        try:
            query = next(procedure)
            while True:
                query = procedure.send(await self.lookup(query.qname, query.rdtype))
        except StopIteration as stop:
            result: TLSALookup = stop.value
            return result
