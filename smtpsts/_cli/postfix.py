"""
The ``smtpsts postfix`` commands: ``serve``, ``query`` and ``config-from-pmsr``.

``serve`` runs the socketmap TLS policy server for Postfix's
``smtp_tls_policy_maps`` (see :mod:`smtpsts.postfix.server`), from a TOML
configuration file, from options alone, or both (options win). ``query``
asks a running server, as Postfix would.
``config-from-pmsr`` prints the TOML equivalent of a postfix-mta-sts-resolver
YAML configuration.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import attrs

from smtpsts._cli._logging import configure
from smtpsts.postfix.config import (
    DEFAULT_LISTEN,
    DEFAULT_SQLITE_PATH,
    LOG_FORMATS,
    ConfigError,
    ServerConfig,
    config_from_pmsr,
    load_config,
    metrics_address,
)

__all__ = ["register"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    """
    Add the ``postfix`` command group.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser(
        "postfix",
        help="Postfix TLS policy server (smtp_tls_policy_maps socketmap)",
        description="Serve MTA-STS policies to Postfix over its socketmap protocol.",
    )
    group = p.add_subparsers(dest="postfix_command", metavar="SUBCOMMAND", required=True)
    serve = group.add_parser(
        "serve",
        help="run the socketmap policy server",
        description="Answer Postfix smtp_tls_policy_maps lookups "
        "(socketmap:inet:HOST:PORT:NAME or socketmap:unix:PATH:NAME). "
        "Options override the configuration file.",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="ADDR:PORT|unix:PATH",
        help="listen here (repeatable; replaces the configured addresses)",
    )
    serve.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="DNS server to ask instead of the system's (repeatable)",
    )
    serve.add_argument("--cafile", metavar="PEM", help="trust these CAs for policy hosts")
    serve.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR:PORT",
        help="connect to ADDR:PORT instead of HOST:PORT; TLS and SNI still use HOST",
    )
    serve.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="per-lookup deadline for every zone"
    )
    serve.add_argument(
        "--cache",
        metavar="memory|sqlite:PATH|redis:URL",
        help="the policy cache (default: the configuration's, else sqlite)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log verbosity")
    serve.add_argument(
        "--lab",
        metavar="FILE",
        help="resolve through a running `smtpsts lab --keep-running` (its lab.json: DNS "
        "server, CA, connect-to mappings; options given as well win)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="log lines as text or as one JSON object each (default: the configuration's, text)",
    )
    serve.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (needs smtpsts[metrics])",
    )
    serve.set_defaults(handler=_serve)
    query = group.add_parser(
        "query",
        help="ask a running policy server, as Postfix would",
        description="Send socketmap lookups to a running server and print each answer "
        "(like postmap -q KEY socketmap:inet:HOST:PORT:NAME).",
    )
    query.add_argument("keys", nargs="+", metavar="KEY", help="next-hop domain(s) to look up")
    query.add_argument(
        "--server",
        default=DEFAULT_LISTEN,
        metavar="ADDR:PORT|unix:PATH",
        help=f"where the server listens (default {DEFAULT_LISTEN})",
    )
    query.add_argument(
        "--name", default="postfix", help="the socketmap name, which selects the zone"
    )
    query.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="deadline for all answers"
    )
    query.set_defaults(handler=_query)
    convert = group.add_parser(
        "config-from-pmsr",
        help="convert a postfix-mta-sts-resolver YAML configuration to TOML",
        description="Print the smtpsts TOML configuration equivalent to a "
        "postfix-mta-sts-resolver YAML file (needs PyYAML).",
    )
    convert.add_argument("file", metavar="FILE", help="the YAML file (/etc/mta-sts-daemon.yml)")
    convert.set_defaults(handler=_convert)


def _usage(message: str) -> int:
    print(f"smtpsts postfix: error: {message}", file=sys.stderr)
    return 2


def _cache(spec: str) -> dict[str, Any]:
    kind, _, where = spec.partition(":")
    if kind == "memory" and not where:
        return {"cache_backend": "memory"}
    if kind == "sqlite" and where:
        return {"cache_backend": "sqlite", "cache_path": where}
    if kind == "redis" and where:
        return {"cache_backend": "redis", "redis_url": where}
    raise ConfigError(f"--cache {spec!r}: expected memory, sqlite:PATH or redis:URL")


def build_config(args: argparse.Namespace) -> ServerConfig:
    """
    The configuration from the file (if any) and the options.

    Args:
        args: The parsed ``serve`` options.

    Returns:
        The configuration.

    Raises:
        ConfigError: The file or an option is invalid.
        OSError: The file cannot be read.
    """
    from smtpsts.io._resolver import parse_nameserver  # noqa: PLC0415
    from smtpsts.io.http import parse_connect_to  # noqa: PLC0415
    from smtpsts.postfix.server import parse_listen  # noqa: PLC0415

    config = ServerConfig()
    if args.config is not None:
        config = load_config(Path(args.config).read_text(encoding="utf-8"))
    changes: dict[str, Any] = {}
    if getattr(args, "lab", None) is not None:
        from smtpsts.lab.state import LabStateError, load_lab_state  # noqa: PLC0415

        try:
            lab = load_lab_state(args.lab)
        except LabStateError as e:
            raise ConfigError(f"--lab {e}") from None
        changes["nameservers"] = (lab.nameserver,)
        changes["cafile"] = lab.cafile
        changes["connect_to"] = lab.connect_to
    if args.listen:
        changes["listen"] = tuple(args.listen)
    if args.nameserver:
        changes["nameservers"] = tuple(args.nameserver)
    if args.connect_to:
        changes["connect_to"] = (*changes.get("connect_to", ()), *args.connect_to)
    if args.cafile is not None:
        if not Path(args.cafile).is_file():
            raise ConfigError(f"--cafile {args.cafile}: no such file")
        changes["cafile"] = args.cafile
    if args.cache is not None:
        changes |= _cache(args.cache)
    if args.metrics is not None:
        changes["metrics_listen"] = metrics_address("--metrics", args.metrics)
    if args.log_format is not None:
        changes["log_format"] = args.log_format
    if args.timeout is not None:
        if not args.timeout > 0:
            raise ConfigError("--timeout must be positive")
        changes["default_zone"] = attrs.evolve(config.default_zone, timeout=args.timeout)
        changes["zones"] = tuple(attrs.evolve(z, timeout=args.timeout) for z in config.zones)
        changes["policy"] = attrs.evolve(config.policy, timeout=args.timeout)
    config = attrs.evolve(config, **changes)
    # Issue 12 item 4: addresses from the file are checked here like those of the
    # options, so a bad one is a one-line error, not a traceback from the server.
    try:
        for spec in config.listen:
            parse_listen(spec)
        for spec in config.nameservers:
            parse_nameserver(spec)
        parse_connect_to(config.connect_to)
    except ValueError as e:
        where = f" (in {args.config})" if args.config is not None else ""
        raise ConfigError(f"{e}{where}") from None
    return config


def _serve(args: argparse.Namespace) -> int:
    import sqlite3  # noqa: PLC0415 -- the sqlite store's errors

    from smtpsts.postfix.server import serve  # noqa: PLC0415

    try:
        config = build_config(args)
    except (ConfigError, OSError) as e:
        return _usage(str(e))
    if config.metrics_listen is not None and importlib.util.find_spec("prometheus_client") is None:
        return _usage(
            "metrics need prometheus_client: pip install 'smtpsts[metrics]'"
            " (or remove [metrics] listen / --metrics)"
        )
    if config.cache_backend == "redis" and importlib.util.find_spec("redis") is None:
        return _usage(
            "[cache] backend = redis needs the redis package: pip install 'smtpsts[redis]'"
        )
    configure(args.log_level, config.log_format)
    if config.cache_backend == "sqlite" and config.cache_path != ":memory:":
        # Issue 12 item 4: only the default directory is made, and the log says so; a
        # directory the user named must exist (a typo is not silently created).
        parent = Path(config.cache_path).parent
        if not parent.is_dir():
            if config.cache_path != DEFAULT_SQLITE_PATH:
                return _usage(f"[cache] path {config.cache_path}: no such directory {parent}")
            try:
                parent.mkdir(parents=True)
            except OSError as e:
                return _usage(f"cannot create {parent} for the policy cache: {e.strerror or e}")
            logging.getLogger("smtpsts.postfix").info("created %s for the policy cache", parent)
    try:
        serve(config)
    except (OSError, sqlite3.Error, ConfigError) as e:
        return _usage(f"cannot serve: {e}")
    return 0


def _query(args: argparse.Namespace) -> int:
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415

    from smtpsts.postfix.netstring import NetstringDecoder, NetstringError, encode  # noqa: PLC0415
    from smtpsts.postfix.server import parse_listen  # noqa: PLC0415

    try:
        where = parse_listen(args.server)
    except ValueError as e:
        return _usage(str(e))
    if not args.timeout > 0:
        return _usage("--timeout must be positive")
    requests = [encode(f"{args.name} {key}".encode()) for key in args.keys]
    decoder = NetstringDecoder(64 * 1024)
    answers: list[bytes] = []
    deadline = time.monotonic() + args.timeout
    try:
        if isinstance(where, str):
            sock = socket.socket(socket.AF_UNIX)
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in where[0] else socket.AF_INET)
        with sock:
            sock.settimeout(args.timeout)
            sock.connect(where)
            sock.sendall(b"".join(requests))
            while len(answers) < len(requests):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(65536)
                if not data:
                    break
                answers += decoder.feed(data)
    except (OSError, NetstringError) as e:
        print(f"smtpsts postfix query: {args.server}: {e}", file=sys.stderr)
        return 1
    for key, answer in zip(args.keys, answers, strict=False):
        print(f"{key}\t{answer.decode('utf-8', 'replace')}")
    if len(answers) < len(requests):
        print(
            f"smtpsts postfix query: {args.server} closed the connection after "
            f"{len(answers)} of {len(requests)} answers",
            file=sys.stderr,
        )
        return 1
    return 0


def _convert(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
        print(config_from_pmsr(text), end="")
    except (ConfigError, OSError) as e:
        return _usage(f"{args.file}: {e}")
    return 0
