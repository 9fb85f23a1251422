"""
Public API usage, checked by mypy --strict (STYLE.md §3.3).

NOT intended to be executed: it exists so that a change to a public signature
that breaks callers fails the type check.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import smtpsts
from smtpsts import (
    DomainNameError,
    Mode,
    MXPattern,
    ParseError,
    Policy,
    PolicySyntaxError,
    RecordSelection,
    RecordSyntaxError,
    ResultType,
    SelectionStatus,
    STSRecord,
    select_sts_record,
    tlsrpt,
    to_alabel,
    vectors,
)
from smtpsts.cache import CacheEntry, PolicyOutcome, PolicyResolution
from smtpsts.certs import CertificateCheck, TrustStore, check_certificate
from smtpsts.dane import DANECheck, TLSARecord, match_tlsa
from smtpsts.decision import MXHost, Precedence, TLSObservation, decide, plan
from smtpsts.io.drivers import PolicyResolver
from smtpsts.io.starttls import STARTTLSProbe, probe_starttls
from smtpsts.lint import Problem, lint_policy, lint_record
from smtpsts.tlsrpt import Aggregator, PolicyInfo, Report, SessionResult
from smtpsts.tlsrpt.advisor import (
    Advice,
    Alert,
    AlertThresholds,
    LiveCheck,
    ReportNumbers,
    Thresholds,
    Verdict,
    advise,
    alerts,
)
from smtpsts.tlsrpt.inbox import DayCount

record: STSRecord = STSRecord.from_text("v=STSv1; id=abc;")
record_id: str = record.id
record_text: str = record.to_text()
selection: RecordSelection = select_sts_record([b"v=STSv1; id=1", (b"v=spf1", b" -all")])
found: bool = selection.status is SelectionStatus.FOUND
maybe_record: STSRecord | None = selection.record

policy: Policy = Policy.from_text(b"version: STSv1\nmode: none\nmax_age: 1\n", lenient=True)
mode: Mode = policy.mode
max_age: int = policy.max_age
effective: int = policy.effective_max_age
patterns: tuple[MXPattern, ...] = policy.mx
strings: tuple[str, ...] = policy.lines
ok: bool = policy.matches("mx.example.com.")
pattern_ok: bool = MXPattern.from_text("*.example.com").matches("a.example.com")
policy_text: str = policy.to_text()

name: str = to_alabel("MØX.example.")

rpt: tlsrpt.TLSRPTRecord = tlsrpt.TLSRPTRecord.from_text("v=TLSRPTv1; rua=mailto:r@example.com")
rua: tuple[str, ...] = rpt.rua
rpt_selection: tlsrpt.TLSRPTRecordSelection = tlsrpt.select_tlsrpt_record(["v=TLSRPTv1;rua=x"])
result_type: ResultType = tlsrpt.ResultType.STS_POLICY_INVALID
policy_type: tlsrpt.PolicyType = tlsrpt.PolicyType.STS

problems: list[Problem] = lint_policy("version: STSv1\n") + lint_record("v=STSv1; id=1")

try:
    Policy.from_text("")
except PolicySyntaxError as e:
    reason: str = e.reason
    line: int | None = e.line
    ids: tuple[str, ...] = e.conformance
    rt: ResultType | None = e.result_type
except (RecordSyntaxError, DomainNameError, ParseError):
    pass

results: list[vectors.CaseResult] = vectors.run(vectors.shipped_documents())
version: str = smtpsts.__version__

# --- certificates and DANE -----------------------------------------------------------------


now = datetime(2026, 1, 1, tzinfo=UTC)
trust = TrustStore.from_pem(b"")
cert_check: CertificateCheck = check_certificate([b"..."], "mx.example.com", trust=trust, now=now)
cert_ok: bool = cert_check.ok
cert_rt: ResultType | None = cert_check.result_type
tlsa: TLSARecord = TLSARecord.from_text("3 1 1 " + "00" * 32)
dane_check: DANECheck = match_tlsa([tlsa], [b"..."], names=["mx.example.com"], now=now)

# --- the policy machine and the decision --------------------------------------------------
machine = PolicyResolution("example.com", cached=None, now=now)
first_action = machine.next_action()
entry: CacheEntry = CacheEntry.from_json(CacheEntry(domain="example.com").to_json())
resolver = PolicyResolver()
outcome: PolicyOutcome = resolver.resolve("example.com")
candidates = plan(outcome, [MXHost("mx.example.com", 10)])
verdict = decide(
    outcome,
    MXHost("mx.example.com", 10),
    TLSObservation(starttls_offered=True, handshake_ok=True, pkix=cert_check),
    precedence=Precedence.BOTH,
)
probe: STARTTLSProbe = probe_starttls("mx.example.com", timeout=5.0)

# --- TLS-RPT --------------------------------------------------------------------------------
aggregator = Aggregator()
aggregator.add(SessionResult.succeeded(PolicyInfo.no_policy_found("example.com")), now)
report: Report | None = aggregator.report(
    "example.com",
    date(2026, 1, 1),
    organization_name="Sender",
    contact_info="tlsrpt@sender.example",
)
report_json: str = report.to_json() if report is not None else "{}"
parsed_report: Report = Report.from_json(report_json)

# --- the rollout advisor --------------------------------------------------------------------
numbers = ReportNumbers("example.com", days=[DayCount(date(2026, 1, 1), 10, 0)])
advice: Advice = advise(numbers, LiveCheck(), Thresholds(min_days=7))
advice_verdict: Verdict = advice.verdict
found_alerts: list[Alert] = list(alerts(numbers, numbers, now, AlertThresholds()))
