"""Tests for smtpsts._names: domain normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import DomainNameError, ParseError, to_alabel
from smtpsts._names import to_ulabel


class TestToALabel:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("example.com", "example.com"),
            ("Mail.Example.COM", "mail.example.com"),
            ("mail.example.com.", "mail.example.com"),
            ("MØX.example", "xn--mx-lka.example"),
            ("møx.example.", "xn--mx-lka.example"),
            ("XN--MX-LKA.example", "xn--mx-lka.example"),
            (b"mx1.example.net", "mx1.example.net"),
            ("møx.example".encode(), "xn--mx-lka.example"),
            ("a-b.c0", "a-b.c0"),
            ("1.2.3.4", "1.2.3.4"),
        ],
    )
    def test_normalises(self, name, expected):
        """STS-REC-01, STS-MX-04, STS-MX-05, STS-MX-07: U-/A-labels, any case, trailing dot -> lower-case A-label."""
        assert expected == to_alabel(name)

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("", "invalid-name"),
            (".", "invalid-name"),
            ("a..b", "empty-label"),
            (".a", "empty-label"),
            ("a.b..", "empty-label"),
            ("x" * 64 + ".com", "label-too-long"),
            (("a" * 62 + ".") * 4 + "abcd", "name-too-long"),
            ("-a.com", "invalid-label"),
            ("a-.com", "invalid-label"),
            ("a_b.com", "invalid-label"),
            ("a b.com", "invalid-label"),
            ("xn--zz.com", "invalid-idna"),
            ("ü\u200d.com", "invalid-idna"),
            (b"\xff.com", "invalid-name"),
        ],
    )
    def test_rejects(self, name, reason):
        """Bad names raise DomainNameError (a ParseError) with a reason code."""
        with pytest.raises(DomainNameError) as e:
            to_alabel(name)
        assert reason == e.value.reason
        assert isinstance(e.value, ParseError)
        assert isinstance(e.value, ValueError)

    def test_offset_points_at_bad_label(self):
        """The error offset names where in the name the bad label starts."""
        with pytest.raises(DomainNameError) as e:
            to_alabel("good.b_d.example")
        assert 5 == e.value.offset
        assert "offset 5" in str(e.value)

    def test_longest_name_is_accepted(self):
        """A 253-octet name is the longest allowed."""
        name = ("a" * 63 + ".") * 3 + "a" * 61
        assert 253 == len(name)
        assert name == to_alabel(name + ".")

    def test_underscore_labels_on_request(self):
        """STS-REC-01: service labels such as _mta-sts are allowed when asked for."""
        assert "_mta-sts.example.com" == to_alabel("_MTA-STS.Example.com.", allow_underscore=True)
        assert "_25._tcp.mx.example" == to_alabel("_25._tcp.mx.example", allow_underscore=True)

    @given(st.text(max_size=300))
    def test_only_domain_name_error_escapes(self, text):
        """Whatever the text, to_alabel returns a name or raises DomainNameError."""
        try:
            out = to_alabel(text)
        except DomainNameError:
            return
        assert out == out.lower()
        assert not out.endswith(".")
        assert out.isascii()
        assert to_alabel(out) == out

    @given(st.binary(max_size=300))
    def test_bytes_only_domain_name_error_escapes(self, data):
        """Whatever the bytes, to_alabel returns a name or raises DomainNameError."""
        try:
            to_alabel(data)
        except DomainNameError:
            pass


class TestToULabel:
    def test_decodes_for_display(self):
        """A-labels are shown as U-labels."""
        assert "møx.example" == to_ulabel("xn--mx-lka.example")

    def test_keeps_undecodable(self):
        """A name that is not valid IDNA is shown as it is."""
        assert "xn--zz.example" == to_ulabel("xn--zz.example")
