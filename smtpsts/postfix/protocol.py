"""
The Postfix socketmap TLS policy protocol, without I/O.

Postfix asks ``smtp_tls_policy_maps = socketmap:inet:HOST:PORT:NAME`` with one
netstring per lookup holding ``NAME KEY`` (``socketmap_table(5)``): ``NAME``
is the last field of the map (here it picks a :class:`Zone`), ``KEY`` the
next-hop domain. The answer is one netstring: ``OK <policy>``, ``NOTFOUND ``
(trailing space), ``TEMP <reason>`` or ``PERM <reason>``.

This module turns a request into a policy domain (:func:`parse_request`,
:func:`normalize_key`) and a :class:`~smtpsts.cache.PolicyOutcome` into an
answer (:func:`build_answer`):

- ``enforce`` (and ``testing`` in a :attr:`Zone.strict` zone):
  ``OK secure match=<p1>:<p2> servername=hostname``, the patterns in policy
  order with ``*.example.com`` written as Postfix's ``.example.com``, plus the
  Postfix >= 3.10 TLSRPT attributes when :attr:`Zone.tlsrpt` is on;
- anything else (no policy, ``none``, ``testing``, discovery failure with
  nothing cached): ``NOTFOUND ``, so Postfix's own default applies (RFC 8461
  §5: ``testing`` and no policy deliver as without MTA-STS);
- ``TEMP`` only when the policy machine asks to defer (AMB-16, opt-in);
- DANE first (RFC 8461 §2; AMB-11 in docs/decisions.md): when the destination has
  DNSSEC-validated usable TLSA records, the answer is never an MTA-STS
  ``secure`` level but what :attr:`Zone.dane` says (``dane-only`` by
  default), so Postfix applies its own DANE.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from typing import Final

import attrs

from smtpsts._entry import PolicyOutcome
from smtpsts._names import to_alabel
from smtpsts.exceptions import DomainNameError, RequestSyntaxError
from smtpsts.policy import Mode, Policy

__all__ = [
    "MAX_KEY_LENGTH",
    "Answer",
    "AnswerKind",
    "DaneAnswer",
    "DaneVerdict",
    "KeyIgnored",
    "Request",
    "RequestSyntaxError",
    "Zone",
    "build_answer",
    "dane_answer",
    "match_patterns",
    "needs_dane_check",
    "normalize_key",
    "parse_request",
    "tlsrpt_attributes",
    "zone_for",
]

MAX_KEY_LENGTH: Final = 1024
"""The longest key accepted, in bytes; longer requests break the connection."""


class AnswerKind(enum.StrEnum):
    """The socketmap reply status words (``socketmap_table(5)``)."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    PERM = "PERM"


@attrs.frozen
class Answer:
    """
    One socketmap reply.

    Attributes:
        kind: The status word.
        data: The policy (``OK``) or reason (``TEMP``/``PERM``); empty for
            ``NOTFOUND``.
        why: Why this answer, for logs (never sent).
    """

    kind: AnswerKind
    data: str = ""
    why: str = attrs.field(default="", eq=False)

    def to_bytes(self) -> bytes:
        """
        The reply payload (to be framed as a netstring).

        Returns:
            ``b"<KIND> <data>"``; ``NOTFOUND`` keeps its trailing space.
        """
        return f"{self.kind.value} {self.data}".encode()


NOTFOUND: Final = Answer(AnswerKind.NOTFOUND)


class DaneAnswer(enum.StrEnum):
    """
    What to answer for a destination with DNSSEC-validated TLSA records.

    RFC 8461 §2: MTA-STS must not override DANE, and a Postfix answer can
    carry only one security level, so DANE wins (AMB-11 in docs/decisions.md).
    """

    DANE_ONLY = "dane-only"
    """``OK dane-only``: Postfix requires DANE for this destination."""

    DANE = "dane"
    """``OK dane``: Postfix's opportunistic DANE (DANE where TLSA records exist)."""

    NOTFOUND = "notfound"
    """``NOTFOUND``: Postfix's own ``smtp_tls_security_level`` (set it to ``dane``)."""

    OFF = "off"
    """No TLSA lookups at all: MTA-STS only, like postfix-mta-sts-resolver."""


class DaneVerdict(enum.StrEnum):
    """What the TLSA lookups for a destination's MX hosts found."""

    NONE = "none"
    """No secure MX RRset, or no MX host with secure TLSA records: DANE does not apply."""

    USABLE = "usable"
    """At least one MX host has secure TLSA records (DANE-12, DANE-13)."""

    FAILED = "failed"
    """A TLSA lookup of a secure MX host failed (bogus, timeout; DANE-08)."""


@attrs.frozen
class Zone:
    """
    How requests for one socketmap name are answered.

    Attributes:
        name: The socketmap name (the last field of the Postfix map).
        strict: Answer ``testing`` policies as ``enforce`` (``strict_testing``
            in postfix-mta-sts-resolver).
        require_sni: Add ``servername=hostname`` (Postfix >= 3.4); turn off
            for older Postfix, which rejects the attribute.
        tlsrpt: Add the Postfix >= 3.10 TLSRPT attributes (``policy_type``,
            ``policy_domain``, ``mx_host_pattern``, ``policy_string``); with
            Postfix >= 3.10.5 they also make Postfix dial only MX hosts that
            match the policy.
        timeout: Seconds one lookup may take before the answer is
            ``NOTFOUND`` (or ``TEMP``, see :attr:`temp_on_timeout`).
        dane: The answer when the destination has DNSSEC-validated TLSA
            records (see :class:`DaneAnswer`).
        temp_on_timeout: Answer ``TEMP`` instead of ``NOTFOUND`` when a
            lookup times out (Postfix then defers the delivery).
    """

    name: str = "default"
    strict: bool = False
    require_sni: bool = True
    tlsrpt: bool = False
    timeout: float = attrs.field(default=10.0)
    dane: DaneAnswer = attrs.field(default=DaneAnswer.DANE_ONLY, converter=DaneAnswer)
    temp_on_timeout: bool = False

    @timeout.validator
    def _check_timeout(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"zone {self.name!r}: timeout must be positive, not {value!r}")


@attrs.frozen
class Request:
    """
    One socketmap request.

    Attributes:
        name: The map name (selects the zone).
        key: The lookup key as sent (decoded from UTF-8).
    """

    name: str
    key: str


def parse_request(payload: bytes) -> Request:
    """
    Split a request payload into map name and key.

    Args:
        payload: One netstring payload.

    Returns:
        The request.

    Raises:
        RequestSyntaxError: No space, an empty name or key, a key over
            :data:`MAX_KEY_LENGTH` bytes, or bytes that are not UTF-8.
    """
    name, space, key = payload.partition(b" ")
    if not space or not name or not key:
        raise RequestSyntaxError(
            f"socketmap request {payload[:64]!r} is not 'NAME KEY'", reason="bad-request"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise RequestSyntaxError(
            f"socketmap key is {len(key)} bytes, over {MAX_KEY_LENGTH}", reason="key-too-long"
        )
    try:
        return Request(name.decode("utf-8"), key.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestSyntaxError(
            f"socketmap request is not UTF-8: {payload[:64]!r}",
            offset=e.start,
            reason="not-utf8",
        ) from None


@attrs.frozen
class KeyIgnored:
    """
    A key that has no MTA-STS policy by its form; answered ``NOTFOUND`` at once.

    Attributes:
        reason: ``parent-domain`` (Postfix's ``.example.com`` probe),
            ``ip-literal`` (RFC 8461 §3.4, STS-APPLY-03) or ``invalid-name``.
        detail: What was wrong, for logs.
    """

    reason: str
    detail: str = ""


def _is_ip(text: str) -> bool:
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    elif ":" not in text and not text[-1:].isdigit():
        # Neither IPv6 (has a colon) nor IPv4 (ends in a digit): skip the parse.
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalize_key(key: str) -> str | KeyIgnored:
    """
    Turn a Postfix TLS policy lookup key into a policy domain.

    Postfix looks up the next-hop domain (``example.com``), a bracketed
    next hop with or without a port (``[mx.example.com]:25``), and with
    parent-domain matching the ``.example.com`` form. The key is stripped of
    brackets, ``:port`` and a trailing dot, lower-cased and converted from
    U-labels to A-labels (RFC 8461 §3.4, STS-APPLY-01).

    Args:
        key: The request key.

    Returns:
        The policy domain (A-label), or :class:`KeyIgnored` for a key that
        needs no lookup: a parent-domain probe (STS-APPLY-02: the parent zone
        is never used for a subdomain), an IP literal (STS-APPLY-03), or not
        a domain name at all.
    """
    text = key.strip()
    if text.startswith("."):
        # RFC 8461 §3.4 (STS-APPLY-02): only the exact next-hop domain has a policy.
        return KeyIgnored("parent-domain", text)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return KeyIgnored("invalid-name", f"malformed bracketed key {text!r}")
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            text = host
    if _is_ip(text):
        # RFC 8461 §3.4 (STS-APPLY-03): address literals have no policy.
        return KeyIgnored("ip-literal", text)
    try:
        return to_alabel(text)
    except DomainNameError as e:
        return KeyIgnored("invalid-name", str(e))


def match_patterns(policy: Policy) -> tuple[str, ...]:
    """
    The policy's MX patterns in Postfix ``match=`` form, in policy order.

    RFC 8461 §4.1: ``*.example.com`` matches one left-most label; Postfix
    writes a sub-domain match as ``.example.com`` (which also matches deeper
    names; Postfix >= 3.10.5 with the TLSRPT attributes checks the exact
    pattern against the MX host). Duplicates are dropped, first one kept.

    Args:
        policy: An ``enforce`` or ``testing`` policy.

    Returns:
        The patterns.
    """
    seen: dict[str, None] = {}
    for text in policy._mx_keys():  # noqa: SLF001 -- str() of each pattern
        seen.setdefault(text[1:] if text.startswith("*.") else text, None)
    return tuple(seen)


def _safe_policy_string(line: str) -> bool:
    # Postfix reads "{ policy_string = value }": braces would break the framing,
    # and control characters have no place in an attribute.
    return line.isprintable() and "{" not in line and "}" not in line


def tlsrpt_attributes(domain: str, policy: Policy) -> tuple[str, ...]:
    """
    The Postfix >= 3.10 TLSRPT attributes for an MTA-STS answer (Postfix TLSRPT_README).

    ``policy_type=sts``, ``policy_domain=<domain>``, one
    ``mx_host_pattern=<pattern>`` per ``mx`` line as written, and one
    ``{ policy_string = <line> }`` per policy line (RFC 8460 §4.4
    ``policy-string``; lines Postfix could not carry, with braces or control
    characters, are left out).

    Args:
        domain: The policy domain (A-label).
        policy: The policy.

    Returns:
        The attributes, in order.
    """
    attributes = ["policy_type=sts", f"policy_domain={domain}"]
    attributes += [f"mx_host_pattern={pattern}" for pattern in policy._mx_keys()]  # noqa: SLF001
    attributes += [
        f"{{ policy_string = {line} }}"
        for line in policy.lines
        if line.strip() and _safe_policy_string(line)
    ]
    return tuple(attributes)


def dane_answer(zone: Zone) -> Answer:
    """
    The answer for a destination where DANE applies (RFC 8461 §2).

    Args:
        zone: The zone asked.

    Returns:
        ``OK dane-only``, ``OK dane`` or ``NOTFOUND`` per :attr:`Zone.dane`.
    """
    why = "the destination has DNSSEC-validated TLSA records: DANE, not MTA-STS"
    if zone.dane is DaneAnswer.NOTFOUND:
        return Answer(AnswerKind.NOTFOUND, why=why)
    return Answer(AnswerKind.OK, zone.dane.value, why=why)


def needs_dane_check(outcome: PolicyOutcome, zone: Zone) -> bool:
    """
    Whether the answer could be an MTA-STS ``secure`` level, so TLSA records matter.

    Args:
        outcome: The policy outcome.
        zone: The zone asked.

    Returns:
        ``True`` when DANE checking is on for the zone and the answer would
        otherwise be ``secure``.
    """
    return zone.dane is not DaneAnswer.OFF and _secure_policy(outcome, zone) is not None


def _secure_policy(outcome: PolicyOutcome, zone: Zone) -> Policy | None:
    policy = outcome.policy
    if policy is None or outcome.defer:
        return None
    # RFC 8461 §5: "testing" delivers as without MTA-STS, unless the operator
    # asks for strict treatment.
    if policy.mode is Mode.ENFORCE or (policy.mode is Mode.TESTING and zone.strict):
        return policy
    return None


def build_answer(
    outcome: PolicyOutcome, zone: Zone, *, dane: DaneVerdict = DaneVerdict.NONE
) -> Answer:
    """
    The socketmap answer for a policy outcome.

    Args:
        outcome: What the policy machine decided for the domain.
        zone: The zone asked.
        dane: What the TLSA lookups found (only looked at when the answer
            would be ``secure``; see :func:`needs_dane_check`).

    Returns:
        The answer.
    """
    if outcome.defer:
        # AMB-16 (STS-CACHE-09): defer_on_dns_error asks for a temporary failure.
        return Answer(
            AnswerKind.TEMP,
            f"MTA-STS discovery for {outcome.domain} failed temporarily",
            why="TXT lookup failed and deferral is configured",
        )
    policy = _secure_policy(outcome, zone)
    if policy is None:
        mode = outcome.mode.value if outcome.mode is not None else "no policy"
        return Answer(AnswerKind.NOTFOUND, why=f"{mode}: deliver as without MTA-STS")
    if zone.dane is not DaneAnswer.OFF and dane is not DaneVerdict.NONE:
        # RFC 8461 §2 (DANE-49): MTA-STS never overrides DANE.
        return dane_answer(zone)
    # RFC 8461 §4.1, §4.2 (STS-APPLY-04, STS-APPLY-05): verified TLS to an MX
    # matching a pattern; Postfix checks the certificate against match=.
    parts = ["secure", "match=" + ":".join(match_patterns(policy))]
    if zone.require_sni:
        parts.append("servername=hostname")
    if zone.tlsrpt:
        parts += tlsrpt_attributes(outcome.domain, policy)
    return Answer(AnswerKind.OK, " ".join(parts), why=f"{policy.mode.value} policy")


def zone_for(name: str, zones: Iterable[Zone], default: Zone) -> Zone:
    """
    The zone a socketmap name selects (the default zone for unknown names).

    Args:
        name: The map name from the request.
        zones: The configured zones.
        default: The zone for names not configured.

    Returns:
        The zone.
    """
    for zone in zones:
        if zone.name == name:
            return zone
    return default
