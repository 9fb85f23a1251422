"""
Fuzz gzip received reports (RFC 8460 §5.3, §6.5).

This is what ``smtpsts tlsrpt show`` does for ``.json.gz`` files, and the
HTTPS sink for a gzip POST body.

``decompress_report`` and ``parse_report_message`` may raise only
:class:`smtpsts.tlsrpt.ReportSyntaxError`; decompression is capped.

Input: byte 0 picks the mode. Bit 0 clear: the rest, after the gzip magic
``1f 8b``, is the raw gzip stream (header, deflate data, trailer, members).
Bit 0 set: the rest is gzip-compressed here, so the fuzzer explores the
report inside a well-formed stream; bit 1 then appends a second member.
The decompression cap is 64 KiB in bit 2 mode, the default otherwise.
"""

from __future__ import annotations

import gzip

import _harness

with _harness.instrumented():
    from smtpsts.tlsrpt import ReportSyntaxError, decompress_report, parse_report_message

_MAGIC = b"\x1f\x8b"


def test_one(data: bytes) -> None:
    """Read one input (see the module docstring)."""
    if not data:
        return
    flags, body = data[0], data[1:]
    if flags & 1:
        stream = gzip.compress(body, compresslevel=1, mtime=0)
        if flags & 2:
            stream += gzip.compress(body[:16], compresslevel=1, mtime=0)
    else:
        stream = _MAGIC + body
    if flags & 4:
        decompress_report(stream, max_size=65536)
    else:
        parse_report_message(stream)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(ReportSyntaxError,), max_len=16384)
