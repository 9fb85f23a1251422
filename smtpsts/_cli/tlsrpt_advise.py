"""
``smtpsts tlsrpt advise`` and ``smtpsts tlsrpt alert``: is it safe to enforce, and what changed.

Both read a report store (``--store``: an SQLite file or a PostgreSQL URI,
see :func:`smtpsts._cli.tlsrpt_store.open_report_store`) and hand its
numbers to the pure :mod:`smtpsts.tlsrpt.advisor`.

``advise DOMAIN`` also runs a live check of the domain
(:func:`smtpsts.io.check.check_domain`, the same as ``smtpsts check``)
unless ``--no-check``; when the check cannot run, it says so and the verdict
is made from the reports alone, marked so. Exit status: 0 ready to enforce
(or already enforcing and the reports agree), 1 not yet, 2 usage error,
3 not enough data or could not tell (the store could not be read).

``alert [DOMAIN...]`` compares the last ``--days`` with the ``--baseline``
days before them. Exit status: 0 no alert, 1 alerts, 2 usage error, a
store that cannot be read, or a ``--command`` / ``--webhook`` that failed.
Nothing is printed when there is nothing to say, unless ``--verbose``: fit
for cron and systemd timers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smtpsts._names import to_alabel
from smtpsts.exceptions import DomainNameError, StoreError, StoreVersionError
from smtpsts.io.advise import live_check, read_numbers
from smtpsts.tlsrpt.advisor import (
    Advice,
    Alert,
    AlertThresholds,
    LiveCheck,
    Rate,
    Thresholds,
    Verdict,
    advise,
    alerts,
)
from smtpsts.tlsrpt.inbox import window

__all__ = ["live_check", "read_numbers", "register_advise"]

_EXIT: dict[Verdict, int] = {Verdict.READY: 0, Verdict.NOT_YET: 1, Verdict.NOT_ENOUGH_DATA: 3}
_COULD_NOT_TELL = 3
_UNKNOWN = ("txt-lookup-failed", "timeout")  # CheckError reasons that say nothing of the domain
_STORE_HELP = "the report store: an SQLite file, or postgresql://..."


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return number


def _percent(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {value!r}")
    return number / 100


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def register_advise(tsub: Any) -> None:
    """
    Add the ``advise`` and ``alert`` actions to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    defaults = Thresholds()
    p = tsub.add_parser(
        "advise",
        help="say whether a domain's MTA-STS policy is ready to move to enforce",
        description="From the stored TLS-RPT reports of the last DAYS days and a live check "
        "of DOMAIN (as `smtpsts check`): the reporters and days seen, the failure rates by "
        "sending organisation, MX host and result type, the MX hosts no policy mx pattern "
        "covers, the certificate problems, and a verdict with its reasons. Exits 0 when "
        "ready to enforce, 1 not yet, 2 on usage errors, 3 when there is not enough data "
        "or the store could not be read.",
    )
    p.add_argument("domain", metavar="DOMAIN", help="the policy domain")
    p.add_argument("--store", required=True, metavar="STORE", help=_STORE_HELP)
    p.add_argument(
        "--days", type=_positive_int, default=30, metavar="N", help="look back N days (30)"
    )
    p.add_argument("--json", action="store_true", help="print the advice as JSON")
    p.add_argument(
        "--no-check", action="store_true", help="no live check: judge from the reports alone"
    )
    p.add_argument(
        "--min-days",
        type=_count,
        default=defaults.min_days,
        metavar="N",
        help=f"days with reports needed ({defaults.min_days})",
    )
    p.add_argument(
        "--min-reporters",
        type=_count,
        default=defaults.min_reporters,
        metavar="N",
        help=f"reporting organisations needed ({defaults.min_reporters})",
    )
    p.add_argument(
        "--min-sessions",
        type=_count,
        default=defaults.min_sessions,
        metavar="N",
        help=f"sessions needed ({defaults.min_sessions})",
    )
    p.add_argument(
        "--max-failure-rate",
        type=_percent,
        default=defaults.max_failure_rate,
        metavar="PCT",
        help="highest failure rate that is ready, in percent "
        f"({100 * defaults.max_failure_rate:g})",
    )
    _check_options(p)
    p.set_defaults(handler=_advise)

    a = tsub.add_parser(
        "alert",
        help="alert when a domain's TLS-RPT reports go wrong (for cron and systemd timers)",
        description="For each DOMAIN (default: every domain in the store), compare the "
        "reports of the last --days days with the --baseline days before: alert when the "
        "failure rate passes --failure-rate, when an organisation or a result type fails "
        "that did not fail before, or when no report has arrived for --stale-days days. "
        "Prints one line per alert (nothing when there is none, unless --verbose); runs "
        "--command once per alert with the alert as JSON on stdin, and POSTs it to "
        "--webhook. Exits 0 when there is no alert, 1 when there are alerts, 2 on usage "
        "errors, when the store cannot be read or when a command or webhook failed.",
    )
    a.add_argument("domains", nargs="*", metavar="DOMAIN", help="policy domains (default: all)")
    a.add_argument("--store", required=True, metavar="STORE", help=_STORE_HELP)
    a.add_argument(
        "--days", type=_positive_int, default=7, metavar="N", help="the current window (7 days)"
    )
    a.add_argument(
        "--baseline",
        type=_positive_int,
        default=28,
        metavar="N",
        help="the days before the window to compare with (28)",
    )
    alert_defaults = AlertThresholds()
    a.add_argument(
        "--failure-rate",
        type=_percent,
        default=alert_defaults.max_failure_rate,
        metavar="PCT",
        help="alert above this failure rate, in percent "
        f"({100 * alert_defaults.max_failure_rate:g})",
    )
    a.add_argument(
        "--min-sessions",
        type=_count,
        default=alert_defaults.min_sessions,
        metavar="N",
        help=f"judge the failure rate over at least N sessions ({alert_defaults.min_sessions})",
    )
    a.add_argument(
        "--stale-days",
        type=_positive_int,
        default=alert_defaults.stale_days,
        metavar="N",
        help=f"alert when no report arrived for N days ({alert_defaults.stale_days})",
    )
    a.add_argument(
        "--command",
        metavar="CMD",
        help="run CMD (split like a shell would, but run without one) once per alert, "
        "the alert as JSON on stdin; SMTPSTS_ALERT_DOMAIN and SMTPSTS_ALERT_KIND are set",
    )
    a.add_argument(
        "--command-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="kill the command after this long (30)",
    )
    a.add_argument("--webhook", metavar="URL", help="POST each alert as JSON to this URL")
    a.add_argument(
        "--webhook-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="deadline of one POST (10)",
    )
    a.add_argument("--json", action="store_true", help="print the alerts as a JSON array")
    a.add_argument("--verbose", "-v", action="store_true", help="also say when all is well")
    a.set_defaults(handler=_alert)


def _check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="DNS server of the live check (repeatable)",
    )
    p.add_argument("--cafile", metavar="PEM", help="CA certificates of the live check")
    p.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR:PORT",
        help="as `smtpsts check --connect-to` (repeatable)",
    )
    p.add_argument("--lab", metavar="FILE", help="as `smtpsts check --lab`")
    p.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="SECONDS", help="live check deadline"
    )


def _usage(command: str, message: str) -> int:
    print(f"smtpsts tlsrpt {command}: error: {message}", file=sys.stderr)
    return 2


def _run_check(args: argparse.Namespace) -> tuple[LiveCheck | None, str]:
    """The live check, or ``(None, why it could not run)``."""
    from smtpsts.io._resolver import parse_nameserver  # noqa: PLC0415
    from smtpsts.io.check import check_domain  # noqa: PLC0415
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415
    from smtpsts.io.truststore import load_trust_store  # noqa: PLC0415

    if args.lab is not None:
        from smtpsts.lab.state import LabStateError, load_lab_state  # noqa: PLC0415

        try:
            lab = load_lab_state(args.lab)
        except LabStateError as exc:
            return None, f"--lab {exc}"
        args.nameserver = args.nameserver or [lab.nameserver]
        args.cafile = args.cafile if args.cafile is not None else lab.cafile
        args.connect_to = [*lab.connect_to, *args.connect_to]
    try:
        for spec in args.nameserver:
            parse_nameserver(spec)
        connect_to = parse_connect_to(args.connect_to)
        trust = None
        if args.cafile is not None:
            if not Path(args.cafile).is_file():
                return None, f"--cafile {args.cafile}: no such file"
            trust = load_trust_store(args.cafile)
        report = check_domain(
            args.domain,
            nameservers=args.nameserver,
            trust=trust,
            connect_to=connect_to,
            timeout=args.timeout,
        )
    except Exception as exc:  # noqa: BLE001 -- any failure of the check is said, not fatal
        return None, f"{type(exc).__name__}: {exc}"
    if report.local_fault is not None:
        return None, report.local_fault
    sts = report.sts
    if sts.policy is None and sts.error is not None and sts.error.reason in _UNKNOWN:
        # A DNS failure or the deadline: the check does not know whether there is a
        # policy, which is not the same as knowing that there is none.
        return None, sts.error.detail
    return live_check(report), ""


def _advise(args: argparse.Namespace) -> int:
    from smtpsts._cli.tlsrpt_store import open_report_store  # noqa: PLC0415

    try:
        args.domain = to_alabel(args.domain)
    except DomainNameError as exc:
        return _usage("advise", f"{args.domain!r} is not a domain name: {exc}")
    thresholds = Thresholds(
        min_days=args.min_days,
        min_reporters=args.min_reporters,
        min_sessions=args.min_sessions,
        max_failure_rate=args.max_failure_rate,
    )
    since, until = window(args.days, datetime.now(UTC))
    try:
        store = open_report_store(args.store)
        try:
            numbers = read_numbers(store, args.domain, since, until)
        finally:
            store.close()
    except (StoreError, StoreVersionError) as exc:
        print(f"smtpsts tlsrpt advise: {exc}", file=sys.stderr)
        return _COULD_NOT_TELL
    live, why = (None, "") if args.no_check else _run_check(args)
    advice = advise(numbers, live, thresholds)
    if args.json:
        doc = advice.to_dict()
        doc["window"] = {"since": since.isoformat(), "until": until.isoformat(), "days": args.days}
        doc["live_check"] = "skipped" if args.no_check else ("failed: " + why if why else "ok")
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print("\n".join(_safe(line) for line in render_advice(advice, args.days, why)))
    return _EXIT[advice.verdict]


def _safe(text: object) -> str:
    # Organisation names and MX hosts come from reports: no terminal control sequences.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _pct(rate: float) -> str:
    return f"{100 * rate:.2f}%"


def _rate_lines(title: str, rates: Sequence[Rate], own: str) -> list[str]:
    if not rates:
        return []
    lines = ["", title]
    lines += [
        f"  {r.key or '(not reported)'}: {r.failed} failed, "
        f"{_pct(r.rate)} of {own} {r.sessions} sessions"
        for r in rates
    ]
    return lines


def render_advice(advice: Advice, days: int, check_failed: str = "") -> list[str]:
    """
    The human-readable advice, one line per item.

    Args:
        advice: The advice.
        days: The window, for the heading.
        check_failed: Why the live check could not run, ``""`` when it ran
            or was not asked for.

    Returns:
        The lines: the verdict and reasons first, then the numbers.
    """
    lines = [f"smtpsts tlsrpt advise {advice.domain} (last {days} days)", ""]
    head = advice.verdict.value.upper()
    if advice.from_reports_only:
        head += " (from the reports alone)"
    lines.append(f"Verdict: {head}")
    lines += [f"  - {r}" for r in advice.reasons]
    if check_failed:
        lines.append(f"  - the live check could not run: {check_failed}")
    total = advice.successful + advice.failed
    mode = "unknown" if advice.mode is None else advice.mode.value
    source = "the reports" if advice.from_reports_only else "live check"
    lines += [
        "",
        "Reports",
        f"  policy mode: {mode} ({source})",
        f"  reporters: {len(advice.reporters)}"
        + (f" ({', '.join(advice.reporters)})" if advice.reporters else ""),
        f"  days covered: {advice.days_covered}",
        (
            f"  sessions: {total}: {advice.successful} successful, {advice.failed} failed"
            f" ({_pct(advice.failure_rate)})"
        ),
    ]
    lines += _rate_lines("Failures by sending organisation", advice.by_organization, "its")
    lines += _rate_lines("Failures by MX host", advice.by_mx, "all")
    lines += _rate_lines("Failures by result type", advice.by_result_type, "all")
    if advice.uncovered_mx:
        lines += ["", "MX hosts no policy mx pattern covers"]
        lines += [f"  {h}" for h in advice.uncovered_mx]
    if advice.certificate_problems:
        lines += ["", "Certificate problems"]
        lines += [f"  {p}" for p in advice.certificate_problems]
    return lines


def _notify_command(command: str, alert: Alert, timeout: float) -> str | None:
    argv = shlex.split(command)
    env = {**os.environ, "SMTPSTS_ALERT_DOMAIN": alert.domain, "SMTPSTS_ALERT_KIND": alert.kind}
    try:
        done = subprocess.run(  # noqa: S603 -- the owner's own command, no shell
            argv,
            input=json.dumps(alert.to_dict()).encode(),
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"--command timed out after {timeout:g} s"
    except OSError as exc:
        return f"--command {argv[0]}: {exc.strerror or exc}"
    if done.returncode:
        return f"--command exited with status {done.returncode}"
    return None


def _notify_webhook(url: str, alert: Alert, timeout: float) -> str | None:
    from smtpsts.io.webhook import post_json  # noqa: PLC0415

    result = post_json(url, json.dumps(alert.to_dict()).encode(), timeout=timeout)
    return None if result.ok else f"--webhook {url}: {result.detail}"


def _alert(args: argparse.Namespace) -> int:
    from smtpsts._cli.tlsrpt_store import open_report_store  # noqa: PLC0415

    if args.command is not None and not shlex.split(args.command):
        return _usage("alert", "--command is empty")
    try:
        domains = [to_alabel(d) for d in args.domains]
    except DomainNameError as exc:
        return _usage("alert", f"not a domain name: {exc}")
    thresholds = AlertThresholds(
        max_failure_rate=args.failure_rate,
        min_sessions=args.min_sessions,
        stale_days=args.stale_days,
    )
    now = datetime.now(UTC)
    since, until = window(args.days, now)
    base = (since - timedelta(days=args.baseline), since)
    found: list[Alert] = []
    try:
        store = open_report_store(args.store)
        try:
            domains = domains or store.domains()
            for domain in domains:
                current = read_numbers(store, domain, since, until)
                previous = read_numbers(store, domain, *base)
                found += alerts(current, previous, now, thresholds)
        finally:
            store.close()
    except (StoreError, StoreVersionError) as exc:
        print(f"smtpsts tlsrpt alert: {exc}", file=sys.stderr)
        return 2
    if args.json and (found or args.verbose):
        print(json.dumps([a.to_dict() for a in found], indent=2, ensure_ascii=False))
    elif not args.json:
        for alert in found:
            print(_safe(f"{alert.domain}: {alert.kind}: {alert.message}"))
        if args.verbose and not found:
            print(f"no alert ({len(domains)} domain(s) checked, last {args.days} days)")
    failures = []
    for alert in found:
        if args.command is not None:
            failures.append(_notify_command(args.command, alert, args.command_timeout))
        if args.webhook is not None:
            failures.append(_notify_webhook(args.webhook, alert, args.webhook_timeout))
    errors = [f for f in failures if f is not None]
    for error in errors:
        print(f"smtpsts tlsrpt alert: {_safe(error)}", file=sys.stderr)
    if errors:
        return 2
    return 1 if found else 0
