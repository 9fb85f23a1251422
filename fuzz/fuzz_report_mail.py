"""
Fuzz received report mails (RFC 8460 §5.3).

Targets ``parse_report_message`` and ``accept_report_message``.

Both may raise only :class:`smtpsts.tlsrpt.ReportSyntaxError` (which
includes ``ReportNotAuthenticatedError``), whatever the MIME structure,
headers, transfer encodings and attachments.

Input: the message as received (bytes). ``accept_report_message`` is given
the ``d=`` domains of the ``DKIM-Signature`` headers as if they verified.
"""

from __future__ import annotations

import contextlib
import re

import _harness

with _harness.instrumented():
    from smtpsts.tlsrpt import ReportSyntaxError, accept_report_message, parse_report_message

_D_TAG = re.compile(rb"\bd=([^;\s]{1,64})")


def test_one(data: bytes) -> None:
    """Read one input (see the module docstring)."""
    with contextlib.suppress(ReportSyntaxError):
        parse_report_message(data)
    domains = [d.decode("latin-1") for d in _D_TAG.findall(data[:4096])]
    accept_report_message(data, dkim_domains=domains)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(ReportSyntaxError,), max_len=16384)
