"""
Reading the TLS-RPT reports others send (RFC 8460 §5).

A report arrives as a mail (``multipart/report; report-type="tlsrpt"`` with
an ``application/tlsrpt+gzip`` or ``+json`` part), as the body of an HTTPS
POST (gzip or JSON), or as a file someone saved. :func:`parse_report_message`
takes any of them as bytes and finds the report, tolerating what real senders
do: a non-standard ``application/tlsrpt`` part, ``.json`` or ``.json.gz``
attachments under generic media types.

Sizes are capped before any work is done: the message at
:data:`MAX_MESSAGE_SIZE`, the decompressed JSON at
:data:`~smtpsts.tlsrpt.model.MAX_REPORT_SIZE`. Decompression streams with
that cap, so a gzip bomb is refused after reading just past the limit.
"""

from __future__ import annotations

import email
import email.message
from collections.abc import Iterable

from smtpsts._names import to_alabel
from smtpsts.exceptions import DomainNameError, ReportNotAuthenticatedError, ReportSyntaxError
from smtpsts.tlsrpt._gzip import GZIP_MAGIC, GzipProblem, inflate
from smtpsts.tlsrpt.model import MAX_REPORT_SIZE, Report

__all__ = [
    "MAX_MESSAGE_SIZE",
    "ReportNotAuthenticatedError",
    "accept_report_message",
    "decompress_report",
    "parse_report_message",
]

MAX_MESSAGE_SIZE = 15 * 1024 * 1024
"""The largest message :func:`parse_report_message` reads, in bytes (CONFORMANCE §5)."""

_REPORT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json", "application/tlsrpt")
_GENERIC_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/json",
    "application/octet-stream",
)
_EXTENSIONS = (".json.gz", ".json", ".gz")
_IDS = ("RPT-JSON-23",)


def _error(message: str) -> ReportSyntaxError:
    return ReportSyntaxError(message, conformance=_IDS, reason="bad-report-message")


def decompress_report(data: bytes, *, max_size: int = MAX_REPORT_SIZE) -> bytes:
    """
    Decompress a gzip report, refusing output over ``max_size`` bytes.

    Concatenated gzip members (RFC 1952 §2.2) are all decompressed.

    Args:
        data: The gzip bytes.
        max_size: The cap on the decompressed size.

    Returns:
        The decompressed bytes.

    Raises:
        ReportSyntaxError: The data is not gzip, is truncated, or
            decompresses to more than ``max_size`` bytes.
    """
    try:
        return inflate(data, max_size)
    except GzipProblem as e:
        words = {
            "invalid": f"report is not valid gzip: {e.detail}",
            "too-large": f"report decompresses to more than {max_size} bytes",
            "truncated": "report gzip data is truncated",
            "trailing": "unexpected data after the gzip stream",
        }
        raise _error(words[e.kind]) from None


def _decode_body(body: bytes) -> Report:
    # RFC 8460 §6.5: gzip is recognised by its magic number, whatever the label.
    if body.startswith(GZIP_MAGIC):
        body = decompress_report(body)
    return Report.from_json(body)


def _sized(data: bytes) -> bytes:
    data = bytes(data)
    if len(data) > MAX_MESSAGE_SIZE:
        raise _error(f"message is {len(data)} bytes; at most {MAX_MESSAGE_SIZE} are read")
    return data


def _looks_like_json(data: bytes) -> bool:
    head = data[:64].lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return head.startswith((b"{", b"["))


def _rank(part: email.message.Message) -> int | None:
    ctype = part.get_content_type()
    if ctype in _REPORT_TYPES:
        return 0
    filename = (part.get_filename() or "").lower()
    if filename.endswith(_EXTENSIONS):
        return 1
    if ctype in _GENERIC_TYPES:
        return 2
    return None


def parse_report_message(data: bytes) -> Report:
    """
    Parse a received report: a mail, gzip bytes, or bare JSON (RFC 8460 §5).

    For a mail, the report is the first ``application/tlsrpt+gzip``,
    ``application/tlsrpt+json`` or ``application/tlsrpt`` part; failing
    that, the first attachment named ``*.json``, ``*.json.gz`` or ``*.gz``;
    failing that, the first ``application/gzip``, ``application/json`` or
    ``application/octet-stream`` part. Whether a part is gzip is decided
    by its content, not its label.

    Args:
        data: The bytes as received.

    Returns:
        The report.

    Raises:
        ReportSyntaxError: The input is over :data:`MAX_MESSAGE_SIZE`, holds
            no report, or the report is malformed (see
            :meth:`Report.from_json <smtpsts.tlsrpt.Report.from_json>` and
            :func:`decompress_report`).
    """
    data = _sized(data)
    if data.startswith(GZIP_MAGIC) or _looks_like_json(data):
        return _decode_body(data)
    message = email.message_from_bytes(data)
    best: tuple[int, email.message.Message] | None = None
    for part in message.walk():
        if part.is_multipart():
            continue
        rank = _rank(part)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, part)
    if best is None:
        raise _error("no TLS-RPT report found in the message (RFC 8460 §5.3)")
    body = best[1].get_payload(decode=True)
    if not isinstance(body, bytes) or not body:  # pragma: no cover - leaf parts decode to bytes
        raise _error("the report part of the message is empty")
    return _decode_body(body)


def _submitter(message: email.message.Message) -> str | None:
    value = message.get("TLS-Report-Submitter")
    if value is None:
        return None
    try:
        return to_alabel(str(value).strip())
    except DomainNameError:
        return None


def _covers(signer: str, submitter: str) -> bool:
    try:
        domain = to_alabel(signer)
    except DomainNameError:
        return False
    # A parent must have a dot: a bare top-level domain (d=example) signs for
    # no one. Without a public-suffix list, d=co.uk still counts as a parent.
    return submitter == domain or ("." in domain and submitter.endswith("." + domain))


def accept_report_message(data: bytes, *, dkim_domains: Iterable[str]) -> Report:
    """
    Parse a mailed report only if DKIM vouches for its submitter (RFC 8460 §3).

    RPT-SEND-25: a report received by mail is ignored unless a valid DKIM
    signature has ``d=`` equal to, or a parent of, the domain in the
    ``TLS-Report-Submitter`` header (RFC 8460 §5.3). The DKIM check itself
    is the caller's (:func:`smtpsts.io.dkim.accept_report` makes it with
    dkimpy); this function takes its verdict. Keys without ``s=tlsrpt``
    are accepted. Subject, filename and the header only gate acceptance:
    the report's content is read from the JSON (RPT-SEND-24).

    Args:
        data: The message as received.
        dkim_domains: The ``d=`` domains of the signatures that verified;
            empty when none did.

    Returns:
        The report.

    Raises:
        ReportNotAuthenticatedError: No ``TLS-Report-Submitter`` header, or
            no verified signature covers it.
        ReportSyntaxError: The message holds no valid report (see
            :func:`parse_report_message`).
    """
    data = _sized(data)
    submitter = _submitter(email.message_from_bytes(data))
    if submitter is None:
        raise ReportNotAuthenticatedError(
            "a mailed report needs a TLS-Report-Submitter header (RFC 8460 §5.3)",
            conformance=("RPT-SEND-25",),
            reason="no-submitter",
        )
    if not any(_covers(d, submitter) for d in dkim_domains):
        raise ReportNotAuthenticatedError(
            f"no valid DKIM signature of {submitter!r} or a parent domain (RFC 8460 §3)",
            conformance=("RPT-SEND-25",),
            reason="no-valid-dkim",
        )
    return parse_report_message(data)
