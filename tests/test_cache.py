"""Tests for smtpsts.cache: CacheEntry and the PolicyResolution machine."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpsts import Mode, Policy, PolicyType, ResultType, UsageError, vectors
from smtpsts.actions import (
    FetchFailed,
    FetchFailure,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    Resolved,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
)
from smtpsts.cache import (
    DEFAULT_CONFIG,
    TRANSITIONS,
    CacheEntry,
    CacheEntryFormatError,
    PolicyConfig,
    PolicyFailure,
    PolicyResolution,
    PolicySource,
    ResolutionEvent,
    ResolutionState,
    cached_outcome,
)
from smtpsts.vectors import _check_policy_machine
from tests.fakes import (
    ENFORCE,
    NONE,
    T0,
    TESTING,
    ScriptedDNS,
    ScriptedFetcher,
    drive,
    ok,
    run,
    txt,
)

LOOKUP = LookupTXT("_mta-sts.example.com.")
FETCH = FetchPolicy(
    url="https://mta-sts.example.com/.well-known/mta-sts.txt", host="mta-sts.example.com"
)
DAY = timedelta(days=1)
BOGUS_POLICY_DOC = json.dumps(
    {
        "v": 1,
        "domain": "example.com",
        "record_id": "a",
        "policy": "bogus",
        "fetched_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T00:00:00Z",
    }
)
S = timedelta(seconds=1)


def entry(
    record_id: str = "a",
    body: bytes = ENFORCE,
    fetched: datetime = T0,
    **kw,
) -> CacheEntry:
    """A policy entry fetched at ``fetched`` for ``record_id``."""
    policy = Policy.from_text(body)
    lifetime = timedelta(seconds=policy.effective_max_age)
    if policy.mode is Mode.NONE:
        policy = None
    return CacheEntry(
        "example.com",
        record_id=record_id,
        policy=policy,
        fetched_at=fetched,
        expires_at=fetched + lifetime,
        last_checked=fetched,
        **kw,
    )


def resolve(cached, now, *results, config=DEFAULT_CONFIG, refresh=False):
    """Run a resolution and return (actions, Resolved)."""
    m = PolicyResolution("example.com", cached=cached, now=now, config=config, refresh=refresh)
    return run(m, results)


# --------------------------------------------------------------------------- CacheEntry


class TestCacheEntry:
    def test_json_document(self):
        """STS-CACHE-02: one versioned document holds id, raw text, fetch time, expiry."""
        doc = json.loads(entry().to_json())
        assert {
            "v": 1,
            "domain": "example.com",
            "record_id": "a",
            "policy": ENFORCE.decode(),
            "lenient": False,
            "fetched_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "last_checked": "2026-01-01T00:00:00Z",
            "backoff_until": None,
            "backoff_id": None,
            "negative_until": None,
        } == doc

    def test_from_json_remembers_documents(self):
        """A document read again gives the same entry object, without a new parse."""
        doc = entry().to_json()
        first = CacheEntry.from_json(doc)
        assert first is CacheEntry.from_json(doc)
        assert first == CacheEntry.from_json(doc.encode())

        class Subclass(CacheEntry):
            pass

        assert Subclass is type(Subclass.from_json(doc))
        bad = json.dumps({**json.loads(doc), "v": 99})
        for _ in range(2):
            with pytest.raises(CacheEntryFormatError, match="unknown cache entry version"):
                CacheEntry.from_json(bad)

    @pytest.mark.parametrize(
        "value",
        [
            entry(),
            entry(body=NONE),
            entry(backoff_until=T0 + DAY, backoff_id="b"),
            CacheEntry("example.com", backoff_until=T0, backoff_id="z"),
            CacheEntry("example.com", negative_until=T0 + S),
            CacheEntry("example.com"),
        ],
    )
    def test_round_trip(self, value):
        """STS-CACHE-17: every kind of entry survives to_json/from_json."""
        assert value == CacheEntry.from_json(value.to_json())

    def test_lenient_policy_round_trip(self):
        """STS-CACHE-17: a lenient policy is re-read leniently."""
        policy = Policy.from_text(
            b"version: STSv1\nmode: ENFORCE\nmx: a.example\nmax_age: 9\n", lenient=True
        )
        e = CacheEntry(
            "example.com", record_id="a", policy=policy, fetched_at=T0, expires_at=T0 + S
        )
        assert e == CacheEntry.from_json(e.to_json().encode())

    def test_other_offsets_kept(self):
        """STS-CACHE-17: times in another offset come back equal."""
        tz = timezone(timedelta(hours=2))
        e = CacheEntry("example.com", negative_until=datetime(2026, 1, 1, 5, tzinfo=tz))
        assert e == CacheEntry.from_json(e.to_json())

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ("{", "not JSON"),
            (b"\xff", "not JSON"),
            ("[]", "must be a JSON object"),
            ('{"domain": "example.com"}', "unknown cache entry version None"),
            ('{"v": 2, "domain": "example.com"}', "unknown cache entry version 2"),
            ('{"v": "1", "domain": "example.com"}', "unknown cache entry version '1'"),
            ('{"v": 1}', "lacks 'domain'"),
            ('{"v": 1, "domain": 5}', "'domain' must be str"),
            ('{"v": 1, "domain": "example.com", "fetched_at": "x"}', "invalid cache entry"),
            (
                '{"v": 1, "domain": "example.com", "negative_until": "2026-01-01T00:00:00"}',
                "lacks a UTC offset",
            ),
            (
                BOGUS_POLICY_DOC,
                "invalid cache entry",
            ),
            ('{"v": 1, "domain": "Example.com"}', "invalid cache entry"),
            ('{"v": 1, "domain": "example.com", "backoff_id": "a"}', "invalid cache entry"),
        ],
    )
    def test_bad_documents(self, data, message):
        """STS-CACHE-17: a malformed or foreign-version document is a clear error."""
        with pytest.raises(CacheEntryFormatError, match=message):
            CacheEntry.from_json(data)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"negative_until": datetime(2026, 1, 1)},
            {"expires_at": T0},
            {"record_id": "a", "expires_at": T0},
            {"backoff_id": "a"},
            {"backoff_until": T0},
        ],
    )
    def test_invalid_values(self, kwargs):
        """STS-CACHE-02: inconsistent entries are refused at construction."""
        with pytest.raises(ValueError):
            CacheEntry("example.com", **kwargs)

    def test_policy_needs_expiry_and_mode_none_is_no_policy(self):
        """AMB-24: a policy entry needs expires_at; mode none is stored as policy=None."""
        with pytest.raises(ValueError, match="needs expires_at"):
            CacheEntry("example.com", record_id="a", policy=Policy.from_text(ENFORCE))
        with pytest.raises(ValueError, match="mode none"):
            CacheEntry(
                "example.com",
                record_id="a",
                policy=Policy.from_text(NONE),
                fetched_at=T0,
                expires_at=T0 + S,
            )

    def test_domain_must_be_normalised(self):
        """STS-CACHE-01: the key is a lower-case A-label without trailing dot."""
        with pytest.raises(ValueError, match="lower-case A-label"):
            CacheEntry("example.com.")

    def test_live_until_not_one_second_longer(self):
        """STS-CACHE-03: live while now < fetched_at + max_age, not at that instant."""
        e = entry()
        assert (True, True, False, False) == (
            e.is_live(T0),
            e.is_live(T0 + DAY - S),
            e.is_live(T0 + DAY),
            e.is_live(T0 + DAY + S),
        )

    def test_modes(self):
        """AMB-24: mode of a policy entry, a none entry and a marker entry."""
        assert (Mode.ENFORCE, Mode.NONE, None) == (
            entry().mode,
            entry(body=NONE).mode,
            CacheEntry("example.com").mode,
        )

    def test_backoff_and_negative_windows(self):
        """STS-FETCH-14, STS-CACHE-15: backoff holds for one id until backoff_until."""
        e = CacheEntry("example.com", backoff_until=T0 + S, backoff_id="a", negative_until=T0 + S)
        assert (True, False, False, True, False) == (
            e.in_backoff("a", T0),
            e.in_backoff("b", T0),
            e.in_backoff("a", T0 + S),
            e.is_negative(T0),
            e.is_negative(T0 + S),
        )


@st.composite
def entries(draw):
    """Hypothesis: arbitrary consistent cache entries."""
    when = st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    )
    ids = st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True)
    kw = {}
    if draw(st.booleans()):
        fetched = draw(when)
        kw.update(
            record_id=draw(ids),
            policy=draw(
                st.sampled_from([Policy.from_text(ENFORCE), Policy.from_text(TESTING), None])
            ),
            fetched_at=fetched,
            expires_at=fetched + timedelta(seconds=draw(st.integers(0, 31557600))),
            last_checked=draw(st.none() | when),
        )
    if draw(st.booleans()):
        kw.update(backoff_until=draw(when), backoff_id=draw(ids))
    kw["negative_until"] = draw(st.none() | when)
    return CacheEntry(draw(st.sampled_from(["example.com", "xn--bcher-kva.example"])), **kw)


@given(entries())
@settings(max_examples=200)
def test_json_round_trip_property(value):
    """STS-CACHE-17: to_json/from_json is the identity on every entry."""
    assert value == CacheEntry.from_json(value.to_json())


# --------------------------------------------------------------------------- the machine


class TestDiscovery:
    def test_fresh_fetch(self):
        """STS-CACHE-02, STS-FETCH-19: one valid record, no cache -> TXT, then GET, then store."""
        actions, res = resolve(None, T0, txt("v=STSv1; id=a;"), ok())
        assert [LOOKUP, FETCH] == actions
        out = res.outcome
        assert (Mode.ENFORCE, PolicySource.FRESH, "a", T0 + DAY, None) == (
            out.mode,
            out.source,
            out.record_id,
            out.expires_at,
            out.failure,
        )
        assert entry() == res.store
        assert (PolicyType.STS, ("mail.example.com",), ENFORCE.decode().splitlines()) == (
            out.policy_info.policy_type,
            out.policy_info.mx_host_patterns,
            list(out.policy_info.policy_strings),
        )

    def test_character_strings_joined(self):
        """STS-REC-03: an RR given as its character-strings is joined before parsing."""
        answer = TXTAnswer(([b"v=STSv1; id=2016", b"0831085700Z;"],))  # type: ignore[list-item]
        actions, res = resolve(None, T0, answer, ok())
        assert ([LOOKUP, FETCH], "20160831085700Z") == (actions, res.store.record_id)
        answer = TXTAnswer(((b"v=STSv1; id=2016", b"0831085700Z;"),))  # type: ignore[arg-type]
        _, res = resolve(None, T0, answer, ok())
        assert "20160831085700Z" == res.store.record_id

    def test_domain_normalised(self):
        """STS-CACHE-01: Example.COM. uses the entry for example.com and the same qname."""
        m = PolicyResolution("Example.COM.", cached=entry(), now=T0)
        actions, res = run(m, [txt("v=STSv1; id=a;")])
        assert ([LOOKUP], PolicySource.CACHED) == (actions, res.outcome.source)

    def test_no_record_no_fetch(self):
        """STS-FETCH-19, STS-REC-13: no record and no cache -> no HTTP request, no policy."""
        actions, res = resolve(None, T0, TXTNotFound(ttl=None))
        assert [LOOKUP] == actions
        out = res.outcome
        assert (None, None, PolicySource.NONE, PolicyType.NO_POLICY_FOUND, None) == (
            out.policy,
            out.mode,
            out.source,
            out.policy_info.policy_type,
            out.failure,
        )
        assert (None, False) == (res.store, res.delete)

    @pytest.mark.parametrize(
        "records",
        [
            ("v=spf1 -all",),
            (),
            ("v=STSv1; id=1;", "v=STSv1; id=2;"),
            ("v=STSv1; id=x-y;",),
        ],
    )
    def test_unusable_records_no_fetch(self, records):
        """STS-REC-12, STS-REC-13, STS-REC-14: no single valid record -> no policy, no fetch."""
        actions, res = resolve(None, T0, TXTAnswer(records, ttl=None))
        assert ([LOOKUP], None, None) == (actions, res.outcome.policy, res.outcome.failure)

    def test_negative_cache_stored_for_ttl(self):
        """STS-CACHE-08: no record is cached for the DNS TTL."""
        _, res = resolve(None, T0, TXTNotFound(ttl=120))
        assert CacheEntry("example.com", negative_until=T0 + 120 * S) == res.store

    def test_negative_cache_bounded(self):
        """STS-CACHE-08: the negative TTL is bounded by negative_ttl_max."""
        _, res = resolve(None, T0, txt("v=spf1 -all", ttl=86400))
        assert T0 + 3600 * S == res.store.negative_until
        _, res = resolve(None, T0, TXTNotFound(ttl=86400), config=PolicyConfig(negative_ttl_max=0))
        assert None is res.store
        _, res = resolve(None, T0, TXTNotFound(ttl=0))
        assert None is res.store

    def test_negative_entry_keeps_backoff(self):
        """STS-FETCH-14: a negative entry keeps a pending backoff marker."""
        cached = CacheEntry("example.com", backoff_until=T0 + DAY, backoff_id="a")
        _, res = resolve(cached, T0, TXTNotFound(ttl=60))
        assert (
            CacheEntry(
                "example.com", negative_until=T0 + 60 * S, backoff_until=T0 + DAY, backoff_id="a"
            )
            == res.store
        )

    def test_negative_hit_needs_no_io(self):
        """STS-CACHE-08: a live negative entry answers with no DNS query at all."""
        cached = CacheEntry("example.com", negative_until=T0 + S)
        m = PolicyResolution("example.com", cached=cached, now=T0)
        assert ResolutionState.DONE == m.state
        actions, res = run(m, [])
        assert ([], None, PolicyType.NO_POLICY_FOUND) == (
            actions,
            res.outcome.policy,
            res.outcome.policy_info.policy_type,
        )

    def test_negative_entry_expired(self):
        """STS-CACHE-08: an expired negative entry means a new lookup."""
        cached = CacheEntry("example.com", negative_until=T0)
        actions, _ = resolve(cached, T0, txt("v=STSv1; id=a;"), ok())
        assert [LOOKUP, FETCH] == actions

    def test_dns_failure_without_cache(self):
        """STS-CACHE-09, AMB-16, STS-REC-17: SERVFAIL, no cache -> no policy, TEMPERROR flagged."""
        _, res = resolve(None, T0, TXTFailure("SERVFAIL"))
        out = res.outcome
        assert (None, True, False, None, None) == (
            out.policy,
            out.temporary_error,
            out.defer,
            out.failure,
            res.store,
        )

    def test_dns_failure_defer_option(self):
        """AMB-16, STS-CACHE-09: defer_on_dns_error=True asks the caller to defer."""
        _, res = resolve(None, T0, TXTFailure(), config=PolicyConfig(defer_on_dns_error=True))
        assert (True, True) == (res.outcome.temporary_error, res.outcome.defer)


class TestCachedPolicy:
    def test_id_unchanged_no_fetch(self):
        """STS-CACHE-04: same id and a live entry -> cached policy, no GET."""
        cached = entry()
        actions, res = resolve(cached, T0 + 10 * S, txt("v=STSv1; id=a;"))
        assert ([LOOKUP], PolicySource.CACHED, cached.policy, None) == (
            actions,
            res.outcome.source,
            res.outcome.policy,
            res.store,
        )

    def test_id_unchanged_touches_last_checked(self):
        """STS-CACHE-12: a hit moves last_checked (at most every touch_interval), not fetched_at."""
        cached = entry()
        _, res = resolve(cached, T0 + 3600 * S, txt("v=STSv1; id=a;"))
        assert attrs.evolve(cached, last_checked=T0 + 3600 * S) == res.store
        assert T0 == res.store.fetched_at
        _, res = resolve(attrs.evolve(cached, last_checked=None), T0, txt("v=STSv1; id=a;"))
        assert T0 == res.store.last_checked

    def test_id_is_case_sensitive(self):
        """STS-REC-15: ids compare byte for byte; A vs a is a new id."""
        actions, res = resolve(entry(), T0, txt("v=STSv1; id=A;"), ok(TESTING))
        assert ([LOOKUP, FETCH], "A", Mode.TESTING) == (
            actions,
            res.store.record_id,
            res.store.mode,
        )

    def test_id_changed_fetch_replaces(self):
        """STS-CACHE-05, STS-CACHE-13: a new id is fetched; a weaker policy replaces the entry."""
        actions, res = resolve(entry(), T0 + 5 * S, txt("v=STSv1; id=b;"), ok(TESTING))
        assert [LOOKUP, FETCH] == actions
        assert ("b", Mode.TESTING, T0 + 5 * S, T0 + 3605 * S) == (
            res.store.record_id,
            res.store.mode,
            res.store.fetched_at,
            res.store.expires_at,
        )

    def test_id_changed_fetch_fails_keeps_cache(self):
        """STS-CACHE-06, STS-FETCH-16, STS-FETCH-14: GET 500 -> cached enforce, backoff."""
        cached = entry()
        now = T0 + 7 * S
        actions, res = resolve(cached, now, txt("v=STSv1; id=b;"), HTTPResponse(500, None, b""))
        out = res.outcome
        assert [LOOKUP, FETCH] == actions
        assert (Mode.ENFORCE, PolicySource.CACHED, True) == (
            out.mode,
            out.source,
            out.used_cache_after_failure,
        )
        assert (
            PolicyFailure(
                ResultType.STS_POLICY_FETCH_ERROR,
                "http-500+fallback-to-cached-policy",
                "HTTP status 500",
            )
            == out.failure
        )
        assert attrs.evolve(cached, backoff_until=now + 300 * S, backoff_id="b") == res.store
        assert PolicyType.STS == out.policy_info.policy_type

    @pytest.mark.parametrize(
        ("result", "reason"),
        [
            (TXTNotFound(ttl=60), "txt-not-found"),
            (TXTAnswer(("v=spf1",), 60), "txt-not-found"),
            (TXTAnswer(("v=STSv1; id=1;", "v=STSv1; id=2;"), 60), "txt-multiple-records"),
            (TXTAnswer(("v=STSv1; id=x-y;",), 60), "txt-syntax-error"),
            (TXTFailure("timeout"), "txt-lookup-failed"),
        ],
    )
    def test_txt_trouble_keeps_live_policy(self, result, reason):
        """STS-CACHE-07, STS-FETCH-16, SEC-02: TXT trouble never disables a live policy."""
        cached = entry()
        actions, res = resolve(cached, T0 + DAY - S, result)
        out = res.outcome
        assert ([LOOKUP], cached.policy, PolicySource.CACHED, True) == (
            actions,
            out.policy,
            out.source,
            out.used_cache_after_failure,
        )
        assert (ResultType.STS_POLICY_FETCH_ERROR, reason + "+fallback-to-cached-policy") == (
            out.failure.result_type,
            out.failure.reason,
        )
        assert (None, False) == (res.store, res.delete)

    @pytest.mark.parametrize(
        "result", [TXTNotFound(), TXTFailure(), TXTAnswer(("v=STSv1; id=1;", "v=STSv1; id=2;"))]
    )
    def test_downgrade_ends_at_max_age(self, result):
        """STS-CACHE-03, STS-CACHE-07, SEC-02: fallback until max_age, not one second longer."""
        cached = entry()
        _, before = resolve(cached, T0 + DAY - S, result)
        _, after = resolve(cached, T0 + DAY, result)
        assert (Mode.ENFORCE, None) == (before.outcome.mode, after.outcome.policy)
        assert PolicySource.NONE == after.outcome.source

    def test_policy_host_down_until_max_age(self):
        """STS-FETCH-16, STS-CACHE-03: new id, host down -> enforce kept; after expiry none."""
        cached = entry()
        down = FetchFailed(FetchFailure.CONNECT_ERROR, "refused")
        _, before = resolve(cached, T0 + DAY - S, txt("v=STSv1; id=b;"), down)
        _, after = resolve(cached, T0 + DAY, txt("v=STSv1; id=b;"), down)
        assert Mode.ENFORCE == before.outcome.mode
        assert (None, "connect-error") == (after.outcome.policy, after.outcome.failure.reason)

    def test_expired_same_id_refetches(self):
        """STS-CACHE-03: an expired entry is never applied, even with the same id."""
        actions, res = resolve(entry(), T0 + DAY, txt("v=STSv1; id=a;"), ok())
        assert ([LOOKUP, FETCH], PolicySource.FRESH) == (actions, res.outcome.source)

    def test_expired_entry_and_dns_failure(self):
        """STS-CACHE-03, AMB-16: expired + SERVFAIL -> no policy with TEMPERROR."""
        _, res = resolve(entry(), T0 + DAY, TXTFailure())
        assert (None, True) == (res.outcome.policy, res.outcome.temporary_error)


class TestModeNone:
    def test_none_stored_as_no_policy(self):
        """AMB-24, STS-APPLY-07, STS-CACHE-13: enforce replaced by none; no-policy-found."""
        _, res = resolve(entry(), T0, txt("v=STSv1; id=b;"), ok(NONE))
        out = res.outcome
        assert (None, Mode.NONE, PolicySource.FRESH, PolicyType.NO_POLICY_FOUND) == (
            out.policy,
            out.mode,
            out.source,
            out.policy_info.policy_type,
        )
        assert entry("b", NONE) == res.store

    def test_none_cached_hit(self):
        """AMB-24, STS-CACHE-04: a live none entry with the same id -> no policy, no fetch."""
        actions, res = resolve(entry(body=NONE), T0, txt("v=STSv1; id=a;"))
        assert ([LOOKUP], None, Mode.NONE, PolicySource.CACHED) == (
            actions,
            res.outcome.policy,
            res.outcome.mode,
            res.outcome.source,
        )
        assert PolicyType.NO_POLICY_FOUND == res.outcome.policy_info.policy_type

    def test_none_record_gone_deletes(self):
        """STS-CACHE-14: cached none + NXDOMAIN -> entry deleted."""
        _, res = resolve(entry(body=NONE), T0, TXTNotFound())
        assert (None, True, None) == (res.store, res.delete, res.outcome.policy)

    def test_none_record_gone_negative_entry(self):
        """STS-CACHE-14, STS-CACHE-08: with a TTL the none entry becomes a negative entry."""
        _, res = resolve(entry(body=NONE), T0, TXTNotFound(ttl=30))
        assert CacheEntry("example.com", negative_until=T0 + 30 * S) == res.store

    def test_none_dns_failure_keeps_entry(self):
        """STS-CACHE-07: a none entry is not removed by a temporary failure; no report."""
        _, res = resolve(entry(body=NONE), T0, TXTFailure())
        out = res.outcome
        assert (None, Mode.NONE, None, None, False) == (
            res.store,
            out.mode,
            out.policy,
            out.failure,
            out.temporary_error,
        )

    def test_none_fetch_failure(self):
        """RPT-AGG-18, STS-FETCH-14: live none, new id, GET fails -> none kept, backoff."""
        cached = entry(body=NONE)
        _, res = resolve(cached, T0, txt("v=STSv1; id=b;"), HTTPResponse(404, "text/plain", b""))
        out = res.outcome
        assert (Mode.NONE, PolicyType.STS, (), "http-404+fallback-to-cached-policy") == (
            out.mode,
            out.policy_info.policy_type,
            out.policy_info.policy_strings,
            out.failure.reason,
        )
        assert "b" == res.store.backoff_id


class TestFetchFailures:
    @pytest.mark.parametrize(
        ("result", "result_type", "reason"),
        [
            (HTTPResponse(404, "text/plain", b""), ResultType.STS_POLICY_FETCH_ERROR, "http-404"),
            (HTTPResponse(301, "text/plain", b""), ResultType.STS_POLICY_FETCH_ERROR, "redirect"),
            (ok(content_type="text/html"), ResultType.STS_POLICY_FETCH_ERROR, "content-type"),
            (ok(content_type=None), ResultType.STS_POLICY_FETCH_ERROR, "content-type"),
            (ok(b"x" * 65537), ResultType.STS_POLICY_FETCH_ERROR, "policy-too-large"),
            (ok(b"version: STSv1\r\nmode: bogus\r\n"), ResultType.STS_POLICY_INVALID, None),
            (ok(b"\xff\xfe"), ResultType.STS_POLICY_INVALID, None),
            (FetchFailed(FetchFailure.TIMEOUT), ResultType.STS_POLICY_FETCH_ERROR, "timeout"),
            (FetchFailed(FetchFailure.DNS_ERROR), ResultType.STS_POLICY_FETCH_ERROR, "dns-error"),
            (
                FetchFailed(FetchFailure.WEBPKI, code="certificate-expired"),
                ResultType.STS_WEBPKI_INVALID,
                "certificate-expired",
            ),
            (FetchFailed(FetchFailure.TLS_ERROR), ResultType.STS_WEBPKI_INVALID, "tls-error"),
        ],
    )
    def test_no_cache(self, result, result_type, reason):
        """STS-FETCH-15, STS-FETCH-18, STS-FETCH-21, AMB-07, RPT-AGG-18: no policy, backoff."""
        actions, res = resolve(None, T0, txt("v=STSv1; id=a;"), result)
        out = res.outcome
        assert [LOOKUP, FETCH] == actions
        assert (None, PolicySource.NONE, False) == (
            out.policy,
            out.source,
            out.used_cache_after_failure,
        )
        assert result_type == out.failure.result_type
        if reason is not None:
            assert reason == out.failure.reason
        assert (PolicyType.STS, (), ()) == (
            out.policy_info.policy_type,
            out.policy_info.policy_strings,
            out.policy_info.mx_host_patterns,
        )
        assert CacheEntry("example.com", backoff_until=T0 + 300 * S, backoff_id="a") == res.store

    def test_invalid_policy_reason_from_parser(self):
        """STS-FETCH-18: a body that fails to parse -> sts-policy-invalid with the parser's code."""
        _, res = resolve(None, T0, txt("v=STSv1; id=a;"), ok(b"version: STSv1\r\nmax_age: 1\r\n"))
        assert ResultType.STS_POLICY_INVALID == res.outcome.failure.result_type
        assert "missing-mode" == res.outcome.failure.reason

    def test_expired_entry_replaced_by_backoff_marker(self):
        """STS-CACHE-03, STS-FETCH-14: an expired entry is not kept by a failed fetch."""
        _, res = resolve(
            entry(), T0 + DAY, txt("v=STSv1; id=a;"), FetchFailed(FetchFailure.TIMEOUT)
        )
        assert (
            CacheEntry("example.com", backoff_until=T0 + DAY + 300 * S, backoff_id="a") == res.store
        )


class TestBackoff:
    def test_same_id_held_back(self):
        """STS-FETCH-14: fail at t0; same id at t0+60 s -> no request, backoff result."""
        marker = CacheEntry("example.com", backoff_until=T0 + 300 * S, backoff_id="a")
        actions, res = resolve(marker, T0 + 60 * S, txt("v=STSv1; id=a;"))
        assert [LOOKUP] == actions
        assert (
            PolicyFailure(
                ResultType.STS_POLICY_FETCH_ERROR,
                "backoff-after-recent-fetch-error",
                "the policy fetch for this id failed recently",
            )
            == res.outcome.failure
        )
        assert (None, None) == (res.outcome.policy, res.store)

    def test_backoff_ends(self):
        """STS-FETCH-14: at backoff_until the same id is fetched again."""
        marker = CacheEntry("example.com", backoff_until=T0 + 300 * S, backoff_id="a")
        actions, _ = resolve(marker, T0 + 300 * S, txt("v=STSv1; id=a;"), ok())
        assert [LOOKUP, FETCH] == actions

    def test_new_id_not_held_back(self):
        """STS-CACHE-15: failure for a; TXT changes to b a minute later -> fetch allowed."""
        marker = CacheEntry("example.com", backoff_until=T0 + 300 * S, backoff_id="a")
        actions, res = resolve(marker, T0 + 60 * S, txt("v=STSv1; id=b;"), ok())
        assert ([LOOKUP, FETCH], "b") == (actions, res.store.record_id)
        assert (None, None) == (res.store.backoff_id, res.store.backoff_until)

    def test_backoff_with_live_policy(self):
        """STS-FETCH-14, STS-FETCH-16: during backoff for b the live policy for a is applied."""
        cached = entry(backoff_until=T0 + 300 * S, backoff_id="b")
        actions, res = resolve(cached, T0 + 1 * S, txt("v=STSv1; id=b;"))
        assert ([LOOKUP], Mode.ENFORCE) == (actions, res.outcome.mode)
        assert (
            "backoff-after-recent-fetch-error+fallback-to-cached-policy"
            == res.outcome.failure.reason
        )

    def test_backoff_configurable(self):
        """STS-FETCH-14: the backoff length comes from PolicyConfig."""
        cfg = PolicyConfig(backoff=900)
        _, res = resolve(
            None, T0, txt("v=STSv1; id=a;"), FetchFailed(FetchFailure.TIMEOUT), config=cfg
        )
        assert T0 + 900 * S == res.store.backoff_until

    def test_config_validation(self):
        """STS-FETCH-14: negative durations are refused."""
        with pytest.raises(ValueError, match="backoff"):
            PolicyConfig(backoff=-1)


class TestMaxAge:
    def test_max_age_zero_not_cached(self):
        """STS-POL-21: max_age 0 applies to this delivery only and replaces the old entry."""
        body = b"version: STSv1\r\nmode: testing\r\nmx: a.example\r\nmax_age: 0\r\n"
        _, res = resolve(entry(), T0, txt("v=STSv1; id=b;"), ok(body))
        assert (Mode.TESTING, None, True) == (res.outcome.mode, res.store, res.delete)
        _, res = resolve(None, T0, txt("v=STSv1; id=b;"), ok(body))
        assert (Mode.TESTING, None, False) == (res.outcome.mode, res.store, res.delete)

    def test_max_age_clamped(self):
        """AMB-05, STS-CACHE-02: max_age above 31557600 is cached for 31557600 s."""
        body = b"version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 9999999999\r\n"
        _, res = resolve(None, T0, txt("v=STSv1; id=b;"), ok(body))
        assert T0 + 31557600 * S == res.store.expires_at

    def test_max_age_cap_option(self):
        """AMB-05: PolicyConfig.max_age_cap bounds the cache lifetime further."""
        _, res = resolve(None, T0, txt("v=STSv1; id=b;"), ok(), config=PolicyConfig(max_age_cap=60))
        assert T0 + 60 * S == res.store.expires_at


class TestRefresh:
    def test_refresh_fetches_unchanged_id(self):
        """STS-CACHE-10, AMB-17: a refresh fetches even when the id is unchanged."""
        now = T0 + 3600 * S
        actions, res = resolve(entry(), now, txt("v=STSv1; id=a;"), ok(), refresh=True)
        assert ([LOOKUP, FETCH], now, now + DAY) == (
            actions,
            res.store.fetched_at,
            res.store.expires_at,
        )

    @pytest.mark.parametrize(
        "result", [TXTFailure(), TXTNotFound(), TXTAnswer(("v=STSv1; id=x-y;",))]
    )
    def test_refresh_fetches_when_txt_unusable(self, result):
        """STS-CACHE-10, AMB-17, SEC-02: a refresh fetches under the cached id when TXT fails."""
        actions, res = resolve(entry(), T0 + S, result, ok(), refresh=True)
        assert ([LOOKUP, FETCH], "a") == (actions, res.store.record_id)

    def test_refresh_failure_keeps_fetched_at(self):
        """STS-CACHE-12, AMB-17: a failed refresh keeps the entry and its fetched_at."""
        cached = entry()
        _, res = resolve(
            cached, T0 + S, txt("v=STSv1; id=a;"), FetchFailed(FetchFailure.TIMEOUT), refresh=True
        )
        assert (T0, T0 + DAY, "a") == (
            res.store.fetched_at,
            res.store.expires_at,
            res.store.backoff_id,
        )
        assert "timeout+fallback-to-cached-policy" == res.outcome.failure.reason

    def test_unchanged_id_never_extends_life(self):
        """STS-CACHE-12: TXT unchanged for 2 x max_age and every refresh fails -> entry expires."""
        cached = entry()
        seen = []
        for hour in range(48):
            now = T0 + hour * 3600 * S
            results = [txt("v=STSv1; id=a;")]
            if not cached.in_backoff("a", now):
                results.append(FetchFailed(FetchFailure.TIMEOUT))
            _, res = resolve(cached, now, *results, refresh=True)
            seen.append(res.outcome.mode)
            if res.store is not None:
                cached = res.store
            if hour < 24:
                assert T0 == cached.fetched_at
        assert [Mode.ENFORCE] * 24 + [None] * 24 == seen

    def test_refresh_respects_backoff(self):
        """STS-FETCH-14: a refresh does not fetch an id in backoff."""
        cached = entry(backoff_until=T0 + 300 * S, backoff_id="a")
        actions, res = resolve(cached, T0 + S, TXTFailure(), refresh=True)
        assert ([LOOKUP], Mode.ENFORCE) == (actions, res.outcome.mode)

    def test_refresh_none_record_gone_deletes(self):
        """STS-CACHE-14: a refresh of a none entry whose record is gone deletes it."""
        _, res = resolve(entry(body=NONE), T0, TXTNotFound(), refresh=True)
        assert (True, None) == (res.delete, res.store)

    def test_refresh_ignores_negative_entry(self):
        """STS-CACHE-10: a refresh always asks DNS."""
        cached = CacheEntry("example.com", negative_until=T0 + DAY)
        actions, _ = resolve(cached, T0, TXTNotFound(), refresh=True)
        assert [LOOKUP] == actions


class TestProtocol:
    def test_next_action_idempotent(self):
        """STS-CACHE-04: next_action() repeats until receive(); Resolved repeats for ever."""
        m = PolicyResolution("example.com", cached=None, now=T0)
        assert m.next_action() is m.next_action()
        m.receive(txt("v=STSv1; id=a;"))
        assert m.next_action() is m.next_action()
        assert ResolutionState.AWAIT_POLICY == m.state
        m.receive(ok())
        final = m.next_action()
        assert isinstance(final, Resolved)
        assert final is m.next_action()
        assert ResolutionState.DONE == m.state

    @pytest.mark.parametrize(
        "wrong", [ok(), FetchFailed(FetchFailure.TIMEOUT), None, "txt", LOOKUP]
    )
    def test_wrong_result_for_txt(self, wrong):
        """STS-CACHE-04: a result that does not answer LookupTXT is a UsageError."""
        m = PolicyResolution("example.com", cached=None, now=T0)
        with pytest.raises(UsageError, match="does not answer the pending action LookupTXT"):
            m.receive(wrong)
        assert LOOKUP == m.next_action()

    @pytest.mark.parametrize("wrong", [txt("v=STSv1; id=a;"), TXTNotFound(), TXTFailure(), None])
    def test_wrong_result_for_fetch(self, wrong):
        """STS-CACHE-05: a TXT result while a fetch is pending is a UsageError."""
        m = PolicyResolution("example.com", cached=None, now=T0)
        m.receive(txt("v=STSv1; id=a;"))
        with pytest.raises(UsageError, match="FetchPolicy"):
            m.receive(wrong)

    @pytest.mark.parametrize(
        "late", [txt("v=STSv1; id=a;"), TXTNotFound(), ok(), FetchFailed(FetchFailure.TIMEOUT)]
    )
    def test_receive_after_done(self, late):
        """STS-CACHE-04: feeding a finished machine is a UsageError."""
        m = PolicyResolution("example.com", cached=None, now=T0)
        m.receive(TXTNotFound())
        with pytest.raises(UsageError, match="resolved"):
            m.receive(late)

    def test_naive_now(self):
        """STS-CACHE-03: time is injected and must be timezone-aware."""
        with pytest.raises(UsageError, match="timezone-aware"):
            PolicyResolution("example.com", cached=None, now=datetime(2026, 1, 1))

    def test_entry_for_other_domain(self):
        """STS-CACHE-01: an entry for another domain is a UsageError."""
        other = CacheEntry("example.net", negative_until=T0)
        with pytest.raises(UsageError, match=r"example\.net"):
            PolicyResolution("example.com", cached=other, now=T0)

    def test_scripted_driver(self):
        """STS-CACHE-05: the driver loop over scripted adapters asks exactly TXT then GET."""
        dns = ScriptedDNS([txt("v=STSv1; id=a;")])
        fetcher = ScriptedFetcher([ok()])
        res = drive(PolicyResolution("example.com", cached=None, now=T0), dns, fetcher)
        assert (["_mta-sts.example.com."], [FETCH], Mode.ENFORCE) == (
            dns.asked,
            fetcher.asked,
            res.outcome.mode,
        )

    def test_table_is_complete(self):
        """STS-CACHE-04: each (state, event) occurs once; every state is reachable."""
        pairs = [(t.source, t.event) for t in TRANSITIONS]
        assert len(pairs) == len(set(pairs))
        assert set(ResolutionEvent) == {t.event for t in TRANSITIONS}
        assert set(ResolutionState) - {ResolutionState.START} == {t.target for t in TRANSITIONS}


class TestCachedOutcome:
    def test_hot_path(self):
        """STS-CACHE-04, STS-CACHE-03: a live entry gives its outcome, built once."""
        e = entry()
        first = cached_outcome(e, T0)
        assert first is cached_outcome(e, T0 + DAY - S)
        assert (Mode.ENFORCE, PolicySource.CACHED) == (first.mode, first.source)
        assert (None, None) == (cached_outcome(e, T0 + DAY), cached_outcome(None, T0))

    def test_same_as_machine(self):
        """STS-CACHE-04: the hot path equals what the machine answers for an unchanged id."""
        e = entry()
        _, res = resolve(e, T0, txt("v=STSv1; id=a;"))
        assert cached_outcome(e, T0) == res.outcome


# --------------------------------------------------------------------------- properties

RESULTS = st.one_of(
    st.builds(
        TXTAnswer,
        st.lists(
            st.sampled_from(
                ["v=STSv1; id=a;", "v=STSv1; id=b;", "v=STSv1; id=x-y;", "v=spf1", b"\xff"]
            ),
            max_size=3,
        ),
        st.none() | st.integers(-5, 100000),
    ),
    st.builds(TXTNotFound, st.none() | st.integers(-5, 100000)),
    st.builds(TXTFailure, st.text(max_size=5)),
    st.builds(
        HTTPResponse,
        st.sampled_from([200, 200, 200, 301, 404, 500]),
        st.sampled_from(["text/plain", "text/html", None]),
        st.sampled_from([ENFORCE, TESTING, NONE, b"junk", b"\xff", b"x" * 70000]),
    ),
    st.builds(FetchFailed, st.sampled_from(list(FetchFailure))),
    st.none(),
)


@given(
    cached=st.none() | entries().filter(lambda e: e.domain == "example.com"),
    offset=st.integers(-10, 40_000_000),
    results=st.lists(RESULTS, max_size=5),
    refresh=st.booleans(),
)
@settings(max_examples=300)
def test_machine_property(cached, offset, results, refresh):
    """STS-CACHE-03, SEC-16: only UsageError escapes; an expired entry never applies."""
    now = T0 + offset * S
    m = PolicyResolution("example.com", cached=cached, now=now, refresh=refresh)
    for result in results:
        with contextlib.suppress(UsageError):
            m.receive(result)
    action = m.next_action()
    if isinstance(action, Resolved):
        out = action.outcome
        if out.source is PolicySource.CACHED:
            assert cached is not None
            assert cached.is_live(now)
            assert cached.expires_at == out.expires_at
        if action.store is not None:
            assert action.store == CacheEntry.from_json(action.store.to_json())


def test_state_diagram_is_current():
    """STS-CACHE-04: docs/state-machine.md shows exactly the transition table."""
    path = Path(__file__).resolve().parents[1] / "docs" / "_scripts" / "state_diagram.py"
    spec = importlib.util.spec_from_file_location("state_diagram", path)
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = script.PAGE.read_text(encoding="utf-8")
    assert script.render() in page
    assert 0 == script.main(["--check"])
    assert len(TRANSITIONS) == script.render().count(" --> ") - 2


class TestPolicyMachineVectorChecker:
    def _case(self, cid):
        return copy.deepcopy(next(c for c in vectors.load("policy-machine") if c["id"] == cid))

    def test_body_hex_and_mismatch(self):
        """STS-CACHE-02: body_hex is read as bytes; a wrong expectation is reported."""
        case = self._case("fresh-enforce")
        response = case["input"]["results"][1]
        response["body_hex"] = response.pop("body").encode().hex()
        _check_policy_machine.check(case)
        case["expect"]["store"] = None
        with pytest.raises(vectors.VectorMismatch, match="store"):
            _check_policy_machine.check(case)

    def test_script_too_short_or_too_long(self):
        """STS-FETCH-19: asking beyond the script, or leaving results unused, is a mismatch."""
        case = self._case("fresh-enforce")
        case["input"]["results"].pop()
        with pytest.raises(vectors.VectorMismatch, match="beyond"):
            _check_policy_machine.check(case)
        case = self._case("no-record-no-fetch")
        case["input"]["results"].append({"type": "txt-failure"})
        with pytest.raises(vectors.VectorMismatch, match="unused"):
            _check_policy_machine.check(case)

    def test_unknown_result_type(self):
        """STS-CACHE-04: an unknown result type in a vector is a mismatch."""
        with pytest.raises(vectors.VectorMismatch, match="unknown result type"):
            _check_policy_machine.result_from_json({"type": "bogus"})
