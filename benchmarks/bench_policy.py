"""
Policy discovery benchmark: smtpsts against postfix-mta-sts-resolver, in one run.

Everything runs on loopback against the same servers, started in a separate
process (``--serve``): the dnspython-based authoritative DNS server and the
HTTPS policy server of the test suite (``tests/dnsserver.py``,
``tests/httpsservers.py``, with a CA made at start). The HTTPS server listens
on ``127.0.0.44:443`` because the peer always fetches from port 443; the DNS
records point ``mta-sts.<domain>`` there, so both implementations do the same
TXT + A/AAAA + TCP + TLS + GET. Each measured client runs in a fresh process
of its own: smtpsts (``--client``) and the peer (``peer_pmsr.py``, in a
private mount namespace whose ``/etc/resolv.conf`` names the loopback DNS
server, PEERS.md A.4; this needs root). Both run on the stdlib asyncio loop.

Rows:

(a) a cached lookup plus the delivery decision, in process:
    ``cached_outcome(store.get(domain), now)`` then ``decide(...)``
    (target <= 5 us);
(b) 1000 concurrent lookups of one uncached domain through the
    ``PolicyResolver`` facade (``aresolve``: the single flight around
    ``aresolve_policy``): TXT queries and policy fetches counted at the
    servers (target: exactly 1 and 1);
(c) cold discovery, one domain after another, p50 per lookup with a phase
    split (DNS = TXT + address lookups, TCP+TLS = connect and handshake,
    HTTP = the rest), smtpsts's ``PolicyResolver.aresolve`` against the
    peer's ``STSResolver.resolve``, interleaved in rounds (target <= 1.0x);
(d) 500 distinct uncached domains with 50 in flight: domains/s and the peak
    RSS growth of each client process (target >= 1.0x the peer's rate);
(e) repeated lookups of a domain without a policy (NXDOMAIN, negative TTL
    300 s): lookups/s (target >= 10x the peer's, which has no negative cache).

Run it with ``python benchmarks/run policy``; ``--check`` makes a missed
target exit 1. Without root (no private mount namespace) the peer columns
stay empty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from smtpsts.cache import CacheEntry, cached_outcome  # noqa: E402 -- after the path is set
from smtpsts.certs import CertificateCheck  # noqa: E402
from smtpsts.decision import Deliver, MXHost, TLSObservation, decide  # noqa: E402
from smtpsts.io.dns import AsyncDNSResolver  # noqa: E402
from smtpsts.io.drivers import PolicyResolver, aresolve_policy  # noqa: E402
from smtpsts.io.http import AsyncHTTPSFetcher  # noqa: E402
from smtpsts.io.truststore import load_trust_store  # noqa: E402
from smtpsts.policy import Policy  # noqa: E402
from smtpsts.stores.memory import MemoryPolicyStore  # noqa: E402

HTTPS_ADDRESS = "127.0.0.44"
SUFFIX = "bench.test"
NO_POLICY = f"nopolicy.{SUFFIX}"
COLD_ROUNDS = 6
COLD_PER_ROUND = 15
BULK = 500
IN_FLIGHT = 50
SINGLE_FLIGHT = 1000
REPEAT_OURS = 3000
REPEAT_PEER = 300
PEER_PYTHON = HERE / ".venv" / "bin" / "python"


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}.{SUFFIX}" for i in range(count)]


def _all_domains() -> list[str]:
    names = ["sf0." + SUFFIX, "hot." + SUFFIX]
    for who in ("s", "p"):
        names += _names(f"c{who}", COLD_ROUNDS * COLD_PER_ROUND + 1)
        names += _names(f"b{who}", BULK)
    return names


# --------------------------------------------------------------------------- servers


def serve() -> int:
    """Run the DNS and HTTPS servers; answer ``count``/``hits`` commands on stdin."""
    # The test helpers are needed by the server process only.
    from dnsserver import DNSServer  # noqa: PLC0415
    from httpsservers import HTTPSServer, policy  # noqa: PLC0415

    class Port443Server(HTTPSServer):
        def start(self) -> Port443Server:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HTTPS_ADDRESS, 443))
            listener.listen(512)
            listener.settimeout(0.05)
            self._listener = listener
            self.port = 443
            thread = __import__("threading").Thread(target=self._accept_loop, daemon=True)
            thread.start()
            self._threads.append(thread)
            return self

    dns = DNSServer(negative_ttl=300).start()
    https = Port443Server().start()
    tmp = Path(tempfile.mkdtemp(prefix="smtpsts-bench-"))
    ca = tmp / "ca.pem"
    ca.write_bytes(https.root.pem)
    for domain in _all_domains():
        body = (
            f"version: STSv1\nmode: enforce\nmx: mail.{domain}\nmx: *.{domain}\nmax_age: 604800\n"
        ).encode()
        dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20240101T000000;"')
        dns.add(f"mta-sts.{domain}", "A", HTTPS_ADDRESS)
        https.route(f"mta-sts.{domain}", policy(body, content_type="text/plain; charset=utf-8"))
    print(json.dumps({"nameserver": dns.address, "ca": str(ca)}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["count"]:
            print(dns.count(command[1], command[2]), flush=True)
        elif command[:1] == ["hits"]:
            print(https.hits(command[1]), flush=True)
        else:
            break
    https.close()
    dns.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


class Servers:
    """The server process, seen from the orchestrator."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.nameserver: str = info["nameserver"]
        self.ca: str = info["ca"]

    def ask(self, *command: str) -> int:
        """Send one command, return the number it answers."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(" ".join(command) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        """Stop the servers."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --------------------------------------------------------------------------- smtpsts client

_spent: Counter[str] = Counter()


def _timed(phase: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            _spent[phase] += time.perf_counter() - started

    return wrapper


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _resolver(nameserver: str, ca: str, *, instrument: bool = False) -> Any:

    trust = load_trust_store(ca)
    txt = AsyncDNSResolver([nameserver])
    addresses = AsyncDNSResolver([nameserver])
    if instrument:
        txt.lookup_txt = _timed("dns", txt.lookup_txt)  # type: ignore[method-assign]
        addresses.lookup_addresses = _timed("dns", addresses.lookup_addresses)  # type: ignore[method-assign]
        asyncio.open_connection = _timed("tcp_tls", asyncio.open_connection)  # type: ignore[assignment]
    return PolicyResolver(
        trust=trust,
        adns=txt,
        afetcher=AsyncHTTPSFetcher(trust=trust, resolver=addresses),
    )


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    resolver = _resolver(args.nameserver, args.ca, instrument=args.mode == "cold")
    results: Counter[str] = Counter()
    times: list[float] = []
    phases: dict[str, list[float]] = {"dns": [], "tcp_tls": []}
    base = _rss_kib()
    started = time.perf_counter()
    if args.mode == "cold":
        # The first domain warms the process up (lazy imports, first TLS
        # context use) and is not counted.
        await resolver.aresolve(args.domains[0])
        for domain in args.domains[1:]:
            _spent.clear()
            t0 = time.perf_counter()
            outcome = await resolver.aresolve(domain)
            times.append(time.perf_counter() - t0)
            for phase, values in phases.items():
                values.append(_spent[phase])
            results[str(outcome.mode)] += 1
    elif args.mode == "bulk":
        gate = asyncio.Semaphore(args.concurrency)

        async def one(domain: str) -> None:
            async with gate:
                outcome = await resolver.aresolve(domain)
                results[str(outcome.mode)] += 1

        await asyncio.gather(*(one(d) for d in args.domains))
    elif args.mode == "repeat":
        domain = args.domains[0]
        for _ in range(args.count):
            outcome = await resolver.aresolve(domain)
            results[str(outcome.mode)] += 1
    else:
        # The driver loop alone, without the facade's single-flight task.
        domain = args.domains[0]
        for _ in range(args.count):
            outcome = await aresolve_policy(
                domain,
                resolver=resolver.adns,
                fetcher=resolver.afetcher,
                store=resolver.astore,
                now=resolver.clock(),
            )
            results[str(outcome.mode)] += 1
    return {
        "times": times,
        "phases": phases,
        "elapsed": time.perf_counter() - started,
        "results": dict(results),
        "rss_base_kib": base,
        "rss_peak_kib": _rss_kib(),
    }


# --------------------------------------------------------------------------- runs


def _run_json(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any] | None:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr[-2000:])
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ours(servers: Servers, mode: str, domains: list[str], **options: int) -> dict[str, Any]:
    """Run the smtpsts client in a fresh process."""
    command = [sys.executable, __file__, "--client", mode, "--nameserver", servers.nameserver]
    command += ["--ca", servers.ca, "--domains", *domains]
    command += [f"--{k}={v}" for k, v in options.items()]
    result = _run_json(command)
    if result is None:
        raise RuntimeError("the smtpsts client failed")
    return result


@contextlib.contextmanager
def _resolv_conf(servers: Servers) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="smtpsts-bench-ns-") as tmp:
        path = Path(tmp) / "resolv.conf"
        path.write_text(f"nameserver {servers.nameserver}\n", encoding="ascii")
        yield path


def peer_available() -> str | None:
    """Why the peer cannot run here, or ``None`` when it can."""
    if not PEER_PYTHON.exists():
        return "benchmarks/.venv is missing (run benchmarks/run)"
    probe = subprocess.run(
        [str(PEER_PYTHON), "-c", "import postfix_mta_sts_resolver"],
        capture_output=True,
        check=False,
    )
    if probe.returncode:
        return "postfix-mta-sts-resolver is not installed in benchmarks/.venv"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1) for a private /etc/resolv.conf"
    return None


def peer(servers: Servers, mode: str, domains: list[str], **options: int) -> dict[str, Any] | None:
    """Run the peer in a fresh process whose /etc/resolv.conf names the loopback server."""
    with _resolv_conf(servers) as resolv:
        inner = [str(PEER_PYTHON), str(HERE / "peer_pmsr.py"), mode, "--domains", *domains]
        inner += [f"--{k}={v}" for k, v in options.items()]
        script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, "sh", *inner]
        env = {**os.environ, "SSL_CERT_FILE": servers.ca}
        env.pop("https_proxy", None)
        env.pop("HTTPS_PROXY", None)
        return _run_json(command, env)


def bench_cached() -> float:
    """(a): microseconds for a cached lookup plus the decision (best of 7)."""

    now = datetime(2026, 6, 1, tzinfo=UTC)
    domain = "hot." + SUFFIX
    policy = Policy.from_text(
        f"version: STSv1\nmode: enforce\nmx: mail.{domain}\nmax_age: 604800\n"
    )
    store = MemoryPolicyStore()
    store.put(
        CacheEntry(
            domain,
            "1",
            policy,
            fetched_at=datetime(2026, 5, 31, tzinfo=UTC),
            expires_at=datetime(2026, 6, 7, tzinfo=UTC),
        )
    )
    mx = MXHost(f"mail.{domain}", 10)
    observation = TLSObservation(
        starttls_offered=True,
        handshake_ok=True,
        pkix=CertificateCheck(ok=True, result_type=None, detail="ok", identity=mx.host),
        receiving_ip="192.0.2.25",
    )

    def hot() -> object:
        outcome = cached_outcome(store.get(domain), now)
        assert outcome is not None
        return decide(outcome, mx, observation)

    assert isinstance(hot(), Deliver)
    timer = timeit.Timer(hot)
    number, _ = timer.autorange()
    return min(timer.repeat(7, number)) / number * 1e6


async def _single_flight(servers: Servers) -> tuple[int, int, set[str]]:
    resolver = _resolver(servers.nameserver, servers.ca)
    domain = "sf0." + SUFFIX
    outcomes = await asyncio.gather(*(resolver.aresolve(domain) for _ in range(SINGLE_FLIGHT)))
    modes = {str(o.mode) for o in outcomes}
    return (
        servers.ask("count", f"_mta-sts.{domain}", "TXT"),
        servers.ask("hits", f"mta-sts.{domain}"),
        modes,
    )


# --------------------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _phase_row(result: dict[str, Any]) -> tuple[float, float, float, float]:
    total = _p50(result["times"])
    dns = _p50(result["phases"]["dns"])
    tcp_tls = _p50(result["phases"]["tcp_tls"])
    http = _p50(
        [
            t - d - c
            for t, d, c in zip(
                result["times"], result["phases"]["dns"], result["phases"]["tcp_tls"], strict=True
            )
        ]
    )
    return total, dns, tcp_tls, http


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "times": [],
        "phases": {"dns": [], "tcp_tls": []},
        "results": Counter(),
    }
    for r in results:
        merged["times"] += r["times"]
        for phase in merged["phases"]:
            merged["phases"][phase] += r["phases"][phase]
        merged["results"].update(r["results"])
    return merged


def main(argv: list[str]) -> int:
    """Run every row and print the table; with ``--check``, exit 1 if a target is missed."""
    check = "--check" in argv
    why_no_peer = peer_available()
    servers = Servers()
    rows: list[tuple[str, str, str, str, str, bool | None]] = []
    try:
        micro = bench_cached()
        rows.append(
            ("(a) cached lookup + decide, us", f"{micro:.2f}", "-", "-", "<= 5 us", micro <= 5)
        )

        txt, fetches, modes = asyncio.run(_single_flight(servers))
        rows.append(
            (
                f"(b) {SINGLE_FLIGHT} concurrent aresolve: TXT queries / fetches",
                f"{txt} / {fetches}",
                "-",
                "-",
                "1 / 1",
                (txt, fetches) == (1, 1),
            )
        )

        ours_cold: list[dict[str, Any]] = []
        peer_cold: list[dict[str, Any]] = []
        for r in range(COLD_ROUNDS):
            chunk = range(r * COLD_PER_ROUND + 1, (r + 1) * COLD_PER_ROUND + 1)
            ours_cold.append(ours(servers, "cold", [f"cs{i}.{SUFFIX}" for i in (0, *chunk)]))
            if why_no_peer is None:
                got = peer(servers, "cold", [f"cp{i}.{SUFFIX}" for i in (0, *chunk)])
                if got is not None:
                    peer_cold.append(got)
        ours_c = _merge(ours_cold)
        peer_c = _merge(peer_cold) if peer_cold else None
        o_total, o_dns, o_tls, o_http = _phase_row(ours_c)
        if peer_c is not None:
            p_total, p_dns, p_tls, p_http = _phase_row(peer_c)
        for label, o, p in (
            ("(c) cold discovery p50, ms", o_total, p_total if peer_c else None),
            ("    DNS (TXT + address) p50, ms", o_dns, p_dns if peer_c else None),
            ("    TCP + TLS p50, ms", o_tls, p_tls if peer_c else None),
            ("    HTTP + rest p50, ms", o_http, p_http if peer_c else None),
        ):
            ratio = f"{o / p:.2f}x" if p else "-"
            target = "<= 1.0x" if label.startswith("(c)") else ""
            verdict = (o <= p) if (p and target) else None
            rows.append((label, _ms(o), _ms(p) if p else "-", ratio, target, verdict))

        ours_b = ours(servers, "bulk", _names("bs", BULK), concurrency=IN_FLIGHT)
        peer_b = (
            peer(servers, "bulk", _names("bp", BULK), concurrency=IN_FLIGHT)
            if why_no_peer is None
            else None
        )
        o_rate = BULK / ours_b["elapsed"]
        p_rate = BULK / peer_b["elapsed"] if peer_b else None
        rows.append(
            (
                f"(d) {BULK} domains, {IN_FLIGHT} in flight: domains/s",
                f"{o_rate:.0f}",
                f"{p_rate:.0f}" if p_rate else "-",
                f"{o_rate / p_rate:.2f}x" if p_rate else "-",
                ">= 1.0x",
                o_rate >= p_rate if p_rate else None,
            )
        )
        o_rss = (ours_b["rss_peak_kib"] - ours_b["rss_base_kib"]) / 1024
        p_rss = (peer_b["rss_peak_kib"] - peer_b["rss_base_kib"]) / 1024 if peer_b else None
        rows.append(
            (
                "    peak RSS growth, MiB",
                f"{o_rss:.1f}",
                f"{p_rss:.1f}" if p_rss is not None else "-",
                f"{o_rss / p_rss:.2f}x" if p_rss else "-",
                "bounded",
                None,
            )
        )

        ours_e = ours(servers, "repeat", [NO_POLICY], count=REPEAT_OURS)
        ours_queries = servers.ask("count", f"_mta-sts.{NO_POLICY}", "TXT")
        ours_d = ours(servers, "driver", [NO_POLICY], count=REPEAT_OURS)
        driver_queries = servers.ask("count", f"_mta-sts.{NO_POLICY}", "TXT") - ours_queries
        peer_e = (
            peer(servers, "repeat", [NO_POLICY], count=REPEAT_PEER) if why_no_peer is None else None
        )
        peer_queries = (
            servers.ask("count", f"_mta-sts.{NO_POLICY}", "TXT") - ours_queries - driver_queries
        )
        o_neg = REPEAT_OURS / ours_e["elapsed"]
        d_neg = REPEAT_OURS / ours_d["elapsed"]
        p_neg = REPEAT_PEER / peer_e["elapsed"] if peer_e else None
        rows.append(
            (
                "(e) no-policy domain, repeated: lookups/s",
                f"{o_neg:.0f}",
                f"{p_neg:.0f}" if p_neg else "-",
                f"{o_neg / p_neg:.1f}x" if p_neg else "-",
                ">= 10x",
                o_neg >= 10 * p_neg if p_neg else None,
            )
        )
        rows.append(
            (
                "    same, aresolve_policy loop without the facade",
                f"{d_neg:.0f}",
                f"{p_neg:.0f}" if p_neg else "-",
                f"{d_neg / p_neg:.1f}x" if p_neg else "-",
                "",
                None,
            )
        )
        neg_queries = (ours_queries, driver_queries, peer_queries)
    finally:
        servers.close()

    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; stdlib asyncio loop for both"
    )
    print(
        "peer: postfix-mta-sts-resolver 1.5.1 STSResolver.resolve"
        + (f" -- NOT RUN: {why_no_peer}" if why_no_peer else "")
    )
    header = ("row", "smtpsts", "peer", "ratio", "target", "met")
    table = [header] + [
        (a, b, c, d, e, {True: "yes", False: "NO", None: ""}[f]) for a, b, c, d, e, f in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"cold lookups: smtpsts {len(ours_c['times'])} {dict(ours_c['results'])}, "
        f"peer {len(peer_c['times']) if peer_c else 0} {dict(peer_c['results']) if peer_c else {}}"
    )
    print(
        f"(b) outcomes: {sorted(modes)}; (e) TXT queries for {NO_POLICY} seen by the DNS "
        f"server: smtpsts {neg_queries[0]} + {neg_queries[1]} for 2 x {REPEAT_OURS} lookups, "
        f"peer {neg_queries[2]} for {REPEAT_PEER if peer_e else 0} lookups (c-ares caches "
        "the NXDOMAIN for its SOA negative TTL)"
    )
    failed = [row[0].strip() for row in rows if row[5] is False]
    if failed:
        print(
            "targets missed: "
            + "; ".join(failed)
            + ("" if check else " (exit status 0 without --check)")
        )
    return 1 if failed and check else 0


def _parse_client(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", dest="mode", choices=["cold", "bulk", "repeat", "driver"])
    parser.add_argument("--nameserver", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--domains", nargs="+", required=True)
    parser.add_argument("--concurrency", type=int, default=IN_FLIGHT)
    parser.add_argument("--count", type=int, default=100)
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve())
    if sys.argv[1:2] == ["--client"]:
        print(json.dumps(asyncio.run(_client(_parse_client(sys.argv[1:])))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
