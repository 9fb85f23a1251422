"""
MX host patterns of an MTA-STS policy and how MX names match them (RFC 8461 §3.2, §4.1).

A policy's ``mx:`` lines name the hosts allowed to receive mail for the policy
domain: either an exact host name or ``*.`` plus a suffix, where the wildcard
stands for exactly one left-most label. Patterns are stored as lower-case
A-labels without a trailing dot (STS-POL-23); the text as the policy wrote it
is kept in :attr:`MXPattern.text` for TLS-RPT.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final, NoReturn

import attrs

from ._args import require_str
from ._names import MAX_LABEL, MAX_NAME, is_normal_name, to_alabel
from .exceptions import DomainNameError, PolicySyntaxError

__all__ = ["MXPattern", "MXPatternSet", "normalize_mx_host"]

# RFC 5321 §4.1.2: Domain = sub-domain *("." sub-domain);
# sub-domain = Let-dig [Ldh-str]; Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig.
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\Z"
)
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")

_CONFORMANCE = ("STS-POL-08",)


def _error(text: str, detail: str, offset: int, ids: tuple[str, ...] = _CONFORMANCE) -> NoReturn:
    raise PolicySyntaxError(
        f"mx pattern {text!r}: {detail}", offset=offset, conformance=ids, reason="bad-mx"
    )


def normalize_mx_host(host: str) -> str | None:
    """
    Normalise an MX host name for matching, or say that it cannot match anything.

    ASCII names take a fast path: lower-cased, with one trailing root dot
    removed (RFC 8461 §4.1, STS-MX-04, STS-MX-05). Other names are converted
    to A-labels (STS-MX-07).

    Args:
        host: The MX target name as DNS gave it (or the domain itself for an
            implicit MX, STS-MX-08), any case, with or without one trailing dot,
            as U-labels or A-labels.

    Returns:
        The lower-case A-label form without the trailing dot, or ``None``
        when the name is not a valid host name and so matches no pattern.
        ASCII names are not fully validated here; callers compare the result
        against validated patterns, so a malformed name can only fail to match.
    """
    if host.isascii():
        name = host.lower()
        return name.removesuffix(".")
    try:
        return to_alabel(host)
    except DomainNameError:
        return None


def _wildcard_head_ok(name: str, dot: int) -> bool:
    # The wildcard stands for exactly one valid host-name label (RFC 8461 §4.1);
    # a malformed label in that position is a malformed host, which never matches.
    # ``name`` is ASCII and lower-case here; str.isalnum() is then exactly [a-z0-9].
    if dot > MAX_LABEL or len(name) > MAX_NAME:
        return False
    head = name[:dot]
    if head.isalnum():
        return True
    if head[0] == "-" or head[-1] == "-" or not head.replace("-", "").isalnum():
        return False
    if head.startswith("xn--"):
        try:
            to_alabel(name)
        except DomainNameError:
            return False
    return True


@attrs.frozen
class MXPattern:
    """
    One ``mx`` value of an MTA-STS policy (RFC 8461 §3.2).

    Equality and hashing use :attr:`host` and :attr:`wildcard` only, so
    ``MXPattern.from_text("MAIL.example.com") == MXPattern("mail.example.com")``.

    Attributes:
        host: The host name, or for a wildcard the suffix after ``*.``, as a
            lower-case A-label without a trailing dot.
        wildcard: Whether the pattern starts with ``*.`` and so stands for
            every name with exactly one more label on the left.
        text: The pattern exactly as the policy wrote it (STS-POL-23), for
            TLS-RPT ``mx-host``. Not part of equality. Defaults to
            ``str(pattern)`` when the pattern is built directly.
    """

    host: str = attrs.field()
    wildcard: bool = False
    text: str = attrs.field(eq=False, repr=False)

    @host.validator
    def _check_host(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if to_alabel(value) != value:
            raise ValueError(
                f"MXPattern.host must be a lower-case A-label without a trailing dot: {value!r}"
            )

    @text.default
    def _default_text(self) -> str:
        return f"*.{self.host}" if self.wildcard else self.host

    @classmethod
    def from_text(cls, text: str, *, lenient: bool = False) -> MXPattern:
        """
        Parse an ``mx`` value: an RFC 5321 ``Domain``, optionally prefixed with ``*.``.

        Args:
            text: The value, without the ``mx:`` key and surrounding whitespace.
            lenient: Also accept U-labels (converted to A-labels, AMB-09) and
                one trailing dot (removed, AMB-27).

        Returns:
            The pattern, lower-cased (STS-POL-23), with the original text kept.

        Raises:
            smtpsts.PolicySyntaxError: The value is not a valid pattern: a
                wildcard other than a whole ``*.`` left-most label, a label
                that is not letters, digits and inner hyphens, a trailing dot
                or U-label in strict mode, or a name or label that is too long
                (STS-POL-08, STS-POL-09). ``offset`` points into ``text``.
            TypeError: *text* is not a ``str``.
        """
        # RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain
        require_str(text, "MXPattern.from_text()")
        if _is_canonical(text):
            # The usual case (STS-POL-08, STS-POL-23): valid, and already lower-case.
            return cls._from_key(text)
        wildcard = text.startswith("*.")
        start = 2 if wildcard else 0
        name = text[start:]
        if _DOMAIN.match(name):
            # The usual case: ASCII letter-digit-hyphen labels, so no '*', no trailing
            # dot and no U-label; to_alabel() checks the lengths and any xn-- label.
            return cls._checked_text(text, name, wildcard, start)
        star = name.find("*")
        if star >= 0:
            # RFC 8461 §4.1: '*' may only be used as the entire left-most label.
            _error(text, "'*' is only allowed as the whole left-most label '*.'", start + star)
        if lenient and name.endswith("."):
            # AMB-27: lenient mode drops one trailing dot.
            name = name[:-1]
        if not name:
            _error(text, "no domain name", start)
        if name.endswith("."):
            # AMB-27: RFC 5321 Domain has no trailing dot.
            _error(
                text, "trailing dot is not allowed", start + len(name) - 1, ("STS-POL-08", "AMB-27")
            )
        if not name.isascii():
            if not lenient:
                # RFC 8461 §3.2: internationalised names MUST be A-labels (AMB-09).
                first = next(i for i, c in enumerate(name) if not c.isascii())
                _error(
                    text,
                    "U-labels are not allowed; use the A-label (xn--) form",
                    start + first,
                    ("STS-POL-09", "AMB-09"),
                )
        elif not _DOMAIN.match(name):
            labels = name.split(".")
            bad = next(i for i, label in enumerate(labels) if not _LDH_LABEL.match(label))
            offset = start + sum(len(label) + 1 for label in labels[:bad])
            _error(text, "labels must be letters, digits and inner hyphens", offset)
        return cls._checked_text(text, name, wildcard, start)

    @classmethod
    def _checked_text(cls, text: str, name: str, wildcard: bool, start: int) -> MXPattern:
        # The last step of from_text(): ``name`` (``text`` after any "*.") is known to
        # have no '*' and, unless lenient, to be ASCII without a trailing dot.
        try:
            host = to_alabel(name)
        except DomainNameError as e:
            _error(text, e.detail, start + (e.offset or 0), ("STS-POL-08", "STS-POL-09"))
        if host == text:
            host = text  # one string for both fields (memory per cached policy)
        # to_alabel() has just validated ``host``: skip the validator's second call.
        pattern = object.__new__(cls)
        object.__setattr__(pattern, "host", host)
        object.__setattr__(pattern, "wildcard", wildcard)
        object.__setattr__(pattern, "text", text)
        return pattern

    @classmethod
    def _from_key(cls, key: str) -> MXPattern:
        # The pattern whose text and canonical form are both ``key`` (see _is_canonical):
        # a wildcard's host is ``key`` after its "*.", a plain pattern's is ``key`` itself.
        pattern = object.__new__(cls)
        wildcard = key[0] == "*"
        object.__setattr__(pattern, "host", key[2:] if wildcard else key)
        object.__setattr__(pattern, "wildcard", wildcard)
        object.__setattr__(pattern, "text", key)
        return pattern

    def __str__(self) -> str:
        return f"*.{self.host}" if self.wildcard else self.host

    def to_text(self) -> str:
        """
        Return the pattern as a policy ``mx:`` line writes it (same as ``str()``).

        Returns:
            ``host``, or ``*.host`` for a wildcard: lower-case A-labels.
        """
        return str(self)

    def matches(self, host: str) -> bool:
        """
        Tell whether an MX host name matches this pattern (RFC 8461 §4.1).

        Names compare ASCII case-insensitively, one trailing dot on ``host``
        is ignored and U-labels are converted (STS-MX-04, -05, -07). A
        wildcard covers exactly one left-most label (STS-MX-03).

        Args:
            host: The MX target name (STS-MX-06).

        Returns:
            Whether it matches; ``False`` for a malformed name.

        Raises:
            TypeError: *host* is not a ``str``.
        """
        require_str(host, "MXPattern.matches()")
        name = normalize_mx_host(host)
        if name is None:
            return False
        if not self.wildcard:
            # RFC 8461 §4.1 (STS-MX-02): a plain pattern matches only the identical name.
            return name == self.host
        # RFC 8461 §4.1 (STS-MX-03): "*.example.com" matches "mail.example.com",
        # not "example.com" nor "foo.bar.example.com".
        dot = name.find(".")
        return dot > 0 and name[dot + 1 :] == self.host and _wildcard_head_ok(name, dot)


def _is_canonical(text: str) -> bool:
    # Whether ``text`` is a valid mx value exactly as it would be stored: lower-case
    # A-labels, an optional "*." and no trailing dot, so that the pattern's text, its
    # str() and its matching key are all ``text`` itself. (With no "xn--" label,
    # to_alabel() would return the name unchanged: it need not be asked.)
    return is_normal_name(text, 2 if text.startswith("*.") else 0)


def _to_patterns(value: Iterable[MXPattern]) -> tuple[MXPattern, ...]:
    return tuple(value)


_SMALL_SET: Final = 4


class _PatternKeys(tuple[str, ...]):
    """
    The matching keys of MX patterns that can be rebuilt from their keys alone.

    A key is a pattern's canonical text: the host for a plain pattern,
    ``*.`` plus the host for a wildcard. A tuple of this type holds the keys of
    patterns, in order, whose text as written is that canonical text, without
    duplicates, and at most four of them (nearly every policy): such patterns
    are fully described by their keys, so a policy keeps only this tuple, both
    to match with and to give :attr:`smtpsts.Policy.mx` back on demand.
    Internal: not exported.
    """

    __slots__ = ()

    def patterns(self) -> tuple[MXPattern, ...]:
        """The patterns these keys stand for, in order."""
        return tuple([MXPattern._from_key(key) for key in self])  # noqa: SLF001


def _pattern_key(pattern: MXPattern) -> str:
    """
    The key ``_table_matches`` looks a pattern up by (see ``_PatternKeys``).

    Args:
        pattern: The pattern.

    Returns:
        ``pattern.host``, or ``"*." + pattern.host`` for a wildcard; the
        pattern's own ``text`` string when that is equal, so
        that no second copy is kept.
    """
    text = pattern.text
    if not pattern.wildcard:
        return text if text == pattern.host else pattern.host
    key = f"*.{pattern.host}"
    return text if text == key else key


def _compact_patterns(
    patterns: tuple[MXPattern, ...],
) -> tuple[tuple[MXPattern, ...] | _PatternKeys, Collection[str]]:
    """
    The smallest faithful form of a pattern list, and the lookup table to match with.

    Args:
        patterns: The patterns, in policy order.

    Returns:
        ``(kept, table)``: ``kept`` is a ``_PatternKeys`` when the
        patterns can be rebuilt from their keys (then ``table`` is that same
        object), else ``patterns`` itself; ``table`` holds every key once, a
        tuple when there are at most four (searched as fast as a frozenset, in
        a quarter of its memory), else a frozenset.
    """
    keys = [_pattern_key(p) for p in patterns]
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > _SMALL_SET:
        return patterns, frozenset(unique)
    if len(unique) == len(keys) and all(
        p.text is key for p, key in zip(patterns, keys, strict=True)
    ):
        table = _PatternKeys(unique)
        return table, table
    return patterns, unique


def _table_matches(table: Collection[str], host: str) -> bool:
    """
    Tell whether an MX host name matches the patterns behind a lookup table (RFC 8461 §4.1).

    Args:
        table: The keys of the patterns (see ``_pattern_key``).
        host: The MX target name, a ``str``: any case, with or without one
            trailing dot, U-labels or A-labels.

    Returns:
        Whether any pattern matches (STS-MX-01, STS-MX-09); ``False`` for a
        malformed name.
    """
    # Fast path for ASCII names (the usual case): lower-case, drop one root dot.
    if host.isascii():
        name = host.lower().removesuffix(".")
    else:
        converted = normalize_mx_host(host)
        if converted is None:
            return False
        name = converted
    if name in table:
        # RFC 8461 §4.1 (STS-MX-02): an identical name. Only wildcard keys start
        # with '*', and a name with a '*' is malformed: it matches nothing.
        return name[0] != "*"
    # RFC 8461 §4.1 (STS-MX-03): "*.example.com" matches "mail.example.com",
    # not "example.com" nor "foo.bar.example.com".
    dot = name.find(".")
    if dot <= 0 or "*" + name[dot:] not in table:
        return False
    return _wildcard_head_ok(name, dot)


@attrs.frozen
class MXPatternSet:
    """
    Several MX patterns matched at once, as a policy applies them (STS-MX-01, STS-MX-09).

    Build it once per policy; :meth:`matches` then costs a set lookup or two
    for ASCII names, whatever the number of patterns.

    Attributes:
        patterns: The patterns, in policy order.
    """

    patterns: tuple[MXPattern, ...] = attrs.field(converter=_to_patterns)
    _table: Collection[str] = attrs.field(init=False, eq=False, repr=False)

    @_table.default
    def _default_table(self) -> Collection[str]:
        return _compact_patterns(self.patterns)[1]

    def matches(self, host: str) -> bool:
        """
        Tell whether an MX host name matches at least one pattern (RFC 8461 §4.1).

        Args:
            host: The MX target name, any case, with or without one trailing
                dot, U-labels or A-labels.

        Returns:
            Whether any pattern matches (pattern order does not matter,
            STS-MX-09); ``False`` for a malformed name.

        Raises:
            TypeError: *host* is not a ``str``.
        """
        require_str(host, "MXPatternSet.matches()")
        return _table_matches(self._table, host)
