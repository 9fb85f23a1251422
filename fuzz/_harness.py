"""
Shared machinery of the fuzz targets (issue 10 item 7).

Every ``fuzz/fuzz_*.py`` target imports smtpsts inside :func:`instrumented`
(so atheris adds coverage feedback to smtpsts only) and hands its one-input
function to :func:`main`. :func:`main` adds the checks every target shares:

- only the exceptions the target names (the documented error of the API,
  a :class:`smtpsts.ParseError` subclass) may escape; any other exception
  is a finding and libFuzzer stops with a ``crash-*`` artifact;
- an input that takes over :data:`LIMIT` seconds is a finding: it is timed
  again, with the parser caches cleared, and only the fastest of the runs
  counts, so a busy machine or a garbage collection is not reported. Slow
  inputs are written to ``$SMTPSTS_FUZZ_FINDINGS/slow-<sha1>`` and the run
  goes on; :mod:`run` reports them and fails;
- the slowest input seen is described in ``$SMTPSTS_FUZZ_STATS`` (JSON) and
  kept beside it (``.slowest``).

libFuzzer's own ``-timeout`` (hangs), ``-rss_limit_mb`` (memory) and
``-max_len`` bound the rest; ``max_len`` defaults per target.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import atheris

LIMIT = 0.100
"""The most one input may take, in seconds (issue 10 item 7)."""

_RERUNS = 2
_FLOOR = 0.001  # inputs faster than this are not timed again

# The str hook lets libFuzzer learn the prefixes the parsers compare with. (The
# RegEx hook of atheris 3.0 fails on surrogate classes and some bytes patterns.)
atheris.enabled_hooks.add("str")


@contextlib.contextmanager
def instrumented(*also: str) -> Iterator[None]:
    """
    Import smtpsts (and only smtpsts, and ``also``) with atheris coverage instrumentation.

    Args:
        also: More top-level packages to instrument (a parser the target drives).

    Yields:
        Nothing; import the modules under test inside the ``with`` block.
    """
    if os.environ.get("SMTPSTS_FUZZ_PLAIN"):
        # fuzz/retime.py: the same code without instrumentation, to time inputs as
        # they run in production.
        yield
        return
    with atheris.instrument_imports(include=["smtpsts", *also]):
        yield


_CACHES: list[functools._lru_cache_wrapper[object]] = []


def _clear_caches() -> None:
    # Parsers remember results (functools.lru_cache); a re-run must not hit them.
    if not _CACHES:
        for name, module in list(sys.modules.items()):
            if name.startswith("smtpsts"):
                _CACHES.extend(
                    value
                    for value in vars(module).values()
                    if isinstance(value, functools._lru_cache_wrapper)  # noqa: SLF001
                )
    for cache in _CACHES:
        cache.cache_clear()


class _Timer:
    """Tracks the slowest input and records the ones over :data:`LIMIT`."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.slowest = 0.0
        self.first_max = 0.0
        self.threshold = _FLOOR
        self.stats = os.environ.get("SMTPSTS_FUZZ_STATS")
        self.findings = Path(os.environ.get("SMTPSTS_FUZZ_FINDINGS", "."))
        self.slow_inputs = 0

    def check(self, data: bytes, first: float, run: Callable[[bytes], None]) -> None:
        best = first
        for _ in range(_RERUNS):
            _clear_caches()
            start = time.perf_counter()
            run(data)
            best = min(best, time.perf_counter() - start)
        if best > self.slowest:
            self.slowest = best
            self.threshold = max(self.threshold, best)
            self._write_stats(data)
            if self.stats:
                Path(self.stats).with_suffix(".slowest").write_bytes(data)
        if best > LIMIT:
            self.slow_inputs += 1
            name = f"slow-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a file name
            self.findings.mkdir(parents=True, exist_ok=True)
            (self.findings / name).write_bytes(data)
            print(  # noqa: T201 - the run log is the report
                f"==smtpsts-fuzz== SLOW INPUT: {best * 1000:.1f} ms > {LIMIT * 1000:.0f} ms "
                f"({len(data)} bytes), saved as {self.findings / name}",
                file=sys.stderr,
                flush=True,
            )
            self._write_stats(data)

    def _write_stats(self, data: bytes) -> None:
        if not self.stats:
            return
        doc = {
            "target": self.target,
            "slowest_seconds": self.slowest,
            "max_single_run_seconds": self.first_max,
            "slowest_input_length": len(data),
            "slowest_input_sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324
            "slow_inputs": self.slow_inputs,
        }
        Path(self.stats).write_text(json.dumps(doc), encoding="utf-8")


def main(
    test_one: Callable[[bytes], None],
    *,
    allowed: tuple[type[BaseException], ...],
    max_len: int,
) -> None:
    """
    Run ``test_one`` under libFuzzer with the shared checks.

    Args:
        test_one: Parses one input; raises only what ``allowed`` names, or
            ``AssertionError`` for a broken property (a finding).
        allowed: The exceptions the API documents for bad input.
        max_len: The default ``-max_len`` (inputs longer are never tried).
    """
    target = Path(sys.argv[0]).stem.removeprefix("fuzz_")
    timer = _Timer(target)

    def run(data: bytes) -> None:
        with contextlib.suppress(*allowed):
            test_one(data)

    def one_input(data: bytes) -> None:
        start = time.perf_counter()
        run(data)
        elapsed = time.perf_counter() - start
        if elapsed > timer.first_max:
            timer.first_max = elapsed
            if elapsed <= timer.threshold:
                timer._write_stats(data)  # noqa: SLF001
        if elapsed > timer.threshold:
            timer.check(data, elapsed, run)

    argv = list(sys.argv)
    if not any(arg.startswith("-max_len=") for arg in argv):
        argv.append(f"-max_len={max_len}")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def split_records(data: bytes) -> list[list[bytes]]:
    """
    Read fuzz bytes as a TXT RRset: RRs split on LF, character-strings on NUL.

    Args:
        data: The fuzz input.

    Returns:
        The RRs, each a list of its character-strings.
    """
    return [rr.split(b"\0") for rr in data.split(b"\n")]


def text_or_bytes(data: bytes) -> str | bytes | None:
    """
    The input past byte 0, as text when byte 0 has bit 0 set, else as bytes.

    Args:
        data: The fuzz input.

    Returns:
        ``data[1:]`` decoded as UTF-8 (bad bytes replaced) or as is; ``None``
        for an empty input.
    """
    if not data:
        return None
    if data[0] & 1:
        return data[1:].decode("utf-8", "replace")
    return data[1:]


def round_trip(
    parse: Callable[[str | bytes], Any], dump: Callable[[Any], str]
) -> Callable[[bytes], None]:
    """
    A target: ``parse`` the input (:func:`text_or_bytes`); what it reads round-trips.

    Args:
        parse: The reader under test.
        dump: Its writer.

    Returns:
        The one-input function for :func:`main`.
    """

    def test_one(data: bytes) -> None:
        body = text_or_bytes(data)
        if body is None:
            return
        value = parse(body)
        assert value == parse(dump(value))

    return test_one


def record_target(
    parse: Callable[..., Any],
    select: Callable[..., Any],
    check: Callable[[Any], None] = lambda _record: None,
) -> Callable[[bytes], None]:
    """
    A TXT record target: byte 0 bit 0 is lenient mode, bit 1 selects from an RRset.

    A strictly parsed record serialises and reads back equal.

    Args:
        parse: ``from_text(text, lenient=)`` of the record type.
        select: ``select_*_record(rrset, lenient=)``.
        check: More checks on a parsed record.

    Returns:
        The one-input function for :func:`main`.
    """

    def test_one(data: bytes) -> None:
        if not data:
            return
        flags, body = data[0], data[1:]
        lenient = bool(flags & 1)
        if flags & 2:
            select(split_records(body), lenient=lenient)
            return
        record = parse(body, lenient=lenient)
        check(record)
        if not record.lenient:
            assert record == parse(record.to_text())

    return test_one
