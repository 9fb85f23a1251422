"""Tests for smtpsts.tlsrpt.record (the _smtp._tls TXT record and its rua endpoints)."""

from __future__ import annotations

import copy

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsts import tlsrpt, vectors
from smtpsts.exceptions import TLSRPTRecordSyntaxError
from smtpsts.tlsrpt.record import (
    HTTPSEndpoint,
    MailtoEndpoint,
    SelectionStatus,
    TLSRPTRecord,
    TLSRPTRecordSelection,
    UnsupportedEndpoint,
    select_tlsrpt_record,
)

EXT_VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "=;")

# URIs built from RFC 3986 pieces, without "," and ";" (RFC 8460 §3 requires them encoded).
_SAFE = "abcXYZ019-._~!$&'()*+="
_seg = st.text(alphabet=_SAFE + ":@", max_size=8)
uris = st.one_of(
    st.builds(
        lambda local, host: f"mailto:{local}@{host}.example",
        st.from_regex(r"[a-z0-9+]{1,8}", fullmatch=True),
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    ),
    st.builds(
        lambda host, port, path, query: f"https://{host}{port}{path}{query}",
        st.from_regex(r"[a-z]{1,8}\.example", fullmatch=True),
        st.sampled_from(["", ":443", ":8443", ":"]),
        st.lists(_seg, max_size=3).map(lambda p: "".join("/" + s for s in p)),
        st.sampled_from(["", "?a=b", "?x=%2C#frag", "#f"]),
    ),
    st.builds(lambda s: f"urn:example:{s}", st.text(alphabet=_SAFE, min_size=1, max_size=8)),
)
ext_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}", fullmatch=True).filter(
    lambda n: n not in {"v", "rua"}
)
records = st.builds(
    TLSRPTRecord,
    rua=st.lists(uris, min_size=1, max_size=4),
    extensions=st.lists(
        st.tuples(ext_names, st.text(alphabet=EXT_VALUE_CHARS, min_size=1, max_size=16)),
        max_size=3,
    ),
)


class TestVectors:
    @pytest.mark.parametrize(
        "case", [pytest.param(c, id=c["id"]) for c in vectors.load("tlsrpt-record")]
    )
    def test_vector(self, case):
        """RPT-REC-03: each tlsrpt-record vector passes through its checker."""
        result = vectors.check_case("tlsrpt-record", case)
        assert (True, "") == (result.ok, result.message)

    @pytest.mark.parametrize(
        ("case_id", "change", "fragment"),
        [
            ("rfc-example-mailto", {"error": "TLSRPTRecordSyntaxError"}, "error: expected"),
            ("rua-empty", {"error": "RecordSyntaxError"}, "error"),
            (
                "select-ignores-spf",
                {"expect": {"status": "found", "candidates": 1, "record": None}},
                "record",
            ),
            (
                "select-two-records",
                {"expect": {"status": "multiple-records", "candidates": 2, "record": {}}},
                "got None",
            ),
        ],
    )
    def test_checker_reports_mismatch(self, case_id, change, fragment):
        """RPT-REC-06: the checker reports a wrong expectation as a failure naming it."""
        case = copy.deepcopy(next(c for c in vectors.load("tlsrpt-record") if c["id"] == case_id))
        case.update(change)
        if "error" in change:
            case.pop("expect", None)
        result = vectors.check_case("tlsrpt-record", case)
        assert (False, True) == (result.ok, fragment in result.message)


class TestFromText:
    @settings(max_examples=200)
    @given(records)
    def test_round_trip(self, record):
        """RPT-REC-03, RPT-REC-04: from_text(r.to_text()) == r for generated records."""
        assert record == TLSRPTRecord.from_text(record.to_text())

    @settings(max_examples=200)
    @given(records, st.data())
    def test_rua_split_and_spaced(self, record, data):
        """RPT-REC-03, RPT-REC-11: WSP around commas and rua split over fields keep the URIs."""
        wsp = st.text(alphabet=" \t", max_size=2)
        cut = data.draw(st.integers(1, len(record.rua)))
        first = (data.draw(wsp) + "," + data.draw(wsp)).join(record.rua[:cut])
        text = f"v=TLSRPTv1; rua={first}"
        if record.rua[cut:]:
            text += "; rua=" + ",".join(record.rua[cut:] + record.rua[:1])
        text += "".join(f"; {n}={v}" for n, v in record.extensions)
        assert record == TLSRPTRecord.from_text(text)

    @settings(max_examples=300)
    @given(
        st.one_of(
            st.text(),
            st.text(alphabet="v=TLSRPTv1;rua:/@%[]?#,. \tmailto:https\u00e9\x00"),
            st.binary(),
        )
    )
    def test_only_parse_errors_escape(self, text):
        """SEC-16, RPT-REC-10: any text or bytes give a record or a TLSRPTRecordSyntaxError."""
        for lenient in (False, True):
            try:
                record = TLSRPTRecord.from_text(text, lenient=lenient)
            except TLSRPTRecordSyntaxError as e:
                where = e.offset
                assert isinstance(where, int)
            else:
                assert len(record.rua) == len(record.endpoints)

    @settings(max_examples=300)
    @given(st.text(alphabet="abz09:/@%[]?#.!$&'()*+=-_~vV", max_size=40))
    def test_endpoints_never_raise(self, tail):
        """SEC-16, RPT-REC-08: any URI the record accepts yields an endpoint, never an exception."""
        for scheme in ("mailto:", "https://", "https:", "x:"):
            try:
                record = TLSRPTRecord.from_text(f"v=TLSRPTv1; rua={scheme}{tail}")
            except TLSRPTRecordSyntaxError:
                continue
            assert 1 == len(record.endpoints)

    @pytest.mark.parametrize(
        ("text", "reason", "offset", "ids"),
        [
            ("v=TLSRPTv1; rua=mailto:\u00e9@x", "not-ascii", 23, ("RPT-REC-04",)),
            ("v=tlsrptv1; rua=mailto:a@x", "invalid-version", 2, ("RPT-REC-02",)),
            ("v=TLSRPTv1;", "missing-rua", 11, ("RPT-REC-03",)),
            ("v=TLSRPTv1; rua=mailto:a@x, ,x:y", "invalid-rua", 28, ("RPT-REC-03", "RPT-REC-10")),
            ("v=TLSRPTv1; rua=mailto:a@x,  http://b/%", "invalid-rua", 29, ("RPT-REC-10",)),
            ("v=TLSRPTv1; rua=x:y; v=a b", "invalid-field-value", 24, ("RPT-REC-04",)),
            ("v=TLSRPTv1; rua= mailto:a@x", "whitespace-after-rua", 16, ("RPT-REC-03",)),
            ("v=TLSRPTv1; rua=\tmailto:a@x", "whitespace-after-rua", 16, ("RPT-REC-03",)),
            ("v=TLSRPTv1; rua=x:y; x=", "invalid-field-value", 23, ("RPT-REC-04",)),
        ],
    )
    def test_errors_carry_reason_offset_and_ids(self, text, reason, offset, ids):
        """RPT-REC-02..04, RPT-REC-10: each syntax error names its reason, offset and rules."""
        with pytest.raises(TLSRPTRecordSyntaxError) as info:
            TLSRPTRecord.from_text(text)
        e = info.value
        assert (reason, offset, ids) == (e.reason, e.offset, e.conformance)
        assert str(e).startswith("TLSRPT record: ")

    def test_lenient(self):
        """AMB-01: lenient mode accepts key case and trailing WSP and flags the result."""
        text = " V=TLSRPTv1;; RUA = mailto:a@x.example "
        with pytest.raises(TLSRPTRecordSyntaxError):
            TLSRPTRecord.from_text(text)
        record = TLSRPTRecord.from_text(text, lenient=True)
        assert TLSRPTRecord(["mailto:a@x.example"], lenient=True) == record
        assert attrs.evolve(record, lenient=False) == TLSRPTRecord.from_text(record.to_text())

    def test_whitespace_after_rua_is_lenient_only(self):
        """RPT-REC-03, AMB-01 (issue 18): WSP right after "rua=" is outside the ABNF.

        RFC 8460 §3 allows WSP only around the commas; lenient mode accepts it and
        flags the record.
        """
        text = "v=TLSRPTv1; rua= mailto:a@x.example , https://r.example/t"
        record = TLSRPTRecord.from_text(text, lenient=True)
        assert (("mailto:a@x.example", "https://r.example/t"), True) == (
            record.rua,
            record.lenient,
        )
        spaced = TLSRPTRecord.from_text("v=TLSRPTv1; rua=mailto:a@x.example , https://r.example/t")
        assert (record.rua, False) == (spaced.rua, spaced.lenient)

    @pytest.mark.parametrize(
        "text",
        [
            "v=TLSRPTv1; rua=mailto:a@x.example; v=TLSRPTv2",
            "v=TLSRPTv1; v=TLSRPTv1; rua=mailto:a@x.example",
        ],
    )
    def test_repeated_version_ignored(self, text):
        """AMB-04, RPT-REC-05 (issue 18): a later "v" fits tlsrpt-extension and is ignored.

        RFC 8460 §3 says nothing of duplicates, but "Parsers MUST accept TXT records that
        are syntactically valid"; the RFC 8461 §3.2 rule (first wins) is applied.
        """
        record = TLSRPTRecord.from_text(text)
        assert (("mailto:a@x.example",), (), False) == (
            record.rua,
            record.extensions,
            record.lenient,
        )

    def test_lenient_still_refuses(self):
        """AMB-01, RPT-REC-03: lenient mode still needs rua."""
        with pytest.raises(TLSRPTRecordSyntaxError, match="rua"):
            TLSRPTRecord.from_text("v=TLSRPTv1; foo=bar ", lenient=True)


class TestConstructor:
    @pytest.mark.parametrize(
        ("rua", "fragment"),
        [
            ([], "at least one"),
            (["not a uri"], "RFC 3986"),
            (["mailto:a@x,mailto:b@x"], "RFC 3986"),
            (["https://r.example/a;b"], "RFC 3986"),
            (["https://[::1%25eth0]/"], "RFC 3986"),
        ],
    )
    def test_invalid_rua(self, rua, fragment):
        """RPT-REC-10: the constructor refuses URIs the record could not hold."""
        with pytest.raises(ValueError, match=fragment):
            TLSRPTRecord(rua)

    @pytest.mark.parametrize(
        ("extensions", "fragment"),
        [([("rua", "x:y")], "reserved"), ([("a", "")], "not a valid")],
    )
    def test_invalid_extensions(self, extensions, fragment):
        """RPT-REC-04: extensions must fit the grammar and not use reserved keys."""
        with pytest.raises(ValueError, match=fragment):
            TLSRPTRecord(["x:y"], extensions)

    def test_rua_deduplicated(self):
        """RPT-REC-11, AMB-23: the constructor removes duplicate URIs, keeping order."""
        assert ("b:1", "a:1") == TLSRPTRecord(["b:1", "a:1", "b:1"]).rua


def _endpoint(uri):
    return TLSRPTRecord([uri]).endpoints[0]


class TestEndpoints:
    @pytest.mark.parametrize(
        ("uri", "address"),
        [
            ("mailto:r@x.example", "r@x.example"),
            ("MailTo:r@x.example", "r@x.example"),
            ("mailto:tls%2Brpt@x.example?subject=x", "tls+rpt@x.example"),
            ("mailto:r@x.example#frag", "r@x.example"),
            ("mailto:%22a%20b%22@x.example", '"a b"@x.example'),
            ("mailto:%22a%5C%22b%22@x.example", '"a\\"b"@x.example'),
            ("mailto:j%C3%B6rg@b%C3%BCcher.example", "j\u00f6rg@b\u00fccher.example"),
            ("mailto:r@%5B192.0.2.1%5D", "r@[192.0.2.1]"),
            ("mailto:r@%5BIPv6:2001:db8::1%5D", "r@[IPv6:2001:db8::1]"),
            ("mailto:" + "a" * 64 + "@x.example", "a" * 64 + "@x.example"),
        ],
    )
    def test_mailto(self, uri, address):
        """RPT-REC-12: mailto URIs give their percent-decoded addr-spec; hfields are ignored."""
        assert MailtoEndpoint(address, uri) == _endpoint(uri)

    @pytest.mark.parametrize(
        ("uri", "reason"),
        [
            ("mailto:a@x.example!10m", "invalid-address"),
            ("mailto:", "no-address"),
            ("mailto:?to=r@x.example", "no-address"),
            ("mailto://r@x.example", "no-address"),
            ("mailto:%FF@x.example", "invalid-address"),
            ("mailto:noatsign", "invalid-address"),
            ("mailto:a..b@x.example", "invalid-address"),
            ("mailto:" + "a" * 65 + "@x.example", "invalid-address"),
            ("mailto:r@x.example.", "invalid-address"),
            ("mailto:r@%5B192.0.2%5D", "invalid-address"),
            ("mailto:r@%5BIPv6:fe80::1%25eth0%5D", "invalid-address"),
            ("mailto:r@", "invalid-address"),
            ("https:///path", "no-host"),
            ("https:path", "no-host"),
            ("https://u@r.example/", "userinfo"),
            ("https://r.example:65536/", "invalid-port"),
            ("https://r_x.example/", "invalid-host"),
            ("https://%FF.example/", "invalid-host"),
            ("https://[v7.fe]/", "invalid-host"),
            ("http://r.example/", "unsupported-scheme"),
            ("urn:x:y", "unsupported-scheme"),
        ],
    )
    def test_unusable(self, uri, reason):
        """RPT-REC-08, RPT-REC-09: URIs naming no usable destination are kept but unusable."""
        record = TLSRPTRecord([uri])
        assert (UnsupportedEndpoint(uri, reason), ()) == (
            record.endpoints[0],
            record.usable_endpoints,
        )

    @pytest.mark.parametrize(
        "uri",
        [
            "https://r.example/v1",
            "HTTPS://R.EXAMPLE:65535/v1?x=1#y",
            "https://[2001:db8::1]/",
            "https://[::ffff:192.0.2.1]:8443/",
            "https://192.0.2.1/",
            "https://r.example:/",
            "https://xn--bcher-kva.example",
        ],
    )
    def test_https(self, uri):
        """RPT-REC-09: https URIs with a usable host are HTTPSEndpoint, url as written."""
        endpoint = _endpoint(uri)
        assert (HTTPSEndpoint(uri), uri, True) == (endpoint, endpoint.uri, endpoint.usable)

    def test_usable_endpoints_in_order(self):
        """RPT-REC-09, RPT-REC-15: usable endpoints keep record order, any domain allowed."""
        record = TLSRPTRecord.from_text(
            "v=TLSRPTv1; rua=http://a.example/,mailto:r@b.example,https://c.example/"
        )
        assert (
            MailtoEndpoint("r@b.example", "mailto:r@b.example"),
            HTTPSEndpoint("https://c.example/"),
        ) == record.usable_endpoints
        assert (False, True) == (record.endpoints[0].usable, record.endpoints[1].usable)

    @pytest.mark.parametrize(
        "uri",
        [
            "https://[v1.x:y]/",
            "foo://u:p@h:1/a/b?q#f",
            "foo:/a//b",
            "foo:",
            "a+b.c-d:x",
            "foo://h/%41",
        ],
    )
    def test_rfc3986_valid(self, uri):
        """RPT-REC-10: RFC 3986 forms (IPvFuture, path-absolute, path-empty) are valid URIs."""
        assert (uri,) == TLSRPTRecord.from_text(f"v=TLSRPTv1; rua={uri}").rua

    @pytest.mark.parametrize(
        "uri",
        [
            "foo://[::1/",
            "foo://[::g]/",
            "foo://[v1.]/",
            "foo://h:x/",
            "foo://h/%4",
            "foo://h/a b",
            "foo://h/<x>",
            "foo//h",
            "-foo:x",
            "foo:x|y",
            "foo://h/a\\b",
        ],
    )
    def test_rfc3986_invalid(self, uri):
        """RPT-REC-10: strings outside RFC 3986 make the record invalid."""
        with pytest.raises(TLSRPTRecordSyntaxError, match="RFC 3986"):
            TLSRPTRecord.from_text(f"v=TLSRPTv1; rua={uri}")


class TestSelect:
    def test_found(self):
        """RPT-REC-06, RPT-REC-07: one candidate among others, split into strings, is found."""
        selection = select_tlsrpt_record(
            [b"v=spf1 -all", (b"v=TLSRPTv1; rua=mai", b"lto:r@x.example")]
        )
        assert (
            TLSRPTRecordSelection(
                SelectionStatus.FOUND, TLSRPTRecord(["mailto:r@x.example"]), None, 1
            )
            == selection
        )

    def test_outcomes(self):
        """RPT-REC-06: no candidate, several, or one invalid candidate give their statuses."""
        assert [
            (SelectionStatus.NO_RECORD, 0),
            (SelectionStatus.MULTIPLE_RECORDS, 2),
            (SelectionStatus.SYNTAX_ERROR, 1),
        ] == [
            (s.status, s.candidates)
            for s in (
                select_tlsrpt_record(["v=STSv1; id=1", "v=TLSRPTv1"]),
                select_tlsrpt_record(["v=TLSRPTv1; rua=x:y", "v=TLSRPTv1;rua=x:z"]),
                select_tlsrpt_record(["v=TLSRPTv1; rua=,"]),
            )
        ]
        error = select_tlsrpt_record(["v=TLSRPTv1; rua=,"]).error
        assert "invalid-rua" == (error.reason if error else None)

    def test_lenient(self):
        """AMB-01, AMB-10: lenient selection accepts a capital V and flags the record."""
        selection = select_tlsrpt_record(["V=TLSRPTv1; rua=x:y"], lenient=True)
        assert TLSRPTRecord(["x:y"], lenient=True) == selection.record

    @settings(max_examples=200)
    @given(
        st.lists(st.one_of(st.text(), st.binary(), st.lists(st.binary(), max_size=3)), max_size=4),
        st.booleans(),
    )
    def test_never_raises(self, rrset, lenient):
        """SEC-16, RPT-REC-06: selection over arbitrary RRsets returns an outcome."""
        selection = select_tlsrpt_record(rrset, lenient=lenient)
        assert (selection.status is SelectionStatus.FOUND) == (selection.record is not None)

    def test_exports(self):
        """smtpsts.tlsrpt exports the record API."""
        assert (TLSRPTRecord, select_tlsrpt_record, TLSRPTRecordSelection) == (
            tlsrpt.TLSRPTRecord,
            tlsrpt.select_tlsrpt_record,
            tlsrpt.TLSRPTRecordSelection,
        )


class TestHostileInput:
    @pytest.mark.parametrize(
        "text",
        [
            "v=TLSRPTv1; rua=" + "," * 65536,
            "v=TLSRPTv1; rua=https://" + "a" * 65536,
            "v=TLSRPTv1; rua=https://" + "a" * 65536 + "@",
            "v=TLSRPTv1; rua=https://" + "a:" * 32768,
            "v=TLSRPTv1; rua=https://h" + "/a" * 32768 + " ",
            "v=TLSRPTv1; rua=mailto:" + "a." * 32768 + "@x.example",
            "v=TLSRPTv1; rua=mailto:%22" + "%5C" * 21845 + "%22@x",
            "v=TLSRPTv1; rua=foo:" + "%" * 65536,
            "v=TLSRPTv1; rua=https://[" + ":" * 65536 + "]/",
            "v=TLSRPTv1; " + "rua=x:y; " * 7281,
        ],
    )
    def test_64k_input_finishes(self, text):
        """SEC-16, RPT-REC-10: 64 KiB of hostile text parses or fails without blowing up."""
        try:
            record = TLSRPTRecord.from_text(text)
        except TLSRPTRecordSyntaxError as e:
            where = e.offset
            assert where is not None
        else:
            assert len(record.rua) == len(record.endpoints)
