"""
``smtpsts tlsrpt send``: build and deliver the TLS-RPT reports that are due.

Reads the session counts an MTA wrote to a collection store (an SQLite file,
or Redis with ``--redis``), builds the reports of finished UTC days, and
delivers them and any earlier failures whose retry is due (RFC 8460 §5).
With ``--daemon`` it keeps running: the build after 00:00 UTC plus up to
4 h of jitter, retries whenever due.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smtpsts.exceptions import SMTPSTSError

__all__ = ["register_send"]


def _connect_to(value: str) -> tuple[tuple[str, int], tuple[str, int]]:
    # curl's --connect-to HOST:PORT:ADDR:PORT (ADDR may be a bracketed IPv6 literal).
    host, _, rest = value.partition(":")
    port, _, target = rest.partition(":")
    addr, _, addr_port = target.rpartition(":")
    try:
        return (host.lower(), int(port)), (addr.strip("[]"), int(addr_port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT:ADDR:PORT, got {value!r}") from None


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # An address or a CIDR network without host bits: 10.1.2.3, 10.0.0.0/8, ::1.
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an address or CIDR, got {value!r}: {exc}"
        ) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def register_send(tsub: Any) -> None:
    """
    Add the ``send`` action to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    p = tsub.add_parser(
        "send",
        help="build and deliver the TLS-RPT reports that are due",
        description="Build the TLS-RPT reports (RFC 8460) of finished UTC days from a "
        "collection store and deliver them by mail (DKIM-signed) and HTTPS POST, with "
        "retries for 24 h. Exits 0, or 1 when a report was given up in this run.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", metavar="PATH", help="the SQLite collection store")
    src.add_argument("--redis", metavar="URL", help="a Redis collection store (redis://...)")
    p.add_argument(
        "--redis-prefix", default="smtpsts:tlsrpt:", help="key prefix of the Redis store"
    )
    p.add_argument("--outbox", metavar="PATH", help="the SQLite outbox (default: the --store file)")
    p.add_argument("--organization-name", required=True, help="organization-name of reports")
    p.add_argument("--contact-info", required=True, help="contact-info (an address)")
    p.add_argument("--from", dest="from_address", help="From of report mails")
    p.add_argument("--unique-id", help="this MTA's id when several report separately")
    p.add_argument("--smtp-host", default="localhost", help="submission server")
    p.add_argument("--smtp-port", type=int, default=25, help="its port")
    p.add_argument(
        "--smtp-starttls",
        choices=("opportunistic", "required", "never"),
        default="opportunistic",
        help="STARTTLS use (opportunistic: without certificate checks)",
    )
    p.add_argument("--smtp-implicit-tls", action="store_true", help="TLS from the start")
    p.add_argument("--smtp-user", help="log in with this name")
    p.add_argument("--smtp-password-file", type=Path, help="file holding the password")
    p.add_argument("--dkim-selector", help="DKIM selector (needs smtpsts[dkim])")
    p.add_argument("--dkim-domain", help="DKIM signing domain (default: the submitter)")
    p.add_argument("--dkim-key", type=Path, help="DKIM private key file")
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="mail reports without DKIM (receivers ignore them, RFC 8460 §3)",
    )
    p.add_argument(
        "--nameserver", action="append", default=[], metavar="IP[:PORT]", help="DNS server"
    )
    p.add_argument("--cafile", type=Path, help="PEM trust for --https-verify")
    p.add_argument(
        "--https-verify",
        action="store_true",
        help="refuse report endpoints whose certificate does not verify",
    )
    p.add_argument(
        "--connect-to",
        action="append",
        default=[],
        type=_connect_to,
        metavar="HOST:PORT:ADDR:PORT",
        help="connect to ADDR:PORT for HOST:PORT (TLS and Host still use HOST; "
        "ADDR is checked like any address, see --https-allow)",
    )
    p.add_argument(
        "--https-allow",
        action="append",
        default=[],
        type=_network,
        metavar="CIDR",
        help="let https report endpoints be in this network although it is loopback, "
        "private, link-local or otherwise not public (repeatable; default: only public "
        "unicast addresses are contacted)",
    )
    p.add_argument(
        "--https-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="deadline of one whole https POST, redirects included (default 30)",
    )
    p.add_argument(
        "--no-heartbeat", action="store_true", help="skip reports without failures (AMB-22)"
    )
    p.add_argument("--retry-only", action="store_true", help="only retry queued reports")
    p.add_argument("--keep-days", type=int, default=7, help="retention after sending")
    p.add_argument("--daemon", action="store_true", help="keep running (daily, with jitter)")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    p.set_defaults(handler=_send)


def _sender(args: argparse.Namespace) -> Any:
    import ssl  # noqa: PLC0415 - adapters load on use

    from smtpsts.io.dns import DNSResolver  # noqa: PLC0415
    from smtpsts.io.tlsrpt_send import ReportSender, SMTPSubmitter  # noqa: PLC0415

    resolver = DNSResolver(args.nameserver)
    signer = None
    if args.dkim_selector or args.dkim_key:
        if not (args.dkim_selector and args.dkim_key):
            raise SystemExit("smtpsts: --dkim-selector and --dkim-key go together")
        from smtpsts.io.dkim import DKIMPySigner  # noqa: PLC0415

        domain = args.dkim_domain or args.contact_info.rpartition("@")[2]
        signer = DKIMPySigner(args.dkim_selector, domain, args.dkim_key.read_bytes())
        signer.check_key_record(resolver.lookup_txt)  # RPT-SEND-13
    password = None
    if args.smtp_password_file is not None:
        password = args.smtp_password_file.read_text().strip()
    context = None
    if args.cafile is not None:
        context = ssl.create_default_context(cafile=str(args.cafile))
    return ReportSender(
        organization_name=args.organization_name,
        contact_info=args.contact_info,
        lookup_txt=resolver.lookup_txt,
        from_address=args.from_address,
        submit=SMTPSubmitter(
            args.smtp_host,
            args.smtp_port,
            starttls=args.smtp_starttls,
            implicit_tls=args.smtp_implicit_tls,
            username=args.smtp_user,
            password=password,
        ),
        signer=signer,
        allow_unsigned=args.allow_unsigned,
        unique_id=args.unique_id,
        include_success_only=not args.no_heartbeat,
        https_verify=args.https_verify,
        https_context=context,
        connect_to=dict(args.connect_to) or None,
        https_timeout=args.https_timeout,
        # Issue 10: rua hosts resolve through the same resolver, once per POST,
        # and only public addresses (or --https-allow ones) are contacted.
        https_allow=args.https_allow,
        lookup_addresses=resolver.lookup_addresses,
    )


def _send(args: argparse.Namespace) -> int:
    from smtpsts.io.tlsrpt_send import Outbox, run_daily, send_due_reports  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="smtpsts: %(message)s", stream=sys.stderr)
    if args.redis is None and args.outbox is None:
        args.outbox = args.store
    if args.outbox is None:
        print("smtpsts: --outbox is required with --redis", file=sys.stderr)
        return 2
    # Issue 12 item 4: a mistyped path is said, not made into an empty store that
    # "sends" nothing. The collection store is the MTA's; the outbox may be new,
    # but only in a directory that exists.
    if args.store is not None and not Path(args.store).is_file():
        print(
            f"smtpsts: --store {args.store}: no such file (the collection store your MTA"
            " writes: check the path)",
            file=sys.stderr,
        )
        return 2
    if not Path(args.outbox).parent.is_dir():
        print(f"smtpsts: --outbox {args.outbox}: no such directory", file=sys.stderr)
        return 2
    try:
        sender = _sender(args)
    except (SMTPSTSError, OSError, ValueError, ImportError) as exc:
        print(f"smtpsts: {exc}", file=sys.stderr)
        return 2
    store: Any
    try:
        if args.redis is not None:
            from smtpsts.stores.tlsrpt_redis import RedisTLSRPTStore  # noqa: PLC0415

            store = RedisTLSRPTStore(args.redis, prefix=args.redis_prefix, keep_days=args.keep_days)
        else:
            from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore  # noqa: PLC0415

            store = SQLiteTLSRPTStore(args.store)
        outbox_store = Outbox(args.outbox)
    except (SMTPSTSError, OSError, sqlite3.Error) as exc:
        where = f"--store {args.store or args.redis} / --outbox {args.outbox}"
        print(f"smtpsts: cannot open {where}: {exc}", file=sys.stderr)
        return 1
    with outbox_store as outbox:
        if args.daemon:
            run_daily(store, outbox, sender)
            return 0  # pragma: no cover - run_daily returns only when told to stop
        now = datetime.now(UTC)
        summary = send_due_reports(store, outbox, sender, now=now, build=not args.retry_only)
        store.purge(now, args.keep_days)
        outbox.purge(now, args.keep_days)
        store.close()
    fields = ("built", "delivered", "dropped", "retrying", "failed", "deferred")
    if args.json:
        print(json.dumps({f: list(getattr(summary, f)) for f in fields}, indent=2))
    else:
        for field in fields:
            ids = getattr(summary, field)
            print(f"{field}: {len(ids)}" + (f" ({', '.join(ids)})" if ids else ""))
    return 1 if summary.failed else 0
