"""
Fuzz the received TLS-RPT report JSON reader (RFC 8460 §4).

``Report.from_json`` may raise only :class:`smtpsts.tlsrpt.ReportSyntaxError`,
given bytes or text. A report it reads serialises (``to_json``) and reads
back to an equal report (RPT-JSON-01).

Input: byte 0 bit 0 set passes the rest as text (UTF-8, bad bytes
replaced) instead of bytes.
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts.tlsrpt import Report, ReportSyntaxError


test_one = _harness.round_trip(Report.from_json, Report.to_json)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(ReportSyntaxError,), max_len=16384)
