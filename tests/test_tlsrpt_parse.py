"""Tests for smtpsts.tlsrpt.serialize and smtpsts.tlsrpt.parse: reports on the wire."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import struct
import zlib
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import PolicyType, ResultType
from smtpsts.exceptions import UsageError
from smtpsts.tlsrpt import (
    Aggregator,
    PolicyInfo,
    Report,
    ReportSyntaxError,
    SessionResult,
    decompress_report,
    gzip_report,
    parse_report_message,
    report_filename,
    report_message,
    report_subject,
    submitter_domain,
)
from smtpsts.tlsrpt.parse import MAX_MESSAGE_SIZE

SAMPLES = Path(__file__).parent / "data" / "peer-samples"
DAY = date(2024, 3, 5)


def built_report(**org: str) -> Report:
    """A report for recipient.example on DAY with one failure."""
    agg = Aggregator()
    policy = PolicyInfo.no_policy_found("recipient.example")
    agg.add(SessionResult.succeeded(policy), datetime(2024, 3, 5, 8, tzinfo=UTC))
    agg.add(
        SessionResult.failed(policy, ResultType.STARTTLS_NOT_SUPPORTED, receiving_ip="192.0.2.7"),
        datetime(2024, 3, 5, 9, tzinfo=UTC),
    )
    report = agg.report(
        "recipient.example",
        DAY,
        organization_name=org.get("organization_name", "Sender Example Ltd"),
        contact_info=org.get("contact_info", "tlsrpt@Sender.Example"),
    )
    assert report is not None
    return report


def mail(report: Report, **kw: object) -> EmailMessage:
    """The report as a mail with fixed headers."""
    return report_message(
        report,
        "recipient.example",
        from_address="tlsrpt@sender.example",
        to_address="tlsrpt@recipient.example",
        date=datetime(2024, 3, 6, 3, 17, tzinfo=UTC),
        message_id="r1@sender.example",
        **kw,
    )


class TestSerialize:
    def test_filename(self):
        """RPT-SEND-02, RPT-SEND-03, AMB-13: sender!domain!begin!end.json.gz, end = begin + 86399."""
        report = built_report()

        assert "sender.example!recipient.example!1709596800!1709683199.json.gz" == (
            report_filename(report, "Recipient.Example.")
        )
        assert "sender.example!xn--bcher-kva.example!1709596800!1709683199!mta2.json" == (
            report_filename(report, "bücher.example", unique_id="mta2", compressed=False)
        )

    def test_filename_unique_id_checked(self):
        """RPT-SEND-02: unique-id is letters and digits only."""
        with pytest.raises(UsageError):
            report_filename(built_report(), "recipient.example", unique_id="a!b")

    def test_subject(self):
        """RPT-SEND-08, RPT-SEND-09: the §5.3 Subject with Report-ID <report-id@submitter>."""
        report = built_report()

        assert (
            f"Report Domain: recipient.example Submitter: sender.example "
            f"Report-ID: <{report.report_id}@sender.example>"
        ) == report_subject(report, "recipient.example")

    @pytest.mark.parametrize("rid", [None, "2022-09-15T00:00:00Z_x", "a..b", "a b"])
    def test_subject_needs_dot_atom_id(self, rid):
        """RPT-JSON-05: a report-id that is not dot-atom-text cannot go in the Subject."""
        report = Report.from_json(
            json.dumps({**json.loads(built_report().to_json()), "report-id": rid})
        )
        with pytest.raises(UsageError):
            report_subject(report, "recipient.example")

    @pytest.mark.parametrize("contact", [None, "no-at-sign", "@sender.example", "local@"])
    def test_submitter_needs_addr_spec(self, contact):
        """RPT-JSON-04, RPT-SEND-07: the submitter is the domain of contact-info."""
        doc = {**json.loads(built_report().to_json()), "contact-info": contact}
        with pytest.raises(UsageError):
            submitter_domain(Report.from_json(json.dumps(doc)))

    def test_gzip_deterministic(self):
        """RPT-SEND-01: gzip bytes carry no time stamp, so rebuilding is reproducible."""
        report = built_report()

        assert gzip_report(report) == gzip_report(report)
        assert report.to_json().encode() == gzip.decompress(gzip_report(report))

    def test_message(self):
        """RPT-SEND-04..08, RPT-SEND-14, RPT-SEND-21: the report mail's structure and headers."""
        report = built_report()
        msg = email.message_from_bytes(mail(report).as_bytes(), policy=email.policy.default)
        parts = list(msg.iter_parts())

        assert ("multipart/report", "tlsrpt") == (
            msg.get_content_type(),
            msg.get_param("report-type"),
        )
        assert {
            "From": "tlsrpt@sender.example",
            "To": "tlsrpt@recipient.example",
            "Date": "Wed, 06 Mar 2024 03:17:00 +0000",
            "Message-ID": "<r1@sender.example>",
            "TLS-Report-Domain": "recipient.example",
            "TLS-Report-Submitter": "sender.example",
            "TLS-Required": "No",
            "MIME-Version": "1.0",
            "Subject": report_subject(report, "recipient.example"),
        } == {
            k: str(msg[k])
            for k in (
                "From",
                "To",
                "Date",
                "Message-ID",
                "TLS-Report-Domain",
                "TLS-Report-Submitter",
                "TLS-Required",
                "MIME-Version",
                "Subject",
            )
        }
        assert ["text/plain", "application/tlsrpt+gzip"] == [p.get_content_type() for p in parts]
        assert ("base64", report_filename(report, "recipient.example")) == (
            parts[1]["Content-Transfer-Encoding"],
            parts[1].get_filename(),
        )
        assert gzip_report(report) == parts[1].get_content()
        assert None is parts[1]["MIME-Version"]

    def test_message_reproducible(self):
        """RPT-SEND-09: a retry rebuilds exactly the same message."""
        report = built_report()

        assert mail(report).as_bytes() == mail(report).as_bytes()

    def test_message_uncompressed(self):
        """RPT-SEND-03, RPT-SEND-05: application/tlsrpt+json with a .json name."""
        report = built_report()
        msg = mail(report, compressed=False, unique_id="mta2")
        part = list(msg.iter_parts())[1]

        assert ("application/tlsrpt+json", True) == (
            part.get_content_type(),
            (part.get_filename() or "").endswith("!mta2.json"),
        )
        assert report == parse_report_message(msg.as_bytes())

    def test_message_id_brackets_kept(self):
        """RPT-SEND-21: a Message-ID given with brackets is not wrapped twice."""
        msg = report_message(
            built_report(),
            "recipient.example",
            from_address="a@sender.example",
            to_address="b@recipient.example",
            date=datetime(2024, 3, 6, tzinfo=UTC),
            message_id="<x@sender.example>",
        )

        assert "<x@sender.example>" == msg["Message-ID"]

    def test_message_naive_date(self):
        """RPT-SEND-21: the Date must be an aware time."""
        with pytest.raises(UsageError):
            report_message(
                built_report(),
                "recipient.example",
                from_address="a@sender.example",
                to_address="b@recipient.example",
                date=datetime(2024, 3, 6),
                message_id="x@sender.example",
            )


class TestPeerSamples:
    """Every peer sample parses, with the values its README describes."""

    def test_rfc_example(self):
        """RPT-JSON-27, RPT-JSON-12: mail-auth rpt01 (RFC 8460 App. B) parses and round-trips."""
        for name in ("rpt01.json", "rpt01.eml"):
            report = parse_report_message((SAMPLES / "mail-auth" / name).read_bytes())
            entry = report.policies[0]

            assert ("Company-X", "5065427c-23d3-47ca-b6e0-946ea0e8c4be") == (
                report.organization_name,
                report.report_id,
            )
            assert (PolicyType.STS, ("*.mail.company-y.example",), "company-y.example") == (
                entry.policy.policy_type,
                entry.policy.mx_host,
                entry.policy.policy_domain,
            )
            assert (5326, 303) == (
                entry.summary.total_successful_session_count,
                entry.summary.total_failure_session_count,
            )
            assert [
                ("certificate-expired", 100, None, None),
                ("starttls-not-supported", 200, "203.0.113.56", None),
                ("validation-failure", 3, "203.0.113.58", "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"),
            ] == [
                (d.result_type, d.failed_session_count, d.receiving_ip, d.failure_reason_code)
                for d in entry.failure_details
            ]
            # App. B's non-canonical IPv6 and non-URI text are kept as received.
            assert "2001:db8:abcd:0012::1" == entry.failure_details[0].sending_mta_ip
            assert report == Report.from_json(report.to_json())

    def test_rpt01_eml_equals_json(self):
        """RPT-SEND-05: the mailed RFC example holds the same report as the JSON file."""
        assert parse_report_message((SAMPLES / "mail-auth" / "rpt01.json").read_bytes()) == (
            parse_report_message((SAMPLES / "mail-auth" / "rpt01.eml").read_bytes())
        )

    def test_google_shaped(self):
        """RPT-JSON-23: rpt02 (no mx-host, 7-day range, keys reordered; .eml uncompressed)."""
        for name in ("rpt02.json", "rpt02.eml"):
            report = parse_report_message((SAMPLES / "mail-auth" / name).read_bytes())
            entry = report.policies[0]

            assert ("Google Inc.", datetime(2020, 1, 7, 23, 59, 59, tzinfo=UTC)) == (
                report.organization_name,
                report.date_range.end,
            )
            assert ((), (23, 1)) == (
                entry.policy.mx_host,
                (
                    entry.summary.total_successful_session_count,
                    entry.summary.total_failure_session_count,
                ),
            )
            assert [("certificate-host-mismatch", "234.234.234.234", 1)] == [
                (d.result_type, d.receiving_ip, d.failed_session_count)
                for d in entry.failure_details
            ]

    def test_unknown_policy_type_and_missing_counts(self):
        """RPT-JSON-23, RPT-JSON-25: rpt03 keeps invalid-policy-type; missing failure count is 0."""
        report = parse_report_message((SAMPLES / "mail-auth" / "rpt03.json").read_bytes())

        assert [("no-policy-found", None, 1, 0), ("invalid-policy-type", None, 1, 0)] == [
            (
                p.policy.policy_type,
                p.policy.policy_domain,
                p.summary.total_successful_session_count,
                p.summary.total_failure_session_count,
            )
            for p in report.policies
        ]

    def test_mox_google(self):
        """RPT-SEND-04, RPT-SEND-05: mox example.eml from Google, no failure-details key."""
        report = parse_report_message((SAMPLES / "mox" / "example.eml").read_bytes())
        entry = report.policies[0]

        assert ("2022-09-15T00:00:00Z_test.xmox.nl", datetime(2022, 9, 15, tzinfo=UTC)) == (
            report.report_id,
            report.date_range.start,
        )
        assert (4, "test.xmox.nl", ("komijn.test.xmox.nl",), 3, 0, ()) == (
            len(entry.policy.policy_strings),
            entry.policy.policy_domain,
            entry.policy.mx_host,
            entry.summary.total_successful_session_count,
            entry.summary.total_failure_session_count,
            entry.failure_details,
        )

    def test_mox_microsoft(self):
        """RPT-JSON-24, AMB-14: Microsoft's datetimes without timezone are read as UTC."""
        report = parse_report_message((SAMPLES / "mox" / "microsoft.eml").read_bytes())
        entry = report.policies[0]

        assert (
            "Microsoft Corporation",
            "133198585438131172+test.xmox.nl",
            datetime(2023, 1, 10, tzinfo=UTC),
            datetime(2023, 1, 10, 23, 59, 59, tzinfo=UTC),
        ) == (
            report.organization_name,
            report.report_id,
            report.date_range.start,
            report.date_range.end,
        )
        assert ((), 2, 0) == (
            entry.policy.mx_host,
            entry.summary.total_successful_session_count,
            entry.summary.total_failure_session_count,
        )

    @pytest.mark.parametrize(
        "path",
        sorted(p for p in SAMPLES.glob("*/*") if p.suffix != ".md"),
        ids=lambda p: f"{p.parent.name}/{p.name}",
    )
    def test_every_sample_parses(self, path):
        """RPT-JSON-23, RPT-JSON-27: every peer sample parses and survives a round trip."""
        report = parse_report_message(path.read_bytes())

        assert report == Report.from_json(report.to_json())


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _message(part_type: str, body: bytes, filename: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "report"
    msg.set_content("human readable")
    maintype, subtype = part_type.split("/")
    msg.add_attachment(body, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


class TestParse:
    def test_bare_json_and_gzip(self):
        """RPT-SEND-17: an HTTPS body is gzip or JSON; both are recognised by content."""
        report = built_report()
        text = report.to_json().encode()

        assert [report] * 3 == [
            parse_report_message(text),
            parse_report_message(b"\xef\xbb\xbf \n" + text),
            parse_report_message(gzip_report(report)),
        ]

    @pytest.mark.parametrize(
        ("ctype", "filename", "compress"),
        [
            ("application/octet-stream", "x.json.gz", True),
            ("application/octet-stream", "x.JSON", False),
            ("application/gzip", None, True),
            ("application/json", None, False),
            ("text/plain", "report.json", False),
            ("application/tlsrpt", "x.json.gz", True),
        ],
    )
    def test_generic_attachments(self, ctype, filename, compress):
        """RPT-JSON-23: .json/.json.gz attachments under generic types are found."""
        report = built_report()
        body = report.to_json().encode()

        assert report == parse_report_message(
            _message(ctype, _gz(body) if compress else body, filename)
        )

    def test_report_type_preferred(self):
        """RPT-SEND-05: an application/tlsrpt+gzip part wins over a generic attachment."""
        first = built_report()
        second = built_report(organization_name="Other")
        msg = EmailMessage()
        msg.set_content("x")
        msg.add_attachment(first.to_json().encode(), maintype="application", subtype="json")
        msg.add_attachment(
            _gz(second.to_json().encode()), maintype="application", subtype="tlsrpt+gzip"
        )

        assert second == parse_report_message(msg.as_bytes())

    def test_no_report(self):
        """RPT-JSON-23: a mail without a report part is refused clearly."""
        msg = EmailMessage()
        msg.set_content("just text")
        with pytest.raises(ReportSyntaxError, match="no TLS-RPT report found"):
            parse_report_message(msg.as_bytes())

    def test_message_size_cap(self):
        """RPT-JSON-23: messages over 15 MiB are refused before parsing."""
        with pytest.raises(ReportSyntaxError, match="at most"):
            parse_report_message(b"x" * (MAX_MESSAGE_SIZE + 1))

    def test_gzip_bomb(self):
        """RPT-JSON-23: decompression stops just past the cap (gzip bomb)."""
        bomb = _gz(b"{" + b" " * (1024 * 1024) + b"}")
        with pytest.raises(ReportSyntaxError, match="more than 1000 bytes"):
            decompress_report(bomb, max_size=1000)
        with pytest.raises(ReportSyntaxError, match="more than"):
            parse_report_message(_gz(b" " * (21 * 1024 * 1024)))

    def test_multi_member_and_padding(self):
        """RPT-JSON-23: concatenated gzip members and zero padding decompress fully."""
        text = built_report().to_json().encode()

        assert text == decompress_report(_gz(text[:10]) + _gz(text[10:]) + b"\0\0")

    @pytest.mark.parametrize(
        ("data", "fragment"),
        [
            (b"\x1f\x8bnot gzip at all", "not valid gzip"),
            (_gz(b"{}")[:-6], "truncated"),
            (_gz(b"{}") + b"junk", "unexpected data"),
        ],
    )
    def test_bad_gzip(self, data, fragment):
        """RPT-JSON-23: broken gzip is a ReportSyntaxError, never a zlib error."""
        with pytest.raises(ReportSyntaxError, match=fragment):
            parse_report_message(data)

    def test_exactly_at_cap(self):
        """RPT-JSON-23: output of exactly the cap is accepted."""
        assert b"x" * 100 == decompress_report(_gz(b"x" * 100), max_size=100)

    def test_round_trip_through_mail(self):
        """RPT-JSON-27, RPT-SEND-05: what we mail, we read back unchanged."""
        report = built_report()

        assert report == parse_report_message(mail(report).as_bytes())


@given(st.binary(max_size=400))
def test_only_report_syntax_error_escapes(data):
    """RPT-JSON-23: arbitrary bytes give a report or ReportSyntaxError, nothing else."""
    for candidate in (
        data,
        b"Content-Type: application/tlsrpt+gzip\n\n" + data,
        b"\x1f\x8b" + data,
    ):
        try:
            parse_report_message(candidate)
        except ReportSyntaxError:
            pass


class TestReportVectorChecker:
    """The tlsrpt-report checker reports disagreements instead of passing them."""

    @pytest.mark.parametrize(
        ("case", "fragment"),
        [
            ({"input": "[]", "expect": {}}, "expected a report, got ReportSyntaxError"),
            ({"input": "[]", "error": "PolicySyntaxError"}, "expected PolicySyntaxError"),
            (
                {
                    "input": {
                        "date-range": {
                            "start-datetime": "2024-01-01T00:00:00Z",
                            "end-datetime": "2024-01-01T00:00:00Z",
                        },
                        "policies": [],
                    },
                    "error": "ReportSyntaxError",
                },
                "got a report",
            ),
            (
                {
                    "input": {
                        "date-range": {
                            "start-datetime": "2024-01-01T00:00:00Z",
                            "end-datetime": "2024-01-01T00:00:00Z",
                        },
                        "policies": [],
                    },
                    "expect": {},
                },
                "expected {}",
            ),
        ],
    )
    def test_mismatch(self, case, fragment):
        """RPT-JSON-27: a wrong expectation is a VectorMismatch naming both sides."""
        from smtpsts.vectors import VectorMismatch
        from smtpsts.vectors._check_tlsrpt_report import check

        with pytest.raises(VectorMismatch, match=re.escape(fragment)):
            check({"id": "x", "conformance": ["RPT-JSON-27"], **case})


class TestUntrustedInput:
    """The receiver side treats every report as hostile input (RFC 8460 §7)."""

    def test_caps(self):
        """SEC-08: nesting over 32 levels, messages over 15 MiB and JSON over 20 MiB are refused."""
        from smtpsts.tlsrpt.model import MAX_JSON_DEPTH, MAX_REPORT_SIZE

        deep = b'{"x":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
        assert (32, 15 * 1024 * 1024, 20 * 1024 * 1024) == (
            MAX_JSON_DEPTH,
            MAX_MESSAGE_SIZE,
            MAX_REPORT_SIZE,
        )
        with pytest.raises(ReportSyntaxError, match="nest"):
            parse_report_message(deep)
        with pytest.raises(ReportSyntaxError, match="at most"):
            parse_report_message(b" " * (MAX_MESSAGE_SIZE + 1))
        with pytest.raises(ReportSyntaxError, match="more than"):
            parse_report_message(_gz(b" " * (MAX_REPORT_SIZE + 1)))

    def test_member_names_never_paths(self, tmp_path, monkeypatch):
        """SEC-09: a gzip member name like ../../etc/passwd is ignored, never used as a path."""
        report = built_report()
        text = report.to_json().encode()
        deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw = deflate.compress(text) + deflate.flush()
        # RFC 1952 §2.3: FLG.FNAME (0x08) set, the name follows the 10-byte header.
        data = (
            b"\x1f\x8b\x08\x08\0\0\0\0\0\xff../../x/passwd\0"
            + raw
            + struct.pack("<II", zlib.crc32(text), len(text))
        )
        assert b"../../x/passwd" in data  # the FNAME header field is really there
        work = tmp_path / "a" / "b"
        work.mkdir(parents=True)
        monkeypatch.chdir(work)

        assert report == parse_report_message(data)
        assert report == parse_report_message(
            _message("application/tlsrpt+gzip", data, "../../x/passwd")
        )
        assert [work.parent, work] == sorted(p for p in tmp_path.rglob("*") if p != tmp_path)

    def test_duplicate_member_names(self):
        """SEC-10: JSON with a duplicate member name is rejected (I-JSON, RFC 7493)."""
        text = built_report().to_json()
        doubled = text.replace('"report-id":', '"report-id": "a", "report-id":', 1)
        assert doubled != text
        with pytest.raises(ReportSyntaxError, match="duplicate member name"):
            parse_report_message(doubled.encode())
        with pytest.raises(ReportSyntaxError, match="duplicate member name"):
            parse_report_message(_message("application/tlsrpt+json", doubled.encode(), "r.json"))

    def test_json_is_authoritative(self):
        """RPT-SEND-24: Subject and filename naming another domain are ignored; the JSON wins."""
        report = built_report()
        msg = EmailMessage()
        msg["Subject"] = (
            "Report Domain: other.example Submitter: sender.example Report-ID: <x@sender.example>"
        )
        msg.set_content("x")
        msg.add_attachment(
            _gz(report.to_json().encode()),
            maintype="application",
            subtype="tlsrpt+gzip",
            filename="sender.example!other.example!1!2.json.gz",
        )

        got = parse_report_message(msg.as_bytes())
        assert (report, ("recipient.example",)) == (got, got.policy_domains)

    @pytest.mark.parametrize(
        ("ctype", "filename", "compress"),
        [
            ("application/tlsrpt+gzip", None, True),
            ("application/tlsrpt+json", None, False),
            ("application/tlsrpt", "x.json", False),
            ("application/gzip", "x.json.gz", True),
            ("application/json", "x.json", False),
            ("application/octet-stream", "x.gz", True),
            # RFC 8460 §6.5: gzip is detected by the magic bytes, whatever the label.
            ("application/tlsrpt+json", None, True),
        ],
    )
    def test_media_types(self, ctype, filename, compress):
        """RPT-SEND-26: the report part is found by media type and filename; gzip by 1f 8b."""
        report = built_report()
        body = report.to_json().encode()
        assert report == parse_report_message(
            _message(ctype, _gz(body) if compress else body, filename)
        )
        assert (b"\x1f\x8b", b"{") == (_gz(body)[:2], body[:1])
