"""
The vector checkers report every kind of disagreement.

tests/test_vectors.py runs the shipped cases and mutated copies of them; these
tests reach the disagreements a simple mutation cannot, so that no branch of a
checker is a check that cannot fail.
"""

from __future__ import annotations

import copy
import re

import pytest

from smtpsts import vectors
from smtpsts.vectors import _check_mx_match, _check_tlsrpt_aggregate


def _case(group, case_id):
    return copy.deepcopy(next(c for c in vectors.load(group) if c["id"] == case_id))


def _fails(group, case, fragment):
    result = vectors.check_case(group, case)
    assert (False, True) == (result.ok, fragment in result.message), result.message


def test_dane_record_that_does_not_parse():
    """A TLSA record case that expects a record but whose text is invalid is a failure."""
    case = _case("dane-match", "record-dane-ee-spki-sha256")
    case["input"]["record"] = "3 1 1 zz"
    _fails("dane-match", case, "expected a record")


def test_mx_set_and_patterns_disagree(monkeypatch):
    """The mx-match checker notices when the precomputed pattern set and the single patterns disagree."""
    case = next(c for c in vectors.load("mx-match") if "patterns" in c["input"])
    monkeypatch.setattr(_check_mx_match.MXPatternSet, "matches", lambda self, host: None)
    _fails("mx-match", case, "MXPatternSet says None")


class TestPolicyMachine:
    def test_unknown_result_type(self):
        """A scripted result of an unknown type is a failure, not a crash."""
        case = _case("policy-machine", "fresh-enforce")
        case["input"]["results"][0]["type"] = "carrier-pigeon"
        _fails("policy-machine", case, "unknown result type")

    def test_machine_asks_for_more(self):
        """A machine that asks for more I/O than the case scripts is a failure."""
        case = _case("policy-machine", "fresh-enforce")
        case["input"]["results"].pop()
        _fails("policy-machine", case, "beyond the scripted results")

    def test_results_left_over(self):
        """A machine that finishes before using every scripted result is a failure."""
        case = _case("policy-machine", "fresh-enforce")
        case["input"]["results"].append({"type": "txt-not-found"})
        _fails("policy-machine", case, "unused")


class TestPolicy:
    def test_wrong_reason(self):
        """An error case whose reason code differs is a failure."""
        case = _case("sts-policy", "pol-empty")
        case["reason"] = "something-else"
        _fails("sts-policy", case, "expected reason")

    def test_unknown_expect_key(self):
        """An expectation naming a property the checker does not know is a failure."""
        case = next(c for c in vectors.load("sts-policy") if "expect" in c)
        case["expect"]["no_such_property"] = 1
        _fails("sts-policy", case, "unknown expect key")


@pytest.mark.parametrize(
    ("group", "case_id"),
    [("sts-record", "select-multi-string"), ("tlsrpt-record", "select-ignores-spf")],
)
def test_selection_expected_a_record(group, case_id):
    """A selection case that expects a record where none was selected is a failure."""
    case = _case(group, case_id)
    case["input"]["rrset"] = []
    case["expect"]["status"] = "no-record"
    case["expect"]["candidates"] = 0
    _fails(group, case, "got None")


def test_aggregate_report_id_must_be_dot_atom(monkeypatch):
    """The aggregate checker refuses a report id that is not dot-atom-text."""
    case = vectors.load("tlsrpt-aggregate")[0]
    monkeypatch.setattr(_check_tlsrpt_aggregate, "_DOT_ATOM", re.compile(r"(?!)"))
    _fails("tlsrpt-aggregate", case, "is not dot-atom-text")


class TestDeliveryWalk:
    """Issue 11: the delivery-walk checker reports every way a trace can disagree."""

    def test_unknown_answer_type(self):
        """A scripted answer of an unknown type is a failure, not a crash."""
        case = _case("delivery-walk", "enforce-valid-delivers")
        case["input"]["answers"][0]["type"] = "carrier-pigeon"
        _fails("delivery-walk", case, "unknown answer type")

    def test_walk_asks_for_more(self):
        """A walk that makes more requests than the case answers is a failure."""
        case = _case("delivery-walk", "enforce-valid-delivers")
        case["input"]["answers"].pop()
        _fails("delivery-walk", case, "beyond the scripted answers")

    def test_answers_left_over(self):
        """A walk that ends before using every scripted answer is a failure."""
        case = _case("delivery-walk", "mx-lookup-failed-defers")
        case["input"]["answers"].append({"type": "not-found"})
        _fails("delivery-walk", case, "unused")

    def test_wrong_reason(self):
        """STS-APPLY-09: a case expecting another defer reason is a failure (reasons are compared exactly)."""
        case = _case("delivery-walk", "connect-failed-everywhere-defers")
        case["expect"]["reason"] = "every MX host failed MTA-STS or DANE validation"
        _fails("delivery-walk", case, "reason: expected")

    def test_other_addresses_of_a_connected_mx(self):
        """STS-APPLY-08: a case claiming a connected MX's second address is tried is a failure."""
        case = _case("delivery-walk", "connected-mx-other-addresses-not-tried")
        requests = case["expect"]["requests"]
        requests.insert(4, {**requests[2], "address": "192.0.2.1"})
        _fails("delivery-walk", case, "requests: expected")
