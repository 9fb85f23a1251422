"""
The tag-list grammar shared by the ``_mta-sts`` and ``_smtp._tls`` TXT records.

RFC 8461 §3.1 and RFC 8460 §3 define their records with one shape::

    record      = version 1*(field-delim field) [field-delim]
    field-delim = *WSP ";" *WSP
    field       = reserved-field / extension
    extension   = ext-name "=" ext-value
    ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)

Only the version token and the reserved fields differ (``id`` for MTA-STS,
``rua`` for TLS-RPT). This module splits a record into fields, checks the
version and the extension grammar, drops the ignored duplicates of
non-repeated keys (RFC 8461 §3.2), and picks the one record of an RRset that
the RFCs ask for (:func:`select`, the same for both kinds);
:mod:`smtpsts.record` and :mod:`smtpsts.tlsrpt.record` check their reserved
fields themselves. The rule IDs cited (``STS-REC-16``, ``RPT-REC-06``, ...)
are those of docs/conformance.md. (A little over 600 lines: it is the whole
grammar the two record kinds share, and each piece is read with the others.)

Theory of operation: no field value may hold ``;`` (ext-value excludes it,
``id`` is letters and digits, and RFC 8460 §3 requires ``;`` in a ``rua`` URI
to be percent-encoded), so splitting on ``;`` finds every delimiter in one
linear pass, and each piece is then matched against its own grammar. Nothing
here backtracks over more than one piece, so hostile input of any length costs
linear time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import attrs

from ._args import require_text
from .exceptions import ParseError

__all__ = [
    "EXT_NAME",
    "EXT_VALUE",
    "WSP",
    "Cites",
    "Field",
    "Selection",
    "SelectionStatus",
    "TagSpec",
    "check_extension",
    "counted_fields",
    "decode",
    "join_rr",
    "parse_fields",
    "select",
    "show",
    "to_pairs",
]

WSP = " \t"
"""RFC 5234 ``WSP``: space and horizontal tab."""

# RFC 8461 §3.1 / RFC 8460 §3: the record is US-ASCII; the only control
# character the grammar admits is HTAB, inside WSP (STS-REC-04).
_NOT_RECORD_CHAR = re.compile(r"[^\t\x20-\x7e]")

# RFC 8461 §3.1 sts-ext-name, RFC 8460 §3 tlsrpt-ext-name.
EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
# RFC 8461 §3.1 sts-ext-value, RFC 8460 §3 tlsrpt-ext-value: no "=", ";", SP or CTL.
EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_NOT_EXT_VALUE = re.compile(r"[^\x21-\x3a\x3c\x3e-\x7e]")
_EXT_NAME_MAX = 32

_SHOW_MAX = 40

E = TypeVar("E", bound=ParseError)
R = TypeVar("R")
S = TypeVar("S", bound="Selection[Any, Any]")
R_co = TypeVar("R_co", covariant=True)


class _TextParser(Protocol[R_co]):
    def __call__(self, text: str, *, lenient: bool) -> R_co: ...


class SelectionStatus(enum.StrEnum):
    """
    What choosing the one record of a TXT RRset found (RFC 8461 §3.1, RFC 8460 §3).

    Only :attr:`FOUND` yields a record; every other status means the domain
    has no MTA-STS policy (STS-REC-13, STS-REC-14) or does not use TLS-RPT
    (RPT-REC-06).
    """

    FOUND = "found"
    """Exactly one candidate, and it parsed."""

    NO_RECORD = "no-record"
    """No record of the RRset is a candidate (the RRset may be empty)."""

    MULTIPLE_RECORDS = "multiple-records"
    """More than one record is a candidate."""

    SYNTAX_ERROR = "syntax-error"
    """Exactly one candidate, and it does not fit the grammar."""


@attrs.frozen
class Cites:
    """
    The conformance IDs (docs/conformance.md) each family of shared rules is reported under.

    Attributes:
        charset: US-ASCII and control characters.
        version: The leading version field.
        delimiter: Field delimiters, empty fields, trailing WSP.
        extension: Extension name and value grammar.
    """

    charset: tuple[str, ...]
    version: tuple[str, ...]
    delimiter: tuple[str, ...]
    extension: tuple[str, ...]


@attrs.frozen
class TagSpec:
    """
    What distinguishes one TXT record grammar from the other.

    Attributes:
        version: The version token, for example ``"STSv1"``.
        reserved: The keys with a grammar of their own (``v`` included).
        error: The exception class raised for a syntax error.
        cites: The conformance IDs of the shared rules.
        what: The record's name in messages, for example ``"MTA-STS record"``.
        repeated: The reserved keys whose every occurrence counts (``rua``,
            RPT-REC-11); of every other key only the first does (STS-REC-16).
    """

    version: str
    reserved: frozenset[str]
    error: type[ParseError]
    cites: Cites
    what: str
    repeated: frozenset[str] = frozenset()
    tag: str = attrs.field(init=False)
    strict_key: re.Pattern[str] = attrs.field(init=False)
    lenient_key: re.Pattern[str] = attrs.field(init=False)
    strict_candidate: re.Pattern[str] = attrs.field(init=False)
    lenient_candidate: re.Pattern[str] = attrs.field(init=False)
    strict_candidate_b: re.Pattern[bytes] = attrs.field(init=False)
    lenient_candidate_b: re.Pattern[bytes] = attrs.field(init=False)

    @tag.default
    def _tag(self) -> str:
        return f"v={self.version}"

    @strict_key.default
    def _strict_key(self) -> re.Pattern[str]:
        return re.compile("v=")

    @lenient_key.default
    def _lenient_key(self) -> re.Pattern[str]:
        return re.compile("[ \t]*[vV][ \t]*=[ \t]*")

    # AMB-10 (erratum 6285): a candidate starts with the version, then *WSP ";".
    @strict_candidate.default
    def _strict_candidate(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.tag) + "[ \t]*;")

    @lenient_candidate.default
    def _lenient_candidate(self) -> re.Pattern[str]:
        return re.compile("[ \t]*[vV][ \t]*=[ \t]*" + re.escape(self.version) + "[ \t]*;")

    @strict_candidate_b.default
    def _strict_candidate_b(self) -> re.Pattern[bytes]:
        return re.compile(self.strict_candidate.pattern.encode("ascii"))

    @lenient_candidate_b.default
    def _lenient_candidate_b(self) -> re.Pattern[bytes]:
        return re.compile(self.lenient_candidate.pattern.encode("ascii"))

    def fail(self, detail: str, *, offset: int, reason: str, cites: tuple[str, ...]) -> NoReturn:
        """
        Raise this grammar's syntax error.

        Args:
            detail: What is wrong.
            offset: 0-based character offset into the record text.
            reason: Short reason code.
            cites: Conformance IDs of the broken rules.

        Raises:
            ParseError: Always, as the subclass in :attr:`error`.
        """
        raise self.error(f"{self.what}: {detail}", offset=offset, conformance=cites, reason=reason)

    def is_candidate(self, text: str | bytes, *, lenient: bool) -> bool:
        """
        Whether one (joined) TXT record is a candidate for this grammar (AMB-10).

        Args:
            text: The record's text or bytes.
            lenient: Also accept leading WSP, a differently cased ``v`` and WSP
                around its ``=`` (AMB-01).

        Returns:
            True if the record starts with the version, *WSP and ``;``.
        """
        if isinstance(text, str):
            pattern = self.lenient_candidate if lenient else self.strict_candidate
            return pattern.match(text) is not None
        pattern_b = self.lenient_candidate_b if lenient else self.strict_candidate_b
        return pattern_b.match(text) is not None

    def check_extensions(
        self, _instance: object, _attribute: object, value: tuple[tuple[str, str], ...]
    ) -> None:
        """
        Check the extensions given to a record's constructor (an attrs validator).

        Args:
            _instance: The record being built.
            _attribute: The attribute.
            value: The ``(name, value)`` pairs.

        Raises:
            ValueError: A name is reserved, or a pair does not fit the extension
                grammar (STS-REC-08, RPT-REC-04).
        """
        for name, val in value:
            if name in self.reserved:
                raise ValueError(f"{name!r} is a reserved key, not an extension")
            if EXT_NAME.fullmatch(name) is None or EXT_VALUE.fullmatch(val) is None:
                raise ValueError(f"{name}={val} is not a valid extension field")

    def parse_text(self, text: str, parse: _TextParser[R], *, lenient: bool) -> R:
        """
        Parse a decoded record strictly, then leniently if allowed (AMB-01).

        Args:
            text: The record, as :func:`decode` returns it.
            parse: Parses ``text`` with the keyword argument ``lenient``.
            lenient: Whether a strict failure may be retried leniently, so
                that a strictly valid text parses exactly as in strict mode
                and only a text that needed the tolerance is flagged.

        Returns:
            What ``parse`` returns.

        Raises:
            ParseError: As :attr:`error`: the strict parse failed and
                ``lenient`` is false, or the lenient parse failed too.
        """
        try:
            return parse(text, lenient=False)
        except self.error:
            if not lenient:
                raise
        return parse(text, lenient=True)


@attrs.frozen
class Field:
    """
    One ``name=value`` field of a record, after the version.

    Attributes:
        name: The name as written.
        key: The reserved key this field is (lower-case), or ``None`` for an
            extension.
        value: The value as written.
        offset: Offset of the name in the record text.
        value_offset: Offset of the value in the record text.
    """

    name: str
    key: str | None
    value: str
    offset: int
    value_offset: int


def show(text: str) -> str:
    """
    Quote a piece of a record for an error message, cut to a readable length.

    Args:
        text: The piece.

    Returns:
        Its ``repr``, shortened with ``...`` when long.
    """
    if len(text) > _SHOW_MAX:
        return repr(text[:_SHOW_MAX]) + "..."
    return repr(text)


def decode(text: str | bytes, spec: TagSpec) -> str:
    """
    Return a record as text, refusing anything but printable US-ASCII and HTAB.

    Args:
        text: The record, as text or as the bytes DNS delivered.
        spec: The grammar (for the error class and citations).

    Returns:
        The record as a ``str``.

    Raises:
        ParseError: A byte or character outside US-ASCII, or a control
            character other than HTAB (STS-REC-04); never ``UnicodeDecodeError``.
    """
    if not isinstance(text, str):
        require_text(text, f"the {spec.what} parser")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as e:
            spec.fail(
                f"byte 0x{text[e.start]:02x} is not US-ASCII",
                offset=e.start,
                reason="not-ascii",
                cites=spec.cites.charset,
            )
    bad = _NOT_RECORD_CHAR.search(text)
    if bad is not None:
        char = bad.group()
        if ord(char) > 0x7F:
            spec.fail(
                f"character {char!r} is not US-ASCII",
                offset=bad.start(),
                reason="not-ascii",
                cites=spec.cites.charset,
            )
        spec.fail(
            f"control character {char!r} is not allowed",
            offset=bad.start(),
            reason="control-character",
            cites=spec.cites.charset,
        )
    return text


def _check_head(head: str, spec: TagSpec, *, lenient: bool) -> None:
    # RFC 8461 §3.1 / RFC 8460 §3: the record begins with %s"v=<version>",
    # case-sensitive, then the first field-delim (STS-REC-05, RPT-REC-02).
    key = (spec.lenient_key if lenient else spec.strict_key).match(head)
    if key is None:
        spec.fail(
            f"the record must begin with {spec.tag!r}, not {show(head)}",
            offset=0,
            reason="invalid-version",
            cites=spec.cites.version,
        )
    pos = key.end()
    rest = head[pos:]
    if not rest.startswith(spec.version):
        spec.fail(
            f"the version must be {spec.version!r}, not {show(rest)}",
            offset=pos,
            reason="invalid-version",
            cites=spec.cites.version,
        )
    after = rest[len(spec.version) :]
    body = after.lstrip(WSP)
    if not body:
        return
    if len(body) == len(after):
        spec.fail(
            f"the version must be {spec.version!r}, not {show(rest)}",
            offset=pos,
            reason="invalid-version",
            cites=spec.cites.version,
        )
    spec.fail(
        f"expected ';' after {spec.tag!r}, found {show(body)}",
        offset=pos + len(spec.version) + len(after) - len(body),
        reason="missing-delimiter",
        cites=spec.cites.delimiter,
    )


def _field(body: str, offset: int, spec: TagSpec, *, lenient: bool) -> Field:
    name, eq, value = body.partition("=")
    if not eq:
        spec.fail(
            f"field {show(body)} is not name=value",
            offset=offset,
            reason="invalid-field",
            cites=spec.cites.extension,
        )
    value_offset = offset + len(name) + 1
    if lenient:
        # AMB-01: lenient mode allows WSP around "=" and any case of reserved keys.
        name = name.rstrip(WSP)
        stripped = value.lstrip(WSP)
        value_offset += len(value) - len(stripped)
        value = stripped
        key = name.lower()
    else:
        key = name
    return Field(
        name=name,
        key=key if key in spec.reserved else None,
        value=value,
        offset=offset,
        value_offset=value_offset,
    )


def parse_fields(text: str, spec: TagSpec, *, lenient: bool) -> list[Field]:
    """
    Split a decoded record into its fields after checking the version.

    Args:
        text: The record, as :func:`decode` returns it.
        spec: The grammar.
        lenient: Tolerate (AMB-01) leading and trailing WSP, empty fields,
            WSP around ``=`` and the case of reserved keys.

    Returns:
        The fields after the version, in order (possibly none: the caller
        reports its missing required field).

    Raises:
        ParseError: The version or a delimiter is wrong.
    """
    pieces = text.split(";")
    _check_head(pieces[0], spec, lenient=lenient)
    fields: list[Field] = []
    offset = len(pieces[0]) + 1
    last = len(pieces) - 1
    for index in range(1, len(pieces)):
        piece = pieces[index]
        start = offset
        offset += len(piece) + 1
        body = piece.lstrip(WSP)
        lead = len(piece) - len(body)
        stripped = body.rstrip(WSP)
        if index == last:
            if not body:
                # RFC 8461 §3.1: one optional trailing sts-field-delim (STS-REC-07).
                break
            if stripped != body and not lenient:
                # AMB-01: trailing WSP without a ";" is outside the ABNF.
                spec.fail(
                    "whitespace after the last field must be followed by ';'",
                    offset=start + lead + len(stripped),
                    reason="trailing-whitespace",
                    cites=spec.cites.delimiter,
                )
        elif not stripped:
            if lenient:
                continue
            spec.fail(
                "empty field between two ';'",
                offset=start + len(piece),
                reason="empty-field",
                cites=spec.cites.delimiter,
            )
        fields.append(_field(stripped, start + lead, spec, lenient=lenient))
    return fields


def counted_fields(fields: Iterable[Field], spec: TagSpec) -> Iterator[Field]:
    """
    Drop the later occurrences of non-repeated reserved keys (RFC 8461 §3.2).

    RFC 8461 §3.2: "If any non-repeated field [...] is duplicated, all entries
    except for the first SHALL be ignored" (STS-REC-11, STS-REC-16, AMB-04,
    AMB-15); the record's head is the first ``v``, so every ``v`` field is a
    duplicate. An ignored field is dropped whatever its value, but it must
    still be a field of the ABNF, which it is when it fits the extension
    grammar (STS-REC-08, RPT-REC-04). The keys in :attr:`TagSpec.repeated`
    (``rua``, RPT-REC-11) and extensions are all passed on.

    Args:
        fields: The fields, as :func:`parse_fields` returns them.
        spec: The grammar.

    Yields:
        The fields that count, in order.

    Raises:
        ParseError: An ignored field does not fit the extension grammar.
    """
    seen = {"v"}
    for field in fields:
        if field.key is not None and field.key not in spec.repeated:
            if field.key in seen:
                check_extension(field, spec)
                continue
            seen.add(field.key)
        yield field


def to_pairs(value: Iterable[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """
    Convert extensions given as any pairs into a tuple of ``(name, value)`` (an attrs converter).

    Args:
        value: The pairs.

    Returns:
        The pairs as tuples.
    """
    return tuple((name, val) for name, val in value)


def check_extension(field: Field, spec: TagSpec) -> tuple[str, str]:
    """
    Check an extension field against the shared grammar.

    Args:
        field: A field whose ``key`` is ``None``.
        spec: The grammar.

    Returns:
        ``(name, value)`` as written.

    Raises:
        ParseError: The name or value does not fit (STS-REC-08, RPT-REC-04).
    """
    if EXT_NAME.fullmatch(field.name) is None:
        if len(field.name) > _EXT_NAME_MAX and EXT_NAME.match(field.name) is not None:
            detail = f"field name {show(field.name)} is longer than {_EXT_NAME_MAX} characters"
        else:
            detail = (
                f"field name {show(field.name)} must be a letter or digit followed by "
                "letters, digits, '_', '-' or '.'"
            )
        spec.fail(
            detail, offset=field.offset, reason="invalid-field-name", cites=spec.cites.extension
        )
    bad = _NOT_EXT_VALUE.search(field.value)
    if bad is not None or not field.value:
        where = field.value_offset + (bad.start() if bad is not None else 0)
        spec.fail(
            f"value {show(field.value)} of field {field.name!r} must be one or more printable "
            "characters other than '=', ';' and space",
            offset=where,
            reason="invalid-field-value",
            cites=spec.cites.extension,
        )
    return field.name, field.value


def join_rr(rr: str | bytes | Sequence[bytes] | Sequence[str]) -> str | bytes:
    """
    Join the character-strings of one TXT RR with no separator.

    RFC 8461 §3.1 and RFC 8460 §3 (STS-REC-03, RPT-REC-07).

    Args:
        rr: The RR, as its already-joined text or bytes, or as its sequence
            of character-strings (all ``bytes`` or all ``str``).

    Returns:
        The joined record.

    Raises:
        TypeError: The character-strings mix ``bytes`` and ``str``.
    """
    if isinstance(rr, (str, bytes)):
        return rr
    parts = list(rr)
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)  # type: ignore[arg-type]
    return b"".join(parts)  # type: ignore[arg-type]


@attrs.frozen
class Selection(Generic[R, E]):
    """
    The outcome of choosing the record of a TXT RRset (RFC 8461 §3.1, RFC 8460 §3).

    :class:`smtpsts.RecordSelection` and
    :class:`smtpsts.tlsrpt.TLSRPTRecordSelection` are this class for each
    record kind.

    Attributes:
        status: What was found; only :attr:`SelectionStatus.FOUND` carries a
            record.
        record: The record when ``status`` is ``FOUND``, else ``None``.
        error: The syntax error of the single candidate when ``status`` is
            ``SYNTAX_ERROR``, else ``None``.
        candidates: How many records of the RRset were candidates (AMB-10).
    """

    status: SelectionStatus
    record: R | None = None
    error: E | None = None
    candidates: int = 0


def select(
    rrset: Iterable[str | bytes | Sequence[bytes] | Sequence[str]],
    spec: TagSpec,
    parse: Callable[[str | bytes], object],
    selection: type[S],
    *,
    lenient: bool,
) -> S:
    """
    Pick the one record of a TXT RRset (RFC 8461 §3.1, RFC 8460 §3).

    Records that are not candidates (AMB-10) are dropped; exactly one must
    remain (STS-REC-12, STS-REC-13, RPT-REC-06) and parse (STS-REC-14).
    Never raises for what the RRset holds.

    Args:
        rrset: The RRs, each as :func:`join_rr` accepts it.
        spec: The grammar.
        parse: Parses the single candidate; raises :attr:`TagSpec.error`.
        selection: The :class:`Selection` class of the record kind.
        lenient: Use the lenient candidate rule (AMB-01).

    Returns:
        The selection.
    """
    chosen: str | bytes | None = None
    candidates = 0
    for rr in rrset:
        text = join_rr(rr)
        if spec.is_candidate(text, lenient=lenient):
            candidates += 1
            if chosen is None:
                chosen = text
    if chosen is None:
        return selection(SelectionStatus.NO_RECORD)
    if candidates > 1:
        return selection(SelectionStatus.MULTIPLE_RECORDS, candidates=candidates)
    try:
        record = parse(chosen)
    except spec.error as e:
        return selection(SelectionStatus.SYNTAX_ERROR, error=e, candidates=1)
    return selection(SelectionStatus.FOUND, record, candidates=1)
