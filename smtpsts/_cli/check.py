"""
``smtpsts check DOMAIN``: diagnose a domain's MTA-STS, TLS-RPT and DANE setup.

The work is done by :func:`smtpsts.io.check.check_domain`; this module parses
the options, prints the report (sections, or JSON with ``--json``) and turns
it into the exit status: 0 when no problem was found, 1 when one was, 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from smtpsts.exceptions import DomainNameError
from smtpsts.io.check import DEFAULT_TIMEOUT, CheckReport, MXCheck, check_domain

__all__ = ["register"]


def register(sub: Any) -> None:
    """
    Add the ``check`` command.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser(
        "check",
        help="diagnose a domain's MTA-STS, TLS-RPT and DANE setup",
        description="Look up the MTA-STS record and policy, the TLS-RPT record and the MX "
        "hosts of DOMAIN; probe each MX with STARTTLS on port 25 and check its certificate "
        "(and its DANE TLSA records when the DNS resolver is on loopback, hence trusted to "
        "validate DNSSEC). Prints what was found, the problems and advice. Exits 0 when no "
        "problem was found, 1 when one was, 2 on usage errors.",
    )
    p.add_argument("domain", metavar="DOMAIN", help="the domain to check")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="DNS server to ask instead of the system's (repeatable)",
    )
    p.add_argument(
        "--cafile",
        metavar="PEM",
        help="trust these CA certificates instead of the system's (policy host and MX hosts)",
    )
    p.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR:PORT",
        help="connect to ADDR:PORT instead of HOST:PORT; TLS and SNI still use HOST "
        "(as curl's option; repeatable; MX hosts are HOST:25)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline for the whole check (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--no-mx", action="store_true", help="do not probe the MX hosts (port 25)")
    p.add_argument("--helo", metavar="NAME", help="the EHLO name of the probes")
    p.add_argument(
        "--cache",
        metavar="SQLITE",
        help="a policy store file (the policy server's [cache] path): judge the MX hosts as a "
        "sender holding that cache would, which keeps a live cached policy whatever "
        "discovery sees now",
    )
    p.add_argument(
        "--lab",
        metavar="FILE",
        help="talk to a running `smtpsts lab --keep-running`: its lab.json gives the DNS "
        "server, the CA and the connect-to mappings (options given as well win)",
    )
    p.set_defaults(handler=_check)


def _usage(message: str) -> int:
    print(f"smtpsts check: error: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    from smtpsts.io._resolver import parse_nameserver  # noqa: PLC0415
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415
    from smtpsts.io.truststore import load_trust_store  # noqa: PLC0415

    if not args.timeout > 0:
        return _usage("--timeout must be positive")
    if args.lab is not None:
        from smtpsts.lab.state import LabStateError, load_lab_state  # noqa: PLC0415

        try:
            lab = load_lab_state(args.lab)
        except LabStateError as exc:
            return _usage(f"--lab {exc}")
        args.nameserver = args.nameserver or [lab.nameserver]
        args.cafile = args.cafile if args.cafile is not None else lab.cafile
        args.connect_to = [*lab.connect_to, *args.connect_to]
    try:
        for spec in args.nameserver:
            parse_nameserver(spec)
        connect_to = parse_connect_to(args.connect_to)
    except ValueError as exc:
        return _usage(str(exc))
    trust = None
    if args.cafile is not None:
        if not Path(args.cafile).is_file():
            return _usage(f"--cafile {args.cafile}: no such file")
        trust = load_trust_store(args.cafile)
        if not len(trust):
            return _usage(f"--cafile {args.cafile}: no certificates in it")
    cached = None
    if args.cache is not None:
        from smtpsts import LocalFaultError  # noqa: PLC0415
        from smtpsts.stores.sqlite import SQLitePolicyStore  # noqa: PLC0415

        if not Path(args.cache).is_file():
            return _usage(f"--cache {args.cache}: no such file")
        try:
            store = SQLitePolicyStore(args.cache)
            try:
                cached = store.get(args.domain)
            finally:
                store.close()
        except DomainNameError as exc:
            return _usage(f"{args.domain!r} is not a domain name: {exc}")
        except (LocalFaultError, OSError, sqlite3.Error) as exc:
            return _usage(f"--cache {args.cache}: cannot be read: {exc}")
    try:
        report = check_domain(
            args.domain,
            nameservers=args.nameserver,
            trust=trust,
            connect_to=connect_to,
            timeout=args.timeout,
            probe_mx=not args.no_mx,
            helo_name=args.helo,
            cached=cached,
            as_sender=args.cache is not None,
        )
    except DomainNameError as exc:
        return _usage(f"{args.domain!r} is not a domain name: {exc}")
    if args.json:
        print(report.to_json())
    else:
        print("\n".join(render(report)))
    return 0 if report.ok else 1


def _safe(text: object) -> str:
    # Record, policy and server texts come from the network: no control characters.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[flag]


def render(report: CheckReport) -> list[str]:
    """
    The human-readable report, one line per item.

    Args:
        report: The check's result.

    Returns:
        The lines: sections for the MTA-STS record and policy, the MX hosts,
        the TLS-RPT record, the verdict and advice.
    """
    d = report.domain
    sts = report.sts
    lines = [f"smtpsts check {d}", "", f"MTA-STS record (TXT _mta-sts.{d})"]
    if sts.record is not None:
        lines.append(f"  found: {_safe(sts.record.to_text())}")
    elif sts.error is not None and sts.policy is None and sts.error.reason.startswith("txt-"):
        lines.append(f"  ERROR: {_safe(sts.error.detail)} ({sts.error.reason})")
    elif sts.error is not None and sts.error.reason == "timeout":
        lines.append(f"  ERROR: {sts.error.detail}")
    else:
        lines.append("  none")
    lines += ["", f"MTA-STS policy ({sts.policy_url or 'not fetched'})"]
    if sts.policy is not None:
        policy = sts.policy
        lines.append(f"  mode: {policy.mode.value}, max_age: {policy.max_age}")
        lines.append(f"  mx: {', '.join(str(p) for p in policy.mx) or '(none)'}")
    elif sts.record is not None and sts.error is not None:
        result_type = sts.error.result_type.value if sts.error.result_type else "error"
        lines.append(f"  ERROR {result_type}: {_safe(sts.error.detail)} ({sts.error.reason})")
    else:
        lines.append("  not fetched (no record)")
    if report.applied is not None:
        applied = report.applied
        mode = applied.mode.value if applied.mode is not None else "no policy"
        lines += ["", "Cached policy (--cache)"]
        lines.append(
            f"  a sender with this cache applies: {mode} ({applied.source.value}"
            + (f", id {_safe(applied.record_id)}" if applied.record_id else "")
            + (f", until {applied.expires_at.isoformat()}" if applied.expires_at else "")
            + ")"
        )
        if applied.failure is not None:
            lines.append(f"  discovery failed now: {_safe(applied.failure.reason)}")
    lines += ["", "MX hosts"]
    if report.mx_error is not None:
        lines.append(f"  ERROR: {_safe(report.mx_error.detail)}")
    if report.null_mx:
        lines.append("  null MX (RFC 7505): the domain accepts no mail")
    for mx in report.mx:
        lines += _mx_lines(mx, dane_checked=report.dane_checked)
    tlsrpt = report.tlsrpt
    lines += ["", f"TLS-RPT record (TXT _smtp._tls.{d})"]
    if tlsrpt.record is not None:
        lines.append(f"  rua: {_safe(', '.join(tlsrpt.record.rua))}")
    elif tlsrpt.error is not None:
        lines.append(f"  ERROR: {_safe(tlsrpt.error.detail)} ({tlsrpt.error.reason})")
    else:
        lines.append("  none")
    lines += ["", "Verdict"]
    if report.ok:
        lines.append("  OK: no problems found")
    else:
        count = len(report.problems)
        lines.append(f"  {count} problem{'s' if count != 1 else ''} found:")
        lines += [f"  - {_safe(p)}" for p in report.problems]
    if report.advice:
        lines += ["", "Advice"]
        lines += [f"  - {_safe(a)}" for a in report.advice]
    return lines


def _mx_lines(mx: MXCheck, *, dane_checked: bool) -> list[str]:
    head = f"  {mx.preference} {mx.host}"
    if mx.implicit:
        head = f"  {mx.host} (no MX records: the domain itself)"
    if mx.address:
        head += f" [{mx.address}]"
    lines = [head, f"    matches policy: {_yes(mx.matches_policy)}"]
    probe = mx.probe
    if probe is None:
        lines.append(f"    not probed{': ' + _safe(mx.error) if mx.error else ''}")
        return lines
    if not probe.connected:
        lines.append(f"    connect: FAILED: {_safe(probe.error)}")
        return lines
    if probe.handshake_ok:
        lines.append(f"    STARTTLS: yes, {probe.tls_version} {probe.cipher}")
    elif probe.starttls_offered:
        lines.append(f"    STARTTLS: FAILED at {probe.step}: {_safe(probe.error)} ({probe.reason})")
    else:
        lines.append(f"    STARTTLS: NOT OFFERED ({probe.reason})")
    cert = mx.certificate
    if cert is not None:
        if cert.ok:
            lines.append(f"    certificate: valid for {cert.identity}")
        else:
            result_type = cert.result_type.value if cert.result_type else "invalid"
            lines.append(f"    certificate: {result_type.upper()}: {_safe(cert.detail)}")
    dane = mx.dane
    if dane is not None and dane_checked:
        text = dane.status
        if dane.check is not None:
            check = dane.check
            text += ", authenticated" if check.authenticated else f", {check.reason}"
        lines.append(f"    DANE: {text} ({_safe(dane.detail)})")
    verdict = mx.to_dict()["verdict"]
    if verdict is not None:
        extra = f" ({verdict['result_type']}: {verdict['reason']})" if verdict["reason"] else ""
        lines.append(f"    delivery: {verdict['action']}{extra}")
    return lines
