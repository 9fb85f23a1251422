"""
Netstrings, the framing of Postfix's socketmap protocol (``socketmap_table(5)``).

A netstring is ``<length>:<bytes>,`` with ``<length>`` the decimal byte count
(D. J. Bernstein, "Netstrings", 1997). :class:`NetstringDecoder` is
sans-I/O, in the way of h11: the caller feeds it whatever bytes arrived and
gets back every complete payload, in order, so pipelined requests come out
one by one and a payload split over many reads is put back together.

Malformed input raises :class:`NetstringError`, a
:class:`~smtpsts.exceptions.ParseError` whose ``reason`` names the fault. A
decoder that raised stays broken: the stream has lost its framing, and the
only safe thing is to close the connection.
"""

from __future__ import annotations

from typing import Final

from smtpsts.exceptions import NetstringError

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "NetstringDecoder",
    "NetstringError",
    "encode",
]

DEFAULT_MAX_LENGTH: Final = 1024 + 64
"""The payload cap used by the socketmap server: a 1024-byte key plus the map name."""

_MAX_DIGITS: Final = 10
"""Lengths with more digits than this are refused before they are read in full."""

_COMMA: Final = ord(",")


def encode(payload: bytes) -> bytes:
    """
    Frame ``payload`` as one netstring.

    Args:
        payload: The bytes to send.

    Returns:
        ``b"<len>:<payload>,"``.
    """
    return b"%d:%b," % (len(payload), payload)


class NetstringDecoder:
    """
    Incremental netstring decoder with a payload size cap.

    Args:
        max_length: The largest payload accepted, in bytes; a longer one is
            refused as soon as the digits of its length prefix exceed it
            (before the ``:`` arrives), before any of its payload is buffered.

    Attributes:
        max_length: The payload cap.
        offset: How many bytes of the stream were consumed by complete
            netstrings so far (error offsets count from the stream start).
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 0:
            raise ValueError("max_length must not be negative")
        self.max_length = max_length
        self.offset = 0
        self._buffer = bytearray()
        self._error: NetstringError | None = None

    @property
    def pending(self) -> bool:
        """Whether part of a netstring has arrived but not all of it."""
        return bool(self._buffer)

    @property
    def error(self) -> NetstringError | None:
        """The error that broke the stream, once one was found."""
        return self._error

    def _fail(self, detail: str, reason: str, at: int) -> NetstringError:
        self._error = NetstringError(f"netstring: {detail}", offset=self.offset + at, reason=reason)
        return self._error

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add received bytes and return every payload they complete, in order.

        Args:
            data: The bytes just read (may be empty).

        Returns:
            The complete payloads (possibly none).

        Payloads completed before a malformed netstring are returned first;
        the error is then raised by the next call (and is in :attr:`error`).

        Raises:
            NetstringError: The stream is malformed (also on every call after
                the first error).
        """
        if self._error is not None:
            raise self._error
        # Work on the received bytes themselves unless part of a netstring is
        # buffered (the common case: whole netstrings per read, no copying).
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            buf = data
        out: list[bytes] = []
        start = 0
        end = len(buf)
        error: NetstringError | None = None
        while start < end:
            colon = buf.find(b":", start, min(end, start + _MAX_DIGITS + 1))
            if colon < 0:
                head = bytes(buf[start : min(end, start + _MAX_DIGITS + 1)])
                if not head.isdigit():
                    error = self._fail(f"length {head!r} is not a number", "bad-length", 0)
                elif len(head) > _MAX_DIGITS:
                    error = self._fail("length has too many digits", "too-long", 0)
                elif int(head) > self.max_length:
                    # More digits only make it longer: refuse before the colon
                    # arrives, so a client cannot hold a slot on a prefix.
                    error = self._fail(
                        f"length {head.decode()}... is over the cap {self.max_length}",
                        "too-long",
                        0,
                    )
                break
            digits = buf[start:colon]
            if not digits.isdigit():
                error = self._fail(
                    f"length {bytes(digits[:16])!r} is not a number", "bad-length", 0
                )
                break
            size = int(digits)
            if size > self.max_length:
                error = self._fail(
                    f"length {size} is over the cap {self.max_length}", "too-long", 0
                )
                break
            stop = colon + 1 + size
            if stop >= end:
                break
            if buf[stop] != _COMMA:
                error = self._fail(
                    f"expected ',' after {size} bytes, got {bytes(buf[stop : stop + 1])!r}",
                    "missing-comma",
                    stop - start,
                )
                break
            out.append(bytes(buf[colon + 1 : stop]))
            self.offset += stop + 1 - start
            start = stop + 1
        if buf is self._buffer:
            del self._buffer[:start]
        elif start < end:
            self._buffer = bytearray(buf[start:])
        if error is not None and not out:
            raise error
        return out

    def eof(self) -> None:
        """
        Tell the decoder that the stream ended.

        Raises:
            NetstringError: The stream ended inside a netstring.
        """
        if self._error is not None:
            raise self._error
        if self._buffer:
            raise self._fail(
                f"stream ended inside a netstring ({len(self._buffer)} bytes buffered)",
                "truncated",
                0,
            )
