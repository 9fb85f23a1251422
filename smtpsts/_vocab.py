"""
The shared TLS-RPT vocabulary (RFC 8460 §4.3, §4.4, §6.6).

Every failure in smtpsts -- a policy fetch that went wrong, a certificate that
did not verify, a TLSA record that did not match -- names one of these result
types, so that the reporting side never has to guess.

The enums live here, below everything else, so that :mod:`smtpsts.exceptions`
can use them without importing the reporting package.
"""

from __future__ import annotations

import enum

__all__ = ["PolicyType", "ResultType"]


class PolicyType(enum.StrEnum):
    """
    The ``policy-type`` of a TLS-RPT policy entry (RFC 8460 §4.4).

    The value is the exact string the report carries.
    """

    STS = "sts"
    """An MTA-STS policy (RFC 8461) was applied."""

    TLSA = "tlsa"
    """A DANE TLSA RRset (RFC 7672) was applied."""

    NO_POLICY_FOUND = "no-policy-found"
    """Neither applied; also used for an MTA-STS policy in mode ``none`` (AMB-24)."""


class ResultType(enum.StrEnum):
    """
    The ``result-type`` of a TLS-RPT failure detail.

    The eleven values of the IANA "STARTTLS Validation Result Types" registry
    (RFC 8460 §4.3 and §6.6); ``.value`` is the registered string.
    """

    # RFC 8460 §4.3.1: negotiation failures.
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    """The MX did not offer STARTTLS, or refused it."""

    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    """The certificate does not match the names the policy requires."""

    CERTIFICATE_EXPIRED = "certificate-expired"
    """The certificate has expired."""

    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    """The chain does not lead to a trusted root (or name constraints failed)."""

    VALIDATION_FAILURE = "validation-failure"
    """Any other negotiation or validation failure."""

    # RFC 8460 §4.3.2.1: DANE-specific policy failures.
    TLSA_INVALID = "tlsa-invalid"
    """The TLSA RRset holds no usable record."""

    DNSSEC_INVALID = "dnssec-invalid"
    """DNSSEC validation of the TLSA or address lookup failed (bogus or indeterminate)."""

    DANE_REQUIRED = "dane-required"
    """DANE is required for the destination but no DNSSEC-validated TLSA exists."""

    # RFC 8460 §4.3.2.2: MTA-STS-specific policy failures.
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    """The policy could not be retrieved."""

    STS_POLICY_INVALID = "sts-policy-invalid"
    """The policy was retrieved but failed validation (for example a syntax error)."""

    STS_WEBPKI_INVALID = "sts-webpki-invalid"
    """The policy host could not be authenticated with PKIX."""
