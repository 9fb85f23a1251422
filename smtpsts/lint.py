"""
Lint MTA-STS policies and TXT records before publishing them.

Pure functions over text: :func:`lint_policy` reports every syntax error the
strict parser finds (one per bad line, plus missing fields) and warns about
things that are legal but risky -- a short ``max_age``, ``mode: testing``, a
key that looks like a mistyped reserved key, and so on. A policy with no
errors is one every conforming sender accepts; warnings never make it invalid.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Literal

import attrs

from .exceptions import ParseError
from .policy import MAX_AGE_LIMIT, RESERVED_KEYS, Mode, PolicyField, scan_policy
from .record import STSRecord
from .tlsrpt.record import TLSRPTRecord, UnsupportedEndpoint

__all__ = ["ONE_DAY", "Problem", "Severity", "lint_policy", "lint_record", "record_kind"]

ONE_DAY = 86400
"""``max_age`` values below this many seconds get a warning."""

ONE_WEEK = 604800
"""An ``enforce`` policy's ``max_age`` under this gets a warning (RFC 8461 §3.2: "weeks")."""


class Severity(enum.StrEnum):
    """
    How bad a :class:`Problem` is.

    ``.value`` is the word the CLI prints.
    """

    ERROR = "error"
    """The text is invalid: senders ignore it (no policy, or no reporting)."""

    WARNING = "warning"
    """The text is valid, but probably not what the publisher meant."""


def _to_ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Problem:
    """
    One finding of the linter.

    Attributes:
        severity: :attr:`Severity.ERROR` or :attr:`Severity.WARNING`.
        code: Short machine-readable code, such as ``bad-max-age`` (errors
            use the parser's ``reason``) or ``mode-testing``.
        message: What is wrong, in words.
        line: 1-based line, or ``None`` when the problem is not on one line
            (a missing field).
        offset: 0-based offset within the line (or the record), or ``None``.
        conformance: The conformance IDs (docs/conformance.md) of the rules involved.
    """

    severity: Severity = attrs.field(converter=Severity)
    code: str
    message: str
    line: int | None = None
    offset: int | None = None
    conformance: tuple[str, ...] = attrs.field(default=(), converter=_to_ids)

    @classmethod
    def from_error(cls, error: ParseError) -> Problem:
        """
        Turn a parser exception into an error problem.

        Args:
            error: The exception.

        Returns:
            The problem, with the exception's position, IDs and reason code.
        """
        return cls(
            Severity.ERROR,
            error.reason,
            error.detail,
            error.line,
            error.offset,
            error.conformance,
        )

    def to_json(self) -> dict[str, Any]:
        """
        Return the problem as a JSON-ready dict.

        Returns:
            ``severity``, ``code``, ``message``, ``line``, ``offset`` (both
            possibly ``None``) and ``conformance`` (a list).
        """
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "line": self.line,
            "offset": self.offset,
            "conformance": list(self.conformance),
        }


def _sort_key(problem: Problem) -> tuple[bool, int, bool, bool, int]:
    return (
        problem.line is None,
        problem.line or 0,
        problem.severity is not Severity.ERROR,
        problem.offset is None,
        problem.offset or 0,
    )


def _squash(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


_NEAR_MISSES = {_squash(key): key for key in RESERVED_KEYS}


def _field_warnings(field: PolicyField, first: bool, previous: int) -> list[Problem]:
    warn = Severity.WARNING
    out = []
    if not first and field.key != "mx":
        # RFC 8461 §3.2 (STS-POL-12, STS-POL-13, AMB-15): "all entries except for the
        # first SHALL be ignored", whatever they hold; a publisher who wrote the line
        # surely meant something by it.
        out.append(
            Problem(
                warn,
                "duplicate-key",
                f"{field.key!r} repeated: this line is ignored whatever its value; only the "
                f"first, on line {previous}, is used",
                field.line,
                0,
                ("STS-POL-12", "STS-POL-13", "AMB-15"),
            )
        )
        return out
    if field.key == "mode":
        if field.value == Mode.TESTING:
            out.append(
                Problem(
                    warn,
                    "mode-testing",
                    "mode 'testing': senders report failures but still deliver without TLS "
                    "or to unlisted MX hosts; switch to 'enforce' when reports are clean",
                    field.line,
                    field.offset,
                    ("STS-POL-03",),
                )
            )
        elif field.value == Mode.NONE:
            out.append(
                Problem(
                    warn,
                    "mode-none",
                    "mode 'none': the domain opts out of MTA-STS; senders apply no policy",
                    field.line,
                    field.offset,
                    ("STS-POL-06", "AMB-24"),
                )
            )
    elif (
        field.key == "max_age"
        and field.value.isascii()
        and field.value.isdigit()
        and len(field.value) <= 10
    ):
        max_age = int(field.value)
        if max_age > MAX_AGE_LIMIT:
            out.append(
                Problem(
                    warn,
                    "max-age-clamped",
                    f"max_age {max_age} is above {MAX_AGE_LIMIT} (one year); senders cache "
                    f"the policy for at most {MAX_AGE_LIMIT} seconds",
                    field.line,
                    field.offset,
                    ("STS-POL-05", "AMB-05"),
                )
            )
        elif max_age < ONE_DAY:
            out.append(
                Problem(
                    warn,
                    "short-max-age",
                    f"max_age {max_age} is under one day ({ONE_DAY}); "
                    + (
                        "the policy is never cached, so it protects nothing "
                        "against an attacker who blocks the fetch"
                        if max_age == 0
                        else "the policy expires quickly, which weakens protection "
                        "against downgrade attacks (weeks are usual)"
                    ),
                    field.line,
                    field.offset,
                    ("STS-POL-04", "STS-POL-21") if max_age == 0 else ("STS-POL-04",),
                )
            )
    elif field.key == "mx":
        if field.value.startswith("*."):
            out.append(
                Problem(
                    warn,
                    "wildcard-mx",
                    f"wildcard pattern {field.value!r} allows any host one label below "
                    f"{field.value[2:]!r} (but not {field.value[2:]!r} itself); "
                    "list exact MX names where you can",
                    field.line,
                    field.offset,
                    ("STS-MX-03",),
                )
            )
            if "." not in field.value[2:]:
                out.append(
                    Problem(
                        warn,
                        "wildcard-tld",
                        f"wildcard pattern {field.value!r} covers every host directly under the "
                        f"top-level domain {field.value[2:]!r}: any such name's owner can get a "
                        "certificate for it and receive this domain's mail",
                        field.line,
                        field.offset,
                        ("STS-MX-03",),
                    )
                )
    elif field.key not in RESERVED_KEYS:
        meant = _NEAR_MISSES.get(_squash(field.key))
        if meant is not None:
            out.append(
                Problem(
                    warn,
                    "key-typo",
                    f"unknown key {field.key!r} is ignored; did you mean {meant!r}? "
                    "(keys are case-sensitive)",
                    field.line,
                    0,
                    ("STS-POL-14", "STS-POL-10"),
                )
            )
        else:
            out.append(
                Problem(
                    warn,
                    "unknown-key",
                    f"unknown key {field.key!r} is ignored by senders",
                    field.line,
                    0,
                    ("STS-POL-10",),
                )
            )
    return out


def lint_policy(text: str | bytes) -> list[Problem]:
    """
    Check a policy body the way senders parse it, and warn about risky settings.

    Errors come from the strict parser (:func:`smtpsts.policy.scan_policy`),
    one per bad line where the input allows, plus the missing fields.
    Warnings, for lines that parsed: ``mode-testing``, ``mode-none``,
    ``short-max-age`` (under one day), ``max-age-clamped`` (above
    31557600), ``wildcard-mx``, ``unknown-key``, ``key-typo`` (an unknown key
    that looks like a reserved one, such as ``Mode`` or ``max-age``),
    ``duplicate-key`` (a later line of a key that does not repeat, which senders
    ignore whatever its value) and ``mixed-line-endings``. A missing final line
    terminator is fine and not reported.

    Args:
        text: The policy body as it will be served.

    Returns:
        The problems, sorted by line (problems without a line last).
    """
    scan = scan_policy(text)
    problems = [Problem.from_error(e) for e in scan.errors]
    terms = [t for t in scan.terminators if t]
    if len(set(terms)) > 1:
        # RFC 8461 §3.2 (STS-POL-01): LF and CRLF may be mixed; legal, but a sign of
        # a body edited on different systems.
        line = next(i for i, t in enumerate(scan.terminators, 1) if t != terms[0])
        problems.append(
            Problem(
                Severity.WARNING,
                "mixed-line-endings",
                "lines end in a mix of CRLF and LF (valid, but CRLF everywhere is the norm)",
                line,
                None,
                ("STS-POL-01",),
            )
        )
    first_line: dict[str, int] = {}
    for field in scan.fields:
        previous = first_line.setdefault(field.key, field.line)
        problems.extend(_field_warnings(field, previous == field.line, previous))
    policy = scan.policy
    if policy is not None and policy.mode is Mode.ENFORCE and ONE_DAY <= policy.max_age < ONE_WEEK:
        # RFC 8461 §3.2: "max_age ... values should be in the range of weeks or greater";
        # under a day is warned about above, whatever the mode.
        field = next(f for f in scan.fields if f.key == "max_age")
        problems.append(
            Problem(
                Severity.WARNING,
                "short-max-age",
                f"max_age {policy.max_age} is under a week ({ONE_WEEK}) for an enforce policy; "
                "RFC 8461 §3.2 advises weeks or more, so that a cached policy outlasts an attack",
                field.line,
                field.offset,
                ("STS-POL-04",),
            )
        )
    problems.sort(key=_sort_key)
    return problems


def record_kind(text: str) -> Literal["sts", "tlsrpt"]:
    """
    Guess which kind of TXT record a text is meant to be, by its ``v=`` prefix.

    Args:
        text: The record, character-strings joined.

    Returns:
        ``"tlsrpt"`` when it starts with ``v=TLSRPTv1`` (or, failing both
        prefixes, mentions ``tlsrpt`` near the start in any case), else ``"sts"``.
    """
    head = text.lstrip(" \t")
    if head.startswith("v=TLSRPTv1"):
        return "tlsrpt"
    if head.startswith("v=STSv1"):
        return "sts"
    return "tlsrpt" if "tlsrpt" in head[:16].lower() else "sts"


def _record_fields(text: str) -> list[tuple[str, int]]:
    # A light split into (key, offset) for the warnings; the parser already
    # decided validity. RFC 8461 §3.1 / RFC 8460 §3: values never contain ";".
    out = []
    start = 0
    for part in text.split(";"):
        key = part.split("=", 1)[0]
        if "=" in part and key.strip(" \t"):
            out.append((key.strip(" \t"), start + len(part) - len(part.lstrip(" \t"))))
        start += len(part) + 1
    return out


def _unquote(text: str) -> str:
    # '"v=STSv1; " "id=1;"' -> 'v=STSv1; id=1;': the character-strings joined, as DNS
    # gives them to a sender (STS-REC-03).
    return "".join(text.split('"')[1::2]) or text.strip('"')


def lint_record(text: str) -> list[Problem]:
    """
    Check an ``_mta-sts`` or ``_smtp._tls`` TXT record (RFC 8461 §3.1, RFC 8460 §3).

    The kind is told by the ``v=`` prefix (:func:`record_kind`). The error,
    if any, comes from :meth:`smtpsts.STSRecord.from_text` or
    :meth:`smtpsts.tlsrpt.TLSRPTRecord.from_text` (strict mode). Warnings:
    ``unknown-field`` (``key-typo`` when it looks like ``v``, ``id`` or
    ``rua`` in another case), ``duplicate-field`` (a repeated ``v`` or ``id``,
    or extension, which senders ignore whatever its value) and, for TLS-RPT,
    ``unusable-rua`` (a URI reports cannot be sent to, such as ``http:``)
    and ``no-usable-rua``. All problems are on line 1.

    Args:
        text: The record, character-strings joined (STS-REC-03, RPT-REC-07).

    Returns:
        The problems, sorted by offset.
    """
    stripped = text.strip()
    if stripped.startswith('"'):
        # dig and most DNS consoles print a TXT record's character-strings in quotes;
        # the quotes are not part of the record (STS-REC-03, RPT-REC-07).
        unquoted = _unquote(stripped)
        return [
            Problem(
                Severity.WARNING,
                "quoted-record",
                "the text starts with a quote, as dig prints TXT records: the quotes are not "
                f"part of the record, so it was checked without them: {unquoted[:60]!r}",
                1,
                0,
                ("STS-REC-03", "RPT-REC-07"),
            ),
            *lint_record(unquoted),
        ]
    kind = record_kind(text)
    warn = Severity.WARNING
    problems: list[Problem] = []
    reserved = ("v", "rua") if kind == "tlsrpt" else ("v", "id")
    ids = ("RPT-REC-05",) if kind == "tlsrpt" else ("STS-REC-09",)
    # RFC 8461 §3.2 (STS-REC-11, STS-REC-16, AMB-04, AMB-15); RFC 8460 §3 has no rule of
    # its own, and smtpsts applies the same one to a repeated "v" (AMB-04).
    duplicate_ids = (
        ("RPT-REC-05", "AMB-04")
        if kind == "tlsrpt"
        else ("STS-REC-11", "STS-REC-16", "AMB-04", "AMB-15")
    )
    try:
        record: STSRecord | TLSRPTRecord = (
            TLSRPTRecord.from_text(text) if kind == "tlsrpt" else STSRecord.from_text(text)
        )
    except ParseError as e:
        return [attrs.evolve(Problem.from_error(e), line=1)]
    seen: set[str] = set()
    for key, offset in _record_fields(text):
        if key in seen:
            if key != "rua":
                # Only the first occurrence counts; a later one is ignored whatever it holds.
                problems.append(
                    Problem(
                        warn,
                        "duplicate-field",
                        f"field {key!r} repeated: ignored whatever its value; only the first "
                        "is used",
                        1,
                        offset,
                        duplicate_ids,
                    )
                )
            continue
        seen.add(key)
        if key in reserved:
            continue
        meant = next((r for r in reserved if key.lower() == r), None)
        if meant is not None:
            problems.append(
                Problem(
                    warn,
                    "key-typo",
                    f"unknown field {key!r} is ignored; did you mean {meant!r}? "
                    "(field names are case-sensitive)",
                    1,
                    offset,
                    ids,
                )
            )
        else:
            problems.append(
                Problem(warn, "unknown-field", f"unknown field {key!r} is ignored", 1, offset, ids)
            )
    if isinstance(record, TLSRPTRecord):
        # RFC 8460 §3 (RPT-REC-09): only mailto and https are defined.
        problems.extend(
            Problem(
                warn,
                "unusable-rua",
                f"rua URI {endpoint.uri!r} cannot receive reports ({endpoint.reason})",
                1,
                text.find(endpoint.uri),
                ("RPT-REC-08", "RPT-REC-09"),
            )
            for endpoint in record.endpoints
            if isinstance(endpoint, UnsupportedEndpoint)
        )
        if not record.usable_endpoints:
            problems.append(
                Problem(
                    warn,
                    "no-usable-rua",
                    "no rua URI can receive reports (only mailto: and https: are supported); "
                    "senders will send none",
                    1,
                    None,
                    ("RPT-REC-09",),
                )
            )
    problems.sort(key=_sort_key)
    return problems
