"""
The TLS-RPT TXT record at ``_smtp._tls.<policy-domain>`` (RFC 8460 §3).

:meth:`TLSRPTRecord.from_text` parses one record strictly by the ABNF
(AMB-01); :func:`select_tlsrpt_record` picks the one record of a TXT RRset
(RPT-REC-06). :attr:`TLSRPTRecord.endpoints` turns the ``rua`` URIs into
the places a report can be sent: ``mailto:`` and ``https:`` are the schemes
RFC 8460 §3 defines, anything else is kept but unusable (RPT-REC-09).

Whether a URI is syntactically valid (RFC 3986) decides whether the record is
valid (RPT-REC-10); whether it names a usable destination (a valid mailbox,
a host name) only decides whether that one endpoint is used (RPT-REC-08).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import ClassVar

import attrs

from smtpsts import _txt
from smtpsts._names import to_alabel
from smtpsts._txt import SelectionStatus
from smtpsts.exceptions import DomainNameError, TLSRPTRecordSyntaxError

__all__ = [
    "Endpoint",
    "HTTPSEndpoint",
    "MailtoEndpoint",
    "SelectionStatus",
    "TLSRPTRecord",
    "TLSRPTRecordSelection",
    "UnsupportedEndpoint",
    "select_tlsrpt_record",
]

VERSION = "TLSRPTv1"
"""RFC 8460 §3 ``tlsrpt-version`` token."""

_SPEC = _txt.TagSpec(
    version=VERSION,
    reserved=frozenset({"v", "rua"}),
    error=TLSRPTRecordSyntaxError,
    cites=_txt.Cites(
        charset=("RPT-REC-04",),
        version=("RPT-REC-02",),
        delimiter=("RPT-REC-04",),
        extension=("RPT-REC-04",),
    ),
    what="TLSRPT record",
    repeated=frozenset({"rua"}),
)

# RFC 3986 Appendix A, as one regular expression. Each repetition is bounded
# by a character its body cannot contain ("/", "@", ":", "?", "#"), so
# matching is linear in the length of the URI.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_URI = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*):"  # scheme ":"
    r"(?:"
    r"//"  # "//" authority path-abempty
    rf"(?:(?P<userinfo>(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*)@)?"
    rf"(?P<host>\[[^\]/?#@]*\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*)"
    r"(?::(?P<port>[0-9]*))?"
    rf"(?:/{_PCHAR}*)*"
    r"|"  # path-absolute / path-rootless / path-empty
    rf"(?P<path>/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
    r")"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?"  # [ "?" query ]
    rf"(?:#(?:{_PCHAR}|[/?])*)?"  # [ "#" fragment ]
)
# RFC 3986 §3.2.2: IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ).
_IPVFUTURE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")

# RFC 5321 §4.1.2 Mailbox, with RFC 6531 §3.3 UTF8-non-ascii in atext and qtext.
_ATEXT = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LOCAL_PART_MAX = 64  # RFC 5321 §4.5.3.1.1: octets
_PORT_MAX = 65535


def _ip_literal_ok(host: str) -> bool:
    # RFC 3986 §3.2.2: IP-literal = "[" ( IPv6address / IPvFuture ) "]".
    inner = host[1:-1]
    if _IPVFUTURE.fullmatch(inner) is not None:
        return True
    if "%" in inner:  # a zone ID is not part of RFC 3986 IPv6address
        return False
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return False
    return True


def _match_uri(uri: str) -> re.Match[str] | None:
    """Match ``uri`` against RFC 3986 ``URI``; None if it does not fit."""
    m = _URI.fullmatch(uri)
    if m is None:
        return None
    host = m.group("host")
    if host is not None and host.startswith("[") and not _ip_literal_ok(host):
        return None
    return m


def _dedupe(value: Iterable[str]) -> tuple[str, ...]:
    # AMB-23 / RPT-REC-11: order kept, duplicates removed.
    return tuple(dict.fromkeys(value))


def _check_rua(_: object, __: object, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("rua needs at least one URI")
    for uri in value:
        if "," in uri or ";" in uri or _match_uri(uri) is None:
            raise ValueError(f"{uri!r} is not an RFC 3986 URI without ',' and ';'")


@attrs.frozen
class MailtoEndpoint:
    """
    A ``mailto:`` destination for reports (RFC 8460 §3, §5.3).

    Attributes:
        address: The addr-spec, percent-decoded (RPT-REC-12), for example
            ``tls+rpt@example.com``.
        uri: The URI as the record wrote it.
    """

    usable: ClassVar[bool] = True
    """Reports can be sent here."""

    address: str
    uri: str


@attrs.frozen
class HTTPSEndpoint:
    """
    An ``https:`` destination for reports (RFC 8460 §3, §5.4).

    Attributes:
        url: The URI as the record wrote it; reports are POSTed to it.
    """

    usable: ClassVar[bool] = True
    """Reports can be sent here."""

    url: str

    @property
    def uri(self) -> str:
        """
        The URI as the record wrote it.

        The same as :attr:`url`; every endpoint class has ``uri``.
        """
        return self.url


@attrs.frozen
class UnsupportedEndpoint:
    """
    A ``rua`` URI no report can be sent to (RPT-REC-08, RPT-REC-09).

    Attributes:
        uri: The URI as the record wrote it.
        reason: Why: ``unsupported-scheme``, ``invalid-address`` (the
            ``mailto:`` addr-spec is not a valid mailbox), ``no-address``,
            ``no-host`` (an ``https:`` URI without a host), ``invalid-host``,
            ``invalid-port`` or ``userinfo`` (RFC 9110 §4.2.4).
    """

    usable: ClassVar[bool] = False
    """Reports cannot be sent here."""

    uri: str
    reason: str


Endpoint = MailtoEndpoint | HTTPSEndpoint | UnsupportedEndpoint
"""What a ``rua`` URI names."""


def _mailbox_ok(address: str) -> bool:
    # RFC 5321 §4.1.2: Mailbox = Local-part "@" ( Domain / address-literal ).
    local, at, domain = address.rpartition("@")
    if not at or len(local.encode("utf-8")) > _LOCAL_PART_MAX:
        return False
    if _DOT_STRING.fullmatch(local) is None and _QUOTED_STRING.fullmatch(local) is None:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        # RFC 5321 §4.1.3: IPv4-address-literal / IPv6-address-literal.
        inner = domain[1:-1]
        try:
            if inner[:5].lower() == "ipv6:" and "%" not in inner:
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    if domain.endswith("."):  # RFC 5321 Domain has no root dot
        return False
    try:
        to_alabel(domain)
    except DomainNameError:
        return False
    return True


def _endpoint(uri: str) -> Endpoint:
    m = _match_uri(uri)
    if m is None:  # the rua validator admits only URIs that match
        raise AssertionError(f"rua URI {uri!r} escaped validation")
    scheme = m.group("scheme").lower()  # RFC 3986 §3.1: schemes are case-insensitive
    if scheme == "mailto":
        # RFC 6068 §2: the to-part is the path; RPT-REC-12: "?" hfields ignored.
        path = m.group("path")
        if not path:
            return UnsupportedEndpoint(uri, "no-address")
        try:
            address = urllib.parse.unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return UnsupportedEndpoint(uri, "invalid-address")
        if not _mailbox_ok(address):
            return UnsupportedEndpoint(uri, "invalid-address")
        return MailtoEndpoint(address, uri)
    if scheme == "https":
        host = m.group("host")
        if not host:
            # RFC 9110 §4.2.2: an https URI with an empty host is invalid.
            return UnsupportedEndpoint(uri, "no-host")
        if m.group("userinfo") is not None:
            # RFC 9110 §4.2.4: treat userinfo in an untrusted URI as an error.
            return UnsupportedEndpoint(uri, "userinfo")
        port = m.group("port")
        if port and int(port) > _PORT_MAX:
            return UnsupportedEndpoint(uri, "invalid-port")
        if host.startswith("["):
            if _IPVFUTURE.fullmatch(host[1:-1]) is not None:
                return UnsupportedEndpoint(uri, "invalid-host")  # no way to connect to it
        else:
            try:
                to_alabel(urllib.parse.unquote_to_bytes(host))
            except DomainNameError:
                return UnsupportedEndpoint(uri, "invalid-host")
        return HTTPSEndpoint(uri)
    # RFC 8460 §3 defines only mailto and https (RPT-REC-09).
    return UnsupportedEndpoint(uri, "unsupported-scheme")


@attrs.frozen
class TLSRPTRecord:
    """
    One ``_smtp._tls`` TXT record (RFC 8460 §3).

    Attributes:
        rua: The report URIs in record order, every ``rua`` field joined and
            duplicates removed (RPT-REC-11); each exactly as written
            (RPT-REC-08).
        extensions: Fields other than ``v`` and ``rua`` as ``(name, value)``
            pairs in record order; they have no meaning and are kept for
            round-trips (RPT-REC-05).
        lenient: True when the text only parsed in lenient mode (AMB-01).
    """

    rua: tuple[str, ...] = attrs.field(converter=_dedupe, validator=_check_rua)
    extensions: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_txt.to_pairs, validator=_SPEC.check_extensions
    )
    lenient: bool = False

    @classmethod
    def from_text(cls, text: str | bytes, *, lenient: bool = False) -> TLSRPTRecord:
        """
        Parse one record (its character-strings already joined, RPT-REC-07).

        The rules of :meth:`smtpsts.STSRecord.from_text` apply, with RFC 8460 §3
        in place of RFC 8461 §3.1 and ``rua`` in place of ``id``: ``lenient``
        (AMB-01) also allows WSP after ``rua=``, which strict mode refuses
        (RPT-REC-03), and a repeated ``v`` is ignored (AMB-04).

        Raises:
            smtpsts.tlsrpt.TLSRPTRecordSyntaxError: The text does not fit
                RFC 8460 §3; ``reason`` is one of those of ``STSRecord.from_text``
                with ``invalid-rua``, ``whitespace-after-rua`` and ``missing-rua``
                in place of the ``id`` ones.
        """
        decoded = _txt.decode(text, _SPEC)
        return _SPEC.parse_text(decoded, cls._parse, lenient=lenient)

    @classmethod
    def _parse(cls, text: str, *, lenient: bool) -> TLSRPTRecord:
        rua: list[str] = []
        seen_rua = False
        extensions: list[tuple[str, str]] = []
        fields = _txt.parse_fields(text, _SPEC, lenient=lenient)
        # RFC 8460 §3 has no rule for a repeated "v"; it fits tlsrpt-extension, and
        # "Parsers MUST accept TXT records that are syntactically valid", so it is
        # ignored as in RFC 8461 §3.2 (AMB-04). Every "rua" counts (RPT-REC-11).
        for field in _txt.counted_fields(fields, _SPEC):
            if field.key == "rua":
                seen_rua = True
                rua.extend(_parse_rua(field))
            else:
                # RFC 8460 §3: unknown fields are accepted (RPT-REC-05).
                extensions.append(_txt.check_extension(field, _SPEC))
        if not seen_rua:
            _SPEC.fail(
                "the required 'rua' field is missing",
                offset=len(text),
                reason="missing-rua",
                cites=("RPT-REC-03",),
            )
        return cls(rua, tuple(extensions), lenient=lenient)

    def to_text(self) -> str:
        """
        Serialise the record, in the form of STS-REC-18.

        Returns:
            ``v=TLSRPTv1; rua=<uri>,<uri>;`` followed by each extension and
            ``;``, joined by single spaces.
        """
        fields = [
            f"v={VERSION}",
            "rua=" + ",".join(self.rua),
            *(f"{n}={v}" for n, v in self.extensions),
        ]
        return " ".join(f"{field};" for field in fields)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """
        What each ``rua`` URI names, in order.

        Returns:
            One :class:`MailtoEndpoint`, :class:`HTTPSEndpoint` or
            :class:`UnsupportedEndpoint` per URI.
        """
        return tuple(_endpoint(uri) for uri in self.rua)

    @property
    def usable_endpoints(self) -> tuple[MailtoEndpoint | HTTPSEndpoint, ...]:
        """
        The endpoints reports can be sent to (RPT-REC-08, RPT-REC-09).

        Returns:
            The :class:`MailtoEndpoint` and :class:`HTTPSEndpoint` entries of
            :attr:`endpoints`, in order; possibly none.
        """
        return tuple(e for e in self.endpoints if not isinstance(e, UnsupportedEndpoint))


def _parse_rua(field: _txt.Field) -> list[str]:
    # RFC 8460 §3: tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    # (RPT-REC-03); each URI must be an RFC 3986 URI (RPT-REC-10).
    uris = []
    offset = field.value_offset
    if field.value[:1] in (" ", "\t"):
        # RPT-REC-03: WSP is allowed only around the commas, not after "rua="
        # (lenient mode strips it, AMB-01, and flags the record).
        _SPEC.fail(
            "whitespace after 'rua=' is not allowed (only around ',')",
            offset=offset,
            reason="whitespace-after-rua",
            cites=("RPT-REC-03",),
        )
    for piece in field.value.split(","):
        uri = piece.strip(_txt.WSP)
        where = offset + len(piece) - len(piece.lstrip(_txt.WSP))
        offset += len(piece) + 1
        if not uri:
            _SPEC.fail(
                "empty URI in 'rua'",
                offset=where,
                reason="invalid-rua",
                cites=("RPT-REC-03", "RPT-REC-10"),
            )
        if _match_uri(uri) is None:
            _SPEC.fail(
                f"{_txt.show(uri)} in 'rua' is not an RFC 3986 URI",
                offset=where,
                reason="invalid-rua",
                cites=("RPT-REC-10",),
            )
        uris.append(uri)
    return uris


@attrs.frozen
class TLSRPTRecordSelection(_txt.Selection[TLSRPTRecord, TLSRPTRecordSyntaxError]):
    """
    The outcome of choosing the TLS-RPT record of a TXT RRset.

    See :class:`smtpsts._txt.Selection` for the attributes: ``status``,
    ``record`` (a :class:`TLSRPTRecord` when ``FOUND``), ``error`` (a
    :class:`TLSRPTRecordSyntaxError` when ``SYNTAX_ERROR``) and
    ``candidates``.
    """


def select_tlsrpt_record(
    rrset: Iterable[str | bytes | Sequence[bytes] | Sequence[str]], *, lenient: bool = False
) -> TLSRPTRecordSelection:
    """
    Choose the TLS-RPT record of a ``_smtp._tls`` TXT RRset (RFC 8460 §3).

    Candidates start with ``v=TLSRPTv1``, optional WSP and ``;`` (AMB-10);
    others are dropped, and exactly one must remain and parse, or the domain
    does not use TLS-RPT (RPT-REC-06). Never raises for what the RRset holds.

    Args:
        rrset: The TXT RRs, each given as its joined text or bytes, or as its
            sequence of character-strings, which are joined with no separator
            (RPT-REC-07).
        lenient: Use lenient candidates and parsing (AMB-01).

    Returns:
        The selection.
    """
    return _txt.select(
        rrset,
        _SPEC,
        functools.partial(TLSRPTRecord.from_text, lenient=lenient),
        TLSRPTRecordSelection,
        lenient=lenient,
    )
