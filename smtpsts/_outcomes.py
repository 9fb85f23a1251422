"""
The outcomes of live cache entries, the policy cache's hot path (RFC 8461 §5.1).

:func:`cached_outcome` and :func:`negative_outcome` answer from a live entry
without any lookup; :class:`smtpsts.cache.PolicyResolution` gives the same
outcomes when its table answers from the cache. Each outcome is built once
per entry and memoised on it. Re-exported from :mod:`smtpsts.cache`.
"""

from __future__ import annotations

from datetime import datetime

from ._entry import CacheEntry, PolicyFailure, PolicyOutcome, PolicySource
from .policy import Policy
from .tlsrpt.session import PolicyInfo

__all__ = ["cached_outcome", "negative_outcome"]


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
