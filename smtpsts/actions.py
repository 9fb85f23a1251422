"""
What the policy machine asks for, and what it is fed back (RFC 8461 §3.1-§3.3).

The machine in :mod:`smtpsts.cache` never does I/O. It returns *actions*
(:class:`LookupTXT`, :class:`FetchPolicy`) that a driver performs with an
adapter, and it is fed *results* (:class:`TXTAnswer`, :class:`TXTNotFound`,
:class:`TXTFailure`, :class:`HTTPResponse`, :class:`FetchFailed`). The last
thing it returns is :class:`Resolved`.

The fetch rules of RFC 8461 §3.3 live here too, so that adapters only move
bytes: :func:`policy_request` builds the request (URL, headers, limits) and
:meth:`FetchPolicy.validate` checks a response (status, media type, size).
Adapters that see a redirect, a timeout or a TLS failure report it as
:class:`FetchFailed` with the matching :class:`FetchFailure` kind, which
carries the TLS-RPT result type and reason code (docs/reason-codes.md).
"""

from __future__ import annotations

import enum

import attrs

from ._entry import CacheEntry, PolicyOutcome
from ._names import to_alabel
from ._vocab import ResultType
from .reasons import Reason, http_status

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "REQUEST_HEADERS",
    "FetchFailed",
    "FetchFailure",
    "FetchPolicy",
    "HTTPResponse",
    "LookupTXT",
    "Resolved",
    "Result",
    "TXTAnswer",
    "TXTFailure",
    "TXTNotFound",
    "content_type_is_text_plain",
    "policy_request",
    "sts_qname",
]

DEFAULT_MAX_BYTES = 65536
"""RFC 8461 §3.3 suggests 64 KiB as the policy size cap (STS-FETCH-12, AMB-08)."""

DEFAULT_TIMEOUT = 60.0
"""RFC 8461 §3.3 suggests one minute for the whole fetch (STS-FETCH-11)."""

REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    # RFC 8461 §3.3: "Senders MUST NOT use HTTP caching" -- and no validators
    # (If-None-Match, If-Modified-Since) are ever sent (STS-FETCH-08).
    ("Cache-Control", "no-cache"),
    # STS-FETCH-13: ask for the identity encoding; the cap applies to decoded bytes.
    ("Accept-Encoding", "identity"),
    ("Accept", "text/plain"),
)
"""The headers of every policy request. No cookies, no auth, no Referer (SEC-06)."""


# --------------------------------------------------------------------------- actions


@attrs.frozen
class LookupTXT:
    """
    Action: look up the TXT RRset at ``qname`` (RFC 8461 §3.1).

    Answer with :class:`TXTAnswer`, :class:`TXTNotFound` (NXDOMAIN or NODATA)
    or :class:`TXTFailure` (SERVFAIL, timeout, network error). Follow CNAMEs
    (STS-REC-02).

    Attributes:
        qname: The absolute query name, ``_mta-sts.<domain>.`` (STS-REC-01).
    """

    qname: str


@attrs.frozen
class FetchPolicy:
    """
    Action: GET the policy over HTTPS (RFC 8461 §3.3).

    The adapter must: connect to :attr:`host` port 443 with SNI and certificate
    name :attr:`host` (STS-FETCH-03, STS-FETCH-04); send :attr:`headers` and
    nothing that enables caching, cookies or auth; never follow a redirect
    (STS-FETCH-07); read at most ``max_bytes + 1`` bytes of decoded body
    (STS-FETCH-12, STS-FETCH-13); finish within :attr:`timeout` seconds of
    wall-clock time in total (STS-FETCH-11). It answers with the raw
    :class:`HTTPResponse` (the machine validates it with :meth:`validate`), or
    with :class:`FetchFailed` when no response came.

    Attributes:
        url: ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (STS-FETCH-01).
        host: The policy host, ``mta-sts.<domain>`` (STS-FETCH-02).
        max_bytes: The body cap in bytes.
        timeout: The deadline for the whole fetch, in seconds.
        require_text_plain: Whether the media type must be ``text/plain`` (AMB-06).
        headers: The request headers, in order.
    """

    url: str
    host: str
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT
    require_text_plain: bool = True
    headers: tuple[tuple[str, str], ...] = REQUEST_HEADERS

    def validate(self, response: HTTPResponse) -> bytes | FetchFailed:
        """
        Check a response against the fetch rules of RFC 8461 §3.3.

        Args:
            response: What the policy host answered.

        Returns:
            The body, ready for :meth:`smtpsts.Policy.from_text`, or the
            :class:`FetchFailed` that describes why the response yields no policy.
        """
        status = response.status
        if 300 <= status < 400:
            # RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed" (STS-FETCH-07).
            return FetchFailed(FetchFailure.REDIRECT, f"HTTP {status} redirect", status=status)
        if status != 200:
            # RFC 8461 §3.3: only 200 OK yields a policy (STS-FETCH-06, AMB-07).
            return FetchFailed(FetchFailure.HTTP_STATUS, f"HTTP status {status}", status=status)
        if self.require_text_plain and not content_type_is_text_plain(response.content_type):
            # RFC 8461 §3.2: the media type SHOULD be text/plain (STS-FETCH-09, AMB-06).
            return FetchFailed(
                FetchFailure.CONTENT_TYPE,
                f"media type {response.content_type!r} is not text/plain",
            )
        if len(response.body) > self.max_bytes:
            # STS-FETCH-12, AMB-08: the adapter stops reading at max_bytes + 1.
            return FetchFailed(
                FetchFailure.POLICY_TOO_LARGE,
                f"policy body exceeds {self.max_bytes} bytes",
            )
        return response.body


@attrs.frozen
class Resolved:
    """
    Terminal action: the lookup is over.

    Attributes:
        outcome: What the MTA applies, with the TLS-RPT policy seed.
        store: The entry to write to the store, or ``None`` to write nothing.
        delete: Whether to delete the domain's stored entry (``store`` is
            then ``None``), for example when a mode ``none`` policy's record
            has gone (STS-CACHE-14) or a ``max_age: 0`` policy replaced it.
    """

    outcome: PolicyOutcome
    store: CacheEntry | None = None
    delete: bool = False


# --------------------------------------------------------------------------- results


@attrs.frozen
class TXTAnswer:
    """
    Result of :class:`LookupTXT`: the RRset exists.

    Attributes:
        records: One item per TXT RR, its character-strings already joined
            (STS-REC-03).
        ttl: The RRset's TTL in seconds, if known (used for negative caching
            when no STS record is among them).
    """

    records: tuple[bytes | str, ...] = attrs.field(converter=tuple)
    ttl: int | None = None


@attrs.frozen
class TXTNotFound:
    """
    Result of :class:`LookupTXT`: NXDOMAIN or NODATA, a definite "no record".

    Attributes:
        ttl: The negative TTL (SOA minimum) in seconds, if known.
    """

    ttl: int | None = None


@attrs.frozen
class TXTFailure:
    """
    Result of :class:`LookupTXT`: SERVFAIL, timeout or a network error.

    Never the same as "no record" (STS-REC-17).

    Attributes:
        reason: What went wrong, in words.
    """

    reason: str = ""


@attrs.frozen
class HTTPResponse:
    """
    Result of :class:`FetchPolicy`: the final HTTP response, unvalidated.

    Attributes:
        status: The status code.
        content_type: The ``Content-Type`` header value, ``None`` when absent.
        body: The decoded body, at most ``max_bytes + 1`` bytes.
        headers: The response headers, for diagnostics.
    """

    status: int
    content_type: str | None
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class FetchFailure(enum.StrEnum):
    """
    Why a policy fetch produced no usable response (docs/reason-codes.md).

    The value is the :class:`~smtpsts.reasons.Reason` smtpsts reports, except
    for :attr:`HTTP_STATUS` (reported as ``http-<status>``) and the TLS kinds,
    whose adapter may give a more precise code.
    """

    CONNECT_ERROR = Reason.CONNECT_ERROR.value
    """TCP connect to the policy host failed (STS-FETCH-18)."""

    DNS_ERROR = Reason.DNS_ERROR.value
    """The policy host name did not resolve (STS-FETCH-21)."""

    TIMEOUT = Reason.TIMEOUT.value
    """The whole-fetch deadline passed (STS-FETCH-11)."""

    TLS_ERROR = Reason.TLS_ERROR.value
    """The TLS handshake with the policy host failed (STS-FETCH-05)."""

    WEBPKI = Reason.WEBPKI.value
    """The policy host certificate is not valid for it (STS-FETCH-03)."""

    REDIRECT = Reason.REDIRECT.value
    """The server answered 3xx (STS-FETCH-07)."""

    HTTP_STATUS = Reason.HTTP_STATUS.value
    """The server answered a status other than 200 (STS-FETCH-06)."""

    CONTENT_TYPE = Reason.CONTENT_TYPE.value
    """The media type is not ``text/plain`` (STS-FETCH-09)."""

    POLICY_TOO_LARGE = Reason.POLICY_TOO_LARGE.value
    """The body is larger than the cap (STS-FETCH-12)."""

    PROTOCOL_ERROR = Reason.PROTOCOL_ERROR.value
    """The server broke HTTP (malformed response, truncated body)."""

    @property
    def result_type(self) -> ResultType:
        """
        The TLS-RPT result type of this kind of failure (STS-FETCH-18).
        """
        if self in (FetchFailure.TLS_ERROR, FetchFailure.WEBPKI):
            # RFC 8460 §4.3.2.2: the policy host could not be authenticated with PKIX.
            return ResultType.STS_WEBPKI_INVALID
        return ResultType.STS_POLICY_FETCH_ERROR


@attrs.frozen
class FetchFailed:
    """
    Result of :class:`FetchPolicy`: the fetch failed.

    Adapters build it for failures below HTTP (connect, DNS, TLS, timeout);
    :meth:`FetchPolicy.validate` builds it for responses that break the rules.

    Attributes:
        kind: What kind of failure it was.
        detail: What happened, in words (for logs).
        status: The HTTP status, for :attr:`FetchFailure.HTTP_STATUS` and
            :attr:`FetchFailure.REDIRECT`.
        code: A short code that replaces the default reason code, for example
            an X.509 error code for a :attr:`FetchFailure.WEBPKI` failure.
    """

    kind: FetchFailure
    detail: str = ""
    status: int | None = None
    code: str | None = None

    @property
    def result_type(self) -> ResultType:
        """
        The TLS-RPT result type (STS-FETCH-18).
        """
        return self.kind.result_type

    @property
    def reason(self) -> str:
        """
        The ``failure-reason-code`` (docs/reason-codes.md), e.g. ``http-404``.
        """
        if self.code:
            return self.code
        if self.kind is FetchFailure.HTTP_STATUS and self.status is not None:
            return http_status(self.status)
        return Reason(self.kind.value)


Result = TXTAnswer | TXTNotFound | TXTFailure | HTTPResponse | FetchFailed
"""Any value the machine may be fed."""


# --------------------------------------------------------------------------- fetch rules


def sts_qname(domain: str) -> str:
    """
    The TXT query name of a policy domain (RFC 8461 §3.1, STS-REC-01).

    Args:
        domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.

    Returns:
        ``_mta-sts.<a-label>.``, absolute.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
    """
    return f"_mta-sts.{to_alabel(domain)}."


def policy_request(
    domain: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    require_text_plain: bool = True,
) -> FetchPolicy:
    """
    Build the policy request for a domain (RFC 8461 §3.3).

    Args:
        domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
        max_bytes: The body cap (STS-FETCH-12).
        timeout: The whole-fetch deadline in seconds (STS-FETCH-11).
        require_text_plain: Whether to insist on ``text/plain`` (AMB-06).

    Returns:
        The :class:`FetchPolicy` action.

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
    """
    # RFC 8461 §3.3: the policy host is "mta-sts" prepended to the policy domain,
    # never a CNAME target (STS-FETCH-01, STS-FETCH-02); fixed path, port 443.
    host = f"mta-sts.{to_alabel(domain)}"
    return FetchPolicy(
        url=f"https://{host}/.well-known/mta-sts.txt",
        host=host,
        max_bytes=max_bytes,
        timeout=timeout,
        require_text_plain=require_text_plain,
    )


def content_type_is_text_plain(value: str | None) -> bool:
    """
    Whether a ``Content-Type`` value names ``text/plain`` (STS-FETCH-09, STS-FETCH-10).

    Type and subtype compare case-insensitively; parameters, the charset
    included, are ignored (the body is always read as UTF-8).

    Args:
        value: The header value, ``None`` when the header was absent.

    Returns:
        ``True`` for ``text/plain`` with any parameters.
    """
    if value is None:
        return False
    media_type, _, _params = value.partition(";")
    return media_type.strip().lower() == "text/plain"
