"""
The MTA-STS policy file (RFC 8461 §3.2): parse, serialise, match MX hosts.

A policy is served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` as
lines of ``key: value``::

    version: STSv1
    mode: enforce
    mx: mail.example.com
    mx: *.example.net
    max_age: 604800

:meth:`Policy.from_text` follows the ABNF strictly by default (AMB-01): any
line that does not fit makes the whole policy invalid, which the policy
machine reports as ``sts-policy-invalid``. :func:`scan_policy` is the same
parser, but it collects every problem instead of stopping at the first, and
keeps the fields it read; the linter uses it.

Nearly every body served is valid, so :meth:`Policy.from_text` first tries a
fast path (``_parse_valid``): one regular-expression pass over the lines, no
per-field objects, and no second validation in the constructor. A body it
does not take goes through the scanner, so every error is reported exactly as
:func:`scan_policy` reports it; the tests check that the two agree. (This is why
the module is over 600 lines: the fast path and the scanner it must agree with
stay side by side.)
"""

from __future__ import annotations

import enum
import functools
import re
import sys
from collections.abc import Collection, Iterable
from typing import cast

import attrs

from ._args import require_str, require_text
from ._names import to_alabel
from .exceptions import PolicySyntaxError
from .mx import (
    MXPattern,
    _compact_patterns,
    _is_canonical,
    _PatternKeys,
    _table_matches,
)

__all__ = [
    "MAX_AGE_LIMIT",
    "MAX_POLICY_BYTES",
    "RESERVED_KEYS",
    "Mode",
    "Policy",
    "PolicyField",
    "PolicyScan",
    "policy_url",
    "scan_policy",
]

MAX_AGE_LIMIT = 31557600
"""RFC 8461 §3.2: the largest ``max_age`` honoured, in seconds (about one year, AMB-05)."""

MAX_POLICY_BYTES = 65536
"""RFC 8461 §3.3: the largest policy body accepted, in bytes (AMB-08)."""

_MAX_AGE_DIGITS_LIMIT = 9999999999  # RFC 8461 §3.2: sts-policy-max-age-value = 1*10(DIGIT)

RESERVED_KEYS = frozenset({"version", "mode", "max_age", "mx"})
"""RFC 8461 §3.2: the keys with a grammar of their own (AMB-15); all others are extensions."""

# RFC 8461 §3.2: sts-policy-ext-name =
#   sts-policy-alphanum *31(sts-policy-alphanum / "_" / "-" / ".")
# (the RFC's "sta-policy-alphanum" is a typo, docs/errata.md). Reserved keys fit it too.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
# RFC 8461 §3.2: sts-policy-max-age-value = 1*10(DIGIT); ASCII digits only.
_MAX_AGE = re.compile(r"[0-9]{1,10}\Z")
# CTLs other than HTAB; HTAB is only legal in the WSP around a value.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What an extension value may not contain anywhere: CTLs (HTAB included) and,
# for values built in code, lone surrogates (not UTF-8, RFC 3629).
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_WSP = " \t"
_BOM = "\ufeff"
_TERMS_STRICT = re.compile(r"(\r\n|\n)")
# Lenient mode (AMB-01) also takes a bare CR as a terminator.
_TERMS_LENIENT = re.compile(r"(\r\n|\n|\r)")
# The fast path (_parse_valid) matches a body line by line with this. A match starts
# at a line start (MULTILINE "^") and is one whole field line, per RFC 8461 §3.2:
#   sts-policy-ext-name ":" *WSP value *WSP, then CRLF, LF or the end of the body;
# the value is runs of characters other than CTL (HTAB included) and SP, joined by
# runs of SP: the sts-policy-ext-value grammar, which every reserved value fits too.
# No part of a line can match two ways, so the quantifiers are possessive: no
# backtracking, linear time on any input.
# Groups: the line without its terminator, the key, the value.
_FIELD_LINE = re.compile(
    r"^(([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*+"
    r"([^\x00-\x20\x7f]++(?: ++[^\x00-\x20\x7f]++)*+)[ \t]*+)(?:\r?\n|\Z)",
    re.MULTILINE,
)


class Mode(enum.StrEnum):
    """
    The ``mode`` of a policy (RFC 8461 §3.2, §5).

    ``.value`` is the RFC token, compared case-sensitively (STS-POL-03).
    """

    ENFORCE = "enforce"
    """Do not deliver to an MX that fails MX matching or certificate validation."""

    TESTING = "testing"
    """Deliver anyway, but report failures with TLS-RPT."""

    NONE = "none"
    """The domain has no active policy (used to opt out of MTA-STS)."""


# RFC 8461 §3.2 (STS-POL-03): the mode tokens, matched case-sensitively.
_MODES = {mode.value: mode for mode in Mode}


def policy_url(domain: str) -> str:
    """
    Return the URL a policy for ``domain`` is fetched from (RFC 8461 §3.2, STS-FETCH-01).

    Args:
        domain: The policy domain: U-label or A-label, any case, with or
            without a trailing dot.

    Returns:
        ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` with the domain
        as a lower-case A-label.

    Raises:
        smtpsts.DomainNameError: ``domain`` is not a valid host name.
    """
    return f"https://mta-sts.{to_alabel(domain)}/.well-known/mta-sts.txt"


def _extension_value_problem(value: str) -> tuple[str, int] | None:
    # RFC 8461 §3.2: sts-policy-ext-value = sts-policy-vchar
    #   [*(%x20 / sts-policy-vchar) sts-policy-vchar]; vchar = %x21-7E / UTF-8 (no CTLs).
    if not value:
        return "an extension value must not be empty", 0
    bad = _BAD_VALUE_CHAR.search(value)
    if bad is not None:
        return f"character {bad.group()!r} is not allowed in a value", bad.start()
    if value[0] == " " or value[-1] == " ":
        return "an extension value must not start or end with a space", 0
    return None


def _check_max_age(_instance: object, _attribute: object, value: int) -> None:
    if not 0 <= value <= _MAX_AGE_DIGITS_LIMIT:
        raise ValueError(f"max_age must be 0 to {_MAX_AGE_DIGITS_LIMIT}, not {value!r}")


def _check_extensions(
    _instance: object, _attribute: object, value: tuple[tuple[str, str], ...]
) -> None:
    seen = set()
    for key, val in value:
        if not _KEY.match(key) or key in RESERVED_KEYS or key in seen:
            raise ValueError(f"bad, reserved or repeated extension key {key!r}")
        seen.add(key)
        problem = _extension_value_problem(val)
        if problem is not None:
            raise ValueError(f"extension {key!r}: {problem[0]}")


def _to_patterns(value: Iterable[MXPattern] | _PatternKeys) -> tuple[MXPattern, ...]:
    # A converter, not a validator: the matcher is built from it before validators run.
    if isinstance(value, _PatternKeys):
        # What a policy keeps for mx (attrs.evolve passes it back in).
        return value.patterns()
    patterns = tuple(value)
    for item in patterns:
        if not isinstance(item, MXPattern):
            raise TypeError(f"mx must hold MXPattern values, not {item!r}")
    return patterns


def _to_lines(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _split_lines(text: str) -> tuple[str, ...]:
    # RFC 8461 §3.2 (STS-POL-18): the lines of a strictly valid body, terminators
    # (CRLF or LF, the last one optional) stripped. The version, mode and max_age
    # lines repeat across policies: one copy of each serves every policy that asks
    # (sys.intern), the mx lines are the policy's own.
    return tuple(
        [
            line if line.startswith("mx:") else sys.intern(line)
            for line in text.replace("\r\n", "\n").removesuffix("\n").split("\n")
        ]
    )


def _mx_eq_key(value: tuple[MXPattern, ...] | _PatternKeys) -> tuple[object, ...]:
    # Policy equality compares the mx patterns, however the policy keeps them.
    return value.patterns() if isinstance(value, _PatternKeys) else value


# RFC 8461 §3.2 max_age values that most policies use (one day, one and two weeks,
# 30 days, one year): one int object each serves every cached policy.
_COMMON_MAX_AGE = {str(n): n for n in (86400, 604800, 1209600, 2592000, 31536000, 31557600)}


def _to_extensions(value: object) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, dict) else value
    return tuple((str(k), str(v)) for k, v in items)  # type: ignore[attr-defined]


@attrs.frozen(kw_only=True, repr=False)
class Policy:
    """
    A parsed MTA-STS policy (RFC 8461 §3.2).

    Equality and hashing compare what the policy means -- :attr:`mode`,
    :attr:`mx` (order included), :attr:`max_age` and :attr:`extensions` --
    and ignore where it came from (:attr:`text`, :attr:`lines`,
    :attr:`lenient`). So ``Policy.from_text(p.to_text()) == p`` for every
    policy, while ``p.text`` keeps the body exactly as served.

    Attributes:
        mode: The policy mode.
        max_age: ``max_age`` as written (STS-POL-04); see
            :attr:`effective_max_age` for the cache lifetime.
        extensions: Unknown fields as ``(key, value)`` pairs in order, the
            first occurrence of each key only (STS-POL-10, STS-POL-12).
        text: The body as received, decoded from UTF-8. For a policy built
            in code, :meth:`to_text`.
        lenient: Whether the body only parsed thanks to lenient mode (AMB-01).

    :attr:`mx` (the MX patterns) and :attr:`lines` (the body's lines) are
    read-only properties, to save memory (a cache holds one policy per
    domain). A policy whose lines are its text split at the terminators
    (every strictly parsed one) keeps only the text and splits it on each
    read of :attr:`lines`; a policy whose patterns are written in canonical
    form (lower-case, no duplicates, at most four: nearly all) keeps only
    their matching keys and builds :attr:`mx` from them on each read. The
    values are the same either way; only identity (``p.mx is p.mx``) is not
    kept.
    """

    mode: Mode = attrs.field(converter=Mode)
    # The init parameters are "mx" and "lines" (attrs drops the underscore); the
    # public names are the properties below.
    _mx: tuple[MXPattern, ...] | _PatternKeys = attrs.field(
        default=(), converter=_to_patterns, eq=_mx_eq_key, repr=False
    )
    max_age: int = attrs.field(validator=_check_max_age)
    extensions: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_to_extensions, validator=_check_extensions
    )
    text: str = attrs.field(eq=False, repr=False)
    # None: the lines are _split_lines(text).
    _lines: tuple[str, ...] | None = attrs.field(
        default=None, eq=False, repr=False, converter=_to_lines
    )
    lenient: bool = attrs.field(default=False, eq=False)
    # The matching keys of the mx patterns (mx._table_matches).
    _matcher: Collection[str] = attrs.field(init=False, eq=False, repr=False)

    @text.default
    def _default_text(self) -> str:
        return self.to_text()

    def __attrs_post_init__(self) -> None:
        # The converter made it a tuple of patterns; keep it in its smallest form.
        mx = cast("tuple[MXPattern, ...]", self._mx)
        # RFC 8461 §3.2 (STS-POL-06): "mx" is required unless the mode is "none".
        if self.mode is not Mode.NONE and not mx:
            raise ValueError(f"a {self.mode.value!r} policy needs at least one mx pattern")
        kept, table = _compact_patterns(mx)
        object.__setattr__(self, "_mx", kept)
        object.__setattr__(self, "_matcher", table)
        if self._lines is not None and self._lines == _split_lines(self.text):
            object.__setattr__(self, "_lines", None)

    @property
    def mx(self) -> tuple[MXPattern, ...]:
        """
        The MX patterns in policy order (STS-POL-07); empty only for :attr:`Mode.NONE`.

        Each ``mx`` value as written is the pattern's :attr:`smtpsts.mx.MXPattern.text`.
        """
        mx = self._mx
        return mx.patterns() if isinstance(mx, _PatternKeys) else mx

    def _mx_keys(self) -> tuple[str, ...]:
        # str() of each mx pattern, in order, without building the patterns when
        # the policy keeps only their keys (the Postfix answer and TLS-RPT mx-host).
        mx = self._mx
        return mx if isinstance(mx, _PatternKeys) else tuple([str(p) for p in mx])

    @property
    def lines(self) -> tuple[str, ...]:
        """
        The body's lines with terminators stripped (STS-POL-19): the TLS-RPT ``policy-string``.

        For a lenient parse, the lines as lenient mode split them (AMB-01).
        """
        lines = self._lines
        return _split_lines(self.text) if lines is None else lines

    def __repr__(self) -> str:
        return (
            f"{type(self).__qualname__}(mode={self.mode!r}, mx={self.mx!r}, "
            f"max_age={self.max_age!r}, extensions={self.extensions!r}, lenient={self.lenient!r})"
        )

    @property
    def effective_max_age(self) -> int:
        """
        The cache lifetime in seconds (AMB-05, STS-POL-05).

        :attr:`max_age` capped at :data:`MAX_AGE_LIMIT` (31557600).
        """
        return min(self.max_age, MAX_AGE_LIMIT)

    @classmethod
    def from_text(cls, text: str | bytes, *, lenient: bool = False) -> Policy:
        """
        Parse a policy body (RFC 8461 §3.2).

        Args:
            text: The body: ``bytes`` as served (UTF-8), or already decoded.
            lenient: Also tolerate a leading BOM, blank lines, a bare CR as
                line terminator, reserved keys and ``mode`` values in any
                case, and U-labels or a trailing dot in ``mx`` (AMB-01,
                AMB-09, AMB-27). A body that is valid strictly parses
                exactly as in strict mode; only a body that needed the
                tolerance gives ``lenient=True``.

        Returns:
            The policy.

        Raises:
            smtpsts.PolicySyntaxError: The body is over 65536 bytes, not
                UTF-8, or does not fit the grammar. The first problem is
                reported, with ``line``, ``offset``, ``conformance`` and a
                ``reason`` code such as ``missing-mode`` or ``bad-max-age``.
                Use :func:`scan_policy` to get every problem.
            TypeError: *text* is neither ``str`` nor ``bytes``.
        """
        body, _ = _decode(text)
        if body:
            # Nearly every body served is valid: take it in one regex pass. Only a
            # body that fails it goes through the scanner, for the exact error (or
            # for the lenient parse, which the fast path never does).
            policy = _parse_valid(body)
            if policy is not None:
                return policy
        scan = scan_policy(text, lenient=lenient)
        if scan.policy is None:
            raise scan.errors[0]
        return scan.policy

    @classmethod
    def _from_parsed(
        cls,
        *,
        mode: Mode,
        mx: tuple[MXPattern, ...] | _PatternKeys,
        matcher: Collection[str],
        max_age: int,
        extensions: tuple[tuple[str, str], ...],
        text: str,
    ) -> Policy:
        # The constructor of _parse_valid(), for values it has already proven
        # (STS-POL-02..13): the same fields as __init__ sets, without the converters,
        # validators and checks that would only prove them again. A strictly valid
        # body's lines are its text split at the terminators: none are kept.
        policy = object.__new__(cls)
        object.__setattr__(policy, "mode", mode)
        object.__setattr__(policy, "_mx", mx)
        object.__setattr__(policy, "max_age", max_age)
        object.__setattr__(policy, "extensions", extensions)
        object.__setattr__(policy, "text", text)
        object.__setattr__(policy, "_lines", None)
        object.__setattr__(policy, "lenient", False)
        object.__setattr__(policy, "_matcher", matcher)
        return policy

    def to_text(self) -> str:
        """
        Serialise the policy (STS-POL-20).

        Returns:
            ``version``, ``mode``, each ``mx``, ``max_age``, then the
            extensions, as ``key: value`` lines each ended by CRLF.
        """
        out = ["version: STSv1", f"mode: {self.mode.value}"]
        out += [f"mx: {pattern}" for pattern in self.mx]
        out.append(f"max_age: {self.max_age}")
        out += [f"{key}: {value}" for key, value in self.extensions]
        return "\r\n".join(out) + "\r\n"

    def matches(self, mx_host: str) -> bool:
        """
        Tell whether an MX host is allowed by this policy (RFC 8461 §4.1, STS-MX-01).

        Args:
            mx_host: The MX target name as found in the MX RRset (not a
                CNAME target, STS-MX-06), or the domain itself for an
                implicit MX (STS-MX-08). Any case, one trailing dot allowed,
                U-labels converted.

        Returns:
            Whether at least one ``mx`` pattern matches; ``False`` for a
            malformed name. The mode is not consulted: under ``none`` the
            caller does not apply the policy at all.

        Raises:
            TypeError: *mx_host* is not a ``str`` (decode bytes first).
        """
        require_str(mx_host, "Policy.matches()")
        return _table_matches(self._matcher, mx_host)


@attrs.frozen
class PolicyField:
    """
    One ``key: value`` line of a policy body, as :func:`scan_policy` read it.

    Attributes:
        line: 1-based line number.
        key: The key as written (lower-cased for reserved keys in lenient mode).
        value: The value without the surrounding whitespace.
        offset: 0-based offset of the value in the line.
    """

    line: int
    key: str
    value: str
    offset: int


@attrs.frozen
class PolicyScan:
    r"""
    Everything :func:`scan_policy` found in a policy body.

    Attributes:
        policy: The policy, or ``None`` when there were errors.
        errors: Every problem found, in line order, then the missing fields.
        fields: Every line that had the shape ``key: value``, in order.
        terminators: The line terminator of each line (``"\\r\\n"``,
            ``"\\n"``, ``"\\r"`` in lenient mode, or ``""`` for a last line
            without one); empty when the body could not be split into lines.
    """

    policy: Policy | None
    errors: tuple[PolicySyntaxError, ...]
    fields: tuple[PolicyField, ...] = ()
    terminators: tuple[str, ...] = ()


def _where(body: str, index: int) -> tuple[int, int]:
    line_start = body.rfind("\n", 0, index) + 1
    return body.count("\n", 0, index) + 1, index - line_start


def _not_utf8(detail: str, where: str) -> PolicySyntaxError:
    # RFC 8461 §3.2 (STS-POL-17): the body is UTF-8; ``where`` is the text before the fault.
    line, offset = _where(where, len(where))
    return PolicySyntaxError(
        detail, line=line, offset=offset, conformance=("STS-POL-17",), reason="not-utf8"
    )


def _decode(text: str | bytes) -> tuple[str | None, PolicySyntaxError | None]:
    if isinstance(text, str):
        # Fast path: an ASCII str is its own UTF-8 encoding.
        size = len(text) if text.isascii() else -1
        if size < 0:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError as e:
                return None, _not_utf8(
                    f"policy contains {text[e.start]!r}, which is not a Unicode scalar value",
                    text[: e.start],
                )
        body = text
    else:
        require_text(text, "Policy.from_text()")
        size = len(text)
        body = ""
    if size > MAX_POLICY_BYTES:
        # RFC 8461 §3.3 (AMB-08): Policy Hosts SHOULD keep policies within 64 KiB.
        return None, PolicySyntaxError(
            f"policy is {size} bytes; at most {MAX_POLICY_BYTES} are accepted",
            offset=MAX_POLICY_BYTES,
            conformance=("AMB-08",),
            reason="policy-too-large",
        )
    if isinstance(text, bytes):
        try:
            body = text.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, _not_utf8(
                f"policy is not valid UTF-8: byte {text[e.start]:#04x} at byte {e.start}",
                text[: e.start].decode("utf-8"),
            )
    return body, None


def _parse_mx_values(
    values: tuple[str, ...],
) -> tuple[tuple[MXPattern, ...] | _PatternKeys, Collection[str]]:
    # The fast path's mx step (STS-POL-07, STS-POL-08): what the policy keeps for mx,
    # and the matching table (mx._compact_patterns). Usually every value is already
    # canonical and the values themselves are both, with no MXPattern built.
    if (
        len(values) <= _SMALL_MX
        and all(_is_canonical(value) for value in values)
        and len(set(values)) == len(values)
    ):
        keys = _PatternKeys(values)
        return keys, keys
    return _compact_patterns(tuple([MXPattern.from_text(value) for value in values]))


# The same step, remembered per list of values: hosted mail puts the same list in
# policy after policy, a refetch repeats it, and so does every load of a cache entry
# from a persistent store (CacheEntry.from_json parses the stored policy again).
# The results are immutable, so policies share them. Errors are not cached, and
# only short lists (policies name one to a few MX hosts), so the cache stays small.
_parse_mx_values_cached = functools.lru_cache(maxsize=256)(_parse_mx_values)
_MAX_CACHED_MX = 16
# At most this many patterns are kept as a tuple of keys (mx._SMALL_SET).
_SMALL_MX = 4


def _parse_valid(body: str) -> Policy | None:
    # The fast path of Policy.from_text(): the policy if ``body`` (decoded, not
    # empty) is strictly valid, else None. It accepts exactly the bodies that
    # _scan_body(lenient=False) accepts, and builds the same Policy (the tests
    # check both on arbitrary input); the scanner then explains any rejection.
    found = _FIELD_LINE.findall(body)
    # RFC 8461 §3.2 (STS-POL-01, STS-POL-16): every line is a field. A match starts
    # at a line start and ends with the line, so that holds iff each line matched.
    if len(found) != body.count("\n") + (not body.endswith("\n")):
        return None
    first: dict[str, str] = {}
    mx_values: list[str] = []
    for _, key, value in found:
        if key == "mx":
            # STS-POL-07, STS-POL-13: every mx line counts and must fit its grammar.
            mx_values.append(value)
        else:
            # RFC 8461 §3.2 (STS-POL-12, STS-POL-13, AMB-15): the first occurrence of
            # any other key counts; later ones are ignored whatever their value
            # (_FIELD_LINE has checked that they are well-formed field lines).
            first.setdefault(key, value)
    # The first version, mode and max_age must fit their own grammar (STS-POL-02..04):
    # they are never read as extensions (STS-POL-13).
    version = first.pop("version", None)
    mode_value = first.pop("mode", None)
    max_age_value = first.pop("max_age", None)
    if (
        version != "STSv1"
        or mode_value is None
        or mode_value not in _MODES
        or max_age_value is None
        or not _MAX_AGE.match(max_age_value)
    ):
        return None
    # STS-POL-10, STS-POL-11: what is left are the extensions, in order.
    extensions = first
    try:
        parse_mx = _parse_mx_values_cached if len(mx_values) <= _MAX_CACHED_MX else _parse_mx_values
        mx, matcher = parse_mx(tuple(mx_values))
    except PolicySyntaxError:
        return None
    mode = _MODES[mode_value]
    if mode is not Mode.NONE and not mx:  # STS-POL-06
        return None
    return Policy._from_parsed(  # noqa: SLF001
        mode=mode,
        mx=mx,
        matcher=matcher,
        max_age=_COMMON_MAX_AGE.get(max_age_value) or int(max_age_value),
        extensions=tuple(extensions.items()),
        text=body,
    )


def scan_policy(text: str | bytes, *, lenient: bool = False) -> PolicyScan:
    """
    Parse a policy body and collect every problem (RFC 8461 §3.2).

    :meth:`Policy.from_text` raises the first of :attr:`PolicyScan.errors`.
    Each line is checked on its own, so one bad line does not hide the next;
    the size and UTF-8 checks stop the scan.

    Args:
        text: The body, as for :meth:`Policy.from_text`.
        lenient: As for :meth:`Policy.from_text`.

    Returns:
        The policy (when valid), the errors, and the fields and line
        terminators that were read.
    """
    body, problem = _decode(text)
    if body is None:
        assert problem is not None  # _decode returns one or the other
        return PolicyScan(None, (problem,))
    if not body:
        # RFC 8461 §3.2: sts-policy-record needs at least one field.
        return PolicyScan(
            None,
            (
                PolicySyntaxError(
                    "policy is empty",
                    line=1,
                    offset=0,
                    conformance=("STS-POL-01",),
                    reason="empty-policy",
                ),
            ),
        )
    if lenient:
        # AMB-01: a body that is valid strictly parses exactly as in strict mode,
        # so lenient mode accepts a superset and ``lenient`` marks real tolerance.
        strict = _scan_body(body, lenient=False)
        if strict.policy is not None:
            return strict
    return _scan_body(body, lenient=lenient)


def _scan_body(body: str, *, lenient: bool) -> PolicyScan:
    errors: list[PolicySyntaxError] = []

    def error(
        detail: str, line: int | None, offset: int | None, ids: tuple[str, ...], reason: str
    ) -> None:
        errors.append(
            PolicySyntaxError(detail, line=line, offset=offset, conformance=ids, reason=reason)
        )

    # RFC 8461 §3.2 (STS-POL-01, STS-POL-18): sts-policy-term = LF / CRLF, mixes allowed,
    # the last terminator optional (erratum 6253).
    pieces = (_TERMS_LENIENT if lenient else _TERMS_STRICT).split(body)
    raw_lines = pieces[0::2]
    terminators = [*pieces[1::2], ""]
    if len(raw_lines) > 1 and raw_lines[-1] == "":
        raw_lines.pop()
        terminators.pop()
    if raw_lines[0].startswith(_BOM):
        raw_lines[0] = raw_lines[0][1:]
        if not lenient:
            # STS-POL-16 (AMB-01): a byte-order mark is not part of the grammar.
            error("policy starts with a byte-order mark (U+FEFF)", 1, 0, ("STS-POL-16",), "bom")

    fields: list[PolicyField] = []
    version: str | None = None
    mode: Mode | None = None
    max_age: int | None = None
    mx: list[MXPattern] = []
    extensions: dict[str, str] = {}
    seen: set[str] = set()
    for number, line in enumerate(raw_lines, 1):
        if line == "" or (lenient and line.strip(_WSP) == ""):
            if not lenient:
                # STS-POL-16: no blank lines between fields (sts-policy-record ABNF).
                error("blank line", number, 0, ("STS-POL-16",), "blank-line")
            continue
        ctl = _CTL.search(line)
        if ctl is not None:
            if ctl.group() == "\r":
                # STS-POL-16: a CR must be followed by LF.
                error(
                    "carriage return not followed by a line feed",
                    number,
                    ctl.start(),
                    ("STS-POL-01", "STS-POL-16"),
                    "bare-cr",
                )
            else:
                error(
                    f"control character {ctl.group()!r}",
                    number,
                    ctl.start(),
                    ("STS-POL-16",),
                    "control-character",
                )
            continue
        colon = line.find(":")
        if colon < 0:
            error(
                "line is not 'key: value' (no ':')",
                number,
                0,
                ("STS-POL-01", "STS-POL-16"),
                "missing-colon",
            )
            continue
        key = line[:colon]
        if key[:1] in (" ", "\t"):
            # RFC 8461 §3.2 (STS-POL-15): a field starts at the beginning of the line.
            error(
                "whitespace at the start of a line",
                number,
                0,
                ("STS-POL-15",),
                "leading-whitespace",
            )
            continue
        if key[-1:] in (" ", "\t"):
            # RFC 8461 §3.2 (STS-POL-15): sts-policy-field-delim = ":" *WSP, nothing before ':'.
            error(
                f"whitespace before ':' after key {key.rstrip(_WSP)!r}",
                number,
                len(key.rstrip(_WSP)),
                ("STS-POL-15",),
                "whitespace-before-colon",
            )
            continue
        if not _KEY.match(key):
            # RFC 8461 §3.2 (STS-POL-11): sts-policy-ext-name.
            error(
                f"{key!r} is not a valid key (a letter or digit, then up to 31 letters, "
                "digits, '_', '-' or '.')",
                number,
                0,
                ("STS-POL-11",),
                "bad-key",
            )
            continue
        if lenient and key.lower() in RESERVED_KEYS:
            key = key.lower()
        rest = line[colon + 1 :]
        value = rest.strip(_WSP)
        start = len(line) - len(rest.lstrip(_WSP))
        fields.append(PolicyField(number, key, value, start))
        first = key not in seen
        seen.add(key)
        if key not in RESERVED_KEYS or (not first and key != "mx"):
            # RFC 8461 §3.2 (STS-POL-10, STS-POL-11, STS-POL-22): unknown fields are
            # ignored but kept; only the first ':' separates key and value. And
            # (STS-POL-12, STS-POL-13, AMB-15) "If any non-repeated field [...] is
            # duplicated, all entries except for the first SHALL be ignored", whatever
            # their value; such a line must still be a field of the ABNF, which a value
            # fitting the extension grammar is.
            bad = _extension_value_problem(value)
            if bad is not None:
                error(
                    f"{key}: {bad[0]}",
                    number,
                    start + bad[1],
                    ("STS-POL-11",),
                    "bad-extension-value",
                )
            elif first:
                extensions[key] = value
        # STS-POL-13 (AMB-15): the first line of a reserved key, and every mx line,
        # must fit that key's grammar; it is never read as an extension.
        elif key == "version":
            if value != "STSv1":
                # RFC 8461 §3.2 (STS-POL-02): sts-policy-version-value = %s"STSv1".
                error(
                    f"version must be 'STSv1', not {value!r}",
                    number,
                    start,
                    ("STS-POL-02", "STS-POL-13"),
                    "bad-version",
                )
            else:
                version = value
        elif key == "mode":
            try:
                # RFC 8461 §3.2 (STS-POL-03): "testing" / "enforce" / "none", case-sensitive.
                parsed_mode = Mode(value.lower() if lenient else value)
            except ValueError:
                error(
                    f"mode must be 'enforce', 'testing' or 'none', not {value!r}",
                    number,
                    start,
                    ("STS-POL-03", "STS-POL-13"),
                    "bad-mode",
                )
            else:
                mode = parsed_mode
        elif key == "max_age":
            if not _MAX_AGE.match(value):
                # RFC 8461 §3.2 (STS-POL-04): sts-policy-max-age-value = 1*10(DIGIT).
                error(
                    f"max_age must be 1 to 10 digits, not {value!r}",
                    number,
                    start,
                    ("STS-POL-04", "STS-POL-13"),
                    "bad-max-age",
                )
            else:
                max_age = int(value)
        else:
            try:
                # RFC 8461 §3.2 (STS-POL-07, STS-POL-08): one ["*."] Domain per mx line.
                mx.append(MXPattern.from_text(value, lenient=lenient))
            except PolicySyntaxError as e:
                ids = (*e.conformance, "STS-POL-13")
                if "," in value or " " in value:
                    ids = ("STS-POL-07", *ids)
                error(e.detail, number, start + (e.offset or 0), ids, "bad-mx")

    # RFC 8461 §3.2: version, mode and max_age are "required once".
    if "version" not in seen:
        error(
            "the version field is missing", None, None, ("STS-POL-02", "AMB-03"), "missing-version"
        )
    if "mode" not in seen:
        hint = _case_hint("mode", seen)
        error(
            f"the mode field is missing{hint}",
            None,
            None,
            ("STS-POL-03", "STS-POL-14") if hint else ("STS-POL-03",),
            "missing-mode",
        )
    if "max_age" not in seen:
        hint = _case_hint("max_age", seen)
        error(
            f"the max_age field is missing{hint}",
            None,
            None,
            ("STS-POL-04", "STS-POL-14") if hint else ("STS-POL-04",),
            "missing-max-age",
        )
    if mode in (Mode.ENFORCE, Mode.TESTING) and "mx" not in seen:
        # RFC 8461 §3.2 (STS-POL-06): mx is required unless the mode is "none".
        error(
            f"mode {mode.value!r} needs at least one mx field",
            None,
            None,
            ("STS-POL-06",),
            "missing-mx",
        )

    policy = None
    if not errors:
        assert version is not None
        assert mode is not None
        assert max_age is not None
        policy = Policy(
            mode=mode,
            mx=tuple(mx),
            max_age=max_age,
            extensions=tuple(extensions.items()),
            text=body,
            lines=tuple(raw_lines),
            lenient=lenient,
        )
    return PolicyScan(policy, tuple(errors), tuple(fields), tuple(terminators))


def _case_hint(key: str, seen: set[str]) -> str:
    # STS-POL-14: keys are case-sensitive; point at a near miss such as "Mode" or "max-age".
    for other in sorted(seen):
        if other != key and other.lower().replace("-", "_") == key:
            return f" (keys are case-sensitive and exact: found {other!r})"
    return ""
