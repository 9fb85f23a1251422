"""Tests for smtpsts.mx: MX patterns (RFC 8461 §3.2) and MX host matching (§4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import MXPattern, ParseError, PolicySyntaxError, vectors
from smtpsts.mx import MXPatternSet, normalize_mx_host

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not label.startswith("xn--")
)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PATTERN = st.builds(MXPattern, NAME, st.booleans())


class TestFromText:
    @pytest.mark.parametrize(
        ("text", "host", "wildcard"),
        [
            ("mail.example.com", "mail.example.com", False),
            ("*.example.net", "example.net", True),
            ("*.Example.COM", "example.com", True),
            ("MAIL.Example.COM", "mail.example.com", False),
            ("xn--mx-lka.example", "xn--mx-lka.example", False),
            ("localhost", "localhost", False),
        ],
    )
    def test_valid(self, text, host, wildcard):
        """STS-POL-08, STS-POL-23: Domain with optional "*." parses, lower-cased, text kept."""
        pattern = MXPattern.from_text(text)

        assert (host, wildcard, text) == (pattern.host, pattern.wildcard, pattern.text)

    @pytest.mark.parametrize(
        ("text", "offset", "ids"),
        [
            ("*example.net", 0, ("STS-POL-08",)),
            ("*.*.example.net", 2, ("STS-POL-08",)),
            ("a.*.example", 2, ("STS-POL-08",)),
            ("*", 0, ("STS-POL-08",)),
            ("*.", 2, ("STS-POL-08",)),
            ("", 0, ("STS-POL-08",)),
            ("-a.example", 0, ("STS-POL-08",)),
            ("a-.example", 0, ("STS-POL-08",)),
            ("mail.ex_ample.com", 5, ("STS-POL-08",)),
            ("*.a..example", 4, ("STS-POL-08",)),
            ("mail.example.com.", 16, ("STS-POL-08", "AMB-27")),
            ("m\u00f8x.example", 1, ("STS-POL-09", "AMB-09")),
            ("*.m\u00f8x.example", 3, ("STS-POL-09", "AMB-09")),
            ("a" * 64 + ".example", 0, ("STS-POL-08", "STS-POL-09")),
            ("mail.xn--zz.example", 5, ("STS-POL-08", "STS-POL-09")),
        ],
    )
    def test_invalid(self, text, offset, ids):
        """STS-POL-08, STS-POL-09, AMB-27: bad patterns raise PolicySyntaxError with the offset."""
        with pytest.raises(PolicySyntaxError) as info:
            MXPattern.from_text(text)

        assert (offset, ids, "bad-mx") == (
            info.value.offset,
            info.value.conformance,
            info.value.reason,
        )

    @pytest.mark.parametrize(
        ("text", "host", "wildcard"),
        [
            ("m\u00f8x.example", "xn--mx-lka.example", False),
            ("*.M\u00d8X.example.", "xn--mx-lka.example", True),
            ("mail.example.com.", "mail.example.com", False),
        ],
    )
    def test_lenient_converts(self, text, host, wildcard):
        """AMB-09, AMB-27: lenient mode converts U-labels and drops one trailing dot."""
        pattern = MXPattern.from_text(text, lenient=True)

        assert (host, wildcard, text) == (pattern.host, pattern.wildcard, pattern.text)

    @pytest.mark.parametrize("text", [".", "a..", "m\u00f8x.example..", "a.*.example"])
    def test_lenient_still_rejects(self, text):
        """AMB-01, AMB-27: lenient mode removes only one dot and keeps the wildcard rule."""
        with pytest.raises(PolicySyntaxError):
            MXPattern.from_text(text, lenient=True)

    def test_str_and_to_text(self):
        """STS-POL-20, STS-POL-23: str() is the normalised pattern; .text the original."""
        pattern = MXPattern.from_text("*.Example.COM")

        assert ("*.example.com", "*.example.com", "*.Example.COM") == (
            str(pattern),
            pattern.to_text(),
            pattern.text,
        )

    def test_equality_ignores_text(self):
        """STS-POL-23: patterns that differ only in case are equal and hash alike."""
        a = MXPattern.from_text("MAIL.example.com")
        b = MXPattern("mail.example.com")

        assert (a, hash(a)) == (b, hash(b))
        assert "mail.example.com" == b.text

    @pytest.mark.parametrize("host", ["Mail.example.com", "mail.example.com.", "m\u00f8x.example"])
    def test_constructor_wants_normalised_host(self, host):
        """Building a pattern directly requires the lower-case A-label form."""
        with pytest.raises(ValueError, match="lower-case A-label"):
            MXPattern(host)

    @given(PATTERN)
    def test_round_trip(self, pattern):
        """STS-POL-20: from_text(str(p)) == p for every pattern."""
        assert pattern == MXPattern.from_text(str(pattern))

    @given(st.text(max_size=80), st.booleans())
    def test_only_parse_errors_escape(self, text, lenient):
        """STS-POL-08: arbitrary text gives a pattern or a ParseError, nothing else."""
        try:
            pattern = MXPattern.from_text(text, lenient=lenient)
        except ParseError:
            return
        assert pattern == MXPattern.from_text(str(pattern))


class TestMatches:
    @pytest.mark.parametrize(
        ("pattern", "host", "expected"),
        [
            ("mail.example.com", "mail.example.com", True),
            ("mail.example.com", "mail2.example.com", False),
            ("*.example.com", "mail.example.com", True),
            ("*.example.com", "example.com", False),
            ("*.example.com", "foo.bar.example.com", False),
            ("*.Example.COM", "MX1.example.com", True),
            ("mail.example.com", "mail.example.com.", True),
            ("mail.example.com", "mail.example.com..", False),
            ("xn--mx-lka.example", "m\u00f8x.example", True),
            ("*.example", "M\u00d8X.example.", True),
            ("*.example.com", "mx-1.example.com", True),
            ("*.example.com", "a" * 63 + ".example.com", True),
            ("*.example.com", "a" * 64 + ".example.com", False),
            ("*.example.com", "-a.example.com", False),
            ("*.example.com", "a-.example.com", False),
            ("*.example.com", "a_b.example.com", False),
            ("*.example.com", "a b.example.com", False),
            ("*.example.com", "*.example.com", False),
            ("*.example.com", "xn--mx-lka.example.com", True),
            ("*.example.com", "xn--zz.example.com", False),
            ("*.example.com", "", False),
            ("*.example.com", ".example.com", False),
            ("*.example.com", "a\u200db.example.com", False),
        ],
    )
    def test_table(self, pattern, host, expected):
        """STS-MX-01..05, STS-MX-07: exact, one-label wildcard, case, root dot, IDNA, malformed."""
        assert expected == MXPattern.from_text(pattern).matches(host)

    def test_overlong_name_under_wildcard(self):
        """STS-MX-03: a name over 253 octets is malformed, so it never matches."""
        suffix = ".".join(["a" * 60] * 3) + ".example"
        pattern = MXPattern.from_text("*." + suffix)
        good = "b" * (253 - len(suffix) - 1) + "." + suffix
        bad = "b" * (254 - len(suffix) - 1) + "." + suffix

        assert (True, False) == (pattern.matches(good), pattern.matches(bad))

    @given(PATTERN, LABEL)
    def test_wildcard_covers_exactly_one_label(self, pattern, label):
        """STS-MX-02, STS-MX-03: "*.s" matches "l.s", not "s" or "l.l.s"; plain ones only self."""
        one = f"{label}.{pattern.host}"
        two = f"{label}.{one}"

        assert (pattern.wildcard, not pattern.wildcard, False) == (
            pattern.matches(one),
            pattern.matches(pattern.host),
            pattern.matches(two),
        )

    @given(PATTERN, NAME, st.booleans())
    def test_case_and_dot_do_not_matter(self, pattern, name, dot):
        """STS-MX-04, STS-MX-05: upper-casing the host or adding a root dot changes nothing."""
        varied = name.upper() + ("." if dot else "")

        assert pattern.matches(name) == pattern.matches(varied)

    @given(st.lists(PATTERN, max_size=4), st.one_of(NAME, st.text(max_size=30)))
    def test_set_is_any_of_patterns(self, patterns, host):
        """STS-MX-01, STS-MX-09: a pattern set matches iff some pattern matches, in any order."""
        expected = any(p.matches(host) for p in patterns)

        assert expected == MXPatternSet(patterns).matches(host)
        assert expected == MXPatternSet(reversed(patterns)).matches(host)

    @given(st.text(max_size=40))
    def test_never_raises(self, host):
        """STS-MX-01: matching arbitrary text returns a bool and never raises."""
        patterns = MXPatternSet([MXPattern("example.com", wildcard=True), MXPattern("a.example")])

        assert isinstance(patterns.matches(host), bool)


class TestNormalizeMXHost:
    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("MAIL.Example.COM.", "mail.example.com"),
            ("m\u00f8x.example", "xn--mx-lka.example"),
            ("a\u200db.example", None),
        ],
    )
    def test_table(self, host, expected):
        """STS-MX-04, STS-MX-05, STS-MX-07: lower-case, one root dot off, A-labels; None if bad."""
        assert expected == normalize_mx_host(host)


class TestPatternSet:
    def test_exact_and_wildcard(self):
        """STS-MX-06, STS-MX-08, STS-MX-09: the MX name (or implicit-MX domain) is matched."""
        patterns = MXPatternSet(
            [MXPattern.from_text("*.a.example"), MXPattern.from_text("example.com")]
        )

        assert (True, True, False, False) == (
            patterns.matches("example.com"),
            patterns.matches("x.a.example"),
            patterns.matches("a.example"),
            patterns.matches("host.cloud.example"),
        )

    def test_non_ascii_malformed(self):
        """STS-MX-07: a non-ASCII host that is not valid IDNA matches nothing."""
        assert not MXPatternSet([MXPattern("example", wildcard=True)]).matches(
            "\u00e9\u200d.example"
        )


@pytest.mark.parametrize("case", vectors.load("mx-match"), ids=lambda case: case["id"])
def test_vectors(case):
    """STS-MX-01..09, STS-POL-08, STS-POL-09: every mx-match reference vector passes."""
    result = vectors.check_case("mx-match", case)

    assert (True, "") == (result.ok, result.message)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"input": {"pattern": "a..b"}, "expect": {}}, "expected a pattern"),
        (
            {"input": {"pattern": "a..b"}, "error": "RecordSyntaxError"},
            "expected RecordSyntaxError",
        ),
        ({"input": {"pattern": "a.b"}, "error": "PolicySyntaxError"}, "expected PolicySyntaxError"),
        ({"input": {"pattern": "a.b"}, "expect": {"wildcard": True}}, "expected wildcard True"),
        (
            {"input": {"patterns": ["a.b"], "host": "a.b"}, "expect": {"match": False}},
            "expected match",
        ),
    ],
)
def test_checker_reports_mismatches(case, message):
    """The mx-match checker reports each kind of disagreement instead of passing it."""
    result = vectors.check_case("mx-match", {"id": "x", "conformance": ["STS-MX-01"], **case})

    assert (False, True) == (result.ok, result.message.startswith(message))


def test_checker_compares_set_with_single_patterns(monkeypatch):
    """STS-MX-09: the checker fails a case when the set and the single patterns disagree."""
    monkeypatch.setattr(MXPatternSet, "matches", lambda self, host: True)
    case = {"id": "x", "input": {"patterns": ["a.b"], "host": "c.d"}, "expect": {"match": True}}

    result = vectors.check_case("mx-match", {"conformance": ["STS-MX-09"], **case})

    assert (False, True) == (result.ok, "one by one" in result.message)
