"""
DNS lookups over dnspython, sync and asyncio, turned into result values.

:class:`DNSResolver` and :class:`AsyncDNSResolver` answer the policy
machine's :class:`~smtpsts.actions.LookupTXT` with
:class:`~smtpsts.actions.TXTAnswer`, :class:`~smtpsts.actions.TXTNotFound`
or :class:`~smtpsts.actions.TXTFailure`, and look up the A/AAAA and MX
records the HTTPS fetcher and ``smtpsts check`` need. No dnspython exception
escapes: every outcome is a value (docs/architecture.md) --
except a local fault: when this host runs out of descriptors, buffers or
memory, the lookups raise :class:`~smtpsts.LocalResourceError` instead of
:class:`~smtpsts.actions.TXTFailure` or :class:`DNSFailure`, since that says
nothing about the remote domain (issue 17; RFC 8461 §10).

The translation from dnspython's answer or exception to a value lives in
plain functions shared by both classes, so the sync and asyncio adapters
differ only in ``await`` (as ``dns.resolver`` and ``dns.asyncresolver`` do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.io._faults import raise_local_fault
from smtpsts.io._resolver import (
    DEFAULT_LIFETIME,
    DEFAULT_TIMEOUT,
    make_async_resolver,
    make_resolver,
)

__all__ = [
    "AddressAnswer",
    "AsyncDNSResolver",
    "DNSFailure",
    "DNSNotFound",
    "DNSResolver",
    "MXAnswer",
    "MXRecord",
    "address_result",
    "mx_result",
    "txt_result",
]

_Outcome = dns.resolver.Answer | Exception
"""What one dnspython query gave: an answer, or the exception it raised."""


@attrs.frozen
class DNSNotFound:
    """
    A definite "no such records": NXDOMAIN or NODATA.

    Attributes:
        ttl: The negative TTL (SOA minimum, RFC 2308 §5) in seconds, if known.
        nxdomain: ``True`` for NXDOMAIN, ``False`` for NODATA.
    """

    ttl: int | None = None
    nxdomain: bool = False


@attrs.frozen
class DNSFailure:
    """
    The lookup gave no answer: SERVFAIL, REFUSED, timeout or a network error.

    Never the same as :class:`DNSNotFound` (STS-REC-17, STS-FETCH-21).

    Attributes:
        reason: What went wrong, in words.
    """

    reason: str


@attrs.frozen
class AddressAnswer:
    """
    The addresses of a host: AAAA records first, then A records.

    Attributes:
        addresses: IP addresses in text form.
        ttl: The smallest TTL of the answers, in seconds.
    """

    addresses: tuple[str, ...]
    ttl: int | None = None


@attrs.frozen(order=True)
class MXRecord:
    """
    One MX record (RFC 5321 §5.1).

    Attributes:
        preference: Lower is tried first.
        exchange: The mail exchanger, lower case, without the root dot
            (AMB-27); ``""`` for a null MX (RFC 7505).
    """

    preference: int
    exchange: str


@attrs.frozen
class MXAnswer:
    """
    The MX RRset of a domain, ordered by preference, then name.

    Attributes:
        records: The records.
        ttl: The RRset's TTL in seconds.
    """

    records: tuple[MXRecord, ...]
    ttl: int | None = None


# --------------------------------------------------------------------------- translation


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return f"timeout: {exc}"
    if isinstance(exc, dns.resolver.NoNameservers):
        # SERVFAIL or REFUSED from every server: dnspython's NoNameservers.
        return f"no nameserver answered: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _negative(exc: dns.resolver.NXDOMAIN) -> DNSNotFound:
    ttl: int | None = None
    responses: dict[dns.name.Name, dns.message.QueryMessage] = exc.kwargs.get("responses") or {}
    for response in responses.values():
        try:
            ttl = int(response.resolve_chaining().minimum_ttl)
        except dns.exception.DNSException:
            ttl = None
        break
    return DNSNotFound(ttl=ttl, nxdomain=True)


def _classify(outcome: _Outcome) -> dns.resolver.Answer | DNSNotFound | DNSFailure:
    """Turn one query's outcome into an answer with records or a result value."""
    if isinstance(outcome, dns.resolver.NXDOMAIN):
        return _negative(outcome)
    if isinstance(outcome, Exception):
        # Issue 17: a local fault is no DNS failure of the remote domain.
        raise_local_fault(outcome, operation="DNS lookup")
        return DNSFailure(_failure_reason(outcome))
    if outcome.rrset is None:
        # NODATA: the name exists, the type does not. The negative TTL comes
        # from the SOA in the authority section (RFC 2308 §5).
        return DNSNotFound(ttl=int(outcome.chaining_result.minimum_ttl))
    return outcome


def _ttl(answer: dns.resolver.Answer) -> int:
    # The smallest TTL along the CNAME chain and of the answer RRset.
    return int(answer.chaining_result.minimum_ttl)


def txt_result(outcome: _Outcome) -> TXTAnswer | TXTNotFound | TXTFailure:
    """
    Turn a TXT query's outcome into the machine's result value.

    Args:
        outcome: The dnspython answer, or the exception the query raised.

    Returns:
        :class:`TXTAnswer` with one item per RR, its character-strings
        joined (RFC 8461 §3.1, STS-REC-03; never ``rdata.to_text()``, which
        quotes and escapes); :class:`TXTNotFound` for NXDOMAIN or NODATA; :class:`TXTFailure`
        for everything else (STS-REC-17).

    Raises:
        smtpsts.LocalResourceError: ``outcome`` says this host ran out of
            descriptors, buffers or memory (issue 17).
    """
    classified = _classify(outcome)
    if isinstance(classified, DNSNotFound):
        return TXTNotFound(ttl=classified.ttl)
    if isinstance(classified, DNSFailure):
        return TXTFailure(classified.reason)
    records = tuple(b"".join(rdata.strings) for rdata in classified)
    # converter=tuple confuses mypy's attrs plugin about the element type.
    return TXTAnswer(records=records, ttl=_ttl(classified))  # type: ignore[arg-type]


def mx_result(outcome: _Outcome) -> MXAnswer | DNSNotFound | DNSFailure:
    """
    Turn an MX query's outcome into a result value.

    Args:
        outcome: The dnspython answer, or the exception the query raised.

    Returns:
        :class:`MXAnswer` sorted by preference, :class:`DNSNotFound` or
        :class:`DNSFailure`.

    Raises:
        smtpsts.LocalResourceError: ``outcome`` is a local resource fault.
    """
    classified = _classify(outcome)
    if isinstance(classified, DNSNotFound | DNSFailure):
        return classified
    records = sorted(
        MXRecord(
            rdata.preference,
            # RFC 7505: a null MX has the root as exchange; it is given as "".
            ""
            if rdata.exchange == dns.name.root
            else rdata.exchange.to_text(omit_final_dot=True).lower(),
        )
        for rdata in classified
    )
    return MXAnswer(records=tuple(records), ttl=_ttl(classified))


def address_result(
    outcomes: Sequence[_Outcome],
) -> AddressAnswer | DNSNotFound | DNSFailure:
    """
    Combine the AAAA and A queries' outcomes for one host.

    Args:
        outcomes: The outcomes, in the order the addresses should be tried.

    Returns:
        :class:`AddressAnswer` when any query gave addresses; otherwise
        :class:`DNSFailure` if any query failed (a failure is never read as
        "no such host", STS-FETCH-21), else :class:`DNSNotFound`.

    Raises:
        smtpsts.LocalResourceError: An outcome is a local resource fault.
    """
    addresses: list[str] = []
    ttls: list[int] = []
    failure: DNSFailure | None = None
    not_found: DNSNotFound | None = None
    for outcome in outcomes:
        classified = _classify(outcome)
        if isinstance(classified, DNSFailure):
            failure = failure or classified
        elif isinstance(classified, DNSNotFound):
            not_found = not_found or classified
        else:
            addresses.extend(rdata.address for rdata in classified)
            ttls.append(_ttl(classified))
    if addresses:
        return AddressAnswer(addresses=tuple(addresses), ttl=min(ttls))
    if failure is not None:
        return failure
    return not_found or DNSNotFound()


def _qname(name: str) -> dns.name.Name | Exception:
    try:
        return dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        return exc


def _checked(outcome: _Outcome, name: str, rdtype: dns.rdatatype.RdataType) -> _Outcome:
    # Issue 17: out of descriptors, buffers or memory is this host's fault,
    # never a DNS failure of the remote domain (nor a TXTFailure to store).
    if isinstance(outcome, Exception):
        raise_local_fault(
            outcome, operation=f"DNS {dns.rdatatype.to_text(rdtype)} lookup", host=name
        )
    return outcome


_QUERY_ERRORS = (dns.exception.DNSException, OSError, MemoryError)
"""What a query may raise that the adapters turn into a value (or a local fault)."""


# --------------------------------------------------------------------------- sync


class DNSResolver:
    """
    Synchronous DNS lookups for the policy machine and its helpers.

    Args:
        nameservers: ``IP[:PORT]`` settings; empty means the system
            configuration (``/etc/resolv.conf``).
        timeout: Seconds per query to one nameserver.
        lifetime: Seconds for a whole lookup.
        resolver: A ready dnspython resolver to use instead (the other
            arguments are then ignored).

    Raises:
        ValueError: A nameserver setting is malformed.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        resolver: dns.resolver.Resolver | None = None,
    ) -> None:
        self.resolver = resolver or make_resolver(nameservers, timeout=timeout, lifetime=lifetime)

    def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType, lifetime: float | None
    ) -> _Outcome:
        qname = _qname(name)
        if isinstance(qname, Exception):
            return qname
        try:
            return self.resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False, lifetime=lifetime
            )
        except _QUERY_ERRORS as exc:
            return exc

    def _lookup(
        self, name: str, rdtype: dns.rdatatype.RdataType, lifetime: float | None
    ) -> _Outcome:
        return _checked(self._query(name, rdtype, lifetime), name, rdtype)

    def lookup_txt(
        self, qname: str, *, lifetime: float | None = None
    ) -> TXTAnswer | TXTNotFound | TXTFailure:
        """
        Look up a TXT RRset (RFC 8461 §3.1), following CNAMEs (STS-REC-02).

        Args:
            qname: The name, e.g. ``_mta-sts.example.com.``.
            lifetime: Seconds for this lookup (the resolver's lifetime by default).

        Returns:
            The result value (see :func:`txt_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17): no verdict on ``qname``.
        """
        return txt_result(self._lookup(qname, dns.rdatatype.TXT, lifetime))

    def lookup_mx(
        self, domain: str, *, lifetime: float | None = None
    ) -> MXAnswer | DNSNotFound | DNSFailure:
        """
        Look up the MX RRset of a domain.

        Args:
            domain: The domain (absolute or relative to the root).
            lifetime: Seconds for this lookup.

        Returns:
            The result value (see :func:`mx_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of a resource.
        """
        return mx_result(self._lookup(domain, dns.rdatatype.MX, lifetime))

    def lookup_addresses(
        self, host: str, *, lifetime: float | None = None
    ) -> AddressAnswer | DNSNotFound | DNSFailure:
        """
        Look up the AAAA and A records of a host.

        Args:
            host: The host name.
            lifetime: Seconds for each of the two lookups.

        Returns:
            The result value (see :func:`address_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of a resource.
        """
        return address_result(
            [self._lookup(host, kind, lifetime) for kind in (dns.rdatatype.AAAA, dns.rdatatype.A)]
        )


# --------------------------------------------------------------------------- asyncio


class AsyncDNSResolver:
    """
    asyncio DNS lookups; the same contract as :class:`DNSResolver`.

    Args:
        nameservers: ``IP[:PORT]`` settings; empty means the system configuration.
        timeout: Seconds per query to one nameserver.
        lifetime: Seconds for a whole lookup.
        resolver: A ready dnspython asyncio resolver to use instead.

    Raises:
        ValueError: A nameserver setting is malformed.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        resolver: dns.asyncresolver.Resolver | None = None,
    ) -> None:
        self.resolver = resolver or make_async_resolver(
            nameservers, timeout=timeout, lifetime=lifetime
        )

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType, lifetime: float | None
    ) -> _Outcome:
        qname = _qname(name)
        if isinstance(qname, Exception):
            return qname
        try:
            return await self.resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False, lifetime=lifetime
            )
        except _QUERY_ERRORS as exc:
            return exc

    async def _lookup(
        self, name: str, rdtype: dns.rdatatype.RdataType, lifetime: float | None
    ) -> _Outcome:
        return _checked(await self._query(name, rdtype, lifetime), name, rdtype)

    async def lookup_txt(
        self, qname: str, *, lifetime: float | None = None
    ) -> TXTAnswer | TXTNotFound | TXTFailure:
        """
        Look up a TXT RRset; see :meth:`DNSResolver.lookup_txt`.

        Args:
            qname: The name, e.g. ``_mta-sts.example.com.``.
            lifetime: Seconds for this lookup.

        Returns:
            The result value (see :func:`txt_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of descriptors,
                buffers or memory (issue 17): no verdict on ``qname``.
        """
        return txt_result(await self._lookup(qname, dns.rdatatype.TXT, lifetime))

    async def lookup_mx(
        self, domain: str, *, lifetime: float | None = None
    ) -> MXAnswer | DNSNotFound | DNSFailure:
        """
        Look up the MX RRset of a domain; see :meth:`DNSResolver.lookup_mx`.

        Args:
            domain: The domain.
            lifetime: Seconds for this lookup.

        Returns:
            The result value (see :func:`mx_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of a resource.
        """
        return mx_result(await self._lookup(domain, dns.rdatatype.MX, lifetime))

    async def lookup_addresses(
        self, host: str, *, lifetime: float | None = None
    ) -> AddressAnswer | DNSNotFound | DNSFailure:
        """
        Look up the AAAA and A records of a host, concurrently.

        Args:
            host: The host name.
            lifetime: Seconds for each of the two lookups.

        Returns:
            The result value (see :func:`address_result`).

        Raises:
            smtpsts.LocalResourceError: This host ran out of a resource.
        """
        kinds = (dns.rdatatype.AAAA, dns.rdatatype.A)
        # Both queries run to the end (they return their exceptions), then a
        # local fault in either is raised (issue 17).
        outcomes = await asyncio.gather(*(self._query(host, kind, lifetime) for kind in kinds))
        return address_result(
            [_checked(outcome, host, kind) for outcome, kind in zip(outcomes, kinds, strict=True)]
        )
