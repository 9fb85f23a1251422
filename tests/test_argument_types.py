"""Issue 12 item 7: a wrong argument type is a TypeError that names the call, at the entry point."""

from __future__ import annotations

import pytest

from smtpsts import MXPattern, Policy, STSRecord
from smtpsts.mx import MXPatternSet
from smtpsts.tlsrpt import Report, TLSRPTRecord

POLICY = Policy.from_text("version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n")


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: Policy.from_text(None), "Policy.from_text() takes str or bytes, not NoneType"),
        (lambda: Policy.from_text(86400), "Policy.from_text() takes str or bytes, not int"),
        (
            lambda: STSRecord.from_text(None),
            "MTA-STS record parser takes str or bytes, not NoneType",
        ),
        (lambda: TLSRPTRecord.from_text(["v=TLSRPTv1"]), "parser takes str or bytes, not list"),
        (lambda: Report.from_json({"report-id": "x"}), "Report.from_json() takes str or bytes"),
        (lambda: POLICY.matches(b"mx.example"), "Policy.matches() takes a str, not bytes (decode"),
        (lambda: POLICY.matches(None), "Policy.matches() takes a str, not NoneType"),
        (lambda: MXPattern.from_text(b"mx.example"), "MXPattern.from_text() takes a str"),
        (lambda: MXPattern.from_text("mx.example").matches(7), "MXPattern.matches() takes a str"),
        (lambda: MXPatternSet(()).matches(b"x"), "MXPatternSet.matches() takes a str, not bytes"),
    ],
)
def test_wrong_type_is_a_type_error_naming_the_call(call, says):
    with pytest.raises(TypeError) as info:
        call()
    assert says in str(info.value)


def test_bytes_stay_accepted_where_the_network_gives_bytes():
    """Records, policies and reports come as bytes from DNS and HTTP: those keep working."""
    assert "1" == STSRecord.from_text(b"v=STSv1; id=1;").id
    assert POLICY == Policy.from_text(POLICY.to_text().encode())
    assert POLICY.matches("MX.example.")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_nameserver_string_is_a_type_error(kind):
    """DNSResolver("127.0.0.1:53") used to say "invalid nameserver '1'"; now it says what to pass."""
    from smtpsts.io.dns import AsyncDNSResolver, DNSResolver

    cls = DNSResolver if kind == "sync" else AsyncDNSResolver
    with pytest.raises(TypeError, match=r"not one string: \['127\.0\.0\.1:53'\]"):
        cls("127.0.0.1:53")
