"""Tests for smtpsts.actions: the machine's vocabulary and the fetch rules."""

from __future__ import annotations

import typing

import pytest

from smtpsts import DomainNameError, ResultType, _entry, cache
from smtpsts.actions import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    REQUEST_HEADERS,
    FetchFailed,
    FetchFailure,
    FetchPolicy,
    HTTPResponse,
    Resolved,
    TXTAnswer,
    content_type_is_text_plain,
    policy_request,
    sts_qname,
)

REQUEST = policy_request("example.com")


class TestRequest:
    def test_url_and_host(self):
        """STS-FETCH-01, STS-FETCH-02: GET https://mta-sts.<domain>/.well-known/mta-sts.txt."""
        assert (
            "https://mta-sts.example.com/.well-known/mta-sts.txt",
            "mta-sts.example.com",
        ) == (REQUEST.url, REQUEST.host)

    def test_domain_normalised(self):
        """STS-FETCH-01, STS-CACHE-01: the policy domain is a lower-case A-label, no root dot."""
        req = policy_request("Bücher.Example.")
        assert "https://mta-sts.xn--bcher-kva.example/.well-known/mta-sts.txt" == req.url

    def test_bad_domain(self):
        """STS-FETCH-01: a domain that is not a host name is refused."""
        with pytest.raises(DomainNameError):
            policy_request("exa mple.com")

    def test_headers_disable_caching(self):
        """STS-FETCH-08, STS-FETCH-13, SEC-06: no-cache, identity, no validators or cookies."""
        names = {name.lower() for name, _ in REQUEST.headers}
        assert ("Cache-Control", "no-cache") in REQUEST.headers
        assert ("Accept-Encoding", "identity") in REQUEST.headers
        assert set() == names & {"if-none-match", "if-modified-since", "cookie", "authorization"}
        assert REQUEST_HEADERS == REQUEST.headers

    def test_defaults(self):
        """STS-FETCH-11, STS-FETCH-12, STS-FETCH-09: 60 s, 64 KiB, text/plain required."""
        assert (60.0, 65536, True) == (
            REQUEST.timeout,
            REQUEST.max_bytes,
            REQUEST.require_text_plain,
        )
        assert (DEFAULT_TIMEOUT, DEFAULT_MAX_BYTES) == (60.0, 65536)

    def test_options(self):
        """STS-FETCH-11, STS-FETCH-12, AMB-06: the limits and the media-type check are settable."""
        req = policy_request("example.com", max_bytes=10, timeout=1.5, require_text_plain=False)
        assert (10, 1.5, False) == (req.max_bytes, req.timeout, req.require_text_plain)

    def test_qname(self):
        """STS-REC-01: TXT _mta-sts.<a-label>., absolute."""
        assert "_mta-sts.example.com." == sts_qname("EXAMPLE.com.")


class TestValidate:
    def test_ok(self):
        """STS-FETCH-06: a 200 text/plain response yields its body."""
        assert b"body" == REQUEST.validate(HTTPResponse(200, "text/plain", b"body"))

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 300, 399])
    def test_redirect(self, status):
        """STS-FETCH-07: a 3xx is a fetch failure with reason redirect, never followed."""
        got = REQUEST.validate(HTTPResponse(status, "text/plain", b""))
        assert FetchFailed(FetchFailure.REDIRECT, f"HTTP {status} redirect", status=status) == got
        assert isinstance(got, FetchFailed)
        assert (ResultType.STS_POLICY_FETCH_ERROR, "redirect") == (got.result_type, got.reason)

    @pytest.mark.parametrize("status", [404, 500, 204, 201, 100, 199, 400, 503])
    def test_non_200(self, status):
        """STS-FETCH-06, AMB-07: any other status is sts-policy-fetch-error, reason http-<n>."""
        got = REQUEST.validate(HTTPResponse(status, "text/plain", b"x"))
        assert isinstance(got, FetchFailed)
        assert (ResultType.STS_POLICY_FETCH_ERROR, f"http-{status}") == (
            got.result_type,
            got.reason,
        )

    @pytest.mark.parametrize(
        "value",
        [
            "text/plain",
            "TEXT/PLAIN",
            "Text/Plain; charset=utf-8",
            "text/plain; charset=iso-8859-1; x=y",
            " text/plain ;charset=us-ascii",
            "text/plain;",
        ],
    )
    def test_text_plain_accepted(self, value):
        """STS-FETCH-09, STS-FETCH-10: type/subtype case-insensitive, parameters ignored."""
        assert content_type_is_text_plain(value)
        assert b"x" == REQUEST.validate(HTTPResponse(200, value, b"x"))

    @pytest.mark.parametrize(
        "value", [None, "", "text/html", "text/plainx", "application/octet-stream", "text"]
    )
    def test_other_types_refused(self, value):
        """STS-FETCH-09, AMB-06: a missing or other media type is reason content-type."""
        assert not content_type_is_text_plain(value)
        got = REQUEST.validate(HTTPResponse(200, value, b"x"))
        assert isinstance(got, FetchFailed)
        assert (FetchFailure.CONTENT_TYPE, "content-type") == (got.kind, got.reason)

    def test_type_check_off(self):
        """AMB-06: require_text_plain=False accepts any media type."""
        req = policy_request("example.com", require_text_plain=False)
        assert b"x" == req.validate(HTTPResponse(200, "text/html", b"x"))
        assert b"x" == req.validate(HTTPResponse(200, None, b"x"))

    def test_size_cap(self):
        """STS-FETCH-12, AMB-08: 65536 bytes pass, 65537 are policy-too-large."""
        assert 65536 == len(REQUEST.validate(HTTPResponse(200, "text/plain", b"a" * 65536)))
        got = REQUEST.validate(HTTPResponse(200, "text/plain", b"a" * 65537))
        assert isinstance(got, FetchFailed)
        assert (ResultType.STS_POLICY_FETCH_ERROR, "policy-too-large") == (
            got.result_type,
            got.reason,
        )

    def test_size_cap_configurable(self):
        """STS-FETCH-12: the cap comes from the request."""
        req = FetchPolicy(url=REQUEST.url, host=REQUEST.host, max_bytes=3)
        assert isinstance(req.validate(HTTPResponse(200, "text/plain", b"abcd")), FetchFailed)
        assert b"abc" == req.validate(HTTPResponse(200, "text/plain", b"abc"))


class TestFetchFailed:
    @pytest.mark.parametrize(
        ("kind", "result_type", "reason"),
        [
            (FetchFailure.CONNECT_ERROR, ResultType.STS_POLICY_FETCH_ERROR, "connect-error"),
            (FetchFailure.DNS_ERROR, ResultType.STS_POLICY_FETCH_ERROR, "dns-error"),
            (FetchFailure.TIMEOUT, ResultType.STS_POLICY_FETCH_ERROR, "timeout"),
            (FetchFailure.TLS_ERROR, ResultType.STS_WEBPKI_INVALID, "tls-error"),
            (FetchFailure.WEBPKI, ResultType.STS_WEBPKI_INVALID, "webpki"),
            (FetchFailure.REDIRECT, ResultType.STS_POLICY_FETCH_ERROR, "redirect"),
            (FetchFailure.CONTENT_TYPE, ResultType.STS_POLICY_FETCH_ERROR, "content-type"),
            (FetchFailure.POLICY_TOO_LARGE, ResultType.STS_POLICY_FETCH_ERROR, "policy-too-large"),
            (FetchFailure.PROTOCOL_ERROR, ResultType.STS_POLICY_FETCH_ERROR, "protocol-error"),
            (FetchFailure.HTTP_STATUS, ResultType.STS_POLICY_FETCH_ERROR, "http-status"),
        ],
    )
    def test_mapping(self, kind, result_type, reason):
        """STS-FETCH-18, STS-FETCH-21, STS-FETCH-03: each kind maps per CONFORMANCE §4.4."""
        failed = FetchFailed(kind, "d")
        assert (result_type, reason) == (failed.result_type, failed.reason)

    def test_code_overrides(self):
        """STS-FETCH-18: an adapter's X.509 code replaces the default reason."""
        failed = FetchFailed(FetchFailure.WEBPKI, "expired", code="certificate-expired")
        assert "certificate-expired" == failed.reason

    def test_http_status_reason(self):
        """AMB-07: HTTP 404 is reason http-404."""
        assert "http-404" == FetchFailed(FetchFailure.HTTP_STATUS, status=404).reason


def test_txt_answer_records_tuple():
    """STS-REC-03: TXT answers hold one joined item per RR, as a tuple."""
    assert (b"a", "b") == TXTAnswer([b"a", "b"]).records


class TestTypeHints:
    def test_resolved_type_hints_resolve(self):
        """Resolved's annotations resolve at run time (no TYPE_CHECKING-only names)."""
        hints = typing.get_type_hints(Resolved)
        assert cache.PolicyOutcome is hints["outcome"]
        assert cache.CacheEntry | None == hints["store"]

    def test_cache_reexports_shared_values(self):
        """The values moved below actions and cache keep their smtpsts.cache names."""
        for name in _entry.__all__:
            assert getattr(_entry, name) is getattr(cache, name)
            assert name in cache.__all__
        assert (
            cache.PolicyOutcome == typing.get_type_hints(cache.CacheEntry)["_outcome"].__args__[0]
        )
