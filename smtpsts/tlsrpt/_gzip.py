"""
Bounded gzip inflation for received reports (RFC 8460 §6.5), shared by every reader.

One loop for the mail reader (:func:`smtpsts.tlsrpt.parse.decompress_report`)
and the HTTPS intake (:func:`smtpsts.tlsrpt.inbox.accept_report_body`): each
maps :class:`GzipProblem` to its own error type and words. Pure.
"""

from __future__ import annotations

import zlib
from typing import Final, Literal

__all__ = ["GZIP_MAGIC", "GzipProblem", "inflate"]

_Kind = Literal["invalid", "too-large", "truncated", "trailing"]

GZIP_MAGIC: Final = b"\x1f\x8b"
"""The first two bytes of a gzip member (RFC 1952 §2.3.1)."""


class GzipProblem(Exception):  # noqa: N818 -- private: callers turn it into their own error
    """
    Why the data could not be inflated within the cap.

    Attributes:
        kind: ``"invalid"`` (not gzip; ``detail`` has zlib's words),
            ``"too-large"`` (more than the cap), ``"truncated"`` or
            ``"trailing"`` (non-zero bytes after the last member).
        detail: zlib's message for ``"invalid"``, else ``""``.
    """

    def __init__(
        self, kind: Literal["invalid", "too-large", "truncated", "trailing"], detail: str = ""
    ) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


def inflate(data: bytes, cap: int) -> bytes:
    """
    Inflate every concatenated gzip member of *data* (RFC 1952 §2.2), at most *cap* bytes.

    ``max_length`` bounds each step, so a bomb stops one byte past the cap and
    memory stays bounded whatever the input. Zero padding after the last
    member is harmless and ignored.

    Args:
        data: The gzip bytes.
        cap: The most bytes the output may have.

    Returns:
        The inflated bytes.

    Raises:
        GzipProblem: The data is not gzip, is truncated, has data after the
            last member, or inflates past *cap*.
    """
    out = bytearray()
    pending = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(pending, cap + 1 - len(out))
        except zlib.error as e:
            raise GzipProblem("invalid", str(e)) from None
        if len(out) > cap:
            raise GzipProblem("too-large")
        if not inflater.eof:
            raise GzipProblem("truncated")
        pending = inflater.unused_data
        if not pending.startswith(GZIP_MAGIC):
            if pending.strip(b"\0"):
                raise GzipProblem("trailing")
            return bytes(out)
