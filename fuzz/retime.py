"""
Time the slowest inputs of a fuzz campaign again, without instrumentation.

Usage::

    python fuzz/retime.py WORK [--repeat N]

WORK is the ``--work`` directory of ``fuzz/run.py``. For every target it
takes the slowest input the campaign saw (``stats/<target>.slowest``) and
every input it flagged as slow (``findings/<target>-slow/``), runs each
through the target's ``test_one`` N times (5) in this process with plain,
uninstrumented smtpsts, and prints the best time of the worst input. Coverage
instrumentation and a loaded machine make the campaign's own timings an upper
bound; these are the times production code takes. Exits 1 if any input
takes over 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT = 0.100


def _best(test_one: object, data: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        # Timing only: the campaign has judged each input's outcome.
        with contextlib.suppress(Exception):
            test_one(data)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str]) -> int:
    """Print the plain timings; exit 1 if an input is over the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("work", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ["SMTPSTS_FUZZ_PLAIN"] = "1"
    sys.path.insert(0, str(HERE))
    over = False
    print(f"{'target':22} {'inputs':>6} {'worst ms':>9} {'bytes':>6}")  # noqa: T201
    for stats in sorted((args.work / "stats").glob("*.slowest")):
        target = stats.stem
        inputs = [stats, *sorted((args.work / "findings" / f"{target}-slow").glob("*"))]
        test_one = importlib.import_module(f"fuzz_{target}").test_one
        timed = [(_best(test_one, p.read_bytes(), args.repeat), p) for p in inputs]
        worst, path = max(timed)
        over |= worst > LIMIT
        print(f"{target:22} {len(inputs):>6} {worst * 1000:>9.2f} {path.stat().st_size:>6}")  # noqa: T201
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
