"""
``smtpsts lab``: run the named scenarios against loopback servers, offline.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["register"]


def register(sub: Any) -> None:
    """
    Add the ``lab`` command.

    Args:
        sub: The sub-parsers of the main parser.
    """
    from smtpsts.lab.scenarios import SCENARIOS  # noqa: PLC0415

    names = [s.name for s in SCENARIOS]
    parser = sub.add_parser(
        "lab",
        help="run MTA-STS/DANE/TLS-RPT scenarios against loopback servers (offline)",
        description=(
            "Start a DNS server, an HTTPS policy host and TLS-RPT receiver, and STARTTLS SMTP "
            "servers on 127.0.0.1 with a CA made on the fly; run each scenario through the "
            "library and print expected vs got. Exit status 1 if any scenario disagrees."
        ),
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print the results as JSON (or write them to FILE)",
    )
    parser.add_argument(
        "--scorecard",
        action="store_true",
        help="instead: the MTA conformance scorecard (root; a private network namespace "
        "where the lab attacks real MTAs; docs/scorecard.md)",
    )
    parser.add_argument(
        "--mta",
        metavar="NAME,...",
        help="with --scorecard: the columns to run (default: all)",
    )
    parser.add_argument(
        "--markdown", metavar="FILE", help="with --scorecard: write the table as markdown"
    )
    parser.add_argument(
        "--workdir", metavar="DIR", help="with --scorecard: keep the MTAs' logs and queues here"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the servers up afterwards, write a state file for `check --lab` and "
        "`postfix serve --lab`, and print how to use them (Ctrl-C to stop)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="with --keep-running: write lab.json and ca.pem here (default: a new temporary "
        "directory); both are removed when the lab stops",
    )
    parser.set_defaults(handler=run)


def _table(rows: list[tuple[str, str, str, str, str]], out: TextIO) -> None:
    head = ("", "scenario", "expected", "got", "why")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for row in [head, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")


def run(args: argparse.Namespace) -> int:
    """
    Run the lab.

    Args:
        args: The parsed arguments.

    Returns:
        0 when every scenario agrees, else 1.
    """
    if args.scorecard:
        return _scorecard(args)
    from smtpsts.lab.scenarios import SCENARIOS, Lab, run_one  # noqa: PLC0415

    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    progress = sys.stderr
    started = time.monotonic()
    outcomes = []
    with Lab() as lab:
        progress.write(
            f"lab: DNS on {lab.dns.address}, HTTPS on 127.0.0.1:{lab.https.port}, "
            f"{len(lab.smtp)} SMTP servers\n"
        )
        for index, scenario in enumerate(chosen, 1):
            progress.write(f"[{index}/{len(chosen)}] {scenario.name}: {scenario.title} ... ")
            progress.flush()
            outcome = run_one(lab, scenario)
            progress.write(f"{'ok' if outcome.agrees else 'DISAGREES'} ({outcome.seconds:.2f}s)\n")
            outcomes.append(outcome)
        elapsed = time.monotonic() - started
        failed = [o for o in outcomes if not o.agrees]
        if args.json:
            out = sys.stdout if args.json == "-" else Path(args.json).open("w")  # noqa: SIM115
            json.dump(
                {
                    "ok": not failed,
                    "elapsed": round(elapsed, 3),
                    "scenarios": [
                        {
                            "name": o.name,
                            "expected": o.expected,
                            "got": o.got,
                            "why": o.why,
                            "agrees": o.agrees,
                            "seconds": round(o.seconds, 3),
                        }
                        for o in outcomes
                    ],
                },
                out,
                indent=2,
            )
            out.write("\n")
            if out is not sys.stdout:
                out.close()
        else:
            rows = [
                ("ok" if o.agrees else "FAIL", o.name, o.expected, o.got, o.why) for o in outcomes
            ]
            _table(rows, sys.stdout)
            sys.stdout.write(
                f"{len(outcomes) - len(failed)} agree, {len(failed)} disagree ({elapsed:.1f}s). "
                "DANE: the AD bit comes from the lab's own DNS server, trusted as the "
                "validating resolver for the lab (the zones are not signed).\n"
            )
        sys.stdout.flush()
        if args.keep_running:
            _keep_running(lab, args.state_dir)
    return 1 if failed else 0


def _scorecard(args: argparse.Namespace) -> int:
    from smtpsts.lab.scorecard.runner import main  # noqa: PLC0415

    argv = [] if args.mta is None else ["--mta", args.mta]
    for flag, value in (("--json", args.json), ("--markdown", args.markdown)):
        if value is not None:
            argv += [flag, value]
    if args.workdir is not None:
        argv += ["--workdir", args.workdir]
    return main(argv)


def _keep_running(lab: Any, directory: str | None) -> None:
    from smtpsts.lab.state import remove_lab_state, write_lab_state  # noqa: PLC0415

    state = write_lab_state(lab, Path(directory) if directory is not None else None)
    try:
        lab.cafile = state.cafile
        sys.stdout.write(
            f"\nThe lab keeps running (Ctrl-C or SIGTERM to stop). State: {state.path}\n"
        )
        sys.stdout.write(lab.instructions(str(state.path)))
        sys.stdout.flush()
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        remove_lab_state(state, directory=directory is None)
