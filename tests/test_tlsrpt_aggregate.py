"""Tests for smtpsts.tlsrpt.aggregate: folding session results into daily reports."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import Policy, ResultType
from smtpsts.exceptions import UsageError
from smtpsts.tlsrpt import (
    OVERFLOW_REASON,
    Aggregator,
    FailureDetails,
    PolicyInfo,
    Report,
    SessionFailure,
    SessionResult,
    report_id,
)

VALIDATOR = jsonschema.Draft202012Validator(
    json.loads(
        (resources.files("smtpsts.tlsrpt") / "schema" / "tlsrpt-report.schema.json").read_text()
    )
)
DAY = date(2024, 3, 5)
NOON = datetime(2024, 3, 5, 12, tzinfo=UTC)
ORG = {"organization_name": "Sender Example Ltd", "contact_info": "tlsrpt@sender.example"}
STS = PolicyInfo.for_sts(
    "recipient.example",
    Policy.from_text("version: STSv1\nmode: enforce\nmx: mx1.recipient.example\nmax_age: 86400\n"),
)
NONE = PolicyInfo.no_policy_found("recipient.example")
TLSA = PolicyInfo.for_tlsa("mx1.recipient.example", ["3 1 1 " + "AB" * 32])


def expired(ip: str = "198.51.100.1", **kw: object) -> SessionResult:
    """A certificate-expired failure under STS."""
    return SessionResult.failed(
        STS,
        ResultType.CERTIFICATE_EXPIRED,
        sending_mta_ip="192.0.2.1",
        receiving_mx_hostname="mx1.recipient.example",
        receiving_ip=ip,
        **kw,
    )


def only_report(agg: Aggregator, day: date = DAY) -> Report:
    """The single report of `day`."""
    reports = agg.reports(day, **ORG)
    assert 1 == len(reports)
    return reports[0]


class TestAdd:
    def test_counts_and_grouping(self):
        """RPT-AGG-04, RPT-AGG-05, RPT-AGG-07: successes summed, equal failures merged."""
        agg = Aggregator()
        for _ in range(12):
            agg.add(SessionResult.succeeded(STS, receiving_ip="198.51.100.1"), NOON)
        agg.add(SessionResult.succeeded(STS, receiving_ip="198.51.100.2"), NOON)
        for _ in range(3):
            agg.add(expired(), NOON)
        agg.add(expired("198.51.100.2"), NOON, count=2)
        entry = only_report(agg).policies[0]

        assert (13, 5) == (
            entry.summary.total_successful_session_count,
            entry.summary.total_failure_session_count,
        )
        assert [("198.51.100.1", 3), ("198.51.100.2", 2)] == [
            (d.receiving_ip, d.failed_session_count) for d in entry.failure_details
        ]

    def test_day_boundary(self):
        """RPT-AGG-02: a session belongs to the UTC day its outcome was recorded in."""
        agg = Aggregator()
        agg.add(expired(), datetime(2024, 3, 5, 23, 59, 59, 900000, tzinfo=UTC))
        agg.add(expired(), datetime(2024, 3, 6, 0, 0, 0, tzinfo=UTC))
        # 01:30 at +02:00 is 23:30 UTC the day before.
        agg.add(expired(), datetime(2024, 3, 6, 1, 30, tzinfo=timezone(timedelta(hours=2))))

        assert [DAY, date(2024, 3, 6)] == agg.days()
        assert 2 == only_report(agg).policies[0].summary.total_failure_session_count
        assert (
            1 == only_report(agg, date(2024, 3, 6)).policies[0].summary.total_failure_session_count
        )

    def test_naive_time_refused(self):
        """RPT-AGG-02: the local timezone plays no part, so naive times are refused."""
        with pytest.raises(UsageError):
            Aggregator().add(expired(), datetime(2024, 3, 5))

    def test_count_must_be_positive(self):
        """RPT-AGG-04: a result stands for at least one session."""
        with pytest.raises(UsageError):
            Aggregator().add(expired(), NOON, count=0)

    def test_report_deliveries_not_counted(self):
        """RPT-AGG-10: a session that delivered a TLS report is never counted."""
        agg = Aggregator()
        agg.add(expired(report_delivery=True), NOON)
        agg.add(SessionResult.succeeded(STS, report_delivery=True), NOON)

        assert [] == agg.days()
        assert [] == agg.reports(DAY, **ORG)

    def test_several_failure_types(self):
        """RPT-AGG-06: one session adds to several details but once to the total."""
        agg = Aggregator()
        agg.add(
            expired(extra_failures=(SessionFailure(ResultType.CERTIFICATE_HOST_MISMATCH),)), NOON
        )
        entry = only_report(agg).policies[0]

        assert 1 == entry.summary.total_failure_session_count
        assert [("certificate-expired", 1), ("certificate-host-mismatch", 1)] == [
            (d.result_type, d.failed_session_count) for d in entry.failure_details
        ]

    def test_policies_are_separate_entries(self):
        """RPT-AGG-08, RPT-AGG-11, AMB-19: sts, tlsa and a changed policy are distinct entries."""
        changed = PolicyInfo.for_sts(
            "recipient.example",
            Policy.from_text(
                "version: STSv1\nmode: testing\nmx: mx1.recipient.example\nmax_age: 60\n"
            ),
        )
        agg = Aggregator()
        agg.add(SessionResult.succeeded(STS), NOON)
        agg.add(SessionResult.succeeded(changed), NOON)
        agg.add(SessionResult.succeeded(TLSA, report_domain="recipient.example"), NOON)
        agg.add(SessionResult.succeeded(TLSA), NOON)
        report = agg.report("recipient.example", DAY, **ORG)

        assert report is not None
        assert [
            ("sts", "recipient.example", "mode: enforce"),
            ("sts", "recipient.example", "mode: testing"),
            ("tlsa", "mx1.recipient.example", "3 1 1 " + "AB" * 32),
        ] == [
            (
                p.policy.policy_type,
                p.policy.policy_domain,
                p.policy.policy_strings[1 if p.policy.policy_type == "sts" else 0],
            )
            for p in report.policies
        ]
        assert ["mx1.recipient.example", "recipient.example"] == agg.domains(DAY)

    def test_add_many(self):
        """RPT-AGG-08: the results of one session under two policies are both counted."""
        agg = Aggregator()
        agg.add_many(
            [
                SessionResult.succeeded(STS),
                SessionResult.succeeded(TLSA, report_domain="recipient.example"),
            ],
            NOON,
        )

        assert 2 == len(only_report(agg).policies)

    def test_no_policy_found_counted(self):
        """RPT-AGG-13, AMB-21: no-policy-found sessions count, starttls missing is a failure."""
        agg = Aggregator()
        agg.add(SessionResult.succeeded(NONE), NOON)
        agg.add(SessionResult.failed(NONE, ResultType.STARTTLS_NOT_SUPPORTED), NOON)
        entry = only_report(agg).policies[0]

        assert ({"policy-type": "no-policy-found", "policy-domain": "recipient.example"}, 1, 1) == (
            entry.policy.to_json_object(),
            entry.summary.total_successful_session_count,
            entry.summary.total_failure_session_count,
        )


class TestCap:
    def test_overflow_counted_not_dropped(self):
        """RPT-AGG-07: beyond the cap, failures are counted per result type, never dropped."""
        agg = Aggregator(max_failure_details=2)
        for i in range(5):
            agg.add(expired(f"198.51.100.{i}"), NOON)
        agg.add(expired("198.51.100.4"), NOON)
        agg.add(expired("198.51.100.0"), NOON)
        agg.add(
            SessionResult.failed(
                STS,
                ResultType.STARTTLS_NOT_SUPPORTED,
                extra_failures=[SessionFailure(ResultType.VALIDATION_FAILURE)],
            ),
            NOON,
        )
        entry = only_report(agg).policies[0]

        assert 8 == entry.summary.total_failure_session_count
        assert [
            FailureDetails(
                "certificate-expired", 2, "192.0.2.1", "mx1.recipient.example", None, "198.51.100.0"
            ),
            FailureDetails(
                "certificate-expired", 1, "192.0.2.1", "mx1.recipient.example", None, "198.51.100.1"
            ),
            FailureDetails("certificate-expired", 4, failure_reason_code=OVERFLOW_REASON),
            FailureDetails("starttls-not-supported", 1, failure_reason_code=OVERFLOW_REASON),
            FailureDetails("validation-failure", 1, failure_reason_code=OVERFLOW_REASON),
        ] == list(entry.failure_details)

    def test_cap_must_be_positive(self):
        """A cap below one detail is a usage error."""
        with pytest.raises(UsageError):
            Aggregator(max_failure_details=0)

    def test_index_bound_still_counts(self):
        """Results beyond the fast-path index are still counted exactly."""
        agg = Aggregator(max_index=1)
        for _ in range(3):
            agg.add(expired(), NOON)
            agg.add(SessionResult.succeeded(STS), NOON)
        entry = only_report(agg).policies[0]

        assert (3, 3) == (
            entry.summary.total_successful_session_count,
            entry.summary.total_failure_session_count,
        )


class TestReports:
    def test_window_and_id(self):
        """RPT-AGG-01, RPT-JSON-05, AMB-13: one UTC day and a dot-atom report-id."""
        agg = Aggregator()
        agg.add(SessionResult.succeeded(STS), NOON)
        report = only_report(agg)
        doc = json.loads(report.to_json())

        assert {
            "start-datetime": "2024-03-05T00:00:00Z",
            "end-datetime": "2024-03-05T23:59:59Z",
        } == (doc["date-range"])
        assert re.fullmatch(r"2024-03-05\.recipient\.example\.[0-9a-f]{16}", report.report_id or "")
        VALIDATOR.validate(doc)

    def test_report_id_stable_and_unique(self):
        """RPT-JSON-05, RPT-AGG-17: ids are deterministic and differ per domain, day and MTA."""
        base = report_id("a.example", DAY, organization_name="O", contact_info="t@s.example")

        assert base == report_id(
            "a.example", DAY, organization_name="O", contact_info="t@s.example"
        )
        others = {
            report_id("b.example", DAY, organization_name="O", contact_info="t@s.example"),
            report_id(
                "a.example", date(2024, 3, 6), organization_name="O", contact_info="t@s.example"
            ),
            report_id(
                "a.example",
                DAY,
                organization_name="O",
                contact_info="t@s.example",
                unique_id="mta2",
            ),
        }
        assert base not in others
        assert 3 == len(others)
        assert ".mta2." in min(o for o in others if "mta2" in o)

    def test_heartbeat_optional(self):
        """RPT-AGG-16, AMB-22: success-only days are reported by default, optionally not."""
        agg = Aggregator()
        agg.add(SessionResult.succeeded(PolicyInfo.no_policy_found("quiet.example")), NOON)
        agg.add(expired(), NOON)

        assert ["quiet.example", "recipient.example"] == [
            r.policies[0].policy.policy_domain for r in agg.reports(DAY, **ORG)
        ]
        assert ["recipient.example"] == [
            r.policies[0].policy.policy_domain
            for r in agg.reports(DAY, include_success_only=False, **ORG)
        ]

    def test_missing(self):
        """RPT-AGG-16: no sessions, no report."""
        agg = Aggregator()
        agg.add(SessionResult.succeeded(STS), NOON)

        assert (None, None, []) == (
            agg.report("other.example", DAY, **ORG),
            agg.report("recipient.example", date(2024, 3, 6), **ORG),
            agg.domains(date(2024, 3, 6)),
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"unique_id": "a-b"},
            {"unique_id": ""},
            {"organization_name": ""},
            {"contact_info": ""},
        ],
    )
    def test_bad_arguments(self, kwargs):
        """RPT-JSON-02, RPT-AGG-17: required texts and a letters-and-digits unique id."""
        agg = Aggregator()
        agg.add(SessionResult.succeeded(STS), NOON)
        with pytest.raises(UsageError):
            agg.report("recipient.example", DAY, **{**ORG, **kwargs})

    def test_discard(self):
        """RPT-AGG-19: a processed day can be forgotten, and its index space is reused."""
        agg = Aggregator(max_index=1)
        agg.add(SessionResult.succeeded(STS), NOON)
        agg.discard(DAY)
        agg.discard(DAY)

        assert [] == agg.days()
        agg.add(SessionResult.succeeded(STS), NOON)
        assert 1 == only_report(agg).policies[0].summary.total_successful_session_count

    def test_merge(self):
        """RPT-AGG-03: merged aggregators give the same report as one that saw everything."""
        left, right, both = (
            Aggregator(max_failure_details=2),
            Aggregator(),
            Aggregator(max_failure_details=2),
        )
        results = [
            (left, SessionResult.succeeded(STS)),
            (left, expired("198.51.100.1")),
            (right, expired("198.51.100.1")),
            (right, expired("198.51.100.2")),
            (right, expired("198.51.100.3")),
            (right, SessionResult.succeeded(NONE)),
        ]
        for agg, result in results:
            agg.add(result, NOON)
            both.add(result, NOON)
        overflowing = Aggregator(max_failure_details=1)
        overflowing.add(expired("198.51.100.7"), NOON)
        overflowing.add(expired("198.51.100.8"), NOON)
        left.merge(right)
        left.merge(Aggregator())
        both.merge(overflowing)
        left.merge(overflowing)

        fresh = Aggregator(max_failure_details=2)
        fresh.merge(both)

        assert both.reports(DAY, **ORG) == left.reports(DAY, **ORG)
        assert both.reports(DAY, **ORG) == fresh.reports(DAY, **ORG)


_ips = st.sampled_from(["192.0.2.1", "2001:db8::1", None])
_results = st.one_of(
    st.builds(
        SessionResult.succeeded,
        st.sampled_from([STS, NONE, TLSA]),
        receiving_ip=_ips,
        report_domain=st.sampled_from([None, "recipient.example"]),
    ),
    st.builds(
        SessionResult.failed,
        st.sampled_from([STS, NONE, TLSA]),
        st.sampled_from(list(ResultType)),
        sending_mta_ip=_ips,
        receiving_mx_helo=st.sampled_from([None, "mx.example"]),
        failure_reason_code=st.sampled_from([None, "x"]),
        extra_failures=st.lists(
            st.builds(SessionFailure, st.sampled_from(list(ResultType))), max_size=2
        ),
        report_domain=st.sampled_from([None, "recipient.example"]),
    ),
)


@given(
    st.lists(st.tuples(_results, st.integers(0, 47)), max_size=60),
    st.integers(1, 4),
)
def test_totals_property(items, cap):
    """RPT-AGG-04..07, RPT-JSON-27: totals are exact, reports valid and round-trip."""
    agg = Aggregator(max_failure_details=cap)
    start = datetime(2024, 3, 5, tzinfo=UTC)
    for result, hour in items:
        agg.add(result, start + timedelta(hours=hour))
    for day in agg.days():
        expected = [r for r, h in items if (start + timedelta(hours=h)).date() == day]
        reports = agg.reports(day, **ORG)
        successes = sum(
            p.summary.total_successful_session_count for r in reports for p in r.policies
        )
        failures = sum(p.summary.total_failure_session_count for r in reports for p in r.policies)
        assert (sum(r.success for r in expected), sum(not r.success for r in expected)) == (
            successes,
            failures,
        )
        for report in reports:
            VALIDATOR.validate(json.loads(report.to_json()))
            assert report == Report.from_json(report.to_json())
            for entry in report.policies:
                detailed = [
                    d for d in entry.failure_details if d.failure_reason_code != OVERFLOW_REASON
                ]
                assert len(detailed) <= cap
                assert entry.summary.total_failure_session_count <= sum(
                    d.failed_session_count for d in entry.failure_details
                )


_SESSION = {
    "at": "2024-03-05T12:00:00Z",
    "policy": {"policy-type": "no-policy-found", "policy-domain": "a.example"},
    "success": True,
}
_INPUT = {
    "day": "2024-03-05",
    "organization-name": "O",
    "contact-info": "t@s.example",
    "sessions": [_SESSION],
}


class TestAggregateVectorChecker:
    """The tlsrpt-aggregate checker reports disagreements instead of passing them."""

    @pytest.mark.parametrize(
        ("case", "fragment"),
        [
            (
                {
                    "input": {**_INPUT, "sessions": [{**_SESSION, "at": "2024-03-05T12:00:00"}]},
                    "expect": {"reports": []},
                },
                "expected reports, got UsageError",
            ),
            ({"input": _INPUT, "error": "UsageError"}, "expected UsageError, got reports"),
            ({"input": _INPUT, "expect": {"reports": []}}, "expected []"),
        ],
    )
    def test_mismatch(self, case, fragment):
        """RPT-AGG-16: a wrong expectation is a VectorMismatch naming both sides."""
        from smtpsts.vectors import VectorMismatch
        from smtpsts.vectors._check_tlsrpt_aggregate import check

        with pytest.raises(VectorMismatch, match=re.escape(fragment)):
            check({"id": "x", "conformance": ["RPT-AGG-16"], **case})

    def test_bad_report_id(self, monkeypatch):
        """RPT-JSON-05: a report-id that is not dot-atom-text fails the case."""
        from smtpsts.tlsrpt import aggregate
        from smtpsts.vectors import VectorMismatch
        from smtpsts.vectors._check_tlsrpt_aggregate import check

        monkeypatch.setattr(aggregate, "report_id", lambda *a, **k: "no spaces allowed")
        with pytest.raises(VectorMismatch, match="dot-atom"):
            check(
                {
                    "id": "x",
                    "conformance": ["RPT-JSON-05"],
                    "input": _INPUT,
                    "expect": {"reports": []},
                }
            )
