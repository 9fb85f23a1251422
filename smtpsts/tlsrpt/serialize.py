"""
A report on the wire: gzip, file name, Subject and the report mail (RFC 8460 §5).

Pure: nothing here reads the clock or sends anything. The caller passes the
``Date`` and ``Message-ID`` of the mail, so a retry can rebuild the very
same message (RPT-SEND-09); delivery lives in :mod:`smtpsts.io`.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from smtpsts._names import to_alabel
from smtpsts.exceptions import UsageError
from smtpsts.tlsrpt.model import Report

__all__ = [
    "CONTENT_TYPE_GZIP",
    "CONTENT_TYPE_JSON",
    "gzip_report",
    "report_filename",
    "report_message",
    "report_subject",
    "submitter_domain",
]

CONTENT_TYPE_GZIP = "application/tlsrpt+gzip"
"""Media type of a gzip-compressed report (RFC 8460 §6.4)."""

CONTENT_TYPE_JSON = "application/tlsrpt+json"
"""Media type of an uncompressed report (RFC 8460 §6.3)."""


def submitter_domain(report: Report) -> str:
    """
    The submitter domain: the domain of ``contact-info`` (RPT-JSON-04, RPT-SEND-07).

    Args:
        report: The report.

    Returns:
        The domain as a lower-case A-label.

    Raises:
        smtpsts.UsageError: ``contact-info`` is missing or has no ``@domain``.
        smtpsts.DomainNameError: Its domain is not a host name.
    """
    contact = report.contact_info or ""
    local, at, domain = contact.rpartition("@")
    if not at or not local or not domain:
        raise UsageError(f"contact-info must be an addr-spec, got {contact!r}")
    return to_alabel(domain)


def gzip_report(report: Report) -> bytes:
    """
    The report JSON, gzip-compressed (RFC 8460 §5.2, RPT-SEND-01).

    The gzip header carries no time stamp, so the same report always gives
    the same bytes.

    Args:
        report: The report.

    Returns:
        The compressed bytes.
    """
    return gzip.compress(report.to_json().encode("utf-8"), compresslevel=6, mtime=0)


def report_filename(
    report: Report,
    policy_domain: str,
    *,
    unique_id: str | None = None,
    compressed: bool = True,
) -> str:
    """
    The report's file name (RFC 8460 §5.1, RPT-SEND-02, RPT-SEND-03).

    ``sender!policy-domain!begin!end[!unique-id].json[.gz]`` with both domains
    as A-labels and the window as Unix seconds.

    Args:
        report: The report.
        policy_domain: The domain the report is about (the recipient domain).
        unique_id: The sending MTA's id, letters and digits (RPT-AGG-17).
        compressed: ``.json.gz`` (default) or ``.json``.

    Returns:
        For example ``sender.example!recipient.example!1709596800!1709683199.json.gz``.

    Raises:
        smtpsts.UsageError: ``unique_id`` is not letters and digits, or
            ``contact-info`` has no domain.
    """
    if unique_id is not None and not (unique_id.isascii() and unique_id.isalnum()):
        raise UsageError(f"unique_id must be letters and digits (RFC 8460 §5.1): {unique_id!r}")
    parts = [
        submitter_domain(report),
        to_alabel(policy_domain),
        str(int(report.date_range.start.timestamp())),
        str(int(report.date_range.end.timestamp())),
    ]
    if unique_id is not None:
        parts.append(unique_id)
    return "!".join(parts) + (".json.gz" if compressed else ".json")


def report_subject(report: Report, policy_domain: str) -> str:
    """
    The report mail's Subject (RFC 8460 §5.3, RPT-SEND-08, RPT-SEND-09).

    Args:
        report: The report; its ``report-id`` is the Report-ID's left part.
        policy_domain: The domain the report is about.

    Returns:
        ``Report Domain: <domain> Submitter: <submitter> Report-ID: <<id>@<submitter>>``.

    Raises:
        smtpsts.UsageError: The report has no ``report-id`` or it is not
            dot-atom-text.
    """
    submitter = submitter_domain(report)
    rid = report.report_id or ""
    # RFC 5322 §3.2.3 dot-atom-text: id-left of the Report-ID.
    atext = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
    if not rid or any(not label or not set(label) <= atext for label in rid.split(".")):
        raise UsageError(f"report-id must be dot-atom-text for the Subject, got {rid!r}")
    return (
        f"Report Domain: {to_alabel(policy_domain)} Submitter: {submitter} "
        f"Report-ID: <{rid}@{submitter}>"
    )


def report_message(
    report: Report,
    policy_domain: str,
    *,
    from_address: str,
    to_address: str,
    date: datetime,
    message_id: str,
    unique_id: str | None = None,
    compressed: bool = True,
) -> EmailMessage:
    """
    The report as a mail (RFC 8460 §5.3; RPT-SEND-04..08, RPT-SEND-14, RPT-SEND-21).

    ``multipart/report; report-type="tlsrpt"`` with a ``text/plain`` part and
    the report as an ``application/tlsrpt+gzip`` (or ``+json``) base64
    attachment, plus ``TLS-Report-Domain``, ``TLS-Report-Submitter`` and
    ``TLS-Required: No`` (RFC 8689: deliver despite TLS failures). DKIM
    signing is the sender's job.

    Args:
        report: The report.
        policy_domain: The domain the report is about.
        from_address: ``From``, a mailbox at the submitter domain.
        to_address: ``To``, the ``mailto:`` address of the ``rua``.
        date: ``Date`` (an aware datetime).
        message_id: ``Message-ID``, with or without the angle brackets.
        unique_id: As for :func:`report_filename`.
        compressed: gzip the attachment (default, RPT-SEND-01).

    Returns:
        The message, ready to sign and submit.

    Raises:
        smtpsts.UsageError: ``date`` is naive, or as for
            :func:`report_filename` and :func:`report_subject`.
    """
    if date.tzinfo is None:
        raise UsageError("date must be an aware datetime")
    domain = to_alabel(policy_domain)
    submitter = submitter_domain(report)
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id if message_id.startswith("<") else f"<{message_id}>"
    msg["Subject"] = report_subject(report, domain)
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg["TLS-Required"] = "No"
    msg.set_content(
        f"This is an aggregate TLS report from {submitter} about {domain}\n"
        f"for {report.date_range.start:%Y-%m-%d %H:%M:%S} to "
        f"{report.date_range.end:%Y-%m-%d %H:%M:%S} UTC (RFC 8460).\n"
    )
    filename = report_filename(report, domain, unique_id=unique_id, compressed=compressed)
    if compressed:
        body = gzip_report(report)
        subtype = "tlsrpt+gzip"
    else:
        body = report.to_json().encode("utf-8")
        subtype = "tlsrpt+json"
    msg.add_attachment(body, maintype="application", subtype=subtype, filename=filename)
    for part in msg.iter_parts():
        del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    # add_attachment made it multipart/mixed; RFC 8460 §5.3 wants multipart/report.
    msg.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
    # A boundary derived from the content keeps the message reproducible.
    msg.set_boundary("tlsrpt-" + hashlib.sha256(body + message_id.encode()).hexdigest()[:24])
    return msg
