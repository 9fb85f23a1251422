"""
Fuzz the ``_mta-sts`` TXT record parser (RFC 8461 §3.1).

``STSRecord.from_text`` (strict and lenient) may raise only
:class:`smtpsts.RecordSyntaxError`; ``select_sts_record`` never raises for
what the RRset holds. A record that parses strictly re-parses from its
``to_text()`` to the same record (STS-REC-18).

Input: byte 0 picks the mode (bit 0 lenient, bit 1 RRset selection); the
rest is the record, or for selection an RRset (RRs split on LF,
character-strings on NUL).
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    import smtpsts


test_one = _harness.record_target(smtpsts.STSRecord.from_text, smtpsts.select_sts_record)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(smtpsts.RecordSyntaxError,), max_len=4096)
