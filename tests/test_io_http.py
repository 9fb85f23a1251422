"""Tests for smtpsts.io.http against real hostile HTTPS servers on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver import DNSServer
from httpsservers import (
    ENFORCE,
    ConnectProxy,
    HTTPSServer,
    chunked,
    close_delimited,
    gzip_body,
    policy,
    raw,
    slow_drip,
    stall,
)
from smtpsts.actions import FetchFailed, FetchFailure, FetchPolicy, HTTPResponse, policy_request
from smtpsts.certs import TrustStore
from smtpsts.io.dns import AsyncDNSResolver, DNSResolver
from smtpsts.io.http import AsyncHTTPSFetcher, HTTPSFetcher, make_ssl_context, parse_connect_to

CAP = 65536
HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 88\r\n\r\n"

ROUTES = {
    "ok.test": policy(),
    "redirect.test": policy(
        b"",
        status="301 Moved Permanently",
        headers=["Location: https://mta-sts.ok.test/.well-known/mta-sts.txt"],
    ),
    "notfound.test": policy(b"not here\n", status="404 Not Found"),
    "error.test": policy(b"oops\n", status="500 Internal Server Error"),
    "nocontent.test": policy(b"", status="204 No Content", content_length=False),
    "html.test": policy(content_type="text/html"),
    "notype.test": policy(content_type=None),
    "charset.test": policy(content_type="TEXT/PLAIN; charset=iso-8859-1; x=y"),
    "exact.test": policy(b"x" * CAP),
    "big-cl.test": policy(b"x" * (CAP + 1)),
    "big-nocl.test": policy(b"x" * (CAP + 1), content_length=False),
    "big-chunked.test": chunked(b"x" * (CAP + 1)),
    "huge-nocl.test": close_delimited(b"x" * (8 * 1024 * 1024), version="HTTP/1.1"),
    "chunked.test": chunked(ENFORCE, chunk=7),
    "http10.test": close_delimited(ENFORCE),
    "drip.test": slow_drip(0.1),
    "stall-headers.test": stall(30, head=HEAD_200),
    "stall.test": stall(30),
    "badutf8.test": policy(b"version: STSv1\r\nmode: \xff\xfe\r\n"),
    "syntax.test": policy(b"version: STSv1\r\nmode: bogus\r\nmax_age: 1\r\n"),
    "gzip.test": gzip_body(ENFORCE),
    "gzipbomb.test": gzip_body(b"\0" * (10 * 1024 * 1024)),
    "brotli.test": raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\n"
        b"Content-Length: 4\r\n\r\nxxxx"
    ),
    "badgzip.test": raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 4\r\n\r\nxxxx"
    ),
    "truncated.test": raw(HEAD_200 + ENFORCE[:40]),
    "garbage.test": raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    "empty.test": raw(b""),
    "continue.test": raw(b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD_200 + ENFORCE),
    "wronghost.test": policy(),
    "expired.test": policy(),
    "untrusted.test": policy(),
}


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPSServer]:
    with HTTPSServer() as srv:
        for domain, handler in ROUTES.items():
            srv.route(f"mta-sts.{domain}", handler)
        srv.certificate("mta-sts.wronghost.test", names=["www.wronghost.test"])
        srv.certificate("mta-sts.expired.test", not_after=datetime(2020, 1, 1, tzinfo=UTC))
        srv.certificate("mta-sts.untrusted.test", untrusted=True)
        srv.route("localhost", policy())
        yield srv


class Fetch:
    """One fetcher, sync or asyncio, behind a sync call."""

    def __init__(self, kind: str, **options: object) -> None:
        self.kind = kind
        if kind == "sync":
            self.sync = HTTPSFetcher(**options)  # type: ignore[arg-type]
        else:
            self.aio = AsyncHTTPSFetcher(**options)  # type: ignore[arg-type]

    def __call__(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        if self.kind == "sync":
            return self.sync.fetch(request)
        return asyncio.run(self.aio.fetch(request))


@pytest.fixture(params=["sync", "async"])
def fetch(request: pytest.FixtureRequest, server: HTTPSServer) -> Fetch:
    hosts = [f"mta-sts.{d}" for d in ROUTES]
    return Fetch(request.param, trust=server.trust, connect_to=server.connect_to(*hosts))


def get(fetch: Fetch, domain: str, timeout: float = 2.0) -> HTTPResponse | FetchFailed:
    start = time.monotonic()
    result = fetch(policy_request(domain, timeout=timeout))
    # Every outcome arrives within the deadline (STS-FETCH-11).
    assert time.monotonic() - start < timeout + 1.0
    return result


def failed(result: HTTPResponse | FetchFailed) -> FetchFailure:
    assert isinstance(result, FetchFailed), result
    return result.kind


class TestGood:
    def test_policy(self, fetch: Fetch, server: HTTPSServer) -> None:
        """STS-FETCH-01, STS-FETCH-04: GET of the well-known path, SNI = policy host."""
        result = get(fetch, "ok.test")
        assert isinstance(result, HTTPResponse)
        assert (200, "text/plain", ENFORCE) == (result.status, result.content_type, result.body)
        sent = [r for r in server.requests if r.sni == "mta-sts.ok.test"][-1]
        assert "GET /.well-known/mta-sts.txt HTTP/1.1" == sent.lines[0]
        assert "mta-sts.ok.test" == sent.header("Host")

    def test_request_headers(self, fetch: Fetch, server: HTTPSServer) -> None:
        """STS-FETCH-08, STS-FETCH-13, SEC-06: no-cache, identity, no cookies, auth, validators."""
        get(fetch, "ok.test")
        sent = [r for r in server.requests if r.sni == "mta-sts.ok.test"][-1]
        assert "no-cache" == sent.header("Cache-Control")
        assert "identity" == sent.header("Accept-Encoding")
        for name in ("Cookie", "Authorization", "Referer", "If-None-Match", "If-Modified-Since"):
            assert sent.header(name) is None

    def test_two_fetches_two_full_gets(self, fetch: Fetch, server: HTTPSServer) -> None:
        """STS-FETCH-08: no HTTP cache: two fetches are two full requests."""
        before = server.hits("mta-sts.ok.test")
        assert isinstance(get(fetch, "ok.test"), HTTPResponse)
        assert isinstance(get(fetch, "ok.test"), HTTPResponse)
        assert before + 2 == server.hits("mta-sts.ok.test")

    def test_media_type_parameters_ignored(self, fetch: Fetch) -> None:
        """STS-FETCH-09, STS-FETCH-10: TEXT/PLAIN with other parameters is read."""
        result = get(fetch, "charset.test")
        assert isinstance(result, HTTPResponse)
        assert ENFORCE == result.body

    def test_exactly_cap(self, fetch: Fetch) -> None:
        """STS-FETCH-12: a body of exactly 65536 bytes is read whole."""
        result = get(fetch, "exact.test")
        assert isinstance(result, HTTPResponse)
        assert CAP == len(result.body)

    @pytest.mark.parametrize("domain", ["chunked.test", "http10.test", "continue.test"])
    def test_framings(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-06: chunked, HTTP/1.0 close-delimited and 100-continue bodies are read."""
        result = get(fetch, domain)
        assert isinstance(result, HTTPResponse)
        assert (200, ENFORCE) == (result.status, result.body)

    def test_gzip_decoded(self, fetch: Fetch) -> None:
        """STS-FETCH-13: a compressed body sent anyway is decoded."""
        result = get(fetch, "gzip.test")
        assert isinstance(result, HTTPResponse)
        assert ENFORCE == result.body

    @pytest.mark.parametrize("domain", ["badutf8.test", "syntax.test"])
    def test_bad_bodies_passed_on(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-18: invalid UTF-8 or bad syntax is for the core to judge: bytes unchanged."""
        result = get(fetch, domain)
        assert isinstance(result, HTTPResponse)
        assert result.body.startswith(b"version: STSv1\r\nmode: ")

    def test_environment_proxy_ignored(self, fetch: Fetch, monkeypatch: pytest.MonkeyPatch) -> None:
        """SEC-06: HTTPS_PROXY in the environment is ignored."""
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
        assert isinstance(get(fetch, "ok.test"), HTTPResponse)


class TestRefusedResponses:
    def test_redirect_not_followed(self, fetch: Fetch, server: HTTPSServer) -> None:
        """STS-FETCH-07: a 301 comes back as is; no second request is made."""
        before = server.hits("mta-sts.ok.test")
        result = get(fetch, "redirect.test")
        assert isinstance(result, HTTPResponse)
        assert 301 == result.status
        assert before == server.hits("mta-sts.ok.test")
        assert FetchFailure.REDIRECT == failed(policy_request("redirect.test").validate(result))

    @pytest.mark.parametrize(
        ("domain", "status"), [("notfound.test", 404), ("error.test", 500), ("nocontent.test", 204)]
    )
    def test_non_200(self, fetch: Fetch, domain: str, status: int) -> None:
        """STS-FETCH-06, AMB-07: 404, 500 and 204 yield no policy (http-<status>)."""
        result = get(fetch, domain)
        assert isinstance(result, HTTPResponse)
        assert (status, b"") == (result.status, result.body)
        checked = policy_request(domain).validate(result)
        assert isinstance(checked, FetchFailed)
        assert f"http-{status}" == checked.reason

    @pytest.mark.parametrize("domain", ["html.test", "notype.test"])
    def test_media_type(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-09, AMB-06: text/html or no Content-Type: the body is not even read."""
        result = get(fetch, domain)
        assert isinstance(result, HTTPResponse)
        assert b"" == result.body
        assert FetchFailure.CONTENT_TYPE == failed(policy_request(domain).validate(result))

    def test_media_type_check_off(self, fetch: Fetch) -> None:
        """STS-FETCH-09: with require_text_plain=False a text/html body is read."""
        result = fetch(policy_request("html.test", require_text_plain=False, timeout=2))
        assert isinstance(result, HTTPResponse)
        assert ENFORCE == result.body

    @pytest.mark.parametrize(
        "domain", ["big-cl.test", "big-nocl.test", "big-chunked.test", "huge-nocl.test"]
    )
    def test_too_large(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-12, AMB-08: 65537 bytes (any framing) fails as policy-too-large."""
        result = get(fetch, domain)
        assert FetchFailure.POLICY_TOO_LARGE == failed(result)
        assert isinstance(result, FetchFailed)
        assert "sts-policy-fetch-error" == result.result_type.value

    def test_gzip_bomb(self, fetch: Fetch) -> None:
        """STS-FETCH-13: a gzip body expanding to 10 MB fails; the cap counts decoded bytes."""
        assert FetchFailure.POLICY_TOO_LARGE == failed(get(fetch, "gzipbomb.test"))

    @pytest.mark.parametrize(
        "domain", ["brotli.test", "badgzip.test", "truncated.test", "garbage.test"]
    )
    def test_protocol_errors(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-18: broken HTTP is a fetch error, never a crash."""
        assert FetchFailure.PROTOCOL_ERROR == failed(get(fetch, domain))

    def test_close_without_response(self, fetch: Fetch) -> None:
        """STS-FETCH-18, issue 11: a close before any response head is broken HTTP for both fetchers."""
        result = get(fetch, "empty.test")
        assert isinstance(result, FetchFailed)
        assert (FetchFailure.PROTOCOL_ERROR, "protocol-error") == (result.kind, result.reason)


class TestDeadline:
    @pytest.mark.parametrize("domain", ["drip.test", "stall-headers.test", "stall.test"])
    def test_timeout(self, fetch: Fetch, domain: str) -> None:
        """STS-FETCH-11: a slow drip or a stall ends at the one wall-clock deadline."""
        start = time.monotonic()
        result = get(fetch, domain, timeout=1.0)
        elapsed = time.monotonic() - start
        assert FetchFailure.TIMEOUT == failed(result)
        assert 0.9 < elapsed < 2.0


class TestTLS:
    @pytest.mark.parametrize(
        ("domain", "code"),
        [
            ("wronghost.test", "certificate-host-mismatch"),
            ("expired.test", "certificate-expired"),
            ("untrusted.test", "certificate-not-trusted"),
        ],
    )
    def test_webpki(self, fetch: Fetch, domain: str, code: str) -> None:
        """STS-FETCH-03, STS-FETCH-18: certificate failures give sts-webpki-invalid."""
        result = get(fetch, domain)
        assert FetchFailure.WEBPKI == failed(result)
        assert isinstance(result, FetchFailed)
        assert (code, "sts-webpki-invalid") == (result.reason, result.result_type.value)

    def test_old_tls_refused(self, kind: str) -> None:
        """STS-FETCH-05: a server that only offers TLS 1.1 fails the handshake."""
        with HTTPSServer(max_tls=ssl.TLSVersion.TLSv1_1) as old:
            old.route("mta-sts.ok.test", policy())
            fetch = Fetch(kind, trust=old.trust, connect_to=old.connect_to("mta-sts.ok.test"))
            result = get(fetch, "ok.test")
        assert FetchFailure.TLS_ERROR == failed(result)
        assert isinstance(result, FetchFailed)
        assert "sts-webpki-invalid" == result.result_type.value
        assert result.reason.startswith("tls-")

    def test_sni_with_connect_to(self, fetch: Fetch, server: HTTPSServer) -> None:
        """STS-FETCH-04: with connect_to, SNI and the name checked are still the policy host."""
        get(fetch, "ok.test")
        assert "mta-sts.ok.test" == server.requests[-1].sni


class TestConnect:
    def test_connection_refused(self, server: HTTPSServer, kind: str) -> None:
        """STS-FETCH-18: a refused connection is connect-error."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        fetch = Fetch(
            kind, trust=server.trust, connect_to={("mta-sts.ok.test", 443): ("127.0.0.1", port)}
        )
        assert FetchFailure.CONNECT_ERROR == failed(get(fetch, "ok.test"))

    def test_policy_host_via_dns(
        self, server: HTTPSServer, dns_server: DNSServer, kind: str
    ) -> None:
        """STS-FETCH-21: the policy host is resolved through the DNS adapter."""
        fetch = Fetch(
            kind,
            trust=server.trust,
            resolver=resolver_for(kind, dns_server),
            connect_to={},
        )
        request = FetchPolicy(
            url=f"https://mta-sts.ok.test:{server.port}/.well-known/mta-sts.txt",
            host="mta-sts.ok.test",
            timeout=2,
        )
        result = fetch(request)
        assert isinstance(result, HTTPResponse)
        assert f"mta-sts.ok.test:{server.port}" == server.requests[-1].header("Host")

    @pytest.mark.parametrize("domain", ["absent.test", "servfail.test"])
    def test_policy_host_dns_failure(
        self, server: HTTPSServer, dns_server: DNSServer, kind: str, domain: str
    ) -> None:
        """STS-FETCH-21: NXDOMAIN or SERVFAIL for the policy host is dns-error."""
        fetch = Fetch(kind, trust=server.trust, resolver=resolver_for(kind, dns_server))
        result = get(fetch, domain)
        assert FetchFailure.DNS_ERROR == failed(result)
        assert isinstance(result, FetchFailed)
        assert "sts-policy-fetch-error" == result.result_type.value

    def test_private_address_blocked(
        self, server: HTTPSServer, dns_server: DNSServer, kind: str
    ) -> None:
        """SEC-07: with the SSRF guard on, a policy host on loopback is refused."""
        fetch = Fetch(
            kind,
            trust=server.trust,
            resolver=resolver_for(kind, dns_server),
            block_private_addresses=True,
        )
        result = get(fetch, "ok.test")
        assert FetchFailure.CONNECT_ERROR == failed(result)
        assert isinstance(result, FetchFailed)
        assert "private-address" == result.reason

    def test_system_resolver(self, server: HTTPSServer, kind: str) -> None:
        """STS-FETCH-01: without a DNS adapter the system resolver finds the host (localhost)."""
        fetch = Fetch(kind, trust=server.trust)
        request = FetchPolicy(
            url=f"https://localhost:{server.port}/.well-known/mta-sts.txt",
            host="localhost",
            timeout=2,
        )
        result = fetch(request)
        assert isinstance(result, HTTPResponse)
        assert ENFORCE == result.body

    def test_system_resolver_private_blocked(self, server: HTTPSServer, kind: str) -> None:
        """SEC-07: the SSRF guard also applies to system-resolved addresses."""
        fetch = Fetch(kind, trust=server.trust, block_private_addresses=True)
        request = FetchPolicy(
            url=f"https://localhost:{server.port}/.well-known/mta-sts.txt", host="localhost"
        )
        result = fetch(request)
        assert isinstance(result, FetchFailed)
        assert "private-address" == result.reason


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def dns_server(server: HTTPSServer) -> Iterator[DNSServer]:
    with DNSServer() as srv:
        srv.add("mta-sts.ok.test", "A", "127.0.0.1")
        srv.add("mta-sts.servfail.test", "A", "127.0.0.1")
        srv.servfail("mta-sts.servfail.test")
        yield srv


def resolver_for(kind: str, dns_server: DNSServer) -> DNSResolver | AsyncDNSResolver:
    if kind == "sync":
        return DNSResolver([dns_server.address], lifetime=1)
    return AsyncDNSResolver([dns_server.address], lifetime=1)


class TestSettings:
    def test_parse_connect_to(self) -> None:
        """STS-FETCH-04: --connect-to HOST:PORT:ADDR:PORT, IPv6 in brackets."""
        assert {
            ("mta-sts.example.com", 443): ("127.0.0.1", 8443),
            ("mta-sts.example.net", 443): ("::1", 8443),
        } == parse_connect_to(
            ["MTA-STS.example.com.:443:127.0.0.1:8443", "mta-sts.example.net:443:[::1]:8443"]
        )

    @pytest.mark.parametrize(
        "spec", ["nohost", "h:443:addr", "h:x:127.0.0.1:1", ":443:127.0.0.1:1", "h:1:[::1]x"]
    )
    def test_parse_connect_to_bad(self, spec: str) -> None:
        """STS-FETCH-04: malformed --connect-to settings are rejected."""
        with pytest.raises(ValueError, match="connect-to"):
            parse_connect_to([spec])

    def test_context(self) -> None:
        """STS-FETCH-03, STS-FETCH-05: TLS >= 1.2, certificate and host name required."""
        context = make_ssl_context()
        assert ssl.TLSVersion.TLSv1_2 == context.minimum_version
        assert ssl.CERT_REQUIRED == context.verify_mode
        assert context.check_hostname

    def test_empty_trust_store(self) -> None:
        """STS-FETCH-03: an empty trust store is a configuration error, not "trust all"."""
        with pytest.raises(ValueError, match="empty"):
            make_ssl_context(TrustStore([]))


class TestProxy:
    def test_tunnel(self, server: HTTPSServer, kind: str) -> None:
        """SEC-06, STS-FETCH-04: an explicit proxy gets CONNECT; TLS and SNI are end to end."""
        with ConnectProxy({("mta-sts.ok.test", 443): ("127.0.0.1", server.port)}) as proxy:
            fetch = Fetch(kind, trust=server.trust, proxy=proxy.address)
            result = get(fetch, "ok.test")
            assert isinstance(result, HTTPResponse)
            assert ENFORCE == result.body
            assert ["mta-sts.ok.test:443"] == proxy.asked
            assert "mta-sts.ok.test" == server.requests[-1].sni

    def test_connect_to_rewrites_authority(self, server: HTTPSServer, kind: str) -> None:
        """STS-FETCH-04: with a proxy, connect_to changes the CONNECT target, not the SNI."""
        routes = {("127.0.0.1", server.port): ("127.0.0.1", server.port)}
        with ConnectProxy(routes) as proxy:
            fetch = Fetch(
                kind,
                trust=server.trust,
                proxy=proxy.address,
                connect_to=server.connect_to("mta-sts.ok.test"),
            )
            assert isinstance(get(fetch, "ok.test"), HTTPResponse)
            assert [f"127.0.0.1:{server.port}"] == proxy.asked

    @pytest.mark.parametrize(
        ("reply", "kind_expected", "reason"),
        [
            (b"HTTP/1.1 403 Forbidden\r\n\r\n", FetchFailure.CONNECT_ERROR, "proxy-http-403"),
            (b"SSH-2.0-x\r\n\r\n", FetchFailure.PROTOCOL_ERROR, "protocol-error"),
            (b"HTTP/1.1 200 OK\r\n\r\nextra", FetchFailure.PROTOCOL_ERROR, "protocol-error"),
            (b"HTTP/1.1 200 OK\r\n", FetchFailure.PROTOCOL_ERROR, "protocol-error"),
        ],
    )
    def test_refused_or_broken(
        self,
        server: HTTPSServer,
        kind: str,
        reply: bytes,
        kind_expected: FetchFailure,
        reason: str,
    ) -> None:
        """SEC-06, STS-FETCH-18: a proxy that refuses or breaks the tunnel gives a fetch error."""
        with ConnectProxy({}) as proxy:
            proxy.reply = reply
            fetch = Fetch(kind, trust=server.trust, proxy=proxy.address)
            result = get(fetch, "ok.test")
            assert isinstance(result, FetchFailed)
            if reply.endswith(b"extra") and kind == "async":
                return  # asyncio hands the stray bytes to TLS, which fails somehow
            assert (kind_expected, reason) == (result.kind, result.reason)

    def test_stalling_proxy(self, server: HTTPSServer, kind: str) -> None:
        """STS-FETCH-11: a proxy that never answers ends at the deadline."""
        with ConnectProxy({}) as proxy:
            proxy.stall = True
            fetch = Fetch(kind, trust=server.trust, proxy=proxy.address)
            assert FetchFailure.TIMEOUT == failed(get(fetch, "ok.test", timeout=1.0))


class TestRevocation:
    def test_hook_rejects(self, server: HTTPSServer, kind: str) -> None:
        """STS-FETCH-17, SEC-05: a revocation hook that reports "revoked" gives sts-webpki-invalid."""
        seen: list[tuple[str, str]] = []

        def check(host: str, der: bytes) -> str | None:
            cert = x509.load_der_x509_certificate(der)
            seen.append((host, cert.subject.rfc4514_string()))
            return "revoked (test CRL)" if host == "mta-sts.ok.test" else None

        fetch = Fetch(
            kind,
            trust=server.trust,
            connect_to=server.connect_to("mta-sts.ok.test", "mta-sts.chunked.test"),
            revocation_check=check,
        )
        result = get(fetch, "ok.test")
        assert FetchFailure.WEBPKI == failed(result)
        assert isinstance(result, FetchFailed)
        assert ("certificate-revoked", "sts-webpki-invalid") == (
            result.reason,
            result.result_type.value,
        )
        assert isinstance(get(fetch, "chunked.test"), HTTPResponse)
        assert [
            ("mta-sts.ok.test", "CN=mta-sts.ok.test"),
            ("mta-sts.chunked.test", "CN=mta-sts.chunked.test"),
        ] == seen


@pytest.mark.parametrize("domain", sorted(ROUTES))
def test_reason_codes_are_short(fetch: Fetch, domain: str) -> None:
    """SEC-12: every failure-reason-code is a short token, with no paths or host names."""
    result = get(fetch, domain, timeout=0.5)
    checked = result if isinstance(result, FetchFailed) else policy_request(domain).validate(result)
    if isinstance(checked, FetchFailed):
        assert re.fullmatch(r"[a-z0-9][a-z0-9+-]{0,63}", checked.reason), checked.reason
        assert domain not in checked.reason


_HEADS = st.sampled_from(
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n",
        b"HTTP/1.0 301 Moved\r\nLocation: x\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(head=_HEADS, tail=st.binary(max_size=300))
def test_any_reply_is_a_value(server: HTTPSServer, kind: str, head: bytes, tail: bytes) -> None:
    """STS-FETCH-18, SEC-16: whatever the policy host sends, the fetch ends in a value."""
    server.route("mta-sts.fuzz.test", raw(head + tail))
    fetch = Fetch(kind, trust=server.trust, connect_to=server.connect_to("mta-sts.fuzz.test"))
    result = get(fetch, "fuzz.test", timeout=1.0)
    assert isinstance(result, HTTPResponse | FetchFailed)
    if isinstance(result, HTTPResponse):
        assert len(result.body) <= CAP + 1


@pytest.mark.parametrize("domain", ["huge-nocl.test", "gzipbomb.test"])
def test_memory_stays_bounded(server: HTTPSServer, domain: str) -> None:
    """STS-FETCH-12, STS-FETCH-13: an 8 MiB body or a 10 MB gzip bomb costs well under 1 MiB."""
    fetch = Fetch("sync", trust=server.trust, connect_to=server.connect_to(f"mta-sts.{domain}"))
    tracemalloc.start()
    try:
        result = get(fetch, domain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert FetchFailure.POLICY_TOO_LARGE == failed(result)
    assert peak < 1024 * 1024
