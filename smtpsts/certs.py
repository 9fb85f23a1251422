"""
Certificate checks for MTA-STS (RFC 8461 §4.2, RFC 9525).

:func:`check_certificate` verifies a peer chain (leaf first) against a
:class:`TrustStore` for one host name at a given time and returns a
:class:`CertificateCheck` carrying the TLS-RPT result type of any failure.

Chain building, validity periods and DNS-ID/wildcard matching are done by
:mod:`cryptography.x509.verification`; this module only prepares the inputs
and maps the verifier's failures to RFC 8460 result types, in one table
(:data:`FAILURE_TABLE`).

Pure: no I/O, no clock (``now`` is a parameter) and no :mod:`ssl`. Reading
trust bundles from files is in :mod:`smtpsts.io.truststore`.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import attrs
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ._names import to_alabel
from ._vocab import ResultType
from .exceptions import UsageError

__all__ = [
    "FAILURE_TABLE",
    "MAX_CHAIN_LENGTH",
    "CertificateCheck",
    "ChainInput",
    "TrustStore",
    "check_certificate",
    "classify_verification_error",
    "describe_certificate",
    "describe_failure",
    "load_chain",
]

log = logging.getLogger(__name__)

MAX_CHAIN_LENGTH = 16
"""The most certificates accepted from a peer (a size cap on network input)."""

_SHOWN_NAMES = 8  # DNS names listed per certificate, then "and N more"
_SHOWN_CHARS = 200  # characters of one subject, issuer or name
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)

ChainInput = Sequence[x509.Certificate | bytes | str] | bytes | str
"""A peer chain: certificates, DER or PEM blobs, or one PEM bundle."""


@attrs.frozen
class CertificateCheck:
    """
    The verdict of a certificate check of one TLS peer.

    Attributes:
        ok: Whether the chain is trusted, valid at ``now`` and names the host.
        result_type: The TLS-RPT result type of the failure, ``None`` when ``ok``.
        detail: What happened, in words.
        reason: A short ``failure-reason-code`` (for example ``not-yet-valid``),
            ``None`` when ``ok``.
        chain: The verified chain, leaf first, anchor last (empty on failure).
        identity: The reference identifier that matched (STS-CERT-11), ``None``
            on failure.
    """

    ok: bool
    result_type: ResultType | None
    detail: str
    reason: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    identity: str | None = None


@attrs.frozen
class _Failure:
    pattern: re.Pattern[str]
    result_type: ResultType
    reason: str


def _rule(pattern: str, result_type: ResultType, reason: str) -> _Failure:
    return _Failure(re.compile(pattern), result_type, reason)


FAILURE_TABLE: tuple[_Failure, ...] = (
    # RFC 8461 §4.2 / STS-CERT-01: outside the validity period. The verifier
    # uses one text for expired and not-yet-valid; classify_verification_error
    # tells them apart by the dates (CONFORMANCE §4.4: reason not-yet-valid).
    _rule(r"cert is not valid at validation time", ResultType.CERTIFICATE_EXPIRED, "expired"),
    # STS-CERT-03, STS-CERT-08, STS-CERT-09: no DNS-ID matches the host.
    _rule(
        r"leaf certificate has no matching subjectAltName",
        ResultType.CERTIFICATE_HOST_MISMATCH,
        "no-matching-dns-id",
    ),
    # STS-CERT-04: no SAN at all; the CN is never used.
    _rule(
        r"leaf server certificate has no subjectAltName",
        ResultType.CERTIFICATE_HOST_MISMATCH,
        "no-dns-id",
    ),
    # STS-CERT-02, STS-CERT-16: chain, CA and name-constraint errors.
    _rule(
        r"all candidates exhausted with no interior errors",
        ResultType.CERTIFICATE_NOT_TRUSTED,
        "unknown-ca",
    ),
    _rule(r"signature does not match", ResultType.CERTIFICATE_NOT_TRUSTED, "bad-signature"),
    _rule(r"name constraint", ResultType.CERTIFICATE_NOT_TRUSTED, "name-constraints"),
    _rule(r"path length constraint", ResultType.CERTIFICATE_NOT_TRUSTED, "path-length"),
    _rule(r"exceeds max depth", ResultType.CERTIFICATE_NOT_TRUSTED, "chain-too-deep"),
    _rule(r"basicConstraints\.cA", ResultType.CERTIFICATE_NOT_TRUSTED, "not-a-ca"),
    # STS-CERT-16: anything else is validation-failure with a reason code.
    _rule(r"required EKU not found", ResultType.VALIDATION_FAILURE, "bad-eku"),
    _rule(r"key is too weak", ResultType.VALIDATION_FAILURE, "weak-key"),
)
"""
How ``VerificationError`` messages map to TLS-RPT result types, first match
wins; anything else is ``validation-failure`` with reason ``x509-error``.
``tests/test_certs.py`` pins every pattern against the installed cryptography.
"""


def classify_verification_error(
    message: str, chain: Sequence[x509.Certificate], now: datetime
) -> tuple[ResultType, str]:
    """
    Map a ``VerificationError`` message to a result type and reason code.

    Args:
        message: ``str()`` of the error.
        chain: The chain that was verified, leaf first.
        now: The verification time (aware).

    Returns:
        ``(result_type, reason)`` from :data:`FAILURE_TABLE`, or
        ``(VALIDATION_FAILURE, "x509-error")`` when no row matches.
    """
    for row in FAILURE_TABLE:
        if row.pattern.search(message):
            if row.reason == "expired" and _not_yet_valid(message, chain, now):
                # CONFORMANCE §4.4: certificate-expired, reason not-yet-valid;
                # never reported as "expired".
                return row.result_type, "not-yet-valid"
            if row.reason == "chain-too-deep" and any(c.subject == c.issuer for c in chain[1:]):
                # A self-signed root sent by the peer and not trusted: the
                # verifier keeps building through it until its depth limit.
                return row.result_type, "unknown-ca"
            return row.result_type, row.reason
    return ResultType.VALIDATION_FAILURE, "x509-error"


def _not_yet_valid(message: str, chain: Sequence[x509.Certificate], now: datetime) -> bool:
    # The verifier checks the leaf's dates before anything else; "candidates
    # exhausted" means a certificate above the leaf was out of its period.
    if not message.startswith("validation failed: candidates exhausted"):
        return chain[0].not_valid_before_utc > now
    upper = chain[1:]
    if any(c.not_valid_after_utc < now for c in upper):
        return False
    return any(c.not_valid_before_utc > now for c in upper)


def _printable(text: str) -> str:
    # Text from a peer's certificate, safe and short for logs and terminals.
    shown = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "..."


def _dns_names(cert: x509.Certificate) -> list[str] | None:
    # The DNS-IDs, or None without a subjectAltName extension.
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a malformed extension from the peer
        return []
    return [_printable(n) for n in san.get_values_for_type(x509.DNSName)]


def _name(name: x509.Name) -> str:
    try:
        text = name.rfc4514_string()
    except ValueError:  # pragma: no cover -- cryptography parses names it can print
        text = "?"
    return _printable(text) or "(empty)"


def describe_certificate(cert: x509.Certificate) -> str:
    """
    One certificate in plain words: subject, DNS names, issuer and validity dates.

    Everything from the certificate is made printable and cut to a length
    fit for a log line (it comes from the network).

    Args:
        cert: The certificate.

    Returns:
        For example ``subject CN=mx.example.com; names mx.example.com,
        *.example.com; issued by CN=Example CA; valid 2026-01-01 to
        2026-04-01 (UTC)``.
    """
    names = _dns_names(cert)
    if names is None:
        shown = "no subjectAltName"
    elif not names:
        shown = "no DNS names"
    else:
        more = len(names) - _SHOWN_NAMES
        shown = ", ".join(names[:_SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
    begin = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M")
    end = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M")
    return (
        f"subject {_name(cert.subject)}; names {shown}; issued by {_name(cert.issuer)}; "
        f"valid {begin} to {end} (UTC)"
    )


def describe_failure(
    reason: str, chain: Sequence[x509.Certificate], host: str, now: datetime
) -> str:
    """
    Why a chain failed, in plain words, naming the certificate concerned.

    Args:
        reason: The ``failure-reason-code`` from :func:`classify_verification_error`.
        chain: The peer's chain, leaf first (not empty).
        host: The name that was expected (the reference identifier).
        now: The verification time.

    Returns:
        A sentence for people (check output, logs, ``deliver`` reasons and
        TLS-RPT ``failure-reason-code`` details); no library text in it.
    """
    leaf = chain[0]
    if reason in ("expired", "not-yet-valid"):
        late = [c for c in chain if c.not_valid_after_utc < now or c.not_valid_before_utc > now]
        cert = late[0] if late else leaf
        which = "the certificate" if cert is leaf else "a CA certificate of the chain"
        if reason == "expired":
            when = f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        else:
            when = f"is not yet valid: only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        return f"{which} {when} ({describe_certificate(cert)})"
    if reason == "no-matching-dns-id":
        return f"the certificate is not valid for {host} ({describe_certificate(leaf)})"
    if reason == "no-dns-id":
        return (
            f"the certificate has no subjectAltName, so it names no host (the subject's CN "
            f"is never used, RFC 9525 §6.3); expected {host} ({describe_certificate(leaf)})"
        )
    if reason == "unknown-ca":
        last = chain[-1]
        if last.subject == last.issuer:
            start = "the certificate is self-signed" if last is leaf else "the chain ends at a CA"
            return f"{start} that is not trusted ({describe_certificate(last)})"
        return (
            f"the chain does not lead to a trusted CA: its last certificate is issued by "
            f"{_name(last.issuer)}, which is not in the trust store ({describe_certificate(leaf)})"
        )
    words = {
        "bad-signature": "a signature in the chain does not verify",
        "name-constraints": "a CA's name constraints exclude the name",
        "path-length": "the chain is longer than a CA allows",
        "chain-too-deep": "the chain is too long",
        "not-a-ca": "a certificate used as a CA is not a CA",
        "bad-eku": "the certificate is not for TLS servers (extended key usage)",
        "weak-key": "a key in the chain is too weak",
    }
    what = words.get(reason, "the chain does not verify")
    return f"{what}; expected {host} ({describe_certificate(leaf)})"


class TrustStore:
    """
    Trust anchors for PKIX checks, with the verifier's store built once.

    Build it once and reuse it for every check: building the underlying
    :class:`cryptography.x509.verification.Store` per check is wasted work.

    Args:
        certificates: The root certificates. Duplicates are dropped.

    Attributes:
        certificates: The anchors, in the order first given.
        store: The cryptography ``Store``, or ``None`` when there are no anchors.
    """

    __slots__ = ("certificates", "store")

    certificates: tuple[x509.Certificate, ...]
    store: Store | None

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        certs = tuple(dict.fromkeys(certificates))
        for cert in certs:
            if not isinstance(cert, x509.Certificate):
                raise TypeError(f"TrustStore takes x509.Certificate objects, not {cert!r}")
        self.certificates = certs
        self.store = Store(list(certs)) if certs else None

    def __len__(self) -> int:
        return len(self.certificates)

    def __repr__(self) -> str:
        return f"<TrustStore with {len(self.certificates)} certificates>"

    @classmethod
    def from_pem(
        cls, data: bytes | str, *, source: str = "PEM data", skip_deprecated: bool = False
    ) -> TrustStore:
        """
        Build a store from PEM text, tolerantly.

        Each ``CERTIFICATE`` block is parsed on its own; a block that does not
        parse is skipped with a logged warning. Roots that cryptography
        accepts only with a ``CryptographyDeprecationWarning`` (serial number
        0, as in Go Daddy and Starfield G2 roots of the usual bundles) are kept
        by default, because the verifier still uses them as anchors; pass
        ``skip_deprecated=True`` to drop them (logged as a warning).

        Args:
            data: PEM text; anything outside ``CERTIFICATE`` blocks is ignored.
            source: Where the data came from, for log messages.
            skip_deprecated: Drop roots that raise a deprecation warning.

        Returns:
            The trust store (possibly empty).
        """
        raw = data.encode("ascii", "replace") if isinstance(data, str) else data
        certs: list[x509.Certificate] = []
        for index, block in enumerate(_PEM_BLOCK.findall(raw)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CryptographyDeprecationWarning)
                try:
                    cert = x509.load_pem_x509_certificate(block)
                except ValueError as exc:
                    log.warning("%s: skipping certificate %d: %s", source, index, exc)
                    continue
            deprecated = [
                w for w in caught if issubclass(w.category, CryptographyDeprecationWarning)
            ]
            if deprecated:
                if skip_deprecated:
                    log.warning(
                        "%s: skipping deprecated certificate %d (%s): %s",
                        source,
                        index,
                        cert.subject.rfc4514_string(),
                        deprecated[0].message,
                    )
                    continue
                log.debug(
                    "%s: certificate %d is deprecated: %s", source, index, deprecated[0].message
                )
            certs.append(cert)
        return cls(certs)


def load_chain(chain: ChainInput) -> tuple[x509.Certificate, ...]:
    """
    Turn a peer chain into certificate objects.

    Args:
        chain: Certificates, DER or PEM blobs (a PEM blob may hold several
            certificates), or one PEM bundle as ``bytes`` or ``str``.

    Returns:
        The certificates, in the order given.

    Raises:
        ValueError: A blob is not a parsable certificate.
        UsageError: An element is of the wrong type.
    """
    items: Sequence[x509.Certificate | bytes | str] = (
        [chain] if isinstance(chain, bytes | str) else chain
    )
    out: list[x509.Certificate] = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item)
        elif isinstance(item, bytes | str):
            blob = item.encode("ascii", "replace") if isinstance(item, str) else item
            if b"-----BEGIN" in blob:
                out.extend(x509.load_pem_x509_certificates(blob))
            else:
                out.append(x509.load_der_x509_certificate(blob))
        else:
            raise UsageError(f"a chain holds certificates, DER or PEM, not {type(item).__name__}")
    return tuple(out)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be an aware datetime (UTC)")


def _as_store(trust: TrustStore | Iterable[x509.Certificate]) -> TrustStore:
    return trust if isinstance(trust, TrustStore) else TrustStore(trust)


def check_certificate(
    chain: ChainInput,
    host: str,
    *,
    trust: TrustStore | Iterable[x509.Certificate],
    now: datetime,
    revoked: Callable[[tuple[x509.Certificate, ...]], bool] | None = None,
) -> CertificateCheck:
    """
    Check an MX (or MTA-STS policy host) certificate chain (RFC 8461 §4.2).

    The chain must lead to an anchor of ``trust``, every certificate on the
    path must be valid at ``now``, and a DNS-ID of the leaf must match
    ``host`` (RFC 9525 §6.3; the CN is never used, STS-CERT-04).

    Args:
        chain: The peer's chain, leaf first (see :func:`load_chain`).
        host: The reference identifier: the MX host name or
            ``mta-sts.<domain>``; any case, U-label or A-label, with or
            without a trailing dot (STS-CERT-07, STS-CERT-18).
        trust: A :class:`TrustStore` (reuse one), or root certificates.
        now: The verification time, an aware datetime.
        revoked: Optional revocation hook (STS-CERT-13, off by default): called
            with the verified path (leaf first) after a successful check; a
            true answer turns the verdict into ``certificate-not-trusted``
            with reason ``revoked``. OCSP/CRL fetching is the hook's business.

    Returns:
        The verdict; never raises for bad network data. A certificate that
        is not yet valid is reported, as docs/tlsrpt-results.md says, with
        result type ``certificate-expired`` but reason ``not-yet-valid``
        (never reason ``expired``, and the detail says "not yet valid").

    Raises:
        UsageError: ``now`` is naive, or ``chain`` holds a wrong type.
        DomainNameError: ``host`` is not a valid host name.
    """
    _require_aware(now)
    name = to_alabel(host)  # STS-CERT-07, STS-CERT-18: A-label, no root dot.
    try:
        certs = load_chain(chain)
    except ValueError as exc:
        return CertificateCheck(
            ok=False,
            result_type=ResultType.VALIDATION_FAILURE,
            detail=f"peer certificate does not parse: {exc}",
            reason="bad-certificate",
        )
    if not certs:
        return CertificateCheck(
            ok=False,
            result_type=ResultType.VALIDATION_FAILURE,
            detail="the peer sent no certificate",
            reason="no-certificate",
        )
    if len(certs) > MAX_CHAIN_LENGTH:
        return CertificateCheck(
            ok=False,
            result_type=ResultType.VALIDATION_FAILURE,
            detail=f"the peer sent {len(certs)} certificates (limit {MAX_CHAIN_LENGTH})",
            reason="chain-too-long",
        )
    store = _as_store(trust).store
    if store is None:
        return CertificateCheck(
            ok=False,
            result_type=ResultType.CERTIFICATE_NOT_TRUSTED,
            detail="the trust store is empty",
            reason="empty-trust-store",
        )
    # STS-CERT-10: the reference identifier comes from the caller, never the chain.
    verifier = PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName(name))
    try:
        path = verifier.verify(certs[0], list(certs[1:]))
    except VerificationError as exc:
        message = str(exc)
        result_type, reason = classify_verification_error(message, certs, now)
        # The verifier's text holds library reprs: people get plain words
        # (issue 12 item 3); the text stays in the debug log.
        log.debug("verifier for %s: %s", name, message)
        detail = describe_failure(reason, certs, name, now)
        return CertificateCheck(ok=False, result_type=result_type, detail=detail, reason=reason)
    verified = tuple(path)
    if revoked is not None and revoked(verified):
        # RFC 8461 §4.2 (STS-CERT-13): revocation checking MAY be done.
        return CertificateCheck(
            ok=False,
            result_type=ResultType.CERTIFICATE_NOT_TRUSTED,
            detail=f"a certificate of the chain for {name} is revoked",
            reason="revoked",
        )
    return CertificateCheck(
        ok=True,
        result_type=None,
        detail=f"chain of {len(verified)} verified for {name}",
        chain=verified,
        identity=name,
    )
