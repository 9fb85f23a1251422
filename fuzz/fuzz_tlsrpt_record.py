"""
Fuzz the ``_smtp._tls`` TXT record parser (RFC 8460 §3).

``TLSRPTRecord.from_text`` (strict and lenient) may raise only
:class:`smtpsts.tlsrpt.TLSRPTRecordSyntaxError`; ``select_tlsrpt_record``
never raises for what the RRset holds. A strictly parsed record re-parses
from its ``to_text()`` to the same record, and its endpoints are computed.

Input: byte 0 picks the mode (bit 0 lenient, bit 1 RRset selection); the
rest is the record or an RRset (RRs split on LF, strings on NUL).
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts.tlsrpt import TLSRPTRecord, TLSRPTRecordSyntaxError, select_tlsrpt_record


def _endpoints(record: TLSRPTRecord) -> None:
    assert len(record.usable_endpoints) <= len(record.endpoints)


test_one = _harness.record_target(TLSRPTRecord.from_text, select_tlsrpt_record, _endpoints)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(TLSRPTRecordSyntaxError,), max_len=4096)
