"""
DNSSEC-aware lookups for DANE (RFC 7672 §2.1, §2.2), sync and asyncio.

smtpsts does not validate DNSSEC itself: like Postfix, it asks a validating
resolver and trusts the AD bit of the reply -- but only from a resolver the
operator trusts, by default one on a loopback address (RFC 4035 §4.9.3,
RFC 6698 §4.1; DANE-01, DANE-02). Every lookup ends in a value, never an
exception -- but for a local fault: out of descriptors, buffers or memory,
a lookup raises :class:`~smtpsts.LocalResourceError` rather than report a
``TEMPFAIL`` of the remote zone (issue 17):

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
exception dnspython raised), and :func:`smtpsts.tlsa.tlsa_procedure` (in the
core, next to :mod:`smtpsts.dane`) is a generator that yields the
:class:`~smtpsts.tlsa.Query` it needs next and is sent the answers, the way
dnspython's ``_Resolution`` separates logic from I/O. :class:`DNSSECResolver`
and :class:`AsyncDNSSECResolver` only run it with
:func:`~smtpsts.io._drive.drive` / :func:`~smtpsts.io._drive.adrive`. The
value types (:class:`DNSStatus`, :class:`DNSSECAnswer`, :class:`~smtpsts.tlsa.MXRecord`,
:class:`Query`, :class:`TLSALookup`) live in :mod:`smtpsts.tlsa` and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

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
from smtpsts.dane import TLSARecord
from smtpsts.io._drive import adrive, drive
from smtpsts.io._faults import raise_local_fault
from smtpsts.io._resolver import (
    DEFAULT_LIFETIME,
    DEFAULT_TIMEOUT,
    is_loopback,
    make_async_resolver,
)
from smtpsts.io._resolver import make_resolver as _make_resolver
from smtpsts.tlsa import DNSSECAnswer, DNSStatus, MXRecord, Query, TLSALookup, tlsa_procedure

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
        An address string, :class:`~smtpsts.tlsa.MXRecord`, :class:`smtpsts.dane.TLSARecord`
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
        The answer; never raises for any reply or remote failure.

    Raises:
        smtpsts.LocalResourceError: ``outcome`` says this host ran out of
            descriptors, buffers or memory (issue 17): no ``TEMPFAIL`` for it.
    """
    if isinstance(outcome, dns.message.Message):
        return _from_response(outcome, qname, rdtype, trusted)
    raise_local_fault(outcome, operation=f"DNS {rdtype} lookup", host=qname)
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


def _trusted(resolver: dns.resolver.BaseResolver, trust_ad: bool | None) -> bool:
    if trust_ad is not None:
        return trust_ad
    # DANE-02: by default only a resolver on loopback is trusted to validate.
    return bool(resolver.nameservers) and all(
        is_loopback(ns if isinstance(ns, str) else getattr(ns, "address", ""))
        for ns in resolver.nameservers
    )


_DRIVE_ERRORS = (dns.exception.DNSException, OSError, MemoryError)


_R = TypeVar("_R", dns.resolver.Resolver, dns.asyncresolver.Resolver)


class _ValidatingResolver(Generic[_R]):
    # The settings both DNSSEC resolvers take (documented on each).

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        trust_ad: bool | None = None,
    ) -> None:
        self.resolver: _R = self._make(nameservers, timeout=timeout, lifetime=lifetime, dnssec=True)
        self.trusted = _trusted(self.resolver, trust_ad)

    def _make(self, nameservers: Sequence[str], **settings: Any) -> _R:
        raise NotImplementedError


class DNSSECResolver(_ValidatingResolver[dns.resolver.Resolver]):
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

    def _make(self, nameservers: Sequence[str], **settings: Any) -> dns.resolver.Resolver:
        return _make_resolver(nameservers, **settings)

    def lookup(self, name: str, rdtype: str) -> DNSSECAnswer[Any]:
        """
        Look up one RRset and classify it.

        Args:
            name: The owner name (A-label, no trailing dot; underscores allowed).
            rdtype: ``"A"``, ``"AAAA"``, ``"MX"``, ``"TLSA"``, ``"CNAME"``, ...

        Returns:
            The answer; failures are values (``TEMPFAIL`` / ``BOGUS``).

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
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
            The answer; ``records`` are :class:`~smtpsts.tlsa.MXRecord` values.

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
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

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
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

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17).
        """
        procedure = tlsa_procedure(host, port=port, next_hop_names=next_hop_names)
        return drive(procedure, lambda query: self.lookup(query.qname, query.rdtype))


class AsyncDNSSECResolver(_ValidatingResolver[dns.asyncresolver.Resolver]):
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

    def _make(self, nameservers: Sequence[str], **settings: Any) -> dns.asyncresolver.Resolver:
        return make_async_resolver(nameservers, **settings)

    async def lookup(self, name: str, rdtype: str) -> DNSSECAnswer[Any]:
        """
        Look up one RRset and classify it (see :meth:`DNSSECResolver.lookup`).

        Args:
            name: The owner name.
            rdtype: The record type.

        Returns:
            The answer (failures are values).

        Raises:
            smtpsts.LocalResourceError: A local fault (issue 17).
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
        The MX RRset of ``domain`` (asyncio); see :meth:`DNSSECResolver.lookup_mx`.

        Args:
            domain: The next-hop domain.

        Returns:
            The answer (:class:`~smtpsts.tlsa.MXRecord` records).

        Raises:
            smtpsts.LocalResourceError: A local fault (issue 17).
        """
        return await self.lookup(to_alabel(domain), "MX")

    async def lookup_address(self, host: str, rdtype: str = "A") -> DNSSECAnswer[str]:
        """
        The A or AAAA RRset of ``host`` (asyncio); see :meth:`DNSSECResolver.lookup_address`.

        Args:
            host: The host name.
            rdtype: ``"A"`` or ``"AAAA"``.

        Returns:
            The answer (addresses as text).

        Raises:
            smtpsts.LocalResourceError: A local fault (issue 17).
        """
        return await self.lookup(to_alabel(host), rdtype)

    async def lookup_tlsa(
        self, host: str, *, port: int = 25, next_hop_names: Sequence[str] = ()
    ) -> TLSALookup:
        """
        The TLSA records of an SMTP server (asyncio), by :func:`~smtpsts.tlsa.tlsa_procedure`.

        Args:
            host: The MX host name.
            port: The destination port (DANE-26).
            next_hop_names: DANE-TA reference names (secure MX only, DANE-31).

        Returns:
            What :meth:`DNSSECResolver.lookup_tlsa` returns.

        Raises:
            smtpsts.LocalResourceError: A local fault (issue 17).
        """
        procedure = tlsa_procedure(host, port=port, next_hop_names=next_hop_names)
        return await adrive(procedure, lambda query: self.lookup(query.qname, query.rdtype))
