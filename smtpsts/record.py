"""
The MTA-STS TXT record at ``_mta-sts.<policy-domain>`` (RFC 8461 §3.1).

:meth:`STSRecord.from_text` parses one record strictly by the ABNF (AMB-01);
:func:`select_sts_record` picks the one record of a TXT RRset and says why
none fits when that is the outcome (STS-REC-12 to STS-REC-14).

The record tells a sender whether a domain publishes a policy and which
version (``id``) it is; the policy itself is fetched over HTTPS only when the
``id`` differs from the cached one (STS-REC-15).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import attrs

from . import _txt
from ._txt import SelectionStatus
from .exceptions import RecordSyntaxError

__all__ = ["RecordSelection", "STSRecord", "SelectionStatus", "select_sts_record"]

VERSION = "STSv1"
"""RFC 8461 §3.1 ``sts-version`` token."""

# RFC 8461 §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT).
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
# The usual record in one match: sts-version sts-field-delim sts-id [sts-field-delim],
# with sts-field-delim = *WSP ";" *WSP (RFC 8461 §3.1). Group: the id.
_VERSION_AND_ID = re.compile(r"v=STSv1[ \t]*;[ \t]*id=([A-Za-z0-9]{1,32})(?:[ \t]*;[ \t]*)?")

_SPEC = _txt.TagSpec(
    version=VERSION,
    reserved=frozenset({"v", "id"}),
    error=RecordSyntaxError,
    cites=_txt.Cites(
        charset=("STS-REC-04",),
        version=("STS-REC-05",),
        delimiter=("STS-REC-07",),
        extension=("STS-REC-08",),
    ),
    what="MTA-STS record",
)


def _check_id(_: object, __: object, value: str) -> None:
    if _ID.fullmatch(value) is None:
        raise ValueError(f"id must be 1 to 32 letters and digits, not {value!r}")


@attrs.frozen
class STSRecord:
    """
    One ``_mta-sts`` TXT record (RFC 8461 §3.1).

    Attributes:
        id: The policy id: 1 to 32 letters and digits, opaque, compared byte
            for byte (STS-REC-15).
        extensions: Fields other than ``v`` and ``id`` as ``(name, value)``
            pairs in record order, duplicates included; they have no meaning
            and are kept for round-trips (STS-REC-09).
        lenient: True when the text only parsed in lenient mode (STS-REC-19):
            it is not valid by the ABNF, but close enough (AMB-01).
    """

    id: str = attrs.field(validator=_check_id)
    extensions: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_txt.to_pairs, validator=_SPEC.check_extensions
    )
    lenient: bool = False

    @classmethod
    def from_text(cls, text: str | bytes, *, lenient: bool = False) -> STSRecord:
        """
        Parse one record (its character-strings already joined, STS-REC-03).

        Args:
            text: The record, as text or as the bytes DNS delivered.
            lenient: Accept (AMB-01) leading and trailing WSP, empty fields,
                WSP around ``=`` and any case of the keys ``v`` and ``id``.
                The result has :attr:`lenient` set only when the text needed
                that tolerance; a strictly valid text parses exactly as in
                strict mode.

        Returns:
            The record.

        Raises:
            smtpsts.RecordSyntaxError: The text does not fit RFC 8461 §3.1. Its
                ``offset`` points into ``text``; ``reason`` is one of
                ``not-ascii``, ``control-character``, ``invalid-version``,
                ``missing-delimiter``, ``empty-field``, ``trailing-whitespace``,
                ``invalid-field``, ``invalid-field-name``, ``invalid-field-value``,
                ``invalid-id`` or ``missing-id``.
        """
        decoded = _txt.decode(text, _SPEC)
        usual = _VERSION_AND_ID.fullmatch(decoded)
        if usual is not None:
            # Nearly every record is just the version and the id: no need for the
            # field-by-field parse, nor for __init__ to check the id again.
            return cls._of_id(usual.group(1))
        return _SPEC.parse_text(decoded, cls._parse, lenient=lenient)

    @classmethod
    def _of_id(cls, record_id: str) -> STSRecord:
        # STSRecord(record_id) for an id that _VERSION_AND_ID has proven valid:
        # the same fields, without the validators.
        record = object.__new__(cls)
        object.__setattr__(record, "id", record_id)
        object.__setattr__(record, "extensions", ())
        object.__setattr__(record, "lenient", False)
        return record

    @classmethod
    def _parse(cls, text: str, *, lenient: bool) -> STSRecord:
        record_id: str | None = None
        extensions: list[tuple[str, str]] = []
        fields = _txt.parse_fields(text, _SPEC, lenient=lenient)
        # STS-REC-11, STS-REC-16 (AMB-04, AMB-15): a repeated "v" or "id" is ignored.
        for field in _txt.counted_fields(fields, _SPEC):
            if field.key == "id":
                # RFC 8461 §3.1: 1*32(ALPHA / DIGIT); the first "id" must fit and is
                # never read as an extension (STS-REC-06, STS-REC-16).
                if _ID.fullmatch(field.value) is None:
                    _SPEC.fail(
                        f"id {_txt.show(field.value)} must be 1 to 32 letters and digits",
                        offset=field.value_offset,
                        reason="invalid-id",
                        cites=("STS-REC-06", "STS-REC-16"),
                    )
                record_id = field.value
            else:
                # RFC 8461 §3.2: unknown fields are accepted and kept (STS-REC-09).
                extensions.append(_txt.check_extension(field, _SPEC))
        if record_id is None:
            _SPEC.fail(
                "the required 'id' field is missing",
                offset=len(text),
                reason="missing-id",
                cites=("STS-REC-06",),
            )
        return cls(record_id, tuple(extensions), lenient=lenient)

    def to_text(self) -> str:
        """
        Serialise the record (STS-REC-18).

        Returns:
            ``v=STSv1; id=<id>;`` followed by each extension and ``;``, joined
            by single spaces, for example ``v=STSv1; id=abc; foo=1;``.
        """
        fields = [f"v={VERSION}", f"id={self.id}", *(f"{n}={v}" for n, v in self.extensions)]
        return " ".join(f"{field};" for field in fields)


@attrs.frozen
class RecordSelection(_txt.Selection[STSRecord, RecordSyntaxError]):
    """
    The outcome of choosing the MTA-STS record of a TXT RRset.

    See :class:`smtpsts._txt.Selection` for the attributes: ``status``,
    ``record`` (an :class:`STSRecord` when ``FOUND``), ``error`` (a
    :class:`smtpsts.RecordSyntaxError` when ``SYNTAX_ERROR``) and
    ``candidates``.
    """


def select_sts_record(
    rrset: Iterable[str | bytes | Sequence[bytes] | Sequence[str]], *, lenient: bool = False
) -> RecordSelection:
    """
    Choose the MTA-STS record of a ``_mta-sts`` TXT RRset (RFC 8461 §3.1).

    A record is a candidate when it starts with ``v=STSv1``, optional WSP and
    ``;`` (AMB-10, erratum 6285); all others (SPF, ``v=STSv10``, and also a
    bare ``v=STSv1``, which the ABNF does not allow since a record needs at
    least one field) are dropped (STS-REC-12). Exactly one candidate must
    remain (STS-REC-13) and parse (STS-REC-14); otherwise the domain has no
    available policy. Never raises for what the RRset holds.

    Args:
        rrset: The TXT RRs, each given as its joined text or bytes, or as its
            sequence of character-strings, which are joined with no separator
            (STS-REC-03).
        lenient: Use lenient candidates and parsing (AMB-01): leading WSP and
            a differently cased ``v`` also make a candidate.

    Returns:
        The selection.
    """
    return _txt.select(
        rrset,
        _SPEC,
        functools.partial(STSRecord.from_text, lenient=lenient),
        RecordSelection,
        lenient=lenient,
    )
