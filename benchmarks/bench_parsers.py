"""
Parser benchmark: smtpsts against postfix-mta-sts-resolver, in one run.

Measures, with ``timeit`` (best and median of several repeats):

- parsing a typical 5-line policy: ``smtpsts.Policy.from_text`` (strict ABNF
  parse) against ``postfix_mta_sts_resolver.utils.parse_mta_sts_policy`` plus
  the validation its resolver applies after parsing (version, ``max_age``
  range, mode, non-empty ``mx``; see PEERS.md A §1.3);
- parsing a TXT record: ``smtpsts.STSRecord.from_text`` against
  ``parse_mta_sts_record`` (which does no validation at all);
- 10,000 MX matches on a parsed policy: ``Policy.matches``. The peer has no
  matching code (Postfix does it), so this row has no peer figure and is
  judged on its absolute time.

Targets (foundation issue): strict policy parse at most 4x the peer's lenient
parse + validate; ``Policy.matches`` at most 1 us per call.

Run it with ``python benchmarks/run``, which installs the peer into
``benchmarks/.venv``; ``--check`` makes a missed target exit 1. The peer is
optional: its columns are left empty when it is not installed.
"""

from __future__ import annotations

import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import smtpsts

POLICY = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"
RECORD = "v=STSv1; id=20240101T000000;"
# 10,000 lookups over a mix of hits and misses, exact and wildcard, as DNS
# returns them (some upper case, some with the root dot).
HOSTS = [
    "mail.example.com",
    "MX1.example.net.",
    "backup.example.org",
    "a.b.example.net",
    "mail.example.com.",
] * 2000

REPEAT = 7
TARGET_POLICY_RATIO = 4.0
TARGET_MATCH_US = 1.0

try:
    from postfix_mta_sts_resolver import utils as peer_utils
except ImportError:  # not in this environment: ours only
    peer_utils = None


def peer_policy(text: str) -> Any:
    """Parse and validate as postfix-mta-sts-resolver 1.5.1 does."""
    pol = peer_utils.parse_mta_sts_policy(text)
    # The checks its resolver makes after parsing, in the same order
    # (postfix_mta_sts_resolver/resolver.py, PEERS.md A §1.3).
    if pol.get("version") != "STSv1":
        raise ValueError("version")
    max_age = int(pol.get("max_age", "-1"))
    pol["max_age"] = max_age
    if not 0 <= max_age <= 31557600:
        raise ValueError("max_age")
    if "mode" not in pol:
        raise ValueError("mode")
    if pol["mode"] == "none":
        return pol
    if pol["mode"] not in {"none", "testing", "enforce"}:
        raise ValueError("mode")
    if not pol.get("mx"):
        raise ValueError("mx")
    return pol


def measure(func: Callable[[], object], number: int) -> tuple[float, float]:
    """Return (best, median) seconds per call of ``func``."""
    timer = timeit.Timer(func)
    times = [t / number for t in timer.repeat(repeat=REPEAT, number=number)]
    return min(times), statistics.median(times)


def autorange(func: Callable[[], object]) -> int:
    """Pick a loop count that takes about 0.2 s per repeat."""
    number, _ = timeit.Timer(func).autorange()
    return max(number, 1)


def main(argv: list[str]) -> int:
    """Run the benchmark and print the table; with ``--check``, exit 1 if a target is missed."""
    policy = smtpsts.Policy.from_text(POLICY)
    # Sanity: both sides accept the inputs and agree on what they say.
    assert policy.mode.value == "enforce"
    assert smtpsts.STSRecord.from_text(RECORD).id == "20240101T000000"
    assert [policy.matches(h) for h in HOSTS[:5]] == [True, True, False, False, True]

    rows: list[tuple[str, float, float, float | None, float | None, str]] = []

    def ours_policy() -> object:
        return smtpsts.Policy.from_text(POLICY)

    def ours_record() -> object:
        return smtpsts.STSRecord.from_text(RECORD)

    matches = policy.matches

    def ours_matches() -> object:
        for host in HOSTS:
            matches(host)
        return None

    peer_p = peer_r = None
    if peer_utils is not None:
        assert peer_policy(POLICY)["mx"] == ["mail.example.com", "*.example.net"]
        assert peer_utils.parse_mta_sts_record(RECORD)["id"] == "20240101T000000"

        def peer_p() -> object:
            return peer_policy(POLICY)

        def peer_r() -> object:
            return peer_utils.parse_mta_sts_record(RECORD)

    failed = False
    for name, ours, peer, per_call, target in (
        ("policy parse (5 lines)", ours_policy, peer_p, 1, f"ratio <= {TARGET_POLICY_RATIO:g}x"),
        ("record parse", ours_record, peer_r, 1, "-"),
        ("Policy.matches x10k", ours_matches, None, len(HOSTS), f"<= {TARGET_MATCH_US:g} us/call"),
    ):
        n = autorange(ours)
        best, median = measure(ours, n)
        pbest = pmedian = None
        if peer is not None:
            pn = autorange(peer)
            pbest, pmedian = measure(peer, pn)
        verdict = target
        if name.startswith("policy") and pbest is not None:
            ok = best / pbest <= TARGET_POLICY_RATIO
            verdict += " ok" if ok else " MISSED"
            failed |= not ok
        if name.startswith("Policy.matches"):
            ok = best / per_call * 1e6 <= TARGET_MATCH_US
            verdict += f" ({best / per_call * 1e6:.3f} us/call)" + (" ok" if ok else " MISSED")
            failed |= not ok
        rows.append((name, best, median, pbest, pmedian, verdict))

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"smtpsts {getattr(smtpsts, '__version__', '?')}, "
        f"peer: {'postfix-mta-sts-resolver ' + _peer_version() if peer_utils else 'not installed'}"
    )
    print(f"best / median of {REPEAT} repeats, microseconds per operation")
    header = ("operation", "ours best", "ours med", "peer best", "peer med", "ratio", "target")
    table = [header]
    for name, best, median, pbest, pmedian, verdict in rows:
        table.append(
            (
                name,
                f"{best * 1e6:.2f}",
                f"{median * 1e6:.2f}",
                f"{pbest * 1e6:.2f}" if pbest is not None else "-",
                f"{pmedian * 1e6:.2f}" if pmedian is not None else "-",
                f"{best / pbest:.2f}x" if pbest else "-",
                verdict,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        cells = zip(r, widths, strict=True)
        line = "  ".join(
            c.ljust(w) if j in {0, 6} else c.rjust(w) for j, (c, w) in enumerate(cells)
        )
        print(line.rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if failed:
        print("targets missed" + ("" if "--check" in argv else " (exit status 0 without --check)"))
    return 1 if failed and "--check" in argv else 0


def _peer_version() -> str:
    return version("postfix-mta-sts-resolver")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
