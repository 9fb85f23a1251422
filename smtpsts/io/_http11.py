"""
One HTTP/1.1 exchange on h11, for blocking sockets and asyncio streams alike (issue 11).

The policy fetch (RFC 8461 §3.3) and the report POST (RFC 8460 §5.3.1) both
send one request on a fresh connection and read one response. The exchange
is written once, as a generator conversation (see :mod:`smtpsts.io._drive`),
and run by :func:`~smtpsts.io._drive.drive` over a connected (TLS) socket or
by :func:`~smtpsts.io._drive.adrive` over an asyncio stream pair.

API
---
``exchange(method, target, headers, body=b"", *, max_body, read_body=None,
keep_partial_body=False, max_header_bytes=MAX_HEADER_BYTES)``
    The conversation. Yields :class:`Send` (result: ``None``) and
    :class:`Receive` (result: the bytes read, ``b""`` when the peer closed);
    returns a :class:`Response`. ``headers`` are sent as given (add ``Host``
    and ``Connection: close`` yourself); ``Content-Length`` is added when
    ``body`` is not empty and the headers have none. At most ``max_body``
    body bytes (after de-chunking; no content decoding) are kept: a longer
    body stops the read there and the response says ``truncated=True``.
    ``read_body(head)`` (the :class:`Response` without its body) returning
    ``False`` skips the body (``body_read=False``). 1xx responses are skipped.

    Raises, from inside the conversation: ``h11.ProtocolError`` for broken
    HTTP (a head over ``max_header_bytes``, a close in the middle of a
    ``Content-Length`` or chunked body); ``ConnectionError`` with
    ``errno None`` and the message :data:`NO_RESPONSE` when the peer closes
    before a response head; any exception of ``perform`` (``OSError``,
    ``TimeoutError``, ``ssl.SSLError``) unchanged, except that with
    ``keep_partial_body=True`` an ``OSError`` or ``h11.ProtocolError`` after
    the response head ends the body instead (``truncated=True``; the
    report POST only needs the status).

``perform_on_socket(sock, deadline)`` / ``perform_on_stream(reader, writer, deadline)``
    The ``perform`` functions for :func:`drive` / :func:`adrive`. Every send
    and every read waits at most ``deadline.left()`` seconds (a
    :class:`Deadline`, or any :class:`TimeLeft`: an object whose
    ``left() -> float`` raises ``TimeoutError`` once the one overall
    deadline has passed), so a peer that drips one byte at a time cannot
    stretch the exchange past the caller's deadline (STS-FETCH-11; issue 10).

``Deadline(seconds)``
    The one overall deadline: ``.seconds``, ``.end`` (monotonic), ``.left()``
    (raises ``TimeoutError("the N s deadline passed")``). Create it once per
    exchange -- or once per POST with its redirects -- and pass it to every
    ``perform``.

``drive_on_socket(exchange(...), sock, deadline)``
``await adrive_on_stream(exchange(...), reader, writer, deadline)``
    Shorthands: ``drive``/``adrive`` with the matching ``perform``, e.g.::

        response = drive_on_socket(
            exchange("POST", "/tlsrpt", [("Host", host), ("Connection", "close")],
                     body, max_body=65536, keep_partial_body=True),
            tls_socket, deadline,
        )

Connecting, TLS, proxies, redirects and what a status means are the callers'
business; local faults (``EMFILE``...) come out of ``perform`` as the
``OSError`` they are, for the caller to classify (issue 17).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Final, Protocol

import attrs
import h11

from smtpsts.io._drive import adrive, drive

__all__ = [
    "MAX_HEADER_BYTES",
    "NO_RESPONSE",
    "READ_SIZE",
    "Deadline",
    "Headers",
    "Receive",
    "Response",
    "Send",
    "TimeLeft",
    "adrive_on_stream",
    "drive_on_socket",
    "exchange",
    "perform_on_socket",
    "perform_on_stream",
]

MAX_HEADER_BYTES: Final = 16384
"""The most bytes of status line plus headers accepted (h11's default event cap)."""

READ_SIZE: Final = 16384
"""The most bytes asked for by one :class:`Receive`."""

NO_RESPONSE: Final = "the server closed the connection without a response"
"""The message of the ``ConnectionError`` raised for a close before any response head."""

Headers = tuple[tuple[str, str], ...]
"""Header fields as ``(name, value)``, decoded as Latin-1; h11 gives names in lower case."""


@attrs.frozen
class Send:
    """
    Request: send all of ``data`` to the peer; the result is ``None``.
    """

    data: bytes


@attrs.frozen
class Receive:
    """
    Request: read up to ``max_bytes``; the result is the bytes, ``b""`` once the peer closed.
    """

    max_bytes: int


@attrs.frozen
class Response:
    """
    The response to one exchange (RFC 9112 §4, §6).

    Attributes:
        status: The status code of the final (non-1xx) response.
        reason: Its reason phrase.
        headers: Its header fields.
        body: The body bytes kept (at most ``max_body``; empty when not read).
        truncated: The body was cut: longer than ``max_body``, or (with
            ``keep_partial_body``) the connection failed before its end.
        body_read: ``False`` when ``read_body`` declined the body.
    """

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    truncated: bool = False
    body_read: bool = True

    def header(self, name: str) -> str | None:
        """
        Return the first value of a header field.

        Args:
            name: The field name, in any case.

        Returns:
            Its first value, or ``None`` when the response has none.
        """
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


class TimeLeft(Protocol):
    """
    What bounds the waits: ``left()`` is the time left, and raises ``TimeoutError`` once it passed.
    """

    def left(self) -> float:
        """
        Return the seconds left.

        Raises:
            TimeoutError: The deadline has passed.
        """


class Deadline:
    """
    One wall-clock deadline for a whole exchange, redirects and retries included (issue 10).

    Args:
        seconds: Seconds from now.

    Attributes:
        seconds: The budget given.
        end: The :func:`time.monotonic` time it ends.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """
        Return the seconds left.

        Raises:
            TimeoutError: The deadline has passed.
        """
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the {self.seconds:g} s deadline passed")
        return remaining


def _decode(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def exchange(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes = b"",
    *,
    max_body: int,
    read_body: Callable[[Response], bool] | None = None,
    keep_partial_body: bool = False,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> Generator[Send | Receive, bytes | None, Response]:
    """
    Send one request and read its response: the conversation (see the module docstring).

    Args:
        method: The request method (``GET``, ``POST``).
        target: The request target (path and query).
        headers: The request header fields.
        body: The request body.
        max_body: The most body bytes kept.
        read_body: Decides from the response head whether to read the body.
        keep_partial_body: A failure after the response head ends the body.
        max_header_bytes: The cap on the response head.

    Yields:
        :class:`Send` and :class:`Receive` requests.

    Returns:
        The response.

    Raises:
        h11.ProtocolError: The peer's HTTP is broken.
        ConnectionError: The peer closed before a response head (:data:`NO_RESPONSE`).
    """
    fields = list(headers)
    if body and not any(name.lower() == "content-length" for name, _ in fields):
        fields.append(("Content-Length", str(len(body))))
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
    events: list[h11.Request | h11.Data | h11.EndOfMessage] = [
        h11.Request(method=method, target=target, headers=fields)
    ]
    if body:
        events.append(h11.Data(data=body))
    events.append(h11.EndOfMessage())
    yield Send(b"".join(conn.send(event) or b"" for event in events))
    found: Response | None = None
    kept = bytearray()
    truncated = False
    while True:
        try:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = yield Receive(READ_SIZE)
                if not data and found is None:
                    raise ConnectionError(NO_RESPONSE)
                conn.receive_data(data or b"")
                continue
        except (OSError, h11.ProtocolError):
            if found is None or not keep_partial_body:
                raise
            truncated = True
            break
        if isinstance(event, h11.Response):
            found = Response(
                event.status_code, event.reason.decode("latin-1"), _decode(event.headers)
            )
            if read_body is not None and not read_body(found):
                return attrs.evolve(found, body_read=False)
        elif isinstance(event, h11.Data):
            room = max_body - len(kept)
            kept += event.data[:room]
            if len(event.data) > room:
                truncated = True
                break
        elif isinstance(event, h11.EndOfMessage):
            break
        # h11.InformationalResponse (1xx) is skipped; ConnectionClosed
        # cannot come before EndOfMessage, which ends the loop.
    assert found is not None  # h11 gives the head before any Data or EndOfMessage
    return attrs.evolve(found, body=bytes(kept), truncated=truncated)


def perform_on_socket(
    sock: socket.socket, deadline: TimeLeft
) -> Callable[[Send | Receive], bytes | None]:
    """
    Return the blocking ``perform`` for :func:`exchange` over a connected socket.

    Args:
        sock: The connected (usually TLS) socket.
        deadline: Bounds every send and read (STS-FETCH-11).

    Returns:
        The ``perform`` function for :func:`~smtpsts.io._drive.drive`.
    """

    def perform(request: Send | Receive) -> bytes | None:
        if isinstance(request, Receive):
            sock.settimeout(deadline.left())
            return sock.recv(request.max_bytes)
        view = memoryview(request.data)
        while view:
            sock.settimeout(deadline.left())
            view = view[sock.send(view[:READ_SIZE]) :]
        return None

    return perform


def perform_on_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: TimeLeft
) -> Callable[[Send | Receive], Awaitable[bytes | None]]:
    """
    Return the asyncio ``perform`` for :func:`exchange` over a stream pair.

    Args:
        reader: The connection's reader.
        writer: Its writer.
        deadline: Bounds every drain and read (STS-FETCH-11).

    Returns:
        The ``perform`` coroutine function for :func:`~smtpsts.io._drive.adrive`.
    """

    async def perform(request: Send | Receive) -> bytes | None:
        if isinstance(request, Receive):
            return await asyncio.wait_for(reader.read(request.max_bytes), deadline.left())
        writer.write(request.data)
        await asyncio.wait_for(writer.drain(), deadline.left())
        return None

    return perform


def drive_on_socket(
    conversation: Generator[Send | Receive, bytes | None, Response],
    sock: socket.socket,
    deadline: TimeLeft,
) -> Response:
    """
    Run an :func:`exchange` over a blocking socket.

    Args:
        conversation: The exchange.
        sock: The connected socket.
        deadline: The one overall deadline.

    Returns:
        The response.
    """
    return drive(conversation, perform_on_socket(sock, deadline))


async def adrive_on_stream(
    conversation: Generator[Send | Receive, bytes | None, Response],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    deadline: TimeLeft,
) -> Response:
    """
    Run an :func:`exchange` over an asyncio stream pair.

    Args:
        conversation: The exchange.
        reader: The connection's reader.
        writer: Its writer.
        deadline: The one overall deadline.

    Returns:
        The response.
    """
    return await adrive(conversation, perform_on_stream(reader, writer, deadline))
