"""
The policy machine's transition table carries its decisions (issue 11).

Each row of ``smtpsts.cache.TRANSITIONS`` says, for what the cache holds
live, what the machine asks or answers and what it records; these tests pin
the table's own consistency and the rules it must encode (RFC 8461 §3.3,
§5.1; SEC-02: a live policy is never weakened by a failure).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from smtpsts.actions import FetchPolicy, LookupTXT, Resolved
from smtpsts.cache import (
    TRANSITIONS,
    Answer,
    CachedState,
    CacheEntry,
    CacheWrite,
    Decision,
    PolicyResolution,
    ResolutionEvent,
    ResolutionState,
)
from smtpsts.io._drive import drive
from tests.fakes import T0, ok, txt

ASKS = {Answer.LOOKUP_TXT, Answer.FETCH_POLICY}
CACHED = {Answer.CACHED, Answer.CACHED_AFTER_FAILURE}


def rows() -> list[tuple[Any, CachedState, Decision]]:
    return [(t, cached, d) for t in TRANSITIONS for cached, d in t.decisions]


def test_asking_rows_wait_and_answering_rows_end() -> None:
    """STS-CACHE-04: a row that asks leads to a waiting state, one that answers to DONE."""
    for t, _, d in rows():
        assert (d.answer in ASKS) == (t.target is not ResolutionState.DONE), t


def test_live_policy_is_never_weakened() -> None:
    """SEC-02, STS-CACHE-07, issue 10: with a live policy every answer is the cached policy or a fresh one."""
    answers = {d.answer for _, cached, d in rows() if cached is CachedState.POLICY}
    assert ASKS | CACHED | {Answer.FRESH} == answers


def test_nothing_live_never_answers_from_cache() -> None:
    """STS-CACHE-03: with nothing live the machine never answers from, touches or retires an entry."""
    nothing = [d for _, cached, d in rows() if cached is CachedState.NOTHING]
    assert set() == {d.answer for d in nothing} & CACHED
    assert set() == {d.write for d in nothing} & {CacheWrite.TOUCH, CacheWrite.RETIRE}


def test_each_answer_and_write_is_used() -> None:
    """Issue 11: the table names every answer and write the machine knows, and no other."""
    assert set(Answer) == {d.answer for _, _, d in rows()}
    assert set(CacheWrite) == {d.write for _, _, d in rows()}


def test_decision_of_a_row() -> None:
    """STS-CACHE-14: a row gives its decision per cached state; an impossible state is a KeyError."""
    no_record = next(t for t in TRANSITIONS if t.event is ResolutionEvent.NO_RECORD)
    assert Decision(Answer.NO_POLICY, CacheWrite.RETIRE) == no_record.decision(CachedState.NONE)
    unchanged = next(t for t in TRANSITIONS if t.event is ResolutionEvent.ID_UNCHANGED)
    with pytest.raises(KeyError):
        unchanged.decision(CachedState.NOTHING)


def test_negative_outcome_built_once() -> None:
    """STS-CACHE-08: a live negative entry answers without DNS, with one outcome object per entry."""
    negative = CacheEntry("example.com", negative_until=T0 + timedelta(seconds=300))
    machine = PolicyResolution("example.com", cached=negative, now=T0)
    first = machine.next_action()
    second = PolicyResolution("example.com", cached=negative, now=T0).next_action()
    assert isinstance(first, Resolved)
    assert isinstance(second, Resolved)
    assert first.outcome is second.outcome
    assert (None, ResolutionState.DONE) == (first.outcome.policy, machine.state)


def test_steps_run_by_the_driver() -> None:
    """Issue 11, STS-CACHE-05: steps() asks LookupTXT then FetchPolicy and returns the fresh Resolved."""
    asked: list[object] = []

    def perform(action: object) -> object:
        asked.append(type(action))
        return txt("v=STSv1; id=a;") if isinstance(action, LookupTXT) else ok()

    resolved = drive(PolicyResolution("example.com", cached=None, now=T0).steps(), perform)
    assert [LookupTXT, FetchPolicy] == asked
    assert resolved.store is not None
    assert "a" == resolved.store.record_id
