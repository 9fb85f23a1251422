"""
TLS helpers for SMTP: contexts, the peer chain, and OpenSSL verdicts as TLS-RPT result types.

Two ways to check an MX's certificate:

1. **Core check** (preferred): handshake with :func:`opportunistic_context`
   (no verification by OpenSSL), take :func:`peer_chain` and give it to
   :func:`smtpsts.certs.check_certificate` or :func:`smtpsts.dane.match_tlsa`.
   The full chain needs Python >= 3.13 (``get_unverified_chain``); on older
   versions CPython's private ``_sslobj.get_unverified_chain`` is used when
   present, else only the leaf is available (docs/architecture.md).
2. **OpenSSL check**: handshake with :func:`pkix_context` built from the same
   trust store; a failure raises :class:`ssl.SSLCertVerificationError`,
   which :func:`classify_tls_error` maps through :data:`VERIFY_CODE_TABLE` to
   the same result types the core uses (STS-CERT-16).
"""

from __future__ import annotations

import re
import ssl
from _ssl import ENCODING_DER as _ENCODING_DER  # CPython's private chain API
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smtpsts._vocab import ResultType
from smtpsts.certs import TrustStore
from smtpsts.io._faults import raise_local_fault

__all__ = [
    "ALERT_CODES",
    "VERIFY_CODE_TABLE",
    "classify_tls_error",
    "classify_verify_code",
    "opportunistic_context",
    "peer_chain",
    "pkix_context",
]

_NT = ResultType.CERTIFICATE_NOT_TRUSTED
_VF = ResultType.VALIDATION_FAILURE

VERIFY_CODE_TABLE: Mapping[int, tuple[ResultType, str]] = {
    # OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) -> RFC 8460 §4.3.1.
    # STS-CERT-01: outside the validity period; CONFORMANCE §4.4 reports a
    # not-yet-valid certificate as certificate-expired with its own reason,
    # never as "expired" (the same choice as smtpsts.certs).
    10: (ResultType.CERTIFICATE_EXPIRED, "expired"),  # CERT_HAS_EXPIRED
    9: (ResultType.CERTIFICATE_EXPIRED, "not-yet-valid"),  # CERT_NOT_YET_VALID
    # STS-CERT-03: no DNS-ID matches the MX host name.
    62: (ResultType.CERTIFICATE_HOST_MISMATCH, "no-matching-dns-id"),  # HOSTNAME_MISMATCH
    # STS-CERT-02, STS-CERT-16: chain, CA and name-constraint errors.
    2: (_NT, "unknown-ca"),  # UNABLE_TO_GET_ISSUER_CERT
    7: (_NT, "bad-signature"),  # CERT_SIGNATURE_FAILURE
    18: (_NT, "self-signed"),  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: (_NT, "self-signed-in-chain"),  # SELF_SIGNED_CERT_IN_CHAIN
    20: (_NT, "unknown-ca"),  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: (_NT, "unknown-ca"),  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    22: (_NT, "chain-too-deep"),  # CERT_CHAIN_TOO_LONG
    23: (_NT, "revoked"),  # CERT_REVOKED (STS-CERT-13)
    24: (_NT, "invalid-issuer"),  # NO_ISSUER_PUBLIC_KEY (INVALID_CA before OpenSSL 3)
    25: (_NT, "path-length"),  # PATH_LENGTH_EXCEEDED
    27: (_NT, "untrusted"),  # CERT_UNTRUSTED
    28: (_NT, "rejected"),  # CERT_REJECTED
    47: (_NT, "name-constraints"),  # PERMITTED_VIOLATION
    48: (_NT, "name-constraints"),  # EXCLUDED_VIOLATION
    79: (_NT, "not-a-ca"),  # INVALID_CA (OpenSSL 3)
    # STS-CERT-16: anything else is validation-failure with a reason code.
    26: (_VF, "bad-eku"),  # INVALID_PURPOSE
    66: (_VF, "weak-key"),  # EE_KEY_TOO_SMALL
    67: (_VF, "weak-key"),  # CA_KEY_TOO_SMALL
    68: (_VF, "weak-signature"),  # CA_MD_TOO_WEAK
}
"""
``ssl.SSLCertVerificationError.verify_code`` -> ``(result type, reason)``;
any other code is ``validation-failure`` with reason ``x509-error-<code>``.
"""

ALERT_CODES: Mapping[str, int] = {
    # RFC 8446 §6 AlertDescription (names as OpenSSL spells them, lower-cased).
    "close_notify": 0,
    "unexpected_message": 10,
    "bad_record_mac": 20,
    "record_overflow": 22,
    "handshake_failure": 40,
    "bad_certificate": 42,
    "unsupported_certificate": 43,
    "certificate_revoked": 44,
    "certificate_expired": 45,
    "certificate_unknown": 46,
    "illegal_parameter": 47,
    "unknown_ca": 48,
    "access_denied": 49,
    "decode_error": 50,
    "decrypt_error": 51,
    "protocol_version": 70,
    "insufficient_security": 71,
    "internal_error": 80,
    "inappropriate_fallback": 86,
    "user_cancelled": 90,
    "missing_extension": 109,
    "unsupported_extension": 110,
    "unrecognized_name": 112,
    "bad_certificate_status_response": 113,
    "unknown_psk_identity": 115,
    "certificate_required": 116,
    "no_application_protocol": 120,
}
"""TLS alert names -> alert numbers, for ``tls-remote-alert-NN`` reasons (CONFORMANCE §4.4)."""

# OpenSSL reason strings for received alerts: SSLV3_ALERT_*, TLSV1_ALERT_*,
# TLSV13_ALERT_*, and a few bare TLSV1_* names (TLSV1_UNRECOGNIZED_NAME).
_ALERT_REASON = re.compile(r"(?:SSLV3_ALERT|TLSV1_ALERT|TLSV13_ALERT|TLSV1)_([A-Z_]+)\Z")


def classify_verify_code(code: int) -> tuple[ResultType, str]:
    """
    Map an OpenSSL certificate verification code to a TLS-RPT result type.

    Args:
        code: ``ssl.SSLCertVerificationError.verify_code`` (``X509_V_ERR_*``).

    Returns:
        ``(result_type, reason)`` from :data:`VERIFY_CODE_TABLE`, or
        ``(validation-failure, "x509-error-<code>")``.
    """
    return VERIFY_CODE_TABLE.get(code, (_VF, f"x509-error-{code}"))


def classify_tls_error(exc: BaseException) -> tuple[ResultType, str]:
    """
    Map an exception from a TLS handshake to a TLS-RPT result type and reason code.

    Args:
        exc: What the handshake raised: ``ssl.SSLCertVerificationError``
            (OpenSSL rejected the certificate), ``ssl.SSLError`` (alert,
            protocol error), ``TimeoutError``, or another ``OSError``.

    Returns:
        ``(result_type, reason)``: certificate errors per
        :data:`VERIFY_CODE_TABLE`; everything else is ``validation-failure``
        with reason ``io-timeout-during-handshake``,
        ``tls-remote-alert-NN``, ``tls-error-<openssl-reason>`` or
        ``io-error-during-handshake`` (CONFORMANCE §4.4).

    Raises:
        smtpsts.LocalResourceError: ``exc`` says this host ran out of
            descriptors, buffers or memory: that is no TLS failure of the
            server, and gets no result type (issue 17).
    """
    raise_local_fault(exc, operation="TLS handshake")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return classify_verify_code(exc.verify_code)
    if isinstance(exc, TimeoutError):
        return _VF, "io-timeout-during-handshake"
    if isinstance(exc, ssl.SSLError):
        reason = str(getattr(exc, "reason", None) or "")
        match = _ALERT_REASON.match(reason)
        if match and match.group(1).lower() in ALERT_CODES:
            return _VF, f"tls-remote-alert-{ALERT_CODES[match.group(1).lower()]}"
        if isinstance(exc, ssl.SSLEOFError) or not reason:
            return _VF, "tls-connection-closed"
        return _VF, "tls-error-" + reason.lower().replace("_", "-")
    return _VF, "io-error-during-handshake"


def _load_certificates(ders: Iterable[bytes]) -> tuple[x509.Certificate, ...]:
    chain: list[x509.Certificate] = []
    for der in ders:
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError:
            # A certificate OpenSSL took but cryptography cannot parse: keep
            # the chain up to it, so that the leaf stays first.
            break
    return tuple(chain)


def peer_chain(tls: ssl.SSLSocket | ssl.SSLObject) -> tuple[x509.Certificate, ...]:
    """
    The certificates the peer sent, leaf first, as ``cryptography`` objects.

    Works after a handshake with any verify mode. Uses
    ``get_unverified_chain()`` (public from Python 3.13, private in
    CPython's ``_ssl`` since 3.10); where neither exists, only the leaf
    (``getpeercert(binary_form=True)``) is returned.

    Args:
        tls: A connected ``ssl.SSLSocket`` or an ``ssl.SSLObject`` (asyncio:
            ``transport.get_extra_info("ssl_object")``).

    Returns:
        The chain as sent (unverified), leaf first; empty if the peer sent
        no certificate or the leaf cannot be parsed.
    """
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        raw = getter() or []
        return _load_certificates(
            item if isinstance(item, bytes) else item.public_bytes(_ENCODING_DER) for item in raw
        )
    leaf = tls.getpeercert(binary_form=True)
    return _load_certificates([leaf] if leaf else [])


def _base_context(minimum_version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # RFC 8461 §7.2, RFC 7672 §8.1 (STS-CERT-15, DANE-48): TLS 1.2 and 1.3.
    context.minimum_version = minimum_version
    return context


def pkix_context(
    trust: TrustStore | Iterable[x509.Certificate] | None = None,
    *,
    cafile: str | None = None,
    capath: str | None = None,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """
    A client context in which OpenSSL verifies the chain and the host name (MTA-STS).

    Use it where the core cannot see the full chain; map its
    ``SSLCertVerificationError`` with :func:`classify_tls_error`. The host
    name is matched against DNS-IDs only, never the subject CN (STS-CERT-04).
    The server name (SNI, STS-CERT-14) is what ``wrap_socket`` /
    ``start_tls`` is given as ``server_hostname``.

    Args:
        trust: The same roots the core uses (a
            :class:`smtpsts.certs.TrustStore` or certificates); ``None`` with
            neither ``cafile`` nor ``capath`` means OpenSSL's default paths.
        cafile: A PEM bundle to trust instead.
        capath: A hashed certificate directory to trust instead.
        minimum_version: The lowest TLS version offered.

    Returns:
        A context with ``CERT_REQUIRED`` and ``check_hostname``.

    Raises:
        ssl.SSLError: A trust source could not be loaded.
        OSError: ``cafile`` / ``capath`` could not be read.
    """
    context = _base_context(minimum_version)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    # RFC 8461 §3.3, RFC 9525 §2 (STS-CERT-04): the subject CN is never an identifier.
    context.hostname_checks_common_name = False
    if trust is not None:
        certificates = trust.certificates if isinstance(trust, TrustStore) else tuple(trust)
        if certificates:
            context.load_verify_locations(
                cadata="".join(
                    c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates
                )
            )
    elif cafile is not None or capath is not None:
        context.load_verify_locations(cafile=cafile, capath=capath)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


def opportunistic_context(
    *, minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
) -> ssl.SSLContext:
    """
    A client context that accepts any certificate, so the core can judge the chain.

    For opportunistic TLS (RFC 7435), DANE (the chain goes to
    :func:`smtpsts.dane.match_tlsa`) and MTA-STS when the core checks the
    chain from :func:`peer_chain`.

    Args:
        minimum_version: The lowest TLS version offered.

    Returns:
        A context with ``CERT_NONE`` and no host name check.
    """
    context = _base_context(minimum_version)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
