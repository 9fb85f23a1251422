"""
Memory per cached domain in the Postfix server's memory store (issue 12 item 8).

A cached policy keeps its text and its matching keys; ``Policy.lines`` and
``Policy.mx`` are derived on demand when they can be (``smtpsts.policy``). The
first test measures what a cached domain costs with tracemalloc (deterministic:
it counts allocations, not time), filling the store the way
``benchmarks/bench_postfix.py`` ``fill_rss`` does. The others check that the
compact form is only a form: every value reads back as before.
"""

from __future__ import annotations

import gc
import pickle
import tracemalloc
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from smtpsts._entry import CacheEntry
from smtpsts._names import is_normal_name, to_alabel
from smtpsts.mx import MXPattern, MXPatternSet, _compact_patterns, _PatternKeys
from smtpsts.policy import Policy
from smtpsts.postfix import protocol, server
from smtpsts.postfix.config import ServerConfig
from smtpsts.tlsrpt.session import PolicyInfo

DOMAINS = 5000
LIMIT = 800  # bytes per cached domain (issue 12 item 8)
FETCHED = datetime(2026, 6, 1, tzinfo=UTC)


def _body(domain: str) -> str:
    return f"version: STSv1\nmode: enforce\nmx: mail.{domain}\nmx: *.{domain}\nmax_age: 604800\n"


def _fill(store: object, prefix: str, count: int) -> None:
    for i in range(count):
        domain = f"{prefix}{i}.example.net"
        store.put(  # type: ignore[attr-defined]
            CacheEntry(
                domain,
                "20240101T000000",
                Policy.from_text(_body(domain)),
                fetched_at=FETCHED,
                expires_at=FETCHED + timedelta(days=7),
            )
        )


def _bytes_per_domain(count: int) -> tuple[float, list[str]]:
    # The bounded caches on the way (to_alabel's, the mx parse's, ...) are filled
    # first with other names, so the measure sees their steady state (each new name
    # replaces an old one) and counts only what every cached domain adds.
    _fill(server.build_store(ServerConfig(cache_backend="memory")), "warm", 5000)
    store = server.build_store(ServerConfig(cache_backend="memory"))
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        _fill(store, "d", count)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(store) == count
    diff = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in diff)
    top = [f"{stat.size_diff / count:7.1f} {stat.traceback[0]}" for stat in diff[:8]]
    return total / count, top


class TestMemoryPerDomain:
    def test_at_most_800_bytes_per_cached_domain(self):
        per_domain, top = _bytes_per_domain(DOMAINS)
        assert per_domain <= LIMIT, "\n".join([f"{per_domain:.0f} bytes per domain:", *top])

    def test_a_strict_policy_keeps_its_text_and_keys_only(self):
        policy = Policy.from_text(_body("a.example"))
        assert policy._lines is None
        assert isinstance(policy._mx, _PatternKeys)
        assert policy._matcher is policy._mx
        # The keys are the mx values as served: no second copy of a host name.
        assert policy.mx[0].text is policy._mx[0]


BODIES = [
    _body("a.example"),
    "version: STSv1\r\nmode: testing\r\nmx: MAIL.Example.COM\r\nmax_age: 86400",
    "version: STSv1\nmode: enforce\nmx: a.example\nmx: a.example\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\n"
    + "".join(f"mx: m{i}.example\n" for i in range(6))
    + "max_age: 604800\n",
    "version: STSv1\nmode: none\nmax_age: 604800\nx-ext: v\n",
    "version: STSv1\nmode: enforce\nmx: xn--mx-lka.example\nmx: *.xn--mx-lka.example\nmax_age: 9\n",
]


class TestCompactFormReadsBack:
    @pytest.mark.parametrize("body", BODIES)
    def test_fast_path_and_constructor_agree(self, body):
        fast = Policy.from_text(body)
        built = Policy(
            mode=fast.mode,
            mx=fast.mx,
            max_age=fast.max_age,
            extensions=fast.extensions,
            text=fast.text,
            lines=fast.lines,
        )
        assert built == fast
        assert hash(built) == hash(fast)
        assert built.mx == fast.mx
        assert [p.text for p in built.mx] == [p.text for p in fast.mx]
        assert built.lines == fast.lines
        assert built._mx == fast._mx
        assert built._lines is fast._lines is None
        assert repr(built) == repr(fast)

    @pytest.mark.parametrize("body", BODIES)
    def test_evolve_and_pickle(self, body):
        policy = Policy.from_text(body)
        for other in (attrs.evolve(policy), pickle.loads(pickle.dumps(policy))):
            assert other == policy
            assert other.lines == policy.lines
            assert [p.text for p in other.mx] == [p.text for p in policy.mx]
            assert other.matches("mail.example.com") == policy.matches("mail.example.com")

    def test_lines_given_in_code_are_kept_when_they_differ(self):
        policy = Policy(mode="none", max_age=1, text="version: STSv1", lines=["a", "b"])
        assert policy.lines == ("a", "b")
        assert policy._lines == ("a", "b")

    def test_lenient_lines_are_kept(self):
        body = "version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 1\r"
        policy = Policy.from_text(body, lenient=True)
        assert policy.lenient
        assert policy.lines == ("version: STSv1", "mode: enforce", "mx: a.example", "max_age: 1")
        assert policy._lines is not None

    def test_equality_across_forms(self):
        canonical = Policy.from_text(_body("a.example"))
        written = Policy.from_text(_body("a.example").replace("mail.a", "MAIL.a"))
        assert not isinstance(written._mx, _PatternKeys)
        assert written == canonical
        assert hash(written) == hash(canonical)
        assert written.mx[0].text == "MAIL.a.example"

    def test_repr_is_unchanged(self):
        policy = Policy.from_text(
            "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
            "max_age: 604800\n"
        )
        assert repr(policy) == (
            "Policy(mode=<Mode.ENFORCE: 'enforce'>, mx=(MXPattern(host='mail.example.com',"
            " wildcard=False), MXPattern(host='example.net', wildcard=True)), max_age=604800,"
            " extensions=(), lenient=False)"
        )

    def test_lines_and_mx_are_read_only(self):
        policy = Policy.from_text(_body("a.example"))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            policy.lines = ()  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            policy.mx = ()  # type: ignore[misc]

    def test_common_max_age_values_are_shared(self):
        one = Policy.from_text(_body("a.example"))
        two = Policy.from_text(_body("b.example"))
        assert one.max_age is two.max_age
        assert Policy.from_text(_body("c.example").replace("604800", "604801")).max_age == 604801

    def test_postfix_answer_and_tlsrpt_info_use_the_keys(self):
        policy = Policy.from_text(_body("a.example"))
        assert protocol.match_patterns(policy) == ("mail.a.example", ".a.example")
        assert protocol.tlsrpt_attributes("a.example", policy)[2:4] == (
            "mx_host_pattern=mail.a.example",
            "mx_host_pattern=*.a.example",
        )
        info = PolicyInfo.for_sts("a.example", policy)
        assert info.mx_host_patterns == ("mail.a.example", "*.a.example")
        assert info.mx_host_patterns[1] is policy._mx[1]
        assert info.policy_strings == policy.lines
        upper = Policy.from_text(_body("a.example").replace("*.a", "*.A"))
        assert PolicyInfo.for_sts("a.example", upper).mx_host_patterns[1] == "*.a.example"
        assert protocol.match_patterns(upper) == ("mail.a.example", ".a.example")
        assert PolicyInfo("sts", "a.example", (), ("MX.A.example",)).mx_host_patterns == (
            "mx.a.example",
        )


class TestPatternTable:
    def test_compact_forms(self):
        plain = MXPattern.from_text("mail.example.com")
        star = MXPattern.from_text("*.example.net")
        kept, table = _compact_patterns((plain, star))
        assert isinstance(kept, _PatternKeys)
        assert table is kept
        assert kept.patterns() == (plain, star)
        # A duplicate, a pattern written in another case, or more than four: kept as is.
        for patterns in (
            (plain, plain),
            (MXPattern.from_text("MAIL.example.com"),),
            (MXPattern.from_text("*.Example.net"),),
            tuple(MXPattern.from_text(f"m{i}.example") for i in range(5)),
        ):
            kept, table = _compact_patterns(patterns)
            assert kept is patterns
            assert set(table) == {str(p) for p in patterns}

    def test_star_names_never_match(self):
        patterns = MXPatternSet([MXPattern.from_text("*.example.net")])
        assert not patterns.matches("*.example.net")
        assert not patterns.matches("*.a.example.net")
        assert patterns.matches("a.example.net")
        assert not patterns.matches("a.b.example.net")
        assert not patterns.matches(".example.net")

    @pytest.mark.parametrize(
        ("text", "normal"),
        [
            ("mail.example.com", True),
            ("a", True),
            ("a-b.c", True),
            ("", False),
            ("Mail.example.com", False),
            ("mail.example.com.", False),
            (".mail", False),
            ("-a.b", False),
            ("a-.b", False),
            ("a.-b", False),
            ("a..b", False),
            ("xn--mx-lka.example", False),
            ("a_b.example", False),
            ("a" * 63 + ".example", True),
            ("a" * 64 + ".example", False),
            (".".join(["a" * 63] * 4), False),
        ],
    )
    def test_is_normal_name(self, text, normal):
        assert is_normal_name(text) is normal
        if normal:
            assert to_alabel(text) == text
        assert is_normal_name("*." + text, 2) is normal

    def test_pattern_from_text_fast_path(self):
        pattern = MXPattern.from_text("*.example.net")
        assert (pattern.host, pattern.wildcard, pattern.text) == (
            "example.net",
            True,
            "*.example.net",
        )
        plain = MXPattern.from_text("mail.example.net")
        assert plain.host is plain.text

    def test_entry_domain_check(self):
        assert CacheEntry("a.example").domain == "a.example"
        assert CacheEntry("xn--mx-lka.example").domain == "xn--mx-lka.example"
        with pytest.raises(ValueError, match="lower-case A-label"):
            CacheEntry("A.example")
