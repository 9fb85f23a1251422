"""
The TLSA procedure for one SMTP server, as sans-I/O code (RFC 7672 §2.2.2, §2.2.3).

:func:`tlsa_procedure` is a generator conversation (issue 11): it yields each
:class:`Query` it needs (A, AAAA, CNAME, TLSA), is sent the
:class:`DNSSECAnswer` for it, and returns the :class:`TLSALookup` -- which
records, which base domain, which reference identifiers (CONFORMANCE
DANE-08 .. DANE-31). Matching those records against a peer chain is
:mod:`smtpsts.dane`'s business; asking a validating resolver and reading
its AD bit is the adapter's (:mod:`smtpsts.io.dnssec`, which runs this
procedure with :func:`~smtpsts.io._drive.drive` and
:func:`~smtpsts.io._drive.adrive` and re-exports every name here).

Pure: no I/O, no clock; the values are the vocabulary shared by the
procedure, the DNSSEC adapter and the delivery code.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Generator, Sequence
from typing import Any, Generic, TypeVar

import attrs

from smtpsts._names import to_alabel
from smtpsts._vocab import ResultType
from smtpsts.dane import TLSARecord

__all__ = [
    "DNSSECAnswer",
    "DNSStatus",
    "MXRecord",
    "Query",
    "TLSALookup",
    "tlsa_procedure",
]

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
    if _is_address(literal):
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


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
