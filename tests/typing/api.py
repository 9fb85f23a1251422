"""
Public API usage, checked by mypy --strict (STYLE.md §3.3).

NOT intended to be executed: it exists so that a change to a public signature
that breaks callers fails the type check.
"""

from __future__ import annotations

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
from smtpsts.lint import Problem, lint_policy, lint_record

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
