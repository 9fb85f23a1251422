"""
Fuzz TLSA records (RFC 6698 §2, RFC 7672).

Targets ``TLSARecord.from_text`` and records read from DNS wire form through
dnspython (``from_rdata``).

``from_text`` may raise only ``TLSASyntaxError``; a parsed record re-parses
from ``to_text()`` to itself. Any wire RDATA that dnspython accepts gives a
record whose ``unusable_reason`` (which parses Full(0) data as DER) and
``tlsa_policy_strings`` never raise.

Input: byte 0 bit 0 clear: the rest is presentation text (UTF-8, bad bytes
replaced); set: the rest is the TLSA RDATA in wire form.
"""

from __future__ import annotations

import _harness
import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

with _harness.instrumented():
    from smtpsts.dane import TLSARecord, TLSASyntaxError, tlsa_policy_strings


def test_one(data: bytes) -> None:
    """Parse one input (see the module docstring)."""
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        try:
            rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TLSA, body, 0, len(body))
        except dns.exception.DNSException:
            return  # dnspython refused the wire form: not ours to parse
        record = TLSARecord.from_rdata(rdata)  # type: ignore[arg-type]
    else:
        record = TLSARecord.from_text(body.decode("utf-8", "replace"))
    assert record == TLSARecord.from_text(record.to_text())
    assert record.usable == (record.unusable_reason is None)
    assert tlsa_policy_strings([record]) == (record.to_text(),)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(TLSASyntaxError,), max_len=4096)
