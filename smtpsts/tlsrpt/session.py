"""
What one SMTP session showed, as TLS-RPT sees it (RFC 8460 §4).

An MTA records one :class:`SessionResult` per delivery attempt that reached
the TLS stage, for each policy that applied to it (an MTA-STS policy, a DANE
TLSA RRset, or neither). The :class:`~smtpsts.tlsrpt.aggregate.Aggregator`
folds them into daily reports.

Both classes are small immutable values, hashable and cheap to compare, so
the aggregator can count them in a dictionary; the UTC time of the session is
given to :meth:`~smtpsts.tlsrpt.aggregate.Aggregator.add`, not stored here,
so identical outcomes are equal values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from smtpsts._names import is_normal_name, to_alabel
from smtpsts._vocab import PolicyType, ResultType
from smtpsts.exceptions import DomainNameError, UsageError

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    from smtpsts.dane import TLSARdata, TLSARecord
    from smtpsts.policy import Policy

__all__ = ["PolicyInfo", "SessionFailure", "SessionResult"]


def _domain(value: str) -> str:
    return to_alabel(value)


def _pattern(value: str) -> str:
    # RFC 8460 §4.4 + erratum 6241 (RPT-JSON-12): mx-host holds the policy's
    # mx patterns as A-labels; a wildcard keeps its "*." prefix.
    wildcard = value.startswith("*.")
    if is_normal_name(value, 2 if wildcard else 0):
        return value  # already in that form (and shared with the policy's own copy)
    if wildcard:
        return "*." + to_alabel(value[2:])
    return to_alabel(value)


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    return tuple(_pattern(v) for v in value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    return tuple(str(v) for v in value)


def _ip(value: str | None) -> str | None:
    # RFC 8460 §4.4 (RPT-JSON-16): dotted-quad IPv4, RFC 5952 canonical IPv6,
    # no brackets, port or zone id. None and "" mean "unknown" (RPT-JSON-19).
    if value is None or value == "":
        return None
    text = str(value).strip().removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"not an IP address: {value!r}") from None


# Trailing white space and dots in any order ("m ..", found by fuzzing): all of them go.
_TRAILING = re.compile(r"[\s.]+\Z")


def _host(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return to_alabel(value)
    except DomainNameError:
        # A name from DNS that is not a host name (an underscore, say) is
        # still what the session used: report it as seen, never fail here.
        # Every trailing dot goes, so the name reads back the same (issue 10 item 7),
        # and what is left is converted when it can be: "m\ufeff.." must not become
        # "m\ufeff" here and "m" when read back, nor "m\ufffd .." become "m\ufffd " and
        # then "m\ufffd" (both found by fuzzing).
        stripped = _TRAILING.sub("", str(value).strip())
        try:
            return to_alabel(stripped) if stripped else None
        except DomainNameError:
            return stripped.lower() or None


# RFC 3986 §4.3 absolute-URI, loosely: a scheme, ":", then no white space.
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+\Z")


def _uri(value: str | None) -> str | None:
    # RFC 8460 §4.4 (RPT-JSON-18): additional-information is an absolute URI.
    text = _text(value)
    if text is not None and not _ABSOLUTE_URI.match(text):
        raise UsageError(f"additional_information must be an absolute URI: {value!r}")
    return text


def _text(value: str | None) -> str | None:
    # RPT-JSON-19: "" is no value.
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@attrs.frozen(cache_hash=True)
class PolicyInfo:
    """
    The policy a session was checked against (RFC 8460 §4.4 ``policy``).

    Two sessions land in the same report entry exactly when their
    :class:`PolicyInfo` values are equal (RPT-AGG-11): a policy that changes
    during the day gives two entries.

    Build one with :meth:`for_sts`, :meth:`for_tlsa` or
    :meth:`no_policy_found`.

    Attributes:
        policy_type: ``sts``, ``tlsa`` or ``no-policy-found``.
        policy_domain: The policy domain as a lower-case A-label: the
            recipient domain for ``sts`` and ``no-policy-found``, the TLSA
            base domain for ``tlsa`` (AMB-19).
        policy_strings: ``sts``: the policy lines as served;
            ``tlsa``: one ``"u s m HEX"`` per TLSA record; empty for
            ``no-policy-found`` (RPT-JSON-09).
        mx_host_patterns: ``sts`` only: the policy's ``mx`` patterns as
            A-labels (RPT-JSON-12).

    Raises:
        smtpsts.UsageError: ``no-policy-found`` with policy strings, or
            ``mx_host_patterns`` for another type than ``sts``.
        smtpsts.DomainNameError: A domain or pattern is not a host name.
    """

    policy_type: PolicyType = attrs.field(converter=PolicyType)
    policy_domain: str = attrs.field(converter=_domain)
    policy_strings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    mx_host_patterns: tuple[str, ...] = attrs.field(default=(), converter=_patterns)

    def __attrs_post_init__(self) -> None:
        # RPT-JSON-09 (PROJ): no policy-string for no-policy-found.
        if self.policy_type is PolicyType.NO_POLICY_FOUND and self.policy_strings:
            raise UsageError("a no-policy-found policy has no policy strings")
        # RPT-JSON-12 (PROJ): mx-host is written for sts only.
        if self.policy_type is not PolicyType.STS and self.mx_host_patterns:
            raise UsageError(f"mx_host_patterns are for sts policies, not {self.policy_type}")

    @classmethod
    def no_policy_found(cls, domain: str) -> PolicyInfo:
        """
        The entry for a domain with neither an MTA-STS policy nor DANE.

        Args:
            domain: The recipient domain (any case, U- or A-labels).

        Returns:
            A ``no-policy-found`` policy for the domain.
        """
        return cls(PolicyType.NO_POLICY_FOUND, domain)

    @classmethod
    def for_sts(cls, domain: str, policy: Policy | None = None) -> PolicyInfo:
        """
        The entry for an MTA-STS policy (RFC 8460 §4.4, RFC 8461).

        A policy in mode ``none`` is no active policy (RFC 8461 §5), so it
        gives ``no-policy-found`` (AMB-24, RPT-AGG-12). Without a policy
        (it could not be fetched or parsed and none was cached) the entry
        has no policy strings and no mx patterns (RPT-AGG-18).

        Args:
            domain: The recipient (policy) domain.
            policy: The policy applied, or ``None`` if none could be had.

        Returns:
            The policy descriptor.
        """
        if policy is None:
            return cls(PolicyType.STS, domain)
        if policy.mode.value == "none":
            return cls.no_policy_found(domain)
        return cls(
            PolicyType.STS,
            domain,
            policy.lines,
            policy._mx_keys(),  # noqa: SLF001 -- each pattern's str(): "*.host" or host
        )

    @classmethod
    def for_tlsa(
        cls, base_domain: str, tlsa_rrset: Iterable[str | TLSARecord | TLSARdata]
    ) -> PolicyInfo:
        """
        The entry for a DANE TLSA RRset (RFC 8460 §4.4, RFC 7672).

        Args:
            base_domain: The TLSA base domain, normally the MX host name
                (AMB-19); its TLSA records live at ``_25._tcp.<base>``.
            tlsa_rrset: The records, as presentation strings
                (``"3 1 1 ab12..."``), :class:`smtpsts.dane.TLSARecord`
                values or dnspython rdata.

        Returns:
            The policy descriptor, with one ``"u s m HEX"`` string per record,
            hex in upper case (RPT-JSON-10).

        Raises:
            smtpsts.dane.TLSASyntaxError: A string is not a TLSA record.
        """
        from smtpsts.dane import tlsa_policy_strings  # noqa: PLC0415 - keeps cryptography off this path

        return cls(PolicyType.TLSA, base_domain, tlsa_policy_strings(tlsa_rrset))  # type: ignore[arg-type]


@attrs.frozen(cache_hash=True)
class SessionFailure:
    """
    A further failure type seen in the same session (RPT-AGG-06).

    A session counts once in the failure total but may add to several
    ``failure-details`` entries; the main one is
    :attr:`SessionResult.result_type`, the others are listed as these.

    The report form of a :class:`smtpsts.reasons.Failure`: the same result
    type and reason, without the ``detail`` in words, so that it is a small
    hashable part of the aggregation key (its field keeps the RFC 8460 §4.3
    name).

    Attributes:
        result_type: The failure's result type.
        failure_reason_code: Its reason code, if any (docs/reason-codes.md).
    """

    result_type: ResultType = attrs.field(converter=ResultType)
    failure_reason_code: str | None = attrs.field(default=None, converter=_text)


def _failures(value: Iterable[SessionFailure]) -> tuple[SessionFailure, ...]:
    return tuple(value)


@attrs.frozen(cache_hash=True)
class SessionResult:
    """
    The outcome of one SMTP session for one policy (RFC 8460 §4.2).

    Build one with :meth:`succeeded` or :meth:`failed`.

    Attributes:
        policy: The policy the session was checked against.
        success: Whether TLS satisfied the policy (RPT-AGG-04, RPT-AGG-13).
        result_type: For a failure, its result type (RFC 8460 §4.3);
            ``None`` for a success.
        sending_mta_ip: The local address of the session (RPT-AGG-14),
            canonical form.
        receiving_mx_hostname: The MX host name, as a lower-case A-label
            without trailing dot (a name that is not a valid host name is kept
            lower-cased, as seen).
        receiving_mx_helo: The name in the server's greeting or EHLO reply.
        receiving_ip: The remote address, canonical form.
        failure_reason_code: A short reason (RPT-JSON-17).
        additional_information: An absolute URI with more detail (RPT-JSON-18).
        extra_failures: Further failure types of the same session
            (RPT-AGG-06).
        report_domain: The domain whose report this goes in when it is not
            the policy domain: the recipient domain of a ``tlsa`` result
            (AMB-19). ``None`` means :attr:`PolicyInfo.policy_domain`.
        report_delivery: The session delivered a TLS-RPT report; such
            sessions are never counted (RFC 8460 §3, RPT-AGG-10).

    Raises:
        smtpsts.UsageError: A success with a result type or failure fields,
            a failure without a result type, or an address that is not an
            IP address.
    """

    policy: PolicyInfo
    success: bool
    result_type: ResultType | None = attrs.field(
        default=None, converter=attrs.converters.optional(ResultType)
    )
    sending_mta_ip: str | None = attrs.field(default=None, converter=_ip)
    receiving_mx_hostname: str | None = attrs.field(default=None, converter=_host)
    receiving_mx_helo: str | None = attrs.field(default=None, converter=_text)
    receiving_ip: str | None = attrs.field(default=None, converter=_ip)
    failure_reason_code: str | None = attrs.field(default=None, converter=_text)
    additional_information: str | None = attrs.field(default=None, converter=_uri)
    extra_failures: tuple[SessionFailure, ...] = attrs.field(default=(), converter=_failures)
    report_domain: str | None = attrs.field(default=None, converter=_host)
    report_delivery: bool = False

    def __attrs_post_init__(self) -> None:
        if self.success:
            if (
                self.result_type is not None
                or self.failure_reason_code is not None
                or self.extra_failures
            ):
                raise UsageError("a successful session has no result type or failure reason")
        elif self.result_type is None:
            raise UsageError("a failed session needs a result_type")

    @property
    def domain(self) -> str:
        """The domain whose report this result belongs in (RPT-AGG-03, AMB-19)."""
        return self.report_domain or self.policy.policy_domain

    @classmethod
    def succeeded(cls, policy: PolicyInfo, **session: Any) -> SessionResult:
        """
        A session that set up TLS satisfying ``policy`` (RPT-AGG-04).

        Args:
            policy: The policy applied.
            **session: Optional fields: ``sending_mta_ip``,
                ``receiving_mx_hostname``, ``receiving_mx_helo``,
                ``receiving_ip``, ``additional_information``,
                ``report_domain``, ``report_delivery``.

        Returns:
            The result.
        """
        return cls(policy, True, **session)  # noqa: FBT003 - positional field

    @classmethod
    def failed(cls, policy: PolicyInfo, result_type: ResultType, **session: Any) -> SessionResult:
        """
        A session that did not get policy-compliant TLS (RPT-AGG-05).

        Args:
            policy: The policy applied.
            result_type: Why (RFC 8460 §4.3).
            **session: Optional fields as for :meth:`succeeded`, plus
                ``failure_reason_code`` and ``extra_failures``.

        Returns:
            The result.
        """
        return cls(policy, False, result_type, **session)  # noqa: FBT003 - positional field
