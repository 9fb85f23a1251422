"""Tests for smtpsts.record (the _mta-sts TXT record) and smtpsts._txt (the shared grammar)."""

from __future__ import annotations

import copy
import itertools

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smtpsts
from smtpsts import _txt, vectors
from smtpsts.exceptions import ParseError, RecordSyntaxError
from smtpsts.record import (
    _VERSION_AND_ID,
    RecordSelection,
    SelectionStatus,
    STSRecord,
    select_sts_record,
)

EXT_VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "=;")

ids = st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True)
ext_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}", fullmatch=True).filter(
    lambda n: n not in {"v", "id"}
)
ext_values = st.text(alphabet=EXT_VALUE_CHARS, min_size=1, max_size=24)
records = st.builds(
    STSRecord,
    id=ids,
    extensions=st.lists(st.tuples(ext_names, ext_values), max_size=5).map(tuple),
)
wsp = st.text(alphabet=" \t", max_size=3)


class TestVectors:
    @pytest.mark.parametrize(
        "case", [pytest.param(c, id=c["id"]) for c in vectors.load("sts-record")]
    )
    def test_vector(self, case):
        """STS-REC-18: each sts-record vector passes through its checker."""
        result = vectors.check_case("sts-record", case)
        assert (True, "") == (result.ok, result.message)

    @pytest.mark.parametrize(
        ("case_id", "change", "fragment"),
        [
            ("basic", {"expect": {"id": "other", "extensions": [], "to_text": ""}}, "id"),
            ("id-empty", {"error": "TLSRPTRecordSyntaxError"}, "error"),
            ("basic", {"error": "RecordSyntaxError", "expect": None}, "error: expected"),
            (
                "select-ignores-spf",
                {"expect": {"status": "found", "candidates": 1, "record": None}},
                "record",
            ),
            (
                "select-two-records",
                {
                    "expect": {
                        "status": "multiple-records",
                        "candidates": 2,
                        "record": {"id": "1", "extensions": [], "to_text": "v=STSv1; id=1;"},
                    }
                },
                "got None",
            ),
        ],
    )
    def test_checker_reports_mismatch(self, case_id, change, fragment):
        """STS-REC-06: the checker reports a wrong expectation as a failure naming it."""
        case = copy.deepcopy(next(c for c in vectors.load("sts-record") if c["id"] == case_id))
        case.update(change)
        if case.get("expect", True) is None:
            del case["expect"]
        result = vectors.check_case("sts-record", case)
        assert (False, True) == (result.ok, fragment in result.message)


class TestFromText:
    @settings(max_examples=200)
    @given(records)
    def test_round_trip(self, record):
        """STS-REC-18: from_text(r.to_text()) == r for generated records."""
        assert record == STSRecord.from_text(record.to_text())

    @settings(max_examples=200)
    @given(records, st.data())
    def test_equivalent_spellings(self, record, data):
        """STS-REC-07, STS-REC-10: WSP around ';', field order and a trailing ';' don't matter."""
        fields = [f"id={record.id}", *(f"{n}={v}" for n, v in record.extensions)]
        position = data.draw(st.integers(0, len(record.extensions)))
        fields.insert(position, fields.pop(0))
        text = "v=STSv1"
        for field in fields:
            text += data.draw(wsp) + ";" + data.draw(wsp) + field
        if data.draw(st.booleans()):
            text += data.draw(wsp) + ";" + data.draw(wsp)
        assert record == STSRecord.from_text(text)
        assert record == STSRecord.from_text(text.encode("ascii"))

    @settings(max_examples=300)
    @given(st.one_of(st.text(), st.text(alphabet="v=STSv1;id \t=aZ9-_.\u00e9\x00"), st.binary()))
    def test_only_parse_errors_escape(self, text):
        """SEC-16, STS-REC-04: arbitrary text or bytes give a record or a RecordSyntaxError."""
        for lenient in (False, True):
            try:
                record = STSRecord.from_text(text, lenient=lenient)
            except RecordSyntaxError as e:
                where, ids = e.offset, e.conformance
                assert (True, True) == (isinstance(where, int), bool(ids))
            else:
                assert record == STSRecord.from_text(record.to_text())

    @pytest.mark.parametrize(
        ("text", "reason", "offset", "ids"),
        [
            ("v=STSv1; id=a; x=\u00e9", "not-ascii", 17, ("STS-REC-04",)),
            ("v=STSv1; id=a\x00", "control-character", 13, ("STS-REC-04",)),
            ("x=1", "invalid-version", 0, ("STS-REC-05",)),
            (" v=STSv1; id=a", "invalid-version", 0, ("STS-REC-05",)),
            ("v=STSv2; id=a", "invalid-version", 2, ("STS-REC-05",)),
            ("v=STSv10; id=a", "invalid-version", 2, ("STS-REC-05",)),
            ("v=STSv1 \tid=a", "missing-delimiter", 9, ("STS-REC-07",)),
            ("v=STSv1; id=a;; x=1", "empty-field", 14, ("STS-REC-07",)),
            ("v=STSv1; id=a  ", "trailing-whitespace", 13, ("STS-REC-07",)),
            ("v=STSv1; id=a; foo", "invalid-field", 15, ("STS-REC-08",)),
            ("v=STSv1; id=a; _x=1", "invalid-field-name", 15, ("STS-REC-08",)),
            ("v=STSv1; id=a; x=1 2", "invalid-field-value", 18, ("STS-REC-08",)),
            ("v=STSv1; id=a; x=", "invalid-field-value", 17, ("STS-REC-08",)),
            ("v=STSv1; id=x-y", "invalid-id", 12, ("STS-REC-06", "STS-REC-16")),
            ("v=STSv1; id=a; id=", "invalid-field-value", 18, ("STS-REC-08",)),
            ("v=STSv1; id=a; v=a b", "invalid-field-value", 18, ("STS-REC-08",)),
            ("v=STSv1; foo=1", "missing-id", 14, ("STS-REC-06",)),
        ],
    )
    def test_errors_carry_reason_offset_and_ids(self, text, reason, offset, ids):
        """STS-REC-04..08, STS-REC-16: each syntax error names its reason, offset and rules."""
        with pytest.raises(RecordSyntaxError) as info:
            STSRecord.from_text(text)
        e = info.value
        assert (reason, offset, ids) == (e.reason, e.offset, e.conformance)
        assert f"(offset {offset})" in str(e)
        assert str(e).startswith("MTA-STS record: ")

    def test_bytes_error_offset(self):
        """STS-REC-04: a non-ASCII byte is a RecordSyntaxError at its offset, not a decode error."""
        with pytest.raises(RecordSyntaxError) as info:
            STSRecord.from_text(b"v=STSv1; id=\xff")
        assert ("not-ascii", 12, True) == (
            info.value.reason,
            info.value.offset,
            "byte 0xff" in str(info.value),
        )

    def test_long_values_are_shortened_in_messages(self):
        """STS-REC-06: the message quotes at most a short prefix of a huge value."""
        with pytest.raises(RecordSyntaxError) as info:
            STSRecord.from_text("v=STSv1; id=" + "a" * 1000)
        assert "..." in str(info.value)
        assert len(str(info.value)) < 200

    def test_long_extension_name_message(self):
        """STS-REC-08: a 33-character name is reported as too long."""
        with pytest.raises(RecordSyntaxError, match="longer than 32"):
            STSRecord.from_text("v=STSv1; id=a; " + "n" * 33 + "=1")

    def test_first_id_wins(self):
        """STS-REC-11, AMB-04: the first id wins."""
        assert "first" == STSRecord.from_text("v=STSv1; id=first; id=second").id

    @pytest.mark.parametrize(
        "text",
        [
            "v=STSv1; id=abc; id=x-y",
            "v=STSv1; id=abc; v=STSv2",
            "v=STSv1; id=abc; v=STSv1",
            "v=STSv1; id=abc; id=" + "9" * 33,
            "v=STSv1; id=abc; ID=x-y; id=_",
        ],
    )
    def test_later_duplicates_ignored_whatever_their_value(self, text):
        """STS-REC-16, AMB-15 (issue 18): later "v"/"id" fields are ignored, not fatal.

        RFC 8461 §3.2: "all entries except for the first SHALL be ignored"; refusing the
        record would leave the sender with no policy (a downgrade). A differently cased
        key is an extension, kept as such (STS-REC-09).
        """
        record = STSRecord.from_text(text)
        assert ("abc", False) == (record.id, record.lenient)
        expected = [("ID", "x-y")] if "ID=" in text else []
        assert expected == list(record.extensions)
        assert RecordSelection(SelectionStatus.FOUND, record, None, 1) == select_sts_record([text])

    def test_first_id_must_fit_even_if_a_valid_one_follows(self):
        """STS-REC-16: the first id is never re-read as an extension, nor skipped."""
        with pytest.raises(RecordSyntaxError) as info:
            STSRecord.from_text("v=STSv1; id=x-y; id=abc")
        assert ("invalid-id", 12) == (info.value.reason, info.value.offset)

    def test_lenient_duplicates(self):
        """STS-REC-16, STS-REC-19: in lenient mode a repeated key in another case is a duplicate."""
        record = STSRecord.from_text("v=STSv1; id=abc; ID = x-y ", lenient=True)
        assert ("abc", (), True) == (record.id, record.extensions, record.lenient)

    def test_ids_compare_byte_for_byte(self):
        """STS-REC-15: ids differing only in case are different records."""
        assert STSRecord.from_text("v=STSv1; id=abc") != STSRecord.from_text("v=STSv1; id=ABC")

    def test_serialize_example(self):
        """STS-REC-18: id abc with extension foo=1 serialises as in the table."""
        assert "v=STSv1; id=abc; foo=1;" == STSRecord("abc", [("foo", "1")]).to_text()


class TestFastPath:
    def test_agrees_with_field_parse(self):
        """STS-REC-05..07, STS-REC-16: what the one-match path takes parses the same field by field.

        Every combination of the pieces below, valid or not, is tried.
        """
        pieces = [
            ["v=STSv1", "v=STSv2", "V=STSv1", "v=STSv1 ", "v=STSv1;"],
            ["", " \t"],
            [";", "", ",", ";;"],
            ["", "\t "],
            ["id=", "ID=", "x=", "id", "id==", "id =", "v=STSv1; id="],
            ["1", "Z" * 32, "9" * 33, "", "a-b", "\u00e9", "A\x00"],
            ["", ";", " ;", "; ", " ", "\t;\t", ";;", "; x=1", "; id=2", "\n"],
        ]
        for text in map("".join, itertools.product(*pieces)):
            try:
                parsed = STSRecord._parse(text, lenient=False)
            except RecordSyntaxError:
                parsed = None
            usual = _VERSION_AND_ID.fullmatch(text)
            # It takes exactly the valid records made of the version and one id field.
            assert (parsed is not None and text.count("=") == 2) == (usual is not None)
            if usual is not None:
                fast = STSRecord.from_text(text)
                assert (parsed.id, parsed.extensions, parsed.lenient) == (
                    fast.id,
                    fast.extensions,
                    fast.lenient,
                )

    @pytest.mark.parametrize(
        "text",
        ["v=STSv1;id=1", "v=STSv1 ;\tid=" + "Az9" * 10 + "aB", "v=STSv1; id=x; ", "v=STSv1;id=x;"],
    )
    def test_usual_records(self, text):
        """STS-REC-06, STS-REC-07: version plus id, with WSP and an optional last ';'."""
        record = STSRecord.from_text(text)

        assert _VERSION_AND_ID.fullmatch(text) is not None
        assert [getattr(record, a.name) for a in attrs.fields(STSRecord)] == [
            getattr(STSRecord(record.id), a.name) for a in attrs.fields(STSRecord)
        ]


class TestLenient:
    @pytest.mark.parametrize(
        "text",
        [
            "v=STSv1; id=a ",
            "V=STSv1; id=a",
            "v=STSv1; ID=a",
            " \tv=STSv1; id=a",
            "v=STSv1;; id=a;;",
            "v = STSv1; id = a",
        ],
    )
    def test_tolerated(self, text):
        """STS-REC-19, AMB-01: lenient mode accepts near-misses and flags the result."""
        with pytest.raises(RecordSyntaxError):
            STSRecord.from_text(text)
        assert STSRecord("a", lenient=True) == STSRecord.from_text(text, lenient=True)

    def test_strict_text_unflagged(self):
        """STS-REC-19: a strictly valid text parses in lenient mode exactly as in strict mode."""
        text = "v=STSv1; id=a; ID=b"
        assert STSRecord.from_text(text) == STSRecord.from_text(text, lenient=True)

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("v=STSv1; id=x-y ", "invalid-id"),
            ("v=STSv2; id=a", "invalid-version"),
            ("x=STSv1; id=a", "invalid-version"),
            ("v=STSv1 id=a", "missing-delimiter"),
            ("v=STSv1; id=a; x=\u00e9", "not-ascii"),
            ("v=STSv1;;", "missing-id"),
        ],
    )
    def test_still_refused(self, text, reason):
        """AMB-01, STS-REC-06: lenient mode never accepts a bad id, version or charset."""
        with pytest.raises(RecordSyntaxError) as info:
            STSRecord.from_text(text, lenient=True)
        assert reason == info.value.reason

    def test_lenient_round_trip(self):
        """STS-REC-18, STS-REC-19: a lenient record serialises to strictly valid text."""
        record = STSRecord.from_text("V=STSv1; ID=a; foo = 1 ", lenient=True)
        assert attrs.evolve(record, lenient=False) == STSRecord.from_text(record.to_text())


class TestConstructor:
    @pytest.mark.parametrize("bad", ["", "x-y", "a" * 33, "\u00e9"])
    def test_invalid_id(self, bad):
        """STS-REC-06: the constructor refuses ids outside the grammar."""
        with pytest.raises(ValueError, match="id must be"):
            STSRecord(bad)

    @pytest.mark.parametrize(
        ("extensions", "fragment"),
        [
            ([("id", "b")], "reserved"),
            ([("v", "STSv1")], "reserved"),
            ([("_x", "1")], "not a valid"),
            ([("x", "a b")], "not a valid"),
        ],
    )
    def test_invalid_extensions(self, extensions, fragment):
        """STS-REC-08, STS-REC-16: extensions must fit the grammar and not use reserved keys."""
        with pytest.raises(ValueError, match=fragment):
            STSRecord("a", extensions)

    def test_extensions_converted(self):
        """STS-REC-09: extensions given as lists become a tuple of pairs."""
        assert (("a", "1"),) == STSRecord("x", [["a", "1"]]).extensions

    def test_public_names(self):
        """The smtpsts package exports the record API lazily."""
        assert (STSRecord, RecordSelection, select_sts_record) == (
            smtpsts.STSRecord,
            smtpsts.RecordSelection,
            smtpsts.select_sts_record,
        )


class TestSelect:
    def test_found_from_character_strings(self):
        """STS-REC-03: an RR's character-strings are joined with no separator."""
        selection = select_sts_record([(b"v=STSv1; id=2016", b"0831085700Z;")])
        assert RecordSelection(SelectionStatus.FOUND, STSRecord("20160831085700Z"), None, 1) == (
            selection
        )

    def test_accepts_any_iterable_and_str_strings(self):
        """STS-REC-03, STS-REC-12: a generator of str, bytes and str sequences is accepted."""
        rrset = (rr for rr in [b"v=spf1 -all", ["v=STSv1; ", "id=a"], "other"])
        assert STSRecord("a") == select_sts_record(rrset).record

    def test_mixed_character_string_types(self):
        """STS-REC-03: mixing bytes and str inside one RR is a caller error (TypeError)."""
        with pytest.raises(TypeError):
            select_sts_record([["v=STSv1; ", b"id=a"]])

    def test_no_record(self):
        """STS-REC-12, STS-REC-13, STS-REC-17: no candidate means NO_RECORD, not an error."""
        assert RecordSelection(SelectionStatus.NO_RECORD) == select_sts_record(
            ["v=spf1 -all", "v=STSv1", b"v=STSv10; id=1"]
        )

    def test_multiple(self):
        """STS-REC-13: several candidates mean MULTIPLE_RECORDS with their count."""
        selection = select_sts_record(["v=STSv1; id=1", b"v=STSv1 ;id=2", "v=STSv1;id=x-y"])
        assert RecordSelection(SelectionStatus.MULTIPLE_RECORDS, candidates=3) == selection

    def test_syntax_error(self):
        """STS-REC-14: the single candidate's error is kept for diagnostics."""
        selection = select_sts_record([b"v=STSv1; id=\xc3\xa9"])
        assert (SelectionStatus.SYNTAX_ERROR, None, 1, "not-ascii") == (
            selection.status,
            selection.record,
            selection.candidates,
            selection.error.reason if selection.error else None,
        )

    def test_lenient_candidates(self):
        """AMB-01, AMB-10, STS-REC-19: lenient selection accepts leading WSP and a capital V."""
        rrset = [b" V = STSv1 ; id=a "]
        assert (SelectionStatus.NO_RECORD, STSRecord("a", lenient=True)) == (
            select_sts_record(rrset).status,
            select_sts_record(rrset, lenient=True).record,
        )

    @settings(max_examples=200)
    @given(
        st.lists(
            st.one_of(
                st.text(),
                st.binary(),
                st.lists(st.binary(), max_size=3),
                st.sampled_from(["v=STSv1; id=a", "v=STSv1;", "v=STSv1 ; id=b;"]),
            ),
            max_size=4,
        ),
        st.booleans(),
    )
    def test_never_raises(self, rrset, lenient):
        """SEC-16, STS-REC-13, STS-REC-14: selection over any RRset gives a consistent outcome."""
        selection = select_sts_record(rrset, lenient=lenient)
        expected_record = selection.status is SelectionStatus.FOUND
        expected_error = selection.status is SelectionStatus.SYNTAX_ERROR
        assert (expected_record, expected_error) == (
            selection.record is not None,
            selection.error is not None,
        )


class TestHostileInput:
    @pytest.mark.parametrize(
        "text",
        [
            "v=STSv1;" + ";" * 65536,
            "v=STSv1; id=a; " + "x=1; " * 13107,
            "v=STSv1; id=" + "a" * 65536,
            " " * 65536 + "v=STSv1; id=a",
            "v=STSv1" + " " * 65536,
            "v=STSv1; id=a; x=" + "=" * 65536,
            "v=STSv1; id=a" + " " * 65536,
        ],
    )
    def test_64k_input_finishes(self, text):
        """SEC-16, STS-REC-07: 64 KiB of hostile text parses or fails without blowing up."""
        for lenient in (False, True):
            try:
                STSRecord.from_text(text, lenient=lenient)
            except RecordSyntaxError as e:
                where = e.offset
                assert where is not None
        assert select_sts_record([text, text.encode()]).status in set(SelectionStatus)


class TestTxtHelpers:
    def test_show_short_and_long(self):
        """STS-REC-04: messages quote short pieces whole and long ones cut."""
        assert ("'ab'", "'" + "x" * 40 + "'...") == (_txt.show("ab"), _txt.show("x" * 41))

    def test_join_rr(self):
        """STS-REC-03: join_rr joins str or bytes character-strings; joined RRs pass through."""
        assert ("ab", b"ab", "ab", b"ab", "") == (
            _txt.join_rr(["a", "b"]),
            _txt.join_rr([b"a", b"b"]),
            _txt.join_rr("ab"),
            _txt.join_rr(b"ab"),
            _txt.join_rr([]),
        )

    def test_selection_status_values(self):
        """STS-REC-13: selection statuses are stable tokens."""
        assert ["found", "no-record", "multiple-records", "syntax-error"] == [
            s.value for s in SelectionStatus
        ]

    def test_parse_error_is_value_error(self):
        """STS-REC-14: a record syntax error is a ParseError and a ValueError."""
        with pytest.raises(ParseError):
            STSRecord.from_text("nope")
        with pytest.raises(ValueError, match="must begin"):
            STSRecord.from_text("nope")
