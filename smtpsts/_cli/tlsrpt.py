"""
``smtpsts tlsrpt show FILE...``: summarise received TLS-RPT reports.

Reads ``.json``, ``.json.gz`` and ``.eml`` files (or standard input for
``-``); the format is recognised by content, not by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from smtpsts._cli.tlsrpt_advise import register_advise
from smtpsts._cli.tlsrpt_dashboard import register_dashboard
from smtpsts._cli.tlsrpt_fetch import register_fetch
from smtpsts._cli.tlsrpt_send import register_send
from smtpsts._cli.tlsrpt_serve import register_serve
from smtpsts._cli.tlsrpt_store import register_store
from smtpsts.exceptions import ReportSyntaxError
from smtpsts.tlsrpt.model import PolicyResult, Report
from smtpsts.tlsrpt.parse import MAX_MESSAGE_SIZE, parse_report_message

__all__ = ["register"]


def register(sub: Any) -> None:
    """
    Add the ``tlsrpt`` command group with its ``show`` action.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser("tlsrpt", help="work with TLS-RPT aggregate reports")
    tsub = p.add_subparsers(dest="tlsrpt_command", metavar="ACTION", required=True)
    show = tsub.add_parser(
        "show",
        help="summarise received TLS-RPT reports",
        description="Parse TLS-RPT reports (RFC 8460) saved as .json, .json.gz or .eml "
        "(a report mail) and print, per policy, the sessions, the failure rate, the "
        "failure types and the MX hosts. With --json, print the normalised report "
        "instead (an array of reports when several files are given). Exits 0 when "
        "every file parsed, 1 otherwise.",
    )
    show.add_argument("files", nargs="+", metavar="FILE", help="a report file, or - for stdin")
    show.add_argument("--json", action="store_true", help="print normalised report JSON")
    show.set_defaults(handler=_show)
    register_send(tsub)
    register_serve(tsub)
    register_store(tsub)
    register_advise(tsub)
    register_dashboard(tsub)
    register_fetch(tsub)


def _read(name: str) -> bytes:
    # One byte over the cap is enough for the parser to refuse it.
    if name == "-":
        return sys.stdin.buffer.read(MAX_MESSAGE_SIZE + 1)
    with Path(name).open("rb") as f:
        return f.read(MAX_MESSAGE_SIZE + 1)


def _safe(text: object) -> str:
    # Report strings come from the network: no terminal control sequences.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _policy_lines(entry: PolicyResult) -> list[str]:
    policy, summary = entry.policy, entry.summary
    ok = summary.total_successful_session_count
    failed = summary.total_failure_session_count
    total = ok + failed
    head = f"  policy {policy.policy_type}"
    if policy.policy_domain:
        head += f" for {policy.policy_domain}"
    lines = [head]
    if policy.mx_host:
        lines.append(f"    mx patterns: {', '.join(policy.mx_host)}")
    rate = f" ({100 * failed / total:.1f}% failed)" if total else ""
    lines.append(f"    sessions: {total}: {ok} successful, {failed} failed{rate}")
    types: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    for detail in entry.failure_details:
        types[str(detail.result_type)] += detail.failed_session_count
        if detail.receiving_mx_hostname:
            hosts[detail.receiving_mx_hostname] += detail.failed_session_count
    if types:
        lines.append("    failure types: " + ", ".join(f"{t} {n}" for t, n in types.most_common()))
    if hosts:
        lines.append(
            "    failing MX hosts: " + ", ".join(f"{h} {n}" for h, n in hosts.most_common())
        )
    for detail in entry.failure_details:
        where = []
        if detail.receiving_mx_hostname or detail.receiving_ip:
            mx = detail.receiving_mx_hostname or "?"
            where.append(f"mx {mx}" + (f" [{detail.receiving_ip}]" if detail.receiving_ip else ""))
        if detail.receiving_mx_helo:
            where.append(f"helo {detail.receiving_mx_helo}")
        if detail.sending_mta_ip:
            where.append(f"from {detail.sending_mta_ip}")
        if detail.failure_reason_code:
            where.append(f"reason {detail.failure_reason_code}")
        if detail.additional_information:
            where.append(f"info {detail.additional_information}")
        suffix = f": {'; '.join(where)}" if where else ""
        lines.append(f"      {detail.failed_session_count} x {detail.result_type}{suffix}")
    return lines


def _summary(name: str, report: Report) -> list[str]:
    who = report.organization_name or "unknown organisation"
    if report.contact_info:
        who += f" <{report.contact_info}>"
    rng = report.date_range
    lines = [
        f"{name}: report from {who}",
        f"  report id: {report.report_id or '-'}",
        f"  period: {rng.start:%Y-%m-%dT%H:%M:%SZ} to {rng.end:%Y-%m-%dT%H:%M:%SZ}",
    ]
    if not report.policies:
        lines.append("  no policies")
    for entry in report.policies:
        lines.extend(_policy_lines(entry))
    return lines


def _show(args: argparse.Namespace) -> int:
    status = 0
    reports: list[dict[str, Any]] = []
    for name in args.files:
        try:
            report = parse_report_message(_read(name))
        except OSError as e:
            print(f"smtpsts: {name}: cannot read: {e.strerror or e}", file=sys.stderr)
            status = 1
            continue
        except ReportSyntaxError as e:
            print(f"smtpsts: {name}: not a valid TLS-RPT report: {e}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            reports.append(report.to_json_object())
        else:
            print("\n".join(_safe(line) for line in _summary(name, report)))
    if args.json and reports:
        out: Any = reports[0] if len(args.files) == 1 else reports
        print(json.dumps(out, indent=2, ensure_ascii=False))
    return status
