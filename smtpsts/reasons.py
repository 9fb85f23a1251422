"""
The ``failure-reason-code`` values smtpsts reports, and the one failure value.

RFC 8460 §4.3 fixes the result types of a TLS-RPT report and leaves the
``failure-reason-code`` free text. smtpsts gives it a small fixed vocabulary,
:class:`Reason`, so that code, tests and the published table
(docs/reason-codes.md, checked against :func:`reason_table` by the tests)
cannot drift apart. A :class:`Reason` is a :class:`str`: it compares equal
to the bare string and is written unchanged into reports and vectors.

Three families of codes are built from a part only known at run time
(:data:`FAMILIES`): ``http-<status>`` (:func:`http_status`), the
``<code>+fallback-to-cached-policy`` form (:func:`with_fallback`) and the
precise TLS codes an adapter may give (``tls-remote-alert-<n>`` ...). A
policy that does not parse is reported with its parser's own short code
(the ``reason`` of a :class:`smtpsts.ParseError`, e.g. ``missing-mode``).

:class:`Failure` is the one value for "this failed, ready for TLS-RPT"
(result type, reason, detail); :class:`smtpsts.decision.TLSFailure` and
:class:`smtpsts.cache.PolicyFailure` are names for it.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ._vocab import ResultType

__all__ = [
    "FALLBACK_SUFFIX",
    "FAMILIES",
    "Failure",
    "Reason",
    "ReasonInfo",
    "describe",
    "http_status",
    "reason_table",
    "with_fallback",
]

FALLBACK_SUFFIX: Final = "+fallback-to-cached-policy"
"""Appended to a reason code when a cached policy was applied instead (RFC 8461 §5.1)."""


class Reason(enum.StrEnum):
    """
    A ``failure-reason-code`` smtpsts emits (RFC 8460 §4.3, docs/reason-codes.md).

    Its ``repr()`` is the plain string's, so the repr of every value that
    carries a reason (a check, a session, a log line) reads as before.
    """

    def __repr__(self) -> str:
        return str.__repr__(self.value)

    # -- policy discovery: the TXT record (RFC 8461 §3.1)
    TXT_NOT_FOUND = "txt-not-found"
    TXT_LOOKUP_FAILED = "txt-lookup-failed"
    TXT_MULTIPLE_RECORDS = "txt-multiple-records"
    TXT_SYNTAX_ERROR = "txt-syntax-error"
    # -- policy discovery: the fetch (RFC 8461 §3.3)
    BACKOFF_AFTER_RECENT_FETCH_ERROR = "backoff-after-recent-fetch-error"
    DNS_ERROR = "dns-error"
    CONNECT_ERROR = "connect-error"
    TIMEOUT = "timeout"
    TLS_ERROR = "tls-error"
    WEBPKI = "webpki"
    REDIRECT = "redirect"
    HTTP_STATUS = "http-status"
    CONTENT_TYPE = "content-type"
    POLICY_TOO_LARGE = "policy-too-large"
    PROTOCOL_ERROR = "protocol-error"
    SYNTAX_ERROR = "syntax-error"
    # -- the MX session (RFC 8461 §4, RFC 8460 §4.3.1)
    MX_MISMATCH = "mtasts-policy-mx-mismatch"
    TLS_HANDSHAKE_FAILED = "tls-handshake-failed"
    CERTIFICATE_NOT_CHECKED = "certificate-not-checked"
    # -- the certificate (RFC 8461 §4.2, RFC 6125)
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    NO_MATCHING_DNS_ID = "no-matching-dns-id"
    NO_DNS_ID = "no-dns-id"
    UNKNOWN_CA = "unknown-ca"
    BAD_SIGNATURE = "bad-signature"
    NAME_CONSTRAINTS = "name-constraints"
    PATH_LENGTH = "path-length"
    CHAIN_TOO_DEEP = "chain-too-deep"
    NOT_A_CA = "not-a-ca"
    BAD_EKU = "bad-eku"
    WEAK_KEY = "weak-key"
    X509_ERROR = "x509-error"
    BAD_CERTIFICATE = "bad-certificate"
    NO_CERTIFICATE = "no-certificate"
    CHAIN_TOO_LONG = "chain-too-long"
    EMPTY_TRUST_STORE = "empty-trust-store"
    # -- DANE (RFC 7672)
    ALL_UNUSABLE_RECORDS = "all-unusable-records"
    DANE_NO_MATCH = "dane-no-match"
    NO_TLS = "no-tls"
    DNSSEC_BOGUS = "dnssec-bogus"
    TLSA_LOOKUP_FAILED = "tlsa-lookup-failed"


@attrs.frozen
class ReasonInfo:
    """
    What a reason code means: one row of docs/reason-codes.md.

    Attributes:
        result_types: The result types it is reported under.
        when: When smtpsts emits it, in words.
        rfc: The RFC section the rule comes from.
    """

    result_types: tuple[ResultType, ...]
    when: str
    rfc: str


_RT = ResultType
_FETCH = (_RT.STS_POLICY_FETCH_ERROR,)
_VF = (_RT.VALIDATION_FAILURE,)
_TRUST = (_RT.CERTIFICATE_NOT_TRUSTED,)
_R = Reason

_ABOUT: Final[dict[Reason, ReasonInfo]] = {
    _R.TXT_NOT_FOUND: ReasonInfo(
        _FETCH, "the `_mta-sts` TXT lookup found no MTA-STS record", "RFC 8461 §3.1"
    ),
    _R.TXT_LOOKUP_FAILED: ReasonInfo(
        _FETCH, "the `_mta-sts` TXT lookup failed (SERVFAIL, timeout, network)", "RFC 8461 §3.1"
    ),
    _R.TXT_MULTIPLE_RECORDS: ReasonInfo(
        _FETCH, "more than one TXT record starts with `v=STSv1`", "RFC 8461 §3.1"
    ),
    _R.TXT_SYNTAX_ERROR: ReasonInfo(
        _FETCH, "the one `v=STSv1` TXT record does not parse", "RFC 8461 §3.1"
    ),
    _R.BACKOFF_AFTER_RECENT_FETCH_ERROR: ReasonInfo(
        _FETCH,
        "no fetch was tried: the last one for this record `id` failed a moment ago",
        "RFC 8461 §3.3",
    ),
    _R.DNS_ERROR: ReasonInfo(_FETCH, "the policy host name did not resolve", "RFC 8461 §3.3"),
    _R.CONNECT_ERROR: ReasonInfo(
        _FETCH, "the TCP connection to the policy host failed", "RFC 8461 §3.3"
    ),
    _R.TIMEOUT: ReasonInfo(_FETCH, "the whole policy fetch ran out of time", "RFC 8461 §3.3"),
    _R.TLS_ERROR: ReasonInfo(
        (_RT.STS_WEBPKI_INVALID,),
        "the TLS handshake with the policy host failed (an adapter may say more precisely how)",
        "RFC 8461 §3.3",
    ),
    _R.WEBPKI: ReasonInfo(
        (_RT.STS_WEBPKI_INVALID,),
        "the policy host certificate is not valid for it (an adapter may give the X.509 error)",
        "RFC 8461 §3.3",
    ),
    _R.REDIRECT: ReasonInfo(
        _FETCH,
        "the policy host answered a 3xx redirect (never followed)",
        "RFC 8461 §3.3",
    ),
    _R.HTTP_STATUS: ReasonInfo(
        _FETCH,
        "the policy host answered a status other than 200 and the status is unknown"
        " (otherwise `http-<status>`)",
        "RFC 8461 §3.3",
    ),
    _R.CONTENT_TYPE: ReasonInfo(_FETCH, "the policy body is not `text/plain`", "RFC 8461 §3.2"),
    _R.POLICY_TOO_LARGE: ReasonInfo(
        _FETCH, "the policy body is larger than the size cap", "RFC 8461 §3.3"
    ),
    _R.PROTOCOL_ERROR: ReasonInfo(
        _FETCH, "the policy host broke HTTP (a malformed or cut-off response)", "RFC 8461 §3.3"
    ),
    _R.SYNTAX_ERROR: ReasonInfo(
        (_RT.STS_POLICY_INVALID,),
        "the policy does not parse and the parser has no more precise code",
        "RFC 8461 §3.2",
    ),
    _R.MX_MISMATCH: ReasonInfo(
        _VF, "the MX host matches no `mx` pattern of the policy", "RFC 8461 §4.1"
    ),
    _R.TLS_HANDSHAKE_FAILED: ReasonInfo(
        _VF,
        "the TLS handshake with the MX failed and the adapter gave no more precise code",
        "RFC 8460 §4.3.1",
    ),
    _R.CERTIFICATE_NOT_CHECKED: ReasonInfo(
        _VF, "a policy applies but no certificate check of the MX was made", "RFC 8461 §4.2"
    ),
    _R.EXPIRED: ReasonInfo(
        (_RT.CERTIFICATE_EXPIRED,), "a certificate of the chain has expired", "RFC 8461 §4.2"
    ),
    _R.NOT_YET_VALID: ReasonInfo(
        (_RT.CERTIFICATE_EXPIRED,),
        "a certificate of the chain is not valid yet (never called expired)",
        "RFC 8461 §4.2",
    ),
    _R.NO_MATCHING_DNS_ID: ReasonInfo(
        (_RT.CERTIFICATE_HOST_MISMATCH,),
        "no DNS-ID of the certificate matches the host (PKIX or DANE-TA)",
        "RFC 8461 §4.1, RFC 7672 §3.2.3",
    ),
    _R.NO_DNS_ID: ReasonInfo(
        (_RT.CERTIFICATE_HOST_MISMATCH,),
        "the certificate has no DNS-ID at all (the CN is not used)",
        "RFC 8461 §4.1, RFC 7672 §3.2.3",
    ),
    _R.UNKNOWN_CA: ReasonInfo(_TRUST, "the chain does not lead to a trusted CA", "RFC 8461 §4.2"),
    _R.BAD_SIGNATURE: ReasonInfo(
        _TRUST, "a signature in the chain does not verify", "RFC 8461 §4.2"
    ),
    _R.NAME_CONSTRAINTS: ReasonInfo(
        _TRUST, "a CA's name constraints exclude the host", "RFC 8461 §4.2"
    ),
    _R.PATH_LENGTH: ReasonInfo(
        _TRUST, "the chain is longer than a CA's path length allows", "RFC 8461 §4.2"
    ),
    _R.CHAIN_TOO_DEEP: ReasonInfo(
        _TRUST, "the chain is deeper than the verifier follows", "RFC 8461 §4.2"
    ),
    _R.NOT_A_CA: ReasonInfo(_TRUST, "a certificate used as a CA is not a CA", "RFC 8461 §4.2"),
    _R.BAD_EKU: ReasonInfo(
        _VF, "the certificate is not for TLS servers (extended key usage)", "RFC 8461 §4.2"
    ),
    _R.WEAK_KEY: ReasonInfo(_VF, "a key in the chain is too weak", "RFC 8461 §4.2"),
    _R.X509_ERROR: ReasonInfo(
        _VF, "the chain failed a check the verifier names in no known way", "RFC 8461 §4.2"
    ),
    _R.BAD_CERTIFICATE: ReasonInfo(
        _VF, "the peer's certificate does not parse", "RFC 8461 §4.2, RFC 7672 §3"
    ),
    _R.NO_CERTIFICATE: ReasonInfo(
        _VF, "the peer sent no certificate", "RFC 8461 §4.2, RFC 7672 §3"
    ),
    _R.CHAIN_TOO_LONG: ReasonInfo(
        _VF, "the peer sent more certificates than smtpsts reads", "RFC 8461 §4.2, RFC 7672 §3"
    ),
    _R.EMPTY_TRUST_STORE: ReasonInfo(
        _TRUST, "the trust store given for the check holds no CA", "RFC 8461 §4.2"
    ),
    _R.ALL_UNUSABLE_RECORDS: ReasonInfo(
        (_RT.TLSA_INVALID,),
        "every TLSA record is unusable for SMTP: TLS goes on, unauthenticated",
        "RFC 7672 §2.2, RFC 8460 §4.3.2.1",
    ),
    _R.DANE_NO_MATCH: ReasonInfo(
        _VF, "the chain matches none of the usable TLSA records", "RFC 7672 §3.1"
    ),
    _R.NO_TLS: ReasonInfo(
        _VF, "usable TLSA records exist but no TLS session was set up", "RFC 7672 §2.2"
    ),
    _R.DNSSEC_BOGUS: ReasonInfo(
        (_RT.DNSSEC_INVALID,),
        "the TLSA lookup of the MX was bogus: the MX is not contacted",
        "RFC 7672 §2.1.1",
    ),
    _R.TLSA_LOOKUP_FAILED: ReasonInfo(
        _VF,
        "the TLSA lookup of the MX failed (not bogus): the MX is not contacted",
        "RFC 7672 §2.2",
    ),
}

FAMILIES: Final[tuple[tuple[str, str, str, str], ...]] = (
    (
        "http-<status>",
        "sts-policy-fetch-error",
        "the policy host answered this HTTP status instead of 200",
        "RFC 8461 §3.3",
    ),
    (
        "<code>" + FALLBACK_SUFFIX,
        "the result type of `<code>`",
        "discovery failed with `<code>` and a live cached policy was applied instead",
        "RFC 8461 §5.1",
    ),
    (
        "the parser's code, e.g. `missing-mode`",
        "sts-policy-invalid",
        "the policy does not parse; the code is the parser's (`ParseError.reason`)",
        "RFC 8461 §3.2",
    ),
    (
        "`tls-remote-alert-<n>`, `tls-<reason>`, an X.509 code",
        "validation-failure, sts-webpki-invalid",
        "a TLS adapter names the handshake or certificate failure more precisely",
        "RFC 8460 §4.3",
    ),
)
"""Codes with a part known only at run time: (form, result types, when, RFC section)."""


def describe(reason: Reason) -> ReasonInfo:
    """
    The row of docs/reason-codes.md for one reason code.

    Args:
        reason: The code.

    Returns:
        Its result types, when it is emitted and its RFC section.
    """
    return _ABOUT[reason]


def http_status(status: int) -> str:
    """
    The reason code of a policy fetch answered with ``status`` (RFC 8461 §3.3).

    Args:
        status: The HTTP status code.

    Returns:
        ``http-<status>``, e.g. ``http-404``.
    """
    return f"http-{status}"


def with_fallback(reason: str) -> str:
    """
    The reason code of a failure answered from the cache (RFC 8461 §5.1).

    Args:
        reason: The failure's own code.

    Returns:
        ``reason`` with ``+fallback-to-cached-policy`` appended.
    """
    return reason + FALLBACK_SUFFIX


def reason_table() -> str:
    """
    The Markdown table of docs/reason-codes.md, built from :class:`Reason`.

    Returns:
        The table: one row per code, then one per family of codes.
    """
    rows = ["| code | result type | when | RFC |", "|---|---|---|---|"]
    for reason in Reason:
        info = _ABOUT[reason]
        types = ", ".join(f"`{t}`" for t in info.result_types)
        rows.append(f"| `{reason}` | {types} | {info.when} | {info.rfc} |")
    for form, types, when, rfc in FAMILIES:
        shown = form if "`" in form else f"`{form}`"
        rows.append(f"| {shown} | {types} | {when} | {rfc} |")
    return "\n".join(rows) + "\n"


@attrs.frozen
class Failure:
    """
    One failure, ready for TLS-RPT: a check of a session or a policy discovery.

    The one value for "this failed" (issue 11); :class:`smtpsts.decision.TLSFailure`
    and :class:`smtpsts.cache.PolicyFailure` are names for it.
    :class:`smtpsts.tlsrpt.SessionFailure` stays its own type: it is the
    hashable part of a report key, without the ``detail``.

    Attributes:
        result_type: The RFC 8460 §4.3 result type.
        reason: The ``failure-reason-code`` (a :class:`Reason` or one of the
            :data:`FAMILIES`), if any.
        detail: What happened, in words (for logs).
    """

    result_type: ResultType
    reason: str | None = None
    detail: str = ""

    def with_fallback(self) -> Failure:
        """
        The same failure, marked as answered from the cache (RFC 8461 §5.1).

        Returns:
            A copy whose reason ends in ``+fallback-to-cached-policy``.
        """
        return attrs.evolve(self, reason=with_fallback(self.reason or ""))
