"""
``smtpsts tlsrpt dashboard``: the read-only TLS-RPT dashboard on its own (issue 13 item 4).

Also the dashboard options of ``smtpsts tlsrpt serve --dashboard``. The app is
:func:`smtpsts.io.tlsrpt_dashboard.build_dashboard`; without a credential it
answers only on loopback, and a non-loopback ``--listen`` without one is
refused before anything starts. Needs the ``server`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_DASHBOARD_LISTEN",
    "add_credential_options",
    "dashboard_auth",
    "is_loopback_listen",
    "refuse_open_listen",
    "register_dashboard",
]

DEFAULT_DASHBOARD_LISTEN = "127.0.0.1:8461"
_MISSING = "smtpsts tlsrpt dashboard needs the server extra: pip install 'smtpsts[server]'"
_SECRET_CAP = 4096  # bytes read from a secret file


def add_credential_options(p: argparse.ArgumentParser) -> None:
    """
    Add ``--dashboard-token-file``, ``--dashboard-user`` and ``--dashboard-password-file``.

    Args:
        p: The parser of ``serve`` or ``dashboard``.
    """
    p.add_argument(
        "--dashboard-token-file",
        metavar="FILE",
        help="a file whose first line is the dashboard's bearer token"
        " (Authorization: Bearer, or ?token= once to set a cookie)",
    )
    p.add_argument("--dashboard-user", metavar="USER", help="the dashboard's basic-auth user name")
    p.add_argument(
        "--dashboard-password-file",
        metavar="FILE",
        help="a file whose first line is the basic-auth password",
    )


def _secret(path: str) -> str:
    with Path(path).open("rb") as f:
        data = f.read(_SECRET_CAP)
    lines = data.decode("utf-8").splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ValueError(f"{path}: the first line is empty")
    return secret


def dashboard_auth(args: argparse.Namespace) -> Any:
    """
    The :class:`~smtpsts.io.tlsrpt_dashboard.DashboardAuth` the options ask for.

    Args:
        args: Parsed options (see :func:`add_credential_options`).

    Returns:
        The credential, or an error message (a ``str``) to print.
    """
    from smtpsts.io.tlsrpt_dashboard import DashboardAuth  # noqa: PLC0415 -- the extra

    if (args.dashboard_user is None) != (args.dashboard_password_file is None):
        return "--dashboard-user and --dashboard-password-file go together"
    try:
        token = None if args.dashboard_token_file is None else _secret(args.dashboard_token_file)
        password = (
            None if args.dashboard_password_file is None else _secret(args.dashboard_password_file)
        )
        return DashboardAuth(token=token, user=args.dashboard_user, password=password)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return str(e)


def is_loopback_listen(host: str) -> bool:
    """
    Whether a ``--listen`` host is loopback only.

    Args:
        host: The host part of ``--listen``.

    Returns:
        ``True`` for ``localhost``, ``127.0.0.0/8`` and ``::1``.
    """
    from smtpsts.io._resolver import is_loopback  # noqa: PLC0415

    return host.lower() == "localhost" or is_loopback(host)


def register_dashboard(tsub: Any) -> None:
    """
    Add the ``dashboard`` action to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    from smtpsts._cli.tlsrpt_serve import _listen  # noqa: PLC0415 -- one parser for HOST:PORT

    p = tsub.add_parser(
        "dashboard",
        help="show stored TLS-RPT reports in a web dashboard (read-only)",
        description="Serve the read-only TLS-RPT dashboard of a report store: per policy "
        "domain, sessions per day, by sending organisation, MX host, result type and "
        "failure reason, the policies seen, the reports' JSON and the quarantine. Bound to "
        "loopback unless a credential is given. Needs the server extra.",
    )
    p.add_argument(
        "--store",
        required=True,
        metavar="STORE",
        help="the report store: an SQLite file, or a postgresql:// URI",
    )
    p.add_argument(
        "--listen",
        type=_listen,
        default=_listen(DEFAULT_DASHBOARD_LISTEN),
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_DASHBOARD_LISTEN})",
    )
    p.add_argument("--cert", metavar="PEM", help="TLS certificate chain (PEM)")
    p.add_argument("--key", metavar="PEM", help="TLS private key (PEM)")
    add_credential_options(p)
    p.set_defaults(handler=_dashboard)


def refuse_open_listen(command: str, host: str, auth: Any) -> str | None:
    """
    The one-line refusal of a non-loopback listener with no dashboard credential.

    Args:
        command: ``serve`` or ``dashboard``, for the message.
        host: The listen host.
        auth: The dashboard's credential.

    Returns:
        The message, or ``None`` when it may start.
    """
    if auth.configured or is_loopback_listen(host):
        return None
    return (
        f"smtpsts tlsrpt {command}: the dashboard on non-loopback {host} needs"
        " --dashboard-token-file or --dashboard-user with --dashboard-password-file"
    )


def _dashboard(args: argparse.Namespace) -> int:
    if (args.cert is None) != (args.key is None):
        print("smtpsts tlsrpt dashboard: --cert and --key go together", file=sys.stderr)
        return 2
    try:
        import uvicorn  # noqa: PLC0415 -- the optional extra

        from smtpsts.io.tlsrpt_dashboard import build_dashboard  # noqa: PLC0415
        from smtpsts.io.tlsrpt_intake import head_deadline_protocol  # noqa: PLC0415
    except ModuleNotFoundError:
        print(_MISSING, file=sys.stderr)
        return 2
    auth = dashboard_auth(args)
    if isinstance(auth, str):
        print(f"smtpsts tlsrpt dashboard: {auth}", file=sys.stderr)
        return 2
    host, port = args.listen
    refusal = refuse_open_listen("dashboard", host, auth)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    from smtpsts._cli.tlsrpt_store import open_report_store  # noqa: PLC0415
    from smtpsts.exceptions import StoreError, StoreVersionError  # noqa: PLC0415

    try:
        store = open_report_store(args.store)
    except (StoreError, StoreVersionError) as e:
        print(f"smtpsts tlsrpt dashboard: {e}", file=sys.stderr)
        return 1
    try:
        config = uvicorn.Config(
            build_dashboard(store, auth=auth),
            host=host,
            port=port,
            http=head_deadline_protocol(),
            loop="asyncio",
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            ssl_certfile=args.cert,
            ssl_keyfile=args.key,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=10,
            limit_concurrency=100,
            h11_max_incomplete_event_size=16 * 1024,
            log_config=None,
        )
        uvicorn.Server(config).run()
    finally:
        store.close()
    return 0
