"""Tests for the ``interop`` vectors of issue 18: the traps other implementations fall into."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from smtpsts import Policy, STSRecord, vectors
from smtpsts.exceptions import ParseError, PolicySyntaxError
from smtpsts.policy import _parse_valid, scan_policy

ROOT = Path(__file__).resolve().parents[1]
TRAP_GROUPS = ("sts-record", "sts-policy", "tlsrpt-record", "mx-match", "tlsrpt-report")
# "RFC 8461 §3.2", "RFC 8460 Appendix B", "RFC 3339 §5.6 NOTE" ...
RFC_SECTION = re.compile(r"RFC \d{3,4} (?:§\d+(?:\.\d+)*|Appendix [A-Z])")


def interop_cases():
    """Every shipped case tagged ``interop``, as (group, case)."""
    return [
        (group, case)
        for group in TRAP_GROUPS
        for case in vectors.load(group)
        if "interop" in case.get("tags", ())
    ]


def case_id(item):
    """Pytest id of a (group, case) pair."""
    return f"{item[0]}/{item[1]['id']}"


def load_tool():
    """Import tools/make_interop_vectors.py, which is not a package module."""
    spec = importlib.util.spec_from_file_location(
        "make_interop_vectors", ROOT / "tools" / "make_interop_vectors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("item", interop_cases(), ids=case_id)
def test_interop_case_states_trap_and_rfc(item):
    """Issue 18: each interop vector states its trap, cites its RFC section and passes."""
    group, case = item
    assert (True, True) == (bool(RFC_SECTION.search(case["trap"])), bool(case["conformance"]))
    assert (True, "") == (
        vectors.check_case(group, case).ok,
        vectors.check_case(group, case).message,
    )


# Issue 18's list of known traps -> the ids of the vectors that catch each one.
TRAPS = {
    "repeated id with a valid second value": ("sts-record", "duplicate-id-valid-second"),
    "max_age at 2^31": ("sts-policy", "pol-max-age-2-31"),
    "max_age above 2^31": ("sts-policy", "pol-max-age-2-32"),
    "extension name starting with -": ("sts-record", "extension-name-leading-hyphen"),
    "extension name starting with .": ("sts-policy", "pol-extension-name-leading-dot"),
    "mx xn--.example": ("sts-policy", "pol-mx-xn-empty-label"),
    "mx with a 64-octet label": ("sts-policy", "pol-mx-label-64-interop"),
    "invalid UTF-8 in an extension value": ("sts-policy", "pol-extension-invalid-utf8"),
    "invalid UTF-8 in a record extension": ("sts-record", "extension-value-invalid-utf8"),
    "JSON member names in another case": ("tlsrpt-report", "member-name-case-policy-type"),
    "duplicate JSON member names": ("tlsrpt-report", "duplicate-member"),
    "data after the JSON value": ("tlsrpt-report", "data-after-json-value"),
    "lowercase t/z": ("tlsrpt-report", "datetime-lowercase-t-z"),
    ":60 seconds": ("tlsrpt-report", "datetime-leap-second"),
    "mx-host as a string": ("tlsrpt-report", "mx-host-string"),
    "mx-host as an array": ("tlsrpt-report", "sts-and-tlsa-example"),
    "non-ASCII in rua": ("tlsrpt-record", "rua-non-ascii"),
    "non-RFC 3986 characters in rua": ("tlsrpt-record", "rua-curly-braces"),
    "trailing whitespace in a record": ("sts-record", "trailing-wsp-without-delimiter"),
    "trailing whitespace in a TLSRPT record": ("tlsrpt-record", "trailing-wsp"),
    "MX host with underscore": ("mx-match", "match-underscore-host-under-wildcard"),
    "report dated year 0000": ("tlsrpt-report", "datetime-year-0000"),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_every_listed_trap_has_a_tagged_vector(trap):
    """Issue 18: every trap the issue lists is caught by a vector tagged interop."""
    group, wanted = TRAPS[trap]
    tagged = {case["id"] for g, case in interop_cases() if g == group}
    assert wanted in tagged


def test_retired_ids_are_replaced():
    """Issue 18: the four cases whose expectation changed are gone, each under a new id."""
    tool = load_tool()
    for group, retired in tool.RETIRED.items():
        ids = {case["id"] for case in vectors.load(group)}
        assert (set(), set(retired.values())) == (
            set(retired) & ids,
            set(retired.values()) & ids,
        )


def test_tool_is_idempotent(tmp_path, monkeypatch):
    """Issue 18: tools/make_interop_vectors.py rewrites the shipped files unchanged."""
    tool = load_tool()
    copy = tmp_path / "vectors"
    shutil.copytree(ROOT / "smtpsts" / "vectors", copy)
    monkeypatch.setattr(tool, "VECTORS", copy)
    for group in tool.CASES:
        before = (copy / f"{group}.json").read_bytes()
        tool.update(group)
        assert before == (copy / f"{group}.json").read_bytes()


@pytest.mark.parametrize(
    "body",
    [case["input"] for g, case in interop_cases() if g == "sts-policy" and "input" in case],
)
def test_policy_fast_path_agrees_on_traps(body):
    """STS-POL-13, issue 18: the one-pass fast path and the scanner agree on every trap."""
    scan = scan_policy(body)
    fast = _parse_valid(body)
    assert (scan.policy, scan.policy is not None and scan.policy.lines) == (
        fast,
        fast is not None and fast.lines,
    )


@pytest.mark.parametrize(
    "text",
    [
        "v=STSv1; id=abc; id=x-y",
        "v=STSv1; id=abc; v=STSv2",
        "v=STSv1; id=abc; id=def",
        "v=STSv1; id=abc;",
        "v=STSv1; id=abc; id=",
    ],
)
def test_record_fast_path_agrees_on_duplicates(text):
    """STS-REC-16, issue 18: the one-match path and the field parse agree on duplicates."""
    try:
        slow = STSRecord._parse(text, lenient=False)
    except ParseError as e:
        with pytest.raises(type(e)):
            STSRecord.from_text(text)
    else:
        assert slow == STSRecord.from_text(text)


def test_issue_examples():
    """STS-POL-13, STS-REC-16 (issue 18): the three examples of the issue parse."""
    policy = Policy.from_text(
        "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nmode: Enforce\n"
    )
    assert ("enforce", 86400) == (policy.mode.value, policy.max_age)
    assert ["abc", "abc"] == [
        STSRecord.from_text("v=STSv1; id=abc; id=x-y").id,
        STSRecord.from_text("v=STSv1; id=abc; v=STSv2").id,
    ]


def test_year_0000_is_refused_as_a_report_error():
    """RPT-JSON-03, RPT-JSON-24 (issue 18): a report dated year 0000 is a ReportSyntaxError.

    The error names the field; it is never an unexpected ValueError.
    """
    from smtpsts.exceptions import ReportSyntaxError
    from smtpsts.tlsrpt import Report

    case = next(c for c in vectors.load("tlsrpt-report") if c["id"] == "datetime-year-0000")
    with pytest.raises(ReportSyntaxError) as info:
        Report.from_json(json.dumps(case["input"]))
    assert str(info.value).startswith("date-range.start-datetime: ")


def test_year_0000_error_says_why():
    """RPT-JSON-24 (issue 18): the refusal says year 0000 is not supported, not Python's words."""
    from smtpsts.exceptions import ReportSyntaxError
    from smtpsts.tlsrpt import Report

    case = next(c for c in vectors.load("tlsrpt-report") if c["id"] == "datetime-year-0000")
    with pytest.raises(ReportSyntaxError) as info:
        Report.from_json(json.dumps(case["input"]))
    assert (True, False) == (
        "year 0000 is not supported" in str(info.value),
        "out of range" in str(info.value),
    )


def test_policy_error_type_for_underscore_mx():
    """STS-POL-08 (issue 18): an mx with '_' is refused with the reason the operator sees."""
    with pytest.raises(PolicySyntaxError) as info:
        Policy.from_text("version: STSv1\nmode: enforce\nmx: mail_1.example.com\nmax_age: 1\n")
    assert ("bad-mx", 3) == (info.value.reason, info.value.line)
    assert "letters, digits and inner hyphens" in info.value.detail


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"])
def test_datetime_folded_out_of_range_is_a_report_error(stamp):
    """RPT-JSON-03, AMB-14: an offset that folds a date-time past year 1 or 9999 is refused.

    Folding into UTC overflows Python's datetime; the reader says so as a ReportSyntaxError.
    """
    from smtpsts.exceptions import ReportSyntaxError
    from smtpsts.tlsrpt import Report

    case = next(c for c in vectors.load("tlsrpt-report") if c["id"] == "datetime-year-0000")
    report = dict(case["input"])
    report["date-range"] = {"start-datetime": stamp, "end-datetime": "2024-01-02T00:00:00Z"}
    with pytest.raises(ReportSyntaxError) as info:
        Report.from_json(json.dumps(report))
    assert str(info.value).startswith("date-range.start-datetime: invalid date-time")
