"""
``smtpsts tlsrpt fetch``: report mails from an IMAP mailbox or a Maildir into a store (issue 13).

Runs :func:`smtpsts.io.tlsrpt_mailbox.fetch_imap` or
:func:`~smtpsts.io.tlsrpt_mailbox.fetch_maildir` once (cron or a systemd
timer runs it again) and prints one summary line. The IMAP password comes
from ``--password-file`` or the ``SMTPSTS_IMAP_PASSWORD`` environment
variable, never from the command line. Exit status: ``0`` when the run
completed (refused mails are quarantined, not errors), ``1`` when the
mailbox or the store failed or a setting is wrong (one line on stderr,
no traceback), ``2`` for arguments argparse rejects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["PASSWORD_ENV", "register_fetch"]

PASSWORD_ENV = "SMTPSTS_IMAP_PASSWORD"  # noqa: S105 - the variable's name, not a password
"""The environment variable that may hold the IMAP password."""

_PROG = "smtpsts tlsrpt fetch"


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {value!r}")
    return seconds


def register_fetch(tsub: Any) -> None:
    """
    Add the ``fetch`` action to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    from smtpsts.tlsrpt.mailfetch import (  # noqa: PLC0415
        DEFAULT_DONE_FOLDER,
        DEFAULT_LIMIT,
        DEFAULT_REFUSED_FOLDER,
    )
    from smtpsts.tlsrpt.parse import MAX_MESSAGE_SIZE  # noqa: PLC0415

    p = tsub.add_parser(
        "fetch",
        help="fetch TLS-RPT report mails from IMAP or a Maildir into a report store",
        description="Read the TLS-RPT report mails (RFC 8460 §5.3.1) of an IMAP folder or a "
        "Maildir into a report store, record each report's DKIM verdict, move processed "
        "mails to --done-folder (or delete them with --delete) and refused ones, kept in the "
        "store's quarantine, to --refused-folder. A mail whose report could not be stored "
        "stays where it was. Prints 'fetched N, stored N, duplicates N, refused N, left N'. "
        f"The IMAP password is read from --password-file or ${PASSWORD_ENV}. Exits 0, or 1 "
        "when the mailbox or the store failed.",
    )
    p.add_argument(
        "--store", required=True, metavar="STORE", help="an SQLite file, or a postgresql:// URI"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--imap", metavar="URL", help="imaps://user@host[:993]/FOLDER or imap://user@host[:143]/..."
    )
    source.add_argument("--maildir", metavar="DIR", help="a Maildir (holds new/ and cur/)")
    p.add_argument("--starttls", action="store_true", help="imap://: upgrade with STARTTLS")
    p.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="imap:// without STARTTLS: log in without TLS (tests on loopback only)",
    )
    p.add_argument(
        "--password-file", metavar="FILE", help="a file whose first line is the password"
    )
    p.add_argument("--cafile", metavar="PEM", help="CAs to trust instead of the system's")
    p.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="S", help="seconds per IMAP operation"
    )
    p.add_argument(
        "--deadline", type=_seconds, default=600.0, metavar="S", help="seconds for the IMAP run"
    )
    p.add_argument(
        "--require-dkim",
        action="store_true",
        help="refuse reports without a valid DKIM signature of their submitter (RFC 8460 §3)",
    )
    p.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="DNS server for the DKIM keys (default: the system's)",
    )
    p.add_argument(
        "--done-folder", default=DEFAULT_DONE_FOLDER, metavar="NAME", help="processed mails"
    )
    p.add_argument(
        "--refused-folder", default=DEFAULT_REFUSED_FOLDER, metavar="NAME", help="refused mails"
    )
    p.add_argument("--delete", action="store_true", help="delete processed mails, do not move them")
    p.add_argument(
        "--limit", type=_count, default=DEFAULT_LIMIT, metavar="N", help="mails per run at most"
    )
    p.add_argument(
        "--max-size",
        type=_count,
        default=MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help=f"larger mails are refused unread (default and most: {MAX_MESSAGE_SIZE})",
    )
    p.set_defaults(handler=_fetch)


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{args.password_file}: {e.strerror or e}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{args.password_file}: the first line is empty")
        return lines[0]
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise ValueError(f"no password: use --password-file FILE or set {PASSWORD_ENV}")
    return password


def _fetch(args: argparse.Namespace) -> int:
    from smtpsts._cli.tlsrpt_store import open_report_store  # noqa: PLC0415
    from smtpsts.exceptions import MailboxError, StoreError, StoreVersionError  # noqa: PLC0415
    from smtpsts.io.tlsrpt_mailbox import (  # noqa: PLC0415
        IMAPAccount,
        dkim_checker,
        fetch_imap,
        fetch_maildir,
    )
    from smtpsts.tlsrpt.mailfetch import FetchOptions  # noqa: PLC0415

    try:
        options = FetchOptions(
            require_dkim=args.require_dkim,
            delete=args.delete,
            done_folder=args.done_folder,
            refused_folder=args.refused_folder,
            max_message=args.max_size,
            limit=args.limit,
        )
        account = None
        if args.imap is not None:
            account = IMAPAccount.from_url(
                args.imap,
                _password(args),
                starttls=args.starttls,
                insecure_plaintext=args.insecure_plaintext,
                cafile=args.cafile,
                timeout=args.timeout,
            )
        lookup = None
        if args.nameserver:
            from smtpsts.io.dns import DNSResolver  # noqa: PLC0415

            lookup = DNSResolver(args.nameserver).lookup_txt
        dkim = dkim_checker(lookup)
    except (ValueError, MailboxError, ImportError) as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    try:
        store = open_report_store(args.store)
    except (StoreError, StoreVersionError) as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    try:
        if account is not None:
            summary = fetch_imap(store, account, options, dkim=dkim, deadline=args.deadline)
        else:
            summary = fetch_maildir(store, args.maildir, options, dkim=dkim)
    except MailboxError as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(summary.to_text())
    if summary.error is not None:
        print(f"{_PROG}: the store failed, mails left in place: {summary.error}", file=sys.stderr)
        return 1
    return 0
