"""
The rollout advisor and the alerts (smtpsts.tlsrpt.advisor; issue 13 items 5, 6).

RFC 8461 §4.1 (MX patterns), §4.2 (certificates), §5 (modes); RFC 8460 §4.3
(failure details only for failed sessions), §4.1 (daily reports).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts.mx import MXPattern
from smtpsts.policy import Mode
from smtpsts.tlsrpt.advisor import (
    Advice,
    Alert,
    AlertKind,
    AlertThresholds,
    LiveCheck,
    Rate,
    ReportNumbers,
    Thresholds,
    Verdict,
    advise,
    alerts,
    reported_policies,
)
from smtpsts.tlsrpt.inbox import Breakdown, DayCount, MemoryReportStore, Received, Source
from smtpsts.tlsrpt.model import Report
from test_tlsrpt_inbox import report_doc

D = "example.com"
NOW = datetime(2026, 12, 31, 6, tzinfo=UTC)
STS_TESTING = "sts: version: STSv1 | mode: testing | mx: mx1.example.com | mx: *.example.net"


def days(n: int, ok: int = 100, failed: int = 0) -> list[DayCount]:
    """``n`` days of counts ending on 2026-12-30."""
    return [DayCount(date(2026, 12, 30) - timedelta(days=i), ok, failed) for i in range(n)][::-1]


def healthy(**changes: object) -> ReportNumbers:
    """Three weeks, two reporters, no failures, an sts testing policy."""
    fields: dict[str, object] = {
        "domain": D,
        "days": days(21),
        "by_organization": [Breakdown("Google", 1500, 0), Breakdown("Microsoft", 600, 0)],
        "by_policy": [Breakdown(STS_TESTING, 2100, 0)],
        "latest": NOW - timedelta(hours=6),
    }
    fields.update(changes)
    return ReportNumbers(**fields)  # type: ignore[arg-type]


LIVE = LiveCheck(
    mode=Mode.TESTING,
    mx_patterns=(MXPattern.from_text("mx1.example.com"),),
    mx_hosts=("mx1.example.com",),
)


class TestNumbers:
    def test_totals(self):
        """Sessions, failures and the rate come from the daily counts."""
        numbers = ReportNumbers(D, days=[DayCount(date(2026, 1, 1), 90, 10)])

        assert (90, 10, 100, 0.1) == (
            numbers.successful,
            numbers.failed,
            numbers.sessions,
            numbers.failure_rate,
        )

    def test_empty(self):
        """No sessions: a rate of zero, not a division error."""
        assert 0.0 == ReportNumbers(D).failure_rate
        assert 0.0 == Rate("x", 0, 0).rate
        assert {"key": "x", "failed": 1, "sessions": 4, "rate": 0.25} == Rate("x", 1, 4).to_dict()


class TestReportedPolicies:
    def test_mode_and_patterns(self):
        """The mode of the policy with most sessions; the patterns of all sts policies."""
        rows = [
            Breakdown("sts: version: STSv1 | mode: testing | mx: a.example", 10, 0),
            Breakdown(
                "sts: version: STSv1 | mode: enforce | mx: *.b.example | mx: A.example", 5, 0
            ),
            Breakdown("no-policy-found", 100, 0),
            Breakdown("sts: mode: bogus | mx: bad..name | mx: c.example.", 1, 0),
        ]

        mode, patterns = reported_policies(rows)

        assert Mode.TESTING == mode
        assert ["a.example", "*.b.example", "c.example"] == [str(p) for p in patterns]

    def test_nothing(self):
        """No sts policy reported: no mode, no patterns."""
        assert (None, ()) == reported_policies([Breakdown("no-policy-found", 1, 0)])


class TestVerdict:
    def test_ready(self):
        """Enough days, reporters and sessions, no failure, every MX covered: ready."""
        advice = advise(healthy(), LIVE)

        assert Verdict.READY == advice.verdict
        assert "0% of 2100 sessions failed over 21 days" in advice.reasons[0]
        assert not advice.enforcing
        assert not advice.from_reports_only
        assert ("Google", "Microsoft") == advice.reporters

    def test_ready_from_reports_only(self):
        """Without a live check the reports' policy is used, and the advice says so."""
        advice = advise(healthy())

        assert Verdict.READY == advice.verdict
        assert advice.from_reports_only
        assert Mode.TESTING == advice.mode
        assert any("no live check" in r for r in advice.reasons)

    def test_already_enforcing_and_fine(self):
        """A policy in enforce whose reports are clean: ready, said as "already"."""
        advice = advise(healthy(), attrs_evolve(LIVE, mode=Mode.ENFORCE))

        assert (Verdict.READY, True) == (advice.verdict, advice.enforcing)
        assert "already in enforce mode, and the reports agree" in advice.reasons[0]

    def test_already_enforcing_with_failures(self):
        """A policy in enforce with failures: not yet (it should not be enforcing)."""
        numbers = healthy(days=days(21, ok=90, failed=10))
        advice = advise(numbers, attrs_evolve(LIVE, mode=Mode.ENFORCE))

        assert Verdict.NOT_YET == advice.verdict
        assert "the policy is already in enforce mode" == advice.reasons[0]
        assert "10% of sessions failed (210 of 2100), over the 0.10% limit" == advice.reasons[1]

    def test_not_enough_data(self):
        """Too few days, reporters and sessions: each is a reason."""
        numbers = healthy(days=days(3, ok=10), by_organization=[Breakdown("Google", 30, 0)])
        advice = advise(numbers, LIVE)

        assert Verdict.NOT_ENOUGH_DATA == advice.verdict
        assert [
            "reports cover 3 day(s); at least 14 are needed",
            "1 organisation(s) sent reports; at least 2 are needed",
            "30 session(s) reported; at least 100 are needed",
        ] == list(advice.reasons)

    def test_problem_beats_thin_data(self):
        """A failure seen in little data is reason enough for "not yet"."""
        numbers = healthy(days=days(2, ok=5, failed=5))
        advice = advise(numbers, LIVE)

        assert Verdict.NOT_YET == advice.verdict
        assert "50% of sessions failed" in advice.reasons[0]
        assert any("at least 14" in r for r in advice.reasons)

    def test_no_policy(self):
        """No policy published (live) or reported: not yet."""
        assert (
            "no MTA-STS policy is published (RFC 8461 §3)" in advise(healthy(), LiveCheck()).reasons
        )
        from_reports = advise(healthy(by_policy=[]))
        assert Verdict.NOT_YET == from_reports.verdict
        assert "the reports show no MTA-STS policy: senders found none" == from_reports.reasons[0]

    def test_nothing_known(self):
        """No live check and no report: not enough data, not "no policy"."""
        advice = advise(ReportNumbers(D))

        assert Verdict.NOT_ENOUGH_DATA == advice.verdict
        assert "reports cover 0 day(s); at least 14 are needed" == advice.reasons[0]

    def test_policy_error(self):
        """A record with a policy that could not be fetched: the check's words."""
        advice = advise(healthy(), LiveCheck(error="HTTP 404"))

        assert Verdict.NOT_YET == advice.verdict
        assert "the MTA-STS policy could not be used: HTTP 404" == advice.reasons[0]

    def test_mode_none(self):
        """Mode none: publish testing first."""
        advice = advise(healthy(), attrs_evolve(LIVE, mode=Mode.NONE))

        assert Verdict.NOT_YET == advice.verdict
        assert "mode none" in advice.reasons[0]

    def test_uncovered_mx(self):
        """STS-MX-01: MX hosts in reports or DNS that no pattern covers block the move."""
        numbers = healthy(
            by_mx=[
                Breakdown("mx2.example.com", 0, 1),
                Breakdown("", 0, 1),
                Breakdown("MX1.example.com.", 0, 0),
            ],
            days=days(21, ok=100_000),
        )
        live = attrs_evolve(LIVE, mx_hosts=("mx1.example.com", "backup.example.org."))

        advice = advise(numbers, live)

        assert Verdict.NOT_YET == advice.verdict
        assert ("mx2.example.com", "backup.example.org") == advice.uncovered_mx
        assert advice.reasons[0].startswith("MX host mx2.example.com is not covered")

    def test_uncovered_without_patterns(self):
        """No patterns known (no policy): no uncovered list, the no-policy reason says it."""
        numbers = healthy(by_mx=[Breakdown("mx9.example", 0, 1)], by_policy=[])

        assert () == advise(numbers).uncovered_mx

    def test_reports_wildcard(self):
        """RFC 8461 §4.1: a reported wildcard pattern covers one left-most label."""
        numbers = healthy(
            by_mx=[Breakdown("a.example.net", 0, 1), Breakdown("a.b.example.net", 0, 1)],
            days=days(21, ok=100_000),
        )

        assert ("a.b.example.net",) == advise(numbers).uncovered_mx

    def test_certificate_problems(self):
        """RFC 8461 §4.2: a certificate problem of the live check blocks the move."""
        live = attrs_evolve(LIVE, certificate_problems=("mx1.example.com: certificate-expired",))
        advice = advise(healthy(), live)

        assert Verdict.NOT_YET == advice.verdict
        assert "certificate problem: mx1.example.com: certificate-expired" == advice.reasons[0]

    def test_rates(self):
        """Organisation rates are their own; MX and result type rates are shares of all."""
        numbers = healthy(
            days=days(10, ok=90, failed=10),
            by_organization=[
                Breakdown("A", 500, 0),
                Breakdown("B", 250, 50),
                Breakdown("C", 50, 50),
                Breakdown("Empty", 0, 0),
            ],
            by_mx=[Breakdown("mx1.example.com", 0, 100), Breakdown("mx1.example.com.", 0, 0)],
            by_result_type=[Breakdown("certificate-expired", 0, 100)],
        )
        advice = advise(numbers, LIVE, Thresholds(max_failure_rate=0.2))

        assert [("C", 0.5), ("B", 50 / 300)] == [(r.key, r.rate) for r in advice.by_organization]
        assert ("A", "B", "C") == advice.reporters
        assert [("mx1.example.com", 0.1)] == [(r.key, r.rate) for r in advice.by_mx]
        assert [Rate("certificate-expired", 100, 1000)] == list(advice.by_result_type)
        assert 0.1 == advice.failure_rate

    def test_to_dict(self):
        """The --json form names the verdict and keeps every number."""
        doc = advise(healthy(), LIVE).to_dict()

        assert "ready" == doc["verdict"]
        assert "ready to enforce" == doc["verdict_text"]
        assert "testing" == doc["mode"]
        assert 14 == doc["thresholds"]["min_days"]
        assert 2100 == doc["successful"]
        assert 0.0 == doc["failure_rate"]
        assert None is advise(healthy(by_policy=[])).to_dict()["mode"]

    def test_failure_rate_of_nothing(self):
        """An advice without sessions has a rate of zero."""
        assert 0.0 == advise(ReportNumbers(D)).failure_rate

    @given(
        ok=st.integers(0, 10_000),
        failed=st.integers(0, 10_000),
        n=st.integers(0, 30),
        orgs=st.integers(0, 3),
    )
    def test_verdict_rules(self, ok, failed, n, orgs):
        """Whatever the numbers: ready exactly when every threshold holds."""
        numbers = ReportNumbers(
            D,
            days=days(n, ok, failed),
            by_organization=[Breakdown(f"o{i}", 1, 0) for i in range(orgs)],
        )
        advice = advise(numbers, LIVE)
        total = n * (ok + failed)
        rate_ok = not total or n * failed / total <= 0.001
        enough = n >= 14 and orgs >= 2 and total >= 100

        assert isinstance(advice, Advice)
        assert (advice.verdict is Verdict.READY) == (rate_ok and enough)
        assert (advice.verdict is Verdict.NOT_YET) == (not rate_ok)
        assert advice.reasons


class TestAlerts:
    def test_quiet(self):
        """A healthy domain with fresh reports: no alert."""
        assert [] == list(alerts(healthy(), healthy(), NOW))

    def test_failure_rate(self):
        """A failure rate over the threshold, over enough sessions."""
        current = healthy(days=days(7, ok=95, failed=5))

        (alert,) = alerts(current, healthy(), NOW)

        assert (AlertKind.FAILURE_RATE, 0.05) == (alert.kind, alert.value)
        assert "5% of sessions failed (35 of 700), over the 1% threshold" == alert.message

    def test_failure_rate_needs_sessions(self):
        """Too few sessions: the rate is not judged."""
        current = healthy(days=days(1, ok=1, failed=1))

        assert [] == list(alerts(current, healthy(), NOW))

    def test_new_failing(self):
        """An organisation and a result type failing now that did not fail before."""
        previous = healthy(
            by_organization=[Breakdown("Google", 10, 1)],
            by_result_type=[Breakdown("certificate-expired", 0, 1)],
        )
        current = healthy(
            by_organization=[Breakdown("Google", 10, 1), Breakdown("", 5, 2)],
            by_result_type=[
                Breakdown("certificate-expired", 0, 1),
                Breakdown("sts-policy-fetch-error", 0, 2),
            ],
        )

        got = list(alerts(current, previous, NOW, AlertThresholds(max_failure_rate=1.0)))

        assert [
            Alert(
                D,
                AlertKind.NEW_FAILING_SENDER,
                "an unnamed organisation reports 2 failed session(s); it reported none before",
                value=2,
            ),
            Alert(
                D,
                AlertKind.NEW_RESULT_TYPE,
                "2 session(s) failed with sts-policy-fetch-error, a result type not seen "
                "failing before",
                key="sts-policy-fetch-error",
                value=2,
            ),
        ] == got

    def test_no_baseline(self):
        """Without a previous window nothing is "new"."""
        current = healthy(by_organization=[Breakdown("Google", 10, 1)])

        assert [] == list(alerts(current, ReportNumbers(D), NOW))

    def test_stopped(self):
        """The newest report ended more than stale_days ago."""
        current = healthy(latest=NOW - timedelta(days=4, hours=12))

        (alert,) = alerts(current, healthy(), NOW)

        assert (AlertKind.REPORTS_STOPPED, 4.5) == (alert.kind, alert.value)
        assert alert.message.startswith("no report since 2026-12-26 18:00Z (4.5 days")

    def test_never(self):
        """No report ever stored for the domain."""
        (alert,) = alerts(ReportNumbers(D), ReportNumbers(D), NOW)

        assert "no report was ever stored for it" == alert.message
        assert None is alert.value

    def test_to_dict(self):
        """The JSON an alert command reads, with a chat-friendly text."""
        alert = Alert(D, AlertKind.FAILURE_RATE, "bad", value=0.5)

        assert {
            "domain": D,
            "kind": "failure-rate",
            "message": "bad",
            "key": "",
            "value": 0.5,
            "text": "smtpsts: example.com: bad",
        } == alert.to_dict()


class TestFromStore:
    def test_memory_store(self):
        """The numbers read from a store's aggregations give the expected advice."""
        store = MemoryReportStore()
        start = datetime(2026, 12, 1, tzinfo=UTC)
        for i in range(20):
            for org in ("Google", "Microsoft"):
                doc = report_doc(f"{org}-{i}", org=org, start=start + timedelta(days=i), failed=0)
                doc["policies"][0]["failure-details"] = []
                report = Report.from_json_object(doc)
                store.add(Received(report, Source.FILE, start + timedelta(days=i + 1)))
        since, until = start, start + timedelta(days=30)
        numbers = ReportNumbers(
            D,
            days=store.daily(D, since, until),
            by_organization=store.breakdown(D, since, until, "organization"),
            by_mx=store.breakdown(D, since, until, "mx"),
            by_result_type=store.breakdown(D, since, until, "result_type"),
            by_policy=store.breakdown(D, since, until, "policy"),
        )

        advice = advise(numbers)

        assert (Verdict.READY, 20, 400) == (advice.verdict, advice.days_covered, advice.successful)


def attrs_evolve(live: LiveCheck, **changes: object) -> LiveCheck:
    """``attrs.evolve`` for the tests (typed loosely)."""
    return attrs.evolve(live, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("verdict", list(Verdict))
def test_verdict_words(verdict):
    """The verdict's value is the words the issue uses."""
    assert verdict.value in ("ready to enforce", "not yet", "not enough data")
