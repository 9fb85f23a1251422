"""
The values the policy machine and its actions share: cache entries and outcomes.

:class:`CacheEntry` (what a store keeps about a policy domain) and
:class:`PolicyOutcome` (what the MTA applies) are named in the signatures of
both :mod:`smtpsts.actions` (:class:`~smtpsts.actions.Resolved`) and
:mod:`smtpsts.cache` (the machine). They live here, below both, so that
neither module has to hide a type behind ``TYPE_CHECKING`` (autodoc and
:func:`typing.get_type_hints` must see them). Import them from
:mod:`smtpsts.cache`, which re-exports them.
"""

from __future__ import annotations

import enum
import functools
import json
from datetime import datetime
from typing import Any, Final

import attrs

from ._names import is_normal_name, to_alabel
from .exceptions import CacheEntryFormatError
from .policy import Mode, Policy
from .reasons import FALLBACK_SUFFIX, Failure
from .tlsrpt.session import PolicyInfo

__all__ = [
    "CACHE_FORMAT_VERSION",
    "FALLBACK_SUFFIX",
    "CacheEntry",
    "CacheEntryFormatError",
    "PolicyFailure",
    "PolicyOutcome",
    "PolicySource",
]

CACHE_FORMAT_VERSION: Final = 1
"""The ``"v"`` member of :meth:`CacheEntry.to_json` documents."""

# --------------------------------------------------------------------------- values


def _aware(_instance: object, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{attribute.name} must be timezone-aware, got {value!r}")


def _check_domain(_instance: object, _attribute: object, value: str) -> None:
    # The usual name is checked in place: an entry's domain need not take a place
    # in to_alabel's cache (memory per cached domain).
    if not is_normal_name(value) and to_alabel(value) != value:
        raise ValueError(f"domain must be a lower-case A-label without trailing dot: {value!r}")


@attrs.frozen
class CacheEntry:
    """
    What the cache knows about one policy domain (RFC 8461 §3.3, STS-CACHE-02).

    One value describes every kind of entry: a policy entry (``policy`` set),
    a mode ``none`` entry ("no policy" until ``expires_at``), a backoff marker
    (``backoff_id`` failed to fetch; no fetch for it before
    ``backoff_until``), a negative entry (no STS record until
    ``negative_until``), or a policy entry that also holds a backoff marker.

    Attributes:
        domain: The policy domain: lower-case A-label, no trailing dot (STS-CACHE-01).
        record_id: The TXT ``id`` the policy was fetched for.
        policy: The parsed policy; ``None`` for no policy, including mode
            ``none`` (AMB-24).
        fetched_at: When the policy was fetched (only a fetch moves it, STS-CACHE-12).
        expires_at: ``fetched_at`` plus the effective ``max_age``; the entry
            is live while ``now < expires_at`` (STS-CACHE-03).
        last_checked: When the TXT ``id`` was last seen unchanged.
        backoff_until: No fetch for ``backoff_id`` before this time (STS-FETCH-14).
        backoff_id: The ``id`` whose fetch failed.
        negative_until: The domain had no STS record; trust that until this time.
    """

    domain: str = attrs.field(validator=_check_domain)
    record_id: str | None = None
    policy: Policy | None = None
    fetched_at: datetime | None = attrs.field(default=None, validator=_aware)
    expires_at: datetime | None = attrs.field(default=None, validator=_aware)
    last_checked: datetime | None = attrs.field(default=None, validator=_aware)
    backoff_until: datetime | None = attrs.field(default=None, validator=_aware)
    backoff_id: str | None = None
    negative_until: datetime | None = attrs.field(default=None, validator=_aware)
    # The outcome of applying this entry, built on first use (cached_outcome).
    _outcome: PolicyOutcome | None = attrs.field(default=None, init=False, eq=False, repr=False)
    # The "no policy" outcome of this entry while it is a live negative entry
    # (negative_outcome).
    _negative_outcome: PolicyOutcome | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.expires_at is not None and (self.record_id is None or self.fetched_at is None):
            raise ValueError("an entry with expires_at needs record_id and fetched_at")
        if self.policy is not None and self.expires_at is None:
            raise ValueError("a policy entry needs expires_at")
        if self.policy is not None and self.policy.mode is Mode.NONE:
            raise ValueError("mode none is stored as no policy (policy=None)")
        if (self.backoff_until is None) != (self.backoff_id is None):
            raise ValueError("backoff_until and backoff_id go together")

    @property
    def mode(self) -> Mode | None:
        """
        The cached mode.

        The policy's mode, :attr:`Mode.NONE` for a mode ``none`` entry, or
        ``None`` when the entry holds no policy answer at all.
        """
        if self.policy is not None:
            return self.policy.mode
        return Mode.NONE if self.expires_at is not None else None

    def is_live(self, now: datetime) -> bool:
        """
        Whether the cached policy answer may be applied at ``now`` (STS-CACHE-03).

        Args:
            now: The current time (timezone-aware).

        Returns:
            ``True`` while ``now < expires_at``; never for a backoff or
            negative entry.
        """
        return self.expires_at is not None and now < self.expires_at

    def in_backoff(self, record_id: str, now: datetime) -> bool:
        """
        Whether a fetch for ``record_id`` must wait (STS-FETCH-14, STS-CACHE-15).

        Args:
            record_id: The TXT ``id`` that would be fetched.
            now: The current time.

        Returns:
            ``True`` when that ``id`` failed and the backoff has not ended.
        """
        return (
            self.backoff_id == record_id
            and self.backoff_until is not None
            and now < self.backoff_until
        )

    def is_negative(self, now: datetime) -> bool:
        """
        Whether a negative entry ("no STS record") is still live.

        Args:
            now: The current time.

        Returns:
            ``True`` while ``now < negative_until``.
        """
        return self.negative_until is not None and now < self.negative_until

    def to_json(self) -> str:
        """
        Serialise the entry as the versioned document every store keeps.

        Returns:
            Compact JSON: ``{"v": 1, "domain": ..., "record_id": ...,
            "policy": <raw policy text or null>, "fetched_at": ..., ...}``,
            times as RFC 3339 UTC strings, absent values as ``null``.
        """
        return json.dumps(
            {
                "v": CACHE_FORMAT_VERSION,
                "domain": self.domain,
                "record_id": self.record_id,
                "policy": None if self.policy is None else self.policy.text,
                "lenient": self.policy is not None and self.policy.lenient,
                "fetched_at": _time_to_json(self.fetched_at),
                "expires_at": _time_to_json(self.expires_at),
                "last_checked": _time_to_json(self.last_checked),
                "backoff_until": _time_to_json(self.backoff_until),
                "backoff_id": self.backoff_id,
                "negative_until": _time_to_json(self.negative_until),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> CacheEntry:
        """
        Read a document written by :meth:`to_json`.

        Args:
            data: The JSON document.

        Returns:
            The entry, its policy parsed again from the stored raw text. The
            last 1024 documents read are remembered, so a store that hands
            back the same document on every lookup gets the same (immutable)
            entry without parsing it again.

        Raises:
            CacheEntryFormatError: The document is not JSON, has an unknown
                version ``"v"``, or a member is missing or malformed.
        """
        if cls is CacheEntry:
            return _from_json_cached(data)
        return cls._from_json(data)

    @classmethod
    def _from_json(cls, data: str | bytes) -> CacheEntry:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise CacheEntryFormatError(f"cache entry is not JSON: {e}") from None
        except RecursionError:
            # Nesting deeper than the interpreter's limit (issue 10 item 7).
            raise CacheEntryFormatError("cache entry is not JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise CacheEntryFormatError("cache entry must be a JSON object")
        version = doc.get("v")
        if version != CACHE_FORMAT_VERSION:
            raise CacheEntryFormatError(
                f"unknown cache entry version {version!r} (this smtpsts reads v"
                f"{CACHE_FORMAT_VERSION}); the store was written by another smtpsts version"
            )
        try:
            text = _opt(doc, "policy", str)
            policy = None
            if text is not None:
                policy = Policy.from_text(text, lenient=_opt(doc, "lenient", bool) or False)
            return cls(
                domain=_req(doc, "domain", str),
                record_id=_opt(doc, "record_id", str),
                policy=policy,
                fetched_at=_time_from_json(doc, "fetched_at"),
                expires_at=_time_from_json(doc, "expires_at"),
                last_checked=_time_from_json(doc, "last_checked"),
                backoff_until=_time_from_json(doc, "backoff_until"),
                backoff_id=_opt(doc, "backoff_id", str),
                negative_until=_time_from_json(doc, "negative_until"),
            )
        except CacheEntryFormatError:
            raise
        except (ValueError, TypeError) as e:  # PolicySyntaxError, DomainNameError included
            raise CacheEntryFormatError(f"invalid cache entry: {e}") from None


FROM_JSON_CACHE_SIZE: Final = 1024
# How many stored documents CacheEntry.from_json remembers.


@functools.lru_cache(maxsize=FROM_JSON_CACHE_SIZE)
def _from_json_cached(data: str | bytes) -> CacheEntry:
    # Errors are not cached (lru_cache does not keep exceptions): a bad document
    # raises on every read.
    return CacheEntry._from_json(data)  # noqa: SLF001


def _time_to_json(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _req(doc: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = _opt(doc, key, kind)
    if value is None:
        raise CacheEntryFormatError(f"cache entry lacks {key!r}")
    return value


def _opt(doc: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = doc.get(key)
    if value is not None and not isinstance(value, kind):
        raise CacheEntryFormatError(f"cache entry member {key!r} must be {kind.__name__}")
    return value


def _time_from_json(doc: dict[str, Any], key: str) -> datetime | None:
    text = _opt(doc, key, str)
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise CacheEntryFormatError(f"cache entry member {key!r} lacks a UTC offset")
    return value


class PolicySource(enum.StrEnum):
    """
    Where the applied policy answer came from.
    """

    FRESH = "fresh"
    """Fetched during this lookup."""

    CACHED = "cached"
    """A live cache entry."""

    NONE = "none"
    """No policy answer: the domain has no usable MTA-STS policy."""


PolicyFailure = Failure
"""
A policy discovery failure, ready for TLS-RPT (RFC 8460 §4.3.2.2).

The one failure value (:class:`smtpsts.reasons.Failure`): ``result_type``
is ``sts-policy-fetch-error``, ``sts-policy-invalid`` or
``sts-webpki-invalid`` (STS-FETCH-18), ``reason`` the ``failure-reason-code``
(docs/reason-codes.md), e.g. ``http-404`` or
``timeout+fallback-to-cached-policy``.
"""


@attrs.frozen
class PolicyOutcome:
    """
    What the MTA applies for a policy domain, and what TLS-RPT records.

    Attributes:
        domain: The policy domain (A-label).
        policy: The policy to apply (mode ``enforce`` or ``testing``), or
            ``None``: deliver as if the domain had no MTA-STS.
        mode: The mode in force: the policy's, :attr:`Mode.NONE` for a mode
            ``none`` policy, ``None`` when no policy was found.
        source: Where the answer came from.
        policy_info: The TLS-RPT policy descriptor for the sessions of this
            delivery: ``sts`` with the policy strings, or ``no-policy-found``
            (also for mode ``none``, AMB-24), or ``sts`` without strings when
            a retrieval failure must be reported with no policy applied
            (RPT-AGG-18).
        record_id: The TXT ``id`` of the applied policy.
        expires_at: When the applied policy stops being valid.
        failure: The discovery failure to report, if any (STS-APPLY-12).
        used_cache_after_failure: A cached policy was applied because
            discovery failed (STS-FETCH-16, STS-CACHE-06, STS-CACHE-07).
        temporary_error: The TXT lookup failed temporarily and nothing was
            cached (``TEMPERROR``, STS-CACHE-09).
        defer: The caller should defer delivery (only with
            :attr:`PolicyConfig.defer_on_dns_error`, AMB-16).
    """

    domain: str
    policy: Policy | None
    mode: Mode | None
    source: PolicySource
    policy_info: PolicyInfo
    record_id: str | None = None
    expires_at: datetime | None = None
    failure: PolicyFailure | None = None
    used_cache_after_failure: bool = False
    temporary_error: bool = False
    defer: bool = False
