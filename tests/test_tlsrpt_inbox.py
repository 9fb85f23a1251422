"""
The receiving side's core (issue 13): intake decisions, the stored-report record, aggregations.

RFC 8460 §5.3 (media types), §6.5 (gzip), §4.4 (the report's members);
RPT-SEND-24/26 (the JSON is authoritative; media types).
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smtpsts.tlsrpt.inbox import (
    QUARANTINE_BYTES,
    AddResult,
    Breakdown,
    DayCount,
    IntakeError,
    IntakeLimits,
    MemoryReportStore,
    Received,
    ReportStore,
    Source,
    accept_report_body,
    breakdown,
    report_key,
    window,
)
from smtpsts.tlsrpt.model import Report

SAMPLES = Path(__file__).parent / "data" / "peer-samples"
DAY = datetime(2026, 11, 30, tzinfo=UTC)


def report_doc(
    report_id: str = "r1",
    *,
    org: str = "Example Org",
    domain: str = "example.com",
    start: datetime = DAY,
    ok: int = 10,
    failed: int = 2,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A report document with one policy entry."""
    if details is None:
        details = [
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": "mx1.example.com",
                "failed-session-count": failed,
                "failure-reason-code": "expired",
            }
        ]
    return {
        "organization-name": org,
        "date-range": {
            "start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end-datetime": (start + timedelta(seconds=86399)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "contact-info": "tlsrpt@example.org",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing"],
                    "policy-domain": domain,
                    "mx-host": ["mx1.example.com"],
                },
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": failed,
                },
                "failure-details": details,
            }
        ],
    }


def body(doc: dict[str, Any]) -> bytes:
    """The JSON bytes of a document."""
    return json.dumps(doc).encode()


def received(doc: dict[str, Any], source: Source = Source.HTTPS) -> Received:
    """A received report from a document."""
    return Received(Report.from_json(body(doc)), source, DAY + timedelta(days=1), "192.0.2.1")


# --------------------------------------------------------------------------- intake


class TestAcceptBody:
    def test_json_and_gzip(self) -> None:
        """RFC 8460 §5.3.2, §6.5: tlsrpt+json and tlsrpt+gzip are read; gzip by its magic number."""
        doc = report_doc()
        plain = accept_report_body(body(doc), "application/tlsrpt+json")
        packed = accept_report_body(gzip.compress(body(doc)), "application/tlsrpt+gzip")
        mislabelled = accept_report_body(gzip.compress(body(doc)), "application/json; charset=x")
        from_file = accept_report_body(body(doc), None)
        assert plain == packed == mislabelled == from_file
        assert ("Example Org", "r1") == report_key(plain)

    def test_concatenated_gzip_members(self) -> None:
        """RFC 1952 §2.2: a body of several gzip members is all of them (and zero padding)."""
        text = body(report_doc())
        half = len(text) // 2
        data = gzip.compress(text[:half]) + gzip.compress(text[half:]) + b"\0\0"
        assert "r1" == accept_report_body(data, "application/tlsrpt+gzip").report_id

    def test_peer_samples(self) -> None:
        """RPT-SEND-24: the peers' JSON reports pass intake as they were received."""
        for path in sorted((SAMPLES / "mail-auth").glob("*.json")):
            report = accept_report_body(path.read_bytes(), "application/tlsrpt+json")
            assert report.report_id is not None

    @pytest.mark.parametrize(
        ("data", "content_type", "status", "reason"),
        [
            (b"{}", "text/html", 415, "media-type"),
            (b"x" * 101, "application/tlsrpt+json", 413, "too-large"),
            (b"not json", "application/tlsrpt+json", 400, "not-a-report"),
            (b"\x1f\x8bnot gzip", "application/tlsrpt+gzip", 400, "bad-gzip"),
            (gzip.compress(b"{}")[:-4], "application/tlsrpt+gzip", 400, "bad-gzip"),
            (gzip.compress(b"{}") + b"junk", "application/tlsrpt+gzip", 400, "bad-gzip"),
        ],
    )
    def test_refused(self, data: bytes, content_type: str, status: int, reason: str) -> None:
        """RFC 8460 §5.3.2: what is not a report gets a status and a reason, never stored."""
        with pytest.raises(IntakeError) as caught:
            accept_report_body(data, content_type, IntakeLimits(max_body=100))
        assert (status, reason) == (caught.value.status, caught.value.reason)

    def test_gzip_bomb_refused_before_inflating(self) -> None:
        """A gzip expanding over max_ratio is 413 gzip-bomb; over max_report is too-large."""
        bomb = gzip.compress(b" " * 5_000_000)
        with pytest.raises(IntakeError) as caught:
            accept_report_body(bomb, "application/tlsrpt+gzip", IntakeLimits(max_ratio=100))
        assert (413, "gzip-bomb") == (caught.value.status, caught.value.reason)
        limits = IntakeLimits(max_ratio=10_000, max_report=1_000_000)
        with pytest.raises(IntakeError) as caught:
            accept_report_body(bomb, "application/tlsrpt+gzip", limits)
        assert (413, "too-large") == (caught.value.status, caught.value.reason)

    def test_plain_body_over_report_cap(self) -> None:
        """An uncompressed body over max_report is too-large even under max_body."""
        with pytest.raises(IntakeError, match="over 10 bytes") as caught:
            accept_report_body(b" " * 11, None, IntakeLimits(max_report=10))
        assert 413 == caught.value.status

    def test_counts_capped(self) -> None:
        """Too many policies or failure details is 413 (every count is bounded)."""
        doc = report_doc()
        doc["policies"] = doc["policies"] * 3
        with pytest.raises(IntakeError) as caught:
            accept_report_body(body(doc), None, IntakeLimits(max_policies=2))
        assert "too-many-policies" == caught.value.reason
        details = [{"result-type": "starttls-not-supported", "failed-session-count": 1}] * 5
        with pytest.raises(IntakeError) as caught:
            accept_report_body(
                body(report_doc(details=details)), None, IntakeLimits(max_failure_details=4)
            )
        assert "too-many-details" == caught.value.reason

    def test_report_id_required(self) -> None:
        """RFC 8460 §4.4: without organization-name or report-id there is no duplicate key."""
        doc = report_doc()
        del doc["report-id"]
        with pytest.raises(IntakeError) as caught:
            accept_report_body(body(doc), None)
        assert (400, "no-report-id") == (caught.value.status, caught.value.reason)

    def test_is_a_parse_error(self) -> None:
        """Bad network text is a smtpsts.ParseError subclass (the project rule)."""
        from smtpsts import ParseError

        assert issubclass(IntakeError, ParseError)


# --------------------------------------------------------------------------- the memory store


def test_memory_store_is_a_report_store() -> None:
    """The memory store implements the protocol the SQL stores implement."""
    assert isinstance(MemoryReportStore(), ReportStore)


def test_add_once_list_raw_purge() -> None:
    """Issue 13 item 1: a report is stored once; listed newest first; raw JSON; retention."""
    store = MemoryReportStore()
    first = received(report_doc("a", start=DAY - timedelta(days=40)))
    assert AddResult.ADDED == store.add(first)
    assert AddResult.DUPLICATE == store.add(first)
    assert AddResult.ADDED == store.add(received(report_doc("b")))
    assert AddResult.ADDED == store.add(received(report_doc("b", org="Other")))
    listed = store.reports()
    assert ["b", "b", "a"] == [r.report_id for r in listed]
    assert [3, 2, 1] == [r.id for r in listed]
    assert (10, 2, ("example.com",)) == (listed[0].successful, listed[0].failed, listed[0].domains)
    assert ["a"] == [r.report_id for r in store.reports(offset=2)]
    assert [] == store.reports("other.example")
    assert first.report == Report.from_json(store.raw(1) or "")
    assert store.raw(99) is None
    assert 1 == store.purge(DAY - timedelta(days=30))
    assert 2 == len(store.reports())
    assert AddResult.ADDED == store.add(first)  # purged: a new copy is a new report
    assert 4 == max(r.id for r in store.reports())
    assert ["example.com"] == store.domains()
    store.close()


def test_quarantine_bounded() -> None:
    """Issue 13 item 1: a refused body is kept aside, cut at QUARANTINE_BYTES, newest first."""
    store = MemoryReportStore()
    when = DAY
    store.quarantine(
        b"x" * (QUARANTINE_BYTES + 1),
        source=Source.HTTPS,
        received_at=when,
        client="192.0.2.1",
        reason="not-a-report",
        detail="not JSON",
    )
    store.quarantine(
        b"small",
        source=Source.IMAP,
        received_at=when + timedelta(hours=1),
        client="INBOX/7",
        reason="no-valid-dkim",
        detail="unsigned",
    )
    newest, oldest = store.quarantined()
    assert ("no-valid-dkim", b"small", False) == (newest.reason, newest.body, newest.truncated)
    assert (QUARANTINE_BYTES, True) == (len(oldest.body), oldest.truncated)
    assert [newest] == store.quarantined(limit=1)
    store.purge(when + timedelta(minutes=1))
    assert [newest] == store.quarantined()


# --------------------------------------------------------------------------- aggregations


def test_daily_counts() -> None:
    """Issue 13 item 4: sessions per day of the range's start, only the policy domain's entries."""
    store = MemoryReportStore()
    store.add(received(report_doc("1", ok=5, failed=1)))
    store.add(received(report_doc("2", org="B", ok=7, failed=0, details=[])))
    store.add(received(report_doc("3", start=DAY + timedelta(days=1), ok=1, failed=1)))
    store.add(received(report_doc("4", domain="other.example")))
    mixed = report_doc("5")
    mixed["policies"].append(report_doc(domain="other.example")["policies"][0])
    store.add(received(mixed))
    since, until = DAY - timedelta(days=1), DAY + timedelta(days=5)

    assert [
        DayCount(date(2026, 11, 30), 5 + 7 + 10, 1 + 0 + 2),
        DayCount(date(2026, 12, 1), 1, 1),
    ] == store.daily("example.com", since, until)
    assert [] == store.daily("example.com", DAY + timedelta(days=2), until)
    assert ["example.com", "other.example"] == store.domains()


def test_breakdowns() -> None:
    """Issue 13 item 4: by organisation, MX, result type, reason and policy; most failed first."""
    store = MemoryReportStore()
    two = [
        {
            "result-type": "starttls-not-supported",
            "receiving-mx-hostname": "mx2.example.com",
            "failed-session-count": 3,
        },
        {
            "result-type": "certificate-expired",
            "failed-session-count": 1,
            "failure-reason-code": "expired",
        },
    ]
    store.add(received(report_doc("1", org="Google", ok=10, failed=2)))
    store.add(received(report_doc("2", org="Microsoft", ok=1, failed=4, details=two)))
    other = report_doc("3", org="Google", ok=100, failed=100, domain="other.example")
    mixed = report_doc("4", org="Google", ok=0, failed=0, details=[])
    mixed["policies"] += other["policies"]
    store.add(received(mixed))  # the other domain's entry is not counted
    since, until = DAY, DAY + timedelta(days=1)

    assert [Breakdown("Microsoft", 1, 4), Breakdown("Google", 10, 2)] == store.breakdown(
        "example.com", since, until, "organization"
    )
    assert [
        Breakdown("mx2.example.com", 0, 3),
        Breakdown("mx1.example.com", 0, 2),
        Breakdown("", 0, 1),
    ] == store.breakdown("example.com", since, until, "mx")
    assert [
        Breakdown("certificate-expired", 0, 3),
        Breakdown("starttls-not-supported", 0, 3),
    ] == store.breakdown("example.com", since, until, "result_type")
    assert [Breakdown("expired", 0, 3), Breakdown("", 0, 3)] == sorted(
        store.breakdown("example.com", since, until, "reason"), key=lambda b: b.key, reverse=True
    )
    assert [Breakdown("sts: version: STSv1 | mode: testing", 11, 6)] == store.breakdown(
        "example.com", since, until, "policy"
    )
    assert [] == store.breakdown("nothing.example", since, until, "mx")
    with pytest.raises(ValueError, match="not one of"):
        breakdown([], "example.com", since, until, "colour")


def test_policy_label_without_strings() -> None:
    """A policy entry without policy strings is labelled by its type alone (no-policy-found)."""
    doc = report_doc()
    doc["policies"][0]["policy"] = {
        "policy-type": "no-policy-found",
        "policy-domain": "example.com",
    }
    store = MemoryReportStore()
    store.add(received(doc))
    rows = store.breakdown("example.com", DAY, DAY + timedelta(days=1), "policy")
    assert ["no-policy-found"] == [r.key for r in rows]


def test_window() -> None:
    """The last N whole UTC days up to now, as [since, until)."""
    now = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
    assert (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)) == window(7, now)
