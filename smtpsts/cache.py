"""
The MTA-STS policy cache and the sans-I/O policy machine (RFC 8461 §3.3, §5.1).

Theory of operation: the policy cache
=====================================

One :class:`PolicyResolution` serves one lookup of one policy domain. It is
built from the domain, the stored :class:`CacheEntry` (or ``None``), the
current time and a :class:`PolicyConfig`. It never does I/O and never reads a
clock: :meth:`PolicyResolution.next_action` says what it needs next
(:class:`~smtpsts.actions.LookupTXT`, then maybe
:class:`~smtpsts.actions.FetchPolicy`), the driver performs it and feeds the
result to :meth:`PolicyResolution.receive`, and in the end ``next_action()``
returns :class:`~smtpsts.actions.Resolved`: the :class:`PolicyOutcome` to
apply and the entry to write back. This is dnspython's ``_Resolution`` split
with h11's calling convention.

Rules, in the order a lookup meets them (the STS-CACHE and STS-FETCH rows of
``docs/conformance.md``):

* An entry is *live* while ``now < expires_at``, where ``expires_at`` is the
  fetch time plus the policy's effective ``max_age``; an entry is never
  applied one second longer (STS-CACHE-03). ``max_age: 0`` is never cached
  (STS-POL-21). Only a successful fetch sets ``fetched_at`` (STS-CACHE-12).
* A live negative entry ("no STS record", kept for the DNS TTL but at most
  :attr:`PolicyConfig.negative_ttl_max`) answers without any DNS query.
* Otherwise the TXT record is checked on every lookup (STS-CACHE-08).
  The same ``id`` as a live entry means the cached policy, with no fetch
  (STS-CACHE-04). A different ``id``, or no live entry, means a fetch
  (STS-CACHE-05), unless that ``id`` failed to fetch less than
  :attr:`PolicyConfig.backoff` seconds ago (STS-FETCH-14, STS-CACHE-15).
* A TXT answer never disables a live policy (SEC-02): no record, several
  records, a record syntax error or a DNS failure with a live policy means
  the cached policy, reported as ``sts-policy-fetch-error`` with the reason
  suffix ``+fallback-to-cached-policy`` (STS-CACHE-07, STS-FETCH-16). Without
  a live policy they mean no policy; a DNS failure also flags
  ``temporary_error`` (and ``defer`` when configured, AMB-16).
* A live mode ``none`` entry whose record is definitively gone is deleted,
  so MTA-STS can be retired cleanly (STS-CACHE-14).
* A fetched valid policy always replaces the entry, even a weaker one
  (STS-CACHE-13). Mode ``none`` is stored as "no policy" (AMB-24).
* A failed fetch (or an invalid policy) keeps a live entry in use
  (STS-CACHE-06) or yields no policy (STS-FETCH-15), and stores a backoff
  marker for the ``id`` that failed.
* A *refresh* (``refresh=True``, STS-CACHE-10, AMB-17) always fetches, even
  when the ``id`` is unchanged or the TXT lookup gave nothing usable, as long
  as a live entry says which ``id`` to fetch for.

Every state change, and every answer and write, is one row of
``TRANSITIONS`` (h11's "rule 1": the rules live in one table, in
``smtpsts._transitions``): for what the cache holds live
(:class:`CachedState`), a row's :class:`Decision` says what the machine asks
or answers (:class:`Answer`: the live entry, with or without the failure, no
policy, ``temporary_error``, the fresh policy) and what it records
(:class:`CacheWrite`: a touch, a negative entry, a retirement, the fetched
entry, a backoff marker). The code around the table only classifies each
result into an event and builds the values the decision names.
``docs/_scripts/state_diagram.py`` renders the table as the diagram in
``docs/state-machine.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from ._entry import (
    CACHE_FORMAT_VERSION,
    FALLBACK_SUFFIX,
    CacheEntry,
    CacheEntryFormatError,
    PolicyFailure,
    PolicyOutcome,
    PolicySource,
)
from ._names import to_alabel
from ._outcomes import _entry_outcome, _no_policy_info, _sts_info, cached_outcome, negative_outcome
from ._transitions import (
    _ROWS_LIVE_NONE,
    _ROWS_LIVE_POLICY,
    _ROWS_NOTHING_LIVE,
    TRANSITIONS,
    Answer,
    CachedState,
    CacheWrite,
    Decision,
    ResolutionEvent,
    ResolutionState,
    Transition,
)
from ._vocab import ResultType
from .actions import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    FetchFailed,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    Resolved,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
    policy_request,
    sts_qname,
)
from .exceptions import ParseError, UsageError
from .policy import MAX_AGE_LIMIT, Mode, Policy
from .record import RecordSelection, SelectionStatus, select_sts_record

__all__ = [
    "ANSWERS",
    "CACHE_FORMAT_VERSION",
    "DEFAULT_CONFIG",
    "FALLBACK_SUFFIX",
    "TRANSITIONS",
    "Answer",
    "CacheEntry",
    "CacheEntryFormatError",
    "CacheWrite",
    "CachedState",
    "Decision",
    "PolicyConfig",
    "PolicyFailure",
    "PolicyOutcome",
    "PolicyResolution",
    "PolicySource",
    "ResolutionEvent",
    "ResolutionState",
    "Transition",
    "cached_outcome",
    "negative_outcome",
]


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen
class PolicyConfig:
    """
    The knobs of the policy machine.

    Attributes:
        backoff: Seconds without a new fetch for an ``id`` whose fetch failed
            (RFC 8461 §3.3 asks for at least 300; STS-FETCH-14).
        negative_ttl_max: Upper bound in seconds for caching "no STS record"
            (the DNS TTL is used up to this); ``0`` disables negative caching.
        defer_on_dns_error: Defer delivery when the TXT lookup fails
            temporarily and nothing is cached (AMB-16; default: deliver as if
            there were no policy).
        max_age_cap: Upper bound in seconds for the cache lifetime of a
            policy, at most 31557600 (AMB-05).
        touch_interval: A cache hit rewrites the entry (to move
            ``last_checked``) at most this often, in seconds.
        max_bytes: The policy body cap (STS-FETCH-12).
        timeout: The whole-fetch deadline in seconds (STS-FETCH-11).
        require_text_plain: Insist on ``text/plain`` (AMB-06).
    """

    backoff: int = attrs.field(default=300, validator=_non_negative)
    negative_ttl_max: int = attrs.field(default=3600, validator=_non_negative)
    defer_on_dns_error: bool = False
    max_age_cap: int = attrs.field(default=MAX_AGE_LIMIT, validator=_non_negative)
    touch_interval: int = attrs.field(default=3600, validator=_non_negative)
    max_bytes: int = attrs.field(default=DEFAULT_MAX_BYTES, validator=_non_negative)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_non_negative)
    require_text_plain: bool = True


DEFAULT_CONFIG: Final = PolicyConfig()
"""The :class:`PolicyConfig` used when none is given: the RFC 8461 defaults."""


# --------------------------------------------------------------------------- the machine

# The table (states, events, decisions) lives in smtpsts._transitions.
_E = ResolutionEvent


ANSWERS: Final[dict[ResolutionState, tuple[type, ...]]] = {
    ResolutionState.AWAIT_TXT: (TXTAnswer, TXTNotFound, TXTFailure),
    ResolutionState.AWAIT_POLICY: (HTTPResponse, FetchFailed),
}
"""The result types that answer the pending action of each waiting state."""

_TXT_REASONS: Final = {
    SelectionStatus.MULTIPLE_RECORDS: "txt-multiple-records",
    SelectionStatus.SYNTAX_ERROR: "txt-syntax-error",
}


# Members the machine compares on every lookup, bound once (enum attribute
# access is slow on the hot path).
_ANSWER_CACHED: Final = Answer.CACHED
_ANSWER_CACHED_AFTER_FAILURE: Final = Answer.CACHED_AFTER_FAILURE
_ANSWER_FETCH_POLICY: Final = Answer.FETCH_POLICY
_ANSWER_FRESH: Final = Answer.FRESH
_ANSWER_LOOKUP_TXT: Final = Answer.LOOKUP_TXT
_ANSWER_NO_POLICY: Final = Answer.NO_POLICY
_ANSWER_NO_POLICY_AFTER_FAILURE: Final = Answer.NO_POLICY_AFTER_FAILURE
_ANSWER_TEMPORARY_ERROR: Final = Answer.TEMPORARY_ERROR
_WRITE_BACKOFF: Final = CacheWrite.BACKOFF
_WRITE_NEGATIVE_ENTRY: Final = CacheWrite.NEGATIVE_ENTRY
_WRITE_NOTHING: Final = CacheWrite.NOTHING
_WRITE_RETIRE: Final = CacheWrite.RETIRE
_WRITE_TOUCH: Final = CacheWrite.TOUCH


class PolicyResolution:
    """
    One MTA-STS policy lookup, as a sans-I/O state machine (RFC 8461 §3.3, §5.1).

    See the module documentation for the rules and ``TRANSITIONS`` for
    the state changes. Use it through a driver loop::

        m = PolicyResolution("example.com", cached=entry, now=now)
        while not isinstance(action := m.next_action(), Resolved):
            m.receive(perform(action))

    Args:
        domain: The policy domain, any form :func:`smtpsts.to_alabel` accepts.
        cached: The stored entry for the domain, or ``None``.
        now: The current time (timezone-aware).
        config: The knobs.
        refresh: Proactive refresh: fetch even when the ``id`` is unchanged
            or the TXT lookup gives nothing usable (STS-CACHE-10, AMB-17).

    Raises:
        DomainNameError: ``domain`` is not a valid host name.
        UsageError: ``now`` is naive, or ``cached`` is for another domain.
    """

    def __init__(
        self,
        domain: str,
        *,
        cached: CacheEntry | None,
        now: datetime,
        config: PolicyConfig = DEFAULT_CONFIG,
        refresh: bool = False,
    ) -> None:
        self.domain: Final = to_alabel(domain)
        if now.utcoffset() is None:
            raise UsageError("now must be a timezone-aware datetime")
        if cached is not None and cached.domain != self.domain:
            raise UsageError(f"cached entry is for {cached.domain!r}, not {self.domain!r}")
        self._cached = cached
        self._now = now
        self._config = config
        self._refresh = refresh
        live = cached if cached is not None and cached.is_live(now) else None
        self._live = live
        if live is None:
            self._rows = _ROWS_NOTHING_LIVE
        else:
            self._rows = _ROWS_LIVE_NONE if live.policy is None else _ROWS_LIVE_POLICY
        self._state = ResolutionState.START
        self._pending: LookupTXT | FetchPolicy | None = None
        self._resolved: Resolved | None = None
        self._fetch_id = ""
        # The outcome of a live negative entry, built once per entry.
        self._negative = None if refresh else negative_outcome(cached, now)
        self._take(_E.CHECK_TXT if self._negative is None else _E.NEGATIVE_CACHED)

    @property
    def state(self) -> ResolutionState:
        """
        The current state.
        """
        return self._state

    def next_action(self) -> LookupTXT | FetchPolicy | Resolved:
        """
        What the driver must do next.

        Idempotent until :meth:`receive` is called; once the machine is done
        it returns the same :class:`~smtpsts.actions.Resolved` for ever.

        Returns:
            :class:`~smtpsts.actions.LookupTXT`,
            :class:`~smtpsts.actions.FetchPolicy` or
            :class:`~smtpsts.actions.Resolved`.
        """
        if self._resolved is not None:
            return self._resolved
        assert self._pending is not None  # the table guarantees it
        return self._pending

    def steps(self) -> Generator[LookupTXT | FetchPolicy, object, Resolved]:
        """
        The machine as a generator conversation (issue 11; docs/architecture.md).

        Yields each pending :class:`~smtpsts.actions.LookupTXT` or
        :class:`~smtpsts.actions.FetchPolicy`, is sent its result (fed to
        :meth:`receive`), and returns the :class:`~smtpsts.actions.Resolved`,
        so ``smtpsts.io._drive.drive`` / ``adrive`` can run it::

            resolved = drive(PolicyResolution(domain, cached=entry, now=now).steps(), perform)

        Returns:
            What the lookup resolved to.

        Raises:
            UsageError: A result sent does not answer the pending action.
        """
        while not isinstance(action := self.next_action(), Resolved):
            self.receive((yield action))
        return action

    def receive(self, result: object) -> None:
        """
        Feed the result of the pending action.

        Args:
            result: :class:`~smtpsts.actions.TXTAnswer`,
                :class:`~smtpsts.actions.TXTNotFound` or
                :class:`~smtpsts.actions.TXTFailure` for
                :class:`~smtpsts.actions.LookupTXT`;
                :class:`~smtpsts.actions.HTTPResponse` or
                :class:`~smtpsts.actions.FetchFailed` for
                :class:`~smtpsts.actions.FetchPolicy`.

        Raises:
            UsageError: The machine is done, or ``result`` does not answer
                the pending action.
        """
        if self._resolved is not None:
            raise UsageError(f"the lookup of {self.domain!r} is resolved; nothing to receive")
        if not isinstance(result, ANSWERS[self._state]):
            raise UsageError(f"{result!r} does not answer the pending action {self._pending!r}")
        if isinstance(result, TXTAnswer):
            self._on_txt_answer(result)
        elif isinstance(result, TXTNotFound):
            self._on_unusable(_E.NO_RECORD, "txt-not-found", "no _mta-sts record", result.ttl)
        elif isinstance(result, TXTFailure):
            self._on_unusable(
                _E.DNS_FAILURE, "txt-lookup-failed", f"TXT lookup failed: {result.reason}", None
            )
        elif isinstance(result, HTTPResponse):
            self._on_response(result)
        else:
            assert isinstance(result, FetchFailed)  # ANSWERS[AWAIT_POLICY] holds two types
            self._take(_E.FETCH_FAILED, _failure(result))

    # ------------------------------------------------------------------ internals

    def _take(
        self,
        event: ResolutionEvent,
        failure: PolicyFailure | None = None,
        *,
        ttl: int | None = None,
        policy: Policy | None = None,
    ) -> None:
        # h11 rule 1: the state, the answer and the write come from the table.
        self._state, decision = self._rows[(self._state, event)]
        answer = decision.answer
        if answer is _ANSWER_LOOKUP_TXT:
            self._pending = LookupTXT(sts_qname(self.domain))
        elif answer is _ANSWER_FETCH_POLICY:
            cfg = self._config
            self._pending = policy_request(
                self.domain,
                max_bytes=cfg.max_bytes,
                timeout=cfg.timeout,
                require_text_plain=cfg.require_text_plain,
            )
        elif answer is _ANSWER_FRESH:
            assert policy is not None  # the fetched rows carry the policy
            self._finish(self._fresh(policy))
        else:
            self._finish(self._write(decision.write, ttl, self._answer(answer, failure)))

    def _finish(self, resolved: Resolved) -> None:
        self._resolved = resolved
        self._pending = None

    def _answer(self, answer: Answer, failure: PolicyFailure | None) -> PolicyOutcome:
        # The outcome of an answer that needs no fetched policy.
        if answer is _ANSWER_CACHED or answer is _ANSWER_CACHED_AFTER_FAILURE:
            assert self._live is not None  # the table gives these to live entries only
            return _entry_outcome(
                self._live, failure if answer is _ANSWER_CACHED_AFTER_FAILURE else None
            )
        if answer is _ANSWER_NO_POLICY:
            return self._negative if self._negative is not None else self._no_policy()
        if answer is _ANSWER_NO_POLICY_AFTER_FAILURE:
            return self._no_policy(failure)
        assert answer is _ANSWER_TEMPORARY_ERROR  # LOOKUP_TXT, FETCH_POLICY, FRESH: _take
        return self._no_policy(temporary_error=True)

    def _write(self, write: CacheWrite, ttl: int | None, outcome: PolicyOutcome) -> Resolved:
        # What an answer records (the fetched write is _fresh's).
        if write is _WRITE_TOUCH:
            assert self._live is not None  # ID_UNCHANGED: a live entry
            return Resolved(outcome, self._touch(self._live))
        if write is _WRITE_NEGATIVE_ENTRY or write is _WRITE_RETIRE:
            return self._no_record(outcome, ttl, delete=write is _WRITE_RETIRE)
        if write is _WRITE_BACKOFF:
            # RFC 8461 §3.3 (STS-FETCH-14): no new fetch for this id for `backoff` s.
            base = self._live if self._live is not None else CacheEntry(self.domain)
            entry = attrs.evolve(
                base,
                backoff_until=self._now + timedelta(seconds=self._config.backoff),
                backoff_id=self._fetch_id,
            )
            return Resolved(outcome, entry)
        assert write is _WRITE_NOTHING  # FETCHED: _fresh
        return Resolved(outcome)

    def _no_policy(
        self,
        failure: PolicyFailure | None = None,
        *,
        temporary_error: bool = False,
    ) -> PolicyOutcome:
        return PolicyOutcome(
            domain=self.domain,
            policy=None,
            mode=None,
            source=PolicySource.NONE,
            # RPT-AGG-18: a retrieval failure is reported under an "sts" entry.
            policy_info=_no_policy_info(self.domain)
            if failure is None
            else _sts_info(self.domain, None),
            failure=failure,
            temporary_error=temporary_error,
            defer=temporary_error and self._config.defer_on_dns_error,
        )

    def _backoff_failure(self) -> PolicyFailure:
        # RFC 8461 §3.3 (STS-FETCH-14): backoff after a recent failure.
        return PolicyFailure(
            ResultType.STS_POLICY_FETCH_ERROR,
            "backoff-after-recent-fetch-error",
            "the policy fetch for this id failed recently",
        )

    def _on_txt_answer(self, answer: TXTAnswer) -> None:
        selection = _select(answer.records)
        if selection.status is SelectionStatus.FOUND:
            assert selection.record is not None  # FOUND carries the record
            self._on_record(selection.record.id)
        elif selection.status is SelectionStatus.NO_RECORD:
            # STS-REC-17: no candidate among the TXT records means "no record".
            self._on_unusable(_E.NO_RECORD, "txt-not-found", "no STS record", answer.ttl)
        else:
            # RFC 8461 §3.1: not exactly one valid record means no available policy.
            self._on_unusable(
                _E.RECORD_INVALID,
                _TXT_REASONS[selection.status],
                str(selection.error or selection.status.value),
                answer.ttl,
            )

    def _on_record(self, record_id: str) -> None:
        live, now = self._live, self._now
        if live is not None and live.record_id == record_id and not self._refresh:
            # RFC 8461 §5.1 (STS-CACHE-04): same id, live entry -> no fetch.
            self._take(_E.ID_UNCHANGED)
        elif self._cached is not None and self._cached.in_backoff(record_id, now):
            self._take(_E.BACKOFF, self._backoff_failure())
        else:
            # STS-REC-15: any difference in id means a new policy (STS-CACHE-05).
            self._fetch_id = record_id
            same = live is not None and live.record_id == record_id
            self._take(_E.REFRESH if same else _E.FETCH)

    def _touch(self, live: CacheEntry) -> CacheEntry | None:
        last = live.last_checked
        if last is not None and (self._now - last).total_seconds() < self._config.touch_interval:
            return None
        return attrs.evolve(live, last_checked=self._now)

    def _on_unusable(
        self, event: ResolutionEvent, reason: str, detail: str, ttl: int | None
    ) -> None:
        live = self._live
        if (
            live is not None
            and self._refresh
            and not (live.policy is None and event is _E.NO_RECORD)
        ):
            # AMB-17: a refresh fetches even when the record cannot be resolved
            # (a live mode none whose record is gone is retired, STS-CACHE-14).
            record_id = live.record_id
            assert record_id is not None  # a live entry has an id
            if live.in_backoff(record_id, self._now):
                self._take(_E.BACKOFF, self._backoff_failure())
            else:
                self._fetch_id = record_id
                self._take(_E.REFRESH)
            return
        # RFC 8461 §3.3, §5.1 (STS-CACHE-07, SEC-02): the table keeps a live
        # policy; without one, no available policy (§3.1) or TEMPERROR (AMB-16).
        failure = PolicyFailure(ResultType.STS_POLICY_FETCH_ERROR, reason, detail)
        self._take(event, failure, ttl=ttl)

    def _no_record(self, outcome: PolicyOutcome, ttl: int | None, *, delete: bool) -> Resolved:
        cfg = self._config
        if ttl is not None and ttl > 0 and cfg.negative_ttl_max > 0:
            until = self._now + timedelta(seconds=min(ttl, cfg.negative_ttl_max))
            base = self._cached
            entry = CacheEntry(
                self.domain,
                negative_until=until,
                backoff_until=None if base is None else base.backoff_until,
                backoff_id=None if base is None else base.backoff_id,
            )
            return Resolved(outcome, entry)
        return Resolved(outcome, delete=delete)

    def _on_response(self, response: HTTPResponse) -> None:
        assert isinstance(self._pending, FetchPolicy)  # state AWAIT_POLICY
        checked = self._pending.validate(response)
        if isinstance(checked, FetchFailed):
            self._take(_E.FETCH_FAILED, _failure(checked))
            return
        try:
            policy = Policy.from_text(checked)
        except ParseError as e:
            # RFC 8460 §4.3.2.2 (STS-FETCH-18): a body that fails to parse.
            failure = PolicyFailure(ResultType.STS_POLICY_INVALID, e.reason, str(e))
            self._take(_E.POLICY_INVALID, failure)
            return
        # AMB-24: mode none is stored and reported as no policy.
        self._take(_E.POLICY_NONE if policy.mode is Mode.NONE else _E.POLICY_FETCHED, policy=policy)

    def _fresh(self, policy: Policy) -> Resolved:
        # Answer FRESH, write FETCHED.
        now, domain = self._now, self.domain
        lifetime = min(policy.effective_max_age, self._config.max_age_cap)
        expires = now + timedelta(seconds=lifetime)
        stored = policy if policy.mode is not Mode.NONE else None
        outcome = PolicyOutcome(
            domain=domain,
            policy=stored,
            mode=policy.mode,
            source=PolicySource.FRESH,
            policy_info=_no_policy_info(domain) if stored is None else _sts_info(domain, policy),
            record_id=self._fetch_id,
            expires_at=expires,
        )
        if lifetime == 0:
            # STS-POL-21: max_age 0 applies to this delivery only; the new
            # policy still replaces the old entry (STS-CACHE-13).
            return Resolved(outcome, delete=self._cached is not None)
        # STS-CACHE-02, STS-CACHE-13: a fetched valid policy replaces the entry.
        entry = CacheEntry(
            domain,
            record_id=self._fetch_id,
            policy=stored,
            fetched_at=now,
            expires_at=expires,
            last_checked=now,
        )
        return Resolved(outcome, entry)


def _select(records: tuple[bytes | str, ...]) -> RecordSelection:
    try:
        return _select_cached(records)
    except TypeError:  # an RR given as a list of character-strings (unhashable)
        return select_sts_record(records)


@functools.lru_cache(maxsize=1024)
def _select_cached(records: tuple[bytes | str, ...]) -> RecordSelection:
    # The same RRset comes back for every message to a domain; selections are
    # immutable values, so each distinct RRset is parsed once.
    return select_sts_record(records)


def _failure(failed: FetchFailed) -> PolicyFailure:
    return PolicyFailure(failed.result_type, failed.reason, failed.detail)
