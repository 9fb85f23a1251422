"""
``smtpsts tlsrpt serve``: receive TLS-RPT reports over HTTPS (RFC 8460 §5.3.2).

Runs :func:`smtpsts.io.tlsrpt_intake.build_app` under uvicorn (h11), with
TLS from ``--cert``/``--key`` or plain HTTP behind a reverse proxy; bound to
loopback unless ``--listen`` says otherwise. ``--dashboard`` mounts the
read-only dashboard (:mod:`smtpsts.io.tlsrpt_dashboard`) at ``/dashboard``;
with a non-loopback ``--listen`` it needs a credential. Needs the ``server``
extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import sys
from typing import Any

from smtpsts._cli.tlsrpt_dashboard import add_credential_options, dashboard_auth, refuse_open_listen

__all__ = ["register_serve"]

DEFAULT_LISTEN = "127.0.0.1:8460"
_MISSING = "smtpsts tlsrpt serve needs the server extra: pip install 'smtpsts[server]'"


def _listen(value: str) -> tuple[str, int]:
    # HOST:PORT, [IPV6]:PORT
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _rate(value: str) -> float:
    # N or N/MIN: reports per minute per client.
    number, _, unit = value.partition("/")
    try:
        rate = float(number)
    except ValueError:
        rate = 0.0
    if not rate > 0 or unit.lower() not in ("", "min", "m", "minute"):
        raise argparse.ArgumentTypeError(f"expected N/MIN (reports per minute), got {value!r}")
    return rate


def _size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {value!r}")
    return int(value)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a CIDR network, got {value!r}: {exc}") from None


def register_serve(tsub: Any) -> None:
    """
    Add the ``serve`` action to the ``tlsrpt`` command group.

    Args:
        tsub: The sub-parsers object of the ``tlsrpt`` group.
    """
    p = tsub.add_parser(
        "serve",
        help="receive TLS-RPT reports over HTTPS",
        description="Receive TLS-RPT reports POSTed over HTTPS (RFC 8460 §5.3.2) on / and "
        "/v1/tlsrpt and keep them in a report store. Refused bodies are kept in the "
        "store's quarantine. Needs the server extra (pip install 'smtpsts[server]').",
    )
    p.add_argument(
        "--listen",
        type=_listen,
        default=_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--store",
        required=True,
        metavar="STORE",
        help="the report store: an SQLite file, or a postgresql:// URI",
    )
    p.add_argument("--cert", metavar="PEM", help="TLS certificate chain (PEM)")
    p.add_argument("--key", metavar="PEM", help="TLS private key (PEM)")
    p.add_argument("--max-body", type=_size, metavar="N", help="body cap in bytes (default 5 MiB)")
    p.add_argument(
        "--rate", type=_rate, default=60.0, metavar="N/MIN", help="reports per minute per client"
    )
    p.add_argument(
        "--trust-proxy",
        type=_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable)",
    )
    p.add_argument(
        "--deadline", type=float, default=30.0, metavar="S", help="seconds for a request body"
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of the intake on http://HOST:PORT/metrics (needs"
        " prometheus_client: the metrics extra)",
    )
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="also serve the read-only dashboard at /dashboard (loopback only unless a"
        " credential is given)",
    )
    add_credential_options(p)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    if (args.cert is None) != (args.key is None):
        print("smtpsts tlsrpt serve: --cert and --key go together", file=sys.stderr)
        return 2
    if args.metrics is not None:
        from smtpsts.postfix.config import ConfigError, metrics_address  # noqa: PLC0415

        try:
            metrics_address("--metrics", args.metrics)
        except ConfigError as e:
            print(f"smtpsts tlsrpt serve: {e}", file=sys.stderr)
            return 2
        if importlib.util.find_spec("prometheus_client") is None:
            print(
                "smtpsts tlsrpt serve: --metrics needs prometheus_client:"
                " pip install 'smtpsts[metrics]'",
                file=sys.stderr,
            )
            return 2
    try:
        import uvicorn  # noqa: PLC0415 -- the optional extra

        from smtpsts.io.tlsrpt_intake import (  # noqa: PLC0415
            RateLimit,
            build_app,
            head_deadline_protocol,
        )
    except ModuleNotFoundError:
        print(_MISSING, file=sys.stderr)
        return 2
    auth = dashboard_auth(args)
    if isinstance(auth, str):
        print(f"smtpsts tlsrpt serve: {auth}", file=sys.stderr)
        return 2
    if auth.configured and not args.dashboard:
        print("smtpsts tlsrpt serve: a dashboard credential needs --dashboard", file=sys.stderr)
        return 2
    if args.dashboard:
        refusal = refuse_open_listen("serve", args.listen[0], auth)
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
    from smtpsts._cli.tlsrpt_store import open_report_store  # noqa: PLC0415
    from smtpsts.exceptions import StoreError, StoreVersionError  # noqa: PLC0415
    from smtpsts.tlsrpt.inbox import IntakeLimits  # noqa: PLC0415

    limits = IntakeLimits() if args.max_body is None else IntakeLimits(max_body=args.max_body)
    try:
        store = open_report_store(args.store)
    except (StoreError, StoreVersionError) as e:
        print(f"smtpsts tlsrpt serve: {e}", file=sys.stderr)
        return 1
    try:
        dashboard = None
        if args.dashboard:
            from smtpsts.io.tlsrpt_dashboard import build_dashboard  # noqa: PLC0415

            dashboard = build_dashboard(store, auth=auth)
        app = build_app(
            store,
            dashboard=dashboard,
            limits=limits,
            rate=RateLimit(per_minute=args.rate),
            trusted_proxies=args.trust_proxy,
            deadline=args.deadline,
        )
        host, port = args.listen
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=head_deadline_protocol(),  # h11, with a deadline on request heads
            loop="asyncio",
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-For is read by the app, from trusted proxies only
            server_header=False,
            ssl_certfile=args.cert,
            ssl_keyfile=args.key,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=10,
            limit_concurrency=200,
            h11_max_incomplete_event_size=16 * 1024,
            log_config=None,
        )
        stop_metrics = None
        if args.metrics is not None:
            from smtpsts.io.tlsrpt_intake import IntakeCollector  # noqa: PLC0415
            from smtpsts.postfix.config import split_address  # noqa: PLC0415
            from smtpsts.postfix.metrics import serve_collector  # noqa: PLC0415

            where, stop_metrics = serve_collector(
                *split_address(args.metrics), IntakeCollector(app.state.counters)
            )
            print(
                f"smtpsts tlsrpt serve: metrics on http://{where[0]}:{where[1]}/metrics",
                file=sys.stderr,
            )
        try:
            uvicorn.Server(config).run()
        finally:
            if stop_metrics is not None:
                stop_metrics()
    finally:
        store.close()
    return 0
