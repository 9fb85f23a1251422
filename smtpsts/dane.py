"""
DANE for SMTP: TLSA records and matching (RFC 7672, RFC 7671).

:class:`TLSARecord` models one TLSA record; :func:`match_tlsa` decides whether
a peer chain is authenticated by a DNSSEC-validated TLSA RRset and returns a
:class:`DANECheck` carrying the TLS-RPT result type of any failure
(CONFORMANCE DANE-55, AMB-25).

Only DANE-TA(2) and DANE-EE(3) are supported (RFC 7672 §3.1.3; DANE-32).
DANE-TA chains are verified with :mod:`cryptography.x509.verification`, using
the matched certificate as the only trust anchor and one verifier per
reference identifier.

Pure: no I/O and no clock (``now`` is a parameter). The DNS lookups and their
DNSSEC status are the caller's business (:mod:`smtpsts.io`).

The module is over 600 lines because the record model and the matching
procedure of RFC 7672 §3 are read together: most of it is the private steps
of :func:`match_tlsa` (selectors, digests, the DANE-TA chain check and its
reference identifiers), which mean nothing on their own.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ._names import to_alabel
from ._vocab import ResultType
from .certs import MAX_CHAIN_LENGTH, ChainInput, classify_verification_error, load_chain
from .exceptions import DomainNameError, TLSASyntaxError, UsageError
from .reasons import Reason

__all__ = [
    "DANECheck",
    "MatchingType",
    "Selector",
    "TLSARdata",
    "TLSARecord",
    "TLSASyntaxError",
    "Usage",
    "match_tlsa",
    "tlsa_policy_strings",
]


class Usage(enum.IntEnum):
    """Certificate usage field (RFC 6698 §2.1.1, acronyms from RFC 7218)."""

    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(enum.IntEnum):
    """Selector field (RFC 6698 §2.1.2)."""

    CERT = 0
    SPKI = 1


class MatchingType(enum.IntEnum):
    """Matching type field (RFC 6698 §2.1.3)."""

    FULL = 0
    SHA2_256 = 1
    SHA2_512 = 2


_ACRONYMS = {
    # RFC 7218 §2: the acronyms may stand for the numbers in presentation form.
    "PKIX-TA": 0,
    "PKIX-EE": 1,
    "DANE-TA": 2,
    "DANE-EE": 3,
    "PRIVCERT": 255,
    "CERT": 0,
    "SPKI": 1,
    "PRIVSEL": 255,
    "FULL": 0,
    "SHA2-256": 1,
    "SHA2-512": 2,
    "PRIVMATCH": 255,
}

# Matching type -> digest length (0: Full, any length); RFC 6698 §2.1.3.
_DIGEST_SIZE = {0: 0, 1: 32, 2: 64}
_USABLE_USAGES = frozenset({2, 3})  # RFC 7672 §3.1.3: DANE-TA(2), DANE-EE(3)
_SELECTORS = frozenset({0, 1})
_HEX = re.compile(r"[0-9A-Fa-f]+\Z")
_NUMBER = re.compile(r"[0-9]{1,3}\Z")
_OCTET = attrs.validators.and_(
    attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(255)
)


class TLSARdata(Protocol):
    """What :meth:`TLSARecord.from_rdata` reads (``dns.rdtypes.ANY.TLSA.TLSA`` fits)."""

    @property
    def usage(self) -> int:
        """Certificate usage."""

    @property
    def selector(self) -> int:
        """Selector."""

    @property
    def mtype(self) -> int:
        """Matching type."""

    @property
    def cert(self) -> bytes:
        """Certificate association data."""


@attrs.frozen
class TLSARecord:
    """
    One TLSA record (RFC 6698 §2.1).

    Attributes:
        usage: Certificate usage; 2 (DANE-TA) and 3 (DANE-EE) are usable.
        selector: 0 = full certificate, 1 = SubjectPublicKeyInfo.
        mtype: Matching type: 0 = full, 1 = SHA2-256, 2 = SHA2-512.
        data: The certificate association data.
    """

    usage: int = attrs.field(validator=_OCTET)
    selector: int = attrs.field(validator=_OCTET)
    mtype: int = attrs.field(validator=_OCTET)
    data: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))

    @classmethod
    def from_rdata(cls, rdata: TLSARdata) -> TLSARecord:
        """
        Build a record from a dnspython TLSA rdata (or anything alike).

        Args:
            rdata: An object with ``usage``, ``selector``, ``mtype`` and ``cert``.

        Returns:
            The record.
        """
        return cls(int(rdata.usage), int(rdata.selector), int(rdata.mtype), bytes(rdata.cert))

    @classmethod
    def from_text(cls, text: str) -> TLSARecord:
        """
        Parse the presentation form ``"3 1 1 <hex>"`` (RFC 6698 §2.2).

        The three numbers may also be written as RFC 7218 acronyms
        (``DANE-EE SPKI SHA2-256``); the hex may contain white space.

        Args:
            text: The record's RDATA in presentation form.

        Returns:
            The record.

        Raises:
            TLSASyntaxError: The text is not a TLSA RDATA.
        """
        fields = text.split()
        if len(fields) < 4:
            raise TLSASyntaxError(
                f"TLSA record needs 4 fields, got {len(fields)}: {text!r}",
                conformance=("DANE-33",),
                reason="tlsa-syntax",
            )
        numbers = []
        for position, field in enumerate(fields[:3]):
            value = _ACRONYMS.get(field.upper())
            if value is None:
                if not _NUMBER.match(field) or int(field) > 255:
                    raise TLSASyntaxError(
                        f"TLSA field {position + 1} is not a number 0..255: {field!r}",
                        offset=text.find(field),
                        conformance=("DANE-33",),
                        reason="tlsa-syntax",
                    )
                value = int(field)
            numbers.append(value)
        hexdata = "".join(fields[3:])
        if not _HEX.match(hexdata) or len(hexdata) % 2:
            raise TLSASyntaxError(
                f"TLSA association data is not hex: {hexdata[:40]!r}",
                conformance=("DANE-33",),
                reason="tlsa-syntax",
            )
        return cls(numbers[0], numbers[1], numbers[2], bytes.fromhex(hexdata))

    def to_text(self) -> str:
        """
        The presentation form, ``"u s m HEX"`` (RFC 6698 §2.2), hex in upper case.

        This is the TLS-RPT ``policy-string`` element of the record
        (RFC 8460 §4.4).
        """
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex().upper()}"

    @property
    def unusable_reason(self) -> str | None:
        """
        Why this record cannot be used for SMTP, or ``None`` if it can.

        RFC 7672 §3.1.3 (DANE-32): only DANE-TA(2) and DANE-EE(3);
        RFC 7671 §2, §9 (DANE-33): unknown selector or matching type, a
        digest of the wrong length, or Full(0) data that does not parse.
        """
        # Plain ints below: this runs for every record of every check.
        if self.usage not in _USABLE_USAGES:
            return f"usage {self.usage} is not supported for SMTP"
        if self.selector not in _SELECTORS:
            return f"unknown selector {self.selector}"
        size = _DIGEST_SIZE.get(self.mtype)
        if size is None:
            return f"unknown matching type {self.mtype}"
        if size == 0:
            if _parse_full(self.selector, self.data) is None:
                return "full association data does not parse"
        elif len(self.data) != size:
            return f"digest of {len(self.data)} bytes for matching type {self.mtype}"
        return None

    @property
    def usable(self) -> bool:
        """Whether the record can authenticate an SMTP server (see :attr:`unusable_reason`)."""
        return self.unusable_reason is None


_FullData = x509.Certificate | PublicKeyTypes


@functools.lru_cache(maxsize=256)
def _parse_full(selector: int, data: bytes) -> _FullData | None:
    try:
        if selector == Selector.CERT:
            return x509.load_der_x509_certificate(data)
        return serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return None


@attrs.frozen
class DANECheck:
    """
    The verdict of matching a TLSA RRset against a peer chain (RFC 7672 §3).

    Attributes:
        ok: Whether delivery through this server may proceed over TLS:
            ``True`` when a usable record authenticated the server, and also
            when every record is unusable (RFC 7672 §2.2: TLS mandatory but
            unauthenticated; see :attr:`authenticated`).
        result_type: The TLS-RPT result type to report, ``None`` when the
            server was authenticated. ``tlsa-invalid`` when every record is
            unusable (even though ``ok`` is ``True``).
        detail: What happened, in words.
        reason: A short ``failure-reason-code`` (``dane-no-match``,
            ``all-unusable-records``, ...), ``None`` when authenticated.
        usable: Whether the RRset holds at least one usable record.
        matched: The record that authenticated the server, if any.
        authenticated: Whether a usable record authenticated the server.
        identity: For DANE-TA(2), the reference identifier that matched.
        chain: The authenticated chain, leaf first: the leaf alone for
            DANE-EE(3), leaf to trust anchor for DANE-TA(2).
    """

    ok: bool
    result_type: ResultType | None
    detail: str
    reason: str | None
    usable: bool
    matched: TLSARecord | None
    authenticated: bool = False
    identity: str | None = None
    chain: tuple[x509.Certificate, ...] = ()


def tlsa_policy_strings(records: Iterable[TLSARecord | TLSARdata]) -> tuple[str, ...]:
    """
    The TLS-RPT ``policy-string`` of a TLSA RRset: one ``"u s m HEX"`` per RR.

    RFC 8460 §4.4 ("policy-string" holds the TLSA records, RFC 6698 §2.3).

    Args:
        records: The RRset, as records or dnspython rdata.

    Returns:
        The strings, in the order given.
    """
    return tuple(_as_record(r).to_text() for r in records)


def _as_record(record: TLSARecord | TLSARdata | str) -> TLSARecord:
    if isinstance(record, TLSARecord):
        return record
    if isinstance(record, str):
        return TLSARecord.from_text(record)
    return TLSARecord.from_rdata(record)


def _select(records: Sequence[TLSARecord]) -> list[TLSARecord]:
    # RFC 7671 §9 / RFC 7672 §5 (DANE-35): per (usage, selector), keep the
    # Full(0) records and those of the strongest digest present.
    strongest: dict[tuple[int, int], int] = {}
    for r in records:
        key = (r.usage, r.selector)
        strongest[key] = max(strongest.get(key, 0), r.mtype)
    return [r for r in records if r.mtype in (0, strongest[(r.usage, r.selector)])]


def _association(cert: x509.Certificate, selector: int) -> bytes:
    # RFC 6698 §2.1.2: Cert(0) is the DER certificate, SPKI(1) the DER SubjectPublicKeyInfo.
    if selector == Selector.CERT:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == MatchingType.SHA2_256:
        return hashlib.sha256(data).digest()
    if mtype == MatchingType.SHA2_512:
        return hashlib.sha512(data).digest()
    return data


class _Matcher:
    """Association data of chain certificates, computed at most once each."""

    def __init__(self, chain: Sequence[x509.Certificate]) -> None:
        self.chain = chain
        self._cache: dict[tuple[int, int, int], bytes] = {}

    def matches(self, index: int, record: TLSARecord) -> bool:
        key = (index, record.selector, record.mtype)
        value = self._cache.get(key)
        if value is None:
            value = _digest(_association(self.chain[index], record.selector), record.mtype)
            self._cache[key] = value
        return value == record.data


# cryptography's verifier requires serverAuth in the EKU by default; RFC 7672
# has no EKU requirement, so DANE-TA private CAs may issue leaves without
# serverAuth; the rest of the WebPKI EE profile stays.
_DANE_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()
_PATH_ONLY_EE_POLICY = ExtensionPolicy.permit_all()


def _builder(anchor: x509.Certificate, now: datetime, ee_policy: ExtensionPolicy) -> PolicyBuilder:
    return (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(now)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=ee_policy)
    )


def _dns_ids(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def _cn_matches(cert: x509.Certificate, names: Sequence[str]) -> str | None:
    # RFC 7672 §3.2.3: the CN-ID, when used, follows the DNS-ID rules: a
    # wildcard only as the whole first label, matching exactly one label (DANE-45).
    for attribute in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        value = str(attribute.value)  # a CN is a string; str() only satisfies the type
        wildcard = value.startswith("*.")
        try:
            presented = to_alabel(value[2:] if wildcard else value)
        except DomainNameError:
            continue
        for name in names:
            if wildcard:
                head, _, tail = name.partition(".")
                if head and tail == presented:
                    return name
            elif name == presented:
                return name
    return None


def _verify_ta(
    record: TLSARecord,
    anchor: x509.Certificate,
    certs: Sequence[x509.Certificate],
    names: Sequence[str],
    now: datetime,
    *,
    cn_fallback: bool,
) -> DANECheck | None:
    """Verify ``certs`` up to ``anchor`` with name checks; None means "not this anchor"."""
    leaf, intermediates = certs[0], list(certs[1:])
    has_dns_id = bool(_dns_ids(leaf))
    leaf_error: str | None = None
    if has_dns_id:
        # RFC 7672 §3.2.2 (DANE-31, DANE-44): one verifier per reference identifier.
        builder = _builder(anchor, now, _DANE_EE_POLICY)
        for name in names:
            try:
                path = builder.build_server_verifier(x509.DNSName(name)).verify(leaf, intermediates)
            except VerificationError as exc:
                leaf_error = str(exc)
                continue
            return _authenticated(record, tuple(path), name, "DANE-TA(2)")
    # No name matched (or no DNS-ID at all): does the path itself hold?
    try:
        verified = (
            _builder(anchor, now, _PATH_ONLY_EE_POLICY)
            .build_client_verifier()
            .verify(leaf, intermediates)
        )
    except VerificationError as exc:
        result_type, reason = classify_verification_error(str(exc), certs, now)
        if result_type in (
            ResultType.CERTIFICATE_NOT_TRUSTED,
            ResultType.CERTIFICATE_HOST_MISMATCH,
        ):
            return None  # the chain does not lead to this anchor
        # DANE-55: an expired DANE-TA chain -> certificate-expired; weak keys etc.
        return _failed(
            result_type, reason, f"DANE-TA(2) chain to {record.to_text()[:24]}...: {exc}"
        )
    if leaf_error is not None:
        result_type, reason = classify_verification_error(leaf_error, certs, now)
        if result_type is not ResultType.CERTIFICATE_HOST_MISMATCH:
            # The path holds but the leaf broke the EE profile (e.g. a critical
            # SAN next to a non-empty subject): say so rather than "mismatch".
            return _failed(result_type, reason, f"DANE-TA(2) leaf rejected: {leaf_error}")
    if not has_dns_id and cn_fallback:
        # RFC 7672 §3.2.3, AMB-20: the CN-ID only when there is no DNS-ID.
        cn_name = _cn_matches(leaf, names)
        if cn_name is not None:
            return _authenticated(record, tuple(verified.chain), cn_name, "DANE-TA(2) via CN-ID")
    # DANE-44, DANE-55: a DANE-TA name mismatch -> certificate-host-mismatch.
    return _failed(
        ResultType.CERTIFICATE_HOST_MISMATCH,
        Reason.NO_MATCHING_DNS_ID if has_dns_id else Reason.NO_DNS_ID,
        f"DANE-TA(2) chain verified but no identifier matches {', '.join(names)}",
    )


def _authenticated(
    record: TLSARecord, chain: tuple[x509.Certificate, ...], name: str | None, how: str
) -> DANECheck:
    where = f" for {name}" if name else ""
    return DANECheck(
        ok=True,
        result_type=None,
        detail=f"authenticated by {how} record {record.to_text()}{where}",
        reason=None,
        usable=True,
        matched=record,
        authenticated=True,
        identity=name,
        chain=chain,
    )


def _failed(result_type: ResultType, reason: str, detail: str) -> DANECheck:
    return DANECheck(
        ok=False,
        result_type=result_type,
        detail=detail,
        reason=reason,
        usable=True,
        matched=None,
    )


def _signed_by(cert: x509.Certificate, key: PublicKeyTypes) -> bool:
    # RFC 7671 §5.2.3 (DANE-42): is the top certificate signed by the published key?
    signature, tbs = cert.signature, cert.tbs_certificate_bytes
    algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, tbs, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, tbs, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _anchors(
    record: TLSARecord, matcher: _Matcher, certs: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    # RFC 7672 §3.1.2, RFC 7671 §5.2 (DANE-40): a certificate the server sent
    # above the leaf matches the record and serves as the trust anchor.
    found = [certs[i] for i in range(1, len(certs)) if matcher.matches(i, record)]
    if record.mtype == MatchingType.FULL:
        full = _parse_full(record.selector, record.data)
        if isinstance(full, x509.Certificate):
            # RFC 7671 §5.2.2 (DANE-41): a "2 0 0" anchor need not be in the handshake.
            if full not in found:
                found.append(full)
        elif not found and full is not None and len(certs) > 1 and _signed_by(certs[-1], full):
            # RFC 7671 §5.2.3 (DANE-42): "2 1 0": the top certificate is signed
            # by the published key; it becomes the anchor for the rest of the chain.
            found.append(certs[-1])
    return found


def match_tlsa(
    records: Iterable[TLSARecord | TLSARdata | str],
    chain: ChainInput,
    *,
    names: Sequence[str],
    now: datetime,
    dane_ta_cn_fallback: bool = True,
) -> DANECheck:
    """
    Authenticate a peer chain with a secure TLSA RRset (RFC 7672 §3).

    Args:
        records: The DNSSEC-validated (secure) TLSA RRset, non-empty, as
            records, dnspython rdata or presentation text.
        chain: The peer's chain, leaf first (see :func:`smtpsts.certs.load_chain`).
        names: The DANE-TA reference identifiers (DANE-31): the TLSA base
            domain first, then the next-hop domain and its CNAME-expanded
            form where they apply. Any case, U-labels, trailing dots accepted.
        now: The verification time (aware); DANE-EE(3) ignores it (DANE-39).
        dane_ta_cn_fallback: Match the CN-ID when a DANE-TA leaf has no
            DNS-ID at all (AMB-20).

    Returns:
        The verdict; see :class:`DANECheck` for the all-unusable case.

    Raises:
        UsageError: ``records`` or ``names`` is empty, or ``now`` is naive.
        TLSASyntaxError: A text record does not parse.
        DomainNameError: A reference identifier is not a host name.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be an aware datetime (UTC)")
    rrset = [_as_record(r) for r in records]
    if not rrset:
        # DANE-05: an empty RRset means "no DANE"; there is nothing to match.
        raise UsageError("match_tlsa needs a non-empty TLSA RRset")
    references = tuple(dict.fromkeys(to_alabel(n) for n in names))
    if not references:
        raise UsageError("match_tlsa needs at least one reference identifier")
    usable = _select([r for r in rrset if r.usable])
    if not usable:
        # RFC 7672 §2.2, RFC 7671 §10.3 (DANE-13, DANE-55): TLS is mandatory
        # but unauthenticated; reported as tlsa-invalid.
        return DANECheck(
            ok=True,
            result_type=ResultType.TLSA_INVALID,
            detail=f"all {len(rrset)} TLSA records are unusable: TLS required, not authenticated",
            reason=Reason.ALL_UNUSABLE_RECORDS,
            usable=False,
            matched=None,
        )
    try:
        certs = load_chain(chain)
    except ValueError as exc:
        return _failed(
            ResultType.VALIDATION_FAILURE,
            Reason.BAD_CERTIFICATE,
            f"peer certificate does not parse: {exc}",
        )
    if not certs:
        return _failed(
            ResultType.VALIDATION_FAILURE, Reason.NO_CERTIFICATE, "the peer sent no certificate"
        )
    if len(certs) > MAX_CHAIN_LENGTH:
        return _failed(
            ResultType.VALIDATION_FAILURE,
            Reason.CHAIN_TOO_LONG,
            f"the peer sent {len(certs)} certificates (limit {MAX_CHAIN_LENGTH})",
        )
    matcher = _Matcher(certs)
    # RFC 7672 §3.1.1, RFC 7671 §5.1 (DANE-37..39): DANE-EE matches the leaf
    # alone; no name check, no dates, no path.
    for record in usable:
        if record.usage == Usage.DANE_EE and matcher.matches(0, record):
            return _authenticated(record, (certs[0],), None, "DANE-EE(3)")
    failure: DANECheck | None = None
    for record in usable:
        if record.usage != Usage.DANE_TA:
            continue
        for anchor in _anchors(record, matcher, certs):
            outcome = _verify_ta(
                record, anchor, certs, references, now, cn_fallback=dane_ta_cn_fallback
            )
            if outcome is None:
                continue
            if outcome.ok:
                return outcome
            failure = failure or outcome
    if failure is not None:
        return failure
    # AMB-25 (DANE-46, DANE-55): nothing matched -> validation-failure, dane-no-match.
    return _failed(
        ResultType.VALIDATION_FAILURE,
        Reason.DANE_NO_MATCH,
        f"the chain matches none of the {len(usable)} usable TLSA records",
    )
