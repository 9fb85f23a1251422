"""
The scorecard runner: a private network namespace, the columns, the table.

``python -m smtpsts.lab.scorecard.runner`` (or ``smtpsts lab --scorecard``)
re-executes itself under ``unshare --net --mount --pid`` (root only; the
PID namespace ends every process the run started when it ends): inside,
``lo`` is brought up, ``/etc/resolv.conf`` is bind-mounted to one naming
``127.0.0.1`` (the world's DNS server, for MTAs that use the system
resolver), and each column runs every scenario in a fresh
:class:`~smtpsts.lab.scorecard.world.World`. Nothing outside the namespace
is reached or changed: the namespace has no address but loopback.

The result is printed as a table (scenario x column: ``pass`` or ``FAIL``
with what was observed) and written as JSON (``--json FILE``) and markdown
(``--markdown FILE``). The exit status is 0 when every cell passes, 1 when
one fails, 2 when the run cannot start (not root, no ``unshare``, an MTA
missing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

__all__ = ["Cell", "Scorecard", "main", "markdown", "run_inside", "table"]

_INSIDE: Final = "SMTPSTS_SCORECARD_NAMESPACE"
_RUN_DEADLINE: Final = 1200.0
_STEP_DEADLINE: Final = 30.0


@attrs.frozen
class Cell:
    """
    One scenario in one column.

    Attributes:
        scenario: The scenario's name.
        column: The column's name.
        observed: What happened (``tls:mx``, ``plain:evil``, ``defer``, ``bounce``, ``lost``).
        passed: Whether that is an outcome the RFC allows.
    """

    scenario: str
    column: str
    observed: str
    passed: bool


@attrs.frozen
class Scorecard:
    """
    The result of one run.

    Attributes:
        columns: The columns, in order.
        cells: Every cell.
        seconds: How long each column took.
    """

    columns: tuple[str, ...]
    cells: tuple[Cell, ...]
    seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        """Whether every cell passed."""
        return all(c.passed for c in self.cells)

    def as_json(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"ok", "columns", "seconds", "scenarios": [...]}``, one entry per
            scenario with its rule, required outcomes and each column's cell.
        """
        from smtpsts.lab.scorecard.scenarios import SCENARIOS  # noqa: PLC0415

        by_name = {(c.scenario, c.column): c for c in self.cells}
        scenarios = []
        for s in SCENARIOS:
            cells = {
                col: {"observed": cell.observed, "passed": cell.passed}
                for col in self.columns
                if (cell := by_name.get((s.name, col))) is not None
            }
            if cells:
                scenarios.append(
                    {
                        "name": s.name,
                        "attack": s.attack,
                        "required": list(s.required),
                        "rule": s.rule,
                        "cells": cells,
                    }
                )
        return {
            "ok": self.ok,
            "columns": list(self.columns),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "scenarios": scenarios,
        }


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "n/a"
    return f"pass ({cell.observed})" if cell.passed else f"FAIL ({cell.observed})"


def table(card: Scorecard, out: TextIO) -> None:
    """
    Print the scorecard as a plain-text table.

    Args:
        card: The scorecard.
        out: Where to.
    """
    data = card.as_json()
    head = ["scenario", "required", *card.columns]
    rows = [
        [
            s["name"],
            "|".join(s["required"]),
            *(_cell_text(_cell(card, s["name"], c)) for c in card.columns),
        ]
        for s in data["scenarios"]
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out.writelines(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in [head, *rows]
    )
    failed = sum(not c.passed for c in card.cells)
    out.write(f"{len(card.cells) - failed} pass, {failed} FAIL\n")


def _cell(card: Scorecard, scenario: str, column: str) -> Cell | None:
    for c in card.cells:
        if c.scenario == scenario and c.column == column:
            return c
    return None


def _md(text: str) -> str:
    # Table cells: no HTML, no emphasis, no column breaks.
    for char, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*"), ("|", "\\|")):
        text = text.replace(char, escaped)
    return text


def markdown(card: Scorecard) -> str:
    """
    The scorecard as a markdown table, with each scenario's attack and RFC rule.

    Args:
        card: The scorecard.

    Returns:
        The markdown text.
    """
    data = card.as_json()
    lines = [
        "| scenario | attack | required (RFC) | " + " | ".join(card.columns) + " |",
        "|---|---|---|" + "---|" * len(card.columns),
    ]
    for s in data["scenarios"]:
        cells = " | ".join(_cell_text(_cell(card, s["name"], c)) for c in card.columns)
        required = " or ".join(s["required"])
        lines.append(
            f"| `{s['name']}` | {_md(s['attack'])} | {_md(required)}: {_md(s['rule'])} | {cells} |"
        )
    failed = sum(not c.passed for c in card.cells)
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in card.seconds.items())
    lines.append("")
    lines.append(f"{len(card.cells) - failed} pass, {failed} FAIL ({seconds}).")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the namespace


def _check(*argv: str) -> None:
    result = subprocess.run(  # noqa: S603 -- ip and mount, fixed arguments, no shell
        list(argv), capture_output=True, text=True, timeout=_STEP_DEADLINE, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _prepare_namespace(tmp: Path) -> None:
    # Inside the private network and mount namespaces: loopback up, and the
    # system resolver pointed at the world's DNS server (a bind mount, seen
    # only in this mount namespace).
    _check("ip", "link", "set", "lo", "up")
    resolv = tmp / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions trust-ad attempts:1 timeout:2\n")
    target = Path("/etc/resolv.conf").resolve()
    if not target.exists():
        target.touch()
    _check("mount", "--bind", str(resolv), str(target))


def run_inside(columns: Sequence[str], tmp: Path, progress: TextIO) -> Scorecard:
    """
    Run ``columns`` over every scenario (already inside the namespace).

    Args:
        columns: Column names (see :data:`smtpsts.lab.scorecard.columns.COLUMNS`).
        tmp: A scratch directory.
        progress: Where progress lines go.

    Returns:
        The scorecard.
    """
    from smtpsts.lab.scorecard.columns import run_column  # noqa: PLC0415
    from smtpsts.lab.scorecard.scenarios import SCENARIOS  # noqa: PLC0415

    cells: list[Cell] = []
    seconds: dict[str, float] = {}
    by_name = {s.name: s for s in SCENARIOS}
    for column in columns:
        progress.write(f"scorecard: column {column} ...\n")
        progress.flush()
        started = time.monotonic()
        observed = run_column(column, SCENARIOS, tmp / column.replace("+", "-"))
        seconds[column] = time.monotonic() - started
        for name, seen in observed.items():
            cells.append(Cell(name, column, seen, by_name[name].judge(seen)))
        failed = sum(not c.passed for c in cells if c.column == column)
        progress.write(
            f"scorecard: column {column}: {len(observed) - failed} pass, {failed} FAIL "
            f"({seconds[column]:.0f} s)\n"
        )
        progress.flush()
    return Scorecard(tuple(columns), tuple(cells), seconds)


def _parser() -> argparse.ArgumentParser:
    from smtpsts.lab.scorecard.columns import COLUMNS  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="smtpsts lab --scorecard",
        description="Attack MTAs in a private network namespace (root) and score them.",
    )
    parser.add_argument(
        "--mta",
        default=",".join(COLUMNS),
        help=f"comma-separated columns (default: all): {', '.join(COLUMNS)}",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write the scorecard as JSON (``-``: print it, no table)"
    )
    parser.add_argument("--markdown", metavar="FILE", help="write the scorecard as markdown")
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep each column's files (MTA logs, queues, caches) here instead of a "
        "temporary directory that is removed",
    )
    return parser


def _columns(text: str) -> list[str]:
    from smtpsts.lab.scorecard.columns import COLUMNS  # noqa: PLC0415

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown or not names:
        raise ValueError(
            f"unknown column {', '.join(unknown) or '(none)'}; choose from {', '.join(COLUMNS)}"
        )
    return names


def _inside(args: argparse.Namespace, columns: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        if args.workdir:
            tmp = Path(args.workdir).absolute()
            tmp.mkdir(parents=True, exist_ok=True)
            closed = [p for p in tmp.parents if not p.stat().st_mode & 0o001]
            if closed:
                raise RuntimeError(
                    f"--workdir {tmp}: {closed[-1]} is closed to other users (Postfix's "
                    "unprivileged daemons work below it); choose another directory"
                )
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smtpsts-sc-")))
        tmp.chmod(0o755)  # Postfix's unprivileged daemons work below it
        _prepare_namespace(tmp)
        card = run_inside(columns, tmp, sys.stderr)
    text = json.dumps(card.as_json(), indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    else:
        table(card, sys.stdout)
    if args.json and args.json != "-":
        Path(args.json).write_text(text)
    if args.markdown:
        Path(args.markdown).write_text(markdown(card))
    return 0 if card.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the scorecard (re-executing inside a private network namespace).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when every cell passes, 1 when one fails, 2 when it cannot run.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        columns = _columns(args.mta)
    except ValueError as exc:
        sys.stderr.write(f"smtpsts lab --scorecard: {exc}\n")
        return 2
    if os.environ.get(_INSIDE) == "1":
        try:
            return _inside(args, columns)
        except (RuntimeError, OSError) as exc:
            sys.stderr.write(f"smtpsts lab --scorecard: {exc}\n")
            return 2
    problem = _cannot_run(columns)
    if problem:
        sys.stderr.write(f"smtpsts lab --scorecard: {problem}\n")
        return 2
    unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin") or "unshare"
    command = [
        unshare,
        "--net",
        "--mount",
        "--propagation",
        "private",
        # A PID namespace too: when the run ends (or is killed at its
        # deadline), the kernel ends every MTA process it started.
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        sys.executable,
        "-m",
        "smtpsts.lab.scorecard.runner",
        *argv,
    ]
    env = {**os.environ, _INSIDE: "1"}
    try:
        return subprocess.run(  # noqa: S603 -- unshare and this interpreter, no shell
            command, env=env, timeout=_RUN_DEADLINE, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        sys.stderr.write(f"smtpsts lab --scorecard: no result within {_RUN_DEADLINE:.0f} s\n")
        return 2


def _cannot_run(columns: Sequence[str]) -> str | None:
    """
    Why the scorecard cannot run here, or ``None``.

    Args:
        columns: The chosen columns.

    Returns:
        The reason.
    """
    from smtpsts.lab.scorecard.columns import requirements  # noqa: PLC0415

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (it creates a private network namespace with unshare)"
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
            return f"needs {tool} (util-linux / iproute2)"
    for column in columns:
        for tool in requirements(column):
            if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
                return f"column {column} needs {tool}, which is not installed"
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
