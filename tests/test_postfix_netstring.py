"""Tests for smtpsts.postfix.netstring: the socketmap framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts.exceptions import ParseError
from smtpsts.postfix.netstring import DEFAULT_MAX_LENGTH, NetstringDecoder, NetstringError, encode


class TestEncode:
    def test_examples(self) -> None:
        """A payload is framed as <len>:<bytes>, and the empty payload as 0:,."""
        assert b"17:postfix good.test," == encode(b"postfix good.test")
        assert b"0:," == encode(b"")

    @given(st.lists(st.binary(max_size=300), max_size=8))
    def test_round_trip_any_split(self, payloads: list[bytes]) -> None:
        """Pipelined netstrings decode to the same payloads, in order, however the bytes arrive."""
        wire = b"".join(encode(p) for p in payloads)
        whole = NetstringDecoder(max_length=300)
        assert payloads == whole.feed(wire)
        bytewise = NetstringDecoder(max_length=300)
        got: list[bytes] = []
        for i in range(len(wire)):
            got += bytewise.feed(wire[i : i + 1])
        assert payloads == got
        assert not bytewise.pending
        bytewise.eof()


class TestDecoder:
    def test_partial_then_complete(self) -> None:
        """A netstring split over reads comes out once complete; pending says so meanwhile."""
        decoder = NetstringDecoder()
        assert [] == decoder.feed(b"5:hel")
        assert decoder.pending
        assert [b"hello", b""] == decoder.feed(b"lo,0:,")
        assert not decoder.pending
        assert 11 == decoder.offset

    def test_leading_zeros_accepted(self) -> None:
        """Lengths with leading zeros are read as decimal numbers (as Postfix reads them)."""
        assert [b"ab"] == NetstringDecoder().feed(b"002:ab,")

    @pytest.mark.parametrize(
        ("wire", "reason"),
        [
            (b"x:abc,", "bad-length"),
            (b":,", "bad-length"),
            (b"3:abcX", "missing-comma"),
            (b"-1:,", "bad-length"),
            (b"12345678901", "too-long"),
            (b"abc", "bad-length"),
            (b"2000:", "too-long"),
        ],
    )
    def test_malformed(self, wire: bytes, reason: str) -> None:
        """Malformed framing raises NetstringError with a reason, and the decoder stays broken."""
        decoder = NetstringDecoder()
        with pytest.raises(NetstringError) as info:
            decoder.feed(wire)
        assert reason == info.value.reason
        assert isinstance(info.value, ParseError)
        assert info.value is decoder.error
        with pytest.raises(NetstringError):
            decoder.feed(b"0:,")
        with pytest.raises(NetstringError):
            decoder.eof()

    def test_over_cap_refused_before_payload(self) -> None:
        """A length over the cap is refused from its prefix alone (nothing else buffered)."""
        decoder = NetstringDecoder(max_length=1024)
        assert [b"x" * 1024] == decoder.feed(encode(b"x" * 1024))
        with pytest.raises(NetstringError) as info:
            decoder.feed(b"1025:")
        assert "too-long" == info.value.reason
        assert DEFAULT_MAX_LENGTH > 1024

    def test_good_payloads_before_error_are_returned(self) -> None:
        """Requests before a malformed netstring are still delivered; the error comes next."""
        decoder = NetstringDecoder()
        assert [b"a", b"b"] == decoder.feed(b"1:a,1:b,zz")
        assert decoder.error is not None
        assert 8 == decoder.error.offset
        with pytest.raises(NetstringError):
            decoder.feed(b"")

    def test_eof_inside_netstring(self) -> None:
        """A stream that ends inside a netstring is reported as truncated."""
        decoder = NetstringDecoder()
        decoder.feed(b"4:ab")
        with pytest.raises(NetstringError) as info:
            decoder.eof()
        assert "truncated" == info.value.reason

    def test_negative_cap(self) -> None:
        """A negative cap is a programming error."""
        with pytest.raises(ValueError, match="max_length"):
            NetstringDecoder(max_length=-1)

    @given(st.binary(max_size=200))
    def test_only_netstring_error_escapes(self, data: bytes) -> None:
        """SEC-16: arbitrary bytes give payloads or a NetstringError, never another exception."""
        decoder = NetstringDecoder(max_length=64)
        try:
            decoder.feed(data)
            decoder.eof()
        except NetstringError:
            pass
