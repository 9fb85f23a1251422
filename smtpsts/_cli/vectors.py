"""``smtpsts vectors run|export``: run or publish the reference vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import vectors

__all__ = ["register"]


def register(sub: Any) -> None:
    """
    Add the ``vectors`` command group.

    Args:
        sub: The sub-parsers object of the main parser.
    """
    p = sub.add_parser("vectors", help="run or export the reference test vectors")
    vsub = p.add_subparsers(dest="vectors_command", metavar="ACTION", required=True)
    run = vsub.add_parser(
        "run",
        help="check this implementation against vector files",
        description="Run vector files (default: every shipped group) and print "
        "'N passed, N failed'. Exits 1 if any case fails.",
    )
    run.add_argument("files", nargs="*", type=Path, metavar="FILE", help="vector files to run")
    run.add_argument("-v", "--verbose", action="store_true", help="list every case")
    run.set_defaults(handler=_run)
    exp = vsub.add_parser("export", help="write the shipped vectors to a directory")
    exp.add_argument("directory", type=Path, metavar="DIR")
    exp.set_defaults(handler=_export)


def _run(args: argparse.Namespace) -> int:
    try:
        docs = (
            [vectors.load_document(f) for f in args.files]
            if args.files
            else vectors.shipped_documents()
        )
    except (OSError, vectors.VectorFormatError) as e:
        print(f"smtpsts: {e}", file=sys.stderr)
        return 2
    results = vectors.run(docs)
    for r in results:
        if not r.ok:
            print(f"FAIL {r.group}/{r.case_id}: {r.message}")
        elif args.verbose:
            print(f"ok   {r.group}/{r.case_id}")
    passed = sum(r.ok for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def _export(args: argparse.Namespace) -> int:
    try:
        paths = vectors.export(args.directory)
    except OSError as e:
        print(f"smtpsts: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
