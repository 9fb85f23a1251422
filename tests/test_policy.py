"""Tests for smtpsts.policy: the MTA-STS policy file (RFC 8461 §3.2)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import (
    DomainNameError,
    Mode,
    MXPattern,
    Policy,
    PolicySyntaxError,
    ResultType,
    vectors,
)
from smtpsts.policy import (
    MAX_AGE_LIMIT,
    MAX_POLICY_BYTES,
    RESERVED_KEYS,
    PolicyField,
    _decode,
    _parse_valid,
    policy_url,
    scan_policy,
)

BASE = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n"
APPENDIX_A = (
    "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\n"
    "mx: mx.backup-example.com\nmax_age: 1296000\n"
)

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not label.startswith("xn--")
)
PATTERN = st.builds(MXPattern, st.lists(LABEL, min_size=1, max_size=3).map(".".join), st.booleans())
EXT_KEY = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True).filter(
    lambda key: key not in RESERVED_KEYS
)
EXT_VALUE = st.text(
    st.characters(
        codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x7f", min_codepoint=0x20
    ),
    min_size=1,
    max_size=20,
).filter(lambda v: v[0] != " " and v[-1] != " ")


@st.composite
def policies(draw):
    """Valid policies: any mode, 0-4 patterns (at least one unless none), extensions."""
    mode = draw(st.sampled_from(Mode))
    mx = draw(st.lists(PATTERN, min_size=0 if mode is Mode.NONE else 1, max_size=4))
    extensions = draw(st.dictionaries(EXT_KEY, EXT_VALUE, max_size=3))
    return Policy(
        mode=mode,
        mx=mx,
        max_age=draw(st.integers(0, 9999999999)),
        extensions=tuple(extensions.items()),
    )


def check_outcome(data, *, lenient):
    """Parse ``data``: a policy, or PolicySyntaxError (the scan's first error), nothing else."""
    scan = scan_policy(data, lenient=lenient)
    assert (scan.policy is None) == bool(scan.errors)
    if scan.policy is None:
        with pytest.raises(PolicySyntaxError) as info:
            Policy.from_text(data, lenient=lenient)
        assert scan.errors[0].reason == info.value.reason
        return None
    assert scan.policy == Policy.from_text(data, lenient=lenient)
    return scan.policy


def parse_error(text, **kwargs):
    with pytest.raises(PolicySyntaxError) as info:
        Policy.from_text(text, **kwargs)
    return info.value


class TestMode:
    def test_values_are_rfc_tokens(self):
        """STS-POL-03: Mode values are the RFC tokens."""
        assert ["enforce", "testing", "none"] == [m.value for m in Mode]


class TestFromText:
    def test_appendix_a(self):
        """STS-POL-18, STS-POL-19: the RFC 8461 Appendix A policy parses; lines kept for TLS-RPT."""
        policy = Policy.from_text(APPENDIX_A)

        assert (Mode.TESTING, 3, 1296000, 6) == (
            policy.mode,
            len(policy.mx),
            policy.max_age,
            len(policy.lines),
        )
        assert APPENDIX_A.splitlines() == list(policy.lines)
        assert APPENDIX_A == policy.text

    def test_mixed_terminators_bytes(self):
        """STS-POL-01, STS-POL-17: bytes with CRLF, LF and no final terminator parse."""
        policy = Policy.from_text(b"version: STSv1\r\nmode: none\nmax_age: 86400")

        assert (Mode.NONE, (), 86400) == (policy.mode, policy.mx, policy.max_age)
        assert ("version: STSv1", "mode: none", "max_age: 86400") == policy.lines

    @pytest.mark.parametrize(
        ("text", "reason", "line", "offset"),
        [
            (BASE.replace("version: STSv1\n", ""), "missing-version", None, None),
            (BASE.replace("STSv1", "stsv1"), "bad-version", 1, 9),
            (BASE.replace("enforce", "Enforce"), "bad-mode", 2, 6),
            (BASE.replace("604800", "1e6"), "bad-max-age", 4, 9),
            (BASE.replace("604800", "12345678901"), "bad-max-age", 4, 9),
            (BASE.replace("mx: mail.example.com\n", ""), "missing-mx", None, None),
            (BASE.replace("mail.example.com", "a.example, b.example"), "bad-mx", 3, 6),
            (BASE.replace("mail.example.com", "mail.example.com."), "bad-mx", 3, 20),
            (BASE.replace("mode: enforce", "mode :enforce"), "whitespace-before-colon", 2, 4),
            (BASE.replace("mode: enforce", "\tmode: enforce"), "leading-whitespace", 2, 0),
            (BASE + "\n", "blank-line", 5, 0),
            (BASE.replace("\n", "\r", 1), "bare-cr", 1, 14),
            (BASE + "x: a\x01b\n", "control-character", 5, 4),
            (BASE + "nonsense\n", "missing-colon", 5, 0),
            (BASE + "_x: y\n", "bad-key", 5, 0),
            (BASE + "x: a\tb\n", "bad-extension-value", 5, 4),
            (BASE + "x:   \n", "bad-extension-value", 5, 5),
            ("", "empty-policy", 1, 0),
        ],
    )
    def test_errors_name_line_offset_reason(self, text, reason, line, offset):
        """STS-POL-02..16: each kind of error carries its reason code, line and offset."""
        error = parse_error(text)

        assert (reason, line, offset) == (error.reason, error.line, error.offset)
        assert error.conformance
        assert ResultType.STS_POLICY_INVALID == error.result_type

    def test_missing_mode_hint_for_case(self):
        """STS-POL-14: "Mode:" is an extension, so mode is missing; the error says why."""
        error = parse_error(BASE.replace("mode:", "Mode:"))

        assert ("missing-mode", ("STS-POL-03", "STS-POL-14")) == (error.reason, error.conformance)
        assert "'Mode'" in error.detail

    def test_missing_max_age_hint_for_hyphen(self):
        """STS-POL-14: "max-age:" is an extension, so max_age is missing; the error says why."""
        error = parse_error(BASE.replace("max_age:", "max-age:"))

        assert ("missing-max-age", ("STS-POL-04", "STS-POL-14")) == (
            error.reason,
            error.conformance,
        )

    def test_bom_rejected(self):
        """STS-POL-16: a leading BOM makes a strict policy invalid."""
        assert "bom" == parse_error(b"\xef\xbb\xbf" + BASE.encode()).reason

    def test_invalid_utf8_position(self):
        """STS-POL-17: invalid UTF-8 is reported with the line and offset where it starts."""
        error = parse_error(BASE.encode() + b"note: caf\xc3\xa9 \xff\n")

        assert ("not-utf8", 5, 11) == (error.reason, error.line, error.offset)

    def test_lone_surrogate_in_str(self):
        """STS-POL-17: a str that is not valid Unicode text is rejected, not crashed on."""
        error = parse_error(BASE + "x: \ud800\n")

        assert ("not-utf8", 5, 3) == (error.reason, error.line, error.offset)

    @pytest.mark.parametrize("as_bytes", [True, False])
    def test_size_limit(self, as_bytes):
        """AMB-08, STS-FETCH-12: 65536 bytes parse, 65537 bytes do not, for str and bytes."""
        padding = MAX_POLICY_BYTES - len(BASE) - len("x: \n")
        fits = BASE + "x: " + "a" * padding + "\n"
        over = BASE + "x: " + "a" * (padding + 1) + "\n"
        convert = str.encode if as_bytes else str

        assert MAX_POLICY_BYTES == len(fits.encode())
        assert Policy.from_text(convert(fits)).extensions
        assert "policy-too-large" == parse_error(convert(over)).reason

    def test_size_limit_counts_utf8_bytes(self):
        """AMB-08: the limit is in UTF-8 bytes, also for str input with non-ASCII text."""
        text = BASE + "x: " + "\u00e9" * (MAX_POLICY_BYTES // 2) + "\n"

        assert "policy-too-large" == parse_error(text).reason

    def test_non_ascii_str_within_limit(self):
        """STS-POL-11, STS-POL-17: non-ASCII str input within the limit parses."""
        policy = Policy.from_text(BASE + "note: caf\u00e9\n")

        assert (("note", "caf\u00e9"),) == policy.extensions

    def test_max_age_clamped(self):
        """STS-POL-05, AMB-05: a huge max_age is kept as written, effective value clamped."""
        policy = Policy.from_text(BASE.replace("604800", "9999999999"))

        assert (9999999999, MAX_AGE_LIMIT) == (policy.max_age, policy.effective_max_age)
        assert "max_age: 9999999999" == policy.lines[-1]

    def test_max_age_zero(self):
        """STS-POL-21: max_age 0 is valid with cache lifetime 0."""
        policy = Policy.from_text(BASE.replace("604800", "0"))

        assert (0, 0) == (policy.max_age, policy.effective_max_age)

    def test_first_occurrence_wins(self):
        """STS-POL-12, AMB-04: repeated non-mx keys keep the first value; mx lines accumulate."""
        policy = Policy.from_text(
            BASE + "mode: testing\nmax_age: 1\nversion: STSv1\nmx: b.example\nfoo: 1\nfoo: 2\n"
        )

        assert (Mode.ENFORCE, 604800, (("foo", "1"),)) == (
            policy.mode,
            policy.max_age,
            policy.extensions,
        )
        assert ["mail.example.com", "b.example"] == [str(p) for p in policy.mx]

    @pytest.mark.parametrize(
        "extra",
        ["mode: Enforce\n", "mode: bogus\n", "max_age: -1\n", "version: STSv2\n", "max_age: 1e6\n"],
    )
    def test_later_duplicate_ignored_whatever_its_value(self, extra):
        """STS-POL-12, STS-POL-13, AMB-15 (issue 18): a later duplicate is ignored.

        Whatever its value: throwing the policy away would be a downgrade.
        """
        policy = Policy.from_text(BASE + extra)
        assert (Mode.ENFORCE, 604800, ()) == (policy.mode, policy.max_age, policy.extensions)
        assert (BASE + extra).splitlines() == list(policy.lines)
        assert policy == scan_policy(BASE + extra).policy

    def test_later_duplicate_must_be_a_field_line(self):
        """STS-POL-11, STS-POL-13: an ignored duplicate must still be a field of the ABNF."""
        error = parse_error(BASE + "mode:\n")
        assert ("bad-extension-value", 5, ("STS-POL-11",)) == (
            error.reason,
            error.line,
            error.conformance,
        )

    def test_every_mx_line_must_fit(self):
        """STS-POL-07, STS-POL-13: every mx line counts, so every one must fit its grammar."""
        assert "STS-POL-13" in parse_error(BASE + "mx: not valid\n").conformance

    @pytest.mark.parametrize(
        ("first", "reason"),
        [
            ("mode: Enforce", "bad-mode"),
            ("max_age: -1", "bad-max-age"),
            ("version: STSv2", "bad-version"),
        ],
    )
    def test_first_reserved_line_must_fit(self, first, reason):
        """STS-POL-13, AMB-15: the first line of a reserved key is never read as an extension.

        Even when a valid line of the same key follows.
        """
        key = first.split(":")[0]
        good = next(line for line in BASE.splitlines() if line.startswith(key + ":"))
        text = BASE.replace(good, first + "\n" + good)
        error = parse_error(text)
        assert (reason, "STS-POL-13") == (error.reason, error.conformance[-1])

    def test_extension_value_may_hold_colon(self):
        """STS-POL-22: only the first ':' separates key and value."""
        assert (("ext", "a:b"),) == Policy.from_text(BASE + "ext: a:b\n").extensions

    def test_mx_case_and_original_text(self):
        """STS-POL-23: mx patterns are lower-cased; the original text is kept."""
        policy = Policy.from_text(BASE.replace("mail.example.com", "MAIL.Example.COM"))

        assert ("mail.example.com", "MAIL.Example.COM") == (policy.mx[0].host, policy.mx[0].text)
        assert policy.matches("mail.example.com")

    def test_wsp_around_value(self):
        """STS-POL-15: SP/HTAB after ':' and at the end of a line are not part of the value."""
        policy = Policy.from_text(BASE.replace("mode: enforce", "mode:\tenforce \t") + "k: v v \n")

        assert (Mode.ENFORCE, (("k", "v v"),)) == (policy.mode, policy.extensions)

    def test_u_label_mx(self):
        """STS-POL-09, AMB-09: a U-label mx is invalid strictly, converted leniently."""
        text = BASE.replace("mail.example.com", "m\u00f8x.example")

        assert "bad-mx" == parse_error(text).reason
        policy = Policy.from_text(text, lenient=True)
        assert ("xn--mx-lka.example", True) == (policy.mx[0].host, policy.lenient)

    def test_lenient_tolerances(self):
        """AMB-01: lenient mode takes a BOM, blank lines, bare CR, key and mode case."""
        text = "\ufeffVersion: STSv1\r\n\r\n  \nMODE: Testing\rmx: a.example\nMax_Age: 60\n"

        policy = Policy.from_text(text, lenient=True)

        assert (Mode.TESTING, 60, True, ()) == (
            policy.mode,
            policy.max_age,
            policy.lenient,
            policy.extensions,
        )
        assert "Version: STSv1" == policy.lines[0]

    def test_lenient_on_valid_text_is_strict(self):
        """AMB-01: a strictly valid body parses the same in lenient mode, unflagged."""
        text = BASE + "Mode: testing\n"

        strict = Policy.from_text(text)
        lenient = Policy.from_text(text, lenient=True)

        assert (strict, False) == (lenient, lenient.lenient)
        assert (("Mode", "testing"),) == lenient.extensions

    @given(policies())
    def test_round_trip(self, policy):
        """STS-POL-20: from_text(to_text(p)) == p for every policy."""
        text = policy.to_text()

        parsed = Policy.from_text(text)

        assert policy == parsed
        assert (text, tuple(text.split("\r\n")[:-1])) == (parsed.text, parsed.lines)

    @given(policies(), st.lists(st.sampled_from(["\n", "\r\n"]), min_size=12, max_size=12))
    def test_any_terminator_mix(self, policy, terms):
        """STS-POL-01, STS-POL-18: any mix of LF and CRLF, final one optional, parses the same."""
        lines = policy.to_text().split("\r\n")[:-1]
        text = "".join(line + terms[i % 12] for i, line in enumerate(lines))

        assert policy == Policy.from_text(text)
        assert policy == Policy.from_text(text.rstrip("\r\n").encode())

    @given(st.binary(max_size=200), st.booleans())
    def test_only_parse_errors_escape_bytes(self, data, lenient):
        """STS-POL-16, STS-POL-17: arbitrary bytes give a policy or a PolicySyntaxError."""
        check_outcome(data, lenient=lenient)

    @given(
        st.lists(
            st.sampled_from(
                [
                    "version: STSv1",
                    "mode: enforce",
                    "mode: none",
                    "Mode: x",
                    "mx: *.a.example",
                    "mx: m\u00f8x.example",
                    "max_age: 5",
                    "max_age:",
                    "x: y",
                    ":",
                    " ",
                    "\t",
                    "\n",
                    "\r\n",
                    "\r",
                    "\ufeff",
                    "\x00",
                    "\u00e9",
                    "\ud800",
                    "*.",
                ]
            ),
            max_size=30,
        ).map("".join),
        st.booleans(),
    )
    def test_only_parse_errors_escape_fragments(self, text, lenient):
        """STS-POL-01, STS-POL-16: policy-like text with CR/LF mixes never crashes the parser."""
        policy = check_outcome(text, lenient=lenient)
        if policy is not None:
            assert policy == Policy.from_text(policy.to_text())

    @given(st.text(max_size=200))
    def test_only_parse_errors_escape_text(self, text):
        """STS-POL-16: arbitrary text gives a policy or a PolicySyntaxError."""
        check_outcome(text, lenient=False)


# Pieces of policy lines, valid and not, for comparing the fast path with the scanner.
KEY_PIECES = [
    *("version", "mode", "mx", "max_age", "Mode", "max-age", "x", "a.b-c_D9", "k" * 32),
    *("k" * 33, "_x", "", " mode", "mode ", "\ufeffversion", "m\u00f8de", "mo\x00de"),
]
DELIM_PIECES = [":", ": ", ":\t", ": \t ", " :", "", "::"]
VALUE_PIECES = [
    *("STSv1", "stsv1", "STSv1 x", "enforce", "testing", "none", "Enforce", "604800", "0"),
    *("0604800", "9999999999", "12345678901", "-1", "\uff11", "", "mail.example.com"),
    *("*.example.net", "MAIL.Example.COM", "*.*.a", "a..b", "a.example.", "m\u00f8x.example"),
    *("xn--mx-lka.example", "xn--zz.example", "XN--ZZ.example", "a" * 64 + ".example"),
    *(".".join(["a" * 63] * 4), "a b", "a  b", "a\tb", "a:b", "caf\u00e9", "\u00a0", "\u3000x"),
    *("a\u2028b", "a\x85b", "a\x0bb", "a\x0cb", "\x7f", "a\x00", "a\x1f", "\ufeff"),
]
TRAIL_PIECES = ["", " ", "\t", " \t "]
TERM_PIECES = ["\n", "\r\n", "\r", "\r\r\n", "\n\n", ""]
FAST_LINES = st.tuples(
    *map(st.sampled_from, (KEY_PIECES, DELIM_PIECES, VALUE_PIECES, TRAIL_PIECES, TERM_PIECES))
).map("".join)
VALID_LINES = ["version: STSv1\n", "mode: testing\r\n", "mx: a.example\n", "max_age: 86400\n"]
GOOD_VALUES = {
    "version": ["STSv1"],
    "mode": ["enforce", "testing", "none"],
    "max_age": ["0", "0604800", "9999999999"],
    "mx": ["mail.example.com", "*.example.net", "MAIL.Example.COM", "xn--mx-lka.example"],
    "x": ["a b", "a:b", "caf\u00e9", "\u00a0", "\u3000x", "a\u2028b", "a\x85b", "\ufeff", "-1"],
}
GOOD_LINES = st.tuples(
    st.sampled_from(["version", "mode", "max_age", "mx", "x", "Mode", "max-age", "k" * 32]).flatmap(
        lambda key: st.tuples(st.just(key), st.sampled_from(GOOD_VALUES.get(key, GOOD_VALUES["x"])))
    ),
    st.sampled_from([":", ": ", ":\t", ": \t "]),
    st.sampled_from(["", " ", "\t", " \t "]),
    st.sampled_from(["\n", "\r\n"]),
).map(lambda t: f"{t[0][0]}{t[1]}{t[0][1]}{t[2]}{t[3]}")


@st.composite
def near_policies(draw):
    """Shuffled bodies: most lines of a valid policy, valid extra lines, a few arbitrary ones."""
    lines = [line for line in VALID_LINES if draw(st.integers(0, 7))]
    lines += draw(st.lists(GOOD_LINES, max_size=4))
    lines += draw(st.lists(FAST_LINES, max_size=2))
    body = "".join(draw(st.permutations(lines)))
    return body.removesuffix("\n") if draw(st.booleans()) else body


def fields_of(policy):
    """Every attrs field of a policy, including those equality ignores, and the mx texts."""
    return [getattr(policy, field.name) for field in attrs.fields(Policy)] + [
        pattern.text for pattern in policy.mx
    ]


class TestFastPath:
    """
    The fast path of Policy.from_text against the detailed scanner.

    from_text takes a valid body in one regex pass (_parse_valid) and runs the
    scanner only when that fails; the two must never disagree.
    """

    def check_agree(self, data):
        """Assert the fast path and the scanner agree on ``data``, strictly and leniently."""
        body, _ = _decode(data)
        fast = _parse_valid(body) if body else None
        strict = scan_policy(data)
        if strict.policy is None:
            assert None is fast
        else:
            # Every strictly valid body takes the fast path, and gives the same policy.
            assert fast is not None
            assert fields_of(strict.policy) == fields_of(fast)
        for lenient in (False, True):
            scan = scan_policy(data, lenient=lenient)
            if scan.policy is None:
                with pytest.raises(PolicySyntaxError) as info:
                    Policy.from_text(data, lenient=lenient)
                expected = scan.errors[0]
                assert (
                    type(expected),
                    expected.detail,
                    expected.line,
                    expected.offset,
                    expected.conformance,
                    expected.reason,
                ) == (
                    type(info.value),
                    info.value.detail,
                    info.value.line,
                    info.value.offset,
                    info.value.conformance,
                    info.value.reason,
                )
            else:
                assert fields_of(scan.policy) == fields_of(Policy.from_text(data, lenient=lenient))

    @given(near_policies())
    def test_agrees_on_policy_like_text(self, body):
        """STS-POL-01..16, AMB-15: same policy, or same error with line, offset and IDs."""
        self.check_agree(body)

    @given(near_policies())
    def test_agrees_on_policy_like_bytes(self, body):
        """STS-POL-17: the same holds for bytes input."""
        self.check_agree(body.encode())

    @given(st.text(st.sampled_from("version:STSv1mode enforcx.*\t\r\n\u00e9\x00"), max_size=60))
    def test_agrees_on_arbitrary_text(self, text):
        """STS-POL-16: the fast path and the scanner agree on arbitrary text."""
        self.check_agree(text)

    def test_agrees_on_every_odd_line(self):
        """STS-POL-02..16, STS-POL-22: each line piece, valid or not, after and before BASE."""
        lines = [
            *(f"{key}: {value}\n" for key in (*RESERVED_KEYS, "x") for value in VALUE_PIECES),
            *(
                key + delim + "v" + trail + term
                for key in KEY_PIECES
                for delim in DELIM_PIECES
                for trail in TRAIL_PIECES
                for term in TERM_PIECES
            ),
        ]
        for line in lines:
            self.check_agree(BASE + line)
            self.check_agree(line + BASE)

    @pytest.mark.parametrize(
        "body",
        [
            BASE,
            APPENDIX_A.replace("\n", "\r\n"),
            BASE + "ext: a:b c\nmode: none\nversion: STSv1\nmax_age: 1\nmx: *.b.example\n",
            "mode: none\nmax_age: 1\nversion: STSv1",
            BASE.replace("mail.example.com", "MAIL.example.COM") + "x: caf\u00e9 \u00a0\t\n",
        ],
    )
    def test_valid_bodies_take_the_fast_path(self, body):
        """STS-POL-01, STS-POL-12, STS-POL-20: from_text's fast path builds what __init__ builds."""
        policy = _parse_valid(body)

        assert policy is not None
        rebuilt = Policy(
            mode=policy.mode,
            mx=policy.mx,
            max_age=policy.max_age,
            extensions=policy.extensions,
            text=policy.text,
            lines=policy.lines,
        )
        assert fields_of(rebuilt) == fields_of(policy)

    def test_long_mx_lists_parse_uncached(self):
        """STS-POL-07: a policy with many mx lines takes the fast path too, in order."""
        hosts = [f"mx{i}.example" for i in range(40)]
        policy = Policy.from_text(BASE + "".join(f"mx: {h}\n" for h in hosts))

        assert ["mail.example.com", *hosts] == [p.host for p in policy.mx]
        assert policy.matches("mx39.example")


class TestScan:
    def test_collects_every_line_error(self):
        """STS-POL-03, STS-POL-04, STS-POL-08: one error per bad line, then missing fields."""
        scan = scan_policy("mode: x\nmax_age: y\nmx: -a\nfoo: ok\n")

        assert ["bad-mode", "bad-max-age", "bad-mx", "missing-version"] == [
            e.reason for e in scan.errors
        ]
        assert None is scan.policy
        assert PolicyField(4, "foo", "ok", 5) == scan.fields[3]

    def test_terminators(self):
        """STS-POL-01: the scan records each line's terminator."""
        scan = scan_policy("version: STSv1\r\nmode: none\nmax_age: 1")

        assert ("\r\n", "\n", "") == scan.terminators

    def test_stops_at_decode_errors(self):
        """STS-POL-17: undecodable input gives a single error and no fields."""
        scan = scan_policy(b"\xff" + BASE.encode())

        assert (1, (), ()) == (len(scan.errors), scan.fields, scan.terminators)


class TestConstructor:
    def test_defaults(self):
        """STS-POL-20: a policy built in code has its serialisation as text and lines."""
        policy = Policy(mode="enforce", mx=[MXPattern("mail.example.com")], max_age=604800)

        assert "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n" == (
            policy.text
        )
        assert (
            "version: STSv1",
            "mode: enforce",
            "mx: mail.example.com",
            "max_age: 604800",
        ) == policy.lines
        assert (Mode.ENFORCE, False) == (policy.mode, policy.lenient)

    def test_equality_ignores_provenance(self):
        """STS-POL-19, STS-POL-20: equality compares meaning, not the raw text."""
        a = Policy.from_text(BASE)
        b = Policy.from_text(BASE.replace("\n", "\r\n").replace("604800", "0604800"))

        assert (a, hash(a)) == (b, hash(b))
        assert a.text != b.text

    def test_extensions_from_dict(self):
        """STS-POL-10: extensions may be given as a dict and are stored as pairs."""
        policy = Policy(mode=Mode.NONE, max_age=1, extensions={"a": "1"})

        assert (("a", "1"),) == policy.extensions

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"mode": Mode.ENFORCE}, ValueError),
            ({"mode": Mode.TESTING}, ValueError),
            ({"mode": "bogus"}, ValueError),
            ({"mx": ["a.example"]}, TypeError),
            ({"max_age": -1}, ValueError),
            ({"max_age": 10**10}, ValueError),
            ({"extensions": [("mode", "x")]}, ValueError),
            ({"extensions": [("_x", "x")]}, ValueError),
            ({"extensions": [("x", "1"), ("x", "2")]}, ValueError),
            ({"extensions": [("x", "")]}, ValueError),
            ({"extensions": [("x", " a")]}, ValueError),
            ({"extensions": [("x", "a\tb")]}, ValueError),
            ({"extensions": [("x", "\ud800")]}, ValueError),
        ],
    )
    def test_invalid(self, kwargs, error):
        """STS-POL-06, STS-POL-04, STS-POL-11: the constructor keeps the grammar's invariants."""
        with pytest.raises(error):
            Policy(**{"mode": Mode.NONE, "max_age": 1, **kwargs})


class TestMatches:
    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("mail.example.com", True),
            ("MAIL.example.com.", True),
            ("x.example.net", True),
            ("example.net", False),
            ("a.b.example.net", False),
            ("m\u00f8x.example.net", True),
            ("other.example", False),
            ("", False),
        ],
    )
    def test_table(self, host, expected):
        """STS-MX-01..05, STS-MX-07, STS-MX-09: a policy matches a host iff some pattern does."""
        policy = Policy.from_text(BASE + "mx: *.example.net\n")

        assert expected == policy.matches(host)


class TestPolicyURL:
    @pytest.mark.parametrize(
        ("domain", "url"),
        [
            ("example.com", "https://mta-sts.example.com/.well-known/mta-sts.txt"),
            ("Example.COM.", "https://mta-sts.example.com/.well-known/mta-sts.txt"),
            ("m\u00f8x.example", "https://mta-sts.xn--mx-lka.example/.well-known/mta-sts.txt"),
        ],
    )
    def test_url(self, domain, url):
        """STS-FETCH-01: the URL uses the lower-case A-label policy domain."""
        assert url == policy_url(domain)

    def test_bad_domain(self):
        """STS-FETCH-01: an invalid domain raises DomainNameError."""
        with pytest.raises(DomainNameError):
            policy_url("bad..example")


@pytest.mark.parametrize("case", vectors.load("sts-policy"), ids=lambda case: case["id"])
def test_vectors(case):
    """STS-POL-01..23, AMB-01..05: every sts-policy reference vector passes."""
    result = vectors.check_case("sts-policy", case)

    assert (True, "") == (result.ok, result.message)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"input": "x", "expect": {}}, "expected a policy"),
        ({"input": "x", "error": "RecordSyntaxError"}, "expected RecordSyntaxError"),
        ({"input": "x", "error": "PolicySyntaxError", "reason": "bom"}, "expected reason 'bom'"),
        ({"input": BASE, "error": "PolicySyntaxError"}, "expected PolicySyntaxError"),
        ({"input": BASE, "expect": {"bogus": 1}}, "unknown expect key"),
        ({"input": BASE, "expect": {"max_age": 1}}, "expected max_age 1"),
    ],
)
def test_checker_reports_mismatches(case, message):
    """The sts-policy checker reports each kind of disagreement instead of passing it."""
    result = vectors.check_case("sts-policy", {"id": "x", "conformance": ["STS-POL-01"], **case})

    assert (False, True) == (result.ok, result.message.startswith(message))
