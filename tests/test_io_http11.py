"""
Tests for smtpsts.io._http11: one HTTP/1.1 exchange on h11, for sockets and asyncio streams (issue 11).

The conversation is tested against scripted peers (the bytes a server sends,
read by :func:`drive`), and both ``perform`` functions against the real TLS
server of :mod:`httpsservers` on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterator

import h11
import pytest

from httpsservers import ENFORCE, HTTPSServer, chunked, policy, raw, slow_drip, stall
from smtpsts.io._drive import drive
from smtpsts.io._http11 import (
    NO_RESPONSE,
    Deadline,
    Receive,
    Response,
    Send,
    adrive_on_stream,
    drive_on_socket,
    exchange,
)
from smtpsts.io.http import make_ssl_context

HOST = "mta-sts.example.com"
HEADERS = [("Host", HOST), ("Connection", "close")]


def scripted(
    *replies: bytes | Exception,
) -> tuple[Callable[[Send | Receive], bytes | None], list[bytes]]:
    """A peer that answers each Receive with the next reply (b"" once they run out)."""
    sent: list[bytes] = []
    queue: Iterator[bytes | Exception] = iter(replies)

    def perform(request: Send | Receive) -> bytes | None:
        if isinstance(request, Send):
            sent.append(request.data)
            return None
        reply = next(queue, b"")
        if isinstance(reply, Exception):
            raise reply
        return reply[: request.max_bytes]

    return perform, sent


def run(*replies: bytes | Exception, **options: object) -> tuple[Response, list[bytes]]:
    perform, sent = scripted(*replies)
    options.setdefault("max_body", 100)
    response = drive(exchange("GET", "/p", HEADERS, **options), perform)  # type: ignore[arg-type]
    return response, sent


class TestConversation:
    def test_request_bytes_and_response(self) -> None:
        """RFC 9112 §3: one request with the caller's headers; the response's status, headers and body."""
        response, sent = run(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", b"Content-Length: 2\r\n\r\nok"
        )
        assert [b"get /p http/1.1\r\nhost: mta-sts.example.com\r\nconnection: close\r\n\r\n"] == [
            s.lower() for s in sent
        ]
        assert (200, "OK", b"ok", False, True) == (
            response.status,
            response.reason,
            response.body,
            response.truncated,
            response.body_read,
        )
        assert "text/plain" == response.header("Content-Type")
        assert None is response.header("Location")

    def test_post_body_gets_a_length(self) -> None:
        """RFC 9112 §6.2: a request body is sent with a Content-Length added when missing."""
        perform, sent = scripted(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        response = drive(exchange("POST", "/r", HEADERS, b"{}", max_body=10), perform)
        assert 202 == response.status
        assert sent[0].lower().endswith(b"content-length: 2\r\n\r\n{}")

    def test_given_length_is_kept(self) -> None:
        """RFC 9112 §6.2: a Content-Length the caller gives is not added twice."""
        perform, sent = scripted(b"HTTP/1.1 204 No Content\r\n\r\n")
        drive(
            exchange("POST", "/r", [*HEADERS, ("Content-Length", "2")], b"{}", max_body=10), perform
        )
        assert 1 == sent[0].lower().count(b"content-length")

    def test_informational_skipped_and_chunked(self) -> None:
        """RFC 9110 §15.2: 1xx responses are skipped; a chunked body is de-chunked."""
        response, _ = run(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        assert (200, b"abc") == (response.status, response.body)

    def test_close_delimited(self) -> None:
        """RFC 9112 §6.3: without a length, the body ends when the server closes."""
        response, _ = run(b"HTTP/1.0 200 OK\r\n\r\nbody")
        assert (b"body", False) == (response.body, response.truncated)

    def test_body_capped(self) -> None:
        """STS-FETCH-12: at most max_body bytes are kept and reading stops there."""
        perform, _ = scripted(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 20,
            AssertionError("read on"),
        )
        response = drive(exchange("GET", "/", HEADERS, max_body=10), perform)
        assert (b"x" * 10, True) == (response.body, response.truncated)

    def test_body_declined(self) -> None:
        """STS-FETCH-06: a body the caller does not want is not read."""
        seen: list[tuple[int, str | None]] = []

        def wanted(head: Response) -> bool:
            seen.append((head.status, head.header("Location")))
            return False

        perform, _ = scripted(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 5\r\n\r\n", AssertionError()
        )
        response = drive(exchange("GET", "/", HEADERS, max_body=10, read_body=wanted), perform)
        assert [(301, "/x")] == seen
        assert (301, b"", False) == (response.status, response.body, response.body_read)

    def test_close_before_response(self) -> None:
        """RPT-SEND-18, STS-FETCH-18: a close before any response head is a ConnectionError without errno."""
        with pytest.raises(ConnectionError, match=NO_RESPONSE) as info:
            run(b"")
        assert None is info.value.errno

    def test_close_mid_body(self) -> None:
        """STS-FETCH-18: a close before the announced length is broken HTTP."""
        with pytest.raises(h11.RemoteProtocolError):
            run(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")

    def test_close_mid_body_kept(self) -> None:
        """RPT-SEND-18: with keep_partial_body the status counts; the cut body is flagged."""
        response, _ = run(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", keep_partial_body=True)
        assert (200, b"ab", True) == (response.status, response.body, response.truncated)

    def test_error_after_head_kept(self) -> None:
        """RPT-SEND-18: a read error after the head ends the body when partial bodies are kept."""
        response, _ = run(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\n",
            TimeoutError("slow"),
            keep_partial_body=True,
        )
        assert (202, True) == (response.status, response.truncated)

    def test_error_before_head_raised(self) -> None:
        """Issue 10: an error of perform before the head comes out unchanged."""
        with pytest.raises(TimeoutError, match="slow"):
            run(TimeoutError("slow"), keep_partial_body=True)

    def test_garbage(self) -> None:
        """STS-FETCH-18: no HTTP at all is h11's protocol error."""
        with pytest.raises(h11.RemoteProtocolError):
            run(b"SSH-2.0-OpenSSH\r\n\r\n")

    def test_head_too_large(self) -> None:
        """STS-FETCH-12: a response head over max_header_bytes is refused."""
        with pytest.raises(h11.RemoteProtocolError):
            run(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300, max_header_bytes=256)


# --------------------------------------------------------------------------- real server


def test_deadline_object() -> None:
    """Issue 10: one Deadline bounds the whole exchange; once spent, left() raises TimeoutError."""
    assert 0 < Deadline(5).left() <= 5
    with pytest.raises(TimeoutError, match="the 1e-09 s deadline passed"):
        Deadline(1e-9).left()


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPSServer]:
    with HTTPSServer() as https:
        https.route("ok.test", policy(ENFORCE))
        https.route("chunked.test", chunked(ENFORCE, chunk=7))
        https.route("drip.test", slow_drip(0.2))
        https.route("stall.test", stall(30))
        https.route("empty.test", raw(b""))
        yield https


def tls_socket(server: HTTPSServer, host: str) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return make_ssl_context(server.trust).wrap_socket(sock, server_hostname=host)


def get(host: str) -> Generator[Send | Receive, bytes | None, Response]:
    return exchange("GET", "/", [("Host", host)], max_body=65536)


def over_socket(server: HTTPSServer, host: str, seconds: float = 5) -> Response:
    with tls_socket(server, host) as sock:
        return drive_on_socket(get(host), sock, Deadline(seconds))


def over_stream(server: HTTPSServer, host: str, seconds: float = 5) -> Response:
    async def go() -> Response:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=make_ssl_context(server.trust), server_hostname=host
        )
        try:
            return await adrive_on_stream(get(host), reader, writer, Deadline(seconds))
        finally:
            writer.transport.abort()

    return asyncio.run(go())


@pytest.fixture(params=["socket", "stream"])
def over(request: pytest.FixtureRequest) -> Callable[..., Response]:
    return over_socket if request.param == "socket" else over_stream


class TestRealServer:
    @pytest.mark.parametrize("host", ["ok.test", "chunked.test"])
    def test_fetch(self, server: HTTPSServer, over: Callable[..., Response], host: str) -> None:
        """RFC 8461 §3.3: the same response over a blocking socket and an asyncio stream."""
        response = over(server, host)
        assert (200, ENFORCE) == (response.status, response.body)
        assert "GET / HTTP/1.1" == server.requests[-1].lines[0]

    @pytest.mark.parametrize("host", ["drip.test", "stall.test"])
    def test_deadline(self, server: HTTPSServer, over: Callable[..., Response], host: str) -> None:
        """STS-FETCH-11: every read waits only for the time left of the one deadline."""
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            over(server, host, 0.5)
        assert time.monotonic() - start < 2

    def test_close_before_response(
        self, server: HTTPSServer, over: Callable[..., Response]
    ) -> None:
        """RPT-SEND-18: a server that closes without a response: ConnectionError(NO_RESPONSE)."""
        with pytest.raises(ConnectionError, match=NO_RESPONSE):
            over(server, "empty.test")
