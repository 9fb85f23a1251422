"""
The policy machine's transition table: states, events and decisions (RFC 8461 §3.3, §5.1).

:class:`smtpsts.cache.PolicyResolution` changes state, answers and writes
only as a row of :data:`TRANSITIONS` says (h11's "rule 1": the rules in one
place). A row names the state the machine is in, the event it learnt, the
state it moves to and, for what the cache holds live (:class:`CachedState`),
the :class:`Decision`: what the machine asks or answers (:class:`Answer`)
and what it records (:class:`CacheWrite`). ``docs/_scripts/state_diagram.py``
renders the table into ``docs/state-machine.md``. Everything here is
re-exported from :mod:`smtpsts.cache`, the names to import.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

__all__ = [
    "TRANSITIONS",
    "Answer",
    "CacheWrite",
    "CachedState",
    "Decision",
    "ResolutionEvent",
    "ResolutionState",
    "Transition",
]


class ResolutionState(enum.Enum):
    """
    Where a :class:`PolicyResolution` is.
    """

    START = "start"
    """Built; about to choose the first action."""

    AWAIT_TXT = "await-txt"
    """Waiting for the answer to :class:`~smtpsts.actions.LookupTXT`."""

    AWAIT_POLICY = "await-policy"
    """Waiting for the answer to :class:`~smtpsts.actions.FetchPolicy`."""

    DONE = "done"
    """:class:`~smtpsts.actions.Resolved` is final."""


class ResolutionEvent(enum.Enum):
    """
    What the machine learnt, as the transition table names it.
    """

    NEGATIVE_CACHED = "negative-cached"
    """A live negative entry answers; no DNS query."""
    CHECK_TXT = "check-txt"
    """The TXT record must be looked up."""
    ID_UNCHANGED = "id-unchanged"
    """The TXT ``id`` equals the live entry's."""
    FETCH = "fetch"
    """A new ``id`` (or no live entry): the policy must be fetched."""
    REFRESH = "refresh"
    """A refresh fetches for the live entry's ``id``."""
    BACKOFF = "backoff"
    """The ``id`` to fetch failed recently."""
    NO_RECORD = "no-record"
    """NXDOMAIN, NODATA, or no STS record among the TXT records."""
    RECORD_INVALID = "record-invalid"
    """Several STS records, or one with a syntax error."""
    DNS_FAILURE = "dns-failure"
    """The TXT lookup failed temporarily."""
    POLICY_FETCHED = "policy-fetched"
    """A valid ``enforce`` or ``testing`` policy was fetched."""
    POLICY_NONE = "policy-none"
    """A valid mode ``none`` policy was fetched."""
    POLICY_INVALID = "policy-invalid"
    """The fetched body is not a valid policy."""
    FETCH_FAILED = "fetch-failed"
    """The fetch failed, or the response broke the fetch rules."""


class CachedState(enum.Enum):
    """
    What the cache holds live for the domain when a lookup starts (RFC 8461 §5.1).

    The decisions of a :class:`Transition` depend on it: a live policy is
    never weakened by a failure (SEC-02), a live mode ``none`` entry has no
    policy to fall back to, and with nothing live the lookup's own result
    decides.
    """

    POLICY = "live-policy"
    """A live ``enforce`` or ``testing`` policy."""
    NONE = "live-none"
    """A live mode ``none`` entry (AMB-24)."""
    NOTHING = "nothing-live"
    """No entry, or only an expired one, a backoff marker or a negative entry."""


class Answer(enum.Enum):
    """
    What the machine does on a transition: ask for the next result, or answer.
    """

    LOOKUP_TXT = "lookup-txt"
    """Ask :class:`~smtpsts.actions.LookupTXT` (STS-REC-01)."""
    FETCH_POLICY = "fetch-policy"
    """Ask :class:`~smtpsts.actions.FetchPolicy` (STS-CACHE-05)."""
    CACHED = "cached"
    """The live entry's outcome (STS-CACHE-04)."""
    CACHED_AFTER_FAILURE = "cached-after-failure"
    """The live entry's outcome, reporting the failure with ``+fallback-to-cached-policy``."""
    NO_POLICY = "no-policy"
    """No policy (RFC 8461 §3.1)."""
    NO_POLICY_AFTER_FAILURE = "no-policy-after-failure"
    """No policy, reporting the failure (STS-FETCH-15)."""
    TEMPORARY_ERROR = "temporary-error"
    """No policy with ``temporary_error`` (and ``defer`` when configured, AMB-16)."""
    FRESH = "fresh"
    """The fetched policy (mode ``none``: no policy, AMB-24)."""


class CacheWrite(enum.Enum):
    """
    What the machine records in the store when it answers.
    """

    NOTHING = "nothing"
    """No write."""
    TOUCH = "touch"
    """Rewrite the live entry to move ``last_checked``, at most every ``touch_interval``."""
    NEGATIVE_ENTRY = "negative-entry"
    """A negative entry for the DNS TTL, bounded by ``negative_ttl_max`` (none without a TTL)."""
    RETIRE = "retire"
    """A negative entry as :attr:`NEGATIVE_ENTRY`, else delete the live entry (STS-CACHE-14)."""
    FETCHED = "fetched"
    """The fetched policy's entry; ``max_age: 0``: delete the stored entry (STS-POL-21)."""
    BACKOFF = "backoff"
    """A backoff marker for the ``id`` that failed, over the live entry (STS-FETCH-14)."""


@attrs.frozen
class Decision:
    """
    What a transition does for one :class:`CachedState`.

    Attributes:
        answer: What the machine asks or answers.
        write: What it records.
    """

    answer: Answer
    write: CacheWrite = CacheWrite.NOTHING


def _decisions(
    *,
    policy: Decision | None = None,
    none: Decision | None = None,
    nothing: Decision | None = None,
) -> tuple[tuple[CachedState, Decision], ...]:
    # A row's decisions; a state left out cannot meet the row's event.
    given = {CachedState.POLICY: policy, CachedState.NONE: none, CachedState.NOTHING: nothing}
    return tuple((state, d) for state, d in given.items() if d is not None)


def _always(
    answer: Answer, write: CacheWrite = CacheWrite.NOTHING
) -> tuple[tuple[CachedState, Decision], ...]:
    d = Decision(answer, write)
    return _decisions(policy=d, none=d, nothing=d)


@attrs.frozen
class Transition:
    """
    One row of the transition table.

    Attributes:
        source: The state the machine is in.
        event: What it learnt.
        target: The state it moves to.
        effect: What it does, in words (the docs show this).
        conformance: The conformance IDs (``docs/conformance.md``) the row
            implements.
        decisions: What it asks or answers, and records, for each
            :class:`CachedState` that can meet the event; the machine takes
            its decisions from here and nowhere else.
    """

    source: ResolutionState
    event: ResolutionEvent
    target: ResolutionState
    effect: str
    conformance: tuple[str, ...] = ()
    decisions: tuple[tuple[CachedState, Decision], ...] = ()

    def decision(self, cached: CachedState) -> Decision:
        """
        The decision of this row for what the cache holds.

        Args:
            cached: What the cache holds live.

        Returns:
            The decision.

        Raises:
            KeyError: The row's event cannot happen with ``cached``.
        """
        return dict(self.decisions)[cached]


_S = ResolutionState
_E = ResolutionEvent
_A = Answer
_W = CacheWrite
_D = Decision

TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition(
        _S.START,
        _E.NEGATIVE_CACHED,
        _S.DONE,
        "live negative entry, not a refresh: no policy, no DNS query",
        ("STS-CACHE-08",),
        _decisions(nothing=_D(_A.NO_POLICY)),
    ),
    Transition(
        _S.START,
        _E.CHECK_TXT,
        _S.AWAIT_TXT,
        "ask `LookupTXT(_mta-sts.<domain>.)`",
        ("STS-REC-01", "STS-CACHE-08"),
        _always(_A.LOOKUP_TXT),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.ID_UNCHANGED,
        _S.DONE,
        "one valid record, same id as the live entry: cached policy, no fetch",
        ("STS-CACHE-04",),
        _decisions(policy=_D(_A.CACHED, _W.TOUCH), none=_D(_A.CACHED, _W.TOUCH)),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.FETCH,
        _S.AWAIT_POLICY,
        "one valid record, new id or no live entry, not in backoff: ask FetchPolicy",
        ("STS-CACHE-05", "STS-FETCH-19", "STS-CACHE-15"),
        _always(_A.FETCH_POLICY),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.REFRESH,
        _S.AWAIT_POLICY,
        "refresh with a live entry: ask FetchPolicy even for an unchanged or unusable record",
        ("STS-CACHE-10", "AMB-17"),
        _decisions(policy=_D(_A.FETCH_POLICY), none=_D(_A.FETCH_POLICY)),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.BACKOFF,
        _S.DONE,
        "the id to fetch failed less than `backoff` ago: live entry, else no policy;"
        " reason backoff-after-recent-fetch-error",
        ("STS-FETCH-14",),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE),
            none=_D(_A.CACHED_AFTER_FAILURE),
            nothing=_D(_A.NO_POLICY_AFTER_FAILURE),
        ),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.NO_RECORD,
        _S.DONE,
        "NXDOMAIN, NODATA or no STS record: live policy kept (fallback), live mode none"
        " deleted, else no policy (negative entry for the TTL)",
        ("STS-CACHE-07", "STS-CACHE-14", "SEC-02"),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE),
            none=_D(_A.NO_POLICY, _W.RETIRE),
            nothing=_D(_A.NO_POLICY, _W.NEGATIVE_ENTRY),
        ),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.RECORD_INVALID,
        _S.DONE,
        "several STS records or a syntax error: live entry kept (fallback), else no policy",
        ("STS-REC-13", "STS-REC-14", "STS-CACHE-07"),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE),
            none=_D(_A.CACHED),
            nothing=_D(_A.NO_POLICY, _W.NEGATIVE_ENTRY),
        ),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.DNS_FAILURE,
        _S.DONE,
        "SERVFAIL or timeout: live entry kept (fallback), else no policy with"
        " temporary_error (defer if configured)",
        ("STS-CACHE-07", "STS-CACHE-09", "AMB-16"),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE),
            none=_D(_A.CACHED),
            nothing=_D(_A.TEMPORARY_ERROR),
        ),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_FETCHED,
        _S.DONE,
        "valid enforce/testing policy: applied and stored (max_age 0: not stored)",
        ("STS-CACHE-02", "STS-CACHE-13", "STS-POL-21"),
        _always(_A.FRESH, _W.FETCHED),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_NONE,
        _S.DONE,
        "valid mode none policy: no policy, stored as a mode none entry",
        ("STS-APPLY-07", "AMB-24"),
        _always(_A.FRESH, _W.FETCHED),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_INVALID,
        _S.DONE,
        "policy body does not parse: sts-policy-invalid; live entry kept, else no policy;"
        " backoff stored",
        ("STS-FETCH-18", "STS-CACHE-06", "STS-FETCH-15"),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE, _W.BACKOFF),
            none=_D(_A.CACHED_AFTER_FAILURE, _W.BACKOFF),
            nothing=_D(_A.NO_POLICY_AFTER_FAILURE, _W.BACKOFF),
        ),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.FETCH_FAILED,
        _S.DONE,
        "fetch failed or response broke the rules: live entry kept, else no policy; backoff stored",
        ("STS-FETCH-06", "STS-FETCH-15", "STS-FETCH-16", "STS-FETCH-14"),
        _decisions(
            policy=_D(_A.CACHED_AFTER_FAILURE, _W.BACKOFF),
            none=_D(_A.CACHED_AFTER_FAILURE, _W.BACKOFF),
            nothing=_D(_A.NO_POLICY_AFTER_FAILURE, _W.BACKOFF),
        ),
    ),
)
"""Every transition of :class:`PolicyResolution`: its state changes, answers and writes."""

# The table as the machine reads it: per cached state (chosen once per
# lookup), (source, event) -> (target, decision).
_TABLE: Final = {
    held: {
        (t.source, t.event): (t.target, decision)
        for t in TRANSITIONS
        for cached, decision in t.decisions
        if cached is held
    }
    for held in CachedState
}
_ROWS_LIVE_POLICY: Final = _TABLE[CachedState.POLICY]
_ROWS_LIVE_NONE: Final = _TABLE[CachedState.NONE]
_ROWS_NOTHING_LIVE: Final = _TABLE[CachedState.NOTHING]
