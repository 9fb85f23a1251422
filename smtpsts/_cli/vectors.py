"""``smtpsts vectors run|export``: run or publish the reference vectors."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from .. import vectors
from ..vectors.protocol import tally

_MESSAGE_MAX = 300

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
        "'N passed, N failed'. Exits 1 if any case fails. With --exec, run them "
        "against another implementation speaking the JSON-lines protocol of "
        "docs/vectors.md and print agreed / disagreed / unsupported per group; "
        "exits 1 if any case disagrees.",
    )
    run.add_argument("files", nargs="*", type=Path, metavar="FILE", help="vector files to run")
    run.add_argument("-v", "--verbose", action="store_true", help="list every case")
    run.add_argument(
        "--exec",
        dest="exec_command",
        metavar="COMMAND",
        help="run the cases against this program (split like a shell would; no shell is used)",
    )
    run.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        choices=vectors.GROUPS,
        help="only this group (repeatable)",
    )
    run.add_argument("--json", type=Path, metavar="OUT", help="also write every result to OUT")
    run.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --exec: deadline for each response (default 10)",
    )
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
    if args.group:
        docs = [d for d in docs if d["group"] in args.group]
    if args.exec_command is not None:
        return _run_exec(args, docs)
    results = vectors.run(docs)
    if args.json is not None and not _write_json(args.json, None, results):
        return 2
    for r in results:
        if not r.ok:
            print(f"FAIL {r.group}/{r.case_id}: {r.message}")
        elif args.verbose:
            print(f"ok   {r.group}/{r.case_id}")
    passed = sum(r.ok for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def _outcome(r: vectors.CaseResult) -> str:
    return "unsupported" if r.unsupported else "agreed" if r.ok else "disagreed"


def _write_json(path: Path, command: list[str] | None, results: list[vectors.CaseResult]) -> bool:
    doc = {
        "command": command,
        "summary": tally(results),
        "results": [
            {
                "group": r.group,
                "id": r.case_id,
                "outcome": _outcome(r),
                "message": r.message,
                "omitted": list(r.omitted),
            }
            for r in results
        ],
    }
    try:
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        print(f"smtpsts: {e}", file=sys.stderr)
        return False
    return True


def _run_exec(args: argparse.Namespace, docs: list[dict[str, Any]]) -> int:
    from ..io.peer import run_exec  # noqa: PLC0415 -- the I/O adapter, loaded only for --exec

    try:
        command = shlex.split(args.exec_command)
    except ValueError as e:
        print(f"smtpsts: --exec: {e}", file=sys.stderr)
        return 2
    if not command or args.timeout <= 0:
        print("smtpsts: --exec needs a command and --timeout a positive number", file=sys.stderr)
        return 2
    results = run_exec(command, docs, timeout=args.timeout)
    if args.json is not None and not _write_json(args.json, command, results):
        return 2
    counts = tally(results)
    for group, row in counts.items():
        print(
            f"{group}: {row['agreed']} agreed, {row['disagreed']} disagreed, "
            f"{row['unsupported']} unsupported"
        )
    for r in results:
        if not r.ok and not r.unsupported:
            message = r.message if args.verbose else r.message[:_MESSAGE_MAX]
            print(f"DISAGREE {r.group}/{r.case_id}: {message}")
        elif args.verbose:
            print(f"{_outcome(r):11} {r.group}/{r.case_id}")
    kinds = ("agreed", "disagreed", "unsupported")
    total = {k: sum(row[k] for row in counts.values()) for k in kinds}
    print(
        f"{total['agreed']} agreed, {total['disagreed']} disagreed, "
        f"{total['unsupported']} unsupported"
    )
    return 1 if total["disagreed"] else 0


def _export(args: argparse.Namespace) -> int:
    try:
        paths = vectors.export(args.directory)
    except OSError as e:
        print(f"smtpsts: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
