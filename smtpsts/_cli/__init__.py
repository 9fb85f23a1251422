"""
The ``smtpsts`` command line (argparse).

Each command group lives in a module of this package with a
``register(subparsers)`` function; :data:`COMMANDS` lists them in help order.
A command's handler takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

__all__ = ["COMMANDS", "main"]

COMMANDS = (
    "smtpsts._cli.check",
    "smtpsts._cli.lab",
    "smtpsts._cli.lint",
    "smtpsts._cli.postfix",
    "smtpsts._cli.tlsrpt",
    "smtpsts._cli.vectors",
)
"""Modules that contribute sub-commands, in the order ``--help`` lists them."""


def _version() -> str:
    """
    Return the installed distribution's version, or ``unknown`` when it is not installed.
    """
    try:
        return _distribution_version("smtpsts")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """
    Build the argument parser with every registered command.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="smtpsts",
        description="MTA-STS, TLS-RPT and DANE for SMTP: check, lint, serve and test.",
    )
    # `smtpsts --version` prints "smtpsts X.Y.Z" and exits 0 (issue 12).
    parser.add_argument("--version", action="version", version=f"smtpsts {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status: 0 on success, 1 when a check failed, 2 on usage errors.
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    status: int = args.handler(args)
    return status
