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

Rules, in the order a lookup meets them (CONFORMANCE.md §2.3, §2.6):

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

Every state change is one row of :data:`TRANSITIONS` (h11's "rule 1": all of
it lives in this file); ``docs/_scripts/state_diagram.py`` renders that table
as the diagram in ``docs/state-machine.md``.
"""

from __future__ import annotations

import enum
import functools
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
from .tlsrpt.session import PolicyInfo

__all__ = [
    "ANSWERS",
    "CACHE_FORMAT_VERSION",
    "DEFAULT_CONFIG",
    "FALLBACK_SUFFIX",
    "TRANSITIONS",
    "CacheEntry",
    "CacheEntryFormatError",
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


def _sts_info(domain: str, policy: Policy | None) -> PolicyInfo:
    # RPT-AGG-18: without a policy the "sts" entry has no policy-string or mx-host.
    return PolicyInfo.for_sts(domain, policy)


def _no_policy_info(domain: str) -> PolicyInfo:
    return PolicyInfo.no_policy_found(domain)


def _entry_outcome(entry: CacheEntry, failure: PolicyFailure | None = None) -> PolicyOutcome:
    # The outcome of applying a live entry (policy or mode none), optionally
    # because discovery failed.
    if failure is None and entry._outcome is not None:  # noqa: SLF001 -- this module's cache
        return entry._outcome  # noqa: SLF001
    policy = entry.policy
    if policy is not None:
        info = _sts_info(entry.domain, policy)
    elif failure is not None:
        info = _sts_info(entry.domain, None)
    else:
        # AMB-24: a mode none policy is reported as no-policy-found.
        info = _no_policy_info(entry.domain)
    outcome = PolicyOutcome(
        domain=entry.domain,
        policy=policy,
        mode=entry.mode,
        source=PolicySource.CACHED,
        policy_info=info,
        record_id=entry.record_id,
        expires_at=entry.expires_at,
        failure=None if failure is None else failure.with_fallback(),
        used_cache_after_failure=failure is not None,
    )
    if failure is None:
        object.__setattr__(entry, "_outcome", outcome)
    return outcome


def cached_outcome(entry: CacheEntry | None, now: datetime) -> PolicyOutcome | None:
    """
    The outcome of a live cache entry, without any lookup (the hot path).

    Drivers that answer from the cache between TXT checks (or that run the
    TXT check in the background) use this; :class:`PolicyResolution` gives
    the same outcome for an unchanged ``id``. The outcome is built once per
    entry and reused.

    Args:
        entry: The stored entry, or ``None``.
        now: The current time.

    Returns:
        The cached outcome while the entry is live (STS-CACHE-03), else ``None``.
    """
    if entry is None or not entry.is_live(now):
        return None
    return _entry_outcome(entry)


def negative_outcome(entry: CacheEntry | None, now: datetime) -> PolicyOutcome | None:
    """
    The "no policy" outcome of a live negative entry, without any lookup.

    A domain found to have no STS record is trusted to have none until the
    entry's ``negative_until`` (the DNS negative TTL, bounded by
    :attr:`PolicyConfig.negative_ttl_max`), unless a live policy entry says
    otherwise. :class:`PolicyResolution` resolves such a domain at once; drivers
    use this to skip even building the machine (the hot path for domains
    without MTA-STS). The outcome is built once per entry and reused.

    Args:
        entry: The stored entry, or ``None``.
        now: The current time.

    Returns:
        The no-policy outcome while the negative entry is live, else ``None``.
    """
    if entry is None or entry.is_live(now) or not entry.is_negative(now):
        return None
    outcome = entry._negative_outcome  # noqa: SLF001 -- this module's cache
    if outcome is None:
        outcome = PolicyOutcome(
            domain=entry.domain,
            policy=None,
            mode=None,
            source=PolicySource.NONE,
            policy_info=_no_policy_info(entry.domain),
        )
        object.__setattr__(entry, "_negative_outcome", outcome)
    return outcome


# --------------------------------------------------------------------------- the machine


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


@attrs.frozen
class Transition:
    """
    One row of the transition table.

    Attributes:
        source: The state the machine is in.
        event: What it learnt.
        target: The state it moves to.
        effect: What it does, in words (the docs show this).
        conformance: The CONFORMANCE.md IDs the row implements.
    """

    source: ResolutionState
    event: ResolutionEvent
    target: ResolutionState
    effect: str
    conformance: tuple[str, ...] = ()


_S = ResolutionState
_E = ResolutionEvent

TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition(
        _S.START,
        _E.NEGATIVE_CACHED,
        _S.DONE,
        "live negative entry, not a refresh: no policy, no DNS query",
        ("STS-CACHE-08",),
    ),
    Transition(
        _S.START,
        _E.CHECK_TXT,
        _S.AWAIT_TXT,
        "ask `LookupTXT(_mta-sts.<domain>.)`",
        ("STS-REC-01", "STS-CACHE-08"),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.ID_UNCHANGED,
        _S.DONE,
        "one valid record, same id as the live entry: cached policy, no fetch",
        ("STS-CACHE-04",),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.FETCH,
        _S.AWAIT_POLICY,
        "one valid record, new id or no live entry, not in backoff: ask FetchPolicy",
        ("STS-CACHE-05", "STS-FETCH-19", "STS-CACHE-15"),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.REFRESH,
        _S.AWAIT_POLICY,
        "refresh with a live entry: ask FetchPolicy even for an unchanged or unusable record",
        ("STS-CACHE-10", "AMB-17"),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.BACKOFF,
        _S.DONE,
        "the id to fetch failed less than `backoff` ago: live entry, else no policy;"
        " reason backoff-after-recent-fetch-error",
        ("STS-FETCH-14",),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.NO_RECORD,
        _S.DONE,
        "NXDOMAIN, NODATA or no STS record: live policy kept (fallback), live mode none"
        " deleted, else no policy (negative entry for the TTL)",
        ("STS-CACHE-07", "STS-CACHE-14", "SEC-02"),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.RECORD_INVALID,
        _S.DONE,
        "several STS records or a syntax error: live entry kept (fallback), else no policy",
        ("STS-REC-13", "STS-REC-14", "STS-CACHE-07"),
    ),
    Transition(
        _S.AWAIT_TXT,
        _E.DNS_FAILURE,
        _S.DONE,
        "SERVFAIL or timeout: live entry kept (fallback), else no policy with"
        " temporary_error (defer if configured)",
        ("STS-CACHE-07", "STS-CACHE-09", "AMB-16"),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_FETCHED,
        _S.DONE,
        "valid enforce/testing policy: applied and stored (max_age 0: not stored)",
        ("STS-CACHE-02", "STS-CACHE-13", "STS-POL-21"),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_NONE,
        _S.DONE,
        "valid mode none policy: no policy, stored as a mode none entry",
        ("STS-APPLY-07", "AMB-24"),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.POLICY_INVALID,
        _S.DONE,
        "policy body does not parse: sts-policy-invalid; live entry kept, else no policy;"
        " backoff stored",
        ("STS-FETCH-18", "STS-CACHE-06", "STS-FETCH-15"),
    ),
    Transition(
        _S.AWAIT_POLICY,
        _E.FETCH_FAILED,
        _S.DONE,
        "fetch failed or response broke the rules: live entry kept, else no policy; backoff stored",
        ("STS-FETCH-06", "STS-FETCH-15", "STS-FETCH-16", "STS-FETCH-14"),
    ),
)
"""Every transition of :class:`PolicyResolution`, and nothing else changes its state."""

_TABLE: Final = {(t.source, t.event): t.target for t in TRANSITIONS}

ANSWERS: Final[dict[ResolutionState, tuple[type, ...]]] = {
    ResolutionState.AWAIT_TXT: (TXTAnswer, TXTNotFound, TXTFailure),
    ResolutionState.AWAIT_POLICY: (HTTPResponse, FetchFailed),
}
"""The result types that answer the pending action of each waiting state."""

_TXT_REASONS: Final = {
    SelectionStatus.MULTIPLE_RECORDS: "txt-multiple-records",
    SelectionStatus.SYNTAX_ERROR: "txt-syntax-error",
}


class PolicyResolution:
    """
    One MTA-STS policy lookup, as a sans-I/O state machine (RFC 8461 §3.3, §5.1).

    See the module documentation for the rules and :data:`TRANSITIONS` for
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
        self._live = cached if cached is not None and cached.is_live(now) else None
        self._state = ResolutionState.START
        self._pending: LookupTXT | FetchPolicy | None = None
        self._resolved: Resolved | None = None
        self._fetch_id = ""
        negative = None if refresh else negative_outcome(cached, now)
        if negative is not None:
            self._done(_E.NEGATIVE_CACHED, Resolved(negative))
        else:
            self._go(_E.CHECK_TXT)
            self._pending = LookupTXT(sts_qname(self.domain))

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
            self._on_fetch_failed(_E.FETCH_FAILED, _failure(result))

    # ------------------------------------------------------------------ internals

    def _go(self, event: ResolutionEvent) -> None:
        # h11 rule 1: the state changes only through the table.
        self._state = _TABLE[(self._state, event)]

    def _done(self, event: ResolutionEvent, resolved: Resolved) -> None:
        self._go(event)
        self._resolved = resolved
        self._pending = None

    def _fetch(self, event: ResolutionEvent, record_id: str) -> None:
        self._go(event)
        self._fetch_id = record_id
        cfg = self._config
        self._pending = policy_request(
            self.domain,
            max_bytes=cfg.max_bytes,
            timeout=cfg.timeout,
            require_text_plain=cfg.require_text_plain,
        )

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
        # CONFORMANCE.md §4.4: backoff after a recent failure (STS-FETCH-14).
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
            self._done(_E.ID_UNCHANGED, Resolved(_entry_outcome(live), self._touch(live)))
        elif self._cached is not None and self._cached.in_backoff(record_id, now):
            self._on_backoff()
        else:
            # STS-REC-15: any difference in id means a new policy (STS-CACHE-05).
            event = _E.REFRESH if live is not None and live.record_id == record_id else _E.FETCH
            self._fetch(event, record_id)

    def _touch(self, live: CacheEntry) -> CacheEntry | None:
        last = live.last_checked
        if last is not None and (self._now - last).total_seconds() < self._config.touch_interval:
            return None
        return attrs.evolve(live, last_checked=self._now)

    def _on_backoff(self) -> None:
        failure = self._backoff_failure()
        if self._live is not None:
            outcome = _entry_outcome(self._live, failure)
        else:
            outcome = self._no_policy(failure)
        self._done(_E.BACKOFF, Resolved(outcome))

    def _on_unusable(
        self, event: ResolutionEvent, reason: str, detail: str, ttl: int | None
    ) -> None:
        live, now = self._live, self._now
        definitive = event is not _E.DNS_FAILURE
        if live is not None:
            record_id = live.record_id
            assert record_id is not None  # a live entry has an id
            if live.policy is None and event is _E.NO_RECORD:
                # STS-CACHE-14: mode none and the record is gone: retire the entry.
                self._done(event, self._no_record(ttl, delete=True))
            elif self._refresh:
                # AMB-17: a refresh fetches even when the record cannot be resolved.
                if live.in_backoff(record_id, now):
                    self._on_backoff()
                else:
                    self._fetch(_E.REFRESH, record_id)
            else:
                # RFC 8461 §3.3, §5.1 (STS-CACHE-07, SEC-02): a TXT answer never
                # disables a live policy.
                failure = None
                if live.policy is not None:
                    failure = PolicyFailure(ResultType.STS_POLICY_FETCH_ERROR, reason, detail)
                self._done(event, Resolved(_entry_outcome(live, failure)))
        elif definitive:
            # RFC 8461 §3.1: no available policy; discovery stops (STS-FETCH-19).
            self._done(event, self._no_record(ttl, delete=False))
        else:
            # AMB-16 (STS-CACHE-09): TEMPERROR; deliver as if no policy unless
            # configured to defer.
            self._done(event, Resolved(self._no_policy(temporary_error=True)))

    def _no_record(self, ttl: int | None, *, delete: bool) -> Resolved:
        outcome = self._no_policy()
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
            self._on_fetch_failed(_E.FETCH_FAILED, _failure(checked))
            return
        try:
            policy = Policy.from_text(checked)
        except ParseError as e:
            # RFC 8460 §4.3.2.2 (STS-FETCH-18): a body that fails to parse.
            failure = PolicyFailure(ResultType.STS_POLICY_INVALID, e.reason, str(e))
            self._on_fetch_failed(_E.POLICY_INVALID, failure)
            return
        self._on_policy(policy)

    def _on_policy(self, policy: Policy) -> None:
        now, domain = self._now, self.domain
        lifetime = min(policy.effective_max_age, self._config.max_age_cap)
        expires = now + timedelta(seconds=lifetime)
        stored = policy if policy.mode is not Mode.NONE else None
        if stored is None:
            # AMB-24: mode none is stored and reported as no policy.
            event = _E.POLICY_NONE
            info = _no_policy_info(domain)
        else:
            event = _E.POLICY_FETCHED
            info = _sts_info(domain, policy)
        outcome = PolicyOutcome(
            domain=domain,
            policy=stored,
            mode=policy.mode,
            source=PolicySource.FRESH,
            policy_info=info,
            record_id=self._fetch_id,
            expires_at=expires,
        )
        if lifetime == 0:
            # STS-POL-21: max_age 0 applies to this delivery only; the new
            # policy still replaces the old entry (STS-CACHE-13).
            resolved = Resolved(outcome, delete=self._cached is not None)
        else:
            # STS-CACHE-02, STS-CACHE-13: a fetched valid policy replaces the entry.
            entry = CacheEntry(
                domain,
                record_id=self._fetch_id,
                policy=stored,
                fetched_at=now,
                expires_at=expires,
                last_checked=now,
            )
            resolved = Resolved(outcome, entry)
        self._done(event, resolved)

    def _on_fetch_failed(self, event: ResolutionEvent, failure: PolicyFailure) -> None:
        live = self._live
        # RFC 8461 §3.3 (STS-FETCH-14): no new fetch for this id for `backoff` s.
        base = live if live is not None else CacheEntry(self.domain)
        entry = attrs.evolve(
            base,
            backoff_until=self._now + timedelta(seconds=self._config.backoff),
            backoff_id=self._fetch_id,
        )
        if live is not None:
            # STS-CACHE-06, STS-FETCH-16: the live entry stays in use.
            outcome = _entry_outcome(live, failure)
        else:
            # STS-FETCH-15: deliver as if the domain had no MTA-STS.
            outcome = self._no_policy(failure)
        self._done(event, Resolved(outcome, entry))


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
