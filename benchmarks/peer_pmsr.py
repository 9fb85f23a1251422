"""
Drive postfix-mta-sts-resolver's ``STSResolver.resolve`` for ``bench_policy.py``.

Run by ``bench_policy.py`` with the interpreter of ``benchmarks/.venv`` (where
``postfix-mta-sts-resolver==1.5.1`` is installed; the smtpsts package never
imports it), inside a private mount namespace whose ``/etc/resolv.conf``
points c-ares at the benchmark's loopback DNS server, and with
``SSL_CERT_FILE`` naming the benchmark CA (PEERS.md A.4). The policy hosts
listen on port 443, the only port the peer fetches from.

Usage: ``python peer_pmsr.py MODE --domains NAME... [--concurrency N]``
where MODE is ``cold`` (one lookup after another, timed each, with a phase
split), ``bulk`` (all domains, N in flight) or ``repeat`` (the one domain
given, ``--count`` times in a row). Prints one JSON object on stdout:
``{"times": [...], "phases": {...}, "elapsed": s, "results": {...},
"rss_base_kib": n, "rss_peak_kib": n}``.

The phase split wraps, without changing them, the calls the peer makes:
``aiodns.DNSResolver.query`` and ``getaddrinfo`` (TXT and address lookups)
and the event loop's ``create_connection`` (TCP connect and TLS handshake,
which aiohttp does in one call). HTTP is what remains of each lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiodns
from postfix_mta_sts_resolver.resolver import STSResolver

_spent: collections.Counter[str] = collections.Counter()


def _timed(phase: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            _spent[phase] += time.perf_counter() - started

    return wrapper


def _instrument(loop: asyncio.AbstractEventLoop) -> None:
    for name in ("query", "getaddrinfo", "gethostbyname"):
        original = getattr(aiodns.DNSResolver, name, None)
        if original is not None:
            setattr(aiodns.DNSResolver, name, _timed("dns", original))
    loop.create_connection = _timed("tcp_tls", loop.create_connection)  # type: ignore[method-assign]


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _instrument(loop)
    resolver = STSResolver(loop=loop, timeout=args.timeout)
    results: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    phases: dict[str, list[float]] = {"dns": [], "tcp_tls": []}
    base = _rss_kib()
    started = time.perf_counter()
    if args.mode == "cold":
        # The first domain warms the process up (lazy imports, first TLS
        # context use) and is not counted.
        await resolver.resolve(args.domains[0])
        for domain in args.domains[1:]:
            _spent.clear()
            t0 = time.perf_counter()
            status, _ = await resolver.resolve(domain)
            times.append(time.perf_counter() - t0)
            for phase, values in phases.items():
                values.append(_spent[phase])
            results[status.name] += 1
    elif args.mode == "bulk":
        gate = asyncio.Semaphore(args.concurrency)

        async def one(domain: str) -> None:
            async with gate:
                status, _ = await resolver.resolve(domain)
                results[status.name] += 1

        await asyncio.gather(*(one(d) for d in args.domains))
    else:
        domain = args.domains[0]
        for _ in range(args.count):
            status, _ = await resolver.resolve(domain)
            results[status.name] += 1
    elapsed = time.perf_counter() - started
    return {
        "times": times,
        "phases": phases,
        "elapsed": elapsed,
        "results": dict(results),
        "rss_base_kib": base,
        "rss_peak_kib": _rss_kib(),
    }


def main(argv: list[str]) -> int:
    """Parse the arguments, run the lookups, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["cold", "bulk", "repeat"])
    parser.add_argument("--domains", nargs="+", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
