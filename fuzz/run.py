"""
Run every fuzz target (or those named) for N inputs each, one after another.

Usage::

    python fuzz/run.py [--runs N] [--timeout S] [--rss-limit-mb MB]
                       [--work DIR] [--json FILE] [TARGET ...] [-- LIBFUZZER-ARGS]

For each target it builds the corpus (the committed ``fuzz/corpus/<target>/``
plus the seeds :mod:`_seeds` generates from the vectors), runs
``fuzz/fuzz_<target>.py -runs=N -timeout=S -rss_limit_mb=MB``, and prints
executions, seconds, executions per second, coverage (libFuzzer's ``cov``
edges and ``ft`` features), the longest single run (``max``), the slowest
input timed again (``slowest``: the fastest of three runs, for inputs whose
first run took over 1 ms; 0 when none did) and the findings: crashes (an
exception the API does not document), timeouts, out-of-memory, and inputs
over 100 ms. Artifacts are kept in ``DIR/findings``. Exits 1 if any target has a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _seeds  # noqa: E402

TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_PULSE = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", re.MULTILINE)
_ARTIFACT = re.compile(r"(crash|timeout|oom|leak|slow-unit|slow)-")


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(TARGETS)}")
    parser.add_argument("--runs", type=int, default=5000, help="inputs per target (-runs)")
    parser.add_argument("--timeout", type=int, default=1, help="per-input seconds (-timeout)")
    parser.add_argument("--rss-limit-mb", type=int, default=1024, help="(-rss_limit_mb)")
    parser.add_argument("--work", type=Path, default=Path("build/fuzz"), help="corpora, logs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {TARGETS}")
    return args, extra


def _run_target(target: str, args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    work: Path = args.work
    corpus = work / "corpus" / target
    seeds = work / "seeds" / target
    findings = work / "findings"
    stats = work / "stats" / f"{target}.json"
    log = work / "logs" / f"{target}.log"
    for directory in (corpus, findings, stats.parent, log.parent):
        directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(seeds, ignore_errors=True)
    _seeds.write(target, seeds)
    stats.unlink(missing_ok=True)
    before = {p.name for p in findings.iterdir()}
    committed = HERE / "corpus" / target
    command = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-runs={args.runs}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        "-print_final_stats=1",
        f"-artifact_prefix={findings}/{target}-",
        *extra,
        str(corpus),
        *([str(committed)] if committed.is_dir() else []),
        str(seeds),
    ]
    env = {
        **os.environ,
        "SMTPSTS_FUZZ_STATS": str(stats),
        "SMTPSTS_FUZZ_FINDINGS": str(findings / f"{target}-slow"),
    }
    start = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.run(  # noqa: S603 - our own interpreter and script
            command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    seconds = time.monotonic() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    stat = {k: int(v) for k, v in _STAT.findall(text)}
    pulses = _PULSE.findall(text)
    slow_dir = findings / f"{target}-slow"
    new = sorted(
        p.name
        for p in findings.iterdir()
        if p.name not in before and p.is_file() and _ARTIFACT.search(p.name)
    )
    slow = sorted(p.name for p in slow_dir.iterdir()) if slow_dir.is_dir() else []
    slowest = json.loads(stats.read_text(encoding="utf-8")) if stats.exists() else {}
    execs = stat.get("number_of_executed_units", int(pulses[-1][0]) if pulses else 0)
    found = [*new, *(f"{target}-slow/{name}" for name in slow)]
    if code != 0 and not new:
        found.append(f"libFuzzer exit status {code} (see {log})")
    return {
        "target": target,
        "execs": execs,
        "seconds": round(seconds, 1),
        "execs_per_second": round(execs / seconds) if seconds else 0,
        "cov": int(pulses[-1][1]) if pulses else None,
        "ft": int(pulses[-1][2]) if pulses else None,
        "corpus": len(list(corpus.iterdir())),
        "max_ms": round(float(slowest.get("max_single_run_seconds", 0.0)) * 1000, 2),
        "slowest_ms": round(float(slowest.get("slowest_seconds", 0.0)) * 1000, 2),
        "peak_rss_mb": stat.get("peak_rss_mb"),
        "findings": found,
        "log": str(log),
    }


def main(argv: list[str] | None = None) -> int:
    """
    Run the targets and print one line per target.

    Args:
        argv: The command line (without the program name).

    Returns:
        0 when no target has a finding, else 1.
    """
    args, extra = _parse_args(sys.argv[1:] if argv is None else argv)
    header = f"{'target':<18} {'execs':>9} {'secs':>7} {'exec/s':>7} {'cov':>5} {'ft':>6}"
    header += f" {'corpus':>6} {'max':>8} {'slowest':>8} {'rss MB':>6}  findings"
    print(header, flush=True)  # noqa: T201
    results = []
    for target in args.targets or TARGETS:
        r = _run_target(target, args, extra)
        results.append(r)
        print(  # noqa: T201
            f"{target:<18} {r['execs']:>9} {r['seconds']:>7} {r['execs_per_second']:>7} "
            f"{r['cov'] or '-':>5} {r['ft'] or '-':>6} {r['corpus']:>6} "
            f"{r['max_ms']:>6}ms {r['slowest_ms']:>6}ms {r['peak_rss_mb'] or '-':>6}  "
            f"{', '.join(r['findings']) or 'none'}",  # type: ignore[arg-type]
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    bad = [r for r in results if r["findings"]]
    for r in bad:
        print(f"\n{r['target']}: {len(r['findings'])} finding(s); log {r['log']}")  # type: ignore[arg-type]  # noqa: T201
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
