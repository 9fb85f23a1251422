"""
The failure-reason-code vocabulary and the one failure value (issue 11, Deliver 3).

RFC 8460 §4.3 leaves ``failure-reason-code`` free text; smtpsts fixes it as
:class:`smtpsts.reasons.Reason`, whose values are what reports and vectors
have always carried, and publishes the table in docs/reason-codes.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from smtpsts import _entry, cache, decision, reasons
from smtpsts._vocab import ResultType
from smtpsts.actions import FetchFailed, FetchFailure
from smtpsts.reasons import FALLBACK_SUFFIX, Failure, Reason

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reason-codes.md"

#: The codes the core emitted as bare strings before issue 11.
WIRE_VALUES = {
    "txt-not-found",
    "txt-lookup-failed",
    "txt-multiple-records",
    "txt-syntax-error",
    "backoff-after-recent-fetch-error",
    "dns-error",
    "connect-error",
    "timeout",
    "tls-error",
    "webpki",
    "redirect",
    "http-status",
    "content-type",
    "policy-too-large",
    "protocol-error",
    "syntax-error",
    "mtasts-policy-mx-mismatch",
    "tls-handshake-failed",
    "certificate-not-checked",
    "expired",
    "not-yet-valid",
    "no-matching-dns-id",
    "no-dns-id",
    "unknown-ca",
    "bad-signature",
    "name-constraints",
    "path-length",
    "chain-too-deep",
    "not-a-ca",
    "bad-eku",
    "weak-key",
    "x509-error",
    "bad-certificate",
    "no-certificate",
    "chain-too-long",
    "empty-trust-store",
    "all-unusable-records",
    "dane-no-match",
    "no-tls",
    "dnssec-bogus",
    "tlsa-lookup-failed",
}


def test_values_are_unchanged_on_the_wire():
    """RFC 8460 §4.3: every code keeps the exact string reports and vectors carried before the enum."""
    assert WIRE_VALUES == {r.value for r in Reason}
    assert all(r == r.value and str(r) == r.value for r in Reason)
    assert '["dane-no-match"]' == json.dumps([Reason.DANE_NO_MATCH])
    assert "'dane-no-match'" == repr(Reason.DANE_NO_MATCH)
    assert "('tlsa-invalid', 'no-tls')" == repr(("tlsa-invalid", Reason.NO_TLS))


def test_every_code_is_described():
    """Issue 11: every code has a row (result types, when, RFC section) in the published table."""
    for reason in Reason:
        info = reasons.describe(reason)
        assert info.result_types
        assert all(isinstance(t, ResultType) for t in info.result_types)
        assert re.fullmatch(r"RFC \d{4} §[\d.]+(, RFC \d{4} §[\d.]+)*", info.rfc), info.rfc
        assert info.when


def test_table_has_one_row_per_code_and_family():
    """The generated table lists every code once, then every family of run-time codes."""
    rows = reasons.reason_table().splitlines()[2:]
    assert len(Reason) + len(reasons.FAMILIES) == len(rows)
    assert [f"`{r}`" for r in Reason] == [
        row.split(" | ")[0].removeprefix("| ") for row in rows[: len(Reason)]
    ]


def test_docs_page_carries_the_generated_table():
    """docs/reason-codes.md holds exactly reason_table(), so the page cannot drift from the enum."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- smtpsts:reason-table begin -->\n(.*)<!-- smtpsts:reason-table end -->",
        text,
        re.DOTALL,
    )
    assert match is not None
    assert reasons.reason_table() == match.group(1)


def test_docs_page_is_in_the_docs_pages():
    """The page is listed in docs/conf.py PAGES, so the toctree places it."""
    conf = (DOCS.parent / "conf.py").read_text(encoding="utf-8")
    assert '"reason-codes",' in conf


def test_run_time_codes():
    """RFC 8461 §3.3, §5.1: http-<status> and the +fallback-to-cached-policy form."""
    assert "http-404" == reasons.http_status(404)
    assert "timeout+fallback-to-cached-policy" == reasons.with_fallback(Reason.TIMEOUT)
    assert "+fallback-to-cached-policy" == FALLBACK_SUFFIX


def test_fetch_failure_kinds_are_reasons():
    """STS-FETCH-18: each fetch failure kind is a Reason, and FetchFailed reports it as one."""
    assert all(Reason(kind.value) == kind for kind in FetchFailure)
    reason = FetchFailed(FetchFailure.TIMEOUT).reason
    assert Reason.TIMEOUT is reason
    assert "http-503" == FetchFailed(FetchFailure.HTTP_STATUS, status=503).reason
    assert Reason.HTTP_STATUS is FetchFailed(FetchFailure.HTTP_STATUS).reason
    assert (
        "tls-remote-alert-40"
        == FetchFailed(FetchFailure.TLS_ERROR, code="tls-remote-alert-40").reason
    )


def test_one_failure_value():
    """Issue 11: TLSFailure and PolicyFailure are names for the one Failure value; old paths keep working."""
    assert Failure is decision.TLSFailure
    assert Failure is _entry.PolicyFailure
    assert Failure is cache.PolicyFailure
    assert FALLBACK_SUFFIX == _entry.FALLBACK_SUFFIX
    assert Reason.MX_MISMATCH == decision.MX_MISMATCH
    old = decision.TLSFailure(ResultType.VALIDATION_FAILURE, "mtasts-policy-mx-mismatch", "x")
    assert Failure(ResultType.VALIDATION_FAILURE, Reason.MX_MISMATCH, "x") == old
    assert hash(Failure(ResultType.VALIDATION_FAILURE, Reason.MX_MISMATCH, "x")) == hash(old)


def test_with_fallback():
    """RFC 8461 §5.1 (STS-CACHE-06): a failure answered from the cache gets the suffix; nothing else changes."""
    failure = Failure(ResultType.STS_POLICY_FETCH_ERROR, Reason.TIMEOUT, "timed out")
    expected = Failure(
        ResultType.STS_POLICY_FETCH_ERROR, "timeout+fallback-to-cached-policy", "timed out"
    )
    assert expected == failure.with_fallback()
    assert "+fallback-to-cached-policy" == Failure(ResultType.DANE_REQUIRED).with_fallback().reason


@pytest.mark.parametrize("reason", list(Reason))
def test_docs_row_names_the_result_types(reason):
    """Each row of docs/reason-codes.md shows the result types of its code."""
    row = next(r for r in reasons.reason_table().splitlines() if r.startswith(f"| `{reason}` |"))
    assert all(f"`{t}`" in row for t in reasons.describe(reason).result_types)
