"""
``smtpsts check DOMAIN...``: diagnose domains' MTA-STS, TLS-RPT and DANE setup.

The work is done by :func:`smtpsts.io.check.acheck_domain`; this module parses
the options, prints the report (sections, or JSON with ``--json``) and turns
it into the exit status (:data:`EXIT_STATUS`): 0 when no problem was found
(warnings and advice allowed), 1 when the domain has problems, 3 when it
could not be checked (DNS silent, unreachable or failing; the deadline; a
local fault), 2 for a usage error. Several domains (arguments or
``--domains FILE``) are checked concurrently on one event loop, with a
progress bar on standard error when it is a terminal, and summed up in a
table; the exit status is then the worst of them (3 > 1 > 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from smtpsts._names import to_alabel
from smtpsts.cache import CacheEntry
from smtpsts.exceptions import ConfigError, DomainNameError
from smtpsts.io.check import (
    DEFAULT_EXPIRY_WARNING_DAYS,
    DEFAULT_TIMEOUT,
    CheckReport,
    CheckStatus,
    MXCheck,
    acheck_domain,
)

__all__ = ["EXIT_STATUS", "fleet_status", "register", "render", "render_table"]

EXIT_STATUS: Final = {CheckStatus.OK: 0, CheckStatus.PROBLEMS: 1, CheckStatus.UNCHECKED: 3}
"""The exit status of each outcome; 2 is a usage error."""

DEFAULT_CONCURRENCY: Final = 16
"""Domains checked at once by default."""

_EPILOG = """\
exit status:
  0  no problems found (warnings and advice allowed)
  1  the domain has problems
  2  usage error (bad option, unreadable file, not a domain name)
  3  could not check: the DNS server did not answer, was unreachable or
     failed (SERVFAIL), the deadline passed, or this host ran out of
     resources; the reason is said once, naming the DNS server
With several domains the exit status is the worst of them (3 > 1 > 0).
"""


def register(sub: Any) -> None:
    """
    Add the ``check`` command.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser(
        "check",
        help="diagnose a domain's MTA-STS, TLS-RPT and DANE setup",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Look up the MTA-STS record and policy, the TLS-RPT record and the MX\n"
        "hosts of DOMAIN; probe each MX with STARTTLS on port 25 and check its\n"
        "certificate (and its DANE TLSA records when the DNS resolver is on\n"
        "loopback, hence trusted to validate DNSSEC). Prints what was found and\n"
        "the findings, each a problem, a warning or advice. With several domains\n"
        "(arguments or --domains FILE) they are checked concurrently and summed up\n"
        "in a table, with a progress bar on standard error when it is a terminal.",
        epilog=_EPILOG,
    )
    p.add_argument("domain", metavar="DOMAIN", nargs="*", help="the domains to check")
    p.add_argument(
        "--domains",
        metavar="FILE",
        help="check the domains in FILE too: one per line, # starts a comment ('-': stdin)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"domains checked at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--expiry-warning-days",
        type=float,
        default=DEFAULT_EXPIRY_WARNING_DAYS,
        metavar="DAYS",
        help="warn when an MX or policy host certificate expires within DAYS "
        f"(default {DEFAULT_EXPIRY_WARNING_DAYS}; 0: never)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON (several domains: one object with all the reports)",
    )
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
    p.set_defaults(handler=_check, check_parser=p)


def _usage(message: str) -> int:
    print(f"smtpsts check: error: {message}", file=sys.stderr)
    return 2


def _read_domains(path: str) -> list[str]:
    # One per line; "#" starts a comment; blank lines are skipped.
    if path == "-":
        text = sys.stdin.read()
    else:
        text = Path(path).read_text(encoding="utf-8")
    names = []
    for line in text.splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def _check(args: argparse.Namespace) -> int:
    from smtpsts.io._resolver import parse_nameserver  # noqa: PLC0415
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415
    from smtpsts.io.truststore import load_trust_store  # noqa: PLC0415

    if not args.timeout > 0:
        return _usage("--timeout must be positive")
    if args.concurrency < 1:
        return _usage("--concurrency must be at least 1")
    if not args.expiry_warning_days >= 0:
        return _usage("--expiry-warning-days must be 0 or more")
    names = list(args.domain)
    if args.domains is not None:
        try:
            names += _read_domains(args.domains)
        except (OSError, UnicodeDecodeError) as exc:
            return _usage(f"--domains {args.domains}: cannot be read: {exc}")
    if not names:
        if args.domains is not None:
            return _usage(f"--domains {args.domains}: no domains in it")
        args.check_parser.error("give a DOMAIN or --domains FILE")
    domains: list[str] = []
    for name in names:
        try:
            domains.append(to_alabel(name))
        except DomainNameError as exc:
            return _usage(f"{name!r} is not a domain name: {exc}")
    domains = list(dict.fromkeys(domains))
    fleet = len(names) > 1 or args.domains is not None
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
        try:
            trust = load_trust_store(args.cafile)
        except ConfigError as e:
            # The file exists (checked above): it cannot be read, or holds no certificate.
            return _usage(f"--cafile: {e}".replace("trust store ", "", 1))
    cached: dict[str, CacheEntry | None] = {}
    if args.cache is not None:
        from smtpsts import LocalFaultError  # noqa: PLC0415
        from smtpsts.stores.sqlite import SQLitePolicyStore  # noqa: PLC0415

        if not Path(args.cache).is_file():
            return _usage(f"--cache {args.cache}: no such file")
        try:
            store = SQLitePolicyStore(args.cache)
            try:
                cached = {d: store.get(d) for d in domains}
            finally:
                store.close()
        except (LocalFaultError, OSError, sqlite3.Error) as exc:
            return _usage(f"--cache {args.cache}: cannot be read: {exc}")
    options: dict[str, Any] = {
        "nameservers": args.nameserver,
        "trust": trust,
        "connect_to": connect_to,
        "timeout": args.timeout,
        "probe_mx": not args.no_mx,
        "helo_name": args.helo,
        "as_sender": args.cache is not None,
        "expiry_warning_days": args.expiry_warning_days,
    }
    progress = _Progress(sys.stderr, len(domains)) if fleet and sys.stderr.isatty() else None
    reports = run_checks(
        domains,
        options,
        cached=cached,
        concurrency=args.concurrency,
        on_done=None if progress is None else progress.step,
    )
    if progress is not None:
        progress.close()
    status = fleet_status(reports)
    if not fleet:
        report = reports[0]
        print(report.to_json() if args.json else "\n".join(render(report)))
    elif args.json:
        doc = {
            "status": status,
            "domains": [r.to_dict() for r in reports],
        }
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(render_table(reports)))
    return status


def fleet_status(reports: Sequence[CheckReport]) -> int:
    """
    The exit status of several checks: the worst of them (3 > 1 > 0).

    Args:
        reports: The reports.

    Returns:
        3 when any domain could not be checked, else 1 when any has
        problems, else 0.
    """
    statuses = {EXIT_STATUS[r.status] for r in reports}
    return next((s for s in (3, 1) if s in statuses), 0)


def run_checks(
    domains: Sequence[str],
    options: dict[str, Any],
    *,
    cached: dict[str, CacheEntry | None] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_done: Callable[[CheckReport], None] | None = None,
) -> list[CheckReport]:
    """
    Check several domains concurrently on one event loop.

    Args:
        domains: A-labels, checked in any order, reported in this order.
        options: Keyword arguments for :func:`smtpsts.io.check.acheck_domain`.
        cached: Policy store entries by domain (``--cache``).
        concurrency: How many checks run at once.
        on_done: Called with each report as it is finished (the progress bar).

    Returns:
        The reports, in the order of ``domains``.
    """
    entries = cached or {}

    async def main() -> list[CheckReport]:
        gate = asyncio.Semaphore(concurrency)

        async def one(domain: str) -> CheckReport:
            async with gate:
                report = await acheck_domain(domain, cached=entries.get(domain), **options)
            if on_done is not None:
                on_done(report)
            return report

        return list(await asyncio.gather(*(one(d) for d in domains)))

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        # As check_domain: stray tasks (lookups cut off by a deadline) end here.
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class _Progress:
    """A one-line progress bar on a terminal: ``[#####.....] 5/10 domains checked``."""

    WIDTH: Final = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._draw()

    def _draw(self) -> None:
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} domains checked ({elapsed:.0f} s)")
        self.stream.flush()

    def step(self, _report: CheckReport) -> None:
        self.done += 1
        self._draw()

    def close(self) -> None:
        # Erase the bar, so that what follows starts on a clean line.
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def _sts_cell(report: CheckReport) -> str:
    sts = report.sts
    if sts.policy is not None:
        return sts.policy.mode.value
    if sts.error is not None:
        return "?" if sts.error.not_checked else "error"
    return "-"


def _tlsrpt_cell(report: CheckReport) -> str:
    tlsrpt = report.tlsrpt
    if tlsrpt.record is not None:
        return "yes"
    if tlsrpt.error is not None:
        return "?" if tlsrpt.error.not_checked else "error"
    return "-"


def _dane_cell(report: CheckReport) -> str:
    if not report.dane_checked or not report.mx:
        return "n/a"
    dane = [mx.dane for mx in report.mx]
    if any(d is not None and d.failed for d in dane):
        return "failed"
    good = [d is not None and d.check is not None and d.check.authenticated for d in dane]
    if all(good):
        return "yes"
    return "partial" if any(good) else "-"


def render_table(reports: Sequence[CheckReport]) -> list[str]:
    """
    The summary of several checks: one row per domain, then what is wrong.

    Args:
        reports: The reports.

    Returns:
        The lines: a table with the columns domain, MTA-STS (the policy
        mode, ``-`` without a record, ``error``, ``?`` not checked),
        TLS-RPT, DANE (``yes`` when every MX is authenticated, ``partial``,
        ``failed``, ``-``, ``n/a`` when not checked), problems, warnings and
        status; then each domain's problems and why it could not be checked;
        then a count of the statuses.
    """
    header = ("DOMAIN", "MTA-STS", "TLS-RPT", "DANE", "PROBLEMS", "WARNINGS", "STATUS")
    rows = [header] + [
        (
            _safe(r.domain),
            _sts_cell(r),
            _tlsrpt_cell(r),
            _dane_cell(r),
            str(len(r.problems)),
            str(len(r.warnings)),
            r.status.value,
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    details = []
    for r in reports:
        if r.unchecked is not None:
            details.append(f"{r.domain}: could not check: {_safe(r.unchecked)}")
        details += [f"{r.domain}: problem: {_safe(p)}" for p in r.problems]
    if details:
        lines += ["", *details]
    counts = {s: sum(r.status is s for r in reports) for s in CheckStatus}
    total = (
        f"{len(reports)} domains: {counts[CheckStatus.OK]} ok, "
        f"{counts[CheckStatus.PROBLEMS]} with problems, "
        f"{counts[CheckStatus.UNCHECKED]} could not be checked"
    )
    lines += ["", total]
    return lines


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
        the TLS-RPT record, the verdict and the findings (``problem: ...``,
        ``warning: ...``, ``advice: ...``). What could not be checked says
        "not checked" in its section; why is said once, in the verdict.
    """
    d = report.domain
    sts = report.sts
    lines = [f"smtpsts check {d}", "", f"MTA-STS record (TXT _mta-sts.{d})"]
    if sts.record is not None:
        lines.append(f"  found: {_safe(sts.record.to_text())}")
    elif sts.error is not None and sts.error.not_checked:
        lines.append("  not checked")
    elif sts.error is not None and sts.error.reason.startswith("txt-"):
        lines.append(f"  ERROR: {_safe(sts.error.detail)} ({sts.error.reason})")
    else:
        lines.append("  none")
    lines += ["", f"MTA-STS policy ({sts.policy_url or 'not fetched'})"]
    if sts.policy is not None:
        policy = sts.policy
        lines.append(f"  mode: {policy.mode.value}, max_age: {policy.max_age}")
        lines.append(f"  mx: {', '.join(str(p) for p in policy.mx) or '(none)'}")
    elif sts.error is not None and sts.error.not_checked:
        lines.append("  not checked")
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
    if report.nxdomain:
        lines.append(f"  none: {d} does not exist (NXDOMAIN)")
    if report.mx_error is not None:
        lines.append("  not checked")
    if report.null_mx:
        lines.append("  null MX (RFC 7505): the domain accepts no mail")
    for mx in report.mx:
        lines += _mx_lines(mx, dane_checked=report.dane_checked)
    tlsrpt = report.tlsrpt
    lines += ["", f"TLS-RPT record (TXT _smtp._tls.{d})"]
    if tlsrpt.record is not None:
        lines.append(f"  rua: {_safe(', '.join(tlsrpt.record.rua))}")
    elif tlsrpt.error is not None and tlsrpt.error.not_checked:
        lines.append("  not checked")
    elif tlsrpt.error is not None:
        lines.append(f"  ERROR: {_safe(tlsrpt.error.detail)} ({tlsrpt.error.reason})")
    else:
        lines.append("  none")
    lines += ["", "Verdict"]
    count = len(report.problems)
    if report.unchecked is not None:
        lines.append(f"  COULD NOT CHECK {d}: {_safe(report.unchecked)}")
    if count:
        lines.append(f"  PROBLEMS: {count} problem{'s' if count != 1 else ''} found")
    elif report.unchecked is None:
        lines.append("  OK: no problems found")
    if report.findings:
        lines += ["", "Findings"]
        lines += [f"  {f.severity.value}: {_safe(f.message)}" for f in report.findings]
    return lines


def _mx_lines(mx: MXCheck, *, dane_checked: bool) -> list[str]:
    head = f"  {mx.preference} {mx.host}"
    if mx.implicit:
        head = f"  {mx.host} (no MX records: the domain itself)"
    if mx.address:
        head += f" [{mx.address}]"
    lines = [head, f"    matches policy: {_yes(mx.matches_policy)}"]
    probe = mx.probe
    if probe is None and mx.could_not_check:
        lines.append("    not checked")
        return lines
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
