"""
``smtpsts policy lint FILE|-`` and ``smtpsts record lint TEXT``.

Check a policy file or a TXT record before publishing it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smtpsts.exceptions import ParseError
from smtpsts.lint import Problem, Severity, lint_policy, lint_record, record_kind
from smtpsts.policy import Policy, scan_policy
from smtpsts.record import STSRecord
from smtpsts.tlsrpt.record import TLSRPTRecord

__all__ = ["register"]


def register(sub: Any) -> None:
    """
    Add the ``policy`` and ``record`` command groups with their ``lint`` actions.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser("policy", help="work with MTA-STS policy files")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    lint = psub.add_parser(
        "lint",
        help="check a policy file the way senders parse it",
        description="Parse a policy file strictly (RFC 8461 §3.2) and warn about risky "
        "settings. Prints one line per problem, LINE:OFFSET: severity: message [IDs], "
        "then a verdict. Exits 0 when there are no errors (warnings are fine), 1 when "
        "there are errors, 2 when the file cannot be read.",
    )
    lint.add_argument("file", metavar="FILE", help="the policy file, or - for standard input")
    lint.add_argument("--json", action="store_true", help="print a JSON object instead")
    lint.set_defaults(handler=_policy_lint)

    r = sub.add_parser("record", help="work with _mta-sts and _smtp._tls TXT records")
    rsub = r.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    rlint = rsub.add_parser(
        "lint",
        help="check an _mta-sts or _smtp._tls TXT record",
        description="Parse a TXT record strictly (RFC 8461 §3.1 or RFC 8460 §3, told apart by "
        "its v= prefix) and warn about unknown fields and unusable report URIs. Output and "
        "exit status as for 'policy lint'.",
    )
    rlint.add_argument(
        "text", metavar="TEXT", help="the record, as one argument (character-strings joined)"
    )
    rlint.add_argument("--json", action="store_true", help="print a JSON object instead")
    rlint.set_defaults(handler=_record_lint)


def _position(problem: Problem) -> str:
    line = "-" if problem.line is None else str(problem.line)
    offset = "-" if problem.offset is None else str(problem.offset)
    return f"{line}:{offset}"


def _format(problem: Problem) -> str:
    ids = f" [{', '.join(problem.conformance)}]" if problem.conformance else ""
    return f"{_position(problem)}: {problem.severity.value}: {problem.message}{ids}"


def _counts(problems: Sequence[Problem]) -> tuple[int, int]:
    errors = sum(p.severity is Severity.ERROR for p in problems)
    return errors, len(problems) - errors


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def policy_json(policy: Policy) -> dict[str, Any]:
    """
    Describe a parsed policy as a JSON-ready dict.

    Args:
        policy: The policy.

    Returns:
        ``mode``, ``mx`` (patterns as written in canonical form),
        ``max_age``, ``effective_max_age`` and ``extensions`` (pairs).
    """
    return {
        "mode": policy.mode.value,
        "mx": [str(p) for p in policy.mx],
        "max_age": policy.max_age,
        "effective_max_age": policy.effective_max_age,
        "extensions": [list(pair) for pair in policy.extensions],
    }


# A local file is read whole up to this, so that an oversized policy is reported with
# its real size (issue 12 item 4); senders stop at MAX_POLICY_BYTES (AMB-08).
_READ_CAP = 16 * 1024 * 1024


RULES_PAGE = "https://smtpsts.readthedocs.io/en/latest/conformance.html"
"""Where the rule IDs in brackets are explained (docs/conformance.md, built)."""


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read(_READ_CAP)
    with Path(name).open("rb") as f:
        return f.read(_READ_CAP)


def _report(
    *,
    as_json: bool,
    problems: list[Problem],
    what: str,
    key: str,
    described: dict[str, Any] | None,
) -> int:
    errors, warnings = _counts(problems)
    if as_json:
        out = {"ok": errors == 0, "problems": [p.to_json() for p in problems], key: described}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for problem in problems:
            print(_format(problem))
        if any(p.conformance for p in problems):
            print(f"[IDs] are the rules they break, explained at {RULES_PAGE}")
        tally = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
        print(f"{what}: {'valid' if errors == 0 else 'INVALID'} ({tally})")
    return 0 if errors == 0 else 1


def _policy_lint(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
    except OSError as e:
        print(f"smtpsts: cannot read {args.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    policy = scan_policy(data).policy
    return _report(
        as_json=args.json,
        problems=lint_policy(data),
        what="policy" if args.file == "-" else args.file,
        key="policy",
        described=None if policy is None else policy_json(policy),
    )


def record_json(record: STSRecord | TLSRPTRecord) -> dict[str, Any]:
    """
    Describe a parsed TXT record as a JSON-ready dict.

    Args:
        record: The record.

    Returns:
        ``type`` (``"sts"`` or ``"tlsrpt"``), then ``id`` for MTA-STS or
        ``rua`` and ``usable_rua`` for TLS-RPT, and ``extensions`` (pairs).
    """
    out: dict[str, Any]
    if isinstance(record, STSRecord):
        out = {"type": "sts", "id": record.id}
    else:
        out = {
            "type": "tlsrpt",
            "rua": list(record.rua),
            "usable_rua": [e.uri for e in record.usable_endpoints],
        }
    out["extensions"] = [list(pair) for pair in record.extensions]
    return out


def _record_lint(args: argparse.Namespace) -> int:
    kind = record_kind(args.text)
    record: STSRecord | TLSRPTRecord | None
    try:
        record = (
            TLSRPTRecord.from_text(args.text)
            if kind == "tlsrpt"
            else STSRecord.from_text(args.text)
        )
    except ParseError:
        record = None
    return _report(
        as_json=args.json,
        problems=lint_record(args.text),
        what="TLSRPT record" if kind == "tlsrpt" else "MTA-STS record",
        key="record",
        described=None if record is None else record_json(record),
    )
